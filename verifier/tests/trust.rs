//! Trust as a customer would attack it (docs/threat-model.md "Trust
//! roots"): a pinned root cannot be edited away through files, newer roots
//! count only through the chain, rotation removes a key's power, and a
//! rotation recovers from a fast-forwarded revocation list.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns

#[path = "common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{now, setup, Vendor, DAY};
use kaching_core::armor::armor;
use kaching_core::revocation::{RevocationList, RevocationStatus};
use kaching_core::root::{Role, RoleKeys, Root};
use kaching_core::{DocKind, License, SecretKey};
use kaching_verifier::{Config, Engine};

fn key(n: u8) -> SecretKey {
    SecretKey::from_seed(&[n; 32])
}

/// A root: root keys 1 and 2 (2 of 2), the given issuer and revoker seeds.
fn root(version: u64, issuer: u8, revoker: u8, floor: Option<u64>) -> Root {
    let seeds = [1u8, 2, issuer, revoker];
    let mut keys: Vec<_> = seeds.iter().map(|&s| key(s).public()).collect();
    keys.sort_by_key(|k| k.kid());
    keys.dedup_by_key(|k| k.kid());
    let role = |seeds: &[u8], threshold| {
        let mut kids: Vec<_> = seeds.iter().map(|&s| key(s).public().kid()).collect();
        kids.sort();
        RoleKeys { kids, threshold }
    };
    Root {
        issuer: "vendor".into(),
        version,
        issued_at: now() - 60,
        expires: now() + 365 * DAY,
        keys,
        roles: BTreeMap::from([
            (Role::Root, role(&[1, 2], 2)),
            (Role::Issuer, role(&[issuer], 1)),
            (Role::Revoker, role(&[revoker], 1)),
        ]),
        revocation_floor: floor,
    }
}

fn signed(r: &Root) -> Vec<u8> {
    r.sign(&[&key(1), &key(2)])
}

fn license_by(seed: u8, id: u8) -> Vec<u8> {
    Vendor::new().license(id, "standard").sign(&key(seed))
}

fn list_by(seed: u8, version: u64, entries: &[(u8, RevocationStatus)]) -> Vec<u8> {
    // Vendor::revocations signs with the fixed vendor key; re-sign the same list.
    let v = kaching_core::verify_revocation_list(
        &Vendor::new().revocations(version, entries),
        &kaching_core::TrustedKeys::from(Vendor::new().key.public()),
    )
    .unwrap();
    let list: RevocationList = v.list;
    list.sign(&key(seed))
}

/// A pinned build (the root handed in as an embedding program would).
fn pinned(cfg: &mut Config, r: &Root) {
    cfg.pinned_root = Some(Arc::from(signed(r).into_boxed_slice()));
}

fn state(e: &Engine) -> String {
    e.current().status.status.state.clone()
}

fn reason(e: &Engine) -> String {
    e.current().status.status.reason.clone()
}

#[test]
fn attack_appended_vendor_key_in_pinned_build() {
    // The customer appends their own key to vendor.pub and signs an
    // enterprise license with it: the pinned build ignores the file.
    let (_dir, mut cfg) = setup(None);
    pinned(&mut cfg, &root(1, 10, 20, None));
    let mine = key(66);
    let mut pem = std::fs::read_to_string(&cfg.trusted_keys).unwrap();
    pem.push_str(&mine.public().to_pem());
    std::fs::write(&cfg.trusted_keys, pem).unwrap();
    let mut forged: License = Vendor::new().license(1, "enterprise");
    forged.limits.max_nodes = 300;
    std::fs::write(&cfg.license, forged.sign(&mine)).unwrap();
    let e = Engine::open(cfg.clone(), true).unwrap();
    assert_eq!(state(&e), "invalid", "{}", reason(&e));
    let s = &e.current().status;
    assert_eq!((s.trust.as_str(), s.root_version), ("pinned", Some(1)));
    assert!(
        s.rejections
            .iter()
            .any(|r| r.file == "trusted_keys" && r.reason.contains("which this build ignores")),
        "{:?}",
        s.rejections
    );
    // Status says what is in force instead: the root, not a "last good" file.
    let w = s
        .status
        .warnings
        .iter()
        .find(|w| w.starts_with("trusted_keys file refused"))
        .unwrap();
    assert!(
        w.ends_with("(the root built into this verifier stays in force)"),
        "{w}"
    );
    drop(e);
    // The vendor's issuer key works.
    std::fs::write(&cfg.license, license_by(10, 1)).unwrap();
    let e = Engine::open(cfg, true).unwrap();
    assert_eq!(state(&e), "active", "{}", reason(&e));
}

