//! The root of trust end to end: `licensegen root init`, a verifier pinned
//! to that root, `licensegen key rotate` making root v2, and the customer
//! dropping root v2 into `roots/`: licenses from the new key count, those
//! from the rotated-out key stop counting.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kaching_core::wire::verifier::VerifierStatus;
use kaching_e2e::{install, verifier_config, Vendor, Verifier};

/// True when a file refusal shown in `rejections` mentions `text` (in the
/// file name or the reason).
fn rejected(s: &VerifierStatus, text: &str) -> bool {
    s.rejections
        .iter()
        .any(|r| r.file.contains(text) || r.reason.contains(text))
}

/// `licensegen root init`, then root v1 written out for the verifier build.
async fn root_v1(vendor: &Vendor) -> PathBuf {
    assert_eq!(vendor.licensegen(&["root", "init"]).await, 0);
    let root1 = vendor.root.join("root-v1.root");
    let out = root1.to_str().unwrap();
    assert_eq!(vendor.licensegen(&["root", "show", "--out", out]).await, 0);
    root1
}

/// A verifier pinned to the root in `file`, as the vendor's build would be.
fn pin(cfg: &mut kaching_verifier::Config, file: &Path) {
    cfg.pinned_root = Some(Arc::from(std::fs::read(file).unwrap().into_boxed_slice()));
}

