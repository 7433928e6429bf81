//! The PostgreSQL backend: any number of stateless relay replicas on one
//! database.
//!
//! - Writes are group-committed per replica like SQLite's (a batch of queued
//!   writes in one transaction, answered after the commit; no savepoints, by
//!   the rule in [`writes`]). Every writing transaction first locks the `audit_head` row, so
//!   writes from all replicas are serial: each sees what the one before it
//!   committed (READ COMMITTED takes a fresh snapshot per statement), the
//!   audit chain cannot fork, and no two transactions deadlock. The schema
//!   guards the invariants on its own as well ([`schema`]).
//! - Reads use a connection pool.
//! - A dedicated connection `LISTEN`s for `kaching_published` (sent by the
//!   publishing transaction) and ticks [`Storage::changes`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::NoTls;

use kaching_core::clock_reset::VerifiedClockReset;
use kaching_core::cluster::UpgradeRequest;
use kaching_core::heartbeat::Heartbeat;
use kaching_core::revocation::{Acceptance, VerifiedRevocationList};
use kaching_core::root::VerifiedRoot;
use kaching_core::time::rfc3339;
use kaching_core::wire::relay::{ClusterRow, UpgradeRow};

use super::{Activated, Commits, Fut, LicenseView, Storage, StoredRoot};
use crate::error::ApiError;
use crate::store::Activation;
use crate::tokens::Scope;
pub use batch::begin;
use batch::Job;
use writes::{execute, int, query, query_opt, uint};

pub mod admin;
pub mod batch;
pub mod beats;
pub mod bounded;
pub mod chain;
pub mod hours;
pub mod listen;
pub mod mailbox;
pub mod schema;
pub mod writes;

/// Connections in a replica's pool (reads, the writer's batches, pruning);
/// a replica uses one more to LISTEN. Size PostgreSQL's `max_connections`
/// for replicas × 9 plus what else connects (docs/relay.md).
const POOL_SIZE: usize = 8;

/// The channel publishing transactions notify.
pub const CHANNEL: &str = "kaching_published";

/// A replica's view of the shared PostgreSQL database.
pub struct PgStorage {
    pool: Pool,
    /// The group-commit queue; dropped at close so the writer task ends.
    queue: Mutex<Option<mpsc::Sender<Job>>>,
    /// The writer task, awaited at close.
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The LISTEN task, stopped at close.
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Ticks on every notification and reconnection.
    changes: watch::Receiver<u64>,
    /// What this replica's writer task has committed.
    commits: Arc<Commits>,
}

/// A pool on `url` (not yet connected).
pub fn pool(url: &str) -> anyhow::Result<Pool> {
    let config: tokio_postgres::Config = url.parse().context(
        "database is not a PostgreSQL URL: write postgres://user:password@host:5432/dbname",
    )?;
    let mgr = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(mgr)
        .max_size(POOL_SIZE)
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(Duration::from_secs(10)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .context("cannot build the PostgreSQL connection pool")
}

/// Connects and applies pending migrations; returns the pool.
pub async fn connect_and_migrate(url: &str) -> anyhow::Result<Pool> {
    let pool = pool(url)?;
    let mut client = pool.get().await.with_context(|| {
        format!(
            "cannot connect to PostgreSQL at {}: is it running, and are the host, user, password and database right?",
            super::redact(url)
        )
    })?;
    let applied = schema::migrate(&mut client).await?;
    if !applied.is_empty() {
        tracing::info!(?applied, "applied schema migrations");
    }
    Ok(pool)
}

impl PgStorage {
    /// Connects, migrates, and starts the writer and the listener.
    pub async fn open(url: &str, max_batch: usize, keep_raw: bool) -> anyhow::Result<PgStorage> {
        let pool = connect_and_migrate(url).await?;
        let (tx, rx) = mpsc::channel(max_batch.saturating_mul(8).max(64));
        let commits = Arc::new(Commits::default());
        let writer = tokio::spawn(batch::write_loop(
            pool.clone(),
            rx,
            max_batch.max(1),
            keep_raw,
            commits.clone(),
        ));
        let (ticks, changes) = watch::channel(0);
        let listener = tokio::spawn(listen::listen_loop(url.to_string(), ticks));
        Ok(PgStorage {
            pool,
            queue: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            listener: Mutex::new(Some(listener)),
            changes,
            commits,
        })
    }

    async fn submit<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, ApiError>>) -> Job,
    ) -> Result<T, ApiError> {
        let queue = self
            .queue
            .lock()
            .ok()
            .and_then(|q| q.clone())
            .ok_or_else(ApiError::unavailable)?;
        let (reply, rx) = oneshot::channel();
        queue
            .send(make(reply))
            .await
            .map_err(|_| ApiError::unavailable())?;
        rx.await.map_err(|_| ApiError::unavailable())?
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, ApiError> {
        Ok(self.pool.get().await?)
    }
}

