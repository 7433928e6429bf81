//! `GET /metrics`: real requests against a real relay move the counters, with
//! the labels docs/relay.md ("Metrics") promises. Each relay has its own
//! recorder, so the figures below are exact even with tests in parallel.

// Helpers outside #[test] functions panic as the failure report.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use kaching_relay::metrics::{self, NAMES};
use kaching_relay::tokens::Scope;

/// One series of the exposition: its name and labels.
#[derive(Debug, PartialEq)]
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the Prometheus text format (the subset the exporter writes).
fn parse(text: &str) -> Vec<Series> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("series and value");
        let value: f64 = value.parse().expect("a number");
        let (name, mut rest) = match series.find('{') {
            Some(i) => (&series[..i], &series[i + 1..]),
            None => (series, ""),
        };
        let mut labels = BTreeMap::new();
        // key="value" pairs; values may hold braces (route templates).
        while let Some((key, after)) = rest.split_once("=\"") {
            let mut val = String::new();
            let mut chars = after.char_indices();
            let mut end = after.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, e)) = chars.next() {
                            val.push(if e == 'n' { '\n' } else { e });
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => val.push(c),
                }
            }
            labels.insert(key.trim_start_matches(',').to_string(), val);
            rest = &after[end..];
        }
        out.push(Series {
            name: name.to_string(),
            labels,
            value,
        });
    }
    out
}

/// The value of `name` with exactly `labels`, if the series exists.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    parse(text)
        .into_iter()
        .find(|s| s.name == name && s.labels == want)
        .map(|s| s.value)
}

/// `kaching_relay_requests_total{route, status}`.
fn requests(text: &str, route: &str, status: &str) -> Option<f64> {
    value(
        text,
        metrics::REQUESTS,
        &[("route", route), ("status", status)],
    )
}

/// The status of a plain `GET path`.
async fn get_status(relay: &Relay, path: &str) -> u16 {
    let r = relay.http.get(relay.url(path)).send().await.expect("get");
    r.status().as_u16()
}

async fn scrape(relay: &Relay, token: &str) -> String {
    let r = relay
        .http
        .get(relay.url("/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .expect("scrape");
    assert_eq!(r.status(), 200);
    r.text().await.expect("text")
}

/// Scrapes until `name` reads `want` (bounded), returning the last text.
async fn scrape_until(relay: &Relay, token: &str, name: &str, want: f64) -> String {
    let mut text = String::new();
    for _ in 0..250 {
        text = scrape(relay, token).await;
        if value(&text, name, &[]) == Some(want) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{name} never read {want}:\n{text}");
}

#[test]
fn the_parser_reads_labels_holding_braces() {
    let s =
        parse("# HELP x y\nk_total{route=\"/v1/licenses/{id}/status\",status=\"200\"} 3\ng -1.5\n");
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].labels["route"], "/v1/licenses/{id}/status");
    assert_eq!(s[0].labels["status"], "200");
    assert_eq!(s[0].value, 3.0);
    assert_eq!((s[1].name.as_str(), s[1].value), ("g", -1.5));
}

fn get_metrics(
    relay: &Relay,
    token: Option<&str>,
) -> impl std::future::Future<Output = reqwest::Result<reqwest::Response>> {
    let mut r = relay.http.get(relay.url("/metrics"));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send()
}

#[tokio::test]
async fn metrics_need_a_whoosh_or_admin_token_unless_public() {
    let relay = Relay::start().await;
    let get = |token: Option<&str>| get_metrics(&relay, token);
    let (status, code) = error_code(get(None).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (401, "unauthorized"));
    let publish = relay.token(Scope::Publish, "licensegen");
    let (status, code) = error_code(get(Some(&publish)).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (403, "forbidden"));
    for scope in [Scope::Whoosh, Scope::Admin] {
        let r = get(Some(&relay.token(scope, scope.as_str())))
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{scope}");
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
    }
    let prom = relay.token(Scope::Whoosh, "prometheus");
    let text = scrape(&relay, &prom).await;
    // The refused scrapes are counted like any other refusal.
    assert_eq!(
        value(&text, metrics::REFUSALS, &[("reason", "unauthorized")]),
        Some(1.0)
    );
    assert_eq!(
        value(&text, metrics::REFUSALS, &[("reason", "forbidden")]),
        Some(1.0)
    );
    assert_eq!(requests(&text, "/metrics", "200"), Some(2.0));
    relay.stop().await;

    let relay = Relay::start_changed(|c| c.public_metrics = true).await;
    let r = get_metrics(&relay, None).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains(metrics::HEARTBEATS));
    relay.stop().await;
}

