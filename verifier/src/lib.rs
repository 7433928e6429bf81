//! kaching-verifier: the enforcement daemon that runs on every cluster.
//!
//! It verifies the vendor's license, revocation list and trusted keys, keeps
//! local state (node leases, quota counters, the trusted-time mark) in SQLite,
//! and answers BZZZ and WHOOSH through a local HTTP API. Start it with [`run`].
//!
//! Modules, lowest first (none imports one above it): [`clock`], [`config`]
//! (TOML + env), [`state`] (SQLite), [`identity`] (cluster key), [`trust`]
//! (pinned or development trust, the root chain), [`loader`]
//! (reading and verifying files), [`reader`] (the thread that reads them),
//! [`engine`] (state, verdicts, writes, last-known-good, the engine's half of
//! connected mode), [`actor`] (the engine's thread), [`watcher`] (file
//! events), [`report`] (air-gapped documents), [`clock_reset`] (the
//! vendor's clock reset, taken with the daemon stopped), [`relay`] (the relay client
//! and its loops), [`api`] (axum routes; the only place HTTP status codes are
//! chosen), [`status`] (`kaching-verifier status`), [`exit`] (check exit codes).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod actor;
pub mod api;
pub mod clock;
pub mod clock_reset;
pub mod config;
pub mod engine;
pub mod error;
pub mod exit;
mod front;
pub mod identity;
pub mod loader;
pub mod metrics;
pub mod openapi;
pub mod reader;
pub mod relay;
pub mod report;
pub mod responses;
pub mod state;
pub mod status;
pub mod trust;
pub mod ui;
pub mod watcher;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;

pub use clock::Clock;
pub use config::Config;
pub use engine::Engine;

/// Runs the daemon on `listener` until `shutdown` completes, then finishes
/// in-flight requests, flushes state and returns — within
/// `config.shutdown_timeout` of `shutdown` completing, whatever is stuck
/// (an error then says what did not finish; acknowledged writes are
/// committed already).
///
/// Refuses to start on a non-loopback address without a bearer token, and
/// on a missing or corrupt state database (see [`state::Db::open`]). Starts
/// without a valid license: every check is then denied with the reason.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_with(listener, config, shutdown, |_| {}).await
}

