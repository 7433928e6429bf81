//! Connected mode against what a relay (or an attacker in its place) may
//! send: revocation lists go through the same acceptance rules as files,
//! and relay answers count only when signed by the pinned key for this
//! cluster. The real relay is exercised end to end in `tests/` (kaching-e2e).

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns

#[path = "common/mod.rs"]
mod common;

use std::time::Duration;

use axum::routing::post;
use axum::Router;
use common::{now, setup, Daemon, Vendor};
use kaching_core::heartbeat::RelayTime;
use kaching_core::license::HeartbeatPolicy;
use kaching_core::revocation::RevocationStatus;
use kaching_core::SecretKey;
use kaching_verifier::relay::Request;
use kaching_verifier::Engine;

fn offer(engine: &mut Engine, bytes: Vec<u8>) -> Result<bool, String> {
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    engine.relay_request(Request::Revocations(bytes, tx), now());
    rx.try_recv().unwrap()
}

#[test]
fn relay_list_signed_by_unknown_key_is_refused_and_list_in_force_kept() {
    let v = Vendor::new();
    let (_dir, cfg) = setup(Some(&v.sign(&v.license(1, "standard"))));
    let mut e = Engine::open(cfg, true).unwrap();
    assert!(offer(
        &mut e,
        v.revocations(2, &[(1, RevocationStatus::Suspended)])
    )
    .unwrap());
    assert_eq!(e.current().status.status.state, "suspended");
    // A forger lifts the suspension with a higher version under its own key.
    let err = offer(&mut e, Vendor::other().revocations(9, &[])).unwrap_err();
    assert!(err.contains("refused"), "{err}");
    assert_eq!(e.current().status.status.state, "suspended");
}

#[test]
fn relay_list_rolled_back_is_refused() {
    let v = Vendor::new();
    let (_dir, cfg) = setup(Some(&v.sign(&v.license(1, "standard"))));
    let mut e = Engine::open(cfg, true).unwrap();
    assert!(offer(
        &mut e,
        v.revocations(5, &[(1, RevocationStatus::Suspended)])
    )
    .unwrap());
    let err = offer(&mut e, v.revocations(4, &[])).unwrap_err();
    assert!(err.contains("refused"), "{err}");
    // Same version, different content: also refused.
    assert!(offer(&mut e, v.revocations(5, &[])).is_err());
    assert_eq!(e.current().status.status.state, "suspended");
}

#[test]
fn relay_list_accepted_survives_restart_and_is_mirrored_to_the_file() {
    let v = Vendor::new();
    let (_dir, cfg) = setup(Some(&v.sign(&v.license(1, "standard"))));
    let list = v.revocations(3, &[(1, RevocationStatus::Revoked)]);
    let mut e = Engine::open(cfg.clone(), true).unwrap();
    assert!(offer(&mut e, list.clone()).unwrap());
    e.flush().unwrap();
    drop(e);
    assert_eq!(std::fs::read(&cfg.revocations).unwrap(), list);
    // Even with the mirror file gone, the database keeps the revocation.
    std::fs::remove_file(&cfg.revocations).unwrap();
    let e = Engine::open(cfg, false).unwrap();
    assert_eq!(e.current().status.status.state, "revoked");
}

