//! Importing a usage report through the desk: the upload is saved under
//! `usage-reports/` in the vendor directory and handed to the same
//! `usage::import` as `licensegen usage import` (chain checks, receipt).
//! With the key locked the report is still recorded and checked, as
//! `usage import --no-receipt` does; its receipt is signed later, from the
//! license page, once the key is unlocked.

use anyhow::Result;
use axum::extract::rejection::FormRejection;
use axum::extract::{Multipart, Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use kaching_core::root::Role;
use kaching_core::SecretKey;
use kaching_kit::web::UploadError;
use serde::Deserialize;

use super::actions::{bad_form, chrome, failed, forged, with_key};
use super::{pages, Desk};
use crate::ledger::Ledger;
use crate::vendor_dir::LEDGER_FILE;

/// Where uploaded reports and their receipts are kept.
pub const UPLOADS: &str = "usage-reports";

/// Only names the desk itself made: letters, digits, `.`, `-`, `_`.
fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// What an import did, for the page.
pub(super) struct Outcome {
    /// What `usage::import` returned.
    pub imported: crate::usage::Imported,
    /// The report's hash (as the ledger keys it).
    pub sha: String,
    /// The receipt's file name under `usage-reports/`, when one was written.
    pub receipt: Option<String>,
}

/// Imports the report file at `path` as `licensegen usage import` does:
/// with the receipt signed when the key is unlocked, else as
/// `usage import --no-receipt` (recorded, chain checked, no receipt).
fn import_file(desk: &Desk, path: &std::path::Path) -> Result<Outcome> {
    let v = desk.vendor()?;
    let catalog = v.catalog()?;
    let mut ledger = Ledger::open(&v.path(LEDGER_FILE))?;
    let now = crate::fsutil::now();
    let license_of = |rec: &crate::ledger::LicenseRecord| crate::issue::recorded_license(&v, rec);
    let imported = if desk.unlocked() {
        with_key(desk, &v, Role::Issuer, |key| {
            // `import` asks for an owned key only when it signs a receipt.
            let unlock =
                || -> Result<SecretKey> { Ok(SecretKey::from_pkcs8_pem(&key.to_pkcs8_pem()?)?) };
            let opts = crate::usage::ReceiptOptions {
                out: None,
                key: Some(&unlock as &dyn Fn() -> Result<SecretKey>),
            };
            crate::usage::import(&mut ledger, path, license_of, &catalog, &opts, now)
        })?
    } else {
        let opts = crate::usage::ReceiptOptions {
            out: None,
            key: None,
        };
        crate::usage::import(&mut ledger, path, license_of, &catalog, &opts, now)?
    };
    let bytes = crate::fsutil::read(path)?;
    let sha = kaching_core::cluster::verify_usage_report(&bytes)
        .map(|c| crate::ledger::sha256_hex(&c.bytes))
        .unwrap_or_default();
    let receipt = imported
        .receipt
        .as_ref()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned());
    Ok(Outcome {
        imported,
        sha,
        receipt,
    })
}

fn uploads_dir(v: &crate::vendor_dir::VendorDir) -> Result<std::path::PathBuf> {
    let dir = v.path(UPLOADS);
    std::fs::create_dir_all(&dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot create {} ({e}): check the vendor directory's permissions",
            dir.display()
        )
    })?;
    Ok(dir)
}

fn save_and_import(desk: &Desk, bytes: &[u8]) -> Result<Outcome> {
    let v = desk.vendor()?;
    let dir = uploads_dir(&v)?;
    let now = crate::fsutil::now();
    let sha = crate::ledger::sha256_hex(bytes);
    let path = dir.join(format!("upload-{now}-{}.usage", &sha[..12]));
    if !path.exists() {
        crate::fsutil::write_new(&path, bytes, false)?;
    }
    import_file(desk, &path)
}

