//! kaching-relay: the optional server connected clusters talk to.
//!
//! It binds each license to one live cluster, records signed heartbeats,
//! answers with relay-signed time, distributes vendor-signed revocation lists
//! (long-poll), and shows the vendor what its connected customers use. It
//! stores and forwards; it cannot forge a license or a revocation list.
//!
//! [`run`] takes a bound listener, the configuration and a shutdown future, so
//! tests bind port 0 and stop the server cleanly.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kaching_core::revocation::verify_revocation_list;
use kaching_kit::shutdown::{Listener, Shutdown};
use tokio::sync::watch;

pub mod audit;
pub mod config;
pub mod console;
pub mod db;
pub mod error;
pub mod extract;
pub mod follow;
mod front;
pub mod metrics;
pub mod openapi;
pub mod ratelimit;
pub mod responses;
pub mod roots;
pub mod routes;
pub mod state;
pub mod storage;
pub mod store;
pub mod tokens;
pub mod writer;

pub use config::Config;

use state::{AppState, CurrentList};
use storage::Storage;

/// How often a quiet relay checks for heartbeat leaves due to be sealed.
const SEAL_EVERY: Duration = Duration::from_secs(15);
/// How often old heartbeat history and rollups are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// Rows deleted per prune write: small, so heartbeats queued behind it
/// wait milliseconds, not seconds (docs/relay.md, "Storage").
const PRUNE_BATCH: u32 = 2_000;
/// Pause between two prune writes, so heartbeats take the writer in between.
const PRUNE_PAUSE: Duration = Duration::from_millis(20);

/// Serves the relay on `listener` until `shutdown` completes, then finishes
/// in-flight requests, commits queued writes and returns: [`prepare`], then
/// [`Prepared::serve`].
pub async fn run(
    listener: tokio::net::TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    prepare(config).await?.serve(listener, shutdown).await
}

/// A relay ready to serve: its configuration checked, its key loaded, its
/// database opened (on SQLite, locked for this process), its start recorded
/// and its revocation list loaded. Everything that can refuse to start has
/// run, so the binary announces its address only after [`prepare`].
pub struct Prepared {
    state: Arc<AppState>,
    storage: Arc<dyn Storage>,
    stop: Shutdown,
    limits: kaching_kit::serve::Limits,
    nofile: Option<u64>,
    serving_since: u64,
}

/// Opens and checks everything the relay needs before it serves (see [`Prepared`]).
pub async fn prepare(config: Config) -> anyhow::Result<Prepared> {
    let vendor_keys = config.trusted_keys()?;
    // Refuses to start, naming the file, when the configured root does not verify.
    let initial_root = config.initial_root()?;
    let catalog = config.tier_catalog()?;
    let relay_key = state::load_or_create_key(&config.key_path())?;
    let database = config.database()?;
    let keep_raw = !config.heartbeat_retention.is_zero();
    let storage = storage::open(&database, config.commit.max_batch, keep_raw)
        .await
        .with_context(|| format!("cannot open the database {database:?}"))?;
    // Every binding gets a full grace window from now: the time this relay
    // was down is nobody's silence (docs/relay.md, "Binding across an outage").
    let serving_since = db::now();
    storage
        .mark_serving(serving_since)
        .await
        .map_err(|e| anyhow::anyhow!("cannot record the relay's start: {}", e.message))?;
    // Heartbeats a crash left gathered but unsealed go into the audit log now.
    storage
        .seal_heartbeats(serving_since, true)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot seal pending heartbeats into the audit log: {}",
                e.message
            )
        })?;
    let nofile = kaching_kit::rlimit::raise_nofile();
    let limits = config.limits(nofile);
    let long_poll_cap = config.long_poll_cap(&limits);
    if long_poll_cap < config.max_long_polls {
        tracing::info!(
            max_long_polls = config.max_long_polls,
            long_poll_cap,
            "fewer long-polls park than max_long_polls: an eighth of the connection cap stays free for other requests"
        );
    }
    let roots = match initial_root {
        Some(initial) => {
            if !vendor_keys.is_empty() {
                tracing::warn!("vendor_keys is ignored while `root` is set: the root's issuer and revoker keys decide");
            }
            let stored = storage
                .configure_root(initial.clone(), serving_since)
                .await
                .map_err(|e| anyhow::anyhow!("cannot store the configured root: {}", e.message))?;
            Some(roots::load_chain(initial, stored))
        }
        None => None,
    };
    if let Some(r) = &roots {
        let current = r.current();
        let kid = relay_key.public().kid();
        if current
            .root
            .roles
            .get(&kaching_core::root::Role::Relay)
            .is_some_and(|role| !role.kids.contains(&kid))
        {
            tracing::warn!(
                relay_kid = %kid,
                root_version = current.root.version,
                "this relay's key is not in the relay role of the root in force: verifiers that check the root refuse its time statements"
            );
        }
    }
    let list_keys = match &roots {
        Some(r) => r.keys_for(kaching_core::root::Role::Revoker),
        None => vendor_keys.clone(),
    };
    let current = load_current_list(storage.as_ref(), &list_keys).await?;
    let stop = Shutdown::new();
    let (revocations, _) = watch::channel(current);
    let state = Arc::new(AppState {
        document: openapi::document,
        storage: storage.clone(),
        config,
        vendor_keys,
        roots,
        relay_key,
        revocations,
        shutdown: stop.listener(),
        catalog,
        metrics: Arc::new(metrics::Metrics::new(long_poll_cap)),
    });
    Ok(Prepared {
        state,
        storage,
        stop,
        limits,
        nofile,
        serving_since,
    })
}

