//! `true-up`: per license and calendar month, licensed against the peak the
//! customer's usage reports show, and the overage to bill. The ledger is read
//! here; every figure is decided by [`kaching_core::trueup`].

use anyhow::Result;
use kaching_core::cluster::verify_usage_report;
use kaching_core::time::Timestamp;
use kaching_core::trueup::{self, MonthLine, ReportFigures, Totals};
use kaching_core::{License, LicenseId};
use rusqlite::Connection;
use serde::Serialize;

use crate::ledger::{self, LicenseRecord};
use crate::output::{date, table};

/// Where the figures come from, said in the output: relay heartbeats are
/// kept by the relay, not the ledger.
pub const SOURCES: &str =
    "figures come from usage reports imported with `licensegen usage import`; \
relay heartbeats are not in the ledger, so a connected cluster counts here only through the usage \
reports its verifier writes";

/// What to show.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only customers whose name or id contains this text (case-insensitive).
    pub customer: Option<String>,
    /// Only the lineage holding this license.
    pub license: Option<LicenseId>,
    /// Only months from the one holding this time.
    pub since: Option<Timestamp>,
}

/// One license of a lineage, as the true-up names it.
#[derive(Debug, Clone, Serialize)]
pub struct Terms {
    /// License id.
    pub id: LicenseId,
    /// Tier.
    pub tier: String,
    /// Licensed nodes.
    pub max_nodes: u32,
    /// Percent allowed over `max_nodes`.
    pub overage_percent: u32,
    /// Nodes the verifier admits, overage included.
    pub node_ceiling: u64,
    /// In force from (`nbf`).
    pub from: Timestamp,
}

/// The true-up of one lineage: a license and the licenses that replaced it.
#[derive(Debug, Clone, Serialize)]
pub struct LineageTrueUp {
    /// Customer display name.
    pub customer: String,
    /// Customer id.
    pub customer_id: String,
    /// The licenses, oldest first.
    pub licenses: Vec<Terms>,
    /// Usage reports imported for them.
    pub reports: usize,
    /// When the newest of them was written.
    pub last_report: Option<Timestamp>,
    /// One line per month.
    pub months: Vec<MonthLine>,
    /// Totals over the months.
    pub totals: Totals,
}

/// The whole answer.
#[derive(Debug, Clone, Serialize)]
pub struct TrueUp {
    /// The time the figures were judged at.
    pub at: Timestamp,
    /// `--since`, when given.
    pub since: Option<Timestamp>,
    /// Where the figures come from.
    pub sources: &'static str,
    /// Per lineage.
    pub lineages: Vec<LineageTrueUp>,
}

/// Groups licenses into lineages, oldest first: each follows
/// `superseded_by` from a license that replaced none in the ledger. A
/// license no such chain reaches (one of two replacements of the same
/// license) starts a lineage of its own, so every license is shown once.
fn lineages(records: &[LicenseRecord]) -> Vec<Vec<&LicenseRecord>> {
    let by_id = |id: &LicenseId| records.iter().find(|r| r.id == *id);
    let mut seen = std::collections::BTreeSet::new();
    let roots = records
        .iter()
        .filter(|r| r.supersedes.as_ref().and_then(by_id).is_none())
        .chain(records.iter());
    let mut out = Vec::new();
    for root in roots {
        if !seen.insert(root.id) {
            continue;
        }
        let mut chain = vec![root];
        let mut cur = root;
        while let Some(next) = cur.superseded_by.as_ref().and_then(by_id) {
            if !seen.insert(next.id) {
                break;
            }
            chain.push(next);
            cur = next;
        }
        out.push(chain);
    }
    out
}

