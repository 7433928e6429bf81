//! What the `kaching-verifier` command line is: every subcommand, flag and
//! help text (completions and man pages are generated from it).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// KACHING's enforcement daemon: verifies the license and answers BZZZ and
/// WHOOSH on a local API.
#[derive(Debug, Parser)]
#[command(name = "kaching-verifier", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (until SIGTERM or SIGINT).
    Run {
        /// Config file (TOML) [default: /etc/kaching/verifier.toml when it
        /// exists, else the built-in defaults].
        #[arg(long, short, env = "KACHING_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Evaluate the license once and exit with its state's code
    /// (0 usable, 10 invalid/unlicensed, 11 revoked, 12 suspended, 13 expired,
    /// 14 not yet valid, 15 clock tampered, 16 overdue, 1 error).
    Check(CheckArgs),
    /// Ask the running daemon for its status and print it.
    Status {
        /// Config file (TOML): gives the address and token [default:
        /// /etc/kaching/verifier.toml when it exists, else the built-in defaults].
        #[arg(long, short, env = "KACHING_CONFIG")]
        config: Option<PathBuf>,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
        /// Daemon URL (default: from the config's listen address).
        #[arg(long)]
        url: Option<String>,
        /// File holding the daemon's API token (instead of the config's
        /// `token_file`), e.g. for a verifier on another address.
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
    },
    /// Show how the verdict is reached, rule by rule: the times used, each
    /// rule in order of precedence and what it found, and the rule that
    /// decided. --at asks what the verdict would be with the clock at TIME
    /// (a time before the trusted-time mark shows clock_tampered, as the
    /// daemon would). Exit code as for `check`.
    Explain {
        /// Config file (TOML) [default: /etc/kaching/verifier.toml].
        #[arg(long, short, env = "KACHING_CONFIG")]
        config: Option<PathBuf>,
        /// Judge with the clock at TIME (2027-01-31 or 2027-01-31T12:00:00Z) instead of now.
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        /// Also show the decision for this feature.
        #[arg(long, value_name = "NAME")]
        feature: Option<String>,
        /// Print the explanation as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Accept the downgrade the daemon is holding (`hold_downgrades = true`):
    /// the new license, which takes something away, goes into force at the
    /// daemon's next file check.
    AcceptDowngrade {
        /// Config file (TOML) [default: /etc/kaching/verifier.toml].
        #[arg(long, short, env = "KACHING_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Write a signed activation request for this cluster (send it to your vendor).
    ActivationRequest {
        /// Config file (TOML) [default: /etc/kaching/verifier.toml].
        #[arg(long, short, env = "KACHING_CONFIG")]
        config: Option<PathBuf>,
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
    },
    /// Write a signed usage report: everything your vendor has not acknowledged yet.
    ///
    /// Nothing is marked as done when the report is written: every report
    /// carries everything your vendor has not acknowledged yet, so writing
    /// several reports, or losing one, loses nothing. Send the report to your
    /// vendor; they run `licensegen usage import REPORT` and send back a
    /// receipt, which `kaching-verifier receipt import RECEIPT` applies.
    ///
    /// Reports are numbered and each names the one before it, so your vendor
    /// can see that none is missing and that this cluster's state was not
    /// rolled back (see docs/air-gapped.md).
    #[command(verbatim_doc_comment)]
    UsageReport {
        /// Config file (TOML) [default: /etc/kaching/verifier.toml].
        #[arg(long, short, env = "KACHING_CONFIG")]
        config: Option<PathBuf>,
        /// Where to write it (armored text; replaced atomically).
        #[arg(long)]
        out: PathBuf,
    },
    /// Your vendor's receipts for usage reports.
    #[command(subcommand)]
    Receipt(ReceiptCommand),
    /// Take your vendor's clock reset: lower the trusted-time mark a wrong clock left.
    ///
    /// The verifier remembers the latest time it has seen (the trusted-time
    /// mark) and never goes back from it. A clock that was once set ahead (a
    /// virtual machine with a bad hardware clock, an NTP mishap) therefore
    /// leaves the license `clock_tampered` even after the clock is right
    /// again. Only your vendor can lower the mark: `kaching-verifier status`
    /// (or `check`) prints a line with this cluster's id and mark; send your
    /// vendor that line. They send back a clock reset file for this cluster,
    /// which this command takes: the mark becomes the time they signed it.
    ///
    /// Set the clock right (NTP) first. The daemon must be stopped, since it
    /// holds the mark in memory and would write the old one back:
    ///
    ///     systemctl stop kaching-verifier
    ///     kaching-verifier clock-reset RESET-FILE
    ///     systemctl start kaching-verifier
    ///
    /// A reset is refused, changing nothing, when it is not signed by a
    /// vendor key that may sign licenses (issuer), names another cluster,
    /// was taken here before, has expired, the clock is still far behind the
    /// time it was signed, or the mark has moved past the one it was made
    /// for (ask for a new reset with the mark `status` shows now).
    ///
    /// Exit codes: 0 taken (or the mark was not ahead: nothing to lower),
    /// 1 refused or error.
    #[command(verbatim_doc_comment)]
    ClockReset {
        /// Config file (TOML) [default: /etc/kaching/verifier.toml].
        #[arg(long, short, env = "KACHING_CONFIG")]
        config: Option<PathBuf>,
        /// The clock reset file (binary or armored), from `licensegen clock-reset`.
        file: PathBuf,
    },
    /// Print the default configuration, with every key documented.
    DefaultConfig,
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page, or write one page per command into a folder.
    Man {
        /// Folder to write kaching-verifier.1, kaching-verifier-run.1, … into.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

// `check`'s options. (A plain comment: a doc comment here would become
// the subcommand's description in place of the variant's.)
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Config file (TOML) [default: /etc/kaching/verifier.toml].
    #[arg(long, short, env = "KACHING_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the status JSON instead of a summary.
    #[arg(long)]
    pub json: bool,
    /// Accept a development build (no root of trust built in: trust
    /// comes from the editable trusted-keys file). Without it, such a
    /// build exits 1 whatever the license says.
    #[arg(long)]
    pub allow_development_trust: bool,
}

/// The command line, when it is `check` and parses: only `check` is built,
/// not every subcommand (most of a one-shot check's start-up). `None` for
/// anything else, including `--help` and every usage error: the caller then
/// parses with the whole tree, so help and error messages stay exactly
/// the same.
pub fn parse_quick(args: &[std::ffi::OsString]) -> Option<Cli> {
    use clap::FromArgMatches;
    if args.get(1)?.to_str()? != "check" {
        return None;
    }
    let matches = quick_command().try_get_matches_from(args).ok()?;
    Cli::from_arg_matches(&matches).ok()
}

/// `kaching-verifier` with only the `check` subcommand.
pub fn quick_command() -> clap::Command {
    clap::Command::new("kaching-verifier")
        .subcommand(CheckArgs::augment_args(clap::Command::new("check")))
        .subcommand_required(true)
}

/// `receipt …`.
#[derive(Debug, Subcommand)]
pub enum ReceiptCommand {
    /// Apply your vendor's receipt: what it acknowledges stops being reported.
    ///
    /// The receipt is checked against your vendor's keys (only a key that may
    /// sign licenses may sign receipts), and must be for a report this
    /// cluster wrote. It clears exactly the upgrade requests, closed counter
    /// periods and monthly node peaks it names; anything newer stays in the
    /// next report. Importing the same receipt again changes nothing.
    ///
    /// Exit codes: 0 applied (or already applied), 1 refused or error.
    #[command(verbatim_doc_comment)]
    Import {
        /// Config file (TOML) [default: /etc/kaching/verifier.toml].
        #[arg(long, short, env = "KACHING_CONFIG")]
        config: Option<PathBuf>,
        /// The receipt file (binary or armored), from `licensegen usage import`.
        file: PathBuf,
    },
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use clap::CommandFactory;
    use std::ffi::OsString;

    fn argv(line: &str) -> Vec<OsString> {
        std::iter::once("kaching-verifier")
            .chain(line.split_whitespace())
            .map(OsString::from)
            .collect()
    }

    /// What the quick path accepts, the whole tree parses the same way;
    /// help and errors are left to the whole tree.
    #[test]
    fn quick_check_parse_agrees_with_the_whole_tree() {
        for line in [
            "check",
            "check --config v.toml",
            "check -c v.toml --json --allow-development-trust",
            "check --config=v.toml --json",
        ] {
            let quick = parse_quick(&argv(line));
            let whole = Cli::try_parse_from(argv(line)).expect(line);
            assert_eq!(
                format!("{quick:?}"),
                format!("{:?}", Some(whole)),
                "argv {line:?}"
            );
        }
        for line in [
            "",
            "--help",
            "--version",
            "check --help",
            "check -h",
            "check --bogus",
            "check -c",
            "check extra",
            "run --config v.toml",
            "status",
        ] {
            assert!(parse_quick(&argv(line)).is_none(), "argv {line:?}");
        }
    }

    /// `check` alone defines the same arguments as in the whole tree.
    #[test]
    fn quick_check_defines_the_same_arguments_as_the_whole_tree() {
        let args = |mut c: clap::Command| {
            c.build();
            c.find_subcommand("check")
                .expect("check")
                .get_arguments()
                .filter(|a| a.get_id() != "help")
                .map(|a| format!("{a:?}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(args(quick_command()), args(Cli::command()));
    }
}