/// A relay holding root v1 and a connected verifier pinned to it, running
/// a license issued to "acme".
async fn connected_pinned(
    vendor: &Vendor,
    root1: &Path,
) -> (kaching_e2e::Relay, kaching_e2e::Issued, Verifier) {
    let relay = kaching_e2e::Relay::start_with_root(&vendor.root, root1).await;
    let lic = vendor.issue("acme", &[]).await;
    let dir = vendor.root.join("cluster");
    install(&dir, vendor, &lic);
    let mut cfg = verifier_config(&dir, Some(&relay));
    cfg.relay.long_poll = std::time::Duration::from_secs(1);
    pin(&mut cfg, root1);
    let v = Verifier::start(cfg).await;
    v.wait_status("active under root v1", |s| s.status.state == "active")
        .await;
    (relay, lic, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_through_the_root_chain_in_a_pinned_verifier() {
    let vendor = Vendor::new().await;
    let root1 = root_v1(&vendor).await;
    let before = vendor.issue("before", &[]).await;

    // The vendor's verifier build, pinned to root v1.
    let dir = vendor.root.join("cluster");
    install(&dir, &vendor, &before);
    let mut cfg = verifier_config(&dir, None);
    pin(&mut cfg, &root1);
    let mut v = Verifier::start(cfg.clone()).await;
    let s = v
        .wait_status("active under root v1", |s| s.status.state == "active")
        .await;
    assert_eq!(
        (s.trust.as_str(), s.root_version),
        ("pinned", Some(1)),
        "{s:#?}"
    );

    // The vendor key leaks: rotate it. Root v2 names only the new key.
    assert_eq!(vendor.licensegen(&["key", "rotate"]).await, 0);
    let after = vendor.issue("after", &[]).await;
    let root2 = vendor.dir.join("roots").join("root-v2.root");
    assert!(root2.exists());

    // The new license alone is refused until root v2 arrives...
    std::fs::copy(&after.path, dir.join("license.lic")).unwrap();
    let s = v
        .wait_status("the new key unknown under root v1", |s| {
            rejected(s, "license")
        })
        .await;
    assert_eq!(
        s.status.license_id.as_deref(),
        Some(before.id.as_str()),
        "last good kept: {s:#?}"
    );
    // ...and counts once it does.
    std::fs::create_dir_all(dir.join("roots")).unwrap();
    std::fs::copy(&root2, dir.join("roots").join("root-v2.root")).unwrap();
    let s = v
        .wait_status("root v2 in force", |s| {
            s.root_version == Some(2) && s.status.license_id.as_deref() == Some(after.id.as_str())
        })
        .await;
    assert_eq!(s.status.state, "active", "{s:#?}");

    // The rotated-out key's license no longer counts, and says why.
    std::fs::copy(&before.path, dir.join("license.lic")).unwrap();
    let s = v
        .wait_status("the old key's license refused", |s| {
            rejected(s, "holds none in root v2")
        })
        .await;
    assert_eq!(
        s.status.license_id.as_deref(),
        Some(after.id.as_str()),
        "{s:#?}"
    );
    v.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_published_to_the_relay_reaches_a_connected_pinned_verifier() {
    let vendor = Vendor::new().await;
    let root1 = root_v1(&vendor).await;
    let (relay, lic, mut v) = connected_pinned(&vendor, &root1).await;

    // Rotate and publish: the relay takes root v2 through its chain, then
    // the list signed by the new key; the verifier pulls both.
    assert_eq!(vendor.licensegen(&["key", "rotate"]).await, 0);
    assert_eq!(
        vendor
            .licensegen(&["suspend", &lic.id, "--reason", "unpaid"])
            .await,
        0
    );
    assert_eq!(vendor.publish(&relay).await, 0);
    let s = v
        .wait_status("root v2 from the relay", |s| s.root_version == Some(2))
        .await;
    assert_eq!(s.trust, "pinned");
    // The license signed by the rotated-out key stops counting, and says
    // why; the list the new key signed was accepted (no refusal).
    let s = v
        .wait_status("the old key's license withdrawn", |s| {
            s.status.state == "invalid"
        })
        .await;
    assert!(
        s.status.reason.contains("holds none in root v2"),
        "{}",
        s.status.reason
    );
    assert!(!rejected(&s, "revocations"), "{:#?}", s.rejections);
    v.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holders_hand_suspensions_to_an_online_revoker_key_and_a_pinned_verifier_obeys() {
    let vendor = Vendor::new().await;
    // A 2-of-3 root: the vendor key issues and revokes, three holders sign roots.
    assert_eq!(
        vendor
            .licensegen(&["root", "init", "--key-count", "3", "--threshold", "2"])
            .await,
        0
    );
    let root1 = vendor.root.join("root-v1.root");
    let out = root1.to_str().unwrap();
    assert_eq!(vendor.licensegen(&["root", "show", "--out", out]).await, 0);
    let (relay, lic, mut v) = connected_pinned(&vendor, &root1).await;

    // The revoker role moves to a key on an online box; two holders sign.
    let revoker = vendor.root.join("revoker.key");
    let revoker_pub = vendor.root.join("revoker.pub");
    assert_eq!(
        vendor
            .licensegen(&["key", "new", "--out", revoker.to_str().unwrap()])
            .await,
        0
    );
    let vendor_kid = kaching_core::PublicKey::from_pem(&vendor.public_pem())
        .unwrap()
        .kid()
        .to_hex();
    assert_eq!(
        vendor
            .licensegen(&["role", "add", "revoker", revoker_pub.to_str().unwrap()])
            .await,
        0
    );
    assert_eq!(
        vendor
            .licensegen(&["role", "remove", "revoker", &vendor_kid])
            .await,
        0
    );
    let mut holders: Vec<PathBuf> = std::fs::read_dir(vendor.dir.join("root-keys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "key"))
        .collect();
    holders.sort();
    for h in &holders[..2] {
        assert_eq!(
            vendor
                .licensegen(&["root", "sign", "--key", h.to_str().unwrap()])
                .await,
            0
        );
    }
    assert!(vendor.dir.join("roots").join("root-v2.root").exists());

    // The online box suspends with its key; publish carries root v2 first.
    let revoker_arg = revoker.to_str().unwrap();
    assert_eq!(
        vendor
            .licensegen(&["suspend", &lic.id, "--revoker-key", revoker_arg])
            .await,
        0
    );
    assert_eq!(vendor.publish(&relay).await, 0);
    let s = v
        .wait_status("suspended through root v2's revoker", |s| {
            s.root_version == Some(2) && s.status.state == "suspended"
        })
        .await;
    assert_eq!(s.trust, "pinned");
    assert!(!rejected(&s, "revocations"), "{:#?}", s.rejections);
    v.stop().await;
}
