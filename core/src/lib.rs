//! kaching-core: KACHING's signed documents, keys and policy engine.
//!
//! Pure by design: no sockets, no database, no async runtime and no clock
//! reads. Time always enters as an argument, so every decision can be tested
//! at the exact second it changes.
//!
//! - [`envelope`]: COSE_Sign1 + Ed25519 signing and verification.
//! - [`license`], [`revocation`], [`cluster`]: the documents.
//! - [`keys`]: SPKI / PKCS#8 PEM keys and kids.
//! - [`policy`]: (license, revocations, state, now) → [`policy::Verdict`].
//! - [`tiers`]: the tier catalog.
//! - [`binding`]: when a cluster's hold on a license lapses at the relay.
//!
//! docs/format.md is the normative byte-level specification.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod armor;
pub mod binding;
mod cbor;
pub mod cluster;
pub mod envelope;
pub mod error;
pub mod exit;
pub mod heartbeat;
pub mod id;
pub mod keys;
pub mod license;
pub mod policy;
pub mod revocation;
pub mod status;
pub mod tiers;
pub mod time;

pub use envelope::{Alg, DocKind};
pub use error::{Error, Result};
pub use id::{cluster_id, LicenseId};
pub use keys::{Kid, PublicKey, SecretKey, TrustedKeys};
pub use license::{verify_license, License, VerifiedLicense};
pub use policy::{evaluate, LicenseInput, Settings, Snapshot, State, Verdict};
pub use revocation::{verify_revocation_list, RevocationList, VerifiedRevocationList};
pub use tiers::TierCatalog;

/// Largest document accepted, in either spelling, checked before any parsing.
pub const MAX_DOCUMENT_SIZE: usize = 64 * 1024;
