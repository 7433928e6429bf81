//! The state changes themselves, each run by the writer inside its own
//! savepoint: checks first, then writes, then one audit row.

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::json;

use kaching_core::binding::Hold;
use kaching_core::clock_reset::VerifiedClockReset;
use kaching_core::cluster::UpgradeRequest;
use kaching_core::heartbeat::{ChainHead, Heartbeat};
use kaching_core::report_chain::{self, Finding, HeadCheck, ResetExplained};
use kaching_core::revocation::{accept_revocation_list, Acceptance, VerifiedRevocationList};
use kaching_core::root::VerifiedRoot;

use crate::error::ApiError;

/// A license being bound to a cluster (both documents already verified).
#[derive(Debug)]
pub struct Activation {
    /// License id (UUID text).
    pub license_id: String,
    /// The license's binary bytes.
    pub license_bytes: Vec<u8>,
    /// Customer display name.
    pub customer: String,
    /// Tier name.
    pub tier: String,
    /// License `exp`.
    pub expires_at: u64,
    /// The activating cluster.
    pub cluster_id: String,
    /// Its public key.
    pub cluster_key: [u8; 32],
    /// Its host name.
    pub hostname: String,
    /// Its node count.
    pub nodes: u32,
    /// Seconds of silence (counted while the relay serves) after which another cluster's hold lapses.
    pub offline_grace: u64,
    /// Relay time.
    pub now: u64,
}

/// Every kind of write.
#[derive(Debug)]
pub enum Write {
    /// `POST /v1/activate`.
    Activate(Box<Activation>),
    /// `POST /v1/heartbeat` or, when `beat.deactivate`, `POST /v1/deactivate`.
    Beat {
        /// The verified heartbeat.
        beat: Box<Heartbeat>,
        /// The key that signed it.
        key: [u8; 32],
        /// Relay time.
        now: u64,
        /// Also keep a raw history row (`heartbeat_retention` above 0).
        raw: bool,
        /// The clock reset its chain head carries, verified against the
        /// issuer keys (`None`: none, or one that did not verify).
        reset: Option<Box<VerifiedClockReset>>,
    },
    /// `PUT /v1/revocations`.
    Publish {
        /// The verified list.
        list: Box<VerifiedRevocationList>,
        /// Token name of the publisher.
        actor: String,
        /// Relay time.
        now: u64,
    },
    /// `PUT /v1/roots`: a root verified against the one in force.
    PublishRoot {
        /// The verified root.
        root: Box<VerifiedRoot>,
        /// Token name of the publisher.
        actor: String,
        /// Relay time.
        now: u64,
    },
    /// `POST /v1/upgrade-requests`.
    FileUpgrade {
        /// License id (UUID text).
        license_id: String,
        /// The request.
        request: UpgradeRequest,
        /// Token name of the caller.
        actor: String,
        /// Relay time.
        now: u64,
    },
    /// At most `limit` raw history rows received before `raw_before` and
    /// at most `limit` hourly rollups of hours before `rollups_before` are
    /// deleted (maintenance, not audited; small, so the writer never stalls).
    Prune {
        /// Relay time cut-off of raw history.
        raw_before: u64,
        /// Relay time cut-off of rollups.
        rollups_before: u64,
        /// Most rows deleted from each table.
        limit: u32,
    },
    /// Seals the pending heartbeat leaves into one audit row when due.
    Seal {
        /// Relay time.
        now: u64,
        /// Seal whatever is pending (at start).
        force: bool,
    },
}

/// What a write did.
#[derive(Debug)]
pub enum Outcome {
    /// Activated: the cluster's last accepted sequence number, and clusters displaced as stale.
    Activated {
        /// Last accepted heartbeat sequence number (0 for a new cluster).
        last_seq: u64,
        /// Stale clusters that lost the license.
        displaced: Vec<String>,
    },
    /// Heartbeat (or deactivation) recorded.
    Beat,
    /// Refused, with what the refusal showed kept (a sign of rollback is
    /// recorded even though the heartbeat itself is not).
    Refused(ApiError),
    /// Revocation list accepted (`Newer`) or already current (`Same`).
    Published(Acceptance),
    /// Root stored; revocation lists above its `revocation_floor` that were dropped.
    RootPublished {
        /// Versions of the dropped lists, ascending.
        dropped_lists: Vec<u64>,
    },
    /// Upgrade request stored (`false`: it was a duplicate).
    Filed(bool),
    /// Rows pruned.
    Pruned(usize),
    /// Pending heartbeats sealed (`false`: none due).
    Sealed(bool),
}

