//! Append-only, hash-chained audit log of every state-changing request.
//!
//! State changes (activation, deactivation, displacement, publish, token
//! changes, upgrade requests, signs of rollback) get one row each. Ordinary
//! heartbeats are gathered across commits (`audit_pending`, a Merkle
//! frontier updated in place) and sealed about once a minute into one row,
//! `heartbeats` by `relay`, whose detail holds how many, since when and the
//! Merkle root over their hashes ([`batch_detail`]): the log grows with
//! time, not heartbeats, and still commits to each heartbeat, in order.
//!
//! Row `n` stores `hash_n = SHA-256(hash_{n-1} || canonical(row_n))` with
//! `hash_0` = 32 zero bytes, and `audit_head` holds the last id and hash. An
//! edited row breaks its own hash, a deleted row breaks the chain or the id
//! sequence, a truncated tail disagrees with the head. Someone able to rewrite
//! the whole file can rebuild the chain; `audit verify` prints the head hash
//! so operators can record it elsewhere and compare later.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use sha2::{Digest, Sha256};

use kaching_core::keys::hex;
use kaching_core::merkle::{seal_due, Frontier, Hash};

/// The fields that are hashed, in a fixed order.
#[derive(Serialize)]
struct Canonical<'a> {
    id: i64,
    time: u64,
    actor: &'a str,
    action: &'a str,
    subject: &'a str,
    detail: &'a str,
}

fn chain(prev_hex: &str, row: &Canonical<'_>) -> String {
    let mut h = Sha256::new();
    h.update(prev_hex.as_bytes());
    // Serializing a struct of strings and integers cannot fail.
    h.update(serde_json::to_vec(row).unwrap_or_default());
    hex(&h.finalize())
}

/// The hash before the first row: 32 zero bytes, in hex.
pub fn genesis() -> String {
    hex(&[0u8; 32])
}

/// One audit row as stored (every backend hashes it the same way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Position in the chain, from 1.
    pub id: i64,
    /// Relay time.
    pub time: u64,
    /// Who: `cluster:<id>`, `token:<name>`, `cli`, `config:root`.
    pub actor: String,
    /// What was done.
    pub action: String,
    /// To what.
    pub subject: String,
    /// JSON details.
    pub detail: String,
    /// Its chained hash.
    pub hash: String,
}

impl Row {
    /// Reads a row selected as `id, time, actor, action, subject, detail,
    /// hash` (SQLite).
    pub fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
        Ok(Row {
            id: r.get(0)?,
            time: r.get(1)?,
            actor: r.get(2)?,
            action: r.get(3)?,
            subject: r.get(4)?,
            detail: r.get(5)?,
            hash: r.get(6)?,
        })
    }
}

/// The hash of row `id` chained after `prev_hex`.
pub fn row_hash(
    prev_hex: &str,
    id: i64,
    time: u64,
    actor: &str,
    action: &str,
    subject: &str,
    detail: &str,
) -> String {
    chain(
        prev_hex,
        &Canonical {
            id,
            time,
            actor,
            action,
            subject,
            detail,
        },
    )
}

