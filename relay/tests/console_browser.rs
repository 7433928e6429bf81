//! The fleet console in a real, headless Chromium (Debian's `chromium` and
//! `chromium-driver`; `scripts/ci-browser` installs them). Without them each
//! test prints one line and passes; under `CI=true` that is a failure.
//!
//! Screenshots go to `target/ui-screenshots/`; with
//! `KACHING_SCREENSHOTS=docs` they also replace `docs/img/console-*.png`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use std::time::Duration;

use common::*;
use kaching_core::cluster::{ActivationRequest, UpgradeRequest};
use kaching_core::heartbeat::{ChainHead, Heartbeat};
use kaching_core::license::License;
use kaching_core::wire::relay::ActivateBody;
use kaching_core::{armor, cluster_id, DocKind, SecretKey};
use kaching_relay::tokens::Scope;
use kaching_testkit::{Browser, HostileSite};

async fn screenshot(b: &Browser, name: &str) {
    b.keep_screenshot(name, 1280).await;
}

fn activation(l: &License, cluster: &SecretKey, hostname: &str) -> ActivateBody {
    let req = ActivationRequest {
        cluster_id: cluster_id(&cluster.public()),
        cluster_key: *cluster.public().as_bytes(),
        hostname: hostname.into(),
        nodes: 3,
        created: now(),
    };
    ActivateBody {
        license: armored_license(l, &vendor()),
        activation_request: armor::armor(DocKind::ActivationRequest, &req.sign(cluster)),
    }
}

/// A relay with three clusters heartbeating (one customer name carrying
/// markup, one license expiring in 40 days), a published list; returns the
/// relay and an admin token.
async fn fleet() -> (Relay, String, Vec<License>) {
    let r = Relay::start().await;
    let mut ls = vec![license(1, 3600), license(2, 3600), license(3, 3600)];
    ls[0].customer = "<script>alert(1)</script> Initech".into();
    ls[1].customer = "Globex".into();
    ls[1].expires_at = now() + 40 * 86_400;
    ls[2].customer = "Umbrella".into();
    for (i, l) in ls.iter().enumerate() {
        let k = cluster_key(i as u8 + 1);
        let host = format!("edge-{}.{}", i + 1, ["initech", "globex", "umbrella"][i]);
        let resp = r
            .http
            .post(r.url("/v1/activate"))
            .json(&activation(l, &k, &host))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        for seq in 1..=(2 + i as u64) {
            let mut hb = beat(l, &k, seq);
            hb.quotas
                .insert("api_calls".into(), 100 * seq * (i as u64 + 1));
            assert_eq!(r.post_beat("/v1/heartbeat", &hb, &k).await.status(), 200);
        }
    }
    // Umbrella's state database is restored from a backup: its report
    // chain head goes back (signs of rollback).
    let k = cluster_key(3);
    for (seq, report, mark) in [(20, 5, now() - 10), (21, 3, now() - 30)] {
        let hb = Heartbeat {
            chain: Some(ChainHead {
                report_seq: report,
                report_hash: Some([report as u8; 32]),
                mark,
                reset: None,
            }),
            ..beat(&ls[2], &k, seq)
        };
        assert_eq!(r.post_beat("/v1/heartbeat", &hb, &k).await.status(), 200);
    }
    let publish = r.token(Scope::Publish, "publisher");
    let list = revocation_list(3, &[ls[2].id], &vendor());
    assert_eq!(r.publish(&publish, list).await.status(), 201);
    let admin = r.token(Scope::Admin, "ops");
    (r, admin, ls)
}

