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

impl fmt::Display for LedgerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
