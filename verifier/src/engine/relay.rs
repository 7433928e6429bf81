//! The engine's half of connected mode: what the relay worker
//! ([`crate::relay`]) may ask of it, and what it does with each request —
//! it signs what goes to the relay and applies what comes back, on the
//! engine thread like every other write. A revocation list from the relay
//! takes the same path as one from a file ([`Engine::accept_revocations`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use kaching_core::armor::armor;
use kaching_core::cluster::ActivationRequest;
use kaching_core::heartbeat::{ChainHead, Heartbeat, RelayTime};
use kaching_core::time::{rfc3339, Timestamp};
use kaching_core::wire::verifier::RelayStatus;
use kaching_core::{verify_revocation_list, DocKind, TrustedKeys};

use super::published::Event;
use super::revocations::Source;
use super::Engine;
use crate::config::RelayConfig;
use crate::state::Db;
use crate::trust::Trust;

/// `meta` keys of the relay's persisted state.
/// Last relay-signed answer.
pub(crate) const LAST_CONTACT: &str = "relay_last_contact";
/// Last heartbeat sequence number used.
pub(crate) const SEQ: &str = "relay_seq";
/// Row id of the last upgrade request a heartbeat carried.
pub(crate) const UPGRADES_SENT: &str = "relay_upgrades_sent";

/// What the engine knows about the relay conversation.
#[derive(Debug, Clone, Default)]
pub struct RelayState {
    /// The relay URL last in contact (the first configured, before any).
    pub url: Option<String>,
    /// Last relay-signed answer (persisted): feeds `Snapshot::last_relay_contact`.
    pub last_contact: Option<Timestamp>,
    /// Last failure, with its time; cleared by the next success.
    pub last_error: Option<(Timestamp, String)>,
    /// License id the relay last activated for this cluster.
    pub activated: Option<String>,
    /// Last message the relay sent for this cluster's operators.
    pub message: Option<String>,
    /// Newest revocation version the relay announced.
    pub relay_revocation_version: Option<u64>,
    /// `relay.public_key`, read at start (only with a relay URL).
    pub configured_key: Option<kaching_core::PublicKey>,
    /// The keys the relay's answers must be signed by, and the root version
    /// they were worked out for (they change only with the root).
    pub signers: Option<(Option<u64>, Option<Arc<TrustedKeys>>)>,
    /// The last receipt picked up from the relay and applied (status).
    pub last_receipt: Option<String>,
    /// When a usage report was last posted to the relay (paces the
    /// posts that pick up receipts: `relay.receipt_poll`).
    pub last_report_post: Option<Timestamp>,
}

impl RelayState {
    /// Loads the persisted part.
    pub fn load(cfg: &RelayConfig, db: &Db) -> anyhow::Result<RelayState> {
        let configured_key = match (cfg.urls.is_empty(), &cfg.public_key) {
            (false, Some(path)) => Some(crate::loader::relay_public_key(path)?),
            _ => None,
        };
        Ok(RelayState {
            url: cfg.urls.first().cloned(),
            last_contact: db.time(LAST_CONTACT)?,
            configured_key,
            ..RelayState::default()
        })
    }

    /// The `relay` object of `GET /v1/status`.
    pub fn status(&self) -> Option<RelayStatus> {
        let url = self.url.clone()?;
        Some(RelayStatus {
            url,
            last_contact: self.last_contact.map(rfc3339),
            last_error: self
                .last_error
                .as_ref()
                .map(|(t, e)| format!("{}: {e}", rfc3339(*t))),
            activated_license: self.activated.clone(),
            message: self.message.clone(),
            relay_revocation_version: self.relay_revocation_version,
            last_receipt: self.last_receipt.clone(),
        })
    }
}

/// What the relay worker needs to activate.
#[derive(Debug, Clone)]
pub struct Activation {
    /// License id.
    pub license_id: String,
    /// The license, armored.
    pub license: String,
    /// A fresh activation request, armored, signed by the cluster key.
    pub request: String,
    /// Heartbeat interval (config override, else the license's).
    pub interval: Duration,
}