/// [`run`], calling `ready` once start-up can no longer fail: the state
/// folder is locked and open, the files are loaded and the listener is
/// about to be served. `kaching-verifier run` prints its readiness line
/// (`listening on ADDR`) there, so a start that fails never printed it.
///
/// Refuses to start while another daemon holds the state folder
/// ([`state::StateLock`]).
pub async fn run_with(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(&TcpListener) + Send,
) -> anyhow::Result<()> {
    let token = config.read_token()?;
    let addr = listener.local_addr()?;
    config.check_listen(addr, token.as_deref())?;
    let _ = metrics::handle();
    let nofile = kaching_kit::rlimit::raise_nofile();
    let limits = config.limits(nofile);
    let api_limits = api::Limits {
        max_body: config.max_body_bytes,
        request_timeout: config.request_timeout,
    };
    let shutdown_timeout = config.shutdown_timeout;
    let clock = config.clock;
    let tick = config.tick;
    let watch_cfg = config.clone();
    let relay_cfg = config.relay.clone();
    // Held until this function returns (the OS drops it if the process dies).
    let state_dir = config.state_dir.clone();
    let _lock = tokio::task::spawn_blocking(move || state::StateLock::acquire(&state_dir))
        .await
        .context("locking the state folder panicked")??;
    let engine = tokio::task::spawn_blocking(move || Engine::open(config, true))
        .await
        .context("engine start panicked")??;
    let cluster_id = engine.identity.cluster_id.clone();
    relay::check_relay_keys(&relay_cfg, engine.current().relay_signers.is_some())?;
    if engine.trust_mode() == trust::Mode::Development {
        tracing::warn!(
            trusted_keys = %watch_cfg.trusted_keys.display(),
            "development build: no root of trust is built in, so trust comes from the trusted-keys file, \
             which anyone who can edit it controls; ship a pinned build (docs/verifier.md)"
        );
    }
    let (handle, engine_thread) = actor::spawn(engine, clock)?;
    let _watcher = watcher::spawn(&watch_cfg, handle.tx.clone())
        .context("cannot watch the license folders")?;
    let ticker = {
        let tx = handle.tx.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(tick);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                if tx.send(actor::Command::Tick).is_err() {
                    break;
                }
            }
        })
    };
    let (relay_stop, relay_stop_rx) = tokio::sync::watch::channel(false);
    let client = if relay_cfg.urls.is_empty() {
        Ok(None)
    } else {
        relay::client::Client::new(
            &relay_cfg.urls,
            handle.published.clone(),
            cluster_id.clone(),
            relay_cfg.timeout,
        )
        .map(Some)
    };
    let relay_tasks = match client {
        Ok(Some(client)) => {
            tracing::info!(relay = ?relay_cfg.urls, "connected mode: talking to the relay");
            relay::spawn(
                client,
                relay_cfg.long_poll,
                relay_cfg.max_backoff,
                handle.tx.clone(),
                relay_stop_rx,
            )
        }
        Ok(None) => Vec::new(),
        Err(e) => {
            ticker.abort();
            let _ = handle.tx.send(actor::Command::Shutdown);
            return Err(e.context("cannot set up the HTTP client for the relay"));
        }
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let app = api::router(
        api::AppState::new(api::Shared {
            handle: handle.clone(),
            token,
            allowed_hosts: watch_cfg.allowed_hosts.clone().into(),
            sign_ins: Arc::new(kaching_kit::web::guard::SignInLimit::default()),
            stopping: stop_rx,
            event_streams: Arc::new(tokio::sync::Semaphore::new(api::max_event_streams(
                limits.max_connections,
            ))),
            document: openapi::document,
        }),
        api_limits,
    );
    tracing::info!(
        %addr,
        cluster_id,
        max_connections = limits.max_connections,
        open_file_limit = ?nofile,
        "kaching-verifier listening"
    );
    ready(&listener);
    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<Instant>();
    let served = kaching_kit::serve::serve(listener, app, limits, async move {
        shutdown.await;
        let _ = signalled_tx.send(Instant::now());
        tracing::info!("shutting down: finishing in-flight requests");
        // Event streams watch this and end at once.
        let _ = stop_tx.send(true);
    })
    .await;
    // Everything below shares one deadline: shutdown_timeout from the signal.
    let deadline = signalled_rx.await.unwrap_or_else(|_| Instant::now()) + shutdown_timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    // Stop the relay tasks first: the last heartbeat (deactivation) needs the engine.
    let _ = relay_stop.send(true);
    let bound = relay_cfg.timeout + Duration::from_secs(1);
    for t in relay_tasks {
        if tokio::time::timeout(bound.min(left()), t).await.is_err() {
            tracing::warn!("the relay worker did not stop in time; leaving it");
        }
    }
    ticker.abort();
    let _ = handle.tx.send(actor::Command::Shutdown);
    let joined = tokio::time::timeout(
        left(),
        tokio::task::spawn_blocking(move || engine_thread.join()),
    )
    .await
    .map_err(|_| {
        anyhow::anyhow!(
            "the engine did not finish within shutdown_timeout ({}): stopping without the final flush \
             (every acknowledged write is already committed)",
            humantime::format_duration(shutdown_timeout)
        )
    })?;
    let flushed = joined
        .context("engine thread join failed")?
        .map_err(|_| anyhow::anyhow!("engine thread panicked"))?;
    served.context("HTTP server failed")?;
    flushed.context("flushing state at shutdown")?;
    tracing::info!("stopped cleanly");
    Ok(())
}