/// Runs one write. On error it may have written part of itself: the writer
/// runs it inside a savepoint and rolls that back.
pub fn apply(conn: &Connection, write: &Write) -> Result<Outcome, ApiError> {
    match write {
        Write::Activate(a) => activate(conn, a),
        Write::Beat {
            beat,
            key,
            now,
            raw,
            reset,
        } => Ok(record_beat(conn, beat, key, *now, *raw, reset.as_deref())?),
        Write::Publish { list, actor, now } => publish(conn, list, actor, *now),
        Write::PublishRoot { root, actor, now } => publish_root(conn, root, actor, *now),
        Write::FileUpgrade {
            license_id,
            request,
            actor,
            now,
        } => {
            let new = insert_upgrade(conn, license_id, "", request, *now, "whoosh")?;
            if new {
                crate::audit::append(
                    conn,
                    *now,
                    &format!("token:{actor}"),
                    "upgrade_request",
                    license_id,
                    &upgrade_audit_detail(request),
                )?;
            }
            Ok(Outcome::Filed(new))
        }
        Write::Prune {
            raw_before,
            rollups_before,
            limit,
        } => {
            let raw = conn
                .prepare_cached(
                    "DELETE FROM heartbeats WHERE id IN
                         (SELECT id FROM heartbeats WHERE received_at < ?1 ORDER BY id LIMIT ?2)",
                )?
                .execute(params![raw_before, limit])?;
            let rollups = conn
                .prepare_cached(
                    "DELETE FROM heartbeat_hours WHERE (hour, cluster_id) IN
                         (SELECT hour, cluster_id FROM heartbeat_hours WHERE hour < ?1 LIMIT ?2)",
                )?
                .execute(params![rollups_before / HOUR, limit])?;
            Ok(Outcome::Pruned(raw.max(rollups)))
        }
        Write::Seal { now, force } => Ok(Outcome::Sealed(crate::audit::seal(conn, *now, *force)?)),
    }
}

