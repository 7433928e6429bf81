//! Properties of the encoders and decoders: encode→decode is identity for
//! arbitrary claims, no single-bit change to a signed document is accepted,
//! and no input — however malformed — panics a decoder.

// Helpers outside #[test] fns panic on bad fixtures too: that is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use kaching_core::cluster::{
    verify_activation_request, verify_usage_report, ActivationRequest, ReportedUpgrade,
    UpgradeRequest, UsageReport,
};
use kaching_core::license::{HeartbeatPolicy, Limits, Period, Quota};
use kaching_core::revocation::{RevocationEntry, RevocationStatus};
use kaching_core::*;
use proptest::prelude::*;
use proptest::sample::Index;

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures")
            .join(rel),
    )
    .unwrap_or_else(|e| panic!("fixtures/{rel}: {e}"))
}

fn vendor_keys() -> TrustedKeys {
    let pem = String::from_utf8(read("keys/vendor-test.pub")).unwrap();
    TrustedKeys::from(PublicKey::from_pem(&pem).unwrap())
}

// ------------------------------------------------------------- strategies

fn text() -> impl Strategy<Value = String> {
    // Any Unicode text, including empty, quotes and multi-byte characters.
    "\\PC{0,24}"
}

fn period() -> impl Strategy<Value = Period> {
    prop_oneof![
        Just(Period::Day),
        Just(Period::Month),
        Just(Period::Total),
        Just(Period::Gauge)
    ]
}

fn license() -> impl Strategy<Value = License> {
    let ids = (any::<[u8; 16]>(), text(), text(), text(), text());
    let times = (any::<u64>(), any::<u64>(), any::<u64>(), text());
    let limits = (
        prop::collection::btree_set(text(), 0..6),
        any::<u32>(),
        any::<Option<u32>>(),
        prop::collection::btree_map(text(), (any::<u64>(), period()), 0..5),
    );
    let extra = (
        any::<u64>(),
        any::<u32>(),
        proptest::option::of(text()),
        proptest::option::of((any::<u64>(), any::<u64>())),
        proptest::option::of(any::<[u8; 16]>()),
    );
    (ids, times, limits, extra).prop_map(
        |(
            (id, issuer, customer_id, customer, audience),
            (issued_at, not_before, expires_at, tier),
            (features, max_nodes, max_cores, quotas),
            (grace, overage, cluster, heartbeat, supersedes),
        )| License {
            id: LicenseId(id),
            issuer,
            customer_id,
            customer,
            audience,
            issued_at,
            not_before,
            expires_at,
            tier,
            features,
            limits: Limits {
                max_nodes,
                max_cores,
            },
            quotas: quotas
                .into_iter()
                .map(|(k, (limit, period))| (k, Quota { limit, period }))
                .collect(),
            grace,
            overage,
            cluster,
            heartbeat: heartbeat.map(|(interval, offline_grace)| HeartbeatPolicy {
                interval,
                offline_grace,
            }),
            supersedes: supersedes.map(LicenseId),
            degrade: Default::default(),
            report: None,
        },
    )
}

