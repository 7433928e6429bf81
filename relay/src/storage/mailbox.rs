//! The usage-report mailbox's storage (docs/relay.md "Usage reports and
//! receipts"): reports posted by connected clusters and the receipts the
//! vendor posts back, on either backend. The relay stores and forwards:
//! reports are signed by the cluster key, receipts by a vendor issuer key,
//! and the relay signs neither.
//!
//! Bounded per cluster: the newest [`KEEP_PER_CLUSTER`] reports and
//! receipts. Nothing is lost by dropping older ones: each report carries
//! everything its cluster has not had acknowledged.

use kaching_core::wire::mailbox::ReportRow;

use super::Fut;
use crate::error::ApiError;

/// Reports (and receipts) kept per cluster; older ones are dropped.
pub const KEEP_PER_CLUSTER: u64 = 32;

/// A usage report whose signature checked out, to be stored.
#[derive(Debug, Clone)]
pub struct NewReport {
    /// The cluster that signed it (its id follows from its key).
    pub cluster_id: String,
    /// The cluster key that signed it.
    pub key: [u8; 32],
    /// The license it counts under.
    pub license_id: String,
    /// Its sequence number.
    pub seq: u64,
    /// SHA-256 of `bytes`.
    pub hash: [u8; 32],
    /// The binary report.
    pub bytes: Vec<u8>,
    /// The newest report whose receipt the cluster has imported.
    pub acked: u64,
    /// Relay time.
    pub now: u64,
}

/// A verified receipt, to be stored for its cluster.
#[derive(Debug, Clone)]
pub struct NewReceipt {
    /// The cluster it is for.
    pub cluster_id: String,
    /// The report it acknowledges.
    pub report_seq: u64,
    /// That report's hash, as the receipt names it.
    pub report_hash: [u8; 32],
    /// The binary receipt.
    pub bytes: Vec<u8>,
    /// Relay time.
    pub now: u64,
}

/// What storing a report did.
#[derive(Debug)]
pub struct ReportStored {
    /// False when the relay held this report already.
    pub stored: bool,
    /// Binary receipts for the cluster's reports after its `acked`, oldest
    /// first, at most `kaching_core::wire::mailbox::MAX_RECEIPTS_PER_ANSWER`.
    pub receipts: Vec<Vec<u8>>,
}

/// The mailbox's storage; every backend implements it ([`super::Storage`]
/// requires it).
pub trait Mailbox: Send + Sync {
    /// Stores a report from the cluster bound with its key (idempotent on
    /// cluster and sequence number) and returns the receipts waiting for it.
    fn file_report(&self, r: NewReport) -> Fut<'_, ReportStored>;
    /// Reports with an id above `after`, ascending, at most `limit`; only
    /// those without a receipt when `unreceipted`.
    fn reports(&self, after: u64, limit: u32, unreceipted: bool) -> Fut<'_, Vec<ReportRow>>;
    /// Stores a receipt for a report the relay holds; `false` when it held
    /// a receipt for that report already.
    fn file_receipt(&self, r: NewReceipt) -> Fut<'_, bool>;
}

/// Checks a report's cluster against its binding: `bound` is the stored
/// (license id, cluster key) of the cluster, if it was ever activated.
pub fn check_binding(r: &NewReport, bound: Option<(String, Vec<u8>)>) -> Result<(), ApiError> {
    let Some((license, key)) = bound else {
        return Err(ApiError::forbidden(
            "not_activated",
            format!(
                "cluster {} has never been activated on this relay: only a cluster bound by POST /v1/activate may post usage reports",
                r.cluster_id
            ),
        ));
    };
    if key != r.key {
        return Err(ApiError::forbidden(
            "wrong_key",
            "usage report is not signed by the key bound at activation",
        ));
    }
    if license != r.license_id {
        return Err(ApiError::forbidden(
            "wrong_license",
            format!(
                "cluster {} is bound to license {license}, not {}: a report goes to the relay under the license the cluster activated",
                r.cluster_id, r.license_id
            ),
        ));
    }
    Ok(())
}

/// A second, different report with a sequence number the relay holds.
pub fn fork(r: &NewReport) -> ApiError {
    ApiError::conflict(
        "report_fork",
        format!(
            "the relay holds another usage report {} from cluster {}: the cluster's state database was restored or the cluster cloned; the vendor sees the chain in `licensegen usage import`",
            r.seq, r.cluster_id
        ),
    )
}

/// The stored report's hash differs from the one a receipt names, or the
/// relay does not hold it.
pub fn no_such_report(r: &NewReceipt, held: bool) -> ApiError {
    if held {
        ApiError::conflict(
            "other_report",
            format!(
                "the relay's usage report {} from cluster {} is not the one this receipt acknowledges (the hashes differ)",
                r.report_seq, r.cluster_id
            ),
        )
    } else {
        ApiError::not_found(format!(
            "the relay holds no usage report {} from cluster {}: give the receipt to the customer as a file (kaching-verifier receipt import FILE)",
            r.report_seq, r.cluster_id
        ))
    }
}