fn activate(conn: &Connection, a: &Activation) -> Result<Outcome, ApiError> {
    let displaced: Vec<String> = {
        // Read in this transaction, like the bindings it judges.
        let serving_since = crate::db::serving_since(conn)?;
        let mut stmt = conn.prepare_cached(
            "SELECT cluster_id, last_seen FROM clusters
             WHERE license_id = ?1 AND status = 'active' AND cluster_id != ?2",
        )?;
        let holders = stmt
            .query_map(params![a.license_id, a.cluster_id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    Hold {
                        last_seen: r.get(1)?,
                        offline_grace: a.offline_grace,
                    },
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        kaching_core::binding::take_over(&holders, serving_since, a.now)
            .map_err(|r| ApiError::conflict(r.code(), r.message(&a.license_id)))?
            .into_iter()
            .map(str::to_owned)
            .collect()
    };
    for other in &displaced {
        conn.prepare_cached(
            "UPDATE clusters SET status = 'displaced', ended_at = ?1 WHERE cluster_id = ?2",
        )?
        .execute(params![a.now, other])?;
    }
    conn.prepare_cached(
        "INSERT INTO licenses (license_id, bytes, customer, tier, expires_at, first_seen)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(license_id) DO UPDATE SET bytes = excluded.bytes, customer = excluded.customer,
             tier = excluded.tier, expires_at = excluded.expires_at",
    )?
    .execute(params![
        a.license_id,
        a.license_bytes,
        a.customer,
        a.tier,
        a.expires_at,
        a.now
    ])?;
    let last_seq: Option<u64> = conn
        .prepare_cached("SELECT last_seq FROM clusters WHERE cluster_id = ?1")?
        .query_row([&a.cluster_id], |r| r.get(0))
        .optional()?;
    // A returning cluster keeps its sequence number and heartbeat history;
    // everything about the binding itself is replaced.
    conn.prepare_cached(
        "INSERT INTO clusters (cluster_id, license_id, cluster_key, hostname, status,
             activated_at, last_seen, active_nodes)
         VALUES (?1, ?2, ?3, ?4, 'active', ?5, ?5, ?6)
         ON CONFLICT(cluster_id) DO UPDATE SET license_id = excluded.license_id,
             cluster_key = excluded.cluster_key, hostname = excluded.hostname,
             status = 'active', activated_at = excluded.activated_at, ended_at = NULL,
             last_seen = excluded.last_seen, active_nodes = excluded.active_nodes",
    )?
    .execute(params![
        a.cluster_id,
        a.license_id,
        a.cluster_key.as_slice(),
        a.hostname,
        a.now,
        a.nodes
    ])?;
    crate::audit::append(
        conn,
        a.now,
        &format!("cluster:{}", a.cluster_id),
        "activate",
        &a.license_id,
        &json!({"hostname": a.hostname, "nodes": a.nodes, "displaced": displaced}),
    )?;
    Ok(Outcome::Activated {
        last_seq: last_seq.unwrap_or(0),
        displaced,
    })
}

/// Refuses a heartbeat that does not fit the cluster's stored binding:
/// not live, bound to another license or key, or a sequence number not
/// above `last_seq` (a replay). Shared by both storage backends.
pub fn check_beat(
    hb: &Heartbeat,
    key: &[u8; 32],
    bound: &str,
    bound_key: &[u8],
    status: &str,
    last_seq: u64,
) -> Result<(), ApiError> {
    let license_id = hb.license_id.to_string();
    if status != "active" {
        return Err(ApiError::forbidden(
            "not_activated",
            format!(
                "cluster {} is {status} on this relay: activate it again before sending heartbeats",
                hb.cluster_id
            ),
        ));
    }
    if bound != license_id {
        return Err(ApiError::forbidden(
            "wrong_license",
            format!(
                "cluster {} is bound to license {bound}, not {license_id}: activate with the license you run",
                hb.cluster_id
            ),
        ));
    }
    if bound_key != key.as_slice() {
        return Err(ApiError::forbidden(
            "wrong_key",
            "heartbeat is not signed by the key bound at activation",
        ));
    }
    if hb.seq <= last_seq {
        return Err(replayed(hb.seq, last_seq));
    }
    Ok(())
}

/// The sign of rollback in a refused heartbeat, if any: refused as a
/// replay (so signed by the bound key, for the bound license), yet signed
/// after the last one accepted (core's `beat_went_back`).
pub fn beat_back(
    refusal: &ApiError,
    hb: &Heartbeat,
    last_seq: u64,
    last_time: Option<u64>,
) -> Option<Finding> {
    (refusal.code == "replayed_heartbeat"
        && report_chain::beat_went_back(last_seq, last_time.unwrap_or(0), hb.seq, hb.time))
    .then_some(Finding::BeatBack {
        last_seq,
        seq: hb.seq,
    })
}

/// What to do with a cluster's stored report chain head.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadWrite {
    /// Nothing to store.
    Keep,
    /// Store this head.
    Put(ChainHead),
    /// Forget the stored head (the cluster stopped naming one).
    Forget,
}