/// What an accepted heartbeat carried to the relay, so it is not carried again.
struct Reached {
    /// Upgrade requests up to this row id.
    upgrades_up_to: Option<i64>,
    /// The clock reset with this id.
    clock_reset: Option<[u8; 16]>,
}

/// A signed heartbeat ready to post.
#[derive(Debug, Clone)]
pub struct Beat {
    /// The COSE_Sign1 bytes.
    pub bytes: Vec<u8>,
    /// Its sequence number (the answer must echo it).
    pub seq: u64,
    /// Row id of the last upgrade request it carries.
    pub upgrades_up_to: Option<i64>,
    /// Id of the clock reset its chain head carries.
    pub clock_reset: Option<[u8; 16]>,
}

/// A usage report due at the relay: its sequence number and binary bytes.
pub type DueReport = (u64, Vec<u8>);

/// Work the relay worker asks of the engine thread.
#[derive(Debug)]
pub enum Request {
    /// Documents to activate with; `None` when no connected license is in force.
    Activation(oneshot::Sender<Option<Activation>>),
    /// Build and sign the next heartbeat (`deactivate`: the last one).
    Beat {
        /// True for the deactivation heartbeat.
        deactivate: bool,
        /// Carry the report chain head (the relay announced it reads it).
        chain: bool,
        /// Carry the clock reset this cluster took in the chain head, until
        /// the relay accepts a heartbeat with it (the relay announced it
        /// reads it; only with `chain`).
        reset: bool,
        /// The signed heartbeat; `None` without a connected license.
        reply: oneshot::Sender<anyhow::Result<Option<Beat>>>,
    },
    /// A verified relay answer: raise the mark, record the contact.
    Contact {
        /// The relay-signed statement.
        time: RelayTime,
        /// The relay URL that answered.
        via: String,
        /// True when it answers an activation (its `seq` is the last the relay accepted).
        activation: Option<String>,
        /// Upgrade requests up to this row id reached the relay.
        upgrades_up_to: Option<i64>,
        /// The clock reset with this id reached the relay: not carried again.
        clock_reset: Option<[u8; 16]>,
        /// True when it answers the deactivation.
        deactivated: bool,
    },
    /// A failed exchange, for status and logs.
    Failed(String),
    /// A revocation list from the relay: accept it like a file (Ok(true): newer, in force).
    Revocations(Vec<u8>, oneshot::Sender<Result<bool, String>>),
    /// The revocation version held.
    Held(oneshot::Sender<u64>),
    /// The version of the root in force (`None`: no root chain to extend).
    RootVersion(oneshot::Sender<Option<u64>>),
    /// Roots from the relay: taken through the chain like files (Ok: the
    /// versions taken, maybe none).
    Roots(Vec<Vec<u8>>, oneshot::Sender<Result<Vec<u64>, String>>),
    /// The usage report to post to the relay now, if any: its sequence
    /// number and binary bytes.
    Report(oneshot::Sender<anyhow::Result<Option<DueReport>>>),
    /// The relay took report `seq` and answered with these armored
    /// receipts: import each like `receipt import` (the reply says what
    /// each did, for the log).
    Posted {
        /// The report's sequence number.
        seq: u64,
        /// Receipts waiting for this cluster.
        receipts: Vec<String>,
        /// One line per receipt.
        reply: oneshot::Sender<Vec<String>>,
    },
}

impl Engine {
    /// The keys the relay's answers must be signed by under the root in
    /// force (core's `relay_signers` rule), worked out again only when the
    /// root changes.
    pub(crate) fn relay_signers(&mut self) -> Option<Arc<TrustedKeys>> {
        let root = self
            .trust
            .as_ref()
            .and_then(|t| t.chain.as_ref())
            .map(|c| &c.current().root);
        let version = root.map(|r| r.version);
        match &self.relay.signers {
            Some((v, keys)) if *v == version => keys.clone(),
            _ => {
                let keys =
                    kaching_core::root::relay_signers(root, self.relay.configured_key.as_ref())
                        .map(Arc::new);
                self.relay.signers = Some((version, keys.clone()));
                keys
            }
        }
    }

