//! Activation requests uploaded to the issue form (`--bind` in the CLI):
//! checked as `licensegen issue --bind` checks them, then kept under
//! `activation-requests/` in the vendor directory by a name made of their
//! hash, so the preview and the sign step read the same file and the form
//! carries only that name.

use anyhow::Result;

use crate::vendor_dir::VendorDir;

/// Where uploaded activation requests are kept.
pub const DIR: &str = "activation-requests";

const PREFIX: &str = "request-";
const SUFFIX: &str = ".activation";

/// Checks and keeps an uploaded activation request; returns its name.
pub fn save(v: &VendorDir, bytes: &[u8]) -> Result<String> {
    crate::issue::check_activation_request(bytes, "the uploaded file")?;
    let dir = v.path(DIR);
    std::fs::create_dir_all(&dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot create {} ({e}): check the vendor directory's permissions",
            dir.display()
        )
    })?;
    let sha = crate::ledger::sha256_hex(bytes);
    let name = format!("{PREFIX}{}{SUFFIX}", &sha[..16]);
    let path = dir.join(&name);
    if !path.exists() {
        crate::fsutil::write_new(&path, bytes, false)?;
    }
    Ok(name)
}

/// A name the desk made, else refused: the form cannot point `--bind` at
/// another file of the machine.
pub fn checked_name(name: &str) -> Result<&str> {
    let hex = name
        .strip_prefix(PREFIX)
        .and_then(|n| n.strip_suffix(SUFFIX))
        .filter(|h| h.len() == 16 && h.chars().all(|c| c.is_ascii_hexdigit()));
    match hex {
        Some(_) => Ok(name),
        None => Err(crate::error::usage(format!(
            "activation request {name:?} is not one the desk saved: choose the request file again"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_the_desk_made_are_read() {
        assert!(checked_name("request-0123456789abcdef.activation").is_ok());
        for bad in [
            "",
            "../kaching.toml",
            "request-../../vendor.key.activation",
            "request-0123456789abcdef.activation/..",
            "request-0123456789abcde.activation",
            "/etc/passwd",
        ] {
            assert!(checked_name(bad).is_err(), "{bad}");
        }
    }
}
