//! The single database writer and its group commit.
//!
//! Every state change is sent to one thread that owns the write connection.
//! It takes whatever is queued (up to `commit.max_batch`), applies each write
//! (a refused write leaves no trace and does not disturb the others: a
//! heartbeat is checked before its first write, any other write runs in its
//! own savepoint; see [`commit_batch`]), commits the batch once with
//! `synchronous = FULL`, and only then answers each caller. So a 2xx always means "on disk", and under load
//! one fsync is shared by many heartbeats instead of paid by each.
//!
//! One writer also serialises the checks that must not race: sequence
//! numbers, the one-live-cluster-per-license rule and the audit chain.

use std::sync::Arc;

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use crate::error::ApiError;
use crate::storage::Commits;
use crate::store::{self, BeatFailure, Outcome, Write};

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
    /// Starts the writer thread on `conn`; it counts what it commits in `commits`.
    pub fn start(
        conn: Connection,
        max_batch: usize,
        commits: Arc<Commits>,
    ) -> std::io::Result<(Writer, std::thread::JoinHandle<()>)> {
        // Bounded so that a flood waits at the door instead of growing memory.
        let (tx, rx) = mpsc::channel(max_batch.saturating_mul(8).max(64));
        let handle = std::thread::Builder::new()
            .name("relay-writer".into())
            .spawn(move || run(conn, rx, max_batch, &commits))?;
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

fn run(mut conn: Connection, mut rx: mpsc::Receiver<Job>, max_batch: usize, commits: &Commits) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = Vec::with_capacity(max_batch.min(64));
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit_batch(&mut conn, batch, commits);
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
    write: &Write,
) -> rusqlite::Result<Result<Outcome, ApiError>> {
    conn.prepare_cached("SAVEPOINT one_write")?.execute([])?;
    let result = store::apply(conn, write);
    if result.is_err() {
        conn.prepare_cached("ROLLBACK TO one_write")?.execute([])?;
    }
    conn.prepare_cached("RELEASE one_write")?.execute([])?;
    Ok(result)
}

/// Why a batch was not committed.
enum BatchError {
    /// A heartbeat failed on a database error (half-way, with no savepoint
    /// to undo it, or with the transaction gone): the batch was rolled back
    /// and is run again, guarded. The error, for the log.
    InDoubt(ApiError),
    /// The transaction failed: every write in the batch failed with it.
    Failed(ApiError),
}

impl From<rusqlite::Error> for BatchError {
    fn from(e: rusqlite::Error) -> BatchError {
        BatchError::Failed(ApiError::from(e))
    }
}

/// Commits a batch and answers each caller. Heartbeats run without a
/// savepoint of their own (their checks only read, and a refusal comes
/// before the first write: [`store::record_beat`]); other writes each in
/// one. Should a heartbeat fail on a database error (half-way, after its
/// first write, or in the read before it), the whole batch is rolled back,
/// nothing in it having been answered, and run again with every write in
/// its own savepoint, so that one failing write fails alone.
fn commit_batch(conn: &mut Connection, batch: Vec<Job>, commits: &Commits) {
    let started = std::time::Instant::now();
    let (writes, replies): (Vec<Write>, Vec<_>) =
        batch.into_iter().map(|j| (j.write, j.reply)).unzip();
    let result = match run_batch(conn, &writes, false) {
        Err(BatchError::InDoubt(e)) => {
            tracing::warn!(
                writes = writes.len(),
                error = %e.message,
                "a heartbeat failed on a database error: batch rolled back, running it again with one savepoint per write"
            );
            run_batch(conn, &writes, true)
        }
        other => other,
    };
    match result {
        Ok(results) => {
            commits.record(results.len(), started.elapsed());
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result);
            }
        }
        // (The guarded run is never in doubt: each write has its savepoint.)
        Err(BatchError::Failed(err) | BatchError::InDoubt(err)) => {
            for reply in replies {
                let _ = reply.send(Err(err.clone()));
            }
        }
    }
}

