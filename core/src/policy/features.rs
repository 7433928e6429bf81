//! Features: every feature the catalog or the license names, allowed when the
//! license includes it, otherwise denied with the tier that has it.

use std::collections::BTreeSet;

use super::verdict::{Decision, State, Verdict};
use crate::license::License;
use crate::tiers::{Tier, TierCatalog};

pub(super) fn decide_features(v: &mut Verdict, lic: Option<&License>, catalog: &TierCatalog) {
    // Every feature the catalog or the license names, once, with what decides
    // it: the license includes it, or else the lowest tier that names it
    // (tiers are in upgrade order, so the first tier naming it is the one
    // `TierCatalog::lowest_with_feature` finds). Names mostly differ in
    // length, so this scan compares far less than map lookups would; the map
    // keeps them sorted.
    let licensed = lic.map(|l| &l.features);
    let catalog_count: usize = catalog.tiers.iter().map(|t| t.features.len()).sum();
    let mut names: Vec<(&str, Option<&Tier>)> =
        Vec::with_capacity(catalog_count + licensed.map_or(0, BTreeSet::len));
    names.extend(licensed.into_iter().flatten().map(|f| (f.as_str(), None)));
    for tier in &catalog.tiers {
        for f in &tier.features {
            if !names.iter().any(|(seen, _)| seen == f) {
                names.push((f, Some(tier)));
            }
        }
    }
    let l = match lic {
        Some(l) if v.state.is_usable() => l,
        // One decision for every feature when the product may not run.
        _ => {
            let code = if v.state.is_usable() {
                "license_unlicensed".to_string()
            } else {
                ["license_", v.state.as_str()].concat()
            };
            let shared = Decision {
                allowed: false,
                code,
                reason: v.reason.clone(),
            };
            for (name, _) in names {
                v.features.insert(name.to_string(), shared.clone());
            }
            // Past expiry and grace, the vendor's basic level keeps working.
            if let Some(l) = lic.filter(|l| v.state == State::Expired && !l.degrade.is_empty()) {
                for f in &l.degrade {
                    v.features.insert(
                        f.clone(),
                        Decision::allow(format!(
                            "{}; {f} keeps working at the basic level this license names (degrade)",
                            v.reason
                        )),
                    );
                }
                v.degraded = true;
            }
            return;
        }
    };
    // The license's own features come first in `names`, all with the same
    // decision: copies for all but the last, which takes the original.
    let (own, others) = names.split_at(l.features.len());
    if let Some(((last, _), rest)) = own.split_last() {
        let included = Decision::allow(["included in this ", &l.tier, " license"].concat());
        for (name, _) in rest {
            v.features.insert((*name).to_string(), included.clone());
        }
        v.features.insert((*last).to_string(), included);
    }
    let license_rank = catalog.rank(&l.tier);
    for (name, lowest) in others {
        if let Some(lowest) = lowest {
            let d = not_in_tier(l, catalog, name, lowest, license_rank);
            v.features.insert((*name).to_string(), d);
        }
    }
    // A lapsed duty to report turns off the features the license names.
    if let Some(p) = l
        .report
        .as_ref()
        .filter(|_| v.state == State::ReportOverdue)
    {
        for f in &p.deny {
            v.features.insert(
                f.clone(),
                Decision::deny("report_overdue", v.reason.clone()),
            );
        }
    }
}

/// Denial of a feature the license does not include, naming `lowest`, the
/// lowest tier that has it, when that is an upgrade from the license's tier.
fn not_in_tier(
    l: &License,
    catalog: &TierCatalog,
    name: &str,
    lowest: &Tier,
    license_rank: Option<usize>,
) -> Decision {
    // One allocation per denial, no formatting machinery: every
    // verification decides each catalog feature the license lacks.
    let tier = l.tier.as_str();
    let reason = if catalog.rank(&lowest.name) > license_rank {
        [
            "feature ",
            name,
            " is not included in this ",
            tier,
            " license; it is included from the ",
            &lowest.name,
            " tier up — ask your vendor to upgrade",
        ]
        .concat()
    } else {
        [
            "feature ",
            name,
            " is not included in this ",
            tier,
            " license; ask your vendor to add it to your license",
        ]
        .concat()
    };
    Decision::deny("not_in_tier", reason)
}

impl Verdict {
    /// The decision for one feature; unknown names are denied.
    pub fn feature(&self, name: &str) -> Decision {
        match self.features.get(name) {
            Some(d) => d.clone(),
            None if !self.is_usable() => self.unusable(),
            None => {
                // Names are exact (`analytics`, not `Analytics`): point at the near one.
                let hint = crate::tiers::closest(name, self.features.keys().map(String::as_str))
                    .map(|c| format!(" — did you mean {c}?"))
                    .unwrap_or_default();
                Decision::deny(
                    "unknown_feature",
                    format!(
                        "feature {name} is not known to this license or the tier catalog{hint}"
                    ),
                )
            }
        }
    }
}
