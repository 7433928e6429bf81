//! The SQLite database: schema, connection settings and a small pool of
//! read connections. All writes go through [`crate::writer`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use rusqlite::Connection;

use crate::error::ApiError;

/// Schema, created idempotently at every start.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS licenses (
    license_id   TEXT PRIMARY KEY,
    bytes        BLOB NOT NULL,
    customer     TEXT NOT NULL,
    tier         TEXT NOT NULL,
    expires_at   INTEGER NOT NULL,
    first_seen   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS clusters (
    cluster_id      TEXT PRIMARY KEY,
    license_id      TEXT NOT NULL,
    cluster_key     BLOB NOT NULL,
    hostname        TEXT NOT NULL,
    status          TEXT NOT NULL,          -- active | deactivated | displaced
    activated_at    INTEGER NOT NULL,
    ended_at        INTEGER,
    last_seen       INTEGER NOT NULL,       -- relay time of the last accepted contact
    last_seq        INTEGER NOT NULL DEFAULT 0,
    heartbeat_time  INTEGER,                -- cluster's signed time of the last heartbeat
    state           TEXT,
    active_nodes    INTEGER NOT NULL DEFAULT 0,
    quotas          TEXT NOT NULL DEFAULT '{}',
    verifier_version TEXT,
    heartbeats      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS clusters_by_license ON clusters(license_id, status);
-- History, append-only: rows go to the end of the table (no per-cluster
-- index to scatter writes); (cluster_id, seq) is unique because the writer
-- only accepts a seq above the cluster's last_seq.
CREATE TABLE IF NOT EXISTS heartbeats (
    id           INTEGER PRIMARY KEY,
    cluster_id   TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    time         INTEGER NOT NULL,
    received_at  INTEGER NOT NULL,
    state        TEXT NOT NULL,
    active_nodes INTEGER NOT NULL,
    quotas       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS heartbeats_by_age ON heartbeats(received_at);
CREATE TABLE IF NOT EXISTS revocation_lists (
    version      INTEGER PRIMARY KEY,
    bytes        BLOB NOT NULL,
    kid          TEXT NOT NULL,
    received_at  INTEGER NOT NULL
);
-- The vendor's roots of trust (docs/format.md §7.7), each stored as
-- received; the chain served is walked from the configured `root` one
-- version at a time (a row that does not follow is ignored).
CREATE TABLE IF NOT EXISTS roots (
    version      INTEGER PRIMARY KEY,
    bytes        BLOB NOT NULL,
    received_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS upgrade_requests (
    id             INTEGER PRIMARY KEY,
    license_id     TEXT NOT NULL,
    cluster_id     TEXT NOT NULL,           -- '' when filed through WHOOSH
    requested_tier TEXT NOT NULL,
    message        TEXT NOT NULL,
    time           INTEGER NOT NULL,
    received_at    INTEGER NOT NULL,
    source         TEXT NOT NULL,
    UNIQUE (license_id, cluster_id, requested_tier, message, time)
);
CREATE TABLE IF NOT EXISTS tokens (
    hash        TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    scope       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE TABLE IF NOT EXISTS audit (
    id       INTEGER PRIMARY KEY,
    time     INTEGER NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    subject  TEXT NOT NULL,
    detail   TEXT NOT NULL,
    hash     TEXT NOT NULL
);
-- Relay-wide facts. `serving_since`: when the relay last started serving.
-- A binding's silence is counted from no earlier than this, so an outage of
-- the relay never counts against the cluster holding a license. It lives
-- here, not in process memory, so the check runs inside the activation's
-- transaction (a shared database can hold it for several replicas).
CREATE TABLE IF NOT EXISTS meta (
    key    TEXT PRIMARY KEY,
    value  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS anomalies (
    id          INTEGER PRIMARY KEY,
    cluster_id  TEXT NOT NULL,
    license_id  TEXT NOT NULL,
    at          INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    detail      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS anomalies_by_cluster ON anomalies(cluster_id, id);
CREATE INDEX IF NOT EXISTS anomalies_by_license ON anomalies(license_id, id);
CREATE TABLE IF NOT EXISTS audit_head (
    one   INTEGER PRIMARY KEY CHECK (one = 1),
    id    INTEGER NOT NULL,
    hash  TEXT NOT NULL
);
";

/// Opens a connection with the relay's settings: WAL, full sync at commit
/// (a 2xx means the write reached the disk, not just the OS), a busy timeout
/// so the CLI and the server can share the file.
pub fn open(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open(path)
        .with_context(|| format!("cannot open database {}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Up to 64 MiB of page cache (the default is 2 MiB): the clusters table of
    // a large relay stays in memory, so a heartbeat costs no random read.
    conn.pragma_update(None, "cache_size", -65_536)?;
    Ok(conn)
}

/// Opens the database, creating its directory and schema when missing.
pub fn open_and_migrate(path: &Path) -> anyhow::Result<Connection> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    }
    let conn = open(path)?;
    conn.execute_batch(SCHEMA)
        .with_context(|| format!("cannot create the schema in {}", path.display()))?;
    upgrade(&conn).with_context(|| format!("cannot upgrade the schema of {}", path.display()))?;
    Ok(conn)
}

/// The schema steps after [`SCHEMA`], in order; `PRAGMA user_version`
/// records how many ran. Never edit one that has shipped, add the next.
const UPGRADES: &[(&str, &str)] = &[
    ("storage bounded by clusters", UPGRADE_1),
    ("the current hour on the cluster row", UPGRADE_2),
    ("licenses found by expiry", LICENSES_BY_EXPIRY),
    ("token names unique among live tokens", LIVE_TOKEN_NAMES),
];

/// A token name is unique among live tokens only (docs/relay.md,
/// "Tokens"): a revoked token's name can be given to a new token, whose
/// other hash no session of the old one matches. SQLite cannot drop a
/// column's UNIQUE, so the table is rebuilt (a few rows) with a partial
/// unique index instead. The same on PostgreSQL (migration 7).
const LIVE_TOKEN_NAMES: &str = "
CREATE TABLE tokens_live_names (
    hash        TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    scope       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
INSERT INTO tokens_live_names (hash, name, scope, created_at, revoked_at)
    SELECT hash, name, scope, created_at, revoked_at FROM tokens;
DROP TABLE tokens;
ALTER TABLE tokens_live_names RENAME TO tokens;
CREATE UNIQUE INDEX one_live_token_per_name ON tokens (name) WHERE revoked_at IS NULL;
";

/// The console's licenses page reads licenses in order of expiry (a page,
/// the renewals horizon and its count): through this index, a few rows
/// instead of every license. Written once per new license. The same on
/// PostgreSQL (migration 6).
const LICENSES_BY_EXPIRY: &str =
    "CREATE INDEX IF NOT EXISTS licenses_by_expiry ON licenses (expires_at, license_id);";

/// Storage that grows with clusters, not heartbeats (docs/relay.md,
/// "Storage"): each cluster's report chain head moves onto its row (one
/// UPDATE per heartbeat instead of two writes; `chain_heads` stays as a
/// view for readers), and heartbeats are kept as hourly rollups. The
/// `heartbeats` table stays for the optional raw history.
const UPGRADE_1: &str = "
CREATE TABLE IF NOT EXISTS chain_heads (
    cluster_id  TEXT PRIMARY KEY,
    report_seq  INTEGER NOT NULL,
    report_hash BLOB,
    mark        INTEGER NOT NULL
);
ALTER TABLE clusters ADD COLUMN report_seq INTEGER;
ALTER TABLE clusters ADD COLUMN report_hash BLOB;
ALTER TABLE clusters ADD COLUMN report_mark INTEGER;
UPDATE clusters SET (report_seq, report_hash, report_mark) =
    (SELECT report_seq, report_hash, mark FROM chain_heads h WHERE h.cluster_id = clusters.cluster_id)
    WHERE cluster_id IN (SELECT cluster_id FROM chain_heads);
DROP TABLE chain_heads;
CREATE VIEW chain_heads AS
    SELECT cluster_id, report_seq, report_hash, report_mark AS mark FROM clusters
    WHERE report_seq IS NOT NULL;
-- One row per cluster per hour it sent heartbeats in (hour = relay time
-- / 3600): keyed by hour first, so pruning and the console's last-24-hours
-- read are range scans and the current hour's rows sit together.
CREATE TABLE heartbeat_hours (
    hour        INTEGER NOT NULL,
    cluster_id  TEXT NOT NULL,
    beats       INTEGER NOT NULL,
    min_nodes   INTEGER NOT NULL,
    max_nodes   INTEGER NOT NULL,
    last_nodes  INTEGER NOT NULL,
    last_at     INTEGER NOT NULL,   -- relay time of the hour's last heartbeat
    quotas      TEXT NOT NULL,      -- the hour's last quota counters (JSON)
    PRIMARY KEY (hour, cluster_id)
) WITHOUT ROWID;
-- Heartbeat leaves gathered since `since`, not yet sealed into an audit
-- row (kaching_core::merkle::Frontier, stored form): one row, updated in
-- place by every commit that accepts heartbeats.
CREATE TABLE audit_pending (
    one       INTEGER PRIMARY KEY CHECK (one = 1),
    since     INTEGER NOT NULL,
    beats     INTEGER NOT NULL,
    frontier  BLOB NOT NULL
);
";

/// Each cluster's current hour of heartbeats moves onto its `clusters` row
/// (docs/relay.md, "Storage"): a heartbeat then changes one row, not its
/// row and its hour's rollup, so it dirties one page instead of two.
/// `heartbeat_hours` keeps the hours a cluster has left, written once,
/// when its first heartbeat of a later hour arrives; the view
/// `heartbeat_hours_all` reads both, for readers. The table keeps its name
/// (and its upsert still works) so that a relay of the release before,
/// still running against an upgraded database, records heartbeats as it
/// did; closing an hour merges whatever that relay wrote.
///
/// The newest hour each cluster has moves onto its row; the older ones stay
/// in the table. `quotas` is the cluster row's own column: only heartbeats
/// write it, so it is always its current hour's last counters.
const UPGRADE_2: &str = "
ALTER TABLE clusters ADD COLUMN hour INTEGER;            -- relay time / 3600; NULL: no hour held
ALTER TABLE clusters ADD COLUMN hour_beats INTEGER;
ALTER TABLE clusters ADD COLUMN hour_min_nodes INTEGER;
ALTER TABLE clusters ADD COLUMN hour_max_nodes INTEGER;
ALTER TABLE clusters ADD COLUMN hour_last_nodes INTEGER;
ALTER TABLE clusters ADD COLUMN hour_last_at INTEGER;   -- relay time of the hour's last heartbeat
UPDATE clusters SET (hour, hour_beats, hour_min_nodes, hour_max_nodes, hour_last_nodes, hour_last_at) =
    (h.hour, h.beats, h.min_nodes, h.max_nodes, h.last_nodes, h.last_at)
    FROM (SELECT c.* FROM heartbeat_hours c
          JOIN (SELECT cluster_id, max(hour) AS hour FROM heartbeat_hours GROUP BY cluster_id) m
          USING (cluster_id, hour)) AS h
    WHERE h.cluster_id = clusters.cluster_id;
DELETE FROM heartbeat_hours WHERE (hour, cluster_id) IN
    (SELECT hour, cluster_id FROM clusters WHERE hour IS NOT NULL);
CREATE VIEW heartbeat_hours_all (hour, cluster_id, beats, min_nodes, max_nodes, last_nodes, last_at, quotas) AS
    SELECT hour, cluster_id, beats, min_nodes, max_nodes, last_nodes, last_at, quotas
    FROM heartbeat_hours
    UNION ALL
    SELECT hour, cluster_id, hour_beats, hour_min_nodes, hour_max_nodes, hour_last_nodes, hour_last_at, quotas
    FROM clusters WHERE hour IS NOT NULL;
";

/// A database at schema version `version` (0: [`SCHEMA`] alone), as the
/// release that stopped there left it: for tests of the upgrades after it.
#[doc(hidden)]
pub fn create_at_version(path: &Path, version: usize) -> anyhow::Result<Connection> {
    let conn = open(path)?;
    conn.execute_batch(SCHEMA)?;
    upgrade_through(&conn, version)?;
    Ok(conn)
}

/// Runs the [`UPGRADES`] the file has not had, each in its own immediate
/// transaction (the CLI and a serving relay may open the file together:
/// the second finds the version moved and skips).
fn upgrade(conn: &Connection) -> anyhow::Result<()> {
    upgrade_through(conn, UPGRADES.len())?;
    let at: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if at > UPGRADES.len() as i64 {
        anyhow::bail!(
            "the database is at schema version {at}, newer than this kaching-relay knows: run the release that wrote it"
        );
    }
    Ok(())
}

/// [`upgrade`] up to schema version `last`.
fn upgrade_through(conn: &Connection, last: usize) -> anyhow::Result<()> {
    for (i, (what, sql)) in UPGRADES.iter().enumerate().take(last) {
        let version = i64::try_from(i + 1)?;
        let at: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if at >= version {
            continue;
        }
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let step = (|| -> anyhow::Result<()> {
            let at: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            if at < version {
                conn.execute_batch(sql)
                    .with_context(|| format!("schema step {version} ({what}) failed"))?;
                conn.pragma_update(None, "user_version", version)?;
            }
            Ok(())
        })();
        match step {
            Ok(()) => conn.execute_batch("COMMIT")?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Records that the relay starts serving at `now` (see `meta` in the schema).
/// Set at every start, never raised or kept from an earlier run: a relay
/// that was down must not count its downtime as anyone's silence.
pub fn mark_serving(conn: &Connection, now: u64) -> anyhow::Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('serving_since', ?1)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [now],
    )
    .context("cannot record the relay's start in the database")?;
    Ok(())
}

/// When the relay last started serving; 0 when no relay has served from
/// this database yet (then silence counts from the last contact alone).
pub fn serving_since(conn: &Connection) -> rusqlite::Result<u64> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .prepare_cached("SELECT value FROM meta WHERE key = 'serving_since'")?
        .query_row([], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// A few read connections shared by request handlers (WAL readers never block the writer).
#[derive(Clone)]
pub struct Readers {
    path: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
}

impl Readers {
    /// A pool over the database at `path`.
    pub fn new(path: PathBuf) -> Self {
        Readers {
            path,
            idle: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Runs `f` on a read connection in the blocking pool.
    pub async fn read<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, ApiError> + Send + 'static,
    {
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match pool.idle.lock().ok().and_then(|mut v| v.pop()) {
                Some(c) => c,
                None => open(&pool.path).map_err(ApiError::internal)?,
            };
            let out = f(&conn);
            if let Ok(mut idle) = pool.idle.lock() {
                if idle.len() < 8 {
                    idle.push(conn);
                }
            }
            out
        })
        .await
        .map_err(ApiError::internal)?
    }
}

// Seconds since the Unix epoch from the system clock (the relay is the one
// component whose clock is the reference; it signs what it reads).
pub use kaching_kit::clock::now;
