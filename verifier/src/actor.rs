//! The engine's thread. It owns the [`Engine`] (and so the SQLite connection)
//! and applies commands one at a time; the API talks to it through a channel
//! and reads the published verdict through a `tokio::sync::watch`, so reads
//! never wait for writes.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::clock::Clock;
use crate::engine::{Engine, Event, Published, Reply};

/// Where a reply goes.
pub type ReplyTo = oneshot::Sender<anyhow::Result<Reply>>;

/// Work for the engine thread.
#[derive(Debug)]
pub enum Command {
    /// Files changed: re-read them.
    Reload,
    /// Time passed: re-evaluate, cull leases.
    Tick,
    /// Take or renew a node lease.
    Lease(String, ReplyTo),
    /// Give a node lease back.
    Release(String, ReplyTo),
    /// Spend quota: metric, amount, idempotency key.
    Spend(String, u64, String, ReplyTo),
    /// Queue an upgrade request: tier, message.
    Upgrade(String, String, ReplyTo),
    /// List queued upgrade requests.
    ListUpgrades(ReplyTo),
    /// Connected mode: work for or from the relay worker.
    Relay(crate::relay::Request),
    /// Flush and stop.
    Shutdown,
}

/// The API's side of the engine.
#[derive(Clone)]
pub struct Handle {
    /// Commands to the engine thread.
    pub tx: mpsc::UnboundedSender<Command>,
    /// The verdict in force.
    pub published: watch::Receiver<Arc<Published>>,
    /// Every state change, for `GET /v1/events`.
    pub events: broadcast::Sender<Event>,
}

/// Starts the engine thread; the join handle yields the flush result.
pub fn spawn(
    mut engine: Engine,
    clock: Clock,
) -> anyhow::Result<(Handle, std::thread::JoinHandle<anyhow::Result<()>>)> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Command>();
    let (pub_tx, pub_rx) = watch::channel(engine.current());
    let (ev_tx, _) = broadcast::channel(1024);
    let events = ev_tx.clone();
    let join = std::thread::Builder::new()
        .name("kaching-engine".into())
        .spawn(move || {
            while let Some(cmd) = rx.blocking_recv() {
                let now = clock.now();
                let (result, reply) = match cmd {
                    Command::Shutdown => break,
                    Command::Reload => {
                        engine.reload_if_changed(now);
                        (None, None)
                    }
                    Command::Tick => {
                        engine.tick(now);
                        (None, None)
                    }
                    Command::Lease(node, r) => (Some(engine.lease(&node, now)), Some(r)),
                    Command::Release(node, r) => (Some(engine.release(&node, now)), Some(r)),
                    Command::Spend(m, a, k, r) => (Some(engine.spend(&m, a, &k, now)), Some(r)),
                    Command::Upgrade(t, m, r) => (Some(engine.queue_upgrade(&t, &m, now)), Some(r)),
                    Command::ListUpgrades(r) => (Some(engine.list_upgrades()), Some(r)),
                    Command::Relay(req) => {
                        engine.relay_request(req, now);
                        (None, None)
                    }
                };
                // Publish before replying: a client that got its answer sees
                // the new state on its next read.
                let current = engine.current();
                if !Arc::ptr_eq(&current, &pub_tx.borrow()) {
                    pub_tx.send_replace(current);
                }
                for e in engine.events.drain(..) {
                    let _ = ev_tx.send(e);
                }
                if let (Some(result), Some(r)) = (result, reply) {
                    let _ = r.send(result);
                }
            }
            engine.flush()
        })?;
    Ok((
        Handle {
            tx,
            published: pub_rx,
            events,
        },
        join,
    ))
}
