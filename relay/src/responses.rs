//! The groups of answers the relay's routes share (and the schema of a signed
//! document body), named once for the OpenAPI document ([`crate::openapi`])
//! and the handlers' attributes ([`crate::routes`]).

use kaching_core::wire::ErrorBody;
use utoipa::{IntoResponses, ToSchema};

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
