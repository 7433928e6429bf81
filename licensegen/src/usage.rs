//! `usage import`: record a cluster-signed usage report carried back from a
//! customer site, check it against the cluster's report chain, show what it
//! says against the license's limits, and write the receipt the cluster
//! imports to clear what the vendor now has.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use kaching_core::armor::armor;
use kaching_core::clock_reset;
use kaching_core::cluster::{report_hash, verify_usage_report, UsageReport};
use kaching_core::policy::warning_ratio;
use kaching_core::receipt::Receipt;
use kaching_core::report_chain::{self, Finding, Link};
use kaching_core::time::{rfc3339, Timestamp};
use kaching_core::{DocKind, SecretKey};
use rusqlite::TransactionBehavior;

use kaching_core::{License, TierCatalog};

use crate::ledger::{self, ChainRecord, ClockResetRecord, Ledger, LicenseRecord, UsageRecord};

/// The outcome of an import.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The report.
    pub report: UsageReport,
    /// False when the same file had been imported before (nothing recorded).
    pub new: bool,
    /// Things sales ops should look at (over limits, foreign cluster).
    pub warnings: Vec<String>,
    /// What the chain check found (recorded at the first import).
    pub findings: Vec<Finding>,
    /// Findings a clock reset recorded for the cluster accounts for, said
    /// in words: not flagged, not recorded as findings (first import only).
    pub notes: Vec<String>,
    /// Ids of the report's upgrade requests no earlier report of the cluster carried.
    pub new_requests: usize,
    /// Where the receipt was written, if one was.
    pub receipt: Option<PathBuf>,
    /// The receipt (binary), when one was signed now or before.
    pub receipt_bytes: Option<Vec<u8>>,
}

impl Imported {
    /// The exit code: gap, rollback, or success.
    pub fn exit_code(&self) -> u8 {
        if self.findings.iter().any(Finding::is_rollback) {
            crate::exit::CHAIN_ROLLBACK
        } else if self.findings.is_empty() {
            crate::exit::OK
        } else {
            crate::exit::CHAIN_GAP
        }
    }
}

/// Where the receipt goes and who signs it.
pub struct ReceiptOptions<'a> {
    /// Write the receipt here [default: beside the report, `NAME.receipt.asc`].
    pub out: Option<&'a Path>,
    /// `None`: record only, write no receipt.
    pub key: Option<&'a dyn Fn() -> Result<SecretKey>>,
}

/// The default receipt path for a report file: `usage.asc` → `usage.receipt.asc`.
pub fn default_receipt_path(report: &Path) -> PathBuf {
    let stem = report
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "usage".into());
    report.with_file_name(format!("{stem}.receipt.asc"))
}

/// Verifies and records a usage report file; `license_of` reads the recorded
/// license's claims (for quota warnings) and `catalog` gives the thresholds.
/// For a chained report, checks the chain and writes a receipt (the same
/// bytes again when the report was imported before).
pub fn import(
    ledger: &mut Ledger,
    path: &Path,
    license_of: impl Fn(&LicenseRecord) -> Result<License>,
    catalog: &TierCatalog,
    receipt_opts: &ReceiptOptions<'_>,
    now: Timestamp,
) -> Result<Imported> {
    let input = crate::fsutil::read(path)?;
    let out = receipt_opts
        .out
        .map_or_else(|| default_receipt_path(path), Path::to_path_buf);
    let chosen = receipt_opts.out.is_some();
    // A chosen --receipt never replaces a file, except the same receipt
    // written by an earlier import of this report.
    let taken = || {
        crate::error::usage(format!(
            "{} already exists: pick another --receipt name, or delete the file first if it is an old receipt you no longer need",
            out.display()
        ))
    };
    if chosen && out.exists() {
        let begin = format!("-----BEGIN {}-----", DocKind::Receipt.armor_label());
        if !std::fs::read(&out).is_ok_and(|b| b.starts_with(begin.as_bytes())) {
            return Err(taken());
        }
    }
    let mut written = None;
    let mut deliver = |bytes: &[u8]| -> Result<()> {
        let text = armor(DocKind::Receipt, bytes);
        if chosen {
            match kaching_kit::fs::write_new(&out, text.as_bytes(), false) {
                Err(kaching_kit::fs::WriteError::Exists { .. })
                    if std::fs::read(&out).ok().as_deref() != Some(text.as_bytes()) =>
                {
                    return Err(taken())
                }
                Err(kaching_kit::fs::WriteError::Exists { .. }) => {}
                other => other
                    .with_context(|| format!("cannot write the receipt to {}", out.display()))?,
            }
        } else {
            crate::fsutil::write_atomic(&out, text.as_bytes(), false)
                .with_context(|| format!("cannot write the receipt to {}", out.display()))?;
        }
        written = Some(out.clone());
        Ok(())
    };
    let mut imported = import_document(
        ledger,
        &input,
        &path.display().to_string(),
        license_of,
        catalog,
        receipt_opts.key.map(Signer::Unlock),
        &mut deliver,
        now,
    )?;
    imported.receipt = written;
    Ok(imported)
}

