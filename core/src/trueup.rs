//! True-up: per calendar month, what a customer was licensed for against the
//! most it used, and the overage to bill.
//!
//! The figures come from imported usage reports: the monthly node peaks a
//! chained report carries (`node_peaks`, docs/format.md §7.4) and its quota
//! counters. Everything here is pure: the licenses, the reports' figures and
//! `now` are arguments.
//!
//! Rules, each decided once here:
//! - **Periods are calendar months (UTC)**, the granularity of the
//!   verifier's node peaks.
//! - **A lineage** is a license and the licenses that replaced it, oldest
//!   first. Each is in force from its `nbf` until the next one's `nbf` (the
//!   last until expiry plus grace). In a month where more than one was in
//!   force (an upgrade or downgrade mid-month), the month's peak cannot be
//!   placed before or after the change, so it is measured against the most
//!   generous of their limits: the customer is never billed for a peak the
//!   new terms might have covered.
//! - **Node overage to bill** is the peak above `max_nodes`. The ceiling
//!   ([`License::node_ceiling`], `max_nodes` plus the allowed overage) is
//!   what the verifier admits; a peak above it is flagged, since the
//!   verifier should have refused those nodes (several clusters on one
//!   license, a cloned cluster, or a peak carried over from a larger license).
//! - **Several clusters** reporting under one lineage: their monthly peaks
//!   are added (an upper bound of what ran at once; flagged).
//! - **Quotas**: a `day` quota's month shows the busiest day and bills the
//!   units over the limit summed over the month's days; a `month` quota its
//!   month's counter; `total` and `gauge` quotas are levels sampled when
//!   each report was written, and the month shows the highest sample.
//! - **Status**: `open` while the month has not ended at `now`; `partial`
//!   when it has, but no imported report was written after its end (a later
//!   report may still raise it); `final` otherwise.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::id::LicenseId;
use crate::license::{License, Period, Quota};
use crate::receipt::Counters;
use crate::time::{from_civil, period_key, to_civil, Date, Timestamp};

/// What one imported usage report says, as true-up reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFigures {
    /// The reporting cluster.
    pub cluster_id: String,
    /// When the report was written (its `iat`, the end of its period).
    pub written: Timestamp,
    /// Month (`2026-01`) → most nodes holding a lease at once; empty for an
    /// unchained report (verifiers before the report chain kept no monthly peaks).
    pub node_peaks: BTreeMap<String, u32>,
    /// metric → period bucket → value.
    pub counters: Counters,
}

/// How settled a month's figures are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The month has not ended: the figures may still grow.
    Open,
    /// The month has ended, but no imported report was written after its
    /// end: the next report may still raise the figures.
    Partial,
    /// A report written after the month's end has been imported.
    Final,
}

impl Status {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Partial => "partial",
            Status::Final => "final",
        }
    }
}

/// Nodes in one month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeLine {
    /// Licensed nodes (`max_nodes`).
    pub licensed: u32,
    /// Nodes the verifier admits, overage included.
    pub ceiling: u64,
    /// Most nodes holding a lease at once; `None`: no peak recorded.
    pub peak: Option<u64>,
    /// Peak above the licensed nodes: what to bill.
    pub overage: u64,
    /// The peak went above the ceiling (the verifier should have refused it).
    pub above_ceiling: bool,
}

/// One quota in one month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuotaLine {
    /// Metric name.
    pub metric: String,
    /// The quota's period.
    pub period: Period,
    /// The limit per period.
    pub limit: u64,
    /// The highest value in the month (busiest day, the month, or the
    /// highest sampled level); `None`: nothing reported.
    pub peak: Option<u64>,
    /// Units above the limit: what to bill (summed over the days for a
    /// `day` quota).
    pub overage: u64,
    /// How many of the month's buckets went over (days for a `day` quota).
    pub periods_over: u32,
}

/// One calendar month of a lineage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MonthLine {
    /// `2026-01`.
    pub month: String,
    /// The licenses in force during the month, oldest first.
    pub licenses: Vec<LicenseId>,
    /// How settled the figures are.
    pub status: Status,
    /// Clusters with figures for the month.
    pub clusters: u32,
    /// Nodes.
    pub nodes: NodeLine,
    /// Quotas, by metric name.
    pub quotas: Vec<QuotaLine>,
}

/// The highest node peak of a true-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HighestPeak {
    /// Its month, `2026-01`.
    pub month: String,
    /// Nodes.
    pub nodes: u64,
}

