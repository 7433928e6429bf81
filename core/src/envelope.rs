//! The signed envelope every document travels in: a tagged COSE_Sign1 (RFC 9052)
//! with Ed25519, the kid and the content type in the protected header.
//!
//! Verification order is part of the security argument (docs/threat-model.md):
//! size limit, envelope shape, algorithm, kind, canonical form, key lookup,
//! `verify_strict` over the received bytes, and only then the payload.

use std::fmt;

use coset::{
    iana, AsCborValue, ContentType, CoseSign1, CoseSign1Builder, HeaderBuilder, Label,
    TaggedCborSerializable,
};

use crate::error::{Error, Result};
use crate::keys::{Kid, PublicKey, SecretKey, TrustedKeys};

mod wire;
use wire::{canonical_framing, decode_sign1, sig_structure};

/// Protected-header label carrying the raw public key of a self-signed
/// document (activation requests, usage reports, heartbeats).
pub const SIGNER_KEY_LABEL: &str = "kaching-signer";

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
}

impl DocKind {
    /// Every kind, in a stable order.
    pub const ALL: [DocKind; 6] = [
        DocKind::License,
        DocKind::RevocationList,
        DocKind::ActivationRequest,
        DocKind::UsageReport,
        DocKind::Heartbeat,
        DocKind::RelayTime,
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
        })
    }
}

/// Signs a payload as a document of `kind`. Self-signed kinds also carry the
/// signer's public key in the protected header.
pub fn sign(kind: DocKind, payload: Vec<u8>, key: &SecretKey) -> Vec<u8> {
    let public = key.public();
    let mut header = HeaderBuilder::new()
        .algorithm(iana::Algorithm::Ed25519)
        .content_type(kind.content_type().to_string())
        .key_id(public.kid().0.to_vec());
    if kind.is_self_signed() {
        header = header.text_value(
            SIGNER_KEY_LABEL.to_string(),
            ciborium::value::Value::Bytes(public.as_bytes().to_vec()),
        );
    }
    let sign1 = CoseSign1Builder::new()
        .protected(header.build())
        .payload(payload)
        .create_signature(b"", |tbs| key.sign(tbs).to_vec())
        .build();
    // Encoding a structure we just built cannot fail.
    sign1.to_tagged_vec().unwrap_or_default()
}

/// A document whose signature has been checked; the payload is not decoded yet.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The kind the content type names.
    pub kind: DocKind,
    /// The kid of the key that signed it.
    pub kid: Kid,
    /// The signed payload bytes, exactly as received.
    pub payload: Vec<u8>,
    /// For self-signed kinds, the signer's public key from the protected header.
    pub signer: Option<PublicKey>,
}

/// Parsed envelope before the signature check.
struct Parsed {
    sign1: CoseSign1,
    kind: DocKind,
    kid: Kid,
    signer: Option<PublicKey>,
}

fn parse(bytes: &[u8], expected: DocKind) -> Result<Parsed> {
    if bytes.len() > crate::MAX_DOCUMENT_SIZE {
        return Err(Error::TooLarge {
            size: bytes.len(),
            limit: crate::MAX_DOCUMENT_SIZE,
        });
    }
    let sign1 = decode_sign1(bytes)?;
    let h = &sign1.protected.header;
    match &h.alg {
        Some(coset::Algorithm::Assigned(iana::Algorithm::Ed25519 | iana::Algorithm::EdDSA)) => {}
        Some(other) => return Err(Error::Algorithm(format!("{other:?}"))),
        None => {
            return Err(Error::Algorithm(
                "none (no alg in the protected header)".into(),
            ))
        }
    }
    let kind = match &h.content_type {
        Some(ContentType::Text(ct)) => {
            DocKind::from_content_type(ct).ok_or_else(|| Error::WrongKind {
                found: format!("document of unknown type {ct:?}"),
                expected,
            })?
        }
        _ => {
            return Err(Error::Malformed(
                "no text content type in the protected header".into(),
            ))
        }
    };
    if kind != expected {
        return Err(Error::WrongKind {
            found: kind.to_string(),
            expected,
        });
    }
    if !h.crit.is_empty() {
        return Err(Error::Malformed(
            "critical header parameters are not supported".into(),
        ));
    }
    if !sign1.unprotected.is_empty() {
        return Err(Error::Malformed("unprotected header must be empty".into()));
    }
    let kid = Kid(h
        .key_id
        .as_slice()
        .try_into()
        .map_err(|_| Error::Malformed("kid must be 8 bytes".into()))?);
    let signer = signer_key(h, kind)?;
    if let Some(signer) = &signer {
        if signer.kid() != kid {
            return Err(Error::Malformed("kid does not match the signer key".into()));
        }
    }
    if sign1.payload.is_none() {
        return Err(Error::Malformed(
            "detached payloads are not supported".into(),
        ));
    }
    // Only the canonical spelling is accepted, so that the bytes a verifier
    // accepted are the bytes the vendor wrote, and decode→encode is identity.
    // This is what re-encoding the parsed CoseSign1 and comparing would check,
    // without copying it: the protected header is its own deterministic
    // encoding, and the framing around the parts is the shortest one.
    let protected = sign1.protected.original_data.as_deref();
    let canonical_header = sign1
        .protected
        .header
        .clone()
        .to_cbor_value()
        .ok()
        .map(|v| crate::cbor::to_vec(&v));
    let framed = match (protected, sign1.payload.as_deref()) {
        (Some(p), Some(payload)) => canonical_framing(bytes, p, payload, &sign1.signature),
        _ => false,
    };
    if canonical_header.as_deref() != protected || !framed {
        return Err(Error::Malformed(
            "not in canonical (deterministic) encoding".into(),
        ));
    }
    Ok(Parsed {
        sign1,
        kind,
        kid,
        signer,
    })
}

