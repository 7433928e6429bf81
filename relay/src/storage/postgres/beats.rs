//! The hot path on PostgreSQL: a batch made only of heartbeats, each from
//! a different cluster, recorded in a constant number of round trips
//! (the bindings read at once under `FOR UPDATE`, then every heartbeat's
//! writes pipelined) instead of two per heartbeat. Same checks, same rows
//! and the same audit chain as [`super::writes::record_heartbeat`], which
//! every other batch uses.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::ClientWrapper;
use futures_util::future::try_join_all;
use tokio_postgres::types::ToSql;

use kaching_core::heartbeat::Heartbeat;

use super::writes::{
    chain_head, held_head, insert_upgrade, int, query, record_anomalies, uint, AuditRow, Head,
};
use crate::error::ApiError;
use crate::store::{beat_action, beat_audit_detail};

/// A heartbeat as queued: the document, the key that signed it, relay time.
pub type Beat = (Heartbeat, [u8; 32], u64);

/// True when `beats` may take the batched path: one heartbeat per cluster.
pub fn distinct_clusters(beats: &[&Beat]) -> bool {
    let mut seen = HashSet::with_capacity(beats.len());
    beats.iter().all(|b| seen.insert(b.0.cluster_id.as_str()))
}

/// A cluster's binding as its heartbeat is checked against it.
struct Binding {
    license: String,
    key: Vec<u8>,
    status: String,
    last_seq: u64,
    /// The cluster's signed time of the last heartbeat accepted.
    last_time: Option<u64>,
    /// The report chain head its heartbeats last named.
    held: Option<kaching_core::heartbeat::ChainHead>,
}

/// What one accepted heartbeat writes (owned, so the pipelined statements
/// can borrow it).
struct Accepted {
    cluster_id: String,
    license_id: String,
    seq: i64,
    now: i64,
    time: i64,
    state: String,
    nodes: i64,
    quotas: String,
    verifier_version: String,
    deactivate: bool,
    audit: AuditRow,
}

const UPDATE: &str =
    "UPDATE clusters SET last_seq = $2, last_seen = $3, heartbeat_time = $4, state = $5,
         active_nodes = $6, quotas = $7, verifier_version = $8, heartbeats = heartbeats + 1,
         status = CASE WHEN $9 THEN 'deactivated' ELSE status END,
         ended_at = CASE WHEN $9 THEN $3 ELSE ended_at END
     WHERE cluster_id = $1 AND last_seq < $2 AND status = 'active'";

const HISTORY: &str =
    "INSERT INTO heartbeats (cluster_id, seq, time, received_at, state, active_nodes, quotas)
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

