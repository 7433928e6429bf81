//! Attacks on the relay (issue 8): a relay outage used to steal a license,
//! connection exhaustion, loose key permissions and protocol edges. Each
//! runs a real relay on loopback, bounded in time. Unix only: the tests use
//! `sh`, `ulimit` and file modes.
#![cfg(unix)]

mod common;

use std::time::Duration;

use common::*;
use kaching_core::time::rfc3339;
use kaching_relay::tokens::Scope;
use kaching_testkit::Spawned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Offline grace of the licenses in the outage tests, in seconds: short so
/// the tests are quick, long enough that a slow machine still answers within it.
const GRACE: u64 = 5;

#[tokio::test]
async fn attack_outage_takeover_refused() {
    let relay = Relay::start().await;
    let l = license(60, GRACE);
    let (holder, impostor) = (cluster_key(1), cluster_key(2));
    assert_eq!(relay.activate(&l, &holder).await.status(), 200);
    let r = relay
        .post_beat("/v1/heartbeat", &beat(&l, &holder, 1), &holder)
        .await;
    assert_eq!(r.status(), 200);

    // The relay is down for longer than the offline grace.
    let config = relay.config.clone();
    let dir = relay.stop().await;
    tokio::time::sleep(Duration::from_millis(GRACE * 1000 + 1500)).await;
    let relay = Relay::start_with(dir, config).await;
    let serving_since = {
        let conn = kaching_relay::db::open(&relay.config.db_path()).unwrap();
        kaching_relay::db::serving_since(&conn).unwrap()
    };

    // A copy of the license reconnecting first does not get it...
    let r = relay.activate(&l, &impostor).await;
    let (status, v) = error_body(r).await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v.error.code, "license_in_use", "{v}");
    let message = &v.error.message;
    let frees_at = rfc3339(serving_since + GRACE);
    assert!(
        message.contains(&frees_at),
        "the 409 says when the binding frees ({frees_at}): {message}"
    );
    // ...and the holder carries on.
    let r = relay
        .post_beat("/v1/heartbeat", &beat(&l, &holder, 2), &holder)
        .await;
    assert_eq!(r.status(), 200);
    let (status, _) = error_code(relay.activate(&l, &impostor).await).await;
    assert_eq!(status, 409);
    relay.stop().await;
}

#[tokio::test]
async fn after_a_restart_silence_while_serving_still_frees_the_license() {
    let relay = Relay::start().await;
    let l = license(61, GRACE);
    let (holder, successor) = (cluster_key(1), cluster_key(2));
    assert_eq!(relay.activate(&l, &holder).await.status(), 200);
    let config = relay.config.clone();
    let dir = relay.stop().await;
    let relay = Relay::start_with(dir, config).await;
    // The holder stays silent for the whole grace while the relay serves.
    tokio::time::sleep(Duration::from_millis(GRACE * 1000 + 1200)).await;
    let r = relay.activate(&l, &successor).await;
    assert_eq!(r.status(), 200);
    let (status, code) = error_code(
        relay
            .post_beat("/v1/heartbeat", &beat(&l, &holder, 1), &holder)
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (403, "not_activated"));
    relay.stop().await;
}

