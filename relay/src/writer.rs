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

/// Runs one write in its own savepoint: a refused write leaves no trace and
/// does not disturb the others in the batch. The savepoint statements are
/// prepared once and cached (rusqlite's `Savepoint` parses its SQL on every
/// use: ~3 % of the relay's CPU per heartbeat). The outer error means the
/// transaction is in doubt (a savepoint could not be opened, released or
/// rolled back): the caller then abandons the whole batch.
fn apply_in_savepoint(
    conn: &Connection,
    write: Write,
) -> rusqlite::Result<Result<Outcome, ApiError>> {
    conn.prepare_cached("SAVEPOINT one_write")?.execute([])?;
    let result = store::apply(conn, write);
    if result.is_err() {
        conn.prepare_cached("ROLLBACK TO one_write")?.execute([])?;
    }
    conn.prepare_cached("RELEASE one_write")?.execute([])?;
    Ok(result)
}

fn commit_batch(conn: &mut Connection, batch: Vec<Job>) {
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
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
    // The accepted heartbeats' leaves, audited as one row before the commit.
    let mut leaves = Vec::new();
    let mut latest = 0;
    let mut jobs = batch.into_iter();
    for job in jobs.by_ref() {
        let leaf = match &job.write {
            Write::Beat { beat, now, .. } if !beat.deactivate => {
                Some((kaching_core::merkle::heartbeat_leaf(beat), *now))
            }
            _ => None,
        };
        match apply_in_savepoint(&tx, job.write) {
            Ok(result) => {
                if let (Ok(Outcome::Beat), Some((leaf, now))) = (&result, leaf) {
                    leaves.push(leaf);
                    latest = latest.max(now);
                }
                done.push((job.reply, result))
            }
            Err(e) => {
                // Dropping the transaction rolls the whole batch back; nothing
                // in it was acknowledged, so every caller hears the error.
                drop(tx);
                let err = ApiError::from(e);
                let _ = job.reply.send(Err(err.clone()));
                for (reply, _) in done {
                    let _ = reply.send(Err(err.clone()));
                }
                for job in jobs {
                    let _ = job.reply.send(Err(err.clone()));
                }
                return;
            }
        }
    }
    let sealed = crate::audit::add_beats(&tx, latest, &leaves).and_then(|()| tx.commit());
    match sealed {
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kaching_core::heartbeat::Heartbeat;
    use kaching_core::{cluster_id, LicenseId, SecretKey};

    use super::*;
    use crate::store::Activation;

    fn job(write: Write) -> (Job, oneshot::Receiver<Result<Outcome, ApiError>>) {
        let (reply, rx) = oneshot::channel();
        (Job { write, reply }, rx)
    }

    fn activation(license: LicenseId, key: &SecretKey) -> Write {
        Write::Activate(Box::new(Activation {
            license_id: license.to_string(),
            license_bytes: vec![1, 2, 3],
            customer: "Acme".into(),
            tier: "standard".into(),
            expires_at: 2_000_000_000,
            cluster_id: cluster_id(&key.public()),
            cluster_key: *key.public().as_bytes(),
            hostname: "h".into(),
            nodes: 3,
            offline_grace: 86_400,
            now: 1_000,
        }))
    }

    fn beat(license: LicenseId, key: &SecretKey, seq: u64) -> Write {
        Write::Beat {
            beat: Box::new(Heartbeat {
                license_id: license,
                cluster_id: cluster_id(&key.public()),
                seq,
                time: 1_000,
                state: "active".into(),
                active_nodes: 3,
                quotas: BTreeMap::new(),
                verifier_version: "test".into(),
                upgrade_requests: Vec::new(),
                deactivate: false,
                chain: None,
            }),
            key: *key.public().as_bytes(),
            now: 1_000,
            raw: true,
        }
    }

    fn count(conn: &Connection, table: &str) -> i64 {
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    /// One batch, one transaction: a refused write in the middle (an unknown
    /// cluster, then a replay of a sequence number accepted earlier in the
    /// same batch) leaves no row and no audit entry, and the writes around it
    /// are committed; the audit chain still verifies.
    #[test]
    fn refused_writes_in_a_batch_leave_no_trace_and_spare_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::db::open_and_migrate(&dir.path().join("relay.db")).unwrap();
        let (a, b) = (
            SecretKey::from_seed(&[1; 32]),
            SecretKey::from_seed(&[2; 32]),
        );
        let (la, lb) = (LicenseId([0xa; 16]), LicenseId([0xb; 16]));
        let stranger = SecretKey::from_seed(&[3; 32]);
        let writes = vec![
            activation(la, &a),
            beat(la, &a, 1),
            beat(la, &stranger, 1),
            beat(la, &a, 1),
            activation(lb, &b),
            beat(lb, &b, 5),
            beat(la, &a, 2),
        ];
        let (jobs, rxs): (Vec<Job>, Vec<_>) = writes.into_iter().map(job).unzip();
        commit_batch(&mut conn, jobs);
        let codes: Vec<&str> = rxs
            .into_iter()
            .map(|mut rx| match rx.try_recv().unwrap() {
                Ok(_) => "ok",
                Err(e) => e.code,
            })
            .collect();
        assert_eq!(
            codes,
            [
                "ok",
                "ok",
                "not_activated",
                "replayed_heartbeat",
                "ok",
                "ok",
                "ok"
            ]
        );
        assert_eq!(count(&conn, "heartbeats"), 3);
        // Two activations; the three heartbeats are pending, sealed later.
        assert_eq!(count(&conn, "audit"), 2);
        assert_eq!(count(&conn, "audit_pending"), 1);
        let last_seq: u64 = conn
            .query_row(
                "SELECT last_seq FROM clusters WHERE cluster_id = ?1",
                [cluster_id(&a.public())],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(last_seq, 2);
        // Sealed, the row's root is over the three accepted heartbeats, in
        // commit order (the refused ones are no leaves).
        assert!(
            !crate::audit::seal(&conn, 1_059, false).unwrap(),
            "not yet due"
        );
        assert!(crate::audit::seal(&conn, 1_060, false).unwrap());
        assert_eq!(count(&conn, "audit_pending"), 0);
        let leaves: Vec<_> = [beat(la, &a, 1), beat(lb, &b, 5), beat(la, &a, 2)]
            .iter()
            .map(|w| match w {
                Write::Beat { beat, .. } => kaching_core::merkle::heartbeat_leaf(beat),
                _ => unreachable!(),
            })
            .collect();
        let detail: String = conn
            .query_row(
                "SELECT detail FROM audit WHERE action = 'heartbeats'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let mut f = kaching_core::merkle::Frontier::new();
        leaves.iter().for_each(|l| f.push(*l));
        assert_eq!(f.root(), kaching_core::merkle::root(&leaves));
        assert_eq!(
            detail,
            crate::audit::batch_detail(&f, 1_000).to_string(),
            "{detail}"
        );
        crate::audit::verify(&conn).unwrap();
        // The cached savepoint statements serve the next batch too.
        let (j, mut rx) = job(beat(lb, &b, 5));
        commit_batch(&mut conn, vec![j]);
        assert_eq!(
            rx.try_recv().unwrap().unwrap_err().code,
            "replayed_heartbeat"
        );
        assert_eq!(count(&conn, "audit"), 3);
        assert_eq!(count(&conn, "audit_pending"), 0);
    }
}
