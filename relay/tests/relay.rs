//! End-to-end tests against a real relay on loopback (port 0, temp dirs).

mod common;

use std::time::Duration;

use common::*;
use kaching_core::heartbeat::verify_relay_time;
use kaching_core::wire::relay::{ClusterPage, FileUpgrade, LicenseQuotas, UpgradeRow, UpgradeRows};
use kaching_core::wire::{ErrorBody, LicenseStatus};
use kaching_core::{LicenseId, PublicKey, SecretKey};
use kaching_relay::tokens::Scope;

#[tokio::test]
async fn second_cluster_refused_while_first_is_live() {
    let relay = Relay::start().await;
    let l = license(1, 3600);
    assert_eq!(relay.activate(&l, &cluster_key(1)).await.status(), 200);
    let (status, code) = error_code(relay.activate(&l, &cluster_key(2)).await).await;
    assert_eq!((status, code.as_str()), (409, "license_in_use"));
    // The first cluster re-activating (a verifier restart) is fine.
    assert_eq!(relay.activate(&l, &cluster_key(1)).await.status(), 200);
    relay.stop().await;
}

#[tokio::test]
async fn cluster_migrates_after_deactivation() {
    let relay = Relay::start().await;
    let l = license(2, 3600);
    let (old, new) = (cluster_key(1), cluster_key(2));
    assert_eq!(relay.activate(&l, &old).await.status(), 200);
    let mut bye = beat(&l, &old, 1);
    bye.deactivate = true;
    assert_eq!(
        relay.post_beat("/v1/deactivate", &bye, &old).await.status(),
        200
    );
    assert_eq!(relay.activate(&l, &new).await.status(), 200);
    // The old cluster no longer holds the license: its heartbeats are refused.
    let (status, code) = error_code(
        relay
            .post_beat("/v1/heartbeat", &beat(&l, &old, 2), &old)
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (403, "not_activated"));
    assert_eq!(
        relay
            .post_beat("/v1/heartbeat", &beat(&l, &new, 1), &new)
            .await
            .status(),
        200
    );
    relay.stop().await;
}

#[tokio::test]
async fn stale_cluster_loses_license_after_offline_grace() {
    let relay = Relay::start().await;
    let l = license(3, 1);
    assert_eq!(relay.activate(&l, &cluster_key(1)).await.status(), 200);
    // Offline grace is 1 s; after it the silent cluster no longer blocks another.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(relay.activate(&l, &cluster_key(2)).await.status(), 200);
    let admin = relay.token(Scope::Admin, "admin");
    let (_, v) = relay.get_as::<ClusterPage>("/v1/clusters", &admin).await;
    let statuses: Vec<&str> = v.clusters.iter().map(|c| c.status.as_str()).collect();
    assert!(
        statuses.contains(&"displaced") && statuses.contains(&"active"),
        "{v:?}"
    );
    relay.stop().await;
}

