//! The cluster-signed documents of the air-gapped round trip: activation
//! requests and usage reports, signed with the cluster key.

use std::collections::BTreeMap;

use anyhow::bail;
use kaching_core::armor::armor;
use kaching_core::cluster::{ActivationRequest, UsageReport};
use kaching_core::time::Timestamp;
use kaching_core::DocKind;

use crate::engine::Engine;

/// An armored activation request for this cluster.
pub fn activation_request(engine: &Engine, now: Timestamp) -> String {
    let req = ActivationRequest {
        cluster_id: engine.identity.cluster_id.clone(),
        cluster_key: *engine.identity.key.public().as_bytes(),
        hostname: crate::identity::hostname(),
        nodes: u32::try_from(engine.live_nodes(now)).unwrap_or(u32::MAX),
        created: now,
    };
    armor(DocKind::ActivationRequest, &req.sign(&engine.identity.key))
}

/// An armored usage report: every counter bucket, the peak node count and the
/// upgrade requests not yet reported. Marks those requests as reported.
pub fn usage_report(engine: &mut Engine, now: Timestamp) -> anyhow::Result<(String, UsageReport)> {
    let Some(license) = engine.license() else {
        bail!(
            "no valid license is in force, and usage is reported per license: install the license first (see `kaching-verifier check`)"
        );
    };
    let license_id = license.license.id;
    let mut counters: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for ((metric, bucket), v) in &engine.counters {
        counters
            .entry(metric.clone())
            .or_default()
            .insert(bucket.clone(), *v);
    }
    let pending: Vec<_> = engine
        .db
        .upgrades()?
        .into_iter()
        .filter(|u| !u.reported)
        .collect();
    let period_start = match engine.db.time("last_report_at")? {
        Some(t) => t,
        None => engine.db.time("created_at")?.unwrap_or(now),
    };
    let report = UsageReport {
        license_id,
        cluster_id: engine.identity.cluster_id.clone(),
        period_start,
        period_end: now.max(period_start),
        counters,
        peak_nodes: u32::try_from(engine.db.peak_nodes()?).unwrap_or(u32::MAX),
        upgrade_requests: pending.iter().map(|u| u.request.clone()).collect(),
    };
    let text = armor(DocKind::UsageReport, &report.sign(&engine.identity.key));
    let max_id = pending.iter().map(|u| u.id).max().unwrap_or(0);
    engine.db.mark_reported(max_id, now)?;
    Ok((text, report))
}
