//! kaching-core: KACHING's signed documents, keys and policy engine.
//!
//! Pure by design: no sockets, no database, no async runtime and no clock
//! reads. Time always enters as an argument, so every decision can be tested
//! at the exact second it changes.
//!
//! - [`envelope`]: COSE_Sign1 + Ed25519 signing and verification.
//! - [`license`], [`revocation`], [`cluster`], [`receipt`]: the documents.
//! - [`report_chain`]: the chain of a cluster's usage reports (gap, fork, rollback).
//! - [`trueup`]: licensed against peak usage per month, and the overage to bill.
//! - [`keys`]: SPKI / PKCS#8 PEM keys and kids.
//! - [`root`]: the root of trust: keys, roles, thresholds, chained rotation.
//! - [`policy`]: (license, revocations, state, now) → [`policy::Verdict`].
//! - [`tiers`]: the tier catalog.
//! - [`wire`]: the JSON that crosses a process boundary (API answers, errors).
//! - [`binding`]: whether the relay may bind a license to a cluster, and when
//!   a cluster's hold on it lapses.
//!
//! docs/format.md is the normative byte-level specification.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod armor;
pub mod binding;
mod cbor;
pub mod clock_reset;
pub mod cluster;
mod doc_kind;
pub mod envelope;
pub mod error;
pub mod exit;
pub mod heartbeat;
pub mod id;
pub mod keys;
mod kid;
pub mod license;
pub mod merkle;
pub mod policy;
pub mod receipt;
pub mod report_chain;
pub mod revocation;
pub mod root;
pub mod status;
pub mod tiers;
pub mod time;
pub mod trueup;
pub mod wire;

pub use doc_kind::MAX_DOCUMENT_SIZE;
pub use envelope::{Alg, DocKind};
pub use error::{Error, Result};
pub use id::{cluster_id, LicenseId};
pub use keys::{Kid, PublicKey, SecretKey, TrustedKeys};
pub use license::{verify_license, License, VerifiedLicense};
pub use policy::{evaluate, LicenseInput, Settings, Snapshot, State, Verdict};
pub use revocation::{verify_revocation_list, RevocationList, VerifiedRevocationList};
pub use tiers::TierCatalog;
