//! The SQLite backend: one relay, one file. Writes go to the single writer
//! thread ([`crate::writer`], group commit); reads use a small pool of WAL
//! read connections ([`crate::db::Readers`]).

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, OptionalExtension};

use kaching_core::clock_reset::VerifiedClockReset;
use kaching_core::cluster::UpgradeRequest;
use kaching_core::heartbeat::Heartbeat;
use kaching_core::revocation::{Acceptance, VerifiedRevocationList};
use kaching_core::root::VerifiedRoot;
use kaching_core::time::rfc3339;
use kaching_core::wire::relay::{ClusterRow, UpgradeRow};

use super::{Activated, Commits, Fut, LicenseView, Storage, StoredRoot};
use crate::db::{self, Readers};
use crate::error::ApiError;
use crate::store::{Activation, Outcome, Write};
use crate::tokens::{self, Scope};
use crate::writer::Writer;

mod mailbox;

/// A relay's SQLite database.
pub struct SqliteStorage {
    /// The one writer; dropped at close so the thread commits and ends.
    writer: Mutex<Option<Writer>>,
    /// The writer thread, joined at close.
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Read connections.
    readers: Readers,
    /// Keep a raw history row per heartbeat.
    keep_raw: bool,
    /// What the writer thread has committed.
    commits: Arc<Commits>,
    /// The exclusive lock on `<database>.lock`, held while this relay
    /// serves the file (see [`lock_database`]); let go at close.
    lock: Mutex<Option<std::fs::File>>,
}

/// The lock file of the SQLite database at `path`: `<path>.lock`, next to it.
pub fn lock_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    std::path::PathBuf::from(name)
}

/// Takes the exclusive OS lock on [`lock_path`] that one serving relay
/// holds for as long as it serves the database at `path` (released by the
/// OS when the process ends, however it ends). A second relay on the same
/// file would keep its own in-memory revocation list and restart the
/// bindings' grace windows: it is refused, naming the database. The CLI's
/// admin commands do not take the lock: they work while the relay serves.
pub fn lock_database(path: &Path) -> anyhow::Result<std::fs::File> {
    let lock = lock_path(path);
    let dir = kaching_kit::fs::parent_of(&lock);
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", dir.display()))?;
    match kaching_kit::fs::try_lock(&lock)? {
        kaching_kit::fs::Lock::Taken(file) => Ok(file),
        kaching_kit::fs::Lock::Held(_) => anyhow::bail!(
            "another kaching-relay is serving the database {} (it holds {}): stop that one first; \
             to run more than one relay on one database, use PostgreSQL (database = \"postgres://…\", see docs/relay.md)",
            path.display(),
            lock.display()
        ),
    }
}

/// Creates the usage-report mailbox's tables when they are missing (a
/// database from a release before the mailbox).
pub fn create_mailbox(conn: &rusqlite::Connection) -> anyhow::Result<()> {
    conn.execute_batch(mailbox::SCHEMA)
        .map_err(|e| anyhow::anyhow!("cannot create the usage-report tables: {e}"))
}

impl SqliteStorage {
    /// Opens (creating and migrating) the database at `path` and starts its writer.
    pub fn open(path: &Path, max_batch: usize, keep_raw: bool) -> anyhow::Result<SqliteStorage> {
        // Before the file is touched: a second relay must not migrate it,
        // nor record its own start over the first one's.
        let lock = lock_database(path)?;
        let conn = db::open_and_migrate(path)?;
        create_mailbox(&conn)?;
        let commits = Arc::new(Commits::default());
        let (writer, thread) = Writer::start(conn, max_batch, commits.clone())
            .map_err(|e| anyhow::anyhow!("cannot start the database writer thread: {e}"))?;
        Ok(SqliteStorage {
            writer: Mutex::new(Some(writer)),
            thread: Mutex::new(Some(thread)),
            readers: Readers::new(path.to_path_buf()),
            keep_raw,
            commits,
            lock: Mutex::new(Some(lock)),
        })
    }

    async fn submit(&self, write: Write) -> Result<Outcome, ApiError> {
        let writer = self
            .writer
            .lock()
            .ok()
            .and_then(|w| w.clone())
            .ok_or_else(ApiError::unavailable)?;
        writer.submit(write).await
    }
}

/// The columns [`cluster_row`] reads, from `clusters c`.
const CLUSTER_COLUMNS: &str =
    "SELECT c.cluster_id, license_id, hostname, status, activated_at, last_seen, last_seq,
            heartbeats, state, active_nodes, quotas, verifier_version, report_seq
     FROM clusters c";

fn other(what: &str) -> ApiError {
    ApiError::internal(format!("{what} returned another outcome"))
}

