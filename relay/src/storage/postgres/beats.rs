//! The hot path on PostgreSQL: a batch made only of heartbeats, each from
//! a different cluster, recorded in a constant number of round trips
//! (the bindings read at once under `FOR UPDATE`, then every heartbeat's
//! writes pipelined) instead of two per heartbeat. Same checks and the
//! same rows as [`super::writes::record_heartbeat`], which every other
//! batch uses; the batch audits the accepted heartbeats as one Merkle root.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::ClientWrapper;

use kaching_core::clock_reset::VerifiedClockReset;
use kaching_core::heartbeat::Heartbeat;

use super::writes::{
    after_beat, held_head, query, record_anomalies, send_beats, uint, Accepted, Head, BINDING,
};
use crate::error::ApiError;

/// A heartbeat as queued: the document, the key that signed it, relay
/// time, and the clock reset its chain head carries, verified against the
/// issuer keys.
pub type Beat = (Heartbeat, [u8; 32], u64, Option<VerifiedClockReset>);

/// True when `beats` may take the batched path: one heartbeat per cluster.
pub fn distinct_clusters(beats: &[&Beat]) -> bool {
    let mut seen = HashSet::with_capacity(beats.len());
    beats.iter().all(|b| seen.insert(b.0.cluster_id.as_str()))
}

/// A cluster's binding as its heartbeat is checked against it.
struct Binding {
    license: String,
    key: Vec<u8>,
    status: String,
    last_seq: u64,
    /// The cluster's signed time of the last heartbeat accepted.
    last_time: Option<u64>,
    /// The report chain head its heartbeats last named.
    held: Option<kaching_core::heartbeat::ChainHead>,
    /// The hour of heartbeats its row holds.
    hour: Option<i32>,
}

/// Records `beats` (distinct clusters): one outcome per heartbeat (a
/// refusal has written nothing); `Err` when the batch must be undone.
pub async fn record(
    c: &ClientWrapper,
    head: &mut Head,
    beats: &[&Beat],
    keep_raw: bool,
) -> Result<Vec<Result<(), ApiError>>, ApiError> {
    let ids: Vec<&str> = beats.iter().map(|b| b.0.cluster_id.as_str()).collect();
    let bound: HashMap<String, Binding> = query(c, BINDING, &[&ids])
        .await?
        .iter()
        .map(|r| {
            (
                r.get(8),
                Binding {
                    license: r.get(0),
                    key: r.get(1),
                    status: r.get(2),
                    last_seq: uint(r.get(3)),
                    last_time: r.get::<_, Option<i64>>(4).map(uint),
                    held: held_head(r, 5),
                    hour: r.get(9),
                },
            )
        })
        .collect();
    // Signs of rollback in refused heartbeats, recorded after the batch's rows.
    let mut went_back = Vec::new();
    let mut outcomes = Vec::with_capacity(beats.len());
    let mut accepted = Vec::with_capacity(beats.len());
    for (hb, key, now, reset) in beats.iter().map(|b| (&b.0, &b.1, b.2, b.3.as_ref())) {
        let checked = match bound.get(&hb.cluster_id) {
            None => Err(ApiError::forbidden(
                "not_activated",
                format!(
                    "cluster {} is not activated on this relay: POST /v1/activate first",
                    hb.cluster_id
                ),
            )),
            Some(b) => {
                let checked =
                    crate::store::check_beat(hb, key, &b.license, &b.key, &b.status, b.last_seq);
                match &checked {
                    Err(refusal) => {
                        if let Some(f) =
                            crate::store::beat_back(refusal, hb, b.last_seq, b.last_time)
                        {
                            went_back.push((hb.cluster_id.clone(), b.license.clone(), f, now));
                        }
                    }
                    Ok(()) => accepted.push((
                        hb,
                        now,
                        Accepted::new(hb, now, b.held.clone(), b.hour, reset),
                    )),
                }
                checked
            }
        };
        outcomes.push(checked);
    }
    if !accepted.is_empty() {
        let writes: Vec<&Accepted> = accepted.iter().map(|(_, _, a)| a).collect();
        send_beats(c, &writes, keep_raw).await?;
        for (hb, now, a) in &accepted {
            after_beat(c, head, hb, a, *now).await?;
        }
    }
    for (cluster, license, f, now) in &went_back {
        record_anomalies(c, head, cluster, license, std::slice::from_ref(f), *now).await?;
    }
    Ok(outcomes)
}
