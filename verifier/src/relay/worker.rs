//! The relay tasks: heartbeats (connected licenses) and the revocation
//! long-poll (every license), each retrying with exponential backoff and
//! jitter while the relay is unreachable. The license stays enforced
//! locally throughout; the policy engine decides when a connected license
//! without contact is `overdue`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::client::{Client, Failure, Polled};
use super::Request;
use crate::actor::Command;

/// How often the heartbeat worker looks again when no connected license is in force.
const IDLE: Duration = Duration::from_secs(2);
/// The first pause after a failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// Starts both tasks. They stop when `stop` flips to true; the heartbeat
/// task then deactivates (bounded by the request timeout) before it ends.
pub fn spawn(
    client: Client,
    long_poll: Duration,
    max_backoff: Duration,
    tx: mpsc::UnboundedSender<Command>,
    stop: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let beats = Worker {
        client: client.clone(),
        tx: tx.clone(),
        stop: stop.clone(),
        backoff: Backoff::new(max_backoff),
        tried: 0,
    };
    let polls = Worker {
        client: client.independent(),
        tx,
        stop,
        backoff: Backoff::new(max_backoff),
        tried: 0,
    };
    vec![
        tokio::spawn(beats.heartbeats()),
        tokio::spawn(polls.revocations(long_poll)),
    ]
}

/// Exponential backoff with jitter: each pause is a random point in the
/// upper half of the current step, so clusters that lost the relay together
/// do not return together.
struct Backoff {
    step: Duration,
    max: Duration,
}

impl Backoff {
    fn new(max: Duration) -> Self {
        Backoff {
            step: FIRST_BACKOFF.min(max),
            max,
        }
    }

    fn reset(&mut self) {
        self.step = FIRST_BACKOFF.min(self.max);
    }

    fn next(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        // Sub-second clock noise is random enough to spread retries.
        let noise = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        step / 2 + step.mul_f64(f64::from(noise % 1000) / 2000.0)
    }
}

struct Worker {
    client: Client,
    tx: mpsc::UnboundedSender<Command>,
    stop: watch::Receiver<bool>,
    backoff: Backoff,
    /// Relay URLs that failed in a row since the last success: after a
    /// transient failure the next URL is tried at once, and the backoff
    /// grows only once every URL has failed.
    tried: usize,
}

