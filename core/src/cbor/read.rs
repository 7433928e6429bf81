//! A strict streaming reader for claim maps: reads each claim straight from
//! the received bytes, without building a `Value` tree.
//!
//! It accepts only KACHING's deterministic encoding: definite lengths,
//! shortest-form heads, map keys in strictly ascending byte order, nothing
//! after the item. Callers know the shape they expect, so a value of another
//! type is refused on sight and nothing unknown ever has to be skipped.

use crate::error::{Error, Result};

/// A map key, as far as a claims decoder cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key<'a> {
    /// An integer key that fits in `i64` (CWT claims).
    Int(i64),
    /// A text key, as its raw (not yet UTF-8 checked) bytes.
    Text(&'a [u8]),
    /// Any other key: an integer beyond `i64`, or another type.
    Other(Option<i128>),
}

/// Reads one CBOR item from borrowed bytes.
pub(crate) struct Reader<'a> {
    /// The bytes not read yet.
    rest: &'a [u8],
}

/// A map being read key by key; [`Reader::key`] enforces the key order.
pub(crate) struct MapCursor<'a> {
    /// What the map is, for error messages ("license", "limits").
    what: &'static str,
    /// Entries not read yet.
    left: u64,
    /// The encoded bytes of the previous key: the next one must sort after it.
    prev: &'a [u8],
}

#[cold]
fn malformed(m: &str) -> Error {
    Error::Payload(format!("not CBOR: {m}"))
}

#[cold]
fn not_canonical(m: &str) -> Error {
    Error::Payload(format!("not in canonical encoding: {m}"))
}

/// Error for a value of the wrong type: "{name} must be {kind}".
#[cold]
fn wrong(name: &str, kind: &str) -> Error {
    Error::Payload(format!("{name} must be {kind}"))
}

