//! What the console reads beyond the API's own queries, on both backends.
//! One storage entry point ([`crate::storage::Storage::console`]) takes an
//! [`Ask`] and gives the matching [`Answer`]; the SQL lives here, apart
//! from the API's, so the two can change independently. Every read is
//! bounded (a row cap), and nothing here writes.

use std::collections::BTreeMap;

use kaching_core::time::rfc3339;
use kaching_core::wire::relay::{Anomaly, ClusterRow};

use crate::audit::Row;
use crate::error::ApiError;
use crate::tokens::TokenInfo;

/// At most this many heartbeat history rows are read for one page.
pub const MAX_HISTORY: u32 = 20_000;

/// A question the console asks the database.
#[derive(Debug, Clone)]
pub enum Ask {
    /// One page of the fleet, filtered, ordered and paged by the database.
    Fleet(FleetAsk),
    /// The stored hash, scope and revocation of the token named `name`
    /// (a console session's key, see `super::session`).
    Session {
        /// The token's name.
        name: String,
    },
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
    /// A cheap fingerprint of what the console shows: it changes when a
    /// heartbeat, activation, deactivation, upgrade request or audit row
    /// lands (on any replica).
    Pulse,
}

/// The fleet page's filter as the database applies it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetAsk {
    /// Binding status to keep; empty: any.
    pub status: String,
    /// Text to find (lower case) in the cluster id, license id, hostname or
    /// customer; empty: anything. ASCII letters match either case.
    pub q: String,
    /// Only clusters with signs of rollback.
    pub flagged_only: bool,
    /// Rows to skip (clusters with signs of rollback first, then by id).
    pub offset: u64,
    /// Rows to return.
    pub limit: u32,
}

/// One page of the fleet (see [`Ask::Fleet`]).
#[derive(Debug, Clone, Default)]
pub struct FleetPage {
    /// The page's clusters, each with its latest signs of rollback.
    pub rows: Vec<ClusterRow>,
    /// The customer of each row's license.
    pub customers: BTreeMap<String, String>,
    /// Clusters the filter matches in all.
    pub matched: u64,
    /// Every cluster by binding status (the filter aside).
    pub by_status: BTreeMap<String, u64>,
    /// Clusters with signs of rollback (the filter aside).
    pub flagged: u64,
}

/// What the console needs of a token to check a session.
#[derive(Debug, Clone)]
pub struct SessionKey {
    /// The token's stored hash (the session MAC key).
    pub hash: String,
    /// Its scope as stored.
    pub scope: String,
    /// Whether it was revoked.
    pub revoked: bool,
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
    /// See [`Ask::Pulse`]: clusters, heartbeats ever, latest contact,
    /// newest upgrade request, newest audit row.
    Pulse([u64; 5]),
    /// See [`Ask::Fleet`].
    Fleet(FleetPage),
    /// See [`Ask::Session`]; `None` when no token has that name.
    Session(Option<SessionKey>),
}

const LICENSES: &str =
    "SELECT license_id, customer, tier, expires_at, first_seen FROM licenses ORDER BY expires_at, license_id LIMIT 10000";
const HISTORY_SQLITE: &str = "SELECT c.license_id, h.received_at, h.active_nodes, h.quotas
     FROM heartbeats h JOIN clusters c ON c.cluster_id = h.cluster_id
     WHERE h.received_at >= ?1 ORDER BY h.id DESC LIMIT ?2";
const HISTORY_PG: &str = "SELECT c.license_id, h.received_at, h.active_nodes, h.quotas
     FROM heartbeats h JOIN clusters c ON c.cluster_id = h.cluster_id
     WHERE h.received_at >= $1 ORDER BY h.id DESC LIMIT $2";
const PULSE_SQLITE: &str =
    "SELECT count(*), COALESCE(sum(heartbeats), 0), COALESCE(max(last_seen), 0),
            (SELECT COALESCE(max(id), 0) FROM upgrade_requests), (SELECT COALESCE(max(id), 0) FROM audit)
     FROM clusters";
const PULSE_PG: &str = "SELECT count(*)::BIGINT, COALESCE(sum(heartbeats), 0)::BIGINT, COALESCE(max(last_seen), 0)::BIGINT,
            (SELECT COALESCE(max(id), 0) FROM upgrade_requests)::BIGINT, (SELECT COALESCE(max(id), 0) FROM audit)::BIGINT
     FROM clusters";
const SESSION_SQLITE: &str =
    "SELECT hash, scope, revoked_at IS NOT NULL FROM tokens WHERE name = ?1";
const SESSION_PG: &str = "SELECT hash, scope, revoked_at IS NOT NULL FROM tokens WHERE name = $1";

