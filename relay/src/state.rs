//! What every handler shares, and the relay's own signing key.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use kaching_core::revocation::VerifiedRevocationList;
use kaching_core::{SecretKey, TierCatalog, TrustedKeys};
use tokio::sync::watch;

use crate::config::Config;
use crate::db::Readers;
use crate::writer::Writer;

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
    /// Vendor keys licenses and revocation lists must be signed with.
    pub vendor_keys: TrustedKeys,
    /// The relay's key: signs relay-time statements.
    pub relay_key: SecretKey,
    /// The one writer (group commit).
    pub writer: Writer,
    /// Read connections.
    pub readers: Readers,
    /// The newest accepted revocation list; long-polls wait on it.
    pub revocations: watch::Sender<Option<Arc<CurrentList>>>,
    /// Flips to true at shutdown so long-polls return at once.
    pub shutdown: watch::Receiver<bool>,
    /// Tier catalog for status and upgrade suggestions.
    pub catalog: TierCatalog,
}

impl AppState {
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
/// refused: whoever reads it can sign relay time for every cluster.
pub fn load_or_create_key(path: &Path) -> anyhow::Result<SecretKey> {
    // symlink_metadata: a dangling link is "there" too, and must not be replaced.
    if path.symlink_metadata().is_ok() {
        kaching_kit::secret::check_private(path, WHAT)?;
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {WHAT} {}", path.display()))?;
        return SecretKey::from_pkcs8_pem(&pem).with_context(|| {
            format!(
                "{} is not an Ed25519 PKCS#8 PEM key: restore it from backup (clusters pin its public key)",
                path.display()
            )
        });
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    let key = SecretKey::generate();
    let pem = key.to_pkcs8_pem()?;
    let tmp = path.with_extension("pem.tmp");
    // A leftover from a crash may carry looser permissions; opening it again
    // would keep them, so start from a new file.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("cannot remove stale {}", tmp.display()));
        }
        _ => {}
    }
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts
            .open(&tmp)
            .with_context(|| format!("cannot write {WHAT} {}", tmp.display()))?;
        f.write_all(pem.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot move {WHAT} into place at {}", path.display()))?;
    // Make the rename itself durable: a key lost in a crash would be
    // replaced by another one, and every cluster pinned the old one.
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync data directory {}", dir.display()))?;
    // What we just made must pass the rule we hold others to.
    kaching_kit::secret::check_private(path, WHAT)?;
    tracing::info!(kid = %key.public().kid(), path = %path.display(), "created relay signing key");
    Ok(key)
}