async fn sign_in(b: &Browser, r: &Relay, admin: &str) {
    b.goto(&r.url("/console/")).await;
    b.fill("#token", admin).await;
    b.click("#login button[type=submit]").await;
    b.wait_for(
        "the fleet page",
        "return document.getElementById('matched') !== null;",
        Duration::from_secs(20),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_console_lists_the_fleet_of_a_real_relay() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let (r, admin, _) = fleet().await;
    sign_in(&b, &r, &admin).await;
    assert_eq!(b.text("#matched").await, "3 of 3 cluster(s) match.");
    // Signs of rollback: a banner, and that cluster listed first.
    assert!(b.text("#live .banner").await.contains("Signs of rollback."));
    let first = b.text("#clusters tbody tr").await;
    assert!(
        first.contains("Umbrella") && first.contains("head_back"),
        "{first}"
    );
    b.click("#live .banner a").await;
    b.wait_for_url("anomalies=1").await;
    assert_eq!(b.text("#matched").await, "1 of 3 cluster(s) match.");
    b.goto(&r.url("/console/")).await;
    let table = b.text("#clusters table").await;
    for want in [
        "<script>alert(1)</script> Initech",
        "Globex",
        "edge-2.globex",
        "0.1.0-test",
    ] {
        assert!(table.contains(want), "{want} not in {table}");
    }
    let injected = b
        .run("return typeof window.alert === 'function' && document.querySelectorAll('main script').length;", serde_json::json!([]))
        .await;
    assert_eq!(
        injected,
        serde_json::json!(0),
        "a customer's markup became a script"
    );
    screenshot(&b, "console-fleet.png").await;
    // Search through the form: the server filters.
    b.fill("#q", "umbrella").await;
    b.click("#filter button[type=submit]").await;
    b.wait_for_url("q=umbrella").await;
    assert_eq!(b.text("#matched").await, "1 of 3 cluster(s) match.");
    // The other pages, for the guide.
    b.goto(&r.url("/console/licenses?days=60")).await;
    assert!(b.text("#expiring").await.starts_with("1 license(s)"));
    let sparks = b
        .run(
            "return document.querySelectorAll('svg.spark').length;",
            serde_json::json!([]),
        )
        .await;
    assert!(sparks.as_u64().unwrap() >= 6, "{sparks}");
    // Drawn at the stylesheet's size, the line stroked, not filled.
    let drawn = b
        .run(
            "const s = document.querySelector('svg.spark'); const r = s.getBoundingClientRect(); \
             const l = getComputedStyle(s.querySelector('polyline')); \
             return [Math.round(r.width), Math.round(r.height), l.fill, l.strokeWidth];",
            serde_json::json!([]),
        )
        .await;
    assert_eq!(
        drawn,
        serde_json::json!([120, 24, "none", "1.5px"]),
        "{drawn}"
    );
    screenshot(&b, "console-licenses.png").await;
    b.goto(&r.url("/console/revocations")).await;
    assert_eq!(b.text("#list-version").await, "3");
    // Every active cluster is counted once, reached or silent.
    let reached: u64 = b.text("#reached").await.parse().unwrap();
    let silent: u64 = b.text("#silent").await.parse().unwrap();
    assert_eq!(reached + silent, 3);
    screenshot(&b, "console-revocations.png").await;
    b.goto(&r.url("/console/audit")).await;
    assert!(b.text("#chain").await.contains("The chain verifies."));
    screenshot(&b, "console-audit.png").await;
    b.quit().await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_console_inbox_shows_new_requests_from_whoosh_and_from_clusters_without_reload() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let (r, admin, ls) = fleet().await;
    sign_in(&b, &r, &admin).await;
    b.goto(&r.url("/console/inbox")).await;
    assert!(b.text("#inbox").await.contains("No upgrade request yet."));
    b.wait_for(
        "the inbox to go live",
        "return document.getElementById('live-state').textContent === 'live';",
        Duration::from_secs(20),
    )
    .await;
    b.run("window.kept = 'same page';", serde_json::json!([]))
        .await;
    // One through WHOOSH's API, one carried by a cluster's heartbeat.
    let whoosh = r.token(Scope::Whoosh, "whoosh");
    assert_eq!(
        r.file_upgrade(&whoosh, &ls[1], "enterprise").await.status(),
        201
    );
    let k = cluster_key(1);
    let mut hb = beat(&ls[0], &k, 10);
    hb.upgrade_requests.push(UpgradeRequest {
        requested_tier: "enterprise".into(),
        message: "more nodes for the <b>EU</b> region".into(),
        time: now(),
    });
    assert_eq!(r.post_beat("/v1/heartbeat", &hb, &k).await.status(), 200);
    // Both appear in the open inbox, without a reload.
    b.wait_for(
        "both requests in the open inbox",
        "const t = document.querySelector('#inbox table'); \
         return t !== null && t.textContent.includes('WHOOSH') && t.textContent.includes('EU');",
        Duration::from_secs(15),
    )
    .await;
    let kept = b.run("return window.kept;", serde_json::json!([])).await;
    assert_eq!(kept, serde_json::json!("same page"), "the inbox reloaded");
    let inbox = b.text("#inbox table").await;
    assert!(
        inbox.contains("Globex") && inbox.contains("WHOOSH"),
        "{inbox}"
    );
    assert!(
        inbox.contains("more nodes for the <b>EU</b> region"),
        "{inbox}"
    );
    assert!(
        inbox.contains(&format!("cluster {}", cluster_id(&k.public()))),
        "{inbox}"
    );
    screenshot(&b, "console-inbox.png").await;
    b.quit().await;
    r.stop().await;
}

/// An operator clicks through the console: every page follows the event
/// stream, and the browser opens at most six connections to one origin.
/// The streams of pages left behind must close, or the seventh page waits
/// (about a minute) for a free connection. Ten pages in a row each load
/// and go live within 20 s; a page brought back with Back follows again
/// and shows what happened while it was away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_console_pages_visited_in_a_row_each_load_and_go_live() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let (r, admin, ls) = fleet().await;
    sign_in(&b, &r, &admin).await;
    let pages = [
        "/console/inbox",
        "/console/licenses",
        "/console/revocations",
        "/console/audit",
        "/console/",
    ];
    for (i, page) in pages.iter().cycle().take(10).enumerate() {
        tokio::time::timeout(Duration::from_secs(20), b.goto(&r.url(page)))
            .await
            .unwrap_or_else(|_| panic!("page {} ({page}) did not load within 20 s", i + 2));
        b.wait_for(
            &format!("page {} ({page}) to go live", i + 2),
            "return document.getElementById('live-state').textContent === 'live';",
            Duration::from_secs(20),
        )
        .await;
    }
    // The last page was the fleet; the one before it, the audit page.
    b.run("history.back();", serde_json::json!([])).await;
    b.wait_for_url("/console/audit").await;
    b.wait_for(
        "the audit page brought back to go live",
        "return document.getElementById('live-state').textContent === 'live';",
        Duration::from_secs(20),
    )
    .await;
    let whoosh = r.token(Scope::Whoosh, "whoosh-back");
    assert_eq!(
        r.file_upgrade(&whoosh, &ls[1], "enterprise").await.status(),
        201
    );
    b.wait_for(
        "the new request's audit row on the page brought back",
        "return document.getElementById('chain').textContent.includes('upgrade_request');",
        Duration::from_secs(15),
    )
    .await;
    b.quit().await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_attack_cross_site_post_to_the_console_is_refused() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let (r, admin, _) = fleet().await;
    sign_in(&b, &r, &admin).await;
    // Another site (localhost on another port) posts a sign-out as soon as
    // it loads; the session cookie is SameSite=Strict and Origin is foreign.
    let target = r.url("/console/logout");
    let evil = HostileSite::posting(&target, &[("csrf", "guess")]).await;
    b.goto(&format!("http://localhost:{}/", evil.port)).await;
    b.wait_for(
        "the forged post's answer",
        "return location.pathname === '/console/logout' && document.readyState === 'complete';",
        Duration::from_secs(20),
    )
    .await;
    let said = b.text("main").await;
    assert!(
        said.contains("Not signed in.") || said.contains("Refused."),
        "{said}"
    );
    // The session was not ended by the forged post.
    b.goto(&r.url("/console/")).await;
    assert_eq!(b.text("#matched").await, "3 of 3 cluster(s) match.");
    b.quit().await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_attack_the_console_makes_no_request_outside_loopback() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let (r, admin, _) = fleet().await;
    sign_in(&b, &r, &admin).await;
    for page in [
        "/console/licenses",
        "/console/revocations",
        "/console/inbox",
        "/console/audit",
        "/console/?q=globex",
    ] {
        b.goto(&r.url(page)).await;
    }
    let ours = r.url("/");
    let seen: Vec<_> = b
        .requests()
        .await
        .into_iter()
        .filter(|q| q.document.starts_with(&ours))
        .collect();
    let urls: Vec<&str> = seen.iter().map(|q| q.url.as_str()).collect();
    assert!(
        urls.len() >= 6,
        "the performance log saw too little: {urls:?}"
    );
    let outside: Vec<_> = urls.iter().filter(|u| !u.starts_with(&ours)).collect();
    assert!(outside.is_empty(), "requests outside {ours}: {outside:?}");
    assert!(
        urls.iter()
            .any(|u| u.contains("/console/assets/kaching.css")),
        "{urls:?}"
    );
    let console = b.console().await;
    assert!(
        !console
            .iter()
            .any(|m| m.contains("Content Security Policy")),
        "the console's own page broke its policy: {console:?}"
    );
    b.quit().await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_console_fleet_follows_a_new_cluster_without_reload() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let (r, admin, _) = fleet().await;
    sign_in(&b, &r, &admin).await;
    b.wait_for(
        "the page to go live",
        "return document.getElementById('live-state').textContent === 'live';",
        Duration::from_secs(20),
    )
    .await;
    b.run("window.kept = 'same page';", serde_json::json!([]))
        .await;
    let l = license(4, 3600);
    let k = cluster_key(4);
    let resp = r
        .http
        .post(r.url("/v1/activate"))
        .json(&activation(&l, &k, "edge-4.hooli"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        r.post_beat("/v1/heartbeat", &beat(&l, &k, 1), &k)
            .await
            .status(),
        200
    );
    b.wait_for(
        "the new cluster on the open page",
        "return document.getElementById('matched').textContent === '4 of 4 cluster(s) match.';",
        Duration::from_secs(10),
    )
    .await;
    assert!(b.text("#clusters table").await.contains("edge-4.hooli"));
    let kept = b.run("return window.kept;", serde_json::json!([])).await;
    assert_eq!(kept, serde_json::json!("same page"), "the page reloaded");
    b.quit().await;
    r.stop().await;
}
