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

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::id::LicenseId;
use crate::license::{License, Limits, Period};
use crate::revocation::{RevocationList, RevocationStatus};
use crate::tiers::{Tier, TierCatalog};
use crate::time::{human_duration, rfc3339, Timestamp, DAY};

/// The license's state, in precedence order (first wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
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
            State::Expiring => "expiring",
            State::Active => "active",
        }
    }

    /// True when the licensed product may run (active, expiring, grace).
    pub fn is_usable(self) -> bool {
        matches!(self, State::Active | State::Expiring | State::Grace)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Deployment-side settings that are not part of the license.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The product this verifier guards; licenses for another audience are invalid.
    pub audience: String,
    /// This cluster's id; a license bound to another cluster is invalid.
    pub cluster_id: Option<String>,
    /// How far the wall clock may sit below the trusted-time mark (default 24 h).
    pub clock_tolerance: u64,
    /// How long before `exp` the state becomes `expiring` (default 30 days).
    pub expiring_window: u64,
    /// Clock skew allowed against `nbf` (default 5 minutes).
    pub nbf_skew: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            audience: "bzzz".into(),
            cluster_id: None,
            clock_tolerance: DAY,
            expiring_window: 30 * DAY,
            nbf_skew: 300,
        }
    }
}

/// What the verifier remembers between evaluations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// High-water mark of trusted time (persisted; only grows).
    pub trusted_time: Timestamp,
    /// Nodes currently holding a live lease.
    pub live_nodes: u64,
    /// Usage per metric in the current period bucket (gauges: the last level).
    pub quota_usage: BTreeMap<String, u64>,
    /// Last successful relay contact, for connected licenses.
    pub last_relay_contact: Option<Timestamp>,
}

/// The license as the caller could load it.
#[derive(Debug, Clone, Copy)]
pub enum LicenseInput<'a> {
    /// No license file was found.
    Missing,
    /// A license file was found but failed verification; the text says why.
    Rejected(&'a str),
    /// A license whose signature verified.
    Verified(&'a License),
}

/// Allowed or denied, and why, in words a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Whether the action may go ahead.
    pub allowed: bool,
    /// Machine-readable reason code (`ok`, `not_in_tier`, `license_suspended`, …).
    pub code: String,
    /// Explanation with the next step.
    pub reason: String,
}

impl Decision {
    fn allow(reason: impl Into<String>) -> Self {
        Decision {
            allowed: true,
            code: "ok".into(),
            reason: reason.into(),
        }
    }

    fn deny(code: &str, reason: impl Into<String>) -> Self {
        Decision {
            allowed: false,
            code: code.into(),
            reason: reason.into(),
        }
    }
}

/// Usage of one quota in the current period.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
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

/// The outcome of [`evaluate`].
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
}

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
    let lic = match license {
        LicenseInput::Verified(l) => Some(l),
        _ => None,
    };
    let mark = [
        Some(snapshot.trusted_time),
        lic.map(|l| l.issued_at),
        revocations.map(|r| r.issued_at),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(0);
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
    };
    let (state, reason) = decide_state(license, revocations, snapshot, settings, now, mark, t);
    v.state = state;
    v.reason = reason;
    if let Some(l) = lic {
        add_time_warnings(&mut v, l, revocations, t);
        add_quotas(&mut v, l, snapshot, catalog);
        add_node_pressure(&mut v, l, snapshot, catalog);
    }
    decide_features(&mut v, lic, catalog);
    v
}

