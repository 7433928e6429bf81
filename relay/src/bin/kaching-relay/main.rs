//! The `kaching-relay` command: serve, tokens, audit, configuration.
//!
//! `cli` says what the command line is, `commands` does each subcommand,
//! `error` turns the outcome into an exit code.

use std::process::ExitCode;

use clap::Parser;

mod cli;
mod commands;
mod error;

fn main() -> ExitCode {
    // clap prints help, version and usage errors itself (exit 0 or 2).
    let cli = cli::Cli::parse();
    error::exit_code(commands::dispatch(cli))
}
