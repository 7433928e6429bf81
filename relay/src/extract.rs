//! Request extractors whose rejections are our JSON errors, and the bearer
//! token check that logs the detail and tells the client little.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};

use crate::error::ApiError;
use crate::state::AppState;
use crate::tokens::Scope;

/// The raw request body, size-limited by the router's body limit.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Bytes::from_request(req, state).await {
            Ok(b) => Ok(RawBody(b)),
            Err(rej) if rej.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "request body is larger than the relay accepts (max_body_bytes)",
            )),
            Err(rej) => Err(ApiError::bad_request(format!(
                "cannot read the request body: {rej}"
            ))),
        }
    }
}

/// Parses a JSON body into `T`, with a 400 that names the problem.
pub fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("request body is not the expected JSON: {e}")))
}

/// An authenticated caller: a live token's name and scope.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Token name (recorded in the audit log).
    pub name: String,
    /// Token scope.
    pub scope: Scope,
}

impl Caller {
    /// Refuses with 403 unless the token is `admin` or one of `allowed`.
    pub fn require(&self, allowed: &[Scope]) -> Result<(), ApiError> {
        if self.scope == Scope::Admin || allowed.contains(&self.scope) {
            return Ok(());
        }
        tracing::warn!(token = %self.name, scope = %self.scope, needed = ?allowed, "token scope refused");
        Err(ApiError::forbidden(
            "forbidden",
            "this token's scope does not allow this request",
        ))
    }
}

fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing or invalid bearer token: send Authorization: Bearer <token> (made by `kaching-relay token create`)",
    )
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is
/// case-insensitive (RFC 9110 §11.1), so `bearer` and `BEARER` work too.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    Some(token.trim()).filter(|t| !t.is_empty())
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            tracing::info!(path = %parts.uri.path(), "request without a bearer token");
            return Err(unauthorized());
        };
        let token = value
            .to_str()
            .ok()
            .and_then(bearer_token)
            .ok_or_else(|| {
                tracing::warn!(path = %parts.uri.path(), "malformed Authorization header");
                unauthorized()
            })?
            .to_string();
        let found = state.storage.lookup_token(token).await?;
        match found {
            Some((name, scope, false)) => Ok(Caller { name, scope }),
            Some((name, _, true)) => {
                tracing::warn!(token = %name, path = %parts.uri.path(), "revoked token used");
                Err(unauthorized())
            }
            None => {
                tracing::warn!(path = %parts.uri.path(), "unknown bearer token");
                Err(unauthorized())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for v in [
            "Bearer kr_1",
            "bearer kr_1",
            "BEARER kr_1",
            "BeArEr   kr_1 ",
        ] {
            assert_eq!(bearer_token(v), Some("kr_1"), "{v:?}");
        }
        for v in ["Basic kr_1", "Bearer", "Bearer ", "Bearerkr_1", "kr_1", ""] {
            assert_eq!(bearer_token(v), None, "{v:?}");
        }
    }
}
