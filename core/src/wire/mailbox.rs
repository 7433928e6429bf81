//! The relay's usage-report mailbox (docs/relay.md "Usage reports and
//! receipts"): a connected cluster posts its usage report, the vendor's
//! `licensegen usage pull` fetches it and posts the receipt back, and the
//! cluster picks the receipt up with its next post. The relay only stores
//! and forwards: it never signs a receipt.

use serde::{Deserialize, Serialize};

/// Where the relay keeps usage reports and receipts (cluster side: `POST`;
/// vendor side: `GET`).
pub const REPORTS_PATH: &str = "/v1/usage-reports";
/// Where the vendor posts receipts.
pub const RECEIPTS_PATH: &str = "/v1/receipts";
/// Receipts one answer to a report post carries at most (oldest first; the
/// rest come with the next post).
pub const MAX_RECEIPTS_PER_ANSWER: usize = 16;
/// Reports one `GET /v1/usage-reports` page carries at most.
pub const MAX_REPORTS_PER_PAGE: u32 = 100;

/// `POST /v1/usage-reports` answer: whether the report was new, and the
/// receipts the vendor has posted for this cluster's reports after the
/// last one it imported (the report's `acked`), armored, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportFiled {
    /// The cluster.
    pub cluster_id: String,
    /// The report's sequence number.
    pub seq: u64,
    /// False when the relay held this report already.
    pub stored: bool,
    /// Armored receipts (`-----BEGIN KACHING RECEIPT-----`), at most
    /// [`MAX_RECEIPTS_PER_ANSWER`].
    pub receipts: Vec<String>,
}

/// One stored usage report, as `GET /v1/usage-reports` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportRow {
    /// The relay's id for it: pass the last one seen as `after` for the next page.
    pub id: u64,
    /// The cluster that signed it.
    pub cluster_id: String,
    /// The license it counts under.
    #[cfg_attr(feature = "openapi", schema(format = "uuid"))]
    pub license_id: String,
    /// Its sequence number in the cluster's chain.
    pub seq: u64,
    /// When the relay received it, RFC 3339.
    pub received_at: String,
    /// True when the vendor has posted its receipt.
    pub receipted: bool,
    /// The report as the cluster signed it, armored (`-----BEGIN KACHING USAGE REPORT-----`).
    pub report: String,
}

/// `GET /v1/usage-reports` answer, ascending by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportRows {
    /// At most [`MAX_REPORTS_PER_PAGE`] (or the `limit` asked for).
    pub reports: Vec<ReportRow>,
}

/// `POST /v1/receipts` answer: 201 stored, 200 held already.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReceiptFiled {
    /// The cluster the receipt is for.
    pub cluster_id: String,
    /// The report it acknowledges.
    pub report_seq: u64,
    /// False when the relay held this receipt already.
    pub stored: bool,
}

/// The verifier's `receipt` event (`GET /v1/events`): a receipt from the
/// relay was applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReceiptEvent {
    /// The report the receipt acknowledges.
    pub report_seq: u64,
    /// Ids of the upgrade requests it cleared.
    pub upgrade_requests: Vec<u64>,
    /// Closed counter periods and monthly node peaks it cleared.
    pub periods: usize,
    /// Where it came from: `relay`.
    pub source: String,
}