impl Prepared {
    /// Serves on `listener` until `shutdown` completes, then finishes
    /// in-flight requests, commits queued writes and returns.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Prepared {
            state,
            storage,
            stop,
            limits,
            nofile,
            serving_since,
        } = self;
        let follower = storage
            .changes()
            .map(|changes| tokio::spawn(follow::run(state.clone(), changes, stop.listener())));
        let sealer = tokio::spawn(seal_loop(storage.clone(), stop.listener()));
        let pruner = tokio::spawn(prune_loop(
            storage.clone(),
            (
                state.config.heartbeat_retention,
                state.config.rollup_retention,
            ),
            stop.listener(),
        ));
        let app = routes::router(state.clone());
        tracing::info!(
            addr = %listener.local_addr()?,
            relay_kid = %state.relay_key.public().kid(),
            max_connections = limits.max_connections,
            open_file_limit = ?nofile,
            serving_since = %kaching_core::time::rfc3339(serving_since),
            "relay serving"
        );
        let trigger = stop.trigger();
        kaching_kit::serve::serve(listener, app, limits, async move {
            shutdown.await;
            // Long-polls and the pruner listen and return at once.
            trigger.fire();
        })
        .await
        .context("the HTTP server failed")?;
        let _ = pruner.await;
        let _ = sealer.await;
        if let Some(f) = follower {
            let _ = f.await;
        }
        drop(state);
        // Every task that could still submit a write (a request cut off by the
        // drain, the pruner) has let go of its listener once this returns.
        stop.completed().await;
        // The last heartbeats are sealed into the audit log, and queued writes
        // are committed, before the database is let go.
        if let Err(e) = storage.seal_heartbeats(db::now(), true).await {
            tracing::warn!(error = %e.message, "sealing the last heartbeats into the audit log failed");
        }
        storage
            .close()
            .await
            .map_err(|e| anyhow::anyhow!("closing the database: {}", e.message))?;
        Ok(())
    }
}

/// The newest stored revocation list, when it verifies with `keys`.
pub(crate) async fn load_current_list(
    storage: &dyn Storage,
    keys: &kaching_core::TrustedKeys,
) -> anyhow::Result<Option<Arc<CurrentList>>> {
    let bytes = storage
        .newest_list()
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the stored revocation list: {}", e.message))?;
    Ok(match bytes {
        None => None,
        Some(b) => match verify_revocation_list(&b, keys) {
            Ok(v) => Some(CurrentList::new(v)),
            Err(e) => {
                tracing::warn!(error = %e, "the stored revocation list no longer verifies with the configured vendor keys (or the root's revoker keys); not serving it until a new one is published");
                None
            }
        },
    })
}

/// Seals the heartbeat leaves gathered since the last audit row once they
/// are a minute old (a quiet relay has no commit to do it).
async fn seal_loop(storage: Arc<dyn Storage>, mut stop: Listener) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SEAL_EVERY) => {}
            () = stop.recv() => return,
        }
        if let Err(e) = storage.seal_heartbeats(db::now(), false).await {
            tracing::warn!(error = %e.message, "sealing heartbeats into the audit log failed");
        }
    }
}

async fn prune_loop(
    storage: Arc<dyn Storage>,
    (raw, rollups): (Duration, Duration),
    mut stop: Listener,
) {
    loop {
        let now = db::now();
        let (raw_before, rollups_before) = (
            now.saturating_sub(raw.as_secs()),
            now.saturating_sub(rollups.as_secs()),
        );
        let mut total = 0;
        loop {
            match storage
                .prune_history(raw_before, rollups_before, PRUNE_BATCH)
                .await
            {
                Ok(n) => {
                    total += n;
                    if n < PRUNE_BATCH as usize {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e.message, "heartbeat history pruning failed");
                    break;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(PRUNE_PAUSE) => {}
                () = stop.recv() => return,
            }
        }
        if total > 0 {
            tracing::info!(rows = total, "pruned old heartbeat history and rollups");
        }
        tokio::select! {
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
            () = stop.recv() => return,
        }
    }
}
