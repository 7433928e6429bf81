//! The signed envelope every document travels in: a tagged COSE_Sign1 (RFC 9052)
//! with Ed25519 (alg −8 by default, −19 on request: [`Alg`]), the kid and the
//! content type in the protected header.
//!
//! Verification order is part of the security argument (docs/threat-model.md):
//! size limit, envelope shape, algorithm, kind, canonical form, key lookup,
//! `verify_strict` over the received bytes, and only then the payload.

use coset::{
    iana, AsCborValue, ContentType, CoseSign1Builder, HeaderBuilder, Label, TaggedCborSerializable,
};

use crate::error::{Error, Result};
use crate::keys::{Kid, PublicKey, SecretKey, TrustedKeys};

pub use crate::doc_kind::DocKind;

mod alg;
mod wire;
pub use alg::Alg;
use wire::{canonical_parts, decode_sign1, read_exact, sig_structure, Parts};

/// Protected-header label carrying the raw public key of a self-signed
/// document (activation requests, usage reports, heartbeats).
pub const SIGNER_KEY_LABEL: &str = "kaching-signer";

/// Signs a payload as a document of `kind` with the default alg, EdDSA (−8).
/// Self-signed kinds also carry the signer's public key in the protected header.
pub fn sign(kind: DocKind, payload: Vec<u8>, key: &SecretKey) -> Vec<u8> {
    sign_with(kind, payload, key, Alg::default())
}

/// Signs a payload as a document of `kind`, naming `alg` in the protected
/// header. Deterministic: the same inputs give the same bytes.
pub fn sign_with(kind: DocKind, payload: Vec<u8>, key: &SecretKey, alg: Alg) -> Vec<u8> {
    let public = key.public();
    let mut header = HeaderBuilder::new()
        .algorithm(alg.iana())
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

/// Parsed envelope before the signature check; the parts borrow the input.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Parsed<'a> {
    parts: Parts<'a>,
    kind: DocKind,
    kid: Kid,
    signer: Option<PublicKey>,
}

fn parse(bytes: &[u8], expected: DocKind) -> Result<Parsed<'_>> {
    if bytes.len() > crate::doc_kind::MAX_DOCUMENT_SIZE {
        return Err(Error::TooLarge {
            size: bytes.len(),
            limit: crate::doc_kind::MAX_DOCUMENT_SIZE,
        });
    }
    // Every document `sign` writes has one exact shape, checked by comparing
    // bytes: about a thirtieth of the cost of decoding (docs/benchmarks.md,
    // `verify`). Anything else, including every malformed envelope, takes the
    // general path, which refuses with the precise error.
    if let Some(parsed) = parse_exact(bytes, expected) {
        debug_assert_eq!(
            parse_general(bytes, expected).as_ref().ok(),
            Some(&parsed),
            "the exact-shape reader accepted what the general checks would not"
        );
        return Ok(parsed);
    }
    parse_general(bytes, expected)
}

/// The envelope when it is exactly in the shape `sign` writes (see
/// [`wire::read_exact`]) and its signer key, if any, is a valid key that
/// matches the kid; `None` otherwise.
fn parse_exact(bytes: &[u8], expected: DocKind) -> Option<Parsed<'_>> {
    let exact = read_exact(bytes, expected)?;
    let kid = Kid(exact.kid);
    let signer = match exact.signer {
        Some(raw) => {
            let key = PublicKey::from_bytes(raw).ok()?;
            if key.kid() != kid {
                return None;
            }
            Some(key)
        }
        None => None,
    };
    Some(Parsed {
        parts: exact.parts,
        kind: expected,
        kid,
        signer,
    })
}

