//! The cluster's own identity: an Ed25519 key generated on first start and
//! kept in the state folder (PKCS#8 PEM, mode 0600). The cluster id is derived
//! from its public key, so it never changes while the key file stays.

use std::ops::Deref;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{bail, Context};
use kaching_core::{cluster_id, SecretKey};
use zeroize::Zeroizing;

/// File name of the cluster key inside the state folder.
pub const KEY_FILE: &str = "cluster.key";

/// The cluster key and the id derived from it.
#[derive(Debug)]
pub struct Identity {
    /// Signs activation requests and usage reports.
    pub key: ClusterKey,
    /// Short base32 id licenses are bound to.
    pub cluster_id: String,
}

/// The cluster's secret key, made from its seed when first used: making
/// it derives the public half (a scalar multiplication), which a
/// `kaching-verifier check` that finds the id recorded never needs.
pub struct ClusterKey(KeyState);

enum KeyState {
    /// Made (and the public half derived) when loaded.
    Ready(SecretKey),
    /// Only the seed read; the key is made on first use.
    Seed {
        seed: Zeroizing<[u8; 32]>,
        key: OnceLock<SecretKey>,
    },
}

impl Deref for ClusterKey {
    type Target = SecretKey;
    fn deref(&self) -> &SecretKey {
        match &self.0 {
            KeyState::Ready(k) => k,
            KeyState::Seed { seed, key } => key.get_or_init(|| SecretKey::from_seed(seed)),
        }
    }
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(secret redacted)")
    }
}

/// What the state database records about the key (written by a start,
/// read by `check`): a fingerprint of the seed and the id derived from it.
/// The fingerprint is SHA-256 of a label and the 32-byte seed, so it tells
/// nothing about the seed; it only says whether the key file still holds
/// the key the id was derived from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedId {
    /// SHA-256 over a fixed label and the seed.
    pub fingerprint: [u8; 32],
    /// The cluster id derived from that key.
    pub cluster_id: String,
}

const FINGERPRINT_LABEL: &[u8] = b"kaching-verifier cluster key fingerprint v1\0";

fn fingerprint(seed: &[u8; 32]) -> [u8; 32] {
    SecretKey::seed_fingerprint(FINGERPRINT_LABEL, seed)
}

impl RecordedId {
    /// The record as stored: fingerprint, then the id's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.fingerprint.to_vec();
        out.extend_from_slice(self.cluster_id.as_bytes());
        out
    }

    /// Reads [`RecordedId::to_bytes`]; `None` for anything else.
    pub fn from_bytes(b: &[u8]) -> Option<RecordedId> {
        let (fp, id) = (b.get(..32)?, b.get(32..)?);
        let id = std::str::from_utf8(id).ok()?;
        if id.is_empty() || !id.bytes().all(|c| c.is_ascii_alphanumeric()) {
            return None;
        }
        Some(RecordedId {
            fingerprint: fp.try_into().ok()?,
            cluster_id: id.to_string(),
        })
    }
}

/// Reads the key file's PEM text.
fn read_pem(path: &Path) -> anyhow::Result<Zeroizing<String>> {
    check_mode(path)?;
    Ok(Zeroizing::new(
        match crate::loader::read_regular(path, 64 * 1024, "the cluster key file") {
            crate::loader::Loaded::Good(b) => String::from_utf8(b).unwrap_or_default(),
            crate::loader::Loaded::Missing => {
                bail!("cannot read cluster key {}: it disappeared", path.display())
            }
            crate::loader::Loaded::Rejected(why) => bail!("cluster key: {why}"),
        },
    ))
}

fn damaged(path: &Path) -> String {
    format!(
        "cluster key {} is damaged: restore it from a backup (a new key means a new cluster id and a new activation)",
        path.display()
    )
}

