//! Exit codes per license state, one table for every tool that judges a
//! license (`licensegen verify`, `kaching-verifier check`), so start-up
//! scripts can tell "renew" from "call the vendor" the same way everywhere.

use crate::policy::State;

/// The product may run: active, expiring, grace or report overdue.
pub const USABLE: u8 = 0;

/// The exit code for a state: 0 when usable, else 10–16.
pub fn for_state(state: State) -> u8 {
    match state {
        State::Active | State::Expiring | State::Grace | State::ReportOverdue => USABLE,
        State::Unlicensed | State::Invalid => 10,
        State::Revoked => 11,
        State::Suspended => 12,
        State::Expired => 13,
        State::NotYetValid => 14,
        State::ClockTampered => 15,
        State::Overdue => 16,
    }
}

/// The state rows of the table, as `--help` prints them.
pub const STATE_TABLE: &str = "\
  0   usable (active, expiring, grace, or report overdue: see the warnings)
  10  invalid or no license (signature, key, audience, cluster, format)
  11  revoked
  12  suspended
  13  expired (past expiry and grace)
  14  not yet valid
  15  clock tampered (clock behind time already seen)
  16  overdue (connected license past its offline grace)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unusable_state_has_its_own_nonzero_code() {
        let bad = [
            State::Invalid,
            State::Revoked,
            State::Suspended,
            State::Expired,
            State::NotYetValid,
            State::ClockTampered,
            State::Overdue,
        ];
        let codes: std::collections::BTreeSet<u8> = bad.iter().map(|s| for_state(*s)).collect();
        assert_eq!(codes.len(), bad.len());
        assert!(!codes.contains(&USABLE) && !codes.contains(&1) && !codes.contains(&2));
        assert_eq!(for_state(State::Grace), USABLE);
        assert_eq!(for_state(State::Unlicensed), 10);
    }
}
