//! The single database writer and its group commit.
//!
//! Every state change is sent to one thread that owns the write connection.
//! It takes whatever is queued (up to `commit.max_batch`), applies each write
//! in its own savepoint (a refused write leaves no trace and does not disturb
//! the others), commits the batch once with `synchronous = FULL`, and only
//! then answers each caller. So a 2xx always means "on disk", and under load
//! one fsync is shared by many heartbeats instead of paid by each.
//!
//! One writer also serialises the checks that must not race: sequence
//! numbers, the one-live-cluster-per-license rule and the audit chain.

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use crate::error::ApiError;
use crate::store::{self, Outcome, Write};

/// A queued write and where to send its result.
struct Job {
    write: Write,
    reply: oneshot::Sender<Result<Outcome, ApiError>>,
}

/// Handle to the writer thread; cheap to clone. The thread ends when every
/// handle is dropped, after committing what was queued.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub fn start(
        conn: Connection,
        max_batch: usize,
    ) -> std::io::Result<(Writer, std::thread::JoinHandle<()>)> {
        // Bounded so that a flood waits at the door instead of growing memory.
        let (tx, rx) = mpsc::channel(max_batch.saturating_mul(8).max(64));
        let handle = std::thread::Builder::new()
            .name("relay-writer".into())
            .spawn(move || run(conn, rx, max_batch))?;
        Ok((Writer { tx }, handle))
    }

    /// Queues a write and waits for its commit.
    pub async fn submit(&self, write: Write) -> Result<Outcome, ApiError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { write, reply })
            .await
            .map_err(|_| ApiError::unavailable())?;
        rx.await.map_err(|_| ApiError::unavailable())?
    }
}

fn run(mut conn: Connection, mut rx: mpsc::Receiver<Job>, max_batch: usize) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = Vec::with_capacity(max_batch.min(64));
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit_batch(&mut conn, batch);
    }
}

fn commit_batch(conn: &mut Connection, batch: Vec<Job>) {
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let err = ApiError::from(e);
            for job in batch {
                let _ = job.reply.send(Err(err.clone()));
            }
            return;
        }
    };
    let mut done = Vec::with_capacity(batch.len());
    for job in batch {
        let result = match tx.savepoint() {
            Ok(mut sp) => match store::apply(&sp, job.write) {
                Ok(outcome) => sp.commit().map(|_| outcome).map_err(ApiError::from),
                Err(e) => {
                    // Dropping the savepoint rolls this one write back.
                    let _ = sp.rollback();
                    Err(e)
                }
            },
            Err(e) => Err(ApiError::from(e)),
        };
        done.push((job.reply, result));
    }
    match tx.commit() {
        Ok(()) => {
            for (reply, result) in done {
                let _ = reply.send(result);
            }
        }
        Err(e) => {
            let err = ApiError::from(e);
            for (reply, _) in done {
                let _ = reply.send(Err(err.clone()));
            }
        }
    }
}
