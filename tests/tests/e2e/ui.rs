//! The verifier's license page in a real headless Chromium, connected to a
//! relay: a suspension published at the vendor turns the open page red, and
//! an upgrade request filed on the page reaches the relay. Without Chromium
//! these print one line and pass (`scripts/ci-browser` installs it); under
//! `CI=true` they fail.

use std::time::Duration;

use kaching_core::wire::relay::UpgradeRows;
use kaching_e2e::{install, verifier_config, Relay, Vendor, Verifier};
use kaching_testkit::Browser;

/// Vendor, relay and a connected verifier that reached the relay once.
async fn connected() -> (Vendor, Relay, Verifier, String) {
    let vendor = Vendor::new().await;
    let lic = vendor.issue_connected("acme", "1h").await;
    let relay = Relay::start(&vendor.root, &vendor.public_pem()).await;
    let dir = vendor.root.join("cluster-a");
    install(&dir, &vendor, &lic);
    let v = Verifier::start(verifier_config(&dir, Some(&relay))).await;
    let s = v.wait_relay_contact().await;
    assert_eq!(s.status.state, "active", "{s:#?}");
    (vendor, relay, v, lic.id)
}

const LIVE: &str = "return document.getElementById('live-state').textContent === 'live';";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_a_suspension_published_through_the_relay_turns_the_open_page_suspended() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let (vendor, mut relay, mut v, id) = connected().await;
    b.goto(&format!("{}/ui/", v.url)).await;
    b.wait_for("the page to go live", LIVE, Duration::from_secs(20))
        .await;
    assert_eq!(b.text("#state-badge").await, "active");
    let relay_fact = b.text("#trust").await;
    assert!(
        relay_fact.contains(&relay.url) && relay_fact.contains("last contact"),
        "{relay_fact}"
    );
    b.run("window.sameDocument = true;", serde_json::json!([]))
        .await;
    assert_eq!(
        vendor
            .licensegen(&["suspend", &id, "--reason", "unpaid invoice"])
            .await,
        0
    );
    assert_eq!(vendor.publish(&relay).await, 0);
    b.wait_for(
        "the open page to read suspended",
        "return document.getElementById('state-badge').textContent === 'suspended';",
        Duration::from_secs(2),
    )
    .await;
    assert!(b.text("#reason").await.contains("unpaid invoice"));
    assert_eq!(
        b.run(
            "return window.sameDocument === true;",
            serde_json::json!([])
        )
        .await,
        serde_json::json!(true),
        "the page was reloaded"
    );
    b.quit().await;
    v.stop().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_an_upgrade_request_filed_on_the_page_reaches_the_relay() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let (_vendor, mut relay, mut v, _id) = connected().await;
    b.goto(&format!("{}/ui/", v.url)).await;
    b.fill("#requested_tier", "enterprise").await;
    b.fill("#message", "filed on the connected license page")
        .await;
    b.click("#request button[type=submit]").await;
    b.wait_for_url("/ui/?filed=").await;
    let deadline = tokio::time::Instant::now() + kaching_e2e::WAIT;
    let rows = loop {
        let r: UpgradeRows = relay.admin_get("/v1/upgrade-requests").await;
        if !r.upgrade_requests.is_empty() {
            break r.upgrade_requests;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never reached the relay"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(rows[0].requested_tier, "enterprise", "{rows:#?}");
    assert_eq!(
        rows[0].message, "filed on the connected license page",
        "{rows:#?}"
    );
    b.quit().await;
    v.stop().await;
    relay.stop().await;
}
