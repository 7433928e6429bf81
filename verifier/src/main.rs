//! `kaching-verifier`: the license enforcement daemon and its helper commands.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kaching_verifier::{exit, identity::write_atomic, report, Config, Engine};

mod status;

/// KACHING's enforcement daemon: verifies the license and answers BZZZ and
/// WHOOSH on a local API.
#[derive(Debug, Parser)]
#[command(name = "kaching-verifier", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon (until SIGTERM or SIGINT).
    Run {
        /// Config file (TOML); defaults apply without one.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Evaluate the license once and exit with its state's code
    /// (0 usable, 10 invalid/unlicensed, 11 revoked, 12 suspended, 13 expired,
    /// 14 not yet valid, 15 clock tampered, 16 overdue, 1 error).
    Check {
        /// Config file (TOML).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Print the status JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Ask the running daemon for its status and print it.
    Status {
        /// Config file (TOML): gives the address and token.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
        /// Daemon URL (default: from the config's listen address).
        #[arg(long)]
        url: Option<String>,
    },
    /// Write a signed activation request for this cluster (send it to your vendor).
    ActivationRequest {
        /// Config file (TOML).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
    },
    /// Write a signed usage report (counters, peak nodes, upgrade requests).
    UsageReport {
        /// Config file (TOML).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the default configuration, with every key documented.
    DefaultConfig,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE as u8 } else { 0 });
        }
    };
    // The daemon logs what it does; one-shot commands only what went wrong.
    let default_level = match cli.command {
        Command::Run { .. } => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KACHING_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match dispatch(cli.command) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::ERROR as u8)
        }
    }
}

fn dispatch(cmd: Command) -> anyhow::Result<i32> {
    match cmd {
        Command::Run { config } => {
            let cfg = Config::load(config.as_deref())?;
            run_daemon(cfg)?;
            Ok(0)
        }
        Command::Check { config, json } => {
            let cfg = Config::load(config.as_deref())?;
            let engine = Engine::open(cfg, true)?;
            let published = engine.current();
            if json {
                println!("{}", serde_json::to_string_pretty(&published.status)?);
            } else {
                let v = &published.verdict;
                println!("{}: {}", v.state, v.reason);
            }
            Ok(exit::for_state(published.verdict.state))
        }
        Command::Status { config, json, url } => {
            let cfg = Config::load(config.as_deref())?;
            status::show(&cfg, url, json)?;
            Ok(0)
        }
        Command::ActivationRequest { config, out } => {
            let cfg = Config::load(config.as_deref())?;
            let now = cfg.clock.now();
            let engine = Engine::open(cfg, true)?;
            let text = report::activation_request(&engine, now);
            write_atomic(&out, text.as_bytes())?;
            eprintln!(
                "wrote activation request for cluster {} to {}: send it to your vendor (licensegen issue --bind {})",
                engine.identity.cluster_id,
                out.display(),
                out.display()
            );
            Ok(0)
        }
        Command::UsageReport { config, out } => {
            let cfg = Config::load(config.as_deref())?;
            let now = cfg.clock.now();
            let mut engine = Engine::open(cfg, false)?;
            let (text, r) = report::usage_report(&mut engine, now)?;
            write_atomic(&out, text.as_bytes())?;
            eprintln!(
                "wrote usage report for license {} ({} metrics, peak {} nodes, {} upgrade requests) to {}: send it to your vendor (licensegen usage import {})",
                r.license_id,
                r.counters.len(),
                r.peak_nodes,
                r.upgrade_requests.len(),
                out.display(),
                out.display()
            );
            Ok(0)
        }
        Command::DefaultConfig => {
            print!("{}", kaching_verifier::config::EXAMPLE);
            Ok(0)
        }
    }
}

fn run_daemon(cfg: Config) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async move {
        let token = cfg.read_token()?;
        cfg.check_listen(cfg.listen, token.as_deref())?;
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .with_context(|| {
                format!(
                "cannot listen on {}: is another verifier running? change `listen` in the config",
                cfg.listen
            )
            })?;
        kaching_verifier::run(listener, cfg, shutdown_signal()).await
    })
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
