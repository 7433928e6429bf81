//! The engine's thread. It owns the [`Engine`] (and so the SQLite connection)
//! and applies commands one at a time; the API talks to it through a channel
//! and reads the published verdict through a `tokio::sync::watch`, so reads
//! never wait for writes. It never reads the watched files itself: it asks
//! the reader thread ([`crate::reader`]), whose passes come back as
//! [`Command::Files`], so a stuck read cannot hold up a verdict.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::clock::Clock;
use crate::engine::{Engine, Event, Outcome, Published};
use crate::loader::FileSet;
use crate::reader::Reader;

/// A read stuck this long on one file is reported in status.
pub const READ_STALL: Duration = Duration::from_secs(5);

/// Where a reply goes.
pub type ReplyTo = oneshot::Sender<anyhow::Result<Outcome>>;

/// Work for the engine thread.
#[derive(Debug)]
pub enum Command {
    /// Files changed: ask the reader thread for a pass.
    Reload,
    /// A pass of the reader thread: the bytes read, to verify and apply.
    Files(Box<FileSet>),
    /// Time passed: re-evaluate, cull leases.
    Tick,
    /// Take or renew a node lease.
    Lease(String, ReplyTo),
    /// Give a node lease back.
    Release(String, ReplyTo),
    /// List the live node leases.
    ListNodes(ReplyTo),
    /// Spend quota: metric, amount, idempotency key.
    Spend(String, u64, String, ReplyTo),
    /// Queue an upgrade request: tier, message.
    Upgrade(String, String, ReplyTo),
    /// List queued upgrade requests.
    ListUpgrades(ReplyTo),
    /// Connected mode: work for or from the relay worker.
    Relay(crate::engine::relay::Request),
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
    // The reader holds a weak sender: it must not keep the engine alive.
    let to_engine = tx.downgrade();
    let watched = engine.cfg.watched();
    let reader = Reader::spawn(watched.clone(), engine.fingerprint.clone(), move |set| {
        to_engine
            .upgrade()
            .is_some_and(|tx| tx.send(Command::Files(Box::new(set))).is_ok())
    })?;
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
                        reader.request();
                        (None, None)
                    }
                    Command::Files(set) => {
                        engine.apply_files(*set, now);
                        (None, None)
                    }
                    Command::Tick => {
                        engine.tick(now);
                        // Re-check the files every tick too (missed events).
                        reader.request();
                        if let Some(path) = reader.stuck(READ_STALL) {
                            engine.read_stalled(watched.kind_of(&path), &path, READ_STALL, now);
                        } else if reader.stuck(Duration::ZERO).is_none()
                            && engine.read_unstalled(now)
                        {
                            reader.request_fresh();
                        }
                        (None, None)
                    }
                    Command::Lease(node, r) => (Some(engine.lease(&node, now)), Some(r)),
                    Command::Release(node, r) => (Some(engine.release(&node, now)), Some(r)),
                    Command::ListNodes(r) => (Some(Ok(engine.list_nodes(now))), Some(r)),
                    Command::Spend(m, a, k, r) => (Some(engine.spend(&m, a, &k, now)), Some(r)),
                    Command::Upgrade(t, m, r) => (Some(engine.queue_upgrade(&t, &m, now)), Some(r)),
                    Command::ListUpgrades(r) => (Some(engine.list_upgrades()), Some(r)),
                    Command::Relay(req) => {
                        engine.relay_request(req, now);
                        (None, None)
                    }
                };
                if std::mem::take(&mut engine.files_written) {
                    engine.files_stale_before = reader.request_fresh();
                }
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
            drop(reader);
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
