//! Admission: whether the relay may bind a license to the cluster asking,
//! judged on the license itself and then on the clusters already holding it.

use std::fmt;

use super::Hold;
use crate::license::License;
use crate::revocation::{RevocationList, RevocationStatus};
use crate::time::{rfc3339, Timestamp};

/// Why the relay refuses to bind a license to a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal<'a> {
    /// The license is bound to another cluster than the one asking.
    BoundToAnotherCluster {
        /// The cluster the license is bound to.
        bound: &'a str,
        /// The cluster asking.
        cluster: &'a str,
    },
    /// Past `exp + grace`.
    Expired,
    /// Revoked in the relay's current list. (A suspended license is
    /// admitted: the answer's notice tells the cluster.)
    Revoked {
        /// The vendor's reason.
        reason: &'a str,
    },
    /// Another cluster holds the license and has not been silent for its
    /// whole grace while the relay was serving.
    InUse {
        /// The holding cluster.
        holder: &'a str,
        /// Its hold.
        hold: Hold,
        /// Since when the relay has been serving without a break.
        serving_since: Timestamp,
    },
}

impl Refusal<'_> {
    /// The machine-readable code of the relay's error body.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::BoundToAnotherCluster { .. } => "bound_to_another_cluster",
            Refusal::Expired => "license_expired",
            Refusal::Revoked { .. } => "license_revoked",
            Refusal::InUse { .. } => "license_in_use",
        }
    }

    /// True when another cluster stands in the way (HTTP 409); false when the
    /// license itself may not be bound here (HTTP 403).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Refusal::InUse { .. })
    }

    /// What went wrong and what to do next, naming `license_id`.
    pub fn message(&self, license_id: impl fmt::Display) -> String {
        match self {
            Refusal::BoundToAnotherCluster { bound, cluster } => format!(
                "license {license_id} is bound to cluster {bound}, not {cluster}: ask the vendor for a license bound to this cluster"
            ),
            Refusal::Expired => {
                format!("license {license_id} has expired (and its grace ended): renew it")
            }
            Refusal::Revoked { reason } => {
                format!("license {license_id} is revoked ({reason}): contact the vendor")
            }
            Refusal::InUse {
                holder,
                hold,
                serving_since,
            } => {
                let restarted = if *serving_since > hold.last_seen {
                    format!(
                        "; the relay restarted at {}, which gave the holder a full grace window",
                        rfc3339(*serving_since)
                    )
                } else {
                    String::new()
                };
                format!(
                    "license {license_id} is in use by cluster {holder} (last seen {}): deactivate it there (a clean shutdown of its verifier does), or wait until {} when it counts as stale if it stays silent{restarted}",
                    rfc3339(hold.last_seen),
                    rfc3339(hold.frees_at(*serving_since)),
                )
            }
        }
    }
}

/// May `license` be bound to `cluster` at relay time `now`, given the
/// relay's current revocation list? Checked in this order: the license's own
/// cluster binding, expiry (`exp + grace`), revocation. The other clusters
/// holding it are [`take_over`]'s to judge.
pub fn admit<'a>(
    license: &'a License,
    cluster: &'a str,
    revocations: Option<&'a RevocationList>,
    now: Timestamp,
) -> Result<(), Refusal<'a>> {
    if let Some(bound) = license.cluster.as_deref().filter(|b| *b != cluster) {
        return Err(Refusal::BoundToAnotherCluster { bound, cluster });
    }
    if now >= license.expires_at.saturating_add(license.grace) {
        return Err(Refusal::Expired);
    }
    let revoked = revocations
        .and_then(|r| r.entry(&license.id))
        .filter(|e| e.status == RevocationStatus::Revoked);
    if let Some(e) = revoked {
        return Err(Refusal::Revoked { reason: &e.reason });
    }
    Ok(())
}

/// Seconds of silence after which a cluster's hold on `license` lapses: the
/// license's offline grace, or the relay's default for a license without a
/// heartbeat policy.
pub fn hold_grace(license: &License, relay_default: u64) -> u64 {
    license.heartbeat.map_or(relay_default, |h| h.offline_grace)
}

