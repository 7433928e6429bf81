//! What the console reads beyond the API's own queries, on both backends.
//! One storage entry point ([`crate::storage::Storage::console`]) takes an
//! [`Ask`] and gives the matching [`Answer`]; the SQL lives here, apart
//! from the API's, so the two can change independently. Every read is
//! bounded (a row cap), and nothing here writes.

use std::collections::BTreeMap;

use kaching_core::wire::relay::{ClusterRow, UpgradeRow};

use crate::audit::Row;
use crate::error::ApiError;
use crate::tokens::TokenInfo;

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
    /// One page of the licenses the relay has seen, soonest to expire
    /// first (or only the one named), how many there are, and the ones
    /// that expire soon (see [`LicenseList`]).
    Licenses(LicenseList),
    /// The heartbeats of each of `licenses` in each hour from `first_hour`
    /// to `last_hour` (relay time / 3600, both included), summed over the
    /// license's clusters (see [`LicenseHour`]). Reads the hours of those
    /// licenses' clusters only, so it costs the same in a fleet of 100 or
    /// 100 000 clusters.
    Trends {
        /// The licenses (the ones a page shows).
        licenses: Vec<String>,
        /// The first hour.
        first_hour: u64,
        /// The last hour.
        last_hour: u64,
    },
    /// One page of upgrade requests, newest first, each with its
    /// license's customer, and how many there are (of `license` only, when
    /// given).
    Inbox {
        /// Only this license's.
        license: Option<String>,
        /// Requests to skip.
        offset: u64,
        /// Requests to return.
        limit: u32,
    },
    /// The newest `newest` upgrade requests of each of `licenses` (the ones
    /// a page shows), and how many each has.
    UpgradesOf {
        /// The licenses.
        licenses: Vec<String>,
        /// Requests per license.
        newest: u32,
    },
    /// The first `first` clusters of each of `licenses` (the ones a page
    /// shows) by cluster id, each with its latest signs of rollback, and
    /// whether the license has more: two statements for the whole page.
    ClustersOf {
        /// The licenses.
        licenses: Vec<String>,
        /// Clusters per license.
        first: u32,
    },
    /// Every stored revocation list version.
    Lists,
    /// The audit chain's verification and its latest `latest` rows.
    Audit {
        /// How many rows to show.
        latest: u32,
        /// Walk only the rows after this one (id and hash, as an earlier
        /// whole walk found them: `crate::audit::verify_from`); none: the
        /// whole chain.
        from: Option<(i64, String)>,
    },
    /// Token names and scopes (never their secrets or hashes).
    Tokens,
    /// How far the list published at `since` has reached: active clusters
    /// in contact since then and silent since, counted by the database,
    /// and the [`MAX_SILENT`] silent the longest.
    Propagation {
        /// When the list in force was published here (relay time, seconds).
        since: u64,
    },
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

/// What [`Ask::Licenses`] reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LicenseList {
    /// Only this license (a link from the fleet or the inbox), instead of
    /// a page.
    pub only: Option<String>,
    /// Licenses to skip (soonest to expire first, then by id).
    pub offset: u64,
    /// Licenses to return.
    pub limit: u32,
    /// The renewals horizon: licenses that expire after `now` (relay time,
    /// seconds) and no later than `until` are "expiring".
    pub now: u64,
    /// See `now`.
    pub until: u64,
    /// Expiring licenses to return, soonest first.
    pub expiring: u32,
}

/// The answer to [`Ask::Licenses`].
#[derive(Debug, Clone, Default)]
pub struct LicensePage {
    /// The page (or the one license asked for, when the relay has it).
    pub shown: Vec<LicenseRow>,
    /// Licenses the relay has seen, in all.
    pub total: u64,
    /// The soonest to expire within the horizon, soonest first.
    pub expiring: Vec<LicenseRow>,
    /// Licenses that expire within the horizon, in all.
    pub expiring_total: u64,
}

/// One license's heartbeats in one hour, over all its clusters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LicenseHour {
    /// The license.
    pub license_id: String,
    /// The hour (relay time / 3600).
    pub hour: u64,
    /// Heartbeats its clusters sent in the hour.
    pub beats: u64,
    /// The most nodes any of its clusters reported in the hour.
    pub max_nodes: u64,
    /// Quota name → the highest of its clusters' last counters of the hour
    /// (counters only grow within a period, so the last is the hour's
    /// highest).
    pub quotas: BTreeMap<String, u64>,
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
    Licenses(LicensePage),
    /// See [`Ask::Trends`]: by license, then hour.
    Trends(Vec<LicenseHour>),
    /// See [`Ask::Inbox`]: the page's requests with their customer (empty
    /// when the relay holds no such license), and how many in all.
    Inbox(Vec<(UpgradeRow, String)>, u64),
    /// See [`Ask::ClustersOf`]: license → (its first clusters, whether
    /// it has more).
    ClustersOf(BTreeMap<String, (Vec<ClusterRow>, bool)>),
    /// See [`Ask::UpgradesOf`]: license → (its newest requests, how many).
    UpgradesOf(BTreeMap<String, (Vec<UpgradeRow>, u64)>),
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
    /// See [`Ask::Propagation`].
    Propagation(Propagation),
}

