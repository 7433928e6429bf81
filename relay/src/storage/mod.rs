//! Where the relay keeps its state: one [`Storage`] trait, two backends.
//!
//! - [`sqlite`]: the embedded default for a single relay. One writer thread
//!   owns the file and group-commits (see [`crate::writer`]).
//! - [`postgres`]: any number of stateless relay replicas on one
//!   PostgreSQL database. Every invariant the single SQLite writer keeps
//!   (one live cluster per license, forward-only heartbeat sequence numbers
//!   and list versions, an unforked audit chain) is enforced by the database:
//!   constraints, row locks and conditional updates, never process memory.
//!
//! The `database` URL in the configuration chooses ([`Database`]).

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kaching_core::clock_reset::VerifiedClockReset;
use kaching_core::cluster::UpgradeRequest;
use kaching_core::heartbeat::Heartbeat;
use kaching_core::revocation::{Acceptance, VerifiedRevocationList};
use kaching_core::root::VerifiedRoot;
use kaching_core::wire::relay::{Anomaly, ClusterRow, UpgradeRow};

use crate::error::ApiError;
use crate::store::Activation;
use crate::tokens::Scope;

pub mod mailbox;
pub mod postgres;
pub mod sqlite;

/// A boxed storage future (the trait is used as `dyn Storage`).
pub type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T, ApiError>> + Send + 'a>>;

/// Which database the `database` setting names.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// `sqlite:///path/relay.db` (or no `database` at all: `data_dir/relay.db`).
    Sqlite(PathBuf),
    /// `postgres://user:password@host:port/dbname` (or `postgresql://`).
    Postgres(String),
}

impl Database {
    /// Parses a `database` URL.
    pub fn parse(url: &str) -> anyhow::Result<Database> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                anyhow::bail!("database {url:?} names no file: write sqlite:///var/lib/kaching-relay/relay.db");
            }
            // `sqlite://var/x.db` would quietly be the relative path var/x.db
            // (wherever the relay happens to start): the path must be absolute.
            if !path.starts_with('/') {
                anyhow::bail!(
                    "database {url:?} names the relative path {path:?}: write an absolute path after sqlite:// (three slashes: sqlite:///var/lib/kaching-relay/relay.db), or leave `database` unset for data_dir/relay.db"
                );
            }
            return Ok(Database::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            url.parse::<tokio_postgres::Config>().map_err(|e| {
                anyhow::anyhow!("database URL is not a PostgreSQL connection URL ({e}): write postgres://user:password@host:5432/dbname")
            })?;
            return Ok(Database::Postgres(url.to_string()));
        }
        anyhow::bail!(
            "database {:?} is neither sqlite:///path/relay.db nor postgres://user:password@host:5432/dbname",
            redact(url)
        )
    }
}

/// A URL with any password replaced by `***` (for logs and errors).
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{scheme}://{name}:***@{host}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
            Database::Postgres(u) => f.write_str(&redact(u)),
        }
    }
}

/// What an activation did.
#[derive(Debug)]
pub struct Activated {
    /// Last accepted heartbeat sequence number (0 for a new cluster).
    pub last_seq: u64,
    /// Stale clusters that lost the license.
    pub displaced: Vec<String>,
}

/// The latest picture of one license: its bytes and its cluster's last
/// contact (cluster id, last seen, active nodes, quotas as JSON text).
pub struct LicenseView {
    /// The license as last activated.
    pub bytes: Vec<u8>,
    /// The live (or else most recently seen) cluster.
    pub cluster: Option<(String, u64, u64, String)>,
    /// Signs of rollback seen in its clusters' heartbeats, newest first, at
    /// most [`MAX_ANOMALIES`]: (cluster id, relay time, sentence).
    pub anomalies: Vec<(String, u64, String)>,
}

/// Signs of rollback listed per cluster and per license.
pub const MAX_ANOMALIES: usize = 10;

/// Fills in each row's latest signs of rollback from `found` (cluster id,
/// relay time, kind, sentence; ordered by cluster, newest first); `rows`
/// are ordered by cluster id.
pub fn attach_anomalies(rows: &mut [ClusterRow], found: Vec<(String, u64, String, String)>) {
    for (cluster, at, kind, detail) in found {
        if let Ok(i) = rows.binary_search_by(|r| r.cluster_id.as_str().cmp(&cluster)) {
            if rows[i].anomalies.len() < MAX_ANOMALIES {
                rows[i].anomalies.push(Anomaly {
                    kind,
                    at: kaching_core::time::rfc3339(at),
                    detail,
                });
            }
        }
    }
}

