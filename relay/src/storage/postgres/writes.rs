//! The state changes on PostgreSQL, each inside the caller's transaction,
//! which already holds the `audit_head` row lock (so writes from every
//! replica are serial, and each sees what the one before it committed).
//!
//! The rule that lets a batch run without savepoints: **a write that is
//! refused (a 4xx error) has written nothing** — every check comes before
//! the first statement that changes a row — with one deliberate exception:
//! a heartbeat refused as a replay that shows the cluster's counter going
//! back leaves its sign of rollback (an `anomalies` row and its audit row). Any other error (5xx, a database
//! error) aborts the whole batch, and every caller in it hears that error.
//! The same checks as the SQLite backend (`crate::store`), plus the
//! database's own guards: the partial unique index on live clusters, the
//! forward-only `last_seq` trigger and conditional updates.

use deadpool_postgres::ClientWrapper;
use serde_json::json;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use kaching_core::binding::Hold;
use kaching_core::clock_reset::VerifiedClockReset;
use kaching_core::cluster::UpgradeRequest;
use kaching_core::heartbeat::Heartbeat;
use kaching_core::revocation::{Acceptance, VerifiedRevocationList};
use kaching_core::root::VerifiedRoot;

use crate::error::ApiError;
use crate::storage::Activated;
use crate::store::Activation;
use crate::store::{beat_action, beat_audit_detail};

/// Parameters of a statement.
pub type Params<'a> = [&'a (dyn ToSql + Sync)];

/// Runs a cached statement, returning its rows.
pub async fn query(c: &ClientWrapper, sql: &str, p: &Params<'_>) -> Result<Vec<Row>, ApiError> {
    let st = c.prepare_cached(sql).await?;
    Ok(c.query(&st, p).await?)
}

/// Runs a cached statement, returning at most one row.
pub async fn query_opt(
    c: &ClientWrapper,
    sql: &str,
    p: &Params<'_>,
) -> Result<Option<Row>, ApiError> {
    let st = c.prepare_cached(sql).await?;
    Ok(c.query_opt(&st, p).await?)
}

/// Runs a cached statement, returning the rows it changed.
pub async fn execute(c: &ClientWrapper, sql: &str, p: &Params<'_>) -> Result<u64, ApiError> {
    let st = c.prepare_cached(sql).await?;
    Ok(c.execute(&st, p).await?)
}

/// A u64 as PostgreSQL's BIGINT (values above i64::MAX are refused at the door).
pub fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A BIGINT read back as u64.
pub fn uint(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

pub use super::chain::{audit, lock_head, AuditRow, Head};

/// `POST /v1/activate` (see `crate::store` for the rules).
pub async fn activate(
    c: &ClientWrapper,
    head: &mut Head,
    a: &Activation,
) -> Result<Activated, ApiError> {
    let serving_since: u64 =
        query_opt(c, "SELECT value FROM meta WHERE key = 'serving_since'", &[])
            .await?
            .map_or(0, |r| uint(r.get(0)));
    let holders: Vec<(String, Hold)> = query(
        c,
        "SELECT cluster_id, last_seen FROM clusters
         WHERE license_id = $1 AND status = 'active' AND cluster_id != $2 FOR UPDATE",
        &[&a.license_id, &a.cluster_id],
    )
    .await?
    .iter()
    .map(|r| {
        (
            r.get::<_, String>(0),
            Hold {
                last_seen: uint(r.get(1)),
                offline_grace: a.offline_grace,
            },
        )
    })
    .collect();
    let displaced: Vec<String> = kaching_core::binding::take_over(&holders, serving_since, a.now)
        .map_err(|r| ApiError::conflict(r.code(), r.message(&a.license_id)))?
        .into_iter()
        .map(str::to_owned)
        .collect();
    let now = int(a.now);
    for other in &displaced {
        execute(
            c,
            "UPDATE clusters SET status = 'displaced', ended_at = $1 WHERE cluster_id = $2",
            &[&now, other],
        )
        .await?;
    }
    execute(
        c,
        "INSERT INTO licenses (license_id, bytes, customer, tier, expires_at, first_seen)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (license_id) DO UPDATE SET bytes = excluded.bytes, customer = excluded.customer,
             tier = excluded.tier, expires_at = excluded.expires_at",
        &[
            &a.license_id,
            &a.license_bytes,
            &a.customer,
            &a.tier,
            &int(a.expires_at),
            &now,
        ],
    )
    .await?;
    let last_seq = query_opt(
        c,
        "SELECT last_seq FROM clusters WHERE cluster_id = $1",
        &[&a.cluster_id],
    )
    .await?
    .map_or(0, |r| uint(r.get(0)));
    execute(
        c,
        "INSERT INTO clusters (cluster_id, license_id, cluster_key, hostname, status,
             activated_at, last_seen, active_nodes)
         VALUES ($1, $2, $3, $4, 'active', $5, $5, $6)
         ON CONFLICT (cluster_id) DO UPDATE SET license_id = excluded.license_id,
             cluster_key = excluded.cluster_key, hostname = excluded.hostname,
             status = 'active', activated_at = excluded.activated_at, ended_at = NULL,
             last_seen = excluded.last_seen, active_nodes = excluded.active_nodes",
        &[
            &a.cluster_id,
            &a.license_id,
            &a.cluster_key.as_slice(),
            &a.hostname,
            &now,
            &i64::from(a.nodes),
        ],
    )
    .await?;
    audit(
        c,
        head,
        a.now,
        &format!("cluster:{}", a.cluster_id),
        "activate",
        &a.license_id,
        &json!({"hostname": a.hostname, "nodes": a.nodes, "displaced": displaced}),
    )
    .await?;
    Ok(Activated {
        last_seq,
        displaced,
    })
}