fn decide_state(
    license: LicenseInput<'_>,
    revocations: Option<&RevocationList>,
    snapshot: &Snapshot,
    settings: &Settings,
    now: Timestamp,
    mark: Timestamp,
    t: Timestamp,
) -> (State, String) {
    let l = match license {
        LicenseInput::Missing => {
            return (
                State::Unlicensed,
                "no license installed: copy the license file from your vendor to the configured license path".into(),
            )
        }
        LicenseInput::Rejected(why) => {
            return (State::Invalid, format!("license file rejected: {why}"));
        }
        LicenseInput::Verified(l) => l,
    };
    if l.audience != settings.audience {
        return (
            State::Invalid,
            format!(
                "license is for product {:?}, this verifier guards {:?}: ask your vendor for a {} license",
                l.audience, settings.audience, settings.audience
            ),
        );
    }
    if let Some(bound) = &l.cluster {
        match &settings.cluster_id {
            Some(here) if here == bound => {}
            here => {
                return (
                    State::Invalid,
                    format!(
                        "license is bound to cluster {bound}, this is cluster {}: send an activation request from this cluster to your vendor",
                        here.as_deref().unwrap_or("(unknown)")
                    ),
                )
            }
        }
    }
    if let Some(e) = revocations.and_then(|r| r.entry(&l.id)) {
        let (state, verb) = match e.status {
            RevocationStatus::Revoked => (State::Revoked, "revoked"),
            RevocationStatus::Suspended => (State::Suspended, "suspended"),
        };
        return (
            state,
            format!(
                "license {verb} by the vendor on {}: {} — contact your vendor",
                rfc3339(e.time),
                e.reason
            ),
        );
    }
    if now.saturating_add(settings.clock_tolerance) < mark {
        return (
            State::ClockTampered,
            format!(
                "system clock reads {} but time {} was already seen: fix the clock (NTP); licensing resumes once it is correct",
                rfc3339(now),
                rfc3339(mark)
            ),
        );
    }
    if t.saturating_add(settings.nbf_skew) < l.not_before {
        return (
            State::NotYetValid,
            format!("license becomes valid on {}", rfc3339(l.not_before)),
        );
    }
    let grace_end = l.expires_at.saturating_add(l.grace);
    if t >= grace_end {
        return (
            State::Expired,
            format!(
                "license expired on {}: install a renewed license",
                rfc3339(l.expires_at)
            ),
        );
    }
    if t >= l.expires_at {
        return (
            State::Grace,
            format!(
                "license expired on {}; grace period ends {} ({} left): install a renewed license",
                rfc3339(l.expires_at),
                rfc3339(grace_end),
                human_duration(grace_end - t)
            ),
        );
    }
    if let Some((deadline, cause)) = overdue_since(l, revocations, snapshot) {
        if t >= deadline {
            let reason = match cause {
                Overdue::NoContact { since } => format!(
                    "no contact with the relay since {}: offline grace ended {}; restore the connection to the relay",
                    rfc3339(since),
                    rfc3339(deadline)
                ),
                Overdue::Frozen { version, expires } => format!(
                    "revocation list version {version} passed its update deadline {} and no newer list arrived: offline grace ended {}; check that the relay is reachable and serves current revocation lists",
                    rfc3339(expires),
                    rfc3339(deadline)
                ),
            };
            return (State::Overdue, reason);
        }
    }
    if t.saturating_add(settings.expiring_window) >= l.expires_at {
        return (
            State::Expiring,
            format!(
                "license expires on {} ({} left): renew it",
                rfc3339(l.expires_at),
                human_duration(l.expires_at - t)
            ),
        );
    }
    // The common answer, built without the formatting machinery: it is
    // computed on every verification (docs/benchmarks.md, `verify`).
    (
        State::Active,
        ["license valid until ", &rfc3339(l.expires_at)].concat(),
    )
}

/// Why a connected license is (or will be) overdue.
enum Overdue {
    /// No relay contact since `since`.
    NoContact { since: Timestamp },
    /// The revocation list passed its deadline (a freeze), whatever the contact.
    Frozen { version: u64, expires: Timestamp },
}

/// For a connected license, the moment it becomes overdue and why: offline
/// grace after the last relay contact (or issuance, before any contact), and —
/// when the revocation list is past its deadline (a freeze) — offline grace
/// after that deadline, whichever comes first. Air-gapped licenses never
/// become overdue.
fn overdue_since(
    l: &License,
    revocations: Option<&RevocationList>,
    snapshot: &Snapshot,
) -> Option<(Timestamp, Overdue)> {
    let hb = l.heartbeat?;
    let contact = snapshot
        .last_relay_contact
        .unwrap_or(l.issued_at)
        .max(l.issued_at);
    let by_contact = (
        contact.saturating_add(hb.offline_grace),
        Overdue::NoContact { since: contact },
    );
    let by_freeze = revocations.map(|r| {
        (
            r.expires.saturating_add(hb.offline_grace),
            Overdue::Frozen {
                version: r.version,
                expires: r.expires,
            },
        )
    });
    Some(match by_freeze {
        Some(f) if f.0 < by_contact.0 => f,
        _ => by_contact,
    })
}

