//! A replica's group commit on PostgreSQL: the queue of writes, and one
//! transaction per batch that takes the `audit_head` lock first.

use std::sync::Arc;

use deadpool_postgres::{ClientWrapper, Pool};
use tokio::sync::{mpsc, oneshot};

use kaching_core::cluster::UpgradeRequest;
use kaching_core::revocation::{Acceptance, VerifiedRevocationList};
use kaching_core::root::VerifiedRoot;

use super::{beats, writes};
use crate::error::ApiError;
use crate::storage::{Activated, Commits};
use crate::store::Activation;

/// A write queued for this replica's group commit.
pub enum Job {
    /// `POST /v1/activate`.
    Activate(
        Box<Activation>,
        oneshot::Sender<Result<Activated, ApiError>>,
    ),
    /// `POST /v1/heartbeat` or `/v1/deactivate`.
    Beat(Box<beats::Beat>, oneshot::Sender<Result<(), ApiError>>),
    /// `PUT /v1/revocations`.
    Publish(
        Box<(VerifiedRevocationList, String, u64)>,
        oneshot::Sender<Result<Acceptance, ApiError>>,
    ),
    /// `PUT /v1/roots`.
    Root(
        Box<(VerifiedRoot, String, u64)>,
        oneshot::Sender<Result<Vec<u64>, ApiError>>,
    ),
    /// `POST /v1/upgrade-requests`.
    Upgrade(
        Box<(String, UpgradeRequest, String, u64)>,
        oneshot::Sender<Result<bool, ApiError>>,
    ),
}

/// Takes what is queued (up to `max_batch`) and commits it as one batch,
/// counting what it commits in `commits`. `keep_raw`: also write a raw
/// history row per heartbeat.
pub async fn write_loop(
    pool: Pool,
    mut rx: mpsc::Receiver<Job>,
    max_batch: usize,
    keep_raw: bool,
    commits: Arc<Commits>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit_batch(&pool, batch, keep_raw, &commits).await;
    }
}

/// A job's outcome, held until the commit decides whether it stands.
enum Done {
    Activate(
        oneshot::Sender<Result<Activated, ApiError>>,
        Result<Activated, ApiError>,
    ),
    Beat(oneshot::Sender<Result<(), ApiError>>, Result<(), ApiError>),
    Publish(
        oneshot::Sender<Result<Acceptance, ApiError>>,
        Result<Acceptance, ApiError>,
    ),
    Root(
        oneshot::Sender<Result<Vec<u64>, ApiError>>,
        Result<Vec<u64>, ApiError>,
    ),
    Upgrade(
        oneshot::Sender<Result<bool, ApiError>>,
        Result<bool, ApiError>,
    ),
}

impl Done {
    /// The error that must undo the batch: anything but a refusal (4xx).
    fn server_error(&self) -> Option<ApiError> {
        fn of<T>(r: &Result<T, ApiError>) -> Option<ApiError> {
            r.as_ref()
                .err()
                .filter(|e| e.status.is_server_error())
                .cloned()
        }
        match self {
            Done::Activate(_, r) => of(r),
            Done::Beat(_, r) => of(r),
            Done::Publish(_, r) => of(r),
            Done::Root(_, r) => of(r),
            Done::Upgrade(_, r) => of(r),
        }
    }

    /// Answers with the outcome, or with `err` when the batch failed.
    fn answer(self, err: Option<&ApiError>) {
        fn send<T>(
            tx: oneshot::Sender<Result<T, ApiError>>,
            r: Result<T, ApiError>,
            err: Option<&ApiError>,
        ) {
            let _ = tx.send(match err {
                Some(e) => Err(e.clone()),
                None => r,
            });
        }
        match self {
            Done::Activate(tx, r) => send(tx, r, err),
            Done::Beat(tx, r) => send(tx, r, err),
            Done::Publish(tx, r) => send(tx, r, err),
            Done::Root(tx, r) => send(tx, r, err),
            Done::Upgrade(tx, r) => send(tx, r, err),
        }
    }
}

async fn apply(c: &ClientWrapper, head: &mut writes::Head, job: Job, keep_raw: bool) -> Done {
    match job {
        Job::Activate(a, tx) => Done::Activate(tx, writes::activate(c, head, &a).await),
        Job::Beat(b, tx) => {
            let (beat, key, now, reset) = *b;
            Done::Beat(
                tx,
                writes::record_heartbeat(c, head, &beat, &key, now, keep_raw, reset.as_ref()).await,
            )
        }
        Job::Publish(p, tx) => {
            let (list, actor, now) = *p;
            Done::Publish(tx, writes::publish(c, head, &list, &actor, now).await)
        }
        Job::Root(p, tx) => {
            let (root, actor, now) = *p;
            Done::Root(tx, writes::publish_root(c, head, &root, &actor, now).await)
        }
        Job::Upgrade(p, tx) => {
            let (license, request, actor, now) = *p;
            Done::Upgrade(
                tx,
                writes::file_upgrade(c, head, &license, &request, &actor, now).await,
            )
        }
    }
}

