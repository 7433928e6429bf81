//! The `LicenseStatus` JSON that WHOOSH reads, shared by the verifier's
//! `GET /v1/status` and the relay's `GET /v1/licenses/{id}/status`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::policy::{UpgradeSuggestion, Verdict};
use crate::time::rfc3339;

/// Used and limit of one quota.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuotaJson {
    /// Used in the current period.
    pub used: u64,
    /// The limit.
    pub limit: u64,
}

/// WHOOSH's `LicenseStatus`, plus `state`, `reason`, grace and warnings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LicenseStatus {
    /// License id as a UUID, or null without a license.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub license_id: Option<String>,
    /// The state name (`active`, `suspended`, `expired`, …).
    #[cfg_attr(feature = "openapi", schema(value_type = crate::policy::State))]
    pub status: String,
    /// Same as `status`; kept for readers that expect `state`.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::policy::State))]
    pub state: String,
    /// Why, with the next step.
    pub reason: String,
    /// Customer display name.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub customer: Option<String>,
    /// Tier name.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub tier: Option<String>,
    /// Features usable now.
    pub features: Vec<String>,
    /// Node limit (before overage).
    pub max_nodes: u32,
    /// Node limit including overage.
    pub node_ceiling: u64,
    /// Nodes holding a lease.
    pub nodes_in_use: u64,
    /// `exp`, RFC 3339.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub expires_at: Option<String>,
    /// `exp + grace`, RFC 3339.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub grace_ends_at: Option<String>,
    /// Quota name → used and limit: the license's quotas plus every quota
    /// name of the tier catalog (limit 0 when the license has none of it),
    /// so a dashboard always has the same bars; never `{}` with a catalog.
    pub quotas: BTreeMap<String, QuotaJson>,
    /// Tier upgrades worth offering.
    pub upgrade_suggestions: Vec<UpgradeSuggestion>,
    /// Things a person should know now.
    pub warnings: Vec<String>,
}

impl LicenseStatus {
    /// The status of `verdict`, with every quota name of `catalog` present
    /// (limit 0 and used 0 where the license has no such quota, or no
    /// license is in force).
    pub fn of(verdict: &Verdict, catalog: &crate::tiers::TierCatalog) -> LicenseStatus {
        let mut s = LicenseStatus::from(verdict);
        // Runs on every verdict: allocate only for the names that are missing.
        for name in catalog.tiers.iter().flat_map(|t| t.quotas.keys()) {
            if !s.quotas.contains_key(name) {
                s.quotas
                    .insert(name.clone(), QuotaJson { used: 0, limit: 0 });
            }
        }
        s
    }
}

impl From<&Verdict> for LicenseStatus {
    fn from(v: &Verdict) -> Self {
        LicenseStatus {
            license_id: v.license_id.map(|id| id.to_string()),
            status: v.state.as_str().into(),
            state: v.state.as_str().into(),
            reason: v.reason.clone(),
            customer: v.customer.clone(),
            tier: v.tier.clone(),
            features: v
                .features
                .iter()
                .filter(|(_, d)| d.allowed)
                .map(|(name, _)| name.clone())
                .collect(),
            max_nodes: v.limits.max_nodes,
            node_ceiling: v.node_ceiling,
            nodes_in_use: v.nodes_in_use,
            expires_at: v.expires_at.map(rfc3339),
            grace_ends_at: v.grace_ends_at.map(rfc3339),
            quotas: v
                .quotas
                .iter()
                .map(|(k, q)| {
                    (
                        k.clone(),
                        QuotaJson {
                            used: q.used,
                            limit: q.limit,
                        },
                    )
                })
                .collect(),
            upgrade_suggestions: v.upgrade_suggestions.clone(),
            warnings: v.warnings.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{evaluate, LicenseInput, Settings, Snapshot};
    use crate::tiers::TierCatalog;

    #[test]
    fn unlicensed_status_lists_every_catalog_quota_at_zero() {
        let catalog = TierCatalog::builtin();
        let v = evaluate(
            LicenseInput::Missing,
            None,
            &Snapshot::default(),
            &catalog,
            &Settings::default(),
            1_790_000_000,
        );
        let s = LicenseStatus::of(&v, &catalog);
        assert!(!s.quotas.is_empty());
        assert_eq!(
            s.quotas.keys().cloned().collect::<Vec<_>>(),
            catalog.quota_names()
        );
        assert!(s.quotas.values().all(|q| q.used == 0 && q.limit == 0));
        // WHOOSH's nullable fields are null without a license, not "".
        assert_eq!((s.license_id, s.tier, s.expires_at), (None, None, None));
        assert_eq!(s.status, "unlicensed");
    }
}
