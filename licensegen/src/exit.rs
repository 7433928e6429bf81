//! Exit codes, shared by every command and documented in `--help` and
//! docs/sales-ops.md. `verify` maps each verdict state to its own code so
//! scripts can tell "renew" from "call the customer".
//!
//! The per-state codes (10–16) come from `kaching_core::exit`, the table
//! `kaching-verifier check` uses too; this module adds the CLI's own codes.

use kaching_core::State;

/// Success; for `verify`: the license is usable (active, expiring or grace).
pub const OK: u8 = 0;
/// Any other error (I/O, wrong passphrase, corrupt ledger, …).
pub const FAILURE: u8 = 1;
/// Usage error: bad flags or values (unknown tier, past expiry, …).
pub const USAGE: u8 = 2;
/// `verify`: invalid (bad signature, unknown key, wrong audience or cluster,
/// not a license) or no license at all.
pub const INVALID: u8 = 10;
/// `verify`: revoked by the vendor.
pub const REVOKED: u8 = 11;
/// `verify`: suspended by the vendor.
pub const SUSPENDED: u8 = 12;
/// `verify`: past expiry and grace.
pub const EXPIRED: u8 = 13;
/// `verify`: before the license's not-before time.
pub const NOT_YET_VALID: u8 = 14;
/// `verify`: the clock is behind time already seen.
pub const CLOCK_TAMPERED: u8 = 15;
/// `verify`: a connected license past its offline grace.
pub const OVERDUE: u8 = 16;

/// `publish`: the relay could not be reached (network, timeout, 5xx, 429).
pub const RELAY_UNREACHABLE: u8 = 20;
/// `publish`: the relay refused the token (missing, unknown, revoked, wrong scope).
pub const RELAY_TOKEN: u8 = 21;
/// `publish`: the relay refused the list (older or conflicting version, or
/// signed by a key it does not trust).
pub const RELAY_REFUSED: u8 = 22;

/// `usage import`: recorded, but reports of the cluster's chain never
/// arrived (a gap). Nothing is lost; ask the customer for the missing ones.
pub const CHAIN_GAP: u8 = 30;
/// `usage import`: recorded, but the chain shows a rollback: a fork (two
/// reports at one place), a counter or the trusted-time mark going down.
/// The signs of a restored state database or a cloned cluster.
pub const CHAIN_ROLLBACK: u8 = 31;

/// The exit code for a verdict state (the table in `kaching_core::exit`).
pub fn for_state(state: State) -> u8 {
    kaching_core::exit::for_state(state)
}

/// The table printed in `--help`.
pub const TABLE: &str = "\
Exit codes:
  0   success; for verify: usable (active, expiring or grace)
  1   error (I/O, wrong passphrase, corrupt ledger, ...)
  2   usage error (bad flag or value, unknown tier or feature, past expiry)
  10  verify: invalid or no license (signature, key, audience, cluster, format)
  11  verify: revoked
  12  verify: suspended
  13  verify: expired (past expiry and grace)
  14  verify: not yet valid
  15  verify: clock tampered (clock behind time already seen)
  16  verify: overdue (connected license past its offline grace)
  20  publish: relay unreachable (network, timeout, 5xx, rate limited)
  21  publish: relay refused the token (missing, unknown, revoked, wrong scope)
  22  publish: relay refused the list (older version, or a vendor key it does not trust)
  30  usage import: recorded, but reports are missing from the cluster's chain (gap)
  31  usage import: recorded, but the chain shows a rollback (fork, counter or trusted
      time went down): a restored state database or a cloned cluster";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_codes_match_the_named_constants() {
        assert_eq!(for_state(State::Active), OK);
        assert_eq!(for_state(State::Invalid), INVALID);
        assert_eq!(for_state(State::Revoked), REVOKED);
        assert_eq!(for_state(State::Suspended), SUSPENDED);
        assert_eq!(for_state(State::Expired), EXPIRED);
        assert_eq!(for_state(State::NotYetValid), NOT_YET_VALID);
        assert_eq!(for_state(State::ClockTampered), CLOCK_TAMPERED);
        assert_eq!(for_state(State::Overdue), OVERDUE);
    }
}
