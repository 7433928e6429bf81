//! The `verify` benchmark (DESIGN §7): what verifying a license costs next to
//! the physical floor (one bare `verify_strict`) and next to what a team would
//! otherwise pick (an EdDSA JWT checked by the `jsonwebtoken` crate).
//!
//! One run times, over the same standard-tier license:
//! - `a_floor_verify_strict`: ed25519-dalek `verify_strict` of the signature
//!   over the Sig_structure bytes, nothing else;
//! - `b_verify_license_and_evaluate`: `verify_license` (armor detection, COSE
//!   parse, canonical check, `verify_strict`, claims decode) + `evaluate`;
//! - `c_jwt_eddsa_jsonwebtoken`: the same claims as a JSON EdDSA JWT, decoded
//!   and validated by `jsonwebtoken` into a struct;
//! - `d_verify_license_only`: `verify_license` without the policy step;
//! - `e_jwt_signature_only`: the JWT's own signature check alone (ring's
//!   Ed25519 `verify` over `header.payload`), the JWT's crypto floor.
//!
//! After criterion, an interleaved pass times short batches of a, b, c, d in
//! turn and reports the median per-round ratios: on a shared machine the
//! ratios from adjacent batches are steadier than ratios of separate medians.
//!
//! Run: `cargo bench -p kaching-core --bench verify` (about a minute).
//! For instruction counts see [`only`].

// A benchmark's setup has no user to report to: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use coset::{CoseSign1, TaggedCborSerializable};
use criterion::Criterion;
use ed25519_dalek::{Signature, VerifyingKey};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use kaching_core::license::{HeartbeatPolicy, Limits, Quota};
use kaching_core::policy::{evaluate, LicenseInput, Settings, Snapshot, State};
use kaching_core::{verify_license, License, LicenseId, SecretKey, TierCatalog, TrustedKeys};

const ISSUED: u64 = 1_790_000_000; // 2026-09-21
const EXPIRES: u64 = 1_950_000_000; // 2031-10-18: the JWT check reads the real clock
const NOW: u64 = ISSUED + 100 * 86_400;
const CLUSTER: &str = "c7qkz3m2x4w5v6ua";

/// A license shaped like the standard-tier fixtures: catalog features and
/// quotas, cluster-bound and connected, so every optional claim is decoded.
fn standard_license(catalog: &TierCatalog) -> License {
    let tier = catalog.get("standard").expect("catalog has standard");
    License {
        id: LicenseId([
            0x6b, 0x61, 0x63, 0x68, 0x69, 0x6e, 0x67, 0x2d, 0x62, 0x65, 0x6e, 0x63, 0x68, 0x00,
            0x00, 0x01,
        ]),
        issuer: "KACHING Test Vendor (test key, not for production)".into(),
        customer_id: "cust-0042".into(),
        customer: "Acme Research Ltd".into(),
        audience: "bzzz".into(),
        issued_at: ISSUED,
        not_before: ISSUED,
        expires_at: EXPIRES,
        tier: tier.name.clone(),
        features: tier.features.iter().cloned().collect(),
        limits: Limits {
            max_nodes: tier.max_nodes,
            max_cores: Some(256),
        },
        quotas: tier.quotas.clone(),
        grace: tier.grace_days * 86_400,
        overage: tier.overage,
        cluster: Some(CLUSTER.into()),
        heartbeat: Some(HeartbeatPolicy {
            interval: 300,
            offline_grace: 7 * 86_400,
        }),
        supersedes: None,
        degrade: Default::default(),
        report: None,
    }
}