/// Totals over the months shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Totals {
    /// The highest node peak, and its month (the first, at a tie).
    pub peak_nodes: Option<HighestPeak>,
    /// The largest monthly node overage (the "historical maximum" way to bill).
    pub max_node_overage: u64,
    /// Node overage summed over the months (the "per month" way to bill).
    pub node_overage_months: u64,
    /// Quota overage summed over the months, by metric.
    pub quota_overage: BTreeMap<String, u64>,
    /// Months whose peak went above the ceiling.
    pub months_above_ceiling: Vec<String>,
}

/// Start of the month after `(year, month)`.
fn next_month(d: Date) -> Date {
    if d.month == 12 {
        Date {
            year: d.year + 1,
            month: 1,
            day: 1,
        }
    } else {
        Date {
            month: d.month + 1,
            day: 1,
            ..d
        }
    }
}

/// When each license of the lineage was in force: `[nbf, next nbf)`, the last
/// until expiry plus grace.
fn in_force(lineage: &[License]) -> Vec<(Timestamp, Timestamp)> {
    lineage
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let end = lineage.get(i + 1).map_or_else(
                || l.expires_at.saturating_add(l.grace),
                |next| next.not_before,
            );
            (l.not_before, end.max(l.not_before))
        })
        .collect()
}

/// The true-up of a lineage (oldest license first, each replacing the one
/// before) from the figures of its imported reports: one line per calendar
/// month from the first license's start (or the month of `since`, if later)
/// to the month of `now` or the end of the last license, whichever is first.
pub fn true_up(
    lineage: &[License],
    reports: &[ReportFigures],
    since: Option<Timestamp>,
    now: Timestamp,
) -> Vec<MonthLine> {
    let spans = in_force(lineage);
    let (Some(first), Some(last)) = (spans.first(), spans.last()) else {
        return Vec::new();
    };
    let start = since.map_or(first.0, |s| s.max(first.0));
    let stop = now.min(last.1.saturating_sub(1));
    let latest_report = reports.iter().map(|r| r.written).max();
    let (d, _) = to_civil(start);
    let mut month = Date { day: 1, ..d };
    let mut lines = Vec::new();
    while let Some(ms) = from_civil(month) {
        if ms > stop {
            break;
        }
        let next = next_month(month);
        let Some(me) = from_civil(next) else { break };
        let key = period_key(Period::Month, ms);
        let terms: Vec<&License> = lineage
            .iter()
            .zip(&spans)
            .filter(|(_, (from, to))| *from < me && *to > ms)
            .map(|(l, _)| l)
            .collect();
        if !terms.is_empty() {
            let status = if now < me {
                Status::Open
            } else if latest_report.is_some_and(|w| w >= me) {
                Status::Final
            } else {
                Status::Partial
            };
            lines.push(month_line(&key, &terms, reports, status));
        }
        month = next;
    }
    lines
}

fn month_line(
    key: &str,
    terms: &[&License],
    reports: &[ReportFigures],
    status: Status,
) -> MonthLine {
    let licensed = terms.iter().map(|l| l.limits.max_nodes).max().unwrap_or(0);
    let ceiling = terms.iter().map(|l| l.node_ceiling()).max().unwrap_or(0);
    // Per cluster, the highest peak any of its reports gives for the month.
    let mut per_cluster: BTreeMap<&str, u64> = BTreeMap::new();
    for r in reports {
        if let Some(p) = r.node_peaks.get(key) {
            let e = per_cluster.entry(r.cluster_id.as_str()).or_default();
            *e = (*e).max(u64::from(*p));
        }
    }
    let peak = (!per_cluster.is_empty()).then(|| per_cluster.values().sum::<u64>());
    let nodes = NodeLine {
        licensed,
        ceiling,
        peak,
        overage: peak.map_or(0, |p| p.saturating_sub(u64::from(licensed))),
        above_ceiling: peak.is_some_and(|p| p > ceiling),
    };
    let mut quotas: BTreeMap<&str, Quota> = BTreeMap::new();
    for l in terms {
        for (metric, q) in &l.quotas {
            quotas
                .entry(metric.as_str())
                .and_modify(|have| {
                    if q.limit > have.limit {
                        *have = *q;
                    }
                })
                .or_insert(*q);
        }
    }
    let mut clusters: std::collections::BTreeSet<&str> = per_cluster.keys().copied().collect();
    let quotas = quotas
        .into_iter()
        .map(|(metric, q)| {
            let (values, seen) = quota_values(metric, q.period, key, reports);
            clusters.extend(seen);
            quota_line(metric, q, &values)
        })
        .collect();
    MonthLine {
        month: key.to_string(),
        licenses: terms.iter().map(|l| l.id).collect(),
        status,
        clusters: u32::try_from(clusters.len()).unwrap_or(u32::MAX),
        nodes,
        quotas,
    }
}

