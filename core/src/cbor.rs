//! Deterministic CBOR (RFC 8949 §4.2.1) for claim maps, and strict readers.
//!
//! Writers sort map keys by their encoded bytes; readers take each known key
//! once and refuse leftovers, so a decoded document re-encodes to the same bytes.

use std::cmp::Ordering;

use ciborium::value::{Integer, Value};

use crate::error::{Error, Result};
use crate::time::Timestamp;

mod codec;
mod read;
mod write;
pub(crate) use codec::{head, head_bytes};
pub(crate) use read::{Key, Reader};
pub(crate) use write::{for_each_in_key_order, Writer};

/// Nesting deeper than this is refused before it can exhaust the stack.
const RECURSION_LIMIT: usize = 16;

/// Encodes a value. Encoding into a `Vec` cannot fail for the values this crate builds.
/// The bytes are those `ciborium::ser::into_writer` would write (see `codec`).
pub(crate) fn to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    codec::encode(value, &mut out);
    out
}

/// Decodes exactly one CBOR item (no trailing bytes) with a small recursion
/// limit. Definite lengths only: the canonical check would refuse the rest.
pub(crate) fn from_slice(bytes: &[u8]) -> Result<Value> {
    codec::decode(bytes, RECURSION_LIMIT).map_err(|e| match e {
        codec::DecodeError::Malformed(m) => Error::Payload(format!("not CBOR: {m}")),
        codec::DecodeError::NotCanonical(m) => {
            Error::Payload(format!("not in canonical encoding: {m}"))
        }
    })
}

/// Decodes one CBOR item of any shape (for the envelope, whose structure is
/// checked by the caller); the error says what is wrong, in words.
pub(crate) fn decode_any(bytes: &[u8]) -> std::result::Result<Value, String> {
    codec::decode(bytes, RECURSION_LIMIT).map_err(|e| match e {
        codec::DecodeError::Malformed(m) => m.to_string(),
        codec::DecodeError::NotCanonical(m) => format!("not in canonical encoding: {m}"),
    })
}

/// A map under construction; [`MapBuilder::build`] sorts it deterministically.
#[derive(Default)]
pub(crate) struct MapBuilder(Vec<(Value, Value)>);

impl MapBuilder {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds an integer-keyed entry (CWT claims).
    pub(crate) fn int(mut self, key: i64, value: impl Into<Value>) -> Self {
        self.0.push((Value::Integer(key.into()), value.into()));
        self
    }

    /// Adds a text-keyed entry (product claims).
    pub(crate) fn text(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.0.push((Value::Text(key.into()), value.into()));
        self
    }

    /// Adds a text-keyed entry when the value is present.
    pub(crate) fn text_opt(self, key: &str, value: Option<impl Into<Value>>) -> Self {
        match value {
            Some(v) => self.text(key, v),
            None => self,
        }
    }

    /// Sorts by the bytewise order of the encoded keys and returns the map.
    pub(crate) fn build(self) -> Value {
        sorted_map(self.0)
    }
}

/// Sorts map entries the deterministic way.
pub(crate) fn sorted_map(mut entries: Vec<(Value, Value)>) -> Value {
    entries.sort_by(|(a, _), (b, _)| codec::key_cmp(a, b));
    Value::Map(entries)
}

/// A decoded map whose keys are taken one by one; leftovers are an error.
pub(crate) struct Fields {
    what: &'static str,
    entries: Vec<(Value, Value)>,
}

impl Fields {
    /// Opens a map value, refusing anything else and duplicate keys.
    pub(crate) fn open(what: &'static str, value: Value) -> Result<Self> {
        let Value::Map(entries) = value else {
            return Err(Error::Payload(format!("{what} must be a CBOR map")));
        };
        // Canonical maps are strictly ascending, which already rules out
        // duplicates; anything else is sorted (by index, O(n log n)) to find them.
        let ascending = entries
            .windows(2)
            .all(|w| codec::key_cmp(&w[0].0, &w[1].0) == Ordering::Less);
        if !ascending {
            let mut order: Vec<usize> = (0..entries.len()).collect();
            order.sort_by(|&i, &j| codec::key_cmp(&entries[i].0, &entries[j].0));
            if order
                .windows(2)
                .any(|w| codec::key_cmp(&entries[w[0]].0, &entries[w[1]].0) == Ordering::Equal)
            {
                return Err(Error::Payload(format!("{what} has a duplicate key")));
            }
        }
        Ok(Fields { what, entries })
    }

