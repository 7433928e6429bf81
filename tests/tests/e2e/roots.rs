//! The root of trust end to end: `licensegen root init`, a verifier pinned
//! to that root, `licensegen key rotate` making root v2, and the customer
//! dropping root v2 into `roots/`: licenses from the new key count, those
//! from the rotated-out key stop counting.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_through_the_root_chain_in_a_pinned_verifier() {
    let vendor = Vendor::new().await;
    assert_eq!(vendor.licensegen(&["root", "init"]).await, 0);
    let root1 = vendor.root.join("root-v1.root");
    assert_eq!(
        vendor
            .licensegen(&["root", "show", "--out", root1.to_str().unwrap()])
            .await,
        0
    );
    let before = vendor.issue("before", &[]).await;

    // The vendor's verifier build, pinned to root v1.
    let dir = vendor.root.join("cluster");
    install(&dir, &vendor, &before);
    let mut cfg = verifier_config(&dir, None);
    cfg.pinned_root = Some(Arc::from(std::fs::read(&root1).unwrap().into_boxed_slice()));
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
