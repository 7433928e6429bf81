//! Losing the relay, and the relay's clock.

use kaching_core::time::parse_rfc3339;
use kaching_e2e::{install, now, verifier_config, Relay, Vendor, Verifier};

fn time(v: &serde_json::Value) -> u64 {
    parse_rfc3339(v.as_str().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_down_air_gapped_license_keeps_working() {
    let vendor = Vendor::new().await;
    let lic = vendor.issue("acme", &[]).await;
    let mut relay = Relay::start(&vendor.root, &vendor.public_pem()).await;
    let dir = vendor.root.join("cluster-a");
    install(&dir, &vendor, &lic);
    let mut v = Verifier::start(verifier_config(&dir, Some(&relay))).await;
    v.wait_status("active", |s| s["state"] == "active").await;
    relay.stop().await;
    // The revocation long-poll notices the relay is gone...
    let s = v
        .wait_status("a relay error", |s| s["relay"]["last_error"].is_string())
        .await;
    // ...and the air-gapped license does not care.
    assert_eq!(s["state"], "active", "{s:#}");
    assert!(s["relay"]["activated_license"].is_null(), "{s:#}");
    assert!(v.feature_allowed("analytics").await);
    let (code, _) = v
        .post(
            "/v1/usage",
            serde_json::json!({"metric": "search_requests", "amount": 1, "idempotency_key": "k1"}),
        )
        .await;
    assert_eq!(code, 200);
    v.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_down_connected_license_goes_overdue_after_offline_grace() {
    let vendor = Vendor::new().await;
    let lic = vendor.issue_connected("acme", "3s").await;
    let mut relay = Relay::start(&vendor.root, &vendor.public_pem()).await;
    let dir = vendor.root.join("cluster-a");
    install(&dir, &vendor, &lic);
    let mut v = Verifier::start(verifier_config(&dir, Some(&relay))).await;
    let s = v.wait_relay_contact().await;
    assert_eq!(s["state"], "active", "{s:#}");
    relay.stop().await;
    let s = v.wait_status("overdue", |s| s["state"] == "overdue").await;
    assert!(s["reason"].as_str().unwrap().contains("relay"), "{s:#}");
    // It became overdue only once the offline grace after the last contact ran out.
    assert!(
        time(&s["evaluated_at"]) >= time(&s["relay"]["last_contact"]) + 3,
        "{s:#}"
    );
    assert!(!v.feature_allowed("analytics").await);
    v.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_signed_time_raises_trusted_time_mark() {
    let vendor = Vendor::new().await;
    let lic = vendor.issue_connected("acme", "1h").await;
    let issued = now();
    // Let the wall clock pass the license's issue time, so only the relay's
    // time can put the mark above it.
    while now() <= issued + 1 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut relay = Relay::start(&vendor.root, &vendor.public_pem()).await;
    let dir = vendor.root.join("cluster-a");
    install(&dir, &vendor, &lic);
    let mut cfg = verifier_config(&dir, Some(&relay));
    // This cluster's clock runs 100 s slow (inside the relay's 5 min window).
    cfg.clock = kaching_verifier::Clock::with_offset(-100);
    let mut v = Verifier::start(cfg).await;
    let s = v.wait_relay_contact().await;
    let mark = time(&s["trusted_time"]);
    let contact = time(&s["relay"]["last_contact"]);
    assert!(contact > issued, "{s:#}");
    assert!(
        mark >= contact,
        "the relay's time must raise the mark: {s:#}"
    );
    assert!(
        mark > time(&s["evaluated_at"]) + 50,
        "mark is above the slow local clock: {s:#}"
    );
    v.stop().await;
    // The raised mark is persisted.
    let db = kaching_verifier::state::Db::open(&dir.join("state"), false).unwrap();
    assert!(db.trusted_time().unwrap() >= contact);
    relay.stop().await;
}