/// A stand-in relay answering `/v1/activate` and `/v1/heartbeat` with a
/// relay-time statement signed by `key`, naming `cluster` and a time an hour ahead.
async fn fake_relay(key: SecretKey, cluster: Option<String>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let key = std::sync::Arc::new(key);
    let answer = move || {
        let rt = RelayTime {
            time: now() + 3600,
            revocation_version: 0,
            cluster_id: cluster.clone(),
            seq: Some(0),
            message: None,
        };
        rt.sign(&key)
    };
    let a = answer.clone();
    let app = Router::new()
        .route("/v1/activate", post(move || async move { a() }))
        .route("/v1/heartbeat", post(move || async move { answer() }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A stand-in relay that answers honestly: relay time for the cluster that
/// signed the request, echoing the heartbeat's sequence number.
/// The cluster an activation request posted to a fake relay comes from.
fn activating_cluster(body: &kaching_core::wire::relay::ActivateBody) -> String {
    let bytes = kaching_core::armor::dearmor(body.activation_request.as_bytes(), None).unwrap();
    kaching_core::cluster::verify_activation_request(&bytes)
        .unwrap()
        .doc
        .cluster_id
}

/// A fake relay's signed answer to cluster `cluster`'s request `seq`, now.
fn relay_time(key: &SecretKey, cluster: String, seq: u64) -> Vec<u8> {
    RelayTime {
        time: now(),
        revocation_version: 0,
        cluster_id: Some(cluster),
        seq: Some(seq),
        message: None,
    }
    .sign(key)
}

async fn honest_relay(key: SecretKey) -> String {
    use kaching_core::wire::relay::ActivateBody;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let key = std::sync::Arc::new(key);
    let sign = move |cluster: String, seq: u64| relay_time(&key, cluster, seq);
    let a = sign.clone();
    let app =
        Router::new()
            .route(
                "/v1/activate",
                post(move |body: axum::Json<ActivateBody>| async move {
                    a(activating_cluster(&body), 0)
                }),
            )
            .route(
                "/v1/heartbeat",
                post(move |body: axum::body::Bytes| async move {
                    let hb = kaching_core::heartbeat::verify_heartbeat(&body).unwrap();
                    sign(hb.doc.cluster_id, hb.doc.seq)
                }),
            );
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn connected_mode_metrics_answer_the_operators_questions() {
    let relay = SecretKey::from_seed(&[23; 32]);
    let url = honest_relay(SecretKey::from_seed(&[23; 32])).await;
    let (_dir, d) = connected_daemon(&url, &relay).await;
    d.wait_status("a heartbeat answered", |s| {
        s["relay"]["last_contact"].is_string() && s["relay"]["last_error"].is_null()
    })
    .await;
    let text = d.text("/metrics").await;
    // What the "relay unreachable past half the offline grace" and
    // "heartbeat failure rate" alerts (deploy/prometheus) read.
    for series in [
        "kaching_relay_last_contact_age_seconds ",
        "kaching_license_offline_grace_seconds 3600",
        r#"kaching_relay_heartbeats_sent_total{result="ok"}"#,
    ] {
        assert!(text.contains(series), "/metrics lacks {series}:\n{text}");
    }
    d.stop().await;
}

#[tokio::test]
async fn heartbeats_fail_over_to_the_next_relay_url() {
    let relay = SecretKey::from_seed(&[24; 32]);
    let up = honest_relay(SecretKey::from_seed(&[24; 32])).await;
    // The first URL refuses connections (a replica that is down).
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let (_dir, mut cfg) = connected_config(&down, Some(&relay));
    cfg.relay.urls.push(up.clone());
    cfg.relay.max_backoff = Duration::from_secs(30);
    let d = Daemon::start(cfg).await;
    // Answered by the second URL at once, not after a growing backoff.
    let s = d
        .wait_status("a heartbeat answered by the second URL", |s| {
            s["relay"]["last_contact"].is_string() && s["relay"]["last_error"].is_null()
        })
        .await;
    assert_eq!(s["relay"]["url"], up.as_str(), "{s:#}");
    assert_eq!(s["state"], "active");
    d.stop().await;
}

/// A connected license talking to `relay_url`, with `configured` (when
/// given) as `relay.public_key`.
fn connected_config(
    relay_url: &str,
    configured: Option<&SecretKey>,
) -> (tempfile::TempDir, kaching_verifier::Config) {
    let v = Vendor::new();
    let mut l = v.license(1, "standard");
    l.heartbeat = Some(HeartbeatPolicy {
        interval: 1,
        offline_grace: 3600,
    });
    let (dir, mut cfg) = setup(Some(&v.sign(&l)));
    if let Some(key) = configured {
        let pem = dir.path().join("relay.pub");
        std::fs::write(&pem, key.public().to_pem()).unwrap();
        cfg.relay.public_key = Some(pem);
    }
    cfg.relay.urls = vec![relay_url.to_string()];
    cfg.relay.max_backoff = Duration::from_millis(500);
    cfg.tick = Duration::from_millis(100);
    (dir, cfg)
}

async fn connected_daemon(relay_url: &str, pinned: &SecretKey) -> (tempfile::TempDir, Daemon) {
    let (dir, cfg) = connected_config(relay_url, Some(pinned));
    (dir, Daemon::start(cfg).await)
}

#[tokio::test]
async fn relay_answer_signed_by_another_key_is_refused() {
    let pinned = SecretKey::from_seed(&[21; 32]);
    let impostor = SecretKey::from_seed(&[22; 32]);
    // The impostor even names no cluster; the signature check comes first.
    let url = fake_relay(impostor, None).await;
    let (_dir, d) = connected_daemon(&url, &pinned).await;
    let s = d
        .wait_status("the impostor refused", |s| {
            s["relay"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("not signed by a relay key"))
        })
        .await;
    // Its time (an hour ahead) neither counted as contact nor moved the mark.
    assert!(s["relay"]["last_contact"].is_null(), "{s:#}");
    assert!(
        s["trusted_time"].as_str().unwrap() < kaching_core::time::rfc3339(now() + 600).as_str()
    );
    d.stop().await;
}

#[tokio::test]
async fn relay_answer_for_another_cluster_is_refused() {
    let relay = SecretKey::from_seed(&[21; 32]);
    let pinned = SecretKey::from_seed(&[21; 32]);
    // Genuinely signed, but recorded for another cluster: a replay.
    let url = fake_relay(relay, Some("someothercluster".into())).await;
    let (_dir, d) = connected_daemon(&url, &pinned).await;
    let s = d
        .wait_status("the replayed answer refused", |s| {
            s["relay"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("answered for cluster"))
        })
        .await;
    assert!(s["relay"]["last_contact"].is_null(), "{s:#}");
    d.stop().await;
}

#[tokio::test]
async fn relay_without_pinned_key_refuses_to_start() {
    let (_dir, mut cfg) = setup(None);
    cfg.relay.urls = vec!["http://127.0.0.1:9".into()];
    let err = Daemon::try_start(cfg).await.err().unwrap().to_string();
    assert!(err.contains("relay.public_key"), "{err}");
}

#[test]
fn relay_contact_survives_restart_and_raises_the_mark() {
    let v = Vendor::new();
    let mut l = v.license(1, "standard");
    l.heartbeat = Some(HeartbeatPolicy {
        interval: 60,
        offline_grace: 3600,
    });
    let (_dir, mut cfg) = setup(Some(&v.sign(&l)));
    cfg.relay.urls = vec!["http://127.0.0.1:9".into()];
    let mut e = Engine::open(cfg.clone(), true).unwrap();
    let relay_time = now() + 120;
    e.relay_request(
        Request::Contact {
            time: RelayTime {
                time: relay_time,
                revocation_version: 0,
                cluster_id: Some(e.identity.cluster_id.clone()),
                seq: Some(0),
                message: Some("hello operators".into()),
            },
            via: "http://127.0.0.1:9".into(),
            activation: Some(l.id.to_string()),
            upgrades_up_to: None,
            clock_reset: None,
            deactivated: false,
        },
        now(),
    );
    let s = e.current().status.clone();
    let relay = s.relay.unwrap();
    assert_eq!(relay.message.as_deref(), Some("hello operators"));
    assert_eq!(s.trusted_time, kaching_core::time::rfc3339(relay_time));
    e.flush().unwrap();
    drop(e);
    let e = Engine::open(cfg, false).unwrap();
    let s = e.current().status.clone();
    assert_eq!(
        s.relay.unwrap().last_contact,
        Some(kaching_core::time::rfc3339(relay_time))
    );
    assert!(s.trusted_time >= kaching_core::time::rfc3339(relay_time));
}

/// A pinned root naming the common vendor key as issuer and revoker and
/// `relay` as its relay key; root keys seeds 1 and 2.
fn root_with_relay(relay: &SecretKey) -> std::sync::Arc<[u8]> {
    use kaching_core::root::{Role, RoleKeys, Root};
    let vendor = Vendor::new().key.public();
    let (r1, r2) = (
        SecretKey::from_seed(&[1; 32]),
        SecretKey::from_seed(&[2; 32]),
    );
    let mut keys = vec![r1.public(), r2.public(), vendor.clone(), relay.public()];
    keys.sort_by_key(|k| k.kid());
    let one = |k: &kaching_core::PublicKey| RoleKeys {
        kids: vec![k.kid()],
        threshold: 1,
    };
    let mut root_kids = vec![r1.public().kid(), r2.public().kid()];
    root_kids.sort();
    let root = Root {
        issuer: "vendor".into(),
        version: 1,
        issued_at: now() - 60,
        expires: now() + 86_400,
        keys,
        roles: std::collections::BTreeMap::from([
            (
                Role::Root,
                RoleKeys {
                    kids: root_kids,
                    threshold: 2,
                },
            ),
            (Role::Issuer, one(&vendor)),
            (Role::Revoker, one(&vendor)),
            (Role::Relay, one(&relay.public())),
        ]),
        revocation_floor: None,
    };
    std::sync::Arc::from(root.sign(&[&r1, &r2]).into_boxed_slice())
}

#[tokio::test]
async fn attack_edited_relay_key_ignored_when_the_pinned_root_names_the_relay() {
    // The customer runs their own "relay" (to feed the time they like) and
    // points relay.public_key at its key: the root's relay role decides.
    let genuine = SecretKey::from_seed(&[30; 32]);
    let fake = SecretKey::from_seed(&[31; 32]);
    let url = fake_relay(SecretKey::from_seed(&[31; 32]), None).await;
    let (_dir, mut cfg) = connected_config(&url, Some(&fake));
    cfg.pinned_root = Some(root_with_relay(&genuine));
    let d = Daemon::start(cfg).await;
    let s = d
        .wait_status("the configured fake relay refused", |s| {
            s["relay"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("not signed by a relay key"))
        })
        .await;
    assert!(s["relay"]["last_contact"].is_null(), "{s:#}");
    d.stop().await;
}

#[tokio::test]
async fn a_relay_named_in_the_pinned_root_needs_no_configured_key() {
    let relay = SecretKey::from_seed(&[30; 32]);
    let url = honest_relay(SecretKey::from_seed(&[30; 32])).await;
    let (_dir, mut cfg) = connected_config(&url, None);
    assert!(cfg.relay.public_key.is_none());
    cfg.pinned_root = Some(root_with_relay(&relay));
    let d = Daemon::start(cfg).await;
    d.wait_status("a heartbeat answered by the root's relay", |s| {
        s["relay"]["last_contact"].is_string() && s["relay"]["last_error"].is_null()
    })
    .await;
    d.stop().await;
}

/// An honest relay older than the usage-report mailbox: `POST
/// /v1/usage-reports` is a 404. Counts heartbeats and report posts.
async fn relay_without_mailbox(
    key: SecretKey,
) -> (
    String,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let key = Arc::new(key);
    let (beats, posts) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let sign = move |cluster: String, seq: u64| relay_time(&key, cluster, seq);
    let a = sign.clone();
    let (b, p) = (beats.clone(), posts.clone());
    let app = Router::new()
        .route(
            "/v1/activate",
            post(
                move |body: axum::Json<kaching_core::wire::relay::ActivateBody>| async move {
                    a(activating_cluster(&body), 0)
                },
            ),
        )
        .route(
            "/v1/heartbeat",
            post(move |body: axum::body::Bytes| async move {
                b.fetch_add(1, Ordering::SeqCst);
                let hb = kaching_core::heartbeat::verify_heartbeat(&body).unwrap();
                sign(hb.doc.cluster_id, hb.doc.seq)
            }),
        )
        .route(
            "/v1/usage-reports",
            post(move || async move {
                p.fetch_add(1, Ordering::SeqCst);
                axum::http::StatusCode::NOT_FOUND
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, beats, posts)
}

#[tokio::test]
async fn relay_without_the_mailbox_is_asked_once_then_not_until_restart() {
    use std::sync::atomic::Ordering;
    let (url, beats, posts) = relay_without_mailbox(SecretKey::from_seed(&[0x0d; 32])).await;
    let (dir, mut cfg) = connected_config(&url, Some(&SecretKey::from_seed(&[0x0d; 32])));
    // Poll for receipts at every heartbeat: only the 404 may stop the posts.
    cfg.relay.receipt_poll = Duration::from_millis(1);
    let d = Daemon::start(cfg.clone()).await;
    let body = serde_json::json!({"requested_tier": "enterprise", "message": "more"});
    assert_eq!(d.json.post("/v1/upgrade-requests", &body).await.0, 202);
    kaching_testkit::wait_for_value(
        "a report post",
        || async { posts.load(Ordering::SeqCst) },
        |n| *n >= 1,
    )
    .await;
    let seen = beats.load(Ordering::SeqCst);
    kaching_testkit::wait_for_value(
        "three more heartbeats",
        || async { beats.load(Ordering::SeqCst) },
        |n| *n >= seen + 3,
    )
    .await;
    assert_eq!(posts.load(Ordering::SeqCst), 1, "no post after the 404");
    d.stop().await;
    // A restart asks again (the relay may have been upgraded meanwhile).
    let d = Daemon::start(cfg).await;
    kaching_testkit::wait_for_value(
        "a report post after restart",
        || async { posts.load(Ordering::SeqCst) },
        |n| *n >= 2,
    )
    .await;
    d.stop().await;
    drop(dir);
}

/// What [`recording_relay`] saw of each heartbeat: the clock reset its
/// chain head carried (`None` also for a heartbeat without a chain head),
/// and whether it named a chain head at all.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(bool, Option<Vec<u8>>)>>>;

/// An honest relay announcing `accepts` in `Kaching-Accepts`, recording
/// each heartbeat's chain head, and refusing (`503`) the first `refuse`
/// heartbeats that carry a clock reset.
async fn recording_relay(key: SecretKey, accepts: &'static str, refuse: usize) -> (String, Seen) {
    use axum::http::{HeaderName, StatusCode};
    use axum::response::IntoResponse;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let key = Arc::new(key);
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(AtomicUsize::new(0));
    let header = HeaderName::from_static(kaching_core::wire::relay::ACCEPTS_HEADER);
    let answer = move |cluster: String, seq: u64| {
        let bytes = relay_time(&key, cluster, seq);
        ([(header.clone(), accepts)], bytes).into_response()
    };
    let a = answer.clone();
    let s = seen.clone();
    let app = Router::new()
        .route(
            "/v1/activate",
            post(
                move |body: axum::Json<kaching_core::wire::relay::ActivateBody>| async move {
                    a(activating_cluster(&body), 0)
                },
            ),
        )
        .route(
            "/v1/heartbeat",
            post(move |body: axum::body::Bytes| async move {
                let hb = kaching_core::heartbeat::verify_heartbeat(&body)
                    .unwrap()
                    .doc;
                let reset = hb.chain.as_ref().and_then(|c| c.reset.clone());
                s.lock().unwrap().push((hb.chain.is_some(), reset.clone()));
                if reset.is_some() && refused.fetch_add(1, Ordering::SeqCst) < refuse {
                    return (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response();
                }
                answer(hb.cluster_id, hb.seq)
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

/// Waits until `seen` holds at least `n` heartbeats; returns them.
async fn heartbeats_seen(seen: &Seen, n: usize) -> Vec<(bool, Option<Vec<u8>>)> {
    kaching_testkit::wait_for_value(
        "heartbeats at the relay",
        || async { seen.lock().unwrap().clone() },
        |v| v.len() >= n,
    )
    .await
}

#[tokio::test]
async fn heartbeats_carry_a_taken_clock_reset_until_the_relay_accepts_one() {
    use kaching_core::clock_reset::ClockReset;
    use kaching_verifier::state::Db;
    let relay = SecretKey::from_seed(&[0x0e; 32]);
    // A cluster whose mark a wrong clock left years ahead takes the
    // vendor's clock reset (daemon stopped).
    let (_dir, cfg) = connected_config("http://127.0.0.1:9", Some(&relay));
    let cluster = Engine::open(cfg.clone(), true)
        .unwrap()
        .identity
        .cluster_id
        .clone();
    let ahead = now() + 1000 * common::DAY;
    Db::open(&cfg.state_dir, false)
        .unwrap()
        .raise_trusted_time(ahead)
        .unwrap();
    let reset = ClockReset::new(&cluster, ahead, now(), now() + 7 * common::DAY);
    let bytes = reset.sign(&Vendor::new().key);
    let armored = kaching_core::armor::armor(kaching_core::DocKind::ClockReset, &bytes);
    kaching_verifier::clock_reset::apply(cfg.clone(), armored.as_bytes()).unwrap();
    let start = |url: &str| {
        let mut c = cfg.clone();
        c.relay.urls = vec![url.to_string()];
        Daemon::start(c)
    };

    // A relay that reads chain heads but not clock resets is never sent one
    // (it would refuse the heartbeat).
    let (url, seen) = recording_relay(SecretKey::from_seed(&[0x0e; 32]), "chain-head", 0).await;
    let d = start(&url).await;
    let got = heartbeats_seen(&seen, 3).await;
    d.stop().await;
    assert!(got.iter().skip(1).all(|(chain, _)| *chain), "{got:?}");
    assert!(got.iter().all(|(_, r)| r.is_none()), "no reset sent");

    // One that reads them: after a restart (still not told), every
    // heartbeat carries the reset, byte for byte the binary document as
    // received, until one carrying it is accepted; none after that.
    let (url, seen) = recording_relay(
        SecretKey::from_seed(&[0x0e; 32]),
        "chain-head, clock-reset",
        2,
    )
    .await;
    let d = start(&url).await;
    let got = heartbeats_seen(&seen, 6).await;
    d.stop().await;
    let carrying: Vec<_> = got.iter().filter(|(_, r)| r.is_some()).collect();
    assert_eq!(carrying.len(), 3, "two refused, one accepted: {got:?}");
    assert!(carrying
        .iter()
        .all(|(_, r)| r.as_deref() == Some(&bytes[..])));
    let last = got.iter().rposition(|(_, r)| r.is_some()).unwrap();
    let first_after = got.iter().position(|(_, r)| r.is_some()).unwrap();
    assert_eq!(last, first_after + 2, "carried in a row: {got:?}");
    assert!(got.len() > last + 1, "heartbeats after the accepted one");
    assert!(Db::open(&cfg.state_dir, false)
        .unwrap()
        .clock_reset_to_tell()
        .unwrap()
        .is_none());

    // The relay was told: a restart does not carry it again.
    let (url, seen) = recording_relay(
        SecretKey::from_seed(&[0x0e; 32]),
        "chain-head, clock-reset",
        0,
    )
    .await;
    let d = start(&url).await;
    let got = heartbeats_seen(&seen, 3).await;
    d.stop().await;
    assert!(got.iter().all(|(_, r)| r.is_none()), "{got:?}");
}