/// Compares the heartbeat's report chain head with the one held for the
/// cluster (core's `check_head_with_reset`, given the clock reset the head
/// carries as verified against the issuer keys, and the relay's clock
/// `now`): the signs of rollback, the mark going back the reset accounts
/// for, and what to store. A cluster that named a head before and names
/// none now is flagged once.
pub fn chain_head(
    held: Option<ChainHead>,
    new: Option<&ChainHead>,
    cluster_id: &str,
    reset: Option<&VerifiedClockReset>,
    now: u64,
) -> (HeadCheck, HeadWrite) {
    match (held, new) {
        (held, Some(new)) => {
            let check =
                report_chain::check_head_with_reset(held.as_ref(), new, cluster_id, reset, now);
            // The row stores where the chain stands, not the reset.
            let stored = ChainHead {
                reset: None,
                ..new.clone()
            };
            let write = if held.as_ref() == Some(&stored) {
                HeadWrite::Keep
            } else {
                HeadWrite::Put(stored)
            };
            (check, write)
        }
        (Some(held), None) => (
            HeadCheck {
                found: vec![Finding::HeadWithheld {
                    last_seq: held.report_seq,
                }],
                explained: None,
            },
            HeadWrite::Forget,
        ),
        (None, None) => (HeadCheck::default(), HeadWrite::Keep),
    }
}

/// A chain head as a database row holds it.
pub fn stored_head(report_seq: u64, hash: Option<Vec<u8>>, mark: u64) -> ChainHead {
    ChainHead {
        report_seq,
        report_hash: hash.and_then(|h| <[u8; 32]>::try_from(h).ok()),
        mark,
        reset: None,
    }
}

/// The database stores integers as i64: a larger value is kept at the ceiling.
pub fn clamp(n: u64) -> u64 {
    n.min(i64::MAX as u64)
}

/// One row and one audit entry per sign of rollback.
fn record_anomalies(
    conn: &Connection,
    cluster_id: &str,
    license_id: &str,
    found: &[Finding],
    now: u64,
) -> Result<(), ApiError> {
    for f in found {
        let detail = f.to_string();
        tracing::warn!(cluster = cluster_id, license = license_id, kind = f.kind(), %detail, "sign of rollback");
        conn.prepare_cached(
            "INSERT INTO anomalies (cluster_id, license_id, at, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![cluster_id, license_id, now, f.kind(), detail])?;
        crate::audit::append(
            conn,
            now,
            &format!("cluster:{cluster_id}"),
            "anomaly",
            license_id,
            &anomaly_detail(f, &detail),
        )?;
    }
    Ok(())
}

/// The audit detail of a sign of rollback (both backends).
pub fn anomaly_detail(f: &Finding, detail: &str) -> serde_json::Value {
    json!({"kind": f.kind(), "detail": detail})
}

/// The audit action of a mark going back that a clock reset accounts for.
pub const CLOCK_RESET_ACTION: &str = "clock_reset";

/// The audit detail of a mark going back that a clock reset accounts for
/// (both backends): which reset, signed by which issuer key, and the marks.
pub fn clock_reset_detail(e: &ResetExplained) -> serde_json::Value {
    use kaching_core::time::rfc3339;
    json!({
        "reset": e.reset.id_text(),
        "kid": e.kid,
        "issued": rfc3339(e.reset.issued),
        "reset_mark": rfc3339(e.reset.mark),
        "earlier_seq": e.earlier_seq,
        "earlier": rfc3339(e.earlier),
        "later_seq": e.later_seq,
        "later": rfc3339(e.later),
        "detail": e.to_string(),
    })
}

/// Logs a mark going back that a clock reset accounts for (both backends).
pub fn log_clock_reset(cluster_id: &str, license_id: &str, e: &ResetExplained) {
    tracing::info!(cluster = cluster_id, license = license_id, reset = %e.reset.id_text(), kid = %e.kid, detail = %e, "trusted-time mark lowered by a clock reset: not flagged");
}

/// The audit action of an accepted heartbeat (both backends).
pub fn beat_action(hb: &Heartbeat) -> &'static str {
    if hb.deactivate {
        "deactivate"
    } else {
        "heartbeat"
    }
}

/// The audit detail of an accepted heartbeat (both backends).
pub fn beat_audit_detail(hb: &Heartbeat) -> serde_json::Value {
    json!({"seq": hb.seq, "state": hb.state, "nodes": hb.active_nodes,
           "upgrade_requests": hb.upgrade_requests.len()})
}