#[tokio::test]
async fn every_series_is_exported_described_and_listed() {
    let relay = Relay::start().await;
    let publish = relay.token(Scope::Publish, "licensegen");
    assert_eq!(
        relay
            .publish(&publish, revocation_list(3, &[], &vendor()))
            .await
            .status(),
        201
    );
    // Request and refusal series appear with their first request and refusal.
    assert_eq!(get_status(&relay, "/nope").await, 404);
    let text = scrape(&relay, &relay.token(Scope::Admin, "ops")).await;
    for name in NAMES {
        assert!(
            text.contains(&format!("# HELP {name} ")) && text.contains(&format!("# TYPE {name} ")),
            "{name} missing or undescribed:\n{text}"
        );
    }
    promtool_accepts(&text);
    for s in parse(&text) {
        // A histogram's samples are its name with a suffix.
        let name = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|x| s.name.strip_suffix(x))
            .filter(|base| *base == metrics::COMMIT_SECONDS)
            .unwrap_or(&s.name);
        assert!(
            NAMES.contains(&name),
            "{} is exported but not in kaching_relay::metrics::NAMES",
            s.name
        );
    }
    // Before any traffic the fixed series read 0, so rate() and alerts see them.
    for (name, result) in [
        (metrics::HEARTBEATS, "accepted"),
        (metrics::HEARTBEATS, "refused"),
        (metrics::ACTIVATIONS, "activated"),
        (metrics::ACTIVATIONS, "refused"),
    ] {
        assert_eq!(value(&text, name, &[("result", result)]), Some(0.0));
    }
    assert_eq!(value(&text, metrics::LONG_POLLS_WAITING, &[]), Some(0.0));
    assert_eq!(value(&text, metrics::CLUSTERS_BOUND, &[]), Some(0.0));
    assert_eq!(
        value(&text, metrics::REVOCATION_LIST_VERSION, &[]),
        Some(3.0)
    );
    let left = value(&text, metrics::REVOCATION_LIST_EXPIRY, &[]).expect("expiry");
    let week = 7.0 * 86_400.0;
    assert!((week - 120.0..=week).contains(&left), "{left}");
    relay.stop().await;
}

