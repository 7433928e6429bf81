//! The COSE_Sign1 at the byte level: reading it in one pass, the shortest
//! framing its canonical form must have, and the Sig_structure that is signed.
//! Kept apart from `envelope`'s checks so each stays small; every function
//! here is tested against coset, whose output it must match.

use ciborium::value::Value;
use coset::{AsCborValue, CoseSign1, Header, ProtectedHeader};

use crate::doc_kind::DocKind;
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

/// The parts of a received envelope, borrowed from its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Parts<'a> {
    /// The protected header's bytes, exactly as received (they are signed).
    pub(super) protected: &'a [u8],
    /// The payload's bytes.
    pub(super) payload: &'a [u8],
    /// The signature's bytes (any length: `verify_strict` refuses all but 64).
    pub(super) signature: &'a [u8],
}

/// True when `bytes` is exactly the shortest encoding of a tagged COSE_Sign1
/// (tag 18, array of 4) of these parts with an empty unprotected header: the
/// bytes coset would write for the parsed structure.
#[cfg(test)]
pub(super) fn canonical_framing(
    bytes: &[u8],
    protected: &[u8],
    payload: &[u8],
    signature: &[u8],
) -> bool {
    canonical_parts(bytes, protected, payload, signature).is_some()
}

/// When `bytes` is exactly the shortest encoding of a tagged COSE_Sign1
/// (tag 18, array of 4) of these parts with an empty unprotected header, the
/// bytes coset would write for the parsed structure: where each part sits.
pub(super) fn canonical_parts<'a>(
    bytes: &'a [u8],
    protected: &[u8],
    payload: &[u8],
    signature: &[u8],
) -> Option<Parts<'a>> {
    fn bstr<'a>(rest: &'a [u8], content: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
        let (head, len) = crate::cbor::head_bytes(2, content.len() as u64);
        let rest = rest.strip_prefix(&head[..len])?;
        let (part, rest) = rest.split_at_checked(content.len())?;
        (part == content).then_some((part, rest))
    }
    // d2: tag 18 (COSE_Sign1); 84: array of 4; a0: the empty unprotected map.
    let rest = bytes.strip_prefix(&[0xd2, 0x84])?;
    let (protected, rest) = bstr(rest, protected)?;
    let rest = rest.strip_prefix(&[0xa0])?;
    let (payload, rest) = bstr(rest, payload)?;
    let (signature, rest) = bstr(rest, signature)?;
    rest.is_empty().then_some(Parts {
        protected,
        payload,
        signature,
    })
}

/// The protected-header entry of a self-signed document's key, up to the key:
/// the text label `"kaching-signer"` and the head of a 32-byte byte string.
const SIGNER_ENTRY: &[u8] = b"\x6ekaching-signer\x58\x20";

/// An envelope in exactly the shape [`super::sign`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Exact<'a> {
    /// Where its parts sit in the received bytes.
    pub(super) parts: Parts<'a>,
    /// The kid from the protected header.
    pub(super) kid: [u8; 8],
    /// For self-signed kinds, the signer key's raw bytes (not yet checked).
    pub(super) signer: Option<&'a [u8; 32]>,
}

/// Reads an envelope that is byte for byte what [`super::sign`] writes for a
/// document of `kind`: tag 18 and an array of four; a protected header
/// `{1: alg, 3: content type, 4: kid}` in that order, with alg EdDSA (−8)
/// or Ed25519 (−19), the content type of `kind`, an 8-byte kid and, for
/// self-signed kinds only, `"kaching-signer": <32 bytes>` last; an empty
/// unprotected map; the payload; a 64-byte signature; every head in shortest
/// form and nothing after. Nothing is decoded into a tree: each byte is
/// compared with the one that shape has.
///
/// `None` means "not exactly that shape", not "invalid": the caller then runs
/// the general decoder, which accepts or refuses with the precise error.
/// Whatever this accepts passes every check of the general path (shape, alg,
/// kind, no crit, empty unprotected header, 8-byte kid, signer key present
/// exactly for self-signed kinds, attached payload, canonical header and
/// framing) with the same parts; debug builds assert that on every input.
pub(super) fn read_exact(bytes: &[u8], kind: DocKind) -> Option<Exact<'_>> {
    let rest = bytes.strip_prefix(&[0xd2, 0x84])?;
    let (protected, rest) = shortest_bstr(rest)?;
    let rest = rest.strip_prefix(&[0xa0])?;
    let (payload, rest) = shortest_bstr(rest)?;
    let signature = rest.strip_prefix(&[0x58, 0x40])?;
    if signature.len() != 64 {
        return None;
    }
    let (kid, signer) = exact_header(protected, kind)?;
    Some(Exact {
        parts: Parts {
            protected,
            payload,
            signature,
        },
        kid,
        signer,
    })
}

/// A byte string whose head is in shortest form: (content, rest).
fn shortest_bstr(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&initial, rest) = bytes.split_first()?;
    if initial >> 5 != 2 {
        return None;
    }
    let (len, rest) = match initial & 0x1f {
        n @ 0..=23 => (usize::from(n), rest),
        24 => {
            let (&n, rest) = rest.split_first()?;
            (n >= 24).then_some((usize::from(n), rest))?
        }
        25 => {
            let (n, rest) = rest.split_first_chunk::<2>()?;
            let n = u16::from_be_bytes(*n);
            (n > 0xff).then_some((usize::from(n), rest))?
        }
        26 => {
            let (n, rest) = rest.split_first_chunk::<4>()?;
            let n = u32::from_be_bytes(*n);
            (n > 0xffff).then_some((usize::try_from(n).ok()?, rest))?
        }
        // Longer lengths cannot occur below the document size limit.
        _ => return None,
    };
    rest.split_at_checked(len)
}

