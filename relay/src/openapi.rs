//! The relay API's OpenAPI 3.1 document, served at `GET /openapi.json`.
//! Paths come from the `#[utoipa::path]` attribute on each handler in
//! [`crate::routes`], schemas from the wire types of `kaching_core::wire`;
//! the responses listed there are every status the handler, its
//! extractors and the router's layers (rate limit, request deadline, body
//! limit) can answer with (docs/relay.md, docs/connected.md).

use std::sync::LazyLock;

use kaching_core::wire::ErrorBody;
use utoipa::openapi::OpenApi as Document;
use utoipa::{IntoResponses, OpenApi, ToSchema};

/// A signed COSE document (CBOR bytes), or its armored text where the
/// route says so. Request bodies are read whatever their `Content-Type`.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)] // describes bodies; never built
pub struct SignedDocument(Vec<u8>);

/// 429 on every route: over the per-address rate limit.
#[derive(IntoResponses)]
#[allow(dead_code)] // describes answers; never built
pub enum RateLimited {
    /// `rate_limited`: too many requests from this address (`rate_limit`).
    #[response(status = 429, headers(("Retry-After" = u64, description = "Seconds to wait")))]
    RateLimited(ErrorBody),
}

/// 503 on every route under the request deadline.
#[derive(IntoResponses)]
#[allow(dead_code)] // describes answers; never built
pub enum Busy {
    /// `request_timeout` (past `request_timeout`, with `Retry-After: 1`; a
    /// write may have taken effect) or `unavailable` (shutting down).
    #[response(status = 503, headers(("Retry-After" = u64, description = "Seconds to wait (request_timeout only)")))]
    Unavailable(ErrorBody),
}

/// 500 where the database is read or written.
#[derive(IntoResponses)]
#[allow(dead_code)] // describes answers; never built
pub enum Internal {
    /// `internal`: the relay failed (logged with the detail); retry later.
    #[response(status = 500)]
    Internal(ErrorBody),
}

/// The refusals of a route that needs a token.
#[derive(IntoResponses)]
#[allow(dead_code)] // describes answers; never built
pub enum Token {
    /// `unauthorized`: no token, an unknown or revoked one (`kaching-relay token create`).
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// `forbidden`: this token's scope does not allow the request.
    #[response(status = 403)]
    Forbidden(ErrorBody),
}

/// 413: a request body over `max_body_bytes`.
#[derive(IntoResponses)]
#[allow(dead_code)] // describes answers; never built
pub enum TooLarge {
    /// `payload_too_large`: the body is larger than `max_body_bytes`.
    #[response(status = 413)]
    TooLarge(ErrorBody),
}

/// What a heartbeat or a deactivation is refused with.
#[derive(IntoResponses)]
#[allow(dead_code)] // describes answers; never built
pub enum BeatRefused {
    /// `wrong_endpoint` (a heartbeat sent to the other route for its
    /// `deactivate` flag), `clock_skew`, or `bad_request` (an unreadable
    /// body, numbers beyond a signed 64-bit integer).
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// `not_activated`, `wrong_license` or `wrong_key`.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// `replayed_heartbeat`: the sequence number is not above the last accepted.
    #[response(status = 409)]
    Replayed(ErrorBody),
    /// `invalid_document`: not a heartbeat, or its signature does not verify.
    #[response(status = 422)]
    Invalid(ErrorBody),
}

/// What a lookup of one license by `{id}` is refused with.
#[derive(IntoResponses)]
#[allow(dead_code)] // describes answers; never built
pub enum LicenseLookup {
    /// `bad_request`: not a license id.
    #[response(status = 400)]
    NotAnId(ErrorBody),
    /// `not_found`: the license was never activated on this relay.
    #[response(status = 404)]
    NeverActivated(ErrorBody),
}

/// The document, built once from the handlers' attributes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "kaching-relay API",
        description = "The relay's HTTP API: cluster activation, signed heartbeats, revocation lists and roots (store and forward), and the vendor's fleet views for WHOOSH (docs/relay.md, docs/connected.md, docs/whoosh.md). Errors are always `{\"error\": {\"code\", \"message\"}}`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(
        crate::routes::cluster::activate,
        crate::routes::cluster::heartbeat,
        crate::routes::cluster::deactivate,
        crate::routes::revocations::get,
        crate::routes::revocations::put,
        crate::routes::roots::get,
        crate::routes::roots::put,
        crate::routes::vendor::license_status,
        crate::routes::vendor::license_quotas,
        crate::routes::vendor::clusters,
        crate::routes::vendor::list_upgrades,
        crate::routes::vendor::file_upgrade,
        crate::routes::vendor::relay_key,
        crate::routes::healthz,
        crate::routes::openapi_json,
        crate::routes::metrics::scrape,
    ),
    components(schemas(ErrorBody, SignedDocument)),
    tags(
        (name = "clusters", description = "What a connected verifier sends: signed CBOR, answered with relay-signed time"),
        (name = "distribution", description = "Revocation lists and roots: anyone may read, a publish token writes"),
        (name = "vendor", description = "The vendor's views (WHOOSH and admin tokens)"),
        (name = "operations", description = "Health, metrics, the relay key and this document"),
    )
)]
struct RelayApi;

static DOCUMENT: LazyLock<Document> = LazyLock::new(|| {
    kaching_kit::openapi::finish(
        RelayApi::openapi(),
        env!("CARGO_PKG_VERSION"),
        "A relay token made by `kaching-relay token create` with scope `admin`, `publish` or `whoosh`; each route says which scopes it takes (admin always works).",
    )
});

/// The relay API's OpenAPI document.
pub fn document() -> &'static Document {
    &DOCUMENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_on_the_router_is_in_the_openapi_document() {
        let doc = serde_json::to_value(document()).unwrap();
        kaching_testkit::assert_document_matches_router(
            &doc,
            include_str!("routes/mod.rs"),
            &[
                ("ACTIVATE", crate::routes::ACTIVATE),
                ("HEARTBEAT", crate::routes::HEARTBEAT),
            ],
        );
    }

    #[test]
    fn nullable_fields_are_nullable() {
        let doc = serde_json::to_value(document()).unwrap();
        let page = &doc["components"]["schemas"]["ClusterPage"];
        assert_eq!(
            page["properties"]["next_after"]["type"],
            serde_json::json!(["string", "null"]),
            "{page}"
        );
    }
}
