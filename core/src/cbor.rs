//! Deterministic CBOR (RFC 8949 §4.2.1) for claim maps, and strict readers.
//!
//! Writers sort map keys by their encoded bytes; readers take each known key
//! once and refuse leftovers, so a decoded document re-encodes to the same bytes.

use ciborium::value::{Integer, Value};

use crate::error::{Error, Result};
use crate::time::Timestamp;

/// Nesting deeper than this is refused before it can exhaust the stack.
const RECURSION_LIMIT: usize = 16;

/// Encodes a value. Encoding into a `Vec` cannot fail for the values this crate builds.
pub(crate) fn to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    // Writing to a Vec never returns an I/O error.
    let _ = ciborium::ser::into_writer(value, &mut out);
    out
}

/// Decodes one CBOR item with a small recursion limit.
pub(crate) fn from_slice(bytes: &[u8]) -> Result<Value> {
    ciborium::de::from_reader_with_recursion_limit(bytes, RECURSION_LIMIT)
        .map_err(|e| Error::Payload(format!("not CBOR: {e}")))
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
    entries.sort_by_cached_key(|(k, _)| to_vec(k));
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
        let mut keys: Vec<Vec<u8>> = entries.iter().map(|(k, _)| to_vec(k)).collect();
        keys.sort();
        if keys.windows(2).any(|w| w[0] == w[1]) {
            return Err(Error::Payload(format!("{what} has a duplicate key")));
        }
        Ok(Fields { what, entries })
    }

    fn take(&mut self, key: &Value) -> Option<Value> {
        let pos = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.swap_remove(pos).1)
    }

    /// Takes an integer-keyed claim.
    pub(crate) fn int_key(&mut self, key: i64) -> Option<Value> {
        self.take(&Value::Integer(key.into()))
    }

    /// Takes a text-keyed claim.
    pub(crate) fn text_key(&mut self, key: &str) -> Option<Value> {
        self.take(&Value::Text(key.into()))
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
