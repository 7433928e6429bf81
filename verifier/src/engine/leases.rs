//! The node leases held in memory: node id → expiry, plus a count of leases
//! by expiry, so "how many are live now" and "has any expired" cost a few
//! map steps, not a pass over every lease (a cluster may hold 100k).

use std::collections::{BTreeMap, HashMap};

use kaching_core::time::Timestamp;

/// Node leases with their expiries, indexed by expiry.
#[derive(Debug, Default, Clone)]
pub struct Leases {
    by_node: HashMap<String, Timestamp>,
    /// How many leases end at each second.
    by_expiry: BTreeMap<Timestamp, u32>,
}

impl Leases {
    /// The leases read from the state database.
    pub fn from_map(by_node: HashMap<String, Timestamp>) -> Leases {
        let mut by_expiry = BTreeMap::new();
        for &e in by_node.values() {
            *by_expiry.entry(e).or_insert(0) += 1;
        }
        Leases { by_node, by_expiry }
    }

    /// The expiry of `node`'s lease, live or not yet culled.
    pub fn get(&self, node: &str) -> Option<Timestamp> {
        self.by_node.get(node).copied()
    }

    /// Takes or renews `node`'s lease until `expires`.
    pub fn insert(&mut self, node: &str, expires: Timestamp) {
        if let Some(old) = self.by_node.insert(node.to_string(), expires) {
            self.forget_expiry(old);
        }
        *self.by_expiry.entry(expires).or_insert(0) += 1;
    }

    /// Gives `node`'s lease back; its expiry when it had one.
    pub fn remove(&mut self, node: &str) -> Option<Timestamp> {
        let old = self.by_node.remove(node)?;
        self.forget_expiry(old);
        Some(old)
    }

    fn forget_expiry(&mut self, e: Timestamp) {
        if let Some(n) = self.by_expiry.get_mut(&e) {
            *n -= 1;
            if *n == 0 {
                self.by_expiry.remove(&e);
            }
        }
    }

    /// Leases still live at `now` (expiry after `now`).
    pub fn live(&self, now: Timestamp) -> u64 {
        let expired: u64 = self
            .by_expiry
            .range(..=now)
            .map(|(_, &n)| u64::from(n))
            .sum();
        (self.by_node.len() as u64).saturating_sub(expired)
    }

    /// Whether any lease has expired at `now` (and is not yet culled).
    pub fn any_expired(&self, now: Timestamp) -> bool {
        self.by_expiry.keys().next().is_some_and(|&e| e <= now)
    }

    /// Drops the leases expired at `now`.
    pub fn cull(&mut self, now: Timestamp) {
        self.by_node.retain(|_, e| *e > now);
        self.by_expiry = self.by_expiry.split_off(&now.saturating_add(1));
    }

    /// Every lease, live or not yet culled.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Timestamp)> {
        self.by_node.iter()
    }

    /// The `n` live leases at `now` that end soonest (then by node id):
    /// the expiry index finds the last expiry among them, one pass keeps
    /// the leases up to it. No string is copied but the `n` returned.
    pub fn soonest(&self, now: Timestamp, n: usize) -> Vec<(String, Timestamp)> {
        let mut counted = 0usize;
        let mut last = None;
        for (&e, &k) in self.by_expiry.range(now.saturating_add(1)..) {
            counted += k as usize;
            last = Some(e);
            if counted >= n {
                break;
            }
        }
        let Some(last) = last else {
            return Vec::new();
        };
        let mut out: Vec<(&String, Timestamp)> = self
            .by_node
            .iter()
            .filter(|(_, &e)| e > now && e <= last)
            .map(|(node, &e)| (node, e))
            .collect();
        out.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(b.0)));
        out.truncate(n);
        out.into_iter().map(|(node, e)| (node.clone(), e)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_count_follows_inserts_renewals_removals_and_expiry() {
        let mut l = Leases::from_map(HashMap::from([("a".into(), 10), ("b".into(), 20)]));
        assert_eq!((l.live(5), l.live(10), l.live(20)), (2, 1, 0));
        l.insert("a", 30); // renewal moves its expiry
        assert_eq!((l.live(15), l.live(25)), (2, 1));
        l.insert("c", 30);
        assert_eq!(l.live(25), 2);
        assert_eq!(l.remove("c"), Some(30));
        assert_eq!(l.remove("c"), None);
        assert!(!l.any_expired(19) && l.any_expired(20));
        l.cull(20);
        assert_eq!(l.get("b"), None);
        assert_eq!((l.live(20), l.live(30)), (1, 0));
        assert!(!l.any_expired(29));
    }

    #[test]
    fn the_soonest_to_end_are_found_through_the_expiry_index() {
        let l = Leases::from_map(HashMap::from([
            ("gone".into(), 5),
            ("c".into(), 20),
            ("b".into(), 20),
            ("a".into(), 30),
            ("z".into(), 12),
        ]));
        let ids = |v: Vec<(String, Timestamp)>| v.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        assert_eq!(
            ids(l.soonest(10, 3)),
            ["z", "b", "c"],
            "the expired left out, ties by id"
        );
        assert_eq!(ids(l.soonest(10, 2)), ["z", "b"]);
        assert_eq!(ids(l.soonest(10, 9)), ["z", "b", "c", "a"]);
        assert!(l.soonest(30, 5).is_empty());
        assert!(l.soonest(10, 0).is_empty());
    }
}
