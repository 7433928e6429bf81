//! Parsed cluster keys, so that a heartbeat does not pay for decompressing
//! its signer's curve point again (~5 µs, docs/benchmarks.md).
//!
//! The cache maps a key's raw 32 bytes to what [`PublicKey::from_bytes`]
//! made of exactly those bytes: derived data of the bytes the request
//! carries, never a decision. Whether that key is the one bound to the
//! cluster is still the writer's comparison of bytes on every heartbeat, so
//! a re-activation with another key, a deactivation, or another replica's
//! write on a shared PostgreSQL database can never be answered from here.
//!
//! Only keys the relay has accepted are remembered (after an activation or
//! a recorded heartbeat): anyone can sign with a fresh key, and such
//! requests must not push the bound clusters' keys out. Memory is bounded
//! by two generations of at most [`KeyCache::CAPACITY`] / 2 keys each: a key
//! used in the older one moves to the newer; when the newer is full, the
//! older is emptied and becomes the newer. Each generation's table is
//! allocated once at its full size and reused, never grown: growing tables
//! of this size left freed copies in the heap (relay RSS 198 MiB instead of
//! 79 MiB at 100k clusters in the first version; 112 MiB now).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use kaching_core::PublicKey;

/// Parsed keys by their bytes.
pub struct KeyCache {
    gens: Mutex<Generations>,
    half: usize,
}

#[derive(Default)]
struct Generations {
    new: HashMap<[u8; 32], PublicKey>,
    old: HashMap<[u8; 32], PublicKey>,
}

impl Default for KeyCache {
    fn default() -> Self {
        Self::with_capacity(Self::CAPACITY)
    }
}

impl KeyCache {
    /// Keys held at most: two tables of 65 536 slots of ~233 bytes, ~30
    /// MiB when full (a generation's 57 344 keys are 7/8 of its slots, the
    /// most a table holds without growing); a relay with more live clusters
    /// than this decompresses some keys again.
    pub const CAPACITY: usize = 114_688;

    /// A cache of at most `capacity` keys (at least 2).
    pub fn with_capacity(capacity: usize) -> Self {
        KeyCache {
            gens: Mutex::default(),
            half: (capacity / 2).max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        // A panic elsewhere cannot leave a map holding a wrong key: every
        // entry is inserted whole.
        self.gens.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// [`PublicKey::from_bytes`] of `raw`, from the cache when these exact
    /// bytes were remembered (a [`kaching_core::envelope::KeyParser`]).
    pub fn parse(&self, raw: &[u8]) -> kaching_core::Result<PublicKey> {
        if let Ok(bytes) = <&[u8; 32]>::try_from(raw) {
            let mut g = self.lock();
            if let Some(k) = g.new.get(bytes) {
                return Ok(k.clone());
            }
            if let Some(k) = g.old.remove(bytes) {
                g.insert(*bytes, k.clone(), self.half);
                return Ok(k);
            }
        }
        PublicKey::from_bytes(raw)
    }

    /// Remembers a key the relay accepted (bound at activation, or the
    /// signer of a recorded heartbeat).
    pub fn remember(&self, key: &PublicKey) {
        let mut g = self.lock();
        if !g.new.contains_key(key.as_bytes()) {
            g.old.remove(key.as_bytes());
            g.insert(*key.as_bytes(), key.clone(), self.half);
        }
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        let g = self.lock();
        g.new.len() + g.old.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Generations {
    fn insert(&mut self, bytes: [u8; 32], key: PublicKey, half: usize) {
        if self.new.len() >= half {
            // The older table, emptied, is the newer one: no allocation.
            std::mem::swap(&mut self.old, &mut self.new);
            self.new.clear();
        }
        if self.new.capacity() < half {
            // Once per table: its full size at once, so it never grows.
            self.new.reserve(half - self.new.len());
        }
        self.new.insert(bytes, key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kaching_core::SecretKey;

    fn key(i: u32) -> PublicKey {
        let mut seed = [7u8; 32];
        seed[..4].copy_from_slice(&i.to_be_bytes());
        SecretKey::from_seed(&seed).public()
    }

    #[test]
    fn answers_exactly_what_from_bytes_gives_for_the_same_bytes() {
        let cache = KeyCache::with_capacity(8);
        let (a, b) = (key(1), key(2));
        cache.remember(&a);
        assert_eq!(cache.parse(a.as_bytes()).unwrap(), a);
        // Bytes never remembered are parsed, not matched to a held key.
        assert_eq!(cache.parse(b.as_bytes()).unwrap(), b);
        // Wrong lengths and weak points are refused as from_bytes refuses them.
        assert!(cache.parse(&a.as_bytes()[..31]).is_err());
        let identity = {
            let mut p = [0u8; 32];
            p[0] = 1;
            p
        };
        assert!(cache.parse(&identity).is_err());
    }

    #[test]
    fn holds_at_most_its_capacity_and_keeps_keys_in_use() {
        let cache = KeyCache::with_capacity(100);
        let hot = key(0);
        cache.remember(&hot);
        for i in 1..1000 {
            cache.remember(&key(i));
            // The hot key is used between every two new ones.
            assert_eq!(cache.parse(hot.as_bytes()).unwrap(), hot);
            assert!(cache.len() <= 100, "{} keys held", cache.len());
        }
        let g = cache.lock();
        assert!(g.new.contains_key(hot.as_bytes()) || g.old.contains_key(hot.as_bytes()));
    }

    #[test]
    fn tables_are_allocated_once_and_never_grow() {
        let cache = KeyCache::with_capacity(200);
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..2000 {
            cache.remember(&key(i));
            let g = cache.lock();
            seen.insert(g.new.capacity().max(g.old.capacity()));
        }
        // One size for both tables from the first key on (the hash map's
        // rounding of 100 slots), never a second.
        assert_eq!(seen.len(), 1, "table sizes seen: {seen:?}");
    }
}
