//! Receipts through the relay in connected mode (issue 11 item 1,
//! docs/connected.md "Usage reports and receipts"): the verifier posts its
//! usage report to the relay, `licensegen usage pull` imports it and posts
//! the receipt back, and the verifier clears exactly what the receipt
//! acknowledges. The relay is a mailbox: a receipt counts at the verifier
//! only if it checks out there, whoever delivered it.

use std::path::Path;
use std::time::Duration;

use kaching_core::cluster::{report_hash, verify_usage_report};
use kaching_core::receipt::Receipt;
use kaching_core::wire::mailbox::ReportRows;
use kaching_core::wire::verifier::{UpgradeBody, UpgradeList, UpgradeQueued};
use kaching_core::{DocKind, SecretKey};
use kaching_e2e::{install, now, verifier_config, Relay, Vendor, Verifier};
use kaching_testkit::wait_for_value;
use kaching_verifier::relay::Request;
use kaching_verifier::{report, Engine};

async fn file_upgrade(v: &Verifier, message: &str) -> i64 {
    let (code, q) = v
        .post_as::<UpgradeQueued>(
            "/v1/upgrade-requests",
            &UpgradeBody {
                requested_tier: "enterprise".into(),
                message: message.into(),
            },
        )
        .await;
    assert_eq!(code, 202);
    q.id
}

/// `licensegen usage pull --relay URL --token-file F`.
async fn pull(vendor: &Vendor, relay: &Relay) -> u8 {
    vendor
        .licensegen(&[
            "usage",
            "pull",
            "--relay",
            &relay.url,
            "--token-file",
            relay.token_file.to_str().unwrap(),
        ])
        .await
}

