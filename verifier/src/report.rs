//! The cluster's side of the air-gapped round trip: activation requests,
//! usage reports (signed with the cluster key, chained by sequence number
//! and hash) and the vendor's receipts for them.
//!
//! Nothing is marked done when a report is written: every report carries
//! everything no receipt has acknowledged yet, so a report file that is lost
//! or overwritten loses nothing. The rules (what a report carries, what a
//! receipt clears) are `kaching_core::receipt`'s; this module reads and
//! writes the state database around them.

use anyhow::{anyhow, bail};
use kaching_core::armor::armor;
use kaching_core::cluster::{
    report_hash, ActivationRequest, ReportChain, ReportedUpgrade, UsageReport,
};
use kaching_core::receipt::{self, verify_receipt, Clearing, Receipt};
use kaching_core::root::Role;
use kaching_core::time::Timestamp;
use kaching_core::{DocKind, Error};

use crate::engine::Engine;

/// An armored activation request for this cluster.
pub fn activation_request(engine: &Engine, now: Timestamp) -> String {
    let req = ActivationRequest {
        cluster_id: engine.identity.cluster_id.clone(),
        cluster_key: *engine.identity.key.public().as_bytes(),
        hostname: crate::identity::hostname(),
        nodes: u32::try_from(engine.live_nodes(now)).unwrap_or(u32::MAX),
        created: now,
    };
    armor(DocKind::ActivationRequest, &req.sign(&engine.identity.key))
}

/// Writes the next usage report of the chain: every counter bucket and
/// monthly node peak not acknowledged at its current value, the all-time
/// peak, and every upgrade request not acknowledged. `write` gets the
/// armored text and puts it in place; the report joins the chain only when
/// it succeeded. Marks nothing as done: that is what receipts do.
pub fn usage_report(
    engine: &mut Engine,
    now: Timestamp,
    write: impl FnOnce(&str) -> anyhow::Result<()>,
) -> anyhow::Result<UsageReport> {
    let Some(license) = engine.license() else {
        bail!(
            "no valid license is in force, and usage is reported per license: install the license first (see `kaching-verifier check`)"
        );
    };
    let license_id = license.license.id;
    engine.persist_mark(true)?;
    let pending = engine.db.pending()?;
    let (counters, node_peaks) = receipt::outstanding(&pending);
    let upgrade_requests = engine
        .db
        .upgrades()?
        .into_iter()
        .filter(|q| !q.reported)
        .map(|q| ReportedUpgrade {
            id: u64::try_from(q.id).ok(),
            request: q.request,
        })
        .collect();
    let head = engine.db.report_head()?;
    let acked = engine.db.acked_seq()?;
    let period_start = match engine.db.report_time(acked)? {
        Some(t) => t,
        None => engine.db.time("created_at")?.unwrap_or(now),
    };
    let report = UsageReport {
        license_id,
        cluster_id: engine.identity.cluster_id.clone(),
        period_start,
        period_end: now.max(period_start),
        counters,
        peak_nodes: u32::try_from(engine.db.peak_nodes()?).unwrap_or(u32::MAX),
        upgrade_requests,
        chain: Some(ReportChain {
            seq: head.map_or(1, |(seq, _)| seq + 1),
            prev: head.map(|(_, hash)| hash),
            trusted_time: engine.trusted_time(),
            acked,
            node_peaks,
        }),
    };
    let bytes = report.sign(&engine.identity.key);
    let text = armor(DocKind::UsageReport, &bytes);
    let seq = report.chain.as_ref().map_or(1, |c| c.seq);
    engine
        .db
        .record_report(seq, &report_hash(&bytes), now, || write(&text))?;
    Ok(report)
}

/// Why a document only an issuer key may sign (a receipt, a clock reset)
/// did not verify: `"<what> refused: …"`, naming the role of a key the
/// trust chain knows (a revoker's, say) instead of calling it unknown.
pub(crate) fn refused_by_issuer_keys(
    trust: &crate::trust::Trust,
    e: &Error,
    what: &str,
    plural: &str,
) -> anyhow::Error {
    match e {
        Error::UnknownKey(kid) => anyhow!(
            "{what} refused: {}",
            trust.explain(kid, Role::Issuer).unwrap_or_else(|| format!(
                "it is signed by key {kid}, which is not a key of your vendor that may sign {plural} (issuer)"
            ))
        ),
        _ => anyhow!("{what} refused: {e}"),
    }
}

/// What importing a receipt did.
#[derive(Debug, Clone)]
pub struct ReceiptImported {
    /// The receipt.
    pub receipt: Receipt,
    /// What it marked as acknowledged (empty for a replay).
    pub cleared: Clearing,
    /// True when this receipt had been imported before.
    pub again: bool,
}

/// Verifies a receipt against the issuer keys in force and clears exactly
/// what it acknowledges. Refuses a receipt for another cluster, for a report
/// this cluster has no record of writing, or signed by a key without the
/// issuer role; importing one twice changes nothing.
pub fn import_receipt(
    engine: &mut Engine,
    input: &[u8],
    now: Timestamp,
) -> anyhow::Result<ReceiptImported> {
    let Some(trust) = engine.trust.as_ref() else {
        bail!("no trusted keys are loaded, so no receipt can be checked: see `kaching-verifier check`");
    };
    let verified = verify_receipt(input, &trust.issuers)
        .map_err(|e| refused_by_issuer_keys(trust, &e, "receipt", "receipts"))?;
    let r = &verified.receipt;
    let written = engine.db.report_hash(r.report_seq)?;
    let pending = engine.db.pending()?;
    let cleared = receipt::clearing(r, &engine.identity.cluster_id, written, &pending)
        .map_err(|e| anyhow!("receipt refused: {e}"))?;
    let again = engine.db.receipt(r.report_seq)?.is_some();
    engine
        .db
        .apply_receipt(r.report_seq, &verified.bytes, &cleared, now)?;
    // The duty to report (a license's `report` claim) counts from here.
    engine.refresh_last_ack();
    engine.recompute(now);
    Ok(ReceiptImported {
        receipt: verified.receipt,
        cleared,
        again,
    })
}