/// The cluster's latest heartbeat, report chain head and current hour's
/// rollup, in one UPDATE, conditional on the sequence number (both paths):
/// $13 the hour (relay time / 3600), $14 the nodes as the rollup's
/// INTEGER. The hour's counts start again when $13 is not the hour the row
/// holds (whose counts [`CLOSE_HOUR`] moved out first).
pub const UPDATE_BEAT: &str =
    "UPDATE clusters SET last_seq = $2, last_seen = $3, heartbeat_time = $4, state = $5,
         active_nodes = $6, quotas = $7, verifier_version = $8, heartbeats = heartbeats + 1,
         status = CASE WHEN $9 THEN 'deactivated' ELSE status END,
         ended_at = CASE WHEN $9 THEN $3 ELSE ended_at END,
         report_seq = $10, report_hash = $11, report_mark = $12,
         hour_beats = CASE WHEN hour = $13 THEN hour_beats + 1 ELSE 1 END,
         hour_min_nodes = CASE WHEN hour = $13 THEN LEAST(hour_min_nodes, $14) ELSE $14 END,
         hour_max_nodes = CASE WHEN hour = $13 THEN GREATEST(hour_max_nodes, $14) ELSE $14 END,
         hour_last_nodes = $14, hour_last_at = $3, hour = $13
     WHERE cluster_id = $1 AND last_seq < $2 AND status = 'active'";

/// Moves the hour a cluster row holds ($1 the cluster) to
/// `heartbeat_hours` once a heartbeat of another hour arrives;
/// sent before the UPDATE that starts the new hour (both paths). An hour
/// already closed (the relay's clock went back and forth across it) is
/// merged, not lost.
pub const CLOSE_HOUR: &str =
    "INSERT INTO heartbeat_hours AS h
         (hour, cluster_id, beats, min_nodes, max_nodes, last_nodes, last_at, quotas)
     SELECT hour, cluster_id, hour_beats, hour_min_nodes, hour_max_nodes, hour_last_nodes,
            hour_last_at, quotas
     FROM clusters WHERE cluster_id = $1 AND hour IS NOT NULL
     ON CONFLICT (hour, cluster_id) DO UPDATE SET beats = h.beats + excluded.beats,
         min_nodes = LEAST(h.min_nodes, excluded.min_nodes),
         max_nodes = GREATEST(h.max_nodes, excluded.max_nodes),
         last_nodes = CASE WHEN excluded.last_at >= h.last_at THEN excluded.last_nodes ELSE h.last_nodes END,
         quotas = CASE WHEN excluded.last_at >= h.last_at THEN excluded.quotas ELSE h.quotas END,
         last_at = GREATEST(h.last_at, excluded.last_at)";

