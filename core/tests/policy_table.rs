//! The policy table: every state of `evaluate`, its precedence, the exact
//! second each time-driven state begins and ends, clock tampering, overdue and
//! freeze, overage rounding, node admission, quota spend and thresholds,
//! feature decisions and the trusted-time mark (DESIGN §4).
//!
//! Every case is a row: inputs on the left, the expected outcome on the right.
//! Times are whole seconds around fixed instants, so no test reads a clock.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns

use std::collections::BTreeMap;

use kaching_core::license::{HeartbeatPolicy, Limits, Period, Quota};
use kaching_core::policy::{
    evaluate, explain, fit, warning_ratio, Explanation, LicenseInput, MarkFrom, Settings, Snapshot,
    State, Urgency, Verdict,
};
use kaching_core::revocation::{RevocationEntry, RevocationList, RevocationStatus};
use kaching_core::time::DAY;
use kaching_core::{License, LicenseId, TierCatalog};

/// Issuance of every test license (2026-09-21T12:26:40Z).
const IAT: u64 = 1_790_000_000;
/// One year later.
const EXP: u64 = IAT + 365 * DAY;
/// Grace of the standard tier.
const GRACE: u64 = 14 * DAY;
/// Default settings: 30-day expiring window, 5-minute nbf skew, 24 h clock tolerance.
const WINDOW: u64 = 30 * DAY;
const SKEW: u64 = 300;
const TOLERANCE: u64 = DAY;
/// Offline grace of connected licenses.
const OFFLINE: u64 = 3 * DAY;
const HERE: &str = "clusterhereaaaaa";

fn catalog() -> TierCatalog {
    TierCatalog::builtin()
}

/// A license with the catalog defaults of `tier`, air-gapped and unbound.
fn license_of(tier: &str) -> License {
    let cat = catalog();
    let t = cat
        .get(tier)
        .unwrap_or_else(|| panic!("tier {tier} missing from the catalog"));
    License {
        id: LicenseId([7; 16]),
        issuer: "Test Vendor".into(),
        customer_id: "cust-1".into(),
        customer: "Acme".into(),
        audience: "bzzz".into(),
        issued_at: IAT,
        not_before: IAT,
        expires_at: EXP,
        tier: t.name.clone(),
        features: t.features.iter().cloned().collect(),
        limits: Limits {
            max_nodes: t.max_nodes,
            max_cores: None,
        },
        quotas: t.quotas.clone(),
        grace: GRACE,
        overage: t.overage,
        cluster: None,
        heartbeat: None,
        supersedes: None,
        degrade: Default::default(),
        report: None,
    }
}

fn standard() -> License {
    license_of("standard")
}

fn connected() -> License {
    License {
        heartbeat: Some(HeartbeatPolicy {
            interval: 300,
            offline_grace: OFFLINE,
        }),
        ..standard()
    }
}

fn list(entries: Vec<RevocationEntry>, iat: u64, expires: u64) -> RevocationList {
    RevocationList {
        issuer: "Test Vendor".into(),
        version: 1,
        issued_at: iat,
        expires,
        entries,
    }
}

fn entry(status: RevocationStatus) -> RevocationEntry {
    RevocationEntry {
        id: LicenseId([7; 16]),
        status,
        reason: "test".into(),
        time: IAT + DAY,
    }
}

/// Everything one evaluation needs; defaults describe a healthy cluster.
struct Case {
    license: Option<License>,
    list: Option<RevocationList>,
    snapshot: Snapshot,
    settings: Settings,
}

impl Case {
    fn new(license: License) -> Self {
        Case {
            license: Some(license),
            list: None,
            snapshot: Snapshot::default(),
            settings: Settings {
                cluster_id: Some(HERE.into()),
                ..Settings::default()
            },
        }
    }

    fn list(mut self, l: RevocationList) -> Self {
        self.list = Some(l);
        self
    }

    fn mark(mut self, t: u64) -> Self {
        self.snapshot.trusted_time = t;
        self
    }

    fn contact(mut self, t: u64) -> Self {
        self.snapshot.last_relay_contact = Some(t);
        self
    }

    fn input(&self) -> LicenseInput<'_> {
        match &self.license {
            Some(l) => LicenseInput::Verified(l),
            None => LicenseInput::Missing,
        }
    }

    /// The verdict; every row also checks that `explain` reaches the very
    /// same verdict and that its last step is the one deciding the state.
    fn at(&self, now: u64) -> Verdict {
        let v = evaluate(
            self.input(),
            self.list.as_ref(),
            &self.snapshot,
            &catalog(),
            &self.settings,
            now,
        );
        let e = self.explain(now);
        assert_eq!(e.verdict, v, "explain and evaluate differ at {now}");
        let last = e.steps.last().expect("at least one rule");
        assert!(last.decided && last.note == v.reason, "{:?}", e.steps);
        assert!(e.steps[..e.steps.len() - 1].iter().all(|s| !s.decided));
        v
    }

    fn explain(&self, now: u64) -> Explanation {
        explain(
            self.input(),
            self.list.as_ref(),
            &self.snapshot,
            &catalog(),
            &self.settings,
            now,
        )
    }
}

fn state_at(case: &Case, now: u64) -> State {
    case.at(now).state
}

#[test]
fn missing_license_is_unlicensed_and_rejected_file_is_invalid() {
    let (snap, cat, set) = (Snapshot::default(), catalog(), Settings::default());
    let missing = evaluate(LicenseInput::Missing, None, &snap, &cat, &set, IAT);
    assert_eq!(missing.state, State::Unlicensed);
    assert!(missing.reason.contains("copy the license file"));
    let rejected = evaluate(
        LicenseInput::Rejected("signature does not verify"),
        None,
        &snap,
        &cat,
        &set,
        IAT,
    );
    assert_eq!(rejected.state, State::Invalid);
    assert!(rejected.reason.contains("signature does not verify"));
}

