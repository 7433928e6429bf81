//! A license's state as the ledger sees it (vendor side; the verifier's
//! verdict also weighs clocks and usage).

use std::fmt;

use kaching_core::revocation::{RevocationList, RevocationStatus};
use kaching_core::time::Timestamp;
use serde::Serialize;

use super::LicenseRecord;

/// What the ledger knows about a license now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LedgerState {
    /// Issued, in force.
    Active,
    /// Replaced by a newer license (upgrade or renewal).
    Superseded,
    /// Paused by the current revocation list.
    Suspended,
    /// Withdrawn for good by the current revocation list.
    Revoked,
    /// Past expiry and grace.
    Expired,
}

impl LedgerState {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerState::Active => "active",
            LedgerState::Superseded => "superseded",
            LedgerState::Suspended => "suspended",
            LedgerState::Revoked => "revoked",
            LedgerState::Expired => "expired",
        }
    }

    /// Decides the state: revoked, suspended, superseded, expired, active (first wins).
    pub fn of(rec: &LicenseRecord, list: Option<&RevocationList>, now: Timestamp) -> Self {
        if let Some(e) = list.and_then(|l| l.entry(&rec.id)) {
            return match e.status {
                RevocationStatus::Revoked => LedgerState::Revoked,
                RevocationStatus::Suspended => LedgerState::Suspended,
            };
        }
        if rec.superseded_by.is_some() {
            LedgerState::Superseded
        } else if now >= rec.expires_at.saturating_add(rec.grace) {
            LedgerState::Expired
        } else {
            LedgerState::Active
        }
    }
}

/// The rows `ledger list` (and the desk's ledger page) shows: each record
/// with its state, kept when its customer name or id contains `customer`
/// (any case) and, with a `horizon`, only active licenses expiring by then,
/// soonest first ("what runs out next").
pub fn select<'a>(
    records: &'a [LicenseRecord],
    list: Option<&RevocationList>,
    now: Timestamp,
    customer: Option<&str>,
    horizon: Option<Timestamp>,
) -> Vec<(&'a LicenseRecord, LedgerState)> {
    let needle = customer.map(str::to_lowercase);
    let mut rows: Vec<_> = records
        .iter()
        .map(|r| (r, LedgerState::of(r, list, now)))
        .filter(|(r, _)| match &needle {
            Some(n) => {
                r.customer.to_lowercase().contains(n) || r.customer_id.to_lowercase().contains(n)
            }
            None => true,
        })
        .filter(|(r, state)| match horizon {
            Some(h) => *state == LedgerState::Active && r.expires_at <= h,
            None => true,
        })
        .collect();
    if horizon.is_some() {
        rows.sort_by_key(|(r, _)| r.expires_at);
    }
    rows
}

impl fmt::Display for LedgerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
