//! HTTP to the relay, and checking its answers: every `RelayTime` must be
//! signed by a relay key (the root's relay role, else `relay.public_key`)
//! and name this cluster (and, for a
//! heartbeat, echo its sequence number), so a recorded answer cannot be
//! replayed to us.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;

use kaching_core::heartbeat::{verify_relay_time_by, RelayTime};
use kaching_core::wire::mailbox::{ReportFiled, REPORTS_PATH};
use kaching_core::wire::relay::{
    accepts, ActivateBody, RootsAnswer, ACCEPTS_CHAIN_HEAD, ACCEPTS_CLOCK_RESET, ACCEPTS_HEADER,
};
use kaching_core::wire::ErrorBody;
use kaching_core::DocKind;
use tokio::sync::watch;

use super::{Activation, Beat};
use crate::engine::Published;

/// Why an exchange failed, sorted by what the worker does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Network error, 429, 5xx: retry with backoff (`Retry-After` when given).
    Transient(String, Option<Duration>),
    /// `403 not_activated`, `403 wrong_license`, `409 replayed_heartbeat`: activate again.
    Reactivate(String),
    /// Anything else (license in use, bound elsewhere, bad answer…): report, retry slowly.
    Refused(String),
}

impl Failure {
    /// The message for status and logs.
    pub fn message(&self) -> &str {
        match self {
            Failure::Transient(m, _) | Failure::Reactivate(m) | Failure::Refused(m) => m,
        }
    }
}

/// What a revocation poll brought.
#[derive(Debug)]
pub enum Polled {
    /// A list newer than the one held (not yet verified).
    Newer(Vec<u8>),
    /// Nothing newer: the wait ran out, or the relay has no list yet.
    Current,
    /// The relay could not park the poll (`503 long_polls_full`); nothing
    /// newer than the list held: poll again after this long.
    Later(Duration),
}

/// A relay endpoint, and the engine's publication naming the keys its
/// answers must be signed by (they change when a root names a relay).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// The relay's URLs (`relay.urls`); requests go to `bases[current]`.
    bases: Arc<[String]>,
    /// Which URL is in use: moved on by [`Client::fail_over`].
    current: Arc<AtomicUsize>,
    published: watch::Receiver<Arc<Published>>,
    cluster_id: String,
    timeout: Duration,
    /// The relay announced it reads a heartbeat's report chain head
    /// (`Kaching-Accepts: chain-head`); an older relay refuses the claim.
    chain_head: Arc<AtomicBool>,
    /// The relay announced it reads the clock reset in the chain head
    /// (`Kaching-Accepts: clock-reset`); an older relay refuses it.
    clock_reset: Arc<AtomicBool>,
    /// False once the relay answered 404 to a usage report (a relay older
    /// than the mailbox): no more posts until restart.
    mailbox: Arc<AtomicBool>,
}

