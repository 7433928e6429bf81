//! The one path a revocation list takes into force, whichever way it
//! arrived (the watched file or the relay): rollback rules against the
//! high-water mark in the state database (`kaching_core::revocation`),
//! recorded there before it counts, so deleting or rolling back the file
//! never lifts a revocation. Callers verify the signature first.

use kaching_core::revocation::{accept_revocation_list, Acceptance};
use kaching_core::time::Timestamp;
use kaching_core::{verify_revocation_list, TrustedKeys, VerifiedRevocationList};

use super::Engine;

/// Where a revocation list came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The configured revocations file.
    File,
    /// The relay (connected mode); mirrored to the file once accepted.
    Relay,
}

impl Engine {
    /// Puts the list recorded in the state database in force when none is
    /// (a start, or keys that arrived late), provided it still verifies
    /// under `keys`.
    pub(crate) fn restore_revocations(&mut self, keys: &TrustedKeys) {
        if self.revocations.is_some() {
            return;
        }
        match self.db.revocations() {
            Ok(Some((_, bytes))) => match verify_revocation_list(&bytes, keys) {
                Ok(v) => self.revocations = Some(v),
                Err(e) => tracing::warn!(%e, "stored revocation list no longer verifies"),
            },
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot read the stored revocation list")
            }
        }
    }

    /// Accepts a verified list: `Ok(true)` when it is newer and now in
    /// force, `Ok(false)` when it is the list already recorded, `Err` with
    /// the reason when it is refused (a rollback, a different list under a
    /// used version, or a database that cannot record it).
    pub(crate) fn accept_revocations(
        &mut self,
        v: VerifiedRevocationList,
        source: Source,
        _now: Timestamp,
    ) -> Result<bool, String> {
        let stored = self
            .db
            .revocations()
            .map_err(|e| format!("cannot read the recorded revocation list: {e:#}"))?;
        // After a root rotation reset it, the floor stands in for the mark.
        let floor = self
            .db
            .revocation_floor()
            .map_err(|e| format!("cannot read the revocation floor: {e:#}"))?;
        let highest = stored.as_ref().map(|(h, _)| *h).or(floor);
        let current = stored.as_ref().map(|(_, b)| b.as_slice());
        match accept_revocation_list(&v, highest, current).map_err(|e| e.to_string())? {
            Acceptance::Same => {
                if source == Source::File {
                    self.rejections.remove("revocations");
                }
                if self.revocations.is_none() {
                    self.revocations = Some(v);
                }
                Ok(false)
            }
            Acceptance::Newer => {
                let version = v.list.version;
                self.db.store_revocations(version, &v.bytes).map_err(|e| {
                    format!("cannot record the revocation list in the state database: {e:#}")
                })?;
                tracing::info!(version, ?source, "revocation list accepted");
                match source {
                    Source::File => {
                        self.rejections.remove("revocations");
                    }
                    // Mirror it to the file so a restart (or an operator) sees
                    // the list in force there too; the database copy is what counts.
                    Source::Relay => {
                        match kaching_kit::fs::write_atomic(&self.cfg.revocations, &v.bytes, false)
                        {
                            Ok(()) => {
                                // A read that began before this write is stale.
                                self.files_written = true;
                                self.rejections.remove("revocations");
                            }
                            Err(e) => tracing::warn!(%e, path = %self.cfg.revocations.display(),
                            "cannot mirror the relay's revocation list to the revocations file; it is in force from the state database"),
                        }
                    }
                }
                self.revocations = Some(v);
                Ok(true)
            }
        }
    }
}