#[tokio::test]
async fn heartbeat_visible_in_clusters_and_license_status() {
    let relay = Relay::start().await;
    let l = license(4, 3600);
    let c = cluster_key(1);
    assert_eq!(relay.activate(&l, &c).await.status(), 200);
    let r = relay.post_beat("/v1/heartbeat", &beat(&l, &c, 7), &c).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "application/vnd.kaching.relay-time+cbor"
    );
    let body = r.bytes().await.unwrap();
    let key_pem = relay
        .http
        .get(relay.url("/v1/relay-key"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rt = verify_relay_time(&body, &PublicKey::from_pem(&key_pem).unwrap()).unwrap();
    assert_eq!(rt.seq, Some(7));
    assert_eq!(
        rt.cluster_id.as_deref(),
        Some(kaching_core::cluster_id(&c.public()).as_str())
    );
    assert!(rt.time.abs_diff(now()) < 60);

    let admin = relay.token(Scope::Admin, "admin");
    let (status, v) = relay.get_as::<ClusterPage>("/v1/clusters", &admin).await;
    assert_eq!(status, 200);
    let row = &v.clusters[0];
    assert_eq!(row.last_seq, 7);
    assert_eq!(row.active_nodes, 4);
    assert_eq!(row.state.as_deref(), Some("active"));
    assert_eq!(row.verifier_version.as_deref(), Some("0.1.0-test"));
    assert_eq!(row.quotas.get("api_calls"), Some(&123));

    let whoosh = relay.token(Scope::Whoosh, "whoosh");
    let (status, s) = relay
        .get_as::<LicenseStatus>(&format!("/v1/licenses/{}/status", l.id), &whoosh)
        .await;
    assert_eq!(status, 200, "{s:?}");
    assert_eq!(s.status, "active");
    assert_eq!(s.nodes_in_use, 4);
    assert_eq!(s.quotas["api_calls"].used, 123);
    assert_eq!(s.quotas["api_calls"].limit, 1000);
    let (status, q) = relay
        .get_as::<LicenseQuotas>(&format!("/v1/licenses/{}/quotas", l.id), &whoosh)
        .await;
    assert_eq!(status, 200);
    assert_eq!(q.license_id, Some(l.id.to_string()));
    assert_eq!(q.quotas["api_calls"].used, 123);
    relay.stop().await;
}

#[tokio::test]
async fn replayed_heartbeat_refused() {
    let relay = Relay::start().await;
    let l = license(5, 3600);
    let c = cluster_key(1);
    relay.activate(&l, &c).await;
    let hb = beat(&l, &c, 1);
    assert_eq!(
        relay.post_beat("/v1/heartbeat", &hb, &c).await.status(),
        200
    );
    let (status, code) = error_code(relay.post_beat("/v1/heartbeat", &hb, &c).await).await;
    assert_eq!((status, code.as_str()), (409, "replayed_heartbeat"));
    // An old sequence number with a fresh signature is a replay too.
    assert_eq!(
        relay
            .post_beat("/v1/heartbeat", &beat(&l, &c, 5), &c)
            .await
            .status(),
        200
    );
    let (status, _) =
        error_code(relay.post_beat("/v1/heartbeat", &beat(&l, &c, 4), &c).await).await;
    assert_eq!(status, 409);
    // A heartbeat signed long ago is outside the clock window.
    let mut old = beat(&l, &c, 9);
    old.time -= 3600;
    let (status, code) = error_code(relay.post_beat("/v1/heartbeat", &old, &c).await).await;
    assert_eq!((status, code.as_str()), (400, "clock_skew"));
    // A normal heartbeat cannot be replayed as a deactivation.
    let (status, code) = error_code(
        relay
            .post_beat("/v1/deactivate", &beat(&l, &c, 10), &c)
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "wrong_endpoint"));
    relay.stop().await;
}

#[tokio::test]
async fn heartbeat_resigned_by_another_cluster_refused() {
    let relay = Relay::start().await;
    let l = license(6, 3600);
    let (victim, attacker) = (cluster_key(1), cluster_key(2));
    relay.activate(&l, &victim).await;
    // Claiming the victim's cluster id with the attacker's key: the id does not match the signer.
    let (status, code) = error_code(
        relay
            .post_beat("/v1/heartbeat", &beat(&l, &victim, 1), &attacker)
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (422, "invalid_document"));
    // Heartbeating for the victim's license as itself: not the bound cluster.
    let (status, code) = error_code(
        relay
            .post_beat("/v1/heartbeat", &beat(&l, &attacker, 1), &attacker)
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (403, "not_activated"));
    relay.stop().await;
}