    /// Applies one request from the relay worker; replies on its channel.
    pub fn relay_request(&mut self, req: Request, now: Timestamp) {
        match req {
            Request::Activation(reply) => {
                let _ = reply.send(self.relay_activation(now));
            }
            Request::Beat {
                deactivate,
                chain,
                reset,
                reply,
            } => {
                let _ = reply.send(self.relay_beat(deactivate, chain, reset, now));
            }
            Request::Contact {
                time,
                via,
                activation,
                upgrades_up_to,
                clock_reset,
                deactivated,
            } => {
                self.relay.url = Some(via);
                let reached = Reached {
                    upgrades_up_to,
                    clock_reset,
                };
                self.relay_contact(&time, activation, reached, deactivated, now);
            }
            Request::Failed(why) => {
                self.relay.last_error = Some((now, why));
                self.recompute(now);
            }
            Request::Revocations(bytes, reply) => {
                let _ = reply.send(self.relay_revocations(&bytes, now));
            }
            Request::RootVersion(reply) => {
                let _ = reply.send(self.trust.as_ref().and_then(Trust::root_version));
            }
            Request::Roots(roots, reply) => {
                let _ = reply.send(self.extend_roots(&roots, now));
            }
            Request::Report(reply) => {
                let _ = reply.send(self.relay_report(now));
            }
            Request::Posted {
                seq,
                receipts,
                reply,
            } => {
                let _ = reply.send(self.report_posted(seq, &receipts, now));
            }
            Request::Held(reply) => {
                let _ = reply.send(self.revocations.as_ref().map_or(0, |r| r.list.version));
            }
        }
    }

    fn relay_activation(&self, now: Timestamp) -> Option<Activation> {
        let v = self.license.as_ref()?;
        let hb = v.license.heartbeat?;
        let req = ActivationRequest {
            cluster_id: self.identity.cluster_id.clone(),
            cluster_key: *self.identity.key.public().as_bytes(),
            hostname: crate::identity::hostname(),
            nodes: u32::try_from(self.live_nodes(now)).unwrap_or(u32::MAX),
            created: now,
        };
        Some(Activation {
            license_id: v.license.id.to_string(),
            license: armor(DocKind::License, &v.bytes),
            request: armor(DocKind::ActivationRequest, &req.sign(&self.identity.key)),
            interval: self
                .cfg
                .relay
                .heartbeat_interval
                .unwrap_or(Duration::from_secs(hb.interval.max(1))),
        })
    }

