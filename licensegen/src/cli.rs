//! The command line, as a clap definition. Completions and man pages are
//! generated from this same definition (`licensegen completions`, `licensegen man`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// KACHING sales-ops CLI: vendor keys, licenses, upgrades, suspension,
/// revocation lists and the ledger, all offline.
#[derive(Debug, Parser)]
#[command(name = "licensegen", version, after_long_help = crate::exit::TABLE)]
pub struct Cli {
    /// Vendor directory [default: the current folder or the nearest parent holding kaching.toml]
    #[arg(long, global = true, env = "KACHING_DIR", value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Read the vendor key passphrase from the first line of FILE
    /// [else KACHING_PASSPHRASE, else a prompt]
    #[arg(long, global = true, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// age identity file unlocking a vendor key made with `init --recipient`
    #[arg(long, global = true, env = "KACHING_IDENTITY", value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a vendor directory: key pair, ledger, revocation list, tier catalog, settings
    Init(InitArgs),
    /// Show or export the vendor key
    #[command(subcommand)]
    Key(KeyCommand),
    /// The root of trust: which keys sign licenses, lists and new roots (pinned into verifiers)
    #[command(subcommand)]
    Root(RootCommand),
    /// Issue a license (tier defaults, flags override) and record it in the ledger
    Issue(IssueArgs),
    /// Reissue a license on another tier; the new one supersedes the old
    #[command(mut_arg("tier", |a| a.help("Tier to move to (required); the license gets its defaults")))]
    Upgrade(ReissueArgs),
    /// Reissue a license for another term (default: one tier duration after the old expiry)
    #[command(mut_arg("tier", |a| a.help(
        "Tier name for the renewed license [default: its current tier]; the terms stay the old \
         license's: use `upgrade` to move to another tier's defaults"
    )))]
    Renew(ReissueArgs),
    /// Show what a KACHING file holds and whether its signature is valid
    Inspect(InspectArgs),
    /// Give the verdict a verifier would give a license; exit code per state
    #[command(after_long_help = crate::exit::TABLE)]
    Verify(VerifyArgs),
    /// Suspend a license (lifted by `reinstate`): signs the next revocation list
    Suspend(RevokeArgs),
    /// Lift a suspension: signs the next revocation list without the entry
    Reinstate(RevokeArgs),
    /// Revoke a license for good: signs the next revocation list
    Revoke(RevokeArgs),
    /// Show or re-sign the revocation list
    #[command(subcommand)]
    Revocations(RevocationsCommand),
    /// Upload the current revocation list to a relay (PUT /v1/revocations)
    #[command(after_long_help = crate::exit::TABLE)]
    Publish(PublishArgs),
    /// What was issued, to whom, and its state and history
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Usage reports carried back from customer clusters
    #[command(subcommand)]
    Usage(UsageCommand),
    /// Print a shell completion script
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page, or write one page per command into a folder
    Man {
        /// Folder to write licensegen.1, licensegen-issue.1, … into
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

/// `init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Folder to create (must not already hold a vendor directory)
    pub dir: PathBuf,
    /// Issuer name written into licenses
    #[arg(long, default_value = "vendor")]
    pub issuer: String,
    /// Product (audience) licenses are for
    #[arg(long, default_value = "bzzz")]
    pub audience: String,
    /// How long each revocation list stays fresh
    #[arg(long, default_value = "7d", value_name = "DURATION")]
    pub revocation_validity: String,
    /// Write armored (text) license files by default
    #[arg(long)]
    pub armor: bool,
    /// Encrypt the vendor key to this age recipient (age1…) instead of a passphrase
    #[arg(long, value_name = "AGE_RECIPIENT")]
    pub recipient: Option<String>,
}

