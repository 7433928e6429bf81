//! The `kaching-relay` command: serve, tokens, audit, configuration.

use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kaching_kit::stdout;

use kaching_relay::tokens::{self, Scope};
use kaching_relay::{audit, db, state, Config};

/// KACHING relay: cluster binding, heartbeats, revocation distribution.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML); see `kaching-relay default-config`.
    #[arg(long, global = true, env = "KACHING_RELAY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
}

#[derive(Subcommand)]
enum TokenCommand {
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
enum AuditCommand {
    /// Walk the hash chain; fails if any row was edited or deleted.
    Verify,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => code,
        // The reader of our output went away (`| head`): not a failure.
        Err(e) if e.chain().any(stdout::is_broken_pipe) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    let Cli { config, command } = cli;
    let load = || Config::load(config.as_deref());
    match command {
        Command::DefaultConfig => {
            stdout::print(kaching_relay::config::DEFAULT_CONFIG)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve => serve(load()?),
        Command::Token { command } => {
            let config = load()?;
            let mut conn = db::open_and_migrate(&config.db_path())?;
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
                    let mut out =
                        format!("{:<24} {:<8} {:<21} revoked\n", "name", "scope", "created");
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
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command: AuditCommand::Verify,
        } => {
            let path = load()?.db_path();
            if !path.exists() {
                anyhow::bail!("no database at {}: check data_dir", path.display());
            }
            let conn = db::open(&path)?;
            let v = audit::verify(&conn)?;
            stdout::println(&format!(
                "audit log intact: {} rows, head {}",
                v.rows, v.head
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::RelayKey => {
            let key = state::load_or_create_key(&load()?.key_path())?;
            stdout::print(&key.public().to_pem())?;
            eprintln!("kid {}", key.public().kid());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn serve(config: Config) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Escape codes belong on a terminal, not in log files or journald.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // Refuse a config without vendor keys before taking the port.
    config.trusted_keys()?;
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
        // Scripts and tests read the bound address (port 0 picks one).
        let addr = listener.local_addr()?;
        // Nobody reading it is no reason to stop serving.
        if let Err(e) = stdout::println(&format!("listening on {addr}")) {
            tracing::debug!(%e, "cannot print the listening address");
        }
        kaching_relay::run(listener, config, shutdown_signal()).await
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down");
}