impl Identity {
    /// Loads the key, or creates it when `create` is true and it is absent.
    /// The id is always derived from the key.
    pub fn load_or_create(state_dir: &Path, create: bool) -> anyhow::Result<Identity> {
        let path = state_dir.join(KEY_FILE);
        let key = if path.exists() {
            let pem = read_pem(&path)?;
            SecretKey::from_pkcs8_pem(&pem).with_context(|| damaged(&path))?
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
        Ok(Identity {
            key: ClusterKey(KeyState::Ready(key)),
            cluster_id,
        })
    }

    /// Loads the existing key for a one-shot reader (`check`): when the
    /// state database's record names this very key (same seed
    /// fingerprint), its id is taken without deriving the public key;
    /// otherwise (no record, another key: a swapped or restored key file)
    /// the id is derived, exactly as [`Identity::load_or_create`] does.
    pub fn load_recorded(
        state_dir: &Path,
        recorded: Option<&RecordedId>,
    ) -> anyhow::Result<Identity> {
        let path = state_dir.join(KEY_FILE);
        if !path.exists() {
            return Identity::load_or_create(state_dir, false);
        }
        let pem = read_pem(&path)?;
        let Some(seed) = SecretKey::pkcs8_pem_seed(&pem).with_context(|| damaged(&path))? else {
            let key = SecretKey::from_pkcs8_pem(&pem).with_context(|| damaged(&path))?;
            let cluster_id = cluster_id(&key.public());
            return Ok(Identity {
                key: ClusterKey(KeyState::Ready(key)),
                cluster_id,
            });
        };
        let fp = fingerprint(&seed);
        let key = ClusterKey(KeyState::Seed {
            seed,
            key: OnceLock::new(),
        });
        let cluster_id = match recorded {
            Some(r) if r.fingerprint == fp => r.cluster_id.clone(),
            _ => cluster_id(&key.public()),
        };
        Ok(Identity { key, cluster_id })
    }

    /// The record a start keeps in the state database for
    /// [`Identity::load_recorded`].
    pub fn record(&self) -> RecordedId {
        RecordedId {
            fingerprint: match &self.key.0 {
                KeyState::Seed { seed, .. } => fingerprint(seed),
                KeyState::Ready(k) => k.fingerprint(FINGERPRINT_LABEL),
            },
            cluster_id: self.cluster_id.clone(),
        }
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

    #[test]
    fn a_recorded_id_is_taken_only_for_the_key_it_was_derived_from() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(dir.path(), true).unwrap();
        let rec = a.record();
        let again = Identity::load_recorded(dir.path(), Some(&rec)).unwrap();
        assert_eq!(again.cluster_id, a.cluster_id);
        assert_eq!(again.record(), rec, "same fingerprint from the seed alone");
        // The key made later from the seed is the same key.
        assert_eq!(again.key.sign(b"m"), a.key.sign(b"m"));
        // The record is what is taken (no derivation) while it names this key...
        let named = RecordedId {
            fingerprint: rec.fingerprint,
            cluster_id: "recorded".into(),
        };
        let taken = Identity::load_recorded(dir.path(), Some(&named)).unwrap();
        assert_eq!(taken.cluster_id, "recorded");
        // ...and never for another key: a swapped key file gets its own id.
        let other = tempfile::tempdir().unwrap();
        let b = Identity::load_or_create(other.path(), true).unwrap();
        std::fs::copy(other.path().join(KEY_FILE), dir.path().join(KEY_FILE)).unwrap();
        let swapped = Identity::load_recorded(dir.path(), Some(&named)).unwrap();
        assert_eq!(swapped.cluster_id, b.cluster_id);
        assert_ne!(swapped.cluster_id, a.cluster_id);
        assert_eq!(
            Identity::load_recorded(dir.path(), None)
                .unwrap()
                .cluster_id,
            b.cluster_id
        );
    }

    #[test]
    fn recorded_id_bytes_round_trip_and_garbage_is_no_record() {
        let r = RecordedId {
            fingerprint: [7; 32],
            cluster_id: "abcdefghijklmnop".into(),
        };
        assert_eq!(RecordedId::from_bytes(&r.to_bytes()), Some(r));
        assert_eq!(RecordedId::from_bytes(&[7; 32]), None, "no id");
        assert_eq!(RecordedId::from_bytes(b"short"), None);
        let mut bad = vec![7; 32];
        bad.extend_from_slice("a b".as_bytes());
        assert_eq!(RecordedId::from_bytes(&bad), None);
    }
}
