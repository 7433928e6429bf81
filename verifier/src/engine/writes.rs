//! The engine's write operations behind the API: node leases, quota spends
//! and upgrade requests. Each commits to the database before it returns the
//! [`Outcome`] that will be acknowledged to the client; which HTTP status an
//! outcome gets is the API's choice ([`crate::api`]), not the engine's.

use kaching_core::cluster::UpgradeRequest;
use kaching_core::license::Period;
use kaching_core::policy::check_upgrade_request;
use kaching_core::time::{rfc3339, Timestamp};
use kaching_core::wire::verifier::{
    LeaseAnswer, LeaseRefused, NodeLease, NodeList, QueuedUpgrade, Refused, ReleaseAnswer,
    UpgradeList, UpgradeQueued, UsageAnswer, UsageRefused,
};
use kaching_core::wire::{ErrorBody, ErrorDetail};

use super::{Engine, Event};

impl Engine {
    /// Opens a group of writes (group commit): each write below still runs
    /// in its own savepoint, and the group becomes durable at
    /// [`Engine::commit_group`] with one sync. Replies wait for that.
    pub fn begin_group(&mut self) -> anyhow::Result<()> {
        self.db.begin_group()
    }

    /// Makes the group durable. On failure nothing of it is kept, and what
    /// the engine holds in memory is read back from the database, so it
    /// matches what is durable; the caller answers every write of the group
    /// with the error.
    pub fn commit_group(&mut self, now: Timestamp) -> anyhow::Result<()> {
        let result = self.db.commit_group();
        if result.is_err() {
            match (self.db.counters(), self.db.leases()) {
                (Ok(c), Ok(l)) => {
                    self.counters = c;
                    self.leases = super::leases::Leases::from_map(l);
                }
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!(%e, "cannot read the state back after a failed group commit")
                }
            }
            self.recompute(now);
        }
        result
    }
}

/// What a write did, typed; the API maps each to a status code.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A lease was taken or renewed.
    Leased(LeaseAnswer),
    /// No lease: the cluster is at its node ceiling (or the license is unusable).
    LeaseRefused(LeaseRefused),
    /// A lease was given back (or there was none).
    Released(ReleaseAnswer),
    /// Usage was counted, or a repeated idempotency key was answered again:
    /// the JSON is the exact bytes of the first answer.
    Counted {
        /// The [`UsageAnswer`] as first sent.
        json: String,
        /// True when this answers a repeated idempotency key.
        replayed: bool,
    },
    /// Usage was not counted: over the limit, unusable license, or no such quota.
    UsageRefused(UsageRefused),
    /// Usage was not counted: the idempotency key was counted before for a
    /// different metric or amount (`idempotency_key_reused`).
    IdempotencyKeyReused(ErrorBody),
    /// An upgrade request was queued for the vendor.
    UpgradeQueued(UpgradeQueued),
    /// The requested tier is not in the catalog, or not above the tier in force.
    UpgradeRefused(ErrorBody),
    /// Not recorded: the state database was deleted or replaced while the
    /// daemon ran (`state_database_lost`; see [`Engine::refused_write`]).
    StateDatabaseLost(ErrorBody),
    /// The queued upgrade requests.
    Upgrades(UpgradeList),
    /// The live node leases.
    Nodes(NodeList),
}

impl Engine {
    /// `PUT /v1/nodes/{id}`: takes or renews a lease, refused past the ceiling.
    pub fn lease(&mut self, node: &str, now: Timestamp) -> anyhow::Result<Outcome> {
        let published = self.current();
        let verdict = &published.verdict;
        let renewing = self.leases.get(node).is_some_and(|e| e > now);
        let live = self.live_nodes(now);
        let d = verdict.admit_node(live, renewing);
        if !d.allowed {
            return Ok(Outcome::LeaseRefused(LeaseRefused {
                refused: Refused::from_decision(&d),
                node_id: node.to_string(),
                nodes_in_use: live,
                node_ceiling: verdict.node_ceiling,
            }));
        }
        let expires = now.saturating_add(self.cfg.lease_ttl.as_secs().max(1));
        let after = live + u64::from(!renewing);
        let month = kaching_core::time::period_key(kaching_core::time::Period::Month, now);
        self.db.put_lease(node, expires, after, &month)?;
        self.leases.insert(node, expires);
        if !renewing {
            self.stale = true;
        }
        Ok(Outcome::Leased(LeaseAnswer {
            allowed: true,
            code: d.code,
            reason: d.reason,
            node_id: node.to_string(),
            renewed: renewing,
            expires_at: rfc3339(expires),
            nodes_in_use: after,
            node_ceiling: verdict.node_ceiling,
        }))
    }

