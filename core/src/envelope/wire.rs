//! The COSE_Sign1 at the byte level: reading it in one pass, the shortest
//! framing its canonical form must have, and the Sig_structure that is signed.
//! Kept apart from `envelope`'s checks so each stays small; every function
//! here is tested against coset, whose output it must match.

use ciborium::value::Value;
use coset::{AsCborValue, CoseSign1, Header, ProtectedHeader};

use crate::error::{Error, Result};

/// Reads a tagged COSE_Sign1 into coset's structure, exactly as coset's
/// `from_tagged_slice` would (tag 18, an array of four, a protected header
/// parsed from its byte string, nothing after), but with the crate's one-pass
/// CBOR decoder instead of two serde passes. Nothing here is trusted yet.
pub(super) fn decode_sign1(bytes: &[u8]) -> Result<CoseSign1> {
    const COSE_SIGN1_TAG: u64 = 18;
    let bad = |why: &str| Error::Malformed(format!("not a tagged COSE_Sign1 ({why})"));
    let value = crate::cbor::decode_any(bytes).map_err(|e| bad(&e))?;
    let Value::Tag(COSE_SIGN1_TAG, inner) = value else {
        return Err(bad("expected CBOR tag 18"));
    };
    let Value::Array(mut parts) = *inner else {
        return Err(bad("expected an array"));
    };
    if parts.len() != 4 {
        return Err(bad("expected an array with 4 items"));
    }
    let Some(Value::Bytes(signature)) = parts.pop() else {
        return Err(bad("the signature must be a byte string"));
    };
    let payload = match parts.pop() {
        Some(Value::Bytes(b)) => Some(b),
        Some(Value::Null) => None,
        _ => return Err(bad("the payload must be a byte string or nil")),
    };
    let unprotected = parts
        .pop()
        .map(Header::from_cbor_value)
        .transpose()
        .map_err(|e| bad(&e.to_string()))?
        .unwrap_or_default();
    let Some(Value::Bytes(protected)) = parts.pop() else {
        return Err(bad("the protected header must be a byte string"));
    };
    let header = if protected.is_empty() {
        // As in COSE: an empty bstr stands for an empty header map.
        Header::default()
    } else {
        let map = crate::cbor::decode_any(&protected).map_err(|e| bad(&e))?;
        Header::from_cbor_value(map).map_err(|e| bad(&e.to_string()))?
    };
    Ok(CoseSign1 {
        protected: ProtectedHeader {
            original_data: Some(protected),
            header,
        },
        unprotected,
        payload,
        signature,
    })
}

/// True when `bytes` is exactly the shortest encoding of a tagged COSE_Sign1
/// (tag 18, array of 4) of these parts with an empty unprotected header: the
/// bytes coset would write for the parsed structure.
pub(super) fn canonical_framing(
    bytes: &[u8],
    protected: &[u8],
    payload: &[u8],
    signature: &[u8],
) -> bool {
    fn bstr<'a>(rest: &'a [u8], content: &[u8]) -> Option<&'a [u8]> {
        let (head, len) = crate::cbor::head_bytes(2, content.len() as u64);
        rest.strip_prefix(&head[..len])?.strip_prefix(content)
    }
    // d2: tag 18 (COSE_Sign1); 84: array of 4; a0: the empty unprotected map.
    let rest = bytes
        .strip_prefix(&[0xd2, 0x84])
        .and_then(|r| bstr(r, protected))
        .and_then(|r| r.strip_prefix(&[0xa0]))
        .and_then(|r| bstr(r, payload))
        .and_then(|r| bstr(r, signature));
    rest == Some(&[][..])
}