/// The upgrade request ids the relay's stored reports carry, per report.
async fn reported_ids(relay: &Relay) -> Vec<Vec<u64>> {
    let rows: ReportRows = relay.admin_get("/v1/usage-reports").await;
    rows.reports
        .iter()
        .map(|r| {
            verify_usage_report(r.report.as_bytes())
                .unwrap()
                .doc
                .upgrade_requests
                .iter()
                .filter_map(|u| u.id)
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_cluster_clears_exactly_what_the_receipt_from_the_relay_acknowledges() {
    let vendor = Vendor::new().await;
    let lic = vendor.issue_connected("acme", "1h").await;
    let mut relay = Relay::start(&vendor.root, &vendor.public_pem()).await;
    let dir = vendor.root.join("cluster");
    install(&dir, &vendor, &lic);
    let mut config = verifier_config(&dir, Some(&relay));
    config.relay.receipt_poll = Duration::from_secs(1);
    let mut v = Verifier::start(config).await;
    v.wait_relay_contact().await;
    let a = file_upgrade(&v, "first").await;
    let b = file_upgrade(&v, "second").await;
    let (a, b) = (u64::try_from(a).unwrap(), u64::try_from(b).unwrap());
    wait_for_value(
        "a report carrying both requests on the relay",
        || reported_ids(&relay),
        |reports| {
            reports
                .iter()
                .any(|ids| ids.contains(&a) && ids.contains(&b))
        },
    )
    .await;

    assert_eq!(pull(&vendor, &relay).await, 0);
    // Running it twice changes nothing: every report there has its receipt.
    assert_eq!(pull(&vendor, &relay).await, 0);
    let ledger = licensegen::ledger::Ledger::open(&vendor.dir.join("ledger.sqlite")).unwrap();
    let imported = licensegen::ledger::usage_for(&ledger.conn, &lic.id.parse().unwrap()).unwrap();
    let reports_before = imported.len();
    assert!(reports_before >= 1);

    // Filed after the report the vendor acknowledged: not the receipt's to clear.
    let c = u64::try_from(file_upgrade(&v, "third").await).unwrap();
    let list = wait_for_value(
        "the receipt applied on the cluster",
        || async { v.get_as::<UpgradeList>("/v1/upgrade-requests").await.1 },
        |l| l.upgrade_requests.iter().filter(|u| u.reported).count() == 2,
    )
    .await;
    for u in &list.upgrade_requests {
        let id = u64::try_from(u.id).unwrap();
        assert_eq!(u.reported, id != c, "request {id}: {list:#?}");
    }
    let status = v.status().await;
    let line = status
        .relay
        .as_ref()
        .and_then(|r| r.last_receipt.clone())
        .unwrap_or_default();
    assert!(
        line.contains("applied") && line.contains("acknowledged by the vendor"),
        "status says a receipt was applied: {status:#?}"
    );
    // The vendor's ledger did not change with the second pull.
    let again = licensegen::ledger::usage_for(&ledger.conn, &lic.id.parse().unwrap()).unwrap();
    assert!(again.len() >= reports_before);
    v.stop().await;
    relay.stop().await;
}

/// An air-gapped cluster of `vendor` bound to its own license, with `n`
/// upgrade requests queued and a report written; returns its folder, the
/// report's bytes and the genuine receipt `usage import` wrote for it.
async fn cluster_with_receipt(
    vendor: &Vendor,
    name: &str,
    n: usize,
) -> (std::path::PathBuf, Vec<u8>, Vec<u8>) {
    let dir = vendor.root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("vendor.pub"), vendor.public_pem()).unwrap();
    let engine = Engine::open(verifier_config(&dir, None), true).unwrap();
    let request = vendor.root.join(format!("{name}.request"));
    std::fs::write(&request, report::activation_request(&engine, now())).unwrap();
    drop(engine);
    let lic = vendor
        .issue(name, &["--bind", request.to_str().unwrap()])
        .await;
    install(&dir, vendor, &lic);
    let mut e = Engine::open(verifier_config(&dir, None), false).unwrap();
    for i in 0..n {
        e.queue_upgrade("enterprise", &format!("request {i}"), now())
            .unwrap();
    }
    let file = vendor.root.join(format!("{name}.usage"));
    report::usage_report(&mut e, now(), |t| Ok(std::fs::write(&file, t)?)).unwrap();
    drop(e);
    assert_eq!(
        vendor
            .licensegen(&["usage", "import", file.to_str().unwrap()])
            .await,
        0
    );
    let bytes =
        kaching_core::armor::dearmor(&std::fs::read(&file).unwrap(), Some(DocKind::UsageReport))
            .unwrap();
    let receipt = std::fs::read(licensegen::usage::default_receipt_path(&file)).unwrap();
    (dir, bytes, receipt)
}

/// Hands `receipts` to the engine as the relay worker does with an answer
/// to a report post; returns the log lines.
async fn deliver(dir: &Path, receipts: Vec<String>) -> Vec<String> {
    let mut e = Engine::open(verifier_config(dir, None), false).unwrap();
    let (reply, rx) = tokio::sync::oneshot::channel();
    e.relay_request(
        Request::Posted {
            seq: 1,
            receipts,
            reply,
        },
        now(),
    );
    rx.await.unwrap()
}

fn pending(dir: &Path) -> usize {
    let e = Engine::open(verifier_config(dir, None), false).unwrap();
    let kaching_verifier::engine::Outcome::Upgrades(list) = e.list_upgrades().unwrap() else {
        panic!("not an upgrade list")
    };
    list.upgrade_requests.iter().filter(|u| !u.reported).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_receipts_from_a_hostile_relay_change_nothing() {
    let vendor = Vendor::new().await;
    let (ours, report_bytes, genuine) = cluster_with_receipt(&vendor, "ours", 2).await;
    let (_theirs, _, theirs_receipt) = cluster_with_receipt(&vendor, "theirs", 1).await;
    // A relay (or anyone in between) hands over another cluster's genuine
    // receipt, and one naming our report but signed by a key of its own.
    let report = verify_usage_report(&report_bytes).unwrap().doc;
    let forged = Receipt::for_report(&report, report_hash(&report_bytes), now())
        .unwrap()
        .sign(&SecretKey::generate());
    let armored = |b: &[u8]| kaching_core::armor::armor(DocKind::Receipt, b);
    let hostile = vec![String::from_utf8(theirs_receipt).unwrap(), armored(&forged)];
    let lines = deliver(&ours, hostile.clone()).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].contains("is for cluster"), "{lines:?}");
    assert!(lines[1].contains("not a key of your vendor"), "{lines:?}");
    assert_eq!(pending(&ours), 2, "nothing was cleared");

    // The genuine receipt clears both; replayed later, it changes nothing.
    let lines = deliver(&ours, vec![String::from_utf8(genuine.clone()).unwrap()]).await;
    assert!(lines[0].contains("2 upgrade request(s)"), "{lines:?}");
    assert_eq!(pending(&ours), 0);
    let mut e = Engine::open(verifier_config(&ours, None), false).unwrap();
    e.queue_upgrade("enterprise", "after the receipt", now())
        .unwrap();
    drop(e);
    let lines = deliver(&ours, vec![String::from_utf8(genuine).unwrap()]).await;
    assert!(lines.is_empty(), "a replay is silent: {lines:?}");
    assert_eq!(pending(&ours), 1, "the replay left the new request pending");
}