    /// `GET /v1/nodes`: the live leases, by node id.
    pub fn list_nodes(&self, now: Timestamp) -> Outcome {
        let mut nodes: Vec<NodeLease> = self
            .leases
            .iter()
            .filter(|(_, &e)| e > now)
            .map(|(n, &e)| NodeLease {
                node_id: n.clone(),
                expires_at: rfc3339(e),
            })
            .collect();
        nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        let published = self.current();
        Outcome::Nodes(NodeList {
            nodes_in_use: nodes.len() as u64,
            nodes,
            max_nodes: published.verdict.limits.max_nodes,
            node_ceiling: published.verdict.node_ceiling,
        })
    }

    /// The license page's nodes: the `n` live leases that end soonest
    /// (then by node id) and how many are live. Costs one pass over the
    /// leases and `n` copies, so a page does not hold the engine (and the
    /// lease renewals queued behind it) for a sort of 100k leases.
    pub fn soonest_nodes(&self, now: Timestamp, n: usize) -> NodeList {
        let published = self.current();
        NodeList {
            nodes: self
                .leases
                .soonest(now, n)
                .into_iter()
                .map(|(node_id, e)| NodeLease {
                    node_id,
                    expires_at: rfc3339(e),
                })
                .collect(),
            nodes_in_use: self.leases.live(now),
            max_nodes: published.verdict.limits.max_nodes,
            node_ceiling: published.verdict.node_ceiling,
        }
    }

    /// `DELETE /v1/nodes/{id}`: gives a lease back.
    pub fn release(&mut self, node: &str, now: Timestamp) -> anyhow::Result<Outcome> {
        let removed = self.db.delete_lease(node)?;
        let was_live = self.leases.remove(node).is_some_and(|e| e > now);
        if was_live {
            self.stale = true;
        }
        Ok(Outcome::Released(ReleaseAnswer {
            node_id: node.to_string(),
            removed,
            nodes_in_use: self.live_nodes(now),
        }))
    }