/// Runs `writes` in one transaction and commits it; `guarded`: every
/// write in its own savepoint. The results are in `writes`' order.
fn run_batch(
    conn: &mut Connection,
    writes: &[Write],
    guarded: bool,
) -> Result<Vec<Result<Outcome, ApiError>>, BatchError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut results = Vec::with_capacity(writes.len());
    // The accepted heartbeats' leaves, audited as one row before the commit.
    let mut leaves = Vec::new();
    let mut latest = 0;
    for write in writes {
        let result = match write {
            Write::Beat {
                beat,
                key,
                now,
                raw,
                reset,
            } if !guarded => match store::record_beat(&tx, beat, key, *now, *raw, reset.as_deref())
            {
                Ok(outcome) => Ok(outcome),
                Err(BeatFailure::Refused(e)) => Err(e),
                // Dropping the transaction rolls the batch back.
                Err(BeatFailure::InDoubt(e)) => return Err(BatchError::InDoubt(e)),
            },
            // An error here leaves the transaction in doubt: dropping it
            // rolls the batch back; nothing in it was answered.
            _ => apply_in_savepoint(&tx, write)?,
        };
        if let (Ok(Outcome::Beat), Write::Beat { beat, now, .. }) = (&result, write) {
            if !beat.deactivate {
                leaves.push(kaching_core::merkle::heartbeat_leaf(beat));
                latest = latest.max(*now);
            }
        }
        results.push(result);
    }
    crate::audit::add_beats(&tx, latest, &leaves)?;
    tx.commit()?;
    Ok(results)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kaching_core::heartbeat::Heartbeat;
    use kaching_core::{cluster_id, LicenseId, SecretKey};

    use super::*;
    use crate::storage::COMMIT_BUCKETS;
    use crate::store::Activation;

    /// Commits `writes` as one batch; each write's answer: `ok` or its error code.
    fn answers(conn: &mut Connection, writes: Vec<Write>) -> Vec<&'static str> {
        let (jobs, rxs): (Vec<Job>, Vec<_>) = writes.into_iter().map(job).unzip();
        commit_batch(conn, jobs, &Commits::default());
        rxs.into_iter()
            .map(|mut rx| match rx.try_recv().unwrap() {
                Ok(_) => "ok",
                Err(e) => e.code,
            })
            .collect()
    }

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
            reset: None,
        }
    }

    fn count(conn: &Connection, table: &str) -> i64 {
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    /// Group commit is visible to operators (`/metrics`): a batch counts as
    /// one commit carrying all its writes, a refused one included (it was
    /// answered after that commit, like the others); a batch whose
    /// transaction fails counts in neither.
    #[test]
    fn commits_count_each_batch_and_its_writes_and_never_a_failed_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        let mut conn = crate::db::open_and_migrate(&path).unwrap();
        let commits = Commits::default();
        let (k, l) = (SecretKey::from_seed(&[7; 32]), LicenseId([7; 16]));
        let (jobs, rxs): (Vec<Job>, Vec<_>) = [activation(l, &k), beat(l, &k, 1), beat(l, &k, 1)]
            .into_iter()
            .map(job)
            .unzip();
        commit_batch(&mut conn, jobs, &commits);
        let codes: Vec<_> = rxs
            .into_iter()
            .map(|mut rx| rx.try_recv().unwrap().map_err(|e| e.code).err())
            .collect();
        assert_eq!(codes, [None, None, Some("replayed_heartbeat")]);
        let counted = |c: &Commits| {
            let s = c.read();
            (
                s.commits,
                s.writes,
                s.at_most[COMMIT_BUCKETS.len() - 1] <= s.commits,
            )
        };
        assert_eq!(counted(&commits), (1, 3, true));
        assert!(commits.read().seconds > 0.0, "the commit's time is counted");
        // Another connection holds the write lock: the batch cannot begin.
        conn.busy_timeout(std::time::Duration::ZERO).unwrap();
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let (j, mut rx) = job(beat(l, &k, 2));
        commit_batch(&mut conn, vec![j], &commits);
        assert_eq!(rx.try_recv().unwrap().unwrap_err().code, "internal");
        assert_eq!(
            counted(&commits),
            (1, 3, true),
            "a failed batch is not a commit"
        );
        other.execute_batch("ROLLBACK").unwrap();
        let (j, mut rx) = job(beat(l, &k, 2));
        commit_batch(&mut conn, vec![j], &commits);
        assert!(rx.try_recv().unwrap().is_ok());
        assert_eq!(counted(&commits), (2, 4, true));
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
        let codes = answers(&mut conn, writes);
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
        commit_batch(&mut conn, vec![j], &Commits::default());
        assert_eq!(
            rx.try_recv().unwrap().unwrap_err().code,
            "replayed_heartbeat"
        );
        assert_eq!(count(&conn, "audit"), 3);
        assert_eq!(count(&conn, "audit_pending"), 0);
    }

    /// A heartbeat that fails half-way (its cluster row updated, then its
    /// hour's rollup refused by the database; heartbeats run without a
    /// savepoint of their own) fails alone: the batch is rolled back and run
    /// again with one savepoint per write, the failing heartbeat leaves no
    /// trace (its sequence number is not consumed) and the heartbeats around
    /// it are committed, rollups and audit leaves included.
    #[test]
    fn a_heartbeat_failing_half_way_fails_alone_and_the_batch_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::db::open_and_migrate(&dir.path().join("relay.db")).unwrap();
        let keys: Vec<SecretKey> = (1..=3).map(|i| SecretKey::from_seed(&[i; 32])).collect();
        let licenses: Vec<LicenseId> = (1..=3).map(|i| LicenseId([i; 16])).collect();
        let (jobs, _): (Vec<Job>, Vec<_>) = licenses
            .iter()
            .zip(&keys)
            .map(|(l, k)| job(activation(*l, k)))
            .unzip();
        commit_batch(&mut conn, jobs, &Commits::default());
        let doomed = cluster_id(&keys[1].public());
        // The raw history row comes after the cluster row's UPDATE: a
        // half-way failure.
        conn.execute_batch(&format!(
            "CREATE TRIGGER doomed BEFORE INSERT ON heartbeats
             WHEN NEW.cluster_id = '{doomed}' BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
        ))
        .unwrap();
        let writes = vec![
            beat(licenses[0], &keys[0], 1),
            beat(licenses[1], &keys[1], 1),
            beat(licenses[2], &keys[2], 1),
            beat(licenses[0], &keys[0], 1),
        ];
        let codes = answers(&mut conn, writes);
        assert_eq!(codes, ["ok", "internal", "ok", "replayed_heartbeat"]);
        let last_seq = |c: &Connection, k: &SecretKey| -> u64 {
            c.query_row(
                "SELECT last_seq FROM clusters WHERE cluster_id = ?1",
                [cluster_id(&k.public())],
                |r| r.get(0),
            )
            .unwrap()
        };
        assert_eq!(last_seq(&conn, &keys[0]), 1);
        assert_eq!(
            last_seq(&conn, &keys[1]),
            0,
            "the failed heartbeat left no trace"
        );
        assert_eq!(last_seq(&conn, &keys[2]), 1);
        assert_eq!(count(&conn, "heartbeat_hours_all"), 2);
        // The two accepted heartbeats are the batch's audit leaves.
        let beats: i64 = conn
            .query_row("SELECT beats FROM audit_pending", [], |r| r.get(0))
            .unwrap();
        assert_eq!(beats, 2);
        // The failed cluster's sequence number 1 is still free.
        conn.execute_batch("DROP TRIGGER doomed").unwrap();
        let (j, mut rx) = job(beat(licenses[1], &keys[1], 1));
        commit_batch(&mut conn, vec![j], &Commits::default());
        assert!(rx.try_recv().unwrap().is_ok());
        assert_eq!(last_seq(&conn, &keys[1]), 1);
        crate::audit::verify(&conn).unwrap();
    }
}
