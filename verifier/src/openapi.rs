//! The verifier API's OpenAPI 3.1 document, served at `GET /openapi.json`.
//! Paths come from the `#[utoipa::path]` attribute on each handler in
//! [`crate::api`], schemas from the wire types of `kaching_core::wire`; the
//! responses listed there are every status the handler, its extractors and
//! the router's layers can answer with (docs/verifier.md "HTTP API").

use std::sync::LazyLock;

use kaching_core::wire::ErrorBody;
use utoipa::openapi::OpenApi as Document;
use utoipa::OpenApi;

/// The document, built once from the handlers' attributes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "kaching-verifier local API",
        description = "The verifier's local HTTP API: what BZZZ, WHOOSH and `kaching-verifier status` read and write (docs/verifier.md). Errors are always `{\"error\": {\"code\", \"message\"}}`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(
        crate::api::healthz,
        crate::api::openapi_json,
        crate::api::status,
        crate::api::quotas,
        crate::api::license,
        crate::api::feature,
        crate::api::list_nodes,
        crate::api::lease,
        crate::api::release,
        crate::api::usage,
        crate::api::upgrade,
        crate::api::list_upgrades,
        crate::api::events,
        crate::api::metrics,
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "license", description = "What the license allows now"),
        (name = "metering", description = "Node leases, usage and upgrade requests: committed before the answer"),
        (name = "operations", description = "Health, metrics, events and this document"),
    )
)]
struct VerifierApi;

static DOCUMENT: LazyLock<Document> = LazyLock::new(|| {
    kaching_kit::openapi::finish(
        VerifierApi::openapi(),
        env!("CARGO_PKG_VERSION"),
        "The verifier's API token (`token_file`, `KACHING_TOKEN_FILE`): needed on every route but `/healthz` and `/openapi.json` when set, and always set on a non-loopback address.",
    )
});

/// The verifier API's OpenAPI document.
pub fn document() -> &'static Document {
    &DOCUMENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_on_the_router_is_in_the_openapi_document() {
        let doc = serde_json::to_value(document()).unwrap();
        kaching_testkit::assert_document_matches_router(&doc, include_str!("api.rs"), &[]);
    }

    #[test]
    fn nullable_fields_are_nullable_and_always_present() {
        let doc = serde_json::to_value(document()).unwrap();
        // Nullable fields are nullable and present: WHOOSH's `string | null`.
        let status = &doc["components"]["schemas"]["LicenseStatus"];
        for field in ["license_id", "tier", "expires_at"] {
            assert_eq!(
                status["properties"][field]["type"],
                serde_json::json!(["string", "null"]),
                "{field}: {status}"
            );
            assert!(
                status["required"]
                    .as_array()
                    .unwrap()
                    .contains(&field.into()),
                "{field} is always sent: {status}"
            );
        }
    }
}
