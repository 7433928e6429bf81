//! The root of trust under attack (docs/threat-model.md "Trust roots"): each
//! `attack_*` test is one way a customer, a thief of one key, or a man in
//! the middle tries to get a root or a license accepted that the vendor's
//! key holders did not agree to. TUF's names for the same attacks are in
//! the threat model beside ours.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns

use std::collections::BTreeMap;

use kaching_core::id::LicenseId;
use kaching_core::license::{License, Limits};
use kaching_core::root::{
    add_signature, inspect_root, relay_signers, tally_root, verify_initial_root, verify_next_root,
    Role, RoleKeys, Root, TrustChain, VerifiedRoot, MAX_SIGNATURES,
};
use kaching_core::{verify_license, Error, SecretKey};

const NOW: u64 = 1_790_000_000;
const YEAR: u64 = 365 * 86_400;

fn key(n: u8) -> SecretKey {
    SecretKey::from_seed(&[n; 32])
}

/// A root of `version` whose roles are given as (role, key seeds, threshold).
fn root(version: u64, roles: &[(Role, &[u8], u32)]) -> Root {
    let mut keys: Vec<_> = roles
        .iter()
        .flat_map(|(_, seeds, _)| seeds.iter().map(|&s| key(s).public()))
        .collect();
    keys.sort_by_key(|k| k.kid());
    keys.dedup_by_key(|k| k.kid());
    let roles = roles
        .iter()
        .map(|(role, seeds, threshold)| {
            let mut kids: Vec<_> = seeds.iter().map(|&s| key(s).public().kid()).collect();
            kids.sort();
            (
                *role,
                RoleKeys {
                    kids,
                    threshold: *threshold,
                },
            )
        })
        .collect::<BTreeMap<_, _>>();
    Root {
        issuer: "Test Vendor".into(),
        version,
        issued_at: NOW,
        expires: NOW + YEAR,
        keys,
        roles,
        revocation_floor: None,
    }
}

/// v1: root keys 1, 2, 3 (2 of 3), issuer 10, revoker 20, relay 30.
fn v1() -> Root {
    root(
        1,
        &[
            (Role::Root, &[1, 2, 3], 2),
            (Role::Issuer, &[10], 1),
            (Role::Revoker, &[20], 1),
            (Role::Relay, &[30], 1),
        ],
    )
}

fn signed(r: &Root, seeds: &[u8]) -> Vec<u8> {
    let keys: Vec<SecretKey> = seeds.iter().map(|&s| key(s)).collect();
    let refs: Vec<&SecretKey> = keys.iter().collect();
    r.sign(&refs)
}

fn trusted_v1() -> VerifiedRoot {
    verify_initial_root(&signed(&v1(), &[1, 2])).unwrap()
}

