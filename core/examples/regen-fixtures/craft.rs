//! Hand-built COSE_Sign1 envelopes, for the attack fixtures that the core
//! signer (rightly) cannot produce: other algorithms, a kid in the unprotected
//! header, a header in non-canonical order, a signature by another key.
//!
//! Built from the spec (docs/format.md), not from `envelope::sign`, so a test
//! that compares the two (`crafted_envelope_matches_core_signer`) checks that
//! the written spec and the code agree.

use ciborium::value::{Integer, Value};
use kaching_core::keys::SecretKey;
use kaching_core::DocKind;

/// COSE header labels used by KACHING (RFC 9052 §3.1).
pub const ALG: i64 = 1;
/// Content type.
pub const CONTENT_TYPE: i64 = 3;
/// Key id.
pub const KID: i64 = 4;
/// EdDSA (RFC 9053): what KACHING writes by default.
pub const ALG_EDDSA: i64 = -8;
/// Ed25519 (RFC 9864): written when a vendor sets `alg = "Ed25519"`.
pub const ALG_ED25519: i64 = -19;
/// ECDSA P-256 with SHA-256: what an algorithm-confusion attacker names.
pub const ALG_ES256: i64 = -7;

/// CBOR encoding of one value, as ciborium writes it (shortest heads).
pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = ciborium::ser::into_writer(value, &mut out);
    out
}

/// An integer CBOR value.
pub fn int(i: i64) -> Value {
    Value::Integer(Integer::from(i))
}

/// The protected header KACHING writes for a vendor-signed document, as
/// ordered (label, value) pairs: alg, content type, kid.
pub fn vendor_header(kind: DocKind, alg: Option<i64>, kid: &[u8]) -> Vec<(Value, Value)> {
    let mut h = Vec::new();
    if let Some(alg) = alg {
        h.push((int(ALG), int(alg)));
    }
    h.push((
        int(CONTENT_TYPE),
        Value::Text(kind.content_type().to_string()),
    ));
    h.push((int(KID), Value::Bytes(kid.to_vec())));
    h
}

/// The Sig_structure (RFC 9052 §4.4) that Ed25519 signs:
/// `["Signature1", protected bstr, external_aad = h'', payload bstr]`.
pub fn sig_structure(protected: &[u8], payload: &[u8]) -> Vec<u8> {
    encode(&Value::Array(vec![
        Value::Text("Signature1".into()),
        Value::Bytes(protected.to_vec()),
        Value::Bytes(Vec::new()),
        Value::Bytes(payload.to_vec()),
    ]))
}

/// A tagged COSE_Sign1 `18([protected, unprotected, payload, signature])`,
/// signed by `key` over exactly these protected bytes and payload.
pub fn sign1(
    protected: &[u8],
    unprotected: Vec<(Value, Value)>,
    payload: &[u8],
    key: &SecretKey,
) -> Vec<u8> {
    let signature = key.sign(&sig_structure(protected, payload));
    assemble(protected, unprotected, payload, &signature)
}

/// The envelope bytes around a given signature.
pub fn assemble(
    protected: &[u8],
    unprotected: Vec<(Value, Value)>,
    payload: &[u8],
    signature: &[u8],
) -> Vec<u8> {
    encode(&Value::Tag(
        18,
        Box::new(Value::Array(vec![
            Value::Bytes(protected.to_vec()),
            Value::Map(unprotected),
            Value::Bytes(payload.to_vec()),
            Value::Bytes(signature.to_vec()),
        ])),
    ))
}

/// Signs a vendor document with a hand-built header (in the order given).
pub fn sign_with_header(header: Vec<(Value, Value)>, payload: &[u8], key: &SecretKey) -> Vec<u8> {
    sign1(&encode(&Value::Map(header)), Vec::new(), payload, key)
}

/// Rewrites the map head at the start of `payload` as an indefinite-length
/// map (`0xbf … 0xff`): the same claims, a non-canonical spelling.
pub fn indefinite_map(payload: &[u8]) -> Option<Vec<u8>> {
    let first = *payload.first()?;
    if first >> 5 != 5 {
        return None;
    }
    let head_len = match first & 0x1f {
        0..=23 => 1,
        24 => 2,
        25 => 3,
        _ => return None,
    };
    let mut out = vec![0xbf];
    out.extend_from_slice(payload.get(head_len..)?);
    out.push(0xff);
    Some(out)
}
