//! The usage-report mailbox on PostgreSQL ([`crate::storage::mailbox`]).
//! Its writes are rare, so each runs in its own transaction on a pool
//! connection rather than through the heartbeat writer's batches; the
//! unique (cluster, sequence number) keeps replicas from storing two
//! reports at one position.

use kaching_core::armor::armor;
use kaching_core::time::rfc3339;
use kaching_core::wire::mailbox::{ReportRow, MAX_RECEIPTS_PER_ANSWER};
use kaching_core::DocKind;

use super::writes::{int, uint};
use super::PgStorage;
use crate::storage::mailbox::{
    check_binding, fork, no_such_report, Mailbox, NewReceipt, NewReport, ReportStored,
    KEEP_PER_CLUSTER,
};
use crate::storage::Fut;

/// Migration 3: the mailbox's tables.
pub const V3: &str = "
CREATE TABLE usage_reports (
    id           BIGSERIAL PRIMARY KEY,
    cluster_id   TEXT NOT NULL,
    license_id   TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    hash         BYTEA NOT NULL,
    bytes        BYTEA NOT NULL,
    received_at  BIGINT NOT NULL,
    UNIQUE (cluster_id, seq)
);
CREATE TABLE usage_receipts (
    cluster_id   TEXT NOT NULL,
    report_seq   BIGINT NOT NULL,
    bytes        BYTEA NOT NULL,
    received_at  BIGINT NOT NULL,
    PRIMARY KEY (cluster_id, report_seq)
);
";

impl Mailbox for PgStorage {
    fn file_report(&self, r: NewReport) -> Fut<'_, ReportStored> {
        Box::pin(async move {
            let mut c = self.client().await?;
            let tx = c.transaction().await?;
            let bound = tx
                .query_opt(
                    "SELECT license_id, cluster_key FROM clusters WHERE cluster_id = $1",
                    &[&r.cluster_id],
                )
                .await?
                .map(|row| (row.get::<_, String>(0), row.get::<_, Vec<u8>>(1)));
            check_binding(&r, bound)?;
            // Whichever replica inserts first wins; the other reads its row.
            let inserted = tx
                .execute(
                    "INSERT INTO usage_reports (cluster_id, license_id, seq, hash, bytes, received_at)
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (cluster_id, seq) DO NOTHING",
                    &[
                        &r.cluster_id,
                        &r.license_id,
                        &int(r.seq),
                        &r.hash.to_vec(),
                        &r.bytes,
                        &int(r.now),
                    ],
                )
                .await?;
            let stored = if inserted == 1 {
                let keep_from = int(r.seq.saturating_sub(KEEP_PER_CLUSTER - 1));
                tx.execute(
                    "DELETE FROM usage_reports WHERE cluster_id = $1 AND seq < $2",
                    &[&r.cluster_id, &keep_from],
                )
                .await?;
                tx.execute(
                    "DELETE FROM usage_receipts WHERE cluster_id = $1 AND report_seq < $2",
                    &[&r.cluster_id, &keep_from],
                )
                .await?;
                true
            } else {
                let held: Vec<u8> = tx
                    .query_one(
                        "SELECT hash FROM usage_reports WHERE cluster_id = $1 AND seq = $2",
                        &[&r.cluster_id, &int(r.seq)],
                    )
                    .await?
                    .get(0);
                if held != r.hash {
                    return Err(fork(&r));
                }
                false
            };
            let receipts = tx
                .query(
                    "SELECT bytes FROM usage_receipts WHERE cluster_id = $1 AND report_seq > $2
                     ORDER BY report_seq LIMIT $3",
                    &[
                        &r.cluster_id,
                        &int(r.acked),
                        &(MAX_RECEIPTS_PER_ANSWER as i64),
                    ],
                )
                .await?
                .iter()
                .map(|row| row.get(0))
                .collect();
            tx.commit().await?;
            Ok(ReportStored { stored, receipts })
        })
    }

    fn reports(&self, after: u64, limit: u32, unreceipted: bool) -> Fut<'_, Vec<ReportRow>> {
        Box::pin(async move {
            let c = self.client().await?;
            let rows = c
                .query(
                    "SELECT r.id, r.cluster_id, r.license_id, r.seq, r.received_at, r.bytes,
                            x.report_seq IS NOT NULL
                     FROM usage_reports r LEFT JOIN usage_receipts x
                       ON x.cluster_id = r.cluster_id AND x.report_seq = r.seq
                     WHERE r.id > $1 AND (NOT $2 OR x.report_seq IS NULL)
                     ORDER BY r.id LIMIT $3",
                    &[&int(after), &unreceipted, &i64::from(limit)],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|row| ReportRow {
                    id: uint(row.get(0)),
                    cluster_id: row.get(1),
                    license_id: row.get(2),
                    seq: uint(row.get(3)),
                    received_at: rfc3339(uint(row.get(4))),
                    receipted: row.get(6),
                    report: armor(DocKind::UsageReport, &row.get::<_, Vec<u8>>(5)),
                })
                .collect())
        })
    }

    fn file_receipt(&self, r: NewReceipt) -> Fut<'_, bool> {
        Box::pin(async move {
            let c = self.client().await?;
            let held = c
                .query_opt(
                    "SELECT hash FROM usage_reports WHERE cluster_id = $1 AND seq = $2",
                    &[&r.cluster_id, &int(r.report_seq)],
                )
                .await?
                .map(|row| row.get::<_, Vec<u8>>(0));
            match held {
                Some(h) if h == r.report_hash => {}
                other => return Err(no_such_report(&r, other.is_some())),
            }
            let n = c
                .execute(
                    "INSERT INTO usage_receipts (cluster_id, report_seq, bytes, received_at)
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    &[&r.cluster_id, &int(r.report_seq), &r.bytes, &int(r.now)],
                )
                .await?;
            Ok(n == 1)
        })
    }
}