fn fail<T>(tx: oneshot::Sender<Result<T, ApiError>>, e: &ApiError) {
    let _ = tx.send(Err(e.clone()));
}

fn fail_job(job: Job, e: &ApiError) {
    match job {
        Job::Activate(_, tx) => fail(tx, e),
        Job::Beat(_, tx) => fail(tx, e),
        Job::Publish(_, tx) => fail(tx, e),
        Job::Root(_, tx) => fail(tx, e),
        Job::Upgrade(_, tx) => fail(tx, e),
    }
}

/// One transaction for the batch, no savepoints: a refused write (4xx)
/// has written nothing (the rule in [`writes`]), so the others go on; any
/// other error rolls the whole batch back and every caller hears it. Each
/// caller hears back only after the commit.
async fn commit_batch(pool: &Pool, batch: Vec<Job>, keep_raw: bool, commits: &Commits) {
    let client = match pool.get().await {
        Ok(c) => c,
        Err(e) => {
            let e = ApiError::from(e);
            batch.into_iter().for_each(|j| fail_job(j, &e));
            return;
        }
    };
    let started = std::time::Instant::now();
    let mut head = match begin(&client).await {
        Ok(h) => h,
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            batch.into_iter().for_each(|j| fail_job(j, &e));
            return;
        }
    };
    // Each ordinary heartbeat's leaf, in batch order (`done` keeps it).
    let leaves: Vec<Option<(kaching_core::merkle::Hash, u64)>> = batch
        .iter()
        .map(|j| match j {
            Job::Beat(b, _) if !b.0.deactivate => {
                Some((kaching_core::merkle::heartbeat_leaf(&b.0), b.2))
            }
            _ => None,
        })
        .collect();
    let (done, mut broken) = if heartbeats_only(&batch) {
        batched_heartbeats(&client, &mut head, batch, keep_raw).await
    } else {
        one_by_one(&client, &mut head, batch, keep_raw).await
    };
    if broken.is_none() {
        broken = seal(&client, &mut head, &done, &leaves).await.err();
    }
    if broken.is_none() {
        broken = head.store(&client).await.err();
    }
    if let Some(e) = broken {
        let _ = client.batch_execute("ROLLBACK").await;
        done.into_iter().for_each(|d| d.answer(Some(&e)));
        return;
    }
    match client.batch_execute("COMMIT").await {
        Ok(()) => {
            commits.record(done.len(), started.elapsed());
            done.into_iter().for_each(|d| d.answer(None));
        }
        Err(e) => {
            let e = ApiError::from(e);
            done.into_iter().for_each(|d| d.answer(Some(&e)));
        }
    }
}

/// Adds the batch's accepted ordinary heartbeats' leaves to the pending
/// ones (sealing those first when a minute old, `crate::audit::gather`).
async fn seal(
    c: &ClientWrapper,
    head: &mut writes::Head,
    done: &[Done],
    leaves: &[Option<(kaching_core::merkle::Hash, u64)>],
) -> Result<(), ApiError> {
    let mut latest = 0;
    let accepted: Vec<kaching_core::merkle::Hash> = done
        .iter()
        .zip(leaves)
        .filter_map(|(d, leaf)| match (d, leaf) {
            (Done::Beat(_, Ok(())), Some((leaf, now))) => {
                latest = latest.max(*now);
                Some(*leaf)
            }
            _ => None,
        })
        .collect();
    if accepted.is_empty() {
        return Ok(());
    }
    let (sealed, (since, f)) = crate::audit::gather(pending(c).await?, &accepted, latest);
    if let Some((s, old)) = sealed {
        seal_row(c, head, latest, s, &old).await?;
    }
    writes::execute(
        c,
        "INSERT INTO audit_pending (one, since, beats, frontier) VALUES (1, $1, $2, $3)
         ON CONFLICT (one) DO UPDATE SET since = $1, beats = $2, frontier = $3",
        &[&writes::int(since), &writes::int(f.count()), &f.to_bytes()],
    )
    .await?;
    Ok(())
}

