//! The relay API's OpenAPI 3.1 document, served at `GET /openapi.json`.
//! Paths come from the `#[utoipa::path]` attribute on each handler in
//! [`crate::routes`], schemas from the wire types of `kaching_core::wire`;
//! the responses listed there are every status the handler, its
//! extractors and the router's layers (rate limit, request deadline, body
//! limit) can answer with (docs/relay.md, docs/connected.md).

use std::sync::LazyLock;

use kaching_core::wire::ErrorBody;
use utoipa::openapi::OpenApi as Document;
use utoipa::OpenApi;

use crate::responses::SignedDocument;

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
        crate::routes::reports::post_report,
        crate::routes::reports::list_reports,
        crate::routes::reports::post_receipt,
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