/// Most silent clusters [`Ask::Propagation`] lists (the count is exact).
pub const MAX_SILENT: u32 = 100;

/// See [`Ask::Propagation`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Propagation {
    /// Active clusters whose last contact came at or after the publish.
    pub reached: u64,
    /// Active clusters silent since.
    pub silent: u64,
    /// Up to [`MAX_SILENT`] of the silent: `(cluster, hostname, last
    /// contact)`, silent the longest first.
    pub oldest_silent: Vec<(String, String, u64)>,
}

// Counted and listed by the database: the page never reads the fleet.
const REACHED_SQLITE: &str =
    "SELECT count(*) FILTER (WHERE last_seen >= ?1), count(*) FILTER (WHERE last_seen < ?1)
     FROM clusters WHERE status = 'active'";
const REACHED_PG: &str =
    "SELECT count(*) FILTER (WHERE last_seen >= $1), count(*) FILTER (WHERE last_seen < $1)
     FROM clusters WHERE status = 'active'";
const SILENT_SQLITE: &str = "SELECT cluster_id, hostname, last_seen FROM clusters
     WHERE status = 'active' AND last_seen < ?1 ORDER BY last_seen, cluster_id LIMIT ?2";
const SILENT_PG: &str = "SELECT cluster_id, hostname, last_seen FROM clusters
     WHERE status = 'active' AND last_seen < $1 ORDER BY last_seen, cluster_id LIMIT $2";

// The licenses page's reads, ordered by (expires_at, license_id): a page
// of licenses, one by id, the count, and the renewals horizon (after `$1`,
// no later than `$2`). `$N` is numbered in order of appearance, so the
// same text binds on both backends.
const LICENSES_PAGE: &str =
    "SELECT license_id, customer, tier, expires_at, first_seen FROM licenses
     ORDER BY expires_at, license_id LIMIT $1 OFFSET $2";
const LICENSE_ONE: &str =
    "SELECT license_id, customer, tier, expires_at, first_seen FROM licenses WHERE license_id = $1";
const LICENSES_COUNT: &str = "SELECT count(*) FROM licenses";
const EXPIRING: &str = "SELECT license_id, customer, tier, expires_at, first_seen FROM licenses
     WHERE expires_at > $1 AND expires_at <= $2 ORDER BY expires_at, license_id LIMIT $3";
const EXPIRING_COUNT: &str =
    "SELECT count(*) FROM licenses WHERE expires_at > $1 AND expires_at <= $2";
// Each shown license's hours, summed in the database: the clusters of the
// licenses (through `clusters_by_license`), each cluster's closed hours
// found by key (hour, cluster_id) for each hour of the range, plus the
// hour each cluster holds on its row; then per license and hour the
// heartbeats, the most nodes and, per quota, the highest last counter.
// The two halves of the answer are told apart by the NULL key of the
// first. Quota counters are u64 in the wire; one above i64::MAX reads as
// i64::MAX. `?1`/`$1`: the license ids (a JSON array on SQLite, an array
// on PostgreSQL); 2, 3: first and last hour. On PostgreSQL each (hour,
// cluster) is one key seek in a lateral `LIMIT 1` (the key is unique):
// written as a join, the planner hashed the whole table instead at 10k
// clusters (230k hour rows: 42 ms against 4 ms for the 1 440 seeks).
const TRENDS_SQLITE: &str = "WITH RECURSIVE
     hours(hour) AS (SELECT ?2 UNION ALL SELECT hour + 1 FROM hours WHERE hour < ?3),
     mine AS (SELECT cluster_id, license_id, hour, hour_beats, hour_max_nodes, quotas FROM clusters
              WHERE license_id IN (SELECT value FROM json_each(?1))),
     h AS (SELECT m.license_id, c.hour, c.beats, c.max_nodes, c.quotas
             FROM mine m CROSS JOIN hours CROSS JOIN heartbeat_hours c
             WHERE c.hour = hours.hour AND c.cluster_id = m.cluster_id
           UNION ALL
           SELECT license_id, hour, hour_beats, hour_max_nodes, quotas FROM mine
             WHERE hour BETWEEN ?2 AND ?3)
     SELECT license_id, hour, sum(beats), max(max_nodes), NULL, NULL FROM h GROUP BY license_id, hour
     UNION ALL
     SELECT h.license_id, h.hour, NULL, NULL, j.key, CAST(min(max(j.value), 9223372036854775807) AS INTEGER)
     FROM h, json_each(h.quotas) j WHERE j.type IN ('integer', 'real') AND j.value >= 0
     GROUP BY h.license_id, h.hour, j.key";
