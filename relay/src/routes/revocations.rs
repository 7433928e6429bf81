//! `GET /v1/revocations` (ETag, long-poll) and `PUT /v1/revocations` (publish).
//!
//! The relay only stores and forwards: a list is accepted when a trusted
//! vendor key signed it and its version is higher than the current one, and
//! it is served byte for byte as the vendor signed it.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use kaching_core::revocation::{verify_revocation_list, Acceptance};
use kaching_core::wire::relay::PublishAnswer;
use kaching_core::wire::ErrorBody;
use kaching_core::DocKind;

use crate::db::now;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, RawBody};
use crate::responses::{Busy, Internal, RateLimited, SignedDocument, Token, TooLarge};
use crate::state::{AppState, CurrentList};
use crate::tokens::Scope;

/// Query of `GET /v1/revocations`.
#[derive(Deserialize)]
pub struct Params {
    /// The version the client holds: answer only with a newer one.
    after: Option<u64>,
    /// How long to wait for a newer one (`30s`), capped by `long_poll_max`.
    wait: Option<String>,
}

fn serve(cur: &CurrentList) -> Response {
    let mut resp = (
        [
            (header::CONTENT_TYPE, DocKind::RevocationList.content_type()),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        cur.verified.bytes.clone(),
    )
        .into_response();
    insert_tags(resp.headers_mut(), cur);
    resp
}

fn insert_tags(h: &mut HeaderMap, cur: &CurrentList) {
    if let Ok(v) = HeaderValue::from_str(&cur.etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        "x-kaching-revocation-version",
        HeaderValue::from(cur.version()),
    );
}

fn not_modified(cur: Option<&CurrentList>) -> Response {
    let mut resp = StatusCode::NOT_MODIFIED.into_response();
    if let Some(c) = cur {
        insert_tags(resp.headers_mut(), c);
    }
    resp
}

/// `GET /v1/revocations[?after=N][&wait=30s]`.
#[utoipa::path(
    get,
    path = "/v1/revocations",
    tag = "distribution",
    params(
        ("after" = Option<u64>, Query, description = "The version the client holds: answer only with a newer one"),
        ("wait" = Option<String>, Query, description = "Long-poll: how long to wait for a newer list (`30s`), capped by `long_poll_max`"),
        ("If-None-Match" = Option<String>, Header, description = "The ETag of the list the client holds (like `after`)"),
    ),
    responses(
        (status = 200, description = "The current list, byte for byte as the vendor signed it", body = SignedDocument, content_type = "application/vnd.kaching.revocations+cbor",
            headers(
                ("ETag" = String, description = "Names this list"),
                ("X-Kaching-Revocation-Version" = u64, description = "The list's version"),
            )),
        (status = 304, description = "Nothing newer than the client holds (also when the wait ran out, or at shutdown)",
            headers(
                ("ETag" = String, description = "The current list's, when there is one"),
                ("X-Kaching-Revocation-Version" = u64, description = "The current version, when there is one"),
            )),
        (status = 400, description = "`bad_request`: `after` is not a version or `wait` not a duration", body = ErrorBody),
        (status = 404, description = "`not_found`: no list has been published to this relay yet", body = ErrorBody),
        (status = 503, description = "`unavailable`: the relay is shutting down; `long_polls_full`: the poll would wait but `max_long_polls` polls are already parked (the client holds the newest list); ask again after `Retry-After`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before polling again"))),
        RateLimited,
    ),
    security(())
)]
pub async fn get(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(p) = query.map_err(|e| {
        ApiError::bad_request(format!(
            "bad query: {e}; use ?after=<version>&wait=<duration like 30s>"
        ))
    })?;
    let wait = match &p.wait {
        None => Duration::ZERO,
        Some(w) => humantime::parse_duration(w)
            .map_err(|e| {
                ApiError::bad_request(format!("wait={w:?} is not a duration like 30s ({e})"))
            })?
            .min(st.config.long_poll_max),
    };
    // If-None-Match with the current ETag means "I hold that version".
    let inm = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut rx = st.revocations.subscribe();
    let mut shutdown = st.shutdown.clone();
    let deadline = tokio::time::Instant::now() + wait;
    // Counted in kaching_relay_long_polls_waiting from the first park until
    // this request ends (answered, its wait over, or cut off at shutdown).
    let mut parked = None;
    loop {
        let cur = rx.borrow_and_update().clone();
        let held = p.after.or_else(|| {
            let c = cur.as_ref()?;
            (inm.as_deref() == Some(c.etag.as_str())).then(|| c.version())
        });
        if let Some(c) = &cur {
            if held.is_none_or(|h| c.version() > h) {
                return Ok(serve(c));
            }
        }
        if wait.is_zero() || shutdown.is_shutdown() {
            return match (cur, held) {
                (None, None) => Err(ApiError::not_found(
                    "no revocation list has been published to this relay yet",
                )),
                (c, _) => Ok(not_modified(c.as_deref())),
            };
        }
        if parked.is_none() {
            match st.metrics.try_park() {
                Some(p) => parked = Some(p),
                None => return Ok(full(st.config.long_poll_max)),
            }
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return Err(ApiError::unavailable()) },
            _ = tokio::time::sleep_until(deadline) => {
                let cur = rx.borrow().clone();
                return match cur {
                    Some(c) if held.is_none_or(|h| c.version() > h) => Ok(serve(&c)),
                    Some(c) => Ok(not_modified(Some(&c))),
                    None if held.is_some() => Ok(not_modified(None)),
                    None => Err(ApiError::not_found("no revocation list has been published to this relay yet")),
                };
            }
            () = shutdown.recv() => return Ok(not_modified(rx.borrow().as_deref())),
        }
    }
}

