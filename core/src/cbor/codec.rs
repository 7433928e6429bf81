//! A direct CBOR codec for `ciborium::value::Value`.
//!
//! Verification decodes and re-encodes every payload (the canonical check), so
//! this sits on the hot path next to one Ed25519 verification. ciborium goes
//! through serde for every item; this walks the bytes once. Encoding is
//! byte-for-byte what `ciborium::ser::into_writer` writes for the same value
//! (unit tests and a proptest compare the two), so swapping it in changes no
//! document's bytes.

use std::cmp::Ordering;

use ciborium::value::{Integer, Value};

/// Appends a CBOR head (major type and argument) in its shortest form.
pub(crate) fn head(out: &mut Vec<u8>, major: u8, n: u64) {
    let (buf, len) = head_bytes(major, n);
    out.extend_from_slice(&buf[..len]);
}

/// The shortest head for `major` and `n`, in a stack buffer (bytes, length).
#[inline]
pub(crate) fn head_bytes(major: u8, n: u64) -> ([u8; 9], usize) {
    let m = major << 5;
    let mut buf = [0u8; 9];
    let len = match n {
        0..=23 => {
            buf[0] = m | n as u8;
            1
        }
        24..=0xff => {
            buf[0] = m | 24;
            buf[1] = n as u8;
            2
        }
        0x100..=0xffff => {
            buf[0] = m | 25;
            buf[1..3].copy_from_slice(&(n as u16).to_be_bytes());
            3
        }
        0x1_0000..=0xffff_ffff => {
            buf[0] = m | 26;
            buf[1..5].copy_from_slice(&(n as u32).to_be_bytes());
            5
        }
        _ => {
            buf[0] = m | 27;
            buf[1..9].copy_from_slice(&n.to_be_bytes());
            9
        }
    };
    (buf, len)
}

fn len64(n: usize) -> u64 {
    // usize is at most 64 bits on every supported target.
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Major type and argument of an integer: 0 for n ≥ 0, 1 for −1 − n.
fn int_head(i: Integer) -> (u8, u64) {
    let n = i128::from(i);
    match u64::try_from(n) {
        Ok(p) => (0, p),
        // ciborium's Integer spans −2⁶⁴ ..= 2⁶⁴ − 1, so −1 − n fits in u64.
        Err(_) => (1, u64::try_from(-1 - n).unwrap_or(u64::MAX)),
    }
}

/// Appends the deterministic encoding of `value`.
pub(crate) fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Integer(i) => {
            let (major, n) = int_head(*i);
            head(out, major, n);
        }
        Value::Bytes(b) => {
            head(out, 2, len64(b.len()));
            out.extend_from_slice(b);
        }
        Value::Text(t) => {
            head(out, 3, len64(t.len()));
            out.extend_from_slice(t.as_bytes());
        }
        Value::Array(items) => {
            head(out, 4, len64(items.len()));
            for v in items {
                encode(v, out);
            }
        }
        Value::Map(entries) => {
            head(out, 5, len64(entries.len()));
            for (k, v) in entries {
                encode(k, out);
                encode(v, out);
            }
        }
        Value::Tag(tag, v) => {
            head(out, 6, *tag);
            encode(v, out);
        }
        Value::Bool(false) => out.push(0xf4),
        Value::Bool(true) => out.push(0xf5),
        Value::Null => out.push(0xf6),
        // Floats (shortest lossless width) and any future variant: ciborium's
        // own encoder, so the output stays identical. Writing to a Vec cannot fail.
        _ => {
            let _ = ciborium::ser::into_writer(value, &mut *out);
        }
    }
}

/// Compares two map keys by their encoded bytes (RFC 8949 §4.2.1 order),
/// without encoding integer, text or byte-string keys into new buffers.
pub(crate) fn key_cmp(a: &Value, b: &Value) -> Ordering {
    // Most keys differ in their first byte (type and short length): decide
    // those without building heads.
    if let (Some(x), Some(y)) = (first_byte(a), first_byte(b)) {
        if x != y {
            return x.cmp(&y);
        }
    }
    match (flat(a), flat(b)) {
        // Heads with the same first byte have the same length, and heads with
        // different first bytes are ordered by it, so comparing (head, content)
        // as a pair gives the order of the concatenated bytes.
        (Some((ha, la, ca)), Some((hb, lb, cb))) => (&ha[..la], ca).cmp(&(&hb[..lb], cb)),
        _ => super::to_vec(a).cmp(&super::to_vec(b)),
    }
}

/// The first encoded byte of an integer, text or byte-string key.
#[inline]
fn first_byte(v: &Value) -> Option<u8> {
    let (major, n) = match v {
        Value::Integer(i) => int_head(*i),
        Value::Text(t) => (3, len64(t.len())),
        Value::Bytes(b) => (2, len64(b.len())),
        _ => return None,
    };
    let info = match n {
        0..=23 => n as u8,
        24..=0xff => 24,
        0x100..=0xffff => 25,
        0x1_0000..=0xffff_ffff => 26,
        _ => 27,
    };
    Some(major << 5 | info)
}

/// Head and content of a key that encodes as head + raw bytes.
#[inline]
fn flat(v: &Value) -> Option<([u8; 9], usize, &[u8])> {
    let (major, n, content): (u8, u64, &[u8]) = match v {
        Value::Integer(i) => {
            let (major, n) = int_head(*i);
            (major, n, &[])
        }
        Value::Text(t) => (3, len64(t.len()), t.as_bytes()),
        Value::Bytes(b) => (2, len64(b.len()), b),
        _ => return None,
    };
    let (buf, len) = head_bytes(major, n);
    Some((buf, len, content))
}