/// The same claims, spelled as a JWT payload.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JwtLicense {
    iss: String,
    sub: String,
    aud: String,
    exp: u64,
    nbf: u64,
    iat: u64,
    jti: String,
    customer: String,
    tier: String,
    features: Vec<String>,
    limits: JwtLimits,
    quotas: BTreeMap<String, JwtQuota>,
    grace: u64,
    overage: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    heartbeat: Option<JwtHeartbeat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    supersedes: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JwtLimits {
    max_nodes: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_cores: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JwtQuota {
    limit: u64,
    period: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JwtHeartbeat {
    interval: u64,
    offline_grace: u64,
}

fn jwt_claims(l: &License) -> JwtLicense {
    JwtLicense {
        iss: l.issuer.clone(),
        sub: l.customer_id.clone(),
        aud: l.audience.clone(),
        exp: l.expires_at,
        nbf: l.not_before,
        iat: l.issued_at,
        jti: l.id.to_string(),
        customer: l.customer.clone(),
        tier: l.tier.clone(),
        features: l.features.iter().cloned().collect(),
        limits: JwtLimits {
            max_nodes: l.limits.max_nodes,
            max_cores: l.limits.max_cores,
        },
        quotas: l
            .quotas
            .iter()
            .map(|(k, q): (&String, &Quota)| {
                (
                    k.clone(),
                    JwtQuota {
                        limit: q.limit,
                        period: q.period.to_string(),
                    },
                )
            })
            .collect(),
        grace: l.grace,
        overage: l.overage,
        cluster: l.cluster.clone(),
        heartbeat: l.heartbeat.map(|h| JwtHeartbeat {
            interval: h.interval,
            offline_grace: h.offline_grace,
        }),
        supersedes: l.supersedes.map(|s| s.to_string()),
    }
}

/// Everything the timed closures need, built once.
struct Fixture {
    cose: Vec<u8>,
    keys: TrustedKeys,
    dalek: VerifyingKey,
    tbs: Vec<u8>,
    signature: Signature,
    jwt: String,
    jwt_key: DecodingKey,
    jwt_validation: Validation,
    catalog: TierCatalog,
    settings: Settings,
    snapshot: Snapshot,
}

impl Fixture {
    fn new() -> Self {
        let catalog = TierCatalog::builtin();
        let sk = SecretKey::from_seed(&[0x42; 32]);
        let license = standard_license(&catalog);
        let cose = license.sign(&sk);
        let keys = TrustedKeys::from(sk.public());

        let sign1 = CoseSign1::from_tagged_slice(&cose).expect("our own bytes parse");
        let tbs = sign1.tbs_data(b"");
        let signature = Signature::from_slice(&sign1.signature).expect("64-byte signature");
        let dalek = VerifyingKey::from_bytes(sk.public().as_bytes()).expect("valid key");

        let pem = sk.to_pkcs8_pem().expect("pkcs8");
        let enc = EncodingKey::from_ed_pem(pem.as_bytes()).expect("jsonwebtoken reads PKCS#8");
        let jwt = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &jwt_claims(&license), &enc)
            .expect("JWT signs");
        let jwt_key = DecodingKey::from_ed_pem(sk.public().to_pem().as_bytes()).expect("SPKI");
        let mut jwt_validation = Validation::new(Algorithm::EdDSA);
        jwt_validation.set_audience(&["bzzz"]);
        jwt_validation.set_issuer(&[license.issuer.as_str()]);
        jwt_validation.set_required_spec_claims(&["exp", "nbf", "iat", "aud", "iss", "sub"]);
        jwt_validation.validate_nbf = true;
        jwt_validation.leeway = 300;

        let settings = Settings {
            cluster_id: Some(CLUSTER.into()),
            ..Settings::default()
        };
        let snapshot = Snapshot {
            trusted_time: NOW - 3_600,
            live_nodes: 6,
            quota_usage: BTreeMap::from([
                ("search_requests".into(), 12_345),
                ("api_calls".into(), 234_567),
                ("storage_gb".into(), 120),
            ]),
            last_relay_contact: Some(NOW - 600),
            last_acknowledged_report: None,
        };
        Fixture {
            cose,
            keys,
            dalek,
            tbs,
            signature,
            jwt,
            jwt_key,
            jwt_validation,
            catalog,
            settings,
            snapshot,
        }
    }

    fn floor(&self) -> bool {
        self.dalek
            .verify_strict(black_box(&self.tbs), black_box(&self.signature))
            .is_ok()
    }

    fn verify_only(&self) -> Option<License> {
        verify_license(black_box(&self.cose), &self.keys)
            .ok()
            .map(|v| v.license)
    }

    fn verify_and_evaluate(&self) -> Option<State> {
        let v = verify_license(black_box(&self.cose), &self.keys).ok()?;
        let verdict = evaluate(
            LicenseInput::Verified(&v.license),
            None,
            &self.snapshot,
            &self.catalog,
            &self.settings,
            black_box(NOW),
        );
        Some(verdict.state)
    }

    fn jwt_signature(&self) -> bool {
        let (message, signature) = self.jwt.rsplit_once('.').expect("three parts");
        jsonwebtoken::crypto::verify(
            black_box(signature),
            black_box(message.as_bytes()),
            &self.jwt_key,
            Algorithm::EdDSA,
        )
        .unwrap_or(false)
    }

    fn jwt(&self) -> Option<JwtLicense> {
        jsonwebtoken::decode::<JwtLicense>(
            black_box(&self.jwt),
            &self.jwt_key,
            &self.jwt_validation,
        )
        .ok()
        .map(|d| d.claims)
    }

    /// Every contender must succeed, or the timings compare nothing.
    fn self_check(&self) {
        assert!(self.floor(), "bare verify_strict fails");
        assert!(self.jwt_signature(), "JWT signature alone fails");
        assert!(self.verify_only().is_some(), "verify_license fails");
        assert_eq!(self.verify_and_evaluate(), Some(State::Active));
        let claims = self.jwt().expect("JWT verifies");
        assert_eq!(claims.quotas.len(), 3);
    }
}

fn criterion_pass(fx: &Fixture) {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5))
        .sample_size(60)
        .configure_from_args();
    let mut g = c.benchmark_group("verify");
    g.bench_function("a_floor_verify_strict", |b| b.iter(|| fx.floor()));
    g.bench_function("b_verify_license_and_evaluate", |b| {
        b.iter(|| fx.verify_and_evaluate())
    });
    g.bench_function("c_jwt_eddsa_jsonwebtoken", |b| b.iter(|| fx.jwt()));
    g.bench_function("d_verify_license_only", |b| b.iter(|| fx.verify_only()));
    g.bench_function("e_jwt_signature_only", |b| b.iter(|| fx.jwt_signature()));
    g.finish();
    c.final_summary();
}

