//! Fan-out across replicas: a list or root published through another
//! replica reaches this one's long-polls.
//!
//! The PostgreSQL backend ticks [`crate::storage::Storage::changes`] on every
//! `NOTIFY` (sent in the publishing transaction, so delivered at its commit)
//! and when its listening connection comes back after a loss. Whatever the
//! tick, and at least every [`CATCH_UP`] in case a notification was missed,
//! the newest list and the roots above ours are read from the tables: the
//! tables are the truth, the notification only says "look now".

use std::sync::Arc;
use std::time::Duration;

use kaching_kit::shutdown::Listener;
use tokio::sync::watch;

use crate::state::AppState;

/// Longest a missed notification goes unnoticed; also how often a replica
/// records that it is alive.
pub const CATCH_UP: Duration = Duration::from_secs(5);

/// A fleet of replicas none of which recorded being alive for this long
/// was down: the next replica to start restarts `serving_since`, so the
/// outage counts against no binding. A replica starting while others serve
/// leaves it alone (restarting one replica is no outage).
pub const FLEET_DOWN_AFTER: Duration = Duration::from_secs(30);

/// Follows other replicas' publications until shutdown.
pub async fn run(st: Arc<AppState>, mut changes: watch::Receiver<u64>, mut stop: Listener) {
    loop {
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(CATCH_UP) => {}
            () = stop.recv() => return,
        }
        if let Err(e) = catch_up(&st).await {
            tracing::warn!(error = %e, "cannot read what other replicas published; retrying");
        }
        if let Err(e) = st.storage.mark_alive(crate::db::now()).await {
            tracing::warn!(error = %e.message, "cannot record that this replica serves; retrying");
        }
    }
}

/// Reads the roots above ours and the newest list, and serves what is newer.
pub async fn catch_up(st: &AppState) -> anyhow::Result<()> {
    if let Some(roots) = &st.roots {
        let above = st
            .storage
            .roots_above(roots.current().root.version)
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        if !above.is_empty() && roots.extend(above) > 0 {
            tracing::info!(
                version = roots.current().root.version,
                "root published through another replica"
            );
            // A new revoker or revocation floor may change which list is served.
            let list = crate::load_current_list(st.storage.as_ref(), &st.revocation_keys()).await?;
            st.revocations.send_replace(list);
            return Ok(());
        }
    }
    let list = crate::load_current_list(st.storage.as_ref(), &st.revocation_keys()).await?;
    if let Some(list) = list {
        let version = list.version();
        if st.serve_if_newer(list) {
            tracing::info!(version, "revocation list published through another replica");
        }
    }
    Ok(())
}