    fn relay_beat(
        &mut self,
        deactivate: bool,
        chain: bool,
        reset: bool,
        now: Timestamp,
    ) -> anyhow::Result<Option<Beat>> {
        let Some(v) = &self.license else {
            return Ok(None);
        };
        if v.license.heartbeat.is_none() {
            return Ok(None);
        }
        let license_id = v.license.id;
        let sent = self.db.time(UPGRADES_SENT)?.unwrap_or(0);
        let pending: Vec<_> = self
            .db
            .upgrades()?
            .into_iter()
            .filter(|q| q.id > i64::try_from(sent).unwrap_or(i64::MAX))
            .collect();
        // The sequence number is committed before the heartbeat leaves, so a
        // crash can never make this cluster reuse one.
        let seq = self.db.time(SEQ)?.unwrap_or(0) + 1;
        self.db.set_time(SEQ, seq)?;
        // The clock reset taken and not yet told to the relay: with it,
        // the relay sees the mark going back as the reset, not a restore.
        // Unreadable, it is left out: the heartbeat itself must not wait on it.
        let told = if chain && reset {
            self.db.clock_reset_to_tell().unwrap_or_else(|e| {
                tracing::warn!(error = %format!("{e:#}"), "cannot read the clock reset to tell the relay; this heartbeat goes without it");
                None
            })
        } else {
            None
        };
        // The durable mark, not the one in memory: after a crash the mark
        // read back is never below one a heartbeat already named.
        let chain = if chain {
            let head = self.db.report_head()?;
            Some(ChainHead {
                report_seq: head.map_or(0, |(seq, _)| seq),
                report_hash: head.map(|(_, hash)| hash),
                mark: self.persisted_mark,
                reset: told.as_ref().map(|(_, bytes)| bytes.clone()),
            })
        } else {
            None
        };
        let status = &self.current().status.status;
        let hb = Heartbeat {
            license_id,
            cluster_id: self.identity.cluster_id.clone(),
            seq,
            time: now,
            state: status.state.clone(),
            active_nodes: u32::try_from(self.live_nodes(now)).unwrap_or(u32::MAX),
            quotas: status
                .quotas
                .iter()
                .map(|(k, q)| (k.clone(), q.used))
                .collect(),
            verifier_version: env!("CARGO_PKG_VERSION").to_string(),
            upgrade_requests: pending.iter().map(|q| q.request.clone()).collect(),
            deactivate,
            chain,
        };
        Ok(Some(Beat {
            bytes: hb.sign(&self.identity.key),
            seq,
            upgrades_up_to: pending.last().map(|q| q.id),
            clock_reset: told.map(|(id, _)| id),
        }))
    }

    fn relay_contact(
        &mut self,
        rt: &RelayTime,
        activation: Option<String>,
        reached: Reached,
        deactivated: bool,
        now: Timestamp,
    ) {
        // Relay time only ever raises the mark: a relay running ahead can
        // push toward expiry, never extend a license.
        self.raise_mark(rt.time);
        let contact = now.max(rt.time);
        self.relay.last_contact = Some(contact);
        self.relay.last_error = None;
        self.relay.message = rt.message.clone();
        self.relay.relay_revocation_version = Some(rt.revocation_version);
        let mut writes = vec![self.db.set_time(LAST_CONTACT, contact)];
        if let Some(id) = activation {
            self.relay.activated = Some(id);
            // Continue numbering after the last heartbeat the relay accepted
            // (local state may have been restored from an older backup).
            if let Some(seq) = rt.seq {
                if seq > self.db.time(SEQ).ok().flatten().unwrap_or(0) {
                    writes.push(self.db.set_time(SEQ, seq));
                }
            }
        }
        if deactivated {
            self.relay.activated = None;
        }
        if let Some(id) = reached.upgrades_up_to {
            writes.push(
                self.db
                    .set_time(UPGRADES_SENT, u64::try_from(id).unwrap_or(0)),
            );
        }
        if let Some(id) = reached.clock_reset {
            writes.push(self.db.clock_reset_told(&id));
        }
        for w in writes {
            if let Err(e) = w {
                tracing::warn!(%e, "cannot record the relay contact in the state database");
            }
        }
        if let Err(e) = self.persist_mark(true) {
            tracing::warn!(%e, "cannot persist the trusted-time mark");
        }
        self.recompute(now);
    }

    /// A list from the relay: verified under the trusted keys, then the
    /// one acceptance path every list takes ([`Engine::accept_revocations`]).
    fn relay_revocations(&mut self, bytes: &[u8], now: Timestamp) -> Result<bool, String> {
        let Some(keys) = self.trust.as_ref().map(|t| t.revokers.clone()) else {
            return Err(
                "no trusted vendor keys loaded: cannot check the relay's revocation list".into(),
            );
        };
        let refused = |e: String| format!("revocation list from the relay refused: {e}");
        let v = verify_revocation_list(bytes, &keys).map_err(|e| refused(e.to_string()))?;
        let version = v.list.version;
        if !self
            .accept_revocations(v, Source::Relay, now)
            .map_err(refused)?
        {
            return Ok(false);
        }
        self.events.push(Event::reload(
            self.license.as_ref(),
            Some(version),
            Some("relay"),
        ));
        self.recompute(now);
        Ok(true)
    }
}
