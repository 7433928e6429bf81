//! The verifier's local API (docs/verifier.md "API"): what BZZZ, WHOOSH and
//! `kaching-verifier status` read. Answers to writes carry `allowed` so a
//! caller can branch on one field; refusals also carry the shared
//! [`ErrorBody`](super::ErrorBody) fields so generic clients see an error.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ErrorDetail;
use crate::policy::{Decision, QuotaUsage, State};
use crate::status::LicenseStatus;

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// Always true: the process answers.
    pub ok: bool,
}

/// A file the verifier refused, shown until that file loads cleanly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rejection {
    /// `license`, `revocations` or `trusted_keys`.
    pub file: String,
    /// Why, with the next step.
    pub reason: String,
    /// When, RFC 3339.
    pub at: String,
}

/// `GET /v1/status` → `relay`: the conversation with the relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RelayStatus {
    /// The relay URL.
    pub url: String,
    /// Last relay-signed answer, RFC 3339 (`null`: never).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub last_contact: Option<String>,
    /// Last failure with its time, until the next success.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub last_error: Option<String>,
    /// The license the relay holds for this cluster (connected licenses only).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub activated_license: Option<String>,
    /// The relay's last message for this cluster's operators.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub message: Option<String>,
    /// Newest revocation version the relay announced.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub relay_revocation_version: Option<u64>,
    /// The last receipt picked up from the relay and applied, with its time
    /// (absent until one is, since the daemon started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_receipt: Option<String>,
}

/// `GET /v1/status`: WHOOSH's [`LicenseStatus`] plus this cluster's details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifierStatus {
    /// The shared WHOOSH shape.
    #[serde(flatten)]
    pub status: LicenseStatus,
    /// This cluster's id (what a license is bound to).
    pub cluster_id: String,
    /// When the verdict was computed, RFC 3339.
    pub evaluated_at: String,
    /// Files refused since they last loaded cleanly (last-known-good in force).
    pub rejections: Vec<Rejection>,
    /// The trusted-time mark (the latest time this verifier has seen), RFC 3339.
    pub trusted_time: String,
    /// `pinned` (the vendor's root is built into this verifier) or
    /// `development` (trust comes from an editable file: anyone who can edit
    /// it can mint licenses); empty from a verifier older than roots.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub trust: String,
    /// The version of the root of trust in force (absent: no root, a
    /// development key bundle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_version: Option<u64>,
    /// Connected mode: the relay conversation; absent when no relay is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<RelayStatus>,
    /// What changed when the license in force last replaced another
    /// (features, limits, quotas, expiry); absent until one has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_change: Option<crate::policy::LicenseChange>,
    /// A downgrade waiting for `kaching-verifier accept-downgrade`
    /// (`hold_downgrades = true`); the license before it stays in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_downgrade: Option<crate::policy::LicenseChange>,
}

/// `GET /v1/license`: the license in force, as the vendor signed it, so a
/// runtime that links kaching-core with the same pinned root can verify it
/// itself rather than believe an answer (a fake daemon can say anything).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LicenseAnswer {
    /// The license in force, armored (`-----BEGIN KACHING LICENSE-----`);
    /// null when none is.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub license: Option<String>,
    /// `pinned` or `development` (see [`VerifierStatus::trust`]).
    pub trust: String,
    /// The root of trust in force, armored; null for a development key bundle.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub root: Option<String>,
}

/// `GET /v1/quotas`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuotasAnswer {
    /// License id, or null without a license.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub license_id: Option<String>,
    /// The license state.
    pub state: State,
    /// Quota name → used, limit, period, percent.
    pub quotas: BTreeMap<String, QuotaUsage>,
}

/// `GET /v1/features/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeatureAnswer {
    /// The feature asked about.
    pub feature: String,
    /// Allowed or denied, and why.
    #[serde(flatten)]
    pub decision: Decision,
}

/// The common part of every 403 from a write: the decision and, for
/// generic clients, the same code and reason as an error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Refused {
    /// Always false.
    pub allowed: bool,
    /// Machine-readable reason code (`node_limit`, `quota_exceeded`, …).
    pub code: String,
    /// Why, with the next step.
    pub reason: String,
    /// `code` and `reason` again as `{code, message}`.
    pub error: ErrorDetail,
}

impl Refused {
    /// A refusal with `code` and `reason`.
    pub fn new(code: impl Into<String>, reason: impl Into<String>) -> Self {
        let (code, reason) = (code.into(), reason.into());
        Refused {
            allowed: false,
            error: ErrorDetail {
                code: code.clone(),
                message: reason.clone(),
            },
            code,
            reason,
        }
    }

    /// The refusal a denied [`Decision`] makes.
    pub fn from_decision(d: &Decision) -> Self {
        Refused::new(d.code.clone(), d.reason.clone())
    }
}