    /// `POST /v1/usage`: spends `amount` of `metric` (for gauges: sets the
    /// level), once per idempotency key. The counter and the key are committed
    /// together before the answer exists; the published verdict catches up
    /// at [`Engine::settle`] (the actor settles before it answers).
    pub fn spend(
        &mut self,
        metric: &str,
        amount: u64,
        key: &str,
        now: Timestamp,
    ) -> anyhow::Result<Outcome> {
        if let Some(json) = self.db.idempotent_reply(key)? {
            // The stored answer names what was counted under the key: a
            // retry must ask for the same thing, or it would be answered
            // for another request and its own count silently dropped.
            if let Some(first) = reused_for_another_request(&json, metric, amount) {
                return Ok(Outcome::IdempotencyKeyReused(ErrorBody::new(
                    "idempotency_key_reused",
                    format!(
                        "idempotency_key {key:?} was already used for {first}, not for {amount} of {metric}: \
                         nothing was counted. Use a new key for each increment (a UUID), and the same key \
                         only to retry the very same request"
                    ),
                )));
            }
            return Ok(Outcome::Counted {
                json,
                replayed: true,
            });
        }
        let published = self.current();
        let verdict = &published.verdict;
        let bucket = self.bucket(metric, now);
        let used = bucket
            .as_ref()
            .and_then(|b| self.counters.get(&(metric.to_string(), b.clone())))
            .copied()
            .unwrap_or(0);
        let limit = verdict.quotas.get(metric).map(|q| q.limit);
        let refused = |refused: Refused| {
            Ok(Outcome::UsageRefused(UsageRefused {
                refused,
                metric: metric.to_string(),
                used,
                limit,
            }))
        };
        let (spent, bucket) = match (verdict.spend(metric, used, amount), bucket) {
            (Ok(spent), Some(bucket)) => (spent, bucket),
            (Ok(_), None) => {
                return refused(Refused::new(
                    "unknown_quota",
                    format!("this license has no quota named {metric}"),
                ))
            }
            (Err(d), _) => return refused(Refused::from_decision(&d)),
        };
        let new = spent.used;
        let gauge = verdict
            .quotas
            .get(metric)
            .is_some_and(|q| q.period == Period::Gauge);
        let answer = UsageAnswer {
            allowed: spent.over_limit.is_none(),
            metric: metric.to_string(),
            amount,
            used: new,
            limit,
            period: if gauge {
                "gauge".into()
            } else {
                bucket.clone()
            },
            idempotency_key: key.to_string(),
            over_limit: spent.over_limit.map(|d| ErrorDetail {
                code: d.code,
                message: d.reason,
            }),
        };
        let json = serde_json::to_string(&answer)?;
        self.db
            .record_spend(metric, &bucket, new, key, &json, now)?;
        self.counters.insert((metric.to_string(), bucket), new);
        self.stale = true;
        Ok(Outcome::Counted {
            json,
            replayed: false,
        })
    }

    /// `POST /v1/upgrade-requests`: queued locally (carried out in the next
    /// usage report, or by the relay when one is configured).
    pub fn queue_upgrade(
        &mut self,
        requested_tier: &str,
        message: &str,
        now: Timestamp,
    ) -> anyhow::Result<Outcome> {
        let current = self.current();
        if let Err(d) = check_upgrade_request(
            &self.catalog,
            current.verdict.tier.as_deref(),
            requested_tier,
        ) {
            return Ok(Outcome::UpgradeRefused(ErrorBody::new(d.code, d.reason)));
        }
        let req = UpgradeRequest {
            requested_tier: requested_tier.to_string(),
            message: message.to_string(),
            time: now,
        };
        let id = self.db.queue_upgrade(&req)?;
        let queued = UpgradeQueued {
            queued: true,
            id,
            requested_tier: req.requested_tier,
            message: req.message,
            time: rfc3339(now),
            current_tier: current.verdict.tier.clone(),
            cluster_id: self.identity.cluster_id.clone(),
        };
        self.events.push(Event::new("upgrade_request", &queued));
        Ok(Outcome::UpgradeQueued(queued))
    }

    /// `GET /v1/upgrade-requests`: everything queued, oldest first.
    pub fn list_upgrades(&self) -> anyhow::Result<Outcome> {
        let upgrade_requests = self
            .db
            .upgrades()?
            .into_iter()
            .map(|q| QueuedUpgrade {
                id: q.id,
                requested_tier: q.request.requested_tier,
                message: q.request.message,
                time: rfc3339(q.request.time),
                reported: q.reported,
            })
            .collect();
        Ok(Outcome::Upgrades(UpgradeList { upgrade_requests }))
    }
}

/// When the answer stored for an idempotency key was for another request
/// than (`metric`, `amount`): that request, in words. The answer is the
/// [`UsageAnswer`] first sent, which carries the metric and amount it
/// counted, so keys recorded by any earlier version are checked too and
/// the write path stores nothing more. An answer that cannot be read
/// (never written by this daemon) is replayed as before.
fn reused_for_another_request(stored: &str, metric: &str, amount: u64) -> Option<String> {
    let first: UsageAnswer = serde_json::from_str(stored).ok()?;
    (first.metric != metric || first.amount != amount)
        .then(|| format!("{} of {}", first.amount, first.metric))
}
