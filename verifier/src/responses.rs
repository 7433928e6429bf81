//! The groups of error answers the API's routes share, named once for the
//! OpenAPI document ([`crate::openapi`]) and the handlers' attributes
//! ([`crate::api`]).

use kaching_core::wire::ErrorBody;
use utoipa::IntoResponses;

/// 401: a token is configured and the request did not carry it.
#[derive(IntoResponses)]
#[allow(dead_code)] // describes answers; never built
pub enum Unauthorized {
    /// `unauthorized`: send `Authorization: Bearer <token>` (only when the
    /// verifier has a token: `token_file`, required on a non-loopback address).
    #[response(status = 401)]
    Unauthorized(ErrorBody),
}

/// 503 on every route under the request deadline.
#[derive(IntoResponses)]
#[allow(dead_code)] // describes answers; never built
pub enum Busy {
    /// `request_timeout` (past `request_timeout`, with `Retry-After: 1`: a
    /// write may have taken effect, retry with the same idempotency key),
    /// `unavailable` (shutting down, or the state database could not be
    /// written: nothing was counted) or, on writes, `state_database_lost`
    /// (`state.db` was deleted or replaced while the daemon ran: nothing
    /// was recorded; restore it and restart the daemon).
    #[response(status = 503, headers(("Retry-After" = u32, description = "Seconds to wait (request_timeout only)")))]
    Unavailable(ErrorBody),
}

/// The refusals of a JSON request body (before the handler runs).
#[derive(IntoResponses)]
#[allow(dead_code)] // describes answers; never built
pub enum JsonBody {
    /// `malformed_body`: not JSON.
    #[response(status = 400)]
    Malformed(ErrorBody),
    /// `body_too_large`: over `max_body_bytes`.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// `unsupported_media_type`: send `Content-Type: application/json`.
    #[response(status = 415)]
    MediaType(ErrorBody),
}

/// The refusals of a path parameter.
#[derive(IntoResponses)]
#[allow(dead_code)] // describes answers; never built
pub enum PathParam {
    /// `invalid_path`: the segment does not decode (percent-encoding of
    /// bytes that are not UTF-8).
    #[response(status = 400)]
    Invalid(ErrorBody),
    /// `not_found`: an empty segment matches no route.
    #[response(status = 404)]
    NotFound(ErrorBody),
}

/// 422: a node id outside `A-Z a-z 0-9 . _ : -` or longer than 128.
#[derive(IntoResponses)]
#[allow(dead_code)] // describes answers; never built
pub enum NodeId {
    /// `invalid_request`: not a valid node id.
    #[response(status = 422)]
    Invalid(ErrorBody),
}

/// 421 on every route when the API has no token: the request's `Host` is
/// not a loopback name nor in `allowed_hosts` (a DNS-rebinding page).
#[derive(IntoResponses)]
#[allow(dead_code)] // describes answers; never built
pub enum WrongHost {
    /// `host_not_allowed`: call the API as 127.0.0.1, localhost or [::1]
    /// (any port), or list the name in `allowed_hosts`.
    #[response(status = 421)]
    Misdirected(ErrorBody),
}
