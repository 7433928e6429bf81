//! The command line: every subcommand and flag of `kaching-relay`.
//!
//! Doc comments here are the `--help` text; what clap shows is the contract.
//! Shell completions and man pages are generated from this same definition
//! (`kaching-relay completions`, `kaching-relay man`).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use kaching_relay::tokens::Scope;

/// KACHING relay: cluster binding, heartbeats, revocation distribution.
#[derive(Parser)]
#[command(name = "kaching-relay", version, about)]
pub struct Cli {
    /// Configuration file (TOML); see `kaching-relay default-config`.
    #[arg(long, global = true, env = "KACHING_RELAY_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the relay.
    Serve,
    /// Print the documented default configuration.
    DefaultConfig,
    /// Create, list or revoke bearer tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Check the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Print the relay's public key (SPKI PEM) for clusters to pin; creates the key if missing.
    RelayKey,
    /// Bring the database schema up to date and exit (`serve` does it too),
    /// or copy a single-node relay into PostgreSQL.
    ///
    /// Without flags: applies the pending schema migrations to the configured
    /// `database` (SQLite or PostgreSQL). With --from and --to: copies every
    /// binding, heartbeat, revocation list, root, upgrade request, token and
    /// the audit chain from a SQLite relay database into an empty PostgreSQL
    /// database, in one transaction. Stop the SQLite relay first; then point
    /// every replica's `database` at the PostgreSQL URL (docs/relay.md).
    Migrate {
        /// The SQLite database to copy, e.g. sqlite:///var/lib/kaching-relay/relay.db.
        #[arg(long, value_name = "URL", requires = "to")]
        from: Option<String>,
        /// The PostgreSQL database to copy into, e.g. postgres://kaching:secret@db:5432/kaching_relay.
        #[arg(long, value_name = "URL", requires = "from")]
        to: Option<String>,
    },
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page, or write one page per command into a folder.
    Man {
        /// Folder to write kaching-relay.1, kaching-relay-serve.1, … into.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token; it is printed once and stored only as a hash.
    Create {
        /// What the token may do.
        #[arg(long, value_enum)]
        scope: Scope,
        /// A name to list and revoke it by (default: <scope>-<time>).
        #[arg(long)]
        name: Option<String>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by name; it stops working at once.
    Revoke {
        /// The token's name.
        name: String,
    },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Walk the hash chain; fails if any row was edited or deleted.
    Verify,
}

/// The clap command, for completions and man pages.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}