#[tokio::test]
async fn forged_or_rolled_back_revocation_list_refused() {
    let relay = Relay::start().await;
    let publish = relay.token(Scope::Publish, "publisher");
    let forger = SecretKey::from_seed(&[66; 32]);
    let (status, code) = error_code(
        relay
            .publish(&publish, revocation_list(1, &[], &forger))
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (422, "invalid_document"));
    assert_eq!(
        relay
            .publish(&publish, revocation_list(5, &[], &vendor()))
            .await
            .status(),
        201
    );
    let (status, code) = error_code(
        relay
            .publish(&publish, revocation_list(4, &[], &vendor()))
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (409, "rollback_refused"));
    // Same version, other content: refused too.
    let (status, _) = error_code(
        relay
            .publish(
                &publish,
                revocation_list(5, &[LicenseId([1; 16])], &vendor()),
            )
            .await,
    )
    .await;
    assert_eq!(status, 409);
    // A tampered byte breaks the signature.
    let mut bad = revocation_list(6, &[], &vendor());
    let n = bad.len() - 1;
    bad[n] ^= 1;
    assert_eq!(relay.publish(&publish, bad).await.status(), 422);
    // What is served is still version 5, byte for byte as signed.
    let r = relay
        .http
        .get(relay.url("/v1/revocations"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["etag"], "\"5\"");
    relay.stop().await;
}

#[tokio::test]
async fn revocations_served_with_etag() {
    let relay = Relay::start().await;
    let r = relay
        .http
        .get(relay.url("/v1/revocations"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let publish = relay.token(Scope::Publish, "publisher");
    let list = revocation_list(3, &[], &vendor());
    relay.publish(&publish, list.clone()).await;
    let r = relay
        .http
        .get(relay.url("/v1/revocations"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().to_vec(), list);
    let r = relay
        .http
        .get(relay.url("/v1/revocations"))
        .header("if-none-match", "\"3\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    let r = relay
        .http
        .get(relay.url("/v1/revocations?after=3"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    relay.stop().await;
}

#[tokio::test]
async fn long_poll_returns_when_newer_list_published() {
    let relay = Relay::start().await;
    let publish = relay.token(Scope::Publish, "publisher");
    relay
        .publish(&publish, revocation_list(1, &[], &vendor()))
        .await;
    let url = relay.url("/v1/revocations?after=1&wait=20s");
    let http = relay.http.clone();
    let poll = tokio::spawn(async move { http.get(url).send().await.unwrap() });
    // Give the poll time to park; the outcome does not depend on it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let suspended = LicenseId([9; 16]);
    relay
        .publish(&publish, revocation_list(2, &[suspended], &vendor()))
        .await;
    let r = tokio::time::timeout(Duration::from_secs(15), poll)
        .await
        .expect("long-poll answered before its wait ended")
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-kaching-revocation-version"], "2");
    let list =
        kaching_core::verify_revocation_list(&r.bytes().await.unwrap(), &vendor().public().into())
            .unwrap();
    assert_eq!(list.list.entries[0].id, suspended);
    relay.stop().await;
}

#[tokio::test]
async fn heartbeat_answer_carries_revocation_version_and_notice() {
    let relay = Relay::start().await;
    let l = license(7, 3600);
    let c = cluster_key(1);
    relay.activate(&l, &c).await;
    let publish = relay.token(Scope::Publish, "publisher");
    relay
        .publish(&publish, revocation_list(4, &[l.id], &vendor()))
        .await;
    let body = relay
        .post_beat("/v1/heartbeat", &beat(&l, &c, 1), &c)
        .await
        .bytes()
        .await
        .unwrap();
    let pem = relay
        .http
        .get(relay.url("/v1/relay-key"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rt = verify_relay_time(&body, &PublicKey::from_pem(&pem).unwrap()).unwrap();
    assert_eq!(rt.revocation_version, 4);
    assert!(rt.message.unwrap_or_default().contains("suspended"));
    relay.stop().await;
}

#[tokio::test]
async fn token_scopes_enforced() {
    let relay = Relay::start().await;
    let publish = relay.token(Scope::Publish, "p");
    let whoosh = relay.token(Scope::Whoosh, "w");
    let admin = relay.token(Scope::Admin, "a");
    let list = revocation_list(1, &[], &vendor());
    // No token, unknown token: 401.
    let r = relay
        .http
        .put(relay.url("/v1/revocations"))
        .body(list.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(relay.publish("kr_nope", list.clone()).await.status(), 401);
    // WHOOSH cannot publish; publish cannot read clusters; whoosh cannot list upgrade requests.
    assert_eq!(relay.publish(&whoosh, list.clone()).await.status(), 403);
    assert_eq!(
        relay.get_as::<ErrorBody>("/v1/clusters", &publish).await.0,
        403
    );
    assert_eq!(
        relay.get_as::<ErrorBody>("/v1/clusters", &whoosh).await.0,
        403
    );
    assert_eq!(
        relay
            .get_as::<ErrorBody>("/v1/upgrade-requests", &whoosh)
            .await
            .0,
        403
    );
    assert_eq!(relay.publish(&publish, list).await.status(), 201);
    assert_eq!(
        relay.get_as::<ClusterPage>("/v1/clusters", &admin).await.0,
        200
    );
    // WHOOSH files an upgrade request; admin reads it.
    let l = license(8, 3600);
    relay.activate(&l, &cluster_key(1)).await;
    let r = relay
        .http
        .post(relay.url("/v1/upgrade-requests"))
        .bearer_auth(&whoosh)
        .json(&FileUpgrade {
            license_id: l.id.to_string(),
            requested_tier: "enterprise".into(),
            message: "more".into(),
        })
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (_, v) = relay
        .get_as::<UpgradeRows>("/v1/upgrade-requests", &admin)
        .await;
    assert_eq!(v.upgrade_requests[0].requested_tier, "enterprise");
    // A revoked token stops working at once.
    let mut conn = kaching_relay::db::open(&relay.config.db_path()).unwrap();
    kaching_relay::tokens::revoke(&mut conn, "a", now()).unwrap();
    assert_eq!(
        relay.get_as::<ErrorBody>("/v1/clusters", &admin).await.0,
        401
    );
    relay.stop().await;
}

#[tokio::test]
async fn burst_gets_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.rate_limit.per_second = 0.5;
    c.rate_limit.burst = 5;
    let relay = Relay::start_with(dir, c).await;
    let mut limited = None;
    for _ in 0..30 {
        let r = relay
            .http
            .get(relay.url("/v1/revocations"))
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("a burst of 30 over a bucket of 5 is limited");
    assert!(
        r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    let (_, code) = error_code(r).await;
    assert_eq!(code, "rate_limited");
    relay.stop().await;
}

#[tokio::test]
async fn bad_input_is_4xx_never_500() {
    let relay = Relay::start().await;
    let publish = relay.token(Scope::Publish, "p");
    let admin = relay.token(Scope::Admin, "a");
    for (path, body) in [
        ("/v1/activate", b"not json".to_vec()),
        (
            "/v1/activate",
            br#"{"license":"x","activation_request":"y"}"#.to_vec(),
        ),
        ("/v1/heartbeat", b"\xd2\x84garbage".to_vec()),
        ("/v1/heartbeat", Vec::new()),
        (
            "/v1/deactivate",
            b"-----BEGIN KACHING HEARTBEAT-----\n!!\n".to_vec(),
        ),
    ] {
        let r = relay
            .http
            .post(relay.url(path))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert!((400..500).contains(&status), "{path}: {status}");
        // The error body, typed: a code and a message.
        error_body(r).await;
    }
    let big = vec![b'x'; 2 * 1024 * 1024];
    let r = relay
        .http
        .post(relay.url("/v1/heartbeat"))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        relay.publish(&publish, b"junk".to_vec()).await.status(),
        422
    );
    assert_eq!(
        relay
            .get_as::<ErrorBody>("/v1/licenses/not-a-uuid/status", &admin)
            .await
            .0,
        400
    );
    assert_eq!(
        relay
            .get_as::<ErrorBody>(
                &format!("/v1/licenses/{}/status", LicenseId([3; 16])),
                &admin
            )
            .await
            .0,
        404
    );
    assert_eq!(
        relay
            .get_as::<ErrorBody>("/v1/clusters?limit=abc", &admin)
            .await
            .0,
        400
    );
    assert_eq!(
        relay
            .http
            .get(relay.url("/v1/revocations?wait=forever"))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        relay
            .http
            .get(relay.url("/nope"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    relay.stop().await;
}

#[tokio::test]
async fn audit_verify_fails_after_row_edited() {
    let relay = Relay::start().await;
    let l = license(10, 3600);
    let c = cluster_key(1);
    relay.activate(&l, &c).await;
    for seq in 1..=3 {
        relay
            .post_beat("/v1/heartbeat", &beat(&l, &c, seq), &c)
            .await;
    }
    let dir = relay.stop().await;
    let db = dir.path().join("relay.db");
    let conn = kaching_relay::db::open(&db).unwrap();
    let ok = kaching_relay::audit::verify(&conn).unwrap();
    // The activation, and the three heartbeats sealed as one row at shutdown.
    assert_eq!(ok.rows, 2);

    // Edited row: the seal's count, as if a heartbeat had not happened.
    conn.execute(
        "UPDATE audit SET detail = json_set(detail, '$.heartbeats', 2) WHERE id = 2",
        [],
    )
    .unwrap();
    let err = kaching_relay::audit::verify(&conn).unwrap_err().to_string();
    assert!(err.contains("row 2"), "{err}");
    // The binary says so too, with a failing exit code.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kaching-relay"))
        .args(["audit", "verify"])
        .env("KACHING_RELAY_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("edited"));
}

#[tokio::test]
async fn audit_verify_fails_after_row_deleted() {
    let relay = Relay::start().await;
    let l = license(11, 3600);
    let c = cluster_key(1);
    relay.activate(&l, &c).await;
    relay.activate(&license(12, 3600), &cluster_key(2)).await;
    relay.activate(&license(13, 3600), &cluster_key(3)).await;
    for seq in 1..=3 {
        relay
            .post_beat("/v1/heartbeat", &beat(&l, &c, seq), &c)
            .await;
    }
    let dir = relay.stop().await;
    let conn = kaching_relay::db::open(&dir.path().join("relay.db")).unwrap();
    // Three activations and the heartbeats' seal.
    assert_eq!(kaching_relay::audit::verify(&conn).unwrap().rows, 4);
    conn.execute("DELETE FROM audit WHERE id = 4", []).unwrap();
    assert!(
        kaching_relay::audit::verify(&conn).is_err(),
        "deleted last row detected"
    );
    conn.execute("DELETE FROM audit WHERE id = 2", []).unwrap();
    let err = kaching_relay::audit::verify(&conn).unwrap_err().to_string();
    assert!(err.contains("row 2 is missing"), "{err}");
}

#[test]
fn token_cli_shows_secret_once_and_revokes_by_name() {
    let dir = tempfile::tempdir().unwrap();
    // A new relay's database, made before it first serves.
    assert!(relay_cli(dir.path(), &["migrate"]).status.success());
    let out = relay_cli(
        dir.path(),
        &["token", "create", "--scope", "whoosh", "--name", "ui"],
    );
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(token.starts_with("kr_") && token.len() == 67, "{token}");
    // Only the hash is stored.
    let conn = kaching_relay::db::open(&dir.path().join("relay.db")).unwrap();
    let stored: String = conn
        .query_row("SELECT hash FROM tokens", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, kaching_relay::tokens::hash(&token));
    let list = relay_cli(dir.path(), &["token", "list"]);
    let listed = String::from_utf8(list.stdout).unwrap();
    assert!(listed.contains("ui") && listed.contains("whoosh") && !listed.contains(&token));
    let again = relay_cli(
        dir.path(),
        &["token", "create", "--scope", "admin", "--name", "ui"],
    );
    assert!(!again.status.success());
    assert!(relay_cli(dir.path(), &["token", "revoke", "ui"])
        .status
        .success());
    assert!(!relay_cli(dir.path(), &["token", "revoke", "ui"])
        .status
        .success());
    let audit = relay_cli(dir.path(), &["audit", "verify"]);
    assert!(String::from_utf8_lossy(&audit.stdout).contains("2 rows"));
}

#[test]
fn relay_key_created_private_and_stable() {
    let dir = tempfile::tempdir().unwrap();
    let first = relay_cli(dir.path(), &["relay-key"]);
    assert!(first.status.success());
    let second = relay_cli(dir.path(), &["relay-key"]);
    assert_eq!(first.stdout, second.stdout);
    assert!(String::from_utf8_lossy(&first.stdout).starts_with("-----BEGIN PUBLIC KEY-----"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("relay-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn default_config_is_printed_and_valid() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kaching-relay"))
        .arg("default-config")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(kaching_relay::Config::from_parts(&text, []).is_ok());
}

#[test]
fn completions_and_man_pages_come_from_the_clap_definition() {
    let dir = tempfile::tempdir().unwrap();
    let out = relay_cli(dir.path(), &["completions", "bash"]);
    assert!(out.status.success());
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(
        script.contains("kaching-relay") && script.contains("serve"),
        "{script}"
    );
    let out = relay_cli(dir.path(), &["man"]);
    assert!(out.status.success());
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".TH kaching-relay 1"), "{page}");
    let man = dir.path().join("man");
    let out = relay_cli(dir.path(), &["man", "--out", man.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    for page in [
        "kaching-relay.1",
        "kaching-relay-serve.1",
        "kaching-relay-token-create.1",
        "kaching-relay-audit-verify.1",
    ] {
        assert!(man.join(page).is_file(), "{page} missing");
    }
    // Neither command reads a configuration or touches the data directory.
    assert!(!dir.path().join("relay.db").exists());
}

#[test]
fn serve_without_vendor_keys_says_what_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kaching-relay"))
        .arg("serve")
        .env("KACHING_RELAY_DATA_DIR", dir.path())
        .env("KACHING_RELAY_LISTEN", "127.0.0.1:0")
        .env_remove("KACHING_RELAY_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("vendor_keys_file"));
}

#[tokio::test]
async fn concurrent_activations_bind_exactly_one_cluster() {
    let relay = Relay::start().await;
    let l = license(12, 3600);
    let mut tasks = Vec::new();
    for n in 0..8u8 {
        let (http, url, body) = (
            relay.http.clone(),
            relay.url("/v1/activate"),
            activation_body(&l, &cluster_key(n)),
        );
        tasks.push(tokio::spawn(async move {
            http.post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        7,
        "{statuses:?}"
    );
    relay.stop().await;
}

#[tokio::test]
async fn upgrade_requests_in_heartbeats_reach_the_vendor_once() {
    let relay = Relay::start().await;
    let l = license(13, 3600);
    let c = cluster_key(1);
    relay.activate(&l, &c).await;
    let req = kaching_core::cluster::UpgradeRequest {
        requested_tier: "enterprise".into(),
        message: "queued offline".into(),
        time: now() - 10,
    };
    // The same queued request carried twice (the first answer was lost) is stored once.
    for seq in 1..=2 {
        let mut hb = beat(&l, &c, seq);
        hb.upgrade_requests = vec![req.clone()];
        assert_eq!(
            relay.post_beat("/v1/heartbeat", &hb, &c).await.status(),
            200
        );
    }
    let rows = &upgrade_rows(&relay, &l).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].source, "heartbeat");
    assert_eq!(rows[0].message, "queued offline");
    assert_eq!(
        rows[0].cluster_id.as_deref(),
        Some(kaching_core::cluster_id(&c.public()).as_str())
    );
    relay.stop().await;
}

/// The upgrade requests the relay holds for license `l`, as an admin reads them.
async fn upgrade_rows(relay: &Relay, l: &kaching_core::License) -> Vec<UpgradeRow> {
    let admin = relay.token(Scope::Admin, "admin");
    let path = format!("/v1/upgrade-requests?license={}", l.id);
    relay
        .get_as::<UpgradeRows>(&path, &admin)
        .await
        .1
        .upgrade_requests
}

/// A cluster key signs whatever it likes: a heartbeat (under the 64 KiB
/// document limit) carrying an upgrade request far over what the APIs take
/// is stored cut to their limits, and the heartbeat still counts.
#[tokio::test]
async fn attack_heartbeat_carrying_an_oversized_upgrade_request_is_stored_cut() {
    let relay = Relay::start().await;
    let l = license(14, 3600);
    let c = cluster_key(1);
    relay.activate(&l, &c).await;
    let mut hb = beat(&l, &c, 1);
    hb.upgrade_requests = vec![kaching_core::cluster::UpgradeRequest {
        requested_tier: "e".repeat(200),
        message: "x".repeat(50_000),
        time: now() - 10,
    }];
    assert_eq!(
        relay.post_beat("/v1/heartbeat", &hb, &c).await.status(),
        200
    );
    let rows = &upgrade_rows(&relay, &l).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].message.len() <= 4096 && rows[0].message.ends_with('…'));
    assert!(rows[0].message.starts_with("xxxx"));
    assert!(rows[0].requested_tier.len() <= 64 && rows[0].requested_tier.ends_with('…'));
    relay.stop().await;
}

/// A vendor catalog where `standard` sits below a `platinum` tier and node
/// pressure counts from 30 %.
const CUSTOM_TIERS: &str = r#"
[upgrade_thresholds]
nodes = 0.30

[[tier]]
name = "standard"
display_name = "Standard"
features = ["basic-search"]
max_nodes = 10
duration_days = 365

[[tier]]
name = "platinum"
display_name = "Platinum"
features = ["basic-search", "analytics"]
max_nodes = 50
duration_days = 365
"#;

#[tokio::test]
async fn vendor_tier_catalog_drives_upgrade_checks_and_suggestions() {
    let catalog_dir = tempfile::tempdir().unwrap();
    let tiers = catalog_dir.path().join("tiers.toml");
    std::fs::write(&tiers, CUSTOM_TIERS).unwrap();
    let relay = Relay::start_changed(|c| c.tiers = Some(tiers.clone())).await;
    let whoosh = relay.token(Scope::Whoosh, "whoosh");
    let l = license(14, 3600);
    let c = cluster_key(1);
    assert_eq!(relay.activate(&l, &c).await.status(), 200);
    // 4 of 10 nodes: past this catalog's 30 % node threshold (not the built-in 80 %).
    assert_eq!(
        relay
            .post_beat("/v1/heartbeat", &beat(&l, &c, 1), &c)
            .await
            .status(),
        200
    );

    // The vendor's tier is accepted, the built-in-only one refused with the known names.
    assert_eq!(
        relay.file_upgrade(&whoosh, &l, "platinum").await.status(),
        201
    );
    let (status, e) = error_body(relay.file_upgrade(&whoosh, &l, "enterprise").await).await;
    assert_eq!((status, e.error.code.as_str()), (400, "bad_request"), "{e}");
    assert!(e.error.message.contains("standard, platinum"), "{e}");

    // Suggestions name the vendor's next tier.
    let (status, s) = relay
        .get_as::<LicenseStatus>(&format!("/v1/licenses/{}/status", l.id), &whoosh)
        .await;
    assert_eq!(status, 200, "{s:?}");
    let suggested: Vec<&str> = s
        .upgrade_suggestions
        .iter()
        .map(|u| u.suggested_tier.as_str())
        .collect();
    assert_eq!(suggested, ["platinum"], "{s:?}");
    relay.stop().await;

    // The same relay with the built-in catalog: no such tier, no suggestion at 40 %.
    let relay = Relay::start().await;
    let whoosh = relay.token(Scope::Whoosh, "whoosh");
    assert_eq!(relay.activate(&l, &c).await.status(), 200);
    assert_eq!(
        relay
            .post_beat("/v1/heartbeat", &beat(&l, &c, 1), &c)
            .await
            .status(),
        200
    );
    let (status, code) = error_code(relay.file_upgrade(&whoosh, &l, "platinum").await).await;
    assert_eq!((status, code.as_str()), (400, "bad_request"));
    assert_eq!(
        relay.file_upgrade(&whoosh, &l, "enterprise").await.status(),
        201
    );
    let (_, s) = relay
        .get_as::<LicenseStatus>(&format!("/v1/licenses/{}/status", l.id), &whoosh)
        .await;
    assert!(s.upgrade_suggestions.is_empty(), "{s:?}");
    relay.stop().await;
}

#[test]
fn serve_with_a_bad_tier_catalog_refuses_to_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("vendor-tiers.toml");
    std::fs::write(&bad, "[[tier]]\nname = \"gold\"\n").unwrap();
    let missing = dir.path().join("no-such-tiers.toml");
    for path in [&bad, &missing] {
        let config = write_config(
            dir.path(),
            &format!("tiers = {:?}", path.display().to_string()),
        );
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kaching-relay"))
            .args(["serve", "--config"])
            .arg(&config)
            .env_remove("KACHING_RELAY_TIERS")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{}", path.display());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&path.display().to_string()), "{stderr}");
        // It refused before serving: it never printed an address.
        assert!(
            out.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn relay_and_verifier_read_the_same_log_variable() {
    // The systemd units set KACHING_LOG for both daemons; the relay used to
    // read only RUST_LOG and ignore it.
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-tiers.toml");
    let config = write_config(
        dir.path(),
        &format!("tiers = {:?}", missing.display().to_string()),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kaching-relay"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("KACHING_LOG", "debug,[")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("KACHING_LOG=\"debug,[\" is not a log filter"),
        "{stderr}"
    );
}

/// Finding: a 250 KB message was filed, and the console pages listing it
/// broke their 100 KiB budget. The verifier's limit holds here too.
#[tokio::test]
async fn attack_oversized_upgrade_request_message_is_refused() {
    let relay = Relay::start().await;
    let whoosh = relay.token(Scope::Whoosh, "whoosh");
    let l = license(8, 3600);
    assert_eq!(relay.activate(&l, &cluster_key(1)).await.status(), 200);
    for len in [4097, 250_000] {
        let r = relay
            .file_upgrade_with(&whoosh, &l, "enterprise", "x".repeat(len))
            .await;
        let (status, e) = error_body(r).await;
        assert_eq!((status, e.error.code.as_str()), (400, "bad_request"), "{e}");
        assert!(
            e.error
                .message
                .contains(&format!("message is {len} bytes: at most 4096")),
            "{e}"
        );
    }
    let (_, rows) = relay
        .get_as::<UpgradeRows>("/v1/upgrade-requests", &relay.token(Scope::Admin, "a"))
        .await;
    assert!(rows.upgrade_requests.is_empty(), "nothing was filed");
    let r = relay
        .file_upgrade_with(&whoosh, &l, "enterprise", "x".repeat(4096))
        .await;
    assert_eq!(r.status(), 201);
    relay.stop().await;
}

/// The tier the license already has (or a lower one) is not an upgrade:
/// refused as the verifier refuses it, with the tiers that are.
#[tokio::test]
async fn upgrade_request_for_the_tier_in_force_is_refused() {
    let relay = Relay::start().await;
    let whoosh = relay.token(Scope::Whoosh, "whoosh");
    let l = license(8, 3600);
    assert_eq!(relay.activate(&l, &cluster_key(1)).await.status(), 200);
    let (status, e) = error_body(relay.file_upgrade(&whoosh, &l, "standard").await).await;
    assert_eq!(
        (status, e.error.code.as_str()),
        (422, "not_an_upgrade"),
        "{e}"
    );
    assert!(
        e.error.message.contains("already on the standard tier")
            && e.error.message.contains("enterprise"),
        "{e}"
    );
    assert_eq!(
        relay.file_upgrade(&whoosh, &l, "enterprise").await.status(),
        201
    );
    relay.stop().await;
}
