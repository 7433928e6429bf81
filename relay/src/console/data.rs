//! What the console reads beyond the API's own queries, on both backends.
//! One storage entry point ([`crate::storage::Storage::console`]) takes an
//! [`Ask`] and gives the matching [`Answer`]; the SQL lives here, apart
//! from the API's, so the two can change independently. Every read is
//! bounded (a row cap), and nothing here writes.

use crate::audit::Row;
use crate::error::ApiError;
use crate::tokens::TokenInfo;

/// At most this many heartbeat history rows are read for one page.
pub const MAX_HISTORY: u32 = 20_000;

/// A question the console asks the database.
#[derive(Debug, Clone, Copy)]
pub enum Ask {
    /// Every license the relay has seen.
    Licenses,
    /// Heartbeat history received at or after `since` (newest first, capped).
    History {
        /// Relay time, seconds.
        since: u64,
    },
    /// Every stored revocation list version.
    Lists,
    /// The audit chain's verification and its latest `latest` rows.
    Audit {
        /// How many rows to show.
        latest: u32,
    },
    /// Token names and scopes (never their secrets or hashes).
    Tokens,
    /// A cheap fingerprint of the fleet: it changes when a heartbeat,
    /// activation or deactivation lands (on any replica).
    Pulse,
}

/// A license as the relay stored it at activation.
#[derive(Debug, Clone)]
pub struct LicenseRow {
    /// Its id.
    pub license_id: String,
    /// The customer's name (as signed; shown as text).
    pub customer: String,
    /// Its tier.
    pub tier: String,
    /// When it expires (seconds).
    pub expires_at: u64,
    /// When the relay first saw it.
    pub first_seen: u64,
}

/// One accepted heartbeat.
#[derive(Debug, Clone)]
pub struct Beat {
    /// The license its cluster holds.
    pub license_id: String,
    /// Relay time it was received.
    pub received_at: u64,
    /// Nodes it reported.
    pub active_nodes: u64,
    /// Quota usage it reported (JSON text).
    pub quotas: String,
}

/// One stored revocation list.
#[derive(Debug, Clone)]
pub struct ListRow {
    /// Its version.
    pub version: u64,
    /// The key id that signed it.
    pub kid: String,
    /// Relay time it was published here.
    pub received_at: u64,
}

/// The answer to an [`Ask`] of the same name.
#[derive(Debug)]
pub enum Answer {
    /// See [`Ask::Licenses`].
    Licenses(Vec<LicenseRow>),
    /// See [`Ask::History`].
    History(Vec<Beat>),
    /// See [`Ask::Lists`], newest first.
    Lists(Vec<ListRow>),
    /// See [`Ask::Audit`]: `Ok((rows, head hash))` or why the chain is broken;
    /// the latest rows newest first.
    Audit(Result<(i64, String), String>, Vec<Row>),
    /// See [`Ask::Tokens`].
    Tokens(Vec<TokenInfo>),
    /// See [`Ask::Pulse`]: clusters, heartbeats ever, latest contact.
    Pulse(u64, u64, u64),
}

const LICENSES: &str =
    "SELECT license_id, customer, tier, expires_at, first_seen FROM licenses ORDER BY expires_at, license_id LIMIT 10000";
// Heartbeat history from the hourly rollups (`heartbeat_hours`): each
// hour's row is read back as its heartbeats, spread evenly between the
// hour's start and its last heartbeat, with the hour's most nodes and last
// quota counters (what the sparklines draw), newest hour first.
const HISTORY_SQLITE: &str = "WITH RECURSIVE n(i) AS (
         SELECT 1 UNION ALL SELECT i + 1 FROM n
         WHERE i < (SELECT COALESCE(max(beats), 1) FROM heartbeat_hours WHERE hour >= ?1 / 3600))
     SELECT c.license_id, h.hour * 3600 + ((n.i - 1) * (h.last_at - h.hour * 3600)) / h.beats,
            h.max_nodes, h.quotas
     FROM heartbeat_hours h JOIN n ON n.i <= h.beats JOIN clusters c ON c.cluster_id = h.cluster_id
     WHERE h.hour >= ?1 / 3600 ORDER BY h.hour DESC, n.i DESC LIMIT ?2";
const HISTORY_PG: &str = "SELECT c.license_id,
            h.hour::BIGINT * 3600 + ((n.i - 1) * (h.last_at - h.hour::BIGINT * 3600)) / h.beats,
            h.max_nodes::BIGINT, h.quotas
     FROM heartbeat_hours h CROSS JOIN LATERAL generate_series(1, h.beats) AS n(i)
     JOIN clusters c ON c.cluster_id = h.cluster_id
     WHERE h.hour >= $1::BIGINT / 3600 ORDER BY h.hour DESC, n.i DESC LIMIT $2";
const PULSE_SQLITE: &str =
    "SELECT count(*), COALESCE(sum(heartbeats), 0), COALESCE(max(last_seen), 0) FROM clusters";
const PULSE_PG: &str = "SELECT count(*)::BIGINT, COALESCE(sum(heartbeats), 0)::BIGINT, COALESCE(max(last_seen), 0)::BIGINT FROM clusters";
const LISTS: &str =
    "SELECT version, kid, received_at FROM revocation_lists ORDER BY version DESC LIMIT 1000";
