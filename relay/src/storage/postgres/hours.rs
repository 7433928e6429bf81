//! Schema migration: each cluster's current hour of heartbeats on its
//! `clusters` row (docs/relay.md, "Storage"). Self-contained, so its
//! number in [`super::schema::MIGRATIONS`] can change without touching it.
//!
//! - A heartbeat changes one row (its cluster's, a HOT update), not its
//!   row and its hour's rollup row.
//! - The hours a cluster has left are in `heartbeat_hours_closed`, written
//!   once, when its first heartbeat of a later hour arrives.
//! - `heartbeat_hours` stays, as a view over both, for readers.
//! - The newest hour each cluster has moves onto its row; the older ones
//!   are the closed hours. `quotas` is the row's own column: only
//!   heartbeats write it, so it holds its current hour's last counters.

/// The migration's SQL.
pub const SQL: &str = "
ALTER TABLE heartbeat_hours RENAME TO heartbeat_hours_closed;
ALTER TABLE clusters
    ADD COLUMN hour INTEGER,            -- relay time / 3600; NULL: no hour held
    ADD COLUMN hour_beats INTEGER,
    ADD COLUMN hour_min_nodes INTEGER,
    ADD COLUMN hour_max_nodes INTEGER,
    ADD COLUMN hour_last_nodes INTEGER,
    ADD COLUMN hour_last_at BIGINT;     -- relay time of the hour's last heartbeat
UPDATE clusters c SET hour = h.hour, hour_beats = h.beats, hour_min_nodes = h.min_nodes,
        hour_max_nodes = h.max_nodes, hour_last_nodes = h.last_nodes, hour_last_at = h.last_at
    FROM (SELECT DISTINCT ON (cluster_id) * FROM heartbeat_hours_closed
          ORDER BY cluster_id, hour DESC) h
    WHERE h.cluster_id = c.cluster_id;
DELETE FROM heartbeat_hours_closed h USING clusters c
    WHERE c.cluster_id = h.cluster_id AND c.hour = h.hour;
CREATE VIEW heartbeat_hours (hour, cluster_id, beats, min_nodes, max_nodes, last_nodes, last_at, quotas) AS
    SELECT hour, cluster_id, beats, min_nodes, max_nodes, last_nodes, last_at, quotas
    FROM heartbeat_hours_closed
    UNION ALL
    SELECT hour, cluster_id, hour_beats, hour_min_nodes, hour_max_nodes, hour_last_nodes,
           hour_last_at, quotas
    FROM clusters WHERE hour IS NOT NULL;
";

/// Its description in `schema_migrations`.
pub const DESCRIPTION: &str = "the current hour of heartbeats on the cluster row";
