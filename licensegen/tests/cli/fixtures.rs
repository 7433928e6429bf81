//! licensegen against the shared fixtures (fixtures/README.md): issued
//! licenses carry the same tier defaults as the fixture licenses, `verify`
//! gives the states the fixtures expect, and the fixture cluster documents
//! are accepted by `issue --bind` and `inspect`.

use std::path::PathBuf;

use kaching_core::{verify_license, TrustedKeys};

use super::common::{bare, parse_issued, stderr, stdout, Env};

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(rel)
}

fn fixture_keys() -> TrustedKeys {
    TrustedKeys::from_pem_bundle(&std::fs::read_to_string(fixture("keys/vendor-test.pub")).unwrap())
        .unwrap()
}

#[test]
fn issued_licenses_carry_the_same_tier_defaults_as_the_fixture_licenses() {
    let env = Env::new();
    for tier in ["evaluation", "standard", "enterprise"] {
        let (_, file) = env.issue(&["--customer", "Fixture Co", "--tier", tier]);
        let ours = verify_license(&std::fs::read(file).unwrap(), &env.pubkey())
            .unwrap()
            .license;
        let theirs = verify_license(
            &std::fs::read(fixture(&format!("licenses/{tier}.cbor"))).unwrap(),
            &fixture_keys(),
        )
        .unwrap()
        .license;
        assert_eq!(ours.features, theirs.features, "{tier}");
        assert_eq!(ours.limits.max_nodes, theirs.limits.max_nodes, "{tier}");
        assert_eq!(ours.quotas, theirs.quotas, "{tier}");
        assert_eq!(ours.grace, theirs.grace, "{tier}");
        assert_eq!(ours.overage, theirs.overage, "{tier}");
        assert_eq!(ours.audience, theirs.audience, "{tier}");
        assert_eq!(
            ours.expires_at - ours.issued_at,
            theirs.expires_at - theirs.issued_at,
            "{tier}"
        );
    }
}

fn verify_fixture(license: &str, revocations: Option<&str>) -> Option<i32> {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = bare(tmp.path());
    c.arg("verify")
        .arg(fixture(license))
        .arg("--pubkey")
        .arg(fixture("keys/vendor-test.pub"))
        .args(["--at", "2026-01-15"]);
    if let Some(r) = revocations {
        c.arg("--revocations").arg(fixture(r));
    }
    c.output().unwrap().status.code()
}

#[test]
fn verify_gives_the_states_the_fixtures_expect() {
    assert_eq!(verify_fixture("licenses/standard.cbor", None), Some(0));
    assert_eq!(verify_fixture("licenses/alg-ed25519.asc", None), Some(0));
    assert_eq!(verify_fixture("licenses/bound.asc", None), Some(0));
    assert_eq!(
        verify_fixture("licenses/standard.cbor", Some("revocations/v2.cbor")),
        Some(12)
    );
    assert_eq!(
        verify_fixture("licenses/standard.cbor", Some("revocations/v3.asc")),
        Some(0)
    );
    assert_eq!(
        verify_fixture("licenses/evaluation.cbor", Some("revocations/v3.cbor")),
        Some(11)
    );
    for attack in [
        "fail/fail_unknown_key.cbor",
        "fail/fail_tampered_signature.cbor",
        "fail/fail_tampered_payload.cbor",
        "fail/fail_wrong_audience.cbor",
        "fail/fail_alg_es256.cbor",
        "fail/fail_revocation_list_as_license.cbor",
        "fail/fail_oversized.cbor",
    ] {
        assert_eq!(verify_fixture(attack, None), Some(10), "{attack}");
    }
}

#[test]
fn fixture_activation_request_binds_to_the_fixture_cluster() {
    let env = Env::new();
    let out = env
        .cmd()
        .args([
            "issue",
            "--customer",
            "Fixture Co",
            "--tier",
            "standard",
            "--bind",
        ])
        .arg(fixture("cluster/activation-request.asc"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (_, file) = parse_issued(&stdout(&out));
    let l = verify_license(&std::fs::read(file).unwrap(), &env.pubkey())
        .unwrap()
        .license;
    assert_eq!(l.cluster.as_deref(), Some("xdr73xb67d6me5jq"));
    let out = env
        .cmd()
        .arg("inspect")
        .arg(fixture("cluster/usage-report.cbor"))
        .output()
        .unwrap();
    assert!(stdout(&out)
        .contains("signature:   valid: self-signed by cluster key of xdr73xb67d6me5jq\n"));
}
