//! Revocation lists from the vendor's desk to a connected verifier.

use kaching_core::wire::verifier::{FeatureAnswer, VerifierStatus};
use kaching_e2e::{install, verifier_config, Relay, Vendor, Verifier};

/// Vendor, relay and a connected verifier running one license; the verifier
/// has reached the relay once.
async fn connected() -> (Vendor, Relay, Verifier, String) {
    let vendor = Vendor::new().await;
    let lic = vendor.issue_connected("acme", "1h").await;
    let relay = Relay::start(&vendor.root, &vendor.public_pem()).await;
    let dir = vendor.root.join("cluster-a");
    install(&dir, &vendor, &lic);
    let v = Verifier::start(verifier_config(&dir, Some(&relay))).await;
    let s = v.wait_relay_contact().await;
    assert_eq!(s.status.state, "active", "{s:#?}");
    assert!(v.feature_allowed("analytics").await);
    (vendor, relay, v, lic.id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspension_published_reaches_verifier_events_and_denies_features() {
    let (vendor, mut relay, mut v, id) = connected().await;
    let mut events = v.events().await;
    assert_eq!(
        vendor
            .licensegen(&["suspend", &id, "--reason", "unpaid invoice"])
            .await,
        0
    );
    assert_eq!(vendor.publish(&relay).await, 0);
    let ev = events
        .wait_for_as::<VerifierStatus>("status", |s| s.status.state == "suspended")
        .await;
    assert!(ev.status.reason.contains("unpaid invoice"), "{ev:#?}");
    assert!(!v.feature_allowed("analytics").await);
    let (_, d) = v.get_as::<FeatureAnswer>("/v1/features/analytics").await;
    assert_eq!(d.decision.code, "license_suspended", "{d:#?}");
    v.stop().await;
    relay.stop().await;
}

/// A relay whose long-poll places are all taken (`max_long_polls = 0`
/// here) answers every poll at once; the verifier polls again after
/// `Retry-After`, shows no relay failure for it, and still gets the
/// suspension within that bound instead of at its next heartbeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspension_reaches_a_verifier_whose_long_poll_the_relay_could_not_park() {
    let vendor = Vendor::new().await;
    let lic = vendor.issue_connected("acme", "1h").await;
    let mut relay = Relay::start_tweaked(&vendor.root, &vendor.public_pem(), |c| {
        c.max_long_polls = 0;
        c.long_poll_max = std::time::Duration::from_secs(2);
    })
    .await;
    let dir = vendor.root.join("cluster-a");
    install(&dir, &vendor, &lic);
    let mut v = Verifier::start(verifier_config(&dir, Some(&relay))).await;
    v.wait_relay_contact().await;
    // Let a few polls be refused for want of a place.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(
        vendor
            .licensegen(&["suspend", &lic.id, "--reason", "unpaid invoice"])
            .await,
        0
    );
    assert_eq!(vendor.publish(&relay).await, 0);
    let s = v
        .wait_status("suspended", |s| s.status.state == "suspended")
        .await;
    let r = s.relay.expect("relay status");
    assert_eq!(r.last_error, None, "a full relay is not a failure: {r:#?}");
    v.stop().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reinstatement_restores_features() {
    let (vendor, mut relay, mut v, id) = connected().await;
    assert_eq!(vendor.licensegen(&["suspend", &id]).await, 0);
    assert_eq!(vendor.publish(&relay).await, 0);
    v.wait_status("suspended", |s| s.status.state == "suspended")
        .await;
    let mut events = v.events().await;
    assert_eq!(vendor.licensegen(&["reinstate", &id]).await, 0);
    assert_eq!(vendor.publish(&relay).await, 0);
    events
        .wait_for_as::<VerifierStatus>("status", |s| s.status.state == "active")
        .await;
    assert!(v.feature_allowed("analytics").await);
    v.stop().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_rejects_forged_and_rolled_back_lists_and_verifier_keeps_its_list() {
    let (vendor, mut relay, mut v, id) = connected().await;
    // The list in force before the suspension: kept to try a rollback later.
    let old = std::fs::read(vendor.revocations_file()).unwrap();
    assert_eq!(vendor.licensegen(&["suspend", &id]).await, 0);
    assert_eq!(vendor.publish(&relay).await, 0);
    v.wait_status("suspended", |s| s.status.state == "suspended")
        .await;
    let current = std::fs::read(vendor.revocations_file()).unwrap();

    // Rollback: the older (genuinely signed) list is refused by the relay.
    std::fs::write(vendor.revocations_file(), &old).unwrap();
    assert_eq!(
        vendor.publish(&relay).await,
        licensegen::exit::RELAY_REFUSED
    );
    std::fs::write(vendor.revocations_file(), &current).unwrap();

    // Forgery: a list signed by another vendor key, with a higher version,
    // reinstating the license. The relay does not trust that key.
    let forger = Vendor::new().await;
    for _ in 0..3 {
        assert_eq!(forger.licensegen(&["revocations", "refresh"]).await, 0);
    }
    assert_eq!(
        forger.publish(&relay).await,
        licensegen::exit::RELAY_REFUSED
    );

    // A bad token is refused as such.
    let bad = vendor.root.join("bad.token");
    std::fs::write(&bad, "not-a-token\n").unwrap();
    let code = vendor
        .licensegen(&[
            "publish",
            "--relay",
            &relay.url,
            "--token-file",
            bad.to_str().unwrap(),
        ])
        .await;
    assert_eq!(code, licensegen::exit::RELAY_TOKEN);

    // The verifier still enforces the newest genuine list.
    let s = v.status().await;
    assert_eq!(s.status.state, "suspended", "{s:#?}");
    assert_eq!(
        std::fs::read(v.dir.join("revocations.krl")).unwrap(),
        current
    );
    v.stop().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_to_an_unreachable_relay_says_so() {
    let vendor = Vendor::new().await;
    let mut relay = Relay::start(&vendor.root, &vendor.public_pem()).await;
    relay.stop().await;
    assert_eq!(
        vendor.publish(&relay).await,
        licensegen::exit::RELAY_UNREACHABLE
    );
}
