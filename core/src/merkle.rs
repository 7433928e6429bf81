//! A Merkle tree hash over a list of items (RFC 6962 §2.1): the relay
//! audits its heartbeats as one root over their hashes per minute, so the
//! audit log grows with time, not heartbeats, yet still commits to every
//! heartbeat in order (docs/relay.md, "Audit log").
//!
//! The relay does not keep the leaves: a [`Frontier`] (at most 64 hashes)
//! gathers them across commits and is sealed into one audit row a minute
//! ([`seal_due`]).
//!
//! Leaves and inner nodes are hashed with different one-byte prefixes
//! (`0x00`, `0x01`), so an inner node can never pass for a leaf.

use sha2::{Digest, Sha256};

use crate::heartbeat::Heartbeat;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The hash of one item: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// The hash of an inner node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root over `leaves` (already leaf hashes), in order: the hash of the
/// empty string for none, the leaf itself for one, else the node over the
/// largest power-of-two prefix and the rest (RFC 6962 `MTH`).
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The largest power of two below `n` (`n` ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// A tree being built one leaf at a time without keeping the leaves: the
/// roots of its perfect subtrees, largest first (one per set bit of the
/// leaf count), so it takes at most 64 hashes and gives the same root as
/// [`root`] over every leaf pushed. The relay keeps one between audit rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    count: u64,
    nodes: Vec<Hash>,
}

impl Frontier {
    /// No leaves yet.
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// Leaves pushed.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Adds the next leaf (already a leaf hash).
    pub fn push(&mut self, leaf: Hash) {
        let mut carry = leaf;
        let mut n = self.count;
        // Each trailing 1 bit is a subtree of the size being carried: merge.
        while n & 1 == 1 {
            if let Some(left) = self.nodes.pop() {
                carry = node_hash(&left, &carry);
            }
            n >>= 1;
        }
        self.nodes.push(carry);
        self.count += 1;
    }

    /// The root over every leaf pushed (RFC 6962 `MTH`).
    pub fn root(&self) -> Hash {
        let mut it = self.nodes.iter().rev();
        match it.next() {
            None => root(&[]),
            Some(last) => it.fold(*last, |acc, left| node_hash(left, &acc)),
        }
    }

    /// Stored form: the count (8 bytes, big-endian), then the subtree roots.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.count.to_be_bytes().to_vec();
        for n in &self.nodes {
            out.extend_from_slice(n);
        }
        out
    }

    /// Reads the stored form; `None` when it is not one.
    pub fn from_bytes(bytes: &[u8]) -> Option<Frontier> {
        let (count, rest) = bytes.split_first_chunk::<8>()?;
        let count = u64::from_be_bytes(*count);
        if rest.len() % 32 != 0 || rest.len() / 32 != count.count_ones() as usize {
            return None;
        }
        let nodes = rest
            .chunks_exact(32)
            .map(|c| <Hash>::try_from(c).ok())
            .collect::<Option<Vec<_>>>()?;
        Some(Frontier { count, nodes })
    }
}

/// Seconds a relay gathers heartbeat leaves before it seals them into one
/// audit row: the audit log grows by about one row a minute, whatever the
/// heartbeat rate.
pub const SEAL_EVERY: u64 = 60;

/// Whether leaves gathered since `since` are sealed at `now`: a minute on,
/// or at once when `force`d (at start, sealing what a crash left).
pub fn seal_due(since: u64, now: u64, force: bool) -> bool {
    force || now >= since.saturating_add(SEAL_EVERY)
}

/// A heartbeat's leaf: the hash of its signed payload (deterministic CBOR),
/// so anyone holding the heartbeat can recompute it.
pub fn heartbeat_leaf(hb: &Heartbeat) -> Hash {
    leaf_hash(&hb.to_cbor())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::hex;

    /// RFC 6962's reference leaves (certificate-transparency's test data).
    fn reference_leaves() -> Vec<Hash> {
        let inputs: [&[u8]; 8] = [
            b"",
            b"\x00",
            b"\x10",
            b"\x20\x21",
            b"\x30\x31",
            b"\x40\x41\x42\x43",
            b"\x50\x51\x52\x53\x54\x55\x56\x57",
            b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
        ];
        inputs.iter().map(|d| leaf_hash(d)).collect()
    }

    #[test]
    fn roots_match_the_rfc_6962_reference_values() {
        let leaves = reference_leaves();
        assert_eq!(
            hex(&root(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(&root(&leaves[..1])),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        assert_eq!(
            hex(&root(&leaves[..3])),
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"
        );
        assert_eq!(
            hex(&root(&leaves)),
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
        );
    }

    /// The root commits to every leaf and to their order: changing,
    /// dropping, adding or swapping one heartbeat changes it.
    #[test]
    fn any_change_to_the_batch_changes_the_root() {
        let leaves = reference_leaves();
        let r = root(&leaves);
        let mut edited = leaves.clone();
        edited[5] = leaf_hash(b"edited");
        assert_ne!(root(&edited), r);
        assert_ne!(root(&leaves[..7]), r);
        let mut more = leaves.clone();
        more.push(leaf_hash(b"extra"));
        assert_ne!(root(&more), r);
        let mut swapped = leaves.clone();
        swapped.swap(2, 3);
        assert_ne!(root(&swapped), r);
    }

    /// Built one leaf at a time, the frontier gives the root over all the
    /// leaves at every size, and survives its stored form.
    #[test]
    fn the_frontier_matches_the_full_root_at_every_size() {
        let leaves: Vec<Hash> = (0..70u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut f = Frontier::new();
        assert_eq!(f.root(), root(&[]));
        for (i, l) in leaves.iter().enumerate() {
            f.push(*l);
            assert_eq!(f.count(), i as u64 + 1);
            assert_eq!(f.root(), root(&leaves[..=i]), "after {} leaves", i + 1);
            assert_eq!(Frontier::from_bytes(&f.to_bytes()), Some(f.clone()));
        }
        assert_eq!(Frontier::from_bytes(&[0; 7]), None);
        assert_eq!(Frontier::from_bytes(&f.to_bytes()[..40]), None);
    }

    #[test]
    fn leaves_are_sealed_a_minute_on_or_when_forced() {
        assert!(!seal_due(1_000, 1_059, false));
        assert!(seal_due(1_000, 1_060, false));
        assert!(seal_due(1_000, 1_000, true));
        assert!(seal_due(u64::MAX, u64::MAX, false), "no overflow");
    }

    /// An inner node presented as a leaf does not give the same root
    /// (second preimage across levels).
    #[test]
    fn an_inner_node_cannot_pass_for_a_leaf() {
        let leaves = reference_leaves();
        let inner = node_hash(&leaves[0], &leaves[1]);
        assert_eq!(root(&leaves[..2]), inner);
        assert_ne!(
            leaf_hash(&[&[1u8][..], &leaves[0], &leaves[1]].concat()),
            inner
        );
    }
}