#[test]
fn wrong_audience_and_foreign_cluster_are_invalid() {
    let rows: Vec<(&str, License, Option<&str>, State)> = vec![
        (
            "other product",
            License {
                audience: "whoosh".into(),
                ..standard()
            },
            Some(HERE),
            State::Invalid,
        ),
        (
            "bound to another cluster",
            License {
                cluster: Some("elsewhereaaaaaaa".into()),
                ..standard()
            },
            Some(HERE),
            State::Invalid,
        ),
        (
            "bound, but this cluster has no id yet",
            License {
                cluster: Some(HERE.into()),
                ..standard()
            },
            None,
            State::Invalid,
        ),
        (
            "bound to this cluster",
            License {
                cluster: Some(HERE.into()),
                ..standard()
            },
            Some(HERE),
            State::Active,
        ),
        ("unbound", standard(), None, State::Active),
    ];
    for (name, lic, here, want) in rows {
        let mut case = Case::new(lic.clone());
        case.settings.cluster_id = here.map(String::from);
        let v = case.at(IAT + DAY);
        assert_eq!(v.state, want, "{name}");
        // `fit` is the rule behind these rows, for callers that only ask
        // whether a verified license belongs here; its words are the reason.
        match fit(&lic, &case.settings) {
            Ok(()) => assert_ne!(want, State::Invalid, "{name}"),
            Err(misfit) => assert_eq!(
                (want, misfit.to_string()),
                (State::Invalid, v.reason.clone()),
                "{name}"
            ),
        }
    }
}

/// Each row stacks conditions; the highest-precedence one must win.
#[test]
fn precedence_highest_condition_wins() {
    use RevocationStatus::{Revoked, Suspended};
    let fresh = |e| list(vec![e], IAT + DAY, EXP + 400 * DAY);
    let in_grace = EXP + DAY;
    let expired = EXP + GRACE + DAY;
    let rows: Vec<(&str, Case, u64, State)> = vec![
        (
            "wrong audience beats revoked",
            Case::new(License {
                audience: "other".into(),
                ..standard()
            })
            .list(fresh(entry(Revoked))),
            IAT + 2 * DAY,
            State::Invalid,
        ),
        (
            "revoked beats clock_tampered and expired",
            Case::new(standard())
                .list(fresh(entry(Revoked)))
                .mark(expired + 10 * DAY),
            expired,
            State::Revoked,
        ),
        (
            "suspended beats grace",
            Case::new(standard()).list(fresh(entry(Suspended))),
            in_grace,
            State::Suspended,
        ),
        (
            "suspended beats clock_tampered",
            Case::new(standard())
                .list(fresh(entry(Suspended)))
                .mark(IAT + 10 * DAY),
            IAT + 5 * DAY,
            State::Suspended,
        ),
        (
            "clock_tampered beats expired",
            Case::new(standard()).mark(expired + 2 * DAY),
            expired,
            State::ClockTampered,
        ),
        (
            "clock_tampered beats not_yet_valid",
            Case::new(License {
                not_before: IAT + 100 * DAY,
                ..standard()
            })
            .mark(IAT + 10 * DAY),
            IAT + 5 * DAY,
            State::ClockTampered,
        ),
        (
            "not_yet_valid beats expired (nbf after exp + grace)",
            Case::new(License {
                not_before: EXP + GRACE + 10 * DAY,
                ..standard()
            }),
            EXP + GRACE + DAY,
            State::NotYetValid,
        ),
        (
            "expired beats overdue",
            Case::new(connected()).contact(IAT),
            expired,
            State::Expired,
        ),
        (
            "grace beats overdue",
            Case::new(connected()).contact(IAT),
            in_grace,
            State::Grace,
        ),
        (
            "overdue beats expiring",
            Case::new(connected()).contact(EXP - 20 * DAY),
            EXP - 10 * DAY,
            State::Overdue,
        ),
        (
            "expiring beats active",
            Case::new(standard()),
            EXP - 10 * DAY,
            State::Expiring,
        ),
        (
            "an entry for another license changes nothing",
            Case::new(standard()).list(fresh(RevocationEntry {
                id: LicenseId([8; 16]),
                ..entry(Revoked)
            })),
            IAT + 2 * DAY,
            State::Active,
        ),
        (
            "a newer list without the entry lifts a suspension",
            Case::new(standard()).list(list(vec![], IAT + 2 * DAY, EXP + 400 * DAY)),
            IAT + 3 * DAY,
            State::Active,
        ),
    ];
    for (name, case, now, want) in rows {
        assert_eq!(state_at(&case, now), want, "{name}");
    }
}

/// The exact second each time-driven state begins, and the one before it.
#[test]
fn time_boundaries_to_the_second() {
    let late_nbf = IAT + 10 * DAY;
    let rows: Vec<(&str, License, u64, State)> = vec![
        ("first second", standard(), IAT, State::Active),
        (
            "one second before expiring",
            standard(),
            EXP - WINDOW - 1,
            State::Active,
        ),
        (
            "expiring begins at exp − 30d",
            standard(),
            EXP - WINDOW,
            State::Expiring,
        ),
        (
            "last second before exp",
            standard(),
            EXP - 1,
            State::Expiring,
        ),
        ("grace begins at exp", standard(), EXP, State::Grace),
        (
            "last second of grace",
            standard(),
            EXP + GRACE - 1,
            State::Grace,
        ),
        (
            "expired begins at exp + grace",
            standard(),
            EXP + GRACE,
            State::Expired,
        ),
        (
            "no grace: expired at exp",
            License {
                grace: 0,
                ..standard()
            },
            EXP,
            State::Expired,
        ),
        (
            "no grace: expiring one second before",
            License {
                grace: 0,
                ..standard()
            },
            EXP - 1,
            State::Expiring,
        ),
        (
            "not_yet_valid until nbf − skew",
            License {
                not_before: late_nbf,
                ..standard()
            },
            late_nbf - SKEW - 1,
            State::NotYetValid,
        ),
        (
            "valid from nbf − skew",
            License {
                not_before: late_nbf,
                ..standard()
            },
            late_nbf - SKEW,
            State::Active,
        ),
    ];
    for (name, lic, now, want) in rows {
        let v = Case::new(lic).at(now);
        assert_eq!(v.state, want, "{name} (now = {now})");
    }
}

