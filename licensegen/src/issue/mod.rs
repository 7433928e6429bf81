//! Issuing: sign the claims, check the signature, write the file (never over
//! an existing one), record it in the ledger in one transaction.

mod build;
mod request;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use kaching_core::time::Timestamp;
use kaching_core::{armor, verify_license, DocKind, License, LicenseId, SecretKey, TrustedKeys};
use rusqlite::TransactionBehavior;

pub use build::{
    build, check_activation_request, cluster_id_shape, find_tier, lowered_limits, parse_expiry,
    slug, Built, Mode,
};
pub use request::{read_spec, LicenseRequest};

use crate::ledger::{self, Ledger, LicenseRecord};
use crate::vendor_dir::{VendorDir, LICENSES_DIR};

/// A license that was signed, written and recorded.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The claims.
    pub license: License,
    /// Where the file went.
    pub path: PathBuf,
    /// Notes recorded in the history.
    pub notes: Vec<String>,
}

/// Signs `built`, writes it to `out` (or `licenses/<customer>-<id>.license`)
/// and records it; when it supersedes a license, marks that one too.
pub fn sign_and_record(
    vendor: &VendorDir,
    ledger: &mut Ledger,
    key: &SecretKey,
    built: Built,
    armored: bool,
    out: Option<&Path>,
    now: Timestamp,
) -> Result<Issued> {
    let license = built.license;
    let bytes = license.sign_with(key, vendor.config.alg);
    verify_license(&bytes, &TrustedKeys::from(key.public()))
        .context("self-check of the new license failed")?;
    let file = if armored {
        armor::armor(DocKind::License, &bytes).into_bytes()
    } else {
        bytes
    };
    let path = planned_path(vendor, &license, armored, out);
    if out.is_none() {
        let dir = vendor.path(LICENSES_DIR);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    crate::fsutil::write_new(&path, &file, false)?;
    // Recorded absolute, so `ledger show` and the desk find it from any folder.
    let recorded_path = std::path::absolute(&path).unwrap_or_else(|_| path.clone());
    let record = LicenseRecord {
        id: license.id,
        customer: license.customer.clone(),
        customer_id: license.customer_id.clone(),
        tier: license.tier.clone(),
        max_nodes: license.limits.max_nodes,
        issued_at: license.issued_at,
        expires_at: license.expires_at,
        grace: license.grace,
        cluster: license.cluster.clone(),
        supersedes: license.supersedes,
        superseded_by: None,
        kid: key.public().kid().to_hex(),
        file_sha256: ledger::sha256_hex(&file),
        file,
        path: recorded_path.display().to_string(),
    };
    let recorded = record_issue(ledger, &record, &built.notes, now);
    if recorded.is_err() {
        // The ledger is the record of truth: a file it does not know must not stay.
        let _ = std::fs::remove_file(&path);
    }
    recorded?;
    Ok(Issued {
        license,
        path,
        notes: built.notes,
    })
}

fn record_issue(
    ledger: &mut Ledger,
    rec: &LicenseRecord,
    notes: &[String],
    now: Timestamp,
) -> Result<()> {
    let tx = ledger
        .conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context("cannot lock the ledger")?;
    let mut detail = format!(
        "tier {}, {} nodes, expires {}",
        rec.tier,
        rec.max_nodes,
        kaching_core::time::rfc3339(rec.expires_at)
    );
    if let Some(old) = rec.supersedes {
        detail.push_str(&format!(", supersedes {old}"));
    }
    ledger::insert_license(&tx, rec, now, &detail)?;
    for n in notes {
        ledger::add_event(&tx, &rec.id, now, "note", n)?;
    }
    if let Some(old) = rec.supersedes {
        ledger::mark_superseded(&tx, &old, &rec.id, now)?;
    }
    tx.commit().context("cannot commit the ledger")?;
    Ok(())
}

/// Where a license goes: `out`, or `licenses/<customer id>-<id>.license`
/// in the vendor directory (the customer id cut to fit a file name; the id
/// keeps it unique).
pub fn planned_path(
    vendor: &VendorDir,
    license: &License,
    armored: bool,
    out: Option<&Path>,
) -> PathBuf {
    if let Some(p) = out {
        return p.to_path_buf();
    }
    let ext = if armored { "license.asc" } else { "license" };
    let name: String = slug(&license.customer_id)
        .chars()
        .take(MAX_NAME_IN_FILE)
        .collect();
    vendor.path(LICENSES_DIR).join(format!(
        "{}-{}.{ext}",
        name.trim_end_matches('-'),
        short_id(&license.id)
    ))
}

/// Characters of the customer id kept in a default file name (file
/// systems allow 255 bytes per name).
const MAX_NAME_IN_FILE: usize = 64;

/// The first 8 hex digits of an id, as shown in file names.
pub fn short_id(id: &LicenseId) -> String {
    id.to_string().chars().take(8).collect()
}

/// Reads the claims of a license recorded in the ledger.
pub fn recorded_license(vendor: &VendorDir, rec: &LicenseRecord) -> Result<License> {
    verify_license(&rec.file, &vendor.trusted_keys()?)
        .map(|v| v.license)
        .map_err(|e| {
            anyhow::anyhow!(
                "the ledger's copy of license {} does not verify ({e}): was the vendor key replaced? restore the ledger from backup",
                rec.id
            )
        })
}