#[test]
fn development_build_says_so() {
    let (_dir, cfg) = setup(Some(
        &Vendor::new().sign(&Vendor::new().license(1, "standard")),
    ));
    let e = Engine::open(cfg, true).unwrap();
    assert_eq!(state(&e), "active");
    let s = &e.current().status;
    assert_eq!((s.trust.as_str(), s.root_version), ("development", None));
}

#[test]
fn development_build_with_a_root_file_uses_its_roles() {
    let (_dir, cfg) = setup(None);
    std::fs::write(
        &cfg.trusted_keys,
        armor(DocKind::Root, &signed(&root(1, 10, 20, None))),
    )
    .unwrap();
    std::fs::write(&cfg.license, license_by(20, 1)).unwrap();
    let e = Engine::open(cfg.clone(), true).unwrap();
    // The revoker key cannot mint a license.
    assert_eq!(state(&e), "invalid");
    assert!(
        reason(&e).contains("has the revoker role in root v1; only issuer keys may sign this"),
        "{}",
        reason(&e)
    );
    assert_eq!(e.current().status.trust, "development");
    assert_eq!(e.current().status.root_version, Some(1));
}

#[test]
fn attack_rotated_out_issuer_key_stops_counting() {
    let (dir, mut cfg) = setup(None);
    pinned(&mut cfg, &root(1, 10, 20, None));
    std::fs::write(&cfg.license, license_by(10, 1)).unwrap();
    let e = Engine::open(cfg.clone(), true).unwrap();
    assert_eq!(state(&e), "active");
    drop(e);
    // Issuer key 10 leaked: v2 replaces it with 11, dropped into roots/.
    let roots = dir.path().join("roots");
    std::fs::create_dir_all(&roots).unwrap();
    std::fs::write(
        roots.join("root-v2.root"),
        armor(DocKind::Root, &signed(&root(2, 11, 20, None))),
    )
    .unwrap();
    let e = Engine::open(cfg.clone(), true).unwrap();
    assert_eq!(e.current().status.root_version, Some(2));
    assert_eq!(state(&e), "invalid");
    assert!(
        reason(&e).contains("holds none in root v2"),
        "{}",
        reason(&e)
    );
    drop(e);
    // The rotation is recorded: deleting the folder does not bring v1 back.
    std::fs::remove_dir_all(&roots).unwrap();
    std::fs::write(&cfg.license, license_by(11, 1)).unwrap();
    let e = Engine::open(cfg, true).unwrap();
    assert_eq!(e.current().status.root_version, Some(2));
    assert_eq!(state(&e), "active", "{}", reason(&e));
}

#[test]
fn attack_root_in_the_folder_that_skips_or_is_self_signed() {
    let (dir, mut cfg) = setup(None);
    pinned(&mut cfg, &root(1, 10, 20, None));
    std::fs::write(&cfg.license, license_by(10, 1)).unwrap();
    let roots = dir.path().join("roots");
    std::fs::create_dir_all(&roots).unwrap();
    // v3 without v2: skipped. And a v2 signed by the customer's own root keys.
    std::fs::write(roots.join("v3.root"), signed(&root(3, 66, 66, None))).unwrap();
    let mut own = root(2, 66, 66, None);
    own.keys.push(key(67).public());
    own.keys.sort_by_key(|k| k.kid());
    own.roles.insert(
        Role::Root,
        RoleKeys {
            kids: vec![key(67).public().kid()],
            threshold: 1,
        },
    );
    std::fs::write(roots.join("mine.root"), own.sign(&[&key(67)])).unwrap();
    let e = Engine::open(cfg, true).unwrap();
    assert_eq!(e.current().status.root_version, Some(1));
    assert_eq!(state(&e), "active");
    let why: Vec<_> = e
        .current()
        .status
        .rejections
        .iter()
        .filter(|r| r.file == "roots")
        .map(|r| r.reason.clone())
        .collect();
    assert!(why.iter().any(|r| r.contains("root v2")), "{why:?}");
    assert!(why.iter().any(|r| r.contains("not reachable")), "{why:?}");
}