const AUDIT: &str = "INSERT INTO audit (id, time, actor, action, subject, detail, hash, prev_hash)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// Records `beats` (distinct clusters): one outcome per heartbeat (a
/// refusal has written nothing); `Err` when the batch must be undone.
pub async fn record(
    c: &ClientWrapper,
    head: &mut Head,
    beats: &[&Beat],
) -> Result<Vec<Result<(), ApiError>>, ApiError> {
    let ids: Vec<&str> = beats.iter().map(|b| b.0.cluster_id.as_str()).collect();
    let mut bound: HashMap<String, Binding> = query(
        c,
        "SELECT c.cluster_id, c.license_id, c.cluster_key, c.status, c.last_seq, c.heartbeat_time,
                h.report_seq, h.report_hash, h.mark
         FROM clusters c LEFT JOIN chain_heads h ON h.cluster_id = c.cluster_id
         WHERE c.cluster_id = ANY($1) FOR UPDATE OF c",
        &[&ids],
    )
    .await?
    .iter()
    .map(|r| {
        (
            r.get(0),
            Binding {
                license: r.get(1),
                key: r.get(2),
                status: r.get(3),
                last_seq: uint(r.get(4)),
                last_time: r.get::<_, Option<i64>>(5).map(uint),
                held: held_head(r, 6),
            },
        )
    })
    .collect();
    // Signs of rollback in refused heartbeats, recorded after the batch's rows.
    let mut went_back = Vec::new();
    let mut outcomes = Vec::with_capacity(beats.len());
    let mut accepted = Vec::with_capacity(beats.len());
    for (hb, key, now) in beats.iter().map(|b| (&b.0, &b.1, b.2)) {
        let checked = match bound.get_mut(&hb.cluster_id) {
            None => Err(ApiError::forbidden(
                "not_activated",
                format!(
                    "cluster {} is not activated on this relay: POST /v1/activate first",
                    hb.cluster_id
                ),
            )),
            Some(b) => {
                let checked =
                    crate::store::check_beat(hb, key, &b.license, &b.key, &b.status, b.last_seq);
                if let Err(refusal) = &checked {
                    if let Some(f) = crate::store::beat_back(refusal, hb, b.last_seq, b.last_time) {
                        went_back.push((hb.cluster_id.clone(), b.license.clone(), f, now));
                    }
                }
                checked
            }
        };
        if checked.is_ok() {
            let license_id = hb.license_id.to_string();
            let audit = AuditRow::next(
                head,
                now,
                &format!("cluster:{}", hb.cluster_id),
                beat_action(hb),
                &license_id,
                &beat_audit_detail(hb),
            );
            accepted.push(Accepted {
                cluster_id: hb.cluster_id.clone(),
                license_id,
                seq: int(hb.seq),
                now: int(now),
                time: int(hb.time),
                state: hb.state.clone(),
                nodes: i64::from(hb.active_nodes),
                quotas: serde_json::to_string(&hb.quotas).unwrap_or_else(|_| "{}".into()),
                verifier_version: hb.verifier_version.clone(),
                deactivate: hb.deactivate,
                audit,
            });
        }
        outcomes.push(checked);
    }
    if accepted.is_empty() {
        for (cluster, license, f, now) in &went_back {
            record_anomalies(c, head, cluster, license, std::slice::from_ref(f), *now).await?;
        }
        return Ok(outcomes);
    }
    // Prepared first, so each statement below is sent when first polled,
    // in order: the audit rows go in chain order.
    let (update, history, audit) = (
        c.prepare_cached(UPDATE).await?,
        c.prepare_cached(HISTORY).await?,
        c.prepare_cached(AUDIT).await?,
    );
    let params: Vec<[Vec<&(dyn ToSql + Sync)>; 3]> = accepted
        .iter()
        .map(|a| {
            [
                vec![
                    &a.cluster_id as &(dyn ToSql + Sync),
                    &a.seq,
                    &a.now,
                    &a.time,
                    &a.state,
                    &a.nodes,
                    &a.quotas,
                    &a.verifier_version,
                    &a.deactivate,
                ],
                vec![
                    &a.cluster_id as &(dyn ToSql + Sync),
                    &a.seq,
                    &a.time,
                    &a.now,
                    &a.state,
                    &a.nodes,
                    &a.quotas,
                ],
                a.audit.params(),
            ]
        })
        .collect();
    let statements = [&update, &history, &audit];
    let changed = try_join_all(params.iter().flat_map(|p| {
        p.iter()
            .zip(statements)
            .map(|(values, st)| c.execute(st, values.as_slice()))
    }))
    .await?;
    // Every third count is an UPDATE's: each must have moved its cluster.
    if changed.iter().step_by(3).any(|n| *n != 1) {
        return Err(ApiError::internal(
            "a heartbeat changed no row after its checks passed",
        ));
    }
    for (a, (hb, _, now)) in accepted.iter().zip(
        beats
            .iter()
            .map(|b| (&b.0, &b.1, b.2))
            .zip(outcomes.iter())
            .filter(|(_, o)| o.is_ok())
            .map(|(b, _)| b),
    ) {
        for r in &hb.upgrade_requests {
            insert_upgrade(c, &a.license_id, &a.cluster_id, r, now, "heartbeat").await?;
        }
        let held = bound.get(&a.cluster_id).and_then(|b| b.held);
        chain_head(c, head, hb, &a.license_id, held, now).await?;
    }
    for (cluster, license, f, now) in &went_back {
        record_anomalies(c, head, cluster, license, std::slice::from_ref(f), *now).await?;
    }
    Ok(outcomes)
}
