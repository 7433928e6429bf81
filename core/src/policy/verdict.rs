//! What the policy answers: the [`Verdict`] with its [`State`], a
//! [`Decision`] per feature, quota usage and upgrade suggestions. Types only,
//! and the questions asked of a verdict that need no other part of policy.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::id::LicenseId;
use crate::license::{Limits, Period};
use crate::time::Timestamp;

/// The license's state, in precedence order (first wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// No license is installed.
    Unlicensed,
    /// The license cannot be trusted here (signature, key, audience, cluster, format).
    Invalid,
    /// The vendor revoked the license.
    Revoked,
    /// The vendor suspended the license.
    Suspended,
    /// The wall clock is behind the trusted-time mark by more than the tolerance.
    ClockTampered,
    /// Before the license's `nbf`.
    NotYetValid,
    /// Past `exp + grace`.
    Expired,
    /// Past `exp`, within grace: everything works, with loud warnings.
    Grace,
    /// A connected license that has not reached a relay within its offline grace.
    Overdue,
    /// An air-gapped license whose duty to report (`report`) has lapsed: no
    /// usage report acknowledged in time. Usable, except the features the
    /// license names in `report.deny`.
    ReportOverdue,
    /// Within the expiring window before `exp`.
    Expiring,
    /// Valid.
    Active,
}

impl State {
    /// The snake_case name used in JSON and exit-code tables.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Unlicensed => "unlicensed",
            State::Invalid => "invalid",
            State::Revoked => "revoked",
            State::Suspended => "suspended",
            State::ClockTampered => "clock_tampered",
            State::NotYetValid => "not_yet_valid",
            State::Expired => "expired",
            State::Grace => "grace",
            State::Overdue => "overdue",
            State::ReportOverdue => "report_overdue",
            State::Expiring => "expiring",
            State::Active => "active",
        }
    }

    /// True when the licensed product may run (active, expiring, grace,
    /// report overdue).
    pub fn is_usable(self) -> bool {
        matches!(
            self,
            State::Active | State::Expiring | State::Grace | State::ReportOverdue
        )
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Allowed or denied, and why, in words a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Decision {
    /// Whether the action may go ahead.
    pub allowed: bool,
    /// Machine-readable reason code (`ok`, `not_in_tier`, `license_suspended`, …).
    pub code: String,
    /// Explanation with the next step.
    pub reason: String,
}

impl Decision {
    pub(super) fn allow(reason: impl Into<String>) -> Self {
        Decision {
            allowed: true,
            code: "ok".into(),
            reason: reason.into(),
        }
    }

    pub(super) fn deny(code: &str, reason: impl Into<String>) -> Self {
        Decision {
            allowed: false,
            code: code.into(),
            reason: reason.into(),
        }
    }
}

/// Usage of one quota in the current period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuotaUsage {
    /// Used so far (gauges: current level).
    pub used: u64,
    /// The limit.
    pub limit: u64,
    /// How usage is bucketed.
    pub period: Period,
    /// `used / limit` as a percentage (0 when the limit is 0 and nothing is used).
    pub percent: f64,
}

/// How pressing an upgrade suggestion is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Urgency {
    /// At or past the threshold.
    Low,
    /// At 90 % or more.
    Medium,
    /// At the limit.
    High,
}

/// An upgrade suggestion in the shape WHOOSH expects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpgradeSuggestion {
    /// Why, e.g. "search_requests at 85% of the daily limit".
    pub reason: String,
    /// The license's tier.
    pub current_tier: String,
    /// The nearest tier that lifts the limit.
    pub suggested_tier: String,
    /// What the suggested tier adds.
    pub benefits: Vec<String>,
    /// A rough gain, when one can be stated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roi_estimate: Option<String>,
    /// How pressing it is.
    pub urgency: Urgency,
}

/// The outcome of [`evaluate`](super::evaluate).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// The state.
    pub state: State,
    /// Why the state is what it is, with the next step.
    pub reason: String,
    /// The license id, when a verified license was given.
    pub license_id: Option<LicenseId>,
    /// Customer display name.
    pub customer: Option<String>,
    /// Tier name.
    pub tier: Option<String>,
    /// `exp`.
    pub expires_at: Option<Timestamp>,
    /// `exp + grace`.
    pub grace_ends_at: Option<Timestamp>,
    /// Limits from the license.
    pub limits: Limits,
    /// Nodes allowed including overage.
    pub node_ceiling: u64,
    /// Nodes holding a live lease.
    pub nodes_in_use: u64,
    /// Every feature the catalog or license names, decided.
    pub features: BTreeMap<String, Decision>,
    /// Quotas and their use in the current period.
    pub quotas: BTreeMap<String, QuotaUsage>,
    /// Things a person should know now.
    pub warnings: Vec<String>,
    /// Tier upgrades that would lift limits being approached.
    pub upgrade_suggestions: Vec<UpgradeSuggestion>,
    /// The trusted-time mark to persist (never lower than the one given).
    pub trusted_time: Timestamp,
    /// The wall-clock time the verdict was computed for.
    pub evaluated_at: Timestamp,
    /// Expired, with the license's `degrade` features still allowed (and
    /// node leases still admitted): the vendor's basic level.
    #[serde(default)]
    pub degraded: bool,
}

impl Verdict {
    /// True when the licensed product may run.
    pub fn is_usable(&self) -> bool {
        self.state.is_usable()
    }

    /// The one denial of everything while the product may not run: the
    /// state's code and the reason with its next step.
    pub(super) fn unusable(&self) -> Decision {
        Decision::deny(
            &["license_", self.state.as_str()].concat(),
            self.reason.clone(),
        )
    }
}