/// The kid and signer key of a protected header spelled exactly as `sign`
/// spells it for `kind`.
fn exact_header(header: &[u8], kind: DocKind) -> Option<([u8; 8], Option<&[u8; 32]>)> {
    let self_signed = kind.is_self_signed();
    // A map of 3 entries (4 with the signer key), then label 1 (alg).
    let h = header.strip_prefix(&[if self_signed { 0xa4 } else { 0xa3 }, 0x01])?;
    // −8 (EdDSA, what `sign` writes by default) is 0x27, −19 (Ed25519) 0x32.
    let h = h
        .strip_prefix(&[0x27])
        .or_else(|| h.strip_prefix(&[0x32]))?;
    let content_type = kind.content_type().as_bytes();
    let (head, len) = crate::cbor::head_bytes(3, content_type.len() as u64);
    let h = h
        .strip_prefix(&[0x03])?
        .strip_prefix(&head[..len])?
        .strip_prefix(content_type)?;
    // Label 4 (kid), a byte string of 8.
    let (kid, h) = h.strip_prefix(&[0x04, 0x48])?.split_first_chunk::<8>()?;
    let (signer, h) = if self_signed {
        let (key, h) = h.strip_prefix(SIGNER_ENTRY)?.split_first_chunk::<32>()?;
        (Some(key), h)
    } else {
        (None, h)
    };
    h.is_empty().then_some((*kid, signer))
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
    use crate::envelope::{
        open, parse_exact, parse_general, sign, sign_with, Alg, DocKind, SIGNER_KEY_LABEL,
    };
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
    fn signer_entry_is_the_label_then_a_32_byte_head() {
        let mut expected = Vec::new();
        crate::cbor::head(&mut expected, 3, SIGNER_KEY_LABEL.len() as u64);
        expected.extend_from_slice(SIGNER_KEY_LABEL.as_bytes());
        crate::cbor::head(&mut expected, 2, 32);
        assert_eq!(SIGNER_ENTRY, expected.as_slice());
    }

    /// Documents of every kind and both alg spellings, as `sign` writes them.
    fn signed_documents() -> Vec<(DocKind, Vec<u8>)> {
        let key = SecretKey::from_seed(&[3; 32]);
        let payload = vec![0xa1, 0x61, 0x78, 0x01];
        let mut docs: Vec<(DocKind, Vec<u8>)> = Vec::new();
        for alg in Alg::ALL {
            for kind in DocKind::ALL {
                docs.push((kind, sign_with(kind, payload.clone(), &key, alg)));
            }
            // A longer payload: a two-byte bstr head.
            let license = sign_with(DocKind::License, vec![0x41; 300], &key, alg);
            docs.push((DocKind::License, license));
        }
        // Both spellings are really there: the alg is byte 6 (after d2 84 58
        // <len> a3|a4 01); −8 is 0x27, −19 is 0x32.
        let algs: std::collections::BTreeSet<u8> = docs.iter().map(|(_, d)| d[6]).collect();
        assert_eq!(algs, [0x27, 0x32].into());
        docs
    }

    #[test]
    fn exact_reader_takes_every_document_sign_writes() {
        for (kind, bytes) in signed_documents() {
            let exact = parse_exact(&bytes, kind).expect("exact shape");
            assert_eq!(Ok(&exact), parse_general(&bytes, kind).as_ref(), "{kind}");
            let sign1 = CoseSign1::from_tagged_slice(&bytes).expect("parse");
            assert_eq!(
                exact.parts.payload,
                sign1.payload.as_deref().unwrap_or_default()
            );
            assert_eq!(exact.parts.signature, sign1.signature.as_slice());
            for other in DocKind::ALL.into_iter().filter(|k| *k != kind) {
                assert!(parse_exact(&bytes, other).is_none(), "{kind} as {other}");
            }
        }
    }

    /// The exact-shape reader never accepts what the general checks refuse,
    /// and when it accepts, it reads the same parts, kid and signer: over
    /// every single bit flip and truncation of each kind of document.
    #[test]
    fn exact_reader_accepts_only_what_the_general_checks_accept() {
        let mut exact_hits = 0;
        for (kind, bytes) in signed_documents() {
            let mut cases: Vec<Vec<u8>> = (0..bytes.len() * 8)
                .map(|i| {
                    let mut flipped = bytes.clone();
                    flipped[i / 8] ^= 1 << (i % 8);
                    flipped
                })
                .collect();
            cases.extend((0..bytes.len()).map(|n| bytes[..n].to_vec()));
            for case in cases {
                if let Some(exact) = parse_exact(&case, kind) {
                    exact_hits += 1;
                    assert_eq!(
                        Ok(&exact),
                        parse_general(&case, kind).as_ref(),
                        "{kind}: {case:02x?}"
                    );
                }
            }
        }
        // Flips inside the kid, payload and signature keep the shape.
        assert!(exact_hits > 1000, "{exact_hits}");
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
