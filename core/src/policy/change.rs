//! What changes when one license replaces another: features gained and
//! lost, limits and quotas raised and lowered, the expiry moved. Anything
//! lost or lowered makes the change a *downgrade*, which a verifier may hold
//! until an operator accepts it (`hold_downgrades`).

use serde::{Deserialize, Serialize};

use crate::license::License;
use crate::time::rfc3339;

/// One number that changed: a limit, a quota, the expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Changed {
    /// `max_nodes`, `max_cores`, `overage_percent`, `grace_days`, `expires_at`
    /// or `quota:<name>`.
    pub name: String,
    /// Before (null: none, or unlimited for `max_cores`).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub from: Option<String>,
    /// After (null: none, or unlimited for `max_cores`).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub to: Option<String>,
    /// True when the customer has less than before.
    pub lower: bool,
}

/// The difference between the license in force and the one replacing it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LicenseChange {
    /// The license replaced.
    pub from_license: String,
    /// The license replacing it.
    pub to_license: String,
    /// Tier before and after, when it changed.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub tier: Option<(String, String)>,
    /// Features the new license adds.
    pub features_gained: Vec<String>,
    /// Features the new license drops.
    pub features_lost: Vec<String>,
    /// Limits, quotas and the expiry that moved.
    pub changed: Vec<Changed>,
    /// Anything lost or lowered.
    pub downgrade: bool,
}

impl LicenseChange {
    /// One line for logs and status: "features lost: x; max_nodes 10 → 5".
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some((a, b)) = &self.tier {
            parts.push(format!("tier {a} → {b}"));
        }
        if !self.features_gained.is_empty() {
            parts.push(format!(
                "features gained: {}",
                self.features_gained.join(", ")
            ));
        }
        if !self.features_lost.is_empty() {
            parts.push(format!("features lost: {}", self.features_lost.join(", ")));
        }
        for c in &self.changed {
            let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".into());
            parts.push(format!("{} {} → {}", c.name, show(&c.from), show(&c.to)));
        }
        if parts.is_empty() {
            "same terms".into()
        } else {
            parts.join("; ")
        }
    }
}

/// What changes from `old` to `new`. Pure.
pub fn license_change(old: &License, new: &License) -> LicenseChange {
    let mut changed = Vec::new();
    let mut num = |name: &str, a: Option<u64>, b: Option<u64>, none_is_most: bool| {
        if a == b {
            return;
        }
        // For max_cores, none means unlimited: the most there is.
        let rank = |v: Option<u64>| match v {
            None if none_is_most => u64::MAX,
            None => 0,
            Some(n) => n,
        };
        changed.push(Changed {
            name: name.to_string(),
            from: a.map(|n| n.to_string()),
            to: b.map(|n| n.to_string()),
            lower: rank(b) < rank(a),
        });
    };
    num(
        "max_nodes",
        Some(old.limits.max_nodes.into()),
        Some(new.limits.max_nodes.into()),
        false,
    );
    num(
        "max_cores",
        old.limits.max_cores.map(u64::from),
        new.limits.max_cores.map(u64::from),
        true,
    );
    num(
        "overage_percent",
        Some(old.overage.into()),
        Some(new.overage.into()),
        false,
    );
    num(
        "grace_days",
        Some(old.grace / crate::time::DAY),
        Some(new.grace / crate::time::DAY),
        false,
    );
    let names: std::collections::BTreeSet<&String> =
        old.quotas.keys().chain(new.quotas.keys()).collect();
    for name in names {
        let (a, b) = (old.quotas.get(name), new.quotas.get(name));
        if a != b {
            let show = |q: Option<&crate::license::Quota>| {
                q.map(|q| format!("{}/{}", q.limit, q.period.as_str()))
            };
            changed.push(Changed {
                name: format!("quota:{name}"),
                from: show(a),
                to: show(b),
                // A quota that appears limits what was unlimited; one that
                // goes away lifts a limit.
                lower: match (a, b) {
                    (Some(a), Some(b)) => b.limit < a.limit,
                    (None, Some(_)) => true,
                    _ => false,
                },
            });
        }
    }
    if old.expires_at != new.expires_at {
        changed.push(Changed {
            name: "expires_at".into(),
            from: Some(rfc3339(old.expires_at)),
            to: Some(rfc3339(new.expires_at)),
            lower: new.expires_at < old.expires_at,
        });
    }
    let features_gained: Vec<String> = new.features.difference(&old.features).cloned().collect();
    let features_lost: Vec<String> = old.features.difference(&new.features).cloned().collect();
    let downgrade = !features_lost.is_empty() || changed.iter().any(|c| c.lower);
    LicenseChange {
        from_license: old.id.to_string(),
        to_license: new.id.to_string(),
        tier: (old.tier != new.tier).then(|| (old.tier.clone(), new.tier.clone())),
        features_gained,
        features_lost,
        changed,
        downgrade,
    }
}
