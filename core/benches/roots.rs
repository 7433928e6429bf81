//! The `roots` benchmark (issue 10, docs/benchmarks.md "Roots"): what a
//! root chain costs a license check. The chain is verified when it changes,
//! not per check, so a check under root v1 or v10 must cost what a check
//! under a plain key set costs: ≤ 1.1× the bare `verify_strict` floor.
//!
//! Interleaved rounds, each timing a batch of:
//! - `floor`: ed25519-dalek `verify_strict` over the license's Sig_structure;
//! - `chain1`: `verify_license` with the issuer keys of a chain of length 1;
//! - `chain10`: the same with the issuer keys after walking 10 roots;
//!
//! and, once per round, `walk10`: taking roots v2..v10 (2-of-3 root keys,
//! each root checked against the old and the new threshold) — the one-time
//! cost when roots change. Reports medians and median per-round ratios.
//!
//! Run: `cargo bench -p kaching-core --bench roots` (about 20 s).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use coset::{CoseSign1, TaggedCborSerializable};
use ed25519_dalek::{Signature, VerifyingKey};

use kaching_core::license::Limits;
use kaching_core::root::{verify_initial_root, Role, RoleKeys, Root, TrustChain};
use kaching_core::{verify_license, License, LicenseId, SecretKey};

const NOW: u64 = 1_790_000_000;

fn key(n: u8) -> SecretKey {
    SecretKey::from_seed(&[n; 32])
}

fn root(version: u64) -> Root {
    let seeds = [1u8, 2, 3, 10, 20];
    let mut keys: Vec<_> = seeds.iter().map(|&s| key(s).public()).collect();
    keys.sort_by_key(|k| k.kid());
    let role = |s: &[u8], threshold| {
        let mut kids: Vec<_> = s.iter().map(|&x| key(x).public().kid()).collect();
        kids.sort();
        RoleKeys { kids, threshold }
    };
    Root {
        issuer: "Bench Vendor".into(),
        version,
        issued_at: NOW,
        expires: NOW + 3650 * 86_400,
        keys,
        roles: BTreeMap::from([
            (Role::Root, role(&[1, 2, 3], 2)),
            (Role::Issuer, role(&[10], 1)),
            (Role::Revoker, role(&[20], 1)),
        ]),
        revocation_floor: None,
    }
}

fn license() -> License {
    License {
        id: LicenseId([9; 16]),
        issuer: "Bench Vendor".into(),
        customer_id: "cust-0042".into(),
        customer: "Acme Research Ltd".into(),
        audience: "bzzz".into(),
        issued_at: NOW,
        not_before: NOW,
        expires_at: NOW + 365 * 86_400,
        tier: "standard".into(),
        features: ["analytics".to_string(), "basic-search".to_string()].into(),
        limits: Limits {
            max_nodes: 10,
            max_cores: None,
        },
        quotas: BTreeMap::new(),
        grace: 0,
        overage: 0,
        cluster: None,
        heartbeat: None,
        supersedes: None,
        degrade: Default::default(),
        report: None,
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let docs: Vec<Vec<u8>> = (1..=10)
        .map(|v| root(v).sign(&[&key(1), &key(2)]))
        .collect();
    let v1 = verify_initial_root(&docs[0]).unwrap();
    let chain1 = TrustChain::new(v1.clone());
    let mut chain10 = TrustChain::new(v1.clone());
    let walked = chain10.update(docs[1..].iter().map(Vec::as_slice), NOW);
    assert_eq!(walked.versions.len(), 9);
    let keys1 = chain1.current().root.keys_for(Role::Issuer);
    let keys10 = chain10.current().root.keys_for(Role::Issuer);
    let lic = license().sign(&key(10));
    let sign1 = CoseSign1::from_tagged_slice(&lic).unwrap();
    let tbs = sign1.tbs_data(b"");
    let sig = Signature::from_slice(&sign1.signature).unwrap();
    let vk = VerifyingKey::from_bytes(key(10).public().as_bytes()).unwrap();

    const BATCH: u32 = 2_000;
    const ROUNDS: usize = 15;
    let time = |f: &dyn Fn()| {
        let t = Instant::now();
        for _ in 0..BATCH {
            f();
        }
        t.elapsed().as_nanos() as f64 / f64::from(BATCH)
    };
    let (mut fl, mut c1, mut c10, mut walk, mut r1, mut r10) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        let a = time(&|| {
            vk.verify_strict(black_box(&tbs), black_box(&sig)).unwrap();
        });
        let b = time(&|| {
            black_box(verify_license(black_box(&lic), &keys1).unwrap());
        });
        let c = time(&|| {
            black_box(verify_license(black_box(&lic), &keys10).unwrap());
        });
        let t = Instant::now();
        let mut ch = TrustChain::new(v1.clone());
        black_box(ch.update(docs[1..].iter().map(Vec::as_slice), NOW));
        walk.push(t.elapsed().as_nanos() as f64);
        fl.push(a);
        c1.push(b);
        c10.push(c);
        r1.push(b / a);
        r10.push(c / a);
    }
    println!("floor verify_strict     {:>8.0} ns", median(&mut fl));
    println!(
        "license, chain of 1     {:>8.0} ns   {:.3}x floor (median of per-round ratios)",
        median(&mut c1),
        median(&mut r1)
    );
    println!(
        "license, chain of 10    {:>8.0} ns   {:.3}x floor (median of per-round ratios)",
        median(&mut c10),
        median(&mut r10)
    );
    println!(
        "walk roots v2..v10      {:>8.0} µs   once, when roots change",
        median(&mut walk) / 1000.0
    );
}
