//! The local HTTP API (DESIGN §5). Reads are served from the published
//! verdict with no database I/O; writes go to the engine thread and are
//! acknowledged only after they are committed.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use futures_util::StreamExt;
use kaching_core::wire::verifier::{FeatureAnswer, Health, UpgradeBody, UsageRequest};
use kaching_kit::http::{json as json_answer, json_bytes};
use kaching_kit::serve::request_timeout;
use tokio::sync::{oneshot, watch, Semaphore};
use tokio_stream::wrappers::BroadcastStream;

use crate::actor::{Command, Handle, ReplyTo};
use crate::config::Secret;
use crate::engine::Outcome;
use crate::error::{request_timed_out, ApiError};

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    /// The engine.
    pub handle: Handle,
    /// Bearer token required on every route but `/healthz`, when set.
    pub token: Option<Arc<Secret>>,
    /// Flips to true at shutdown, ending event streams so shutdown can finish.
    pub stopping: watch::Receiver<bool>,
    /// Slots for `GET /v1/events` streams (see [`Limits::max_event_streams`]).
    pub event_streams: Arc<Semaphore>,
}

/// What the router bounds by itself (the connection-level bounds are the
/// server loop's: [`kaching_kit::serve::Limits`]).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body in bytes.
    pub max_body: usize,
    /// Deadline of every request except the event stream.
    pub request_timeout: Duration,
}

/// An event stream ends after this long (and at shutdown); clients reconnect
/// (EventSource does so by itself) and get the full status as the first event.
pub const EVENTS_MAX_LIFETIME: Duration = Duration::from_secs(3600);

/// Event streams hold their connection for long: at most this share of the
/// connection cap may be event streams, so they cannot crowd out the API.
pub fn max_event_streams(max_connections: usize) -> usize {
    (max_connections / 4).max(1)
}

/// Builds the router.
pub fn router(state: AppState, limits: Limits) -> Router {
    let auth = middleware::from_fn_with_state(state.clone(), auth);
    let v1 = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/quotas", get(quotas))
        .route("/v1/license", get(license))
        .route("/v1/features/{name}", get(feature))
        .route("/v1/nodes", get(list_nodes))
        .route("/v1/nodes/{node_id}", put(lease).delete(release))
        .route("/v1/usage", axum::routing::post(usage))
        .route(
            "/v1/upgrade-requests",
            axum::routing::post(upgrade).get(list_upgrades),
        )
        .route("/metrics", get(metrics))
        .route_layer(auth.clone());
    let short = Router::new()
        .route("/healthz", get(healthz))
        .merge(v1)
        .with_state(state.clone());
    let short = request_timeout(short, limits.request_timeout, request_timed_out);
    // The event stream bounds its own lifetime (EVENTS_MAX_LIFETIME, shutdown).
    let long = Router::new()
        .route("/v1/events", get(events))
        .route_layer(auth)
        .with_state(state);
    short
        .merge(long)
        .route_layer(middleware::from_fn(count))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limits.max_body))
}

/// Counts every answered request by route template and status
/// (`kaching_api_requests_total`), refusals and timeouts included.
async fn count(route: Option<MatchedPath>, req: Request, next: Next) -> Response {
    let route = route.map_or_else(|| "unmatched".to_string(), |r| r.as_str().to_string());
    let resp = next.run(req).await;
    crate::metrics::api_request(&route, resp.status().as_u16());
    resp
}

/// Constant-time comparison: the token must not leak through timing.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is
/// case-insensitive (RFC 9110 §11.1): `bearer` and `BEARER` work too.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    Some(token.trim()).filter(|t| !t.is_empty())
}

async fn auth(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(token) = &st.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .unwrap_or("");
        if !same(given.as_bytes(), token.0.as_bytes()) {
            tracing::warn!(path = %req.uri().path(), "request without a valid bearer token refused");
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send the API token as `Authorization: Bearer <token>`",
            )
            .into_response();
        }
    }
    next.run(req).await
}

async fn healthz() -> Json<Health> {
    Json(Health { ok: true })
}

async fn status(State(st): State<AppState>) -> Response {
    let bytes = st.handle.published.borrow().status_json.clone();
    json_bytes(StatusCode::OK, bytes)
}

async fn license(State(st): State<AppState>) -> Response {
    let bytes = st.handle.published.borrow().license_json.clone();
    json_bytes(StatusCode::OK, bytes)
}

async fn quotas(State(st): State<AppState>) -> Response {
    let bytes = st.handle.published.borrow().quotas_json.clone();
    json_bytes(StatusCode::OK, bytes)
}

async fn feature(
    State(st): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(name) = name?;
    if name.is_empty() || name.len() > 128 {
        return Err(ApiError::invalid("feature names are 1 to 128 characters"));
    }
    let decision = st.handle.published.borrow().verdict.feature(&name);
    Ok(Json(FeatureAnswer {
        feature: name,
        decision,
    })
    .into_response())
}

fn valid_node(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "node ids are 1 to 128 characters of A-Z a-z 0-9 . _ : -",
        ))
    }
}

