//! One license, one live cluster: activation, refusal, migration.

use kaching_core::wire::relay::UpgradeRows;
use kaching_core::wire::verifier::{UpgradeBody, UpgradeQueued, VerifierStatus};
use kaching_e2e::{install, verifier_config, Relay, Vendor, Verifier};

/// `relay.activated_license`: the license the relay holds for this cluster.
fn activated(s: &VerifierStatus) -> Option<&str> {
    s.relay
        .as_ref()
        .and_then(|r| r.activated_license.as_deref())
}

/// `relay.last_error`.
fn relay_error(s: &VerifierStatus) -> Option<&str> {
    s.relay.as_ref().and_then(|r| r.last_error.as_deref())
}

/// `relay.last_contact`.
fn last_contact(s: &VerifierStatus) -> Option<String> {
    s.relay.as_ref().and_then(|r| r.last_contact.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_cluster_refused_for_same_license() {
    let vendor = Vendor::new().await;
    let lic = vendor.issue_connected("acme", "1h").await;
    let mut relay = Relay::start(&vendor.root, &vendor.public_pem()).await;
    let (a_dir, b_dir) = (vendor.root.join("cluster-a"), vendor.root.join("cluster-b"));
    install(&a_dir, &vendor, &lic);
    install(&b_dir, &vendor, &lic);
    let mut a = Verifier::start(verifier_config(&a_dir, Some(&relay))).await;
    a.wait_status("cluster a activated", |s| {
        activated(s) == Some(lic.id.as_str())
    })
    .await;
    let mut b = Verifier::start(verifier_config(&b_dir, Some(&relay))).await;
    let s = b
        .wait_status("cluster b refused", |s| {
            relay_error(s).is_some_and(|e| e.contains("license_in_use"))
        })
        .await;
    assert!(activated(&s).is_none(), "{s:#?}");
    assert_ne!(s.cluster_id, a.status().await.cluster_id);
    b.stop().await;
    a.stop().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_shutdown_deactivates_so_cluster_can_migrate() {
    let vendor = Vendor::new().await;
    let lic = vendor.issue_connected("acme", "1h").await;
    let mut relay = Relay::start(&vendor.root, &vendor.public_pem()).await;
    let (a_dir, b_dir) = (vendor.root.join("cluster-a"), vendor.root.join("cluster-b"));
    install(&a_dir, &vendor, &lic);
    install(&b_dir, &vendor, &lic);
    let mut a = Verifier::start(verifier_config(&a_dir, Some(&relay))).await;
    a.wait_status("cluster a activated", |s| {
        activated(s) == Some(lic.id.as_str())
    })
    .await;
    a.stop().await;
    let mut b = Verifier::start(verifier_config(&b_dir, Some(&relay))).await;
    let s = b
        .wait_status("cluster b activated", |s| {
            activated(s) == Some(lic.id.as_str())
        })
        .await;
    assert!(relay_error(&s).is_none(), "{s:#?}");
    assert_eq!(s.status.state, "active");
    b.stop().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_request_reaches_the_relay_once_through_heartbeats() {
    let vendor = Vendor::new().await;
    let lic = vendor.issue_connected("acme", "1h").await;
    let mut relay = Relay::start(&vendor.root, &vendor.public_pem()).await;
    let dir = vendor.root.join("cluster-a");
    install(&dir, &vendor, &lic);
    let mut v = Verifier::start(verifier_config(&dir, Some(&relay))).await;
    v.wait_relay_contact().await;
    let (code, _) = v
        .post_as::<UpgradeQueued>(
            "/v1/upgrade-requests",
            &UpgradeBody {
                requested_tier: "enterprise".into(),
                message: "more nodes".into(),
            },
        )
        .await;
    assert!(code == 200 || code == 201 || code == 202, "{code}");
    let deadline = tokio::time::Instant::now() + kaching_e2e::WAIT;
    let rows = loop {
        let r: UpgradeRows = relay.admin_get("/v1/upgrade-requests").await;
        if !r.upgrade_requests.is_empty() {
            break r.upgrade_requests;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never reached the relay: {r:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(rows[0].requested_tier, "enterprise", "{rows:#?}");
    // Later heartbeats do not send it again.
    let seen = last_contact(&v.status().await);
    v.wait_status("a later heartbeat", |s| last_contact(s) != seen)
        .await;
    let again = last_contact(&v.status().await);
    v.wait_status("yet another heartbeat", |s| last_contact(s) != again)
        .await;
    let r: UpgradeRows = relay.admin_get("/v1/upgrade-requests").await;
    assert_eq!(r.upgrade_requests.len(), 1, "{r:#?}");
    v.stop().await;
    relay.stop().await;
}

/// The relay's view of one cluster (`GET /v1/clusters`).
async fn relay_row(relay: &Relay, cluster_id: &str) -> kaching_core::wire::relay::ClusterRow {
    let page: kaching_core::wire::relay::ClusterPage = relay.admin_get("/v1/clusters").await;
    page.clusters
        .into_iter()
        .find(|c| c.cluster_id == cluster_id)
        .expect("the cluster is listed")
}

/// Connected mode: the customer restores an older `state.db` (issue 11
/// item 2). The heartbeats name the usage-report chain head, so the relay
/// flags the chain going back in `GET /v1/clusters` without any import.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_restored_state_db_flagged_by_the_relay() {
    let vendor = Vendor::new().await;
    let lic = vendor.issue_connected("acme", "1h").await;
    let mut relay = Relay::start(&vendor.root, &vendor.public_pem()).await;
    let dir = vendor.root.join("cluster-a");
    install(&dir, &vendor, &lic);
    let config = verifier_config(&dir, Some(&relay));
    let state = config.state_dir.clone();
    let backup = vendor.root.join("backup");
    let mut v = Verifier::start(config.clone()).await;
    let cluster = v.wait_relay_contact().await.cluster_id;
    v.stop().await;
    super::receipts::copy_state(&state, &backup);

    // A usage report written after the backup, then a heartbeat naming it.
    let mut engine = kaching_verifier::Engine::open(config.clone(), false).unwrap();
    let report = vendor.root.join("usage-1.asc");
    kaching_verifier::report::usage_report(&mut engine, kaching_e2e::now(), |text| {
        Ok(std::fs::write(&report, text)?)
    })
    .unwrap();
    drop(engine);
    let mut v = Verifier::start(config.clone()).await;
    v.wait_relay_contact().await;
    let deadline = tokio::time::Instant::now() + kaching_e2e::WAIT;
    while relay_row(&relay, &cluster).await.report_seq != Some(1) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "head never reached the relay"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    v.stop().await;
    assert!(relay_row(&relay, &cluster).await.anomalies.is_empty());

    // The backup comes back: the chain head the next heartbeat names is older.
    super::receipts::copy_state(&backup, &state);
    let mut v = Verifier::start(config).await;
    v.wait_relay_contact().await;
    let row = loop {
        let row = relay_row(&relay, &cluster).await;
        if !row.anomalies.is_empty() {
            break row;
        }
        assert!(
            tokio::time::Instant::now() < deadline + kaching_e2e::WAIT,
            "never flagged: {row:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(row.anomalies[0].kind, "head_back", "{row:#?}");
    assert!(row.anomalies[0].detail.contains("restored"), "{row:#?}");
    // The license keeps working: offline, rollback is detected, not prevented.
    assert_eq!(v.status().await.status.state, "active");
    v.stop().await;
    relay.stop().await;
}

/// Issue 13 item 5: `relay.urls` lists two relays sharing one relay key;
/// when the one in use goes down, the heartbeats carry on through the other
/// and the connected license never changes state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_license_fails_over_when_its_relay_goes_down() {
    let vendor = Vendor::new().await;
    let lic = vendor.issue_connected("acme", "1h").await;
    let (a_root, b_root) = (vendor.root.join("relay-a"), vendor.root.join("relay-b"));
    let mut a = Relay::start(&a_root, &vendor.public_pem()).await;
    // A second replica: its own database here, the same relay key.
    let key = kaching_relay::Config {
        data_dir: a_root.join("relay"),
        ..kaching_relay::Config::default()
    }
    .key_path();
    let b_key = kaching_relay::Config {
        data_dir: b_root.join("relay"),
        ..kaching_relay::Config::default()
    }
    .key_path();
    std::fs::create_dir_all(b_key.parent().unwrap()).unwrap();
    std::fs::copy(&key, &b_key).unwrap();
    let mut b = Relay::start(&b_root, &vendor.public_pem()).await;

    let dir = vendor.root.join("cluster-a");
    install(&dir, &vendor, &lic);
    let mut config = verifier_config(&dir, Some(&a));
    config.relay.urls.push(b.url.clone());
    let mut v = Verifier::start(config).await;
    let s = v.wait_relay_contact().await;
    assert_eq!(s.relay.as_ref().unwrap().url, a.url);

    a.stop().await;
    let s = v
        .wait_status("heartbeats answered by the second relay", |s| {
            s.relay
                .as_ref()
                .is_some_and(|r| r.url == b.url && r.last_error.is_none())
        })
        .await;
    assert_eq!(s.status.state, "active", "{s:#?}");
    assert_eq!(activated(&s), Some(lic.id.as_str()));
    v.stop().await;
    b.stop().await;
}
