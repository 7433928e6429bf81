//! The usage-report mailbox (docs/relay.md "Usage reports and receipts"),
//! on both backends: a cluster posts its report, the vendor lists it and
//! posts the receipt, the cluster's next post carries the receipt back. The
//! PostgreSQL cases need `KACHING_TEST_POSTGRES`
//! (`eval "$(bash scripts/ci-postgres)"`); without it they skip with one line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::*;
use kaching_core::cluster::{
    report_hash, ReportChain, ReportedUpgrade, UpgradeRequest, UsageReport,
};
use kaching_core::license::License;
use kaching_core::receipt::Receipt;
use kaching_core::wire::mailbox::{ReceiptFiled, ReportFiled, ReportRows};
use kaching_core::{DocKind, SecretKey};
use kaching_relay::tokens::Scope;

/// A relay on SQLite, or on a fresh PostgreSQL database (`None`: no server).
async fn relay_on(postgres: bool) -> Option<Relay> {
    if !postgres {
        return Some(Relay::start().await);
    }
    let db = common::postgres::fresh().await?;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.database = Some(kaching_relay::config::DatabaseUrl(db.url.clone()));
    Some(Relay::start_on(dir, c, Some(db)).await)
}

/// Report `seq` of the cluster keyed `key`, carrying one upgrade request.
fn report(l: &License, key: &SecretKey, seq: u64, acked: u64) -> UsageReport {
    let t = now();
    UsageReport {
        license_id: l.id,
        cluster_id: kaching_core::cluster_id(&key.public()),
        period_start: t - 3600,
        period_end: t,
        counters: BTreeMap::new(),
        peak_nodes: 1,
        upgrade_requests: vec![ReportedUpgrade {
            id: Some(seq),
            request: UpgradeRequest {
                requested_tier: "enterprise".into(),
                message: format!("request {seq}"),
                time: t - 60,
            },
        }],
        chain: Some(ReportChain {
            seq,
            prev: (seq > 1).then_some([seq as u8; 32]),
            trusted_time: t,
            acked,
            node_peaks: BTreeMap::new(),
        }),
    }
}

async fn post(relay: &Relay, path: &str, token: Option<&str>, body: Vec<u8>) -> reqwest::Response {
    let mut req = relay.http.post(relay.url(path)).body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

async fn post_report(relay: &Relay, bytes: Vec<u8>) -> (u16, ReportFiled) {
    let r = post(relay, "/v1/usage-reports", None, bytes).await;
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let filed = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status} {text}: {e}"));
    (status, filed)
}

async fn round_trip(postgres: bool) {
    let Some(relay) = relay_on(postgres).await else {
        return;
    };
    let l = license(40, 3600);
    let c = cluster_key(1);
    assert_eq!(relay.activate(&l, &c).await.status(), 200);
    let rep = report(&l, &c, 1, 0);
    let bytes = rep.sign(&c);
    let (status, filed) = post_report(&relay, bytes.clone()).await;
    assert_eq!((status, filed.stored, filed.seq), (201, true, 1));
    assert!(filed.receipts.is_empty());
    // Posting the same report again is idempotent; armored works too.
    let armored = kaching_core::armor::armor(DocKind::UsageReport, &bytes);
    let (status, filed) = post_report(&relay, armored.into_bytes()).await;
    assert_eq!((status, filed.stored), (200, false));

    let vendor_token = relay.token(Scope::Publish, "licensegen");
    let (status, rows) = relay
        .get_as::<ReportRows>("/v1/usage-reports?unreceipted=true", &vendor_token)
        .await;
    assert_eq!(status, 200);
    assert_eq!(rows.reports.len(), 1);
    let row = &rows.reports[0];
    assert_eq!((row.seq, row.receipted), (1, false));
    let listed = kaching_core::cluster::verify_usage_report(row.report.as_bytes()).unwrap();
    assert_eq!(
        listed.bytes, bytes,
        "the report is forwarded as the cluster signed it"
    );

    let receipt = Receipt::for_report(&rep, report_hash(&bytes), now())
        .unwrap()
        .sign(&vendor());
    let r = post(&relay, "/v1/receipts", Some(&vendor_token), receipt.clone()).await;
    assert_eq!(r.status(), 201);
    let filed: ReceiptFiled = r.json().await.unwrap();
    assert!(filed.stored);
    let r = post(&relay, "/v1/receipts", Some(&vendor_token), receipt.clone()).await;
    assert_eq!(r.status(), 200, "a receipt posted twice is stored once");

    let (_, rows) = relay
        .get_as::<ReportRows>("/v1/usage-reports?unreceipted=true", &vendor_token)
        .await;
    assert!(
        rows.reports.is_empty(),
        "a receipted report is no longer pending"
    );
    let (_, rows) = relay
        .get_as::<ReportRows>("/v1/usage-reports", &vendor_token)
        .await;
    assert!(rows.reports[0].receipted);

    // The cluster's next post carries the receipt back, until it says it
    // imported it (`acked`).
    let (_, filed) = post_report(&relay, bytes.clone()).await;
    assert_eq!(filed.receipts.len(), 1);
    let got = kaching_core::receipt::verify_receipt(
        filed.receipts[0].as_bytes(),
        &kaching_core::TrustedKeys::from(vendor().public()),
    )
    .unwrap();
    assert_eq!(got.bytes, receipt);
    let (status, filed) = post_report(&relay, report(&l, &c, 2, 1).sign(&c)).await;
    assert_eq!(status, 201);
    assert!(
        filed.receipts.is_empty(),
        "receipts up to `acked` are not sent again"
    );
    relay.stop().await;
}