/// What group commit is doing: transactions committed, the writes they
/// carried and how long each took, counted by the backend's writer and read
/// at scrape time (`kaching_relay_commits_total`,
/// `kaching_relay_committed_writes_total`, `kaching_relay_commit_seconds`).
/// Writes per commit is how many callers one commit (one `fsync` on SQLite)
/// served; the commit time is what each of them waited once the writer took
/// its batch. A batch rolled back counts in none.
#[derive(Debug, Default)]
pub struct Commits {
    commits: AtomicU64,
    writes: AtomicU64,
    /// Summed commit time, in nanoseconds.
    nanos: AtomicU64,
    /// Commits per [`COMMIT_BUCKETS`] bucket (not cumulative).
    buckets: [AtomicU64; COMMIT_BUCKETS.len()],
}

/// Upper bounds, in seconds, of the commit-time histogram's buckets (one
/// more, `+Inf`, is implied): from an idle NVMe disk's fsync to a stalled one.
pub const COMMIT_BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// What [`Commits`] counted, read at once.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CommitStats {
    /// Transactions committed.
    pub commits: u64,
    /// Writes they carried.
    pub writes: u64,
    /// Their summed time, in seconds.
    pub seconds: f64,
    /// Commits that took at most each of [`COMMIT_BUCKETS`] (cumulative).
    pub at_most: [u64; COMMIT_BUCKETS.len()],
}

impl Commits {
    /// Counts one committed transaction that carried `writes` writes and
    /// took `took`, from its start to its durable commit.
    pub fn record(&self, writes: usize, took: Duration) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.writes.fetch_add(writes as u64, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        if let Some(i) = COMMIT_BUCKETS.iter().position(|le| secs <= *le) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// What was counted so far.
    pub fn read(&self) -> CommitStats {
        let mut at_most = [0; COMMIT_BUCKETS.len()];
        let mut running = 0;
        for (out, bucket) in at_most.iter_mut().zip(&self.buckets) {
            running += bucket.load(Ordering::Relaxed);
            *out = running;
        }
        CommitStats {
            commits: self.commits.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            seconds: self.nanos.load(Ordering::Relaxed) as f64 / 1e9,
            at_most,
        }
    }
}

/// A stored root: version, bytes, relay time received.
pub type StoredRoot = (u64, Vec<u8>, u64);

/// The relay's state, whichever database holds it. Every write is atomic:
/// on error nothing it did is kept, and an `Ok` means it is durable.
pub trait Storage: Send + Sync + mailbox::Mailbox {
    /// `POST /v1/activate`: binds the license to the cluster (displacing
    /// stale holders, refusing when another live cluster holds it).
    fn activate(&self, a: Activation) -> Fut<'_, Activated>;
    /// `POST /v1/heartbeat` and `/v1/deactivate`: checks the binding, the
    /// key and that `beat.seq` is above the last accepted one, then records
    /// the heartbeat (latest per cluster, hourly rollup, raw history row when
    /// kept; audited as a leaf of the Merkle root sealed about a minute later).
    /// `reset` is the clock reset its chain head carries, verified against
    /// the issuer keys: a mark going back that it accounts for (core's
    /// `check_head_with_reset`) is audited as `clock_reset`, not flagged.
    fn record_heartbeat(
        &self,
        beat: Heartbeat,
        key: [u8; 32],
        now: u64,
        reset: Option<VerifiedClockReset>,
    ) -> Fut<'_, ()>;
    /// `PUT /v1/revocations`: stores the list when newer than the stored one.
    fn publish_list(
        &self,
        list: VerifiedRevocationList,
        actor: String,
        now: u64,
    ) -> Fut<'_, Acceptance>;
    /// `PUT /v1/roots`: stores a verified root; returns the list versions
    /// dropped by its `revocation_floor`.
    fn publish_root(&self, root: VerifiedRoot, actor: String, now: u64) -> Fut<'_, Vec<u64>>;
    /// `POST /v1/upgrade-requests`: `false` when it was filed before.
    fn file_upgrade(
        &self,
        license_id: String,
        request: UpgradeRequest,
        actor: String,
        now: u64,
    ) -> Fut<'_, bool>;
    /// Deletes at most `limit` raw heartbeat history rows received before
    /// `raw_before` and at most `limit` hourly rollups of hours before
    /// `rollups_before`; returns the larger count (below `limit`: done).
    /// Small batches, so the writer never stalls behind a prune.
    fn prune_history(&self, raw_before: u64, rollups_before: u64, limit: u32) -> Fut<'_, usize>;

    /// Seals the heartbeat leaves gathered since the last audit row into
    /// one row when a minute old, or whatever is pending when `force`d (at
    /// start); `true` when a row was written.
    fn seal_heartbeats(&self, now: u64, force: bool) -> Fut<'_, bool>;