/// Signs the receipt of a report recorded without one (imported while the
/// key was locked, or with `usage import --no-receipt`): the report the
/// ledger holds is imported again, now with the key.
fn sign_receipt(desk: &Desk, license: &str, report: &str) -> Result<Outcome> {
    let v = desk.vendor()?;
    if !desk.unlocked() {
        return Err(crate::error::usage(
            "the vendor key is locked: enter its passphrase in the Unlock form at the top of the page, then press the button again",
        ));
    }
    let file = {
        let ledger = Ledger::open(&v.path(LEDGER_FILE))?;
        let rec = crate::ledger::find_license(&ledger.conn, license)?;
        crate::ledger::usage_files(&ledger.conn, &rec.id)?
            .into_iter()
            .find(|f| crate::ledger::sha256_hex(f) == report)
            .ok_or_else(|| {
                crate::error::usage(format!(
                    "license {} has no usage report {report:?}: import the report first",
                    rec.id
                ))
            })?
    };
    let path = uploads_dir(&v)?.join(format!("report-{}.usage", &report[..16.min(report.len())]));
    if !path.exists() {
        crate::fsutil::write_new(&path, &file, false)?;
    }
    import_file(desk, &path)
}

/// `POST /desk/usage`: the uploaded report, imported.
pub(super) async fn import(State(desk): State<Desk>, mut form: Multipart) -> Response {
    let (csrf, bytes) = match kaching_kit::web::read_upload(&mut form, "report").await {
        Ok(u) => (u.csrf, u.file),
        Err(UploadError::CutOff) => {
            return pages::problem(
                StatusCode::BAD_REQUEST,
                "The upload was cut off.",
                "choose the file again and retry",
            )
        }
        Err(UploadError::Unreadable(e)) => {
            return pages::problem(
                StatusCode::BAD_REQUEST,
                "The upload could not be read.",
                &format!("{e}: choose the file again and retry"),
            )
        }
    };
    if !csrf.is_some_and(|c| desk.csrf.check(&c)) {
        return forged();
    }
    let Some(bytes) = bytes.filter(|b| !b.is_empty()) else {
        return pages::problem(
            StatusCode::BAD_REQUEST,
            "No file.",
            "choose the usage report the customer sent, then press Import",
        );
    };
    match save_and_import(&desk, &bytes) {
        Ok(o) => shown(&desk, &o, false),
        Err(e) => failed(&e),
    }
}

fn shown(desk: &Desk, o: &Outcome, signing: bool) -> Response {
    let back = format!("/desk/license/{}", o.imported.report.license_id);
    pages::imported(
        &chrome(desk, &back, None),
        &pages::ImportView {
            imported: &o.imported,
            sha: &o.sha,
            receipt: o.receipt.as_deref(),
            signing,
        },
    )
}

#[derive(Deserialize)]
pub(super) struct ReceiptForm {
    csrf: String,
    #[serde(default)]
    report: String,
}

/// `POST /desk/license/{id}/receipt`: sign the receipt of a report recorded
/// without one.
pub(super) async fn receipt_for(
    State(desk): State<Desk>,
    Path(id): Path<String>,
    form: Result<Form<ReceiptForm>, FormRejection>,
) -> Response {
    let f = match form {
        Ok(Form(f)) => f,
        Err(e) => return bad_form(e),
    };
    if !desk.csrf.check(&f.csrf) {
        return forged();
    }
    match sign_receipt(&desk, &id, f.report.trim()) {
        Ok(o) => shown(&desk, &o, true),
        Err(e) => failed(&e),
    }
}

/// `GET /desk/usage/{file}`: a receipt the desk wrote.
pub(super) async fn receipt(State(desk): State<Desk>, Path(file): Path<String>) -> Response {
    if !safe_name(&file) || !file.ends_with(".receipt.asc") {
        return pages::problem(
            StatusCode::NOT_FOUND,
            "No such receipt.",
            "download receipts from the page shown after an import",
        );
    }
    let read = desk
        .vendor()
        .and_then(|v| crate::fsutil::read(&v.path(UPLOADS).join(&file)));
    match read {
        Ok(bytes) => {
            let mut resp = (StatusCode::OK, bytes).into_response();
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            kaching_kit::web::secure(&mut resp);
            resp
        }
        Err(e) => failed(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_are_served_only_by_plain_names() {
        assert!(safe_name("upload-1-abc.usage.receipt.asc"));
        for bad in ["", "../kaching.toml", "a/b", ".hidden", "a\\b", "x%2f"] {
            assert!(!safe_name(bad), "{bad}");
        }
    }
}
