//! Losing the relay, and the relay's clock.

use kaching_core::time::parse_rfc3339;
use kaching_core::wire::verifier::{UsageAnswer, UsageRequest, VerifierStatus};
use kaching_e2e::{install, now, verifier_config, Relay, Vendor, Verifier};

fn time(t: &str) -> u64 {
    parse_rfc3339(t).unwrap()
}

/// `relay.last_contact`, which must be set.
fn last_contact(s: &VerifierStatus) -> u64 {
    let t = s.relay.as_ref().and_then(|r| r.last_contact.as_deref());
    time(t.unwrap_or_else(|| panic!("no relay.last_contact: {s:#?}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_down_air_gapped_license_keeps_working() {
    let vendor = Vendor::new().await;
    let lic = vendor.issue("acme", &[]).await;
    let mut relay = Relay::start(&vendor.root, &vendor.public_pem()).await;
    let dir = vendor.root.join("cluster-a");
    install(&dir, &vendor, &lic);
    let mut v = Verifier::start(verifier_config(&dir, Some(&relay))).await;
    v.wait_status("active", |s| s.status.state == "active")
        .await;
    relay.stop().await;
    // The revocation long-poll notices the relay is gone...
    let s = v
        .wait_status("a relay error", |s| {
            s.relay.as_ref().is_some_and(|r| r.last_error.is_some())
        })
        .await;
    // ...and the air-gapped license does not care.
    assert_eq!(s.status.state, "active", "{s:#?}");
    assert!(
        s.relay
            .as_ref()
            .and_then(|r| r.activated_license.as_ref())
            .is_none(),
        "{s:#?}"
    );
    assert!(v.feature_allowed("analytics").await);
    let (code, _) = v
        .post_as::<UsageAnswer>(
            "/v1/usage",
            &UsageRequest {
                metric: "search_requests".into(),
                amount: 1,
                idempotency_key: "k1".into(),
            },
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
    assert_eq!(s.status.state, "active", "{s:#?}");
    relay.stop().await;
    let s = v
        .wait_status("overdue", |s| s.status.state == "overdue")
        .await;
    assert!(s.status.reason.contains("relay"), "{s:#?}");
    // It became overdue only once the offline grace after the last contact ran out.
    assert!(time(&s.evaluated_at) >= last_contact(&s) + 3, "{s:#?}");
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
    let mark = time(&s.trusted_time);
    let contact = last_contact(&s);
    assert!(contact > issued, "{s:#?}");
    assert!(
        mark >= contact,
        "the relay's time must raise the mark: {s:#?}"
    );
    assert!(
        mark > time(&s.evaluated_at) + 50,
        "mark is above the slow local clock: {s:#?}"
    );
    v.stop().await;
    // The raised mark is persisted.
    let db = kaching_verifier::state::Db::open(&dir.join("state"), false).unwrap();
    assert!(db.trusted_time().unwrap() >= contact);
    relay.stop().await;
}
