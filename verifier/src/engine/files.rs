//! Reloading the vendor's files under the last-known-good rules: a file
//! that is broken, forged, rolled back, special (a FIFO, socket, device or
//! folder) or meant for another cluster never replaces one that works; the
//! refusal is recorded for status, logs and events. The bytes come from the
//! reader thread ([`crate::reader`]); nothing here touches the files. See
//! docs/verifier.md "Reload and last-known-good".

use std::path::Path;

use kaching_core::policy::{fit, license_change, usable_at, LicenseChange, Unusable};
use kaching_core::time::{rfc3339, Timestamp};
use kaching_core::wire::verifier::Rejection;
use kaching_core::{verify_license, VerifiedLicense};

use super::revocations::Source;
use super::{Engine, Event};
use crate::loader::{self, FileSet, LicenseBytes, Loaded};
use crate::trust::{self, Mode, Trust};

impl Engine {
    /// Records that a read of the watched file `path` has been stuck for a
    /// while (a hung network file system): shown as that file's rejection
    /// until a pass completes; what is in force stays.
    pub fn read_stalled(
        &mut self,
        file: &'static str,
        path: &Path,
        stall: std::time::Duration,
        now: Timestamp,
    ) {
        let reason = format!(
            "reading {} has not finished after {}s (a hung network file system?); \
             the last good file stays in force and decisions go on without it",
            path.display(),
            stall.as_secs()
        );
        self.stalled.insert(file);
        self.reject(file, reason, now);
        self.recompute(now);
    }

    fn reject(&mut self, file: &'static str, reason: String, now: Timestamp) {
        tracing::warn!(file, %reason, "file refused");
        let r = Rejection {
            file: file.to_string(),
            reason,
            at: rfc3339(now),
        };
        // The same refusal again (a re-check of an unchanged file) is not news.
        let seen = self
            .rejections
            .get(file)
            .is_some_and(|old| old.reason == r.reason);
        if !seen {
            self.events.push(Event::new("rejected", &r));
            self.rejections.insert(file, r);
        }
    }

    /// Whether a verified license belongs here (core's `policy::fit`).
    fn fits(&self, v: &VerifiedLicense) -> bool {
        fit(&v.license, &self.settings).is_ok()
    }

    /// Whether a verified license's dates let it be used at `now` (core's
    /// `policy::usable_at`, at the effective time: never before the mark).
    pub(crate) fn usable(&self, v: &VerifiedLicense, now: Timestamp) -> Result<(), Unusable> {
        usable_at(&v.license, &self.settings, now.max(self.trusted_time()))
    }

    /// Why `new` must not replace `old`: `new` cannot be used at `now`
    /// (expired past its grace, or not valid yet) while `old` can. A file
    /// like that never breaks a licensed cluster; when nothing usable is in
    /// force it is used as it is (the verdict then says why it denies).
    pub(crate) fn unusable_replacement(
        &self,
        new: &VerifiedLicense,
        old: Option<&VerifiedLicense>,
        now: Timestamp,
    ) -> Option<String> {
        let old = old.filter(|o| o.bytes != new.bytes)?;
        let why = self.usable(new, now).err()?;
        self.usable(old, now).ok()?;
        Some(format!(
            "{}: license {} {why}: it would not take effect, so the license in force ({}) stays; \
             ask your vendor for a current license",
            self.cfg.license.display(),
            new.license.id,
            old.license.id
        ))
    }

    /// A license kept out by [`Engine::unusable_replacement`] may become the
    /// right choice by the clock alone (its `nbf` arrives, or the license in
    /// force runs out of grace): then the files are read again and decided
    /// afresh. Called every tick.
    pub(crate) fn recheck_deferred(&mut self, now: Timestamp) {
        let Some(d) = &self.deferred else {
            return;
        };
        let changed = self.usable(d, now).is_ok()
            || self
                .license
                .as_ref()
                .is_none_or(|l| self.usable(l, now).is_err());
        if changed {
            self.deferred = None;
            self.files_written = true;
        }
    }

    /// The reader is idle again: drops the "read is stuck" rejections.
    /// Returns true when there were any: the caller then asks for a fresh
    /// read, which brings back whatever else is wrong with those files.
    pub fn read_unstalled(&mut self, now: Timestamp) -> bool {
        if self.stalled.is_empty() {
            return false;
        }
        for file in std::mem::take(&mut self.stalled) {
            self.rejections.remove(file);
        }
        self.recompute(now);
        true
    }

