//! The PostgreSQL schema, as numbered migrations. Each is applied once, in
//! order, in one transaction holding an advisory lock, so replicas starting
//! together do not race; `schema_migrations` records what ran.

use anyhow::Context;
use tokio_postgres::Client;

/// Key of the advisory lock held while migrating ("KACHING" in ASCII).
const MIGRATION_LOCK: i64 = 0x004b_4143_4849_4e47;

/// The migrations, in order; never edit one that has shipped, add the next.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "initial schema", V1),
    (2, "report chain heads and signs of rollback", V2),
    (3, "usage-report mailbox", super::mailbox::V3),
    (4, super::bounded::DESCRIPTION, super::bounded::SQL),
    (5, super::hours::DESCRIPTION, super::hours::SQL),
    (6, "licenses found by expiry", LICENSES_BY_EXPIRY),
    (7, "token names unique among live tokens", LIVE_TOKEN_NAMES),
    (8, "clusters in byte order", CLUSTERS_BY_ID_BYTES),
];

/// The console lists clusters in byte order of their ids (`COLLATE "C"`,
/// SQLite's order), which the primary key, in the database's collation,
/// cannot give unless that collation is `C`: each page was a scan of every
/// cluster and a sort. Through this index a page walks the ids in order and
/// stops. Written once per cluster (ids never change, so heartbeats' row
/// updates stay HOT).
const CLUSTERS_BY_ID_BYTES: &str =
    "CREATE INDEX IF NOT EXISTS clusters_by_id_bytes ON clusters (cluster_id COLLATE \"C\");";

/// A token name is unique among live tokens only: a revoked token's name
/// can be given to a new token (docs/relay.md, "Tokens"). The same on
/// SQLite (schema step 4).
const LIVE_TOKEN_NAMES: &str = "
ALTER TABLE tokens DROP CONSTRAINT IF EXISTS tokens_name_key;
CREATE UNIQUE INDEX IF NOT EXISTS one_live_token_per_name ON tokens (name) WHERE revoked_at IS NULL;
";

/// The console's licenses page reads licenses in order of expiry (a page,
/// the renewals horizon and its count): through this index, a few rows
/// instead of every license. Written once per new license.
const LICENSES_BY_EXPIRY: &str =
    "CREATE INDEX IF NOT EXISTS licenses_by_expiry ON licenses (expires_at, license_id);";

/// Each cluster's usage-report chain head as its heartbeats last named it,
/// and the signs of rollback seen in them (docs/relay.md, `GET /v1/clusters`).
const V2: &str = "
CREATE TABLE chain_heads (
    cluster_id  TEXT PRIMARY KEY,
    report_seq  BIGINT NOT NULL,
    report_hash BYTEA,
    mark        BIGINT NOT NULL
);
CREATE TABLE anomalies (
    id          BIGSERIAL PRIMARY KEY,
    cluster_id  TEXT NOT NULL,
    license_id  TEXT NOT NULL,
    at          BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    detail      TEXT NOT NULL
);
CREATE INDEX anomalies_by_cluster ON anomalies (cluster_id, id);
CREATE INDEX anomalies_by_license ON anomalies (license_id, id);
";

const V1: &str = "
CREATE TABLE licenses (
    license_id   TEXT PRIMARY KEY,
    bytes        BYTEA NOT NULL,
    customer     TEXT NOT NULL,
    tier         TEXT NOT NULL,
    expires_at   BIGINT NOT NULL,
    first_seen   BIGINT NOT NULL
);
CREATE TABLE clusters (
    cluster_id       TEXT PRIMARY KEY,
    license_id       TEXT NOT NULL,
    cluster_key      BYTEA NOT NULL,
    hostname         TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('active', 'deactivated', 'displaced')),
    activated_at     BIGINT NOT NULL,
    ended_at         BIGINT,
    last_seen        BIGINT NOT NULL,
    last_seq         BIGINT NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    heartbeat_time   BIGINT,
    state            TEXT,
    active_nodes     BIGINT NOT NULL DEFAULT 0,
    quotas           TEXT NOT NULL DEFAULT '{}',
    verifier_version TEXT,
    heartbeats       BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX clusters_by_license ON clusters (license_id, status);
-- One live cluster per license, whichever replica activates it.
CREATE UNIQUE INDEX one_live_cluster_per_license ON clusters (license_id) WHERE status = 'active';
-- Heartbeat sequence numbers only move forward, whichever replica writes.
CREATE FUNCTION kaching_refuse_seq_rollback() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'last_seq of cluster % may not go down (% to %)', OLD.cluster_id, OLD.last_seq, NEW.last_seq
        USING ERRCODE = 'check_violation';
