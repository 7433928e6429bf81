//! The air-gap loop as a property (docs/air-gapped.md): whatever order a
//! cluster queues requests, counts usage, writes reports and imports
//! receipts in — several reports before a receipt, receipts out of order,
//! replayed — everything it stops reporting is something the vendor holds
//! in a report it acknowledged, at the value the cluster has now.

// Helpers outside #[test] fns panic on bad input too: that is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use kaching_core::cluster::{ReportChain, ReportedUpgrade, UpgradeRequest, UsageReport};
use kaching_core::receipt::{clearing, outstanding, Pending, Receipt};
use kaching_core::time::{from_civil, Date, DAY};
use kaching_core::LicenseId;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// An upgrade request is queued.
    Request,
    /// `amount` is counted in today's bucket.
    Spend(u64),
    /// `amount` is counted in yesterday's bucket, after it closed (a clock
    /// set back within the tolerance does this).
    LateSpend(u64),
    /// A day passes.
    NextDay,
    /// A report is written.
    Report,
    /// The receipt for the `n`-th report written (modulo) is imported.
    Receipt(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::Request),
        (1u64..5).prop_map(Op::Spend),
        (1u64..5).prop_map(Op::LateSpend),
        Just(Op::NextDay),
        Just(Op::Report),
        any::<usize>().prop_map(Op::Receipt),
    ]
}

fn day_key(day: u64) -> String {
    let t = start() + day * DAY;
    kaching_core::time::period_key(kaching_core::time::Period::Day, t)
}

fn start() -> u64 {
    from_civil(Date {
        year: 2026,
        month: 1,
        day: 1,
    })
    .unwrap()
}

/// The cluster's state database, reduced to what the loop touches.
#[derive(Default)]
struct Cluster {
    pending: Pending,
    next_id: u64,
    day: u64,
    reports: Vec<(UsageReport, [u8; 32])>,
}

impl Cluster {
    fn now(&self) -> u64 {
        start() + self.day * DAY + 3600
    }

    fn report(&mut self) -> (UsageReport, [u8; 32]) {
        let (counters, node_peaks) = outstanding(&self.pending);
        let seq = self.reports.len() as u64 + 1;
        let report = UsageReport {
            license_id: LicenseId([1; 16]),
            cluster_id: "c".into(),
            period_start: start(),
            period_end: self.now(),
            counters,
            peak_nodes: 0,
            upgrade_requests: self
                .pending
                .upgrade_requests
                .iter()
                .map(|id| ReportedUpgrade {
                    id: Some(*id),
                    request: UpgradeRequest {
                        requested_tier: "enterprise".into(),
                        message: String::new(),
                        time: 0,
                    },
                })
                .collect(),
            chain: Some(ReportChain {
                seq,
                prev: self.reports.last().map(|(_, h)| *h),
                trusted_time: self.now(),
                acked: 0,
                node_peaks,
            }),
        };
        let hash = [seq as u8; 32];
        self.reports.push((report.clone(), hash));
        (report, hash)
    }
}

proptest! {
    #[test]
    fn nothing_the_cluster_stops_reporting_is_unknown_to_the_vendor(
        ops in prop::collection::vec(op(), 1..60)
    ) {
        let mut c = Cluster::default();
        // What the vendor holds from reports whose receipt the cluster imported.
        let mut vendor_requests: BTreeSet<u64> = BTreeSet::new();
        let mut vendor_values: BTreeSet<(String, u64)> = BTreeSet::new();
        let mut all_requests: BTreeSet<u64> = BTreeSet::new();
        for op in ops {
            match op {
                Op::Request => {
                    c.next_id += 1;
                    c.pending.upgrade_requests.insert(c.next_id);
                    all_requests.insert(c.next_id);
                }
                Op::Spend(n) => {
                    *c.pending
                        .counters
                        .entry("api".into())
                        .or_default()
                        .entry(day_key(c.day))
                        .or_default() += n;
                }
                Op::LateSpend(n) => {
                    let day = c.day.saturating_sub(1);
                    *c.pending
                        .counters
                        .entry("api".into())
                        .or_default()
                        .entry(day_key(day))
                        .or_default() += n;
                }
                Op::NextDay => c.day += 1,
                Op::Report => {
                    c.report();
                }
                Op::Receipt(i) => {
                    if c.reports.is_empty() {
                        continue;
                    }
                    let (report, hash) = c.reports[i % c.reports.len()].clone();
                    let receipt = Receipt::for_report(&report, hash, c.now()).unwrap();
                    let cleared = clearing(&receipt, "c", Some(hash), &c.pending).unwrap();
                    // The vendor imported that report: it holds all of it.
                    vendor_requests.extend(report.upgrade_requests.iter().filter_map(|r| r.id));
                    for (b, v) in report.counters.get("api").into_iter().flatten() {
                        vendor_values.insert((b.clone(), *v));
                    }
                    for id in cleared.upgrade_requests {
                        c.pending.upgrade_requests.remove(&id);
                    }
                    for (m, b, v) in cleared.counters {
                        c.pending.acked_counters.entry(m).or_default().insert(b, v);
                    }
                }
            }
            // The property, after every step.
            let (carried, _) = outstanding(&c.pending);
            for id in &all_requests {
                prop_assert!(
                    c.pending.upgrade_requests.contains(id) || vendor_requests.contains(id),
                    "request {id} is neither reported nor held by the vendor"
                );
            }
            for (b, v) in c.pending.counters.get("api").into_iter().flatten() {
                let reported = carried.get("api").is_some_and(|m| m.get(b) == Some(v));
                prop_assert!(
                    reported || vendor_values.contains(&(b.clone(), *v)),
                    "api {b}={v} is neither reported nor held by the vendor"
                );
            }
        }
        // And a report written now carries every request not acknowledged.
        let (last, _) = c.report();
        prop_assert_eq!(last.upgrade_requests.len(), c.pending.upgrade_requests.len());
    }
}

#[test]
fn a_closed_day_is_acknowledged_and_today_keeps_travelling() {
    let mut c = Cluster::default();
    *c.pending
        .counters
        .entry("api".into())
        .or_default()
        .entry(day_key(0))
        .or_default() += 3;
    c.day = 1;
    *c.pending
        .counters
        .entry("api".into())
        .or_default()
        .entry(day_key(1))
        .or_default() += 4;
    let (report, hash) = c.report();
    let receipt = Receipt::for_report(&report, hash, c.now()).unwrap();
    assert_eq!(
        receipt.counters["api"],
        BTreeMap::from([(day_key(0), 3u64)])
    );
    let cleared = clearing(&receipt, "c", Some(hash), &c.pending).unwrap();
    for (m, b, v) in cleared.counters {
        c.pending.acked_counters.entry(m).or_default().insert(b, v);
    }
    let (carried, _) = outstanding(&c.pending);
    assert_eq!(carried["api"], BTreeMap::from([(day_key(1), 4u64)]));
}
