//! The license's state: which of the eleven, in precedence order, and the
//! reason a person reads, with its next step. Time boundaries are in the
//! module documentation of [`crate::policy`].

use super::explain::Step;
use super::fit::fit;
use super::inputs::{LicenseInput, Settings, Snapshot};
use super::verdict::{State, Verdict};
use crate::license::License;
use crate::revocation::{RevocationList, RevocationStatus};
use crate::time::{human_duration, rfc3339, Timestamp};

/// Where [`decide_state`] records each rule it passes and the one that
/// decides (`None` on the hot path: no note is ever formatted).
pub(super) type Trace<'t> = Option<&'t mut Vec<Step>>;

fn pass(trace: &mut Trace<'_>, rule: &'static str, note: impl FnOnce() -> String) {
    if let Some(steps) = trace {
        steps.push(Step {
            rule,
            decided: false,
            note: note(),
        });
    }
}

fn decide(
    trace: &mut Trace<'_>,
    rule: &'static str,
    state: State,
    reason: String,
) -> (State, String) {
    if let Some(steps) = trace {
        steps.push(Step {
            rule,
            decided: true,
            note: reason.clone(),
        });
    }
    (state, reason)
}

#[allow(clippy::too_many_arguments)] // the inputs of `evaluate`, plus the trace
pub(super) fn decide_state(
    license: LicenseInput<'_>,
    revocations: Option<&RevocationList>,
    snapshot: &Snapshot,
    settings: &Settings,
    now: Timestamp,
    mark: Timestamp,
    t: Timestamp,
    trace: &mut Trace<'_>,
) -> (State, String) {
    let l = match license {
        LicenseInput::Missing => {
            return decide(
                trace,
                "license",
                State::Unlicensed,
                "no license installed: copy the license file from your vendor to the configured license path".into(),
            )
        }
        LicenseInput::Rejected(why) => {
            return decide(
                trace,
                "license",
                State::Invalid,
                format!("license file rejected: {why}"),
            );
        }
        LicenseInput::Verified(l) => l,
    };
    pass(trace, "license", || {
        format!(
            "license {} for {}, tier {}: signature verified",
            l.id, l.customer, l.tier
        )
    });
    if let Err(misfit) = fit(l, settings) {
        return decide(trace, "fit", State::Invalid, misfit.to_string());
    }
    pass(trace, "fit", || {
        format!(
            "made for product {:?}; {}",
            l.audience,
            match &l.cluster {
                Some(c) => format!("bound to this cluster ({c})"),
                None => "not bound to a cluster".into(),
            }
        )
    });
    if let Some(e) = revocations.and_then(|r| r.entry(&l.id)) {
        let (state, verb) = match e.status {
            RevocationStatus::Revoked => (State::Revoked, "revoked"),
            RevocationStatus::Suspended => (State::Suspended, "suspended"),
        };
        return decide(
            trace,
            "revocation",
            state,
            format!(
                "license {verb} by the vendor on {}: {} — contact your vendor",
                rfc3339(e.time),
                e.reason
            ),
        );
    }
    pass(trace, "revocation", || match revocations {
        Some(r) => format!(
            "not in revocation list version {} ({} entries)",
            r.version,
            r.entries.len()
        ),
        None => "no revocation list installed".into(),
    });
    if now.saturating_add(settings.clock_tolerance) < mark {
        return decide(
            trace,
            "clock",
            State::ClockTampered,
            format!(
                "system clock reads {} but time {} was already seen: fix the clock (NTP); licensing resumes once it is correct. If the clock is right and that time came from a clock that was wrong, ask the vendor for a clock reset (kaching-verifier status shows the cluster id and mark to send)",
                rfc3339(now),
                rfc3339(mark)
            ),
        );
    }
    pass(trace, "clock", || {
        if now >= mark {
            format!(
                "clock {} is at or past every time already seen",
                rfc3339(now)
            )
        } else {
            format!(
                "clock {} is behind the time already seen ({}) by less than the tolerance ({}): judged at {}",
                rfc3339(now),
                rfc3339(mark),
                human_duration(settings.clock_tolerance),
                rfc3339(t)
            )
        }
    });
    if t.saturating_add(settings.nbf_skew) < l.not_before {
        return decide(
            trace,
            "not_before",
            State::NotYetValid,
            format!("license becomes valid on {}", rfc3339(l.not_before)),
        );
    }
    pass(trace, "not_before", || {
        format!("valid since {}", rfc3339(l.not_before))
    });
    let grace_end = l.expires_at.saturating_add(l.grace);
    if t >= grace_end {
        return decide(
            trace,
            "expiry",
            State::Expired,
            format!(
                "license expired on {}: install a renewed license",
                rfc3339(l.expires_at)
            ),
        );
    }
    if t >= l.expires_at {
        return decide(
            trace,
            "expiry",
            State::Grace,
            format!(
                "license expired on {}; grace period ends {} ({} left): install a renewed license",
                rfc3339(l.expires_at),
                rfc3339(grace_end),
                human_duration(grace_end - t)
            ),
        );
    }
    pass(trace, "expiry", || {
        format!(
            "expires {}, then {} of grace (until {})",
            rfc3339(l.expires_at),
            human_duration(l.grace),
            rfc3339(grace_end)
        )
    });
    match overdue_since(l, revocations, snapshot) {
        Some((deadline, cause)) if t >= deadline => {
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
            return decide(trace, "connected", State::Overdue, reason);
        }
        Some((deadline, cause)) => pass(trace, "connected", || {
            format!(
                "connected license: overdue from {} ({})",
                rfc3339(deadline),
                match cause {
                    Overdue::NoContact { since } => format!(
                        "offline grace after the last relay contact, {}",
                        rfc3339(since)
                    ),
                    Overdue::Frozen { version, expires } => format!(
                        "offline grace after revocation list version {version}'s deadline, {}",
                        rfc3339(expires)
                    ),
                }
            )
        }),
        None => pass(trace, "connected", || {
            "air-gapped license: never overdue".into()
        }),
    }
    match report_deadline(l, snapshot) {
        Some((deadline, since, p)) if t >= deadline => {
            let off = if p.deny.is_empty() {
                "everything still works".to_string()
            } else {
                format!(
                    "{} off until a report is acknowledged",
                    p.deny.iter().cloned().collect::<Vec<_>>().join(", ")
                )
            };
            return decide(
                trace,
                "report",
                State::ReportOverdue,
                format!(
                    "no usage report acknowledged since {}: this license asks for one every {} (due {}); {off}: \
                     send a usage report (`kaching-verifier usage-report`) to your vendor and import the receipt",
                    rfc3339(since),
                    human_duration(p.every),
                    rfc3339(deadline)
                ),
            );
        }
        Some((deadline, since, _)) => pass(trace, "report", || {
            format!(
                "usage report due by {} (last acknowledged {})",
                rfc3339(deadline),
                rfc3339(since)
            )
        }),
        None => pass(trace, "report", || "no duty to report".into()),
    }
    if t.saturating_add(settings.expiring_window) >= l.expires_at {
        return decide(
            trace,
            "expiring",
            State::Expiring,
            format!(
                "license expires on {} ({} left): renew it",
                rfc3339(l.expires_at),
                human_duration(l.expires_at - t)
            ),
        );
    }
    pass(trace, "expiring", || {
        format!(
            "more than {} before expiry (expiring from {})",
            human_duration(settings.expiring_window),
            rfc3339(l.expires_at.saturating_sub(settings.expiring_window))
        )
    });
    // The common answer, built without the formatting machinery: it is
    // computed on every verification (docs/benchmarks.md, `verify`).
    decide(
        trace,
        "active",
        State::Active,
        ["license valid until ", &rfc3339(l.expires_at)].concat(),
    )
}

