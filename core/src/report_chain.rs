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

use crate::cluster::UsageReport;
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
}

impl Finding {
    /// True for the signs of a rollback (fork, counter or mark going down);
    /// false for a gap, which also follows from a report that was lost.
    pub fn is_rollback(&self) -> bool {
        !matches!(self, Finding::Gap { .. })
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
        }
    }
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
