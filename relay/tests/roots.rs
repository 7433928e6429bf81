//! The root of trust on the relay (issue 10 item 6): the relay serves the
//! vendor's root chain (`GET /v1/roots?after=N`), takes a new root only as
//! the next link of that chain (`PUT /v1/roots`, publish scope), and judges
//! licenses and revocation lists by the keys of the root in force. Each
//! `attack_*` test is one way to get a root or a list accepted that the
//! vendor's key holders did not sign.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns

mod common;

use common::*;
use kaching_core::armor::{armor, dearmor};
use kaching_core::wire::relay::{RootPublished, RootsAnswer};
use kaching_core::DocKind;
use kaching_relay::tokens::Scope;

/// Root keys of v1 (2 of 3), and of the rotated roots.
const OLD_ROOT: &[u8] = &[41, 42, 43];
const NEW_ROOT: &[u8] = &[44, 45, 46];
const ISSUER: u8 = ROOT_ISSUER;
const REVOKER: u8 = 60;
const NEW_REVOKER: u8 = 61;

fn v1() -> Vec<u8> {
    sign_root(&test_root(1, OLD_ROOT, REVOKER), &[41, 42])
}

/// v2: same keys, signed by two of them.
fn v2() -> Vec<u8> {
    sign_root(&test_root(2, OLD_ROOT, REVOKER), &[41, 42])
}

/// A relay whose `root` is `initial` (written armored into its data directory).
async fn relay_with_root(initial: &[u8]) -> Relay {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("root.kaching");
    std::fs::write(&path, armor(DocKind::Root, initial)).expect("write root");
    let mut c = config(dir.path());
    c.root = Some(path);
    Relay::start_with(dir, c).await
}

async fn put_root(relay: &Relay, token: Option<&str>, body: Vec<u8>) -> reqwest::Response {
    let mut req = relay.http.put(relay.url("/v1/roots")).body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("put root")
}

async fn roots_after(relay: &Relay, after: u64) -> RootsAnswer {
    let r = relay
        .http
        .get(relay.url(&format!("/v1/roots?after={after}")))
        .send()
        .await
        .expect("get roots");
    assert_eq!(r.status(), 200);
    r.json().await.expect("roots answer")
}

/// The 422 a refused root gets, and its message.
async fn refused(r: reqwest::Response) -> String {
    let (status, body) = error_body(r).await;
    assert_eq!(status, 422, "{body:?}");
    assert_eq!(body.error.code, "invalid_document");
    body.error.message
}

#[tokio::test]
async fn root_published_through_the_chain_is_served_and_survives_a_restart() {
    let relay = relay_with_root(&v1()).await;
    let token = relay.token(Scope::Publish, "licensegen");
    let a = roots_after(&relay, 0).await;
    assert_eq!(a.latest, 1);
    assert_eq!(a.roots, vec![armor(DocKind::Root, &v1())]);

    // Armored publish of the next root: 201.
    let r = put_root(
        &relay,
        Some(&token),
        armor(DocKind::Root, &v2()).into_bytes(),
    )
    .await;
    assert_eq!(r.status(), 201);
    let p: RootPublished = r.json().await.unwrap();
    assert_eq!((p.version, p.accepted), (2, true));
    let a = roots_after(&relay, 1).await;
    assert_eq!(a.latest, 2);
    assert_eq!(a.roots.len(), 1);
    assert_eq!(
        dearmor(a.roots[0].as_bytes(), Some(DocKind::Root)).unwrap(),
        v2()
    );
    assert!(roots_after(&relay, 2).await.roots.is_empty());

    // The same bytes again (binary): 200, nothing changes.
    let r = put_root(&relay, Some(&token), v2()).await;
    assert_eq!(r.status(), 200);
    let p: RootPublished = r.json().await.unwrap();
    assert_eq!((p.version, p.accepted), (2, false));

    // After a restart the chain is walked again from the configured root.
    let config = relay.config.clone();
    let dir = relay.stop().await;
    let relay = Relay::start_with(dir, config).await;
    let a = roots_after(&relay, 0).await;
    assert_eq!(a.latest, 2);
    assert_eq!(
        a.roots,
        vec![armor(DocKind::Root, &v1()), armor(DocKind::Root, &v2())]
    );
    relay.stop().await;
}

#[tokio::test]
async fn attack_root_skipping_a_version_refused() {
    let relay = relay_with_root(&v1()).await;
    let token = relay.token(Scope::Publish, "p");
    let v3 = sign_root(&test_root(3, OLD_ROOT, REVOKER), &[41, 42]);
    let m = refused(put_root(&relay, Some(&token), v3).await).await;
    assert!(m.contains("skips ahead"), "{m}");
    assert_eq!(roots_after(&relay, 0).await.latest, 1);
    relay.stop().await;
}