#[tokio::test]
async fn report_and_receipt_go_round_the_mailbox_on_sqlite() {
    round_trip(false).await;
}

#[tokio::test]
async fn report_and_receipt_go_round_the_mailbox_on_postgres() {
    round_trip(true).await;
}

async fn refusals(postgres: bool) {
    let Some(relay) = relay_on(postgres).await else {
        return;
    };
    let (l, other) = (license(41, 3600), license(42, 3600));
    let (c, stranger, b) = (cluster_key(1), cluster_key(2), cluster_key(3));
    relay.activate(&l, &c).await;
    relay.activate(&other, &b).await;
    // A cluster that never activated.
    let r = post(
        &relay,
        "/v1/usage-reports",
        None,
        report(&l, &stranger, 1, 0).sign(&stranger),
    )
    .await;
    assert_eq!(error_code(r).await, (403, "not_activated".into()));
    // A cluster bound to another license.
    let r = post(
        &relay,
        "/v1/usage-reports",
        None,
        report(&l, &b, 1, 0).sign(&b),
    )
    .await;
    assert_eq!(error_code(r).await, (403, "wrong_license".into()));
    // A fork: another report with a sequence number the relay holds.
    post_report(&relay, report(&l, &c, 1, 0).sign(&c)).await;
    let mut forked = report(&l, &c, 1, 0);
    forked.peak_nodes = 9;
    let r = post(&relay, "/v1/usage-reports", None, forked.sign(&c)).await;
    assert_eq!(error_code(r).await, (409, "report_fork".into()));
    // Not a usage report.
    let r = post(&relay, "/v1/usage-reports", None, b"hello".to_vec()).await;
    assert_eq!(error_code(r).await, (422, "invalid_document".into()));
    // Vendor routes need a publish or admin token.
    let r = relay
        .http
        .get(relay.url("/v1/usage-reports"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let whoosh = relay.token(Scope::Whoosh, "whoosh");
    let r = relay
        .http
        .get(relay.url("/v1/usage-reports"))
        .bearer_auth(&whoosh)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let admin = relay.token(Scope::Admin, "admin");
    // A receipt the relay has no report for.
    let unknown = report(&l, &c, 7, 0);
    let receipt = Receipt::for_report(&unknown, report_hash(&unknown.sign(&c)), now())
        .unwrap()
        .sign(&vendor());
    let r = post(&relay, "/v1/receipts", Some(&admin), receipt).await;
    assert_eq!(error_code(r).await.0, 404);
    relay.stop().await;
}

#[tokio::test]
async fn report_upload_not_signed_by_the_bound_cluster_is_refused_on_sqlite() {
    refusals(false).await;
}

#[tokio::test]
async fn report_upload_not_signed_by_the_bound_cluster_is_refused_on_postgres() {
    refusals(true).await;
}

#[tokio::test]
async fn oversized_report_upload_is_refused_with_413() {
    let relay = Relay::start().await;
    let body = vec![0u8; kaching_core::MAX_DOCUMENT_SIZE + 1];
    let r = post(&relay, "/v1/usage-reports", None, body.clone()).await;
    assert_eq!(error_code(r).await, (413, "payload_too_large".into()));
    let admin = relay.token(Scope::Admin, "admin");
    let r = post(&relay, "/v1/receipts", Some(&admin), body).await;
    assert_eq!(error_code(r).await, (413, "payload_too_large".into()));
    relay.stop().await;
}

#[tokio::test]
async fn receipt_signed_by_a_key_that_is_not_the_vendors_is_refused_by_the_relay() {
    let relay = Relay::start().await;
    let l = license(43, 3600);
    let c = cluster_key(1);
    relay.activate(&l, &c).await;
    let rep = report(&l, &c, 1, 0);
    let bytes = rep.sign(&c);
    post_report(&relay, bytes.clone()).await;
    let forged = Receipt::for_report(&rep, report_hash(&bytes), now())
        .unwrap()
        .sign(&cluster_key(9));
    let admin = relay.token(Scope::Admin, "admin");
    let r = post(&relay, "/v1/receipts", Some(&admin), forged).await;
    assert_eq!(error_code(r).await, (422, "invalid_document".into()));
    let (_, filed) = post_report(&relay, bytes).await;
    assert!(filed.receipts.is_empty(), "nothing reaches the cluster");
    relay.stop().await;
}

async fn bounded(postgres: bool) {
    let Some(relay) = relay_on(postgres).await else {
        return;
    };
    let l = license(44, 3600);
    let c = cluster_key(1);
    relay.activate(&l, &c).await;
    let keep = kaching_relay::storage::mailbox::KEEP_PER_CLUSTER;
    for seq in 1..=keep + 3 {
        assert_eq!(
            post_report(&relay, report(&l, &c, seq, 0).sign(&c)).await.0,
            201
        );
    }
    let admin = relay.token(Scope::Admin, "admin");
    let (_, rows) = relay
        .get_as::<ReportRows>("/v1/usage-reports?limit=100", &admin)
        .await;
    let seqs: Vec<u64> = rows.reports.iter().map(|r| r.seq).collect();
    assert_eq!(
        seqs,
        (4..=keep + 3).collect::<Vec<_>>(),
        "the newest {keep} are kept"
    );
    // Paging by id.
    let (_, page) = relay
        .get_as::<ReportRows>("/v1/usage-reports?limit=2", &admin)
        .await;
    let after = page.reports[1].id;
    let (_, next) = relay
        .get_as::<ReportRows>(&format!("/v1/usage-reports?limit=2&after={after}"), &admin)
        .await;
    assert_eq!(next.reports[0].seq, 6);
    relay.stop().await;
}

#[tokio::test]
async fn mailbox_keeps_the_newest_reports_per_cluster_on_sqlite() {
    bounded(false).await;
}

#[tokio::test]
async fn mailbox_keeps_the_newest_reports_per_cluster_on_postgres() {
    bounded(true).await;
}

/// `migrate --from sqlite` carries the mailbox: a report waiting on the
/// single-node relay and its receipt are on PostgreSQL afterwards, so the
/// cluster's next post there picks the receipt up and the vendor's list
/// still shows it receipted.
#[tokio::test]
async fn migrate_from_sqlite_carries_reports_and_receipts() {
    let Some(db) = common::postgres::fresh().await else {
        return;
    };
    let relay = Relay::start().await;
    let l = license(41, 3600);
    let c = cluster_key(2);
    assert_eq!(relay.activate(&l, &c).await.status(), 200);
    let rep = report(&l, &c, 1, 0);
    let bytes = rep.sign(&c);
    assert_eq!(post_report(&relay, bytes.clone()).await.0, 201);
    let token = relay.token(Scope::Publish, "licensegen");
    let receipt = Receipt::for_report(&rep, report_hash(&bytes), now())
        .unwrap()
        .sign(&vendor());
    let r = post(&relay, "/v1/receipts", Some(&token), receipt.clone()).await;
    assert_eq!(r.status(), 201);
    let sqlite = relay.config.db_path();
    let data = relay.stop().await;

    let out = migrate_cli(data.path(), &sqlite, &db.url);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "migrate failed: {stderr}");

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.database = Some(kaching_relay::config::DatabaseUrl(db.url.clone()));
    let replica = Relay::start_on(dir, cfg, Some(db)).await;
    let (status, rows) = replica
        .get_as::<ReportRows>("/v1/usage-reports", &token)
        .await;
    assert_eq!(status, 200, "the SQLite relay's token works after the move");
    assert_eq!(rows.reports.len(), 1);
    assert!(rows.reports[0].receipted);
    let (status, filed) = post_report(&replica, bytes).await;
    assert_eq!((status, filed.stored), (200, false), "the same report");
    assert_eq!(filed.receipts.len(), 1, "its receipt came along");
    let got = kaching_core::receipt::verify_receipt(
        filed.receipts[0].as_bytes(),
        &kaching_core::TrustedKeys::from(vendor().public()),
    )
    .unwrap();
    assert_eq!(got.bytes, receipt);
    // Report ids continue after the copied ones.
    let (status, _) = post_report(&replica, report(&l, &c, 2, 1).sign(&c)).await;
    assert_eq!(status, 201);
    replica.stop().await;
}