fn signer_key(h: &coset::Header, kind: DocKind) -> Result<Option<PublicKey>> {
    let mut found = None;
    for (label, value) in &h.rest {
        match label {
            Label::Text(t) if t == SIGNER_KEY_LABEL => {
                let ciborium::value::Value::Bytes(b) = value else {
                    return Err(Error::Malformed("signer key must be a byte string".into()));
                };
                found = Some(PublicKey::from_bytes(b)?);
            }
            _ => {
                return Err(Error::Malformed(
                    "unknown protected header parameter".into(),
                ))
            }
        }
    }
    match (kind.is_self_signed(), found) {
        (true, None) => Err(Error::Malformed(format!(
            "a {kind} must carry its signer key"
        ))),
        (false, Some(_)) => Err(Error::Malformed(format!(
            "a {kind} must not carry a signer key"
        ))),
        (_, found) => Ok(found),
    }
}

fn check(parsed: Parsed, key: &PublicKey) -> Result<Opened> {
    let Parsed {
        sign1,
        kind,
        kid,
        signer,
    } = parsed;
    // parse() made sure both parts are present and canonically framed.
    let payload = sign1.payload.unwrap_or_default();
    let tbs = sig_structure(
        sign1.protected.original_data.as_deref().unwrap_or_default(),
        &payload,
    );
    key.verify_strict(&tbs, &sign1.signature)?;
    Ok(Opened {
        kind,
        kid,
        payload,
        signer,
    })
}

/// Opens a vendor-signed document of the expected kind with a trusted key.
pub fn open(bytes: &[u8], expected: DocKind, keys: &TrustedKeys) -> Result<Opened> {
    let parsed = parse(bytes, expected)?;
    let key = keys
        .get(&parsed.kid)
        .ok_or(Error::UnknownKey(parsed.kid))?
        .clone();
    check(parsed, &key)
}

/// Opens a self-signed document (activation request, usage report, heartbeat)
/// with the key it carries. The caller decides whether that key is one it
/// knows (for example, the cluster key bound at activation).
pub fn open_self_signed(bytes: &[u8], expected: DocKind) -> Result<Opened> {
    let parsed = parse(bytes, expected)?;
    let key = parsed
        .signer
        .clone()
        .ok_or_else(|| Error::Malformed("no signer key".into()))?;
    check(parsed, &key)
}

/// Reads the kind and kid of a document without checking its signature, for
/// tools that inspect files (`licensegen inspect`). Nothing it returns is trusted.
pub fn peek(bytes: &[u8]) -> Result<(DocKind, Kid)> {
    let sign1 = decode_sign1(bytes)?;
    let kind = match &sign1.protected.header.content_type {
        Some(ContentType::Text(ct)) => DocKind::from_content_type(ct),
        _ => None,
    }
    .ok_or_else(|| Error::Malformed("unknown content type".into()))?;
    let kid = Kid(sign1
        .protected
        .header
        .key_id
        .as_slice()
        .try_into()
        .map_err(|_| Error::Malformed("kid must be 8 bytes".into()))?);
    Ok((kind, kid))
}