/// Accepts a verified list against the newest stored one (version and
/// bytes), or refuses a rollback (both backends).
pub fn accept_list(
    list: &VerifiedRevocationList,
    current: Option<(u64, &[u8])>,
) -> Result<Acceptance, ApiError> {
    accept_revocation_list(list, current.map(|c| c.0), current.map(|c| c.1)).map_err(|e| {
        ApiError::conflict(
            "rollback_refused",
            format!("{e}; sign a list with a higher version"),
        )
    })
}

/// The refusal of a sequence number not above the last accepted one.
pub fn replayed(seq: u64, last_seq: u64) -> ApiError {
    ApiError::conflict(
        "replayed_heartbeat",
        format!(
            "sequence number {seq} is not above {last_seq}, the last accepted for this cluster: replay refused; sign a new heartbeat with a higher sequence number"
        ),
    )
}

/// A cluster's binding as a heartbeat is checked against it: license,
/// key, status, last sequence number, the signed time of that heartbeat,
/// the report chain head held (seq, hash, mark), and the hour its row
/// holds.
type BindingRow = (
    String,
    Vec<u8>,
    String,
    u64,
    Option<u64>,
    Option<u64>,
    Option<Vec<u8>>,
    Option<u64>,
    Option<u64>,
);

/// Seconds in a rollup period.
pub const HOUR: u64 = 3600;

/// The report chain head a cluster row stores after `write`: (seq, hash,
/// mark), all `None` when it holds none (both backends).
pub fn head_columns(
    held: Option<ChainHead>,
    write: &HeadWrite,
) -> (Option<u64>, Option<Vec<u8>>, Option<u64>) {
    let head = match write {
        HeadWrite::Keep => held,
        HeadWrite::Put(h) => Some(h.clone()),
        HeadWrite::Forget => None,
    };
    match head {
        Some(h) => (
            Some(clamp(h.report_seq)),
            h.report_hash.map(|h| h.to_vec()),
            Some(clamp(h.mark)),
        ),
        None => (None, None, None),
    }
}

/// Why a heartbeat was not recorded, and whether it wrote anything first.
#[derive(Debug)]
pub enum BeatFailure {
    /// Refused by the checks: nothing was written, the batch around it
    /// goes on.
    Refused(ApiError),
    /// A database error: the transaction may hold part of the heartbeat,
    /// or (some SQLite errors roll the whole transaction back) be gone.
    /// The writer rolls the batch back and runs it again, each write in
    /// its own savepoint.
    InDoubt(ApiError),
}

impl From<BeatFailure> for ApiError {
    fn from(f: BeatFailure) -> ApiError {
        match f {
            BeatFailure::Refused(e) | BeatFailure::InDoubt(e) => e,
        }
    }
}

/// Records a heartbeat (or deactivation): the cluster's latest state,
/// report chain head and current hour's rollup (one UPDATE; the first
/// heartbeat of a new hour closes the last one first), a raw history row
/// when `raw`, and upgrade requests. A deactivation and each new upgrade
/// request get an audit row; an ordinary heartbeat is audited by the
/// writer, as a leaf of its batch's Merkle root.
///
/// The checks only read, and come before the first write: a refusal is
/// [`BeatFailure::Refused`], so the writer needs no savepoint per
/// heartbeat (one per heartbeat was two statements and a statement-journal
/// copy of each page it touched).
pub fn record_beat(
    conn: &Connection,
    hb: &Heartbeat,
    key: &[u8; 32],
    now: u64,
    raw: bool,
    reset: Option<&VerifiedClockReset>,
) -> Result<Outcome, BeatFailure> {
    let license_id = hb.license_id.to_string();
    let binding = check_binding(conn, hb, key)?;
    write_beat(conn, hb, &license_id, binding, now, raw, reset).map_err(BeatFailure::InDoubt)
}

/// What the read-only checks of a heartbeat found.
enum Binding {
    /// Accepted: the report chain head held for the cluster, and the hour
    /// of heartbeats its row holds.
    Accept {
        report_seq: Option<u64>,
        report_hash: Option<Vec<u8>>,
        mark: Option<u64>,
        hour: Option<u64>,
    },
    /// Refused, with a sign of rollback to record (the refusal is kept).
    RefuseBack(ApiError, Finding),
}