#[tokio::test]
async fn attack_root_rollback_and_same_version_other_bytes_refused() {
    let relay = relay_with_root(&v1()).await;
    let token = relay.token(Scope::Publish, "p");
    assert_eq!(put_root(&relay, Some(&token), v2()).await.status(), 201);
    // The old root, re-sent: a rollback.
    let m = refused(put_root(&relay, Some(&token), v1()).await).await;
    assert!(m.contains("rollback"), "{m}");
    // Another v2 (other signers, other bytes): not newer either.
    let other_v2 = sign_root(&test_root(2, OLD_ROOT, REVOKER), &[42, 43]);
    assert_ne!(other_v2, v2());
    let m = refused(put_root(&relay, Some(&token), other_v2).await).await;
    assert!(m.contains("rollback"), "{m}");
    let a = roots_after(&relay, 1).await;
    assert_eq!(a.roots, vec![armor(DocKind::Root, &v2())]);
    relay.stop().await;
}

#[tokio::test]
async fn attack_root_signed_only_by_the_new_keys_refused() {
    let relay = relay_with_root(&v1()).await;
    let token = relay.token(Scope::Publish, "p");
    let rotated = test_root(2, NEW_ROOT, REVOKER);
    // Whoever made the new keys cannot vouch for them alone.
    let m = refused(put_root(&relay, Some(&token), sign_root(&rotated, &[44, 45])).await).await;
    assert!(m.contains("trusted root v1"), "{m}");
    // One old key is below the old threshold.
    let m = refused(put_root(&relay, Some(&token), sign_root(&rotated, &[41, 44, 45])).await).await;
    assert!(m.contains("1 valid signature(s)"), "{m}");
    // Old keys without the new ones: the new root's own threshold is not met.
    let m = refused(put_root(&relay, Some(&token), sign_root(&rotated, &[41, 42])).await).await;
    assert!(m.contains("its own"), "{m}");
    // Both thresholds: accepted.
    let r = put_root(&relay, Some(&token), sign_root(&rotated, &[41, 42, 44, 45])).await;
    assert_eq!(r.status(), 201);
    relay.stop().await;
}

#[tokio::test]
async fn attack_root_publish_without_a_publish_token_refused() {
    let relay = relay_with_root(&v1()).await;
    let whoosh = relay.token(Scope::Whoosh, "w");
    assert_eq!(put_root(&relay, None, v2()).await.status(), 401);
    assert_eq!(put_root(&relay, Some("kr_nope"), v2()).await.status(), 401);
    assert_eq!(put_root(&relay, Some(&whoosh), v2()).await.status(), 403);
    assert_eq!(roots_after(&relay, 0).await.latest, 1);
    // An admin token may publish.
    let admin = relay.token(Scope::Admin, "a");
    assert_eq!(put_root(&relay, Some(&admin), v2()).await.status(), 201);
    relay.stop().await;
}

#[tokio::test]
async fn without_a_root_the_chain_is_empty_and_publishing_one_says_how_to_configure_it() {
    let relay = Relay::start().await;
    let token = relay.token(Scope::Publish, "p");
    let a = roots_after(&relay, 0).await;
    assert_eq!(
        a,
        RootsAnswer {
            roots: vec![],
            latest: 0
        }
    );
    let (status, body) = error_body(put_root(&relay, Some(&token), v2()).await).await;
    assert_eq!(status, 409);
    assert_eq!(body.error.code, "no_root");
    assert!(body.error.message.contains("`root`"), "{body:?}");
    // Revocation lists are still judged by vendor_keys.
    assert_eq!(
        relay
            .publish(&token, revocation_list(1, &[], &vendor()))
            .await
            .status(),
        201
    );
    relay.stop().await;
}

#[tokio::test]
async fn attack_revocation_list_signed_by_a_key_that_is_not_a_revoker_refused() {
    let relay = relay_with_root(&v1()).await;
    let token = relay.token(Scope::Publish, "p");
    // vendor_keys (still in the test config) count for nothing with a root;
    // nor do the issuer and root keys.
    for not_revoker in [vendor(), seed_key(ISSUER), seed_key(41)] {
        let (status, body) = error_body(
            relay
                .publish(&token, revocation_list(1, &[], &not_revoker))
                .await,
        )
        .await;
        assert_eq!(status, 422, "{body:?}");
        assert!(body.error.message.contains("revoker"), "{body:?}");
    }
    assert_eq!(
        relay
            .publish(&token, revocation_list(1, &[], &seed_key(REVOKER)))
            .await
            .status(),
        201
    );

    // The root rotates the revoker: the old one's lists are refused now.
    let v2 = sign_root(&test_root(2, OLD_ROOT, NEW_REVOKER), &[41, 42]);
    assert_eq!(put_root(&relay, Some(&token), v2).await.status(), 201);
    let old = relay
        .publish(&token, revocation_list(2, &[], &seed_key(REVOKER)))
        .await;
    assert_eq!(old.status(), 422);
    let new = relay
        .publish(&token, revocation_list(2, &[], &seed_key(NEW_REVOKER)))
        .await;
    assert_eq!(new.status(), 201);
    relay.stop().await;
}