    fn take(&mut self, is_key: impl Fn(&Value) -> bool) -> Option<Value> {
        let pos = self.entries.iter().position(|(k, _)| is_key(k))?;
        Some(self.entries.swap_remove(pos).1)
    }

    /// Takes an integer-keyed claim.
    pub(crate) fn int_key(&mut self, key: i64) -> Option<Value> {
        let key = Integer::from(key);
        self.take(|k| matches!(k, Value::Integer(i) if *i == key))
    }

    /// Takes a text-keyed claim.
    pub(crate) fn text_key(&mut self, key: &str) -> Option<Value> {
        self.take(|k| matches!(k, Value::Text(t) if t == key))
    }

    /// Takes a required text-keyed claim; its absence is an error.
    pub(crate) fn required(&mut self, key: &str) -> Result<Value> {
        self.text_key(key).ok_or_else(|| self.missing(key))
    }

    /// Error for a missing required claim.
    pub(crate) fn missing(&self, name: &str) -> Error {
        Error::Payload(format!("{} is missing {name}", self.what))
    }

    /// Refuses claims nobody asked for: an unknown claim may be a restriction
    /// this verifier does not understand, so it fails closed.
    pub(crate) fn finish(self) -> Result<()> {
        match self.entries.first() {
            None => Ok(()),
            Some((k, _)) => Err(Error::Payload(format!(
                "{} has unknown claim {}",
                self.what,
                describe_key(k)
            ))),
        }
    }
}

fn describe_key(k: &Value) -> String {
    match k {
        Value::Text(t) => format!("{t:?}"),
        Value::Integer(i) => format!("{}", i128::from(*i)),
        _ => "of a non-text, non-integer type".into(),
    }
}

/// Reads a text string.
pub(crate) fn text(v: Value, name: &str) -> Result<String> {
    match v {
        Value::Text(t) => Ok(t),
        _ => Err(Error::Payload(format!("{name} must be a text string"))),
    }
}

/// Reads an unsigned integer.
pub(crate) fn uint(v: Value, name: &str) -> Result<u64> {
    match v {
        Value::Integer(i) => u64::try_from(i)
            .map_err(|_| Error::Payload(format!("{name} must be a non-negative integer"))),
        _ => Err(Error::Payload(format!("{name} must be an integer"))),
    }
}

/// Reads an unsigned integer that fits in `u32`.
pub(crate) fn uint32(v: Value, name: &str) -> Result<u32> {
    u32::try_from(uint(v, name)?).map_err(|_| Error::Payload(format!("{name} is too large")))
}

/// Reads a time (integer seconds; CWT allows floats, KACHING does not).
pub(crate) fn time(v: Value, name: &str) -> Result<Timestamp> {
    uint(v, name)
}

/// Reads a byte string of exactly `N` bytes.
pub(crate) fn bytes_n<const N: usize>(v: Value, name: &str) -> Result<[u8; N]> {
    match v {
        Value::Bytes(b) => b
            .try_into()
            .map_err(|_| Error::Payload(format!("{name} must be {N} bytes"))),
        _ => Err(Error::Payload(format!("{name} must be a byte string"))),
    }
}

/// Reads a byte string of any length.
pub(crate) fn bytes(v: Value, name: &str) -> Result<Vec<u8>> {
    match v {
        Value::Bytes(b) => Ok(b),
        _ => Err(Error::Payload(format!("{name} must be a byte string"))),
    }
}

/// Reads an array.
pub(crate) fn array(v: Value, name: &str) -> Result<Vec<Value>> {
    match v {
        Value::Array(a) => Ok(a),
        _ => Err(Error::Payload(format!("{name} must be an array"))),
    }
}

/// Reads a map with text keys, in the order found.
pub(crate) fn text_map(v: Value, name: &str) -> Result<Vec<(String, Value)>> {
    match v {
        Value::Map(m) => m
            .into_iter()
            .map(|(k, v)| Ok((text(k, name)?, v)))
            .collect(),
        _ => Err(Error::Payload(format!("{name} must be a map"))),
    }
}