/// Why bytes did not decode. Messages are static: decoding runs on every
/// verification, and a document's defects are told by position-free words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// Not well-formed CBOR (truncated, reserved encodings, bad UTF-8, too deep).
    Malformed(&'static str),
    /// Well-formed CBOR that KACHING's deterministic encoding never produces
    /// (indefinite lengths, bytes after the item). The caller's canonical
    /// check would refuse it anyway; this says so without building a value.
    NotCanonical(&'static str),
}

const TRUNCATED: DecodeError = DecodeError::Malformed("truncated: a length runs past the end");

/// Decodes exactly one CBOR item spanning all of `bytes`. Indefinite lengths,
/// reserved encodings and trailing bytes are refused; nesting is limited to
/// `limit` levels; no length is trusted beyond the bytes actually present.
pub(crate) fn decode(bytes: &[u8], limit: usize) -> Result<Value, DecodeError> {
    let mut d = Decoder { rest: bytes };
    let v = d.value(limit)?;
    if !d.rest.is_empty() {
        return Err(DecodeError::NotCanonical("bytes follow the CBOR item"));
    }
    Ok(v)
}

struct Decoder<'a> {
    /// The bytes not read yet.
    rest: &'a [u8],
}

impl<'a> Decoder<'a> {
    #[inline]
    fn take(&mut self, n: u64) -> Result<&'a [u8], DecodeError> {
        let n = usize::try_from(n).map_err(|_| TRUNCATED)?;
        if n > self.rest.len() {
            return Err(TRUNCATED);
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(taken)
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let (taken, rest) = self.rest.split_first_chunk::<N>().ok_or(TRUNCATED)?;
        self.rest = rest;
        Ok(*taken)
    }

    #[inline]
    fn arg(&mut self, info: u8) -> Result<u64, DecodeError> {
        Ok(match info {
            0..=23 => u64::from(info),
            24 => u64::from(self.array::<1>()?[0]),
            25 => u64::from(u16::from_be_bytes(self.array()?)),
            26 => u64::from(u32::from_be_bytes(self.array()?)),
            27 => u64::from_be_bytes(self.array()?),
            31 => return Err(DecodeError::NotCanonical("indefinite-length item")),
            _ => return Err(DecodeError::Malformed("reserved additional information")),
        })
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        let [initial] = self.array::<1>()?;
        let (major, info) = (initial >> 5, initial & 0x1f);
        if major == 7 {
            return self.simple(info);
        }
        let n = self.arg(info)?;
        let nested = |depth: usize| {
            depth
                .checked_sub(1)
                .ok_or(DecodeError::Malformed("nested too deeply"))
        };
        Ok(match major {
            0 => Value::Integer(Integer::from(n)),
            1 => Value::Integer(
                Integer::try_from(-1 - i128::from(n))
                    .map_err(|_| DecodeError::Malformed("integer out of range"))?,
            ),
            2 => Value::Bytes(self.take(n)?.to_vec()),
            3 => Value::Text(
                std::str::from_utf8(self.take(n)?)
                    .map_err(|_| DecodeError::Malformed("text is not UTF-8"))?
                    .to_owned(),
            ),
            4 => {
                let inner = nested(depth)?;
                // Every item takes at least one byte: never reserve more.
                let mut items = Vec::with_capacity(self.bounded(n, 1));
                for _ in 0..n {
                    items.push(self.value(inner)?);
                }
                Value::Array(items)
            }
            5 => {
                let inner = nested(depth)?;
                let mut entries = Vec::with_capacity(self.bounded(n, 2));
                for _ in 0..n {
                    let k = self.value(inner)?;
                    entries.push((k, self.value(inner)?));
                }
                Value::Map(entries)
            }
            // major is 6: three bits, 0..=5 and 7 handled above.
            _ => Value::Tag(n, Box::new(self.value(nested(depth)?)?)),
        })
    }

    /// A capacity for `n` items of at least `min` bytes each that the
    /// remaining input could hold.
    fn bounded(&self, n: u64, min: usize) -> usize {
        usize::try_from(n)
            .unwrap_or(usize::MAX)
            .min(self.rest.len() / min)
    }

    fn simple(&mut self, info: u8) -> Result<Value, DecodeError> {
        Ok(match info {
            20 => Value::Bool(false),
            21 => Value::Bool(true),
            22 => Value::Null,
            25 => Value::Float(half(u16::from_be_bytes(self.array()?))),
            26 => Value::Float(f64::from(f32::from_be_bytes(self.array()?))),
            27 => Value::Float(f64::from_be_bytes(self.array()?)),
            31 => return Err(DecodeError::Malformed("unexpected break")),
            _ => return Err(DecodeError::Malformed("unsupported simple value")),
        })
    }
}

/// IEEE 754 half precision to f64 (exact).
fn half(h: u16) -> f64 {
    let exp = i32::from((h >> 10) & 0x1f);
    let mant = f64::from(h & 0x3ff);
    let magnitude = match exp {
        0 => mant * 2f64.powi(-24),
        31 if mant == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => (mant + 1024.0) * 2f64.powi(exp - 25),
    };
    if h & 0x8000 != 0 {
        -magnitude
    } else {
        magnitude
    }
}
