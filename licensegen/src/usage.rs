//! `usage import`: record a cluster-signed usage report carried back from a
//! customer site, and show what it says against the license's limits.

use std::path::Path;

use anyhow::{Context, Result};
use kaching_core::cluster::{verify_usage_report, UsageReport};
use kaching_core::policy::warning_ratio;
use kaching_core::time::{rfc3339, Timestamp};
use rusqlite::TransactionBehavior;

use kaching_core::{License, TierCatalog};

use crate::ledger::{self, Ledger, LicenseRecord, UsageRecord};

/// The outcome of an import.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The report.
    pub report: UsageReport,
    /// False when the same file had been imported before (nothing recorded).
    pub new: bool,
    /// Things sales ops should look at (over limits, foreign cluster).
    pub warnings: Vec<String>,
}

/// Verifies and records a usage report file; `license_of` reads the recorded
/// license's claims (for quota warnings) and `catalog` gives the thresholds.
pub fn import(
    ledger: &mut Ledger,
    path: &Path,
    license_of: impl Fn(&LicenseRecord) -> Result<License>,
    catalog: &TierCatalog,
    now: Timestamp,
) -> Result<Imported> {
    let input = crate::fsutil::read(path)?;
    let checked = verify_usage_report(&input).map_err(|e| {
        crate::error::usage(format!(
            "{} is not a valid usage report ({e}): ask the customer to run `kaching-verifier usage-report` again",
            path.display()
        ))
    })?;
    let report = checked.doc;
    let rec = ledger::find_license(&ledger.conn, &report.license_id.to_string())?;
    let mut warnings = Vec::new();
    match &rec.cluster {
        Some(bound) if *bound != report.cluster_id => warnings.push(format!(
            "report comes from cluster {}, but the license is bound to {bound}: the license may be in use elsewhere",
            report.cluster_id
        )),
        _ => {}
    }
    let license = license_of(&rec)?;
    // Inside the allowed overage is within the license, as the verifier's
    // node admission sees it.
    if u64::from(report.peak_nodes) > license.node_ceiling() {
        warnings.push(format!(
            "peak of {} nodes is above the license's {} nodes",
            report.peak_nodes, license.limits.max_nodes
        ));
    }
    quota_warnings(&report, &license, catalog, &mut warnings);
    let sha = ledger::sha256_hex(&checked.bytes);
    let record = UsageRecord {
        license_id: report.license_id.to_string(),
        cluster_id: report.cluster_id.clone(),
        period_start: report.period_start,
        period_end: report.period_end,
        peak_nodes: report.peak_nodes,
        counters: serde_json::to_value(&report.counters)?,
        upgrade_requests: serde_json::to_value(&report.upgrade_requests)?,
        file_sha256: sha,
        imported_at: now,
    };
    let tx = ledger
        .conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context("cannot lock the ledger")?;
    let new = ledger::insert_usage(&tx, &record, &checked.bytes)?;
    if new {
        ledger::add_event(
            &tx,
            &report.license_id,
            now,
            "usage",
            &format!(
                "usage report from cluster {} for {} to {}: peak {} nodes, {} upgrade request(s)",
                report.cluster_id,
                rfc3339(report.period_start),
                rfc3339(report.period_end),
                report.peak_nodes,
                report.upgrade_requests.len()
            ),
        )?;
    }
    tx.commit().context("cannot commit the ledger")?;
    Ok(Imported {
        report,
        new,
        warnings,
    })
}

/// Flags buckets at or over the catalog's suggestion threshold of a quota:
/// the verifier's own rule, [`warning_ratio`].
fn quota_warnings(
    report: &UsageReport,
    license: &License,
    catalog: &TierCatalog,
    warnings: &mut Vec<String>,
) {
    for (metric, buckets) in &report.counters {
        let Some(q) = license.quotas.get(metric) else {
            continue;
        };
        for (bucket, used) in buckets {
            if let Some(share) = warning_ratio(catalog, metric, *used, q.limit) {
                warnings.push(format!(
                    "{metric} reached {used} of {} per {} ({:.0}%) in {bucket}: offer an upgrade",
                    q.limit,
                    q.period,
                    share * 100.0
                ));
            }
        }
    }
}

/// Text summary of an import.
pub fn describe(i: &Imported) -> String {
    let r = &i.report;
    let mut s = if i.new {
        format!("imported usage report for license {}\n", r.license_id)
    } else {
        format!(
            "usage report for license {} was already imported; nothing changed\n",
            r.license_id
        )
    };
    s.push_str(&format!(
        "  cluster {}, {} to {}, peak {} nodes\n",
        r.cluster_id,
        rfc3339(r.period_start),
        rfc3339(r.period_end),
        r.peak_nodes
    ));
    for (metric, buckets) in &r.counters {
        let b: Vec<String> = buckets.iter().map(|(k, v)| format!("{k}={v}")).collect();
        s.push_str(&format!("  {metric}: {}\n", b.join(", ")));
    }
    for u in &r.upgrade_requests {
        s.push_str(&format!(
            "  upgrade request ({}): tier {} — {}\n",
            rfc3339(u.time),
            u.requested_tier,
            u.message
        ));
    }
    for w in &i.warnings {
        s.push_str(&format!("  warning: {w}\n"));
    }
    s
}
