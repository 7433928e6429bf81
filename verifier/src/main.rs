//! `kaching-verifier`: the license enforcement daemon and its helper commands.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use kaching_kit::stdout;
use kaching_verifier::{exit, identity::write_atomic, report, Config, Engine};

/// Where the configuration is looked for when neither `--config` nor
/// `KACHING_CONFIG` names one (the .deb installs it there).
const DEFAULT_CONFIG: &str = "/etc/kaching/verifier.toml";

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
        /// Config file (TOML) [default: /etc/kaching/verifier.toml when it
        /// exists, else the built-in defaults].
        #[arg(long, short, env = "KACHING_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Evaluate the license once and exit with its state's code
    /// (0 usable, 10 invalid/unlicensed, 11 revoked, 12 suspended, 13 expired,
    /// 14 not yet valid, 15 clock tampered, 16 overdue, 1 error).
    Check {
        /// Config file (TOML) [default: /etc/kaching/verifier.toml].
        #[arg(long, short, env = "KACHING_CONFIG")]
        config: Option<PathBuf>,
        /// Print the status JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
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
    /// Write a signed usage report (counters, peak nodes, upgrade requests).
    UsageReport {
        /// Config file (TOML) [default: /etc/kaching/verifier.toml].
        #[arg(long, short, env = "KACHING_CONFIG")]
        config: Option<PathBuf>,
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
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
        // The reader of our output went away (`| head -1`): not a failure.
        Err(e) if e.chain().any(stdout::is_broken_pipe) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::ERROR as u8)
        }
    }
}

/// Whether a command may fall back to the built-in defaults when no
/// configuration file is found.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fallback {
    /// `run`, `status`: the defaults are a working setup.
    Defaults,
    /// `check`, `activation-request`, `usage-report`: these would create the
    /// default state folder and a new cluster identity as a side effect.
    Refuse,
}

/// The configuration: `--config`/`KACHING_CONFIG`, else
/// /etc/kaching/verifier.toml when it exists, else the defaults (when
/// `fallback` allows, or `KACHING_STATE_DIR` names the state folder).
fn load_config(
    given: Option<PathBuf>,
    fallback: Fallback,
    command: &str,
) -> anyhow::Result<Config> {
    let default = Path::new(DEFAULT_CONFIG);
    let file = given.or_else(|| default.is_file().then(|| default.to_path_buf()));
    if file.is_none()
        && fallback == Fallback::Refuse
        && std::env::var_os("KACHING_STATE_DIR").is_none()
    {
        anyhow::bail!(
            "no configuration: looked for --config, the KACHING_CONFIG environment variable and {DEFAULT_CONFIG}. \
             `{command}` does not create the default state folder ({}) and a new cluster key on its own. \
             Write the configuration first (`kaching-verifier default-config > {DEFAULT_CONFIG}`, then edit it) \
             or pass --config FILE",
            Config::default().state_dir.display()
        );
    }
    Config::load(file.as_deref())
}

fn dispatch(cmd: Command) -> anyhow::Result<i32> {
    match cmd {
        Command::Run { config } => {
            let cfg = load_config(config, Fallback::Defaults, "run")?;
            run_daemon(cfg)?;
            Ok(0)
        }
        Command::Check { config, json } => {
            let cfg = load_config(config, Fallback::Refuse, "check")?;
            let engine = Engine::open(cfg, true)?;
            let published = engine.current();
            let text = if json {
                serde_json::to_string_pretty(&published.status)?
            } else {
                let v = &published.verdict;
                format!("{}: {}", v.state, v.reason)
            };
            // The exit code is the answer; a reader that left early changes nothing.
            if let Err(e) = stdout::println(&text) {
                if !stdout::is_broken_pipe(&e) {
                    return Err(e.into());
                }
            }
            Ok(exit::for_state(published.verdict.state))
        }
        Command::Status { config, json, url } => {
            let cfg = load_config(config, Fallback::Defaults, "status")?;
            status::show(&cfg, url, json)?;
            Ok(0)
        }
        Command::ActivationRequest { config, out } => {
            let cfg = load_config(config, Fallback::Refuse, "activation-request")?;
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
            let cfg = load_config(config, Fallback::Refuse, "usage-report")?;
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
            stdout::print(kaching_verifier::config::EXAMPLE)?;
            Ok(0)
        }
        Command::Completions { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "kaching-verifier", &mut buf);
            stdout::print(&String::from_utf8_lossy(&buf))?;
            Ok(0)
        }
        Command::Man { out } => {
            man(out.as_deref())?;
            Ok(0)
        }
    }
}

/// `man [--out DIR]`: the top page on stdout, or every page into `DIR`.
fn man(dir: Option<&Path>) -> anyhow::Result<()> {
    let cmd = Cli::command();
    match dir {
        None => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut buf)
                .context("cannot render the man page")?;
            stdout::print(&String::from_utf8_lossy(&buf))?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("cannot write man pages into {}", dir.display()))?;
            eprintln!("wrote man pages into {}", dir.display());
        }
    }
    Ok(())
}

fn run_daemon(cfg: Config) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let shutdown_timeout = cfg.shutdown_timeout;
    let result = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .with_context(|| {
                format!(
                "cannot listen on {}: is another verifier running? change `listen` in the config",
                cfg.listen
            )
            })?;
        // Scripts and tests read the bound address (port 0 picks one).
        let addr = listener.local_addr()?;
        if let Err(e) = stdout::println(&format!("listening on {addr}")) {
            tracing::debug!(%e, "cannot print the listening address");
        }
        let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            shutdown_signal().await;
            let _ = signalled_tx.send(());
        };
        // `run` bounds its own shutdown by shutdown_timeout; this is the
        // backstop should anything in it not keep that promise.
        let backstop = async move {
            if signalled_rx.await.is_ok() {
                tokio::time::sleep(shutdown_timeout + Duration::from_millis(500)).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            r = kaching_verifier::run(listener, cfg, shutdown) => r,
            () = backstop => Err(anyhow::anyhow!(
                "did not stop within shutdown_timeout ({}); exiting anyway (acknowledged writes are committed)",
                humantime::format_duration(shutdown_timeout)
            )),
        }
    });
    // Threads stuck in the kernel (a hung file system) must not hold the exit.
    rt.shutdown_timeout(Duration::from_millis(100));
    result
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
