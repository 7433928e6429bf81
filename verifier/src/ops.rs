//! The engine's write operations behind the API: node leases, quota spends
//! and upgrade requests. Each commits to the database before it returns the
//! reply that will be acknowledged to the client.

use serde_json::json;

use kaching_core::cluster::UpgradeRequest;
use kaching_core::policy::Decision;
use kaching_core::time::{rfc3339, Timestamp};

use crate::engine::{Engine, Event, Reply};

fn refused(d: &Decision, extra: serde_json::Value) -> Reply {
    let mut body = json!({
        "allowed": false,
        "code": d.code,
        "reason": d.reason,
        "error": { "code": d.code, "message": d.reason },
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    Reply::json(403, body)
}

impl Engine {
    /// `PUT /v1/nodes/{id}`: takes or renews a lease, refused past the ceiling.
    pub fn lease(&mut self, node: &str, now: Timestamp) -> anyhow::Result<Reply> {
        let verdict = &self.current().verdict;
        let renewing = self.leases.get(node).is_some_and(|&e| e > now);
        let live = self.live_nodes(now);
        let d = verdict.admit_node(live, renewing);
        if !d.allowed {
            return Ok(refused(
                &d,
                json!({"node_id": node, "nodes_in_use": live, "node_ceiling": verdict.node_ceiling}),
            ));
        }
        let expires = now.saturating_add(self.cfg.lease_ttl.as_secs().max(1));
        let after = live + u64::from(!renewing);
        self.db.put_lease(node, expires, after)?;
        self.leases.insert(node.to_string(), expires);
        if !renewing {
            self.recompute(now);
        }
        Ok(Reply::json(
            200,
            json!({
                "allowed": true,
                "code": d.code,
                "reason": d.reason,
                "node_id": node,
                "renewed": renewing,
                "expires_at": rfc3339(expires),
                "nodes_in_use": after,
                "node_ceiling": verdict.node_ceiling,
            }),
        ))
    }

    /// `DELETE /v1/nodes/{id}`: gives a lease back.
    pub fn release(&mut self, node: &str, now: Timestamp) -> anyhow::Result<Reply> {
        let removed = self.db.delete_lease(node)?;
        let was_live = self.leases.remove(node).is_some_and(|e| e > now);
        if was_live {
            self.recompute(now);
        }
        Ok(Reply::json(
            200,
            json!({"node_id": node, "removed": removed, "nodes_in_use": self.live_nodes(now)}),
        ))
    }

    /// `POST /v1/usage`: spends `amount` of `metric` (for gauges: sets the
    /// level), once per idempotency key. The counter and the key are committed
    /// together before the reply exists.
    pub fn spend(
        &mut self,
        metric: &str,
        amount: u64,
        key: &str,
        now: Timestamp,
    ) -> anyhow::Result<Reply> {
        if let Some((status, body)) = self.db.idempotent_reply(key)? {
            return Ok(Reply {
                status,
                body,
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
        let new = match (verdict.spend(metric, used, amount), &bucket) {
            (Ok(new), Some(_)) => new,
            (Ok(_), None) => {
                return Ok(Reply::json(
                    403,
                    json!({"allowed": false, "code": "unknown_quota",
                           "error": {"code": "unknown_quota", "message": format!("this license has no quota named {metric}")}}),
                ))
            }
            (Err(d), _) => {
                return Ok(refused(
                    &d,
                    json!({"metric": metric, "used": used, "limit": limit}),
                ))
            }
        };
        let bucket = bucket.unwrap_or_default();
        let body = json!({
            "allowed": true,
            "metric": metric,
            "amount": amount,
            "used": new,
            "limit": limit,
            "period": bucket,
            "idempotency_key": key,
        })
        .to_string();
        self.db
            .record_spend(metric, &bucket, new, key, &body, now)?;
        self.counters.insert((metric.to_string(), bucket), new);
        self.recompute(now);
        Ok(Reply {
            status: 200,
            body,
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
    ) -> anyhow::Result<Reply> {
        if self.catalog.get(requested_tier).is_none() {
            let names = self.catalog.names();
            let hint = kaching_core::tiers::closest(requested_tier, names.iter().copied())
                .map(|c| format!(" — did you mean {c:?}?"))
                .unwrap_or_default();
            return Ok(Reply::json(
                422,
                json!({"error": {"code": "unknown_tier",
                    "message": format!("no tier named {requested_tier:?}{hint} Known tiers: {}", names.join(", "))}}),
            ));
        }
        let req = UpgradeRequest {
            requested_tier: requested_tier.to_string(),
            message: message.to_string(),
            time: now,
        };
        let id = self.db.queue_upgrade(&req)?;
        let body = json!({
            "queued": true,
            "id": id,
            "requested_tier": req.requested_tier,
            "message": req.message,
            "time": rfc3339(now),
            "current_tier": self.current().verdict.tier,
            "cluster_id": self.identity.cluster_id,
        });
        self.events.push(Event {
            kind: "upgrade_request",
            data: body.to_string(),
        });
        Ok(Reply::json(202, body))
    }

    /// `GET /v1/upgrade-requests`: everything queued, oldest first.
    pub fn list_upgrades(&self) -> anyhow::Result<Reply> {
        let list = self.db.upgrades()?;
        Ok(Reply::json(200, json!({ "upgrade_requests": list })))
    }
}