/// A raw history row (only when `heartbeat_retention` is above 0).
pub const HISTORY: &str =
    "INSERT INTO heartbeats (cluster_id, seq, time, received_at, state, active_nodes, quotas)
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// The binding a heartbeat is checked against, locked; the report chain
/// head at columns 5..8 (see [`held_head`]), the hour the row holds at 9.
pub const BINDING: &str =
    "SELECT c.license_id, c.cluster_key, c.status, c.last_seq, c.heartbeat_time,
            c.report_seq, c.report_hash, c.report_mark, c.cluster_id, c.hour
     FROM clusters c WHERE c.cluster_id = ANY($1) FOR UPDATE";

/// What an accepted heartbeat writes, owned so the statements can borrow it.
pub struct Accepted {
    /// Its cluster.
    pub cluster_id: String,
    /// The license the cluster holds.
    pub license_id: String,
    seq: i64,
    now: i64,
    hour: i32,
    time: i64,
    state: String,
    nodes: i64,
    nodes32: i32,
    quotas: String,
    verifier_version: String,
    deactivate: bool,
    report_seq: Option<i64>,
    report_hash: Option<Vec<u8>>,
    report_mark: Option<i64>,
    /// The row holds an earlier (or later) hour, to close first.
    pub closes_hour: bool,
    /// Signs of rollback its report chain head shows.
    pub found: Vec<kaching_core::report_chain::Finding>,
    /// The mark going back that the clock reset it carries accounts for.
    pub explained: Option<kaching_core::report_chain::ResetExplained>,
}

impl Accepted {
    /// What `hb` (checked) writes, given the chain head and the hour its
    /// cluster row holds, and the clock reset its chain head carries
    /// (verified against the issuer keys).
    pub fn new(
        hb: &Heartbeat,
        now: u64,
        held: Option<kaching_core::heartbeat::ChainHead>,
        held_hour: Option<i32>,
        reset: Option<&VerifiedClockReset>,
    ) -> Accepted {
        let (check, write) =
            crate::store::chain_head(held.clone(), hb.chain.as_ref(), &hb.cluster_id, reset, now);
        let (report_seq, report_hash, report_mark) = crate::store::head_columns(held, &write);
        let hour = i32::try_from(now / crate::store::HOUR).unwrap_or(i32::MAX);
        Accepted {
            cluster_id: hb.cluster_id.clone(),
            license_id: hb.license_id.to_string(),
            seq: int(hb.seq),
            now: int(now),
            hour,
            time: int(hb.time),
            state: hb.state.clone(),
            nodes: i64::from(hb.active_nodes),
            nodes32: i32::try_from(hb.active_nodes).unwrap_or(i32::MAX),
            quotas: serde_json::to_string(&hb.quotas).unwrap_or_else(|_| "{}".into()),
            verifier_version: hb.verifier_version.clone(),
            deactivate: hb.deactivate,
            report_seq: report_seq.map(int),
            report_hash,
            report_mark: report_mark.map(int),
            closes_hour: held_hour.is_some_and(|h| h != hour),
            found: check.found,
            explained: check.explained,
        }
    }

    /// Parameters of [`UPDATE_BEAT`].
    pub fn update(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.cluster_id,
            &self.seq,
            &self.now,
            &self.time,
            &self.state,
            &self.nodes,
            &self.quotas,
            &self.verifier_version,
            &self.deactivate,
            &self.report_seq,
            &self.report_hash,
            &self.report_mark,
            &self.hour,
            &self.nodes32,
        ]
    }

    /// Parameters of [`CLOSE_HOUR`].
    pub fn close_hour(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![&self.cluster_id]
    }

    /// Parameters of [`HISTORY`].
    pub fn history(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.cluster_id,
            &self.seq,
            &self.time,
            &self.now,
            &self.state,
            &self.nodes,
            &self.quotas,
        ]
    }
}

