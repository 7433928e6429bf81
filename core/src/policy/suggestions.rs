//! Upgrade suggestions: the nearest tier that lifts a limit being approached,
//! what it adds, and how pressing it is.

use super::verdict::{Decision, State, UpgradeSuggestion, Urgency, Verdict};
use crate::license::License;
use crate::tiers::{closest, Tier, TierCatalog};
use crate::time::{rfc3339, Timestamp, DAY};

/// May a cluster on `current` (none: unlicensed) ask for `requested`? Only
/// a tier in the catalog, and only one above the current tier: asking for
/// the tier in force or a lower one is refused with the reason, so sales
/// ops never receive a request nobody meant.
pub fn check_upgrade_request(
    catalog: &TierCatalog,
    current: Option<&str>,
    requested: &str,
) -> Result<(), Decision> {
    let names = catalog.names();
    let Some(wanted) = catalog.rank(requested) else {
        let hint = closest(requested, names.iter().copied())
            .map(|c| format!(" — did you mean {c:?}?"))
            .unwrap_or_default();
        return Err(Decision::deny(
            "unknown_tier",
            format!(
                "no tier named {requested:?}{hint} Known tiers: {}",
                names.join(", ")
            ),
        ));
    };
    match current.and_then(|c| catalog.rank(c).map(|r| (c, r))) {
        Some((c, have)) if wanted == have => Err(Decision::deny(
            "not_an_upgrade",
            format!("this cluster is already on the {c} tier: ask for a higher one ({})", above(catalog, c)),
        )),
        Some((c, have)) if wanted < have => Err(Decision::deny(
            "not_an_upgrade",
            format!(
                "{requested} is below the {c} tier in force: to move down, talk to your vendor at renewal; \
                 an upgrade request asks for a higher tier ({})",
                above(catalog, c)
            ),
        )),
        _ => Ok(()),
    }
}

fn above(catalog: &TierCatalog, tier: &str) -> String {
    let names: Vec<&str> = catalog
        .above(tier)
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    if names.is_empty() {
        "none: this is the highest tier".into()
    } else {
        names.join(", ")
    }
}

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

/// The entry tier's license (the catalog's lowest: an evaluation) nearing its
/// end, or in grace: the tier above, so the customer keeps working. A paid
/// tier's renewal is the vendor's conversation, not an upgrade.
pub(super) fn add_entry_tier_upsell(
    v: &mut Verdict,
    l: &License,
    catalog: &TierCatalog,
    t: Timestamp,
) {
    if catalog.rank(&l.tier) != Some(0) {
        return;
    }
    let Some(next) = catalog.above(&l.tier).first() else {
        return;
    };
    let display = catalog
        .get(&l.tier)
        .map_or(l.tier.as_str(), |t| t.display_name.as_str());
    let (reason, urgency) = match v.state {
        State::Expiring => {
            let days = l.expires_at.saturating_sub(t).div_ceil(DAY);
            (
                format!(
                    "the {display} license ends at {} ({days} day(s) left)",
                    rfc3339(l.expires_at)
                ),
                if days <= 7 {
                    Urgency::High
                } else {
                    Urgency::Medium
                },
            )
        }
        State::Grace => (
            format!(
                "the {display} license ended at {}; its grace ends at {}",
                rfc3339(l.expires_at),
                rfc3339(l.expires_at.saturating_add(l.grace))
            ),
            Urgency::High,
        ),
        _ => return,
    };
    v.upgrade_suggestions.push(UpgradeSuggestion {
        reason,
        current_tier: l.tier.clone(),
        suggested_tier: next.name.clone(),
        benefits: benefits(l, next),
        roi_estimate: None,
        urgency,
    });
}

/// The suggestions as WHOOSH shows them: none while the license is not
/// usable (its reason says what to do instead), one card per tier (reasons
/// joined, the highest urgency, benefits once), most pressing first.
pub(super) fn finish(v: &mut Verdict) {
    if !v.is_usable() {
        v.upgrade_suggestions.clear();
        return;
    }
    let mut merged: Vec<UpgradeSuggestion> = Vec::with_capacity(v.upgrade_suggestions.len());
    for s in v.upgrade_suggestions.drain(..) {
        match merged
            .iter_mut()
            .find(|m| m.suggested_tier == s.suggested_tier)
        {
            Some(m) => {
                m.reason.push_str("; ");
                m.reason.push_str(&s.reason);
                m.urgency = m.urgency.max(s.urgency);
                if m.roi_estimate.is_none() {
                    m.roi_estimate = s.roi_estimate;
                }
            }
            None => merged.push(s),
        }
    }
    // Stable: equal urgency keeps the order the limits were checked in.
    merged.sort_by_key(|s| std::cmp::Reverse(s.urgency));
    v.upgrade_suggestions = merged;
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

#[cfg(test)]
mod upgrade_request_tests {
    use super::*;

    #[test]
    fn only_a_known_higher_tier_may_be_requested() {
        let c = TierCatalog::builtin();
        assert!(check_upgrade_request(&c, Some("standard"), "enterprise").is_ok());
        assert!(check_upgrade_request(&c, None, "evaluation").is_ok());
        let same = check_upgrade_request(&c, Some("standard"), "standard").unwrap_err();
        assert_eq!(same.code, "not_an_upgrade");
        assert!(
            same.reason.contains("already on the standard tier"),
            "{}",
            same.reason
        );
        let lower = check_upgrade_request(&c, Some("enterprise"), "evaluation").unwrap_err();
        assert_eq!(lower.code, "not_an_upgrade");
        assert!(
            lower.reason.contains("none: this is the highest tier"),
            "{}",
            lower.reason
        );
        let typo = check_upgrade_request(&c, Some("standard"), "enterprize").unwrap_err();
        assert_eq!(typo.code, "unknown_tier");
        assert!(
            typo.reason.contains("did you mean \"enterprise\"?"),
            "{}",
            typo.reason
        );
    }
}
