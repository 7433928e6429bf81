//! Schema migration: storage bounded by clusters, not heartbeats
//! (docs/relay.md, "Storage"). Self-contained, so its number in
//! [`super::schema::MIGRATIONS`] can change without touching it.
//!
//! - Each cluster's report chain head moves onto its `clusters` row: a
//!   heartbeat is one UPDATE there, not an UPDATE plus an upsert.
//!   `chain_heads` stays as a view for readers.
//! - `clusters` leaves room on each page (fillfactor 80) so the per-heartbeat
//!   UPDATE stays a HOT update: none of its indexed columns (cluster_id,
//!   license_id, status) changes on a heartbeat, and `last_seen` has no index.
//! - Heartbeats are kept as hourly rollups (`heartbeat_hours`), keyed by hour
//!   first so pruning and the console's last-24-hours read are range scans.
//!   The `heartbeats` table stays for the optional raw history.

/// The migration's SQL.
pub const SQL: &str = "
ALTER TABLE clusters
    ADD COLUMN report_seq BIGINT,
    ADD COLUMN report_hash BYTEA,
    ADD COLUMN report_mark BIGINT;
UPDATE clusters c SET report_seq = h.report_seq, report_hash = h.report_hash, report_mark = h.mark
    FROM chain_heads h WHERE h.cluster_id = c.cluster_id;
DROP TABLE chain_heads;
CREATE VIEW chain_heads AS
    SELECT cluster_id, report_seq, report_hash, report_mark AS mark FROM clusters
    WHERE report_seq IS NOT NULL;
ALTER TABLE clusters SET (fillfactor = 80);
CREATE TABLE heartbeat_hours (
    last_at     BIGINT NOT NULL,     -- relay time of the hour's last heartbeat
    hour        INTEGER NOT NULL,    -- relay time / 3600
    beats       INTEGER NOT NULL,
    min_nodes   INTEGER NOT NULL,
    max_nodes   INTEGER NOT NULL,
    last_nodes  INTEGER NOT NULL,
    cluster_id  TEXT NOT NULL,
    quotas      TEXT NOT NULL,       -- the hour's last quota counters (JSON)
    PRIMARY KEY (hour, cluster_id)
);
-- Heartbeat leaves gathered since `since`, not yet sealed into an audit
-- row (kaching_core::merkle::Frontier, stored form); written under the
-- audit_head lock like the chain itself.
CREATE TABLE audit_pending (
    one       INTEGER PRIMARY KEY CHECK (one = 1),
    since     BIGINT NOT NULL,
    beats     BIGINT NOT NULL,
    frontier  BYTEA NOT NULL
);
";

/// Its description in `schema_migrations`.
pub const DESCRIPTION: &str = "storage bounded by clusters, not heartbeats";
