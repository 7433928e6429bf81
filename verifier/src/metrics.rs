//! Prometheus metrics (`GET /metrics`). One recorder per process: tests run
//! several daemons in one process and share it.

use std::sync::OnceLock;

use kaching_core::Verdict;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder once; `None` if another recorder was installed first.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .as_ref()
}

/// Publishes the verdict's gauges.
pub fn record_verdict(v: &Verdict) {
    for s in [
        "unlicensed",
        "invalid",
        "revoked",
        "suspended",
        "clock_tampered",
        "not_yet_valid",
        "expired",
        "grace",
        "overdue",
        "expiring",
        "active",
    ] {
        let on = if v.state.as_str() == s { 1.0 } else { 0.0 };
        metrics::gauge!("kaching_license_state", "state" => s).set(on);
    }
    // Seconds left, negative once passed: what "expiring within 30 days"
    // and "grace ends soon" alerts compare against (deploy/prometheus).
    let left = |at: Option<u64>| at.map(|t| t as f64 - v.evaluated_at as f64);
    if let Some(s) = left(v.expires_at) {
        metrics::gauge!("kaching_license_expiry_seconds").set(s);
    }
    if let Some(s) = left(v.grace_ends_at) {
        metrics::gauge!("kaching_license_grace_end_seconds").set(s);
    }
    metrics::gauge!("kaching_nodes_in_use").set(v.nodes_in_use as f64);
    metrics::gauge!("kaching_node_ceiling").set(v.node_ceiling as f64);
    for (name, q) in &v.quotas {
        metrics::gauge!("kaching_quota_used", "metric" => name.clone()).set(q.used as f64);
        metrics::gauge!("kaching_quota_limit", "metric" => name.clone()).set(q.limit as f64);
    }
}