    /// Applies one pass of the reader thread: verifies what was read and
    /// puts it in force under the last-known-good rules. A pass that began
    /// before the engine itself wrote a watched file is stale and ignored
    /// (a fresh one was requested).
    pub fn apply_files(&mut self, set: FileSet, now: Timestamp) {
        if set.seq < self.files_stale_before {
            return;
        }
        // A pass came back: reads are no longer stuck.
        for file in std::mem::take(&mut self.stalled) {
            self.rejections.remove(file);
        }
        let before = (
            self.license.as_ref().map(|l| l.bytes.clone()),
            self.revocations.as_ref().map(|r| r.list.version),
        );
        self.fingerprint = set.fingerprint;
        self.reload_trust(set.keys, set.roots, now);
        // Re-verified under the keys now in force (restore_revocations):
        // a rotation that removed a revoker withdraws what it signed.
        self.revocations = None;
        self.reload_revocations(set.revocations, now);
        self.reload_license(&set.license, now);
        let after = (
            self.license.as_ref().map(|l| l.bytes.clone()),
            self.revocations.as_ref().map(|r| r.list.version),
        );
        if before != after {
            self.events
                .push(Event::reload(self.license.as_ref(), after.1, None));
        }
        self.recompute(now);
    }

    /// Establishes what is trusted from this pass: the pinned root (or, in
    /// a development build, the trusted-keys file: a root or a PEM bundle),
    /// then every newer root from the state database and the roots folder,
    /// one version at a time. Roots taken are recorded, so a restart or a
    /// deleted file never goes back to an older root.
    fn reload_trust(
        &mut self,
        read: Loaded<Vec<u8>>,
        roots: Vec<(std::path::PathBuf, Loaded<Vec<u8>>)>,
        now: Timestamp,
    ) {
        let path = self.cfg.trusted_keys.clone();
        let mut candidates: Vec<Vec<u8>> = match self.db.roots() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot read the recorded roots");
                Vec::new()
            }
        };
        let mut folder_problems = Vec::new();
        for (_, r) in roots {
            match r {
                Loaded::Good(b) => candidates.push(b),
                Loaded::Rejected(why) => folder_problems.push(why),
                Loaded::Missing => {}
            }
        }
        let start = match (self.pinned.clone(), read) {
            (Some(pinned), read) => {
                match read {
                    Loaded::Good(b) if trust::is_root(&b) => {
                        candidates.push(b);
                        self.rejections.remove("trusted_keys");
                    }
                    Loaded::Good(_) => self.reject(
                        "trusted_keys",
                        format!(
                            "{} holds vendor keys, which this build ignores: its trust comes from the root \
                             built in, and keys count only through it (newer roots go in {})",
                            path.display(),
                            loader::roots_folder(&self.cfg.trusted_keys).display()
                        ),
                        now,
                    ),
                    Loaded::Rejected(why) => self.reject("trusted_keys", why, now),
                    Loaded::Missing => {
                        self.rejections.remove("trusted_keys");
                    }
                }
                (Mode::Pinned, pinned)
            }
            (None, Loaded::Good(b)) if trust::is_root(&b) => match trust::verify_pinned(&b) {
                Ok(v) => {
                    self.rejections.remove("trusted_keys");
                    (Mode::Development, v)
                }
                Err(e) => {
                    self.reject("trusted_keys", format!("{}: {e:#}", path.display()), now);
                    return;
                }
            },
            (None, read) => {
                match loader::keys_from(&path, read) {
                    Loaded::Good(k) => {
                        self.trust = Some(Trust::from_keys(k));
                        self.rejections.remove("trusted_keys");
                    }
                    Loaded::Missing => {
                        if self.trust.is_some() {
                            let why = format!(
                                "trusted keys file {} disappeared; the keys loaded earlier stay in force",
                                path.display()
                            );
                            self.reject("trusted_keys", why, now);
                        }
                    }
                    Loaded::Rejected(why) => self.reject("trusted_keys", why, now),
                }
                return;
            }
        };
        let (mode, start) = start;
        let (chain, advanced) = trust::walk(start, candidates.iter().map(Vec::as_slice), now);
        self.record_roots(&chain);
        folder_problems.extend(advanced.refused);
        if folder_problems.is_empty() {
            self.rejections.remove("roots");
        } else {
            self.reject("roots", folder_problems.join("; "), now);
        }
        let before = self.trust.as_ref().and_then(Trust::root_version);
        let t = Trust::from_chain(mode, chain);
        let after = t.root_version();
        if before != after {
            tracing::info!(root = ?after, trust = mode.as_str(), "root of trust in force");
        }
        self.trust = Some(t);
    }

    /// Records each root of `chain` the first time it is taken (the floor
    /// reset, too, happens once: when the rotation carrying it is taken).
    fn record_roots(&mut self, chain: &kaching_core::root::TrustChain) {
        let recorded = match self.db.latest_root_version() {
            Ok(v) => v.unwrap_or(0),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot read the recorded roots");
                return;
            }
        };
        for v in chain.walked().iter().skip(1) {
            if v.root.version <= recorded {
                continue;
            }
            match self
                .db
                .store_root(v.root.version, &v.bytes, v.root.revocation_floor)
            {
                Ok(()) if v.root.revocation_floor.is_some() => self.revocations = None,
                Ok(()) => {}
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot record a root"),
            }
        }
    }

    /// Newer roots from the relay: taken through the chain from the root in
    /// force, recorded like files, and put in force at once. Returns the
    /// versions taken.
    pub(crate) fn extend_roots(
        &mut self,
        roots: &[Vec<u8>],
        now: Timestamp,
    ) -> Result<Vec<u64>, String> {
        let Some(t) = self.trust.as_ref() else {
            return Err("no root of trust in force to extend".into());
        };
        let Some(mut chain) = t.chain.clone() else {
            return Err("trust comes from a key bundle, not a root: roots cannot extend it".into());
        };
        let mode = t.mode;
        let advanced = chain.update(roots.iter().map(Vec::as_slice), now);
        if advanced.versions.is_empty() {
            return if advanced.refused.is_empty() {
                Ok(Vec::new())
            } else {
                Err(advanced.refused.join("; "))
            };
        }
        self.record_roots(&chain);
        self.trust = Some(Trust::from_chain(mode, chain));
        // Re-verify what is in force under the new keys.
        if let Some(trust) = self.trust.clone() {
            self.revocations = None;
            self.restore_revocations(&trust.revokers);
            // The license in force is checked as a file pass checks it, so
            // the reason is the same whichever way the root arrived.
            if let Some(l) = &self.license {
                if let Err(why) = loader::verify_license_bytes(&self.cfg.license, &l.bytes, &trust)
                {
                    self.keep_or_fail(None, why, now);
                }
            }
        }
        tracing::info!(versions = ?advanced.versions, "roots from the relay taken");
        self.recompute(now);
        Ok(advanced.versions)
    }

    fn reload_revocations(&mut self, read: Loaded<Vec<u8>>, now: Timestamp) {
        let Some(trust) = self.trust.clone() else {
            return;
        };
        // The accepted list lives in the database: deleting or rolling back
        // the file never lifts a revocation.
        self.restore_revocations(&trust.revokers);
        match loader::revocations_from(&self.cfg.revocations, read, &trust) {
            // The refused file is gone: so is the refusal (what was
            // accepted stays, from the database).
            Loaded::Missing => {
                self.rejections.remove("revocations");
            }
            Loaded::Rejected(why) => self.reject("revocations", why, now),
            Loaded::Good(v) => {
                if let Err(e) = self.accept_revocations(v, Source::File, now) {
                    let why = format!("{}: {e}", self.cfg.revocations.display());
                    self.reject("revocations", why, now);
                }
            }
        }
    }

    fn reload_license(&mut self, read: &LicenseBytes, now: Timestamp) {
        let Some(trust) = self.trust.clone() else {
            self.license = None;
            self.license_problem = Some(match self.rejections.get("trusted_keys") {
                Some(r) => format!("no usable trusted vendor keys: {}", r.reason),
                None => format!(
                    "no trusted vendor keys at {}: copy the vendor's public key there",
                    self.cfg.trusted_keys.display()
                ),
            });
            return;
        };
        let from_file = loader::license_from(
            &self.cfg.license,
            read,
            &trust,
            |v| self.fits(v),
            |v| self.usable(v, now).is_ok(),
        );
        self.deferred = None;
        // The last good license must still verify under the keys now trusted:
        // removing a vendor key withdraws what it signed. Usually it is the
        // file just verified: its check is not done twice.
        let last_good = self
            .license
            .as_ref()
            .map(|l| l.bytes.clone())
            .or_else(|| self.db.last_good_license().ok().flatten())
            .and_then(|b| match &from_file {
                Loaded::Good(v) if v.bytes == b => Some(v.clone()),
                _ => verify_license(&b, &trust.issuers).ok(),
            })
            .filter(|v| self.fits(v));
        match from_file {
            Loaded::Good(v) if self.fits(&v) => {
                if let Some(why) = self.unusable_replacement(&v, last_good.as_ref(), now) {
                    self.deferred = Some(v);
                    self.keep_or_fail(last_good, why, now);
                    return;
                }
                let change = last_good
                    .as_ref()
                    .filter(|old| old.bytes != v.bytes)
                    .map(|old| license_change(&old.license, &v.license));
                if let Some(c) = change.as_ref().filter(|c| c.downgrade) {
                    if self.cfg.hold_downgrades && !self.downgrade_accepted(&v.bytes) {
                        self.hold_downgrade(v, c.clone(), last_good);
                        return;
                    }
                }
                self.put_in_force(v, change, now);
            }
            Loaded::Good(v) => {
                let why = match fit(&v.license, &self.settings) {
                    // Which state folder this cluster's id came from: a
                    // command run with another state_dir (a relative path
                    // from another folder) is another cluster.
                    Err(misfit @ kaching_core::policy::Misfit::Cluster { .. }) => format!(
                        "{misfit} (license {}; this cluster's id comes from the cluster key in state folder {})",
                        v.license.id,
                        self.cfg.state_dir.display()
                    ),
                    Err(misfit) => format!("{misfit} (license {})", v.license.id),
                    Ok(()) => format!("license {} does not fit this verifier", v.license.id),
                };
                self.keep_or_fail(last_good, why, now);
            }
            Loaded::Rejected(why) => self.keep_or_fail(last_good, why, now),
            Loaded::Missing => {
                if self.license.is_some() {
                    tracing::warn!(path = %self.cfg.license.display(), "license file removed");
                }
                self.license = None;
                self.license_problem = None;
                self.rejections.remove("license");
            }
        }
    }

    /// `hold_downgrades`: `v` takes something away and nobody accepted it
    /// yet. The license before it stays in force; status, events and the
    /// state database say what waits (`kaching-verifier accept-downgrade`).
    fn hold_downgrade(
        &mut self,
        v: VerifiedLicense,
        change: LicenseChange,
        last_good: Option<VerifiedLicense>,
    ) {
        let new = self.pending.as_ref().map(|(p, _)| &p.bytes) != Some(&v.bytes);
        if new {
            let summary = change.summary();
            tracing::warn!(license = %v.license.id, %summary, "downgrade held until `kaching-verifier accept-downgrade`");
            if let Err(e) = self.db.set_pending_downgrade(&v.bytes, &summary) {
                tracing::warn!(%e, "cannot record the held downgrade");
            }
            self.events.push(Event::new("downgrade_held", &change));
        }
        self.pending = Some((v, change));
        self.rejections.remove("license");
        self.license = last_good;
        self.license_problem = None;
    }

    /// Puts a verified license that fits in force; `change` is what it
    /// changes from the one before (`None`: the same, or none before).
    fn put_in_force(&mut self, v: VerifiedLicense, change: Option<LicenseChange>, now: Timestamp) {
        self.release_pending();
        if self.license.as_ref().map(|l| &l.bytes) != Some(&v.bytes) {
            if let Err(e) = self.db.store_license(&v.bytes) {
                tracing::warn!(%e, "cannot remember the license as last-known-good");
            }
            tracing::info!(license = %v.license.id, tier = %v.license.tier, "license in force");
            if let Some(c) = change {
                if c.downgrade {
                    tracing::warn!(change = %c.summary(), "the new license is a downgrade");
                }
                self.events.push(Event::new("license_changed", &c));
                self.license_change = Some((c, now));
            }
        }
        self.rejections.remove("license");
        self.license = Some(v);
        self.license_problem = None;
    }

    /// `accept-downgrade` ran (it writes the state database): the held
    /// license goes into force without waiting for its file to change.
    pub(crate) fn take_accepted_downgrade(&mut self, now: Timestamp) {
        let Some((v, _)) = &self.pending else {
            return;
        };
        if !self.downgrade_accepted(&v.bytes) {
            return;
        }
        if let Some((v, c)) = self.pending.clone() {
            if let Some(why) = self.unusable_replacement(&v, self.license.as_ref(), now) {
                self.release_pending();
                self.reject("license", why, now);
                return;
            }
            tracing::info!(license = %v.license.id, "held downgrade accepted");
            // `put_in_force` clears the record of the held downgrade.
            self.put_in_force(v, Some(c), now);
        }
    }

    /// Whether an operator accepted exactly these license bytes.
    fn downgrade_accepted(&self, bytes: &[u8]) -> bool {
        matches!(self.db.accepted_downgrade(), Ok(Some(b)) if b == bytes)
    }

    /// No downgrade waits any more (taken, or the file changed).
    fn release_pending(&mut self) {
        if self.pending.take().is_some() {
            if let Err(e) = self.db.clear_pending_downgrade() {
                tracing::warn!(%e, "cannot clear the held downgrade");
            }
        }
    }

    fn keep_or_fail(&mut self, last_good: Option<VerifiedLicense>, why: String, now: Timestamp) {
        match last_good {
            Some(v) => {
                self.reject("license", why, now);
                self.license = Some(v);
                self.license_problem = None;
            }
            None => {
                self.reject("license", why.clone(), now);
                self.license = None;
                self.license_problem = Some(why);
            }
        }
    }
}
