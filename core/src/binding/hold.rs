//! A cluster's hold on a license, and the moment it lapses: silence counted
//! only while the relay was serving.

use crate::time::Timestamp;

/// A cluster's hold on a license, as the relay recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    /// Relay time of the holder's last accepted contact (activation or heartbeat).
    pub last_seen: Timestamp,
    /// Seconds of silence after which the hold lapses (the license's offline grace).
    pub offline_grace: u64,
}

impl Hold {
    /// The relay time at which this hold lapses, given that the relay has
    /// been serving without a break since `serving_since`.
    ///
    /// Silence is measured from `max(last_seen, serving_since)`; the sum
    /// saturates, so a huge grace means "never" rather than wrapping into
    /// the past.
    pub fn frees_at(&self, serving_since: Timestamp) -> Timestamp {
        self.last_seen
            .max(serving_since)
            .saturating_add(self.offline_grace)
    }

    /// True when another cluster may take the license at `now`: the holder
    /// has been silent for the whole grace while the relay was serving.
    /// Exactly at [`Hold::frees_at`] the hold has lapsed.
    pub fn is_stale(&self, serving_since: Timestamp, now: Timestamp) -> bool {
        now >= self.frees_at(serving_since)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::binding) const GRACE: u64 = 3_600;

    pub(in crate::binding) fn hold(last_seen: u64) -> Hold {
        Hold {
            last_seen,
            offline_grace: GRACE,
        }
    }

    #[test]
    fn silence_while_serving_frees_the_license_after_the_grace() {
        // Relay up since 1_000; holder last seen at 5_000.
        let h = hold(5_000);
        assert_eq!(h.frees_at(1_000), 5_000 + GRACE);
        assert!(!h.is_stale(1_000, 5_000));
        assert!(!h.is_stale(1_000, 5_000 + GRACE - 1));
    }

    #[test]
    fn exactly_at_the_boundary_the_hold_has_lapsed() {
        let h = hold(5_000);
        assert!(h.is_stale(1_000, 5_000 + GRACE));
        assert!(h.is_stale(1_000, 5_000 + GRACE + 1));
    }

    #[test]
    fn a_relay_restart_gives_a_fresh_grace_window() {
        // Holder last seen at 5_000; relay down from 5_001 to 20_000 (longer
        // than the grace); it serves again from 20_000.
        let h = hold(5_000);
        let restart = 20_000;
        assert!(
            !h.is_stale(restart, restart),
            "the outage is not the holder's silence"
        );
        assert!(!h.is_stale(restart, restart + GRACE - 1));
        assert_eq!(h.frees_at(restart), restart + GRACE);
        assert!(h.is_stale(restart, restart + GRACE));
    }

    #[test]
    fn contact_after_the_restart_counts_from_the_contact() {
        let h = hold(30_000);
        assert_eq!(h.frees_at(20_000), 30_000 + GRACE);
        assert_eq!(h.frees_at(30_000), 30_000 + GRACE);
    }

    #[test]
    fn zero_grace_lapses_at_once_but_not_before_the_contact() {
        let h = Hold {
            last_seen: 100,
            offline_grace: 0,
        };
        assert!(h.is_stale(0, 100));
        assert!(!h.is_stale(0, 99));
        assert!(!h.is_stale(200, 199));
    }

    #[test]
    fn arithmetic_saturates_instead_of_wrapping() {
        let h = Hold {
            last_seen: u64::MAX - 10,
            offline_grace: GRACE,
        };
        assert_eq!(h.frees_at(0), u64::MAX);
        assert!(!h.is_stale(0, u64::MAX - 1));
        let forever = Hold {
            last_seen: 5,
            offline_grace: u64::MAX,
        };
        assert_eq!(forever.frees_at(u64::MAX), u64::MAX);
        assert!(!forever.is_stale(10, u64::MAX - 1));
    }

    #[test]
    fn a_relay_clock_behind_the_last_contact_never_frees_early() {
        // The relay's clock went back below last_seen: still held.
        let h = hold(50_000);
        assert!(!h.is_stale(1_000, 40_000));
    }
}