/// The month's values of a quota, one per bucket (days of a `day` quota; one
/// for the others), clusters added; and the clusters that gave any.
fn quota_values<'a>(
    metric: &str,
    period: Period,
    month: &str,
    reports: &'a [ReportFigures],
) -> (BTreeMap<String, u64>, Vec<&'a str>) {
    // cluster → bucket → highest value reported.
    let mut per_cluster: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
    for r in reports {
        let Some(buckets) = r.counters.get(metric) else {
            continue;
        };
        let mut put = |bucket: String, v: u64| {
            let e = per_cluster
                .entry(r.cluster_id.as_str())
                .or_default()
                .entry(bucket)
                .or_default();
            *e = (*e).max(v);
        };
        match period {
            Period::Day | Period::Month => {
                for (b, v) in buckets {
                    let in_month = match period {
                        Period::Day => b.len() == 10 && b.starts_with(month),
                        _ => b == month,
                    };
                    if in_month {
                        put(b.clone(), *v);
                    }
                }
            }
            // A level: the report's sample counts for the month it was
            // written in (a report written at the first second of the next
            // month still describes this one).
            Period::Total | Period::Gauge => {
                let sampled = period_key(Period::Month, r.written.saturating_sub(1));
                if sampled == month {
                    if let Some(v) = buckets.get("total") {
                        put("total".into(), *v);
                    }
                }
            }
        }
    }
    let mut values: BTreeMap<String, u64> = BTreeMap::new();
    for buckets in per_cluster.values() {
        for (b, v) in buckets {
            *values.entry(b.clone()).or_default() += v;
        }
    }
    (values, per_cluster.keys().copied().collect())
}

fn quota_line(metric: &str, q: Quota, values: &BTreeMap<String, u64>) -> QuotaLine {
    let over: Vec<u64> = values
        .values()
        .filter(|v| **v > q.limit)
        .map(|v| v - q.limit)
        .collect();
    QuotaLine {
        metric: metric.to_string(),
        period: q.period,
        limit: q.limit,
        peak: values.values().max().copied(),
        overage: over.iter().sum(),
        periods_over: u32::try_from(over.len()).unwrap_or(u32::MAX),
    }
}