/// A cluster whose license moved to a new cluster key keeps sending
/// heartbeats with the old key, which the relay accepted before: each is
/// refused, as is a heartbeat signed by the old key that names the new
/// cluster.
#[tokio::test]
async fn attack_old_cluster_key_refused_after_reactivation_with_new_key() {
    let relay = Relay::start().await;
    let l = license(62, 3600);
    let (old, new) = (cluster_key(1), cluster_key(2));
    assert_eq!(relay.activate(&l, &old).await.status(), 200);
    for seq in 1..=2 {
        let r = relay
            .post_beat("/v1/heartbeat", &beat(&l, &old, seq), &old)
            .await;
        assert_eq!(r.status(), 200, "the old key's heartbeat {seq} while bound");
    }
    let mut bye = beat(&l, &old, 3);
    bye.deactivate = true;
    assert_eq!(
        relay.post_beat("/v1/deactivate", &bye, &old).await.status(),
        200
    );
    assert_eq!(relay.activate(&l, &new).await.status(), 200);
    assert_eq!(
        relay
            .post_beat("/v1/heartbeat", &beat(&l, &new, 1), &new)
            .await
            .status(),
        200
    );

    // The old key, accepted before, for its own (released) cluster...
    let (status, code) = error_code(
        relay
            .post_beat("/v1/heartbeat", &beat(&l, &old, 4), &old)
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (403, "not_activated"));
    // ...and naming the new cluster.
    let (status, code) = error_code(
        relay
            .post_beat("/v1/heartbeat", &beat(&l, &new, 2), &old)
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (422, "invalid_document"));
    // The new cluster carries on.
    assert_eq!(
        relay
            .post_beat("/v1/heartbeat", &beat(&l, &new, 2), &new)
            .await
            .status(),
        200
    );
    relay.stop().await;
}

#[tokio::test]
async fn attack_idle_connection_flood_under_low_fd_limit() {
    const IDLE: usize = 1100;
    let have = kaching_kit::rlimit::raise_nofile();
    assert!(
        have.is_none_or(|n| n >= IDLE as u64 + 200),
        "this test needs {} open files for its own idle connections but the limit is {have:?}: raise `ulimit -Hn`",
        IDLE + 200
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -n 1024 && exec \"$0\" serve --config \"$1\"")
        .arg(env!("CARGO_BIN_EXE_kaching-relay"))
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::null());
    let Spawned {
        mut child, addr, ..
    } = Spawned::start(cmd).await;

    // 1,100 connections that never send a byte, held open by the test.
    // One at a time: a burst would overflow the accept queue and leave
    // handshakes half-done on the relay's side, which is no flood at all.
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(&addr)).await {
            Ok(Ok(s)) => idle.push(s),
            _ => break,
        }
    }
    assert!(
        idle.len() >= 1024,
        "only {} idle connections opened: the flood did not happen",
        idle.len()
    );
    // Let the relay take in what it will before a new client arrives.
    tokio::time::sleep(Duration::from_secs(1)).await;
    // A new client is still served: health and a real write.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let l = license(62, 3600);
    let served = tokio::time::timeout(Duration::from_secs(20), async {
        let health = http
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .expect("healthz answered under the flood");
        assert_eq!(health.status(), 200);
        let write = http
            .post(format!("http://{addr}/v1/activate"))
            .json(&activation_body(&l, &cluster_key(1)))
            .send()
            .await
            .expect("activation answered under the flood");
        assert_eq!(write.status(), 200);
    })
    .await;
    assert!(
        served.is_ok(),
        "the relay did not answer a new client within 20 s under {} idle connections",
        idle.len()
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "the relay died under the flood"
    );
    drop(idle);
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}

/// A relay with short connection timeouts for the slow-client attacks.
#[allow(clippy::unwrap_used)] // test helper: a panic is the failure report
async fn impatient_relay() -> Relay {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.header_read_timeout = Duration::from_secs(2);
    c.idle_timeout = Duration::from_secs(3);
    c.request_timeout = Duration::from_secs(2);
    Relay::start_with(dir, c).await
}

/// Reads until the peer closes or `limit` passes; `None` if still open then.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()
    .map(|()| got)
}

