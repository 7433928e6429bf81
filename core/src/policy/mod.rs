//! The policy engine: one pure function from (license, revocation list, local
//! state, now) to a [`Verdict`]. The daemons only gather inputs and act on it.
//!
//! States, highest precedence first: unlicensed, invalid, revoked, suspended,
//! clock_tampered, not_yet_valid, expired, grace, overdue, expiring, active.
//! Time boundaries (t is the effective time, see [`evaluate`]):
//! - expiring: `exp − expiring_window ≤ t < exp`
//! - grace:    `exp ≤ t < exp + grace`
//! - expired:  `t ≥ exp + grace`
//! - not_yet_valid: `t + nbf_skew < nbf`
//!
//! One idea a file, each standing only on those listed before it: `inputs`
//! (settings, snapshot) and `verdict` (what the answer holds); `fit`, whether
//! a verified license belongs here at all; `usable`, whether its dates allow
//! it to be used at a time at all; `suggestions`, the upgrades that
//! would lift a limit; `features`, `states`, `quotas` and `nodes`, each
//! deciding its part; and here, [`evaluate`], which puts them together.

use std::collections::BTreeMap;

use crate::license::License;
use crate::revocation::RevocationList;
use crate::tiers::TierCatalog;
use crate::time::Timestamp;

mod change;
mod explain;
mod features;
mod fit;
mod inputs;
mod nodes;
mod quotas;
mod states;
mod suggestions;
mod usable;
mod verdict;

pub use change::{license_change, Changed, LicenseChange};
pub use explain::{Explanation, MarkFrom, Step};
pub use fit::{fit, Misfit};
pub use inputs::{LicenseInput, Settings, Snapshot};
pub use quotas::{reaches_threshold, usage_ratio, warning_ratio, Spent};
pub use suggestions::check_upgrade_request;
pub use usable::{usable_at, Unusable};
pub use verdict::{Decision, QuotaUsage, State, UpgradeSuggestion, Urgency, Verdict};

/// Computes the verdict. Pure: every input is an argument.
///
/// The effective time `t` is `max(now, mark)` where the mark is the highest of
/// the snapshot's trusted time, the license's `iat` and the list's `iat`: a
/// clock wound back (within tolerance) never buys extra validity.
pub fn evaluate(
    license: LicenseInput<'_>,
    revocations: Option<&RevocationList>,
    snapshot: &Snapshot,
    catalog: &TierCatalog,
    settings: &Settings,
    now: Timestamp,
) -> Verdict {
    evaluate_traced(
        license,
        revocations,
        snapshot,
        catalog,
        settings,
        now,
        &mut None,
    )
    .0
}

/// [`evaluate`], with the account of how it decided: every state rule in
/// precedence order up to the one that decided, and which time was used.
pub fn explain(
    license: LicenseInput<'_>,
    revocations: Option<&RevocationList>,
    snapshot: &Snapshot,
    catalog: &TierCatalog,
    settings: &Settings,
    now: Timestamp,
) -> Explanation {
    let mut steps = Vec::with_capacity(10);
    let (verdict, mark, mark_from) = evaluate_traced(
        license,
        revocations,
        snapshot,
        catalog,
        settings,
        now,
        &mut Some(&mut steps),
    );
    Explanation {
        now,
        mark,
        mark_from,
        effective_time: now.max(mark),
        steps,
        verdict,
    }
}

fn evaluate_traced(
    license: LicenseInput<'_>,
    revocations: Option<&RevocationList>,
    snapshot: &Snapshot,
    catalog: &TierCatalog,
    settings: &Settings,
    now: Timestamp,
    trace: &mut states::Trace<'_>,
) -> (Verdict, Timestamp, MarkFrom) {
    let lic = match license {
        LicenseInput::Verified(l) => Some(l),
        _ => None,
    };
    let (mark, mark_from) = [
        Some((snapshot.trusted_time, MarkFrom::TrustedTime)),
        lic.map(|l| (l.issued_at, MarkFrom::LicenseIssued)),
        revocations.map(|r| (r.issued_at, MarkFrom::ListIssued)),
    ]
    .into_iter()
    .flatten()
    // The first of equal times wins: the recorded mark before the documents.
    .fold((0, MarkFrom::TrustedTime), |best, c| {
        if c.0 > best.0 {
            c
        } else {
            best
        }
    });
    let t = now.max(mark);
    let mut v = Verdict {
        state: State::Active,
        reason: String::new(),
        license_id: lic.map(|l| l.id),
        customer: lic.map(|l| l.customer.clone()),
        tier: lic.map(|l| l.tier.clone()),
        expires_at: lic.map(|l| l.expires_at),
        grace_ends_at: lic.map(|l| l.expires_at.saturating_add(l.grace)),
        limits: lic.map(|l| l.limits).unwrap_or_default(),
        node_ceiling: lic.map(License::node_ceiling).unwrap_or(0),
        nodes_in_use: snapshot.live_nodes,
        features: BTreeMap::new(),
        quotas: BTreeMap::new(),
        warnings: Vec::new(),
        upgrade_suggestions: Vec::new(),
        // The mark follows the wall clock forward, never back.
        trusted_time: mark.max(now),
        evaluated_at: now,
        degraded: false,
    };
    let (state, reason) = states::decide_state(
        license,
        revocations,
        snapshot,
        settings,
        now,
        mark,
        t,
        trace,
    );
    v.state = state;
    v.reason = reason;
    if let Some(l) = lic {
        states::add_time_warnings(&mut v, l, revocations, snapshot, t);
        quotas::add_quotas(&mut v, l, snapshot, catalog);
        nodes::add_node_pressure(&mut v, l, snapshot, catalog);
        suggestions::add_entry_tier_upsell(&mut v, l, catalog, t);
    }
    suggestions::finish(&mut v);
    features::decide_features(&mut v, lic, catalog);
    (v, mark, mark_from)
}
