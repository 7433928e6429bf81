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
    /// A write, acknowledged once it is durable (writes queued together
    /// share one commit).
    Write(Write, ReplyTo),
    /// List the live node leases.
    ListNodes(ReplyTo),
    /// Run a job against the engine (the license page's admin actions:
    /// preview an uploaded license, write an activation request or a usage
    /// report); it sends its own reply.
    Inspect(Job),
    /// List queued upgrade requests.
    ListUpgrades(ReplyTo),
    /// Connected mode: work for or from the relay worker.
    Relay(crate::engine::relay::Request),
    /// Flush and stop.
    Shutdown,
}

/// What a [`Job`] runs: the engine and the time.
pub type JobFn = dyn FnOnce(&mut Engine, u64) + Send;

/// A job for the engine thread: called once with the engine and the time.
pub struct Job(pub Box<JobFn>);

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job(..)")
    }
}

/// The writes behind the API.
#[derive(Debug)]
pub enum Write {
    /// Take or renew a node lease.
    Lease(String),
    /// Give a node lease back.
    Release(String),
    /// Spend quota: metric, amount, idempotency key.
    Spend(String, u64, String),
    /// Queue an upgrade request: tier, message.
    Upgrade(String, String),
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

/// At most this many writes share one commit.
const MAX_GROUP: usize = 256;

/// Applies one write; its reply waits for the caller.
fn write(engine: &mut Engine, w: Write, now: u64) -> anyhow::Result<Outcome> {
    if let Some(refused) = engine.refused_write() {
        return Ok(refused);
    }
    match w {
        Write::Lease(node) => engine.lease(&node, now),
        Write::Release(node) => engine.release(&node, now),
        Write::Spend(m, a, k) => engine.spend(&m, a, &k, now),
        Write::Upgrade(t, m) => engine.queue_upgrade(&t, &m, now),
    }
}

/// After a command or a group: the verdict catches up with the writes
/// (once per group), the reader is told about files the engine wrote, then
/// the verdict and events are published, before any reply, so a client
/// that got its answer sees the new state on its next read.
fn publish(
    engine: &mut Engine,
    now: u64,
    reader: &Reader,
    pub_tx: &watch::Sender<Arc<Published>>,
    ev_tx: &broadcast::Sender<Event>,
) {
    engine.settle(now);
    if std::mem::take(&mut engine.files_written) {
        engine.files_stale_before = reader.request_fresh();
    }
    let current = engine.current();
    if !Arc::ptr_eq(&current, &pub_tx.borrow()) {
        pub_tx.send_replace(current);
    }
    for e in engine.events.drain(..) {
        let _ = ev_tx.send(e);
    }
}

/// While expired idempotency keys remain, one more batch of them goes
/// whenever nothing is queued: a backlog drains between writes, and a write
/// that arrives meanwhile waits for one batch at most.
fn idle_prune(engine: &mut Engine, rx: &mpsc::UnboundedReceiver<Command>, now: u64) {
    if engine.prune_pending() && rx.is_empty() {
        engine.prune(now, 1);
    }
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
            // A command taken from the channel while gathering a group that
            // cannot join it; handled next.
            let mut held: Option<Command> = None;
            loop {
                let cmd = match held.take() {
                    Some(c) => c,
                    None => match rx.blocking_recv() {
                        Some(c) => c,
                        None => break,
                    },
                };
                let now = clock.now();
                let (result, reply) = match cmd {
                    Command::Write(w, r) => {
                        // Group commit: every write already queued joins this one
                        // and they become durable with one sync; all are answered
                        // after it. A command that is not a write ends the group.
                        let mut group = vec![(w, r)];
                        while group.len() < MAX_GROUP {
                            match rx.try_recv() {
                                Ok(Command::Write(w, r)) => group.push((w, r)),
                                Ok(c) => {
                                    held = Some(c);
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                        let grouped = group.len() > 1 && engine.begin_group().is_ok();
                        let mut replies = Vec::with_capacity(group.len());
                        for (w, r) in group {
                            replies.push((write(&mut engine, w, now), r));
                        }
                        if grouped {
                            if let Err(e) = engine.commit_group(now) {
                                tracing::error!(%e, "cannot commit a group of writes to the state database");
                                let why = format!("{e:#}");
                                for (result, _) in &mut replies {
                                    if result.is_ok() {
                                        *result = Err(anyhow::anyhow!(
                                            "the state database could not commit this write: {why}"
                                        ));
                                    }
                                }
                            }
                        }
                        publish(&mut engine, now, &reader, &pub_tx, &ev_tx);
                        for (result, r) in replies {
                            let _ = r.send(result);
                        }
                        idle_prune(&mut engine, &rx, now);
                        continue;
                    }
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
                    Command::ListNodes(r) => (Some(Ok(engine.list_nodes(now))), Some(r)),
                    Command::ListUpgrades(r) => (Some(engine.list_upgrades()), Some(r)),
                    Command::Inspect(job) => {
                        (job.0)(&mut engine, now);
                        (None, None)
                    }
                    Command::Relay(req) => {
                        engine.relay_request(req, now);
                        (None, None)
                    }
                };
                publish(&mut engine, now, &reader, &pub_tx, &ev_tx);
                if let (Some(result), Some(r)) = (result, reply) {
                    let _ = r.send(result);
                }
                idle_prune(&mut engine, &rx, now);
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
