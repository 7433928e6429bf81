//! Nodes: warning as the node limit nears, and admitting a node's lease up
//! to the ceiling (`max_nodes` plus overage, [`License::node_ceiling`]).

use super::inputs::Snapshot;
use super::quotas::warning_ratio;
use super::suggestions;
use super::verdict::{Decision, Verdict};
use crate::license::License;
use crate::tiers::TierCatalog;

pub(super) fn add_node_pressure(
    v: &mut Verdict,
    l: &License,
    snapshot: &Snapshot,
    catalog: &TierCatalog,
) {
    let max = u64::from(l.limits.max_nodes);
    if max == 0 {
        return;
    }
    let Some(ratio) = warning_ratio(catalog, "nodes", snapshot.live_nodes, max) else {
        return;
    };
    let what = format!("{} of {} licensed nodes in use", snapshot.live_nodes, max);
    v.warnings.push(what.clone());
    if let Some(next) = catalog
        .above(&l.tier)
        .iter()
        .find(|t| t.max_nodes > l.limits.max_nodes)
    {
        v.upgrade_suggestions
            .push(suggestions::suggest(l, next, what, None, ratio));
    }
}

impl Verdict {
    /// May a node take (or renew) a lease? `live` counts live leases now,
    /// `renewing` is true when this node already holds one.
    pub fn admit_node(&self, live: u64, renewing: bool) -> Decision {
        // A degraded license keeps its nodes: the basic level still runs.
        if !self.is_usable() && !self.degraded {
            return self.unusable();
        }
        if renewing || live < self.node_ceiling {
            return Decision::allow(format!(
                "{} of {} nodes in use",
                live + u64::from(!renewing),
                self.node_ceiling
            ));
        }
        let extra = self
            .node_ceiling
            .saturating_sub(self.limits.max_nodes.into());
        Decision::deny(
            "node_limit",
            format!(
                "node limit reached: {live} nodes hold leases and the license allows {} ({} + {extra} overage); remove a node or upgrade",
                self.node_ceiling, self.limits.max_nodes
            ),
        )
    }
}
