//! The one HTTP error type: a status, a stable machine code and a message a
//! person can act on. Its body is written by [`kaching_kit::http::error`]
//! (`kaching_core::wire::ErrorBody`); this module only maps errors to a
//! status, a code and the `Retry-After` header.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The JSON error code of an error answer, kept in the response's
/// extensions for the metrics middleware (`kaching_relay_refusals_total`).
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

/// An error answered to a client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code (`license_in_use`, `replayed_heartbeat`, …).
    pub code: &'static str,
    /// What is wrong and what to do next.
    pub message: String,
    /// Seconds to wait before retrying (429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 422: a signed document failed verification.
    pub fn invalid_document(what: &str, err: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_document",
            format!("{what} refused: {err}"),
        )
    }

    /// 403: authenticated but not allowed.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    /// 409: conflicts with the relay's state.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 404: nothing here.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 500: the detail is logged, the client learns only that it was our fault.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the relay failed to handle this request; it has been logged, retry later",
        )
    }

    /// 503: the relay is shutting down or its writer stopped.
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the relay is shutting down; retry shortly",
        )
    }
}

/// The answer to a request that ran past `request_timeout` (a plain `fn`
/// because the server loop's timeout layer takes one).
pub fn request_timed_out(limit: std::time::Duration) -> Response {
    let mut e = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "request_timeout",
        format!(
            "the relay did not finish this request within {} (request_timeout); a write may still have taken effect: retry",
            humantime::format_duration(limit)
        ),
    );
    e.retry_after = Some(1);
    e.into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = kaching_kit::http::error(self.status, self.code, &self.message);
        resp.extensions_mut().insert(ErrorCode(self.code));
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        ApiError::internal(format!("database: {e}"))
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => ApiError::internal(format!("database: {db}")),
            None => ApiError::internal(format!("database: {e}")),
        }
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        tracing::warn!(error = %e, "no PostgreSQL connection");
        ApiError::unavailable()
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
