//! The vendor directory: where it is, what is in it, and making a new one.

mod config;
mod init;
mod roots;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use kaching_core::{PublicKey, TierCatalog, TrustedKeys};

pub use config::{parse_duration, refuse_bare_m, Config, RelaySettings};
pub use init::{init, InitOptions};
pub use roots::{read_root_file, ROOTS_DIR};

/// Settings file; its presence (with `vendor.key`) marks a vendor directory.
pub const CONFIG_FILE: &str = "kaching.toml";
/// The age-encrypted PKCS#8 PEM private key.
pub const KEY_FILE: &str = "vendor.key";
/// The SPKI PEM public key.
pub const PUB_FILE: &str = "vendor.pub";
/// The SQLite ledger.
pub const LEDGER_FILE: &str = "ledger.sqlite";
/// The current signed revocation list (binary).
pub const REVOCATIONS_FILE: &str = "revocations.cose";
/// The same list, armored for e-mail.
pub const REVOCATIONS_ARMORED_FILE: &str = "revocations.asc";
/// The tier catalog licenses are issued from.
pub const TIERS_FILE: &str = "tiers.toml";
/// Where issued license files go unless `--out` says otherwise.
pub const LICENSES_DIR: &str = "licenses";
/// Keys replaced by `key rotate`: `<kid>.pub` and the still-encrypted `<kid>.key`.
pub const RETIRED_DIR: &str = "retired-keys";

/// An opened vendor directory.
#[derive(Debug, Clone)]
pub struct VendorDir {
    /// The folder.
    pub root: PathBuf,
    /// Its `kaching.toml`.
    pub config: Config,
}

impl VendorDir {
    /// Opens the vendor directory at `explicit` (from `--dir`/`KACHING_DIR`),
    /// or the current folder or its nearest parent holding one, like git.
    pub fn discover(explicit: Option<&Path>) -> Result<Self> {
        if let Some(dir) = explicit {
            if !is_vendor_dir(dir) {
                if let Some(parent) = enclosing_vendor_dir(dir) {
                    return Err(anyhow::anyhow!(
                        "{} is not a vendor directory, but it is inside the vendor directory {}: use that one (--dir {})",
                        dir.display(),
                        parent.display(),
                        parent.display()
                    ));
                }
                return Err(anyhow::anyhow!(
                    "{} is not a vendor directory (no {CONFIG_FILE} and {KEY_FILE}): run `licensegen init {}` to create one",
                    dir.display(),
                    dir.display()
                ));
            }
            return Self::open(dir);
        }
        let cwd = std::env::current_dir().context("cannot read the current folder")?;
        let mut here: Option<&Path> = Some(&cwd);
        while let Some(dir) = here {
            if is_vendor_dir(dir) {
                return Self::open(dir);
            }
            here = dir.parent();
        }
        Err(anyhow::anyhow!(
            "no vendor directory in {} or its parents: run `licensegen init DIR`, or pass --dir DIR (or set KACHING_DIR)",
            cwd.display()
        ))
    }

    /// Opens a known vendor directory.
    pub fn open(root: &Path) -> Result<Self> {
        let path = root.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let config = Config::from_toml(&text).with_context(|| {
            format!(
                "in {}: fix the file or restore it from backup",
                path.display()
            )
        })?;
        Ok(VendorDir {
            root: root.to_path_buf(),
            config,
        })
    }

    /// A file inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The vendor public key from `vendor.pub`.
    pub fn public_key(&self) -> Result<PublicKey> {
        let path = self.path(PUB_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        PublicKey::from_pem(&text).with_context(|| {
            format!(
                "{} is not a vendor public key: restore it from backup",
                path.display()
            )
        })
    }

    /// The current vendor key plus every retired one and every issuer and
    /// revoker key of the root chain (for verifying our own documents,
    /// including those signed before a rotation or by a separate revoker key).
    pub fn trusted_keys(&self) -> Result<TrustedKeys> {
        let mut keys = TrustedKeys::from(self.public_key()?);
        for key in self.retired_keys()? {
            keys.insert(key);
        }
        self.add_root_signers(&mut keys)?;
        Ok(keys)
    }

    /// Public keys retired by `key rotate`, oldest file name first.
    pub fn retired_keys(&self) -> Result<Vec<PublicKey>> {
        let dir = self.path(RETIRED_DIR);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "pub"))
            .collect();
        paths.sort();
        paths
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read {}", p.display()))?;
                PublicKey::from_pem(&text).with_context(|| {
                    format!("{} is not a public key: remove or restore it", p.display())
                })
            })
            .collect()
    }

    /// The tier catalog from `tiers.toml`.
    pub fn catalog(&self) -> Result<TierCatalog> {
        let path = self.path(TIERS_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        TierCatalog::from_toml(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}: {e}: fix the file (the shipped catalog is fixtures/tiers.toml)",
                path.display()
            )
        })
    }
}

/// The nearest folder above `dir` (not `dir` itself) that is a vendor directory.
pub fn enclosing_vendor_dir(dir: &Path) -> Option<PathBuf> {
    let abs = std::path::absolute(dir).ok()?;
    abs.ancestors()
        .skip(1)
        .find(|p| is_vendor_dir(p))
        .map(Path::to_path_buf)
}

/// True when `dir` holds a vendor directory: settings and the vendor key
/// pair, or its public half alone (a copy on an online revoker box).
pub fn is_vendor_dir(dir: &Path) -> bool {
    dir.join(CONFIG_FILE).is_file()
        && (dir.join(KEY_FILE).is_file() || dir.join(PUB_FILE).is_file())
}
