//! deploy/: the Prometheus alert rules pass promtool (syntax and their unit
//! tests), the Grafana dashboard is well-formed JSON whose queries parse,
//! and every metric either names is one the relay or the verifier exports,
//! so a rename breaks this test rather than a customer's alerting.

// Helpers outside #[test] functions panic as the failure report.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// What the verifier exports (docs/verifier.md, "GET /metrics"). The relay
/// must not depend on the verifier, so the names are spelled out here; keep
/// them equal to verifier/src/metrics.rs.
const VERIFIER_METRICS: [&str; 11] = [
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

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `kaching_…` identifier in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("kaching_") {
        let before = rest[..i].chars().next_back();
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        // Part of a longer identifier (`x_kaching_y`) is not a metric name.
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            // A histogram's samples (`_bucket`, `_sum`, `_count`) name it.
            let name = &tail[..end];
            let histogram = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|x| name.strip_suffix(x))
                .filter(|base| *base == kaching_relay::metrics::COMMIT_SECONDS);
            out.insert(histogram.unwrap_or(name).to_string());
        }
        rest = &tail[end..];
    }
    out
}

fn known() -> BTreeSet<&'static str> {
    kaching_relay::metrics::NAMES
        .into_iter()
        .chain(VERIFIER_METRICS)
        .collect()
}

fn dashboard() -> Value {
    serde_json::from_str(&read(&deploy().join("grafana/kaching.json")))
        .expect("deploy/grafana/kaching.json is JSON")
}

/// Every panel, rows' nested panels included.
fn panels(dash: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    let mut stack: Vec<&Value> = dash["panels"].as_array().expect("panels").iter().collect();
    while let Some(p) = stack.pop() {
        if let Some(inner) = p["panels"].as_array() {
            stack.extend(inner);
        }
        out.push(p);
    }
    out
}

/// Every PromQL expression of the dashboard.
fn dashboard_exprs(dash: &Value) -> Vec<String> {
    panels(dash)
        .into_iter()
        .filter_map(|p| p["targets"].as_array())
        .flatten()
        .map(|t| {
            t["expr"]
                .as_str()
                .expect("every target has an expr")
                .to_string()
        })
        .collect()
}

/// Runs promtool, or says once why it cannot (failing under CI=true).
fn promtool(args: &[&str]) -> Option<std::process::Output> {
    match Command::new("promtool").args(args).output() {
        Ok(out) => Some(out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let line = "promtool not installed: apt-get install prometheus to check deploy/";
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{line} (CI=true: this check must run here)"
            );
            // Straight to stderr: the harness would swallow a println.
            let _ = writeln!(std::io::stderr(), "{line}");
            None
        }
        Err(e) => panic!("cannot run promtool: {e}"),
    }
}