fn revocation_list() -> impl Strategy<Value = RevocationList> {
    let entry = (any::<bool>(), text(), any::<u64>());
    (
        text(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        // A map keyed by id: one entry per license, as the format requires.
        prop::collection::btree_map(any::<[u8; 16]>(), entry, 0..6),
    )
        .prop_map(
            |(issuer, version, issued_at, expires, entries)| RevocationList {
                issuer,
                version,
                issued_at,
                expires,
                entries: entries
                    .into_iter()
                    .map(|(id, (revoked, reason, time))| RevocationEntry {
                        id: LicenseId(id),
                        status: if revoked {
                            RevocationStatus::Revoked
                        } else {
                            RevocationStatus::Suspended
                        },
                        reason,
                        time,
                    })
                    .collect(),
            },
        )
}

fn activation_request() -> impl Strategy<Value = ActivationRequest> {
    (
        text(),
        any::<[u8; 32]>(),
        text(),
        any::<u32>(),
        any::<u64>(),
    )
        .prop_map(
            |(cluster_id, cluster_key, hostname, nodes, created)| ActivationRequest {
                cluster_id,
                cluster_key,
                hostname,
                nodes,
                created,
            },
        )
}

fn usage_report() -> impl Strategy<Value = UsageReport> {
    (
        any::<[u8; 16]>(),
        text(),
        any::<u64>(),
        any::<u64>(),
        prop::collection::btree_map(
            text(),
            prop::collection::btree_map(text(), any::<u64>(), 0..4),
            0..4,
        ),
        any::<u32>(),
        prop::collection::vec((text(), text(), any::<u64>()), 0..3),
    )
        .prop_map(
            |(id, cluster_id, period_start, period_end, counters, peak_nodes, reqs)| UsageReport {
                license_id: LicenseId(id),
                cluster_id,
                period_start,
                period_end,
                counters,
                peak_nodes,
                upgrade_requests: reqs
                    .into_iter()
                    .map(|(requested_tier, message, time)| ReportedUpgrade {
                        id: None,
                        request: UpgradeRequest {
                            requested_tier,
                            message,
                            time,
                        },
                    })
                    .collect(),
                chain: None,
            },
        )
}

// -------------------------------------------------------------- round trips

proptest! {
    #[test]
    fn license_encode_decode_round_trips(l in license()) {
        let bytes = l.to_cbor();
        prop_assert_eq!(License::from_cbor(&bytes), Ok(l));
    }

    #[test]
    fn revocation_list_encode_decode_round_trips(list in revocation_list()) {
        prop_assert_eq!(RevocationList::from_cbor(&list.to_cbor()), Ok(list));
    }

    #[test]
    fn activation_request_encode_decode_round_trips(req in activation_request()) {
        prop_assert_eq!(ActivationRequest::from_cbor(&req.to_cbor()), Ok(req));
    }

    #[test]
    fn usage_report_encode_decode_round_trips(report in usage_report()) {
        prop_assert_eq!(UsageReport::from_cbor(&report.to_cbor()), Ok(report));
    }
}

proptest! {
    // Signing costs an Ed25519 operation per case; fewer cases keep this quick.
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn signed_documents_verify_to_the_same_claims(
        l in license(),
        list in revocation_list(),
        report in usage_report(),
        seed in any::<[u8; 32]>(),
    ) {
        let key = SecretKey::from_seed(&seed);
        let keys = TrustedKeys::from(key.public());
        let signed = l.sign(&key);
        let v = verify_license(&signed, &keys).unwrap();
        prop_assert_eq!(&v.license, &l);
        prop_assert_eq!(&v.bytes, &signed);
        let armored = armor::armor(DocKind::License, &signed);
        prop_assert_eq!(verify_license(armored.as_bytes(), &keys).unwrap().bytes, signed);
        prop_assert_eq!(verify_revocation_list(&list.sign(&key), &keys).unwrap().list, list);
        let mut report = report;
        report.cluster_id = cluster_id(&key.public());
        prop_assert_eq!(verify_usage_report(&report.sign(&key)).unwrap().doc, report);
    }
}

// ---------------------------------------------------------------- bit flips

fn flip(bytes: &[u8], bit: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[bit / 8] ^= 1 << (bit % 8);
    out
}

#[test]
fn every_single_bit_flip_of_a_license_is_rejected() {
    let keys = vendor_keys();
    let good = read("licenses/evaluation.cbor");
    assert!(verify_license(&good, &keys).is_ok());
    for bit in 0..good.len() * 8 {
        let bad = flip(&good, bit);
        assert!(
            verify_license(&bad, &keys).is_err(),
            "flipping bit {bit} (byte {}) was accepted",
            bit / 8
        );
    }
}

#[test]
fn every_single_bit_flip_of_an_armored_license_is_rejected_or_harmless() {
    // A flip in armor whitespace (e.g. the final newline becoming another
    // whitespace character) may still parse; it must then yield the very
    // same signed bytes. Every other flip must be refused.
    let keys = vendor_keys();
    let binary = read("licenses/evaluation.cbor");
    let good = read("licenses/evaluation.asc");
    let mut harmless = 0;
    for bit in 0..good.len() * 8 {
        if let Ok(v) = verify_license(&flip(&good, bit), &keys) {
            assert_eq!(v.bytes, binary, "flipping bit {bit} changed the document");
            harmless += 1;
        }
    }
    assert!(harmless < 16, "{harmless} flips accepted");
}

/// A verifier of one kind of document: does it accept these bytes?
type Verifies = fn(&[u8]) -> bool;

/// Every other signed fixture, with the verifier that reads it.
fn other_documents() -> Vec<(&'static str, Verifies)> {
    fn license(b: &[u8]) -> bool {
        verify_license(b, &vendor_keys()).is_ok()
    }
    fn list(b: &[u8]) -> bool {
        verify_revocation_list(b, &vendor_keys()).is_ok()
    }
    fn activation(b: &[u8]) -> bool {
        verify_activation_request(b).is_ok()
    }
    fn usage(b: &[u8]) -> bool {
        verify_usage_report(b).is_ok()
    }
    vec![
        ("licenses/standard.cbor", license),
        ("licenses/enterprise.cbor", license),
        ("licenses/bound.cbor", license),
        ("licenses/connected.cbor", license),
        ("licenses/alg-ed25519.cbor", license),
        ("revocations/v1.cbor", list),
        ("revocations/v2.cbor", list),
        ("revocations/v3.cbor", list),
        ("cluster/activation-request.cbor", activation),
        ("cluster/usage-report.cbor", usage),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bit_flips_of_other_documents_are_rejected(
        doc in any::<Index>(),
        bits in prop::collection::vec(any::<Index>(), 1..4),
    ) {
        let docs = other_documents();
        let (path, verifies) = docs[doc.index(docs.len())];
        let good = read(path);
        prop_assert!(verifies(&good), "{} does not verify", path);
        let positions: BTreeSet<usize> = bits.iter().map(|b| b.index(good.len() * 8)).collect();
        let mut bad = good.clone();
        for bit in &positions {
            bad = flip(&bad, *bit);
        }
        prop_assume!(bad != good);
        prop_assert!(!verifies(&bad), "{}: flipping bits {:?} was accepted", path, positions);
    }
}

// ------------------------------------------------------------ never panics

fn decode_everything(bytes: &[u8]) {
    let keys = vendor_keys();
    let _ = verify_license(bytes, &keys);
    let _ = verify_revocation_list(bytes, &keys);
    let _ = verify_activation_request(bytes);
    let _ = verify_usage_report(bytes);
    let _ = armor::dearmor(bytes, None);
    let _ = armor::dearmor(bytes, Some(DocKind::License));
    let _ = envelope::peek(bytes);
    let _ = License::from_cbor(bytes);
    let _ = RevocationList::from_cbor(bytes);
    let _ = ActivationRequest::from_cbor(bytes);
    let _ = UsageReport::from_cbor(bytes);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn arbitrary_bytes_never_panic_the_decoders(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        decode_everything(&bytes);
    }

    #[test]
    fn arbitrary_armor_bodies_never_panic(
        label in prop_oneof![
            Just("KACHING LICENSE"),
            Just("KACHING REVOCATION LIST"),
            Just("KACHING LICENCE"),
        ],
        body in "[A-Za-z0-9+/=\r\n -]{0,400}",
    ) {
        let text = format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n");
        decode_everything(text.as_bytes());
    }

    #[test]
    fn mutated_fixtures_never_panic_the_decoders(
        doc in any::<Index>(),
        edits in prop::collection::vec((any::<Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let docs = other_documents();
        let mut bytes = read(docs[doc.index(docs.len())].0);
        for (at, byte, op) in edits {
            let i = at.index(bytes.len().max(1));
            match op {
                0 if !bytes.is_empty() => bytes[i] = byte,
                1 => bytes.insert(i.min(bytes.len()), byte),
                _ => bytes.truncate(i),
            }
        }
        decode_everything(&bytes);
    }
}

#[test]
fn truncations_of_every_fixture_are_rejected_without_panic() {
    for (path, verifies) in other_documents() {
        let good = read(path);
        for len in 0..good.len() {
            assert!(
                !verifies(&good[..len]),
                "{path} cut to {len} bytes was accepted"
            );
        }
    }
}

#[test]
fn counters_with_many_buckets_round_trip() {
    // A usage report from a long offline period: one bucket per day for a year.
    let buckets: BTreeMap<String, u64> = (0..365).map(|d| (format!("day-{d:03}"), d)).collect();
    let report = UsageReport {
        license_id: LicenseId([1; 16]),
        cluster_id: "c".into(),
        period_start: 0,
        period_end: 1,
        counters: BTreeMap::from([("search_requests".into(), buckets)]),
        peak_nodes: 1,
        upgrade_requests: vec![],
        chain: None,
    };
    assert_eq!(UsageReport::from_cbor(&report.to_cbor()), Ok(report));
}