/// Totals over the months of a true-up.
pub fn totals(lines: &[MonthLine]) -> Totals {
    let mut t = Totals::default();
    for l in lines {
        if let Some(p) = l.nodes.peak {
            if t.peak_nodes.as_ref().is_none_or(|best| p > best.nodes) {
                t.peak_nodes = Some(HighestPeak {
                    month: l.month.clone(),
                    nodes: p,
                });
            }
        }
        t.max_node_overage = t.max_node_overage.max(l.nodes.overage);
        t.node_overage_months += l.nodes.overage;
        if l.nodes.above_ceiling {
            t.months_above_ceiling.push(l.month.clone());
        }
        for q in &l.quotas {
            *t.quota_overage.entry(q.metric.clone()).or_default() += q.overage;
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_rfc3339;

    fn at(s: &str) -> Timestamp {
        parse_rfc3339(s).unwrap()
    }

    fn license(id: u8, from: &str, until: &str, nodes: u32, searches: u64) -> License {
        let mut l = crate::license::sample();
        l.id = LicenseId([id; 16]);
        l.not_before = at(from);
        l.issued_at = at(from);
        l.expires_at = at(until);
        l.limits.max_nodes = nodes;
        l.overage = 20;
        l.quotas.insert(
            "search_requests".into(),
            Quota {
                limit: searches,
                period: Period::Day,
            },
        );
        l.quotas.insert(
            "exports".into(),
            Quota {
                limit: 100,
                period: Period::Month,
            },
        );
        l
    }

    /// A monthly report written at the first second of the next month.
    fn report(month: u32, peak: Option<u32>, busiest_day: u64, exports: u64) -> ReportFigures {
        let key = format!("2027-{month:02}");
        let written = from_civil(next_month(Date {
            year: 2027,
            month,
            day: 1,
        }))
        .unwrap();
        let counters = Counters::from([
            (
                "search_requests".to_string(),
                BTreeMap::from([
                    (format!("{key}-03"), busiest_day),
                    (format!("{key}-04"), busiest_day / 2),
                ]),
            ),
            (
                "exports".to_string(),
                BTreeMap::from([(key.clone(), exports)]),
            ),
        ]);
        ReportFigures {
            cluster_id: "c1".into(),
            written,
            node_peaks: peak.map(|p| BTreeMap::from([(key, p)])).unwrap_or_default(),
            counters,
        }
    }

    /// The named test: a scripted year of monthly reports with known
    /// peaks: within the license, inside the overage, above the ceiling, a
    /// month without a report, and an upgrade mid-year (limits change from
    /// the upgrade's date; the upgrade month gets the higher limits).
    #[test]
    fn true_up_figures_from_a_scripted_year() {
        // Standard: 10 nodes +20% (ceiling 12), 50 000 searches a day.
        let standard = license(1, "2027-01-01", "2028-01-01", 10, 50_000);
        // Upgraded on 2027-07-15: 20 nodes (ceiling 24), 100 000 a day.
        let mut enterprise = license(2, "2027-07-15", "2028-07-15", 20, 100_000);
        enterprise.supersedes = Some(standard.id);
        let lineage = [standard, enterprise];
        let peaks = [
            Some(8),  // Jan: within
            Some(10), // Feb: exactly the limit
            Some(11), // Mar: inside the overage: bill 1
            Some(15), // Apr: above the ceiling: bill 5, flagged
            None,     // May: no peak recorded (gap month)
            Some(9),  // Jun
            Some(18), // Jul: upgrade month: measured against 20 nodes
            Some(22), // Aug: inside the new overage: bill 2
            Some(20), // Sep
            Some(12), // Oct
            Some(25), // Nov: above the new ceiling (24): bill 5
        ];
        let mut reports: Vec<ReportFigures> = peaks
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 4)
            .map(|(i, p)| {
                let m = u32::try_from(i + 1).unwrap();
                report(m, *p, if m == 3 { 60_000 } else { 40_000 }, 90)
            })
            .collect();
        // June's report also carries May: no peak (nobody held a lease).
        // December's report is not in yet: December is only partial, and
        // its figures come from November's report written on Dec 1.
        reports[4].counters.insert(
            "exports".into(),
            BTreeMap::from([("2027-05".into(), 0), ("2027-06".into(), 130)]),
        );
        let now = at("2028-01-10T00:00:00Z");
        let lines = true_up(&lineage, &reports, None, now);
        let months: Vec<&str> = lines.iter().map(|l| l.month.as_str()).collect();
        assert_eq!(
            months,
            [
                "2027-01", "2027-02", "2027-03", "2027-04", "2027-05", "2027-06", "2027-07",
                "2027-08", "2027-09", "2027-10", "2027-11", "2027-12", "2028-01"
            ]
        );
        let nodes: Vec<(u32, u64, Option<u64>, u64, bool)> = lines
            .iter()
            .map(|l| {
                let n = &l.nodes;
                (n.licensed, n.ceiling, n.peak, n.overage, n.above_ceiling)
            })
            .collect();
        assert_eq!(
            nodes,
            [
                (10, 12, Some(8), 0, false),
                (10, 12, Some(10), 0, false),
                (10, 12, Some(11), 1, false),
                (10, 12, Some(15), 5, true),
                (10, 12, None, 0, false),
                (10, 12, Some(9), 0, false),
                (20, 24, Some(18), 0, false),
                (20, 24, Some(22), 2, false),
                (20, 24, Some(20), 0, false),
                (20, 24, Some(12), 0, false),
                (20, 24, Some(25), 5, true),
                (20, 24, None, 0, false),
                (20, 24, None, 0, false),
            ]
        );
        let id1 = LicenseId([1; 16]);
        let id2 = LicenseId([2; 16]);
        assert_eq!(lines[5].licenses, [id1]);
        assert_eq!(lines[6].licenses, [id1, id2]);
        assert_eq!(lines[7].licenses, [id2]);
        // December has ended, but no report written after it has arrived;
        // January 2028 is still running.
        assert!(lines[..11].iter().all(|l| l.status == Status::Final));
        assert_eq!(lines[11].status, Status::Partial);
        assert_eq!(lines[12].status, Status::Open);
        // Quotas: March's busiest day was 60 000 of 50 000 (one day over);
        // June's exports 130 of 100 a month.
        let q = |l: &MonthLine, m: &str| l.quotas.iter().find(|q| q.metric == m).cloned().unwrap();
        let march = q(&lines[2], "search_requests");
        assert_eq!(
            (march.limit, march.peak, march.overage, march.periods_over),
            (50_000, Some(60_000), 10_000, 1)
        );
        let june = q(&lines[5], "exports");
        assert_eq!((june.peak, june.overage), (Some(130), 30));
        assert_eq!(q(&lines[4], "exports").peak, Some(0));
        assert_eq!(q(&lines[4], "search_requests").peak, None);
        assert_eq!(q(&lines[6], "search_requests").limit, 100_000);
        let t = totals(&lines);
        assert_eq!(
            t.peak_nodes,
            Some(HighestPeak {
                month: "2027-11".into(),
                nodes: 25
            })
        );
        assert_eq!(t.max_node_overage, 5);
        assert_eq!(t.node_overage_months, 13);
        assert_eq!(t.months_above_ceiling, ["2027-04", "2027-11"]);
        assert_eq!(t.quota_overage["search_requests"], 10_000);
        assert_eq!(t.quota_overage["exports"], 30);
        // --since: from June; a "now" inside November leaves it open.
        let lines = true_up(
            &lineage,
            &reports,
            Some(at("2027-06-20")),
            at("2027-11-30T23:59:59Z"),
        );
        assert_eq!(lines.first().map(|l| l.month.as_str()), Some("2027-06"));
        assert_eq!(lines.last().map(|l| l.status), Some(Status::Open));
        assert_eq!(lines.len(), 6);
    }

    #[test]
    fn a_month_is_final_at_the_exact_second_a_report_written_after_it_arrives() {
        let lineage = [license(1, "2027-01-01", "2028-01-01", 10, 50_000)];
        let mut r = report(1, Some(8), 1, 1);
        r.written = at("2027-01-31T23:59:59Z");
        let now = at("2027-02-10");
        assert_eq!(
            true_up(&lineage, &[r.clone()], None, now)[0].status,
            Status::Partial
        );
        r.written += 1;
        assert_eq!(true_up(&lineage, &[r], None, now)[0].status, Status::Final);
        assert_eq!(
            true_up(&lineage, &[], None, at("2027-01-31T23:59:59Z"))[0].status,
            Status::Open
        );
    }

    #[test]
    fn peaks_repeated_across_reports_count_once_and_clusters_add_up() {
        let lineage = [license(1, "2027-01-01", "2028-01-01", 10, 50_000)];
        let mut a1 = report(1, Some(6), 1, 1);
        a1.written = at("2027-01-20");
        let a2 = report(1, Some(7), 1, 1);
        let mut b = report(1, Some(5), 1, 1);
        b.cluster_id = "c2".into();
        let lines = true_up(&lineage, &[a1.clone(), a2.clone()], None, at("2027-02-02"));
        assert_eq!((lines[0].nodes.peak, lines[0].clusters), (Some(7), 1));
        let lines = true_up(&lineage, &[a1, a2, b], None, at("2027-02-02"));
        assert_eq!((lines[0].nodes.peak, lines[0].clusters), (Some(12), 2));
        assert_eq!(lines[0].nodes.overage, 2);
    }

    #[test]
    fn total_and_gauge_quotas_take_the_highest_sample_of_the_month() {
        let mut l = license(1, "2027-01-01", "2028-01-01", 10, 50_000);
        l.quotas.insert(
            "storage_gb".into(),
            Quota {
                limit: 500,
                period: Period::Gauge,
            },
        );
        let sample = |when: &str, gb: u64| ReportFigures {
            cluster_id: "c1".into(),
            written: at(when),
            node_peaks: BTreeMap::new(),
            counters: Counters::from([(
                "storage_gb".to_string(),
                BTreeMap::from([("total".to_string(), gb)]),
            )]),
        };
        let reports = [
            sample("2027-01-10", 450),
            sample("2027-01-20", 620),
            sample("2027-02-01T00:00:00Z", 610),
            sample("2027-02-15", 480),
        ];
        let lines = true_up(&[l], &reports, None, at("2027-03-01"));
        let g = |i: usize| {
            let q = lines[i]
                .quotas
                .iter()
                .find(|q| q.metric == "storage_gb")
                .unwrap();
            (q.peak, q.overage)
        };
        assert_eq!(g(0), (Some(620), 120));
        assert_eq!(g(1), (Some(480), 0));
    }

    #[test]
    fn no_license_no_lines_and_the_range_stops_at_expiry_and_grace() {
        assert!(true_up(&[], &[], None, 0).is_empty());
        let mut l = license(1, "2027-01-15", "2027-03-01", 10, 1);
        l.grace = 0;
        let lines = true_up(&[l], &[], None, at("2030-01-01"));
        let months: Vec<&str> = lines.iter().map(|l| l.month.as_str()).collect();
        assert_eq!(months, ["2027-01", "2027-02"]);
    }
}
