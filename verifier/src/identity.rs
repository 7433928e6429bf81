//! The cluster's own identity: an Ed25519 key generated on first start and
//! kept in the state folder (PKCS#8 PEM, mode 0600). The cluster id is derived
//! from its public key, so it never changes while the key file stays.

use std::path::Path;

use anyhow::{bail, Context};
use kaching_core::{cluster_id, SecretKey};

/// File name of the cluster key inside the state folder.
pub const KEY_FILE: &str = "cluster.key";

/// The cluster key and the id derived from it.
#[derive(Debug)]
pub struct Identity {
    /// Signs activation requests and usage reports.
    pub key: SecretKey,
    /// Short base32 id licenses are bound to.
    pub cluster_id: String,
}

impl Identity {
    /// Loads the key, or creates it when `create` is true and it is absent.
    pub fn load_or_create(state_dir: &Path, create: bool) -> anyhow::Result<Identity> {
        let path = state_dir.join(KEY_FILE);
        let key = if path.exists() {
            check_mode(&path)?;
            let pem = match crate::loader::read_regular(&path, 64 * 1024, "the cluster key file") {
                crate::loader::Loaded::Good(b) => String::from_utf8(b).unwrap_or_default(),
                crate::loader::Loaded::Missing => {
                    bail!("cannot read cluster key {}: it disappeared", path.display())
                }
                crate::loader::Loaded::Rejected(why) => bail!("cluster key: {why}"),
            };
            SecretKey::from_pkcs8_pem(&pem).with_context(|| {
                format!(
                    "cluster key {} is damaged: restore it from a backup (a new key means a new cluster id and a new activation)",
                    path.display()
                )
            })?
        } else if create {
            let key = SecretKey::generate();
            // Never replaces a key that appeared meanwhile; 0600 from the first byte.
            kaching_kit::fs::write_new(&path, key.to_pkcs8_pem()?.as_bytes(), true)
                .context("cannot create the cluster key: check the state folder's permissions")?;
            tracing::info!(path = %path.display(), "generated a new cluster key");
            key
        } else {
            bail!(
                "no cluster key at {}: start the daemon once (`kaching-verifier run`) to create one",
                path.display()
            );
        };
        let cluster_id = cluster_id(&key.public());
        Ok(Identity { key, cluster_id })
    }
}

/// The one rule for private keys (kaching_kit::secret): a regular file
/// that neither group nor others may read.
fn check_mode(path: &Path) -> anyhow::Result<()> {
    kaching_kit::secret::check_private(path, "cluster key")?;
    Ok(())
}

/// This machine's host name (for activation requests and usage reports),
/// `unknown` when it cannot be found.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(dir.path(), true).unwrap();
        let b = Identity::load_or_create(dir.path(), false).unwrap();
        assert_eq!(a.cluster_id, b.cluster_id);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
