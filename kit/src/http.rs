//! JSON answers for both daemons' HTTP APIs. The error body
//! ([`kaching_core::wire::ErrorBody`]) is written here and nowhere else.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use kaching_core::wire::ErrorBody;

/// `status` with `{"error": {"code", "message"}}`.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    json(status, &ErrorBody::new(code, message))
}

/// `status` with `body` as JSON. A body that cannot be serialized (a map
/// with non-string keys: a programming error) is answered as a 500 error
/// body, never as an empty 200.
pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => json_bytes(status, bytes),
        Err(e) => {
            tracing::error!(%e, "cannot serialize an answer");
            let fallback =
                ErrorBody::new("internal", "the answer could not be encoded; retry later");
            let bytes = serde_json::to_vec(&fallback).unwrap_or_default();
            json_bytes(StatusCode::INTERNAL_SERVER_ERROR, bytes)
        }
    }
}

/// `status` with pre-serialized JSON `bytes`.
pub fn json_bytes(status: StatusCode, bytes: impl Into<axum::body::Body>) -> Response {
    let mut resp = (status, bytes.into()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_has_the_documented_shape() {
        let resp = error(StatusCode::FORBIDDEN, "node_limit", "at the ceiling");
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            resp.headers()
                .get(header::CONTENT_TYPE)
                .map(|v| v.as_bytes()),
            Some(&b"application/json"[..])
        );
    }
}