fn license() -> License {
    License {
        id: LicenseId([7; 16]),
        issuer: "Test Vendor".into(),
        customer_id: "cust-1".into(),
        customer: "Acme".into(),
        audience: "bzzz".into(),
        issued_at: NOW,
        not_before: NOW,
        expires_at: NOW + YEAR,
        tier: "enterprise".into(),
        features: ["analytics".to_string()].into(),
        limits: Limits {
            max_nodes: 300,
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

fn root_error(r: kaching_core::Result<VerifiedRoot>) -> String {
    match r {
        Ok(v) => panic!("root v{} accepted", v.root.version),
        Err(e) => e.to_string(),
    }
}

#[test]
fn root_round_trips_and_names_each_roles_keys() {
    let r = v1();
    let bytes = signed(&r, &[1, 2]);
    let v = verify_initial_root(&bytes).unwrap();
    assert_eq!(v.root, r);
    assert_eq!(v.bytes, bytes);
    assert_eq!(Root::from_cbor(&r.to_cbor()).unwrap(), r);
    assert_eq!(r.keys_for(Role::Issuer).len(), 1);
    assert!(r
        .keys_for(Role::Issuer)
        .get(&key(10).public().kid())
        .is_some());
    assert!(r
        .keys_for(Role::Issuer)
        .get(&key(20).public().kid())
        .is_none());
    assert_eq!(r.roles_of(&key(30).public().kid()), vec![Role::Relay]);
    // Deterministic: the same root and signers give the same bytes.
    assert_eq!(signed(&r, &[1, 2]), bytes);
}

#[test]
fn attack_root_threshold_not_met() {
    let e = root_error(verify_initial_root(&signed(&v1(), &[1])));
    assert!(
        e.contains("1 valid signature(s)") && e.contains("2 needed"),
        "{e}"
    );
}

#[test]
fn attack_root_one_key_signing_twice_counts_once() {
    // Key 1 signs twice: still one of the two signatures needed.
    let e = root_error(verify_initial_root(&signed(&v1(), &[1, 1])));
    assert!(e.contains("1 valid signature(s)"), "{e}");
}

#[test]
fn attack_root_signed_by_keys_of_other_roles() {
    // The issuer, revoker and relay keys are the vendor's, but not root keys.
    let e = root_error(verify_initial_root(&signed(&v1(), &[1, 10, 20, 30])));
    assert!(e.contains("only keys in the root role count"), "{e}");
}

#[test]
fn rotation_needs_the_old_and_the_new_root_keys() {
    let trusted = trusted_v1();
    // v2 replaces root key 3 with 4 (still 2 of 3).
    let v2 = root(
        2,
        &[
            (Role::Root, &[1, 2, 4], 2),
            (Role::Issuer, &[10], 1),
            (Role::Revoker, &[20], 1),
        ],
    );
    let ok = verify_next_root(&trusted.root, &signed(&v2, &[1, 2]), NOW).unwrap();
    assert_eq!(ok.root.version, 2);
    // Only the new holders: the old root never agreed.
    let e = root_error(verify_next_root(&trusted.root, &signed(&v2, &[4]), NOW));
    assert!(e.contains("trusted root v1"), "{e}");
    // Old threshold met (1 and 3), but of the new root keys only key 1 signed.
    let e = root_error(verify_next_root(&trusted.root, &signed(&v2, &[1, 3]), NOW));
    assert!(e.contains("from its own root keys"), "{e}");
}

#[test]
fn attack_root_rollback_refused() {
    let trusted = verify_next_root(
        &v1(),
        &signed(
            &root(
                2,
                &[
                    (Role::Root, &[1, 2, 3], 2),
                    (Role::Issuer, &[10], 1),
                    (Role::Revoker, &[20], 1),
                ],
            ),
            &[1, 2],
        ),
        NOW,
    )
    .unwrap();
    let e = root_error(verify_next_root(
        &trusted.root,
        &signed(&v1(), &[1, 2]),
        NOW,
    ));
    assert!(e.contains("rollback refused"), "{e}");
}

#[test]
fn attack_root_skipped_version_refused() {
    let mut v3 = v1();
    v3.version = 3;
    let e = root_error(verify_next_root(&v1(), &signed(&v3, &[1, 2]), NOW));
    assert!(
        e.contains("skips ahead") && e.contains("apply v2 first"),
        "{e}"
    );
}

#[test]
fn attack_root_expired_is_refused_as_a_new_root() {
    let mut v2 = v1();
    v2.version = 2;
    v2.expires = NOW - 1;
    // A freeze: an attacker replays an old, expired rotation.
    let e = root_error(verify_next_root(&v1(), &signed(&v2, &[1, 2]), NOW));
    assert!(e.contains("expired"), "{e}");
}

#[test]
fn attack_root_payload_tampered() {
    let mut bytes = signed(&v1(), &[1, 2]);
    // Flip a byte in the vendor name inside the payload.
    let at = bytes
        .windows(4)
        .position(|w| w == b"Test")
        .expect("issuer in the payload");
    bytes[at] ^= 0x20;
    let e = root_error(verify_initial_root(&bytes));
    assert!(e.contains("0 valid signature(s)"), "{e}");
}

#[test]
fn attack_root_from_another_vendor() {
    // Vendor B's genuine root, signed by B's own root keys, offered as v2 of A.
    let mut b = root(
        2,
        &[
            (Role::Root, &[41, 42], 1),
            (Role::Issuer, &[43], 1),
            (Role::Revoker, &[44], 1),
        ],
    );
    b.issuer = "Other Vendor".into();
    let e = root_error(verify_next_root(&v1(), &signed(&b, &[41]), NOW));
    assert!(e.contains("trusted root v1"), "{e}");
}

#[test]
fn attack_license_from_another_vendors_issuer() {
    let trusted = trusted_v1();
    let bytes = license().sign(&key(43));
    let e = verify_license(&bytes, &trusted.root.keys_for(Role::Issuer)).unwrap_err();
    assert!(matches!(e, Error::UnknownKey(_)), "{e}");
}

#[test]
fn attack_revoker_key_signs_a_license() {
    // The revoker key may live online; it must not be able to mint licenses.
    let trusted = trusted_v1();
    let forged = license().sign(&key(20));
    assert!(verify_license(&forged, &trusted.root.keys_for(Role::Issuer)).is_err());
    let genuine = license().sign(&key(10));
    assert!(verify_license(&genuine, &trusted.root.keys_for(Role::Issuer)).is_ok());
}

#[test]
fn attack_issuer_removed_in_the_next_root() {
    // Issuer key 10 leaked: v2 replaces it with 11. Licenses it signed stop counting.
    let v2 = root(
        2,
        &[
            (Role::Root, &[1, 2, 3], 2),
            (Role::Issuer, &[11], 1),
            (Role::Revoker, &[20], 1),
        ],
    );
    let mut chain = TrustChain::new(trusted_v1());
    let bytes = signed(&v2, &[2, 3]);
    let moved = chain.update([bytes.as_slice()], NOW);
    assert_eq!(moved.versions, vec![2]);
    let issuers = chain.current().root.keys_for(Role::Issuer);
    let old = license().sign(&key(10));
    assert!(matches!(
        verify_license(&old, &issuers),
        Err(Error::UnknownKey(_))
    ));
    assert!(verify_license(&license().sign(&key(11)), &issuers).is_ok());
}

#[test]
fn attack_fast_forwarded_revocation_list_recovered_by_rotation() {
    // A leaked revoker key published list version 2^63; v2 rotates it out
    // and resets the floor the verifier keeps.
    let mut v2 = root(
        2,
        &[
            (Role::Root, &[1, 2, 3], 2),
            (Role::Issuer, &[10], 1),
            (Role::Revoker, &[21], 1),
        ],
    );
    v2.revocation_floor = Some(0);
    let mut chain = TrustChain::new(trusted_v1());
    let bytes = signed(&v2, &[1, 3]);
    let moved = chain.update([bytes.as_slice()], NOW);
    assert_eq!(moved.revocation_floor, Some(0));
    assert!(chain
        .current()
        .root
        .keys_for(Role::Revoker)
        .get(&key(20).public().kid())
        .is_none());
}

#[test]
fn attack_oversized_root_and_endless_signatures() {
    let mut r = v1();
    r.issuer = "x".repeat(70 * 1024);
    let e = root_error(verify_initial_root(&signed(&r, &[1, 2])));
    assert!(e.contains("limit"), "{e}");
    let seeds: Vec<u8> = (100..100 + MAX_SIGNATURES as u8 + 1).collect();
    let e = root_error(verify_initial_root(&signed(&v1(), &seeds)));
    assert!(e.contains("at most"), "{e}");
}

#[test]
fn attack_license_presented_as_a_root() {
    let e = root_error(verify_initial_root(&license().sign(&key(1))));
    assert!(e.contains("not a root of trust"), "{e}");
}

#[test]
fn chain_walks_one_version_at_a_time_in_any_order() {
    let roots: Vec<Root> = (2..=4)
        .map(|v| {
            let mut r = v1();
            r.version = v;
            r
        })
        .collect();
    let docs: Vec<Vec<u8>> = roots.iter().rev().map(|r| signed(r, &[2, 3])).collect();
    let mut chain = TrustChain::new(trusted_v1());
    let moved = chain.update(docs.iter().map(Vec::as_slice), NOW);
    assert_eq!(moved.versions, vec![2, 3, 4]);
    assert!(moved.refused.is_empty(), "{:?}", moved.refused);
    // Without v2, neither v3 nor v4 is reachable.
    let mut chain = TrustChain::new(trusted_v1());
    let moved = chain.update(docs[..2].iter().map(Vec::as_slice), NOW);
    assert!(moved.versions.is_empty());
    assert_eq!(chain.current().root.version, 1);
    assert_eq!(moved.refused.len(), 2, "{:?}", moved.refused);
}

#[test]
fn signatures_collected_on_separate_runs_reach_the_threshold() {
    let mut v2 = v1();
    v2.version = 2;
    let one = signed(&v2, &[1]);
    let (shown, signers) = inspect_root(&one).unwrap();
    assert_eq!((shown.version, signers.len()), (2, 1));
    assert!(verify_next_root(&v1(), &one, NOW).is_err());
    let two = add_signature(&one, &key(3)).unwrap();
    assert!(add_signature(&two, &key(3)).is_err(), "the same key twice");
    let ok = verify_next_root(&v1(), &two, NOW).unwrap();
    assert_eq!(ok.root.version, 2);
    // What one run adds is exactly what signing both at once writes.
    assert_eq!(two, signed(&v2, &[1, 3]));
}

#[test]
fn tally_shows_the_next_holder_what_is_still_needed() {
    // v2 replaces root key 3 with 4; old needs 2 of {1,2,3}, new 2 of {1,2,4}.
    let v2 = root(
        2,
        &[
            (Role::Root, &[1, 2, 4], 2),
            (Role::Issuer, &[10], 1),
            (Role::Revoker, &[20], 1),
        ],
    );
    let draft = v2.sign(&[]);
    let t = tally_root(&draft, Some(&v1())).unwrap();
    assert!(!t.complete());
    assert_eq!(t.by_own.missing.len(), 3);
    // Key 3 counts for the old root only; key 10 (an issuer) for nothing.
    let after = add_signature(&add_signature(&draft, &key(3)).unwrap(), &key(10)).unwrap();
    let t = tally_root(&after, Some(&v1())).unwrap();
    let prev = t.by_previous.clone().unwrap();
    assert_eq!(prev.signed, vec![key(3).public().kid()]);
    assert!(t.by_own.signed.is_empty());
    assert_eq!(t.stray, vec![key(10).public().kid()]);
    // Key 1 is in both roots: one signature serves both tallies.
    let done = add_signature(&after, &key(1)).unwrap();
    let t = tally_root(&done, Some(&v1())).unwrap();
    assert!(t.by_previous.as_ref().unwrap().met());
    assert!(!t.by_own.met(), "only key 1 of the new root keys signed");
    let done = add_signature(&done, &key(4)).unwrap();
    assert!(tally_root(&done, Some(&v1())).unwrap().complete());
    assert!(verify_next_root(&v1(), &done, NOW).is_ok());
}

#[test]
fn attack_root_forged_signature_does_not_count_in_the_tally() {
    // A signature block naming key 2's kid but made by another key.
    let mut v2 = v1();
    v2.version = 2;
    let forged = add_signature(&v2.sign(&[&key(1)]), &key(99)).unwrap();
    let mut bytes = forged.clone();
    // Swap the kid of the last signature for key 2's: same length, so the
    // envelope still parses; the signature no longer verifies for that kid.
    let (kid99, kid2) = (key(99).public().kid().0, key(2).public().kid().0);
    let at = bytes
        .windows(8)
        .rposition(|w| w == kid99)
        .expect("kid in the document");
    bytes[at..at + 8].copy_from_slice(&kid2);
    let t = tally_root(&bytes, Some(&v1())).unwrap();
    assert_eq!(t.by_own.signed, vec![key(1).public().kid()]);
    assert!(!t.complete());
    assert!(verify_next_root(&v1(), &bytes, NOW).is_err());
}

#[test]
fn a_root_must_name_its_required_roles_with_reachable_thresholds() {
    let mut r = v1();
    r.roles.remove(&Role::Revoker);
    assert!(r
        .check()
        .unwrap_err()
        .to_string()
        .contains("revoker role is missing"));
    let mut r = v1();
    r.roles.get_mut(&Role::Root).unwrap().threshold = 4;
    assert!(r
        .check()
        .unwrap_err()
        .to_string()
        .contains("1 to 3 signatures"));
    let mut r = v1();
    r.roles.get_mut(&Role::Issuer).unwrap().kids = vec![key(99).public().kid()];
    assert!(r.check().unwrap_err().to_string().contains("does not list"));
}

#[test]
fn attack_edited_relay_key_ignored_when_the_root_names_a_relay() {
    // v1 names key 30 as the relay; the customer configures key 66 (a fake
    // relay of their own feeding time): only 30 counts.
    let fake = key(66).public();
    let keys = relay_signers(Some(&v1()), Some(&fake)).unwrap();
    assert!(keys.get(&key(30).public().kid()).is_some());
    assert!(keys.get(&fake.kid()).is_none());
    // Without a relay role in the root the configured key is all there is.
    let mut no_relay = v1();
    no_relay.roles.remove(&Role::Relay);
    let keys = relay_signers(Some(&no_relay), Some(&fake)).unwrap();
    assert!(keys.get(&fake.kid()).is_some());
    assert!(relay_signers(Some(&no_relay), None).is_none());
    assert!(relay_signers(None, Some(&fake)).is_some());
}
