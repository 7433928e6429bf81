//! `inspect`: what a KACHING file says, and whether its signature holds.

use std::path::Path;

use anyhow::Result;
use coset::TaggedCborSerializable;
use kaching_core::clock_reset::{verify_clock_reset, ClockReset};
use kaching_core::cluster::{
    verify_activation_request, verify_usage_report, ActivationRequest, UsageReport,
};
use kaching_core::envelope::peek;
use kaching_core::license::License;
use kaching_core::receipt::{verify_receipt, Receipt};
use kaching_core::revocation::RevocationList;
use kaching_core::time::{human_duration, rfc3339};
use kaching_core::{armor, verify_license, verify_revocation_list, DocKind, TrustedKeys};
use serde::Serialize;

use crate::output::{json, out};

/// The signature's status as far as it could be checked.
#[derive(Debug, Clone, Serialize)]
pub struct SignatureStatus {
    /// `valid`, `invalid` or `unchecked`.
    pub status: &'static str,
    /// The kid named by the document.
    pub kid: String,
    /// Explanation.
    pub detail: String,
}

/// The decoded content of a document.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Content {
    /// A license.
    License(License),
    /// A revocation list.
    RevocationList(RevocationList),
    /// An activation request.
    ActivationRequest(ActivationRequest),
    /// A usage report.
    UsageReport(UsageReport),
    /// A receipt for a usage report.
    Receipt(Receipt),
    /// A clock reset for one cluster.
    ClockReset(ClockReset),
    /// A kind licensegen only names.
    Other,
}

/// Everything `inspect` found.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// The file.
    pub file: String,
    /// Document kind.
    pub kind: String,
    /// Armored or binary.
    pub armored: bool,
    /// Signature status.
    pub signature: SignatureStatus,
    /// The claims.
    pub content: Content,
}

/// Reads and examines a document file; `keys` are the known vendor keys.
pub fn inspect(path: &Path, keys: Option<&TrustedKeys>) -> Result<Inspection> {
    let input = crate::fsutil::read(path)?;
    let not_doc = |e: &dyn std::fmt::Display| {
        crate::error::usage(format!(
            "{} is not a KACHING document ({e}): expected a license, revocation list, activation request, usage report, receipt or clock reset",
            path.display()
        ))
    };
    let bytes = armor::dearmor(&input, None).map_err(|e| not_doc(&e))?;
    // For a file that is not even a COSE envelope, the decoder's detail is noise.
    let (kind, kid) = peek(&bytes).map_err(|_| not_doc(&"not a signed KACHING envelope"))?;
    let payload = coset::CoseSign1::from_tagged_slice(&bytes)
        .ok()
        .and_then(|s| s.payload)
        .unwrap_or_default();
    let kid_hex = kid.to_hex();
    let sig = |status, detail: String| SignatureStatus {
        status,
        kid: kid_hex.clone(),
        detail,
    };
    let vendor_sig = |ok: Result<(), kaching_core::Error>| match (keys, ok) {
        (Some(k), _) if k.get(&kid).is_none() => sig(
            "unchecked",
            format!("signed by key {kid}, which is not a known vendor key"),
        ),
        (None, _) => sig(
            "unchecked",
            "no vendor key known here: pass --pubkey or run inside the vendor directory".into(),
        ),
        (Some(_), Ok(())) => sig("valid", format!("signed by vendor key {kid}")),
        (Some(_), Err(e)) => sig("invalid", e.to_string()),
    };
    let empty = TrustedKeys::new();
    let k = keys.unwrap_or(&empty);
    let (signature, content) = match kind {
        DocKind::License => (
            vendor_sig(verify_license(&bytes, k).map(|_| ())),
            Content::License(License::from_cbor(&payload).map_err(|e| not_doc(&e))?),
        ),
        DocKind::RevocationList => (
            vendor_sig(verify_revocation_list(&bytes, k).map(|_| ())),
            Content::RevocationList(RevocationList::from_cbor(&payload).map_err(|e| not_doc(&e))?),
        ),
        DocKind::ActivationRequest => match verify_activation_request(&bytes) {
            Ok(r) => (
                sig(
                    "valid",
                    format!("self-signed by cluster key of {}", r.doc.cluster_id),
                ),
                Content::ActivationRequest(r.doc),
            ),
            Err(e) => (
                sig("invalid", e.to_string()),
                Content::ActivationRequest(
                    ActivationRequest::from_cbor(&payload).map_err(|e| not_doc(&e))?,
                ),
            ),
        },
        DocKind::UsageReport => match verify_usage_report(&bytes) {
            Ok(r) => (
                sig(
                    "valid",
                    format!("self-signed by cluster key of {}", r.doc.cluster_id),
                ),
                Content::UsageReport(r.doc),
            ),
            Err(e) => (
                sig("invalid", e.to_string()),
                Content::UsageReport(UsageReport::from_cbor(&payload).map_err(|e| not_doc(&e))?),
            ),
        },
        DocKind::Receipt => (
            vendor_sig(verify_receipt(&bytes, k).map(|_| ())),
            Content::Receipt(Receipt::from_cbor(&payload).map_err(|e| not_doc(&e))?),
        ),
        DocKind::ClockReset => (
            vendor_sig(verify_clock_reset(&bytes, k).map(|_| ())),
            Content::ClockReset(ClockReset::from_cbor(&payload).map_err(|e| not_doc(&e))?),
        ),
        _ => (
            sig("unchecked", "licensegen does not check this kind".into()),
            Content::Other,
        ),
    };
    Ok(Inspection {
        file: path.display().to_string(),
        kind: kind.to_string(),
        armored: armor::is_armored(&input),
        signature,
        content,
    })
}

