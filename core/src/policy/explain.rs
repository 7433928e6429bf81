//! How a verdict was reached, rule by rule: the inputs (which time, which
//! mark), every rule of the state decision in precedence order with what it
//! found, the first one that decided, and (on request) one feature's
//! decision. `kaching-verifier explain` shows it for the license in force;
//! `licensegen simulate` for a license file at any date, so both sides read
//! the same account of the same pure function.

use serde::Serialize;

use super::verdict::{Urgency, Verdict};
use crate::time::{human_duration, rfc3339, Timestamp};

/// One rule of the state decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// The rule: `license`, `fit`, `revocation`, `clock`, `not_before`,
    /// `expiry`, `connected`, `expiring`, `active`.
    pub rule: &'static str,
    /// True for the rule that decided the state (always the last).
    pub decided: bool,
    /// What the rule found (for the deciding rule: the verdict's reason).
    pub note: String,
}

/// Which input set the trusted-time mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkFrom {
    /// The time this verifier recorded (clock readings, relay time).
    TrustedTime,
    /// The license's issue time.
    LicenseIssued,
    /// The revocation list's issue time.
    ListIssued,
}

/// How `evaluate` reached its verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The clock reading judged at.
    pub now: Timestamp,
    /// The highest time already seen (never lowered).
    pub mark: Timestamp,
    /// Where the mark came from.
    pub mark_from: MarkFrom,
    /// `max(now, mark)`: the time every date is compared with.
    pub effective_time: Timestamp,
    /// The state rules in precedence order, up to the one that decided.
    pub steps: Vec<Step>,
    /// The verdict, exactly as `evaluate` returns it.
    pub verdict: Verdict,
}

impl Explanation {
    /// The account a person reads; with `feature`, that feature's decision too.
    pub fn render(&self, feature: Option<&str>) -> String {
        let mut s = String::new();
        s.push_str(&format!("clock          {}\n", rfc3339(self.now)));
        s.push_str(&format!(
            "trusted time   {} ({})\n",
            rfc3339(self.mark),
            match self.mark_from {
                MarkFrom::TrustedTime => "the latest time this verifier has seen",
                MarkFrom::LicenseIssued => "the license's issue time",
                MarkFrom::ListIssued => "the revocation list's issue time",
            }
        ));
        let behind = self.effective_time.saturating_sub(self.now);
        s.push_str(&format!(
            "judged at      {}{}\n\nrules, in order of precedence:\n",
            rfc3339(self.effective_time),
            if behind > 0 {
                format!(
                    " (the clock is {} behind the trusted time)",
                    human_duration(behind)
                )
            } else {
                String::new()
            }
        ));
        for step in &self.steps {
            s.push_str(&format!(
                "  {} {:<11} {}\n",
                if step.decided { "=>" } else { "ok" },
                step.rule,
                step.note
            ));
        }
        let v = &self.verdict;
        s.push_str(&format!("\nstate          {}\n", v.state));
        if let Some(name) = feature {
            let d = v.feature(name);
            s.push_str(&format!(
                "feature {name}: {}: {}\n",
                if d.allowed { "allowed" } else { "denied" },
                d.reason
            ));
        }
        for w in &v.warnings {
            s.push_str(&format!("warning        {w}\n"));
        }
        for u in &v.upgrade_suggestions {
            s.push_str(&format!(
                "upgrade        to {} ({}): {}\n",
                u.suggested_tier,
                match u.urgency {
                    Urgency::Low => "low",
                    Urgency::Medium => "medium",
                    Urgency::High => "high",
                },
                u.reason
            ));
        }
        s
    }
}
