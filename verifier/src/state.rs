//! The state database (`state.db` in the state folder): SQLite in WAL mode.
//!
//! Durability: `journal_mode=WAL` with `synchronous=FULL`. In WAL mode a commit
//! is appended to the `-wal` file; with FULL that append is fsync'd before the
//! commit returns, so every write acknowledged to a client survives not only
//! kill -9 (which NORMAL would also survive: the bytes are in the kernel's page
//! cache) but also a power cut or kernel panic (which NORMAL would not). A
//! usage counter is money, so we pay one fsync per acknowledged write.
//!
//! A missing or corrupt database is an error, never a silent reset: quota
//! counters and the revocation high-water mark must not be lost by deleting a
//! file. See [`Db::open`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rusqlite::{params, Connection, OptionalExtension};

use kaching_core::cluster::UpgradeRequest;
use kaching_core::receipt::{Clearing, Pending};
use kaching_core::time::Timestamp;

/// File name of the database inside the state folder.
pub const DB_FILE: &str = "state.db";
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS leases (node_id TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS counters (
    metric TEXT NOT NULL, bucket TEXT NOT NULL, value INTEGER NOT NULL,
    PRIMARY KEY (metric, bucket));
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY, status INTEGER NOT NULL, body TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS idempotency_created ON idempotency (created_at);
CREATE TABLE IF NOT EXISTS roots (version INTEGER PRIMARY KEY, bytes BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS upgrade_requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT, requested_tier TEXT NOT NULL,
    message TEXT NOT NULL, time INTEGER NOT NULL, reported INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS reports (
    seq INTEGER PRIMARY KEY, hash BLOB NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS receipts (
    report_seq INTEGER PRIMARY KEY, bytes BLOB NOT NULL, imported_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS acked_counters (
    metric TEXT NOT NULL, bucket TEXT NOT NULL, value INTEGER NOT NULL,
    PRIMARY KEY (metric, bucket));
CREATE TABLE IF NOT EXISTS node_peaks (month TEXT PRIMARY KEY, peak INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS acked_node_peaks (month TEXT PRIMARY KEY, peak INTEGER NOT NULL);
";

/// The clock resets taken (`kaching-verifier clock-reset`), created by the
/// first one: every statement of every process pays SQLite's parse of the
/// whole schema once per connection, `check` included (docs/benchmarks.md,
/// "CLI start-up"), and almost no cluster ever takes a reset.
const CLOCK_RESETS_TABLE: &str = "
CREATE TABLE IF NOT EXISTS clock_resets (
    id BLOB PRIMARY KEY, cluster_id TEXT NOT NULL, from_mark INTEGER NOT NULL,
    to_mark INTEGER NOT NULL, taken_at INTEGER NOT NULL, bytes BLOB NOT NULL);
";

/// Set once the `reported` column of `upgrade_requests` means "acknowledged
/// by a receipt". Before receipts it meant "written into a report file",
/// which lost requests when the file never reached the vendor; databases
/// from then have every request reported again, once (docs/air-gapped.md).
const RECEIPTS_MIGRATED: &str = "receipts_migrated";

/// `meta` key: the id of the last clock reset a heartbeat carried to the
/// relay and the relay accepted (docs/format.md §7.6).
const CLOCK_RESET_TOLD: &str = "relay_clock_reset_told";

/// File name of the daemon's lock inside the state folder.
pub const LOCK_FILE: &str = "verifier.lock";

/// The running daemon's hold on its state folder: an exclusive OS lock
/// (`flock`) on [`LOCK_FILE`], kept for the daemon's lifetime. Two daemons
/// on one folder would each count usage in memory and write their own
/// totals (last writer wins: counts lost) and each grant leases up to the
/// ceiling. The OS drops the lock when the process ends, however it ends,
/// so a crash never leaves a stale lock behind; the process id written in
/// the file is only for the message a second daemon prints. One-shot
/// commands (`check`, `status`, …) do not take it, except `clock-reset`,
/// which must not run beside the daemon ([`StateLock::acquire_stopped`]).
#[derive(Debug)]
pub struct StateLock {
    _file: std::fs::File,
}

impl StateLock {
    /// Takes the lock on `state_dir` (creating the folder when missing), or
    /// says who holds it.
    pub fn acquire(state_dir: &Path) -> anyhow::Result<StateLock> {
        if !state_dir.exists() {
            std::fs::create_dir_all(state_dir).with_context(|| {
                format!(
                    "cannot create state folder {}: create it or fix its permissions",
                    state_dir.display()
                )
            })?;
        }
        Self::take(state_dir, |holder, path| {
            anyhow::anyhow!(
                "state folder {} is in use by another kaching-verifier ({holder} holds {}): two daemons on one state folder lose usage counts and grant node leases twice. Stop the other daemon first (systemctl stop kaching-verifier), or give this one its own state_dir",
                state_dir.display(),
                path.display()
            )
        })
    }

    /// Takes the lock on an existing `state_dir` for `kaching-verifier
    /// clock-reset`, which must not run beside the daemon: the daemon holds
    /// the trusted-time mark in memory and writes the highest it has seen,
    /// so it would write the old mark back over the lowered one.
    pub fn acquire_stopped(state_dir: &Path) -> anyhow::Result<StateLock> {
        if !state_dir.is_dir() {
            bail!(
                "state folder {} does not exist: point --config at this cluster's configuration (its state_dir)",
                state_dir.display()
            );
        }
        Self::take(state_dir, |holder, path| {
            anyhow::anyhow!(
                "the kaching-verifier daemon is running on state folder {} ({holder} holds {}): it keeps the trusted-time mark in memory and would write the old mark back. Stop it (systemctl stop kaching-verifier), run this command again, then start it (systemctl start kaching-verifier). Nothing was changed",
                state_dir.display(),
                path.display()
            )
        })
    }

    /// Takes the lock, or returns `held(holder, lock file)` when another
    /// process holds it.
    fn take(
        state_dir: &Path,
        held: impl FnOnce(&str, &Path) -> anyhow::Error,
    ) -> anyhow::Result<StateLock> {
        use std::io::{Read, Seek, Write};
        let path = state_dir.join(LOCK_FILE);
        let file = match kaching_kit::fs::try_lock(&path) {
            Ok(kaching_kit::fs::Lock::Taken(file)) => file,
            Ok(kaching_kit::fs::Lock::Held(file)) => {
                let mut text = String::new();
                let _ = (&file).take(64).read_to_string(&mut text);
                let holder = match text.trim().parse::<u32>() {
                    Ok(pid) => format!("process {pid}"),
                    Err(_) => "another process".to_string(),
                };
                return Err(held(&holder, &path));
            }
            Err(e @ kaching_kit::fs::LockError::Open { .. }) => {
                bail!("{e}: check the state folder's permissions")
            }
            Err(e @ kaching_kit::fs::LockError::Lock { .. }) => bail!(
                "{e}: the state folder must be on a file system with file locks (not NFS without lockd)"
            ),
        };
        // Information only: who holds it, for a second start's message.
        let written = file
            .set_len(0)
            .and_then(|()| (&file).rewind())
            .and_then(|()| writeln!(&file, "{}", std::process::id()));
        if let Err(e) = written {
            tracing::debug!(%e, "cannot write the process id into the lock file");
        }
        Ok(StateLock { _file: file })
    }
}

/// The identity of a file: device and inode. What the daemon opened as its
/// state database is recorded at open, so a tick can tell that the path no
/// longer names it (deleted, or replaced by another file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
}

impl FileId {
    /// The identity of the file `path` names now (symlinks followed, as
    /// SQLite opens them); `None` where the platform has no inodes.
    pub fn of(path: &Path) -> std::io::Result<Option<FileId>> {
        let m = std::fs::metadata(path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Ok(Some(FileId {
                dev: m.dev(),
                ino: m.ino(),
            }))
        }
        #[cfg(not(unix))]
        {
            let _ = m;
            Ok(None)
        }
    }
}

/// What became of the open state database's file, as [`Db::file_status`] finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbFile {
    /// The path names the file the daemon has open (or it cannot be told).
    InPlace,
    /// Nothing at the path: the file was deleted (or moved away).
    Deleted,
    /// The path names another file: replaced (a copy, a restore, a rename).
    Replaced,
}

impl DbFile {
    /// Compares the identity recorded at open with what the path names now
    /// (`now`: the result of [`FileId::of`]). An error other than "not
    /// found" (a permission change, say) cannot tell, so counts as in place.
    pub fn judge(opened: Option<FileId>, now: &std::io::Result<Option<FileId>>) -> DbFile {
        match (opened, now) {
            (_, Err(e)) if e.kind() == std::io::ErrorKind::NotFound => DbFile::Deleted,
            (Some(a), Ok(Some(b))) if a != *b => DbFile::Replaced,
            _ => DbFile::InPlace,
        }
    }
}

/// An open state database.
pub struct Db {
    conn: Connection,
    path: PathBuf,
    /// The identity of the file opened, recorded right after opening it
    /// (rusqlite does not expose the descriptor to `fstat`).
    file_id: Option<FileId>,
    /// Opened by [`Db::open_read_only`] (`kaching-verifier check`): the
    /// records a start would make (trusted-time mark, license, roots,
    /// revocation list) are kept in the engine's memory only.
    read_only: bool,
}

/// A clock reset being taken, as [`Db::take_clock_reset`] records it.
#[derive(Debug, Clone, Copy)]
pub struct ClockResetRecord<'a> {
    /// The reset's id (`cti`).
    pub id: &'a [u8; 16],
    /// The cluster it names (this one).
    pub cluster_id: &'a str,
    /// The mark before.
    pub from: Timestamp,
    /// The mark after: the reset's `iat`.
    pub to: Timestamp,
    /// When it was taken, by the cluster's clock.
    pub taken_at: Timestamp,
    /// The reset's binary bytes, exactly as received.
    pub bytes: &'a [u8],
    /// `lease_ttl`: node leases granted while the clock was ahead end at
    /// most this long after the new mark (or the clock, if later).
    pub lease_ttl: u64,
}

/// A queued upgrade request with its row id.
#[derive(Debug, Clone)]
pub struct QueuedUpgrade {
    /// Row id.
    pub id: i64,
    /// The request.
    pub request: UpgradeRequest,
    /// True once the vendor acknowledged it (a receipt for a usage report
    /// that carried it).
    pub reported: bool,
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Db {
    /// Opens (or, when `create` is true and nothing is there, creates) the
    /// database in `state_dir`. Refuses a database that fails SQLite's
    /// integrity check or is not a KACHING state database.
    pub fn open(state_dir: &Path, create: bool) -> anyhow::Result<Db> {
        let path = state_dir.join(DB_FILE);
        if !path.exists() && !create {
            bail!(
                "state database {} is missing: quota counters and the revocation mark live there. \
                 Restore it from a backup; to start afresh on purpose, remove {} too so the cluster starts with a new identity",
                path.display(),
                state_dir.join(crate::identity::KEY_FILE).display()
            );
        }
        let conn = Connection::open(&path).with_context(|| {
            format!(
                "cannot open state database {}: check the folder's permissions",
                path.display()
            )
        })?;
        let corrupt = |e: rusqlite::Error| {
            anyhow::anyhow!(
                "state database {} is unreadable ({e}): restore it from a backup; it is never reset automatically",
                path.display()
            )
        };
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(corrupt)?;
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(corrupt)?;
        if check != "ok" {
            bail!(
                "state database {} is corrupt ({check}): restore it from a backup; it is never reset automatically",
                path.display()
            );
        }
        // The file SQLite has open: it has just read it through.
        let file_id = FileId::of(&path).with_context(|| {
            format!(
                "cannot look at state database {}: check the folder's permissions",
                path.display()
            )
        })?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(corrupt)?;
        if !mode.eq_ignore_ascii_case("wal") {
            bail!(
                "state database {} cannot use WAL mode (got {mode})",
                path.display()
            );
        }
        conn.execute_batch("PRAGMA synchronous=FULL;")
            .map_err(corrupt)?;
        let has_meta: bool = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='meta'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(corrupt)?
            > 0;
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(corrupt)?;
        if !has_meta && tables > 0 {
            bail!(
                "{} is not a KACHING state database: point state_dir at the right folder",
                path.display()
            );
        }
        conn.execute_batch(SCHEMA).map_err(corrupt)?;
        let mut db = Db {
            conn,
            path,
            file_id,
            read_only: false,
        };
        match db.meta_i64("schema_version")? {
            None => db.set_meta_i64("schema_version", SCHEMA_VERSION)?,
            Some(SCHEMA_VERSION) => {}
            Some(v) => bail!(
                "state database {} has schema version {v}; this verifier understands {SCHEMA_VERSION}: use a matching kaching-verifier",
                db.path.display()
            ),
        }
        if db.meta_i64(RECEIPTS_MIGRATED)?.is_none() {
            let tx = db.conn.transaction()?;
            tx.execute("UPDATE upgrade_requests SET reported = 0", [])?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                params![RECEIPTS_MIGRATED, b"1".as_slice()],
            )?;
            tx.commit()?;
        }
        Ok(db)
    }

    /// Opens the database in `state_dir` for reading only, for a one-shot
    /// check: no write, no fsync, no schema statement, no WAL checkpoint at
    /// close; a daemon may be running on it. `Ok(None)` when the database
    /// is missing or a start would have to set it up or migrate it first:
    /// then only [`Db::open`] answers the way the daemon would.
    pub fn open_read_only(state_dir: &Path) -> anyhow::Result<Option<Db>> {
        use rusqlite::OpenFlags;
        let path = state_dir.join(DB_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags).with_context(|| {
            format!(
                "cannot open state database {}: check the folder's permissions",
                path.display()
            )
        })?;
        let shown = path.display().to_string();
        let corrupt = |e: rusqlite::Error| {
            anyhow::anyhow!(
                "state database {shown} is unreadable ({e}): restore it from a backup; it is never reset automatically"
            )
        };
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(corrupt)?;
        // Pages of the database file come from a shared read-only mapping
        // (the kernel maps neighbouring pages with each fault) instead of
        // being copied into page-cache buffers on the heap: with 100k node
        // leases 12 % fewer page faults, the same for a small database
        // (docs/benchmarks.md, "CLI start-up, round 2"). Pages still in the
        // WAL are read as before. The file never shrinks in use (no VACUUM,
        // no auto_vacuum), so the mapping cannot outrun it.
        conn.execute_batch("PRAGMA mmap_size = 268435456")
            .map_err(corrupt)?;
        // One read transaction for the whole check, never committed (the
        // connection closes with the process): every read sees the same
        // snapshot of what a daemon committed, and SQLite takes its locks
        // once instead of around every statement (half the fcntl calls).
        conn.execute_batch("BEGIN").map_err(corrupt)?;
        // Kept although it is ~6 % of a small check and ~27 % of one with
        // 100k node leases: a start runs it and refuses a database that
        // fails it, so a check without it could report a verdict for a
        // database a start refuses (damage in pages the check never reads,
        // or b-tree damage that reads back as wrong rows instead of an
        // error). Test: attack_corrupt_state_page_check_never_reads_fails_check_as_a_start_does.
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(corrupt)?;
        if check != "ok" {
            bail!(
                "state database {shown} is corrupt ({check}): restore it from a backup; it is never reset automatically"
            );
        }
        let db = Db {
            conn,
            path,
            file_id: None,
            read_only: true,
        };
        // Anything `open` would still have to do (a new or older database,
        // or not yet in WAL mode) is left to it.
        let mode: String = db
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(corrupt)?;
        let has_meta: bool = db
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='meta'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(corrupt)?
            > 0;
        if !mode.eq_ignore_ascii_case("wal")
            || !has_meta
            || db.meta_i64("schema_version")? != Some(SCHEMA_VERSION)
            || db.meta_i64(RECEIPTS_MIGRATED)?.is_none()
        {
            return Ok(None);
        }
        Ok(Some(db))
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the database path still names the file this connection has
    /// open: one `stat`, for the engine's tick (never per write). A deleted
    /// or replaced file still takes writes, into a file nobody will open
    /// again. A read-only database (`check`) is never judged.
    pub fn file_status(&self) -> DbFile {
        if self.read_only {
            return DbFile::InPlace;
        }
        DbFile::judge(self.file_id, &FileId::of(&self.path))
    }

    fn meta_blob(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    fn set_meta_blob(&self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    fn meta_i64(&self, key: &str) -> anyhow::Result<Option<i64>> {
        Ok(self
            .meta_blob(key)?
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse().ok()))
    }

    fn set_meta_i64(&self, key: &str, v: i64) -> anyhow::Result<()> {
        self.set_meta_blob(key, v.to_string().as_bytes())
    }

    /// The persisted trusted-time mark (0 before the first start).
    pub fn trusted_time(&self) -> anyhow::Result<Timestamp> {
        Ok(self.meta_i64("trusted_time")?.map(u).unwrap_or(0))
    }

    /// Raises the trusted-time mark (never lowers it).
    pub fn raise_trusted_time(&self, t: Timestamp) -> anyhow::Result<()> {
        if t > self.trusted_time()? {
            self.set_meta_i64("trusted_time", i(t))?;
        }
        Ok(())
    }

    /// Whether any clock reset was ever taken here (its table exists).
    fn has_clock_resets(&self) -> anyhow::Result<bool> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'clock_resets'",
                [],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Whether this cluster took the clock reset with this id before.
    pub fn clock_reset_taken(&self, id: &[u8; 16]) -> anyhow::Result<bool> {
        if !self.has_clock_resets()? {
            return Ok(false);
        }
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM clock_resets WHERE id = ?1",
                [id.as_slice()],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Takes a clock reset (`kaching-verifier clock-reset`, with the daemon
    /// stopped): in one transaction, sets the trusted-time mark to `r.to`
    /// and records the reset, so it is never taken twice. The one place the
    /// mark goes down; the rule that allows it is
    /// `kaching_core::clock_reset::take`. Refused, with nothing written,
    /// when the mark is no longer `r.from` (something raised it meanwhile)
    /// or the reset was recorded before.
    pub fn take_clock_reset(&mut self, r: &ClockResetRecord<'_>) -> anyhow::Result<()> {
        if self.read_only {
            bail!("a read-only state database cannot take a clock reset");
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mark: Option<i64> = tx
            .query_row(
                "SELECT CAST(value AS TEXT) FROM meta WHERE key = 'trusted_time'",
                [],
                |row| row.get::<_, String>(0),
            )
            .optional()?
            .and_then(|s| s.parse().ok());
        if mark.map(u).unwrap_or(0) != r.from {
            bail!(
                "the trusted-time mark changed while the clock reset was being taken (is a kaching-verifier command running?): nothing changed, run it again"
            );
        }
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('trusted_time', ?1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [i(r.to).to_string().into_bytes()],
        )?;
        // Leases and idempotency keys dated by the clock that was ahead
        // would otherwise hold node slots and storage until real time
        // reached it: they are dated as if made now.
        let at = r.to.max(r.taken_at);
        tx.execute(
            "UPDATE leases SET expires_at = ?1 WHERE expires_at > ?1",
            [i(at.saturating_add(r.lease_ttl))],
        )?;
        tx.execute(
            "UPDATE idempotency SET created_at = ?1 WHERE created_at > ?1",
            [i(at)],
        )?;
        tx.execute_batch(CLOCK_RESETS_TABLE)?;
        tx.execute(
            "INSERT INTO clock_resets (id, cluster_id, from_mark, to_mark, taken_at, bytes)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                r.id.as_slice(),
                r.cluster_id,
                i(r.from),
                i(r.to),
                i(r.taken_at),
                r.bytes
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The clock reset the relay is still to be told about (docs/format.md
    /// §7.6): the last one this cluster took, with its id, unless the relay
    /// accepted a heartbeat carrying it ([`Db::clock_reset_told`]).
    pub fn clock_reset_to_tell(&self) -> anyhow::Result<Option<([u8; 16], Vec<u8>)>> {
        if !self.has_clock_resets()? {
            return Ok(None);
        }
        // Rows are only ever added (no VACUUM either): the last rowid is
        // the last reset taken.
        let last: Option<(Vec<u8>, Vec<u8>)> = self
            .conn
            .query_row(
                "SELECT id, bytes FROM clock_resets ORDER BY rowid DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((id, bytes)) = last else {
            return Ok(None);
        };
        let Ok(id) = <[u8; 16]>::try_from(id) else {
            bail!("state database: a clock reset id is not 16 bytes");
        };
        if self.meta_blob(CLOCK_RESET_TOLD)?.as_deref() == Some(id.as_slice()) {
            return Ok(None);
        }
        Ok(Some((id, bytes)))
    }

    /// Records that the relay accepted a heartbeat carrying the clock reset
    /// `id`: heartbeats stop carrying it.
    pub fn clock_reset_told(&self, id: &[u8; 16]) -> anyhow::Result<()> {
        self.set_meta_blob(CLOCK_RESET_TOLD, id)
    }

    /// The accepted revocation list: highest version and its exact bytes.
    pub fn revocations(&self) -> anyhow::Result<Option<(u64, Vec<u8>)>> {
        let v = self.meta_i64("revocation_version")?;
        let b = self.meta_blob("revocation_bytes")?;
        Ok(v.zip(b).map(|(v, b)| (u(v), b)))
    }

    /// Records a newly accepted revocation list (one transaction).
    pub fn store_revocations(&mut self, version: u64, bytes: &[u8]) -> anyhow::Result<()> {
        if self.read_only {
            return Ok(());
        }
        let tx = self.conn.savepoint()?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('revocation_version', ?1), ('revocation_bytes', ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![i(version).to_string().into_bytes(), bytes],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Roots taken through the chain, ascending by version: a restart (or
    /// a deleted roots folder) never goes back to an older root.
    pub fn roots(&self) -> anyhow::Result<Vec<Vec<u8>>> {
        let mut st = self
            .conn
            .prepare("SELECT bytes FROM roots ORDER BY version")?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<Vec<Vec<u8>>, _>>()?)
    }

    /// The newest root version recorded (`None`: none yet).
    pub fn latest_root_version(&self) -> anyhow::Result<Option<u64>> {
        let v: Option<i64> = self
            .conn
            .query_row("SELECT MAX(version) FROM roots", [], |r| r.get(0))?;
        Ok(v.map(u))
    }

    /// Records a root taken through the chain; with `revocation_floor`, the
    /// revocation high-water mark is reset to it in the same transaction
    /// (the list recorded with it is dropped: the rotation withdrew the key
    /// that may have signed it).
    pub fn store_root(
        &mut self,
        version: u64,
        bytes: &[u8],
        revocation_floor: Option<u64>,
    ) -> anyhow::Result<()> {
        if self.read_only {
            return Ok(());
        }
        let tx = self.conn.savepoint()?;
        tx.execute(
            "INSERT OR REPLACE INTO roots (version, bytes) VALUES (?1, ?2)",
            params![i(version), bytes],
        )?;
        if let Some(floor) = revocation_floor {
            tx.execute(
                "DELETE FROM meta WHERE key IN ('revocation_version', 'revocation_bytes')",
                [],
            )?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('revocation_floor', ?1)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![i(floor).to_string().into_bytes()],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The revocation-version floor a root rotation set (lists must be above it).
    pub fn revocation_floor(&self) -> anyhow::Result<Option<u64>> {
        Ok(self.meta_i64("revocation_floor")?.map(u))
    }

    /// The cluster id a start derived from the cluster key, with the key's
    /// fingerprint (read by `check`, which then skips the derivation when
    /// the key file still holds that key). `None` when absent or unreadable.
    pub fn recorded_cluster_id(&self) -> anyhow::Result<Option<crate::identity::RecordedId>> {
        Ok(self
            .meta_blob("cluster_id")?
            .and_then(|b| crate::identity::RecordedId::from_bytes(&b)))
    }

    /// Records the cluster id and key fingerprint, when they changed (so
    /// a start writes once per key, not on every start).
    pub fn record_cluster_id(&self, r: &crate::identity::RecordedId) -> anyhow::Result<()> {
        if self.recorded_cluster_id()?.as_ref() == Some(r) {
            return Ok(());
        }
        self.set_meta_blob("cluster_id", &r.to_bytes())
    }

    /// The last license that verified here (kept when the file later breaks).
    pub fn last_good_license(&self) -> anyhow::Result<Option<Vec<u8>>> {
        self.meta_blob("license_bytes")
    }

    /// Remembers the license now in force.
    pub fn store_license(&self, bytes: &[u8]) -> anyhow::Result<()> {
        self.set_meta_blob("license_bytes", bytes)
    }

    /// A downgrade held by `hold_downgrades`: the license bytes and the
    /// change in one line, for `accept-downgrade` to show.
    pub fn pending_downgrade(&self) -> anyhow::Result<Option<(Vec<u8>, String)>> {
        let Some(bytes) = self.meta_blob("pending_downgrade")? else {
            return Ok(None);
        };
        let summary = self
            .meta_blob("pending_downgrade_summary")?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        Ok(Some((bytes, summary)))
    }

    /// Records the downgrade being held (replacing any earlier one).
    pub fn set_pending_downgrade(&self, bytes: &[u8], summary: &str) -> anyhow::Result<()> {
        self.set_meta_blob("pending_downgrade", bytes)?;
        self.set_meta_blob("pending_downgrade_summary", summary.as_bytes())
    }

    /// Nothing is held any more.
    pub fn clear_pending_downgrade(&self) -> anyhow::Result<()> {
        self.conn.execute(
            "DELETE FROM meta WHERE key IN ('pending_downgrade', 'pending_downgrade_summary')",
            [],
        )?;
        Ok(())
    }

    /// The license an operator accepted as a downgrade (`accept-downgrade`).
    pub fn accepted_downgrade(&self) -> anyhow::Result<Option<Vec<u8>>> {
        self.meta_blob("accepted_downgrade")
    }

    /// Accepts `bytes` as a downgrade: the daemon puts it in force at its
    /// next file check.
    pub fn accept_downgrade(&self, bytes: &[u8]) -> anyhow::Result<()> {
        self.set_meta_blob("accepted_downgrade", bytes)
    }

    /// Generic timestamp in `meta` (e.g. `created_at`, `last_report_at`).
    pub fn time(&self, key: &str) -> anyhow::Result<Option<Timestamp>> {
        Ok(self.meta_i64(key)?.map(u))
    }

    /// Sets a timestamp in `meta`.
    pub fn set_time(&self, key: &str, t: Timestamp) -> anyhow::Result<()> {
        self.set_meta_i64(key, i(t))
    }

    /// Highest number of live leases ever seen.
    pub fn peak_nodes(&self) -> anyhow::Result<u64> {
        Ok(self.meta_i64("peak_nodes")?.map(u).unwrap_or(0))
    }

    /// Opens a group: the writes that follow (each in its own savepoint)
    /// become durable together at [`Db::commit_group`], with one sync.
    pub fn begin_group(&self) -> anyhow::Result<()> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(())
    }

    /// Commits the group (one fsync for all of it). On failure nothing of
    /// the group is kept: it is rolled back.
    pub fn commit_group(&self) -> anyhow::Result<()> {
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(e.into());
        }
        Ok(())
    }

    /// Live leases as node id → expiry.
    pub fn leases(&self) -> anyhow::Result<HashMap<String, Timestamp>> {
        let mut st = self
            .conn
            .prepare("SELECT node_id, expires_at FROM leases")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, u(r.get(1)?))))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Upserts a lease and raises the all-time peak and the peak of `month`
    /// (`2026-01`) (one transaction).
    pub fn put_lease(
        &mut self,
        node: &str,
        expires: Timestamp,
        live: u64,
        month: &str,
    ) -> anyhow::Result<()> {
        self.in_savepoint(|c| {
            c.prepare_cached(
                "INSERT INTO leases (node_id, expires_at) VALUES (?1, ?2)
                 ON CONFLICT(node_id) DO UPDATE SET expires_at = excluded.expires_at",
            )?
            .execute(params![node, i(expires)])?;
            c.prepare_cached(
                "INSERT INTO meta (key, value) VALUES ('peak_nodes', ?1)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value
                 WHERE CAST(meta.value AS INTEGER) < CAST(excluded.value AS INTEGER)",
            )?
            .execute([i(live).to_string().into_bytes()])?;
            c.prepare_cached(
                "INSERT INTO node_peaks (month, peak) VALUES (?1, ?2)
                 ON CONFLICT(month) DO UPDATE SET peak = excluded.peak
                 WHERE node_peaks.peak < excluded.peak",
            )?
            .execute(params![month, i(live)])?;
            Ok(())
        })
    }

    /// Removes one lease; true if it existed.
    pub fn delete_lease(&self, node: &str) -> anyhow::Result<bool> {
        Ok(self
            .conn
            .execute("DELETE FROM leases WHERE node_id = ?1", [node])?
            > 0)
    }

    /// Removes leases that expired at or before `now`.
    pub fn cull_leases(&self, now: Timestamp) -> anyhow::Result<usize> {
        Ok(self
            .conn
            .execute("DELETE FROM leases WHERE expires_at <= ?1", [i(now)])?)
    }

    /// Every counter as (metric, bucket) → value.
    pub fn counters(&self) -> anyhow::Result<HashMap<(String, String), u64>> {
        let mut st = self
            .conn
            .prepare("SELECT metric, bucket, value FROM counters")?;
        let rows = st.query_map([], |r| {
            Ok((
                (r.get::<_, String>(0)?, r.get::<_, String>(1)?),
                u(r.get(2)?),
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A stored reply for an idempotency key: (HTTP status, JSON body).
    pub fn idempotent_reply(&self, key: &str) -> anyhow::Result<Option<String>> {
        // Only counted spends are recorded (their `status` column is 200).
        Ok(self
            .conn
            .prepare_cached("SELECT body FROM idempotency WHERE key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?)
    }

    /// Sets a counter and records the idempotency key with its (200) reply, in one
    /// transaction: either both are durable or neither.
    pub fn record_spend(
        &mut self,
        metric: &str,
        bucket: &str,
        value: u64,
        key: &str,
        body: &str,
        now: Timestamp,
    ) -> anyhow::Result<()> {
        self.in_savepoint(|c| {
            c.prepare_cached(
                "INSERT INTO counters (metric, bucket, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT(metric, bucket) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![metric, bucket, i(value)])?;
            c.prepare_cached(
                "INSERT INTO idempotency (key, status, body, created_at) VALUES (?1, 200, ?2, ?3)",
            )?
            .execute(params![key, body, i(now)])?;
            Ok(())
        })
    }

    /// Runs `f` in a savepoint: all of its statements take effect or none
    /// (inside a group, the group's other writes stay). The savepoint
    /// statements are prepared once and cached, like every statement on
    /// the write path (rusqlite's `savepoint()` parses two statements per
    /// write).
    fn in_savepoint<T>(
        &mut self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> anyhow::Result<T> {
        // Outside a group the savepoint is the whole transaction, and its
        // RELEASE is the commit.
        let alone = self.conn.is_autocommit();
        self.conn.prepare_cached("SAVEPOINT w")?.execute([])?;
        let done = f(&self.conn).and_then(|v| {
            self.conn.prepare_cached("RELEASE w")?.execute([])?;
            Ok(v)
        });
        if done.is_err() && !self.conn.is_autocommit() {
            // Undo this write only (a group's other writes stay); the
            // error is what the caller sees.
            let _ = self.conn.execute_batch(if alone {
                "ROLLBACK"
            } else {
                "ROLLBACK TO w; RELEASE w"
            });
        }
        Ok(done?)
    }

    /// Forgets at most `limit` idempotency keys older than `before`, oldest
    /// first (through the `created_at` index: no scan of the keys still
    /// remembered); returns how many. One short transaction, so a write
    /// queued behind it waits for `limit` deletions, never for the backlog.
    pub fn prune_idempotency(&self, before: Timestamp, limit: usize) -> anyhow::Result<usize> {
        Ok(self
            .conn
            .prepare_cached(
                "DELETE FROM idempotency WHERE rowid IN (
                     SELECT rowid FROM idempotency WHERE created_at < ?1
                     ORDER BY created_at LIMIT ?2)",
            )?
            .execute(params![i(before), i64::try_from(limit).unwrap_or(i64::MAX)])?)
    }

    /// Queues an upgrade request; returns its id.
    pub fn queue_upgrade(&self, r: &UpgradeRequest) -> anyhow::Result<i64> {
        self.conn.execute(
            "INSERT INTO upgrade_requests (requested_tier, message, time) VALUES (?1, ?2, ?3)",
            params![r.requested_tier, r.message, i(r.time)],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Every queued upgrade request, oldest first.
    pub fn upgrades(&self) -> anyhow::Result<Vec<QueuedUpgrade>> {
        let mut st = self.conn.prepare(
            "SELECT id, requested_tier, message, time, reported FROM upgrade_requests ORDER BY id",
        )?;
        let rows = st.query_map([], |r| {
            Ok(QueuedUpgrade {
                id: r.get(0)?,
                request: UpgradeRequest {
                    requested_tier: r.get(1)?,
                    message: r.get(2)?,
                    time: u(r.get(3)?),
                },
                reported: r.get::<_, i64>(4)? != 0,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Everything not yet acknowledged by a receipt, and what was.
    pub fn pending(&self) -> anyhow::Result<Pending> {
        let mut p = Pending::default();
        let mut st = self
            .conn
            .prepare("SELECT id FROM upgrade_requests WHERE reported = 0")?;
        for id in st.query_map([], |r| r.get::<_, i64>(0))? {
            p.upgrade_requests.insert(u(id?));
        }
        for ((metric, bucket), v) in self.counters()? {
            p.counters.entry(metric).or_default().insert(bucket, v);
        }
        let mut st = self
            .conn
            .prepare("SELECT metric, bucket, value FROM acked_counters")?;
        let rows = st.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?))
        })?;
        for row in rows {
            let (metric, bucket, v) = row?;
            p.acked_counters
                .entry(metric)
                .or_default()
                .insert(bucket, u(v));
        }
        p.node_peaks = self.peaks("node_peaks")?;
        p.acked_node_peaks = self.peaks("acked_node_peaks")?;
        Ok(p)
    }

    fn peaks(&self, table: &str) -> anyhow::Result<BTreeMap<String, u32>> {
        let mut st = self
            .conn
            .prepare(&format!("SELECT month, peak FROM {table}"))?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                u32::try_from(r.get::<_, i64>(1)?).unwrap_or(u32::MAX),
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The newest report written: its sequence number and hash.
    pub fn report_head(&self) -> anyhow::Result<Option<(u64, [u8; 32])>> {
        let row: Option<(i64, Vec<u8>)> = self
            .conn
            .query_row(
                "SELECT seq, hash FROM reports ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(row.and_then(|(seq, h)| Some((u(seq), h.try_into().ok()?))))
    }

    /// The hash of report `seq`, when this cluster wrote one.
    pub fn report_hash(&self, seq: u64) -> anyhow::Result<Option<[u8; 32]>> {
        let h: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT hash FROM reports WHERE seq = ?1", [i(seq)], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(h.and_then(|h| h.try_into().ok()))
    }

    /// When report `seq` was written, if this cluster wrote it.
    pub fn report_time(&self, seq: u64) -> anyhow::Result<Option<Timestamp>> {
        let t: Option<i64> = self
            .conn
            .query_row(
                "SELECT created_at FROM reports WHERE seq = ?1",
                [i(seq)],
                |r| r.get(0),
            )
            .optional()?;
        Ok(t.map(u))
    }

    /// The newest report whose receipt was imported (0: none).
    pub fn acked_seq(&self) -> anyhow::Result<u64> {
        let v: Option<i64> =
            self.conn
                .query_row("SELECT MAX(report_seq) FROM receipts", [], |r| r.get(0))?;
        Ok(v.map(u).unwrap_or(0))
    }

    /// When the newest report the vendor acknowledged (a receipt imported
    /// for it) was written: the clock of a license's duty to report.
    pub fn last_acknowledged_report(&self) -> anyhow::Result<Option<Timestamp>> {
        let t: Option<i64> = self
            .conn
            .prepare_cached(
                "SELECT MAX(r.created_at) FROM reports r JOIN receipts c ON c.report_seq = r.seq",
            )?
            .query_row([], |r| r.get(0))?;
        Ok(t.map(u))
    }

    /// The receipt imported for report `seq`, if any (its binary bytes).
    pub fn receipt(&self, seq: u64) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .query_row(
                "SELECT bytes FROM receipts WHERE report_seq = ?1",
                [i(seq)],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Records report `seq` with `hash` as written at `now`, then runs
    /// `write` (which puts the file in place). Recorded first, so a crash
    /// between the two leaves a number the vendor never receives: a *gap*
    /// at the next import, which the next report (carrying everything not
    /// acknowledged) fills in substance. The other order would reuse the
    /// number after such a crash, and the vendor would see a fork, the sign
    /// of a restored or cloned cluster. A write that fails takes the record
    /// back. Nothing is marked as done.
    pub fn record_report(
        &mut self,
        seq: u64,
        hash: &[u8; 32],
        now: Timestamp,
        write: impl FnOnce() -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let before = self.meta_blob("last_report_at")?;
        let tx = self.conn.savepoint()?;
        tx.execute(
            "INSERT INTO reports (seq, hash, created_at) VALUES (?1, ?2, ?3)",
            params![i(seq), hash.as_slice(), i(now)],
        )?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('last_report_at', ?1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [i(now).to_string().into_bytes()],
        )?;
        tx.commit()?;
        if let Err(e) = write() {
            let undo = self
                .conn
                .execute("DELETE FROM reports WHERE seq = ?1", [i(seq)]);
            let undo_meta = match &before {
                Some(b) => self.set_meta_blob("last_report_at", b),
                None => self
                    .conn
                    .execute("DELETE FROM meta WHERE key = 'last_report_at'", [])
                    .map(|_| ())
                    .map_err(Into::into),
            };
            if undo.is_err() || undo_meta.is_err() {
                tracing::warn!(
                    seq,
                    "a report that could not be written stays recorded: the vendor will see a gap"
                );
            }
            return Err(e);
        }
        Ok(())
    }

    /// The usage report last written for the relay (binary), if any.
    pub fn relay_report(&self) -> anyhow::Result<Option<Vec<u8>>> {
        self.meta_blob("relay_report")
    }

    /// Keeps `bytes` as the usage report written for the relay.
    pub fn set_relay_report(&self, bytes: &[u8]) -> anyhow::Result<()> {
        self.set_meta_blob("relay_report", bytes)
    }

    /// Applies a receipt for report `seq` (one transaction): marks what
    /// `clear` names as acknowledged and keeps the receipt.
    pub fn apply_receipt(
        &mut self,
        seq: u64,
        bytes: &[u8],
        clear: &Clearing,
        now: Timestamp,
    ) -> anyhow::Result<()> {
        let tx = self.conn.savepoint()?;
        for id in &clear.upgrade_requests {
            tx.execute(
                "UPDATE upgrade_requests SET reported = 1 WHERE id = ?1",
                [i(*id)],
            )?;
        }
        for (metric, bucket, value) in &clear.counters {
            tx.execute(
                "INSERT INTO acked_counters (metric, bucket, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT(metric, bucket) DO UPDATE SET value = excluded.value",
                params![metric, bucket, i(*value)],
            )?;
        }
        for (month, peak) in &clear.node_peaks {
            tx.execute(
                "INSERT INTO acked_node_peaks (month, peak) VALUES (?1, ?2)
                 ON CONFLICT(month) DO UPDATE SET peak = excluded.peak",
                params![month, peak],
            )?;
        }
        tx.execute(
            "INSERT OR IGNORE INTO receipts (report_seq, bytes, imported_at) VALUES (?1, ?2, ?3)",
            params![i(seq), bytes, i(now)],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Folds the WAL back into the main file (on clean shutdown).
    pub fn checkpoint(&self) -> anyhow::Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_database_is_refused_without_create() {
        let dir = tempfile::tempdir().unwrap();
        let err = Db::open(dir.path(), false).err().unwrap().to_string();
        assert!(err.contains("missing"), "{err}");
    }

    #[test]
    fn corrupt_database_is_refused_not_reset() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DB_FILE), vec![0x42u8; 8192]).unwrap();
        let err = Db::open(dir.path(), true).err().unwrap().to_string();
        assert!(err.contains("restore it from a backup"), "{err}");
        assert_eq!(
            std::fs::read(dir.path().join(DB_FILE)).unwrap(),
            vec![0x42u8; 8192]
        );
    }

    #[test]
    fn trusted_time_only_grows() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), true).unwrap();
        db.raise_trusted_time(100).unwrap();
        db.raise_trusted_time(50).unwrap();
        assert_eq!(db.trusted_time().unwrap(), 100);
    }

    fn record(from: Timestamp, to: Timestamp) -> ClockResetRecord<'static> {
        ClockResetRecord {
            id: &[7; 16],
            cluster_id: "c1",
            from,
            to,
            taken_at: to + 60,
            bytes: b"reset",
            lease_ttl: 300,
        }
    }

    #[test]
    fn a_clock_reset_redates_leases_and_keys_made_while_the_clock_was_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(dir.path(), true).unwrap();
        db.raise_trusted_time(1_000_000).unwrap();
        // Granted while the clock read 999 000: ends 300 s later.
        db.put_lease("ahead", 999_300, 1, "2026-11").unwrap();
        db.put_lease("now", 10_100, 2, "2026-11").unwrap();
        db.record_spend("api_calls", "b", 1, "k-ahead", "{}", 999_000)
            .unwrap();
        db.take_clock_reset(&record(1_000_000, 10_000)).unwrap();
        let leases = db.leases().unwrap();
        // The new mark 10 000, taken at 10 060: 300 s after that at most.
        assert_eq!(leases["ahead"], 10_360);
        assert_eq!(leases["now"], 10_100, "a lease within the cap is kept");
        let created: i64 = db
            .conn
            .query_row(
                "SELECT created_at FROM idempotency WHERE key = 'k-ahead'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(created, 10_060);
    }

    #[test]
    fn a_clock_reset_lowers_the_mark_once_and_only_from_the_mark_it_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(dir.path(), true).unwrap();
        db.raise_trusted_time(1_000).unwrap();
        assert!(!db.clock_reset_taken(&[7; 16]).unwrap());
        // The mark moved since it was read: nothing is written.
        assert!(db.take_clock_reset(&record(900, 100)).is_err());
        assert_eq!(db.trusted_time().unwrap(), 1_000);
        assert!(!db.clock_reset_taken(&[7; 16]).unwrap());
        db.take_clock_reset(&record(1_000, 100)).unwrap();
        assert_eq!(db.trusted_time().unwrap(), 100);
        assert!(db.clock_reset_taken(&[7; 16]).unwrap());
        // The same id again: refused, the mark stays.
        db.raise_trusted_time(1_000).unwrap();
        assert!(db.take_clock_reset(&record(1_000, 100)).is_err());
        assert_eq!(db.trusted_time().unwrap(), 1_000);
    }

    #[test]
    fn the_last_clock_reset_taken_is_told_to_the_relay_until_it_accepted_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(dir.path(), true).unwrap();
        assert!(db.clock_reset_to_tell().unwrap().is_none());
        db.raise_trusted_time(1_000).unwrap();
        db.take_clock_reset(&record(1_000, 100)).unwrap();
        assert_eq!(
            db.clock_reset_to_tell().unwrap(),
            Some(([7; 16], b"reset".to_vec()))
        );
        // Survives a restart until told.
        drop(db);
        let mut db = Db::open(dir.path(), true).unwrap();
        assert!(db.clock_reset_to_tell().unwrap().is_some());
        db.clock_reset_told(&[7; 16]).unwrap();
        assert!(db.clock_reset_to_tell().unwrap().is_none());
        // A later reset is told in turn.
        db.raise_trusted_time(2_000).unwrap();
        let later = ClockResetRecord {
            id: &[8; 16],
            bytes: b"later",
            ..record(2_000, 1_500)
        };
        db.take_clock_reset(&later).unwrap();
        assert_eq!(
            db.clock_reset_to_tell().unwrap(),
            Some(([8; 16], b"later".to_vec()))
        );
    }

    #[test]
    fn the_clock_resets_table_is_made_by_the_first_reset_taken() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), true).unwrap();
        db.raise_trusted_time(1_000).unwrap();
        drop(db);
        let mut db = Db::open(dir.path(), false).unwrap();
        // No table until a reset is taken: the schema every `check` parses
        // stays as it was.
        assert!(!db.has_clock_resets().unwrap());
        assert!(!db.clock_reset_taken(&[7; 16]).unwrap());
        assert_eq!(db.clock_reset_to_tell().unwrap(), None);
        db.take_clock_reset(&record(1_000, 100)).unwrap();
        assert!(db.has_clock_resets().unwrap());
        assert_eq!(db.trusted_time().unwrap(), 100);
        assert!(db.clock_reset_taken(&[7; 16]).unwrap());
    }

    #[test]
    fn spend_and_key_are_stored_together() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(dir.path(), true).unwrap();
        db.record_spend("api_calls", "2026-11", 5, "k1", "{}", 1)
            .unwrap();
        assert!(db
            .record_spend("api_calls", "2026-11", 9, "k1", "{}", 1)
            .is_err());
        assert_eq!(
            db.counters().unwrap()[&("api_calls".into(), "2026-11".into())],
            5
        );
    }
}
