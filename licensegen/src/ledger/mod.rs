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
    add_event, chain_links, events, find_license, insert_chain, insert_license, insert_receipt,
    insert_revocation, insert_usage, latest_revocation, list_licenses, mark_superseded,
    receipt_for, reported_upgrade_ids, usage_files, usage_for, ChainRecord, Event, LicenseRecord,
    RevocationRecord, UsageRecord,
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
            "BEGIN; {SCHEMA} {CHAIN_SCHEMA} INSERT INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}'); COMMIT;"
        ))
        .with_context(|| format!("cannot create ledger {}", path.display()))?;
        Ok(Ledger {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Opens an existing ledger and checks it is one of ours.
    pub fn open(path: &Path) -> Result<Self> {
        if !path.is_file() {
            anyhow::bail!(
                "ledger {} is missing: restore it from your backup of the vendor directory",
                path.display()
            );
        }
        let corrupt = |e: &dyn std::fmt::Display| {
            anyhow::anyhow!(
                "ledger {} is corrupt or not a licensegen ledger ({e}): restore it from your backup of the vendor directory",
                path.display()
            )
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| corrupt(&e))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| corrupt(&e))?;
        let version: Option<String> = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| corrupt(&e))?;
        match version.as_deref() {
            Some(SCHEMA_VERSION) => {}
            Some(other) => anyhow::bail!(
                "ledger {} has schema version {other}, this licensegen reads version {SCHEMA_VERSION}: use a matching licensegen",
                path.display()
            ),
            None => return Err(corrupt(&"no schema version")),
        }
        conn.execute_batch(&format!("BEGIN; {CHAIN_SCHEMA} COMMIT;"))
            .map_err(|e| corrupt(&e))?;
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

/// SHA-256 of bytes, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    kaching_core::keys::hex(&Sha256::digest(bytes))
}