/// Sends a command and turns the engine's reply into a response.
async fn ask(st: &AppState, make: impl FnOnce(ReplyTo) -> Command) -> Result<Response, ApiError> {
    let (tx, rx) = oneshot::channel();
    st.handle
        .tx
        .send(make(tx))
        .map_err(|_| ApiError::unavailable("the verifier is shutting down; retry shortly"))?;
    let outcome = rx
        .await
        .map_err(|_| ApiError::unavailable("the verifier is shutting down; retry shortly"))?
        .map_err(|e| {
            tracing::error!(error = %format!("{e:#}"), "state write failed");
            ApiError::unavailable(format!(
                "could not record this in the state database ({e:#}); nothing was counted — retry"
            ))
        })?;
    Ok(respond(outcome))
}

/// The one place a write's outcome becomes an HTTP status.
fn respond(outcome: Outcome) -> Response {
    match outcome {
        Outcome::Leased(a) => json_answer(StatusCode::OK, &a),
        Outcome::LeaseRefused(r) => json_answer(StatusCode::FORBIDDEN, &r),
        Outcome::Released(a) => json_answer(StatusCode::OK, &a),
        Outcome::Counted { json, replayed } => {
            let mut resp = json_bytes(StatusCode::OK, json);
            if replayed {
                resp.headers_mut()
                    .insert("idempotent-replayed", HeaderValue::from_static("true"));
            }
            resp
        }
        Outcome::UsageRefused(r) => json_answer(StatusCode::FORBIDDEN, &r),
        Outcome::UpgradeQueued(q) => json_answer(StatusCode::ACCEPTED, &q),
        Outcome::UpgradeRefused(e) => json_answer(StatusCode::UNPROCESSABLE_ENTITY, &e),
        Outcome::Upgrades(list) => json_answer(StatusCode::OK, &list),
        Outcome::Nodes(list) => json_answer(StatusCode::OK, &list),
    }
}

async fn list_nodes(State(st): State<AppState>) -> Result<Response, ApiError> {
    ask(&st, Command::ListNodes).await
}

async fn lease(
    State(st): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    valid_node(&id)?;
    ask(&st, |r| Command::Lease(id, r)).await
}

async fn release(
    State(st): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    valid_node(&id)?;
    ask(&st, |r| Command::Release(id, r)).await
}

async fn usage(
    State(st): State<AppState>,
    body: Result<Json<UsageRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body?;
    if b.metric.is_empty() || b.metric.len() > 64 {
        return Err(ApiError::invalid("metric names are 1 to 64 characters"));
    }
    if b.idempotency_key.is_empty() || b.idempotency_key.len() > 200 {
        return Err(ApiError::invalid(
            "idempotency_key must be 1 to 200 characters: use a UUID per increment, reused on retry",
        ));
    }
    ask(&st, |r| {
        Command::Spend(b.metric, b.amount, b.idempotency_key, r)
    })
    .await
}

async fn upgrade(
    State(st): State<AppState>,
    body: Result<Json<UpgradeBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body?;
    if b.requested_tier.len() > 64 || b.message.len() > 4096 {
        return Err(ApiError::invalid(
            "requested_tier is at most 64 characters and message at most 4096",
        ));
    }
    ask(&st, |r| Command::Upgrade(b.requested_tier, b.message, r)).await
}

async fn list_upgrades(State(st): State<AppState>) -> Result<Response, ApiError> {
    ask(&st, Command::ListUpgrades).await
}

async fn events(State(st): State<AppState>) -> Response {
    let Ok(slot) = Arc::clone(&st.event_streams).try_acquire_owned() else {
        return ApiError::unavailable(
            "too many open event streams: close one, or poll GET /v1/status instead",
        )
        .into_response();
    };
    // Subscribe before reading the current status so no change falls between.
    let rx = st.handle.events.subscribe();
    let first = SseEvent::default()
        .event("status")
        .data(String::from_utf8_lossy(
            &st.handle.published.borrow().status_json,
        ));
    let mut stopping = st.stopping.clone();
    let stop = async move {
        tokio::select! {
            _ = stopping.wait_for(|s| *s) => {}
            () = tokio::time::sleep(EVENTS_MAX_LIFETIME) => {}
        }
    };
    let live = BroadcastStream::new(rx).filter_map(|e| async move {
        match e {
            Ok(e) => Some(Ok::<_, Infallible>(
                SseEvent::default().event(e.kind).data(e.data),
            )),
            // A slow reader missed events: tell it to re-read the status.
            Err(_) => Some(Ok(SseEvent::default().event("lagged").data("{}"))),
        }
    });
    let stream = futures_util::stream::once(async move { Ok(first) })
        .chain(live)
        .take_until(stop)
        // The slot is given back when the stream ends or the client leaves.
        .map(move |e| {
            let _held = &slot;
            e
        });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn metrics() -> Response {
    match crate::metrics::handle() {
        Some(h) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
        )
            .into_response(),
        None => {
            ApiError::unavailable("metrics recorder unavailable in this process").into_response()
        }
    }
}

async fn method_not_allowed() -> ApiError {
    crate::metrics::api_request("unmatched", 405);
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method: see docs/verifier.md for the API",
    )
}

async fn not_found() -> ApiError {
    crate::metrics::api_request("unmatched", 404);
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint: see docs/verifier.md for the API",
    )
}