/// `PUT /v1/nodes/{id}` when the lease is granted or renewed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaseAnswer {
    /// Always true.
    pub allowed: bool,
    /// `ok` or an overage code (`node_overage`).
    pub code: String,
    /// Why, in words (mentions overage when in it).
    pub reason: String,
    /// The node.
    pub node_id: String,
    /// True when the node already held a live lease.
    pub renewed: bool,
    /// When the lease lapses unless renewed, RFC 3339.
    pub expires_at: String,
    /// Live leases after this one.
    pub nodes_in_use: u64,
    /// Node limit including overage.
    pub node_ceiling: u64,
}

/// `PUT /v1/nodes/{id}` refused (403): the cluster is at its node ceiling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaseRefused {
    /// The decision.
    #[serde(flatten)]
    pub refused: Refused,
    /// The node that asked.
    pub node_id: String,
    /// Live leases now.
    pub nodes_in_use: u64,
    /// Node limit including overage.
    pub node_ceiling: u64,
}

/// One live lease of `GET /v1/nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeLease {
    /// The node.
    pub node_id: String,
    /// When the lease lapses unless renewed, RFC 3339.
    pub expires_at: String,
}

/// `GET /v1/nodes`: the live leases, by node id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeList {
    /// Live leases, ordered by node id.
    pub nodes: Vec<NodeLease>,
    /// How many (the count node admission uses).
    pub nodes_in_use: u64,
    /// Nodes licensed, before overage.
    pub max_nodes: u32,
    /// Node limit including overage.
    pub node_ceiling: u64,
}

/// `DELETE /v1/nodes/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReleaseAnswer {
    /// The node.
    pub node_id: String,
    /// False when it held no lease (releasing twice is fine).
    pub removed: bool,
    /// Live leases after this.
    pub nodes_in_use: u64,
}

/// `POST /v1/usage` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UsageRequest {
    /// Quota name from the license.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
    pub metric: String,
    /// How much to spend (gauges: the level now).
    pub amount: u64,
    /// One per increment, reused on retry: a repeat is answered, not counted.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 200))]
    pub idempotency_key: String,
}

/// `POST /v1/usage` when counted (or replayed for a repeated key). A gauge
/// reported above its limit is recorded too: then `allowed` is false and
/// `over_limit` says so, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageAnswer {
    /// True when the usage is within the license (false: a gauge over its limit).
    pub allowed: bool,
    /// The quota.
    pub metric: String,
    /// The amount of this request.
    pub amount: u64,
    /// Used in the period after this request.
    pub used: u64,
    /// The limit (null when the license has none for it).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub limit: Option<u64>,
    /// The period bucket counted in (`2026-12-05`, `2026-12`, `total`), or
    /// `gauge` for a level.
    pub period: String,
    /// The key the caller sent.
    pub idempotency_key: String,
    /// A gauge above its limit: `gauge_over_limit` and what to do (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub over_limit: Option<ErrorDetail>,
}

/// `POST /v1/usage` refused (403): over the limit, not usable, or no such quota.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageRefused {
    /// The decision.
    #[serde(flatten)]
    pub refused: Refused,
    /// The quota asked for.
    pub metric: String,
    /// Used in the period now.
    pub used: u64,
    /// The limit (null when the license has no such quota).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub limit: Option<u64>,
}

/// `POST /v1/upgrade-requests` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpgradeBody {
    /// A tier from the catalog.
    #[cfg_attr(feature = "openapi", schema(max_length = 64))]
    pub requested_tier: String,
    /// Free text for the vendor.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 4096))]
    pub message: String,
}

/// `POST /v1/upgrade-requests` answer (202: queued for the vendor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpgradeQueued {
    /// Always true.
    pub queued: bool,
    /// Its number in the local queue.
    pub id: i64,
    /// The tier asked for.
    pub requested_tier: String,
    /// The message.
    pub message: String,
    /// When it was filed, RFC 3339.
    pub time: String,
    /// The tier in force (null without a license).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub current_tier: Option<String>,
    /// This cluster.
    pub cluster_id: String,
}

/// One entry of `GET /v1/upgrade-requests`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueuedUpgrade {
    /// Its number in the local queue.
    pub id: i64,
    /// The tier asked for.
    pub requested_tier: String,
    /// The message.
    pub message: String,
    /// When it was filed, RFC 3339.
    pub time: String,
    /// True once the vendor acknowledged it: a receipt for a usage report
    /// that carried it was imported (`kaching-verifier receipt import`).
    pub reported: bool,
}

/// `GET /v1/upgrade-requests`, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpgradeList {
    /// Everything queued.
    pub upgrade_requests: Vec<QueuedUpgrade>,
}

/// The `reload` event of `GET /v1/events`: what is in force changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReloadEvent {
    /// The license now in force (null: none).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub license_id: Option<String>,
    /// The revocation list version now in force.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub revocation_version: Option<u64>,
    /// `relay` when a list came from the relay; absent for files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}
