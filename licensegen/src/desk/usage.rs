//! Importing a usage report through the desk: the upload is saved under
//! `usage-reports/` in the vendor directory and handed to the same
//! `usage::import` as `licensegen usage import` (chain checks, receipt).

use anyhow::Result;
use axum::extract::{Multipart, Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use kaching_core::root::Role;
use kaching_core::SecretKey;
use kaching_kit::web::UploadError;

use super::actions::{chrome, failed, forged, with_key};
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

fn save_and_import(desk: &Desk, bytes: &[u8]) -> Result<(crate::usage::Imported, Option<String>)> {
    let v = desk.vendor()?;
    let dir = v.path(UPLOADS);
    std::fs::create_dir_all(&dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot create {} ({e}): check the vendor directory's permissions",
            dir.display()
        )
    })?;
    let now = crate::fsutil::now();
    let sha = crate::ledger::sha256_hex(bytes);
    let path = dir.join(format!("upload-{now}-{}.usage", &sha[..12]));
    if !path.exists() {
        crate::fsutil::write_new(&path, bytes, false)?;
    }
    let catalog = v.catalog()?;
    let mut ledger = Ledger::open(&v.path(LEDGER_FILE))?;
    let imported = with_key(desk, &v, Role::Issuer, |key| {
        // `import` asks for an owned key only when it signs a receipt.
        let unlock =
            || -> Result<SecretKey> { Ok(SecretKey::from_pkcs8_pem(&key.to_pkcs8_pem()?)?) };
        let opts = crate::usage::ReceiptOptions {
            out: None,
            key: Some(&unlock as &dyn Fn() -> Result<SecretKey>),
        };
        crate::usage::import(
            &mut ledger,
            &path,
            |rec| crate::issue::recorded_license(&v, rec),
            &catalog,
            &opts,
            now,
        )
    })?;
    let receipt = imported
        .receipt
        .as_ref()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned());
    Ok((imported, receipt))
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
        Ok((i, receipt)) => pages::imported(&chrome(&desk, "/desk/", None), &i, receipt.as_deref()),
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
