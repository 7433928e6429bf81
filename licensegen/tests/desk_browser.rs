//! The sales-ops desk (`licensegen ui`) in a real, headless Chromium
//! (Debian's `chromium` and `chromium-driver`; `scripts/ci-browser` installs
//! them). Without them each test prints one line and passes; under
//! `CI=true` that is a failure.
//!
//! Screenshots go to `target/ui-screenshots/`; with
//! `KACHING_SCREENSHOTS=docs` they also replace the ones in `docs/img/`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;
#[path = "common/desk.rs"]
mod desk_support;

use std::time::Duration;

use common::{Env, PASS};
use desk_support::Desk;
use kaching_testkit::{Browser, HostileSite};
use serde_json::json;

/// Saves a screenshot of the page `b` shows as `name`.
async fn screenshot(b: &Browser, name: &str) {
    b.keep_screenshot(name, 1280).await;
}

/// Runs `f` on a runtime of its own: the desk and the CLI are blocking
/// processes, the browser is async.
fn run<F: std::future::Future<Output = ()>>(f: F) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f);
}

/// Opens the one-time link and unlocks the key through the page.
async fn sign_in_and_unlock(b: &Browser, d: &Desk) {
    b.goto(&d.link).await;
    b.wait_for_url("/desk/").await;
    assert!(
        !b.url().await.contains("token="),
        "the token stayed in the address"
    );
    b.fill("#passphrase", PASS).await;
    b.click("form[action='/desk/unlock'] button").await;
    b.wait_for(
        "the key to unlock",
        "return document.getElementById('key-state').textContent.includes('key unlocked');",
        Duration::from_secs(20),
    )
    .await;
}

async fn choose_tier(b: &Browser, tier: &str) {
    b.run(
        "document.getElementById('tier').value = arguments[0];",
        json!([tier]),
    )
    .await;
}

