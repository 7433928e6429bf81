//! The engine's half of connected mode: it signs what goes to the relay and
//! applies what comes back, on the engine thread like every other write.

use std::time::Duration;

use kaching_core::armor::armor;
use kaching_core::cluster::ActivationRequest;
use kaching_core::heartbeat::Heartbeat;
use kaching_core::revocation::{accept_revocation_list, Acceptance};
use kaching_core::time::Timestamp;
use kaching_core::{verify_revocation_list, DocKind};

use super::{Activation, Beat, Request, LAST_CONTACT, SEQ, UPGRADES_SENT};
use crate::engine::{Engine, Event};
use crate::identity::write_atomic;

impl Engine {
    /// Applies one request from the relay worker; replies on its channel.
    pub fn relay_request(&mut self, req: Request, now: Timestamp) {
        match req {
            Request::Activation(reply) => {
                let _ = reply.send(self.relay_activation(now));
            }
            Request::Beat { deactivate, reply } => {
                let _ = reply.send(self.relay_beat(deactivate, now));
            }
            Request::Contact {
                time,
                activation,
                upgrades_up_to,
                deactivated,
            } => self.relay_contact(&time, activation, upgrades_up_to, deactivated, now),
            Request::Failed(why) => {
                self.relay.last_error = Some((now, why));
                self.recompute(now);
            }
            Request::Revocations(bytes, reply) => {
                let _ = reply.send(self.relay_revocations(&bytes, now));
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
            hostname: crate::report::hostname(),
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

    fn relay_beat(&mut self, deactivate: bool, now: Timestamp) -> anyhow::Result<Option<Beat>> {
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
        };
        Ok(Some(Beat {
            bytes: hb.sign(&self.identity.key),
            seq,
            upgrades_up_to: pending.last().map(|q| q.id),
        }))
    }

    fn relay_contact(
        &mut self,
        rt: &kaching_core::heartbeat::RelayTime,
        activation: Option<String>,
        upgrades_up_to: Option<i64>,
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
        if let Some(id) = upgrades_up_to {
            writes.push(
                self.db
                    .set_time(UPGRADES_SENT, u64::try_from(id).unwrap_or(0)),
            );
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

    /// The same acceptance path as a revocation file: trusted vendor keys,
    /// rollback rules against the stored high-water mark, then recorded in
    /// the database and mirrored to the configured revocations file.
    fn relay_revocations(&mut self, bytes: &[u8], now: Timestamp) -> Result<bool, String> {
        let Some(keys) = self.keys.clone() else {
            return Err(
                "no trusted vendor keys loaded: cannot check the relay's revocation list".into(),
            );
        };
        let v = verify_revocation_list(bytes, &keys)
            .map_err(|e| format!("revocation list from the relay refused: {e}"))?;
        let stored = self.db.revocations().map_err(|e| format!("{e:#}"))?;
        let highest = stored.as_ref().map(|(h, _)| *h);
        let cur = stored.as_ref().map(|(_, b)| b.as_slice());
        match accept_revocation_list(&v, highest, cur) {
            Ok(Acceptance::Same) => Ok(false),
            Ok(Acceptance::Newer) => {
                self.db
                    .store_revocations(v.list.version, &v.bytes)
                    .map_err(|e| format!("cannot record the revocation list: {e:#}"))?;
                let version = v.list.version;
                tracing::info!(version, "revocation list from the relay accepted");
                // Mirror it to the file so a restart (or an operator) sees the
                // list in force there too; the database copy is what counts.
                match write_atomic(&self.cfg.revocations, &v.bytes) {
                    Ok(()) => {
                        // A read that began before this write is stale.
                        self.files_written = true;
                        self.rejections.remove("revocations");
                    }
                    Err(e) => tracing::warn!(%e, path = %self.cfg.revocations.display(),
                        "cannot mirror the relay's revocation list to the revocations file; it is in force from the state database"),
                }
                self.revocations = Some(v);
                self.events.push(Event {
                    kind: "reload",
                    data: serde_json::json!({
                        "license_id": self.license.as_ref().map(|l| l.license.id.to_string()),
                        "revocation_version": version,
                        "source": "relay",
                    })
                    .to_string(),
                });
                self.recompute(now);
                Ok(true)
            }
            Err(e) => Err(format!("revocation list from the relay refused: {e}")),
        }
    }
}