#[test]
fn attack_fast_forwarded_revocation_list_recovered() {
    let (dir, mut cfg) = setup(None);
    pinned(&mut cfg, &root(1, 10, 20, None));
    std::fs::write(&cfg.license, license_by(10, 1)).unwrap();
    // The leaked revoker key 20 publishes version 2^63, suspending license 1.
    std::fs::write(
        &cfg.revocations,
        list_by(20, 1 << 63, &[(1, RevocationStatus::Suspended)]),
    )
    .unwrap();
    let e = Engine::open(cfg.clone(), true).unwrap();
    assert_eq!(state(&e), "suspended");
    drop(e);
    // The vendor rotates the revoker out, resetting the floor, and ships a
    // fresh list (version 5) from the new revoker 21.
    let roots = dir.path().join("roots");
    std::fs::create_dir_all(&roots).unwrap();
    std::fs::write(roots.join("v2.root"), signed(&root(2, 10, 21, Some(0)))).unwrap();
    std::fs::write(&cfg.revocations, list_by(21, 5, &[])).unwrap();
    let e = Engine::open(cfg.clone(), true).unwrap();
    assert_eq!(state(&e), "active", "{}", reason(&e));
    drop(e);
    // The old key's list is refused now, even at its huge version.
    std::fs::write(
        &cfg.revocations,
        list_by(20, 1 << 63, &[(1, RevocationStatus::Suspended)]),
    )
    .unwrap();
    let e = Engine::open(cfg, true).unwrap();
    assert_eq!(state(&e), "active");
    let r = &e.current().status.rejections;
    assert!(
        r.iter()
            .any(|r| r.file == "revocations" && r.reason.contains("holds none in root v2")),
        "{r:?}"
    );
}

