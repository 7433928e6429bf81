//! The air-gapped loop, with files carried by hand: activation request →
//! bound license → usage report → ledger.

use kaching_core::wire::verifier::{UsageAnswer, UsageRequest};
use kaching_e2e::{install, now, verifier_config, Issued, Vendor, Verifier};
use kaching_verifier::{report, Engine};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn air_gapped_round_trip() {
    let vendor = Vendor::new().await;
    let a_dir = vendor.root.join("cluster-a");
    let b_dir = vendor.root.join("cluster-b");
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::write(a_dir.join("vendor.pub"), vendor.public_pem()).unwrap();

    // `kaching-verifier activation-request` on cluster A.
    let request = vendor.root.join("cluster-a.request");
    let engine = Engine::open(verifier_config(&a_dir, None), true).unwrap();
    std::fs::write(&request, report::activation_request(&engine, now())).unwrap();
    let a_id = engine.identity.cluster_id.clone();
    drop(engine);

    let lic: Issued = vendor
        .issue("acme", &["--bind", request.to_str().unwrap()])
        .await;
    install(&a_dir, &vendor, &lic);
    install(&b_dir, &vendor, &lic);

    let mut a = Verifier::start(verifier_config(&a_dir, None)).await;
    let s = a
        .wait_status("active on A", |s| s.status.state == "active")
        .await;
    assert_eq!(s.cluster_id, a_id);
    let (code, _) = a
        .post_as::<UsageAnswer>(
            "/v1/usage",
            &UsageRequest {
                metric: "search_requests".into(),
                amount: 7,
                idempotency_key: "r1".into(),
            },
        )
        .await;
    assert_eq!(code, 200);

    let mut b = Verifier::start(verifier_config(&b_dir, None)).await;
    let s = b
        .wait_status("refused on B", |s| s.status.state != "unlicensed")
        .await;
    assert_eq!(s.status.state, "invalid", "{s:#?}");
    assert!(s.status.reason.contains(&a_id), "{s:#?}");
    assert!(!b.feature_allowed("basic-search").await);
    b.stop().await;
    a.stop().await;

    // `kaching-verifier usage-report` on A, carried back and imported.
    let mut engine = Engine::open(verifier_config(&a_dir, None), false).unwrap();
    let file = vendor.root.join("cluster-a.usage");
    report::usage_report(&mut engine, now(), |text| Ok(std::fs::write(&file, text)?)).unwrap();
    drop(engine);
    assert_eq!(
        vendor
            .licensegen(&["usage", "import", file.to_str().unwrap()])
            .await,
        0
    );
    assert_eq!(vendor.licensegen(&["ledger", "show", &lic.id]).await, 0);
    let ledger = licensegen::ledger::Ledger::open(&vendor.dir.join("ledger.sqlite")).unwrap();
    let id: kaching_core::LicenseId = lic.id.parse().unwrap();
    let reports = licensegen::ledger::usage_for(&ledger.conn, &id).unwrap();
    assert_eq!(reports.len(), 1, "the ledger lists the imported report");
}