/// Decodes the envelope whatever its spelling and runs each check in order,
/// refusing with the first that fails.
fn parse_general(bytes: &[u8], expected: DocKind) -> Result<Parsed<'_>> {
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
    if !h.iv.is_empty() || !h.partial_iv.is_empty() || !h.counter_signatures.is_empty() {
        // Signed or not, a parameter KACHING never writes is refused rather
        // than ignored: a verifier must not accept what it cannot interpret.
        return Err(Error::Malformed(
            "unknown protected header parameter".into(),
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
    let parts = match (protected, sign1.payload.as_deref()) {
        (Some(p), Some(payload)) => canonical_parts(bytes, p, payload, &sign1.signature),
        _ => None,
    };
    match parts {
        Some(parts) if canonical_header.as_deref() == protected => Ok(Parsed {
            parts,
            kind,
            kid,
            signer,
        }),
        _ => Err(Error::Malformed(
            "not in canonical (deterministic) encoding".into(),
        )),
    }
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

/// Checks the signature over the parts as received, then hands out the payload.
fn check(parsed: Parsed<'_>, key: &PublicKey) -> Result<Opened> {
    let Parsed {
        parts,
        kind,
        kid,
        signer,
    } = parsed;
    let mut tbs = sig_structure(parts.protected, parts.payload);
    key.verify_strict(&tbs, parts.signature)?;
    // The Sig_structure ends with the payload: dropping what precedes it
    // hands out the payload without a second allocation and copy.
    tbs.drain(..tbs.len() - parts.payload.len());
    debug_assert_eq!(tbs, parts.payload);
    Ok(Opened {
        kind,
        kid,
        payload: tbs,
        signer,
    })
}

/// Opens a vendor-signed document of the expected kind with a trusted key.
pub fn open(bytes: &[u8], expected: DocKind, keys: &TrustedKeys) -> Result<Opened> {
    let parsed = parse(bytes, expected)?;
    let key = keys.get(&parsed.kid).ok_or(Error::UnknownKey(parsed.kid))?;
    check(parsed, key)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Signs `payload` as a license with an extra protected IV parameter,
    /// exactly as a vendor key would: the signature is valid.
    fn signed_with_iv(key: &SecretKey) -> Vec<u8> {
        let header = HeaderBuilder::new()
            .algorithm(iana::Algorithm::Ed25519)
            .content_type(DocKind::License.content_type().to_string())
            .key_id(key.public().kid().0.to_vec())
            .iv(vec![0; 12])
            .build();
        CoseSign1Builder::new()
            .protected(header)
            .payload(b"\xa0".to_vec())
            .create_signature(b"", |tbs| key.sign(tbs).to_vec())
            .build()
            .to_tagged_vec()
            .expect("encode")
    }

    /// The alg value in a document's protected header.
    fn alg_of(bytes: &[u8]) -> Option<coset::Algorithm> {
        coset::CoseSign1::from_tagged_slice(bytes)
            .ok()?
            .protected
            .header
            .alg
    }

    #[test]
    fn sign_names_eddsa_by_default_and_ed25519_on_request() {
        let key = SecretKey::from_seed(&[5; 32]);
        let keys = TrustedKeys::from(key.public());
        let eddsa = coset::Algorithm::Assigned(iana::Algorithm::EdDSA);
        for kind in DocKind::ALL {
            let bytes = sign(kind, b"\xa0".to_vec(), &key);
            assert_eq!(alg_of(&bytes), Some(eddsa.clone()), "{kind}");
        }
        let payload = b"\xa1\x61x\x01".to_vec();
        let default = sign(DocKind::License, payload.clone(), &key);
        let ed25519 = sign_with(DocKind::License, payload.clone(), &key, Alg::Ed25519);
        assert_eq!(
            alg_of(&ed25519),
            Some(coset::Algorithm::Assigned(iana::Algorithm::Ed25519))
        );
        // Same inputs, same bytes, for either choice.
        assert_eq!(
            default,
            sign_with(DocKind::License, payload.clone(), &key, Alg::EdDSA)
        );
        assert_eq!(
            ed25519,
            sign_with(DocKind::License, payload.clone(), &key, Alg::Ed25519)
        );
        assert_ne!(default, ed25519, "the alg is signed, so the bytes differ");
        for bytes in [&default, &ed25519] {
            let opened = open(bytes, DocKind::License, &keys).expect("accepted on input");
            assert_eq!(opened.payload, payload);
        }
    }

    #[test]
    fn attack_validly_signed_unknown_protected_parameter_refused() {
        let key = SecretKey::from_seed(&[4; 32]);
        let keys = TrustedKeys::from(key.public());
        let err = open(&signed_with_iv(&key), DocKind::License, &keys).expect_err("must refuse");
        assert_eq!(
            err,
            Error::Malformed("unknown protected header parameter".into())
        );
    }
}