/// Reads the cluster's binding and checks the heartbeat against it; writes nothing.
fn check_binding(
    conn: &Connection,
    hb: &Heartbeat,
    key: &[u8; 32],
) -> Result<Binding, BeatFailure> {
    let in_doubt = |e: rusqlite::Error| BeatFailure::InDoubt(e.into());
    let row: Option<BindingRow> = conn
        .prepare_cached(
            "SELECT license_id, cluster_key, status, last_seq, heartbeat_time,
                    report_seq, report_hash, report_mark, hour
             FROM clusters WHERE cluster_id = ?1",
        )
        .map_err(in_doubt)?
        .query_row([&hb.cluster_id], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
            ))
        })
        .optional()
        .map_err(in_doubt)?;
    let Some((bound, bound_key, status, last_seq, last_time, report_seq, report_hash, mark, hour)) =
        row
    else {
        return Err(BeatFailure::Refused(ApiError::forbidden(
            "not_activated",
            format!(
                "cluster {} is not activated on this relay: POST /v1/activate first",
                hb.cluster_id
            ),
        )));
    };
    if let Err(refusal) = check_beat(hb, key, &bound, &bound_key, &status, last_seq) {
        return match beat_back(&refusal, hb, last_seq, last_time) {
            Some(found) => Ok(Binding::RefuseBack(refusal, found)),
            None => Err(BeatFailure::Refused(refusal)),
        };
    }
    Ok(Binding::Accept {
        report_seq,
        report_hash,
        mark,
        hour,
    })
}

/// The writes of a checked heartbeat (see [`record_beat`]).
fn write_beat(
    conn: &Connection,
    hb: &Heartbeat,
    license_id: &str,
    binding: Binding,
    now: u64,
    raw: bool,
    reset: Option<&VerifiedClockReset>,
) -> Result<Outcome, ApiError> {
    let (report_seq, report_hash, mark, held_hour) = match binding {
        Binding::Accept {
            report_seq,
            report_hash,
            mark,
            hour,
        } => (report_seq, report_hash, mark, hour),
        Binding::RefuseBack(refusal, found) => {
            // Kept although the heartbeat is refused (the writer commits an Ok).
            record_anomalies(conn, &hb.cluster_id, license_id, &[found], now)?;
            return Ok(Outcome::Refused(refusal));
        }
    };
    let held = report_seq.map(|seq| stored_head(seq, report_hash, mark.unwrap_or(0)));
    let (check, write) = chain_head(held.clone(), hb.chain.as_ref(), &hb.cluster_id, reset, now);
    let (report_seq, report_hash, report_mark) = head_columns(held, &write);
    record_anomalies(conn, &hb.cluster_id, license_id, &check.found, now)?;
    if let Some(e) = &check.explained {
        log_clock_reset(&hb.cluster_id, license_id, e);
        crate::audit::append(
            conn,
            now,
            &format!("cluster:{}", hb.cluster_id),
            CLOCK_RESET_ACTION,
            license_id,
            &clock_reset_detail(e),
        )?;
    }
    let quotas = serde_json::to_string(&hb.quotas).unwrap_or_else(|_| "{}".into());
    let hour = now / HOUR;
    if held_hour.is_some_and(|h| h != hour) {
        // The row's hour is over: closed, before the row starts this one.
        conn.prepare_cached(CLOSE_HOUR)?
            .execute(params![hb.cluster_id])?;
    }
    conn.prepare_cached(if hb.deactivate {
        UPDATE_DEACTIVATED
    } else {
        UPDATE_BEAT
    })?
    .execute(params![
        hb.cluster_id,
        hb.seq,
        now,
        hb.time,
        hb.state,
        hb.active_nodes,
        quotas,
        hb.verifier_version,
        report_seq,
        report_hash,
        report_mark,
        hour
    ])?;
    if raw {
        conn.prepare_cached(
            "INSERT INTO heartbeats (cluster_id, seq, time, received_at, state, active_nodes, quotas)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            hb.cluster_id,
            hb.seq,
            hb.time,
            now,
            hb.state,
            hb.active_nodes,
            quotas
        ])?;
    }
    if hb.upgrade_requests.is_empty() && !hb.deactivate {
        return Ok(Outcome::Beat);
    }
    let actor = format!("cluster:{}", hb.cluster_id);
    for r in &hb.upgrade_requests {
        if insert_upgrade(conn, license_id, &hb.cluster_id, r, now, "heartbeat")? {
            crate::audit::append(
                conn,
                now,
                &actor,
                "upgrade_request",
                license_id,
                &upgrade_audit_detail(r),
            )?;
        }
    }
    if hb.deactivate {
        crate::audit::append(
            conn,
            now,
            &actor,
            beat_action(hb),
            license_id,
            &beat_audit_detail(hb),
        )?;
    }
    Ok(Outcome::Beat)
}