#[tokio::test]
async fn heartbeats_activations_and_refusals_counted_with_their_labels() {
    let relay = Relay::start().await;
    let prom = relay.token(Scope::Whoosh, "prometheus");
    let before = scrape(&relay, &prom).await;
    let commits = |text: &str| {
        let get = |name| value(text, name, &[]).expect("the commit counters are exported");
        (get(metrics::COMMITS), get(metrics::COMMITTED_WRITES))
    };
    let l = license(1, 3600);
    let (c1, c2) = (cluster_key(1), cluster_key(2));
    assert_eq!(relay.activate(&l, &c1).await.status(), 200);
    let (status, code) = error_code(relay.activate(&l, &c2).await).await;
    assert_eq!((status, code.as_str()), (409, "license_in_use"));
    let hb = beat(&l, &c1, 1);
    assert_eq!(
        relay.post_beat("/v1/heartbeat", &hb, &c1).await.status(),
        200
    );
    let (status, code) = error_code(relay.post_beat("/v1/heartbeat", &hb, &c1).await).await;
    assert_eq!((status, code.as_str()), (409, "replayed_heartbeat"));
    let mut old = beat(&l, &c1, 2);
    old.time -= 3600;
    let (status, code) = error_code(relay.post_beat("/v1/heartbeat", &old, &c1).await).await;
    assert_eq!((status, code.as_str()), (400, "clock_skew"));
    // The route label is the template, never the raw path with its id.
    let (status, _) = relay
        .get_as::<kaching_core::wire::LicenseStatus>(
            &format!("/v1/licenses/{}/status", l.id),
            &prom,
        )
        .await;
    assert_eq!(status, 200);
    // Unknown paths share one label; a GET on the heartbeat route is no heartbeat.
    assert_eq!(get_status(&relay, "/nope/42").await, 404);
    assert_eq!(get_status(&relay, "/v1/heartbeat").await, 405);

    let text = scrape(&relay, &prom).await;
    let get = |name: &str, labels: &[(&str, &str)]| value(&text, name, labels);
    for (name, result, n) in [
        (metrics::ACTIVATIONS, "activated", 1.0),
        (metrics::ACTIVATIONS, "refused", 1.0),
        (metrics::HEARTBEATS, "accepted", 1.0),
        (metrics::HEARTBEATS, "refused", 2.0),
    ] {
        assert_eq!(get(name, &[("result", result)]), Some(n), "{name} {result}");
    }
    for reason in [
        "license_in_use",
        "replayed_heartbeat",
        "clock_skew",
        "not_found",
        "method_not_allowed",
    ] {
        assert_eq!(
            get(metrics::REFUSALS, &[("reason", reason)]),
            Some(1.0),
            "{reason}"
        );
    }
    for (route, status, n) in [
        ("/v1/activate", "200", 1.0),
        ("/v1/activate", "409", 1.0),
        ("/v1/heartbeat", "200", 1.0),
        ("/v1/heartbeat", "409", 1.0),
        ("/v1/heartbeat", "400", 1.0),
        ("/v1/heartbeat", "405", 1.0),
        ("/v1/licenses/{id}/status", "200", 1.0),
        (metrics::UNMATCHED, "404", 1.0),
    ] {
        assert_eq!(requests(&text, route, status), Some(n), "{route} {status}");
    }
    assert!(
        !text.contains(&l.id.to_string()),
        "a raw path leaked into a label"
    );
    assert!(!text.contains("/nope"), "a raw path leaked into a label");
    assert_eq!(get(metrics::CLUSTERS_BOUND, &[]), Some(1.0));
    assert_eq!(get(metrics::REVOCATION_LIST_VERSION, &[]), Some(0.0));
    assert_eq!(get(metrics::REVOCATION_LIST_EXPIRY, &[]), None);
    // Four of those reached the writer (two activations, the heartbeat and
    // its replay; the skewed one was refused before): each waited for a
    // commit. (The relay's own start-up writes may fall on either side.)
    let ((n0, w0), (n1, w1)) = (commits(&before), commits(&text));
    assert!(w1 - w0 >= 4.0, "committed writes {w0} -> {w1}");
    assert!(n1 > n0 && n1 - n0 <= w1 - w0, "commits {n0} -> {n1}");
    // Each commit's time is in the histogram: as many as commits, buckets
    // cumulative, the last (+Inf) holding them all.
    let hist = metrics::COMMIT_SECONDS;
    let count = value(&text, &format!("{hist}_count"), &[]).expect("the commit histogram");
    assert_eq!(count, n1);
    assert!(value(&text, &format!("{hist}_sum"), &[]).expect("its sum") > 0.0);
    let buckets: Vec<f64> = kaching_relay::storage::COMMIT_BUCKETS
        .iter()
        .map(|le| le.to_string())
        .chain(["+Inf".to_string()])
        .map(|le| value(&text, &format!("{hist}_bucket"), &[("le", &le)]).expect("a bucket"))
        .collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    assert_eq!(buckets.last(), Some(&n1));

    // A deactivation frees the binding; it is not counted as a heartbeat.
    let mut bye = beat(&l, &c1, 3);
    bye.deactivate = true;
    assert_eq!(
        relay.post_beat("/v1/deactivate", &bye, &c1).await.status(),
        200
    );
    let text = scrape(&relay, &prom).await;
    assert_eq!(value(&text, metrics::CLUSTERS_BOUND, &[]), Some(0.0));
    assert_eq!(
        value(&text, metrics::HEARTBEATS, &[("result", "accepted")]),
        Some(1.0)
    );
    assert_eq!(requests(&text, "/v1/deactivate", "200"), Some(1.0));
    relay.stop().await;
}

#[tokio::test]
async fn rate_limited_requests_are_counted() {
    let relay = Relay::start_changed(|c| {
        c.rate_limit.per_second = 1.0;
        c.rate_limit.burst = 2;
        c.public_metrics = true;
    })
    .await;
    // Relay::start_with spent a token on /healthz; the bucket may hold one more.
    let mut limited = 0;
    for _ in 0..3 {
        if get_status(&relay, "/healthz").await == 429 {
            limited += 1;
        }
    }
    assert!(limited >= 1);
    // Wait for a token to scrape with (the scrape shares the client's bucket).
    let mut text = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = relay.http.get(relay.url("/metrics")).send().await.unwrap();
        if r.status() == 200 {
            text = Some(r.text().await.unwrap());
            break;
        }
    }
    let text = text.expect("a scrape got through");
    let refused = value(&text, metrics::REFUSALS, &[("reason", "rate_limited")]).unwrap();
    assert!(refused >= f64::from(limited), "{refused} < {limited}");
    assert_eq!(requests(&text, "/healthz", "429"), Some(f64::from(limited)));
    relay.stop().await;
}

