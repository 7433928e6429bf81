//! Vendor-side endpoints: license status and quotas (WHOOSH), clusters,
//! upgrade requests, and the relay's public key.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use kaching_kit::http::json as answer;
use serde::Deserialize;

use kaching_core::cluster::UpgradeRequest;
use kaching_core::policy::{check_upgrade_request, evaluate, LicenseInput, Settings, Snapshot};
use kaching_core::wire::relay::{
    ClusterPage, FileUpgrade, LicenseQuotas, UpgradeFiled, UpgradeRows,
};
use kaching_core::wire::ErrorBody;
use kaching_core::wire::LicenseStatus;
use kaching_core::{verify_license, LicenseId};

use crate::db::now;
use crate::error::{ApiError, ApiResult};
use crate::extract::{json, Caller, RawBody};
use crate::responses::{Busy, Internal, LicenseLookup, RateLimited, Token, TooLarge};
use crate::state::AppState;
use crate::storage::{parse_quotas, LicenseView};
use crate::tokens::Scope;

/// `GET /v1/relay-key`: the SPKI PEM clusters pin to check relay-time statements.
#[utoipa::path(
    get,
    path = "/v1/relay-key",
    tag = "operations",
    responses(
        (status = 200, description = "The relay's public key, SPKI PEM", body = String, content_type = "application/x-pem-file"),
        RateLimited,
        Busy,
    ),
    security(())
)]
pub async fn relay_key(State(st): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        st.relay_key.public().to_pem(),
    )
        .into_response()
}

fn parse_id(id: &str) -> ApiResult<LicenseId> {
    id.parse::<LicenseId>().map_err(ApiError::bad_request)
}

async fn view(st: &AppState, id: LicenseId) -> ApiResult<LicenseView> {
    let found = st.storage.license_view(id.to_string()).await?;
    found.ok_or_else(|| {
        ApiError::not_found(format!(
            "license {id} has never been activated on this relay: it shows up after its cluster's first activation"
        ))
    })
}

/// Evaluates the license as the relay sees it now, from its latest heartbeat.
async fn status(st: &AppState, id: LicenseId) -> ApiResult<LicenseStatus> {
    let v = view(st, id).await?;
    let verified = verify_license(&v.bytes, &st.license_keys());
    let rejected;
    let input = match &verified {
        Ok(l) => LicenseInput::Verified(&l.license),
        Err(e) => {
            rejected = e.to_string();
            LicenseInput::Rejected(&rejected)
        }
    };
    let (cluster_id, last_seen, nodes, quotas) = match v.cluster {
        Some((c, seen, n, q)) => (Some(c), Some(seen), n, q),
        None => (None, None, 0, "{}".to_string()),
    };
    let quota_usage = parse_quotas(&quotas);
    let settings = Settings {
        audience: verified
            .as_ref()
            .map(|l| l.license.audience.clone())
            .unwrap_or_else(|_| "bzzz".into()),
        cluster_id,
        ..Settings::default()
    };
    let snapshot = Snapshot {
        trusted_time: 0,
        live_nodes: nodes,
        quota_usage,
        last_relay_contact: last_seen,
        last_acknowledged_report: None,
    };
    let list = st.revocations.borrow().clone();
    let verdict = evaluate(
        input,
        list.as_ref().map(|c| &c.verified.list),
        &snapshot,
        &st.catalog,
        &settings,
        now(),
    );
    let mut status = LicenseStatus::of(&verdict, &st.catalog);
    status
        .warnings
        .extend(v.anomalies.iter().map(|(cluster, at, detail)| {
            format!(
                "cluster {cluster} at {}: {detail}",
                kaching_core::time::rfc3339(*at)
            )
        }));
    Ok(status)
}

/// The license id of a `{id}` path segment.
fn path_id(id: Result<Path<String>, PathRejection>) -> ApiResult<LicenseId> {
    let Path(id) = id.map_err(|e| ApiError::bad_request(format!("bad path: {e}")))?;
    parse_id(&id)
}

/// `GET /v1/licenses/{id}/status` (whoosh or admin).
#[utoipa::path(
    get,
    path = "/v1/licenses/{id}/status",
    tag = "vendor",
    params(("id" = String, Path, format = "uuid", description = "The license id")),
    responses(
        (status = 200, description = "WHOOSH's `LicenseStatus`, evaluated from the license and its cluster's last heartbeat", body = LicenseStatus),
        LicenseLookup,
        Token,
        RateLimited,
        Internal,
        Busy,
    ),
    security(("bearer" = []))
)]
pub async fn license_status(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    caller.require(&[Scope::Whoosh])?;
    Ok(answer(StatusCode::OK, &status(&st, path_id(id)?).await?))
}

/// `GET /v1/licenses/{id}/quotas` (whoosh or admin).
#[utoipa::path(
    get,
    path = "/v1/licenses/{id}/quotas",
    tag = "vendor",
    params(("id" = String, Path, format = "uuid", description = "The license id")),
    responses(
        (status = 200, description = "Quota name to used (last heartbeat) and limit", body = LicenseQuotas),
        LicenseLookup,
        Token,
        RateLimited,
        Internal,
        Busy,
    ),
    security(("bearer" = []))
)]
pub async fn license_quotas(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    caller.require(&[Scope::Whoosh])?;
    let s = status(&st, path_id(id)?).await?;
    Ok(answer(
        StatusCode::OK,
        &LicenseQuotas {
            license_id: s.license_id,
            quotas: s.quotas,
        },
    ))
}