/// A heartbeat's cluster row, its current hour's rollup included: ?1
/// cluster, ?2 seq, ?3 relay time, ?4 signed time, ?5 state, ?6 nodes, ?7
/// quotas, ?8 verifier version, ?9–?11 report chain head, ?12 hour (relay
/// time / 3600). The hour's counts start again when ?12 is not the hour
/// the row holds (whose counts [`CLOSE_HOUR`] moved out first). `status`
/// is left out of the SET list: it is a column of the index
/// `clusters_by_license`, which SQLite would otherwise rewrite (one more
/// B-tree page dirtied and written to the WAL) on every heartbeat.
const UPDATE_BEAT: &str =
    "UPDATE clusters SET last_seq = ?2, last_seen = ?3, heartbeat_time = ?4, state = ?5,
         active_nodes = ?6, quotas = ?7, verifier_version = ?8, heartbeats = heartbeats + 1,
         report_seq = ?9, report_hash = ?10, report_mark = ?11,
         hour_beats = CASE WHEN hour IS ?12 THEN hour_beats + 1 ELSE 1 END,
         hour_min_nodes = CASE WHEN hour IS ?12 THEN min(hour_min_nodes, ?6) ELSE ?6 END,
         hour_max_nodes = CASE WHEN hour IS ?12 THEN max(hour_max_nodes, ?6) ELSE ?6 END,
         hour_last_nodes = ?6, hour_last_at = ?3, hour = ?12
     WHERE cluster_id = ?1";

/// [`UPDATE_BEAT`] for a deactivation: the cluster also ends.
const UPDATE_DEACTIVATED: &str =
    "UPDATE clusters SET last_seq = ?2, last_seen = ?3, heartbeat_time = ?4, state = ?5,
         active_nodes = ?6, quotas = ?7, verifier_version = ?8, heartbeats = heartbeats + 1,
         report_seq = ?9, report_hash = ?10, report_mark = ?11,
         hour_beats = CASE WHEN hour IS ?12 THEN hour_beats + 1 ELSE 1 END,
         hour_min_nodes = CASE WHEN hour IS ?12 THEN min(hour_min_nodes, ?6) ELSE ?6 END,
         hour_max_nodes = CASE WHEN hour IS ?12 THEN max(hour_max_nodes, ?6) ELSE ?6 END,
         hour_last_nodes = ?6, hour_last_at = ?3, hour = ?12,
         status = 'deactivated', ended_at = ?3
     WHERE cluster_id = ?1";