#[tokio::test]
async fn with_a_root_licenses_are_judged_by_its_issuer_keys() {
    let relay = relay_with_root(&v1()).await;
    let l = license(1, 3600);
    let cluster = cluster_key(1);
    // Signed by the configured vendor key, which the root does not name.
    let (status, code) = error_code(relay.activate(&l, &cluster).await).await;
    assert_eq!((status, code.as_str()), (422, "invalid_document"));
    let mut body = activation_body(&l, &cluster);
    body.license = armored_license(&l, &seed_key(ISSUER));
    let r = relay
        .http
        .post(relay.url("/v1/activate"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    relay.stop().await;
}

#[tokio::test]
async fn root_revocation_floor_recovers_from_a_fast_forwarded_list() {
    let relay = relay_with_root(&v1()).await;
    let token = relay.token(Scope::Publish, "p");
    let suspended = kaching_core::LicenseId([9; 16]);
    assert_eq!(
        relay
            .publish(&token, revocation_list(3, &[suspended], &seed_key(REVOKER)))
            .await
            .status(),
        201
    );
    // A leaked revoker key fast-forwards the list to a huge version.
    assert_eq!(
        relay
            .publish(&token, revocation_list(1_000_000, &[], &seed_key(REVOKER)))
            .await
            .status(),
        201
    );
    // The vendor rotates the revoker out and sets the floor at 3.
    let mut r2 = test_root(2, OLD_ROOT, NEW_REVOKER);
    r2.revocation_floor = Some(3);
    assert_eq!(
        put_root(&relay, Some(&token), sign_root(&r2, &[41, 42]))
            .await
            .status(),
        201
    );
    // List 3 (signed by the revoker rotated out) is no longer served.
    let r = relay
        .http
        .get(relay.url("/v1/revocations"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // A list just above the floor from the new revoker is taken.
    assert_eq!(
        relay
            .publish(
                &token,
                revocation_list(4, &[suspended], &seed_key(NEW_REVOKER))
            )
            .await
            .status(),
        201
    );
    let r = relay
        .http
        .get(relay.url("/v1/revocations"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-kaching-revocation-version"], "4");
    relay.stop().await;
}

#[tokio::test]
async fn attack_relay_refuses_to_start_with_a_root_that_does_not_verify() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("root.kaching");
    // One signature where the root asks for two.
    std::fs::write(&path, sign_root(&test_root(1, OLD_ROOT, REVOKER), &[41])).unwrap();
    let mut c = config(dir.path());
    c.root = Some(path.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let e = kaching_relay::run(listener, c, async {})
        .await
        .expect_err("a root that does not verify stops the relay");
    let e = format!("{e:#}");
    assert!(e.contains(&path.display().to_string()), "{e}");
    assert!(e.contains("2 needed"), "{e}");
    // A file that is not there is named too.
    let mut c = config(dir.path());
    let missing = dir.path().join("missing.kaching");
    c.root = Some(missing.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let e = format!(
        "{:#}",
        kaching_relay::run(listener, c, async {})
            .await
            .expect_err("missing root")
    );
    assert!(e.contains(&missing.display().to_string()), "{e}");
}

#[tokio::test]
async fn attack_stored_root_that_does_not_follow_is_ignored_at_start() {
    let relay = relay_with_root(&v1()).await;
    let config = relay.config.clone();
    let dir = relay.stop().await;
    // Someone with the database file slips in a v2 signed by keys of their own.
    let forged = sign_root(&test_root(2, NEW_ROOT, REVOKER), &[44, 45]);
    let conn = kaching_relay::db::open_and_migrate(&config.db_path()).unwrap();
    conn.execute(
        "INSERT INTO roots (version, bytes, received_at) VALUES (2, ?1, ?2)",
        rusqlite::params![forged, now()],
    )
    .unwrap();
    drop(conn);
    let relay = Relay::start_with(dir, config).await;
    assert_eq!(roots_after(&relay, 0).await.latest, 1);
    // The real v2 replaces it.
    let token = relay.token(Scope::Publish, "p");
    assert_eq!(put_root(&relay, Some(&token), v2()).await.status(), 201);
    assert_eq!(
        roots_after(&relay, 1).await.roots,
        vec![armor(DocKind::Root, &v2())]
    );
    relay.stop().await;
}