/// Prints an inspection as text or JSON.
pub fn print(i: &Inspection, as_json: bool) -> Result<()> {
    if as_json {
        return json(i);
    }
    let mut s = String::new();
    let mut row = |k: &str, v: String| s.push_str(&format!("{:<13}{v}\n", format!("{k}:")));
    row("file", i.file.clone());
    row(
        "kind",
        format!("{}{}", i.kind, if i.armored { " (armored)" } else { "" }),
    );
    row(
        "signature",
        format!("{}: {}", i.signature.status, i.signature.detail),
    );
    match &i.content {
        Content::License(l) => {
            row("license id", l.id.to_string());
            row("customer", format!("{} ({})", l.customer, l.customer_id));
            row("issuer", l.issuer.clone());
            row("product", l.audience.clone());
            row("tier", l.tier.clone());
            row(
                "features",
                l.features.iter().cloned().collect::<Vec<_>>().join(", "),
            );
            row(
                "nodes",
                format!(
                    "{} (+{}% overage: up to {})",
                    l.limits.max_nodes,
                    l.overage,
                    l.node_ceiling()
                ),
            );
            if let Some(c) = l.limits.max_cores {
                row("cores", c.to_string());
            }
            let quotas: Vec<String> = l
                .quotas
                .iter()
                .map(|(n, q)| format!("{n} {}/{}", q.limit, q.period))
                .collect();
            row(
                "quotas",
                if quotas.is_empty() {
                    "none".into()
                } else {
                    quotas.join(", ")
                },
            );
            row("issued", rfc3339(l.issued_at));
            row("valid from", rfc3339(l.not_before));
            row(
                "expires",
                format!(
                    "{} (grace {}, until {})",
                    rfc3339(l.expires_at),
                    human_duration(l.grace),
                    rfc3339(l.expires_at.saturating_add(l.grace))
                ),
            );
            row(
                "cluster",
                l.cluster
                    .clone()
                    .unwrap_or_else(|| "not bound (runs on any cluster)".into()),
            );
            row(
                "heartbeat",
                match l.heartbeat {
                    Some(h) => format!(
                        "every {}, offline grace {} (connected)",
                        human_duration(h.interval),
                        human_duration(h.offline_grace)
                    ),
                    None => "none (air-gapped)".into(),
                },
            );
            if let Some(old) = l.supersedes {
                row("supersedes", old.to_string());
            }
        }
        Content::RevocationList(r) => {
            s.push_str(&crate::revocations::describe(r));
        }
        Content::ActivationRequest(a) => {
            row("cluster", a.cluster_id.clone());
            row("hostname", a.hostname.clone());
            row("nodes", a.nodes.to_string());
            row("created", rfc3339(a.created));
        }
        Content::UsageReport(u) => {
            row("license id", u.license_id.to_string());
            row("cluster", u.cluster_id.clone());
            row(
                "period",
                format!("{} to {}", rfc3339(u.period_start), rfc3339(u.period_end)),
            );
            row("peak nodes", u.peak_nodes.to_string());
            for (metric, buckets) in &u.counters {
                let b: Vec<String> = buckets.iter().map(|(k, v)| format!("{k}={v}")).collect();
                row(&format!("  {metric}"), b.join(", "));
            }
            row("upgrades", u.upgrade_requests.len().to_string());
            match &u.chain {
                Some(c) => {
                    row("report", format!("{} in the cluster's chain", c.seq));
                    row("trusted time", rfc3339(c.trusted_time));
                    row("acked up to", c.acked.to_string());
                }
                None => row(
                    "report",
                    "unchained (from a verifier older than receipts)".into(),
                ),
            }
        }
        Content::Receipt(r) => {
            row("cluster", r.cluster_id.clone());
            row("license id", r.license_id.to_string());
            row(
                "report",
                format!(
                    "{} (sha256 {})",
                    r.report_seq,
                    kaching_core::keys::hex(&r.report_hash)
                ),
            );
            row("issued", rfc3339(r.issued));
            let ids: Vec<String> = r.upgrade_requests.iter().map(u64::to_string).collect();
            row(
                "upgrades",
                if ids.is_empty() {
                    "none".into()
                } else {
                    format!("acknowledged: {}", ids.join(", "))
                },
            );
            for (metric, buckets) in &r.counters {
                let b: Vec<String> = buckets.iter().map(|(k, v)| format!("{k}={v}")).collect();
                row(&format!("  {metric}"), b.join(", "));
            }
            for (month, peak) in &r.node_peaks {
                row(&format!("  peak {month}"), peak.to_string());
            }
        }
        Content::ClockReset(r) => {
            row("reset id", r.id_text());
            row("cluster", r.cluster_id.clone());
            row(
                "mark",
                format!("{} (the cluster's mark it replaces)", rfc3339(r.mark)),
            );
            row(
                "new mark",
                format!("{} (when it was signed)", rfc3339(r.issued)),
            );
            row(
                "valid until",
                format!(
                    "{} ({} after signing; taken once)",
                    rfc3339(r.expires),
                    human_duration(r.expires.saturating_sub(r.issued))
                ),
            );
        }
        Content::Other => {}
    }
    out(&s)
}