impl Client {
    /// A client for the relay at `bases` (no trailing slashes; the first
    /// is used until it fails) answering as `cluster_id`.
    pub fn new(
        bases: &[String],
        published: watch::Receiver<Arc<Published>>,
        cluster_id: String,
        timeout: Duration,
    ) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .user_agent(concat!("kaching-verifier/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Client {
            http,
            bases: bases
                .iter()
                .map(|b| b.trim_end_matches('/').to_string())
                .collect(),
            current: Arc::new(AtomicUsize::new(0)),
            published,
            cluster_id,
            timeout,
            chain_head: Arc::new(AtomicBool::new(false)),
            clock_reset: Arc::new(AtomicBool::new(false)),
            mailbox: Arc::new(AtomicBool::new(true)),
        })
    }

    /// The relay URL in use.
    pub fn base(&self) -> &str {
        let i = self.current.load(Ordering::Relaxed) % self.bases.len().max(1);
        self.bases.get(i).map_or("", String::as_str)
    }

    /// How many relay URLs there are to fail over between.
    pub fn replicas(&self) -> usize {
        self.bases.len()
    }

    /// Moves on to the next relay URL (after a transient failure); `None`
    /// with only one.
    pub fn fail_over(&self) -> Option<&str> {
        if self.bases.len() < 2 {
            return None;
        }
        self.current.fetch_add(1, Ordering::Relaxed);
        Some(self.base())
    }

    /// The same relay URLs with a position of its own, so one task's
    /// failover does not move another's.
    pub fn independent(&self) -> Client {
        Client {
            current: Arc::new(AtomicUsize::new(self.current.load(Ordering::Relaxed))),
            ..self.clone()
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// Whether the next heartbeat may carry the report chain head: the
    /// relay's last answer announced it reads it.
    pub fn sends_chain_head(&self) -> bool {
        self.chain_head.load(Ordering::Relaxed)
    }

    /// Whether the next heartbeat's chain head may carry the clock reset
    /// this cluster took: the relay's last answer announced it reads it.
    pub fn sends_clock_reset(&self) -> bool {
        self.clock_reset.load(Ordering::Relaxed)
    }

    /// `POST /v1/activate`.
    pub async fn activate(&self, a: &Activation) -> Result<RelayTime, Failure> {
        let body = ActivateBody {
            license: a.license.clone(),
            activation_request: a.request.clone(),
        };
        let resp = self
            .http
            .post(self.url("/v1/activate"))
            .json(&body)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| unreachable(self.base(), &e))?;
        let rt = self.answer(resp, "activation").await?;
        self.check(rt, None)
    }

    /// `POST /v1/heartbeat`, or `/v1/deactivate` for the last one.
    pub async fn beat(&self, b: &Beat, deactivate: bool) -> Result<RelayTime, Failure> {
        let path = if deactivate {
            "/v1/deactivate"
        } else {
            "/v1/heartbeat"
        };
        let resp = self
            .http
            .post(self.url(path))
            .header(
                reqwest::header::CONTENT_TYPE,
                DocKind::Heartbeat.content_type(),
            )
            .body(b.bytes.clone())
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| unreachable(self.base(), &e))?;
        if resp.status() == StatusCode::UNPROCESSABLE_ENTITY {
            // An older relay behind the same address refuses the claim it
            // does not know; the next heartbeat goes without it.
            self.chain_head.store(false, Ordering::Relaxed);
            self.clock_reset.store(false, Ordering::Relaxed);
        }
        let what = if deactivate {
            "deactivation"
        } else {
            "heartbeat"
        };
        let rt = self.answer(resp, what).await?;
        self.check(rt, Some(b.seq))
    }

    /// Whether usage reports go to this relay (it has not answered 404).
    pub fn has_mailbox(&self) -> bool {
        self.mailbox.load(Ordering::Relaxed)
    }

    /// `POST /v1/usage-reports`: the relay's answer, with the receipts
    /// waiting for this cluster; `None` from a relay without the mailbox
    /// (404), which turns posting off until restart.
    pub async fn post_report(&self, bytes: &[u8]) -> Result<Option<ReportFiled>, Failure> {
        let resp = self
            .http
            .post(self.url(REPORTS_PATH))
            .header(
                reqwest::header::CONTENT_TYPE,
                DocKind::UsageReport.content_type(),
            )
            .body(bytes.to_vec())
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| unreachable(self.base(), &e))?;
        if resp.status() == StatusCode::NOT_FOUND {
            self.mailbox.store(false, Ordering::Relaxed);
            tracing::info!(
                relay = self.base(),
                "the relay does not take usage reports (older than the mailbox): give reports to the vendor as files (kaching-verifier usage-report)"
            );
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(refusal(resp, "usage report").await);
        }
        let filed: ReportFiled = resp.json().await.map_err(|e| {
            Failure::Refused(format!(
                "the relay's answer to the usage report is not one: {e}"
            ))
        })?;
        if filed.cluster_id != self.cluster_id {
            return Err(Failure::Refused(format!(
                "the relay answered the usage report for cluster {}, this is {}: answer ignored",
                filed.cluster_id, self.cluster_id
            )));
        }
        Ok(Some(filed))
    }

    /// `GET /v1/revocations?after=held&wait=…`: a newer list, nothing newer
    /// in time, or "ask again later" from a relay whose long-polls are full.
    pub async fn poll_revocations(&self, held: u64, wait: Duration) -> Result<Polled, Failure> {
        let resp = self
            .http
            .get(self.url("/v1/revocations"))
            .query(&[
                ("after", held.to_string()),
                ("wait", format!("{}s", wait.as_secs().max(1))),
            ])
            .timeout(wait + self.timeout)
            .send()
            .await
            .map_err(|e| unreachable(self.base(), &e))?;
        match resp.status() {
            StatusCode::OK => resp
                .bytes()
                .await
                .map(|b| Polled::Newer(b.to_vec()))
                .map_err(|e| unreachable(self.base(), &e)),
            StatusCode::NOT_MODIFIED | StatusCode::NOT_FOUND => Ok(Polled::Current),
            _ => {
                let r = Refusal::read(resp).await;
                match r.retry_after {
                    // The relay holds as many long-polls as it may; the list
                    // we hold is its newest. Not a failure: ask again when told.
                    Some(after) if r.code == "long_polls_full" => Ok(Polled::Later(after)),
                    _ => Err(r.failure("revocation poll")),
                }
            }
        }
    }

    /// `GET /v1/roots?after=N`: the relay's roots newer than `after`, binary.
    pub async fn roots(&self, after: u64) -> Result<Vec<Vec<u8>>, Failure> {
        let resp = self
            .http
            .get(self.url("/v1/roots"))
            .query(&[("after", after.to_string())])
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| unreachable(self.base(), &e))?;
        if !resp.status().is_success() {
            return Err(refusal(resp, "roots request").await);
        }
        let answer: RootsAnswer = resp.json().await.map_err(|e| {
            Failure::Refused(format!("the relay's roots answer is not a roots list: {e}"))
        })?;
        answer
            .roots
            .iter()
            .map(|a| {
                kaching_core::armor::dearmor(a.as_bytes(), Some(DocKind::Root))
                    .map_err(|e| Failure::Refused(format!("a root from the relay: {e}")))
            })
            .collect()
    }

    async fn answer(&self, resp: reqwest::Response, what: &str) -> Result<RelayTime, Failure> {
        if !resp.status().is_success() {
            return Err(refusal(resp, what).await);
        }
        let announced = |token| {
            accepts(
                resp.headers()
                    .get_all(ACCEPTS_HEADER)
                    .iter()
                    .filter_map(|v| v.to_str().ok()),
                token,
            )
        };
        self.chain_head
            .store(announced(ACCEPTS_CHAIN_HEAD), Ordering::Relaxed);
        self.clock_reset
            .store(announced(ACCEPTS_CLOCK_RESET), Ordering::Relaxed);
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| unreachable(self.base(), &e))?;
        let Some(keys) = self.published.borrow().relay_signers.clone() else {
            return Err(Failure::Refused(
                "no relay key to check the answer with: set relay.public_key".into(),
            ));
        };
        verify_relay_time_by(&bytes, &keys).map_err(|e| {
            Failure::Refused(format!(
                "the relay's answer to the {what} is not signed by a relay key ({e}): \
                 check relay.public_key against `kaching-relay relay-key`, or the relay role of the root"
            ))
        })
    }

    fn check(&self, rt: RelayTime, seq: Option<u64>) -> Result<RelayTime, Failure> {
        if rt.cluster_id.as_deref() != Some(self.cluster_id.as_str()) {
            return Err(Failure::Refused(format!(
                "the relay answered for cluster {:?}, this is {}: answer ignored",
                rt.cluster_id, self.cluster_id
            )));
        }
        if seq.is_some() && rt.seq != seq {
            return Err(Failure::Refused(format!(
                "the relay answered heartbeat {:?}, this one was {seq:?}: answer ignored (replayed?)",
                rt.seq
            )));
        }
        Ok(rt)
    }
}

