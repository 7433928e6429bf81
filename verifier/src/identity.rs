//! The cluster's own identity: an Ed25519 key generated on first start and
//! kept in the state folder (PKCS#8 PEM, mode 0600). The cluster id is derived
//! from its public key, so it never changes while the key file stays.

use std::io::Write;
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
            write_private(&path, key.to_pkcs8_pem()?.as_bytes())?;
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

/// Writes a private file atomically: created 0600 under a temporary name,
/// fsync'd, then renamed over the target.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).with_context(|| {
        format!(
            "cannot create {}: check the state folder's permissions",
            tmp.display()
        )
    })?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Writes a file atomically (temporary file + fsync + rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
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
