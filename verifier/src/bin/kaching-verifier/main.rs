//! The `kaching-verifier` command: the daemon and its helper commands.
//!
//! `cli` says what the command line is, `commands` does each subcommand,
//! `error` turns the outcome into an exit code.

use std::process::ExitCode;

use clap::Parser;
use kaching_verifier::exit;

mod cli;
mod commands;
mod error;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let parsed = match cli::parse_quick(&args) {
        Some(cli) => Ok(cli),
        None => cli::Cli::try_parse_from(args),
    };
    let cli = match parsed {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE as u8 } else { 0 });
        }
    };
    // The daemon logs what it does; one-shot commands only what went wrong,
    // with a logger built only once there is something to print.
    match cli.command {
        cli::Command::Run { .. } => kaching_kit::log::init("info"),
        _ => kaching_kit::log::init_one_shot("warn"),
    }
    error::exit_code(commands::dispatch(cli.command))
}
