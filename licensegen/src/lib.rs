//! licensegen: the KACHING sales-ops CLI as a library.
//!
//! [`run`] is the whole program (the binary's `main` only calls it), so a
//! demo or test can drive licensegen in-process. The modules underneath are
//! public for programs that prefer calls to argv: [`vendor_dir::init`],
//! [`issue::build`] + [`issue::sign_and_record`], [`revocations::publish`].

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cli;
pub mod clock_reset;
mod commands;
pub mod desk;
pub mod error;
pub mod exit;
pub mod fsutil;
pub mod inspect;
pub mod issue;
pub mod keystore;
pub mod ledger;
pub mod output;
pub mod revocations;
pub mod trueup;
pub mod usage;
pub mod vendor_dir;
pub mod verify;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

/// Runs licensegen with these arguments (argv[0] first), printing to
/// stdout/stderr exactly as the binary does, and returns its exit code.
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    ExitCode::from(run_code(args))
}

/// Like [`run`], with the exit code as a number.
pub fn run_code<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let parsed = match cli::parse_quick(&args) {
        Some(cli) => Ok(cli),
        None => cli::Cli::try_parse_from(args),
    };
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout and errors to stderr.
            let _ = e.print();
            return if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
        }
    };
    match commands::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            output::note(&format!("error: {e:#}"));
            error::exit_code_of(&e)
        }
    }
}
