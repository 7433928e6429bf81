//! Exit codes of `kaching-verifier check` (the same table as `licensegen verify`).

use kaching_core::State;

/// Other error (config, state database, I/O).
pub const ERROR: i32 = 1;
/// Command-line usage error.
pub const USAGE: i32 = 2;

/// The exit code for a license state: 0 when the product may run.
pub fn for_state(state: State) -> i32 {
    match state {
        State::Active | State::Expiring | State::Grace => 0,
        State::Unlicensed | State::Invalid => 10,
        State::Revoked => 11,
        State::Suspended => 12,
        State::Expired => 13,
        State::NotYetValid => 14,
        State::ClockTampered => 15,
        State::Overdue => 16,
    }
}