const AUDIT_SQLITE: &str =
    "SELECT id, time, actor, action, subject, detail, hash FROM audit ORDER BY id DESC LIMIT ?1";
const AUDIT_PG: &str =
    "SELECT id, time, actor, action, subject, detail, hash FROM audit ORDER BY id DESC LIMIT $1";

/// Answers `ask` on a SQLite read connection.
pub fn sqlite(c: &rusqlite::Connection, ask: Ask) -> Result<Answer, ApiError> {
    Ok(match ask {
        Ask::Licenses => Answer::Licenses(
            c.prepare_cached(LICENSES)?
                .query_map([], |r| {
                    Ok(LicenseRow {
                        license_id: r.get(0)?,
                        customer: r.get(1)?,
                        tier: r.get(2)?,
                        expires_at: r.get(3)?,
                        first_seen: r.get(4)?,
                    })
                })?
                .collect::<Result<_, _>>()?,
        ),
        Ask::History { since } => Answer::History(
            c.prepare_cached(HISTORY_SQLITE)?
                .query_map(rusqlite::params![since, MAX_HISTORY], |r| {
                    Ok(Beat {
                        license_id: r.get(0)?,
                        received_at: r.get(1)?,
                        active_nodes: r.get(2)?,
                        quotas: r.get(3)?,
                    })
                })?
                .collect::<Result<_, _>>()?,
        ),
        Ask::Lists => Answer::Lists(
            c.prepare_cached(LISTS)?
                .query_map([], |r| {
                    Ok(ListRow {
                        version: r.get(0)?,
                        kid: r.get(1)?,
                        received_at: r.get(2)?,
                    })
                })?
                .collect::<Result<_, _>>()?,
        ),
        Ask::Audit { latest } => {
            let verified = crate::audit::verify(c)
                .map(|v| (v.rows, v.head))
                .map_err(|e| format!("{e:#}"));
            let rows = c
                .prepare_cached(AUDIT_SQLITE)?
                .query_map([latest], |r| {
                    Ok(Row {
                        id: r.get(0)?,
                        time: r.get(1)?,
                        actor: r.get(2)?,
                        action: r.get(3)?,
                        subject: r.get(4)?,
                        detail: r.get(5)?,
                        hash: r.get(6)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            Answer::Audit(verified, rows)
        }
        Ask::Tokens => Answer::Tokens(
            crate::tokens::list(c).map_err(|e| ApiError::internal(format!("{e:#}")))?,
        ),
        Ask::Pulse => c
            .prepare_cached(PULSE_SQLITE)?
            .query_row([], |r| Ok(Answer::Pulse(r.get(0)?, r.get(1)?, r.get(2)?)))?,
    })
}

fn uint(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Answers `ask` on PostgreSQL.
pub async fn postgres(pool: &deadpool_postgres::Pool, ask: Ask) -> Result<Answer, ApiError> {
    let internal = |e: anyhow::Error| ApiError::internal(format!("{e:#}"));
    Ok(match ask {
        Ask::Audit { latest } => {
            let verified = crate::storage::postgres::admin::verify_audit(pool)
                .await
                .map(|v| (v.rows, v.head))
                .map_err(|e| format!("{e:#}"));
            let c = pool.get().await?;
            let rows = c
                .query(AUDIT_PG, &[&i64::from(latest)])
                .await?
                .iter()
                .map(|r| Row {
                    id: r.get(0),
                    time: uint(r.get(1)),
                    actor: r.get(2),
                    action: r.get(3),
                    subject: r.get(4),
                    detail: r.get(5),
                    hash: r.get(6),
                })
                .collect();
            Answer::Audit(verified, rows)
        }
        Ask::Tokens => Answer::Tokens(
            crate::storage::postgres::admin::list_tokens(pool)
                .await
                .map_err(internal)?,
        ),
        Ask::Licenses => Answer::Licenses(
            pool.get()
                .await?
                .query(LICENSES, &[])
                .await?
                .iter()
                .map(|r| LicenseRow {
                    license_id: r.get(0),
                    customer: r.get(1),
                    tier: r.get(2),
                    expires_at: uint(r.get(3)),
                    first_seen: uint(r.get(4)),
                })
                .collect(),
        ),
        Ask::History { since } => Answer::History(
            pool.get()
                .await?
                .query(
                    HISTORY_PG,
                    &[
                        &i64::try_from(since).unwrap_or(i64::MAX),
                        &i64::from(MAX_HISTORY),
                    ],
                )
                .await?
                .iter()
                .map(|r| Beat {
                    license_id: r.get(0),
                    received_at: uint(r.get(1)),
                    active_nodes: uint(r.get(2)),
                    quotas: r.get(3),
                })
                .collect(),
        ),
        Ask::Pulse => {
            let r = pool.get().await?.query_one(PULSE_PG, &[]).await?;
            Answer::Pulse(uint(r.get(0)), uint(r.get(1)), uint(r.get(2)))
        }
        Ask::Lists => Answer::Lists(
            pool.get()
                .await?
                .query(LISTS, &[])
                .await?
                .iter()
                .map(|r| ListRow {
                    version: uint(r.get(0)),
                    kid: r.get(1),
                    received_at: uint(r.get(2)),
                })
                .collect(),
        ),
    })
}