#[test]
fn grace_and_expiring_are_usable_with_warnings_expired_is_not() {
    let case = Case::new(standard());
    for (now, usable, warned) in [
        (IAT + DAY, true, false),
        (EXP - DAY, true, true),
        (EXP + DAY, true, true),
        (EXP + GRACE, false, false),
    ] {
        let v = case.at(now);
        assert_eq!(v.is_usable(), usable, "{} usable", v.state);
        assert_eq!(v.warnings.contains(&v.reason), warned, "{} warned", v.state);
    }
    let v = case.at(EXP);
    assert_eq!(v.expires_at, Some(EXP));
    assert_eq!(v.grace_ends_at, Some(EXP + GRACE));
}

#[test]
fn clock_behind_mark_by_more_than_tolerance_is_tampering() {
    let mark = IAT + 100 * DAY;
    let case = Case::new(standard()).mark(mark);
    let rows = [
        (
            "one second past the tolerance",
            mark - TOLERANCE - 1,
            State::ClockTampered,
        ),
        ("exactly at the tolerance", mark - TOLERANCE, State::Active),
        ("within the tolerance", mark - 1, State::Active),
        ("at the mark", mark, State::Active),
        ("ahead of the mark", mark + DAY, State::Active),
    ];
    for (name, now, want) in rows {
        assert_eq!(state_at(&case, now), want, "{name}");
    }
    let v = case.at(mark - TOLERANCE - 1);
    assert!(v.reason.contains("fix the clock"), "{}", v.reason);
}

#[test]
fn license_and_list_iat_raise_the_mark() {
    // A license signed "in the future" by more than the tolerance means the
    // local clock is behind the vendor's: tampering, not a valid license.
    let future = License {
        issued_at: IAT + 10 * DAY,
        not_before: IAT + 10 * DAY,
        ..standard()
    };
    assert_eq!(
        state_at(&Case::new(future.clone()), IAT + 10 * DAY - TOLERANCE - 1),
        State::ClockTampered
    );
    assert_eq!(
        state_at(&Case::new(future), IAT + 10 * DAY - TOLERANCE),
        State::Active
    );
    let case = Case::new(standard()).list(list(vec![], IAT + 50 * DAY, EXP + 400 * DAY));
    assert_eq!(
        state_at(&case, IAT + 50 * DAY - TOLERANCE - 1),
        State::ClockTampered
    );
    assert_eq!(case.at(IAT + 20 * DAY).trusted_time, IAT + 50 * DAY);
}

/// A clock wound back within the tolerance is accepted, but time is taken as
/// the mark: it cannot move a license back out of expiry or grace.
#[test]
fn clock_wound_back_within_tolerance_buys_no_validity() {
    let rows = [
        ("mark at exp + grace", EXP + GRACE, State::Expired),
        ("mark at exp", EXP, State::Grace),
        ("mark at exp − 30d", EXP - WINDOW, State::Expiring),
    ];
    for (name, mark, want) in rows {
        let case = Case::new(standard()).mark(mark);
        let v = case.at(mark - TOLERANCE + 1);
        assert_eq!(v.state, want, "{name}");
        assert_eq!(v.trusted_time, mark, "{name}: the mark is kept");
    }
}

#[test]
fn trusted_time_never_decreases() {
    let marks = [0, IAT - DAY, IAT, IAT + 10 * DAY, EXP + GRACE + DAY];
    let nows = [0, IAT - 1, IAT, IAT + 5 * DAY, IAT + 10 * DAY, EXP * 2];
    for mark in marks {
        for now in nows {
            let v = Case::new(standard()).mark(mark).at(now);
            // The license's iat is part of the mark too.
            assert_eq!(
                v.trusted_time,
                mark.max(now).max(IAT),
                "mark {mark}, now {now}"
            );
            assert!(v.trusted_time >= mark && v.trusted_time >= now);
            assert_eq!(v.evaluated_at, now);
        }
    }
}

#[test]
fn connected_license_overdue_after_offline_grace_without_contact() {
    let c = IAT + 40 * DAY;
    let rows: Vec<(&str, Case, u64, State)> = vec![
        (
            "last second of offline grace",
            Case::new(connected()).contact(c),
            c + OFFLINE - 1,
            State::Active,
        ),
        (
            "offline grace over",
            Case::new(connected()).contact(c),
            c + OFFLINE,
            State::Overdue,
        ),
        (
            "never contacted: counted from iat",
            Case::new(connected()),
            IAT + OFFLINE,
            State::Overdue,
        ),
        (
            "never contacted: fine before",
            Case::new(connected()),
            IAT + OFFLINE - 1,
            State::Active,
        ),
        (
            "a contact before iat counts from iat",
            Case::new(connected()).contact(IAT - 30 * DAY),
            IAT + OFFLINE - 1,
            State::Active,
        ),
        (
            "air-gapped: never overdue",
            Case::new(standard()).contact(IAT),
            EXP - WINDOW - 1,
            State::Active,
        ),
    ];
    for (name, case, now, want) in rows {
        let v = case.at(now);
        assert_eq!(v.state, want, "{name}");
        if want == State::Overdue {
            assert!(!v.is_usable(), "{name}: overdue is not usable");
            assert!(
                v.reason.contains("no contact with the relay"),
                "{name}: {}",
                v.reason
            );
        }
    }
}

