//! The vendor's root chain as this relay holds it (docs/format.md §7.7,
//! docs/relay.md "Roots of trust"): the configured initial root, then every
//! stored root that follows it one version at a time. The newest decides
//! which keys sign licenses (`issuer`) and revocation lists (`revoker`).

use std::sync::{PoisonError, RwLock};

use anyhow::Context;
use kaching_core::root::{verify_next_root, Role, VerifiedRoot};
use kaching_core::TrustedKeys;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::json;

use crate::storage::StoredRoot;

/// The chain being served; never empty.
pub struct Roots {
    walked: RwLock<Vec<VerifiedRoot>>,
    /// Held while a root or a revocation list is checked against the
    /// current root and committed, so neither is judged by a root that is
    /// being replaced.
    pub publish: tokio::sync::Mutex<()>,
}

impl Roots {
    /// A chain starting at `initial`.
    pub fn new(initial: VerifiedRoot) -> Roots {
        Roots {
            walked: RwLock::new(vec![initial]),
            publish: tokio::sync::Mutex::new(()),
        }
    }

    /// The root in force.
    pub fn current(&self) -> VerifiedRoot {
        let walked = self.walked.read().unwrap_or_else(PoisonError::into_inner);
        // `walked` starts with one root and only grows.
        walked[walked.len() - 1].clone()
    }

    /// The keys of `role` in the root in force.
    pub fn keys_for(&self, role: Role) -> TrustedKeys {
        let walked = self.walked.read().unwrap_or_else(PoisonError::into_inner);
        walked
            .last()
            .map_or_else(TrustedKeys::new, |v| v.root.keys_for(role))
    }

    /// Every root of version above `after`, ascending (binary), and the
    /// newest version held.
    pub fn after(&self, after: u64) -> (Vec<Vec<u8>>, u64) {
        let walked = self.walked.read().unwrap_or_else(PoisonError::into_inner);
        let latest = walked.last().map_or(0, |v| v.root.version);
        let newer = walked
            .iter()
            .filter(|v| v.root.version > after)
            .map(|v| v.bytes.clone())
            .collect();
        (newer, latest)
    }

    /// Moves to `next`, which the caller verified with
    /// [`verify_next_root`] against [`Roots::current`] and committed.
    pub fn push(&self, next: VerifiedRoot) {
        let mut walked = self.walked.write().unwrap_or_else(PoisonError::into_inner);
        if walked
            .last()
            .is_some_and(|c| c.root.version.checked_add(1) == Some(next.root.version))
        {
            walked.push(next);
        }
    }

    /// How many roots the chain holds.
    pub fn len(&self) -> usize {
        self.walked
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Never true: the chain starts with the configured root.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Stores the configured `initial` root under its version (replacing other
/// bytes there: the configuration is the anchor), audited when it changes.
pub fn store_initial(conn: &Connection, initial: &VerifiedRoot, now: u64) -> anyhow::Result<()> {
    let v = initial.root.version;
    let tx = conn
        .unchecked_transaction()
        .context("cannot store the configured root")?;
    let stored: Option<Vec<u8>> = tx
        .query_row("SELECT bytes FROM roots WHERE version = ?1", [v], |r| {
            r.get(0)
        })
        .optional()?;
    if stored.as_deref() != Some(initial.bytes.as_slice()) {
        if stored.is_some() {
            tracing::warn!(
                version = v,
                "the stored root of this version differs from the configured root; replacing it with the configured one"
            );
        }
        tx.execute(
            "INSERT INTO roots (version, bytes, received_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(version) DO UPDATE SET bytes = excluded.bytes, received_at = excluded.received_at",
            params![v, initial.bytes, now],
        )?;
        crate::audit::append(
            &tx,
            now,
            "config:root",
            "configure_root",
            &format!("v{v}"),
            &describe(initial),
        )?;
    }
    tx.commit().context("cannot store the configured root")?;
    Ok(())
}

/// Builds the chain at start: the configured `initial` root (stored by
/// [`crate::storage::Storage::configure_root`], which returns the `stored`
/// roots above it), then each stored root that follows, checked with
/// [`verify_next_root`] at the time it was received. A stored root that does
/// not follow is logged and ignored, and so is everything above it;
/// publishing that version again replaces it.
pub fn load_chain(initial: VerifiedRoot, stored: Vec<StoredRoot>) -> Roots {
    let roots = Roots::new(initial);
    roots.extend(stored);
    let current = roots.current();
    tracing::info!(
        version = current.root.version,
        issuer = %current.root.issuer,
        roots = roots.len(),
        "root of trust loaded"
    );
    roots
}

impl Roots {
    /// Walks `stored` (ascending, above some version) onto the chain: each
    /// root that follows the one in force is pushed; the first that does not
    /// stops the walk. Returns how many were pushed. Replicas call it with
    /// the roots another replica published.
    pub fn extend(&self, stored: Vec<StoredRoot>) -> usize {
        let mut pushed = 0;
        let mut broken = false;
        for (version, bytes, received_at) in stored {
            let current = self.current();
            if version <= current.root.version {
                continue;
            }
            if broken {
                tracing::warn!(
                    version,
                    at = current.root.version,
                    "stored root ignored: not reachable from the root in force"
                );
                continue;
            }
            match verify_next_root(&current.root, &bytes, received_at) {
                Ok(next) => {
                    self.push(next);
                    pushed += 1;
                }
                Err(e) => {
                    broken = true;
                    tracing::warn!(version, at = current.root.version, error = %e, "stored root ignored: it does not follow the root in force");
                }
            }
        }
        pushed
    }
}

/// What the audit log records of a root: its keys and roles.
pub fn describe(v: &VerifiedRoot) -> serde_json::Value {
    let roles: serde_json::Map<String, serde_json::Value> = v
        .root
        .roles
        .iter()
        .map(|(role, r)| {
            (
                role.as_str().to_string(),
                json!({
                    "kids": r.kids.iter().map(|k| k.to_hex()).collect::<Vec<_>>(),
                    "threshold": r.threshold,
                }),
            )
        })
        .collect();
    json!({
        "issuer": v.root.issuer,
        "expires": v.root.expires,
        "roles": roles,
        "revocation_floor": v.root.revocation_floor,
    })
}