// The fleet page: filter, order (signs of rollback first, then cluster id
// in byte order) and page in the database. Parameters: status ('' any),
// only flagged (0/1), text to find ('' any; lower case), limit, offset.
const FLEET_FROM_SQLITE: &str =
    "FROM clusters c LEFT JOIN licenses l ON l.license_id = c.license_id
     WHERE (?1 = '' OR c.status = ?1)
       AND (?2 = 0 OR EXISTS (SELECT 1 FROM anomalies a WHERE a.cluster_id = c.cluster_id))
       AND (?3 = '' OR instr(lower(c.cluster_id), ?3) > 0 OR instr(lower(c.license_id), ?3) > 0
            OR instr(lower(c.hostname), ?3) > 0 OR instr(lower(COALESCE(l.customer, '')), ?3) > 0)";
const FLEET_ROWS: &str =
    "SELECT c.cluster_id, c.license_id, c.hostname, c.status, c.activated_at, c.last_seen,
            c.last_seq, c.heartbeats, c.state, c.active_nodes, c.quotas, c.verifier_version,
            (SELECT h.report_seq FROM chain_heads h WHERE h.cluster_id = c.cluster_id),
            COALESCE(l.customer, ''),
            EXISTS (SELECT 1 FROM anomalies a WHERE a.cluster_id = c.cluster_id) AS flagged";
const FLEET_ORDER_SQLITE: &str = "ORDER BY flagged DESC, c.cluster_id LIMIT ?4 OFFSET ?5";
const FLEET_FROM_PG: &str = "FROM clusters c LEFT JOIN licenses l ON l.license_id = c.license_id
     WHERE ($1 = '' OR c.status = $1)
       AND (NOT $2 OR EXISTS (SELECT 1 FROM anomalies a WHERE a.cluster_id = c.cluster_id))
       AND ($3 = '' OR strpos(lower(c.cluster_id), $3) > 0 OR strpos(lower(c.license_id), $3) > 0
            OR strpos(lower(c.hostname), $3) > 0 OR strpos(lower(COALESCE(l.customer, '')), $3) > 0)";
const FLEET_ORDER_PG: &str = "ORDER BY flagged DESC, c.cluster_id COLLATE \"C\" LIMIT $4 OFFSET $5";
const BY_STATUS: &str = "SELECT status, count(*) FROM clusters GROUP BY status";
const FLAGGED: &str =
    "SELECT count(*) FROM clusters WHERE cluster_id IN (SELECT cluster_id FROM anomalies)";
const ANOMALIES_SQLITE: &str =
    "SELECT at, kind, detail FROM anomalies WHERE cluster_id = ?1 ORDER BY id DESC LIMIT ?2";
const ANOMALIES_PG: &str =
    "SELECT at, kind, detail FROM anomalies WHERE cluster_id = $1 ORDER BY id DESC LIMIT $2";

fn fleet_sqlite(c: &rusqlite::Connection, f: &FleetAsk) -> Result<FleetPage, ApiError> {
    let mut page = FleetPage::default();
    let flagged_only = i64::from(f.flagged_only);
    let rows_sql = format!("{FLEET_ROWS} {FLEET_FROM_SQLITE} {FLEET_ORDER_SQLITE}");
    let mut flagged_rows = Vec::new();
    let mut stmt = c.prepare_cached(&rows_sql)?;
    let mut it = stmt.query(rusqlite::params![
        f.status,
        flagged_only,
        f.q,
        f.limit,
        i64::try_from(f.offset).unwrap_or(i64::MAX)
    ])?;
    while let Some(r) = it.next()? {
        let quotas: String = r.get(10)?;
        let row = ClusterRow {
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
            quotas: crate::storage::parse_quotas(&quotas),
            verifier_version: r.get(11)?,
            report_seq: r.get(12)?,
            anomalies: Vec::new(),
        };
        page.customers.insert(row.license_id.clone(), r.get(13)?);
        if r.get::<_, bool>(14)? {
            flagged_rows.push(page.rows.len());
        }
        page.rows.push(row);
    }
    drop(it);
    for i in flagged_rows {
        let row = &mut page.rows[i];
        row.anomalies = c
            .prepare_cached(ANOMALIES_SQLITE)?
            .query_map(
                rusqlite::params![row.cluster_id, crate::storage::MAX_ANOMALIES as i64],
                |r| {
                    Ok(Anomaly {
                        at: rfc3339(r.get(0)?),
                        kind: r.get(1)?,
                        detail: r.get(2)?,
                    })
                },
            )?
            .collect::<Result<_, _>>()?;
    }
    page.matched = c
        .prepare_cached(&format!("SELECT count(*) {FLEET_FROM_SQLITE}"))?
        .query_row(rusqlite::params![f.status, flagged_only, f.q], |r| r.get(0))?;
    page.by_status = c
        .prepare_cached(BY_STATUS)?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    page.flagged = c.prepare_cached(FLAGGED)?.query_row([], |r| r.get(0))?;
    Ok(page)
}