/// Query of `GET /v1/clusters`.
#[derive(Deserialize)]
pub struct ClusterQuery {
    license: Option<String>,
    after: Option<String>,
    limit: Option<u32>,
}

/// `GET /v1/clusters[?license=ID][&after=CLUSTER][&limit=N]` (admin), ordered by cluster id.
#[utoipa::path(
    get,
    path = "/v1/clusters",
    tag = "vendor",
    params(
        ("license" = Option<String>, Query, format = "uuid", description = "Only the clusters of this license id"),
        ("after" = Option<String>, Query, description = "Start after this cluster id (`next_after` of the previous page)"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 10000 (default 1000; values outside are clamped)"),
    ),
    responses(
        (status = 200, description = "One page of clusters, by cluster id", body = ClusterPage),
        (status = 400, description = "`bad_request`: a malformed query or license id", body = ErrorBody),
        Token,
        RateLimited,
        Internal,
        Busy,
    ),
    security(("bearer" = []))
)]
pub async fn clusters(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    query: Result<Query<ClusterQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    caller.require(&[])?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(format!("bad query: {e}")))?;
    if let Some(l) = &q.license {
        parse_id(l)?;
    }
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let rows = st
        .storage
        .clusters(q.license, q.after.unwrap_or_default(), limit)
        .await?;
    let next = if rows.len() == limit as usize {
        rows.last().map(|r| r.cluster_id.clone())
    } else {
        None
    };
    Ok(answer(
        StatusCode::OK,
        &ClusterPage {
            clusters: rows,
            next_after: next,
        },
    ))
}

/// Longest upgrade-request message filed, in bytes: the verifier's limit
/// for the same field, and what keeps the console's pages within budget.
pub use kaching_core::cluster::MAX_UPGRADE_MESSAGE;

/// `POST /v1/upgrade-requests` (whoosh or admin).
#[utoipa::path(
    post,
    path = "/v1/upgrade-requests",
    tag = "vendor",
    request_body(content = FileUpgrade, description = "Read as JSON whatever the Content-Type"),
    responses(
        (status = 201, description = "Filed", body = UpgradeFiled),
        (status = 200, description = "The same request was filed before", body = UpgradeFiled),
        (status = 400, description = "`bad_request`: not the expected JSON, not a license id, a tier outside the catalog (with the nearest name), or a message over 4096 bytes", body = ErrorBody),
        (status = 404, description = "`not_found`: the license was never activated on this relay", body = ErrorBody),
        (status = 422, description = "`not_an_upgrade`: the license already has that tier, or a higher one (the reason names the tiers above)", body = ErrorBody),
        Token,
        TooLarge,
        RateLimited,
        Internal,
        Busy,
    ),
    security(("bearer" = []))
)]
pub async fn file_upgrade(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    caller.require(&[Scope::Whoosh])?;
    let b: FileUpgrade = json(&body)?;
    let id = parse_id(&b.license_id)?;
    if st.catalog.get(&b.requested_tier).is_none() {
        let hint = kaching_core::tiers::closest(&b.requested_tier, st.catalog.names())
            .map(|c| format!(" (did you mean {c:?}?)"))
            .unwrap_or_default();
        return Err(ApiError::bad_request(format!(
            "unknown tier {:?}{hint}: use one of {}",
            b.requested_tier,
            st.catalog.names().join(", ")
        )));
    }
    if b.message.len() > MAX_UPGRADE_MESSAGE {
        return Err(ApiError::bad_request(format!(
            "message is {} bytes: at most {MAX_UPGRADE_MESSAGE} (as the verifier takes); shorten it, or put the details where the request links to",
            b.message.len()
        )));
    }
    let v = view(&st, id).await?;
    // The tier in force is in the stored license: asking for it, or for a
    // lower one, is refused as the verifier refuses it.
    if let Ok(l) = verify_license(&v.bytes, &st.license_keys()) {
        check_upgrade_request(&st.catalog, Some(&l.license.tier), &b.requested_tier).map_err(
            |d| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "not_an_upgrade", d.reason),
        )?;
    }
    let t = now();
    let created = st
        .storage
        .file_upgrade(
            id.to_string(),
            UpgradeRequest {
                requested_tier: b.requested_tier,
                message: b.message,
                time: t,
            },
            caller.name,
            t,
        )
        .await?;
    Ok(answer(
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        &UpgradeFiled {
            license_id: id.to_string(),
            filed: created,
        },
    ))
}

/// Query of `GET /v1/upgrade-requests`.
#[derive(Deserialize)]
pub struct UpgradeQuery {
    license: Option<String>,
}

/// `GET /v1/upgrade-requests[?license=ID]` (admin), newest first, at most 1000.
#[utoipa::path(
    get,
    path = "/v1/upgrade-requests",
    tag = "vendor",
    params(("license" = Option<String>, Query, format = "uuid", description = "Only this license id's requests")),
    responses(
        (status = 200, description = "Upgrade requests, newest first, at most 1000", body = UpgradeRows),
        (status = 400, description = "`bad_request`: a malformed query or license id", body = ErrorBody),
        Token,
        RateLimited,
        Internal,
        Busy,
    ),
    security(("bearer" = []))
)]
pub async fn list_upgrades(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    query: Result<Query<UpgradeQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    caller.require(&[])?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(format!("bad query: {e}")))?;
    if let Some(l) = &q.license {
        parse_id(l)?;
    }
    let rows = st.storage.upgrade_requests(q.license).await?;
    Ok(answer(
        StatusCode::OK,
        &UpgradeRows {
            upgrade_requests: rows,
        },
    ))
}