fn add_time_warnings(
    v: &mut Verdict,
    l: &License,
    revocations: Option<&RevocationList>,
    t: Timestamp,
) {
    match v.state {
        State::Grace | State::Expiring => v.warnings.push(v.reason.clone()),
        _ => {}
    }
    if l.is_connected() {
        if let Some(r) = revocations.filter(|r| r.is_stale(t)) {
            v.warnings.push(format!(
                "revocation list version {} passed its update deadline {}: the relay may be unreachable or frozen",
                r.version,
                rfc3339(r.expires)
            ));
        }
    }
}

fn add_quotas(v: &mut Verdict, l: &License, snapshot: &Snapshot, catalog: &TierCatalog) {
    for (name, q) in &l.quotas {
        let used = snapshot.quota_usage.get(name).copied().unwrap_or(0);
        let ratio = if q.limit == 0 {
            if used == 0 {
                0.0
            } else {
                1.0
            }
        } else {
            used as f64 / q.limit as f64
        };
        v.quotas.insert(
            name.clone(),
            QuotaUsage {
                used,
                limit: q.limit,
                period: q.period,
                percent: (ratio * 1000.0).round() / 10.0,
            },
        );
        let threshold = catalog.threshold(name);
        if ratio + f64::EPSILON < threshold {
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
            v.upgrade_suggestions.push(UpgradeSuggestion {
                reason: what,
                current_tier: l.tier.clone(),
                suggested_tier: next.name.clone(),
                benefits: benefits(l, next),
                roi_estimate: roi,
                urgency: urgency(ratio),
            });
        }
    }
}

fn add_node_pressure(v: &mut Verdict, l: &License, snapshot: &Snapshot, catalog: &TierCatalog) {
    let max = u64::from(l.limits.max_nodes);
    if max == 0 {
        return;
    }
    let ratio = snapshot.live_nodes as f64 / max as f64;
    if ratio + f64::EPSILON < catalog.threshold("nodes") {
        return;
    }
    let what = format!("{} of {} licensed nodes in use", snapshot.live_nodes, max);
    v.warnings.push(what.clone());
    if let Some(next) = catalog
        .above(&l.tier)
        .iter()
        .find(|t| t.max_nodes > l.limits.max_nodes)
    {
        v.upgrade_suggestions.push(UpgradeSuggestion {
            reason: what,
            current_tier: l.tier.clone(),
            suggested_tier: next.name.clone(),
            benefits: benefits(l, next),
            roi_estimate: None,
            urgency: urgency(ratio),
        });
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

fn decide_features(v: &mut Verdict, lic: Option<&License>, catalog: &TierCatalog) {
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
    /// True when the licensed product may run.
    pub fn is_usable(&self) -> bool {
        self.state.is_usable()
    }

    /// The decision for one feature; unknown names are denied.
    pub fn feature(&self, name: &str) -> Decision {
        match self.features.get(name) {
            Some(d) => d.clone(),
            None if !self.is_usable() => Decision::deny(
                &format!("license_{}", self.state.as_str()),
                self.reason.clone(),
            ),
            None => Decision::deny(
                "unknown_feature",
                format!("feature {name} is not known to this license or the tier catalog"),
            ),
        }
    }

    /// May a node take (or renew) a lease? `live` counts live leases now,
    /// `renewing` is true when this node already holds one.
    pub fn admit_node(&self, live: u64, renewing: bool) -> Decision {
        if !self.is_usable() {
            return Decision::deny(
                &format!("license_{}", self.state.as_str()),
                self.reason.clone(),
            );
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

    /// May `amount` of `metric` be spent when `used` is already spent this
    /// period? For gauges `amount` is the new level. Returns the new usage.
    pub fn spend(&self, metric: &str, used: u64, amount: u64) -> Result<u64, Decision> {
        if !self.is_usable() {
            return Err(Decision::deny(
                &format!("license_{}", self.state.as_str()),
                self.reason.clone(),
            ));
        }
        let Some(q) = self.quotas.get(metric) else {
            return Err(Decision::deny(
                "unknown_quota",
                format!("this license has no quota named {metric}"),
            ));
        };
        let new = if q.period == Period::Gauge {
            amount
        } else {
            used.saturating_add(amount)
        };
        if new > q.limit {
            return Err(Decision::deny(
                "quota_exceeded",
                format!(
                    "{metric} quota exceeded: {new} would pass the limit of {} for this {}; wait for the next period or upgrade",
                    q.limit, q.period
                ),
            ));
        }
        Ok(new)
    }
}