END $$;
CREATE TRIGGER clusters_seq_forward BEFORE UPDATE OF last_seq ON clusters
    FOR EACH ROW WHEN (NEW.last_seq < OLD.last_seq) EXECUTE FUNCTION kaching_refuse_seq_rollback();
CREATE TABLE heartbeats (
    id           BIGSERIAL PRIMARY KEY,
    cluster_id   TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    time         BIGINT NOT NULL,
    received_at  BIGINT NOT NULL,
    state        TEXT NOT NULL,
    active_nodes BIGINT NOT NULL,
    quotas       TEXT NOT NULL,
    UNIQUE (cluster_id, seq)
);
CREATE INDEX heartbeats_by_age ON heartbeats (received_at);
CREATE TABLE revocation_lists (
    version      BIGINT PRIMARY KEY,
    bytes        BYTEA NOT NULL,
    kid          TEXT NOT NULL,
    received_at  BIGINT NOT NULL
);
CREATE TABLE roots (
    version      BIGINT PRIMARY KEY,
    bytes        BYTEA NOT NULL,
    received_at  BIGINT NOT NULL
);
CREATE TABLE upgrade_requests (
    id             BIGSERIAL PRIMARY KEY,
    license_id     TEXT NOT NULL,
    cluster_id     TEXT NOT NULL,
    requested_tier TEXT NOT NULL,
    message        TEXT NOT NULL,
    time           BIGINT NOT NULL,
    received_at    BIGINT NOT NULL,
    source         TEXT NOT NULL,
    UNIQUE (license_id, cluster_id, requested_tier, message, time)
);
CREATE TABLE tokens (
    hash        TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    scope       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
-- The chain cannot fork: one row per position, one successor per hash.
CREATE TABLE audit (
    id        BIGINT PRIMARY KEY,
    time      BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    subject   TEXT NOT NULL,
    detail    TEXT NOT NULL,
    hash      TEXT NOT NULL,
    prev_hash TEXT NOT NULL UNIQUE
);
CREATE TABLE meta (
    key    TEXT PRIMARY KEY,
    value  BIGINT NOT NULL
);
-- Every writing transaction locks this row first: appends are serial
-- across replicas, and no two transactions can deadlock on other rows.
CREATE TABLE audit_head (
    one   INTEGER PRIMARY KEY CHECK (one = 1),
    id    BIGINT NOT NULL,
    hash  TEXT NOT NULL
);
INSERT INTO audit_head (one, id, hash)
    VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
";

/// Applies the migrations not yet applied; returns their numbers.
pub async fn migrate(client: &mut Client) -> anyhow::Result<Vec<i32>> {
    migrate_through(client, i32::MAX).await
}

/// [`migrate`] up to migration `last`: for tests of the migrations after
/// it, on a database as the release that stopped there left it.
#[doc(hidden)]
pub async fn migrate_through(client: &mut Client, last: i32) -> anyhow::Result<Vec<i32>> {
    let tx = client
        .transaction()
        .await
        .context("cannot start the migration transaction")?;
    // Quiet "already exists, skipping" notices from replicas starting together.
    tx.batch_execute("SET LOCAL client_min_messages = warning")
        .await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version     INTEGER PRIMARY KEY,
             description TEXT NOT NULL,
             applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await
    .context("cannot create schema_migrations: does the role own the database (or have CREATE on its schema)?")?;
    let done: Vec<i32> = tx
        .query("SELECT version FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if let Some(newest) = done.iter().max() {
        if *newest > MIGRATIONS.last().map_or(0, |m| m.0) {
            anyhow::bail!(
                "the database is at schema version {newest}, newer than this kaching-relay knows: upgrade this replica to the release the others run"
            );
        }
    }
    let mut applied = Vec::new();
    for (version, description, sql) in MIGRATIONS.iter().filter(|m| m.0 <= last) {
        if done.contains(version) {
            continue;
        }
        tx.batch_execute(sql)
            .await
            .with_context(|| format!("schema migration {version} ({description}) failed"))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, description) VALUES ($1, $2)",
            &[version, description],
        )
        .await?;
        applied.push(*version);
    }
    tx.commit().await.context("cannot commit the migrations")?;
    Ok(applied)
}