async fn fleet_postgres(
    pool: &deadpool_postgres::Pool,
    f: &FleetAsk,
) -> Result<FleetPage, ApiError> {
    let c = pool.get().await?;
    let mut page = FleetPage::default();
    let offset = i64::try_from(f.offset).unwrap_or(i64::MAX);
    let rows_sql = format!("{FLEET_ROWS} {FLEET_FROM_PG} {FLEET_ORDER_PG}");
    let rows = c
        .query(
            &rows_sql,
            &[
                &f.status,
                &f.flagged_only,
                &f.q,
                &i64::from(f.limit),
                &offset,
            ],
        )
        .await?;
    for r in &rows {
        let row = ClusterRow {
            cluster_id: r.get(0),
            license_id: r.get(1),
            hostname: r.get(2),
            status: r.get(3),
            activated_at: rfc3339(uint(r.get(4))),
            last_seen: rfc3339(uint(r.get(5))),
            last_seq: uint(r.get(6)),
            heartbeats: uint(r.get(7)),
            state: r.get(8),
            active_nodes: uint(r.get(9)),
            quotas: crate::storage::parse_quotas(r.get(10)),
            verifier_version: r.get(11),
            report_seq: r.get::<_, Option<i64>>(12).map(uint),
            anomalies: Vec::new(),
        };
        page.customers.insert(row.license_id.clone(), r.get(13));
        page.rows.push(row);
        if r.get::<_, bool>(14) {
            let last = page.rows.len() - 1;
            let found = c
                .query(
                    ANOMALIES_PG,
                    &[
                        &page.rows[last].cluster_id,
                        &(crate::storage::MAX_ANOMALIES as i64),
                    ],
                )
                .await?;
            page.rows[last].anomalies = found
                .iter()
                .map(|a| Anomaly {
                    at: rfc3339(uint(a.get(0))),
                    kind: a.get(1),
                    detail: a.get(2),
                })
                .collect();
        }
    }
    page.matched = uint(
        c.query_one(
            &format!("SELECT count(*) {FLEET_FROM_PG}"),
            &[&f.status, &f.flagged_only, &f.q],
        )
        .await?
        .get(0),
    );
    page.by_status = c
        .query(BY_STATUS, &[])
        .await?
        .iter()
        .map(|r| (r.get(0), uint(r.get(1))))
        .collect();
    page.flagged = uint(c.query_one(FLAGGED, &[]).await?.get(0));
    Ok(page)
}
const LISTS: &str =
    "SELECT version, kid, received_at FROM revocation_lists ORDER BY version DESC LIMIT 1000";
const AUDIT_SQLITE: &str =
    "SELECT id, time, actor, action, subject, detail, hash FROM audit ORDER BY id DESC LIMIT ?1";
const AUDIT_PG: &str =
    "SELECT id, time, actor, action, subject, detail, hash FROM audit ORDER BY id DESC LIMIT $1";

/// Answers `ask` on a SQLite read connection.
pub fn sqlite(c: &rusqlite::Connection, ask: Ask) -> Result<Answer, ApiError> {
    Ok(match ask {
        Ask::Fleet(f) => Answer::Fleet(fleet_sqlite(c, &f)?),
        Ask::Session { name } => {
            use rusqlite::OptionalExtension;
            Answer::Session(
                c.prepare_cached(SESSION_SQLITE)?
                    .query_row([name], |r| {
                        Ok(SessionKey {
                            hash: r.get(0)?,
                            scope: r.get(1)?,
                            revoked: r.get(2)?,
                        })
                    })
                    .optional()?,
            )
        }
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
        Ask::Pulse => c.prepare_cached(PULSE_SQLITE)?.query_row([], |r| {
            Ok(Answer::Pulse([
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
            ]))
        })?,
    })
}

fn uint(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Answers `ask` on PostgreSQL.
pub async fn postgres(pool: &deadpool_postgres::Pool, ask: Ask) -> Result<Answer, ApiError> {
    let internal = |e: anyhow::Error| ApiError::internal(format!("{e:#}"));
    Ok(match ask {
        Ask::Fleet(f) => Answer::Fleet(fleet_postgres(pool, &f).await?),
        Ask::Session { name } => Answer::Session(
            pool.get()
                .await?
                .query_opt(SESSION_PG, &[&name])
                .await?
                .map(|r| SessionKey {
                    hash: r.get(0),
                    scope: r.get(1),
                    revoked: r.get(2),
                }),
        ),
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
            Answer::Pulse([
                uint(r.get(0)),
                uint(r.get(1)),
                uint(r.get(2)),
                uint(r.get(3)),
                uint(r.get(4)),
            ])
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
