//! The relay's JSON (docs/connected.md, docs/whoosh.md): the activation
//! body, publish answers, WHOOSH's license views and the vendor's fleet
//! listings. Heartbeats and relay-time answers are signed CBOR documents
//! ([`crate::heartbeat`]), not JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::QuotaJson;

/// `POST /v1/activate` body: both documents in their armored spelling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ActivateBody {
    /// The license, armored.
    pub license: String,
    /// The cluster's signed activation request, armored.
    pub activation_request: String,
}

/// `POST /v1/revocations` answer: 201 when the list is now in force, 200
/// when it already was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublishAnswer {
    /// The list's version.
    pub version: u64,
    /// True when this publish put it in force.
    pub accepted: bool,
    /// Why nothing changed, when `accepted` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `GET /v1/licenses/{id}/quotas`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LicenseQuotas {
    /// The license.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub license_id: Option<String>,
    /// Quota name → used (last heartbeat) and limit.
    pub quotas: BTreeMap<String, QuotaJson>,
}

/// The response header by which a relay announces the heartbeat claims it
/// reads beyond the first format (comma-separated). A verifier sends such a
/// claim only to a relay that announced it: older relays refuse unknown claims.
pub const ACCEPTS_HEADER: &str = "kaching-accepts";
/// In [`ACCEPTS_HEADER`]: the heartbeat's `chain` claim (report chain head).
pub const ACCEPTS_CHAIN_HEAD: &str = "chain-head";
/// In [`ACCEPTS_HEADER`]: the `reset` entry of the heartbeat's chain head
/// (the clock reset the cluster took, docs/format.md §7.9).
pub const ACCEPTS_CLOCK_RESET: &str = "clock-reset";

/// Whether the values of [`ACCEPTS_HEADER`] (each comma-separated) name `token`.
pub fn accepts<'a>(values: impl IntoIterator<Item = &'a str>, token: &str) -> bool {
    values
        .into_iter()
        .any(|v| v.split(',').any(|t| t.trim() == token))
}

/// One cluster of `GET /v1/clusters`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterRow {
    /// The cluster.
    pub cluster_id: String,
    /// The license it activated.
    pub license_id: String,
    /// Its hostname, from the activation request.
    pub hostname: String,
    /// `active`, `deactivated` or `replaced`.
    pub status: String,
    /// First activation, RFC 3339.
    pub activated_at: String,
    /// Last heartbeat or activation, RFC 3339.
    pub last_seen: String,
    /// Last heartbeat sequence number accepted.
    pub last_seq: u64,
    /// Heartbeats accepted.
    pub heartbeats: u64,
    /// The state the verifier reported last.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub state: Option<String>,
    /// Live nodes it reported last.
    pub active_nodes: u64,
    /// Quota name → used, as last reported.
    pub quotas: BTreeMap<String, u64>,
    /// The verifier's version.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub verifier_version: Option<String>,
    /// The last usage report the cluster's heartbeats named (its report
    /// chain head); null until a heartbeat carried one.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub report_seq: Option<u64>,
    /// Signs of a rollback seen in this cluster's heartbeats (restored
    /// state database, cloned cluster), newest first, at most ten.
    #[serde(default)]
    pub anomalies: Vec<Anomaly>,
}

/// A sign of rollback the relay saw in a cluster's heartbeats
/// (docs/threat-model.md, "Rollback of the state database").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Anomaly {
    /// `fork`, `head_back`, `time_back`, `beat_back` or `head_withheld`.
    pub kind: String,
    /// When the relay saw it, RFC 3339.
    pub at: String,
    /// What it means, in a sentence.
    pub detail: String,
}

/// `GET /v1/clusters`: one page, ordered by cluster id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterPage {
    /// The clusters.
    pub clusters: Vec<ClusterRow>,
    /// Pass as `after` for the next page; null on the last one.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub next_after: Option<String>,
}

/// `POST /v1/upgrade-requests` body (WHOOSH on the vendor side).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FileUpgrade {
    /// The license.
    #[cfg_attr(feature = "openapi", schema(format = "uuid"))]
    pub license_id: String,
    /// A tier from the vendor's catalog.
    pub requested_tier: String,
    /// Free text.
    #[serde(default)]
    pub message: String,
}

/// `POST /v1/upgrade-requests` answer: 201 filed, 200 already filed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpgradeFiled {
    /// The license.
    pub license_id: String,
    /// False when the same request was filed before.
    pub filed: bool,
}

/// One entry of the relay's `GET /v1/upgrade-requests`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpgradeRow {
    /// The license.
    pub license_id: String,
    /// The cluster that asked (null when filed through the API).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub cluster_id: Option<String>,
    /// The tier asked for.
    pub requested_tier: String,
    /// The message.
    pub message: String,
    /// When it was made, RFC 3339.
    pub time: String,
    /// When the relay received it, RFC 3339.
    pub received_at: String,
    /// `heartbeat` (carried by a cluster) or `whoosh` (filed through the API).
    pub source: String,
}

/// The relay's `GET /v1/upgrade-requests`, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpgradeRows {
    /// At most 1000.
    pub upgrade_requests: Vec<UpgradeRow>,
}

/// `GET /v1/roots?after=N`: the vendor's roots newer than version `N`, in
/// version order, each armored (`-----BEGIN KACHING ROOT-----`). A verifier
/// takes them one version at a time from the root it trusts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RootsAnswer {
    /// Armored root documents, ascending by version.
    pub roots: Vec<String>,
    /// The newest version the relay holds (0: none).
    pub latest: u64,
}

/// `PUT /v1/roots` answer: 201 when the root is now the relay's newest,
/// 200 when it already was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RootPublished {
    /// The root's version.
    pub version: u64,
    /// True when this publish moved the relay to it.
    pub accepted: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_reads_comma_separated_tokens_in_any_header_line() {
        let one = ["chain-head, clock-reset"];
        assert!(accepts(one, ACCEPTS_CHAIN_HEAD));
        assert!(accepts(one, ACCEPTS_CLOCK_RESET));
        assert!(accepts(["chain-head", "clock-reset"], ACCEPTS_CLOCK_RESET));
        assert!(!accepts(["chain-head"], ACCEPTS_CLOCK_RESET));
        assert!(!accepts(["clock-reset-v2"], ACCEPTS_CLOCK_RESET));
        assert!(!accepts([], ACCEPTS_CHAIN_HEAD));
    }
}
