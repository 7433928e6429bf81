//! What each `kaching-verifier` subcommand does.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::CommandFactory;
use kaching_core::time::rfc3339;
use kaching_kit::stdout;
use kaching_verifier::{exit, report, Config, Engine};

use crate::cli::{CheckArgs, Cli, Command, ReceiptCommand};

/// Where the configuration is looked for when neither `--config` nor
/// `KACHING_CONFIG` names one (the .deb installs it there).
const DEFAULT_CONFIG: &str = "/etc/kaching/verifier.toml";

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

/// Runs one subcommand; the number is the exit code.
pub fn dispatch(cmd: Command) -> anyhow::Result<i32> {
    match cmd {
        Command::Run { config } => {
            let cfg = load_config(config, Fallback::Defaults, "run")?;
            run_daemon(cfg)?;
            Ok(0)
        }
        Command::Check(CheckArgs {
            config,
            json,
            allow_development_trust,
        }) => {
            let cfg = load_config(config, Fallback::Refuse, "check")?;
            let trusted_keys = cfg.trusted_keys.clone();
            // Read-only: a check writes nothing (docs/verifier.md "check").
            let engine = Engine::open_read_only(cfg)?;
            if engine.trust_mode() == kaching_verifier::trust::Mode::Development
                && !allow_development_trust
            {
                anyhow::bail!(
                    "this is a development build: no root of trust is built in, so trust comes from {}, \
                     which anyone who can edit it controls. Use a verifier built with the vendor's root \
                     (KACHING_PINNED_ROOT, docs/verifier.md \"Pinned and development builds\"), or pass \
                     --allow-development-trust to check anyway",
                    trusted_keys.display()
                );
            }
            let published = engine.current();
            let text = if json {
                serde_json::to_string_pretty(&published.status)?
            } else {
                verdict_text(&published)
            };
            // The exit code is the answer; a reader that left early changes nothing.
            if let Err(e) = stdout::println(&text) {
                if !stdout::is_broken_pipe(&e) {
                    return Err(e.into());
                }
            }
            Ok(exit::for_state(published.verdict.state))
        }
        Command::Explain {
            config,
            at,
            feature,
            json,
        } => {
            let cfg = load_config(config, Fallback::Refuse, "explain")?;
            let at = match at.as_deref() {
                None => None,
                Some(text) => Some(kaching_core::time::parse_rfc3339(text).ok_or_else(|| {
                    anyhow::anyhow!(
                        "--at {text:?} is not a time: write a date (2027-01-31, midnight UTC) or 2027-01-31T12:00:00Z"
                    )
                })?),
            };
            let clock = cfg.clock;
            let engine = Engine::open(cfg, true)?;
            // After opening: the mark it recorded is not ahead of this reading.
            let now = at.unwrap_or_else(|| clock.now());
            let e = engine.explain(now);
            let text = if json {
                serde_json::to_string_pretty(&e)?
            } else {
                let mode = engine.trust_mode();
                let mut t = e.render(feature.as_deref());
                if mode == kaching_verifier::trust::Mode::Development {
                    t.push_str(
                        "note           development build: trust comes from the editable trusted-keys file\n",
                    );
                }
                t
            };
            if let Err(err) = stdout::print(&text) {
                if !stdout::is_broken_pipe(&err) {
                    return Err(err.into());
                }
            }
            Ok(exit::for_state(e.verdict.state))
        }
        Command::AcceptDowngrade { config } => {
            let cfg = load_config(config, Fallback::Refuse, "accept-downgrade")?;
            let db = kaching_verifier::state::Db::open(&cfg.state_dir, false)?;
            let Some((bytes, summary)) = db.pending_downgrade()? else {
                anyhow::bail!(
                    "no downgrade is waiting in {}: nothing to accept (status lists one when \
                     hold_downgrades = true and a new license takes something away)",
                    cfg.state_dir.display()
                );
            };
            db.accept_downgrade(&bytes)?;
            stdout::println(&format!(
                "accepted: {summary}\nthe verifier puts the new license in force at its next file check (within tick = {})",
                humantime::format_duration(cfg.tick)
            ))?;
            Ok(0)
        }
        Command::Status {
            config,
            json,
            url,
            token_file,
        } => {
            let mut cfg = load_config(config, Fallback::Defaults, "status")?;
            if let Some(file) = token_file {
                cfg.token = None;
                cfg.token_file = Some(file);
            }
            kaching_verifier::status::show(&cfg, url, json)?;
            Ok(0)
        }
        Command::ActivationRequest { config, out } => {
            let cfg = load_config(config, Fallback::Refuse, "activation-request")?;
            let now = cfg.clock.now();
            let engine = Engine::open(cfg, true)?;
            let text = report::activation_request(&engine, now);
            kaching_kit::fs::write_atomic(&out, text.as_bytes(), false)?;
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
            let r = report::usage_report(&mut engine, now, |text| {
                kaching_kit::fs::write_atomic(&out, text.as_bytes(), false)
                    .with_context(|| format!("cannot write the usage report to {}", out.display()))
            })?;
            let seq = r.chain.as_ref().map_or(0, |c| c.seq);
            eprintln!(
                "wrote usage report {seq} for license {} to {}: everything your vendor has not acknowledged yet ({} upgrade request(s), {} metric(s), peak {} nodes)\n\
                 send it to your vendor (licensegen usage import {}); their receipt clears what it acknowledges (kaching-verifier receipt import RECEIPT)",
                r.license_id,
                out.display(),
                r.upgrade_requests.len(),
                r.counters.len(),
                r.peak_nodes,
                out.display()
            );
            Ok(0)
        }
        Command::Receipt(ReceiptCommand::Import { config, file }) => {
            let cfg = load_config(config, Fallback::Refuse, "receipt import")?;
            let now = cfg.clock.now();
            let mut engine = Engine::open(cfg, false)?;
            let input = read_document(&file, "receipt", "the receipt file from your vendor")?;
            let done = report::import_receipt(&mut engine, &input, now)?;
            let r = &done.receipt;
            let c = &done.cleared;
            let buckets = c.counters.len() + c.node_peaks.len();
            let text = if done.again && c.is_empty() {
                format!(
                    "receipt for usage report {} was imported before; nothing changed",
                    r.report_seq
                )
            } else {
                format!(
                    "receipt for usage report {} applied: {} upgrade request(s) and {buckets} closed period(s) acknowledged by your vendor; they are no longer reported",
                    r.report_seq,
                    c.upgrade_requests.len()
                )
            };
            stdout::println(&text)?;
            Ok(0)
        }
        Command::ClockReset { config, file } => {
            let cfg = load_config(config, Fallback::Refuse, "clock-reset")?;
            let input = read_document(
                &file,
                "clock reset",
                "the clock reset file from your vendor",
            )?;
            let done = kaching_verifier::clock_reset::apply(cfg, &input)?;
            let r = &done.reset;
            let head = match done.taken {
                kaching_core::clock_reset::Taken::Lowered { from, to } => format!(
                    "clock reset {} taken: the trusted-time mark went down from {} to {}",
                    r.id_text(),
                    rfc3339(from),
                    rfc3339(to)
                ),
                kaching_core::clock_reset::Taken::NotAhead { mark } => format!(
                    "the trusted-time mark ({}) is not ahead of the time clock reset {} was signed ({}): nothing changed, and the reset is not spent",
                    rfc3339(mark),
                    r.id_text(),
                    rfc3339(r.issued)
                ),
            };
            stdout::println(&format!(
                "{head}\nlicense now: {}\nstart the daemon again: systemctl start kaching-verifier",
                verdict_text(&done.after)
            ))?;
            Ok(0)
        }
        Command::DefaultConfig => {
            stdout::print(kaching_verifier::config::EXAMPLE)?;
            Ok(0)
        }
        Command::Completions { shell } => {
            kaching_kit::manual::completions(Cli::command(), shell)?;
            Ok(0)
        }
        Command::Man { out } => {
            kaching_kit::manual::man(Cli::command(), out.as_deref())?;
            Ok(0)
        }
    }
}