const TRENDS_PG: &str = "WITH mine AS (
         SELECT cluster_id, license_id, hour, hour_beats, hour_max_nodes, quotas FROM clusters
         WHERE license_id = ANY($1::TEXT[])),
     h AS (SELECT m.license_id, c.hour::BIGINT AS hour, c.beats::BIGINT AS beats,
                  c.max_nodes::BIGINT AS max_nodes, c.quotas
             FROM mine m CROSS JOIN generate_series($2::BIGINT, $3::BIGINT) AS g(hour)
             CROSS JOIN LATERAL (SELECT hour, beats, max_nodes, quotas FROM heartbeat_hours
                                 WHERE hour = g.hour AND cluster_id = m.cluster_id LIMIT 1) c
           UNION ALL
           SELECT license_id, hour::BIGINT, hour_beats::BIGINT, hour_max_nodes::BIGINT, quotas FROM mine
             WHERE hour BETWEEN $2::BIGINT AND $3::BIGINT)
     SELECT license_id, hour, sum(beats)::BIGINT, max(max_nodes)::BIGINT, NULL::TEXT, NULL::BIGINT
     FROM h GROUP BY license_id, hour
     UNION ALL
     SELECT h.license_id, h.hour, NULL, NULL, j.key,
            least(max(j.value::TEXT::NUMERIC), 9223372036854775807)::BIGINT
     FROM h CROSS JOIN LATERAL jsonb_each(h.quotas::JSONB) AS j
     WHERE jsonb_typeof(j.value) = 'number' AND j.value::TEXT::NUMERIC >= 0
     GROUP BY h.license_id, h.hour, j.key";
// The inbox: one page of upgrade requests, newest first, each with its
// license's customer; one statement per case so a license's requests are
// found through the `(license_id, …)` key. `$N` is numbered in order of
// appearance, so the same text binds on both backends.
const INBOX_ALL: &str = "SELECT u.license_id, u.cluster_id, u.requested_tier, u.message, u.time,
            u.received_at, u.source, COALESCE(l.customer, '')
     FROM upgrade_requests u LEFT JOIN licenses l ON l.license_id = u.license_id
     ORDER BY u.id DESC LIMIT $1 OFFSET $2";
const INBOX_OF: &str = "SELECT u.license_id, u.cluster_id, u.requested_tier, u.message, u.time,
            u.received_at, u.source, COALESCE(l.customer, '')
     FROM upgrade_requests u LEFT JOIN licenses l ON l.license_id = u.license_id
     WHERE u.license_id = $1 ORDER BY u.id DESC LIMIT $2 OFFSET $3";
const INBOX_COUNT_ALL: &str = "SELECT count(*) FROM upgrade_requests";
const INBOX_COUNT_OF: &str = "SELECT count(*) FROM upgrade_requests WHERE license_id = $1";
// The licenses page: each shown license's first `?2` clusters by id (byte
// order on both backends), found through `clusters_by_license`, and their
// signs of rollback.
const CLUSTERS_OF_SQLITE: &str =
    "SELECT c.cluster_id, c.license_id, c.hostname, c.status, c.activated_at,
            c.last_seen, c.last_seq, c.heartbeats, c.state, c.active_nodes, c.quotas,
            c.verifier_version, c.report_seq
     FROM (SELECT cluster_id, row_number() OVER (PARTITION BY license_id ORDER BY cluster_id) AS n
           FROM clusters WHERE license_id IN (SELECT value FROM json_each(?1))) k
     JOIN clusters c ON c.cluster_id = k.cluster_id
     WHERE k.n <= ?2 ORDER BY c.cluster_id";