/// Nanoseconds per call of `f` over a batch of `n` calls.
fn batch<T>(n: u32, mut f: impl FnMut() -> T) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        black_box(f());
    }
    start.elapsed().as_nanos() as f64 / f64::from(n)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Adjacent short batches of each contender, in a rotating order, and the
/// medians of per-round values. A batch is short (a few ms) so that most
/// rounds run unpreempted even when other work shares the cores; the median
/// of per-round ratios then compares like with like.
fn interleaved_pass(fx: &Fixture) {
    const ROUNDS: usize = 301;
    const N: u32 = 64;
    let mut t = [vec![], vec![], vec![], vec![], vec![]];
    for round in 0..ROUNDS {
        for k in 0..5 {
            let which = (round + k) % 5;
            let ns = match which {
                0 => batch(N, || fx.floor()),
                1 => batch(N, || fx.verify_and_evaluate()),
                2 => batch(N, || fx.jwt()),
                3 => batch(N, || fx.verify_only()),
                _ => batch(N, || fx.jwt_signature()),
            };
            t[which].push(ns);
        }
    }
    let [a, b, c, d, e] = &t;
    let ratio = |x: &[f64], y: &[f64]| median(x.iter().zip(y).map(|(p, q)| p / q).collect());
    let med = |x: &[f64]| median(x.to_vec());
    let min = |x: &[f64]| x.iter().copied().fold(f64::INFINITY, f64::min);
    println!("\ninterleaved: {ROUNDS} rounds of {N} calls each (ns per call)");
    println!("                                    median    fastest batch");
    for (name, x) in [
        ("(a) floor verify_strict      ", a),
        ("(b) verify_license + evaluate", b),
        ("(c) JWT EdDSA (jsonwebtoken) ", c),
        ("(d) verify_license only      ", d),
        ("(e) JWT signature only (ring)", e),
    ] {
        println!("  {name}  {:>9.0}  {:>9.0}", med(x), min(x));
    }
    println!("  ratios        median of per-round   of fastest batches");
    for (name, x, y) in [
        ("(b)/(a)", b, a),
        ("(b)/(c)", b, c),
        ("(d)/(a)", d, a),
        ("(c)/(a)", c, a),
        ("(e)/(a)", e, a),
    ] {
        println!(
            "  {name}       {:>6.3}               {:>6.3}",
            ratio(x, y),
            min(x) / min(y)
        );
    }
    println!("  targets: (b)/(a) <= 1.25, (b)/(c) < 1");
    println!(
        "  (b)-(d) = {:.0} ns median, {:.0} ns fastest (the policy step)",
        median(b.iter().zip(d).map(|(p, q)| p - q).collect()),
        min(b) - min(d)
    );
}

/// `KACHING_BENCH_ONLY=a|b|c|d|e KACHING_BENCH_ITERS=n`: run one contender n
/// times and exit, for instruction counts under
/// `valgrind --tool=callgrind` (noise-free, unlike wall-clock time).
fn only(fx: &Fixture, which: &str) {
    let n: u32 = std::env::var("KACHING_BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000);
    for _ in 0..n {
        match which {
            "a" => drop(black_box(fx.floor())),
            "b" => drop(black_box(fx.verify_and_evaluate())),
            "c" => drop(black_box(fx.jwt())),
            "d" => drop(black_box(fx.verify_only())),
            "e" => drop(black_box(fx.jwt_signature())),
            _ => panic!("KACHING_BENCH_ONLY must be a, b, c, d or e"),
        }
    }
}

fn main() {
    let fx = Fixture::new();
    fx.self_check();
    if let Ok(which) = std::env::var("KACHING_BENCH_ONLY") {
        only(&fx, &which);
        return;
    }
    criterion_pass(&fx);
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--test" || a == "--list");
    if !quick {
        println!(
            "\nlicense: {} bytes as COSE_Sign1, {} bytes as a JWT; Sig_structure {} bytes",
            fx.cose.len(),
            fx.jwt.len(),
            fx.tbs.len()
        );
        interleaved_pass(&fx);
    }
}
