//! The vendor's fleet console and the customer's license page together, in
//! a real headless Chromium: an upgrade request filed on the verifier's
//! `/ui/` (a real `kaching-verifier` connected to a real relay) shows in the
//! relay console's inbox. Without Chromium this prints one line and passes
//! (`scripts/ci-browser` installs it); under `CI=true` it fails.

use std::time::Duration;

use kaching_e2e::{install, verifier_config, Relay, Vendor, Verifier};
use kaching_testkit::Browser;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_an_upgrade_request_filed_on_the_license_page_shows_in_the_relay_console_inbox() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let vendor = Vendor::new().await;
    let lic = vendor.issue_connected("acme", "1h").await;
    let mut relay = Relay::start(&vendor.root, &vendor.public_pem()).await;
    let dir = vendor.root.join("cluster-a");
    install(&dir, &vendor, &lic);
    let mut v = Verifier::start(verifier_config(&dir, Some(&relay))).await;
    let s = v.wait_relay_contact().await;
    assert_eq!(s.status.state, "active", "{s:#?}");

    // The customer files it on the license page.
    b.goto(&format!("{}/ui/", v.url)).await;
    b.fill("#requested_tier", "enterprise").await;
    b.fill("#message", "filed on the license page, read in the console")
        .await;
    b.click("#request button[type=submit]").await;
    b.wait_for_url("/ui/?filed=").await;

    // The vendor signs in to the relay's console and opens the inbox; the
    // request shows there (live: no reload needed if it lands later).
    b.goto(&format!("{}/console/", relay.url)).await;
    b.fill("#token", &relay.admin_token).await;
    b.click("#login button[type=submit]").await;
    b.wait_for(
        "the fleet page",
        "return document.getElementById('matched') !== null;",
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(b.text("#matched").await, "1 of 1 cluster(s) match.");
    b.goto(&format!("{}/console/inbox", relay.url)).await;
    b.wait_for(
        "the request in the console's inbox",
        "const t = document.querySelector('#inbox table'); \
         return t !== null && t.textContent.includes('filed on the license page, read in the console');",
        kaching_e2e::WAIT,
    )
    .await;
    let inbox = b.text("#inbox table").await;
    assert!(inbox.contains("enterprise"), "{inbox}");
    assert!(inbox.contains(&lic.id), "{inbox}");
    assert!(
        inbox.contains("cluster "),
        "filed through the cluster, not WHOOSH: {inbox}"
    );
    b.quit().await;
    v.stop().await;
    relay.stop().await;
}