const CLUSTERS_OF_PG: &str =
    "SELECT c.cluster_id, c.license_id, c.hostname, c.status, c.activated_at,
            c.last_seen, c.last_seq, c.heartbeats, c.state, c.active_nodes, c.quotas,
            c.verifier_version, c.report_seq
     FROM (SELECT cluster_id,
                  row_number() OVER (PARTITION BY license_id ORDER BY cluster_id COLLATE \"C\") AS n
           FROM clusters WHERE license_id = ANY($1::TEXT[])) k
     JOIN clusters c ON c.cluster_id = k.cluster_id
     WHERE k.n <= $2 ORDER BY c.cluster_id COLLATE \"C\"";
const CLUSTER_ANOMALIES_SQLITE: &str = "SELECT cluster_id, at, kind, detail FROM anomalies
     WHERE cluster_id IN (SELECT value FROM json_each(?1)) ORDER BY cluster_id, id DESC";
const CLUSTER_ANOMALIES_PG: &str = "SELECT cluster_id, at, kind, detail FROM anomalies
     WHERE cluster_id = ANY($1::TEXT[]) ORDER BY cluster_id COLLATE \"C\", id DESC";

/// Fills in the latest signs of rollback of `rows` (in cluster-id order)
/// in one read.
fn attach_anomalies_sqlite(
    c: &rusqlite::Connection,
    rows: &mut [ClusterRow],
) -> Result<(), ApiError> {
    let ids: Vec<&str> = rows.iter().map(|r| r.cluster_id.as_str()).collect();
    let ids = serde_json::to_string(&ids).map_err(ApiError::internal)?;
    let found = c
        .prepare_cached(CLUSTER_ANOMALIES_SQLITE)?
        .query_map([ids], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    crate::storage::attach_anomalies(rows, found);
    Ok(())
}

/// [`attach_anomalies_sqlite`] on PostgreSQL: one round trip.
async fn attach_anomalies_pg(
    c: &tokio_postgres::Client,
    rows: &mut [ClusterRow],
) -> Result<(), ApiError> {
    let ids: Vec<&str> = rows.iter().map(|r| r.cluster_id.as_str()).collect();
    let found = c
        .query(CLUSTER_ANOMALIES_PG, &[&ids])
        .await?
        .iter()
        .map(|r| (r.get(0), uint(r.get(1)), r.get(2), r.get(3)))
        .collect();
    crate::storage::attach_anomalies(rows, found);
    Ok(())
}
// The licenses page: each shown license's newest `?2` requests and its
// count, read through the `(license_id, …)` key.
const UPGRADES_OF_SQLITE: &str = "SELECT license_id, cluster_id, requested_tier, message, time,
            received_at, source, total
     FROM (SELECT *, row_number() OVER (PARTITION BY license_id ORDER BY id DESC) AS n,
                  count(*) OVER (PARTITION BY license_id) AS total
           FROM upgrade_requests WHERE license_id IN (SELECT value FROM json_each(?1)))
     WHERE n <= ?2 ORDER BY license_id, n";
const UPGRADES_OF_PG: &str = "SELECT license_id, cluster_id, requested_tier, message, time,
            received_at, source, total
     FROM (SELECT *, row_number() OVER (PARTITION BY license_id ORDER BY id DESC) AS n,
                  count(*) OVER (PARTITION BY license_id) AS total
           FROM upgrade_requests WHERE license_id = ANY($1::TEXT[])) AS r
     WHERE n <= $2 ORDER BY license_id, n";
const PULSE_SQLITE: &str =
    "SELECT count(*), COALESCE(sum(heartbeats), 0), COALESCE(max(last_seen), 0),
            (SELECT COALESCE(max(id), 0) FROM upgrade_requests), (SELECT COALESCE(max(id), 0) FROM audit)
     FROM clusters";
const PULSE_PG: &str = "SELECT count(*)::BIGINT, COALESCE(sum(heartbeats), 0)::BIGINT, COALESCE(max(last_seen), 0)::BIGINT,
            (SELECT COALESCE(max(id), 0) FROM upgrade_requests)::BIGINT, (SELECT COALESCE(max(id), 0) FROM audit)::BIGINT
     FROM clusters";
// The live token of that name when there is one (names are unique among
// live tokens; revoked ones may share it): a cookie of a revoked token
// then meets the new token's hash, which its MAC does not match.
const SESSION_SQLITE: &str =
    "SELECT hash, scope, revoked_at IS NOT NULL FROM tokens WHERE name = ?1
     ORDER BY revoked_at IS NOT NULL, created_at DESC LIMIT 1";
const SESSION_PG: &str = "SELECT hash, scope, revoked_at IS NOT NULL FROM tokens WHERE name = $1
     ORDER BY revoked_at IS NOT NULL, created_at DESC LIMIT 1";

// The fleet page: filter, order (signs of rollback first, then cluster id
// in byte order) and page in the database. Two ordered reads instead of
// one sort: the flagged clusters (few: found through the anomalies
// index), then the others walked in cluster-id order, so the first pages
// read about as many rows as they show. Only the clauses a filter needs
// are in the SQL; values are always bound, never spliced.
const FLEET_COLS: &str =
    "SELECT c.cluster_id, c.license_id, c.hostname, c.status, c.activated_at, c.last_seen,
            c.last_seq, c.heartbeats, c.state, c.active_nodes, c.quotas, c.verifier_version,
            (SELECT h.report_seq FROM chain_heads h WHERE h.cluster_id = c.cluster_id),
            COALESCE(l.customer, '')";
const BY_STATUS: &str = "SELECT status, count(*) FROM clusters GROUP BY status";
const FLAGGED: &str =
    "SELECT count(*) FROM clusters WHERE cluster_id IN (SELECT cluster_id FROM anomalies)";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Pg,
}

/// A value a fleet statement binds, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bind {
    Status,
    Q,
    Limit(u64),
    Offset(u64),
}

/// Which part of the fleet a statement reads.
#[derive(Clone, Copy)]
enum Part {
    /// How many match, of the flagged (`Some(true)`), the others, or all.
    Count(Option<bool>),
    /// One ordered window of the flagged or the other clusters.
    Rows {
        flagged: bool,
        limit: u64,
        offset: u64,
    },
}