#[cold]
fn truncated() -> Error {
    malformed("truncated: a length runs past the end")
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    /// Refuses bytes after the item.
    pub(crate) fn end(self) -> Result<()> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(not_canonical("bytes follow the CBOR item"))
        }
    }

    #[inline]
    fn take(&mut self, n: u64) -> Result<&'a [u8]> {
        let n = usize::try_from(n).map_err(|_| truncated())?;
        if n > self.rest.len() {
            return Err(truncated());
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(taken)
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let (taken, rest) = self.rest.split_first_chunk::<N>().ok_or_else(truncated)?;
        self.rest = rest;
        Ok(*taken)
    }

    /// Reads a head: (major type, argument). Major type 7 (simple values and
    /// floats) comes back as (7, additional information) for the caller to
    /// refuse as the wrong type; no KACHING claim is a simple value.
    #[inline]
    fn head(&mut self) -> Result<(u8, u64)> {
        // Most heads are one byte (small integers, short strings, maps).
        match self.rest.split_first() {
            Some((&initial, rest)) if initial & 0x1f < 24 => {
                self.rest = rest;
                Ok((initial >> 5, u64::from(initial & 0x1f)))
            }
            _ => self.long_head(),
        }
    }

    /// A head with a following argument, or anything unusual.
    fn long_head(&mut self) -> Result<(u8, u64)> {
        let [initial] = self.array::<1>()?;
        let (major, info) = (initial >> 5, initial & 0x1f);
        if major == 7 {
            return Ok((7, u64::from(info)));
        }
        let (n, shortest) = match info {
            0..=23 => return Ok((major, u64::from(info))),
            24 => {
                let n = u64::from(self.array::<1>()?[0]);
                (n, n >= 24)
            }
            25 => {
                let n = u64::from(u16::from_be_bytes(self.array()?));
                (n, n > 0xff)
            }
            26 => {
                let n = u64::from(u32::from_be_bytes(self.array()?));
                (n, n > 0xffff)
            }
            27 => {
                let n = u64::from_be_bytes(self.array()?);
                (n, n > 0xffff_ffff)
            }
            31 => return Err(not_canonical("indefinite-length item")),
            _ => return Err(malformed("reserved additional information")),
        };
        if !shortest {
            return Err(not_canonical(
                "an integer or length is not in its shortest form",
            ));
        }
        Ok((major, n))
    }

    /// Reads an unsigned integer.
    #[inline]
    pub(crate) fn uint(&mut self, name: &str) -> Result<u64> {
        match self.head()? {
            (0, n) => Ok(n),
            (1, _) => Err(wrong(name, "a non-negative integer")),
            _ => Err(wrong(name, "an integer")),
        }
    }

    /// Reads an unsigned integer that fits in `u32`.
    pub(crate) fn uint32(&mut self, name: &str) -> Result<u32> {
        u32::try_from(self.uint(name)?).map_err(|_| Error::Payload(format!("{name} is too large")))
    }

    /// Reads a text string, borrowed from the input.
    // Always inlined, like `key`: a license has a dozen texts and 36 keys,
    // and the calls cost more than their bodies (docs/benchmarks.md, `verify`).
    #[inline(always)]
    pub(crate) fn text(&mut self, name: &str) -> Result<&'a str> {
        match self.head()? {
            (3, n) => {
                std::str::from_utf8(self.take(n)?).map_err(|_| malformed("text is not UTF-8"))
            }
            _ => Err(wrong(name, "a text string")),
        }
    }

    /// Reads a byte string of exactly `N` bytes.
    pub(crate) fn bytes_n<const N: usize>(&mut self, name: &str) -> Result<[u8; N]> {
        match self.head()? {
            (2, n) => self
                .take(n)?
                .try_into()
                .map_err(|_| Error::Payload(format!("{name} must be {N} bytes"))),
            _ => Err(wrong(name, "a byte string")),
        }
    }

    /// Reads an array head: the number of items, at most one per byte left.
    pub(crate) fn array_len(&mut self, name: &str) -> Result<usize> {
        match self.head()? {
            (4, n) => {
                let n = usize::try_from(n).map_err(|_| truncated())?;
                // Every item takes at least one byte.
                if n > self.rest.len() {
                    return Err(truncated());
                }
                Ok(n)
            }
            _ => Err(wrong(name, "an array")),
        }
    }

    /// Opens a map; read its entries with [`Reader::key`] and a value read each.
    pub(crate) fn map(&mut self, what: &'static str) -> Result<MapCursor<'a>> {
        match self.head()? {
            (5, left) => Ok(MapCursor {
                what,
                left,
                prev: &[],
            }),
            _ => Err(wrong(what, "a CBOR map")),
        }
    }

    /// The next key of `map`, or `None` after the last entry. A key that does
    /// not sort after the previous one is refused.
    #[inline(always)]
    pub(crate) fn key(&mut self, map: &mut MapCursor<'a>) -> Result<Option<Key<'a>>> {
        if map.left == 0 {
            return Ok(None);
        }
        map.left -= 1;
        let start = self.rest;
        let key = match start.first() {
            // Every key KACHING writes is a small integer or a short text:
            // one head byte, read without the general head decoder.
            Some(&b @ 0x00..=0x17) => {
                self.rest = &start[1..];
                Key::Int(i64::from(b))
            }
            Some(&b @ 0x60..=0x77) => {
                let len = usize::from(b & 0x1f);
                let text = start.get(1..=len).ok_or_else(truncated)?;
                self.rest = &start[len + 1..];
                Key::Text(text)
            }
            _ => match self.head()? {
                (0, n) => i64::try_from(n).map_or(Key::Other(Some(i128::from(n))), Key::Int),
                (1, n) => i64::try_from(n)
                    .map_or(Key::Other(Some(-1 - i128::from(n))), |n| Key::Int(-1 - n)),
                (3, n) => Key::Text(self.take(n)?),
                // Not a claim name of any kind: refused by the caller as
                // unknown, so its extent never matters.
                _ => return Ok(Some(Key::Other(None))),
            },
        };
        let raw = &start[..start.len() - self.rest.len()];
        // Keys of one map mostly differ in their first byte (type and
        // length): decide those without a full slice comparison.
        let ascending = match (raw.first(), map.prev.first()) {
            (Some(a), Some(b)) if a != b => a > b,
            _ => raw > map.prev,
        };
        if !ascending {
            return Err(map.out_of_order(raw));
        }
        map.prev = raw;
        Ok(Some(key))
    }
}

impl MapCursor<'_> {
    /// Error for a key that does not sort after the previous one: equal is a
    /// duplicate, lower is an unsorted map.
    #[cold]
    fn out_of_order(&self, raw: &[u8]) -> Error {
        if raw == self.prev {
            Error::Payload(format!("{} has a duplicate key", self.what))
        } else {
            Error::Payload(format!(
                "{} is not in canonical encoding: its keys are not sorted",
                self.what
            ))
        }
    }

    /// Error for a key the caller does not know: an unknown claim may be a
    /// restriction this verifier does not understand, so it fails closed.
    pub(crate) fn unknown(&self, key: Key<'_>) -> Error {
        let described = match key {
            Key::Int(n) => n.to_string(),
            Key::Other(Some(n)) => n.to_string(),
            Key::Text(t) => match std::str::from_utf8(t) {
                Ok(t) => format!("{t:?}"),
                Err(_) => return malformed("text is not UTF-8"),
            },
            Key::Other(None) => "of a non-text, non-integer type".into(),
        };
        Error::Payload(format!("{} has unknown claim {described}", self.what))
    }

    /// Error for a missing required claim.
    pub(crate) fn missing(&self, name: &str) -> Error {
        Error::Payload(format!("{} is missing {name}", self.what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload_err(r: Result<impl std::fmt::Debug>) -> String {
        match r {
            Err(Error::Payload(m)) => m,
            other => panic!("expected a payload error, got {other:?}"),
        }
    }

    #[test]
    fn non_shortest_heads_refused() {
        for bytes in [
            &[0x18, 0x05][..],
            &[0x19, 0x00, 0xff],
            &[0x1a, 0x00, 0x00, 0xff, 0xff],
            &[0x1b, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff],
        ] {
            let m = payload_err(Reader::new(bytes).uint("n"));
            assert!(m.contains("canonical"), "{m}");
        }
        assert_eq!(Reader::new(&[0x18, 24]).uint("n").ok(), Some(24));
    }

    #[test]
    fn keys_must_ascend_strictly() {
        // {"a": 0, "a": 0} and {"b": 0, "a": 0}
        for (bytes, word) in [
            (&[0xa2, 0x61, b'a', 0x00, 0x61, b'a', 0x00], "duplicate"),
            (&[0xa2, 0x61, b'b', 0x00, 0x61, b'a', 0x00], "canonical"),
        ] {
            let mut r = Reader::new(bytes);
            let mut m = r.map("t").expect("map");
            let first = r.key(&mut m).expect("first key");
            assert!(matches!(first, Some(Key::Text(_))));
            r.uint("v").expect("value");
            let m = payload_err(r.key(&mut m));
            assert!(m.contains(word), "{m}");
        }
    }

    #[test]
    fn indefinite_lengths_and_trailing_bytes_refused() {
        let m = payload_err(Reader::new(&[0xbf, 0xff]).map("t").map(|_| ()));
        assert!(m.contains("canonical"), "{m}");
        let mut r = Reader::new(&[0x00, 0x00]);
        r.uint("n").expect("one item");
        assert!(payload_err(r.end()).contains("canonical"));
    }

    #[test]
    fn wrong_types_and_truncation_refused() {
        assert!(payload_err(Reader::new(&[0x61, b'a']).uint("n")).contains("integer"));
        assert!(payload_err(Reader::new(&[0x20]).uint("n")).contains("non-negative"));
        assert!(payload_err(Reader::new(&[0x05]).text("t")).contains("text string"));
        assert!(payload_err(Reader::new(&[0x62, b'a']).text("t")).contains("truncated"));
        assert!(payload_err(Reader::new(&[0x61, 0xff]).text("t")).contains("UTF-8"));
        assert!(payload_err(Reader::new(&[0x41, 0]).bytes_n::<2>("b")).contains("2 bytes"));
        assert!(payload_err(
            Reader::new(&[0x9b, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]).array_len("a")
        )
        .contains("truncated"));
        assert!(payload_err(Reader::new(&[0xf6]).uint("n")).contains("integer"));
    }
}
