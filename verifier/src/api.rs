//! The local HTTP API (DESIGN §5). Reads are served from the published
//! verdict with no database I/O; writes go to the engine thread and are
//! acknowledged only after they are committed.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use futures_util::StreamExt;
use kaching_core::wire::verifier::{
    FeatureAnswer, Health, LeaseAnswer, LeaseRefused, LicenseAnswer, NodeList, QuotasAnswer,
    ReleaseAnswer, UpgradeBody, UpgradeList, UpgradeQueued, UsageAnswer, UsageRefused,
    UsageRequest, VerifierStatus,
};
use kaching_core::wire::ErrorBody;
use kaching_kit::http::{json as json_answer, json_bytes};
use kaching_kit::serve::request_timeout;
use tokio::sync::{oneshot, watch, Semaphore};
use tokio_stream::wrappers::BroadcastStream;

use crate::actor::{Command, Handle, ReplyTo, Write};
use crate::config::Secret;
use crate::engine::Outcome;
use crate::error::{request_timed_out, ApiError};
use crate::responses::{Busy, JsonBody, NodeId, PathParam, Unauthorized, WrongHost};

/// Shared by every handler: one pointer, so the per-request clones that
/// axum's extractors and middleware make cost one reference count, not one
/// per field (the engine handle alone holds three channel ends).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// Wraps what the handlers share.
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] points to.
pub struct Shared {
    /// The engine.
    pub handle: Handle,
    /// Bearer token required on every route but `/healthz`, when set.
    pub token: Option<Arc<Secret>>,
    /// Without a token: the `Host` names answered besides loopback ones
    /// (`allowed_hosts`; see [`host_guard`]).
    pub allowed_hosts: Arc<[String]>,
    /// Failed sign-ins at `/ui/login` per client address.
    pub sign_ins: Arc<kaching_kit::web::guard::SignInLimit>,
    /// Flips to true at shutdown, ending event streams so shutdown can finish.
    pub stopping: watch::Receiver<bool>,
    /// Slots for `GET /v1/events` streams (see [`Limits::max_event_streams`]).
    pub event_streams: Arc<Semaphore>,
    /// The OpenAPI document served at `/openapi.json` (handed in, so the API
    /// does not import the document built from it).
    pub document: fn() -> &'static utoipa::openapi::OpenApi,
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
    let auth = {
        let st = state.clone();
        crate::front::Check::new(move |req: &Request| unauthorized(&st, req))
    };
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
        .route("/openapi.json", get(openapi_json))
        .merge(v1)
        .with_state(state.clone());
    let short = request_timeout(short, limits.request_timeout, request_timed_out);
    // The event stream bounds its own lifetime (EVENTS_MAX_LIFETIME, shutdown).
    let long = Router::new()
        .route("/v1/events", get(events))
        .route_layer(auth)
        .with_state(state.clone());
    // The license page (`/ui/`): HTML, not part of the OpenAPI document;
    // its routes are in ui/mod.rs and stay under /ui/.
    let ui = crate::ui::router(state.clone(), limits.request_timeout);
    let hosts = crate::front::Check::new(move |req: &Request| wrong_host(&state, req));
    short
        .merge(long)
        .merge(ui)
        .route_layer(crate::front::Count)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limits.max_body))
        .layer(hosts)
}

/// Without a token the API trusts whoever can reach loopback, so it must
/// not answer a browser that reached it under another site's name: a page
/// on evil.example that re-points evil.example at 127.0.0.1 (DNS
/// rebinding) is same-origin with what it fetches, and could read and
/// write the API. Browsers always send the name they used in `Host`, so a
/// `Host` that is not loopback (nor listed in `allowed_hosts`) is refused
/// with 421. A request with no `Host` at all comes from no browser and
/// passes. With a token this is not needed: a page cannot send it.
fn wrong_host(st: &AppState, req: &Request) -> Option<Response> {
    // The page under /ui has its own gate, which answers people in HTML.
    let page = req.uri().path() == "/ui" || req.uri().path().starts_with("/ui/");
    if st.token.is_none()
        && !page
        && req.headers().contains_key(header::HOST)
        && !kaching_kit::web::guard::host_allowed(req.headers(), &st.allowed_hosts)
    {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?")
            .to_string();
        tracing::warn!(%host, path = %req.uri().path(), "request under a name that is not this machine's refused (DNS rebinding?)");
        let refused = ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "host_not_allowed",
            format!(
                "this API answers only as 127.0.0.1, localhost or [::1] (any port), not as {host:?}: \
                 use one of those, or add the name to allowed_hosts in the verifier's configuration"
            ),
        );
        return Some(refused.into_response());
    }
    None
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

