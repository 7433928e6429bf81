//! The ledger: an SQLite file (WAL) recording every license issued, every
//! revocation list signed, every usage report imported and each license's
//! history. Every write is one transaction.

mod records;
mod state;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use rusqlite::{Connection, OpenFlags, OptionalExtension};

pub use records::{
    add_event, chain_links, clock_resets_for, clock_resets_for_license, delete_clock_reset, events,
    find_clock_reset, find_license, insert_chain, insert_clock_reset, insert_license,
    insert_receipt, insert_revocation, insert_usage, latest_revocation, licenses_on_cluster,
    list_licenses, mark_superseded, receipt_for, reported_upgrade_ids, usage_files, usage_for,
    AlreadyReplaced, ChainRecord, ClockResetRecord, Event, LicenseRecord, RevocationRecord,
    UsageRecord,
};
pub use state::{select, LedgerState};

/// Schema version written at creation; a ledger with another version is refused.
const SCHEMA_VERSION: &str = "1";

/// How long a writer waits for another process holding the lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

const SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE licenses (
    id TEXT PRIMARY KEY,
    customer TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    tier TEXT NOT NULL,
    max_nodes INTEGER NOT NULL,
    issued_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    grace INTEGER NOT NULL,
    cluster TEXT,
    supersedes TEXT,
    superseded_by TEXT,
    kid TEXT NOT NULL,
    file_sha256 TEXT NOT NULL,
    file BLOB NOT NULL,
    path TEXT NOT NULL
);
CREATE INDEX licenses_customer ON licenses (customer);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    license_id TEXT NOT NULL,
    time INTEGER NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX events_license ON events (license_id);
CREATE TABLE revocation_lists (
    version INTEGER PRIMARY KEY,
    issued_at INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    entries INTEGER NOT NULL,
    file_sha256 TEXT NOT NULL,
    file BLOB NOT NULL
);
CREATE TABLE usage_reports (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    license_id TEXT NOT NULL,
    cluster_id TEXT NOT NULL,
    period_start INTEGER NOT NULL,
    period_end INTEGER NOT NULL,
    peak_nodes INTEGER NOT NULL,
    counters TEXT NOT NULL,
    upgrade_requests TEXT NOT NULL,
    file_sha256 TEXT NOT NULL UNIQUE,
    file BLOB NOT NULL,
    imported_at INTEGER NOT NULL
);
CREATE INDEX usage_license ON usage_reports (license_id);
";

