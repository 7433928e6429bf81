//! Upgrade suggestions: the nearest tier that lifts a limit being approached,
//! what it adds, and how pressing it is.

use super::verdict::{UpgradeSuggestion, Urgency};
use crate::license::License;
use crate::tiers::Tier;

/// A suggestion to move from the license's tier to `next`, for `reason`, at
/// `ratio` of the limit.
pub(super) fn suggest(
    l: &License,
    next: &Tier,
    reason: String,
    roi_estimate: Option<String>,
    ratio: f64,
) -> UpgradeSuggestion {
    UpgradeSuggestion {
        reason,
        current_tier: l.tier.clone(),
        suggested_tier: next.name.clone(),
        benefits: benefits(l, next),
        roi_estimate,
        urgency: urgency(ratio),
    }
}

fn urgency(ratio: f64) -> Urgency {
    if ratio >= 1.0 {
        Urgency::High
    } else if ratio >= 0.9 {
        Urgency::Medium
    } else {
        Urgency::Low
    }
}

fn benefits(l: &License, next: &Tier) -> Vec<String> {
    let mut out: Vec<String> = next
        .features
        .iter()
        .filter(|f| !l.has_feature(f))
        .map(|f| format!("feature {f}"))
        .collect();
    if next.max_nodes > l.limits.max_nodes {
        out.push(format!(
            "up to {} nodes (now {})",
            next.max_nodes, l.limits.max_nodes
        ));
    }
    for (name, nq) in &next.quotas {
        if let Some(q) = l.quotas.get(name).filter(|q| nq.limit > q.limit) {
            out.push(format!("{name} limit {} (now {})", nq.limit, q.limit));
        }
    }
    out
}