/// Who signs a receipt.
#[derive(Clone, Copy)]
pub enum Signer<'a> {
    /// Unlock the issuer key when a receipt must be signed (it may ask for a passphrase).
    Unlock(&'a dyn Fn() -> Result<SecretKey>),
    /// An issuer key unlocked already (`usage pull` unlocks it once).
    Key(&'a SecretKey),
}

/// Verifies and records one usage report (`what` names it in errors) and,
/// with a `signer`, hands its receipt to `deliver` (the same bytes again
/// when the report was imported before) before the ledger commits: a
/// receipt that cannot be delivered leaves the import undone, to be run
/// again. `usage import` writes the receipt to a file; `usage pull` posts
/// it to the relay.
#[allow(clippy::too_many_arguments)]
pub fn import_document(
    ledger: &mut Ledger,
    input: &[u8],
    what: &str,
    license_of: impl Fn(&LicenseRecord) -> Result<License>,
    catalog: &TierCatalog,
    signer: Option<Signer<'_>>,
    deliver: &mut dyn FnMut(&[u8]) -> Result<()>,
    now: Timestamp,
) -> Result<Imported> {
    let checked = verify_usage_report(input).map_err(|e| {
        crate::error::usage(format!(
            "{what} is not a valid usage report ({e}): ask the customer to run `kaching-verifier usage-report` again"
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
    if report.chain.is_none() {
        warnings.push(
            "unchained report from a verifier older than receipts: recorded without chain checks and without a receipt; upgrade the customer's kaching-verifier".into(),
        );
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
    let hash = report_hash(&checked.bytes);
    let sha = kaching_core::keys::hex(&hash);
    // Unlock the key before taking the ledger lock (it may ask for a passphrase).
    let stored_receipt = ledger::receipt_for(&ledger.conn, &sha)?;
    let unlocked;
    let key: Option<&SecretKey> = match (&report.chain, &stored_receipt, signer) {
        (Some(_), None, Some(Signer::Unlock(unlock))) => {
            unlocked = unlock()?;
            Some(&unlocked)
        }
        (Some(_), None, Some(Signer::Key(key))) => Some(key),
        _ => None,
    };
    let record = UsageRecord {
        license_id: report.license_id.to_string(),
        cluster_id: report.cluster_id.clone(),
        period_start: report.period_start,
        period_end: report.period_end,
        peak_nodes: report.peak_nodes,
        counters: serde_json::to_value(&report.counters)?,
        upgrade_requests: serde_json::to_value(&report.upgrade_requests)?,
        file_sha256: sha.clone(),
        imported_at: now,
        chain: None,
    };
    let tx = ledger
        .conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context("cannot lock the ledger")?;
    let seen = ledger::reported_upgrade_ids(&tx, &report.cluster_id, &sha)?;
    let new_requests = report
        .upgrade_requests
        .iter()
        .filter(|r| r.id.is_none_or(|id| !seen.contains(&id)))
        .count();
    let new = ledger::insert_usage(&tx, &record, &checked.bytes)?;
    if new {
        ledger::add_event(
            &tx,
            &report.license_id,
            now,
            "usage",
            &format!(
                "usage report {}from cluster {} for {} to {}: peak {} nodes, {} new upgrade request(s)",
                report
                    .chain
                    .as_ref()
                    .map(|c| format!("{} ", c.seq))
                    .unwrap_or_default(),
                report.cluster_id,
                rfc3339(report.period_start),
                rfc3339(report.period_end),
                report.peak_nodes,
                new_requests
            ),
        )?;
    }
    let mut findings = Vec::new();
    let mut notes = Vec::new();
    if let (Some(link), Some(chain)) = (Link::of(&report, hash), &report.chain) {
        let (known, recorded) = ledger::chain_links(&tx, &report.cluster_id, &sha)?;
        match recorded {
            Some(f) => findings = f,
            None => {
                let resets = ledger::clock_resets_for(&tx, &[report.cluster_id.as_str()])?;
                (findings, notes) = explained(report_chain::check(&known, &link), &resets);
                for n in &notes {
                    ledger::add_event(
                        &tx,
                        &report.license_id,
                        now,
                        "note",
                        &format!("cluster {} report {}: {n}", report.cluster_id, chain.seq),
                    )?;
                }
                let c = ChainRecord {
                    seq: chain.seq,
                    trusted_time: chain.trusted_time,
                    acked: chain.acked,
                    findings: findings.clone(),
                };
                ledger::insert_chain(&tx, &sha, &report.cluster_id, &link, &c)?;
                for f in &findings {
                    ledger::add_event(
                        &tx,
                        &report.license_id,
                        now,
                        "chain",
                        &format!("cluster {} report {}: {f}", report.cluster_id, chain.seq),
                    )?;
                }
            }
        }
    }
    // Another import of the same report may have signed its receipt while
    // this one waited for the lock: hand out that one.
    let stored_receipt = match stored_receipt {
        Some(bytes) => Some(bytes),
        None => ledger::receipt_for(&tx, &sha)?,
    };
    let receipt_bytes = match (stored_receipt, key) {
        (Some(bytes), _) => Some(bytes),
        (None, Some(key)) => match Receipt::for_report(&report, hash, now) {
            Some(r) => {
                let bytes = r.sign(key);
                ledger::insert_receipt(&tx, &sha, &r, &bytes)?;
                Some(bytes)
            }
            None => None,
        },
        (None, None) => None,
    };
    if let (Some(bytes), Some(_)) = (&receipt_bytes, signer) {
        deliver(bytes)?;
    }
    tx.commit().context("cannot commit the ledger")?;
    Ok(Imported {
        report,
        new,
        warnings,
        findings,
        notes,
        new_requests,
        receipt: None,
        receipt_bytes,
    })
}

/// Splits chain findings into those that stay flagged and notes for the
/// trusted-time marks a clock reset signed for the cluster accounts for
/// (core's rule, `clock_reset::explains`): such a mark went back because
/// the cluster took the reset, not because its state was restored.
fn explained(findings: Vec<Finding>, resets: &[ClockResetRecord]) -> (Vec<Finding>, Vec<String>) {
    let mut kept = Vec::new();
    let mut notes = Vec::new();
    for f in findings {
        let by = match &f {
            Finding::TimeBack { earlier, later, .. } => resets.iter().find(|r| {
                r.reset()
                    .is_some_and(|reset| clock_reset::explains(&reset, *earlier, *later))
            }),
            _ => None,
        };
        match (by, &f) {
            (
                Some(r),
                Finding::TimeBack {
                    earlier_seq,
                    earlier,
                    later_seq,
                    later,
                },
            ) => notes.push(format!(
                "trusted time went back from {} in report {earlier_seq} to {} in report {later_seq}: the clock reset {} signed {} for this cluster set it there; not a rollback",
                rfc3339(*earlier),
                rfc3339(*later),
                r.id,
                rfc3339(r.issued)
            )),
            _ => kept.push(f),
        }
    }
    (kept, notes)
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
    let which = match &r.chain {
        Some(c) => format!("usage report {} ", c.seq),
        None => "usage report ".into(),
    };
    let mut s = if i.new {
        format!("imported {which}for license {}\n", r.license_id)
    } else {
        format!(
            "{which}for license {} was already imported; nothing changed\n",
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
    if let Some(c) = &r.chain {
        let acked = match c.acked {
            0 => "no receipt imported yet".to_string(),
            n => format!("receipts imported up to report {n}"),
        };
        s.push_str(&format!(
            "  chain: report {}, cluster's trusted time {}, {acked}\n",
            c.seq,
            rfc3339(c.trusted_time)
        ));
        if !c.node_peaks.is_empty() {
            let p: Vec<String> = c
                .node_peaks
                .iter()
                .map(|(m, n)| format!("{m}={n}"))
                .collect();
            s.push_str(&format!("  peak nodes per month: {}\n", p.join(", ")));
        }
    }
    for (metric, buckets) in &r.counters {
        let b: Vec<String> = buckets.iter().map(|(k, v)| format!("{k}={v}")).collect();
        s.push_str(&format!("  {metric}: {}\n", b.join(", ")));
    }
    let again = r.upgrade_requests.len().saturating_sub(i.new_requests);
    if again > 0 {
        s.push_str(&format!(
            "  {} upgrade request(s), {again} of them already in an earlier report (not yet acknowledged to the cluster)\n",
            r.upgrade_requests.len()
        ));
    }
    for u in &r.upgrade_requests {
        let id = u.id.map(|id| format!(" #{id}")).unwrap_or_default();
        s.push_str(&format!(
            "  upgrade request{id} ({}): tier {} — {}\n",
            rfc3339(u.request.time),
            u.request.requested_tier,
            u.request.message
        ));
    }
    for w in &i.warnings {
        s.push_str(&format!("  warning: {w}\n"));
    }
    for n in &i.notes {
        s.push_str(&format!("  note: {n}\n"));
    }
    for f in &i.findings {
        s.push_str(&format!("  FLAGGED {f}\n"));
    }
    match &i.receipt {
        Some(p) => s.push_str(&format!(
            "receipt written to {}: send it to the customer (kaching-verifier receipt import {})\n",
            p.display(),
            p.display()
        )),
        None if r.chain.is_some() => s.push_str("no receipt written (--no-receipt)\n"),
        None => {}
    }
    s
}
