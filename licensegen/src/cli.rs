//! The command line, as a clap definition. Completions and man pages are
//! generated from this same definition (`licensegen completions`, `licensegen man`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// KACHING sales-ops CLI: vendor keys, licenses, upgrades, suspension,
/// revocation lists and the ledger, all offline.
#[derive(Debug, Parser)]
#[command(name = "licensegen", version, after_long_help = crate::exit::TABLE)]
pub struct Cli {
    /// The options every subcommand takes.
    #[command(flatten)]
    pub global: Globals,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The options every subcommand takes (`--dir`, `--passphrase-file`,
/// `--identity`).
#[derive(Debug, Args)]
pub struct Globals {
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
}

/// The subcommands [`parse_quick`] parses by building only themselves.
pub const QUICK: &[&str] = &["verify", "simulate", "inspect"];

/// The command line, when its first argument names one of [`QUICK`] (the
/// short read-only commands scripts run often) and it parses: only that
/// subcommand and the global options are built, not the whole tree, which
/// was about a third of `licensegen verify`'s start-up (docs/benchmarks.md).
/// `None` for anything else, including `--help`, `--version`, every usage
/// error and an option before the subcommand: the caller then parses with
/// [`command`]'s whole tree, so help, versions and error messages are
/// exactly the same as without this path.
pub fn parse_quick(args: &[std::ffi::OsString]) -> Option<Cli> {
    use clap::FromArgMatches;
    let sub = quick_command(args.get(1)?.to_str()?)?;
    let matches = sub.try_get_matches_from(args).ok()?;
    Cli::from_arg_matches(&matches).ok()
}

/// `licensegen` with the global options and only the subcommand `name`, one
/// of [`QUICK`].
pub fn quick_command(name: &str) -> Option<clap::Command> {
    let sub = match name {
        "verify" => VerifyArgs::augment_args(clap::Command::new("verify")),
        "simulate" => SimulateArgs::augment_args(clap::Command::new("simulate")),
        "inspect" => InspectArgs::augment_args(clap::Command::new("inspect")),
        _ => return None,
    };
    Some(
        Globals::augment_args(clap::Command::new("licensegen"))
            .subcommand(sub)
            .subcommand_required(true),
    )
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
    /// Give a key the issuer, revoker or relay role, or take it away (drafts the next root)
    #[command(subcommand)]
    Role(RoleCommand),
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
    /// What a verifier would decide for a license at a date, with nodes and
    /// usage you choose, rule by rule: "what will this customer see on that day?"
    #[command(after_long_help = crate::exit::TABLE)]
    Simulate(SimulateArgs),
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
    Publish(RelayArgs),
    /// What was issued, to whom, and its state and history
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Usage reports carried back from customer clusters
    #[command(subcommand)]
    Usage(UsageCommand),
    /// Sign a clock reset: lets a cluster whose clock was once ahead leave clock_tampered
    ///
    /// A verifier keeps a trusted-time mark that only grows. A clock that was
    /// once wrong ahead (a virtual machine started with a bad clock, an NTP
    /// mishap) leaves the cluster clock_tampered until real time catches up
    /// with the wrong time, possibly years. The customer's `kaching-verifier
    /// status` shows the cluster id and the mark to send you.
    ///
    /// The reset sets the cluster's mark to this computer's clock (check that
    /// it is right), never lower: it cannot make a license last past its real
    /// expiry. It names the cluster and the mark it replaces, is taken once,
    /// and only until it expires (--valid-for). A mark that is not ahead of
    /// this computer's clock is refused: that cluster's clock is behind, and
    /// setting it right is the fix.
    ///
    /// Signed with the vendor key (an issuer key of the root) and recorded in
    /// the ledger: `ledger show` of a license on that cluster lists it, and
    /// `usage import` does not flag the cluster's trusted time going back to
    /// it as a rollback. The customer stops the verifier daemon and runs
    /// `kaching-verifier clock-reset FILE`.
    ///
    /// Example: licensegen clock-reset --cluster xdr73xb67d6me5jq --mark 2029-03-01T12:00:00Z
    #[command(name = "clock-reset", verbatim_doc_comment)]
    ClockReset(ClockResetArgs),
    /// Licensed against peak use per month, and the overage to bill
    ///
    /// For each license (with the licenses that replaced it, one history per
    /// customer contract) and each calendar month: the licensed nodes, the
    /// ceiling the verifier admits (licensed plus the overage percent), the
    /// most nodes that held a lease at once, and TO BILL: the peak above the
    /// licensed nodes. Each quota likewise: its limit, the busiest day (day
    /// quotas, billing the units over the limit summed over the days), the
    /// month's counter (month quotas) or the highest level reported (total,
    /// gauge).
    ///
    /// The figures come from the usage reports imported with `licensegen usage
    /// import` (monthly node peaks need reports from a verifier with the report
    /// chain). Relay heartbeats are not in the ledger: connected clusters count
    /// only through usage reports.
    ///
    /// NOTE says how settled a month is: open (not over yet), partial (over,
    /// but no report written after its end imported yet: ask for the next
    /// report before billing), final. In a month where a license was replaced
    /// (upgrade), the higher limits apply: the peak cannot be placed before or
    /// after the change. "ABOVE CEILING" means the verifier should have refused
    /// those nodes: look for a second or cloned cluster.
    ///
    /// Example: licensegen true-up --customer acme --since 2027-01-01
    #[command(name = "true-up", verbatim_doc_comment)]
    TrueUp(TrueUpArgs),
    /// The sales-ops desk: a local web app over the vendor directory (loopback only)
    ///
    /// Ledger (search, filter by customer, state, expiring within N days; a
    /// license's history), an issue form with the tier defaults and a preview
    /// of the claims before signing, upgrade / renew / suspend / reinstate /
    /// revoke buttons, usage-report import (what it said, the receipt to
    /// download), and downloads of any license, armored or binary. Every
    /// check is the command line's own.
    ///
    /// It prints a link with a one-time token (open it in your browser; the
    /// token becomes a session cookie and leaves the address bar). Unlock the
    /// vendor key once on the page with its passphrase, or start the desk
    /// with KACHING_PASSPHRASE / --passphrase-file / --identity; the key stays
    /// in this process's memory only and is forgotten on Lock and on Ctrl-C.
    ///
    /// Example: licensegen ui --listen 8080 --no-open
    #[command(verbatim_doc_comment)]
    Ui(UiArgs),
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
    /// Make a key pair for another role (a revoker key for an online box, a
    /// relay key): FILE gets the age-encrypted private key, FILE with .pub the public key
    New {
        /// Private key file to create, e.g. revoker.key (the public key goes to revoker.pub)
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Encrypt the new key to this age recipient instead of a passphrase
        #[arg(long, value_name = "AGE_RECIPIENT")]
        recipient: Option<String>,
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
    /// Make root v1: from the vendor key, or with N key holders (--key-count)
    ///
    /// Alone, the vendor key becomes its root, issuer and revoker key (the
    /// one-command migration of an existing vendor directory). With
    /// --key-count N: N new root keys, one per key holder, K of which must
    /// sign every later root; the vendor key issues and revokes.
    Init {
        /// How long the root may be taken as a new root (a later rotation
        /// must come before this; verifiers keep the root in force after it)
        #[arg(long, value_name = "DURATION", default_value = "10y")]
        expires: String,
        /// Make this many root keys, one per holder (default: one per --holder-recipient)
        #[arg(long, value_name = "N")]
        key_count: Option<usize>,
        /// How many root key holders must sign each new root [default: a majority]
        #[arg(long, value_name = "K")]
        threshold: Option<u32>,
        /// Encrypt the root keys to these age recipients, one per holder, in
        /// order (repeatable) [default: a passphrase per key]
        #[arg(long = "holder-recipient", value_name = "AGE_RECIPIENT")]
        holder_recipients: Vec<String>,
        /// Folder for the root key files [default: root-keys/ in the vendor directory]
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
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
    /// Draft the next root with other root keys or thresholds; root key
    /// holders then sign it with `root sign`
    Rotate {
        /// Add this public key (PEM, e.g. from `key new`) as a root key (repeatable)
        #[arg(long = "add-root-key", value_name = "PUB_FILE")]
        add: Vec<PathBuf>,
        /// Remove this root key, by kid (repeatable)
        #[arg(long = "remove-root-key", value_name = "KID")]
        remove: Vec<String>,
        /// How many root keys must sign each later root
        #[arg(long, value_name = "K")]
        threshold: Option<u32>,
        /// New expiry of the root, from now
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
        /// Let verifiers take revocation lists from this version on again
        /// (recovery after a leaked revoker key published a huge version)
        #[arg(long, value_name = "VERSION")]
        revocation_floor: Option<u64>,
    },
    /// Add one key holder's signature to a root under signature; installs it
    /// once the old and the new root keys' thresholds are met
    Sign {
        /// The draft [default: the vendor directory's pending roots/root-vN.draft]
        draft: Option<PathBuf>,
        /// The signing key file [default: the vendor key]
        #[arg(long, value_name = "KEY_FILE")]
        key: Option<PathBuf>,
        /// The root the draft follows, to count its signatures away from the
        /// vendor directory [default: the vendor directory's current root]
        #[arg(long, value_name = "ROOT_FILE")]
        previous: Option<PathBuf>,
    },
    /// Take a fully signed root (e.g. signed on other machines) into the chain
    Install {
        /// The signed root [default: the pending draft]
        file: Option<PathBuf>,
    },
    /// Throw away the pending draft
    Discard,
}

/// `role …`.
#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Draft the next root with KEY in ROLE (root key holders sign it with `root sign`)
    Add {
        /// issuer, revoker or relay
        #[arg(value_parser = parse_role)]
        role: kaching_core::root::Role,
        /// The key's public key file (PEM, e.g. revoker.pub from `key new`)
        key: PathBuf,
        /// How many of the role's keys must sign [default: unchanged]
        #[arg(long, value_name = "K")]
        threshold: Option<u32>,
    },
    /// Draft the next root without KID in ROLE
    Remove {
        /// issuer, revoker or relay
        #[arg(value_parser = parse_role)]
        role: kaching_core::root::Role,
        /// The key's kid (see `root show`)
        kid: String,
        /// How many of the role's keys must sign [default: unchanged, or all that are left]
        #[arg(long, value_name = "K")]
        threshold: Option<u32>,
    },
}

fn parse_role(s: &str) -> Result<kaching_core::root::Role, String> {
    use kaching_core::root::Role;
    match s.parse::<Role>() {
        Ok(Role::Root) => {
            Err("root keys change with `root rotate --add-root-key/--remove-root-key`".into())
        }
        Ok(r) => Ok(r),
        Err(_) => Err(format!("{s:?} is not a role: use issuer, revoker or relay")),
    }
}

/// License terms that override tier defaults.
#[derive(Debug, Args, Default, Clone)]
pub struct Terms {
    /// Expiry: a date (2027-12-31, 00:00 UTC) or a duration from now (365d, 1y,
    /// 12months; at least one day; `m` alone is refused: write months or min)
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
    /// Connected license: heartbeat interval, e.g. 5min (with --offline-grace)
    #[arg(long, value_name = "DURATION", requires = "offline_grace")]
    pub heartbeat: Option<String>,
    /// Connected license: how long the cluster may run without the relay
    #[arg(long, value_name = "DURATION", requires = "heartbeat")]
    pub offline_grace: Option<String>,
    /// Air-gapped license: a usage report must be acknowledged (receipt
    /// imported) this often, e.g. 90d; once late the license is report_overdue
    #[arg(long, value_name = "DURATION")]
    pub report_every: Option<String>,
    /// With --report-every: warn this long before a report is due [default: 14d]
    #[arg(long, value_name = "DURATION", requires = "report_every")]
    pub report_warn: Option<String>,
    /// With --report-every: turn this feature off while a report is late
    /// (repeatable; none: warn only)
    #[arg(long = "report-deny", value_name = "F", requires = "report_every")]
    pub report_deny: Vec<String>,
    /// Keep this feature working after expiry and grace: the basic level
    /// that never goes dark (repeatable)
    #[arg(long = "degrade", value_name = "F")]
    pub degrade: Vec<String>,
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
    /// A license, revocation list, activation request, usage report, receipt
    /// or clock reset (binary or armored)
    pub file: PathBuf,
    /// Vendor public key(s) to check signatures with [default: the vendor directory's]
    #[arg(long, value_name = "PEM_FILE")]
    pub pubkey: Option<PathBuf>,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// What `verify` and `simulate` judge, and against what.
#[derive(Debug, Args)]
pub struct JudgeArgs {
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
}

/// `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The license and what to judge it against.
    #[command(flatten)]
    pub judge: JudgeArgs,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// `simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The license and what to judge it against.
    #[command(flatten)]
    pub judge: JudgeArgs,
    /// Nodes holding leases
    #[arg(long, value_name = "N", default_value = "0")]
    pub nodes: u64,
    /// Usage this period of a quota, e.g. search_requests=45000 (repeatable)
    #[arg(long = "usage", value_name = "NAME=AMOUNT")]
    pub usage: Vec<String>,
    /// Also show the decision for this feature
    #[arg(long, value_name = "NAME")]
    pub feature: Option<String>,
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
    #[arg(long, value_name = "DURATION|DATE")]
    pub list_valid_for: Option<String>,
    /// Refused with an explanation: a suspension does not end by itself
    #[arg(long, hide = true, value_name = "DURATION|DATE")]
    pub expires: Option<String>,
    /// Sign with this key of the root's revoker role instead of the vendor
    /// key (made by `key new`, given the role by `role add revoker`)
    #[arg(long, env = "KACHING_REVOKER_KEY", value_name = "KEY_FILE")]
    pub revoker_key: Option<PathBuf>,
}

/// `publish` and `usage pull`: which relay, with which token.
#[derive(Debug, Args)]
pub struct RelayArgs {
    /// Relay base URL [else KACHING_RELAY_URL, else `[relay] url` in kaching.toml]
    #[arg(long, env = "KACHING_RELAY_URL", value_name = "URL")]
    pub relay: Option<String>,
    /// File holding a publish-scope relay token (`kaching-relay token create --scope publish`)
    /// [else KACHING_RELAY_TOKEN_FILE, else `[relay] token_file` in kaching.toml]
    #[arg(long, env = "KACHING_RELAY_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Seconds to wait for the relay, per request
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
        /// Sign with this key of the root's revoker role instead of the vendor
        /// key (made by `key new`, given the role by `role add revoker`)
        #[arg(long, env = "KACHING_REVOKER_KEY", value_name = "KEY_FILE")]
        revoker_key: Option<PathBuf>,
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
        /// Only licenses in force that expire within DURATION (e.g. 30d, 2months), soonest first
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
    /// Verify and record a usage report, and write the receipt the customer imports
    ///
    /// The report is checked against the cluster's earlier reports: each is
    /// numbered and names the one before it, and counters and the cluster's
    /// trusted time only grow. A gap (exit 30) means reports never arrived;
    /// a fork, or a counter or trusted time going down (exit 31), means the
    /// cluster's state database was restored or the cluster cloned. Either
    /// way the report is recorded, flagged in the ledger (`ledger show`).
    /// Trusted time that went back to a clock reset you signed for the
    /// cluster (`licensegen clock-reset`) is noted, not flagged.
    ///
    /// The receipt is signed with the vendor key (an issuer key of the root):
    /// give it to the customer, who runs `kaching-verifier receipt import
    /// FILE`; it clears what this report acknowledged. Importing the same
    /// report again records nothing and writes the same receipt again.
    #[command(after_long_help = crate::exit::TABLE, verbatim_doc_comment)]
    Import {
        /// The report file (binary or armored)
        file: PathBuf,
        /// Where to write the receipt [default: beside the report, NAME.receipt.asc]
        #[arg(long, value_name = "FILE")]
        receipt: Option<PathBuf>,
        /// Record the report without signing a receipt (no passphrase needed);
        /// import it again later to write the receipt
        #[arg(long, conflicts_with = "receipt")]
        no_receipt: bool,
    },
    /// Fetch connected clusters' usage reports from a relay, import each, and post the receipts back
    ///
    /// Connected verifiers post their usage report to the relay while
    /// something is not yet acknowledged (docs/connected.md). This
    /// downloads every report the relay holds without a receipt and imports
    /// each exactly as `usage import` does: recorded in the ledger, checked
    /// against the cluster's chain (a gap exits 30, a fork or rollback 31),
    /// and answered with a receipt signed with the vendor key. The receipt
    /// is posted to the relay instead of written to a file; the cluster
    /// picks it up within `relay.receipt_poll` and clears exactly what it
    /// acknowledges. Running it again changes nothing.
    ///
    /// The token needs the publish (or admin) scope: the one `licensegen
    /// publish` uses.
    ///
    /// Example: licensegen usage pull --relay https://relay.example.com --token-file relay.token
    #[command(after_long_help = crate::exit::TABLE, verbatim_doc_comment)]
    Pull(RelayArgs),
}

/// `clock-reset`.
#[derive(Debug, Args)]
pub struct ClockResetArgs {
    /// The cluster id, as `kaching-verifier status` shows it (16 characters of a-z and 2-7)
    #[arg(long, value_name = "ID")]
    pub cluster: String,
    /// The cluster's trusted-time mark, as `kaching-verifier status` shows it (2029-03-01T12:00:00Z)
    #[arg(long, value_name = "TIME")]
    pub mark: String,
    /// How long the customer has to use the reset: 1h to 90d
    #[arg(long, value_name = "DURATION", default_value = crate::clock_reset::DEFAULT_VALID_FOR)]
    pub valid_for: String,
    /// Where to write the reset (armored); never replaces a file
    /// [default: clock-reset-<cluster>.asc in the current folder]
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `ui`.
#[derive(Debug, Args)]
pub struct UiArgs {
    /// Where to listen: a port (8080) or a loopback address with a port;
    /// 0 picks a free port. Other addresses are refused
    #[arg(long, value_name = "ADDR|PORT", default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Do not start a browser; just print the link
    #[arg(long)]
    pub no_open: bool,
}

/// `true-up`.
#[derive(Debug, Args)]
pub struct TrueUpArgs {
    /// Only customers whose name or id contains this text
    #[arg(long)]
    pub customer: Option<String>,
    /// Only this license and the licenses that replaced or preceded it (id or
    /// a unique prefix of at least 4 characters)
    #[arg(long, value_name = "ID")]
    pub license: Option<String>,
    /// Only months from the one holding DATE (2027-01-01)
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// Judge at this time instead of now: months after it are left out, and
    /// its month is open (2027-12-31 or 2027-12-31T12:00:00Z)
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// The clap command, for completions and man pages.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn argv(line: &str) -> Vec<OsString> {
        std::iter::once("licensegen")
            .chain(line.split_whitespace())
            .map(OsString::from)
            .collect()
    }

    /// The quick path may decline anything, but what it accepts must be
    /// exactly what the whole tree makes of the same argv.
    #[test]
    fn quick_parse_agrees_with_the_whole_tree() {
        let accepted = [
            "verify lic.asc",
            "verify lic.asc --pubkey v/vendor.pub",
            "verify lic.asc --pubkey=v.pub --json --at 2027-01-31 --cluster abcd --revocations r.krl",
            "verify --dir vend lic.asc --passphrase-file p --identity id",
            "verify -- --odd-file-name",
            "simulate lic.asc --nodes 12 --usage a=1 --usage b=2 --feature analytics --json",
            "simulate lic.asc --at 2027-01-31T12:00:00Z",
            "inspect lic.asc",
            "inspect lic.asc --pubkey v.pub --json --dir d",
        ];
        for line in accepted {
            let quick = parse_quick(&argv(line));
            let whole = Cli::try_parse_from(argv(line)).expect(line);
            assert_eq!(
                format!("{quick:?}"),
                format!("{:?}", Some(whole)),
                "argv {line:?}"
            );
        }
        // Help, versions, errors and every other subcommand go to the whole
        // tree, which prints them as it always did.
        let declined = [
            "",
            "--help",
            "--version",
            "verify",
            "verify --help",
            "verify -h",
            "verify --version",
            "verify lic.asc --bogus",
            "verify lic.asc --json --json",
            "verify lic.asc extra",
            "simulate lic.asc --nodes many",
            "inspect",
            "--dir d verify lic.asc",
            "issue --customer a --tier standard",
            "ledger list",
            "verif lic.asc",
        ];
        for line in declined {
            assert!(parse_quick(&argv(line)).is_none(), "argv {line:?}");
        }
    }

    /// Each quick subcommand defines the same arguments, with the same
    /// settings (names, values, env, global, conflicts), as the whole tree:
    /// an argument added to the tree cannot be missed by the quick path.
    #[test]
    fn quick_subcommands_define_the_same_arguments_as_the_whole_tree() {
        let mut whole = command();
        whole.build();
        for name in QUICK {
            let mut quick = quick_command(name).expect(name);
            quick.build();
            let args = |c: &clap::Command| {
                let sub = c.find_subcommand(name).expect(name);
                // `--help` (its text depends on the long help) never
                // reaches the quick path: it is an error to clap.
                sub.get_arguments()
                    .filter(|a| a.get_id() != "help")
                    .map(|a| format!("{a:?}"))
                    .collect::<Vec<_>>()
            };
            assert_eq!(args(&quick), args(&whole), "subcommand {name}");
        }
    }
}
