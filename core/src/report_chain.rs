//! The chain of a cluster's usage reports, as the vendor checks it on import
//! (docs/threat-model.md, "Rollback of the state database").
//!
//! Each chained report names its sequence number and the hash of the report
//! before it, and carries counters and a trusted-time mark that only grow.
//! Offline, nothing stops a customer from restoring an old `state.db` or
//! cloning a cluster; what this module does is make it show: the reports the
//! vendor already holds are the floor, and a new report that contradicts them
//! is flagged. Pure: it gets what the ledger holds and the new report.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::clock_reset::{self, ClockReset, VerifiedClockReset};
use crate::cluster::UsageReport;
use crate::heartbeat::ChainHead;
use crate::time::Timestamp;

/// What the chain check needs of one report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Sequence number.
    pub seq: u64,
    /// SHA-256 of the report's binary bytes.
    pub hash: [u8; 32],
    /// The previous report's hash (`None` for the first).
    pub prev: Option<[u8; 32]>,
    /// The verifier's trusted-time mark when it wrote the report.
    pub trusted_time: Timestamp,
    /// metric → bucket → value.
    pub counters: BTreeMap<String, BTreeMap<String, u64>>,
}

impl Link {
    /// The link of a chained report; `None` for an unchained (older) one.
    pub fn of(report: &UsageReport, hash: [u8; 32]) -> Option<Link> {
        let c = report.chain.as_ref()?;
        Some(Link {
            seq: c.seq,
            hash,
            prev: c.prev,
            trusted_time: c.trusted_time,
            counters: report.counters.clone(),
        })
    }
}

/// Something wrong with the chain, seen when a report is imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// Reports between `after` and `before` (exclusive) never reached the
    /// vendor. Nothing is lost (each report carries everything not yet
    /// acknowledged), but a withheld report is one the vendor never saw.
    Gap {
        /// The highest sequence number imported below the new report (0: none).
        after: u64,
        /// The new report's sequence number.
        before: u64,
    },
    /// Two different reports claim the same place in the chain: the state
    /// database was restored from a backup, or the cluster was cloned.
    Fork {
        /// Where the chain splits.
        seq: u64,
    },
    /// A counter is lower than in a report earlier in the chain.
    CounterDown {
        /// The metric.
        metric: String,
        /// The period bucket.
        bucket: String,
        /// The earlier report.
        earlier_seq: u64,
        /// Its value there.
        earlier: u64,
        /// The later report.
        later_seq: u64,
        /// The value there.
        later: u64,
    },
    /// The trusted-time mark is lower than in a report earlier in the chain.
    TimeBack {
        /// The earlier report.
        earlier_seq: u64,
        /// Its mark.
        earlier: Timestamp,
        /// The later report.
        later_seq: u64,
        /// Its mark.
        later: Timestamp,
    },
    /// A heartbeat says the cluster's last report is older than one an
    /// earlier heartbeat named: its state database was restored.
    HeadBack {
        /// The report an earlier heartbeat named as the last.
        earlier_seq: u64,
        /// The report this heartbeat names.
        later_seq: u64,
    },
    /// A heartbeat signed after the last accepted one reuses its sequence
    /// number or one below it: the cluster's heartbeat counter went back
    /// (state database restored, or a clone beating with the same key).
    BeatBack {
        /// The last sequence number accepted.
        last_seq: u64,
        /// The one this heartbeat carries.
        seq: u64,
    },
    /// A cluster that sent its chain head before sends none now: an older
    /// verifier runs there, or something in between strips the relay's
    /// announcement that it reads chain heads.
    HeadWithheld {
        /// The report the last chain head named.
        last_seq: u64,
    },
}