/// The bearer-token refusal, when a token is set and the request lacks it.
fn unauthorized(st: &AppState, req: &Request) -> Option<Response> {
    if let Some(token) = &st.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .unwrap_or("");
        if !same(given.as_bytes(), token.0.as_bytes()) {
            tracing::warn!(path = %req.uri().path(), "request without a valid bearer token refused");
            return Some(
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "send the API token as `Authorization: Bearer <token>`",
                )
                .into_response(),
            );
        }
    }
    None
}

/// Liveness: `{"ok": true}` while the process answers, whatever the license state.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses(
        (status = 200, description = "The process answers", body = Health),
        Busy,
        WrongHost,
    ),
    security(())
)]
pub(crate) async fn healthz() -> Json<Health> {
    Json(Health { ok: true })
}

/// WHOOSH's `LicenseStatus` plus this cluster's details (served from memory).
#[utoipa::path(
    get,
    path = "/v1/status",
    tag = "license",
    responses(
        (status = 200, description = "The verdict in force", body = VerifierStatus),
        Unauthorized,
        Busy,
        WrongHost,
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn status(State(st): State<AppState>) -> Response {
    let bytes = st.handle.published.borrow().status_json.clone();
    json_bytes(StatusCode::OK, bytes)
}

/// The license in force, as the vendor signed it, and the root of trust.
#[utoipa::path(
    get,
    path = "/v1/license",
    tag = "license",
    responses(
        (status = 200, description = "The license and root in force (null when none)", body = LicenseAnswer),
        Unauthorized,
        Busy,
        WrongHost,
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn license(State(st): State<AppState>) -> Response {
    let bytes = st.handle.published.borrow().license_json.clone();
    json_bytes(StatusCode::OK, bytes)
}

/// Quota usage in the current period.
#[utoipa::path(
    get,
    path = "/v1/quotas",
    tag = "license",
    responses(
        (status = 200, description = "Quota name to used, limit, period and percent", body = QuotasAnswer),
        Unauthorized,
        Busy,
        WrongHost,
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn quotas(State(st): State<AppState>) -> Response {
    let bytes = st.handle.published.borrow().quotas_json.clone();
    json_bytes(StatusCode::OK, bytes)
}

/// May this feature run now? Names are exact (`Analytics` is not `analytics`).
#[utoipa::path(
    get,
    path = "/v1/features/{name}",
    tag = "license",
    params(("name" = String, Path, min_length = 1, max_length = 128, description = "Feature name")),
    responses(
        (status = 200, description = "Allowed or denied, and why (a denial is still a 200)", body = FeatureAnswer),
        PathParam,
        (status = 422, description = "`invalid_request`: the name is longer than 128 characters", body = ErrorBody),
        Unauthorized,
        Busy,
        WrongHost,
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn feature(
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
    command(st, make).await.map(respond)
}

/// Sends a command and waits for the engine's outcome (the license page
/// asks through here too).
pub(crate) async fn command(
    st: &AppState,
    make: impl FnOnce(ReplyTo) -> Command,
) -> Result<Outcome, ApiError> {
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
    Ok(outcome)
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
        Outcome::IdempotencyKeyReused(e) => json_answer(StatusCode::UNPROCESSABLE_ENTITY, &e),
        Outcome::UpgradeQueued(q) => json_answer(StatusCode::ACCEPTED, &q),
        Outcome::UpgradeRefused(e) => json_answer(StatusCode::UNPROCESSABLE_ENTITY, &e),
        Outcome::StateDatabaseLost(e) => json_answer(StatusCode::SERVICE_UNAVAILABLE, &e),
        Outcome::Upgrades(list) => json_answer(StatusCode::OK, &list),
        Outcome::Nodes(list) => json_answer(StatusCode::OK, &list),
    }
}

/// The live node leases, by node id.
#[utoipa::path(
    get,
    path = "/v1/nodes",
    tag = "metering",
    responses(
        (status = 200, description = "Live leases and the node ceiling", body = NodeList),
        Unauthorized,
        Busy,
        WrongHost,
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn list_nodes(State(st): State<AppState>) -> Result<Response, ApiError> {
    ask(&st, Command::ListNodes).await
}

/// Takes or renews a node's lease (TTL `lease_ttl`).
#[utoipa::path(
    put,
    path = "/v1/nodes/{node_id}",
    tag = "metering",
    params(("node_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,128}$", description = "1 to 128 characters of A-Z a-z 0-9 . _ : -")),
    responses(
        (status = 200, description = "Granted or renewed (`code` is `node_overage` within the overage)", body = LeaseAnswer),
        (status = 403, description = "Refused: `node_limit`, or `license_<state>` when the license is not usable", body = LeaseRefused),
        PathParam,
        NodeId,
        Unauthorized,
        Busy,
        WrongHost,
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn lease(
    State(st): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    valid_node(&id)?;
    ask(&st, |r| Command::Write(Write::Lease(id), r)).await
}

/// Releases a node's lease (releasing twice is fine).
#[utoipa::path(
    delete,
    path = "/v1/nodes/{node_id}",
    tag = "metering",
    params(("node_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,128}$", description = "1 to 128 characters of A-Z a-z 0-9 . _ : -")),
    responses(
        (status = 200, description = "Released (`removed` is false when it held none)", body = ReleaseAnswer),
        PathParam,
        NodeId,
        Unauthorized,
        Busy,
        WrongHost,
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn release(
    State(st): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    valid_node(&id)?;
    ask(&st, |r| Command::Write(Write::Release(id), r)).await
}

/// Spends quota (counters) or reports a level (gauges); idempotent by key.
#[utoipa::path(
    post,
    path = "/v1/usage",
    tag = "metering",
    request_body = UsageRequest,
    responses(
        (status = 200, description = "Counted, or the answer to a repeated key (header `Idempotent-Replayed: true`); a gauge over its limit is recorded with `allowed: false`", body = UsageAnswer,
            headers(("Idempotent-Replayed" = String, description = "`true` when this key was counted before"))),
        (status = 403, description = "Refused: `quota_exceeded`, `unknown_quota`, or `license_<state>`", body = UsageRefused),
        JsonBody,
        (status = 422, description = "`invalid_body` (a field is missing or of the wrong type), `invalid_request` (metric or key length) or `idempotency_key_reused` (the key was counted before for another metric or amount; nothing was counted)", body = ErrorBody),
        Unauthorized,
        Busy,
        WrongHost,
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn usage(
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
        Command::Write(Write::Spend(b.metric, b.amount, b.idempotency_key), r)
    })
    .await
}

/// Queues an upgrade request for the vendor.
#[utoipa::path(
    post,
    path = "/v1/upgrade-requests",
    tag = "metering",
    request_body = UpgradeBody,
    responses(
        (status = 202, description = "Queued; carried in the next usage report or heartbeat", body = UpgradeQueued),
        JsonBody,
        (status = 422, description = "`unknown_tier` (with the nearest name), `not_an_upgrade`, `invalid_body` or `invalid_request` (field lengths)", body = ErrorBody),
        Unauthorized,
        Busy,
        WrongHost,
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn upgrade(
    State(st): State<AppState>,
    body: Result<Json<UpgradeBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body?;
    check_upgrade(&b)?;
    ask(&st, |r| {
        Command::Write(Write::Upgrade(b.requested_tier, b.message), r)
    })
    .await
}

/// The field lengths of an upgrade request (the tier itself is the engine's).
pub(crate) fn check_upgrade(b: &UpgradeBody) -> Result<(), ApiError> {
    use kaching_core::cluster::{MAX_TIER_NAME, MAX_UPGRADE_MESSAGE};
    if b.requested_tier.len() > MAX_TIER_NAME || b.message.len() > MAX_UPGRADE_MESSAGE {
        return Err(ApiError::invalid(format!(
            "requested_tier is at most {MAX_TIER_NAME} characters and message at most {MAX_UPGRADE_MESSAGE}"
        )));
    }
    Ok(())
}

/// The queued upgrade requests, oldest first.
#[utoipa::path(
    get,
    path = "/v1/upgrade-requests",
    tag = "metering",
    responses(
        (status = 200, description = "Everything queued", body = UpgradeList),
        Unauthorized,
        Busy,
        WrongHost,
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn list_upgrades(State(st): State<AppState>) -> Result<Response, ApiError> {
    ask(&st, Command::ListUpgrades).await
}

/// Server-sent events: the full status first, then one event per change
/// (`status`, `reload`, `rejected`, `upgrade_request`, `lagged`). Ends after
/// an hour and at shutdown; reconnect.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "operations",
    responses(
        (status = 200, description = "An event stream; each event's data is JSON (`status`: the `/v1/status` body, `reload`: `ReloadEvent`, `rejected`: `Rejection`, `upgrade_request`: `UpgradeQueued`, `receipt`: `{report_seq, upgrade_requests, periods, source}` (a receipt from the relay applied), `lagged`: `{}`)", body = String, content_type = "text/event-stream"),
        (status = 503, description = "`unavailable`: too many open event streams; poll `GET /v1/status` instead", body = ErrorBody),
        Unauthorized,
        WrongHost,
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn events(State(st): State<AppState>) -> Response {
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

/// Prometheus text exposition.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus metrics", body = String, content_type = "text/plain; version=0.0.4"),
        (status = 503, description = "`unavailable`: no metrics recorder in this process, or `request_timeout`", body = ErrorBody),
        Unauthorized,
        WrongHost,
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn metrics() -> Response {
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

/// This document (no token needed: it holds nothing secret).
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API", body = Object),
        Busy,
        WrongHost,
    ),
    security(())
)]
pub(crate) async fn openapi_json(State(s): State<AppState>) -> Response {
    kaching_kit::openapi::answer((s.document)())
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
