//! Exit codes of `kaching-verifier check` (the same table as `licensegen verify`).

use kaching_core::State;

/// Other error (config, state database, I/O).
pub const ERROR: i32 = 1;
/// Command-line usage error.
pub const USAGE: i32 = 2;

/// The exit code for a license state: 0 when the product may run
/// (the table in `kaching_core::exit`).
pub fn for_state(state: State) -> i32 {
    i32::from(kaching_core::exit::for_state(state))
}
