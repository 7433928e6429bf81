//! Schema migration: each cluster's current hour of heartbeats on its
//! `clusters` row (docs/relay.md, "Storage"). Self-contained, so its
//! number in [`super::schema::MIGRATIONS`] can change without touching it.
//!
//! - A heartbeat changes one row (its cluster's, a HOT update), not its
//!   row and its hour's rollup row.
//! - `heartbeat_hours` keeps the hours a cluster has left, written once,
//!   when its first heartbeat of a later hour arrives; the view
//!   `heartbeat_hours_all` reads both, for readers.
//! - The table keeps its name and key, so replicas of the release before,
//!   still serving during a rolling upgrade, go on upserting their
//!   heartbeats' hours into it; closing an hour merges what they wrote.
//! - The newest hour each cluster has moves onto its row; the older ones
//!   stay in the table. `quotas` is the row's own column: only heartbeats
//!   write it, so it holds its current hour's last counters.

/// The migration's SQL.
pub const SQL: &str = "
ALTER TABLE clusters
    ADD COLUMN hour INTEGER,            -- relay time / 3600; NULL: no hour held
    ADD COLUMN hour_beats INTEGER,
    ADD COLUMN hour_min_nodes INTEGER,
    ADD COLUMN hour_max_nodes INTEGER,
    ADD COLUMN hour_last_nodes INTEGER,
    ADD COLUMN hour_last_at BIGINT;     -- relay time of the hour's last heartbeat
UPDATE clusters c SET hour = h.hour, hour_beats = h.beats, hour_min_nodes = h.min_nodes,
        hour_max_nodes = h.max_nodes, hour_last_nodes = h.last_nodes, hour_last_at = h.last_at
    FROM (SELECT DISTINCT ON (cluster_id) * FROM heartbeat_hours
          ORDER BY cluster_id, hour DESC) h
    WHERE h.cluster_id = c.cluster_id;
DELETE FROM heartbeat_hours h USING clusters c
    WHERE c.cluster_id = h.cluster_id AND c.hour = h.hour;
CREATE VIEW heartbeat_hours_all (hour, cluster_id, beats, min_nodes, max_nodes, last_nodes, last_at, quotas) AS
    SELECT hour, cluster_id, beats, min_nodes, max_nodes, last_nodes, last_at, quotas
    FROM heartbeat_hours
    UNION ALL
    SELECT hour, cluster_id, hour_beats, hour_min_nodes, hour_max_nodes, hour_last_nodes,
           hour_last_at, quotas
    FROM clusters WHERE hour IS NOT NULL;
";

/// Its description in `schema_migrations`.
pub const DESCRIPTION: &str = "the current hour of heartbeats on the cluster row";
