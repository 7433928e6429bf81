//! Prometheus metrics (`GET /metrics`). One recorder per process: tests run
//! several daemons in one process and share it. [`NAMES`] is every series
//! exported; deploy/ alert rules and the dashboard use them.

use std::sync::OnceLock;

use kaching_core::Verdict;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Every metric the verifier exports.
pub const NAMES: [&str; 11] = [
    "kaching_license_state",
    "kaching_nodes_in_use",
    "kaching_node_ceiling",
    "kaching_quota_used",
    "kaching_quota_limit",
    "kaching_api_requests_total",
    "kaching_license_expiry_seconds",
    "kaching_license_grace_end_seconds",
    "kaching_relay_last_contact_age_seconds",
    "kaching_license_offline_grace_seconds",
    "kaching_relay_heartbeats_sent_total",
];

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
        "report_overdue",
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

/// Connected mode: seconds since the last relay-signed answer, and the
/// license's offline grace (how long it may go without one). The "relay
/// unreachable past half the offline grace" alert compares the two.
pub fn record_relay(last_contact: Option<u64>, offline_grace: Option<u64>, now: u64) {
    if let Some(t) = last_contact {
        metrics::gauge!("kaching_relay_last_contact_age_seconds").set(now.saturating_sub(t) as f64);
    }
    if let Some(g) = offline_grace {
        metrics::gauge!("kaching_license_offline_grace_seconds").set(g as f64);
    }
}

/// One heartbeat sent to the relay: answered and accepted (`ok`) or not.
pub fn heartbeat_sent(ok: bool) {
    let result = if ok { "ok" } else { "failed" };
    metrics::counter!("kaching_relay_heartbeats_sent_total", "result" => result).increment(1);
}

/// One API request answered: by route template (`/v1/nodes/{node_id}`) and
/// status code.
pub fn api_request(route: &str, status: u16) {
    // Labels from a fixed set are static strings: no allocation per request
    // on the hot read paths.
    let route: metrics::SharedString = match ROUTES.iter().find(|r| **r == route) {
        Some(r) => metrics::SharedString::const_str(r),
        None => route.to_string().into(),
    };
    let status: metrics::SharedString = match STATUSES.iter().find(|(c, _)| *c == status) {
        Some((_, s)) => metrics::SharedString::const_str(s),
        None => status.to_string().into(),
    };
    metrics::counter!("kaching_api_requests_total", "route" => route, "status" => status)
        .increment(1);
}

/// The API's route templates (anything else is counted with an owned label).
const ROUTES: [&str; 12] = [
    "unmatched",
    "/v1/features/{name}",
    "/v1/status",
    "/v1/quotas",
    "/v1/license",
    "/v1/nodes",
    "/v1/nodes/{node_id}",
    "/v1/usage",
    "/v1/upgrade-requests",
    "/v1/events",
    "/healthz",
    "/metrics",
];

/// The status codes the API answers with.
const STATUSES: [(u16, &str); 12] = [
    (200, "200"),
    (202, "202"),
    (400, "400"),
    (401, "401"),
    (403, "403"),
    (404, "404"),
    (405, "405"),
    (413, "413"),
    (415, "415"),
    (422, "422"),
    (500, "500"),
    (503, "503"),
];