/// An unsigned integer as a CBOR value.
pub(crate) fn u(v: u64) -> Value {
    Value::Integer(Integer::from(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ciborium_bytes(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::ser::into_writer(v, &mut out).expect("encode");
        out
    }

    fn any_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<u64>().prop_map(|n| Value::Integer(n.into())),
            any::<i64>().prop_map(|n| Value::Integer(n.into())),
            (0u64..3).prop_map(|d| Value::Integer(
                Integer::try_from(-(1i128 << 64) + i128::from(d)).expect("in range")
            )),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(Value::Bytes),
            ".{0,40}".prop_map(Value::Text),
            any::<bool>().prop_map(Value::Bool),
            Just(Value::Null),
            (-1e6f64..1e6).prop_map(Value::Float),
            Just(Value::Float(0.5)),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                proptest::collection::vec((inner.clone(), inner.clone()), 0..6)
                    .prop_map(Value::Map),
                // Tags 2 and 3 (bignums) ciborium folds into integers; KACHING
                // documents carry no tags, so any other tag exercises the framing.
                (4u64..100_000, inner).prop_map(|(t, v)| Value::Tag(t, Box::new(v))),
            ]
        })
    }

    proptest! {
        #[test]
        fn encoding_is_byte_identical_to_ciborium(v in any_value()) {
            prop_assert_eq!(to_vec(&v), ciborium_bytes(&v));
        }

        #[test]
        fn decoding_agrees_with_ciborium(v in any_value()) {
            let bytes = ciborium_bytes(&v);
            let theirs: Value = ciborium::de::from_reader(bytes.as_slice()).expect("decode");
            let ours = from_slice(&bytes).expect("decode");
            prop_assert_eq!(&ours, &theirs);
            prop_assert_eq!(to_vec(&ours), bytes);
        }

        #[test]
        fn key_order_is_encoded_byte_order(a in any_value(), b in any_value()) {
            prop_assert_eq!(codec::key_cmp(&a, &b), to_vec(&a).cmp(&to_vec(&b)));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = from_slice(&bytes);
        }
    }

    #[test]
    fn integer_edges_match_ciborium() {
        for n in [
            0i128,
            23,
            24,
            255,
            256,
            65_535,
            65_536,
            1 << 32,
            -1,
            -24,
            -25,
            -257,
        ] {
            let v = Value::Integer(Integer::try_from(n).expect("in range"));
            assert_eq!(to_vec(&v), ciborium_bytes(&v), "{n}");
        }
        let max = Value::Integer(u64::MAX.into());
        assert_eq!(to_vec(&max), ciborium_bytes(&max));
    }

    #[test]
    fn malformed_cbor_refused() {
        let cases: [(&str, &[u8]); 7] = [
            ("empty", &[]),
            ("trailing byte", &[0x01, 0x00]),
            ("indefinite array", &[0x9f, 0x01, 0xff]),
            ("truncated text", &[0x63, b'a']),
            (
                "huge announced length",
                &[0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            ),
            (
                "huge announced map",
                &[0xbb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            ),
            ("invalid UTF-8", &[0x61, 0xff]),
        ];
        for (name, bytes) in cases {
            assert!(
                matches!(from_slice(bytes), Err(Error::Payload(_))),
                "{name}"
            );
        }
        let deep = [vec![0x81u8; RECURSION_LIMIT + 1], vec![0x00]].concat();
        assert!(from_slice(&deep).is_err(), "nesting beyond the limit");
        let ok = [vec![0x81u8; RECURSION_LIMIT], vec![0x00]].concat();
        assert!(from_slice(&ok).is_ok(), "nesting at the limit");
    }

    #[test]
    fn duplicate_keys_refused_in_any_order() {
        let map = |keys: &[&str]| {
            Value::Map(
                keys.iter()
                    .map(|k| (Value::Text((*k).into()), Value::Null))
                    .collect(),
            )
        };
        assert!(Fields::open("t", map(&["a", "bb", "c"])).is_ok());
        assert!(
            Fields::open("t", map(&["bb", "a"])).is_ok(),
            "unsorted is not a duplicate"
        );
        assert!(Fields::open("t", map(&["a", "bb", "a"])).is_err());
        assert!(Fields::open("t", map(&["a", "a"])).is_err());
    }
}