/// Tables added with receipts and the report chain; created on open when
/// missing, so a ledger made before them gains them (an older licensegen
/// ignores them).
const CHAIN_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS report_chain (
    file_sha256 TEXT PRIMARY KEY,
    cluster_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    hash BLOB NOT NULL,
    prev BLOB,
    trusted_time INTEGER NOT NULL,
    acked INTEGER NOT NULL,
    findings TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS report_chain_cluster ON report_chain (cluster_id, seq);
CREATE TABLE IF NOT EXISTS receipts (
    report_sha256 TEXT PRIMARY KEY,
    cluster_id TEXT NOT NULL,
    report_seq INTEGER NOT NULL,
    issued_at INTEGER NOT NULL,
    file BLOB NOT NULL
);
";

/// The table added with clock resets (`licensegen clock-reset`); created on
/// open when missing, like [`CHAIN_SCHEMA`]. A ledger opened read-only
/// keeps working without it: [`clock_resets_for`] reads a missing table as
/// empty.
const CLOCK_RESET_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS clock_resets (
    id TEXT PRIMARY KEY,
    cluster_id TEXT NOT NULL,
    mark INTEGER NOT NULL,
    issued INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    kid TEXT NOT NULL,
    path TEXT NOT NULL,
    created INTEGER NOT NULL,
    file BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS clock_resets_cluster ON clock_resets (cluster_id, issued);
";

/// An open ledger.
pub struct Ledger {
    /// The connection (WAL, busy timeout set).
    pub conn: Connection,
    path: PathBuf,
}

impl Ledger {
    /// Creates a new, empty ledger; refuses to touch an existing file.
    pub fn create(path: &Path) -> Result<Self> {
        if path.exists() {
            anyhow::bail!(
                "{} already exists: refusing to replace a ledger",
                path.display()
            );
        }
        let conn = Connection::open(path)
            .with_context(|| format!("cannot create ledger {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.execute_batch(&format!(
            "BEGIN; {SCHEMA} {CHAIN_SCHEMA} {CLOCK_RESET_SCHEMA} INSERT INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}'); COMMIT;"
        ))
        .with_context(|| format!("cannot create ledger {}", path.display()))?;
        Ok(Ledger {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Opens an existing ledger for writing and checks it is one of ours.
    pub fn open(path: &Path) -> Result<Self> {
        check_present(path)?;
        // Before SQLite touches anything: a read-only ledger opened for
        // writing would leave a read-only `-shm` file behind it.
        if let Some(problem) = write_problem(path) {
            return Err(problem.error(path));
        }
        Self::open_writable(path)
    }

    /// [`Ledger::open`] once the ledger is known to be present and writable.
    fn open_writable(path: &Path) -> Result<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| failure(path, &e))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| failure(path, &e))?;
        check_schema(path, &conn)?;
        conn.execute_batch(&format!(
            "BEGIN; {CHAIN_SCHEMA} {CLOCK_RESET_SCHEMA} COMMIT;"
        ))
        .map_err(|e| failure(path, &e))?;
        Ok(Ledger {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Opens a ledger for a command that only reads it: as [`Ledger::open`],
    /// or read-only when the vendor directory or the ledger is read-only for
    /// this user (a backup copy, a read-only mount).
    pub fn open_to_read(path: &Path) -> Result<Self> {
        check_present(path)?;
        if write_problem(path).is_none() {
            return Self::open_writable(path);
        }
        let wal = sidecar(path, "-wal");
        // Without a `-wal` file every committed write is in the main file, and
        // in a read-only folder nobody can start one: read it as it is.
        let conn = if wal.exists() {
            Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
        } else {
            let uri = path
                .to_string_lossy()
                .replace('%', "%25")
                .replace('?', "%3f")
                .replace('#', "%23");
            Connection::open_with_flags(
                format!("file:{uri}?immutable=1"),
                OpenFlags::SQLITE_OPEN_READ_ONLY
                    | OpenFlags::SQLITE_OPEN_URI
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
        }
        .map_err(|e| failure(path, &e))?;
        check_schema(path, &conn)?;
        Ok(Ledger {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Where the ledger lives.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn check_present(path: &Path) -> Result<()> {
    if !path.is_file() {
        anyhow::bail!(
            "ledger {} is missing: restore it from your backup of the vendor directory",
            path.display()
        );
    }
    Ok(())
}

/// Checks the schema version: a file that is no ledger of ours is corrupt.
fn check_schema(path: &Path, conn: &Connection) -> Result<()> {
    let version: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| match e.sqlite_error_code() {
            // "no such table": an SQLite file, but not a ledger.
            Some(rusqlite::ErrorCode::Unknown) => corrupt(path, &e),
            _ => failure(path, &e),
        })?;
    match version.as_deref() {
        Some(SCHEMA_VERSION) => Ok(()),
        Some(other) => anyhow::bail!(
            "ledger {} has schema version {other}, this licensegen reads version {SCHEMA_VERSION}: use a matching licensegen",
            path.display()
        ),
        None => Err(corrupt(path, &"no schema version")),
    }
}

fn corrupt(path: &Path, e: &dyn std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!(
        "ledger {} is corrupt or not a licensegen ledger ({e}): restore it from your backup of the vendor directory",
        path.display()
    )
}

/// `ledger.sqlite-wal`, `ledger.sqlite-shm`: SQLite's files beside the ledger.
fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

const NOT_DAMAGED: &str =
    "the ledger itself is not damaged: do not restore it from backup (that would lose the licenses issued since)";

/// Why the ledger cannot be written, found before SQLite is asked.
#[derive(Debug, PartialEq, Eq)]
enum WriteProblem {
    /// This file or folder is read-only for this user (or a folder where a file belongs).
    ReadOnly(PathBuf),
    /// The disk is full.
    Full,
}

impl WriteProblem {
    fn error(&self, ledger: &Path) -> anyhow::Error {
        match self {
            WriteProblem::ReadOnly(p) => anyhow::anyhow!(
                "cannot write the ledger {}: {} is read-only for this user (or not a plain file): make it writable (chmod u+w {}) or run licensegen as the user who owns the vendor directory, then run the command again; {NOT_DAMAGED}",
                ledger.display(),
                p.display(),
                p.display()
            ),
            WriteProblem::Full => disk_full(ledger, &"no space left on device"),
        }
    }
}

/// Tries the folder (by creating and removing an empty file) and each of
/// the ledger's files (by opening it for writing, which changes nothing).
fn write_problem(path: &Path) -> Option<WriteProblem> {
    use std::io::ErrorKind as K;
    let classify = |p: &Path, e: std::io::Error| match e.kind() {
        K::StorageFull => Some(WriteProblem::Full),
        K::PermissionDenied | K::ReadOnlyFilesystem | K::IsADirectory => {
            Some(WriteProblem::ReadOnly(p.to_path_buf()))
        }
        _ => None,
    };
    let dir = crate::fsutil::parent_of(path);
    let probe = dir.join(format!(".licensegen-write-check-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
        }
        Err(e) => {
            if let Some(p) = classify(&dir, e) {
                return Some(p);
            }
        }
    }
    for f in [
        path.to_path_buf(),
        sidecar(path, "-wal"),
        sidecar(path, "-shm"),
    ] {
        if !f.exists() {
            continue;
        }
        if let Err(e) = std::fs::OpenOptions::new().write(true).open(&f) {
            if let Some(p) = classify(&f, e) {
                return Some(p);
            }
        }
    }
    None
}

fn disk_full(path: &Path, e: &dyn std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot write the ledger {}: the disk is full ({e}): free some space on the disk holding {}, then run the command again; {NOT_DAMAGED}",
        path.display(),
        crate::fsutil::parent_of(path).display()
    )
}

/// Says what an SQLite error met opening the ledger means for the user:
/// only a damaged file or one that is not a ledger is "corrupt".
fn failure(path: &Path, e: &rusqlite::Error) -> anyhow::Error {
    use rusqlite::ErrorCode as C;
    match e.sqlite_error_code() {
        Some(C::DatabaseCorrupt | C::NotADatabase) => corrupt(path, e),
        Some(C::DiskFull) => disk_full(path, e),
        Some(C::ReadOnly | C::PermissionDenied | C::CannotOpen) => match write_problem(path) {
            Some(p) => p.error(path),
            None => anyhow::anyhow!(
                "cannot open the ledger {} for writing ({e}): make the folder {} and the files {}, {}-wal and {}-shm in it writable for this user, then run the command again; {NOT_DAMAGED}",
                path.display(),
                crate::fsutil::parent_of(path).display(),
                path.display(),
                path.display(),
                path.display()
            ),
        },
        Some(C::SystemIoFailure) => anyhow::anyhow!(
            "cannot read or write the ledger {} (disk I/O error: {e}): the disk may be full or failing: free some space on it and check it, then run the command again; {NOT_DAMAGED}",
            path.display()
        ),
        Some(C::DatabaseBusy | C::DatabaseLocked) => anyhow::anyhow!(
            "the ledger {} is busy ({e}): another licensegen or the desk (licensegen ui) is using it: wait for it to finish, then run the command again",
            path.display()
        ),
        _ => anyhow::anyhow!(
            "cannot open the ledger {} ({e}): check the vendor directory's files and the disk, then run the command again",
            path.display()
        ),
    }
}

/// SHA-256 of bytes, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    kaching_core::keys::hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(code: std::ffi::c_int) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn only_damage_is_called_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        std::fs::write(&path, b"x").unwrap();
        for code in [rusqlite::ffi::SQLITE_CORRUPT, rusqlite::ffi::SQLITE_NOTADB] {
            let e = failure(&path, &sqlite(code)).to_string();
            assert!(
                e.contains("is corrupt") && e.contains("restore it from your backup"),
                "{e}"
            );
        }
        for (code, says) in [
            (rusqlite::ffi::SQLITE_FULL, "the disk is full"),
            (rusqlite::ffi::SQLITE_IOERR, "disk I/O error"),
            (rusqlite::ffi::SQLITE_READONLY, "writable for this user"),
            (rusqlite::ffi::SQLITE_PERM, "writable for this user"),
            (rusqlite::ffi::SQLITE_CANTOPEN, "writable for this user"),
            (rusqlite::ffi::SQLITE_BUSY, "is busy"),
        ] {
            let e = failure(&path, &sqlite(code)).to_string();
            assert!(e.contains(says), "{code}: {e}");
            assert!(!e.contains("corrupt"), "{code}: {e}");
        }
    }

    #[test]
    fn a_folder_in_place_of_a_ledger_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        std::fs::write(&path, b"x").unwrap();
        assert_eq!(write_problem(&path), None);
        let shm = sidecar(&path, "-shm");
        std::fs::create_dir(&shm).unwrap();
        assert_eq!(write_problem(&path), Some(WriteProblem::ReadOnly(shm)));
    }
}