/// `POST /v1/heartbeat` and `/v1/deactivate` (see `crate::store`). An
/// ordinary heartbeat writes no audit row: the batch audits it as a leaf
/// of its Merkle root (see `super::batch`).
pub async fn record_heartbeat(
    c: &ClientWrapper,
    head: &mut Head,
    hb: &Heartbeat,
    key: &[u8; 32],
    now: u64,
    keep_raw: bool,
    reset: Option<&VerifiedClockReset>,
) -> Result<(), ApiError> {
    let license_id = hb.license_id.to_string();
    let row = query_opt(c, BINDING, &[&vec![hb.cluster_id.as_str()]]).await?;
    let Some(row) = row else {
        return Err(ApiError::forbidden(
            "not_activated",
            format!(
                "cluster {} is not activated on this relay: POST /v1/activate first",
                hb.cluster_id
            ),
        ));
    };
    let (bound, bound_key, status, last_seq): (String, Vec<u8>, String, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let (last_seq, last_time) = (uint(last_seq), row.get::<_, Option<i64>>(4).map(uint));
    if let Err(refusal) = crate::store::check_beat(hb, key, &bound, &bound_key, &status, last_seq) {
        if let Some(found) = crate::store::beat_back(&refusal, hb, last_seq, last_time) {
            record_anomalies(c, head, &hb.cluster_id, &license_id, &[found], now).await?;
        }
        return Err(refusal);
    }
    let a = Accepted::new(hb, now, held_head(&row, 5), row.get(9), reset);
    send_beats(c, &[&a], keep_raw).await?;
    after_beat(c, head, hb, &a, now).await
}

/// The writes of checked heartbeats (both paths), pipelined in one round
/// trip, in order: for each, its hour's close (when its row holds another
/// hour), its UPDATE, its raw history row when `keep_raw`. The statements
/// are prepared first: one not yet prepared on this connection would wait
/// for its Parse while a later one went out before it. Each UPDATE is
/// still conditional on the sequence number; should one change nothing (it
/// cannot, under the row lock), the error is a 500 and the whole batch
/// rolls back.
pub async fn send_beats(
    c: &ClientWrapper,
    accepted: &[&Accepted],
    keep_raw: bool,
) -> Result<(), ApiError> {
    let (close, update, history) = (
        c.prepare_cached(CLOSE_HOUR).await?,
        c.prepare_cached(UPDATE_BEAT).await?,
        c.prepare_cached(HISTORY).await?,
    );
    // (statement, its parameters, the heartbeat whose UPDATE it is)
    type Sent<'a> = (
        &'a tokio_postgres::Statement,
        Vec<&'a (dyn ToSql + Sync)>,
        Option<&'a Accepted>,
    );
    let mut sent: Vec<Sent<'_>> = Vec::with_capacity(accepted.len() * 2);
    for a in accepted {
        if a.closes_hour {
            sent.push((&close, a.close_hour(), None));
        }
        sent.push((&update, a.update(), Some(a)));
        if keep_raw {
            sent.push((&history, a.history(), None));
        }
    }
    let changed = futures_util::future::try_join_all(
        sent.iter()
            .map(|(st, values, _)| c.execute(*st, values.as_slice())),
    )
    .await?;
    for ((_, _, of), n) in sent.iter().zip(&changed) {
        if let (Some(a), true) = (of, *n != 1) {
            return Err(ApiError::internal(format!(
                "heartbeat {} of cluster {} changed no row after its checks passed",
                a.seq, a.cluster_id
            )));
        }
    }
    Ok(())
}

