//! Quotas: how much of each metric the current period has used, when that is
//! close enough to the limit to warn (the one threshold rule the verifier and
//! licensegen share), and whether a spend fits.

use super::inputs::Snapshot;
use super::suggestions;
use super::verdict::{Decision, QuotaUsage, Verdict};
use crate::license::{License, Period};
use crate::tiers::TierCatalog;

/// `used` as a share of `limit` (1.0 = at the limit). A zero limit is empty
/// while nothing is used and full as soon as anything is.
pub fn usage_ratio(used: u64, limit: u64) -> f64 {
    if limit == 0 {
        if used == 0 {
            0.0
        } else {
            1.0
        }
    } else {
        used as f64 / limit as f64
    }
}

/// True when a share of a limit has reached a warning threshold (a share in
/// (0, 1] from the tier catalog), allowing for floating-point rounding.
pub fn reaches_threshold(ratio: f64, threshold: f64) -> bool {
    ratio + f64::EPSILON >= threshold
}

/// The share of `limit` that `used` takes when it is at or past the catalog's
/// warning threshold for `metric` (`nodes` for the node limit), else `None`.
/// This is where the verifier warns and suggests an upgrade, and where
/// licensegen flags an imported usage report.
pub fn warning_ratio(catalog: &TierCatalog, metric: &str, used: u64, limit: u64) -> Option<f64> {
    let ratio = usage_ratio(used, limit);
    reaches_threshold(ratio, catalog.threshold(metric)).then_some(ratio)
}

pub(super) fn add_quotas(v: &mut Verdict, l: &License, snapshot: &Snapshot, catalog: &TierCatalog) {
    for (name, q) in &l.quotas {
        let used = snapshot.quota_usage.get(name).copied().unwrap_or(0);
        let ratio = usage_ratio(used, q.limit);
        v.quotas.insert(
            name.clone(),
            QuotaUsage {
                used,
                limit: q.limit,
                period: q.period,
                percent: (ratio * 1000.0).round() / 10.0,
            },
        );
        if !reaches_threshold(ratio, catalog.threshold(name)) {
            continue;
        }
        let period = match q.period {
            Period::Day => "daily ",
            Period::Month => "monthly ",
            Period::Total => "total ",
            Period::Gauge => "",
        };
        let what = format!(
            "{name} at {:.0}% of the {period}limit ({used} of {})",
            ratio * 100.0,
            q.limit
        );
        v.warnings.push(what.clone());
        let next = catalog
            .above(&l.tier)
            .iter()
            .find(|t| t.quotas.get(name).is_some_and(|nq| nq.limit > q.limit));
        if let Some(next) = next {
            let new_limit = next.quotas.get(name).map(|nq| nq.limit).unwrap_or(0);
            let roi = (q.limit > 0).then(|| {
                format!(
                    "{}× the {name} limit ({} → {new_limit})",
                    new_limit / q.limit,
                    q.limit
                )
            });
            v.upgrade_suggestions
                .push(suggestions::suggest(l, next, what, roi, ratio));
        }
    }
}

/// A spend the license allows, or a gauge level recorded above its limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spent {
    /// Usage after the spend (for a gauge: the level reported).
    pub used: u64,
    /// Set when a gauge was reported above its limit: the level is a fact
    /// and is recorded (refusing it would lose the real level), but the
    /// caller learns it is over, with the next step.
    pub over_limit: Option<Decision>,
}

impl Verdict {
    /// May `amount` of `metric` be spent when `used` is already spent this
    /// period? For gauges `amount` is the new level, always taken; a level
    /// above the limit comes back flagged in [`Spent::over_limit`].
    pub fn spend(&self, metric: &str, used: u64, amount: u64) -> Result<Spent, Decision> {
        if !self.is_usable() {
            return Err(self.unusable());
        }
        let Some(q) = self.quotas.get(metric) else {
            return Err(Decision::deny(
                "unknown_quota",
                format!("this license has no quota named {metric}"),
            ));
        };
        if q.period == Period::Gauge {
            let over_limit = (amount > q.limit).then(|| {
                Decision::deny(
                    "gauge_over_limit",
                    format!(
                        "{metric} is at {amount}, above the licensed {}: the level is recorded; reduce it or upgrade",
                        q.limit
                    ),
                )
            });
            return Ok(Spent {
                used: amount,
                over_limit,
            });
        }
        let new = used.saturating_add(amount);
        if new > q.limit {
            return Err(Decision::deny(
                "quota_exceeded",
                format!(
                    "{metric} quota exceeded: {new} would pass the limit of {} for this {}; wait for the next period or upgrade",
                    q.limit, q.period
                ),
            ));
        }
        Ok(Spent {
            used: new,
            over_limit: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_of_a_zero_limit_is_empty_until_used() {
        assert_eq!(usage_ratio(0, 0), 0.0);
        assert_eq!(usage_ratio(1, 0), 1.0);
        assert_eq!(usage_ratio(41_000, 50_000), 0.82);
    }

    #[test]
    fn threshold_is_reached_at_the_exact_share_despite_rounding() {
        // 0.1 + 0.7 is 0.7999999999999999 in binary floating point.
        assert!(reaches_threshold(0.1 + 0.7, 0.8));
        assert!(reaches_threshold(0.8, 0.8));
        assert!(!reaches_threshold(0.79, 0.8));
    }

    #[test]
    fn warning_ratio_uses_each_metrics_catalog_threshold() {
        let cat = TierCatalog::builtin();
        // search_requests warns at 80 %, api_calls at 85 %, nodes at 80 %.
        assert_eq!(warning_ratio(&cat, "search_requests", 80, 100), Some(0.8));
        assert_eq!(warning_ratio(&cat, "search_requests", 79, 100), None);
        assert_eq!(warning_ratio(&cat, "api_calls", 84, 100), None);
        assert_eq!(warning_ratio(&cat, "api_calls", 85, 100), Some(0.85));
        assert_eq!(warning_ratio(&cat, "nodes", 8, 10), Some(0.8));
        // A metric the catalog does not name takes the default (80 %).
        assert_eq!(warning_ratio(&cat, "gpu_hours", 9, 10), Some(0.9));
        assert_eq!(warning_ratio(&cat, "gpu_hours", 0, 0), None);
        assert_eq!(warning_ratio(&cat, "gpu_hours", 1, 0), Some(1.0));
    }
}