/// Reads the ledger and computes the true-up of every lineage the filter
/// keeps; `license_of` reads a recorded license's claims.
pub fn compute(
    conn: &Connection,
    filter: &Filter,
    license_of: impl Fn(&LicenseRecord) -> Result<License>,
    now: Timestamp,
) -> Result<TrueUp> {
    let records = ledger::list_licenses(conn)?;
    let needle = filter.customer.as_deref().map(str::to_lowercase);
    let mut lineages_out = Vec::new();
    for lineage in lineages(&records) {
        if let Some(id) = filter.license {
            if !lineage.iter().any(|r| r.id == id) {
                continue;
            }
        }
        if let Some(n) = &needle {
            if !lineage.iter().any(|r| {
                r.customer.to_lowercase().contains(n) || r.customer_id.to_lowercase().contains(n)
            }) {
                continue;
            }
        }
        let licenses = lineage
            .iter()
            .map(|r| license_of(r))
            .collect::<Result<Vec<License>>>()?;
        let mut reports = Vec::new();
        for r in &lineage {
            for file in ledger::usage_files(conn, &r.id)? {
                // Verified when imported; read again for the monthly peaks.
                if let Ok(checked) = verify_usage_report(&file) {
                    let rep = checked.doc;
                    reports.push(ReportFigures {
                        cluster_id: rep.cluster_id,
                        written: rep.period_end,
                        node_peaks: rep.chain.map(|c| c.node_peaks).unwrap_or_default(),
                        counters: rep.counters,
                    });
                }
            }
        }
        let months = trueup::true_up(&licenses, &reports, filter.since, now);
        let Some(last) = lineage.last() else { continue };
        lineages_out.push(LineageTrueUp {
            customer: last.customer.clone(),
            customer_id: last.customer_id.clone(),
            licenses: licenses
                .iter()
                .map(|l| Terms {
                    id: l.id,
                    tier: l.tier.clone(),
                    max_nodes: l.limits.max_nodes,
                    overage_percent: l.overage,
                    node_ceiling: l.node_ceiling(),
                    from: l.not_before,
                })
                .collect(),
            reports: reports.len(),
            last_report: reports.iter().map(|r| r.written).max(),
            totals: trueup::totals(&months),
            months,
        });
    }
    Ok(TrueUp {
        at: now,
        since: filter.since,
        sources: SOURCES,
        lineages: lineages_out,
    })
}

fn short(id: &LicenseId) -> String {
    id.to_string().chars().take(8).collect()
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// The true-up as text: per lineage, its licenses, a table of months and totals.
pub fn render(t: &TrueUp) -> String {
    let mut s = String::new();
    if t.lineages.is_empty() {
        s.push_str("no licenses match\n");
    }
    for (i, l) in t.lineages.iter().enumerate() {
        if i > 0 {
            s.push('\n');
        }
        s.push_str(&format!("{} ({})\n", l.customer, l.customer_id));
        for (j, terms) in l.licenses.iter().enumerate() {
            s.push_str(&format!(
                "  license {} {}, {} nodes +{}% (ceiling {}), from {}{}\n",
                terms.id,
                terms.tier,
                terms.max_nodes,
                terms.overage_percent,
                terms.node_ceiling,
                date(terms.from),
                if j > 0 {
                    " (replaced the one above)"
                } else {
                    ""
                }
            ));
        }
        match l.last_report {
            Some(w) => s.push_str(&format!(
                "  {} usage report(s) imported, the newest written {}\n",
                l.reports,
                date(w)
            )),
            None => s.push_str("  no usage report imported yet\n"),
        }
        if l.months.is_empty() {
            s.push_str("  no months in range\n");
            continue;
        }
        s.push_str(&table(
            &[
                "MONTH", "LICENSE", "WHAT", "LICENSED", "CEILING", "PEAK", "TO BILL", "NOTE",
            ],
            &rows(&l.months),
        ));
        s.push_str(&totals_text(&l.totals));
    }
    s.push_str(&format!("note: {}\n", t.sources));
    s
}

fn rows(months: &[MonthLine]) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for m in months {
        let licenses: Vec<String> = m.licenses.iter().map(short).collect();
        let n = &m.nodes;
        let mut note = vec![m.status.as_str().to_string()];
        if m.licenses.len() > 1 {
            note.push("license changed: higher limits apply".into());
        }
        if m.clusters > 1 {
            note.push(format!("{} clusters added up", m.clusters));
        }
        match n.peak {
            None => note.push("no peak recorded".into()),
            Some(_) if n.above_ceiling => note.push("ABOVE CEILING".into()),
            Some(_) if n.overage > 0 => note.push("within overage".into()),
            Some(_) => {}
        }
        rows.push(vec![
            m.month.clone(),
            licenses.join("+"),
            "nodes".into(),
            n.licensed.to_string(),
            n.ceiling.to_string(),
            opt(n.peak),
            n.overage.to_string(),
            note.join(", "),
        ]);
        for q in &m.quotas {
            let note = match (q.period, q.periods_over) {
                (_, 0) => String::new(),
                (kaching_core::license::Period::Day, d) => format!("{d} day(s) over"),
                _ => "over".into(),
            };
            rows.push(vec![
                String::new(),
                String::new(),
                format!("{}/{}", q.metric, q.period),
                q.limit.to_string(),
                "-".into(),
                opt(q.peak),
                q.overage.to_string(),
                note,
            ]);
        }
    }
    rows
}

