//! What a document is: the kinds of KACHING document, each with its content
//! type and armor label, and the size limit every document is held to. It
//! sits at the bottom of the crate so that errors, armor and the envelope can
//! all name a kind without importing each other.

use std::fmt;

/// Largest document accepted, in either spelling, checked before any parsing.
pub const MAX_DOCUMENT_SIZE: usize = 64 * 1024;

/// The kinds of KACHING document; each has its own content type and armor label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DocKind {
    /// A license, signed by the vendor.
    License,
    /// A revocation list, signed by the vendor.
    RevocationList,
    /// An activation request, signed by a cluster key.
    ActivationRequest,
    /// A usage report, signed by a cluster key.
    UsageReport,
    /// A heartbeat, signed by a cluster key.
    Heartbeat,
    /// A relay's signed statement of its time and the latest revocation version.
    RelayTime,
    /// The vendor's root of trust: keys, roles, thresholds (a COSE_Sign).
    Root,
    /// The vendor's acknowledgment of a usage report, signed by an issuer key.
    Receipt,
    /// The vendor's permission to lower one cluster's trusted-time mark,
    /// signed by an issuer key.
    ClockReset,
}

impl DocKind {
    /// Every kind, in a stable order.
    pub const ALL: [DocKind; 9] = [
        DocKind::License,
        DocKind::RevocationList,
        DocKind::ActivationRequest,
        DocKind::UsageReport,
        DocKind::Heartbeat,
        DocKind::RelayTime,
        DocKind::Root,
        DocKind::Receipt,
        DocKind::ClockReset,
    ];

    /// The COSE content type (header label 3) naming this kind.
    pub fn content_type(self) -> &'static str {
        match self {
            DocKind::License => "application/vnd.kaching.license+cbor",
            DocKind::RevocationList => "application/vnd.kaching.revocations+cbor",
            DocKind::ActivationRequest => "application/vnd.kaching.activation+cbor",
            DocKind::UsageReport => "application/vnd.kaching.usage+cbor",
            DocKind::Heartbeat => "application/vnd.kaching.heartbeat+cbor",
            DocKind::RelayTime => "application/vnd.kaching.relay-time+cbor",
            DocKind::Root => "application/vnd.kaching.root+cbor",
            DocKind::Receipt => "application/vnd.kaching.receipt+cbor",
            DocKind::ClockReset => "application/vnd.kaching.clock-reset+cbor",
        }
    }

    /// The label between `-----BEGIN ` and `-----`.
    pub fn armor_label(self) -> &'static str {
        match self {
            DocKind::License => "KACHING LICENSE",
            DocKind::RevocationList => "KACHING REVOCATION LIST",
            DocKind::ActivationRequest => "KACHING ACTIVATION REQUEST",
            DocKind::UsageReport => "KACHING USAGE REPORT",
            DocKind::Heartbeat => "KACHING HEARTBEAT",
            DocKind::RelayTime => "KACHING RELAY TIME",
            DocKind::Root => "KACHING ROOT",
            DocKind::Receipt => "KACHING RECEIPT",
            DocKind::ClockReset => "KACHING CLOCK RESET",
        }
    }

    /// The kind with this content type.
    pub fn from_content_type(ct: &str) -> Option<DocKind> {
        DocKind::ALL.into_iter().find(|k| k.content_type() == ct)
    }

    /// The kind with this armor label.
    pub fn from_armor_label(label: &str) -> Option<DocKind> {
        DocKind::ALL.into_iter().find(|k| k.armor_label() == label)
    }

    /// True for kinds signed by a cluster's own key rather than the vendor's.
    pub fn is_self_signed(self) -> bool {
        matches!(
            self,
            DocKind::ActivationRequest | DocKind::UsageReport | DocKind::Heartbeat
        )
    }
}

impl fmt::Display for DocKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DocKind::License => "license",
            DocKind::RevocationList => "revocation list",
            DocKind::ActivationRequest => "activation request",
            DocKind::UsageReport => "usage report",
            DocKind::Heartbeat => "heartbeat",
            DocKind::RelayTime => "relay time statement",
            DocKind::Root => "root of trust",
            DocKind::Receipt => "receipt",
            DocKind::ClockReset => "clock reset",
        })
    }
}