impl Storage for SqliteStorage {
    fn activate(&self, a: Activation) -> Fut<'_, Activated> {
        Box::pin(async move {
            match self.submit(Write::Activate(Box::new(a))).await? {
                Outcome::Activated {
                    last_seq,
                    displaced,
                } => Ok(Activated {
                    last_seq,
                    displaced,
                }),
                _ => Err(other("activation")),
            }
        })
    }

    fn record_heartbeat(
        &self,
        beat: Heartbeat,
        key: [u8; 32],
        now: u64,
        reset: Option<VerifiedClockReset>,
    ) -> Fut<'_, ()> {
        Box::pin(async move {
            match self
                .submit(Write::Beat {
                    beat: Box::new(beat),
                    key,
                    now,
                    raw: self.keep_raw,
                    reset: reset.map(Box::new),
                })
                .await?
            {
                Outcome::Refused(e) => Err(e),
                _ => Ok(()),
            }
        })
    }

    fn publish_list(
        &self,
        list: VerifiedRevocationList,
        actor: String,
        now: u64,
    ) -> Fut<'_, Acceptance> {
        Box::pin(async move {
            match self
                .submit(Write::Publish {
                    list: Box::new(list),
                    actor,
                    now,
                })
                .await?
            {
                Outcome::Published(a) => Ok(a),
                _ => Err(other("publish")),
            }
        })
    }

    fn publish_root(&self, root: VerifiedRoot, actor: String, now: u64) -> Fut<'_, Vec<u64>> {
        Box::pin(async move {
            match self
                .submit(Write::PublishRoot {
                    root: Box::new(root),
                    actor,
                    now,
                })
                .await?
            {
                Outcome::RootPublished { dropped_lists } => Ok(dropped_lists),
                _ => Err(other("root publish")),
            }
        })
    }

    fn file_upgrade(
        &self,
        license_id: String,
        request: UpgradeRequest,
        actor: String,
        now: u64,
    ) -> Fut<'_, bool> {
        Box::pin(async move {
            match self
                .submit(Write::FileUpgrade {
                    license_id,
                    request,
                    actor,
                    now,
                })
                .await?
            {
                Outcome::Filed(new) => Ok(new),
                _ => Err(other("upgrade request")),
            }
        })
    }

    fn prune_history(&self, raw_before: u64, rollups_before: u64, limit: u32) -> Fut<'_, usize> {
        Box::pin(async move {
            match self
                .submit(Write::Prune {
                    raw_before,
                    rollups_before,
                    limit,
                })
                .await?
            {
                Outcome::Pruned(n) => Ok(n),
                _ => Err(other("prune")),
            }
        })
    }

    fn seal_heartbeats(&self, now: u64, force: bool) -> Fut<'_, bool> {
        Box::pin(async move {
            match self.submit(Write::Seal { now, force }).await? {
                Outcome::Sealed(done) => Ok(done),
                _ => Err(other("seal")),
            }
        })
    }

    fn license_view(&self, id: String) -> Fut<'_, Option<LicenseView>> {
        Box::pin(self.readers.read(move |c| {
            let bytes: Option<Vec<u8>> = c
                .query_row(
                    "SELECT bytes FROM licenses WHERE license_id = ?1",
                    [&id],
                    |r| r.get(0),
                )
                .optional()?;
            let cluster = c
                .query_row(
                    "SELECT cluster_id, last_seen, active_nodes, quotas FROM clusters WHERE license_id = ?1
                     ORDER BY status = 'active' DESC, last_seen DESC LIMIT 1",
                    [&id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()?;
            let anomalies = c
                .prepare_cached(
                    "SELECT cluster_id, at, detail FROM anomalies WHERE license_id = ?1
                     ORDER BY id DESC LIMIT ?2",
                )?
                .query_map(params![id, super::MAX_ANOMALIES], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(bytes.map(|bytes| LicenseView {
                bytes,
                cluster,
                anomalies,
            }))
        }))
    }

    fn clusters(
        &self,
        license: Option<String>,
        after: String,
        limit: u32,
    ) -> Fut<'_, Vec<ClusterRow>> {
        Box::pin(self.readers.read(move |c| {
            let mut rows = match &license {
                // Through `clusters_by_license`: `?1 IS NULL OR license_id = ?1`
                // would read the whole table in id order for one license.
                Some(l) => c
                    .prepare_cached(&format!(
                        "{CLUSTER_COLUMNS} WHERE license_id = ?1 AND c.cluster_id > ?2
                         ORDER BY c.cluster_id LIMIT ?3"
                    ))?
                    .query_map(params![l, after, limit], cluster_row)?
                    .collect::<Result<Vec<_>, _>>()?,
                None => c
                    .prepare_cached(&format!(
                        "{CLUSTER_COLUMNS} WHERE c.cluster_id > ?1 ORDER BY c.cluster_id LIMIT ?2"
                    ))?
                    .query_map(params![after, limit], cluster_row)?
                    .collect::<Result<Vec<_>, _>>()?,
            };
            let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
                return Ok(rows);
            };
            let anomaly = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?));
            let mut found = Vec::new();
            if license.is_some() {
                // One license's clusters lie scattered over the id range:
                // each is looked up, not the range between them.
                let mut one = c.prepare_cached(
                    "SELECT cluster_id, at, kind, detail FROM anomalies
                     WHERE cluster_id = ?1 ORDER BY id DESC LIMIT ?2",
                )?;
                for r in &rows {
                    let of = one.query_map(params![r.cluster_id, super::MAX_ANOMALIES], anomaly)?;
                    found.extend(of.collect::<Result<Vec<_>, _>>()?);
                }
            } else {
                found = c
                    .prepare_cached(
                        "SELECT cluster_id, at, kind, detail FROM anomalies
                         WHERE cluster_id >= ?1 AND cluster_id <= ?2 ORDER BY cluster_id, id DESC",
                    )?
                    .query_map(params![first.cluster_id, last.cluster_id], anomaly)?
                    .collect::<Result<Vec<_>, _>>()?;
            }
            super::attach_anomalies(&mut rows, found);
            Ok(rows)
        }))
    }

    fn upgrade_requests(&self, license: Option<String>) -> Fut<'_, Vec<UpgradeRow>> {
        Box::pin(self.readers.read(move |c| {
            let row = upgrade_row;
            Ok(match &license {
                Some(id) => c
                    .prepare_cached(super::UPGRADES_OF)?
                    .query_map([id], row)?
                    .collect::<Result<Vec<_>, _>>()?,
                None => c
                    .prepare_cached(super::UPGRADES_ALL)?
                    .query_map([], row)?
                    .collect::<Result<Vec<_>, _>>()?,
            })
        }))
    }

    fn lookup_token(&self, token: String) -> Fut<'_, Option<(String, Scope, bool)>> {
        Box::pin(
            self.readers
                .read(move |conn| Ok(tokens::lookup(conn, &token)?)),
        )
    }

    fn active_clusters(&self) -> Fut<'_, u64> {
        Box::pin(self.readers.read(|c| {
            Ok(
                c.prepare_cached("SELECT count(*) FROM clusters WHERE status = 'active'")?
                    .query_row([], |r| r.get::<_, u64>(0))?,
            )
        }))
    }

    fn commits(&self) -> &Commits {
        &self.commits
    }

    fn newest_list(&self) -> Fut<'_, Option<Vec<u8>>> {
        Box::pin(self.readers.read(|c| {
            Ok(c.query_row(
                "SELECT bytes FROM revocation_lists ORDER BY version DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?)
        }))
    }

    fn mark_serving(&self, now: u64) -> Fut<'_, ()> {
        Box::pin(
            self.readers
                .read(move |c| db::mark_serving(c, now).map_err(ApiError::internal)),
        )
    }

    fn configure_root(&self, initial: VerifiedRoot, now: u64) -> Fut<'_, Vec<StoredRoot>> {
        Box::pin(self.readers.read(move |c| {
            crate::roots::store_initial(c, &initial, now).map_err(ApiError::internal)?;
            roots_above(c, initial.root.version)
        }))
    }

    fn roots_above(&self, version: u64) -> Fut<'_, Vec<StoredRoot>> {
        Box::pin(self.readers.read(move |c| roots_above(c, version)))
    }

    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    fn console(&self, ask: crate::console::data::Ask) -> Fut<'_, crate::console::data::Answer> {
        Box::pin(
            self.readers
                .read(move |c| crate::console::data::sqlite(c, ask)),
        )
    }

    fn close(self: Arc<Self>) -> Fut<'static, ()> {
        Box::pin(async move {
            // The writer thread ends when the last handle is gone, after its last commit.
            drop(self.writer.lock().ok().and_then(|mut w| w.take()));
            let thread = self.thread.lock().ok().and_then(|mut t| t.take());
            if let Some(t) = thread {
                tokio::task::spawn_blocking(move || t.join())
                    .await
                    .map_err(ApiError::internal)?
                    .map_err(|_| ApiError::internal("the database writer thread panicked"))?;
            }
            // Last: another relay may take the file once every write is in.
            drop(self.lock.lock().ok().and_then(|mut l| l.take()));
            Ok(())
        })
    }
}

fn roots_above(c: &rusqlite::Connection, version: u64) -> Result<Vec<StoredRoot>, ApiError> {
    let mut stmt = c.prepare(
        "SELECT version, bytes, received_at FROM roots WHERE version > ?1 ORDER BY version",
    )?;
    let rows = stmt
        .query_map([version], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// One `GET /v1/clusters` row from the first 13 columns of `r`, in the
/// order `cluster_id, license_id, hostname, status, activated_at,
/// last_seen, last_seq, heartbeats, state, active_nodes, quotas,
/// verifier_version, report_seq` (the API's list and the console's fleet).
pub(crate) fn cluster_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ClusterRow> {
    let quotas: String = r.get(10)?;
    Ok(ClusterRow {
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
        quotas: super::parse_quotas(&quotas),
        verifier_version: r.get(11)?,
        report_seq: r.get(12)?,
        anomalies: Vec::new(),
    })
}

/// Columns 0–6 of an upgrade-request row (see [`super::upgrade_row`]).
pub(crate) fn upgrade_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UpgradeRow> {
    Ok(super::upgrade_row(
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}