/// What follows an accepted heartbeat's writes (both paths): its upgrade
/// requests (each new one audited), its deactivation's audit row, the
/// signs of rollback its report chain head showed, and the `clock_reset`
/// audit row when a clock reset it carries accounts for its mark going back.
pub async fn after_beat(
    c: &ClientWrapper,
    head: &mut Head,
    hb: &Heartbeat,
    a: &Accepted,
    now: u64,
) -> Result<(), ApiError> {
    let actor = format!("cluster:{}", a.cluster_id);
    for r in &hb.upgrade_requests {
        if insert_upgrade(c, &a.license_id, &a.cluster_id, r, now, "heartbeat").await? {
            audit(
                c,
                head,
                now,
                &actor,
                "upgrade_request",
                &a.license_id,
                &crate::store::upgrade_audit_detail(r),
            )
            .await?;
        }
    }
    if hb.deactivate {
        audit(
            c,
            head,
            now,
            &actor,
            beat_action(hb),
            &a.license_id,
            &beat_audit_detail(hb),
        )
        .await?;
    }
    record_anomalies(c, head, &a.cluster_id, &a.license_id, &a.found, now).await?;
    if let Some(e) = &a.explained {
        crate::store::log_clock_reset(&a.cluster_id, &a.license_id, e);
        audit(
            c,
            head,
            now,
            &actor,
            crate::store::CLOCK_RESET_ACTION,
            &a.license_id,
            &crate::store::clock_reset_detail(e),
        )
        .await?;
    }
    Ok(())
}

/// The report chain head held for a cluster, read from `row` at columns
/// `at..at + 3` (seq, hash, mark; seq null: none held).
pub fn held_head(row: &Row, at: usize) -> Option<kaching_core::heartbeat::ChainHead> {
    let seq: Option<i64> = row.get(at);
    seq.map(|seq| {
        crate::store::stored_head(
            uint(seq),
            row.get(at + 1),
            uint(row.get::<_, Option<i64>>(at + 2).unwrap_or(0)),
        )
    })
}

/// One `anomalies` row and one audit row per sign of rollback.
pub async fn record_anomalies(
    c: &ClientWrapper,
    head: &mut Head,
    cluster_id: &str,
    license_id: &str,
    found: &[kaching_core::report_chain::Finding],
    now: u64,
) -> Result<(), ApiError> {
    for f in found {
        let detail = f.to_string();
        tracing::warn!(cluster = cluster_id, license = license_id, kind = f.kind(), %detail, "sign of rollback");
        execute(
            c,
            "INSERT INTO anomalies (cluster_id, license_id, at, kind, detail) VALUES ($1, $2, $3, $4, $5)",
            &[&cluster_id, &license_id, &int(now), &f.kind(), &detail],
        )
        .await?;
        AuditRow::next(
            head,
            now,
            &format!("cluster:{cluster_id}"),
            "anomaly",
            license_id,
            &crate::store::anomaly_detail(f, &detail),
        )
        .insert(c)
        .await?;
    }
    Ok(())
}

/// Stores an upgrade request; `false` when it was filed before.
pub async fn insert_upgrade(
    c: &ClientWrapper,
    license_id: &str,
    cluster_id: &str,
    r: &UpgradeRequest,
    now: u64,
    source: &str,
) -> Result<bool, ApiError> {
    let n = execute(
        c,
        "INSERT INTO upgrade_requests
             (license_id, cluster_id, requested_tier, message, time, received_at, source)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        &[
            &license_id,
            &cluster_id,
            &r.requested_tier,
            &r.message,
            &int(r.time),
            &int(now),
            &source,
        ],
    )
    .await?;
    Ok(n > 0)
}

/// `POST /v1/upgrade-requests` through WHOOSH.
pub async fn file_upgrade(
    c: &ClientWrapper,
    head: &mut Head,
    license_id: &str,
    request: &UpgradeRequest,
    actor: &str,
    now: u64,
) -> Result<bool, ApiError> {
    let new = insert_upgrade(c, license_id, "", request, now, "whoosh").await?;
    if new {
        audit(
            c,
            head,
            now,
            &format!("token:{actor}"),
            "upgrade_request",
            license_id,
            &crate::store::upgrade_audit_detail(request),
        )
        .await?;
    }
    Ok(new)
}