/// Judges the other clusters holding a license that a new cluster asks for:
/// every holder silent for its whole grace is displaced (their ids are
/// returned, in order); the first that is still live refuses the takeover.
pub fn take_over(
    holders: &[(String, Hold)],
    serving_since: Timestamp,
    now: Timestamp,
) -> Result<Vec<&str>, Refusal<'_>> {
    holders
        .iter()
        .map(|(holder, hold)| {
            if hold.is_stale(serving_since, now) {
                Ok(holder.as_str())
            } else {
                Err(Refusal::InUse {
                    holder,
                    hold: *hold,
                    serving_since,
                })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::hold::tests::{hold, GRACE};
    use crate::license::sample;
    use crate::revocation::RevocationEntry;

    const HERE: &str = "clusterhereaaaaa";
    const OTHER: &str = "clusterotherbbbb";

    fn list(status: RevocationStatus) -> RevocationList {
        let l = sample();
        RevocationList {
            issuer: l.issuer,
            version: 1,
            issued_at: 100,
            expires: 1_000,
            entries: vec![RevocationEntry {
                id: l.id,
                status,
                reason: "unpaid".into(),
                time: 100,
            }],
        }
    }

    #[test]
    fn unbound_or_bound_here_is_admitted_until_grace_ends() {
        // The sample expires at 200; give it 50 s of grace.
        let mut l = License {
            grace: 50,
            ..sample()
        };
        assert_eq!(admit(&l, HERE, None, 249), Ok(()));
        l.cluster = Some(HERE.into());
        assert_eq!(admit(&l, HERE, None, 249), Ok(()));
        assert_eq!(admit(&l, HERE, None, 250), Err(Refusal::Expired));
        assert_eq!(
            Refusal::Expired.message(l.id),
            "license 07070707-0707-0707-0707-070707070707 has expired (and its grace ended): renew it"
        );
    }

    #[test]
    fn bound_to_another_cluster_is_refused_before_anything_else() {
        let l = License {
            cluster: Some(OTHER.into()),
            ..sample()
        };
        let revoked = list(RevocationStatus::Revoked);
        let r = admit(&l, HERE, Some(&revoked), 10_000).expect_err("bound elsewhere");
        assert_eq!(
            r,
            Refusal::BoundToAnotherCluster {
                bound: OTHER,
                cluster: HERE
            }
        );
        assert_eq!(
            (r.code(), r.is_conflict()),
            ("bound_to_another_cluster", false)
        );
        assert_eq!(
            r.message("L"),
            format!("license L is bound to cluster {OTHER}, not {HERE}: ask the vendor for a license bound to this cluster")
        );
    }

    #[test]
    fn revoked_is_refused_suspended_is_admitted() {
        let l = sample();
        let revoked = list(RevocationStatus::Revoked);
        let r = admit(&l, HERE, Some(&revoked), 150).expect_err("revoked");
        assert_eq!(r, Refusal::Revoked { reason: "unpaid" });
        assert_eq!((r.code(), r.is_conflict()), ("license_revoked", false));
        assert_eq!(
            r.message("L"),
            "license L is revoked (unpaid): contact the vendor"
        );
        let suspended = list(RevocationStatus::Suspended);
        assert_eq!(admit(&l, HERE, Some(&suspended), 150), Ok(()));
        // Expiry is judged before revocation.
        assert_eq!(admit(&l, HERE, Some(&revoked), 200), Err(Refusal::Expired));
    }

    #[test]
    fn hold_grace_is_the_licenses_offline_grace_or_the_relays_default() {
        let mut l = sample();
        assert_eq!(hold_grace(&l, 600), 600);
        l.heartbeat = Some(crate::license::HeartbeatPolicy {
            interval: 60,
            offline_grace: 7_200,
        });
        assert_eq!(hold_grace(&l, 600), 7_200);
    }

    #[test]
    fn stale_holders_are_displaced_a_live_one_refuses() {
        let holders = vec![
            ("stale".to_string(), hold(1_000)),
            ("also-stale".to_string(), hold(2_000)),
        ];
        assert_eq!(
            take_over(&holders, 0, 2_000 + GRACE),
            Ok(vec!["stale", "also-stale"])
        );
        assert_eq!(take_over(&[], 0, 0), Ok(vec![]));
        let live = vec![
            ("stale".to_string(), hold(1_000)),
            ("live".to_string(), hold(5_000)),
        ];
        let r = take_over(&live, 0, 5_000 + GRACE - 1).expect_err("live holder");
        assert_eq!(
            r,
            Refusal::InUse {
                holder: "live",
                hold: hold(5_000),
                serving_since: 0
            }
        );
        assert_eq!((r.code(), r.is_conflict()), ("license_in_use", true));
        assert_eq!(
            r.message("L"),
            "license L is in use by cluster live (last seen 1970-01-01T01:23:20Z): deactivate it there (a clean shutdown of its verifier does), or wait until 1970-01-01T02:23:20Z when it counts as stale if it stays silent"
        );
    }

    #[test]
    fn in_use_after_a_restart_says_the_holder_got_a_fresh_window() {
        let holders = vec![("live".to_string(), hold(5_000))];
        let r = take_over(&holders, 20_000, 20_000 + GRACE - 1).expect_err("fresh window");
        assert_eq!(
            r.message("L"),
            "license L is in use by cluster live (last seen 1970-01-01T01:23:20Z): deactivate it there (a clean shutdown of its verifier does), or wait until 1970-01-01T06:33:20Z when it counts as stale if it stays silent; the relay restarted at 1970-01-01T05:33:20Z, which gave the holder a full grace window"
        );
        assert_eq!(
            take_over(&holders, 20_000, 20_000 + GRACE),
            Ok(vec!["live"])
        );
    }
}