fn assert_ok(what: &str, out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn deploy_alert_rules_pass_promtool() {
    let dir = deploy().join("prometheus");
    let rules = dir.join("alerts.yml");
    let Some(out) = promtool(&["check", "rules", rules.to_str().unwrap()]) else {
        return;
    };
    assert_ok("promtool check rules deploy/prometheus/alerts.yml", &out);
    // The rules' unit tests: each alert fires on the series it should, and
    // stays quiet on the ones it should not.
    let tests = dir.join("alerts.test.yml");
    let out = promtool(&["test", "rules", tests.to_str().unwrap()]).unwrap();
    assert_ok(
        "promtool test rules deploy/prometheus/alerts.test.yml",
        &out,
    );

    // The dashboard's queries parse too: promtool checks them as recording
    // rules, with Grafana's variables replaced by what Grafana sends.
    let tmp = tempfile::tempdir().unwrap();
    let mut file = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in dashboard_exprs(&dashboard()).iter().enumerate() {
        let expr = expr
            .replace("$__rate_interval", "5m")
            .replace("$verifier", ".*")
            .replace("$relay", ".*");
        file.push_str(&format!(
            "      - record: kaching:dashboard_query_{i}\n        expr: {}\n",
            serde_json::to_string(&expr).unwrap()
        ));
    }
    let path = tmp.path().join("dashboard-queries.yml");
    std::fs::write(&path, file).unwrap();
    let out = promtool(&["check", "rules", path.to_str().unwrap()]).unwrap();
    assert_ok("promtool check rules (the dashboard's queries)", &out);
}

#[test]
fn deploy_names_only_metrics_that_exist() {
    let known = known();
    let rules = read(&deploy().join("prometheus/alerts.yml"));
    let tests = read(&deploy().join("prometheus/alerts.test.yml"));
    let dash = dashboard();
    let exprs = dashboard_exprs(&dash).join("\n");
    let texts = [
        ("deploy/prometheus/alerts.yml", rules.as_str()),
        ("deploy/prometheus/alerts.test.yml", tests.as_str()),
        ("deploy/grafana/kaching.json", exprs.as_str()),
    ];
    for (file, text) in texts {
        for name in metric_names(text) {
            assert!(
                known.contains(name.as_str()),
                "{file} names {name}, which neither the relay nor the verifier exports"
            );
        }
    }
    // The dashboard shows every relay series; the rules use the key ones.
    let shown = metric_names(&exprs);
    for name in kaching_relay::metrics::NAMES {
        assert!(shown.contains(name), "the dashboard does not show {name}");
    }
    let alerted = metric_names(&rules);
    for name in [
        "kaching_license_state",
        "kaching_license_expiry_seconds",
        "kaching_relay_last_contact_age_seconds",
        "kaching_license_offline_grace_seconds",
        "kaching_relay_heartbeats_sent_total",
        "kaching_relay_heartbeats_total",
        "kaching_relay_refusals_total",
        "kaching_relay_revocation_list_expiry_seconds",
    ] {
        assert!(alerted.contains(name), "no alert rule uses {name}");
    }
    assert!(
        rules.contains("up{job=\"kaching-relay\"} == 0"),
        "relay down rule"
    );
}

#[test]
fn dashboard_is_well_formed() {
    let dash = dashboard();
    assert_eq!(dash["uid"], "kaching-licensing");
    let vars: Vec<&str> = dash["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(vars, ["datasource", "verifier", "relay"]);
    let mut ids = BTreeSet::new();
    let mut cells = BTreeSet::new();
    for p in panels(&dash) {
        let id = p["id"].as_u64().expect("numeric panel id");
        assert!(ids.insert(id), "panel id {id} twice");
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64().unwrap(),
            g["y"].as_u64().unwrap(),
            g["w"].as_u64().unwrap(),
            g["h"].as_u64().unwrap(),
        );
        assert!(x + w <= 24, "panel {id} is wider than the grid");
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(cells.insert((cx, cy)), "panel {id} overlaps another");
            }
        }
        if p["type"] == "row" {
            continue;
        }
        assert!(!p["title"].as_str().unwrap().is_empty());
        assert_eq!(p["datasource"]["uid"], "${datasource}", "panel {id}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {id} has no query");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "panel {id}");
        }
    }
    // What the issue asks the dashboard to show.
    let titles: Vec<String> = panels(&dash)
        .iter()
        .map(|p| p["title"].as_str().unwrap().to_lowercase())
        .collect();
    for want in [
        "license state",
        "days to expiry",
        "nodes in use vs ceiling",
        "quota use",
        "verifier api requests by route and status",
        "heartbeats and activations",
        "refusals by reason",
        "long-polls waiting",
    ] {
        assert!(titles.iter().any(|t| t == want), "no panel {want:?}");
    }
}

#[test]
fn relay_docs_list_every_relay_metric() {
    let docs = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/relay.md"));
    let readme = read(&deploy().join("README.md"));
    for name in kaching_relay::metrics::NAMES {
        assert!(
            docs.contains(name),
            "docs/relay.md does not describe {name}"
        );
    }
    for file in ["alerts.yml", "alerts.test.yml", "kaching.json"] {
        assert!(
            readme.contains(file),
            "deploy/README.md does not mention {file}"
        );
    }
}

#[test]
fn metric_names_are_found_whole() {
    let names =
        metric_names("rate(kaching_a_total[5m]) / x_kaching_b + kaching_c{l=\"kaching_d\"}");
    let want: BTreeSet<String> = ["kaching_a_total", "kaching_c", "kaching_d"]
        .map(String::from)
        .into();
    assert_eq!(names, want);
}
