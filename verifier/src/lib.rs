//! kaching-verifier: the enforcement daemon that runs on every cluster.
//!
//! It verifies the vendor's license, revocation list and trusted keys, keeps
//! local state (node leases, quota counters, the trusted-time mark) in SQLite,
//! and answers BZZZ and WHOOSH through a local HTTP API. Start it with [`run`].
//!
//! Modules: [`config`] (TOML + env), [`state`] (SQLite), [`identity`] (cluster
//! key), [`loader`] (file verification), [`watcher`] (file events),
//! [`reload`] (last-known-good), [`engine`] and [`ops`] (verdict and writes), [`actor`] (the engine thread), [`api`] (axum
//! routes), [`report`] (air-gapped documents), [`relay`] (connected mode), [`exit`] (check exit codes).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod actor;
pub mod api;
pub mod clock;
pub mod config;
pub mod engine;
pub mod error;
pub mod exit;
pub mod identity;
pub mod loader;
pub mod metrics;
pub mod ops;
pub mod relay;
pub mod reload;
pub mod report;
pub mod state;
pub mod watcher;

use std::future::Future;

use anyhow::Context;
use tokio::net::TcpListener;

pub use clock::Clock;
pub use config::Config;
pub use engine::Engine;

/// Runs the daemon on `listener` until `shutdown` completes, then finishes
/// in-flight requests, flushes state and returns.
///
/// Refuses to start on a non-loopback address without a bearer token, and
/// on a missing or corrupt state database (see [`state::Db::open`]). Starts
/// without a valid license: every check is then denied with the reason.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let token = config.read_token()?;
    let addr = listener.local_addr()?;
    config.check_listen(addr, token.as_deref())?;
    let _ = metrics::handle();
    let clock = config.clock;
    let tick = config.tick;
    let max_body = config.max_body_bytes;
    let watch_cfg = config.clone();
    let relay_cfg = config.relay.clone();
    let relay_key = relay::load_relay_key(&relay_cfg)?;
    let engine = tokio::task::spawn_blocking(move || Engine::open(config, true))
        .await
        .context("engine start panicked")??;
    let cluster_id = engine.identity.cluster_id.clone();
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
    let client = match (&relay_cfg.url, relay_key) {
        (Some(url), Some(key)) => {
            relay::client::Client::new(url, key, cluster_id.clone(), relay_cfg.timeout).map(Some)
        }
        _ => Ok(None),
    };
    let relay_tasks = match client {
        Ok(Some(client)) => {
            tracing::info!(relay = ?relay_cfg.url, "connected mode: talking to the relay");
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
        api::AppState {
            handle: handle.clone(),
            token,
            stopping: stop_rx,
        },
        max_body,
    );
    tracing::info!(%addr, cluster_id, "kaching-verifier listening");
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight requests");
            let _ = stop_tx.send(true);
        })
        .await;
    // Stop the relay tasks first: the last heartbeat (deactivation) needs the engine.
    let _ = relay_stop.send(true);
    let bound = relay_cfg.timeout + std::time::Duration::from_secs(1);
    for t in relay_tasks {
        if tokio::time::timeout(bound, t).await.is_err() {
            tracing::warn!("the relay worker did not stop in time; leaving it");
        }
    }
    ticker.abort();
    let _ = handle.tx.send(actor::Command::Shutdown);
    let flushed = tokio::task::spawn_blocking(move || engine_thread.join())
        .await
        .context("engine thread join failed")?
        .map_err(|_| anyhow::anyhow!("engine thread panicked"))?;
    served.context("HTTP server failed")?;
    flushed.context("flushing state at shutdown")?;
    tracing::info!("stopped cleanly");
    Ok(())
}
