//! `licensegen init`: a new vendor directory, built in a staging folder and
//! moved into place, so a failure half way leaves nothing behind.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use kaching_core::revocation::RevocationList;
use kaching_core::time::Timestamp;
use kaching_core::SecretKey;

use super::{
    Config, VendorDir, CONFIG_FILE, KEY_FILE, LEDGER_FILE, LICENSES_DIR, PUB_FILE,
    REVOCATIONS_ARMORED_FILE, REVOCATIONS_FILE, TIERS_FILE,
};
use crate::fsutil::write_atomic;
use crate::keystore::{seal, Protection};
use crate::ledger::{self, Ledger, RevocationRecord};

/// What `init` is asked to create.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The folder to create (or an empty/unrelated existing folder to fill).
    pub dir: PathBuf,
    /// Settings for `kaching.toml`.
    pub config: Config,
}

const ALL_FILES: [&str; 7] = [
    CONFIG_FILE,
    KEY_FILE,
    PUB_FILE,
    LEDGER_FILE,
    REVOCATIONS_FILE,
    REVOCATIONS_ARMORED_FILE,
    TIERS_FILE,
];

/// Creates a vendor directory with a fresh key pair; refuses to overwrite.
pub fn init(opts: &InitOptions, protection: &Protection, now: Timestamp) -> Result<VendorDir> {
    refuse_existing(&opts.dir)?;
    let parent = crate::fsutil::parent_of(&opts.dir);
    fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let name = opts
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "vendor".into());
    let staging = parent.join(format!(".{name}.init-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    create_private_dir(&staging)?;
    let result =
        fill(&staging, opts, protection, now).and_then(|()| move_into_place(&staging, &opts.dir));
    let _ = fs::remove_dir_all(&staging);
    result?;
    VendorDir::open(&opts.dir)
}

fn refuse_existing(dir: &Path) -> Result<()> {
    if let Some(parent) = super::enclosing_vendor_dir(dir) {
        return Err(crate::error::usage(format!(
            "{} is inside the vendor directory {}: a vendor directory cannot hold another one; use that one (--dir {}) or choose a folder outside it",
            dir.display(),
            parent.display(),
            parent.display()
        )));
    }
    if let Some(f) = ALL_FILES.iter().find(|f| dir.join(f).exists()) {
        return Err(crate::error::usage(format!(
            "{} already holds a vendor directory ({f} exists): init never overwrites one; choose another folder",
            dir.display()
        )));
    }
    Ok(())
}

fn create_private_dir(dir: &Path) -> Result<()> {
    let mut b = fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

fn fill(staging: &Path, opts: &InitOptions, protection: &Protection, now: Timestamp) -> Result<()> {
    let key = SecretKey::generate();
    write_atomic(&staging.join(KEY_FILE), &seal(&key, protection)?, true)?;
    write_atomic(
        &staging.join(PUB_FILE),
        key.public().to_pem().as_bytes(),
        false,
    )?;
    write_atomic(
        &staging.join(TIERS_FILE),
        kaching_core::tiers::BUILTIN_CATALOG.as_bytes(),
        false,
    )?;
    write_atomic(
        &staging.join(CONFIG_FILE),
        opts.config.to_toml().as_bytes(),
        false,
    )?;
    fs::create_dir(staging.join(LICENSES_DIR))?;
    let vendor = VendorDir {
        root: staging.to_path_buf(),
        config: opts.config.clone(),
    };
    let list = RevocationList {
        issuer: opts.config.issuer.clone(),
        version: 1,
        issued_at: now,
        expires: now.saturating_add(opts.config.revocation_validity_secs()?),
        entries: Vec::new(),
    };
    let bytes = crate::revocations::write_list(&vendor, &list, &key)?;
    let ledger = Ledger::create(&staging.join(LEDGER_FILE))?;
    ledger::insert_revocation(
        &ledger.conn,
        &RevocationRecord {
            version: 1,
            issued_at: list.issued_at,
            expires: list.expires,
            entries: 0,
            file: bytes,
        },
    )?;
    // Closing the connection checkpoints the WAL into the main file.
    ledger.conn.close().map_err(|(_, e)| e)?;
    Ok(())
}

fn move_into_place(staging: &Path, dir: &Path) -> Result<()> {
    if !dir.exists() {
        fs::rename(staging, dir).with_context(|| {
            format!("cannot move the new vendor directory to {}", dir.display())
        })?;
        crate::fsutil::sync_dir(&crate::fsutil::parent_of(dir));
        return Ok(());
    }
    // An existing folder: move each entry in, refusing anything that appeared meanwhile.
    refuse_existing(dir)?;
    for entry in fs::read_dir(staging)? {
        let entry = entry?;
        let target = dir.join(entry.file_name());
        if target.exists() && entry.file_name() != LICENSES_DIR {
            anyhow::bail!(
                "{} appeared during init: nothing was changed",
                target.display()
            );
        }
        if target.exists() {
            continue;
        }
        fs::rename(entry.path(), &target)
            .with_context(|| format!("cannot move {} into place", target.display()))?;
    }
    crate::fsutil::sync_dir(dir);
    Ok(())
}