/// The pending heartbeat leaves (read under the head lock).
async fn pending(
    c: &ClientWrapper,
) -> Result<Option<(u64, kaching_core::merkle::Frontier)>, ApiError> {
    let row = writes::query_opt(
        c,
        "SELECT since, frontier FROM audit_pending WHERE one = 1",
        &[],
    )
    .await?;
    row.map(|r| {
        let (since, bytes): (i64, Vec<u8>) = (r.get(0), r.get(1));
        kaching_core::merkle::Frontier::from_bytes(&bytes)
            .map(|f| (writes::uint(since), f))
            .ok_or_else(|| {
                ApiError::internal(
                    "audit_pending.frontier is not a Merkle frontier: the table was edited",
                )
            })
    })
    .transpose()
}

async fn seal_row(
    c: &ClientWrapper,
    head: &mut writes::Head,
    now: u64,
    since: u64,
    f: &kaching_core::merkle::Frontier,
) -> Result<(), ApiError> {
    writes::audit(
        c,
        head,
        now,
        crate::audit::BATCH_ACTOR,
        crate::audit::BATCH_ACTION,
        crate::audit::BATCH_SUBJECT,
        &crate::audit::batch_detail(f, since),
    )
    .await
}

/// Seals the pending leaves into one audit row when due (or `force`d), in
/// its own transaction under the head lock; `true` when it did.
pub async fn seal_pending(pool: &Pool, now: u64, force: bool) -> Result<bool, ApiError> {
    let c = pool.get().await?;
    let mut head = begin(&c).await?;
    let result = async {
        let sealed = match pending(&c).await? {
            Some((since, f)) if kaching_core::merkle::seal_due(since, now, force) => {
                seal_row(&c, &mut head, now, since, &f).await?;
                writes::execute(&c, "DELETE FROM audit_pending", &[]).await?;
                true
            }
            _ => false,
        };
        head.store(&c).await?;
        Ok::<_, ApiError>(sealed)
    }
    .await;
    match result {
        Ok(sealed) => {
            c.batch_execute("COMMIT").await?;
            Ok(sealed)
        }
        Err(e) => {
            let _ = c.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

/// True for a batch of heartbeats only, one per cluster (the hot path).
fn heartbeats_only(batch: &[Job]) -> bool {
    let beats: Vec<&beats::Beat> = batch
        .iter()
        .filter_map(|j| match j {
            Job::Beat(b, _) => Some(&**b),
            _ => None,
        })
        .collect();
    beats.len() > 1 && beats.len() == batch.len() && beats::distinct_clusters(&beats)
}

/// Applies each write in turn; stops at the first error that must undo
/// the batch (the jobs after it are answered with it too).
async fn one_by_one(
    c: &ClientWrapper,
    head: &mut writes::Head,
    batch: Vec<Job>,
    keep_raw: bool,
) -> (Vec<Done>, Option<ApiError>) {
    let mut done = Vec::with_capacity(batch.len());
    let mut jobs = batch.into_iter();
    for job in jobs.by_ref() {
        let d = apply(c, head, job, keep_raw).await;
        let broken = d.server_error();
        done.push(d);
        if let Some(e) = broken {
            jobs.for_each(|j| fail_job(j, &e));
            return (done, Some(e));
        }
    }
    (done, None)
}

/// Records a batch of heartbeats from distinct clusters at once ([`beats`]).
async fn batched_heartbeats(
    c: &ClientWrapper,
    head: &mut writes::Head,
    batch: Vec<Job>,
    keep_raw: bool,
) -> (Vec<Done>, Option<ApiError>) {
    let result = {
        let beats: Vec<&beats::Beat> = batch
            .iter()
            .filter_map(|j| match j {
                Job::Beat(b, _) => Some(&**b),
                _ => None,
            })
            .collect();
        beats::record(c, head, &beats, keep_raw).await
    };
    let (mut outcomes, broken) = match result {
        Ok(o) => (o, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    outcomes.resize_with(batch.len(), || {
        Err(ApiError::internal("heartbeat batch undone"))
    });
    let done = batch
        .into_iter()
        .zip(outcomes)
        .filter_map(|(job, outcome)| match job {
            Job::Beat(_, tx) => Some(Done::Beat(tx, outcome)),
            other => {
                fail_job(other, &ApiError::internal("not a heartbeat"));
                None
            }
        })
        .collect();
    (done, broken)
}

/// Opens a writing transaction: takes the `audit_head` lock first.
pub async fn begin(c: &ClientWrapper) -> Result<writes::Head, ApiError> {
    c.batch_execute("BEGIN").await?;
    writes::lock_head(c).await
}