/// `key …`.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Kid, algorithm and fingerprint of the vendor key
    Show {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Print vendor.pub (SPKI PEM) for verifiers' trusted keys, or write it to a file
    ExportPublic {
        /// Write to FILE instead of stdout
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Also include keys retired by `key rotate` (the bundle verifiers need during a rotation)
        #[arg(long)]
        all: bool,
    },
    /// Replace the vendor key with a new one; the old one moves to retired-keys/
    Rotate {
        /// Encrypt the new key to this age recipient instead of a passphrase
        #[arg(long, value_name = "AGE_RECIPIENT")]
        recipient: Option<String>,
    },
}

/// `root …`.
#[derive(Debug, Subcommand)]
pub enum RootCommand {
    /// Make root v1 from the vendor key: it becomes the root, issuer and
    /// revoker key (the one-command migration of an existing vendor directory)
    Init {
        /// How long the root may be taken as a new root (a later rotation
        /// must come before this; verifiers keep the root in force after it)
        #[arg(long, value_name = "DURATION", default_value = "10y")]
        expires: String,
    },
    /// The current root: version, roles and their keys; --out writes it
    /// armored for KACHING_PINNED_ROOT, a relay's `root` or a customer's roots/ folder
    Show {
        /// Print JSON
        #[arg(long)]
        json: bool,
        /// Write the current root (armored) to FILE
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// License terms that override tier defaults.
#[derive(Debug, Args, Default, Clone)]
pub struct Terms {
    /// Expiry: a date (2027-12-31, 00:00 UTC) or a duration from now (365d, 1y)
    #[arg(long, value_name = "DATE|DURATION")]
    pub expires: Option<String>,
    /// Node limit
    #[arg(long, value_name = "N")]
    pub nodes: Option<u32>,
    /// CPU core limit
    #[arg(long, value_name = "N")]
    pub cores: Option<u32>,
    /// Add a feature to the tier's (repeatable)
    #[arg(long = "feature", value_name = "F")]
    pub features: Vec<String>,
    /// Set a quota from the tier catalog, e.g. search_requests=100000/day (repeatable)
    #[arg(long = "quota", value_name = "NAME=LIMIT[/PERIOD]")]
    pub quotas: Vec<String>,
    /// Set a quota the tier catalog does not name, e.g. exports=500/day (repeatable)
    #[arg(long = "custom-quota", value_name = "NAME=LIMIT[/PERIOD]")]
    pub custom_quotas: Vec<String>,
    /// Grace after expiry, e.g. 14d
    #[arg(long, value_name = "DURATION")]
    pub grace: Option<String>,
    /// Percent of the node limit allowed over it
    #[arg(long, value_name = "PCT")]
    pub overage: Option<u32>,
    /// Bind to a cluster id (16 characters, from `kaching-verifier activation-request`)
    #[arg(long, value_name = "ID", conflicts_with = "bind")]
    pub cluster: Option<String>,
    /// Bind to the cluster of a signed activation request file
    #[arg(long, value_name = "REQUEST_FILE")]
    pub bind: Option<PathBuf>,
    /// Connected license: heartbeat interval (with --offline-grace)
    #[arg(long, value_name = "DURATION", requires = "offline_grace")]
    pub heartbeat: Option<String>,
    /// Connected license: how long the cluster may run without the relay
    #[arg(long, value_name = "DURATION", requires = "heartbeat")]
    pub offline_grace: Option<String>,
}

/// `issue`.
#[derive(Debug, Args)]
pub struct IssueArgs {
    /// Customer name
    #[arg(long, required_unless_present = "spec", conflicts_with = "spec")]
    pub customer: Option<String>,
    /// Customer id [default: derived from the name]
    #[arg(long, value_name = "ID", conflicts_with = "spec")]
    pub customer_id: Option<String>,
    /// Tier from tiers.toml
    #[arg(long, required_unless_present = "spec", conflicts_with = "spec")]
    pub tier: Option<String>,
    /// Overrides of the tier's defaults.
    #[command(flatten)]
    pub terms: Terms,
    /// Issue every license described in a TOML file
    #[arg(long, value_name = "FILE.toml")]
    pub spec: Option<PathBuf>,
    /// Write the armored (text) spelling
    #[arg(long)]
    pub armor: bool,
    /// Output file [default: licenses/<customer>-<id>.license in the vendor directory]
    #[arg(long, value_name = "FILE", conflicts_with = "spec")]
    pub out: Option<PathBuf>,
}

/// `upgrade` and `renew`.
#[derive(Debug, Args)]
pub struct ReissueArgs {
    /// License id (or a unique prefix of it, at least 4 characters)
    pub license_id: String,
    /// Tier for the new license
    #[arg(long)]
    pub tier: Option<String>,
    /// Overrides.
    #[command(flatten)]
    pub terms: Terms,
    /// Write the armored (text) spelling
    #[arg(long)]
    pub armor: bool,
    /// Output file
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A license, revocation list, activation request or usage report (binary or armored)
    pub file: PathBuf,
    /// Vendor public key(s) to check signatures with [default: the vendor directory's]
    #[arg(long, value_name = "PEM_FILE")]
    pub pubkey: Option<PathBuf>,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// License file (binary or armored)
    pub file: PathBuf,
    /// Trusted vendor public key(s), PEM [default: the vendor directory's]
    #[arg(long, value_name = "PEM_FILE")]
    pub pubkey: Option<PathBuf>,
    /// Revocation list to apply [default: the vendor directory's, when there is one]
    #[arg(long, value_name = "FILE")]
    pub revocations: Option<PathBuf>,
    /// Judge at this time (2027-01-31 or 2027-01-31T12:00:00Z) instead of now
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Judge as this cluster [default: the cluster the license is bound to]
    #[arg(long, value_name = "ID")]
    pub cluster: Option<String>,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// `suspend`, `reinstate`, `revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// License id (or a unique prefix of it, at least 4 characters)
    pub license_id: String,
    /// Why (shown to the customer by the verifier)
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// How long the signed revocation list stays fresh before verifiers need a newer one:
    /// duration or date [default: revocation_validity in kaching.toml]. Not how long the
    /// suspension or revocation lasts
    #[arg(long, alias = "expires", value_name = "DURATION|DATE")]
    pub list_valid_for: Option<String>,
}

/// `publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Relay base URL [else KACHING_RELAY_URL, else `[relay] url` in kaching.toml]
    #[arg(long, env = "KACHING_RELAY_URL", value_name = "URL")]
    pub relay: Option<String>,
    /// File holding a publish-scope relay token (`kaching-relay token create --scope publish`)
    /// [else KACHING_RELAY_TOKEN_FILE, else `[relay] token_file` in kaching.toml]
    #[arg(long, env = "KACHING_RELAY_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Seconds to wait for the relay
    #[arg(long, default_value = "30", value_name = "SECONDS")]
    pub timeout: u64,
}

/// `revocations …`.
#[derive(Debug, Subcommand)]
pub enum RevocationsCommand {
    /// Show the current revocation list
    Show {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Re-sign the same entries as a new version with a new deadline
    Refresh {
        /// How long the re-signed list stays fresh before verifiers need a newer one:
        /// duration or date [default: revocation_validity in kaching.toml]
        #[arg(long, alias = "expires", value_name = "DURATION|DATE")]
        list_valid_for: Option<String>,
    },
}

/// `ledger …`.
#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// List licenses with their state
    List {
        /// Only customers whose name or id contains this text
        #[arg(long)]
        customer: Option<String>,
        /// Only licenses in force that expire within DURATION (e.g. 30d), soonest first
        #[arg(long, value_name = "DURATION")]
        expiring_within: Option<String>,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// One license: terms, state, history and usage reports
    Show {
        /// License id (or a unique prefix of it, at least 4 characters)
        license_id: String,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
}

/// `usage …`.
#[derive(Debug, Subcommand)]
pub enum UsageCommand {
    /// Verify and record a usage report from `kaching-verifier usage-report`
    Import {
        /// The report file (binary or armored)
        file: PathBuf,
    },
}

/// The clap command, for completions and man pages.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}