#[tokio::test]
async fn a_parked_long_poll_shows_while_it_waits() {
    let relay = Relay::start().await;
    let prom = relay.token(Scope::Whoosh, "prometheus");
    let publish = relay.token(Scope::Publish, "licensegen");
    relay
        .publish(&publish, revocation_list(1, &[], &vendor()))
        .await;
    // Asking without wait, or for an older version, never parks.
    assert_eq!(get_status(&relay, "/v1/revocations?after=1").await, 304);
    assert_eq!(
        value(
            &scrape(&relay, &prom).await,
            metrics::LONG_POLLS_WAITING,
            &[]
        ),
        Some(0.0)
    );

    let url = relay.url("/v1/revocations?after=1&wait=20s");
    let http = relay.http.clone();
    let poll = tokio::spawn(async move { http.get(url).send().await.unwrap() });
    scrape_until(&relay, &prom, metrics::LONG_POLLS_WAITING, 1.0).await;
    relay
        .publish(&publish, revocation_list(2, &[], &vendor()))
        .await;
    let r = tokio::time::timeout(Duration::from_secs(15), poll)
        .await
        .expect("long-poll answered")
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = scrape_until(&relay, &prom, metrics::LONG_POLLS_WAITING, 0.0).await;
    assert_eq!(requests(&text, "/v1/revocations", "200"), Some(1.0));

    // A poll whose wait runs out comes off the gauge too. (One whose client
    // went away stays counted until its wait ends: the server holds it, and
    // a half-closed client still gets its answer.)
    let url = relay.url("/v1/revocations?after=2&wait=2s");
    let http = relay.http.clone();
    let poll = tokio::spawn(async move { http.get(url).send().await.unwrap() });
    scrape_until(&relay, &prom, metrics::LONG_POLLS_WAITING, 1.0).await;
    let r = tokio::time::timeout(Duration::from_secs(15), poll)
        .await
        .expect("long-poll answered")
        .unwrap();
    assert_eq!(r.status(), 304);
    scrape_until(&relay, &prom, metrics::LONG_POLLS_WAITING, 0.0).await;
    relay.stop().await;
}

/// Beyond `max_long_polls`, a poll that would wait is answered at once (503
/// `long_polls_full`, `Retry-After` within `long_poll_max`) instead of
/// holding a connection and memory: a fleet that long-polls cannot take
/// every connection from heartbeats. A client holding an older list is
/// still served at once, and places free up as polls end.
#[tokio::test]
async fn attack_long_polls_beyond_max_long_polls_are_answered_at_once() {
    let relay = Relay::start_changed(|c| c.max_long_polls = 2).await;
    let prom = relay.token(Scope::Whoosh, "prometheus");
    let publish = relay.token(Scope::Publish, "licensegen");
    relay
        .publish(&publish, revocation_list(1, &[], &vendor()))
        .await;
    let park = || {
        let url = relay.url("/v1/revocations?after=1&wait=20s");
        let http = relay.http.clone();
        tokio::spawn(async move { http.get(url).send().await.unwrap() })
    };
    let parked = [park(), park()];
    scrape_until(&relay, &prom, metrics::LONG_POLLS_WAITING, 2.0).await;

    let r = tokio::time::timeout(
        Duration::from_secs(5),
        relay
            .http
            .get(relay.url("/v1/revocations?after=1&wait=20s"))
            .send(),
    )
    .await
    .expect("a poll beyond the cap is answered at once")
    .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.headers()["connection"],
        "close",
        "no idle connection kept"
    );
    let after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (10..=20).contains(&after),
        "Retry-After {after}s spread over the upper half of long_poll_max (20s)"
    );
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "long_polls_full");
    // A client holding an older list gets the newest at once, full or not.
    assert_eq!(
        get_status(&relay, "/v1/revocations?after=0&wait=20s").await,
        200
    );

    relay
        .publish(&publish, revocation_list(2, &[], &vendor()))
        .await;
    for p in parked {
        let r = tokio::time::timeout(Duration::from_secs(15), p)
            .await
            .expect("parked poll answered")
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    scrape_until(&relay, &prom, metrics::LONG_POLLS_WAITING, 0.0).await;
    // Their places are free again.
    let url = relay.url("/v1/revocations?after=2&wait=20s");
    let http = relay.http.clone();
    let again = tokio::spawn(async move { http.get(url).send().await.unwrap() });
    scrape_until(&relay, &prom, metrics::LONG_POLLS_WAITING, 1.0).await;
    again.abort();
    relay.stop().await;
}

/// `promtool check metrics` parses the exposition (the commit histogram is
/// written by hand) and finds nothing to lint in its names and types. It
/// does not check a histogram's buckets: the test above does.
/// Without promtool this says so once; under `CI=true` it fails.
fn promtool_accepts(text: &str) {
    use std::io::Write;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let line = "promtool not installed: apt-get install prometheus to check the exposition";
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{line} (CI=true: this check must run here)"
            );
            kaching_testkit::skip(line);
            return;
        }
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
