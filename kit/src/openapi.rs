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
    unsigned_formats(doc)
}

/// utoipa spells the formats of unsigned integers `u-int32`, `u-int64`;
/// the documents say `uint32`, `uint64`, as OpenAPI tools read them.
fn unsigned_formats(doc: OpenApi) -> OpenApi {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(f)) = map.get_mut("format") {
                    if let Some(bits) = f.strip_prefix("u-int") {
                        *f = format!("uint{bits}");
                    }
                }
                map.values_mut().for_each(walk);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let Ok(mut value) = serde_json::to_value(&doc) else {
        return doc;
    };
    walk(&mut value);
    serde_json::from_value(value).unwrap_or(doc)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsigned_integers_are_uint_formats_and_the_bearer_scheme_is_there() {
        let doc = utoipa::openapi::OpenApiBuilder::new()
            .components(Some(
                utoipa::openapi::ComponentsBuilder::new()
                    .schema(
                        "N",
                        utoipa::openapi::ObjectBuilder::new()
                            .schema_type(utoipa::openapi::schema::Type::Integer)
                            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                                utoipa::openapi::KnownFormat::UInt64,
                            ))),
                    )
                    .build(),
            ))
            .build();
        let doc = serde_json::to_value(finish(doc, "9.9.9", "a token")).unwrap();
        assert_eq!(doc["components"]["schemas"]["N"]["format"], "uint64");
        assert_eq!(doc["info"]["version"], "9.9.9");
        assert_eq!(
            doc["components"]["securitySchemes"][BEARER]["scheme"],
            "bearer"
        );
    }
}
