//! Signing the next revocation list: suspend, reinstate, revoke, refresh.
//!
//! The version is allocated inside an IMMEDIATE transaction (one writer at a
//! time across processes) from the higher of the ledger's newest list and the
//! file on disk, and the file is replaced before the transaction commits, so
//! versions only grow and the file on disk never goes back.

use anyhow::{Context, Result};
use kaching_core::armor;
use kaching_core::revocation::{
    check_transition, RevocationEntry, RevocationList, RevocationStatus, TransitionError,
};
use kaching_core::time::{rfc3339, Timestamp};
use kaching_core::{verify_revocation_list, DocKind, LicenseId, SecretKey, TrustedKeys};
use rusqlite::TransactionBehavior;

use crate::error::usage;
use crate::fsutil::write_atomic;
use crate::ledger::{self, Ledger, RevocationRecord};
use crate::vendor_dir::{VendorDir, REVOCATIONS_ARMORED_FILE, REVOCATIONS_FILE};

/// What the next list changes.
#[derive(Debug, Clone)]
pub enum Change {
    /// Suspend or revoke a license.
    Set {
        /// The license.
        id: LicenseId,
        /// Suspended or revoked.
        status: RevocationStatus,
        /// Why, for the customer's status page.
        reason: String,
    },
    /// Lift a suspension.
    Lift {
        /// The license.
        id: LicenseId,
    },
    /// Re-sign the same entries with a new deadline.
    Refresh,
}

impl Change {
    /// Checks the change against the current entries (core's transition
    /// rule: revocation is permanent) and applies it.
    pub fn apply(&self, entries: &mut Vec<RevocationEntry>, now: Timestamp) -> Result<()> {
        if let Some((id, to)) = self.target() {
            let from = entries.iter().find(|e| e.id == *id).map(|e| e.status);
            check_transition(from, to).map_err(|e| refused(id, e, to.is_none()))?;
            entries.retain(|e| e.id != *id);
        }
        if let Change::Set { id, status, reason } = self {
            entries.push(RevocationEntry {
                id: *id,
                status: *status,
                reason: reason.clone(),
                time: now,
            });
        }
        entries.sort_by_key(|e| e.id);
        Ok(())
    }

    /// The license this change is about and the status it asks for
    /// (`None`: no entry).
    fn target(&self) -> Option<(&LicenseId, Option<RevocationStatus>)> {
        match self {
            Change::Set { id, status, .. } => Some((id, Some(*status))),
            Change::Lift { id } => Some((id, None)),
            Change::Refresh => None,
        }
    }
}

/// A refused change in words that name the command to use instead.
fn refused(id: &LicenseId, e: TransitionError, lifting: bool) -> anyhow::Error {
    usage(match e {
        TransitionError::Permanent if lifting => format!(
            "license {id} is revoked, and revocation is permanent: issue a new license instead"
        ),
        TransitionError::Permanent => format!(
            "license {id} is already revoked (revocation is permanent): issue a new license if the customer returns"
        ),
        TransitionError::Unchanged(_) => format!(
            "license {id} is already suspended: `licensegen reinstate {id}` lifts it"
        ),
        TransitionError::NotListed => {
            format!("license {id} is not suspended: nothing to reinstate")
        }
        other => format!("license {id}: {other}"),
    })
}

/// The current list: the newer of the ledger's newest and the file on disk.
pub fn current(vendor: &VendorDir, ledger: &Ledger) -> Result<Option<RevocationList>> {
    let keys = vendor.trusted_keys()?;
    current_in(vendor, &ledger.conn, &keys)
}

fn current_in(
    vendor: &VendorDir,
    conn: &rusqlite::Connection,
    keys: &TrustedKeys,
) -> Result<Option<RevocationList>> {
    let latest = ledger::latest_revocation(conn)?;
    let from_ledger = match &latest {
        Some(rec) => Some(
            verify_revocation_list(&rec.file, keys)
                .map_err(|e| anyhow::anyhow!("the ledger's revocation list version {} does not verify ({e}): restore the ledger from backup", rec.version))?
                .list,
        ),
        None => None,
    };
    let path = vendor.path(REVOCATIONS_FILE);
    let from_file = match std::fs::read(&path) {
        // The usual case: the file is the ledger's newest list, verified above.
        Ok(bytes) if latest.as_ref().is_some_and(|r| r.file == bytes) => None,
        Ok(bytes) => Some(
            verify_revocation_list(&bytes, keys)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "{} does not verify ({e}): restore it from backup",
                        path.display()
                    )
                })?
                .list,
        ),
        Err(_) => None,
    };
    Ok(match (from_ledger, from_file) {
        (Some(a), Some(b)) => Some(if b.version > a.version { b } else { a }),
        (a, b) => a.or(b),
    })
}