fn totals_text(t: &Totals) -> String {
    let mut s = String::new();
    match &t.peak_nodes {
        Some(p) => s.push_str(&format!(
            "  highest peak {} nodes ({}); node overage: {} at most in one month, {} node-months in all\n",
            p.nodes, p.month, t.max_node_overage, t.node_overage_months
        )),
        None => s.push_str("  no node peak recorded\n"),
    }
    let over: Vec<String> = t
        .quota_overage
        .iter()
        .filter(|(_, v)| **v > 0)
        .map(|(m, v)| format!("{m} {v}"))
        .collect();
    if !over.is_empty() {
        s.push_str(&format!(
            "  quota overage over the months: {}\n",
            over.join(", ")
        ));
    }
    if !t.months_above_ceiling.is_empty() {
        s.push_str(&format!(
            "  warning: peak above the ceiling in {}: the verifier admits no more than the ceiling, so look for the license on a second cluster, a cloned cluster, or a restored state database\n",
            t.months_above_ceiling.join(", ")
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: u8, supersedes: Option<u8>, superseded_by: Option<u8>) -> LicenseRecord {
        LicenseRecord {
            id: LicenseId([id; 16]),
            customer: "C".into(),
            customer_id: "c".into(),
            tier: "standard".into(),
            max_nodes: 10,
            issued_at: u64::from(id),
            expires_at: 1_000,
            grace: 0,
            cluster: None,
            supersedes: supersedes.map(|s| LicenseId([s; 16])),
            superseded_by: superseded_by.map(|s| LicenseId([s; 16])),
            kid: String::new(),
            file_sha256: String::new(),
            file: Vec::new(),
            path: String::new(),
        }
    }

    fn ids(l: &[Vec<&LicenseRecord>]) -> Vec<Vec<u8>> {
        l.iter()
            .map(|c| c.iter().map(|r| r.id.0[0]).collect())
            .collect()
    }

    #[test]
    fn every_license_is_in_exactly_one_lineage() {
        // 1 → 2 → 3; 4 alone; 5 replaces 1 too (a second replacement that
        // 1's superseded_by does not name); 6 replaces a license not in the ledger.
        let records = [
            rec(1, None, Some(2)),
            rec(2, Some(1), Some(3)),
            rec(3, Some(2), None),
            rec(4, None, None),
            rec(5, Some(1), None),
            rec(6, Some(9), None),
        ];
        assert_eq!(
            ids(&lineages(&records)),
            [vec![1, 2, 3], vec![4], vec![6], vec![5]]
        );
        // A loop (never written by licensegen) ends instead of spinning.
        let looped = [rec(1, Some(2), Some(2)), rec(2, Some(1), Some(1))];
        assert_eq!(ids(&lineages(&looped)), [vec![1, 2]]);
    }
}