impl Worker {
    /// Asks the engine thread; `None` when it has stopped.
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::Relay(make(tx))).ok()?;
        rx.await.ok()
    }

    fn tell(&self, req: Request) {
        let _ = self.tx.send(Command::Relay(req));
    }

    fn failed(&mut self, f: &Failure) -> Duration {
        tracing::warn!(error = f.message(), "relay exchange failed");
        self.tell(Request::Failed(f.message().to_string()));
        if let Failure::Transient(..) = f {
            self.tried += 1;
            if let Some(next) = self.client.fail_over() {
                tracing::info!(relay = next, "failing over to the next relay URL");
                if self.tried < self.client.replicas() {
                    return FIRST_BACKOFF;
                }
            }
        }
        self.tried = 0;
        match f {
            Failure::Transient(_, Some(after)) => *after,
            _ => self.backoff.next(),
        }
    }

    /// After a success: the next failure starts a fresh round of URLs.
    fn succeeded(&mut self) {
        self.backoff.reset();
        self.tried = 0;
    }

    /// Sleeps, or returns false when told to stop.
    async fn pause(&mut self, d: Duration) -> bool {
        if *self.stop.borrow() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = self.stop.changed() => false,
        }
    }

    async fn heartbeats(mut self) {
        let mut activated: Option<String> = None;
        loop {
            if *self.stop.borrow() {
                break;
            }
            let wait = match self.beat_once(&mut activated).await {
                Ok(d) => {
                    self.succeeded();
                    d
                }
                Err(f) => {
                    if matches!(f, Failure::Reactivate(_)) {
                        activated = None;
                    }
                    self.failed(&f)
                }
            };
            if !self.pause(wait).await {
                break;
            }
        }
        if activated.is_some() {
            self.deactivate().await;
        }
    }

    /// Activates when needed, then sends one heartbeat; returns the pause
    /// until the next one.
    async fn beat_once(&self, activated: &mut Option<String>) -> Result<Duration, Failure> {
        let Some(Some(act)) = self.ask(Request::Activation).await else {
            // No connected license in force (or the engine stopped).
            *activated = None;
            return Ok(IDLE);
        };
        if activated.as_deref() != Some(act.license_id.as_str()) {
            let rt = self.client.activate(&act).await?;
            tracing::info!(license = %act.license_id, "activated on the relay");
            self.tell(Request::Contact {
                time: rt,
                via: self.client.base().to_string(),
                activation: Some(act.license_id.clone()),
                upgrades_up_to: None,
                clock_reset: None,
                deactivated: false,
            });
            *activated = Some(act.license_id.clone());
        }
        let beat = match self
            .ask(|reply| Request::Beat {
                deactivate: false,
                chain: self.client.sends_chain_head(),
                reset: self.client.sends_clock_reset(),
                reply,
            })
            .await
        {
            Some(Ok(Some(b))) => b,
            Some(Ok(None)) | None => return Ok(IDLE),
            Some(Err(e)) => {
                return Err(Failure::Refused(format!(
                    "cannot prepare a heartbeat: {e:#}"
                )))
            }
        };
        let sent = self.client.beat(&beat, false).await;
        crate::metrics::heartbeat_sent(sent.is_ok());
        self.tell(Request::Contact {
            time: sent?,
            via: self.client.base().to_string(),
            activation: None,
            upgrades_up_to: beat.upgrades_up_to,
            clock_reset: beat.clock_reset,
            deactivated: false,
        });
        self.mailbox().await;
        Ok(act.interval)
    }

    /// After a heartbeat: posts the usage report the engine says is due
    /// and hands the receipts in the answer to the engine. A failure here
    /// is logged and retried after the next heartbeat; it never fails the
    /// heartbeat (reports also travel as files).
    async fn mailbox(&self) {
        if !self.client.has_mailbox() {
            return;
        }
        let (seq, bytes) = match self.ask(Request::Report).await {
            Some(Ok(Some(r))) => r,
            Some(Ok(None)) | None => return,
            Some(Err(e)) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot write the usage report for the relay");
                return;
            }
        };
        match self.client.post_report(&bytes).await {
            Ok(Some(filed)) => {
                let lines = self
                    .ask(|reply| Request::Posted {
                        seq: filed.seq,
                        receipts: filed.receipts,
                        reply,
                    })
                    .await
                    .unwrap_or_default();
                if filed.stored {
                    tracing::info!(seq = filed.seq, "usage report posted to the relay");
                }
                for l in lines {
                    tracing::debug!("{l}");
                }
            }
            Ok(None) => {}
            // Refused for good (a report the relay holds under another hash,
            // or one it cannot read): posting the same bytes again cannot
            // help, so the next report follows it; the vendor's chain check
            // shows the one missing.
            Err(Failure::Refused(why)) => {
                tracing::warn!(error = %why, seq, "the relay refused the usage report; the next report follows it");
                let _ = self
                    .ask(|reply| Request::Posted {
                        seq,
                        receipts: Vec::new(),
                        reply,
                    })
                    .await;
            }
            Err(f) => tracing::warn!(
                error = f.message(),
                "usage report not posted; trying again after the next heartbeat"
            ),
        }
    }

    /// The last heartbeat: frees the license for another cluster.
    async fn deactivate(&self) {
        let Some(Ok(Some(beat))) = self
            .ask(|reply| Request::Beat {
                deactivate: true,
                chain: self.client.sends_chain_head(),
                reset: self.client.sends_clock_reset(),
                reply,
            })
            .await
        else {
            return;
        };
        match self.client.beat(&beat, true).await {
            Ok(rt) => {
                tracing::info!("deactivated on the relay: the license is free for another cluster");
                self.tell(Request::Contact {
                    time: rt,
                    via: self.client.base().to_string(),
                    activation: None,
                    upgrades_up_to: beat.upgrades_up_to,
                    clock_reset: beat.clock_reset,
                    deactivated: true,
                });
            }
            Err(f) => tracing::warn!(
                error = f.message(),
                "could not deactivate on the relay: another cluster can take this license once this one has been silent for the license's offline grace"
            ),
        }
    }

    /// Takes the relay's newer roots, if the engine trusts a root chain.
    /// A relay without roots (or an older one) answers nothing useful; the
    /// revocation poll reports the relay's health, so failures here are quiet.
    async fn sync_roots(&self) {
        let Some(Some(at)) = self.ask(Request::RootVersion).await else {
            return;
        };
        match self.client.roots(at).await {
            Ok(roots) if !roots.is_empty() => {
                match self.ask(|reply| Request::Roots(roots, reply)).await {
                    Some(Ok(taken)) if !taken.is_empty() => {
                        tracing::info!(?taken, "root of trust rotated through the relay");
                    }
                    Some(Err(why)) => tracing::warn!(%why, "roots from the relay refused"),
                    _ => {}
                }
            }
            Ok(_) => {}
            Err(f) => tracing::debug!(error = f.message(), "no roots from the relay"),
        }
    }

    async fn revocations(mut self, wait: Duration) {
        loop {
            if *self.stop.borrow() {
                break;
            }
            self.sync_roots().await;
            let Some(held) = self.ask(Request::Held).await else {
                break;
            };
            let polled = tokio::select! {
                r = self.client.poll_revocations(held, wait) => r,
                _ = self.stop.changed() => break,
            };
            let pause = match polled {
                Ok(Polled::Current) => {
                    self.succeeded();
                    continue;
                }
                Ok(Polled::Later(after)) => {
                    // The relay is up and we hold its newest list: no
                    // failure, no fail-over; a suspension published
                    // meanwhile is served by the next poll.
                    self.succeeded();
                    tracing::debug!(
                        retry_after = after.as_secs(),
                        "the relay's long-polls are full: polling again later"
                    );
                    after.max(Duration::from_secs(1))
                }
                Ok(Polled::Newer(bytes)) => {
                    match self.ask(|reply| Request::Revocations(bytes, reply)).await {
                        Some(Ok(true)) => {
                            self.succeeded();
                            continue;
                        }
                        // Nothing new for us after all: do not spin on it.
                        Some(Ok(false)) => self.backoff.next(),
                        Some(Err(why)) => self.failed(&Failure::Refused(why)),
                        None => break,
                    }
                }
                Err(f) => self.failed(&f),
            };
            if !self.pause(pause).await {
                break;
            }
        }
    }
}
