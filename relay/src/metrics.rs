//! Prometheus metrics (`GET /metrics`): the questions an operator asks of a
//! relay. Is it answering, and with what statuses? Are heartbeats and
//! activations getting through? Why are requests refused? How many clusters
//! are parked on the revocation long-poll, how many are bound, and is the
//! list being served about to go stale? Is group commit keeping up with the
//! disk?
//!
//! Every relay ([`crate::run`]) has its own recorder rather than the
//! process-global one: tests and the end-to-end suite run several relays and a
//! verifier in one process, and each must report its own traffic only. So
//! the relay records through [`Metrics`], never through the `metrics::counter!`
//! macros (which would write to the global recorder, the verifier's).
//!
//! docs/relay.md ("Metrics") lists every series; deploy/ holds the alert
//! rules and the dashboard built on them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use axum::http::{Method, StatusCode};
use metrics::{Counter, Gauge, Key, Label, Level, Metadata, Recorder, SharedString};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::routes::paths::{ACTIVATE, HEARTBEAT};
use crate::storage::{CommitStats, COMMIT_BUCKETS};

/// Every request answered, by route template and HTTP status.
pub const REQUESTS: &str = "kaching_relay_requests_total";
/// `POST /v1/heartbeat` answers: `accepted` (2xx) or `refused` (anything else).
pub const HEARTBEATS: &str = "kaching_relay_heartbeats_total";
/// `POST /v1/activate` answers: `activated` (2xx) or `refused`.
pub const ACTIVATIONS: &str = "kaching_relay_activations_total";
/// Every error answer, by its JSON error code.
pub const REFUSALS: &str = "kaching_relay_refusals_total";
/// Revocation long-polls parked now.
pub const LONG_POLLS_WAITING: &str = "kaching_relay_long_polls_waiting";
/// Clusters holding a license now (status `active`), read at scrape time.
pub const CLUSTERS_BOUND: &str = "kaching_relay_clusters_bound";
/// Version of the revocation list being served (0: none yet).
pub const REVOCATION_LIST_VERSION: &str = "kaching_relay_revocation_list_version";
/// Seconds until the served list's `expires` (negative after); absent without a list.
pub const REVOCATION_LIST_EXPIRY: &str = "kaching_relay_revocation_list_expiry_seconds";

/// Transactions the database writer committed (on SQLite, one `fsync` each).
pub const COMMITS: &str = "kaching_relay_commits_total";
/// Writes those commits carried: divided by [`COMMITS`], how many callers
/// one commit served (group commit at work).
pub const COMMITTED_WRITES: &str = "kaching_relay_committed_writes_total";
/// Time per committed batch, from its start to its durable commit
/// (histogram, buckets [`crate::storage::COMMIT_BUCKETS`]).
pub const COMMIT_SECONDS: &str = "kaching_relay_commit_seconds";

/// Every series the relay exports (tests hold deploy/ and docs to this list).
pub const NAMES: [&str; 11] = [
    REQUESTS,
    HEARTBEATS,
    ACTIVATIONS,
    REFUSALS,
    LONG_POLLS_WAITING,
    CLUSTERS_BOUND,
    REVOCATION_LIST_VERSION,
    REVOCATION_LIST_EXPIRY,
    COMMITS,
    COMMITTED_WRITES,
    COMMIT_SECONDS,
];

/// The `route` label of a request no route matched: a fixed value, so that
/// scanners probing random paths cannot grow the number of series.
pub const UNMATCHED: &str = "unmatched";

/// Whether a series counts up or reads a level.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