/// 503 `long_polls_full`: every long-poll place is taken. The client holds
/// the newest list (a newer one is served before a poll parks), so it only
/// needs to ask again: `Retry-After` is spread over the upper half of
/// `long_poll_max`, so refused clusters come back neither together nor later
/// than a parked poll would have been re-sent. The connection is closed: the
/// client will not use it before then, and an idle one costs the relay
/// memory (~11 KiB, docs/benchmarks.md) until `idle_timeout`.
fn full(long_poll_max: Duration) -> Response {
    let max = long_poll_max.as_secs().max(2);
    let noise = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    let mut e = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "long_polls_full",
        "this relay is holding as many long-polls as it may (max_long_polls); you hold the newest revocation list: ask again after Retry-After",
    );
    e.retry_after = Some(max / 2 + noise % (max - max / 2 + 1));
    let mut resp = e.into_response();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// `PUT /v1/revocations` (publish scope): body is the list, binary or armored.
#[utoipa::path(
    put,
    path = "/v1/revocations",
    tag = "distribution",
    request_body(description = "A revocation list signed by the vendor, binary or armored, read whatever the Content-Type", content(
        (SignedDocument = "application/vnd.kaching.revocations+cbor"),
        (SignedDocument = "application/octet-stream"),
        (String = "text/plain"),
    )),
    responses(
        (status = 201, description = "Published: the list is now in force", body = PublishAnswer),
        (status = 200, description = "Already the current list: nothing changed", body = PublishAnswer),
        (status = 409, description = "`rollback_refused`: not newer than the current list (or the same version with other bytes)", body = ErrorBody),
        (status = 422, description = "`invalid_document`: not a revocation list, or not signed by a trusted vendor (revoker) key", body = ErrorBody),
        Token,
        TooLarge,
        RateLimited,
        Internal,
        Busy,
    ),
    security(("bearer" = []))
)]
pub async fn put(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    caller.require(&[Scope::Publish])?;
    // With a root, the list is judged by the root in force, which must not
    // change (a new revoker, a revocation floor) before the list is committed.
    let _serial = match &st.roots {
        Some(r) => Some(r.publish.lock().await),
        None => None,
    };
    let verified = verify_revocation_list(&body, &st.revocation_keys()).map_err(|e| {
        ApiError::invalid_document(
            if st.roots.is_some() {
                "revocation list (checked against the revoker keys of the relay's current root)"
            } else {
                "revocation list"
            },
            e,
        )
    })?;
    let version = verified.list.version;
    let acceptance = st
        .storage
        .publish_list(verified.clone(), caller.name.clone(), now())
        .await?;
    match acceptance {
        Acceptance::Newer => {
            st.serve_if_newer(CurrentList::new(verified));
            tracing::info!(version, token = %caller.name, "revocation list published");
            Ok(kaching_kit::http::json(
                StatusCode::CREATED,
                &PublishAnswer {
                    version,
                    accepted: true,
                    message: None,
                },
            ))
        }
        Acceptance::Same => {
            // The database holds this list already: if this relay does not
            // serve it yet (written by another process), it does from now.
            if st.serve_if_newer(CurrentList::new(verified)) {
                tracing::warn!(
                    version,
                    "the stored revocation list was newer than the one served: serving it now"
                );
            }
            Ok(kaching_kit::http::json(
                StatusCode::OK,
                &PublishAnswer {
                    version,
                    accepted: false,
                    message: Some("this list is already the current one".into()),
                },
            ))
        }
    }
}
