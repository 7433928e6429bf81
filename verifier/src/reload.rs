//! Reloading the vendor's files under the last-known-good rules: a file
//! that is broken, forged, rolled back or meant for another cluster never
//! replaces one that works; the refusal is recorded for status, logs and
//! events. See docs/verifier.md "Reload and last-known-good".

use kaching_core::revocation::{accept_revocation_list, Acceptance};
use kaching_core::time::{rfc3339, Timestamp};
use kaching_core::{verify_license, verify_revocation_list, VerifiedLicense};

use crate::engine::{Engine, Event, Rejection};
use crate::loader::{self, Loaded};

impl Engine {
    /// Reloads when a watched file's identity, size or mtime changed; returns
    /// whether it did. The watcher's events go through here because reading a
    /// file is itself an event (inotify reports opens): without this check
    /// each reload would trigger the next.
    pub fn reload_if_changed(&mut self, now: Timestamp) -> bool {
        let fp = loader::fingerprint(&[
            &self.cfg.license,
            &self.cfg.trusted_keys,
            &self.cfg.revocations,
        ]);
        if fp == self.fingerprint {
            return false;
        }
        self.reload(now);
        true
    }

    fn reject(&mut self, file: &'static str, reason: String, now: Timestamp) {
        tracing::warn!(file, %reason, "file refused");
        let r = Rejection {
            file,
            reason,
            at: rfc3339(now),
        };
        // The same refusal again (a re-check of an unchanged file) is not news.
        let seen = self
            .rejections
            .get(file)
            .is_some_and(|old| old.reason == r.reason);
        if !seen {
            self.events.push(Event {
                kind: "rejected",
                data: serde_json::to_string(&r).unwrap_or_default(),
            });
            self.rejections.insert(file, r);
        }
    }

    fn fits(&self, v: &VerifiedLicense) -> bool {
        v.license.audience == self.settings.audience
            && v.license
                .cluster
                .as_ref()
                .is_none_or(|c| Some(c) == self.settings.cluster_id.as_ref())
    }

    /// Re-reads every watched file and applies the last-known-good rules.
    pub fn reload(&mut self, now: Timestamp) {
        let before = (
            self.license.as_ref().map(|l| l.bytes.clone()),
            self.revocations.as_ref().map(|r| r.list.version),
        );
        self.fingerprint = loader::fingerprint(&[
            &self.cfg.license,
            &self.cfg.trusted_keys,
            &self.cfg.revocations,
        ]);
        self.reload_keys(now);
        self.reload_revocations(now);
        self.reload_license(now);
        let after = (
            self.license.as_ref().map(|l| l.bytes.clone()),
            self.revocations.as_ref().map(|r| r.list.version),
        );
        if before != after {
            self.events.push(Event {
                kind: "reload",
                data: serde_json::json!({
                    "license_id": self.license.as_ref().map(|l| l.license.id.to_string()),
                    "revocation_version": after.1,
                })
                .to_string(),
            });
        }
        self.recompute(now);
    }

    fn reload_keys(&mut self, now: Timestamp) {
        match loader::load_keys(&self.cfg.trusted_keys) {
            Loaded::Good(k) => {
                self.keys = Some(k);
                self.rejections.remove("trusted_keys");
            }
            Loaded::Missing => {
                if self.keys.is_some() {
                    let why = format!(
                        "trusted keys file {} disappeared; the keys loaded earlier stay in force",
                        self.cfg.trusted_keys.display()
                    );
                    self.reject("trusted_keys", why, now);
                }
            }
            Loaded::Rejected(why) => self.reject("trusted_keys", why, now),
        }
    }

    fn reload_revocations(&mut self, now: Timestamp) {
        let Some(keys) = self.keys.clone() else {
            return;
        };
        // The accepted list lives in the database: deleting or rolling back
        // the file never lifts a revocation.
        let stored = self.db.revocations().ok().flatten();
        if self.revocations.is_none() {
            if let Some((_, bytes)) = &stored {
                match verify_revocation_list(bytes, &keys) {
                    Ok(v) => self.revocations = Some(v),
                    Err(e) => tracing::warn!(%e, "stored revocation list no longer verifies"),
                }
            }
        }
        match loader::load_revocations(&self.cfg.revocations, &keys) {
            Loaded::Missing => {}
            Loaded::Rejected(why) => self.reject("revocations", why, now),
            Loaded::Good(v) => {
                let highest = stored.as_ref().map(|(h, _)| *h);
                let cur = stored.as_ref().map(|(_, b)| b.as_slice());
                match accept_revocation_list(&v, highest, cur) {
                    Ok(Acceptance::Same) => {
                        self.rejections.remove("revocations");
                        if self.revocations.is_none() {
                            self.revocations = Some(v);
                        }
                    }
                    Ok(Acceptance::Newer) => {
                        match self.db.store_revocations(v.list.version, &v.bytes) {
                            Ok(()) => {
                                tracing::info!(
                                    version = v.list.version,
                                    "revocation list accepted"
                                );
                                self.rejections.remove("revocations");
                                self.revocations = Some(v);
                            }
                            Err(e) => self.reject(
                                "revocations",
                                format!(
                                    "cannot record revocation list in the state database: {e:#}"
                                ),
                                now,
                            ),
                        }
                    }
                    Err(e) => self.reject(
                        "revocations",
                        format!("{}: {e}", self.cfg.revocations.display()),
                        now,
                    ),
                }
            }
        }
    }

    fn reload_license(&mut self, now: Timestamp) {
        let Some(keys) = self.keys.clone() else {
            self.license = None;
            self.license_problem = Some(format!(
                "no trusted vendor keys at {}: copy the vendor's public key there",
                self.cfg.trusted_keys.display()
            ));
            return;
        };
        // The last good license must still verify under the keys now trusted:
        // removing a vendor key withdraws what it signed.
        let last_good = self
            .license
            .as_ref()
            .map(|l| l.bytes.clone())
            .or_else(|| self.db.last_good_license().ok().flatten())
            .and_then(|b| verify_license(&b, &keys).ok())
            .filter(|v| self.fits(v));
        match loader::load_license(&self.cfg.license, &keys, |v| self.fits(v)) {
            Loaded::Good(v) if self.fits(&v) => {
                if self.license.as_ref().map(|l| &l.bytes) != Some(&v.bytes) {
                    if let Err(e) = self.db.store_license(&v.bytes) {
                        tracing::warn!(%e, "cannot remember the license as last-known-good");
                    }
                    tracing::info!(license = %v.license.id, tier = %v.license.tier, "license in force");
                }
                self.rejections.remove("license");
                self.license = Some(v);
                self.license_problem = None;
            }
            Loaded::Good(v) => {
                let why = match &v.license.cluster {
                    Some(c) if Some(c) != self.settings.cluster_id.as_ref() => format!(
                        "license {} is bound to cluster {c}, this is cluster {}: send this cluster's activation request to your vendor",
                        v.license.id, self.identity.cluster_id
                    ),
                    _ => format!(
                        "license {} is for product {:?}, this verifier guards {:?}",
                        v.license.id, v.license.audience, self.settings.audience
                    ),
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