/// Every series' type and `# HELP` text.
const HELP: [(&str, Kind, &str); 10] = [
    (
        REQUESTS,
        Kind::Counter,
        "Requests answered, by route template and HTTP status.",
    ),
    (
        HEARTBEATS,
        Kind::Counter,
        "POST /v1/heartbeat answers: accepted (2xx) or refused (an error answer).",
    ),
    (
        ACTIVATIONS,
        Kind::Counter,
        "POST /v1/activate answers: activated (2xx) or refused (an error answer).",
    ),
    (
        REFUSALS,
        Kind::Counter,
        "Error answers (4xx and 5xx), by their JSON error code.",
    ),
    (
        LONG_POLLS_WAITING,
        Kind::Gauge,
        "GET /v1/revocations long-polls parked, waiting for a newer list.",
    ),
    (
        CLUSTERS_BOUND,
        Kind::Gauge,
        "Clusters holding a license (status active), counted at scrape time.",
    ),
    (
        REVOCATION_LIST_VERSION,
        Kind::Gauge,
        "Version of the revocation list being served; 0 before the first publish.",
    ),
    (
        REVOCATION_LIST_EXPIRY,
        Kind::Gauge,
        "Seconds until the served revocation list's expires deadline; negative after.",
    ),
    (
        COMMITS,
        Kind::Counter,
        "Transactions the database writer committed (SQLite: one fsync each).",
    ),
    (
        COMMITTED_WRITES,
        Kind::Counter,
        "Writes (heartbeats, activations, publishes...) those commits carried; divided by commits: writes per commit.",
    ),
];

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// One relay's metrics.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// `requests_total` handles by route, then status: after a series'
    /// first request, counting it takes a read lock and no allocation.
    requests: RwLock<HashMap<String, Vec<(u16, Counter)>>>,
    /// `refusals_total` handles by error code.
    refusals: RwLock<HashMap<&'static str, Counter>>,
    heartbeat_accepted: Counter,
    heartbeat_refused: Counter,
    activation_activated: Counter,
    activation_refused: Counter,
    long_polls: Gauge,
    /// Long-polls parked now, and how many may be.
    parked: Arc<AtomicUsize>,
    long_poll_cap: usize,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(crate::config::DEFAULT_MAX_LONG_POLLS)
    }
}

impl Metrics {
    /// A fresh recorder with every fixed series registered at 0, so that
    /// `rate()` and alerts see them before the first event. At most
    /// `long_poll_cap` long-polls park at once (see [`Metrics::try_park`]).
    pub fn new(long_poll_cap: usize) -> Self {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        for (name, kind, help) in HELP {
            let help = SharedString::const_str(help);
            match kind {
                Kind::Counter => recorder.describe_counter(name.into(), None, help),
                Kind::Gauge => recorder.describe_gauge(name.into(), None, help),
            }
        }
        let counter = |name: &'static str, result: &'static str| {
            recorder.register_counter(
                &Key::from_parts(name, vec![Label::from_static_parts("result", result)]),
                &METADATA,
            )
        };
        let m = Metrics {
            heartbeat_accepted: counter(HEARTBEATS, "accepted"),
            heartbeat_refused: counter(HEARTBEATS, "refused"),
            activation_activated: counter(ACTIVATIONS, "activated"),
            activation_refused: counter(ACTIVATIONS, "refused"),
            requests: RwLock::default(),
            refusals: RwLock::default(),
            long_polls: recorder
                .register_gauge(&Key::from_static_name(LONG_POLLS_WAITING), &METADATA),
            parked: Arc::default(),
            long_poll_cap,
            recorder,
            handle,
        };
        for c in [
            &m.heartbeat_accepted,
            &m.heartbeat_refused,
            &m.activation_activated,
            &m.activation_refused,
        ] {
            c.increment(0);
        }
        m.long_polls.set(0.0);
        m
    }

    /// Counts one answered request. `route` is the matched route template
    /// (`None`: no route matched), `code` the JSON error code of an error answer.
    pub fn request(
        &self,
        route: Option<&str>,
        method: &Method,
        status: StatusCode,
        code: Option<&'static str>,
    ) {
        let route = route.unwrap_or(UNMATCHED);
        self.count_request(route, status);
        if let Some(code) = code {
            self.count_refusal(code);
        }
        if *method != Method::POST {
            return;
        }
        let ok = status.is_success();
        match route {
            HEARTBEAT if ok => self.heartbeat_accepted.increment(1),
            HEARTBEAT => self.heartbeat_refused.increment(1),
            ACTIVATE if ok => self.activation_activated.increment(1),
            ACTIVATE => self.activation_refused.increment(1),
            _ => {}
        }
    }

