//! What every handler shares, and the relay's own signing key.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use kaching_core::revocation::VerifiedRevocationList;
use kaching_core::{SecretKey, TierCatalog, TrustedKeys};
use tokio::sync::watch;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::roots::Roots;
use crate::storage::Storage;
use kaching_core::root::Role;

/// The revocation list being served.
#[derive(Debug)]
pub struct CurrentList {
    /// The verified list (bytes as the vendor signed them).
    pub verified: VerifiedRevocationList,
    /// Its ETag (the version, quoted).
    pub etag: String,
}

impl CurrentList {
    /// Wraps a verified list.
    pub fn new(verified: VerifiedRevocationList) -> Arc<Self> {
        let etag = format!("\"{}\"", verified.list.version);
        Arc::new(CurrentList { verified, etag })
    }

    /// Its version.
    pub fn version(&self) -> u64 {
        self.verified.list.version
    }
}

/// Shared by every request.
pub struct AppState {
    /// The configuration the relay started with.
    pub config: Config,
    /// The OpenAPI document served at `/openapi.json` (handed in, so the
    /// routes do not import the document built from them).
    pub document: fn() -> &'static utoipa::openapi::OpenApi,
    /// Vendor keys licenses and revocation lists must be signed with when
    /// no root of trust is configured (see [`AppState::license_keys`]).
    pub vendor_keys: TrustedKeys,
    /// The root chain, when `root` is configured: it then decides the keys.
    pub roots: Option<Roots>,
    /// The relay's key: signs relay-time statements.
    pub relay_key: SecretKey,
    /// The database (SQLite or PostgreSQL).
    pub storage: Arc<dyn Storage>,
    /// The newest accepted revocation list; long-polls wait on it.
    pub revocations: watch::Sender<Option<Arc<CurrentList>>>,
    /// Shutdown as long-polls see it: they return at once when it starts.
    pub shutdown: kaching_kit::shutdown::Listener,
    /// Tier catalog for status and upgrade suggestions.
    pub catalog: TierCatalog,
    /// This relay's metrics (`GET /metrics`).
    pub metrics: Arc<Metrics>,
}

impl AppState {
    /// Keys a license must be signed with: the `issuer` keys of the root in
    /// force, or the configured vendor keys when there is no root.
    pub fn license_keys(&self) -> TrustedKeys {
        match &self.roots {
            Some(r) => r.keys_for(Role::Issuer),
            None => self.vendor_keys.clone(),
        }
    }

    /// Keys a revocation list must be signed with: the `revoker` keys of the
    /// root in force, or the configured vendor keys when there is no root.
    pub fn revocation_keys(&self) -> TrustedKeys {
        match &self.roots {
            Some(r) => r.keys_for(Role::Revoker),
            None => self.vendor_keys.clone(),
        }
    }

    /// Serves `list` from now when it is newer than the list being served
    /// (waking the long-polls); `true` when it was. A publish through this
    /// relay, one through another replica and a republish of the stored list
    /// all come here, so the list served only ever moves forward.
    pub fn serve_if_newer(&self, list: Arc<CurrentList>) -> bool {
        let version = list.version();
        self.revocations.send_if_modified(|slot| {
            if slot.as_ref().is_none_or(|s| s.version() < version) {
                *slot = Some(list);
                true
            } else {
                false
            }
        })
    }

    /// Version of the list being served (0 when none).
    pub fn revocation_version(&self) -> u64 {
        self.revocations
            .borrow()
            .as_ref()
            .map_or(0, |c| c.version())
    }
}

/// What the relay key is called in messages (and in `kaching_kit::secret`'s).
const WHAT: &str = "relay key";

/// Loads the relay key from `path`, creating it (mode 0600, written
/// atomically) on first start. A key file that group or others may read is
/// refused: whoever reads it can sign relay time for every cluster. When
/// another process (a replica sharing the folder, starting at the same
/// moment) creates it first, that key is loaded: both sign with one key.
pub fn load_or_create_key(path: &Path) -> anyhow::Result<SecretKey> {
    // symlink_metadata: a dangling link is "there" too, and must not be replaced.
    if path.symlink_metadata().is_ok() {
        return load_key(path);
    }
    let dir = kaching_kit::fs::parent_of(path);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    let key = SecretKey::generate();
    let pem = key.to_pkcs8_pem()?;
    // 0600 from the first byte, and the folder synced after the link: a key
    // lost in a crash would be replaced by another one, and every cluster
    // pinned the old one. write_new, because a key another process created
    // meanwhile must not be replaced either: it is linked into place whole,
    // so it is read whole.
    match kaching_kit::fs::write_new(path, pem.as_bytes(), true) {
        Ok(()) => {}
        Err(kaching_kit::fs::WriteError::Exists { .. }) => return load_key(path),
        Err(e) => return Err(e).with_context(|| format!("cannot write {WHAT} {}", path.display())),
    }
    // What we just made must pass the rule we hold others to.
    kaching_kit::secret::check_private(path, WHAT)?;
    tracing::info!(kid = %key.public().kid(), path = %path.display(), "created relay signing key");
    Ok(key)
}

/// Reads the relay key at `path`, refusing one others may read.
fn load_key(path: &Path) -> anyhow::Result<SecretKey> {
    kaching_kit::secret::check_private(path, WHAT)?;
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {WHAT} {}", path.display()))?;
    SecretKey::from_pkcs8_pem(&pem).with_context(|| {
        format!(
            "{} is not an Ed25519 PKCS#8 PEM key: restore it from backup (clusters pin its public key)",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replicas sharing a data folder start together on its first day:
    /// each either creates the relay key or, when another got there first,
    /// loads that one. None stops, and all sign with one key.
    #[test]
    fn replicas_starting_together_agree_on_one_relay_key() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("relay-key.pem");
            let gate = std::sync::Barrier::new(8);
            let kids: Vec<String> = std::thread::scope(|s| {
                let started: Vec<_> = (0..8)
                    .map(|_| {
                        s.spawn(|| {
                            gate.wait();
                            load_or_create_key(&path).map(|k| k.public().kid().to_string())
                        })
                    })
                    .collect();
                started
                    .into_iter()
                    .map(|t| t.join().unwrap().unwrap())
                    .collect()
            });
            assert!(kids.iter().all(|k| k == &kids[0]), "{kids:?}");
            let on_disk = load_or_create_key(&path).unwrap();
            assert_eq!(on_disk.public().kid().to_string(), kids[0]);
        }
    }
}