/// A revocation list past its deadline is a freeze: a connected license goes
/// overdue offline_grace after the list's `expires`, even with fresh contact.
#[test]
fn stale_revocation_list_makes_connected_license_overdue() {
    let deadline = IAT + 40 * DAY;
    let frozen = list(vec![], IAT + 30 * DAY, deadline);
    let rows: Vec<(&str, License, u64, State)> = vec![
        (
            "connected, list stale but within offline grace",
            connected(),
            deadline + OFFLINE - 1,
            State::Active,
        ),
        (
            "connected, offline grace after the deadline over",
            connected(),
            deadline + OFFLINE,
            State::Overdue,
        ),
        (
            "air-gapped, same stale list",
            standard(),
            deadline + 100 * DAY,
            State::Active,
        ),
    ];
    for (name, lic, now, want) in rows {
        // The relay was reached a minute ago: only the list is old.
        let case = Case::new(lic).list(frozen.clone()).contact(now - 60);
        let v = case.at(now);
        assert_eq!(v.state, want, "{name}");
        if want == State::Overdue {
            // The relay answers; the cause to fix is the stale list.
            assert!(
                v.reason.contains("revocation list version 1"),
                "{}",
                v.reason
            );
            assert!(!v.reason.contains("no contact"), "{}", v.reason);
        }
        let stale_warning = v.warnings.iter().any(|w| w.contains("update deadline"));
        assert_eq!(
            stale_warning,
            case.license.as_ref().is_some_and(License::is_connected),
            "{name}"
        );
    }
    let before = Case::new(connected()).list(frozen).contact(deadline - 60);
    assert!(
        !before
            .at(deadline - 1)
            .warnings
            .iter()
            .any(|w| w.contains("update deadline")),
        "no stale warning before the deadline"
    );
}

#[test]
fn node_ceiling_rounds_overage_down() {
    // (max_nodes, overage %, ceiling = max + floor(max × overage / 100))
    let rows = [
        (10, 15, 11),
        (3, 10, 3),
        (10, 10, 11),
        (10, 0, 10),
        (9, 20, 10),
        (100, 20, 120),
        (1, 99, 1),
        (1, 100, 2),
        (0, 50, 0),
    ];
    for (max, overage, ceiling) in rows {
        let lic = License {
            limits: Limits {
                max_nodes: max,
                max_cores: None,
            },
            overage,
            ..standard()
        };
        assert_eq!(lic.node_ceiling(), ceiling, "{max} nodes, {overage}%");
        assert_eq!(Case::new(lic).at(IAT).node_ceiling, ceiling);
    }
}

#[test]
fn admit_node_up_to_the_ceiling() {
    let v = Case::new(standard()).at(IAT + DAY); // 10 nodes + 10 % = 11
    assert_eq!(v.node_ceiling, 11);
    let rows = [
        (0, false, true),
        (10, false, true),
        (11, false, false),
        (12, false, false),
        (11, true, true),
        (12, true, true),
    ];
    for (live, renewing, allowed) in rows {
        let d = v.admit_node(live, renewing);
        assert_eq!(d.allowed, allowed, "live {live}, renewing {renewing}");
        if !allowed {
            assert_eq!(d.code, "node_limit");
            assert!(d.reason.contains("10 + 1 overage"), "{}", d.reason);
        }
    }
    let expired = Case::new(standard()).at(EXP + GRACE);
    let d = expired.admit_node(0, true);
    assert!(!d.allowed);
    assert_eq!(d.code, "license_expired");
}

#[test]
fn quota_spend_refused_past_the_limit_only() {
    let v = Case::new(standard()).at(IAT + DAY);
    // standard: search_requests 50 000 / day, storage_gb 500 (gauge).
    let ok = |m: &str, used, amount| v.spend(m, used, amount).ok().map(|s| s.used);
    assert_eq!(ok("search_requests", 49_999, 1), Some(50_000));
    assert_eq!(ok("search_requests", 0, 50_000), Some(50_000));
    assert_eq!(ok("search_requests", 50_000, 0), Some(50_000));
    let over = v.spend("search_requests", 50_000, 1).unwrap_err();
    assert_eq!(over.code, "quota_exceeded");
    assert!(over.reason.contains("50001") && over.reason.contains("50000"));
    assert_eq!(
        v.spend("search_requests", u64::MAX, 1).unwrap_err().code,
        "quota_exceeded",
        "no overflow past u64::MAX"
    );
    // A gauge takes the new level, whatever was reported before.
    assert_eq!(ok("storage_gb", 400, 500), Some(500));
    assert_eq!(ok("storage_gb", 499, 3), Some(3));
    assert_eq!(v.spend("storage_gb", 0, 500).unwrap().over_limit, None);
    // Above its limit a gauge is still recorded (it is a fact), and flagged.
    let over = v.spend("storage_gb", 0, 501).unwrap();
    assert_eq!(over.used, 501);
    let flag = over.over_limit.expect("flagged");
    assert_eq!(flag.code, "gauge_over_limit");
    assert!(
        flag.reason.contains("501") && flag.reason.contains("500"),
        "{}",
        flag.reason
    );
    assert_eq!(
        v.spend("gpu_hours", 0, 1).unwrap_err().code,
        "unknown_quota"
    );
    let suspended = Case::new(standard())
        .list(list(vec![entry(RevocationStatus::Suspended)], IAT, EXP))
        .at(IAT + 2 * DAY);
    assert_eq!(
        suspended.spend("search_requests", 0, 1).unwrap_err().code,
        "license_suspended"
    );
}