#[test]
fn a_broken_pinned_root_refuses_to_start() {
    let (_dir, mut cfg) = setup(None);
    let mut bytes = signed(&root(1, 10, 20, None));
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    cfg.pinned_root = Some(Arc::from(bytes.into_boxed_slice()));
    let err = Engine::open(cfg, true).err().expect("refused").to_string();
    assert!(
        err.contains("pinned root of trust does not verify"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_can_verify_the_license_it_is_told_about() {
    let (_dir, mut cfg) = setup(None);
    pinned(&mut cfg, &root(1, 10, 20, None));
    let bytes = license_by(10, 1);
    std::fs::write(&cfg.license, &bytes).unwrap();
    let d = common::Daemon::start(cfg).await;
    let (code, body) = d.get("/v1/license").await;
    assert_eq!(code, 200, "{body}");
    let answer: kaching_core::wire::verifier::LicenseAnswer = serde_json::from_value(body).unwrap();
    assert_eq!(answer.trust, "pinned");
    // What BZZZ would do with kaching-core and the root pinned in its own build.
    let root = kaching_core::root::verify_initial_root(&signed(&root(1, 10, 20, None))).unwrap();
    let told = answer.license.expect("a license in force");
    let checked =
        kaching_core::verify_license(told.as_bytes(), &root.root.keys_for(Role::Issuer)).unwrap();
    assert_eq!(checked.bytes, bytes);
    let served_root = answer.root.expect("the root in force");
    assert!(served_root.starts_with("-----BEGIN KACHING ROOT-----"));
    d.stop().await;
}

#[test]
fn roots_from_the_relay_take_the_same_chain() {
    let (_dir, mut cfg) = setup(None);
    pinned(&mut cfg, &root(1, 10, 20, None));
    std::fs::write(&cfg.license, license_by(10, 1)).unwrap();
    let mut e = Engine::open(cfg.clone(), true).unwrap();
    let offer = |e: &mut Engine, roots: Vec<Vec<u8>>| {
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        e.relay_request(kaching_verifier::relay::Request::Roots(roots, tx), now());
        rx.try_recv().unwrap()
    };
    // A skip is refused; the chain in order is taken, and withdraws key 10.
    let err = offer(&mut e, vec![signed(&root(3, 11, 20, None))]).unwrap_err();
    assert!(err.contains("not reachable"), "{err}");
    let taken = offer(
        &mut e,
        vec![
            signed(&root(3, 12, 20, None)),
            signed(&root(2, 11, 20, None)),
        ],
    )
    .unwrap();
    assert_eq!(taken, vec![2, 3]);
    assert_eq!(e.current().status.root_version, Some(3));
    assert_eq!(state(&e), "invalid", "{}", reason(&e));
    drop(e);
    // Recorded: a restart stays at v3.
    let e = Engine::open(cfg, true).unwrap();
    assert_eq!(e.current().status.root_version, Some(3));
}

#[tokio::test]
async fn a_root_dropped_into_the_roots_folder_takes_effect_without_waiting_for_a_tick() {
    let (dir, mut cfg) = setup(None);
    pinned(&mut cfg, &root(1, 10, 20, None));
    std::fs::write(&cfg.license, license_by(10, 1)).unwrap();
    let roots = dir.path().join("roots");
    std::fs::create_dir_all(&roots).unwrap();
    // No periodic pass within the test: only the folder watch can see it.
    cfg.tick = std::time::Duration::from_secs(3600);
    let d = common::Daemon::start(cfg).await;
    d.wait_status("active under root v1", |s| s["state"] == "active")
        .await;
    // Let the start-up file passes finish, so only the watch can see v2.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let tmp = roots.join(".root-v2.tmp");
    std::fs::write(&tmp, armor(DocKind::Root, &signed(&root(2, 11, 20, None)))).unwrap();
    std::fs::rename(&tmp, roots.join("root-v2.root")).unwrap();
    let s = d
        .wait_status("root v2 in force", |s| s["root_version"] == 2)
        .await;
    assert_eq!(s["state"], "invalid", "issuer 10 left the root: {s:#}");
    d.stop().await;
}

#[test]
fn attack_receipt_signed_by_key_without_issuer_role_refused() {
    // Receipts lift an obligation of the customer, so only an issuer key may
    // sign one: the online revoker key (which may only restrict) may not.
    let (dir, mut cfg) = setup(None);
    pinned(&mut cfg, &root(1, 10, 20, None));
    std::fs::write(&cfg.license, license_by(10, 1)).unwrap();
    let mut e = Engine::open(cfg, true).unwrap();
    assert_eq!(state(&e), "active", "{}", reason(&e));
    e.queue_upgrade("enterprise", "more nodes", now()).unwrap();
    let receipt = common::report_and_receipt(&mut e, dir.path());
    let by_revoker = armor(DocKind::Receipt, &receipt.sign(&key(20)));
    let err = kaching_verifier::report::import_receipt(&mut e, by_revoker.as_bytes(), now())
        .unwrap_err()
        .to_string();
    assert!(err.contains("revoker role in root v1"), "{err}");
    assert!(err.contains("only issuer keys"), "{err}");
    let by_root = armor(DocKind::Receipt, &receipt.sign(&key(1)));
    let err = kaching_verifier::report::import_receipt(&mut e, by_root.as_bytes(), now())
        .unwrap_err()
        .to_string();
    assert!(err.contains("receipt refused"), "{err}");
    // The issuer's receipt is the one that counts.
    let by_issuer = armor(DocKind::Receipt, &receipt.sign(&key(10)));
    let done =
        kaching_verifier::report::import_receipt(&mut e, by_issuer.as_bytes(), now()).unwrap();
    assert_eq!(done.cleared.upgrade_requests, vec![1]);
}