#[test]
fn browser_license_issued_from_the_desk_verifies_with_licensegen_verify() {
    let env = Env::new();
    env.issue(&[
        "--customer",
        "ACME Corp",
        "--tier",
        "standard",
        "--expires",
        "25d",
    ]);
    let old = env
        .issue(&["--customer", "Initech", "--tier", "evaluation"])
        .0;
    env.cmd().args(["suspend", &old]).assert().success();
    let cluster = kaching_core::SecretKey::generate();
    let cid = kaching_core::cluster_id(&cluster.public());
    let request = env.tmp.path().join("activation.asc");
    std::fs::write(&request, activation_request(&cluster)).unwrap();
    let d = Desk::start(&env, false);
    run(async {
        let Some(b) = Browser::start().await else {
            return;
        };
        sign_in_and_unlock(&b, &d).await;
        b.goto(&format!("{}/desk/issue", d.base)).await;
        b.fill("#customer", "Globex Corporation").await;
        choose_tier(&b, "standard").await;
        b.fill("#nodes", "12").await;
        b.fill("#features", "bulk-operations").await;
        // Air-gapped: bound to the customer's activation request, reports due.
        b.choose_file("#bind", &request).await;
        b.fill("#report_every", "90d").await;
        b.fill("#report_deny", "bulk-operations").await;
        b.fill("#degrade", "analytics").await;
        b.click("#do-preview").await;
        b.wait_for(
            "the preview",
            "return !!document.getElementById('preview-customer');",
            Duration::from_secs(20),
        )
        .await;
        assert_eq!(b.text("#preview-customer").await, "Globex Corporation");
        assert!(b
            .text("#preview-features")
            .await
            .contains("bulk-operations"));
        assert_eq!(b.text("#preview-cluster").await, cid);
        assert!(b
            .text("#preview")
            .await
            .contains("bzzz-01.customer.example"));
        assert!(b.text("#preview-report").await.contains("every 90d"));
        assert!(b.text("#preview-degrade").await.contains("analytics"));
        // The file input is empty again; the chosen request stays by name.
        assert!(!b.text("#bind-hint").await.is_empty());
        screenshot(&b, "desk-issue.png").await;
        b.click("#do-sign").await;
        b.wait_for_url("?done=issued").await;
        let id = b.text("#license-id").await;
        assert!(b.text("main .banner").await.contains("Issued."));
        b.goto(&format!("{}/desk/", d.base)).await;
        assert!(b.text("main table").await.contains("Globex Corporation"));
        screenshot(&b, "desk-ledger.png").await;
        b.quit().await;
        let out = env
            .cmd()
            .args(["ledger", "show", &id, "--json"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let file = v["path"].as_str().unwrap();
        let verdict = env.cmd().args(["verify", file]).output().unwrap();
        let said = common::stdout(&verdict);
        assert!(verdict.status.success(), "{said}");
        assert!(said.contains("Globex Corporation"), "{said}");
        let shown = common::stdout(&env.cmd().args(["inspect", file]).output().unwrap());
        assert!(
            shown.contains(&cid),
            "not bound to the request's cluster: {shown}"
        );
    });
}

fn activation_request(cluster: &kaching_core::SecretKey) -> Vec<u8> {
    let req = kaching_core::cluster::ActivationRequest {
        cluster_id: kaching_core::cluster_id(&cluster.public()),
        cluster_key: *cluster.public().as_bytes(),
        hostname: "bzzz-01.customer.example".into(),
        nodes: 6,
        created: 1_795_000_000,
    };
    kaching_core::armor::armor(kaching_core::DocKind::ActivationRequest, &req.sign(cluster))
        .into_bytes()
}

/// A first chained usage report of `cluster` for `license`.
fn usage_report(cluster: &kaching_core::SecretKey, license: &str) -> Vec<u8> {
    use kaching_core::cluster::{ReportChain, UsageReport};
    use std::collections::BTreeMap;
    UsageReport {
        license_id: license.parse().unwrap(),
        cluster_id: kaching_core::cluster_id(&cluster.public()),
        period_start: 1_795_000_000,
        period_end: 1_795_300_000,
        counters: BTreeMap::new(),
        peak_nodes: 3,
        upgrade_requests: Vec::new(),
        chain: Some(ReportChain {
            seq: 1,
            prev: None,
            trusted_time: 1_795_300_000,
            acked: 0,
            node_peaks: BTreeMap::new(),
        }),
    }
    .sign(cluster)
}

#[test]
fn browser_usage_report_imported_while_locked_gets_its_receipt_after_unlock() {
    let env = Env::new();
    let (id, _) = env.issue(&["--customer", "ACME", "--tier", "standard"]);
    let report = env.tmp.path().join("usage.cose");
    std::fs::write(
        &report,
        usage_report(&kaching_core::SecretKey::generate(), &id),
    )
    .unwrap();
    let d = Desk::start(&env, false);
    run(async {
        let Some(b) = Browser::start().await else {
            return;
        };
        b.goto(&d.link).await;
        b.wait_for_url("/desk/").await;
        b.choose_file("#report", &report).await;
        b.click("#do-import").await;
        b.wait_for(
            "the import's answer",
            "return !!document.getElementById('import-said');",
            Duration::from_secs(20),
        )
        .await;
        let said = b.text("#no-receipt").await;
        assert!(
            said.contains("Recorded without a receipt.")
                && said.contains("Unlock the key to produce the receipt"),
            "{said}"
        );
        screenshot(&b, "desk-usage-locked.png").await;
        // Unlock at the top of the page: back on the license, press the button.
        b.fill("#passphrase", PASS).await;
        b.click("form[action='/desk/unlock'] button").await;
        b.wait_for_url(&format!("/desk/license/{id}")).await;
        b.click("#do-sign-receipt-0").await;
        b.wait_for(
            "the receipt",
            "return !!document.getElementById('download-receipt');",
            Duration::from_secs(20),
        )
        .await;
        assert!(b.text("main .banner").await.contains("Receipt signed."));
        b.quit().await;
    });
    let receipts = std::fs::read_dir(env.dir.join("usage-reports"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".receipt.asc")
        })
        .count();
    assert_eq!(receipts, 1);
}

#[test]
fn browser_unknown_feature_is_refused_with_the_nearest_name() {
    let env = Env::new();
    let d = Desk::start(&env, false);
    run(async {
        let Some(b) = Browser::start().await else {
            return;
        };
        sign_in_and_unlock(&b, &d).await;
        b.goto(&format!("{}/desk/issue", d.base)).await;
        b.fill("#customer", "Globex").await;
        choose_tier(&b, "standard").await;
        b.fill("#features", "bulk-operation").await;
        b.click("#do-preview").await;
        b.wait_for(
            "the refusal",
            "return !!document.querySelector('main .banner.bad');",
            Duration::from_secs(20),
        )
        .await;
        let said = b.text("main .banner.bad").await;
        assert!(
            said.contains(r#"did you mean "bulk-operations"?"#),
            "{said}"
        );
        // What was typed is still there to fix.
        let kept = b
            .run(
                "return document.getElementById('features').value;",
                json!([]),
            )
            .await;
        assert_eq!(kept, json!("bulk-operation"));
        assert!(
            b.run("return !document.getElementById('do-sign');", json!([]))
                .await
                == json!(true)
        );
        b.quit().await;
    });
    assert!(
        !env.dir.join("licenses").exists()
            || std::fs::read_dir(env.dir.join("licenses"))
                .unwrap()
                .next()
                .is_none()
    );
}

#[test]
fn browser_attack_cross_site_form_post_to_the_desk_is_refused() {
    let env = Env::new();
    let (id, _) = env.issue(&["--customer", "ACME", "--tier", "standard"]);
    let d = Desk::start(&env, true);
    let before = env.revocation_version();
    run(async {
        let Some(b) = Browser::start().await else {
            return;
        };
        b.goto(&d.link).await;
        b.wait_for_url("/desk/").await;
        // Another page on 127.0.0.1 (another port: same site, so the
        // SameSite cookie IS sent; only the Origin check stands) that posts a
        // suspension to the desk as soon as it loads.
        let target = format!("{}/desk/license/{id}/change", d.base);
        let evil = HostileSite::posting(&target, &[("csrf", "guess"), ("action", "suspend")]).await;
        b.goto(&format!("http://127.0.0.1:{}/", evil.port)).await;
        b.wait_for(
            "the forged post's answer",
            "return location.pathname.endsWith('/change') && document.readyState === 'complete';",
            Duration::from_secs(20),
        )
        .await;
        let said = b.text("main").await;
        assert!(
            said.contains("Refused.") && said.contains("another site"),
            "{said}"
        );
        b.quit().await;
    });
    assert_eq!(
        env.revocation_version(),
        before,
        "the forged post signed a list"
    );
}

#[test]
fn browser_attack_the_desk_makes_no_request_outside_loopback() {
    let env = Env::new();
    let (id, _) = env.issue(&["--customer", "ACME", "--tier", "standard"]);
    let d = Desk::start(&env, false);
    run(async {
        let Some(b) = Browser::start().await else {
            return;
        };
        sign_in_and_unlock(&b, &d).await;
        b.goto(&format!("{}/desk/license/{id}", d.base)).await;
        b.fill("#reason", "audit").await;
        b.click("#do-suspend").await;
        b.wait_for_url("?done=suspended").await;
        b.goto(&format!("{}/desk/issue", d.base)).await;
        b.fill("#customer", "Globex").await;
        b.click("#do-preview").await;
        b.wait_for(
            "the preview",
            "return !!document.getElementById('preview-customer');",
            Duration::from_secs(20),
        )
        .await;
        // The clock-reset form and its preview (nothing signed).
        b.goto(&format!("{}/desk/clock-reset", d.base)).await;
        b.fill("#cluster", "aaaaaaaaaaaaaaaa").await;
        b.fill("#mark", "2099-03-01T12:00:00Z").await;
        b.click("#do-preview").await;
        b.wait_for(
            "the clock-reset preview",
            "return !!document.getElementById('preview-mark');",
            Duration::from_secs(20),
        )
        .await;
        assert_eq!(b.text("#preview-mark").await, "2099-03-01T12:00:00Z");
        let ours = format!("{}/", d.base);
        let urls: Vec<String> = b
            .requests()
            .await
            .into_iter()
            .filter(|r| r.document.starts_with(&ours))
            .map(|r| r.url)
            .collect();
        assert!(
            urls.len() >= 6,
            "the performance log saw too little: {urls:?}"
        );
        let outside: Vec<_> = urls.iter().filter(|u| !u.starts_with(&ours)).collect();
        assert!(outside.is_empty(), "requests outside {ours}: {outside:?}");
        assert!(urls.iter().any(|u| u.ends_with("/desk/assets/kaching.css")));
        let console = b.console().await;
        assert!(
            !console
                .iter()
                .any(|m| m.contains("Content Security Policy")),
            "the desk broke its own policy: {console:?}"
        );
        b.quit().await;
    });
}