/// The Sig_structure (RFC 9052 §4.4) of a COSE_Sign1 without external data,
/// `["Signature1", protected, h'', payload]`, from the bytes as received.
pub(super) fn sig_structure(protected: &[u8], payload: &[u8]) -> Vec<u8> {
    const CONTEXT: &[u8] = b"Signature1";
    let mut out = Vec::with_capacity(protected.len() + payload.len() + 32);
    crate::cbor::head(&mut out, 4, 4);
    crate::cbor::head(&mut out, 3, CONTEXT.len() as u64);
    out.extend_from_slice(CONTEXT);
    crate::cbor::head(&mut out, 2, protected.len() as u64);
    out.extend_from_slice(protected);
    crate::cbor::head(&mut out, 2, 0);
    crate::cbor::head(&mut out, 2, payload.len() as u64);
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{open, sign, DocKind};
    use crate::keys::{SecretKey, TrustedKeys};
    use coset::TaggedCborSerializable;

    #[test]
    fn sig_structure_matches_coset() {
        let key = SecretKey::from_seed(&[3; 32]);
        for kind in [DocKind::License, DocKind::Heartbeat] {
            let payload: Vec<u8> = (0..300u16).map(|i| i as u8).collect();
            let bytes = sign(kind, payload, &key);
            let sign1 = CoseSign1::from_tagged_slice(&bytes).expect("parse");
            let ours = sig_structure(
                sign1.protected.original_data.as_deref().unwrap_or_default(),
                sign1.payload.as_deref().unwrap_or_default(),
            );
            assert_eq!(ours, sign1.tbs_data(b""), "{kind}");
        }
    }

    /// Whatever the envelope decoder accepts, coset reads the same way; it
    /// never accepts what coset refuses (it may refuse more: indefinite
    /// lengths, which the canonical check would refuse anyway).
    #[test]
    fn decode_sign1_agrees_with_coset_on_every_bit_flip() {
        let key = SecretKey::from_seed(&[3; 32]);
        let bytes = sign(DocKind::Heartbeat, vec![0xa1, 0x61, 0x78, 0x01], &key);
        let mut cases = vec![bytes.clone()];
        for i in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[i / 8] ^= 1 << (i % 8);
            cases.push(flipped);
        }
        cases.extend((0..bytes.len()).map(|n| bytes[..n].to_vec()));
        for case in cases {
            if let Ok(ours) = decode_sign1(&case) {
                let theirs = CoseSign1::from_tagged_slice(&case).expect("coset accepts too");
                assert_eq!(ours, theirs, "{case:02x?}");
            }
        }
        assert!(decode_sign1(&bytes).is_ok());
    }

    #[test]
    fn canonical_framing_is_what_coset_writes() {
        let key = SecretKey::from_seed(&[3; 32]);
        for len in [0usize, 23, 24, 255, 256, 70_000] {
            let bytes = sign(DocKind::License, vec![0x41; len], &key);
            let sign1 = CoseSign1::from_tagged_slice(&bytes).expect("parse");
            let (p, pl, sig) = (
                sign1.protected.original_data.clone().unwrap_or_default(),
                sign1.payload.clone().unwrap_or_default(),
                sign1.signature.clone(),
            );
            assert!(
                canonical_framing(&bytes, &p, &pl, &sig),
                "payload of {len} bytes"
            );
            assert_eq!(sign1.to_tagged_vec().ok(), Some(bytes.clone()));
            // Any extra byte, or a longer-than-needed length, is refused.
            let mut trailing = bytes.clone();
            trailing.push(0);
            assert!(!canonical_framing(&trailing, &p, &pl, &sig));
            assert!(!canonical_framing(&bytes[1..], &p, &pl, &sig));
        }
    }

    #[test]
    fn long_form_length_refused_as_noncanonical() {
        let key = SecretKey::from_seed(&[3; 32]);
        let keys = TrustedKeys::from(key.public());
        let bytes = sign(DocKind::License, vec![0x41; 10], &key);
        // The payload bstr head 0x4a (10 bytes) spelled as 0x58 0x0a.
        let at = bytes
            .windows(11)
            .position(|w| w[0] == 0x4a && w[1..].iter().all(|b| *b == 0x41))
            .expect("payload head");
        let mut long = bytes[..at].to_vec();
        long.extend_from_slice(&[0x58, 0x0a]);
        long.extend_from_slice(&bytes[at + 1..]);
        let e = open(&long, DocKind::License, &keys).expect_err("refused");
        assert!(
            matches!(&e, Error::Malformed(m) if m.contains("canonical")),
            "{e:?}"
        );
        assert!(open(&bytes, DocKind::License, &keys).is_ok());
    }
}