    fn count_request(&self, route: &str, status: StatusCode) {
        let code = status.as_u16();
        let find = |m: &HashMap<String, Vec<(u16, Counter)>>| {
            m.get(route)
                .and_then(|v| v.iter().find(|(s, _)| *s == code))
                .map(|(_, c)| c.increment(1))
        };
        if find(&self.requests.read().unwrap_or_else(PoisonError::into_inner)).is_some() {
            return;
        }
        let mut m = self
            .requests
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        // Another request may have registered it meanwhile.
        if find(&m).is_some() {
            return;
        }
        let key = Key::from_parts(
            REQUESTS,
            vec![
                Label::new("route", route.to_owned()),
                Label::new("status", status.as_str().to_owned()),
            ],
        );
        let counter = self.recorder.register_counter(&key, &METADATA);
        counter.increment(1);
        m.entry(route.to_owned()).or_default().push((code, counter));
    }

    fn count_refusal(&self, code: &'static str) {
        let read = self.refusals.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = read.get(code) {
            c.increment(1);
            return;
        }
        drop(read);
        let mut m = self
            .refusals
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        m.entry(code)
            .or_insert_with(|| {
                let key = Key::from_parts(REFUSALS, vec![Label::from_static_parts("reason", code)]);
                self.recorder.register_counter(&key, &METADATA)
            })
            .increment(1);
    }

    /// Marks a long-poll as parked until the returned guard is dropped
    /// (answered, its wait over, or cut off at shutdown); `None` when the
    /// cap is reached: the poll must be answered at once.
    pub fn try_park(&self) -> Option<Parked> {
        let taken = self
            .parked
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.long_poll_cap).then_some(n + 1)
            });
        taken.ok()?;
        self.long_polls.increment(1.0);
        Some(Parked(self.long_polls.clone(), self.parked.clone()))
    }

    /// The Prometheus text exposition, with the scrape-time series set from
    /// `now`: the number of bound clusters, the served list's
    /// `(version, expires)` and what the writer's commits counted.
    pub fn render(
        &self,
        clusters_bound: u64,
        list: Option<(u64, u64)>,
        commits: &CommitStats,
        now: u64,
    ) -> String {
        let gauge = |name: &'static str| {
            self.recorder
                .register_gauge(&Key::from_static_name(name), &METADATA)
        };
        let counter = |name: &'static str| {
            self.recorder
                .register_counter(&Key::from_static_name(name), &METADATA)
        };
        counter(COMMITS).absolute(commits.commits);
        counter(COMMITTED_WRITES).absolute(commits.writes);
        gauge(CLUSTERS_BOUND).set(clusters_bound as f64);
        gauge(REVOCATION_LIST_VERSION).set(list.map_or(0.0, |(v, _)| v as f64));
        if let Some((_, expires)) = list {
            // i128: neither difference of two u64 overflows.
            let left = i128::from(expires) - i128::from(now);
            gauge(REVOCATION_LIST_EXPIRY).set(left as f64);
        }
        let mut text = self.handle.render();
        commit_histogram(&mut text, commits);
        text
    }
}

/// Appends [`COMMIT_SECONDS`] to an exposition. Written here, not through
/// the recorder: the writer counts into atomics ([`CommitStats`]), and the
/// recorder would keep a summary, not these fixed buckets.
fn commit_histogram(text: &mut String, c: &CommitStats) {
    use std::fmt::Write;
    let _ = writeln!(
        text,
        "# HELP {COMMIT_SECONDS} Time per committed batch of writes, from its start to its durable commit (SQLite: the fsync included); what each write in it waited once the writer took it."
    );
    let _ = writeln!(text, "# TYPE {COMMIT_SECONDS} histogram");
    for (le, n) in COMMIT_BUCKETS.iter().zip(c.at_most) {
        let _ = writeln!(text, "{COMMIT_SECONDS}_bucket{{le=\"{le}\"}} {n}");
    }
    let _ = writeln!(text, "{COMMIT_SECONDS}_bucket{{le=\"+Inf\"}} {}", c.commits);
    let _ = writeln!(text, "{COMMIT_SECONDS}_sum {}", c.seconds);
    let _ = writeln!(text, "{COMMIT_SECONDS}_count {}", c.commits);
}

/// A parked long-poll; dropping it frees its place and takes it off the gauge.
pub struct Parked(Gauge, Arc<AtomicUsize>);

impl Drop for Parked {
    fn drop(&mut self) {
        self.1.fetch_sub(1, Ordering::AcqRel);
        self.0.decrement(1.0);
    }
}
