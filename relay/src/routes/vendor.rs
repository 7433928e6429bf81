//! Vendor-side endpoints: license status and quotas (WHOOSH), clusters,
//! upgrade requests, and the relay's public key.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use kaching_kit::http::json as answer;
use rusqlite::{params, OptionalExtension};
use serde::Deserialize;

use kaching_core::cluster::UpgradeRequest;
use kaching_core::policy::{evaluate, LicenseInput, Settings, Snapshot};
use kaching_core::time::rfc3339;
use kaching_core::wire::relay::{
    Anomaly, ClusterPage, ClusterRow, FileUpgrade, LicenseQuotas, UpgradeFiled, UpgradeRow,
    UpgradeRows,
};
use kaching_core::wire::ErrorBody;
use kaching_core::wire::LicenseStatus;
use kaching_core::{verify_license, LicenseId};

use crate::db::now;
use crate::error::{ApiError, ApiResult};
use crate::extract::{json, Caller, RawBody};
use crate::responses::{Busy, Internal, LicenseLookup, RateLimited, Token, TooLarge};
use crate::state::AppState;
use crate::store::{Outcome, Write};
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

/// The latest picture of one license: its bytes and its cluster's last heartbeat.
struct View {
    bytes: Vec<u8>,
    cluster: Option<(String, u64, u64, String)>,
    /// Signs of rollback seen in any of its clusters' heartbeats, newest first.
    anomalies: Vec<(String, u64, String)>,
}

async fn view(st: &AppState, id: LicenseId) -> ApiResult<View> {
    let key = id.to_string();
    let found = st
        .readers
        .read(move |c| {
            let bytes: Option<Vec<u8>> = c
                .query_row("SELECT bytes FROM licenses WHERE license_id = ?1", [&key], |r| r.get(0))
                .optional()?;
            let cluster = c
                .query_row(
                    "SELECT cluster_id, last_seen, active_nodes, quotas FROM clusters WHERE license_id = ?1
                     ORDER BY status = 'active' DESC, last_seen DESC LIMIT 1",
                    [&key],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()?;
            let anomalies = c
                .prepare_cached(
                    "SELECT cluster_id, at, detail FROM anomalies WHERE license_id = ?1
                     ORDER BY id DESC LIMIT ?2",
                )?
                .query_map(params![key, MAX_ANOMALIES], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(bytes.map(|bytes| View {
                bytes,
                cluster,
                anomalies,
            }))
        })
        .await?;
    found.ok_or_else(|| {
        ApiError::not_found(format!(
            "license {id} has never been activated on this relay: it shows up after its cluster's first activation"
        ))
    })
}

/// A cluster's stored quota usage (JSON text written from its last
/// heartbeat); text that does not parse reads as no usage.
fn parse_quotas(text: &str) -> BTreeMap<String, u64> {
    serde_json::from_str(text).unwrap_or_default()
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
    status.warnings.extend(
        v.anomalies.iter().map(|(cluster, at, detail)| {
            format!("cluster {cluster} at {}: {detail}", rfc3339(*at))
        }),
    );
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
        .readers
        .read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT c.cluster_id, license_id, hostname, status, activated_at, last_seen, last_seq,
                        heartbeats, state, active_nodes, quotas, verifier_version, h.report_seq
                 FROM clusters c LEFT JOIN chain_heads h ON h.cluster_id = c.cluster_id
                 WHERE (?1 IS NULL OR license_id = ?1) AND c.cluster_id > ?2
                 ORDER BY c.cluster_id LIMIT ?3",
            )?;
            let rows = stmt.query_map(
                params![q.license, q.after.unwrap_or_default(), limit],
                |r| {
                    let quotas: String = r.get(10)?;
                    Ok(ClusterRow {
                        cluster_id: r.get(0)?,
                        license_id: r.get(1)?,
                        hostname: r.get(2)?,
                        status: r.get(3)?,
                        activated_at: rfc3339(r.get(4)?),
                        last_seen: rfc3339(r.get(5)?),
                        last_seq: r.get(6)?,
                        heartbeats: r.get(7)?,
                        state: r.get(8)?,
                        active_nodes: r.get(9)?,
                        quotas: parse_quotas(&quotas),
                        verifier_version: r.get(11)?,
                        report_seq: r.get(12)?,
                        anomalies: Vec::new(),
                    })
                },
            )?;
            let mut rows = rows.collect::<Result<Vec<_>, _>>()?;
            attach_anomalies(c, &mut rows)?;
            Ok(rows)
        })
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

/// Fills in each row's latest signs of rollback (one query for the page).
fn attach_anomalies(c: &rusqlite::Connection, rows: &mut [ClusterRow]) -> rusqlite::Result<()> {
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Ok(());
    };
    let mut stmt = c.prepare_cached(
        "SELECT cluster_id, at, kind, detail FROM anomalies
         WHERE cluster_id >= ?1 AND cluster_id <= ?2 ORDER BY cluster_id, id DESC",
    )?;
    let found = stmt.query_map(params![first.cluster_id, last.cluster_id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            Anomaly {
                at: rfc3339(r.get(1)?),
                kind: r.get(2)?,
                detail: r.get(3)?,
            },
        ))
    })?;
    for f in found {
        let (cluster, a) = f?;
        if let Ok(i) = rows.binary_search_by(|r| r.cluster_id.as_str().cmp(&cluster)) {
            if rows[i].anomalies.len() < MAX_ANOMALIES {
                rows[i].anomalies.push(a);
            }
        }
    }
    Ok(())
}

/// Signs of rollback shown per cluster and per license.
const MAX_ANOMALIES: usize = 10;

/// `POST /v1/upgrade-requests` (whoosh or admin).
#[utoipa::path(
    post,
    path = "/v1/upgrade-requests",
    tag = "vendor",
    request_body(content = FileUpgrade, description = "Read as JSON whatever the Content-Type"),
    responses(
        (status = 201, description = "Filed", body = UpgradeFiled),
        (status = 200, description = "The same request was filed before", body = UpgradeFiled),
        (status = 400, description = "`bad_request`: not the expected JSON, not a license id, or a tier outside the catalog (with the nearest name)", body = ErrorBody),
        (status = 404, description = "`not_found`: the license was never activated on this relay", body = ErrorBody),
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
    view(&st, id).await?;
    let t = now();
    let outcome = st
        .writer
        .submit(Write::FileUpgrade {
            license_id: id.to_string(),
            request: UpgradeRequest {
                requested_tier: b.requested_tier,
                message: b.message,
                time: t,
            },
            actor: caller.name,
            now: t,
        })
        .await?;
    let created = matches!(outcome, Outcome::Filed(true));
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
    let rows = st
        .readers
        .read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT license_id, cluster_id, requested_tier, message, time, received_at, source
                 FROM upgrade_requests WHERE (?1 IS NULL OR license_id = ?1)
                 ORDER BY id DESC LIMIT 1000",
            )?;
            let rows = stmt.query_map(params![q.license], |r| {
                let cluster: String = r.get(1)?;
                Ok(UpgradeRow {
                    license_id: r.get(0)?,
                    // Filed through the API: stored as '', answered as null.
                    cluster_id: (!cluster.is_empty()).then_some(cluster),
                    requested_tier: r.get(2)?,
                    message: r.get(3)?,
                    time: rfc3339(r.get(4)?),
                    received_at: rfc3339(r.get(5)?),
                    source: r.get(6)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await?;
    Ok(answer(
        StatusCode::OK,
        &UpgradeRows {
            upgrade_requests: rows,
        },
    ))
}