/// Thresholds come from the catalog: search_requests 80 %, api_calls 85 %,
/// storage_gb 90 %; urgency is low from the threshold, medium from 90 %, high
/// at the limit.
#[test]
fn quota_thresholds_warn_and_suggest_the_next_tier() {
    type Row = (
        &'static str,
        &'static str,
        u64,
        Option<(Urgency, Option<&'static str>)>,
    );
    let rows: [Row; 14] = [
        ("standard", "search_requests", 39_999, None),
        (
            "standard",
            "search_requests",
            40_000,
            Some((Urgency::Low, Some("enterprise"))),
        ),
        (
            "standard",
            "search_requests",
            44_999,
            Some((Urgency::Low, Some("enterprise"))),
        ),
        (
            "standard",
            "search_requests",
            45_000,
            Some((Urgency::Medium, Some("enterprise"))),
        ),
        (
            "standard",
            "search_requests",
            50_000,
            Some((Urgency::High, Some("enterprise"))),
        ),
        ("standard", "api_calls", 849_999, None),
        (
            "standard",
            "api_calls",
            850_000,
            Some((Urgency::Low, Some("enterprise"))),
        ),
        ("standard", "storage_gb", 449, None),
        (
            "standard",
            "storage_gb",
            450,
            Some((Urgency::Medium, Some("enterprise"))),
        ),
        (
            "standard",
            "storage_gb",
            500,
            Some((Urgency::High, Some("enterprise"))),
        ),
        ("evaluation", "search_requests", 799, None),
        (
            "evaluation",
            "search_requests",
            800,
            Some((Urgency::Low, Some("standard"))),
        ),
        (
            "enterprise",
            "search_requests",
            800_000,
            Some((Urgency::Low, None)),
        ),
        (
            "enterprise",
            "storage_gb",
            10_000,
            Some((Urgency::High, None)),
        ),
    ];
    for (tier, metric, used, want) in rows {
        let mut case = Case::new(license_of(tier));
        case.snapshot.quota_usage = BTreeMap::from([(metric.to_string(), used)]);
        let v = case.at(IAT + DAY);
        let name = format!("{tier} {metric} {used}");
        assert_eq!(v.quotas[metric].used, used, "{name}");
        let warned = v.warnings.iter().any(|w| w.starts_with(metric));
        assert_eq!(warned, want.is_some(), "{name}: warnings {:?}", v.warnings);
        // The same rule licensegen applies to an imported usage report.
        let limit = v.quotas[metric].limit;
        let shared = warning_ratio(&catalog(), metric, used, limit);
        assert_eq!(shared.is_some(), warned, "{name}");
        let suggestion = v
            .upgrade_suggestions
            .iter()
            .find(|s| s.reason.starts_with(metric));
        match want {
            Some((urgency, Some(next))) => {
                let s = suggestion.unwrap_or_else(|| panic!("{name}: no suggestion"));
                assert_eq!(s.urgency, urgency, "{name}");
                assert_eq!(s.suggested_tier, next, "{name}");
                assert_eq!(s.current_tier, tier, "{name}");
                assert!(!s.benefits.is_empty(), "{name}");
            }
            _ => assert!(suggestion.is_none(), "{name}: {suggestion:?}"),
        }
    }
}

#[test]
fn quota_usage_reported_with_percent() {
    let mut case = Case::new(standard());
    case.snapshot.quota_usage = BTreeMap::from([("api_calls".to_string(), 123_456)]);
    let v = case.at(IAT + DAY);
    let q = &v.quotas["api_calls"];
    assert_eq!(
        (q.used, q.limit, q.period),
        (123_456, 1_000_000, Period::Month)
    );
    assert_eq!(q.percent, 12.3);
    assert_eq!(
        v.quotas["search_requests"].used, 0,
        "unreported counts as 0"
    );
    let zero = License {
        quotas: BTreeMap::from([(
            "exports".to_string(),
            Quota {
                limit: 0,
                period: Period::Total,
            },
        )]),
        ..standard()
    };
    let v = Case::new(zero).at(IAT + DAY);
    assert_eq!(v.quotas["exports"].percent, 0.0);
    assert_eq!(v.spend("exports", 0, 1).unwrap_err().code, "quota_exceeded");
}

#[test]
fn node_pressure_suggests_a_bigger_tier() {
    let mut case = Case::new(standard());
    case.snapshot.live_nodes = 7;
    assert!(case.at(IAT + DAY).upgrade_suggestions.is_empty());
    assert_eq!(warning_ratio(&catalog(), "nodes", 7, 10), None);
    case.snapshot.live_nodes = 8; // 80 % of 10
    assert_eq!(warning_ratio(&catalog(), "nodes", 8, 10), Some(0.8));
    let v = case.at(IAT + DAY);
    assert_eq!(v.nodes_in_use, 8);
    let s = &v.upgrade_suggestions[0];
    assert_eq!(
        (s.suggested_tier.as_str(), s.urgency),
        ("enterprise", Urgency::Low)
    );
}

#[test]
fn features_allowed_in_tier_denied_with_the_tier_that_has_them() {
    let v = Case::new(standard()).at(IAT + DAY);
    for f in ["basic-search", "advanced-search", "analytics"] {
        assert!(v.feature(f).allowed, "{f}");
        assert_eq!(v.feature(f).code, "ok");
    }
    let bulk = v.feature("bulk-operations");
    assert_eq!((bulk.allowed, bulk.code.as_str()), (false, "not_in_tier"));
    assert!(bulk.reason.contains("enterprise tier"), "{}", bulk.reason);
    let unknown = v.feature("teleport");
    assert_eq!(
        (unknown.allowed, unknown.code.as_str()),
        (false, "unknown_feature")
    );
    assert!(
        !unknown.reason.contains("did you mean"),
        "{}",
        unknown.reason
    );
    // Names are exact; a near miss names the real one.
    let cased = v.feature("Analytics");
    assert_eq!(
        (cased.allowed, cased.code.as_str()),
        (false, "unknown_feature")
    );
    assert!(
        cased.reason.contains("did you mean analytics?"),
        "{}",
        cased.reason
    );

    let eval = Case::new(license_of("evaluation")).at(IAT + DAY);
    let analytics = eval.feature("analytics");
    assert_eq!(analytics.code, "not_in_tier");
    assert!(
        analytics.reason.contains("standard tier"),
        "{}",
        analytics.reason
    );

    // A feature granted beyond the tier is allowed and listed.
    let mut extra = standard();
    extra.features.insert("bulk-operations".into());
    assert!(
        Case::new(extra)
            .at(IAT + DAY)
            .feature("bulk-operations")
            .allowed
    );

    // A feature of a lower tier left out of this license: no upgrade hint.
    let mut trimmed = license_of("enterprise");
    trimmed.features.remove("analytics");
    let d = Case::new(trimmed).at(IAT + DAY).feature("analytics");
    assert_eq!(d.code, "not_in_tier");
    assert!(
        d.reason.contains("ask your vendor to add it"),
        "{}",
        d.reason
    );
}

#[test]
fn every_feature_denied_when_not_usable() {
    let mut cases: Vec<(&str, Verdict)> = vec![
        ("grace is usable", Case::new(standard()).at(EXP)),
        ("expired", Case::new(standard()).at(EXP + GRACE)),
        ("overdue", Case::new(connected()).at(IAT + OFFLINE)),
        (
            "suspended",
            Case::new(standard())
                .list(list(vec![entry(RevocationStatus::Suspended)], IAT, EXP))
                .at(IAT + DAY),
        ),
    ];
    let mut none = Case::new(standard());
    none.license = None;
    cases.push(("unlicensed", none.at(IAT)));
    for (name, v) in cases {
        let code = format!("license_{}", v.state);
        assert!(
            !v.features.is_empty(),
            "{name}: every catalog feature decided"
        );
        for (f, d) in &v.features {
            if v.state == State::Grace {
                assert_eq!(
                    d.allowed,
                    f != "bulk-operations" && f != "enterprise-support",
                    "{name} {f}"
                );
            } else {
                assert!(!d.allowed, "{name} {f}");
                assert_eq!(d.code, code, "{name} {f}");
                assert_eq!(d.reason, v.reason, "{name}: the reason says what to do");
            }
        }
        if v.state != State::Grace {
            assert_eq!(
                v.feature("teleport").code,
                code,
                "{name}: unknown names too"
            );
        }
    }
}

#[test]
fn state_names_and_usability() {
    let rows = [
        (State::Unlicensed, "unlicensed", false),
        (State::Invalid, "invalid", false),
        (State::Revoked, "revoked", false),
        (State::Suspended, "suspended", false),
        (State::ClockTampered, "clock_tampered", false),
        (State::NotYetValid, "not_yet_valid", false),
        (State::Expired, "expired", false),
        (State::Grace, "grace", true),
        (State::Overdue, "overdue", false),
        (State::ReportOverdue, "report_overdue", true),
        (State::Expiring, "expiring", true),
        (State::Active, "active", true),
    ];
    for w in rows.windows(2) {
        assert!(w[0].0 < w[1].0, "{} precedes {}", w[0].1, w[1].1);
    }
    for (state, name, usable) in rows {
        assert_eq!(state.as_str(), name);
        assert_eq!(state.to_string(), name);
        assert_eq!(state.is_usable(), usable, "{name}");
    }
}

#[test]
fn evaluation_nearing_its_end_suggests_the_next_tier() {
    let eval = license_of("evaluation");
    let case = Case::new(eval);
    // (now, state, urgency of the standard suggestion, or none)
    let rows = [
        (IAT + DAY, State::Active, None),
        (EXP - WINDOW, State::Expiring, Some(Urgency::Medium)),
        (EXP - 7 * DAY - 1, State::Expiring, Some(Urgency::Medium)),
        (EXP - 7 * DAY, State::Expiring, Some(Urgency::High)),
        (EXP, State::Grace, Some(Urgency::High)),
        (EXP + GRACE, State::Expired, None),
    ];
    for (now, state, want) in rows {
        let v = case.at(now);
        assert_eq!(v.state, state, "at {now}");
        let s = v
            .upgrade_suggestions
            .iter()
            .find(|s| s.reason.starts_with("the Evaluation license"));
        match want {
            Some(u) => {
                let s = s.unwrap_or_else(|| panic!("{state}: no suggestion: {v:#?}"));
                assert_eq!((s.suggested_tier.as_str(), s.urgency), ("standard", u));
                assert!(s.benefits.iter().any(|b| b == "feature analytics"), "{s:?}");
            }
            None => assert!(s.is_none(), "{state}: {s:?}"),
        }
    }
    // A paid tier's renewal is not an upgrade.
    let v = Case::new(standard()).at(EXP - DAY);
    assert_eq!(v.state, State::Expiring);
    assert!(
        v.upgrade_suggestions.is_empty(),
        "{:?}",
        v.upgrade_suggestions
    );
}

#[test]
fn no_upgrade_suggestions_while_the_license_is_not_usable() {
    let mut case =
        Case::new(standard()).list(list(vec![entry(RevocationStatus::Suspended)], IAT, EXP));
    case.snapshot.quota_usage = BTreeMap::from([("search_requests".to_string(), 50_000)]);
    let v = case.at(IAT + DAY);
    assert_eq!(v.state, State::Suspended);
    assert!(v.warnings.iter().any(|w| w.starts_with("search_requests")));
    assert!(
        v.upgrade_suggestions.is_empty(),
        "{:?}",
        v.upgrade_suggestions
    );
}

#[test]
fn one_suggestion_per_tier_most_urgent_first() {
    // Two limits pointing at enterprise make one card; nodes (low) and
    // search (high) join their reasons and take the higher urgency.
    let mut case = Case::new(standard());
    case.snapshot.live_nodes = 8;
    case.snapshot.quota_usage = BTreeMap::from([("search_requests".to_string(), 50_000)]);
    let v = case.at(IAT + DAY);
    assert_eq!(
        v.upgrade_suggestions.len(),
        1,
        "{:?}",
        v.upgrade_suggestions
    );
    let s = &v.upgrade_suggestions[0];
    assert_eq!(
        (s.suggested_tier.as_str(), s.urgency),
        ("enterprise", Urgency::High)
    );
    assert!(
        s.reason.contains("search_requests") && s.reason.contains("nodes"),
        "{}",
        s.reason
    );
    let mut once = s.benefits.clone();
    once.dedup();
    assert_eq!(once, s.benefits);

    // Two tiers: search at 80 % (standard, low) is checked before storage
    // at its limit (enterprise: the only tier above 600 GB, high), yet the
    // high one comes first.
    let mut eval = license_of("evaluation");
    eval.quotas.insert(
        "storage_gb".into(),
        Quota {
            limit: 600,
            period: Period::Gauge,
        },
    );
    let mut case = Case::new(eval);
    case.snapshot.quota_usage = BTreeMap::from([
        ("search_requests".to_string(), 800),
        ("storage_gb".to_string(), 600),
    ]);
    let v = case.at(IAT + DAY);
    let order: Vec<_> = v
        .upgrade_suggestions
        .iter()
        .map(|s| (s.suggested_tier.as_str(), s.urgency))
        .collect();
    assert_eq!(
        order,
        [("enterprise", Urgency::High), ("standard", Urgency::Low)]
    );
}

#[test]
fn explain_names_the_rule_that_decides_each_state() {
    let suspended = list(vec![entry(RevocationStatus::Suspended)], IAT, EXP);
    let revoked = list(vec![entry(RevocationStatus::Revoked)], IAT, EXP);
    let foreign = License {
        cluster: Some("someotherclustr1".into()),
        ..standard()
    };
    let later = License {
        not_before: IAT + 10 * DAY,
        ..standard()
    };
    let rows: Vec<(Case, u64, State, &str)> = vec![
        (
            Case {
                license: None,
                ..Case::new(standard())
            },
            IAT,
            State::Unlicensed,
            "license",
        ),
        (Case::new(foreign), IAT + DAY, State::Invalid, "fit"),
        (
            Case::new(standard()).list(revoked),
            IAT + DAY,
            State::Revoked,
            "revocation",
        ),
        (
            Case::new(standard()).list(suspended),
            IAT + DAY,
            State::Suspended,
            "revocation",
        ),
        (
            Case::new(standard()).mark(IAT + 5 * DAY),
            IAT + DAY,
            State::ClockTampered,
            "clock",
        ),
        (
            Case::new(later),
            IAT + DAY,
            State::NotYetValid,
            "not_before",
        ),
        (Case::new(standard()), EXP + GRACE, State::Expired, "expiry"),
        (Case::new(standard()), EXP, State::Grace, "expiry"),
        (
            Case::new(connected()),
            IAT + OFFLINE,
            State::Overdue,
            "connected",
        ),
        (
            Case::new(standard()),
            EXP - DAY,
            State::Expiring,
            "expiring",
        ),
        (Case::new(standard()), IAT + DAY, State::Active, "active"),
    ];
    for (case, now, state, rule) in rows {
        let e = case.explain(now);
        assert_eq!(e.verdict.state, state);
        let last = e.steps.last().unwrap();
        assert_eq!(
            (last.rule, last.decided),
            (rule, true),
            "{state}: {:?}",
            e.steps
        );
        let text = e.render(None);
        assert!(
            text.contains(&format!("=> {rule:<11} {}", e.verdict.reason)),
            "{text}"
        );
        assert!(text.contains(&format!("state          {state}")), "{text}");
    }
    // Active passed every rule before it, each saying what it found.
    let e = Case::new(connected()).explain(IAT + DAY);
    let rules: Vec<&str> = e.steps.iter().map(|s| s.rule).collect();
    assert_eq!(
        rules,
        [
            "license",
            "fit",
            "revocation",
            "clock",
            "not_before",
            "expiry",
            "connected",
            "report",
            "expiring",
            "active"
        ]
    );
    assert!(
        e.steps[6]
            .note
            .starts_with("connected license: overdue from"),
        "{:?}",
        e.steps[6]
    );
    // The mark and where it came from; a clock behind it within tolerance.
    let e = Case::new(standard())
        .mark(IAT + 2 * DAY)
        .explain(IAT + 2 * DAY - 3600);
    assert_eq!(
        (e.mark, e.mark_from, e.effective_time),
        (IAT + 2 * DAY, MarkFrom::TrustedTime, IAT + 2 * DAY)
    );
    assert!(
        e.render(None)
            .contains("the clock is 1h behind the trusted time"),
        "{}",
        e.render(None)
    );
    // One feature's decision on request.
    let text = Case::new(standard())
        .explain(IAT + DAY)
        .render(Some("bulk-operations"));
    assert!(text.contains("feature bulk-operations: denied:"), "{text}");
}

#[test]
fn license_change_names_what_moved_and_flags_any_loss_as_a_downgrade() {
    use kaching_core::policy::license_change;
    let old = standard();
    // The same license reissued: no change, no downgrade.
    let same = license_change(&old, &old);
    assert!(!same.downgrade && same.changed.is_empty() && same.features_lost.is_empty());
    assert_eq!(same.summary(), "same terms");

    // An upgrade: enterprise defaults, renewed for a year.
    let mut up = license_of("enterprise");
    up.expires_at = EXP + 365 * DAY;
    let c = license_change(&old, &up);
    assert!(!c.downgrade, "{c:?}");
    assert_eq!(c.tier, Some(("standard".into(), "enterprise".into())));
    assert_eq!(c.features_gained, ["bulk-operations", "enterprise-support"]);
    assert!(c.changed.iter().any(|x| x.name == "max_nodes" && !x.lower));

    // Each loss on its own is a downgrade, and says which.
    let lose = |f: &dyn Fn(&mut License)| {
        let mut l = standard();
        f(&mut l);
        license_change(&old, &l)
    };
    let rows: Vec<(&str, LicenseChangeCase)> = vec![
        (
            "a feature dropped",
            Box::new(|l: &mut License| {
                l.features.remove("analytics");
            }),
        ),
        (
            "fewer nodes",
            Box::new(|l: &mut License| l.limits.max_nodes = 5),
        ),
        (
            "a core cap where there was none",
            Box::new(|l: &mut License| l.limits.max_cores = Some(64)),
        ),
        ("less overage", Box::new(|l: &mut License| l.overage = 0)),
        ("shorter grace", Box::new(|l: &mut License| l.grace = DAY)),
        (
            "a lower quota",
            Box::new(|l: &mut License| {
                l.quotas.get_mut("search_requests").unwrap().limit = 10;
            }),
        ),
        (
            "an earlier expiry",
            Box::new(|l: &mut License| l.expires_at = EXP - DAY),
        ),
    ];
    for (what, f) in rows {
        let c = lose(&*f);
        assert!(c.downgrade, "{what}: {c:?}");
        assert!(!c.summary().is_empty(), "{what}");
    }
    // Lifting a quota altogether is not a loss.
    let c = lose(&|l: &mut License| {
        l.quotas.remove("api_calls");
    });
    assert!(!c.downgrade, "{c:?}");
    assert_eq!(c.changed[0].name, "quota:api_calls");
}

type LicenseChangeCase = Box<dyn Fn(&mut License)>;

/// A standard license that must report every 90 days (warned 14 days
/// ahead), with analytics off once it is overdue, and basic-search kept
/// after expiry.
fn reporting() -> License {
    License {
        report: Some(kaching_core::license::ReportPolicy {
            every: 90 * DAY,
            warn: 14 * DAY,
            deny: ["analytics".to_string()].into(),
        }),
        degrade: ["basic-search".to_string()].into(),
        ..standard()
    }
}

#[test]
fn report_duty_warns_then_turns_report_overdue_at_the_exact_second() {
    let due = IAT + 90 * DAY;
    let warn_from = due - 14 * DAY;
    let case = Case::new(reporting());
    // (now, state, warned, analytics allowed)
    let rows = [
        (warn_from - 1, State::Active, false, true),
        (warn_from, State::Active, true, true),
        (due - 1, State::Active, true, true),
        (due, State::ReportOverdue, false, false),
        (due + 30 * DAY, State::ReportOverdue, false, false),
    ];
    for (now, state, warned, analytics) in rows {
        let v = case.at(now);
        assert_eq!(v.state, state, "at {now}: {}", v.reason);
        assert!(v.is_usable(), "report_overdue stays usable");
        assert_eq!(
            v.warnings
                .iter()
                .any(|w| w.starts_with("usage report due by")),
            warned,
            "at {now}: {:?}",
            v.warnings
        );
        let d = v.feature("analytics");
        assert_eq!(d.allowed, analytics, "at {now}: {d:?}");
        if !analytics {
            assert_eq!(d.code, "report_overdue");
        }
        assert!(
            v.feature("basic-search").allowed,
            "only the named features stop"
        );
    }
    // An acknowledged report restarts the clock; so does relay contact.
    let mut acked = Case::new(reporting());
    acked.snapshot.last_acknowledged_report = Some(due - DAY);
    assert_eq!(acked.at(due).state, State::Active);
    assert_eq!(acked.at(due - DAY + 90 * DAY).state, State::ReportOverdue);
    let contact = Case::new(reporting()).contact(due - DAY);
    assert_eq!(contact.at(due).state, State::Active);
    // Warn only: the state says so, and nothing is denied.
    let mut warn_only = reporting();
    warn_only.report.as_mut().unwrap().deny.clear();
    let v = Case::new(warn_only).at(due);
    assert_eq!(v.state, State::ReportOverdue);
    assert!(v.reason.contains("everything still works"), "{}", v.reason);
    assert!(v.feature("analytics").allowed);
    // Higher states win: an expiring license past its report deadline is
    // still report_overdue, a suspended one suspended.
    let late = License {
        expires_at: due + 10 * DAY,
        ..reporting()
    };
    assert_eq!(Case::new(late).at(due).state, State::ReportOverdue);
}

#[test]
fn degrade_keeps_the_basic_level_after_expiry_and_nothing_else() {
    let v = Case::new(reporting()).at(EXP + GRACE);
    assert_eq!(v.state, State::Expired);
    assert!(!v.is_usable());
    assert!(v.degraded);
    let basic = v.feature("basic-search");
    assert!(basic.allowed, "{basic:?}");
    assert!(basic.reason.contains("basic level"), "{}", basic.reason);
    assert_eq!(v.feature("analytics").code, "license_expired");
    // Nodes keep running at the basic level; metered usage does not.
    assert!(v.admit_node(0, false).allowed);
    assert!(!v
        .spend("search_requests", 0, 1)
        .map(|_| true)
        .unwrap_or(false));
    // Without degrade, expiry stops everything as before.
    let plain = Case::new(standard()).at(EXP + GRACE);
    assert!(!plain.degraded && !plain.feature("basic-search").allowed);
    assert!(!plain.admit_node(0, false).allowed);
}