/// For a license with a duty to report: the deadline, the acknowledgment it
/// counts from (the newest acknowledged report, relay contact, or the
/// license's issue time), and the policy.
pub(super) fn report_deadline<'l>(
    l: &'l License,
    snapshot: &Snapshot,
) -> Option<(Timestamp, Timestamp, &'l crate::license::ReportPolicy)> {
    let p = l.report.as_ref()?;
    let since = [
        Some(l.issued_at),
        snapshot.last_acknowledged_report,
        snapshot.last_relay_contact,
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(l.issued_at);
    Some((since.saturating_add(p.every), since, p))
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

pub(super) fn add_time_warnings(
    v: &mut Verdict,
    l: &License,
    revocations: Option<&RevocationList>,
    snapshot: &Snapshot,
    t: Timestamp,
) {
    match v.state {
        State::Grace | State::Expiring | State::ReportOverdue => v.warnings.push(v.reason.clone()),
        _ => {}
    }
    if let Some((deadline, _, p)) = report_deadline(l, snapshot) {
        if v.state.is_usable()
            && v.state != State::ReportOverdue
            && t < deadline
            && t.saturating_add(p.warn) >= deadline
        {
            v.warnings.push(format!(
                "usage report due by {} ({} left): send one (`kaching-verifier usage-report`) to your vendor and import the receipt",
                rfc3339(deadline),
                human_duration(deadline - t)
            ));
        }
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
