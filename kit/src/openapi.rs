//! The pieces both daemons' OpenAPI documents share: the bearer-token
//! security scheme and the `GET /openapi.json` answer. Each daemon derives
//! its own document from its handlers and the wire types of
//! `kaching-core` (feature `openapi`).

use axum::http::StatusCode;
use axum::response::Response;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi;

/// The name of the bearer-token security scheme in both documents.
pub const BEARER: &str = "bearer";

/// A daemon's document as served: `doc` from its `#[derive(OpenApi)]`,
/// stamped with the daemon's `version` and the `bearer` scheme described by
/// `bearer` (where its tokens come from).
pub fn finish(mut doc: OpenApi, version: &str, bearer: &str) -> OpenApi {
    doc.info.version = version.to_string();
    add_bearer(&mut doc, bearer);
    doc
}

/// Adds the `bearer` security scheme (`Authorization: Bearer <token>`),
/// described by `description` (where tokens come from).
pub fn add_bearer(doc: &mut OpenApi, description: &str) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(description))
                .build(),
        ),
    );
}

/// `GET /openapi.json`: the document as JSON (a 500 error body in the
/// impossible case that it does not serialize).
pub fn answer(doc: &OpenApi) -> Response {
    crate::http::json(StatusCode::OK, doc)
}
