//! Usage reports and receipts through the relay (docs/connected.md "Usage
//! reports and receipts"): the engine's half. While something is not yet
//! acknowledged by the vendor, the relay worker posts the cluster's usage
//! report to the relay; the answer carries the receipts the vendor posted
//! there, imported exactly like `kaching-verifier receipt import` does
//! ([`crate::report::import_receipt`]). The relay is a mailbox only: a
//! receipt counts because it is signed by the vendor's issuer key and names
//! a report this cluster wrote, never because the relay sent it.
//!
//! The report posted is the chain's own (`kaching-verifier usage-report`
//! writes the same document): the one last written for the relay is kept
//! (`relay_report` in the state database) and posted again until the relay
//! took it, so a failed post never leaves a gap in the chain.

use std::collections::BTreeSet;

use kaching_core::cluster::verify_usage_report;
use kaching_core::receipt;
use kaching_core::time::{rfc3339, Timestamp};
use kaching_core::wire::mailbox::ReceiptEvent;
use kaching_core::DocKind;

use super::published::Event;
use super::Engine;

/// `meta` key: sequence number of the newest report the relay took.
const POSTED: &str = "relay_report_posted";

impl Engine {
    /// The report to post now: the one written for the relay while the
    /// relay has not taken it; a new one when upgrade requests arrived, or
    /// counters changed and `relay.report_interval` has passed since the
    /// last; the last one again every `relay.receipt_poll` while it awaits
    /// its receipt; else nothing. Only for a connected license.
    pub(crate) fn relay_report(
        &mut self,
        now: Timestamp,
    ) -> anyhow::Result<Option<super::relay::DueReport>> {
        match &self.license {
            Some(v) if v.license.heartbeat.is_some() => {}
            _ => return Ok(None),
        }
        let held = self
            .db
            .relay_report()?
            .and_then(|b| verify_usage_report(&b).ok())
            .filter(|r| r.doc.chain.is_some() && r.doc.cluster_id == self.identity.cluster_id);
        let held_seq = held
            .as_ref()
            .and_then(|r| r.doc.chain.as_ref())
            .map_or(0, |c| c.seq);
        // The chain may have moved on without the relay (`usage-report`
        // run by hand): then the held report is no longer the newest.
        let head = self.db.report_head()?.map_or(0, |(seq, _)| seq);
        if let Some(h) = &held {
            if held_seq > self.db.time(POSTED)?.unwrap_or(0) && held_seq == head {
                return Ok(Some((held_seq, h.bytes.clone())));
            }
        }
        let pending = self.db.pending()?;
        let (counters, peaks) = receipt::outstanding(&pending);
        if pending.upgrade_requests.is_empty() && counters.is_empty() && peaks.is_empty() {
            return Ok(None);
        }
        let fresh = match (&held, held_seq == head) {
            (Some(h), true) => {
                let ids: BTreeSet<u64> =
                    h.doc.upgrade_requests.iter().filter_map(|r| r.id).collect();
                let same = ids == pending.upgrade_requests
                    && h.doc.counters == counters
                    && h.doc.chain.as_ref().map(|c| &c.node_peaks) == Some(&peaks);
                let new_requests = !pending.upgrade_requests.is_subset(&ids);
                let due = now
                    >= h.doc
                        .period_end
                        .saturating_add(self.cfg.relay.report_interval.as_secs());
                new_requests || (!same && due)
            }
            _ => true,
        };
        if !fresh {
            let poll = self.cfg.relay.receipt_poll.as_secs();
            let awaiting = held_seq > self.db.acked_seq()?;
            let polled_lately = self
                .relay
                .last_report_post
                .is_some_and(|t| now < t.saturating_add(poll));
            return Ok(match held {
                Some(h) if awaiting && !polled_lately => Some((held_seq, h.bytes)),
                _ => None,
            });
        }
        let mut text = None;
        let written = crate::report::usage_report(self, now, |t| {
            text = Some(t.to_string());
            Ok(())
        })?;
        let text = text.unwrap_or_default();
        let bytes = kaching_core::armor::dearmor(text.as_bytes(), Some(DocKind::UsageReport))?;
        self.db.set_relay_report(&bytes)?;
        Ok(Some((written.chain.map_or(0, |c| c.seq), bytes)))
    }

    /// The relay took report `seq` (or refused it for good: then `receipts`
    /// is empty and the next report follows it); imports the receipts it
    /// answered with.
    /// A receipt that does not check out (another cluster's, a key that
    /// may not sign receipts, a report this cluster did not write) changes
    /// nothing and is only logged; one imported before changes nothing.
    pub(crate) fn report_posted(
        &mut self,
        seq: u64,
        receipts: &[String],
        now: Timestamp,
    ) -> Vec<String> {
        self.relay.last_report_post = Some(now);
        if seq > self.db.time(POSTED).ok().flatten().unwrap_or(0) {
            if let Err(e) = self.db.set_time(POSTED, seq) {
                tracing::warn!(%e, "cannot record the posted usage report in the state database");
            }
        }
        let mut lines = Vec::new();
        for r in receipts {
            match crate::report::import_receipt(self, r.as_bytes(), now) {
                Ok(done) if done.again => {}
                Ok(done) => {
                    let periods = done.cleared.counters.len() + done.cleared.node_peaks.len();
                    let line = format!(
                        "receipt for usage report {} applied at {}: {} upgrade request(s) and {periods} closed period(s) acknowledged by the vendor",
                        done.receipt.report_seq,
                        rfc3339(now),
                        done.cleared.upgrade_requests.len(),
                    );
                    tracing::info!("{line}");
                    self.events.push(Event::new(
                        "receipt",
                        &ReceiptEvent {
                            report_seq: done.receipt.report_seq,
                            upgrade_requests: done.cleared.upgrade_requests.clone(),
                            periods,
                            source: "relay".into(),
                        },
                    ));
                    self.relay.last_receipt = Some(line.clone());
                    lines.push(line);
                }
                Err(e) => {
                    let line = format!("a receipt from the relay changed nothing: {e:#}");
                    tracing::warn!("{line}");
                    lines.push(line);
                }
            }
        }
        self.recompute(now);
        lines
    }
}