/// Signs and writes the next list with `change` applied, recording it in the
/// ledger; returns the new list.
pub fn publish(
    vendor: &VendorDir,
    ledger: &mut Ledger,
    key: &SecretKey,
    change: &Change,
    expires: Option<Timestamp>,
    now: Timestamp,
) -> Result<RevocationList> {
    let keys = vendor.trusted_keys()?;
    let validity = vendor.config.revocation_validity_secs()?;
    let tx = ledger
        .conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context("cannot lock the ledger")?;
    let cur = current_in(vendor, &tx, &keys)?;
    let mut entries = cur.as_ref().map(|l| l.entries.clone()).unwrap_or_default();
    change.apply(&mut entries, now)?;
    let issued_at = now.max(cur.as_ref().map_or(0, |l| l.issued_at));
    let list = RevocationList {
        issuer: vendor.config.issuer.clone(),
        version: cur.as_ref().map_or(1, |l| l.version + 1),
        issued_at,
        expires: expires.unwrap_or(issued_at.saturating_add(validity)),
        entries,
    };
    let bytes = write_list(vendor, &list, key)?;
    ledger::insert_revocation(
        &tx,
        &RevocationRecord {
            version: list.version,
            issued_at: list.issued_at,
            expires: list.expires,
            entries: list.entries.len() as u64,
            file: bytes,
        },
    )?;
    let (id, action, detail) = match change {
        Change::Set { id, status, reason } => (
            Some(id),
            status.as_str(),
            format!("revocation list v{}: {reason}", list.version),
        ),
        Change::Lift { id } => (
            Some(id),
            "reinstated",
            format!("revocation list v{}", list.version),
        ),
        Change::Refresh => (None, "", String::new()),
    };
    if let Some(id) = id {
        ledger::add_event(&tx, id, now, action, &detail)?;
    }
    tx.commit().context("cannot commit the ledger")?;
    Ok(list)
}

/// Signs `list`, checks the signature, writes both spellings; returns the binary bytes.
pub fn write_list(vendor: &VendorDir, list: &RevocationList, key: &SecretKey) -> Result<Vec<u8>> {
    let bytes = list.sign_with(key, vendor.config.alg);
    verify_revocation_list(&bytes, &TrustedKeys::from(key.public()))
        .context("self-check of the new revocation list failed")?;
    write_atomic(&vendor.path(REVOCATIONS_FILE), &bytes, false)?;
    write_atomic(
        &vendor.path(REVOCATIONS_ARMORED_FILE),
        armor::armor(DocKind::RevocationList, &bytes).as_bytes(),
        false,
    )?;
    Ok(bytes)
}

/// One line per entry, for people.
pub fn describe(list: &RevocationList) -> String {
    let mut s = format!(
        "revocation list version {} (issuer {}), signed {}, fresh until {}\n",
        list.version,
        list.issuer,
        rfc3339(list.issued_at),
        rfc3339(list.expires)
    );
    if list.entries.is_empty() {
        s.push_str("  no licenses revoked or suspended\n");
    }
    for e in &list.entries {
        s.push_str(&format!(
            "  {}  {:<9}  {}  {}\n",
            e.id,
            e.status.as_str(),
            rfc3339(e.time),
            e.reason
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> LicenseId {
        LicenseId([n; 16])
    }

    #[test]
    fn suspend_then_lift_leaves_no_entry_and_revoke_is_final() {
        let mut entries = Vec::new();
        let set = |i, status| Change::Set {
            id: id(i),
            status,
            reason: "r".into(),
        };
        set(1, RevocationStatus::Suspended)
            .apply(&mut entries, 5)
            .unwrap();
        assert!(set(1, RevocationStatus::Suspended)
            .apply(&mut entries, 6)
            .is_err());
        Change::Lift { id: id(1) }.apply(&mut entries, 7).unwrap();
        assert!(entries.is_empty());
        assert!(Change::Lift { id: id(1) }.apply(&mut entries, 8).is_err());
        set(2, RevocationStatus::Revoked)
            .apply(&mut entries, 9)
            .unwrap();
        assert!(Change::Lift { id: id(2) }.apply(&mut entries, 10).is_err());
        assert!(set(2, RevocationStatus::Suspended)
            .apply(&mut entries, 10)
            .is_err());
    }
}