fn unreachable(base: &str, e: &reqwest::Error) -> Failure {
    Failure::Transient(
        format!("relay {base} unreachable ({e}); retrying with backoff: check relay.url / relay.urls and the network"),
        None,
    )
}

/// Turns an error answer (`{"error": {"code", "message"}}`) into a [`Failure`].
async fn refusal(resp: reqwest::Response, what: &str) -> Failure {
    Refusal::read(resp).await.failure(what)
}

/// A relay's error answer, read.
struct Refusal {
    status: StatusCode,
    retry_after: Option<Duration>,
    code: String,
    message: String,
}

impl Refusal {
    async fn read(resp: reqwest::Response) -> Self {
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // A proxy in between may answer with anything: then the status says it.
        let body = resp
            .json::<ErrorBody>()
            .await
            .unwrap_or_else(|_| ErrorBody::new("", ""));
        Refusal {
            status,
            retry_after,
            code: body.error.code,
            message: body.error.message,
        }
    }

    fn failure(self, what: &str) -> Failure {
        let Refusal {
            status,
            retry_after,
            code,
            message,
        } = self;
        let text = format!("relay refused the {what}: {status} {code}: {message}");
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Failure::Transient(text, retry_after);
        }
        match code.as_str() {
            "not_activated" | "replayed_heartbeat" | "wrong_license" => Failure::Reactivate(text),
            _ => Failure::Refused(text),
        }
    }
}