fn fleet_sql(d: Dialect, f: &FleetAsk, part: Part) -> (String, Vec<Bind>) {
    let mut binds = Vec::new();
    let mut p = |b: Bind| {
        binds.push(b);
        match d {
            Dialect::Sqlite => format!("?{}", binds.len()),
            Dialect::Pg => format!("${}", binds.len()),
        }
    };
    let find = match d {
        Dialect::Sqlite => "instr",
        Dialect::Pg => "strpos",
    };
    let rows = matches!(part, Part::Rows { .. });
    let mut sql = String::from(if rows { FLEET_COLS } else { "SELECT count(*)" });
    sql.push_str(" FROM clusters c");
    if rows || !f.q.is_empty() {
        sql.push_str(" LEFT JOIN licenses l ON l.license_id = c.license_id");
    }
    sql.push_str(" WHERE TRUE");
    if !f.status.is_empty() {
        sql.push_str(&format!(" AND c.status = {}", p(Bind::Status)));
    }
    if !f.q.is_empty() {
        let q = p(Bind::Q);
        sql.push_str(&format!(
            " AND ({find}(lower(c.cluster_id), {q}) > 0 OR {find}(lower(c.license_id), {q}) > 0 \
             OR {find}(lower(c.hostname), {q}) > 0 OR {find}(lower(COALESCE(l.customer, '')), {q}) > 0)"
        ));
    }
    let flagged = match part {
        Part::Count(f) => f,
        Part::Rows { flagged, .. } => Some(flagged),
    };
    match flagged {
        Some(true) => sql.push_str(" AND c.cluster_id IN (SELECT cluster_id FROM anomalies)"),
        Some(false) => sql.push_str(" AND c.cluster_id NOT IN (SELECT cluster_id FROM anomalies)"),
        None => {}
    }
    if let Part::Rows { limit, offset, .. } = part {
        let collate = if d == Dialect::Pg {
            " COLLATE \"C\""
        } else {
            ""
        };
        let (l, o) = (p(Bind::Limit(limit)), p(Bind::Offset(offset)));
        sql.push_str(&format!(
            " ORDER BY c.cluster_id{collate} LIMIT {l} OFFSET {o}"
        ));
    }
    (sql, binds)
}

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Where the page `offset..offset+limit` of "flagged first, then the
/// others" falls, given how many flagged clusters match: the window of
/// the flagged, and the window of the others (`(limit, offset)` each;
/// a zero limit reads nothing).
pub fn windows(offset: u64, limit: u64, flagged: u64) -> ((u64, u64), (u64, u64)) {
    let first = if offset < flagged {
        (limit.min(flagged - offset), offset)
    } else {
        (0, 0)
    };
    let rest_limit = limit - first.0;
    let rest_offset = offset.saturating_sub(flagged);
    (first, (rest_limit, rest_offset))
}

/// The reads one fleet page takes, in order, as `(flagged, limit,
/// offset)`: the flagged clusters' window, then (unless only flagged ones
/// are asked for) the others'; a window with nothing in it is left out.
fn reads(f: &FleetAsk, flagged_matched: u64) -> Vec<(bool, u64, u64)> {
    let (first, rest) = windows(f.offset, u64::from(f.limit), flagged_matched);
    let mut parts = vec![(true, first)];
    if !f.flagged_only {
        parts.push((false, rest));
    }
    parts
        .into_iter()
        .filter(|(_, (limit, _))| *limit > 0)
        .map(|(flagged, (limit, offset))| (flagged, limit, offset))
        .collect()
}

fn no_filter(f: &FleetAsk) -> bool {
    f.status.is_empty() && f.q.is_empty() && !f.flagged_only
}

fn fleet_sqlite(c: &rusqlite::Connection, f: &FleetAsk) -> Result<FleetPage, ApiError> {
    let bind = |b: &[Bind]| -> Vec<rusqlite::types::Value> {
        b.iter()
            .map(|b| match b {
                Bind::Status => rusqlite::types::Value::Text(f.status.clone()),
                Bind::Q => rusqlite::types::Value::Text(f.q.clone()),
                Bind::Limit(n) | Bind::Offset(n) => rusqlite::types::Value::Integer(int(*n)),
            })
            .collect()
    };
    let count = |which: Option<bool>| -> Result<u64, ApiError> {
        let (sql, b) = fleet_sql(Dialect::Sqlite, f, Part::Count(which));
        Ok(c.prepare_cached(&sql)?
            .query_row(rusqlite::params_from_iter(bind(&b)), |r| r.get(0))?)
    };
    let mut page = FleetPage {
        by_status: c
            .prepare_cached(BY_STATUS)?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?,
        flagged: c.prepare_cached(FLAGGED)?.query_row([], |r| r.get(0))?,
        ..FleetPage::default()
    };
    let flagged_matched = if f.status.is_empty() && f.q.is_empty() {
        page.flagged
    } else {
        count(Some(true))?
    };
    page.matched = if f.flagged_only {
        flagged_matched
    } else if no_filter(f) {
        page.by_status.values().sum()
    } else {
        count(None)?
    };
    for (flagged, limit, offset) in reads(f, flagged_matched) {
        let (sql, b) = fleet_sql(
            Dialect::Sqlite,
            f,
            Part::Rows {
                flagged,
                limit,
                offset,
            },
        );
        let mut rows = Vec::new();
        let mut stmt = c.prepare_cached(&sql)?;
        let mut it = stmt.query(rusqlite::params_from_iter(bind(&b)))?;
        while let Some(r) = it.next()? {
            let row = crate::storage::sqlite::cluster_row(r)?;
            page.customers.insert(row.license_id.clone(), r.get(13)?);
            rows.push(row);
        }
        if flagged {
            // The window's signs of rollback in one read (rows are in id order).
            attach_anomalies_sqlite(c, &mut rows)?;
        }
        page.rows.extend(rows);
    }
    Ok(page)
}

type PgValue = Box<dyn tokio_postgres::types::ToSql + Sync + Send>;

fn refs(v: &[PgValue]) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
    v.iter()
        .map(|b| b.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect()
}

