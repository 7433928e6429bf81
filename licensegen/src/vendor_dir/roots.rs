//! The vendor's root chain on disk: `roots/root-v<N>.root` (armored), and at
//! most one root under signature, `roots/root-v<N>.draft`.
//!
//! The chain is re-verified from v1 every time it is read, so a file edited
//! or dropped in by hand never counts unless it follows.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use kaching_core::armor::dearmor;
use kaching_core::root::{verify_initial_root, Role, TrustChain};
use kaching_core::{DocKind, TrustedKeys};

use super::VendorDir;
use crate::fsutil::now;

/// The folder of roots inside a vendor directory.
pub const ROOTS_DIR: &str = "roots";

/// Reads an armored root (or root draft) file.
pub fn read_root_file(path: &std::path::Path) -> Result<Vec<u8>> {
    let text = crate::fsutil::read(path)?;
    dearmor(&text, Some(DocKind::Root))
        .with_context(|| format!("{} is not a root (KACHING ROOT armor)", path.display()))
}

impl VendorDir {
    /// Where root `version` is kept once it has every signature it needs.
    pub fn root_file(&self, version: u64) -> PathBuf {
        self.path(ROOTS_DIR).join(format!("root-v{version}.root"))
    }

    /// Where root `version` waits while key holders sign it.
    pub fn draft_file(&self, version: u64) -> PathBuf {
        self.path(ROOTS_DIR).join(format!("root-v{version}.draft"))
    }

    /// The vendor's root chain, walked from v1; `None` before `root init`.
    pub fn root_chain(&self) -> Result<Option<TrustChain>> {
        let first = self.root_file(1);
        if !first.exists() {
            return Ok(None);
        }
        let v1 = verify_initial_root(&read_root_file(&first)?)
            .with_context(|| format!("{} does not verify", first.display()))?;
        let mut chain = TrustChain::new(v1);
        let mut next = 2;
        loop {
            let p = self.root_file(next);
            if !p.exists() {
                break;
            }
            let bytes = read_root_file(&p)?;
            let moved = chain.update([bytes.as_slice()], now());
            if moved.versions.is_empty() {
                bail!(
                    "{} does not follow root v{}: {}",
                    p.display(),
                    next - 1,
                    moved.refused.join("; ")
                );
            }
            next += 1;
        }
        Ok(Some(chain))
    }

    /// Every key that signs documents in any root of the chain (issuers and
    /// revokers, current and former): added to [`VendorDir::trusted_keys`]
    /// so the vendor's own tools read lists signed by a separate revoker key.
    pub(super) fn add_root_signers(&self, keys: &mut TrustedKeys) -> Result<()> {
        let Some(chain) = self.root_chain()? else {
            return Ok(());
        };
        for v in chain.walked() {
            for role in [Role::Issuer, Role::Revoker] {
                for key in v.root.keys_for(role).iter() {
                    keys.insert(key.clone());
                }
            }
        }
        Ok(())
    }
}
