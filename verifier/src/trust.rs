//! Where the verifier's trust comes from (DESIGN §8, docs/verifier.md
//! "Pinned and development builds").
//!
//! - **Pinned**: the vendor's root of trust is built into the binary (the
//!   `KACHING_PINNED_ROOT` file at build time, see `build.rs`) or handed in by
//!   a program that embeds the verifier ([`crate::config::Config::pinned_root`]).
//!   Newer roots count only through the chain; the trusted-keys file cannot
//!   add a key.
//! - **Development**: no root is built in. The trusted-keys file is the
//!   anchor: a root document, or (as before roots existed) a PEM bundle whose
//!   keys may sign everything. Anyone who can edit that file can mint
//!   licenses, so status, logs and `check` say so.
//!
//! Everything here is pure: it gets bytes and time, and returns what to trust.

use kaching_core::armor::dearmor;
use kaching_core::root::{verify_initial_root, Role, TrustChain, VerifiedRoot};
use kaching_core::time::Timestamp;
use kaching_core::{DocKind, Kid, TrustedKeys};

/// The root built into this binary (empty when the build pinned none).
const BUILT_IN: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pinned_root.bin"));

/// The root this binary was built with, if any (`KACHING_PINNED_ROOT`).
pub fn built_in_root() -> Option<&'static [u8]> {
    (!BUILT_IN.is_empty()).then_some(BUILT_IN)
}

/// Verifies a pinned root (binary or armored). A pinned root that does not
/// verify is a broken build or a broken embedding: refuse to start.
pub fn verify_pinned(bytes: &[u8]) -> anyhow::Result<VerifiedRoot> {
    let bin = dearmor(bytes, Some(DocKind::Root))
        .map_err(|e| anyhow::anyhow!("the pinned root of trust is not a root document: {e}"))?;
    verify_initial_root(&bin)
        .map_err(|e| anyhow::anyhow!("the pinned root of trust does not verify: {e}"))
}

/// How trust was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// From a root built in (or handed in by an embedding program).
    Pinned,
    /// From the editable trusted-keys file.
    Development,
}

impl Mode {
    /// `pinned` or `development` (the `trust` field of `/v1/status`).
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Pinned => "pinned",
            Mode::Development => "development",
        }
    }
}

/// The keys in force, by role.
#[derive(Debug, Clone)]
pub struct Trust {
    /// Pinned or development.
    pub mode: Mode,
    /// The roots walked; `None` for a development PEM bundle.
    pub chain: Option<TrustChain>,
    /// Keys whose licenses count.
    pub issuers: TrustedKeys,
    /// Keys whose revocation lists count.
    pub revokers: TrustedKeys,
}

impl Trust {
    /// Development trust from a PEM bundle: every key plays every role.
    pub fn from_keys(keys: TrustedKeys) -> Trust {
        Trust {
            mode: Mode::Development,
            chain: None,
            issuers: keys.clone(),
            revokers: keys,
        }
    }

    /// Trust from a chain of roots: the current root's issuer and revoker keys.
    pub fn from_chain(mode: Mode, chain: TrustChain) -> Trust {
        let root = &chain.current().root;
        Trust {
            mode,
            issuers: root.keys_for(Role::Issuer),
            revokers: root.keys_for(Role::Revoker),
            chain: Some(chain),
        }
    }

    /// The version of the root in force.
    pub fn root_version(&self) -> Option<u64> {
        self.chain.as_ref().map(|c| c.current().root.version)
    }

    /// Why a document signed by `kid` is refused for `role`, when the key
    /// once held a role in the chain: "key X was an issuer in root v1; root
    /// v2 removed it". `None` for a key the chain never knew.
    pub fn explain(&self, kid: &Kid, role: Role) -> Option<String> {
        let chain = self.chain.as_ref()?;
        let current = &chain.current().root;
        let now = current.roles_of(kid);
        if !now.is_empty() {
            return Some(format!(
                "key {kid} has the {} role in root v{}; only {role} keys may sign this",
                now.iter().map(|r| r.as_str()).collect::<Vec<_>>().join("/"),
                current.version
            ));
        }
        let (v, was) = chain.former_roles(kid)?;
        Some(format!(
            "key {kid} held the {} role in root v{v} and holds none in root v{}: \
             ask your vendor for a document signed by a current {role} key",
            was.iter().map(|r| r.as_str()).collect::<Vec<_>>().join("/"),
            current.version
        ))
    }
}

/// Is `bytes` (binary or armored) a root document rather than a PEM bundle?
pub fn is_root(bytes: &[u8]) -> bool {
    // Armor with another label (a PEM bundle: `-----BEGIN PUBLIC KEY-----`)
    // is not a root: said from the first line, without reading the whole
    // block as `dearmor` would before it looks at the label.
    let start = bytes.trim_ascii_start();
    if start.starts_with(b"-----BEGIN ") && !start.starts_with(b"-----BEGIN KACHING ROOT-----") {
        return false;
    }
    dearmor(bytes, Some(DocKind::Root)).is_ok_and(|b| b.starts_with(&[0xd8, 0x62]))
}

/// The chain from `start` through every newer root in `candidates` (binary
/// or armored), one version at a time, and what was refused on the way.
pub fn walk<'a>(
    start: VerifiedRoot,
    candidates: impl IntoIterator<Item = &'a [u8]>,
    now: Timestamp,
) -> (TrustChain, kaching_core::root::Advanced) {
    let bins: Vec<Vec<u8>> = candidates
        .into_iter()
        .filter_map(|b| dearmor(b, Some(DocKind::Root)).ok())
        .collect();
    let mut chain = TrustChain::new(start);
    let advanced = chain.update(bins.iter().map(Vec::as_slice), now);
    (chain, advanced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_root_tells_roots_from_key_bundles_and_other_documents() {
        let root_bytes = [0xd8, 0x62, 0x84, 0x40];
        assert!(is_root(&root_bytes), "binary root");
        let armored = kaching_core::armor::armor(DocKind::Root, &root_bytes);
        assert!(is_root(armored.as_bytes()));
        assert!(
            is_root(format!("\n  {armored}").as_bytes()),
            "leading blank lines"
        );
        let pem = kaching_core::SecretKey::from_seed(&[1; 32])
            .public()
            .to_pem();
        assert!(!is_root(pem.as_bytes()), "a PEM bundle");
        let license = kaching_core::armor::armor(DocKind::License, &root_bytes);
        assert!(!is_root(license.as_bytes()), "another kind's armor");
        assert!(!is_root(
            b"-----BEGIN KACHING ROOT-----\n!!\n-----END KACHING ROOT-----\n"
        ));
        assert!(!is_root(&[0xd8, 0x61, 0x84]), "another binary kind");
    }
}
