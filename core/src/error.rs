//! Errors from reading, verifying and writing KACHING documents.
//!
//! Cryptographic failures stay terse on purpose: they say what was wrong with
//! the input, never anything about key material.

use crate::doc_kind::DocKind;
use crate::kid::Kid;

/// Everything that can go wrong turning bytes into a trusted document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input is larger than [`crate::MAX_DOCUMENT_SIZE`]; nothing was parsed.
    #[error("document is {size} bytes; the limit is {limit} bytes")]
    TooLarge {
        /// Size of the input in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// Armored text that is not well formed (markers, base64, line length).
    #[error("armored text is malformed: {0}")]
    Armor(String),
    /// Armored text whose label names another kind of document.
    #[error("armor says {found:?} but a {expected} was expected")]
    ArmorLabel {
        /// The label found in the BEGIN line.
        found: String,
        /// The kind the caller asked for.
        expected: DocKind,
    },
    /// The bytes are not a tagged COSE_Sign1 in the canonical form KACHING writes.
    #[error("not a KACHING document: {0}")]
    Malformed(String),
    /// The protected header names an algorithm other than Ed25519.
    #[error("unsupported signature algorithm {0}: only EdDSA (-8) and Ed25519 (-19) are accepted")]
    Algorithm(String),
    /// The document is of another kind than the one expected.
    #[error("this is a {found}, not a {expected}")]
    WrongKind {
        /// The kind named by the document's content type.
        found: String,
        /// The kind the caller asked for.
        expected: DocKind,
    },
    /// No trusted key has the kid the document names.
    #[error("signed by unknown key {0}: add its public key to the trusted keys")]
    UnknownKey(Kid),
    /// The signature does not verify.
    #[error("signature does not verify: the document was altered or not signed by key {0}")]
    BadSignature(Kid),
    /// The signature verified but the payload is not a valid claims map.
    #[error("signed payload is invalid: {0}")]
    Payload(String),
    /// A key could not be read or is unfit for use.
    #[error("key error: {0}")]
    Key(String),
    /// A root that does not follow from the trusted one (threshold, version, expiry).
    #[error("root refused: {0}")]
    Root(String),
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
