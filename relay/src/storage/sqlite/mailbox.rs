//! The usage-report mailbox on SQLite ([`crate::storage::mailbox`]). Its
//! writes are rare (one per new report or receipt), so they run in their
//! own immediate transaction on a pool connection rather than through the
//! heartbeat writer's batches.

use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};

use kaching_core::armor::armor;
use kaching_core::time::rfc3339;
use kaching_core::wire::mailbox::{ReportRow, MAX_RECEIPTS_PER_ANSWER};
use kaching_core::DocKind;

use super::SqliteStorage;
use crate::error::ApiError;
use crate::storage::mailbox::{
    check_binding, fork, no_such_report, Mailbox, NewReceipt, NewReport, ReportStored,
    KEEP_PER_CLUSTER,
};
use crate::storage::Fut;

/// The mailbox's tables, created idempotently at every start.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS usage_reports (
    id           INTEGER PRIMARY KEY,
    cluster_id   TEXT NOT NULL,
    license_id   TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    hash         BLOB NOT NULL,
    bytes        BLOB NOT NULL,
    received_at  INTEGER NOT NULL,
    UNIQUE (cluster_id, seq)
);
CREATE TABLE IF NOT EXISTS usage_receipts (
    cluster_id   TEXT NOT NULL,
    report_seq   INTEGER NOT NULL,
    bytes        BLOB NOT NULL,
    received_at  INTEGER NOT NULL,
    PRIMARY KEY (cluster_id, report_seq)
);
";

fn i(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn file_report(tx: &Transaction<'_>, r: &NewReport) -> Result<ReportStored, ApiError> {
    let bound: Option<(String, Vec<u8>)> = tx
        .query_row(
            "SELECT license_id, cluster_key FROM clusters WHERE cluster_id = ?1",
            [&r.cluster_id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    check_binding(r, bound)?;
    let held: Option<Vec<u8>> = tx
        .query_row(
            "SELECT hash FROM usage_reports WHERE cluster_id = ?1 AND seq = ?2",
            params![r.cluster_id, i(r.seq)],
            |row| row.get(0),
        )
        .optional()?;
    let stored = match held {
        Some(h) if h == r.hash => false,
        Some(_) => return Err(fork(r)),
        None => {
            tx.execute(
                "INSERT INTO usage_reports (cluster_id, license_id, seq, hash, bytes, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    r.cluster_id,
                    r.license_id,
                    i(r.seq),
                    r.hash.to_vec(),
                    r.bytes,
                    i(r.now)
                ],
            )?;
            let keep_from = i(r.seq.saturating_sub(KEEP_PER_CLUSTER - 1));
            tx.execute(
                "DELETE FROM usage_reports WHERE cluster_id = ?1 AND seq < ?2",
                params![r.cluster_id, keep_from],
            )?;
            tx.execute(
                "DELETE FROM usage_receipts WHERE cluster_id = ?1 AND report_seq < ?2",
                params![r.cluster_id, keep_from],
            )?;
            true
        }
    };
    let receipts = tx
        .prepare_cached(
            "SELECT bytes FROM usage_receipts WHERE cluster_id = ?1 AND report_seq > ?2
             ORDER BY report_seq LIMIT ?3",
        )?
        .query_map(
            params![r.cluster_id, i(r.acked), MAX_RECEIPTS_PER_ANSWER as i64],
            |row| row.get(0),
        )?
        .collect::<Result<Vec<Vec<u8>>, _>>()?;
    Ok(ReportStored { stored, receipts })
}

fn file_receipt(tx: &Transaction<'_>, r: &NewReceipt) -> Result<bool, ApiError> {
    let held: Option<Vec<u8>> = tx
        .query_row(
            "SELECT hash FROM usage_reports WHERE cluster_id = ?1 AND seq = ?2",
            params![r.cluster_id, i(r.report_seq)],
            |row| row.get(0),
        )
        .optional()?;
    match held {
        Some(h) if h == r.report_hash => {}
        other => return Err(no_such_report(r, other.is_some())),
    }
    let n = tx.execute(
        "INSERT INTO usage_receipts (cluster_id, report_seq, bytes, received_at)
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        params![r.cluster_id, i(r.report_seq), r.bytes, i(r.now)],
    )?;
    Ok(n == 1)
}

impl Mailbox for SqliteStorage {
    fn file_report(&self, r: NewReport) -> Fut<'_, ReportStored> {
        Box::pin(self.readers.read(move |c| {
            let tx = Transaction::new_unchecked(c, TransactionBehavior::Immediate)?;
            let out = file_report(&tx, &r)?;
            tx.commit()?;
            Ok(out)
        }))
    }

    fn reports(&self, after: u64, limit: u32, unreceipted: bool) -> Fut<'_, Vec<ReportRow>> {
        Box::pin(self.readers.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT r.id, r.cluster_id, r.license_id, r.seq, r.received_at, r.bytes,
                        x.report_seq IS NOT NULL
                 FROM usage_reports r LEFT JOIN usage_receipts x
                   ON x.cluster_id = r.cluster_id AND x.report_seq = r.seq
                 WHERE r.id > ?1 AND (?2 = 0 OR x.report_seq IS NULL)
                 ORDER BY r.id LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![i(after), unreceipted, limit], |row| {
                let bytes: Vec<u8> = row.get(5)?;
                Ok(ReportRow {
                    id: row.get(0)?,
                    cluster_id: row.get(1)?,
                    license_id: row.get(2)?,
                    seq: row.get(3)?,
                    received_at: rfc3339(row.get(4)?),
                    receipted: row.get(6)?,
                    report: armor(DocKind::UsageReport, &bytes),
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        }))
    }

    fn file_receipt(&self, r: NewReceipt) -> Fut<'_, bool> {
        Box::pin(self.readers.read(move |c| {
            let tx = Transaction::new_unchecked(c, TransactionBehavior::Immediate)?;
            let out = file_receipt(&tx, &r)?;
            tx.commit()?;
            Ok(out)
        }))
    }
}
