//! The HTTP routes, one file per audience: clusters, revocations, vendor.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::Router;
use kaching_kit::serve::request_timeout;

use crate::error::{request_timed_out, ApiError};
use crate::front::Front;
use crate::ratelimit::Limiter;
use crate::responses::{Busy, RateLimited};
use crate::state::AppState;

pub mod cluster;
pub mod metrics;
pub mod reports;
pub mod revocations;
pub mod roots;
pub mod vendor;

pub mod paths;

pub use paths::{ACTIVATE, HEARTBEAT};

/// Builds the router: every route, the request deadline, the body limit, the
/// rate limiter and, outermost, the request metrics (so that a rate-limited
/// request is counted too).
pub fn router(state: Arc<AppState>) -> Router {
    let limiter = Limiter::new(&state.config.rate_limit);
    let short = Router::new()
        .route(ACTIVATE, post(cluster::activate))
        .route(HEARTBEAT, post(cluster::heartbeat))
        .route("/v1/deactivate", post(cluster::deactivate))
        .route("/v1/revocations", put(revocations::put))
        .route("/v1/roots", get(roots::get).put(roots::put))
        .route("/v1/licenses/{id}/status", get(vendor::license_status))
        .route("/v1/licenses/{id}/quotas", get(vendor::license_quotas))
        .route("/v1/clusters", get(vendor::clusters))
        .route(
            "/v1/upgrade-requests",
            get(vendor::list_upgrades).post(vendor::file_upgrade),
        )
        .route("/v1/relay-key", get(vendor::relay_key))
        .route(
            "/v1/usage-reports",
            get(reports::list_reports).post(reports::post_report),
        )
        .route("/v1/receipts", post(reports::post_receipt))
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi_json))
        .route("/metrics", get(metrics::scrape))
        .with_state(state.clone());
    let short = request_timeout(short, state.config.request_timeout, request_timed_out);
    // The long-poll bounds its own lifetime (long_poll_max, and it ends at
    // shutdown), so the request deadline would only cut it short.
    let long = Router::new()
        .route("/v1/revocations", get(revocations::get))
        .with_state(state.clone());
    short
        .merge(long)
        // The fleet console: HTML for people, outside the API document.
        .merge(crate::console::router(state.clone()))
        .fallback(|| async {
            ApiError::not_found("no such endpoint: see docs/relay.md for the API")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method: see docs/relay.md",
            )
        })
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(Front::new(limiter, state.metrics.clone()))
}

/// `GET /healthz`: `ok` while the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses(
        (status = 200, description = "The process answers", body = String, content_type = "text/plain; charset=utf-8", example = "ok\n"),
        RateLimited,
        Busy,
    ),
    security(())
)]
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /openapi.json`: this API's OpenAPI 3.1 document (no token: it
/// holds nothing secret).
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API", body = Object),
        RateLimited,
        Busy,
    ),
    security(())
)]
pub async fn openapi_json(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
) -> axum::response::Response {
    kaching_kit::openapi::answer((state.document)())
}
