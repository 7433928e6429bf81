//! `GET /metrics`: the route. The counters themselves live in
//! [`crate::metrics`], which knows nothing of the app state.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::db::now;
use crate::error::ApiResult;
use crate::extract::Caller;
use crate::responses::{Busy, Internal, RateLimited, Token};
use crate::state::AppState;
use crate::tokens::Scope;

/// `GET /metrics`: the Prometheus text exposition. Needs a `whoosh` or
/// `admin` token unless `public_metrics = true` (docs/relay.md, "Metrics":
/// the figures tell an outsider how many customers are connected).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus metrics", body = String, content_type = "text/plain; version=0.0.4; charset=utf-8"),
        Token,
        RateLimited,
        Internal,
        Busy,
    ),
    security(("bearer" = []), ())
)]
pub async fn scrape(State(st): State<Arc<AppState>>, req: Request) -> ApiResult<Response> {
    if !st.config.public_metrics {
        let (mut parts, _) = req.into_parts();
        Caller::from_request_parts(&mut parts, &st)
            .await?
            .require(&[Scope::Whoosh])?;
    }
    let bound = st.storage.active_clusters().await?;
    let list = st
        .revocations
        .borrow()
        .as_ref()
        .map(|c| (c.version(), c.verified.list.expires));
    let text = st
        .metrics
        .render(bound, list, &st.storage.commits().read(), now());
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
