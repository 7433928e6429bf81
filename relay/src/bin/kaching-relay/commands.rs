//! One function per subcommand. Output meant for scripts goes to stdout
//! through `kaching_kit::stdout` (a closed pipe ends quietly); notes for the
//! person at the terminal go to stderr.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use kaching_kit::stdout;
use kaching_relay::{audit, db, state, tokens, Config};

use crate::cli::{AuditCommand, Cli, Command, TokenCommand};

/// Runs the subcommand `cli` names.
pub fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let Cli { config, command } = cli;
    let load = || Config::load(config.as_deref());
    match command {
        Command::DefaultConfig => Ok(stdout::print(kaching_relay::config::DEFAULT_CONFIG)?),
        Command::Serve => serve(load()?),
        Command::Token { command } => token(&load()?.db_path(), command),
        Command::Audit {
            command: AuditCommand::Verify,
        } => audit_verify(&load()?.db_path()),
        Command::RelayKey => relay_key(&load()?.key_path()),
        Command::Completions { shell } => Ok(kaching_kit::manual::completions(
            crate::cli::command(),
            shell,
        )?),
        Command::Man { out } => Ok(kaching_kit::manual::man(
            crate::cli::command(),
            out.as_deref(),
        )?),
    }
}

/// `serve`: logs to stderr, prints the bound address, serves until SIGTERM or Ctrl-C.
fn serve(config: Config) -> anyhow::Result<()> {
    kaching_kit::log::init("info");
    // Refuse a config without vendor keys (or root), with a root that does
    // not verify, or with a tier catalog that does not load, before taking the port.
    config.trusted_keys()?;
    config.initial_root()?;
    config.tier_catalog()?;
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {}: is another process using it?",
                    config.listen
                )
            })?;
        kaching_kit::serve::announce(&listener)?;
        let shutdown = async {
            kaching_kit::shutdown::signal().await;
            tracing::info!("shutting down");
        };
        kaching_relay::run(listener, config, shutdown).await
    })
}

/// `token create|list|revoke`.
fn token(db_path: &Path, command: TokenCommand) -> anyhow::Result<()> {
    let mut conn = db::open_and_migrate(db_path)?;
    let now = db::now();
    match command {
        TokenCommand::Create { scope, name } => {
            let name = name.unwrap_or_else(|| format!("{scope}-{now}"));
            let token = tokens::create(&mut conn, scope, &name, now)?;
            eprintln!("created {scope} token {name:?}; it is shown only this once:");
            stdout::println(&token)?;
        }
        TokenCommand::List => {
            let all = tokens::list(&conn)?;
            let mut out = format!("{:<24} {:<8} {:<21} revoked\n", "name", "scope", "created");
            for t in all {
                writeln!(
                    out,
                    "{:<24} {:<8} {:<21} {}",
                    t.name,
                    t.scope,
                    kaching_core::time::rfc3339(t.created_at),
                    t.revoked_at
                        .map(kaching_core::time::rfc3339)
                        .unwrap_or_else(|| "-".into())
                )?;
            }
            stdout::print(&out)?;
        }
        TokenCommand::Revoke { name } => {
            tokens::revoke(&mut conn, &name, now)?;
            eprintln!("revoked token {name:?}");
        }
    }
    Ok(())
}

/// `audit verify`: walks the hash chain of an existing database (never creates one).
fn audit_verify(db_path: &Path) -> anyhow::Result<()> {
    if !db_path.exists() {
        anyhow::bail!("no database at {}: check data_dir", db_path.display());
    }
    let conn = db::open(db_path)?;
    let v = audit::verify(&conn)?;
    stdout::println(&format!(
        "audit log intact: {} rows, head {}",
        v.rows, v.head
    ))?;
    Ok(())
}

/// `relay-key`: prints the public key clusters pin, creating the key pair on first use.
fn relay_key(key_path: &Path) -> anyhow::Result<()> {
    let key = state::load_or_create_key(key_path)?;
    stdout::print(&key.public().to_pem())?;
    eprintln!("kid {}", key.public().kid());
    Ok(())
}
