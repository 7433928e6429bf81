//! Errors and exit codes: every failure is one line a person can act on.
//!
//! Commands return `anyhow::Result<u8>` (the exit code on success, which is
//! not always 0 for `verify`). A [`UsageError`] in the chain means the user
//! asked for something that cannot be done as asked (exit 2); anything else
//! is exit 1.

use std::fmt;

/// The command line asked for something impossible (unknown tier, bad date…).
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Builds a usage error (exit code 2).
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

/// The exit code for an error that ended a command.
pub fn exit_code_of(err: &anyhow::Error) -> u8 {
    if err
        .chain()
        .any(|c| c.downcast_ref::<UsageError>().is_some())
    {
        crate::exit::USAGE
    } else {
        crate::exit::FAILURE
    }
}
