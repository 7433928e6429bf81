//! The daemon through its HTTP API: a real server on 127.0.0.1 port 0 over
//! temporary folders, driven the way BZZZ and WHOOSH drive it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use std::time::Duration;

use common::*;
use kaching_core::revocation::RevocationStatus;
use kaching_testkit::Events;
use kaching_verifier::{Clock, Config};
use serde_json::{json, Value};

fn state(v: &Value) -> &str {
    v["state"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_closed_without_a_license() {
    let (_dir, cfg) = setup(None);
    let d = Daemon::start(cfg).await;
    let s = d.status().await;
    assert_eq!(state(&s), "unlicensed");
    assert!(s["reason"]
        .as_str()
        .unwrap()
        .contains("copy the license file"));
    let (code, f) = d.get("/v1/features/basic-search").await;
    assert_eq!(code, 200);
    assert_eq!(f["allowed"], false);
    assert_eq!(f["code"], "license_unlicensed");
    assert_eq!(d.put_node("n1").await.0, 403);
    let (code, body) = d.spend("api_calls", 1, "k1").await;
    assert_eq!(code, 403);
    assert_eq!(body["allowed"], false);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn license_dropped_in_later_and_upgrade_are_picked_up_live() {
    let (_dir, cfg) = setup(None);
    let path = cfg.license.clone();
    let d = Daemon::start(cfg).await;
    let v = Vendor::new();
    replace(&path, &v.sign(&v.license(1, "evaluation")));
    d.wait_status("evaluation license in force", |s| state(s) == "active")
        .await;
    let (_, f) = d.get("/v1/features/analytics").await;
    assert_eq!(f["allowed"], false);
    assert_eq!(f["code"], "not_in_tier");
    replace(&path, &v.sign(&v.license(2, "standard")));
    d.wait_status("standard license in force", |s| s["tier"] == "standard")
        .await;
    let (_, f) = d.get("/v1/features/analytics").await;
    assert_eq!(f["allowed"], true);
    d.stop().await;
}

async fn assert_last_known_good_kept(bad: Vec<u8>, expect_in_reason: &str) {
    let v = Vendor::new();
    let good = v.sign(&v.license(1, "standard"));
    let (_dir, mut cfg) = setup(Some(&good));
    cfg.tick = Duration::from_millis(100);
    let path = cfg.license.clone();
    let d = Daemon::start(cfg.clone()).await;
    assert_eq!(state(&d.status().await), "active");
    replace(&path, &bad);
    let s = d
        .wait_status("rejection recorded", |s| {
            s["rejections"].as_array().is_some_and(|r| !r.is_empty())
        })
        .await;
    assert_eq!(state(&s), "active", "{s}");
    assert_eq!(s["license_id"], LICENSE_1);
    let why = s["rejections"][0]["reason"].as_str().unwrap();
    assert!(why.contains(expect_in_reason), "{why}");
    assert!(s["warnings"].to_string().contains("stays in force"));
    assert_eq!(d.get("/v1/features/analytics").await.1["allowed"], true);
    // Regression: re-checks of the unchanged bad file must not re-reject it
    // (reading a file is itself a file event; that once looped every tick).
    let at = s["rejections"][0]["at"].clone();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(d.status().await["rejections"][0]["at"], at);
    // The last good license survives a restart with the bad file still there.
    d.stop().await;
    let d = Daemon::start(cfg).await;
    let s = d.status().await;
    assert_eq!((state(&s), &s["license_id"]), ("active", &json!(LICENSE_1)));
    d.stop().await;
}

const LICENSE_1: &str = "01010101-0101-0101-0101-010101010101";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_forged_license_keeps_last_known_good() {
    let other = Vendor::other();
    let mut l = Vendor::new().license(9, "enterprise");
    l.limits.max_nodes = 1000;
    assert_last_known_good_kept(other.sign(&l), "unknown key").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_license_file_keeps_last_known_good() {
    assert_last_known_good_kept(b"this is not a license".to_vec(), "license.lic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_license_for_another_cluster_keeps_last_known_good() {
    let v = Vendor::new();
    let mut l = v.license(5, "enterprise");
    l.cluster = Some("aaaaaaaaaaaaaaaa".into());
    assert_last_known_good_kept(v.sign(&l), "bound to cluster aaaaaaaaaaaaaaaa").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_revocation_rollback_and_forgery_refused() {
    let v = Vendor::new();
    let (_dir, cfg) = setup(Some(&v.sign(&v.license(1, "standard"))));
    let rev = cfg.revocations.clone();
    let d = Daemon::start(cfg.clone()).await;
    replace(&rev, &v.revocations(2, &[(1, RevocationStatus::Suspended)]));
    d.wait_status("suspension in force", |s| state(s) == "suspended")
        .await;
    assert_eq!(d.get("/v1/features/basic-search").await.1["allowed"], false);
    // An older list without the entry would lift the suspension: refused.
    replace(&rev, &v.revocations(1, &[]));
    let s = d
        .wait_status("rollback refused", |s| {
            s["rejections"].to_string().contains("rollback")
        })
        .await;
    assert_eq!(state(&s), "suspended");
    // A newer list from someone else's key: refused.
    replace(&rev, &Vendor::other().revocations(3, &[]));
    let s = d
        .wait_status("forgery refused", |s| {
            s["rejections"].to_string().contains("unknown key")
        })
        .await;
    assert_eq!(state(&s), "suspended");
    // Deleting the file lifts nothing, even across a restart.
    std::fs::remove_file(&rev).unwrap();
    d.stop().await;
    let d = Daemon::start(cfg).await;
    assert_eq!(state(&d.status().await), "suspended");
    // The vendor's newer list without the entry lifts it.
    replace(&rev, &v.revocations(3, &[]));
    d.wait_status("suspension lifted", |s| state(s) == "active")
        .await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_limit_refuses_extra_node_and_expired_leases_free_slots() {
    let v = Vendor::new();
    let (_dir, mut cfg) = setup(Some(&v.sign(&v.license(1, "standard"))));
    cfg.lease_ttl = Duration::from_secs(2);
    cfg.tick = Duration::from_millis(200);
    let d = Daemon::start(cfg).await;
    for n in ["n1", "n2", "n3"] {
        let (code, body) = d.put_node(n).await;
        assert_eq!(code, 200, "{body}");
    }
    let (code, body) = d.put_node("n4").await;
    assert_eq!(code, 403);
    assert_eq!(body["code"], "node_limit");
    assert_eq!(body["error"]["code"], "node_limit");
    // A heartbeat from a node that holds a lease is always accepted.
    let (code, body) = d.put_node("n1").await;
    assert_eq!((code, &body["renewed"]), (200, &json!(true)));
    // Giving a lease back frees its slot at once.
    let r = d
        .http
        .delete(format!("{}/v1/nodes/n2", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(d.put_node("n4").await.0, 200);
    // The leases are listed, by node id, with when each lapses.
    let (code, list) = d.get("/v1/nodes").await;
    assert_eq!(code, 200, "{list}");
    let list: kaching_core::wire::verifier::NodeList = serde_json::from_value(list).unwrap();
    let ids: Vec<&str> = list.nodes.iter().map(|n| n.node_id.as_str()).collect();
    assert_eq!(ids, ["n1", "n3", "n4"]);
    assert_eq!(list.nodes_in_use, 3);
    assert!(list.nodes.iter().all(|n| n.expires_at.ends_with('Z')));
    // Without heartbeats every lease dies and is culled.
    d.wait_status("leases expired", |s| s["nodes_in_use"] == 0)
        .await;
    for n in ["n5", "n6", "n7"] {
        assert_eq!(d.put_node(n).await.0, 200);
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_spend_is_idempotent_and_refused_past_the_limit() {
    let v = Vendor::new();
    let (_dir, cfg) = setup(Some(&v.sign(&v.license(1, "standard"))));
    let d = Daemon::start(cfg).await;
    let (code, a) = d.spend("search_requests", 60, "key-a").await;
    assert_eq!(code, 200, "{a}");
    assert_eq!(
        (a["used"].as_u64(), a["limit"].as_u64()),
        (Some(60), Some(100))
    );
    // A retry with the same key changes nothing and answers the same.
    let (code, again) = d.spend("search_requests", 60, "key-a").await;
    assert_eq!((code, &again), (200, &a));
    let (code, refused) = d.spend("search_requests", 50, "key-b").await;
    assert_eq!(code, 403);
    assert_eq!(refused["code"], "quota_exceeded");
    assert_eq!(refused["used"], 60);
    let (code, c) = d.spend("search_requests", 40, "key-c").await;
    assert_eq!((code, c["used"].as_u64()), (200, Some(100)));
    let s = d.status().await;
    assert_eq!(
        s["quotas"]["search_requests"],
        json!({"used": 100, "limit": 100})
    );
    assert!(s["upgrade_suggestions"]
        .as_array()
        .is_some_and(|u| !u.is_empty()));
    let (_, q) = d.get("/v1/quotas").await;
    assert_eq!(q["quotas"]["search_requests"]["used"], 100);
    let (code, unknown) = d.spend("gpu_hours", 1, "key-d").await;
    assert_eq!(
        (code, unknown["code"].as_str()),
        (403, Some("unknown_quota"))
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gauge_above_its_limit_is_recorded_and_flagged() {
    let v = Vendor::new();
    let mut l = v.license(1, "standard");
    l.quotas.insert(
        "storage_gb".into(),
        kaching_core::license::Quota {
            limit: 500,
            period: kaching_core::license::Period::Gauge,
        },
    );
    let (_dir, cfg) = setup(Some(&v.sign(&l)));
    let d = Daemon::start(cfg).await;
    let (code, within) = d.spend("storage_gb", 400, "g-1").await;
    assert_eq!(code, 200, "{within}");
    assert_eq!(within["allowed"], true);
    assert_eq!(within["period"], "gauge");
    assert!(within.get("over_limit").is_none(), "{within}");
    // The cluster really holds 620 GB: refusing the report would hide it.
    let (code, over) = d.spend("storage_gb", 620, "g-2").await;
    assert_eq!(code, 200, "{over}");
    assert_eq!(over["allowed"], false);
    assert_eq!(over["used"], 620);
    assert_eq!(over["over_limit"]["code"], "gauge_over_limit");
    let s = d.status().await;
    assert_eq!(
        s["quotas"]["storage_gb"],
        json!({"used": 620, "limit": 500})
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_clock_wound_back_gives_clock_tampered() {
    let v = Vendor::new();
    let (_dir, mut cfg) = setup(Some(&v.sign(&v.license(1, "standard"))));
    // First run with the clock ten days ahead: the trusted-time mark follows.
    cfg.clock = Clock::with_offset(10 * 86_400);
    let d = Daemon::start(cfg.clone()).await;
    assert_eq!(state(&d.status().await), "active");
    d.stop().await;
    // Back to "now": ten days behind the mark, beyond the 24 h tolerance.
    cfg.clock = Clock::system();
    let d = Daemon::start(cfg).await;
    let s = d.status().await;
    assert_eq!(state(&s), "clock_tampered", "{s}");
    assert!(s["reason"].as_str().unwrap().contains("fix the clock"));
    assert_eq!(d.get("/v1/features/basic-search").await.1["allowed"], false);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_reports_a_reload() {
    let v = Vendor::new();
    let (_dir, cfg) = setup(Some(&v.sign(&v.license(1, "evaluation"))));
    let path = cfg.license.clone();
    let d = Daemon::start(cfg).await;
    let mut events = Events::open(&d.json, "/v1/events").await;
    // The first event is the current status.
    events.wait_for("status", |_| true).await;
    replace(&path, &v.sign(&v.license(2, "standard")));
    let (mut reload, mut standard) = (false, false);
    while !(reload && standard) {
        let (kind, data) = tokio::time::timeout(Duration::from_secs(20), events.next())
            .await
            .expect("no event within 20 s")
            .expect("the stream stays open");
        reload |= kind == "reload";
        standard |= data.to_string().contains("\"tier\":\"standard\"");
    }
    // Shutdown does not wait forever for an open event stream.
    tokio::time::timeout(Duration::from_secs(20), d.stop())
        .await
        .expect("shutdown with an open event stream finished");
    drop(events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_non_loopback_listen_without_token_is_refused() {
    let (_dir, cfg) = setup(None);
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let err = kaching_verifier::run(listener, cfg.clone(), async {})
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("without a bearer token"), "{err}");
    // The binary refuses the configured address before binding it.
    let c = Config {
        listen: "0.0.0.0:7741".parse().unwrap(),
        ..cfg
    };
    assert!(c.check_listen(c.listen, None).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_requests_without_the_token_are_refused() {
    let (dir, mut cfg) = setup(None);
    let token_file = dir.path().join("api.token");
    std::fs::write(&token_file, "0123456789abcdef0123456789abcdef\n").unwrap();
    cfg.token_file = Some(token_file);
    let d = Daemon::start(cfg).await;
    assert_eq!(d.get("/v1/status").await.0, 401);
    let (code, body) = d.get("/v1/features/x").await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let ok = d
        .http
        .get(format!("{}/v1/status", d.url))
        .bearer_auth("0123456789abcdef0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    // The API's contract holds nothing secret: served without the token,
    // and it is the document the code describes.
    let (code, doc) = d.get("/openapi.json").await;
    assert_eq!(code, 200, "{doc}");
    assert_eq!(
        doc,
        serde_json::to_value(kaching_verifier::openapi::document()).unwrap()
    );
    assert_eq!(
        doc["paths"]["/v1/status"]["get"]["responses"]["401"]["content"]["application/json"]
            ["schema"]["$ref"],
        "#/components/schemas/ErrorBody"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_bodies_get_json_4xx() {
    let v = Vendor::new();
    let (_dir, cfg) = setup(Some(&v.sign(&v.license(1, "standard"))));
    let d = Daemon::start(cfg).await;
    let post = |body: Vec<u8>, ct: &'static str| {
        let (http, url) = (d.http.clone(), format!("{}/v1/usage", d.url));
        async move {
            // The daemon answers an oversized body without reading all of
            // it and closes; the client may see that close before the 413
            // (no lingering close: see the closing note). Retry on a new
            // connection: the answer, when it arrives, must be the JSON 4xx.
            // The request after it may meet the same close on the pooled
            // connection, so any send error is retried a few times.
            let mut attempt = 0;
            loop {
                let sent = http
                    .post(&url)
                    .header("content-type", ct)
                    .body(body.clone())
                    .send()
                    .await;
                match sent {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        return (s, r.json::<Value>().await.unwrap_or(Value::Null));
                    }
                    Err(e) if attempt < 4 => {
                        attempt += 1;
                        eprintln!("retrying after {e}");
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }
    };
    let big = format!(
        "{{\"metric\":\"api_calls\",\"amount\":1,\"idempotency_key\":\"{}\"}}",
        "x".repeat(200_000)
    );
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"not json".to_vec(), "application/json"),
        (vec![0xff, 0xfe, 0x00, 0x7b], "application/json"),
        (b"{\"metric\":\"api_calls\"}".to_vec(), "application/json"),
        (
            b"{\"metric\":\"api_calls\",\"amount\":-5,\"idempotency_key\":\"k\"}".to_vec(),
            "application/json",
        ),
        (
            b"{\"metric\":\"\",\"amount\":1,\"idempotency_key\":\"k\"}".to_vec(),
            "application/json",
        ),
        (
            b"{\"metric\":\"api_calls\",\"amount\":1,\"idempotency_key\":\"k\"}".to_vec(),
            "text/plain",
        ),
        (big.into_bytes(), "application/json"),
        (
            b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[".to_vec(),
            "application/json",
        ),
    ];
    for (body, ct) in cases {
        let shown = String::from_utf8_lossy(&body[..body.len().min(60)]).into_owned();
        let (code, v) = post(body, ct).await;
        assert!((400..500).contains(&code), "{shown}: {code}");
        assert!(v["error"]["code"].is_string(), "{shown}: {v}");
    }
    let (code, v) = d.get("/v1/nope").await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (code, _) = d.put_node("bad%20node%2Fid").await;
    assert_eq!(code, 422);
    let r = d
        .http
        .post(format!("{}/v1/upgrade-requests", d.url))
        .json(&json!({"requested_tier": "enterprize"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("enterprise"));
    // The daemon is unharmed.
    assert_eq!(state(&d.status().await), "active");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_requests_are_queued_locally() {
    let v = Vendor::new();
    let (_dir, cfg) = setup(Some(&v.sign(&v.license(1, "standard"))));
    let d = Daemon::start(cfg).await;
    let r = d
        .http
        .post(format!("{}/v1/upgrade-requests", d.url))
        .json(&json!({"requested_tier": "enterprise", "message": "need bulk-operations"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    // The tier in force, or a lower one, is not an upgrade: refused with why.
    for (tier, says) in [
        ("standard", "already on the standard tier"),
        ("evaluation", "below the standard tier"),
    ] {
        let r = d
            .http
            .post(format!("{}/v1/upgrade-requests", d.url))
            .json(&json!({"requested_tier": tier}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 422);
        let body: kaching_core::wire::ErrorBody = r.json().await.unwrap();
        assert_eq!(body.error.code, "not_an_upgrade");
        assert!(body.error.message.contains(says), "{body}");
    }
    let (code, list) = d.get("/v1/upgrade-requests").await;
    assert_eq!(code, 200);
    assert_eq!(list["upgrade_requests"][0]["requested_tier"], "enterprise");
    assert_eq!(
        list["upgrade_requests"].as_array().unwrap().len(),
        1,
        "{list}"
    );
    let metrics = d
        .http
        .get(format!("{}/metrics", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status().as_u16(), 200);
    let text = metrics.text().await.unwrap();
    for name in [
        "kaching_license_state",
        "kaching_license_expiry_seconds",
        "kaching_license_grace_end_seconds",
    ] {
        assert!(text.contains(name), "/metrics lacks {name}:\n{text}");
    }
    // Every route is counted by its template and status, refusals included.
    for series in [
        r#"kaching_api_requests_total{route="/v1/upgrade-requests",status="202"}"#,
        r#"kaching_api_requests_total{route="/v1/upgrade-requests",status="200"}"#,
    ] {
        assert!(text.contains(series), "/metrics lacks {series}:\n{text}");
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_removed_vendor_key_withdraws_its_licenses() {
    let v = Vendor::new();
    let (_dir, cfg) = setup(Some(&v.sign(&v.license(1, "standard"))));
    let keys = cfg.trusted_keys.clone();
    let d = Daemon::start(cfg).await;
    assert_eq!(state(&d.status().await), "active");
    // Key rotation after a compromise: only the new key is trusted now.
    replace(&keys, Vendor::other().public_pem().as_bytes());
    let s = d
        .wait_status("license withdrawn", |s| state(s) == "invalid")
        .await;
    assert!(s["reason"].as_str().unwrap().contains("unknown key"), "{s}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn license_folder_uses_the_newest_valid_license() {
    let v = Vendor::new();
    let (dir, mut cfg) = setup(None);
    let folder = dir.path().join("licenses");
    std::fs::create_dir(&folder).unwrap();
    cfg.license = folder.clone();
    let mut old = v.license(1, "evaluation");
    old.issued_at -= 3600;
    std::fs::write(folder.join("old.lic"), v.sign(&old)).unwrap();
    std::fs::write(folder.join("junk.lic"), b"not a license").unwrap();
    let d = Daemon::start(cfg).await;
    assert_eq!(d.status().await["tier"], "evaluation");
    replace(&folder.join("new.lic"), &v.sign(&v.license(2, "standard")));
    d.wait_status("newer license in force", |s| s["tier"] == "standard")
        .await;
    d.stop().await;
}

/// Whether status carries a warning containing `text`.
fn warned(s: &Value, text: &str) -> bool {
    s["warnings"].as_array().is_some_and(|w| {
        w.iter()
            .any(|w| w.as_str().is_some_and(|w| w.contains(text)))
    })
}

/// The standard test license without its `analytics` feature: a downgrade.
fn without_analytics(v: &Vendor) -> Vec<u8> {
    let mut l = v.license(2, "standard");
    l.features.remove("analytics");
    v.sign(&l)
}

#[tokio::test]
async fn a_downgrade_takes_effect_with_a_warning_and_says_what_was_lost() {
    let v = Vendor::new();
    let (_dir, mut cfg) = setup(Some(&v.sign(&v.license(1, "standard"))));
    cfg.tick = Duration::from_millis(100);
    let d = Daemon::start(cfg.clone()).await;
    d.wait_status("license 1", |s| s["state"] == "active").await;
    replace(&cfg.license, &without_analytics(&v));
    let s = d
        .wait_status("license 2 in force", |s| {
            s["license_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("02020202"))
        })
        .await;
    assert_eq!(
        s["license_change"]["features_lost"],
        json!(["analytics"]),
        "{s:#}"
    );
    assert_eq!(s["license_change"]["downgrade"], true);
    assert!(s["pending_downgrade"].is_null(), "{s:#}");
    assert!(
        warned(&s, "takes something away: features lost: analytics"),
        "{s:#}"
    );
    let (_, f) = d.get("/v1/features/analytics").await;
    assert_eq!(f["allowed"], false, "{f:#}");
    d.stop().await;
}

#[tokio::test]
async fn a_held_downgrade_waits_for_accept_downgrade() {
    let v = Vendor::new();
    let (dir, mut cfg) = setup(Some(&v.sign(&v.license(1, "standard"))));
    cfg.tick = Duration::from_millis(100);
    cfg.hold_downgrades = true;
    let d = Daemon::start(cfg.clone()).await;
    d.wait_status("license 1", |s| s["state"] == "active").await;
    replace(&cfg.license, &without_analytics(&v));
    let s = d
        .wait_status("the downgrade held", |s| !s["pending_downgrade"].is_null())
        .await;
    assert!(
        s["license_id"].as_str().unwrap().starts_with("01010101"),
        "{s:#}"
    );
    assert_eq!(
        s["pending_downgrade"]["features_lost"],
        json!(["analytics"])
    );
    assert!(warned(&s, "kaching-verifier accept-downgrade"), "{s:#}");
    let (_, f) = d.get("/v1/features/analytics").await;
    assert_eq!(
        f["allowed"], true,
        "the license before it stays in force: {f:#}"
    );

    // The operator accepts it from the command line.
    let conf = write_config(dir.path(), &cfg, "hold_downgrades = true\n");
    let out = verifier_cmd("warn")
        .args(["accept-downgrade", "--config"])
        .arg(&conf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("accepted: features lost: analytics"),
        "{text}"
    );
    let s = d
        .wait_status("license 2 in force", |s| {
            s["license_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("02020202"))
        })
        .await;
    assert!(s["pending_downgrade"].is_null(), "{s:#}");
    assert_eq!(s["license_change"]["features_lost"], json!(["analytics"]));
    // Nothing waits now: a second accept says so.
    let out = verifier_cmd("warn")
        .args(["accept-downgrade", "--config"])
        .arg(&conf)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no downgrade is waiting"));
    d.stop().await;
}

#[tokio::test]
async fn a_license_written_in_place_is_read_when_the_writer_closes_it_not_half_written() {
    use std::io::Write;
    let v = Vendor::new();
    let (_dir, mut cfg) = setup(Some(&v.sign(&v.license(1, "standard"))));
    // Only the watch can trigger a read here: no periodic pass, and a long
    // quiet period for writes left open.
    cfg.tick = Duration::from_secs(3600);
    cfg.debounce = Duration::from_secs(5);
    let d = Daemon::start(cfg.clone()).await;
    d.wait_status("license 1", |s| s["state"] == "active").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let new = v.sign(&v.license(2, "standard"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&cfg.license)
        .unwrap();
    f.write_all(&new[..new.len() / 2]).unwrap();
    f.flush().unwrap();
    // Half written and still open: nothing is read, nothing is refused.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = d.status().await;
    assert!(s["rejections"].as_array().unwrap().is_empty(), "{s:#}");
    assert!(
        s["license_id"].as_str().unwrap().starts_with("01010101"),
        "{s:#}"
    );
    // The writer finishes and closes: in force without waiting for the quiet period.
    f.write_all(&new[new.len() / 2..]).unwrap();
    drop(f);
    let s = d
        .wait_status("license 2 after the close", |s| {
            s["license_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("02020202"))
        })
        .await;
    assert!(s["rejections"].as_array().unwrap().is_empty(), "{s:#}");
    d.stop().await;
}

#[test]
fn a_lapsed_duty_to_report_is_lifted_by_importing_the_receipt() {
    use kaching_core::armor::armor;
    use kaching_core::DocKind;
    let v = Vendor::new();
    // Must report every day; issued two days ago; analytics stops when late.
    let mut l = v.license(1, "standard");
    l.issued_at = now() - 2 * 86_400;
    l.not_before = l.issued_at;
    l.report = Some(kaching_core::license::ReportPolicy {
        every: 86_400,
        warn: 3600,
        deny: ["analytics".to_string()].into(),
    });
    let (dir, cfg) = setup(Some(&v.sign(&l)));
    let mut e = kaching_verifier::Engine::open(cfg, true).unwrap();
    let st = &e.current().status.status;
    assert_eq!(st.state, "report_overdue", "{}", st.reason);
    assert!(!e.current().verdict.feature("analytics").allowed);
    assert!(e.current().verdict.feature("basic-search").allowed);

    // The customer writes a report; the vendor's receipt comes back.
    let receipt = report_and_receipt(&mut e, dir.path());
    let signed = armor(DocKind::Receipt, &receipt.sign(&v.key));
    kaching_verifier::report::import_receipt(&mut e, signed.as_bytes(), now()).unwrap();
    let st = &e.current().status.status;
    assert_eq!(st.state, "active", "{}", st.reason);
    assert!(e.current().verdict.feature("analytics").allowed);
}

#[test]
fn a_usage_report_that_could_not_be_written_takes_its_number_back() {
    let v = Vendor::new();
    let (dir, cfg) = setup(Some(&v.sign(&v.license(1, "standard"))));
    let mut e = kaching_verifier::Engine::open(cfg, true).unwrap();
    let failed = kaching_verifier::report::usage_report(&mut e, now(), |_| {
        Err(anyhow::anyhow!("disk full"))
    });
    assert!(failed.is_err());
    // The next report is number 1 again: no gap for the vendor to worry about.
    let file = dir.path().join("usage.asc");
    let report =
        kaching_verifier::report::usage_report(&mut e, now(), |t| Ok(std::fs::write(&file, t)?))
            .unwrap();
    assert_eq!(report.chain.map(|c| c.seq), Some(1));
}

/// Expired idempotency keys are forgotten in bounded batches, oldest first:
/// a week of heavy metering never holds the writes queued behind the
/// pruning for more than one batch, and a key still inside
/// `idempotency_ttl` is still answered as a replay, not counted again.
#[test]
fn expired_idempotency_keys_are_pruned_in_batches_and_fresh_ones_kept() {
    use kaching_verifier::engine::{Outcome, Pruned, PRUNE_BATCH, PRUNE_STEPS_PER_TICK};
    let v = Vendor::new();
    let mut l = v.license(1, "standard");
    l.quotas.get_mut("api_calls").unwrap().limit = 1_000_000;
    let (_dir, mut cfg) = setup(Some(&v.sign(&l)));
    let ttl = 86_400;
    cfg.idempotency_ttl = Duration::from_secs(ttl);
    let mut e = kaching_verifier::Engine::open(cfg, true).unwrap();
    let t0 = now();
    let replayed = |o: Outcome| match o {
        Outcome::Counted { replayed, .. } => replayed,
        other => panic!("not counted: {other:?}"),
    };
    // More expired keys than one tick prunes.
    let old = PRUNE_BATCH * PRUNE_STEPS_PER_TICK + PRUNE_BATCH / 2;
    e.begin_group().unwrap();
    for i in 0..old {
        assert!(!replayed(
            e.spend("api_calls", 1, &format!("old-{i}"), t0).unwrap()
        ));
    }
    e.commit_group(t0).unwrap();
    assert!(!replayed(
        e.spend("api_calls", 1, "fresh", t0 + ttl - 60).unwrap()
    ));

    let later = t0 + ttl + 120;
    e.tick(later);
    assert!(
        e.prune_pending(),
        "one tick prunes at most {PRUNE_STEPS_PER_TICK} batches"
    );
    assert_eq!(
        e.prune(later, 1),
        Pruned {
            keys: PRUNE_BATCH / 2,
            more: false
        },
        "the rest, in one more short batch"
    );
    assert_eq!(e.prune(later, 1), Pruned::default(), "nothing left");
    // Oldest first: every key past the ttl is forgotten (it counts again),
    // the one inside it is still a replay.
    assert!(replayed(e.spend("api_calls", 1, "fresh", later).unwrap()));
    for i in [0, old / 2, old - 1] {
        assert!(!replayed(
            e.spend("api_calls", 1, &format!("old-{i}"), later).unwrap()
        ));
    }
}

/// A validly signed license whose dates rule it out now: issued a year
/// ago, expired 30 days ago, 7 days of grace (long over).
fn expired_license(v: &Vendor, id: u8) -> Vec<u8> {
    let mut l = v.license(id, "standard");
    l.issued_at = now() - 400 * DAY;
    l.not_before = l.issued_at;
    l.expires_at = now() - 30 * DAY;
    v.sign(&l)
}

fn license_rejection(s: &Value) -> String {
    s["rejections"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["file"] == "license"))
        .map(|r| r["reason"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

/// Copying an expired (past grace) but validly signed license over the
/// license file does not replace the license in force: it is refused with
/// the date and the cluster stays licensed. A restart keeps it that way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_expired_license_copied_over_a_working_one_does_not_replace_it() {
    let v = Vendor::new();
    let (_dir, cfg) = setup(Some(&v.sign(&v.license(1, "standard"))));
    let path = cfg.license.clone();
    let d = Daemon::start(cfg.clone()).await;
    assert_eq!(state(&d.status().await), "active");
    replace(&path, &expired_license(&v, 2));
    let s = d
        .wait_status("the expired license refused", |s| {
            license_rejection(s).contains("expired on")
        })
        .await;
    assert_eq!(
        (state(&s), &s["license_id"]),
        ("active", &json!("01010101-0101-0101-0101-010101010101")),
        "{s}"
    );
    let why = license_rejection(&s);
    assert!(
        why.contains("the license in force") && why.contains("stays"),
        "{why}"
    );
    assert_eq!(d.get("/v1/features/basic-search").await.1["allowed"], true);
    d.stop().await;
    let d = Daemon::start(cfg).await;
    assert_eq!(state(&d.status().await), "active");
    d.stop().await;
}

/// With nothing usable in force, an expired license is used as it is:
/// the verdict says `expired` and why (not "no license").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_license_is_used_when_nothing_usable_is_in_force() {
    let v = Vendor::new();
    let (_dir, cfg) = setup(Some(&expired_license(&v, 2)));
    let d = Daemon::start(cfg).await;
    let s = d.status().await;
    assert_eq!(state(&s), "expired", "{s}");
    assert_eq!(license_rejection(&s), "", "{s}");
    d.stop().await;
}

/// In a license folder, a short license issued last but expired does not
/// win over a current annual one issued earlier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_expired_short_license_issued_last_does_not_win_the_folder() {
    let v = Vendor::new();
    let (dir, mut cfg) = setup(None);
    let folder = dir.path().join("licenses");
    std::fs::create_dir(&folder).unwrap();
    cfg.license = folder.clone();
    let mut annual = v.license(1, "standard");
    annual.issued_at = now() - 10 * DAY;
    annual.not_before = annual.issued_at;
    std::fs::write(folder.join("annual.lic"), v.sign(&annual)).unwrap();
    let mut short = v.license(2, "enterprise");
    short.issued_at = now() - 5 * DAY;
    short.not_before = short.issued_at;
    short.expires_at = now() - 3 * DAY;
    short.grace = DAY;
    std::fs::write(folder.join("short.lic"), v.sign(&short)).unwrap();
    let d = Daemon::start(cfg).await;
    let s = d.status().await;
    assert_eq!(
        (state(&s), &s["tier"]),
        ("active", &json!("standard")),
        "{s}"
    );
    d.stop().await;
}

/// An idempotency key reused for a different request is refused (422,
/// `idempotency_key_reused`) instead of answered with the first request's
/// reply while the second is silently not counted; the true retry is
/// still answered as a replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_idempotency_key_reused_for_another_request_is_refused() {
    let v = Vendor::new();
    let (_dir, cfg) = setup(Some(&v.sign(&v.license(1, "standard"))));
    let d = Daemon::start(cfg).await;
    let (code, first) = d.spend("search_requests", 10, "job-42").await;
    assert_eq!(code, 200, "{first}");
    for (metric, amount) in [("api_calls", 999), ("search_requests", 11)] {
        let (code, body) = d.spend(metric, amount, "job-42").await;
        assert_eq!(
            (code, &body["error"]["code"]),
            (422, &json!("idempotency_key_reused")),
            "{body}"
        );
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("10 of search_requests") && msg.contains("nothing was counted"),
            "{msg}"
        );
    }
    let (code, again) = d.spend("search_requests", 10, "job-42").await;
    assert_eq!((code, &again), (200, &first));
    let (_, q) = d.get("/v1/quotas").await;
    assert_eq!(q["quotas"]["search_requests"]["used"], 10, "{q}");
    assert_eq!(q["quotas"]["api_calls"]["used"], 0, "{q}");
    d.stop().await;
}

/// A refused revocation list stops being warned about once its file is
/// deleted (the list accepted before stays in force from the database).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_revocation_file_deleted_is_no_longer_warned_about() {
    let v = Vendor::new();
    let (_dir, cfg) = setup(Some(&v.sign(&v.license(1, "standard"))));
    let rev = cfg.revocations.clone();
    let d = Daemon::start(cfg).await;
    replace(&rev, b"not a revocation list");
    let refused = |s: &Value| {
        s["rejections"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["file"] == "revocations"))
    };
    d.wait_status("the broken list refused", refused).await;
    std::fs::remove_file(&rev).unwrap();
    let s = d
        .wait_status("the refusal gone with the file", |s| !refused(s))
        .await;
    assert!(!s["warnings"].to_string().contains("revocation"), "{s}");
    assert_eq!(state(&s), "active");
    d.stop().await;
}

/// "Bound to cluster X, this is cluster Y" names the state folder this
/// cluster's id came from: a `check` run with another state folder (a
/// relative state_dir from another working folder) is visibly the cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_license_for_another_cluster_names_the_state_folder_used() {
    let v = Vendor::new();
    let mut l = v.license(5, "enterprise");
    l.cluster = Some("aaaaaaaaaaaaaaaa".into());
    let (_dir, cfg) = setup(Some(&v.sign(&l)));
    let want = format!("state folder {}", cfg.state_dir.display());
    let d = Daemon::start(cfg).await;
    let s = d.status().await;
    assert_eq!(state(&s), "invalid", "{s}");
    assert!(license_rejection(&s).contains(&want), "{s}");
    d.stop().await;
}