/// `PUT /v1/revocations`: stored only when newer than every stored list.
pub async fn publish(
    c: &ClientWrapper,
    head: &mut Head,
    list: &VerifiedRevocationList,
    actor: &str,
    now: u64,
) -> Result<Acceptance, ApiError> {
    let current = query_opt(
        c,
        "SELECT version, bytes FROM revocation_lists ORDER BY version DESC LIMIT 1",
        &[],
    )
    .await?
    .map(|r| (uint(r.get(0)), r.get::<_, Vec<u8>>(1)));
    let acceptance =
        crate::store::accept_list(list, current.as_ref().map(|c| (c.0, c.1.as_slice())))?;
    if acceptance == Acceptance::Newer {
        let version = int(list.list.version);
        // Conditional: never below or beside a stored version.
        let n = execute(
            c,
            "INSERT INTO revocation_lists (version, bytes, kid, received_at)
             SELECT $1, $2, $3, $4
             WHERE NOT EXISTS (SELECT 1 FROM revocation_lists WHERE version >= $1)",
            &[&version, &list.bytes, &list.kid.to_hex(), &int(now)],
        )
        .await?;
        if n != 1 {
            return Err(ApiError::conflict(
                "rollback_refused",
                "a list of this version or newer was published meanwhile; sign a list with a higher version",
            ));
        }
        audit(
            c,
            head,
            now,
            &format!("token:{actor}"),
            "publish_revocations",
            &format!("v{}", list.list.version),
            &json!({"kid": list.kid.to_hex(), "entries": list.list.entries.len(),
                    "expires": list.list.expires}),
        )
        .await?;
        // Delivered to every replica's listener when this commits.
        execute(
            c,
            "SELECT pg_notify('kaching_published', $1)",
            &[&format!("list {version}")],
        )
        .await?;
    }
    Ok(acceptance)
}

/// `PUT /v1/roots` (see `crate::store::publish_root`).
pub async fn publish_root(
    c: &ClientWrapper,
    head: &mut Head,
    v: &VerifiedRoot,
    actor: &str,
    now: u64,
) -> Result<Vec<u64>, ApiError> {
    let version = int(v.root.version);
    execute(
        c,
        "INSERT INTO roots (version, bytes, received_at) VALUES ($1, $2, $3)
         ON CONFLICT (version) DO UPDATE SET bytes = excluded.bytes, received_at = excluded.received_at",
        &[&version, &v.bytes, &int(now)],
    )
    .await?;
    let mut dropped_lists = Vec::new();
    if let Some(floor) = v.root.revocation_floor {
        dropped_lists = query(
            c,
            "DELETE FROM revocation_lists WHERE version > $1 RETURNING version",
            &[&int(floor)],
        )
        .await?
        .iter()
        .map(|r| uint(r.get(0)))
        .collect();
        dropped_lists.sort_unstable();
    }
    let mut detail = crate::roots::describe(v);
    if let Some(m) = detail.as_object_mut() {
        m.insert("dropped_revocation_lists".into(), json!(dropped_lists));
    }
    audit(
        c,
        head,
        now,
        &format!("token:{actor}"),
        "publish_root",
        &format!("v{}", v.root.version),
        &detail,
    )
    .await?;
    execute(
        c,
        "SELECT pg_notify('kaching_published', $1)",
        &[&format!("root {version}")],
    )
    .await?;
    Ok(dropped_lists)
}

/// At start: stores the configured root (see `crate::roots::store_initial`).
pub async fn store_initial_root(
    c: &ClientWrapper,
    head: &mut Head,
    initial: &VerifiedRoot,
    now: u64,
) -> Result<(), ApiError> {
    let v = int(initial.root.version);
    let stored: Option<Vec<u8>> = query_opt(c, "SELECT bytes FROM roots WHERE version = $1", &[&v])
        .await?
        .map(|r| r.get(0));
    if stored.as_deref() != Some(initial.bytes.as_slice()) {
        if stored.is_some() {
            tracing::warn!(
                version = v,
                "the stored root of this version differs from the configured root; replacing it with the configured one"
            );
        }
        execute(
            c,
            "INSERT INTO roots (version, bytes, received_at) VALUES ($1, $2, $3)
             ON CONFLICT (version) DO UPDATE SET bytes = excluded.bytes, received_at = excluded.received_at",
            &[&v, &initial.bytes, &int(now)],
        )
        .await?;
        audit(
            c,
            head,
            now,
            "config:root",
            "configure_root",
            &format!("v{v}"),
            &crate::roots::describe(initial),
        )
        .await?;
    }
    Ok(())
}