#[tokio::test]
async fn attack_slowloris_headers_are_cut_off() {
    let relay = impatient_relay().await;
    let mut slow = TcpStream::connect(relay.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: relay\r\n")
        .await
        .unwrap();
    let (mut rd, mut wr) = slow.into_split();
    // One header line every 300 ms, for at most 15 s: never a complete head.
    let trickle = tokio::spawn(async move {
        for i in 0..50 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if wr
                .write_all(format!("X-Pad-{i}: a\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let mut got = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(15), async {
        let mut buf = [0u8; 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    trickle.abort();
    assert!(
        closed.is_ok(),
        "a request head trickled for 15 s was never cut off"
    );
    assert!(
        !String::from_utf8_lossy(&got).contains(" 200 "),
        "an incomplete head was answered: {}",
        String::from_utf8_lossy(&got)
    );

    // A client that connects and never speaks is closed too.
    let mut mute = TcpStream::connect(relay.addr).await.unwrap();
    assert!(
        read_until_closed(&mut mute, Duration::from_secs(15))
            .await
            .is_some(),
        "a silent connection was kept open for 15 s"
    );
    // Others are served all along.
    let r = relay.http.get(relay.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    relay.stop().await;
}

#[tokio::test]
async fn attack_slow_body_gets_request_timeout_but_long_poll_does_not() {
    let relay = impatient_relay().await;
    let mut s = TcpStream::connect(relay.addr).await.unwrap();
    s.write_all(b"POST /v1/heartbeat HTTP/1.1\r\nHost: relay\r\nContent-Length: 1000\r\n\r\nabc")
        .await
        .unwrap();
    let got = read_until_closed(&mut s, Duration::from_secs(15)).await;
    let text = String::from_utf8_lossy(got.as_deref().unwrap_or_default()).to_string();
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(
        text.contains("\"code\":\"request_timeout\""),
        "a JSON error: {text}"
    );

    // The long-poll outlives request_timeout (2 s) and ends at its own wait.
    let r = relay
        .http
        .get(relay.url("/v1/revocations?after=0&wait=4s"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    relay.stop().await;
}

#[tokio::test]
async fn attack_half_closed_client_gets_answer() {
    let relay = Relay::start().await;
    let body = serde_json::to_vec(&activation_body(&license(63, 3600), &cluster_key(1))).unwrap();
    let mut post = format!(
        "POST /v1/activate HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    post.extend_from_slice(&body);
    for (request, answer) in [
        (
            b"GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n".to_vec(),
            "HTTP/1.1 200",
        ),
        (post, "HTTP/1.1 200"),
    ] {
        let mut s = TcpStream::connect(relay.addr).await.unwrap();
        s.write_all(&request).await.unwrap();
        s.shutdown().await.unwrap(); // FIN: nothing more from this client
        let got = read_until_closed(&mut s, Duration::from_secs(15))
            .await
            .expect("the relay closes after answering");
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with(answer), "{text}");
    }
    relay.stop().await;
}

#[tokio::test]
async fn attack_world_readable_relay_key_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let created = relay_cli(dir.path(), &["relay-key"]);
    assert!(created.status.success());
    let key = dir.path().join("relay-key.pem");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    for mode in [0o644, 0o640, 0o604] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
        let out = relay_cli(dir.path(), &["relay-key"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{mode:o}");
        assert!(
            err.contains("relay key") && err.contains("chmod 600"),
            "{mode:o}: {err}"
        );
    }
    // `serve` refuses to start rather than serve with it.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_kaching-relay"))
            .arg("serve")
            .env_remove("KACHING_RELAY_CONFIG")
            .env("KACHING_RELAY_DATA_DIR", dir.path())
            .env("KACHING_RELAY_LISTEN", "127.0.0.1:0")
            .env("KACHING_RELAY_VENDOR_KEYS", vendor().public().to_pem())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("serve stops at once instead of serving")
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("chmod 600"), "{err}");
    // Fixed permissions: it serves again with the same key.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let again = relay_cli(dir.path(), &["relay-key"]);
    assert_eq!(again.stdout, created.stdout);
}

#[test]
fn relay_key_is_created_private_over_a_stale_open_temp_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("relay-key.pem.tmp");
    std::fs::write(&tmp, b"left over by a crash").unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(relay_cli(dir.path(), &["relay-key"]).status.success());
    let mode = std::fs::metadata(dir.path().join("relay-key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn attack_bearer_scheme_case_insensitive() {
    let relay = Relay::start().await;
    let admin = relay.token(Scope::Admin, "a");
    let get = |auth: String| {
        relay
            .http
            .get(relay.url("/v1/clusters"))
            .header("authorization", auth)
            .send()
    };
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let r = get(format!("{scheme} {admin}")).await.unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
    }
    for wrong in [
        format!("bearer {admin}x"),
        "BEARER kr_nope".into(),
        format!("Basic {admin}"),
        format!("Bearer{admin}"),
    ] {
        let (status, code) = error_code(get(wrong.clone()).await.unwrap()).await;
        assert_eq!((status, code.as_str()), (401, "unauthorized"), "{wrong}");
    }
    relay.stop().await;
}

#[tokio::test]
async fn attack_license_path_that_is_not_utf8_gets_a_json_400() {
    // Found writing the OpenAPI contract: axum's own rejection was text/plain.
    let relay = Relay::start().await;
    let token = relay.token(Scope::Admin, "paths");
    for path in ["/v1/licenses/%FF/status", "/v1/licenses/%C3%28/quotas"] {
        let r = relay
            .http
            .get(relay.url(path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "{path}");
        assert_eq!(r.headers()["content-type"], "application/json", "{path}");
        let (_, v) = error_body(r).await;
        assert_eq!(v.error.code, "bad_request", "{path}: {v}");
    }
    relay.stop().await;
}

#[tokio::test]
async fn openapi_document_is_served_without_a_token() {
    let relay = Relay::start().await;
    let r = relay
        .http
        .get(relay.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let doc: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        doc,
        serde_json::to_value(kaching_relay::openapi::document()).unwrap()
    );
    relay.stop().await;
}

#[tokio::test]
async fn attack_wrong_method_and_path_get_json_errors() {
    let relay = Relay::start().await;
    for (method, path, status, code) in [
        ("DELETE", "/v1/activate", 405, "method_not_allowed"),
        ("GET", "/v1/heartbeat", 405, "method_not_allowed"),
        ("PATCH", "/v1/revocations", 405, "method_not_allowed"),
        ("POST", "/healthz", 405, "method_not_allowed"),
        ("GET", "/nope", 404, "not_found"),
        ("POST", "/v2/activate", 404, "not_found"),
    ] {
        let r = relay
            .http
            .request(method.parse().unwrap(), relay.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{method} {path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{method} {path}"
        );
        let (_, v) = error_body(r).await;
        assert_eq!(v.error.code, code, "{method} {path}: {v}");
    }
    relay.stop().await;
}

#[tokio::test]
async fn logs_written_to_a_file_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let log = dir.path().join("relay.log");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_kaching-relay"));
    cmd.args(["serve", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .stderr(std::fs::File::create(&log).unwrap());
    let Spawned {
        mut child, addr, ..
    } = Spawned::start(cmd).await;
    // Once it answers, its start-up lines are in the file.
    let r = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let text = std::fs::read(&log).unwrap();
    assert!(
        String::from_utf8_lossy(&text).contains("relay serving"),
        "the log has the start-up line"
    );
    assert!(
        !text.contains(&0x1b),
        "escape codes in a log file: {}",
        String::from_utf8_lossy(&text)
    );
}

#[test]
fn stdout_closed_by_its_reader_is_a_normal_end() {
    let dir = tempfile::tempdir().unwrap();
    for args in ["default-config", "relay-key"] {
        // `true` exits at once, so the relay writes into a closed pipe.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{{ sleep 0.5; \"$0\" {args}; echo \"exit=$?\" >&2; }} | true"
            ))
            .arg(env!("CARGO_BIN_EXE_kaching-relay"))
            .env("KACHING_RELAY_DATA_DIR", dir.path())
            .env_remove("KACHING_RELAY_CONFIG")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("exit=0"), "{args}: {err}");
        assert!(!err.contains("panicked"), "{args}: {err}");
    }
}
