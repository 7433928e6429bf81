//! How a command's outcome becomes an exit code (docs/relay.md): 0 when it
//! did what was asked, or when the reader of its output went away
//! (`kaching-relay token list | head -1`); 1, with the error chain printed
//! once, for anything else. Usage errors are clap's (2).

use std::process::ExitCode;

use kaching_kit::exit;

/// The exit code for a finished command, after printing its error if any.
pub fn exit_code(outcome: anyhow::Result<()>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => ExitCode::from(exit::report(e.as_ref(), exit::FAILURE)),
    }
}