/// Moves the hour a cluster row holds (?1 the cluster) to
/// `heartbeat_hours`, once a heartbeat of another hour arrives; run
/// before the UPDATE that starts the new hour. An hour already closed (the
/// relay's clock went back and forth across it) is merged, not lost.
const CLOSE_HOUR: &str =
    "INSERT INTO heartbeat_hours
         (hour, cluster_id, beats, min_nodes, max_nodes, last_nodes, last_at, quotas)
     SELECT hour, cluster_id, hour_beats, hour_min_nodes, hour_max_nodes, hour_last_nodes,
            hour_last_at, quotas
     FROM clusters WHERE cluster_id = ?1 AND hour IS NOT NULL
     ON CONFLICT (hour, cluster_id) DO UPDATE SET beats = beats + excluded.beats,
         min_nodes = min(min_nodes, excluded.min_nodes), max_nodes = max(max_nodes, excluded.max_nodes),
         last_nodes = CASE WHEN excluded.last_at >= last_at THEN excluded.last_nodes ELSE last_nodes END,
         quotas = CASE WHEN excluded.last_at >= last_at THEN excluded.quotas ELSE quotas END,
         last_at = max(last_at, excluded.last_at)";

/// The audit detail of an upgrade request (both backends, both sources).
pub fn upgrade_audit_detail(r: &UpgradeRequest) -> serde_json::Value {
    json!({"tier": r.requested_tier, "time": r.time})
}

fn insert_upgrade(
    conn: &Connection,
    license_id: &str,
    cluster_id: &str,
    r: &UpgradeRequest,
    now: u64,
    source: &str,
) -> Result<bool, ApiError> {
    let n = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO upgrade_requests
                 (license_id, cluster_id, requested_tier, message, time, received_at, source)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            license_id,
            cluster_id,
            r.requested_tier,
            r.message,
            r.time,
            now,
            source
        ])?;
    Ok(n > 0)
}

fn publish(
    conn: &Connection,
    list: &VerifiedRevocationList,
    actor: &str,
    now: u64,
) -> Result<Outcome, ApiError> {
    let current: Option<(u64, Vec<u8>)> = conn
        .query_row(
            "SELECT version, bytes FROM revocation_lists ORDER BY version DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let acceptance = accept_list(list, current.as_ref().map(|c| (c.0, c.1.as_slice())))?;
    if acceptance == Acceptance::Newer {
        conn.execute(
            "INSERT INTO revocation_lists (version, bytes, kid, received_at) VALUES (?1, ?2, ?3, ?4)",
            params![list.list.version, list.bytes, list.kid.to_hex(), now],
        )?;
        crate::audit::append(
            conn,
            now,
            &format!("token:{actor}"),
            "publish_revocations",
            &format!("v{}", list.list.version),
            &json!({"kid": list.kid.to_hex(), "entries": list.list.entries.len(),
                    "expires": list.list.expires}),
        )?;
    }
    Ok(Outcome::Published(acceptance))
}

/// Stores a root the handler verified against the one in force (the
/// handler holds [`crate::roots::Roots::publish`], so nothing moved since).
/// A row of the same version that the chain ignored is replaced. A root with
/// a `revocation_floor` drops the stored lists above it: they are the
/// fast-forwarded ones it recovers from, and the next list above the floor
/// becomes the current one.
fn publish_root(
    conn: &Connection,
    v: &VerifiedRoot,
    actor: &str,
    now: u64,
) -> Result<Outcome, ApiError> {
    let version = v.root.version;
    conn.execute(
        "INSERT INTO roots (version, bytes, received_at) VALUES (?1, ?2, ?3)
         ON CONFLICT(version) DO UPDATE SET bytes = excluded.bytes, received_at = excluded.received_at",
        params![version, v.bytes, now],
    )?;
    let mut dropped_lists = Vec::new();
    if let Some(floor) = v.root.revocation_floor {
        dropped_lists = conn
            .prepare("SELECT version FROM revocation_lists WHERE version > ?1 ORDER BY version")?
            .query_map([floor], |r| r.get::<_, u64>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        conn.execute("DELETE FROM revocation_lists WHERE version > ?1", [floor])?;
    }
    let mut detail = crate::roots::describe(v);
    if let Some(m) = detail.as_object_mut() {
        m.insert("dropped_revocation_lists".into(), json!(dropped_lists));
    }
    crate::audit::append(
        conn,
        now,
        &format!("token:{actor}"),
        "publish_root",
        &format!("v{version}"),
        &detail,
    )?;
    Ok(Outcome::RootPublished { dropped_lists })
}