impl Storage for PgStorage {
    fn activate(&self, a: Activation) -> Fut<'_, Activated> {
        Box::pin(self.submit(move |tx| Job::Activate(Box::new(a), tx)))
    }

    fn record_heartbeat(
        &self,
        beat: Heartbeat,
        key: [u8; 32],
        now: u64,
        reset: Option<VerifiedClockReset>,
    ) -> Fut<'_, ()> {
        Box::pin(self.submit(move |tx| Job::Beat(Box::new((beat, key, now, reset)), tx)))
    }

    fn publish_list(
        &self,
        list: VerifiedRevocationList,
        actor: String,
        now: u64,
    ) -> Fut<'_, Acceptance> {
        Box::pin(self.submit(move |tx| Job::Publish(Box::new((list, actor, now)), tx)))
    }

    fn publish_root(&self, root: VerifiedRoot, actor: String, now: u64) -> Fut<'_, Vec<u64>> {
        Box::pin(self.submit(move |tx| Job::Root(Box::new((root, actor, now)), tx)))
    }

    fn file_upgrade(
        &self,
        license_id: String,
        request: UpgradeRequest,
        actor: String,
        now: u64,
    ) -> Fut<'_, bool> {
        Box::pin(
            self.submit(move |tx| Job::Upgrade(Box::new((license_id, request, actor, now)), tx)),
        )
    }

    fn prune_history(&self, raw_before: u64, rollups_before: u64, limit: u32) -> Fut<'_, usize> {
        Box::pin(async move {
            let c = self.client().await?;
            // Not audited and takes no head lock: history is maintenance.
            // Small batches, each its own statement: no long-held locks.
            let limit = i64::from(limit);
            let raw = execute(
                &c,
                "DELETE FROM heartbeats WHERE id IN
                     (SELECT id FROM heartbeats WHERE received_at < $1 ORDER BY id LIMIT $2)",
                &[&int(raw_before), &limit],
            )
            .await?;
            let hour = i32::try_from(rollups_before / crate::store::HOUR).unwrap_or(i32::MAX);
            let rollups = execute(
                &c,
                "DELETE FROM heartbeat_hours WHERE (hour, cluster_id) IN
                     (SELECT hour, cluster_id FROM heartbeat_hours WHERE hour < $1 LIMIT $2)",
                &[&hour, &limit],
            )
            .await?;
            Ok(usize::try_from(raw.max(rollups)).unwrap_or(usize::MAX))
        })
    }

    fn seal_heartbeats(&self, now: u64, force: bool) -> Fut<'_, bool> {
        Box::pin(batch::seal_pending(&self.pool, now, force))
    }

    fn license_view(&self, id: String) -> Fut<'_, Option<LicenseView>> {
        Box::pin(async move {
            let c = self.client().await?;
            let Some(bytes) = query_opt(
                &c,
                "SELECT bytes FROM licenses WHERE license_id = $1",
                &[&id],
            )
            .await?
            .map(|r| r.get::<_, Vec<u8>>(0)) else {
                return Ok(None);
            };
            let cluster = query_opt(
                &c,
                "SELECT cluster_id, last_seen, active_nodes, quotas FROM clusters WHERE license_id = $1
                 ORDER BY status = 'active' DESC, last_seen DESC LIMIT 1",
                &[&id],
            )
            .await?
            .map(|r| (r.get(0), uint(r.get(1)), uint(r.get(2)), r.get(3)));
            let anomalies = query(
                &c,
                "SELECT cluster_id, at, detail FROM anomalies WHERE license_id = $1
                 ORDER BY id DESC LIMIT $2",
                &[&id, &(crate::storage::MAX_ANOMALIES as i64)],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), uint(r.get(1)), r.get(2)))
            .collect();
            Ok(Some(LicenseView {
                bytes,
                cluster,
                anomalies,
            }))
        })
    }

    fn clusters(
        &self,
        license: Option<String>,
        after: String,
        limit: u32,
    ) -> Fut<'_, Vec<ClusterRow>> {
        Box::pin(async move {
            let c = self.client().await?;
            let rows = query(
                &c,
                "SELECT c.cluster_id, license_id, hostname, status, activated_at, last_seen, last_seq,
                        heartbeats, state, active_nodes, quotas, verifier_version, report_seq
                 FROM clusters c
                 WHERE ($1::TEXT IS NULL OR license_id = $1) AND c.cluster_id > $2 COLLATE \"C\"
                 ORDER BY c.cluster_id COLLATE \"C\" LIMIT $3",
                &[&license, &after, &i64::from(limit)],
            )
            .await?;
            let mut rows: Vec<ClusterRow> = rows.iter().map(cluster_row).collect();
            let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
                return Ok(rows);
            };
            let found = if license.is_some() {
                // One license's clusters lie scattered over the id range:
                // their own anomalies, not the range between them.
                let ids: Vec<&str> = rows.iter().map(|r| r.cluster_id.as_str()).collect();
                query(
                    &c,
                    "SELECT cluster_id, at, kind, detail FROM anomalies
                     WHERE cluster_id = ANY($1)
                     ORDER BY cluster_id COLLATE \"C\", id DESC",
                    &[&ids],
                )
                .await?
            } else {
                query(
                    &c,
                    "SELECT cluster_id, at, kind, detail FROM anomalies
                     WHERE cluster_id >= $1 COLLATE \"C\" AND cluster_id <= $2 COLLATE \"C\"
                     ORDER BY cluster_id COLLATE \"C\", id DESC",
                    &[&first.cluster_id, &last.cluster_id],
                )
                .await?
            }
            .iter()
            .map(|r| (r.get(0), uint(r.get(1)), r.get(2), r.get(3)))
            .collect();
            crate::storage::attach_anomalies(&mut rows, found);
            Ok(rows)
        })
    }

    fn upgrade_requests(&self, license: Option<String>) -> Fut<'_, Vec<UpgradeRow>> {
        Box::pin(async move {
            let c = self.client().await?;
            let rows = match &license {
                Some(id) => query(&c, super::UPGRADES_OF, &[id]).await?,
                None => query(&c, super::UPGRADES_ALL, &[]).await?,
            };
            Ok(rows.iter().map(upgrade_row).collect())
        })
    }

    fn lookup_token(&self, token: String) -> Fut<'_, Option<(String, Scope, bool)>> {
        Box::pin(async move {
            let c = self.client().await?;
            Ok(query_opt(
                &c,
                "SELECT name, scope, revoked_at IS NOT NULL FROM tokens WHERE hash = $1",
                &[&crate::tokens::hash(&token)],
            )
            .await?
            .map(|r| {
                let scope: String = r.get(1);
                (r.get(0), scope.parse().unwrap_or(Scope::Whoosh), r.get(2))
            }))
        })
    }

    fn commits(&self) -> &Commits {
        &self.commits
    }

    fn active_clusters(&self) -> Fut<'_, u64> {
        Box::pin(async move {
            let c = self.client().await?;
            let r = query_opt(
                &c,
                "SELECT count(*) FROM clusters WHERE status = 'active'",
                &[],
            )
            .await?;
            Ok(r.map_or(0, |r| uint(r.get(0))))
        })
    }

    fn newest_list(&self) -> Fut<'_, Option<Vec<u8>>> {
        Box::pin(async move {
            let c = self.client().await?;
            Ok(query_opt(
                &c,
                "SELECT bytes FROM revocation_lists ORDER BY version DESC LIMIT 1",
                &[],
            )
            .await?
            .map(|r| r.get(0)))
        })
    }

    fn mark_serving(&self, now: u64) -> Fut<'_, ()> {
        Box::pin(async move {
            let c = self.client().await?;
            let down_since = now.saturating_sub(crate::follow::FLEET_DOWN_AFTER.as_secs());
            execute(
                &c,
                "INSERT INTO meta (key, value) VALUES ('serving_since', $1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value
                 WHERE NOT EXISTS (SELECT 1 FROM meta WHERE key = 'alive_at' AND value >= $2)",
                &[&int(now), &int(down_since)],
            )
            .await?;
            drop(c);
            self.mark_alive(now).await
        })
    }

    fn mark_alive(&self, now: u64) -> Fut<'_, ()> {
        Box::pin(async move {
            let c = self.client().await?;
            execute(
                &c,
                "INSERT INTO meta (key, value) VALUES ('alive_at', $1)
                 ON CONFLICT (key) DO UPDATE SET value = GREATEST(meta.value, excluded.value)",
                &[&int(now)],
            )
            .await?;
            Ok(())
        })
    }

    fn configure_root(&self, initial: VerifiedRoot, now: u64) -> Fut<'_, Vec<StoredRoot>> {
        Box::pin(async move {
            let c = self.client().await?;
            let mut head = match begin(&c).await {
                Ok(h) => h,
                Err(e) => {
                    let _ = c.batch_execute("ROLLBACK").await;
                    return Err(e);
                }
            };
            let stored = match writes::store_initial_root(&c, &mut head, &initial, now).await {
                Ok(()) => head.store(&c).await,
                Err(e) => Err(e),
            };
            match stored {
                Ok(()) => c.batch_execute("COMMIT").await?,
                Err(e) => {
                    let _ = c.batch_execute("ROLLBACK").await;
                    return Err(e);
                }
            }
            drop(c);
            self.roots_above(initial.root.version).await
        })
    }

    fn roots_above(&self, version: u64) -> Fut<'_, Vec<StoredRoot>> {
        Box::pin(async move {
            let c = self.client().await?;
            Ok(query(
                &c,
                "SELECT version, bytes, received_at FROM roots WHERE version > $1 ORDER BY version",
                &[&int(version)],
            )
            .await?
            .iter()
            .map(|r| (uint(r.get(0)), r.get(1), uint(r.get(2))))
            .collect())
        })
    }

    fn changes(&self) -> Option<watch::Receiver<u64>> {
        Some(self.changes.clone())
    }

    fn console(&self, ask: crate::console::data::Ask) -> Fut<'_, crate::console::data::Answer> {
        Box::pin(crate::console::data::postgres(&self.pool, ask))
    }

    fn close(self: Arc<Self>) -> Fut<'static, ()> {
        Box::pin(async move {
            drop(self.queue.lock().ok().and_then(|mut q| q.take()));
            let writer = self.writer.lock().ok().and_then(|mut w| w.take());
            if let Some(w) = writer {
                w.await.map_err(ApiError::internal)?;
            }
            if let Some(l) = self.listener.lock().ok().and_then(|mut l| l.take()) {
                l.abort();
            }
            self.pool.close();
            Ok(())
        })
    }
}

/// One `GET /v1/clusters` row from the first 13 columns of `r` (order as
/// in [`crate::storage::sqlite::cluster_row`]).
pub(crate) fn cluster_row(r: &tokio_postgres::Row) -> ClusterRow {
    ClusterRow {
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
        quotas: super::parse_quotas(r.get(10)),
        verifier_version: r.get(11),
        report_seq: r.get::<_, Option<i64>>(12).map(uint),
        anomalies: Vec::new(),
    }
}

/// Columns 0–6 of an upgrade-request row (see [`super::upgrade_row`]).
pub(crate) fn upgrade_row(r: &tokio_postgres::Row) -> UpgradeRow {
    super::upgrade_row(
        r.get(0),
        r.get(1),
        r.get(2),
        r.get(3),
        uint(r.get(4)),
        uint(r.get(5)),
        r.get(6),
    )
}