/// Appends one row inside the caller's transaction.
pub fn append(
    conn: &Connection,
    time: u64,
    actor: &str,
    action: &str,
    subject: &str,
    detail: &serde_json::Value,
) -> rusqlite::Result<()> {
    let head: Option<(i64, String)> = conn
        .prepare_cached("SELECT id, hash FROM audit_head WHERE one = 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (prev_id, prev_hash) = head.unwrap_or((0, genesis()));
    let id = prev_id + 1;
    let detail = detail.to_string();
    let hash = chain(
        &prev_hash,
        &Canonical {
            id,
            time,
            actor,
            action,
            subject,
            detail: &detail,
        },
    );
    conn.prepare_cached(
        "INSERT INTO audit (id, time, actor, action, subject, detail, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![id, time, actor, action, subject, detail, hash])?;
    conn.prepare_cached(
        "INSERT INTO audit_head (one, id, hash) VALUES (1, ?1, ?2)
         ON CONFLICT(one) DO UPDATE SET id = excluded.id, hash = excluded.hash",
    )?
    .execute(params![id, hash])?;
    Ok(())
}

/// The actor of a heartbeat seal row.
pub const BATCH_ACTOR: &str = "relay";
/// The action of a heartbeat seal row.
pub const BATCH_ACTION: &str = "heartbeats";
/// The subject of a heartbeat seal row.
pub const BATCH_SUBJECT: &str = "batch";

/// The detail of a heartbeat seal row: how many heartbeats, since when
/// (relay time of the first), and the Merkle root over their leaves
/// (`kaching_core::merkle`), in commit order.
pub fn batch_detail(f: &Frontier, since: u64) -> serde_json::Value {
    serde_json::json!({
        "heartbeats": f.count(),
        "since": since,
        "merkle_root": hex(&f.root()),
    })
}

/// What to do with the pending leaves, given the commit's `leaves` (both
/// backends): `(row to seal first, pending to store)`; a seal is due a
/// minute after the pending leaves began (`kaching_core::merkle::seal_due`).
pub fn gather(
    pending: Option<(u64, Frontier)>,
    leaves: &[Hash],
    now: u64,
) -> (Option<(u64, Frontier)>, (u64, Frontier)) {
    let (sealed, mut next) = match pending {
        Some((since, f)) if seal_due(since, now, false) => {
            (Some((since, f)), (now, Frontier::new()))
        }
        Some(p) => (None, p),
        None => (None, (now, Frontier::new())),
    };
    for l in leaves {
        next.1.push(*l);
    }
    (sealed, next)
}

/// The pending leaves, if any (an unreadable frontier is an error).
fn pending(conn: &Connection) -> rusqlite::Result<Option<(u64, Frontier)>> {
    let row: Option<(u64, Vec<u8>)> = conn
        .prepare_cached("SELECT since, frontier FROM audit_pending WHERE one = 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    row.map(|(since, bytes)| {
        Frontier::from_bytes(&bytes)
            .map(|f| (since, f))
            .ok_or_else(|| {
                rusqlite::Error::ToSqlConversionFailure(
                    "audit_pending.frontier is not a Merkle frontier: the table was edited".into(),
                )
            })
    })
    .transpose()
}

fn seal_row(conn: &Connection, now: u64, since: u64, f: &Frontier) -> rusqlite::Result<()> {
    append(
        conn,
        now,
        BATCH_ACTOR,
        BATCH_ACTION,
        BATCH_SUBJECT,
        &batch_detail(f, since),
    )
}

/// Adds a commit's accepted heartbeat leaves to the pending ones, sealing
/// those first when a minute old (inside the commit's transaction).
pub fn add_beats(conn: &Connection, now: u64, leaves: &[Hash]) -> rusqlite::Result<()> {
    if leaves.is_empty() {
        return Ok(());
    }
    let (sealed, (since, f)) = gather(pending(conn)?, leaves, now);
    if let Some((s, old)) = sealed {
        seal_row(conn, now, s, &old)?;
    }
    conn.prepare_cached(
        "INSERT INTO audit_pending (one, since, beats, frontier) VALUES (1, ?1, ?2, ?3)
         ON CONFLICT (one) DO UPDATE SET since = ?1, beats = ?2, frontier = ?3",
    )?
    .execute(params![since, f.count(), f.to_bytes()])?;
    Ok(())
}

/// Seals the pending leaves into one audit row when due (or `force`d);
/// `true` when it did.
pub fn seal(conn: &Connection, now: u64, force: bool) -> rusqlite::Result<bool> {
    match pending(conn)? {
        Some((since, f)) if seal_due(since, now, force) => {
            seal_row(conn, now, since, &f)?;
            conn.prepare_cached("DELETE FROM audit_pending")?
                .execute([])?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// What `audit verify` found when the chain holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Number of rows.
    pub rows: i64,
    /// Hash of the last row (record it to detect a rebuilt chain later).
    pub head: String,
    /// Heartbeats accepted but not yet sealed into a row (`audit_pending`:
    /// sealed within about a minute, and at start and shutdown).
    pub pending: u64,
}

/// Walks the chain from the first row; the error names the first bad row.
pub fn verify(conn: &Connection) -> anyhow::Result<Verified> {
    verify_from(conn, None)
}

/// [`verify`] from a row already verified (`from`: its id and hash, as a
/// whole walk found them): the row must still hold that hash, then the
/// rows after it are walked. A console that walked the whole chain keeps
/// the head it found and checks only what was added since; rows before
/// `from` are not read again (an edit there shows at the next whole walk).
pub fn verify_from(conn: &Connection, from: Option<(i64, String)>) -> anyhow::Result<Verified> {
    let mut walk = Walk::new();
    if let Some((id, hash)) = from {
        let stored: Option<String> = conn
            .prepare_cached("SELECT hash FROM audit WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?;
        walk = Walk::resume(id, &hash, stored.as_deref())?;
    }
    let mut stmt = conn.prepare_cached(
        "SELECT id, time, actor, action, subject, detail, hash FROM audit WHERE id > ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([walk.rows()], Row::read)?;
    let head: Option<(i64, String)> = conn
        .query_row("SELECT id, hash FROM audit_head WHERE one = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let pending: Option<i64> = conn
        .query_row("SELECT beats FROM audit_pending WHERE one = 1", [], |r| {
            r.get(0)
        })
        .optional()?;
    for r in rows {
        walk.push(&r?)?;
    }
    let mut v = walk.finish(head)?;
    v.pending = pending.map_or(0, |n| u64::try_from(n).unwrap_or(0));
    Ok(v)
}

/// The chain walked one row at a time (a large log is read in chunks).
pub struct Walk {
    expected_id: i64,
    prev: String,
}

impl Default for Walk {
    fn default() -> Self {
        Self::new()
    }
}

impl Walk {
    /// Before the first row.
    pub fn new() -> Walk {
        Walk {
            expected_id: 1,
            prev: genesis(),
        }
    }

    /// After row `id`, verified before with hash `hash`; `stored` is the
    /// hash that row holds now (none: the row is gone). Row 0 is the
    /// genesis, before the first row.
    pub fn resume(id: i64, hash: &str, stored: Option<&str>) -> anyhow::Result<Walk> {
        if id > 0 && stored != Some(hash) {
            anyhow::bail!(
                "audit log broken at row {id}: it no longer holds the hash it was verified with; the row was edited or deleted"
            );
        }
        Ok(Walk {
            expected_id: id + 1,
            prev: if id > 0 { hash.to_string() } else { genesis() },
        })
    }

    /// Checks the next row; the error names it.
    pub fn push(&mut self, r: &Row) -> anyhow::Result<()> {
        let expected_id = self.expected_id;
        if r.id != expected_id {
            anyhow::bail!(
                "audit log broken: row {expected_id} is missing (next row is {}); rows were deleted",
                r.id
            );
        }
        let computed = row_hash(
            &self.prev, r.id, r.time, &r.actor, &r.action, &r.subject, &r.detail,
        );
        if computed != r.hash {
            anyhow::bail!(
                "audit log broken at row {} ({} {}): its hash does not match its content or the row before it; the row was edited",
                r.id,
                r.action,
                r.subject
            );
        }
        self.prev.clone_from(&r.hash);
        self.expected_id += 1;
        Ok(())
    }

    /// Rows walked so far.
    pub fn rows(&self) -> i64 {
        self.expected_id - 1
    }

    /// Checks the walked chain against the stored `head`.
    pub fn finish(self, head: Option<(i64, String)>) -> anyhow::Result<Verified> {
        let rows = self.rows();
        let prev = self.prev;
        match head {
            None if rows == 0 => {}
            Some((0, _)) if rows == 0 => {}
            Some((id, hash)) if id == rows && hash == prev => {}
            Some((id, _)) => anyhow::bail!(
                "audit log broken: the head records {id} rows but {rows} chain correctly; rows at the end were deleted or the head was edited"
            ),
            None => anyhow::bail!("audit log broken: rows exist but the head record is missing"),
        }
        Ok(Verified {
            rows,
            head: prev,
            pending: 0,
        })
    }
}