async fn fleet_postgres(
    pool: &deadpool_postgres::Pool,
    f: &FleetAsk,
) -> Result<FleetPage, ApiError> {
    let c = pool.get().await?;
    let owned = |b: &[Bind]| -> Vec<PgValue> {
        b.iter()
            .map(|b| -> PgValue {
                match b {
                    Bind::Status => Box::new(f.status.clone()),
                    Bind::Q => Box::new(f.q.clone()),
                    Bind::Limit(n) | Bind::Offset(n) => Box::new(int(*n)),
                }
            })
            .collect()
    };
    let mut page = FleetPage {
        by_status: c
            .query(BY_STATUS, &[])
            .await?
            .iter()
            .map(|r| (r.get(0), uint(r.get(1))))
            .collect(),
        flagged: uint(c.query_one(FLAGGED, &[]).await?.get(0)),
        ..FleetPage::default()
    };
    let flagged_matched = if f.status.is_empty() && f.q.is_empty() {
        page.flagged
    } else {
        let (sql, b) = fleet_sql(Dialect::Pg, f, Part::Count(Some(true)));
        let v = owned(&b);
        uint(c.query_one(&sql, &refs(&v)).await?.get(0))
    };
    page.matched = if f.flagged_only {
        flagged_matched
    } else if no_filter(f) {
        page.by_status.values().sum()
    } else {
        let (sql, b) = fleet_sql(Dialect::Pg, f, Part::Count(None));
        let v = owned(&b);
        uint(c.query_one(&sql, &refs(&v)).await?.get(0))
    };
    for (flagged, limit, offset) in reads(f, flagged_matched) {
        let (sql, b) = fleet_sql(
            Dialect::Pg,
            f,
            Part::Rows {
                flagged,
                limit,
                offset,
            },
        );
        let v = owned(&b);
        let mut rows = Vec::new();
        for r in &c.query(&sql, &refs(&v)).await? {
            let row = crate::storage::postgres::cluster_row(r);
            page.customers.insert(row.license_id.clone(), r.get(13));
            rows.push(row);
        }
        if flagged {
            // The window's signs of rollback in one round trip, not one per
            // cluster (rows are in id order, byte-wise as `COLLATE "C"`).
            attach_anomalies_pg(&c, &mut rows).await?;
        }
        page.rows.extend(rows);
    }
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
        Ask::Licenses(l) => {
            let row = |r: &rusqlite::Row<'_>| {
                Ok(LicenseRow {
                    license_id: r.get(0)?,
                    customer: r.get(1)?,
                    tier: r.get(2)?,
                    expires_at: r.get(3)?,
                    first_seen: r.get(4)?,
                })
            };
            let shown: rusqlite::Result<Vec<LicenseRow>> = match &l.only {
                Some(id) => c
                    .prepare_cached(LICENSE_ONE)?
                    .query_map([id], row)?
                    .collect(),
                None => c
                    .prepare_cached(LICENSES_PAGE)?
                    .query_map(rusqlite::params![l.limit, l.offset], row)?
                    .collect(),
            };
            let horizon = rusqlite::params![l.now, l.until];
            Answer::Licenses(LicensePage {
                shown: shown?,
                total: c
                    .prepare_cached(LICENSES_COUNT)?
                    .query_row([], |r| r.get(0))?,
                expiring: c
                    .prepare_cached(EXPIRING)?
                    .query_map(rusqlite::params![l.now, l.until, l.expiring], row)?
                    .collect::<Result<_, _>>()?,
                expiring_total: c
                    .prepare_cached(EXPIRING_COUNT)?
                    .query_row(horizon, |r| r.get(0))?,
            })
        }
        Ask::Trends {
            licenses,
            first_hour,
            last_hour,
        } => {
            let ids = serde_json::to_string(&licenses).map_err(ApiError::internal)?;
            Answer::Trends(license_hours(
                c.prepare_cached(TRENDS_SQLITE)?
                    .query_map(rusqlite::params![ids, first_hour, last_hour], |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                        ))
                    })?
                    .collect::<Result<_, _>>()?,
            ))
        }
        Ask::Inbox {
            license,
            offset,
            limit,
        } => {
            let row =
                |r: &rusqlite::Row<'_>| Ok((crate::storage::sqlite::upgrade_row(r)?, r.get(7)?));
            let (rows, total) = match &license {
                Some(id) => (
                    c.prepare_cached(INBOX_OF)?
                        .query_map(rusqlite::params![id, limit, offset], row)?
                        .collect::<Result<_, _>>()?,
                    c.prepare_cached(INBOX_COUNT_OF)?
                        .query_row([id], |r| r.get(0))?,
                ),
                None => (
                    c.prepare_cached(INBOX_ALL)?
                        .query_map(rusqlite::params![limit, offset], row)?
                        .collect::<Result<_, _>>()?,
                    c.prepare_cached(INBOX_COUNT_ALL)?
                        .query_row([], |r| r.get(0))?,
                ),
            };
            Answer::Inbox(rows, total)
        }
        Ask::UpgradesOf { licenses, newest } => {
            let ids = serde_json::to_string(&licenses).map_err(ApiError::internal)?;
            let mut out: BTreeMap<String, (Vec<UpgradeRow>, u64)> = BTreeMap::new();
            let mut stmt = c.prepare_cached(UPGRADES_OF_SQLITE)?;
            let mut rows = stmt.query(rusqlite::params![ids, newest])?;
            while let Some(r) = rows.next()? {
                let row = crate::storage::sqlite::upgrade_row(r)?;
                let e = out.entry(row.license_id.clone()).or_default();
                e.1 = r.get(7)?;
                e.0.push(row);
            }
            Answer::UpgradesOf(out)
        }
        Ask::ClustersOf { licenses, first } => {
            let ids = serde_json::to_string(&licenses).map_err(ApiError::internal)?;
            let mut rows: Vec<ClusterRow> = c
                .prepare_cached(CLUSTERS_OF_SQLITE)?
                .query_map(
                    rusqlite::params![ids, first.saturating_add(1)],
                    crate::storage::sqlite::cluster_row,
                )?
                .collect::<Result<_, _>>()?;
            attach_anomalies_sqlite(c, &mut rows)?;
            Answer::ClustersOf(by_license(rows, first))
        }
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
        Ask::Audit { latest, from } => {
            let verified = crate::audit::verify_from(c, from)
                .map(|v| (v.rows, v.head))
                .map_err(|e| format!("{e:#}"));
            let rows = c
                .prepare_cached(AUDIT_SQLITE)?
                .query_map([latest], Row::read)?
                .collect::<Result<_, _>>()?;
            Answer::Audit(verified, rows)
        }
        Ask::Tokens => Answer::Tokens(
            crate::tokens::list(c).map_err(|e| ApiError::internal(format!("{e:#}")))?,
        ),
        Ask::Propagation { since } => {
            let since = i64::try_from(since).unwrap_or(i64::MAX);
            let (reached, silent) = c
                .prepare_cached(REACHED_SQLITE)?
                .query_row([since], |r| Ok((r.get(0)?, r.get(1)?)))?;
            let oldest_silent = c
                .prepare_cached(SILENT_SQLITE)?
                .query_map(rusqlite::params![since, MAX_SILENT], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect::<Result<_, _>>()?;
            Answer::Propagation(Propagation {
                reached,
                silent,
                oldest_silent,
            })
        }
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

/// Each license's clusters (in cluster-id order, at most `first` + 1 read)
/// cut to `first`, and whether there were more.
fn by_license(rows: Vec<ClusterRow>, first: u32) -> BTreeMap<String, (Vec<ClusterRow>, bool)> {
    let mut out: BTreeMap<String, (Vec<ClusterRow>, bool)> = BTreeMap::new();
    for r in rows {
        let e = out.entry(r.license_id.clone()).or_default();
        if e.0.len() < first as usize {
            e.0.push(r);
        } else {
            e.1 = true;
        }
    }
    out
}

/// A row of the trends statements: license, hour, then either heartbeats
/// and most nodes (no quota) or one quota's name and highest counter.
type TrendRow = (
    String,
    u64,
    Option<u64>,
    Option<u64>,
    Option<String>,
    Option<u64>,
);

/// Gathers the trends statements' rows into one [`LicenseHour`] per
/// license and hour, by license, then hour.
fn license_hours(rows: Vec<TrendRow>) -> Vec<LicenseHour> {
    let mut out: BTreeMap<(String, u64), LicenseHour> = BTreeMap::new();
    for (license_id, hour, beats, max_nodes, quota, used) in rows {
        let h = out
            .entry((license_id.clone(), hour))
            .or_insert_with(|| LicenseHour {
                license_id,
                hour,
                ..LicenseHour::default()
            });
        match quota {
            Some(name) => {
                h.quotas.insert(name, used.unwrap_or(0));
            }
            None => {
                h.beats = beats.unwrap_or(0);
                h.max_nodes = max_nodes.unwrap_or(0);
            }
        }
    }
    out.into_values().collect()
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
        Ask::Audit { latest, from } => {
            let verified = crate::storage::postgres::admin::verify_audit_from(pool, from)
                .await
                .map(|v| (v.rows, v.head))
                .map_err(|e| format!("{e:#}"));
            let c = pool.get().await?;
            let rows = c
                .query(AUDIT_PG, &[&i64::from(latest)])
                .await?
                .iter()
                .map(crate::storage::postgres::admin::audit_row)
                .collect();
            Answer::Audit(verified, rows)
        }
        Ask::Tokens => Answer::Tokens(
            crate::storage::postgres::admin::list_tokens(pool)
                .await
                .map_err(internal)?,
        ),
        Ask::Licenses(l) => {
            let c = pool.get().await?;
            let row = |r: &tokio_postgres::Row| LicenseRow {
                license_id: r.get(0),
                customer: r.get(1),
                tier: r.get(2),
                expires_at: uint(r.get(3)),
                first_seen: uint(r.get(4)),
            };
            let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            let (now, until) = (int(l.now), int(l.until));
            let shown = match &l.only {
                Some(id) => c.query(LICENSE_ONE, &[id]).await?,
                None => {
                    c.query(LICENSES_PAGE, &[&i64::from(l.limit), &int(l.offset)])
                        .await?
                }
            };
            let expiring = c
                .query(EXPIRING, &[&now, &until, &i64::from(l.expiring)])
                .await?;
            Answer::Licenses(LicensePage {
                shown: shown.iter().map(row).collect(),
                total: uint(c.query_one(LICENSES_COUNT, &[]).await?.get(0)),
                expiring: expiring.iter().map(row).collect(),
                expiring_total: uint(c.query_one(EXPIRING_COUNT, &[&now, &until]).await?.get(0)),
            })
        }
        Ask::Trends {
            licenses,
            first_hour,
            last_hour,
        } => {
            let hour = |h: u64| i64::try_from(h).unwrap_or(i64::MAX);
            Answer::Trends(license_hours(
                pool.get()
                    .await?
                    .query(TRENDS_PG, &[&licenses, &hour(first_hour), &hour(last_hour)])
                    .await?
                    .iter()
                    .map(|r| {
                        (
                            r.get(0),
                            uint(r.get(1)),
                            r.get::<_, Option<i64>>(2).map(uint),
                            r.get::<_, Option<i64>>(3).map(uint),
                            r.get(4),
                            r.get::<_, Option<i64>>(5).map(uint),
                        )
                    })
                    .collect(),
            ))
        }
        Ask::Inbox {
            license,
            offset,
            limit,
        } => {
            let c = pool.get().await?;
            let (offset, limit) = (i64::try_from(offset).unwrap_or(i64::MAX), i64::from(limit));
            let (rows, total) = match &license {
                Some(id) => (
                    c.query(INBOX_OF, &[id, &limit, &offset]).await?,
                    c.query_one(INBOX_COUNT_OF, &[id]).await?,
                ),
                None => (
                    c.query(INBOX_ALL, &[&limit, &offset]).await?,
                    c.query_one(INBOX_COUNT_ALL, &[]).await?,
                ),
            };
            Answer::Inbox(
                rows.iter()
                    .map(|r| (crate::storage::postgres::upgrade_row(r), r.get(7)))
                    .collect(),
                uint(total.get(0)),
            )
        }
        Ask::UpgradesOf { licenses, newest } => {
            let mut out: BTreeMap<String, (Vec<UpgradeRow>, u64)> = BTreeMap::new();
            for r in pool
                .get()
                .await?
                .query(UPGRADES_OF_PG, &[&licenses, &i64::from(newest)])
                .await?
            {
                let row = crate::storage::postgres::upgrade_row(&r);
                let e = out.entry(row.license_id.clone()).or_default();
                e.1 = uint(r.get(7));
                e.0.push(row);
            }
            Answer::UpgradesOf(out)
        }
        Ask::ClustersOf { licenses, first } => {
            let c = pool.get().await?;
            let mut rows: Vec<ClusterRow> = c
                .query(
                    CLUSTERS_OF_PG,
                    &[&licenses, &i64::from(first.saturating_add(1))],
                )
                .await?
                .iter()
                .map(crate::storage::postgres::cluster_row)
                .collect();
            attach_anomalies_pg(&c, &mut rows).await?;
            Answer::ClustersOf(by_license(rows, first))
        }
        Ask::Propagation { since } => {
            let since = i64::try_from(since).unwrap_or(i64::MAX);
            let c = pool.get().await?;
            let r = c.query_one(REACHED_PG, &[&since]).await?;
            let oldest_silent = c
                .query(SILENT_PG, &[&since, &i64::from(MAX_SILENT)])
                .await?
                .iter()
                .map(|r| (r.get(0), r.get(1), uint(r.get(2))))
                .collect();
            Answer::Propagation(Propagation {
                reached: uint(r.get(0)),
                silent: uint(r.get(1)),
                oldest_silent,
            })
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_takes_the_flagged_first_then_the_others() {
        // 3 flagged match; pages of 2.
        assert_eq!(windows(0, 2, 3), ((2, 0), (0, 0)));
        assert_eq!(windows(2, 2, 3), ((1, 2), (1, 0)));
        assert_eq!(windows(4, 2, 3), ((0, 0), (2, 1)));
        assert_eq!(windows(0, 50, 0), ((0, 0), (50, 0)));
        assert_eq!(windows(u64::MAX, 50, 3), ((0, 0), (50, u64::MAX - 3)));
    }

    #[test]
    fn filter_values_are_bound_never_spliced() {
        let f = FleetAsk {
            status: "active' OR 1=1 --".into(),
            q: "x'); DROP TABLE clusters; --".into(),
            flagged_only: false,
            offset: 0,
            limit: 50,
        };
        for d in [Dialect::Sqlite, Dialect::Pg] {
            for part in [
                Part::Count(None),
                Part::Rows {
                    flagged: false,
                    limit: 50,
                    offset: 0,
                },
            ] {
                let (sql, binds) = fleet_sql(d, &f, part);
                assert!(!sql.contains("DROP") && !sql.contains("1=1"), "{sql}");
                assert_eq!(binds[..2], [Bind::Status, Bind::Q]);
            }
        }
        let (sql, binds) = fleet_sql(Dialect::Sqlite, &FleetAsk::default(), Part::Count(None));
        assert!(binds.is_empty() && !sql.contains("licenses"), "{sql}");
    }
}