    /// The license `id` and its cluster's last contact, if ever activated.
    fn license_view(&self, id: String) -> Fut<'_, Option<LicenseView>>;
    /// One page of clusters by cluster id.
    fn clusters(
        &self,
        license: Option<String>,
        after: String,
        limit: u32,
    ) -> Fut<'_, Vec<ClusterRow>>;
    /// Upgrade requests, newest first, at most 1000.
    fn upgrade_requests(&self, license: Option<String>) -> Fut<'_, Vec<UpgradeRow>>;
    /// A presented bearer token: `(name, scope, revoked)`.
    fn lookup_token(&self, token: String) -> Fut<'_, Option<(String, Scope, bool)>>;
    /// Number of live bindings.
    fn active_clusters(&self) -> Fut<'_, u64>;
    /// What this relay's writer has committed since it started.
    fn commits(&self) -> &Commits;
    /// The newest stored revocation list (bytes as published).
    fn newest_list(&self) -> Fut<'_, Option<Vec<u8>>>;

    /// At start: records when this relay starts serving (a binding's
    /// silence counts from no earlier than that). On a database other
    /// replicas serve from, only when none has served within
    /// `crate::follow::FLEET_DOWN_AFTER`: the relay was not down then.
    fn mark_serving(&self, now: u64) -> Fut<'_, ()>;
    /// At start: stores the configured initial root (audited when new or
    /// changed) and returns the stored roots above it, ascending.
    fn configure_root(&self, initial: VerifiedRoot, now: u64) -> Fut<'_, Vec<StoredRoot>>;
    /// Stored roots above `version`, ascending (replicas catch up with it).
    fn roots_above(&self, version: u64) -> Fut<'_, Vec<StoredRoot>>;
    /// Records that this relay serves at `now`, every few seconds while it
    /// runs: with several replicas, a replica starting while another has
    /// been serving does not restart the fleet's `serving_since` (see
    /// `crate::follow::FLEET_DOWN_AFTER`). Nothing to do for one relay.
    fn mark_alive(&self, _now: u64) -> Fut<'_, ()> {
        Box::pin(async { Ok(()) })
    }
    /// Ticks whenever another replica may have published a list or a root;
    /// `None` for a backend only one relay uses.
    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>>;
    /// The fleet console's own reads (see `crate::console::data`), kept
    /// apart from the API's queries.
    fn console(&self, ask: crate::console::data::Ask) -> Fut<'_, crate::console::data::Answer>;
    /// Finishes queued writes and lets go of the database.
    fn close(self: Arc<Self>) -> Fut<'static, ()>;
}

/// Opens `db` (creating or migrating its schema) for a serving relay;
/// `keep_raw`: also store a raw history row per heartbeat.
pub async fn open(
    db: &Database,
    max_batch: usize,
    keep_raw: bool,
) -> anyhow::Result<Arc<dyn Storage>> {
    Ok(match db {
        Database::Sqlite(path) => Arc::new(sqlite::SqliteStorage::open(path, max_batch, keep_raw)?),
        Database::Postgres(url) => {
            Arc::new(postgres::PgStorage::open(url, max_batch, keep_raw).await?)
        }
    })
}

/// An upgrade request's stored columns as the API and the console show
/// them: the cluster `''` (filed through the API) as none, times as
/// RFC 3339.
pub fn upgrade_row(
    license_id: String,
    cluster: String,
    requested_tier: String,
    message: String,
    time: u64,
    received_at: u64,
    source: String,
) -> UpgradeRow {
    UpgradeRow {
        license_id,
        cluster_id: (!cluster.is_empty()).then_some(cluster),
        requested_tier,
        message,
        time: kaching_core::time::rfc3339(time),
        received_at: kaching_core::time::rfc3339(received_at),
        source,
    }
}

/// The API's upgrade-request read, newest first, at most 1000: one
/// statement per case, so the one license's is found through the
/// `(license_id, …)` key instead of a walk of every request.
pub const UPGRADES_ALL: &str =
    "SELECT license_id, cluster_id, requested_tier, message, time, received_at, source
     FROM upgrade_requests ORDER BY id DESC LIMIT 1000";
/// [`UPGRADES_ALL`] for license `$1` (the same text on both backends).
pub const UPGRADES_OF: &str =
    "SELECT license_id, cluster_id, requested_tier, message, time, received_at, source
     FROM upgrade_requests WHERE license_id = $1 ORDER BY id DESC LIMIT 1000";

/// A cluster's stored quota usage (JSON text written from its last
/// heartbeat); text that does not parse reads as no usage.
pub fn parse_quotas(text: &str) -> std::collections::BTreeMap<String, u64> {
    serde_json::from_str(text).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each commit lands in the first bucket that holds its time; the read
    /// is cumulative, and a commit slower than the last bound is only in
    /// the count (`+Inf`).
    #[test]
    fn commit_times_fill_cumulative_buckets() {
        let c = Commits::default();
        for micros in [100, 500, 700, 3_000, 2_000_000] {
            c.record(2, Duration::from_micros(micros));
        }
        let s = c.read();
        assert_eq!((s.commits, s.writes), (5, 10));
        assert_eq!(s.at_most, [2, 3, 3, 4, 4, 4, 4, 4, 4, 4]);
        assert!((s.seconds - 2.0043).abs() < 1e-9, "{}", s.seconds);
    }
}