impl Finding {
    /// A short name for logs, metrics and the relay's `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Finding::Gap { .. } => "gap",
            Finding::Fork { .. } => "fork",
            Finding::CounterDown { .. } => "counter_down",
            Finding::TimeBack { .. } => "time_back",
            Finding::HeadBack { .. } => "head_back",
            Finding::BeatBack { .. } => "beat_back",
            Finding::HeadWithheld { .. } => "head_withheld",
        }
    }

    /// True for the signs of a rollback (fork, counter or mark going down);
    /// false for a gap, which also follows from a report that was lost.
    pub fn is_rollback(&self) -> bool {
        !matches!(self, Finding::Gap { .. } | Finding::HeadWithheld { .. })
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Gap { after, before } if before - after == 2 => write!(
                f,
                "gap: report {} was written by the cluster but never imported here (overwritten or withheld); later reports carry everything in it, so nothing is lost",
                after + 1
            ),
            Finding::Gap { after, before } => write!(
                f,
                "gap: reports {} to {} were written by the cluster but never imported here (overwritten or withheld); later reports carry everything in them, so nothing is lost",
                after + 1,
                before - 1
            ),
            Finding::Fork { seq } => write!(
                f,
                "fork: two different reports are number {seq} in this cluster's chain: its state database was restored from a backup or the cluster was cloned"
            ),
            Finding::CounterDown {
                metric,
                bucket,
                earlier_seq,
                earlier,
                later_seq,
                later,
            } => {
                let was = if earlier_seq == later_seq {
                    format!("is {later} here and was {earlier} in the other report {earlier_seq}")
                } else {
                    format!("was {earlier} in report {earlier_seq} and {later} in report {later_seq}")
                };
                write!(
                    f,
                    "counter went down: {metric} {bucket} {was}: the state database was restored or the cluster cloned"
                )
            }
            Finding::TimeBack {
                earlier_seq,
                earlier,
                later_seq,
                later,
            } => write!(
                f,
                "trusted time went back: {} in report {earlier_seq}, {} in report {later_seq}: the state database was restored",
                crate::time::rfc3339(*earlier),
                crate::time::rfc3339(*later)
            ),
            Finding::HeadBack {
                earlier_seq,
                later_seq,
            } => write!(
                f,
                "report chain went back: the cluster had written usage report {earlier_seq} and now says its last is {later_seq}: its state database was restored from a backup or the cluster was cloned"
            ),
            Finding::BeatBack { last_seq, seq } => write!(
                f,
                "heartbeat counter went back: a heartbeat signed after the last accepted one ({last_seq}) carries sequence number {seq}: the cluster's state database was restored or a clone beats with the same key"
            ),
            Finding::HeadWithheld { last_seq } => write!(
                f,
                "chain head withheld: the cluster named usage report {last_seq} in earlier heartbeats and names none now: an older verifier runs there, or a proxy strips the relay's `Kaching-Accepts` header"
            ),
        }
    }
}

/// Checks the chain head of a heartbeat against the one the relay holds
/// for the same cluster (connected mode: docs/threat-model.md, "Rollback of
/// the state database"). Reports do not pass through the relay, so it sees
/// only heads: one that goes back, two different reports at one place, or a
/// trusted-time mark that goes back. Gaps are normal here (several reports
/// may be written between heartbeats).
pub fn check_head(known: Option<&ChainHead>, new: &ChainHead) -> Vec<Finding> {
    let Some(k) = known else {
        return Vec::new();
    };
    let mut found = Vec::new();
    if new.report_seq < k.report_seq {
        found.push(Finding::HeadBack {
            earlier_seq: k.report_seq,
            later_seq: new.report_seq,
        });
    } else if new.report_seq == k.report_seq && new.report_hash != k.report_hash {
        found.push(Finding::Fork {
            seq: new.report_seq,
        });
    }
    if new.mark < k.mark {
        found.push(Finding::TimeBack {
            earlier_seq: k.report_seq,
            earlier: k.mark,
            later_seq: new.report_seq,
            later: new.mark,
        });
    }
    found
}