/// `check`'s one-line answer, `state: reason`; for `clock_tampered`, with
/// the line saying what to send the vendor for a clock reset.
fn verdict_text(published: &kaching_verifier::engine::Published) -> String {
    let v = &published.verdict;
    let mut text = format!("{}: {}", v.state, v.reason);
    if v.state == kaching_core::State::ClockTampered {
        let s = &published.status;
        text.push('\n');
        text.push_str(&kaching_verifier::clock_reset::request_line(
            &s.cluster_id,
            &s.trusted_time,
        ));
    }
    text
}

/// A document from the vendor named on the command line: a regular file
/// (never a FIFO, device or folder), at most the documents' size limit.
/// `noun` names it when missing; a special file is refused with "replace
/// it with `replace_with`".
fn read_document(file: &Path, noun: &str, replace_with: &str) -> anyhow::Result<Vec<u8>> {
    let limit = kaching_core::MAX_DOCUMENT_SIZE as u64;
    match kaching_verifier::loader::read_regular(file, limit, replace_with) {
        kaching_verifier::loader::Loaded::Good(b) => Ok(b),
        kaching_verifier::loader::Loaded::Missing => {
            anyhow::bail!("{noun} {} does not exist", file.display())
        }
        kaching_verifier::loader::Loaded::Rejected(why) => anyhow::bail!("{why}"),
    }
}

fn run_daemon(cfg: Config) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let shutdown_timeout = cfg.shutdown_timeout;
    let result = rt.block_on(async move {
        // Before the address is announced: a SIGTERM from then on stops
        // cleanly, and a SIGHUP (a terminal closing, a habit from other
        // daemons) never stops it.
        let signalled = kaching_kit::shutdown::signal_with_hangup(|| {
            tracing::info!("SIGHUP: files are watched and reloaded on change; nothing to do");
        });
        let listener = kaching_kit::serve::bind(cfg.listen, "`listen` in the config")
            .await
            .map_err(anyhow::Error::msg)?;
        let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            signalled.await;
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
            // Scripts and tests read the bound address (port 0 picks one),
            // printed once the state is open and the daemon serves.
            r = kaching_verifier::run_with(listener, cfg, shutdown, |l| {
                if let Err(e) = kaching_kit::serve::announce(l) {
                    tracing::warn!(%e, "cannot read the listening address");
                }
            }) => r,
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
