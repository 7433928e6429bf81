//! How a command's outcome becomes an exit code: the code the command
//! chose (for `check`, the license state's: see `kaching-verifier check
//! --help`), 0 when the reader of its output went away
//! (`kaching-verifier status | head -1`), else 1 with the error chain
//! printed once. Usage errors are 2.

use std::process::ExitCode;

use kaching_verifier::exit;

/// The exit code for a finished command, after printing its error if any.
pub fn exit_code(outcome: anyhow::Result<i32>) -> ExitCode {
    match outcome {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => ExitCode::from(kaching_kit::exit::report(
            e.as_ref(),
            u8::try_from(exit::ERROR).unwrap_or(1),
        )),
    }
}