/// A trusted-time mark going back that the clock reset carried in the same
/// heartbeat accounts for: the cluster took the vendor's reset, its state
/// database was not restored. Not a sign of rollback; the relay records it
/// in its audit log instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResetExplained {
    /// The reset (its claims).
    pub reset: ClockReset,
    /// The issuer key that signed it.
    pub kid: String,
    /// The report the earlier head named.
    pub earlier_seq: u64,
    /// The mark the earlier head named.
    pub earlier: Timestamp,
    /// The report the new head names.
    pub later_seq: u64,
    /// The mark the new head names.
    pub later: Timestamp,
}

impl fmt::Display for ResetExplained {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "trusted time went back from {} to {}: the cluster took the clock reset {} signed at {} by issuer key {} for a mark up to {}; not a rollback",
            crate::time::rfc3339(self.earlier),
            crate::time::rfc3339(self.later),
            self.reset.id_text(),
            crate::time::rfc3339(self.reset.issued),
            self.kid,
            crate::time::rfc3339(self.reset.mark),
        )
    }
}

/// What a heartbeat's chain head shows, as [`check_head_with_reset`] sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeadCheck {
    /// The signs of rollback (as [`check_head`] finds them, less a
    /// `TimeBack` the reset accounts for).
    pub found: Vec<Finding>,
    /// The mark going back that the reset accounts for, if any.
    pub explained: Option<ResetExplained>,
}

/// [`check_head`] for a head that may carry the clock reset its cluster
/// took (docs/format.md §7.6, §7.9). `reset` is that head's `reset` as the
/// relay verified it against the issuer keys (`None`: none carried, or it
/// did not verify); `cluster_id` the heartbeat's cluster (the one its key
/// derives); `now` the relay's clock.
///
/// A `TimeBack` is dropped from the findings, and returned as explained,
/// only when the reset is the one this head carries (same bytes), names
/// this cluster, has not expired by `now` (so a reset kept aside does not
/// hide a later restore beyond its validity), and accounts for the mark
/// going back ([`clock_reset::explains`]: the earlier mark at most the
/// reset's `mark`, the later at least its `iat`). `HeadBack` and `Fork`
/// stay whatever the reset; so does every `TimeBack` it does not explain.
pub fn check_head_with_reset(
    known: Option<&ChainHead>,
    new: &ChainHead,
    cluster_id: &str,
    reset: Option<&VerifiedClockReset>,
    now: Timestamp,
) -> HeadCheck {
    let mut found = check_head(known, new);
    let usable = reset.filter(|v| {
        new.reset.as_deref() == Some(v.bytes.as_slice())
            && v.reset.cluster_id == cluster_id
            && now <= v.reset.expires
    });
    let Some(v) = usable else {
        return HeadCheck {
            found,
            explained: None,
        };
    };
    let mut explained = None;
    found.retain(|f| match f {
        Finding::TimeBack {
            earlier_seq,
            earlier,
            later_seq,
            later,
        } if explained.is_none() && clock_reset::explains(&v.reset, *earlier, *later) => {
            explained = Some(ResetExplained {
                reset: v.reset.clone(),
                kid: v.kid.to_string(),
                earlier_seq: *earlier_seq,
                earlier: *earlier,
                later_seq: *later_seq,
                later: *later,
            });
            false
        }
        _ => true,
    });
    HeadCheck { found, explained }
}

/// Whether a heartbeat refused for its sequence number shows the cluster's
/// counter going back rather than a replay: a recorded heartbeat is signed
/// no later than the last one accepted, while a restored or cloned cluster
/// signs a new one, later, with an old number.
pub fn beat_went_back(last_seq: u64, last_time: Timestamp, seq: u64, time: Timestamp) -> bool {
    seq <= last_seq && time > last_time
}

