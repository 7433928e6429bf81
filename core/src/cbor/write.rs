//! Writes claim maps straight into bytes, without building a `Value` tree.
//!
//! The caller writes keys in deterministic order (RFC 8949 §4.2.1: by their
//! encoded bytes); the strict reader refuses anything else, so every
//! encode→decode round trip test also proves the writer's key order.

use std::cmp::Ordering;

use super::codec::{head, head_bytes};

/// Deterministic CBOR under construction.
pub(crate) struct Writer(Vec<u8>);

fn len64(n: usize) -> u64 {
    // usize is at most 64 bits on every supported target.
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl Writer {
    /// A head in its shortest form; most heads here are one byte.
    #[inline]
    fn head(&mut self, major: u8, n: u64) {
        if n < 24 {
            self.0.push(major << 5 | n as u8);
        } else {
            head(&mut self.0, major, n);
        }
    }

    pub(crate) fn with_capacity(n: usize) -> Self {
        Writer(Vec::with_capacity(n))
    }

    pub(crate) fn into_vec(self) -> Vec<u8> {
        self.0
    }

    /// A map head for `n` entries.
    pub(crate) fn map(&mut self, n: usize) -> &mut Self {
        self.head(5, len64(n));
        self
    }

    /// An array head for `n` items.
    pub(crate) fn array(&mut self, n: usize) -> &mut Self {
        self.head(4, len64(n));
        self
    }

    /// An integer (a CWT claim key).
    pub(crate) fn int(&mut self, n: i64) -> &mut Self {
        match u64::try_from(n) {
            Ok(p) => self.head(0, p),
            // −1 − n ≥ 0 for every negative i64.
            Err(_) => self.head(1, (-1 - n).unsigned_abs()),
        }
        self
    }

    /// An unsigned integer.
    pub(crate) fn uint(&mut self, n: u64) -> &mut Self {
        self.head(0, n);
        self
    }

    /// A text string (a value, or a text key).
    pub(crate) fn text(&mut self, t: &str) -> &mut Self {
        self.head(3, len64(t.len()));
        self.0.extend_from_slice(t.as_bytes());
        self
    }

    /// A byte string.
    pub(crate) fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.head(2, len64(b.len()));
        self.0.extend_from_slice(b);
        self
    }
}

/// The deterministic order of two text keys: by their encoded bytes, that is
/// the shorter first, then bytewise.
pub(crate) fn text_key_cmp(a: &str, b: &str) -> Ordering {
    if a.len() == b.len() {
        return a.as_bytes().cmp(b.as_bytes());
    }
    // Different lengths give different heads, and no head is a proper prefix
    // of another, so the heads alone decide.
    let (ha, la) = head_bytes(3, len64(a.len()));
    let (hb, lb) = head_bytes(3, len64(b.len()));
    ha[..la].cmp(&hb[..lb])
}

/// Calls `f` on each item in deterministic key order. Names from a
/// `BTreeMap` are usually in that order already (lengths ascending), and then
/// nothing is collected or sorted.
pub(crate) fn for_each_in_key_order<'a, T>(
    items: impl Iterator<Item = (&'a str, T)> + Clone,
    mut f: impl FnMut(&'a str, T),
) {
    let mut names = items.clone().map(|(n, _)| n);
    let mut sorted = true;
    if let Some(mut prev) = names.next() {
        for n in names {
            if text_key_cmp(prev, n) != Ordering::Less {
                sorted = false;
                break;
            }
            prev = n;
        }
    }
    if sorted {
        items.for_each(|(n, t)| f(n, t));
    } else {
        let mut v: Vec<_> = items.collect();
        v.sort_by(|a, b| text_key_cmp(a.0, b.0));
        v.into_iter().for_each(|(n, t)| f(n, t));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ciborium::value::Value;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        #[test]
        fn text_key_order_is_encoded_byte_order(a in ".{0,30}", b in ".{0,30}") {
            let enc = |s: &str| super::super::to_vec(&Value::Text(s.into()));
            prop_assert_eq!(text_key_cmp(&a, &b), enc(&a).cmp(&enc(&b)));
        }

        #[test]
        fn items_come_in_key_order(names in proptest::collection::btree_set(".{0,30}", 0..8)) {
            let map: BTreeMap<&str, usize> = names.iter().map(|n| (n.as_str(), n.len())).collect();
            let mut seen = Vec::new();
            for_each_in_key_order(map.iter().map(|(n, l)| (*n, *l)), |n, l| seen.push((n, l)));
            let mut expected: Vec<_> = map.iter().map(|(n, l)| (*n, *l)).collect();
            expected.sort_by(|a, b| text_key_cmp(a.0, b.0));
            prop_assert_eq!(seen, expected);
        }

        #[test]
        fn writer_matches_value_encoding(n in any::<u64>(), i in any::<i64>(), t in ".{0,40}",
                                         b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut w = Writer::with_capacity(0);
            w.array(4).uint(n).int(i).text(&t).bytes(&b);
            let v = Value::Array(vec![
                Value::Integer(n.into()),
                Value::Integer(i.into()),
                Value::Text(t.clone()),
                Value::Bytes(b.clone()),
            ]);
            prop_assert_eq!(w.into_vec(), super::super::to_vec(&v));
        }
    }
}
