//! Sign → verify round trips for every vendor-signed and cluster-signed document.

use std::collections::BTreeMap;

use kaching_core::cluster::{
    verify_activation_request, verify_usage_report, ActivationRequest, UsageReport,
};
use kaching_core::license::{HeartbeatPolicy, Limits, Period, Quota};
use kaching_core::revocation::{RevocationEntry, RevocationStatus};
use kaching_core::*;

fn license() -> License {
    License {
        id: LicenseId([9; 16]),
        issuer: "Example Vendor".into(),
        customer_id: "cust-1".into(),
        customer: "Acme".into(),
        audience: "bzzz".into(),
        issued_at: 1_790_000_000,
        not_before: 1_790_000_000,
        expires_at: 1_800_000_000,
        tier: "standard".into(),
        features: ["basic-search".into(), "analytics".into()].into(),
        limits: Limits {
            max_nodes: 10,
            max_cores: Some(64),
        },
        quotas: BTreeMap::from([(
            "api_calls".into(),
            Quota {
                limit: 5,
                period: Period::Month,
            },
        )]),
        grace: 86_400,
        overage: 10,
        cluster: Some("abcdefghijklmnop".into()),
        heartbeat: Some(HeartbeatPolicy {
            interval: 60,
            offline_grace: 3600,
        }),
        supersedes: Some(LicenseId([1; 16])),
        degrade: Default::default(),
        report: None,
    }
}

#[test]
fn license_sign_verify_both_spellings() {
    let sk = SecretKey::from_seed(&[1; 32]);
    let keys = TrustedKeys::from(sk.public());
    let bytes = license().sign(&sk);
    let v = verify_license(&bytes, &keys).expect("binary verifies");
    assert_eq!(v.license, license());
    let armored = armor::armor(DocKind::License, &bytes);
    let v2 = verify_license(armored.as_bytes(), &keys).expect("armored verifies");
    assert_eq!(v2.bytes, bytes);
    assert_eq!(bytes, license().sign(&sk), "signing is deterministic");
}

#[test]
fn revocation_list_sign_verify() {
    let sk = SecretKey::from_seed(&[1; 32]);
    let keys = TrustedKeys::from(sk.public());
    let list = RevocationList {
        issuer: "Example Vendor".into(),
        version: 3,
        issued_at: 1_790_000_000,
        expires: 1_790_600_000,
        entries: vec![RevocationEntry {
            id: LicenseId([9; 16]),
            status: RevocationStatus::Suspended,
            reason: "unpaid invoice".into(),
            time: 1_790_000_000,
        }],
    };
    let v = verify_revocation_list(&list.sign(&sk), &keys).expect("verifies");
    assert_eq!(v.list, list);
}

#[test]
fn cluster_documents_verify_with_their_own_key() {
    let ck = SecretKey::from_seed(&[5; 32]);
    let req = ActivationRequest {
        cluster_id: cluster_id(&ck.public()),
        cluster_key: *ck.public().as_bytes(),
        hostname: "node-1".into(),
        nodes: 3,
        created: 1_790_000_000,
    };
    let v = verify_activation_request(&req.sign(&ck)).expect("activation verifies");
    assert_eq!(v.doc, req);
    let report = UsageReport {
        license_id: LicenseId([9; 16]),
        cluster_id: req.cluster_id.clone(),
        period_start: 1_790_000_000,
        period_end: 1_790_100_000,
        counters: BTreeMap::from([("api_calls".into(), BTreeMap::from([("2026-09".into(), 42)]))]),
        peak_nodes: 4,
        upgrade_requests: vec![],
        chain: None,
    };
    let v = verify_usage_report(&report.sign(&ck)).expect("usage verifies");
    assert_eq!(v.doc, report);
}

#[test]
fn activation_request_with_foreign_cluster_id_refused() {
    let ck = SecretKey::from_seed(&[5; 32]);
    let other = SecretKey::from_seed(&[6; 32]);
    let req = ActivationRequest {
        cluster_id: cluster_id(&other.public()),
        cluster_key: *other.public().as_bytes(),
        hostname: "node-1".into(),
        nodes: 3,
        created: 1_790_000_000,
    };
    assert!(matches!(
        verify_activation_request(&req.sign(&ck)),
        Err(Error::Payload(_))
    ));
}

#[test]
fn chained_usage_report_round_trips_and_unchained_keys_are_refused() {
    use kaching_core::cluster::{report_hash, ReportChain, ReportedUpgrade, UpgradeRequest};
    let ck = SecretKey::from_seed(&[5; 32]);
    let first = UsageReport {
        license_id: LicenseId([9; 16]),
        cluster_id: cluster_id(&ck.public()),
        period_start: 1_790_000_000,
        period_end: 1_790_100_000,
        counters: BTreeMap::from([("api_calls".into(), BTreeMap::from([("2026-09".into(), 42)]))]),
        peak_nodes: 4,
        upgrade_requests: vec![ReportedUpgrade {
            id: Some(3),
            request: UpgradeRequest {
                requested_tier: "enterprise".into(),
                message: "more".into(),
                time: 1_790_050_000,
            },
        }],
        chain: Some(ReportChain {
            seq: 1,
            prev: None,
            trusted_time: 1_790_100_000,
            acked: 0,
            node_peaks: BTreeMap::from([("2026-09".into(), 4)]),
        }),
    };
    let bytes = first.sign(&ck);
    assert_eq!(verify_usage_report(&bytes).expect("verifies").doc, first);
    let mut second = first.clone();
    if let Some(c) = second.chain.as_mut() {
        c.seq = 2;
        c.prev = Some(report_hash(&bytes));
    }
    assert_eq!(
        UsageReport::from_cbor(&second.to_cbor()).expect("decodes"),
        second
    );
    // seq 2 without prev, or an id in an unchained report, is not a report.
    let mut broken = second.clone();
    if let Some(c) = broken.chain.as_mut() {
        c.prev = None;
    }
    assert!(UsageReport::from_cbor(&broken.to_cbor()).is_err());
    let mut unchained = first.clone();
    unchained.chain = None;
    assert!(UsageReport::from_cbor(&unchained.to_cbor()).is_err());
}