/// Checks a new report against the reports of the same cluster the vendor
/// already holds (`known`, any order; a report with the new one's hash is
/// the same report and ignored). Ordered by sequence number, reports must
/// link by hash, without two at one place, with counters and the
/// trusted-time mark never going down (at a fork, never below the report
/// already held at that place).
pub fn check(known: &[Link], new: &Link) -> Vec<Finding> {
    let mut found = Vec::new();
    let others: Vec<&Link> = known.iter().filter(|k| k.hash != new.hash).collect();
    let fork = others.iter().any(|k| {
        k.seq == new.seq
            || (k.seq + 1 == new.seq && new.prev != Some(k.hash))
            || (k.seq == new.seq + 1 && k.prev != Some(new.hash))
    });
    if fork {
        found.push(Finding::Fork { seq: new.seq });
    }
    let below = others
        .iter()
        .map(|k| k.seq)
        .filter(|s| *s < new.seq)
        .max()
        .unwrap_or(0);
    if new.seq > below + 1 {
        found.push(Finding::Gap {
            after: below,
            before: new.seq,
        });
    }
    for k in &others {
        // At the same place (a fork) the report already held is the floor:
        // a restored database forks with lower counters than it.
        let (earlier, later) = match k.seq.cmp(&new.seq) {
            std::cmp::Ordering::Less | std::cmp::Ordering::Equal => (*k, new),
            std::cmp::Ordering::Greater => (new, *k),
        };
        for (metric, buckets) in &earlier.counters {
            for (bucket, was) in buckets {
                let Some(now) = later.counters.get(metric).and_then(|b| b.get(bucket)) else {
                    continue;
                };
                if now < was {
                    found.push(Finding::CounterDown {
                        metric: metric.clone(),
                        bucket: bucket.clone(),
                        earlier_seq: earlier.seq,
                        earlier: *was,
                        later_seq: later.seq,
                        later: *now,
                    });
                }
            }
        }
        if later.trusted_time < earlier.trusted_time {
            found.push(Finding::TimeBack {
                earlier_seq: earlier.seq,
                earlier: earlier.trusted_time,
                later_seq: later.seq,
                later: later.trusted_time,
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(seq: u64, prev: Option<u8>, t: Timestamp, api: u64) -> Link {
        Link {
            seq,
            hash: [seq as u8; 32],
            prev: prev.map(|p| [p; 32]),
            trusted_time: t,
            counters: [(
                "api".to_string(),
                [("2026-01".to_string(), api)].into_iter().collect(),
            )]
            .into_iter()
            .collect(),
        }
    }

    #[test]
    fn an_unbroken_chain_is_clean_in_any_import_order() {
        let chain = [
            link(1, None, 10, 1),
            link(2, Some(1), 20, 2),
            link(3, Some(2), 30, 3),
        ];
        assert!(check(&chain[..2], &chain[2]).is_empty());
        assert!(check(&[chain[0].clone(), chain[2].clone()], &chain[1]).is_empty());
        assert!(
            check(&chain, &chain[1]).is_empty(),
            "a re-import is no fork"
        );
    }

    fn head(report_seq: u64, hash: u8, mark: Timestamp) -> ChainHead {
        ChainHead {
            report_seq,
            report_hash: (report_seq > 0).then_some([hash; 32]),
            mark,
            reset: None,
        }
    }

    #[test]
    fn heads_that_only_grow_are_clean() {
        assert!(check_head(None, &head(3, 3, 10)).is_empty());
        assert!(check_head(Some(&head(0, 0, 10)), &head(0, 0, 10)).is_empty());
        assert!(check_head(Some(&head(2, 2, 10)), &head(2, 2, 11)).is_empty());
        // Reports written between two heartbeats: a jump is no gap here.
        assert!(check_head(Some(&head(2, 2, 10)), &head(9, 9, 20)).is_empty());
    }

    #[test]
    fn head_back_fork_and_mark_back_are_each_flagged() {
        let held = head(5, 5, 100);
        assert_eq!(
            check_head(Some(&held), &head(3, 3, 100)),
            vec![Finding::HeadBack {
                earlier_seq: 5,
                later_seq: 3
            }]
        );
        assert_eq!(
            check_head(Some(&held), &head(5, 0xee, 100)),
            vec![Finding::Fork { seq: 5 }]
        );
        let f = check_head(Some(&held), &head(3, 3, 90));
        assert!(f.iter().all(Finding::is_rollback));
        assert!(f.iter().any(|x| matches!(
            x,
            Finding::TimeBack {
                earlier: 100,
                later: 90,
                ..
            }
        )));
    }

    const DAY: u64 = crate::time::DAY;
    const NOW: Timestamp = 1_796_000_000;
    const AHEAD: Timestamp = NOW + 900 * DAY;

    /// A reset for cluster `cluster` of the mark `AHEAD`, signed at `NOW`,
    /// verified against the key that signed it.
    fn signed_reset(cluster: &str) -> VerifiedClockReset {
        let issuer = crate::keys::SecretKey::from_seed(&[3; 32]);
        let reset = ClockReset {
            id: [9; 16],
            cluster_id: cluster.into(),
            mark: AHEAD,
            issued: NOW,
            expires: NOW + 14 * DAY,
        };
        clock_reset::verify_clock_reset(
            &reset.sign(&issuer),
            &crate::keys::TrustedKeys::from(issuer.public()),
        )
        .unwrap()
    }

    fn carrying(mut h: ChainHead, v: &VerifiedClockReset) -> ChainHead {
        h.reset = Some(v.bytes.clone());
        h
    }

    #[test]
    fn a_clock_reset_carried_by_the_head_explains_its_mark_going_back() {
        let v = signed_reset("c1");
        let held = head(5, 5, AHEAD);
        let new = carrying(head(6, 6, NOW + 60), &v);
        assert_eq!(check_head(Some(&held), &new).len(), 1, "a time_back alone");
        let c = check_head_with_reset(Some(&held), &new, "c1", Some(&v), NOW + 120);
        assert!(c.found.is_empty(), "{:?}", c.found);
        let e = c.explained.expect("explained");
        assert_eq!(
            (e.earlier_seq, e.earlier, e.later_seq, e.later),
            (5, AHEAD, 6, NOW + 60)
        );
        assert_eq!(e.reset, v.reset);
        assert_eq!(e.kid, v.kid.to_string());
        let said = e.to_string();
        assert!(said.contains(&v.reset.id_text()) && said.contains("not a rollback"));
        // Up to its expiry by the relay's clock, and with the mark exactly at
        // the reset's bounds.
        let at_bounds = carrying(head(6, 6, NOW), &v);
        let c = check_head_with_reset(Some(&held), &at_bounds, "c1", Some(&v), v.reset.expires);
        assert!(c.found.is_empty() && c.explained.is_some());
        // A head with no mark going back needs no explaining.
        let c = check_head_with_reset(Some(&new), &new, "c1", Some(&v), NOW + 180);
        assert_eq!(c, HeadCheck::default());
        assert_eq!(
            check_head_with_reset(None, &new, "c1", Some(&v), NOW),
            HeadCheck::default()
        );
    }

    #[test]
    fn a_clock_reset_hides_no_head_back_no_fork_and_no_other_mark_going_back() {
        let v = signed_reset("c1");
        let held = head(5, 5, AHEAD);
        let flagged = |known: &ChainHead, new: &ChainHead, cluster: &str, now: Timestamp| {
            let c = check_head_with_reset(Some(known), new, cluster, Some(&v), now);
            assert!(c.explained.is_none(), "{:?}", c.explained);
            assert_eq!(c.found, check_head(Some(known), new));
            assert!(c
                .found
                .iter()
                .any(|f| matches!(f, Finding::TimeBack { .. })));
        };
        // The report chain going back stays flagged; the mark is explained.
        let c = check_head_with_reset(
            Some(&held),
            &carrying(head(3, 3, NOW + 60), &v),
            "c1",
            Some(&v),
            NOW,
        );
        assert_eq!(
            c.found,
            vec![Finding::HeadBack {
                earlier_seq: 5,
                later_seq: 3
            }]
        );
        assert!(c.explained.is_some());
        let c = check_head_with_reset(
            Some(&held),
            &carrying(head(5, 0xee, NOW + 60), &v),
            "c1",
            Some(&v),
            NOW,
        );
        assert_eq!(c.found, vec![Finding::Fork { seq: 5 }]);
        // A mark below the vendor's time when it signed.
        flagged(&held, &carrying(head(6, 6, NOW - 1), &v), "c1", NOW);
        // An earlier mark above the one the reset was made for.
        flagged(
            &head(5, 5, AHEAD + 1),
            &carrying(head(6, 6, NOW + 60), &v),
            "c1",
            NOW,
        );
        // A reset for another cluster.
        flagged(&held, &carrying(head(6, 6, NOW + 60), &v), "c2", NOW);
        // Expired by the relay's clock: kept aside, it explains nothing.
        flagged(
            &held,
            &carrying(head(6, 6, NOW + 60), &v),
            "c1",
            v.reset.expires + 1,
        );
        // Not the reset the head carries: none, or other bytes.
        flagged(&held, &head(6, 6, NOW + 60), "c1", NOW);
        let mut other = head(6, 6, NOW + 60);
        other.reset = Some(signed_reset("c2").bytes);
        flagged(&held, &other, "c1", NOW);
        // No verified reset (none carried, or it did not verify): as ever.
        let new = carrying(head(6, 6, NOW + 60), &v);
        let c = check_head_with_reset(Some(&held), &new, "c1", None, NOW);
        assert_eq!(c.found, check_head(Some(&held), &new));
        assert!(c.explained.is_none());
    }

    #[test]
    fn a_replayed_heartbeat_is_no_counter_going_back() {
        // The same heartbeat again, or any recorded one: signed no later.
        assert!(!beat_went_back(7, 1_000, 7, 1_000));
        assert!(!beat_went_back(7, 1_000, 5, 900));
        // A new heartbeat, signed later, with a number already used.
        assert!(beat_went_back(7, 1_000, 6, 1_030));
        assert!(beat_went_back(7, 1_000, 7, 1_001));
        assert!(!beat_went_back(7, 1_000, 8, 1_030));
    }

    #[test]
    fn gap_fork_counter_and_time_are_each_flagged() {
        let one = link(1, None, 10, 5);
        assert_eq!(
            check(std::slice::from_ref(&one), &link(4, Some(3), 40, 9)),
            vec![Finding::Gap {
                after: 1,
                before: 4
            }]
        );
        let mut other_two = link(2, Some(1), 20, 6);
        other_two.hash = [0xee; 32];
        let f = check(&[one.clone(), link(2, Some(1), 20, 6)], &other_two);
        assert_eq!(f, vec![Finding::Fork { seq: 2 }]);
        // A fork below the report it forks from (a restored database) also
        // shows the counter that went down.
        let mut restored_two = link(2, Some(1), 20, 5);
        restored_two.hash = [0xdd; 32];
        let f = check(&[one.clone(), link(2, Some(1), 20, 6)], &restored_two);
        assert!(f.contains(&Finding::Fork { seq: 2 }));
        assert!(f.iter().any(|x| matches!(
            x,
            Finding::CounterDown {
                earlier: 6,
                later: 5,
                earlier_seq: 2,
                later_seq: 2,
                ..
            }
        )));
        let f = check(std::slice::from_ref(&one), &link(2, Some(1), 5, 4));
        assert!(f.iter().all(Finding::is_rollback));
        assert!(f.iter().any(|x| matches!(
            x,
            Finding::CounterDown {
                earlier: 5,
                later: 4,
                ..
            }
        )));
        assert!(f.iter().any(|x| matches!(x, Finding::TimeBack { .. })));
    }
}
