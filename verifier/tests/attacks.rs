//! Local tricks a determined customer tries against the real daemon
//! (issue 8): special files at the watched paths, connection floods under a
//! low fd limit, slowloris, half-closed sockets, loose secret files, and
//! protocol edges. Every test runs the `kaching-verifier` binary on
//! 127.0.0.1 (port 0) over a temporary folder and bounds every wait.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{now, setup, Vendor};
use kaching_core::revocation::RevocationStatus;
use kaching_verifier::Config;
use serde_json::{json, Value};

const BOUND: Duration = Duration::from_secs(10);
const LICENSE_1: &str = "01010101-0101-0101-0101-010101010101";

fn verifier() -> Command {
    common::verifier_cmd("info")
}

/// Writes `dir/verifier.toml` for `cfg` (port 0, fast tick) plus `extra`.
fn write_config(dir: &Path, cfg: &Config, extra: &str) -> PathBuf {
    let fast = format!("tick = \"200ms\"\ndebounce = \"50ms\"\n{extra}");
    common::write_config(dir, cfg, &fast)
}

/// A daemon process; killed when dropped.
struct Proc {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Proc {
    /// Starts `kaching-verifier run` with the config in `dir`; `wrap` runs
    /// it through `sh -c 'ulimit -n 1024; exec …'` when true.
    fn start_with(dir: &Path, conf: &Path, low_fd_limit: bool) -> Proc {
        let log = dir.join(format!("daemon-{}.log", now_nanos()));
        let mut cmd = verifier();
        if low_fd_limit {
            // The daemon under `ulimit -n 1024` (soft and hard): it cannot
            // raise the limit, so the connection cap must keep it usable.
            let bin = cmd.get_program().to_os_string();
            let envs: Vec<_> = cmd
                .get_envs()
                .map(|(k, v)| (k.to_os_string(), v.map(|v| v.to_os_string())))
                .collect();
            cmd = Command::new("sh");
            cmd.args(["-c", "ulimit -n 1024 && exec \"$0\" run --config \"$1\""])
                .arg(bin)
                .arg(conf);
            for (k, v) in envs {
                match v {
                    Some(v) => cmd.env(k, v),
                    None => cmd.env_remove(k),
                };
            }
        } else {
            cmd.args(["run", "--config"]).arg(conf);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(out).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            for _ in lines {}
        });
        let Ok(line) = rx.recv_timeout(BOUND) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "daemon did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        let addr = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        Proc { child, addr, log }
    }

    fn start(dir: &Path, conf: &Path) -> Proc {
        Self::start_with(dir, conf, false)
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn get(&self, path: &str) -> (u16, Value) {
        request(self.addr, "GET", path, &[], None)
    }

    fn status(&self) -> Value {
        self.get("/v1/status").1
    }

    fn allowed(&self) -> bool {
        self.get("/v1/features/basic-search").1["allowed"] == true
    }

    fn spend(&self, key: &str) -> (u16, Value) {
        let body = json!({"metric": "api_calls", "amount": 1, "idempotency_key": key});
        request(self.addr, "POST", "/v1/usage", &[], Some(&body.to_string()))
    }

    /// Polls the status until `pred` holds.
    fn wait_status(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let until = Instant::now() + BOUND;
        loop {
            let s = self.status();
            if pred(&s) {
                return s;
            }
            assert!(
                Instant::now() < until,
                "timed out waiting for {what}; last status {s}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then waits at most `bound` for the exit.
    fn terminate(&mut self, bound: Duration) -> (std::process::ExitStatus, Duration) {
        let started = Instant::now();
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return (st, started.elapsed());
            }
            assert!(
                started.elapsed() < bound,
                "the daemon did not exit within {bound:?} of SIGTERM; log:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// One HTTP/1.1 request on a new connection; the status and the JSON body.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, Value) {
    let raw = raw_request(addr, method, path, headers, body);
    parse(&raw)
}

fn raw_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> String {
    let mut s = TcpStream::connect_timeout(&addr, BOUND).unwrap();
    s.set_read_timeout(Some(BOUND)).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

fn parse(raw: &str) -> (u16, Value) {
    let code = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {raw:?}"));
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (code, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Puts a FIFO at `path` atomically (made beside it, renamed over it).
fn fifo_at(path: &Path) {
    let tmp = path.with_extension(format!("fifo-{}", now_nanos()));
    assert!(Command::new("mkfifo").arg(&tmp).status().unwrap().success());
    std::fs::rename(&tmp, path).unwrap();
}

fn rejections(s: &Value) -> Vec<(String, String)> {
    s["rejections"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    (
                        r["file"].as_str().unwrap_or("").to_string(),
                        r["reason"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn fifo_refused(s: &Value, file: &str, path: &Path) -> bool {
    let want = format!(
        "{} is a FIFO, not a regular file; replace it with",
        path.display()
    );
    rejections(s)
        .iter()
        .any(|(f, r)| f == file && r.contains(&want))
}

/// Opens `GET /v1/events` and reads until `pred` holds on what came so far.
fn events_until(addr: SocketAddr, what: &str, pred: impl Fn(&str) -> bool) -> (TcpStream, String) {
    let mut s = TcpStream::connect_timeout(&addr, BOUND).unwrap();
    s.write_all(b"GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let text = read_until(&mut s, what, pred);
    (s, text)
}

fn read_until(s: &mut TcpStream, what: &str, pred: impl Fn(&str) -> bool) -> String {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let until = Instant::now() + BOUND;
    let mut text = String::new();
    let mut buf = [0u8; 8192];
    while !pred(&text) {
        assert!(
            Instant::now() < until,
            "timed out waiting for {what}: {text}"
        );
        match s.read(&mut buf) {
            Ok(0) => panic!("event stream closed while waiting for {what}: {text}"),
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(_) => {}
        }
    }
    text
}

fn standard_license() -> Vec<u8> {
    let v = Vendor::new();
    v.sign(&v.license(1, "standard"))
}

// ---------------------------------------------------------------------------
// 1. Special files at the watched paths.

/// A SIGTERM sent the moment the daemon announces its address (a service
/// manager stopping it right after start) stops it cleanly: the handler is
/// installed before the announcement, not when the shutdown future is
/// first polled after start-up (the daemon was killed by the signal then).
#[test]
fn sigterm_right_after_the_address_is_announced_stops_cleanly() {
    for _ in 0..5 {
        let (dir, cfg) = setup(Some(&standard_license()));
        let conf = write_config(dir.path(), &cfg, "");
        let mut d = Proc::start(dir.path(), &conf);
        let (st, _) = d.terminate(BOUND);
        assert!(st.success(), "{st:?}; log:\n{}", d.logs());
    }
}

#[test]
fn attack_fifo_at_license_path_at_startup() {
    let (dir, cfg) = setup(Some(&standard_license()));
    let conf = write_config(dir.path(), &cfg, "");
    let mut d = Proc::start(dir.path(), &conf);
    assert_eq!(d.status()["state"], "active");
    let (st, _) = d.terminate(BOUND);
    assert!(st.success());
    // Restart with a FIFO where the license was: the daemon comes up, keeps
    // the last good license (from its state database) and says why.
    fifo_at(&cfg.license);
    let started = Instant::now();
    let d = Proc::start(dir.path(), &conf);
    let s = d.status();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "start-up blocked"
    );
    assert_eq!(
        (&s["state"], &s["license_id"]),
        (&json!("active"), &json!(LICENSE_1)),
        "{s}"
    );
    assert!(fifo_refused(&s, "license", &cfg.license), "{s}");
    assert!(s["warnings"].to_string().contains("stays in force"), "{s}");
    assert_eq!(d.spend("k1").0, 200);
    let log = d.logs();
    assert!(log.contains("is a FIFO, not a regular file"), "{log}");
}

#[test]
fn attack_fifo_at_every_watched_path_at_startup_answers_and_denies() {
    let (dir, cfg) = setup(None);
    for p in [&cfg.license, &cfg.trusted_keys, &cfg.revocations] {
        fifo_at(p);
    }
    let conf = write_config(dir.path(), &cfg, "");
    let started = Instant::now();
    let d = Proc::start(dir.path(), &conf);
    let (code, h) = d.get("/healthz");
    assert_eq!((code, h), (200, json!({"ok": true})));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "start-up blocked"
    );
    assert!(!d.allowed());
    let (code, body) = d.spend("k1");
    assert_eq!((code, &body["allowed"]), (403, &json!(false)), "{body}");
    let s = d.status();
    assert_eq!(s["state"], "invalid", "{s}");
    assert!(fifo_refused(&s, "trusted_keys", &cfg.trusted_keys), "{s}");
    let reason = s["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("vendor.pub is a FIFO, not a regular file"),
        "{reason}"
    );
}

#[test]
fn attack_fifo_at_revocations_path_at_runtime() {
    let (dir, cfg) = setup(Some(&standard_license()));
    let conf = write_config(dir.path(), &cfg, "");
    let d = Proc::start(dir.path(), &conf);
    assert_eq!(d.status()["state"], "active");
    let (mut events, _) = events_until(d.addr, "first status event", |t| {
        t.contains("event: status")
    });
    fifo_at(&cfg.revocations);
    read_until(&mut events, "the rejection event", |t| {
        t.contains("event: rejected") && t.contains("is a FIFO, not a regular file")
    });
    let s = d.wait_status("revocations FIFO refused", |s| {
        fifo_refused(s, "revocations", &cfg.revocations)
    });
    assert_eq!(s["state"], "active");
    // The engine is not blocked: writes are answered, and a real list put
    // in the FIFO's place is read and applied.
    assert_eq!(d.spend("k1").0, 200);
    let v = Vendor::new();
    common::replace(
        &cfg.revocations,
        &v.revocations(1, &[(1, RevocationStatus::Suspended)]),
    );
    d.wait_status("suspension applied", |s| s["state"] == "suspended");
    assert!(!d.allowed());
    assert!(d.logs().contains("is a FIFO, not a regular file"));
}

#[test]
fn attack_fifo_at_trusted_keys_path_at_runtime() {
    let (dir, cfg) = setup(Some(&standard_license()));
    let conf = write_config(dir.path(), &cfg, "");
    let d = Proc::start(dir.path(), &conf);
    assert_eq!(d.status()["tier"], "standard");
    fifo_at(&cfg.trusted_keys);
    let s = d.wait_status("trusted keys FIFO refused", |s| {
        fifo_refused(s, "trusted_keys", &cfg.trusted_keys)
    });
    assert_eq!(s["state"], "active", "{s}");
    assert_eq!(d.spend("k1").0, 200);
    // The keys loaded earlier stay in force: an upgrade still comes in.
    let v = Vendor::new();
    common::replace(&cfg.license, &v.sign(&v.license(2, "enterprise")));
    d.wait_status("upgrade applied", |s| s["tier"] == "enterprise");
}

#[test]
fn attack_fifo_everywhere_expired_license_denied_within_one_tick() {
    let v = Vendor::new();
    let mut l = v.license(1, "standard");
    l.expires_at = now() + 3;
    l.grace = 1;
    let grace_end = l.expires_at + l.grace;
    let (dir, cfg) = setup(Some(&v.sign(&l)));
    let conf = write_config(dir.path(), &cfg, "");
    let d = Proc::start(dir.path(), &conf);
    assert!(d.allowed(), "{}", d.status());
    for p in [&cfg.license, &cfg.trusted_keys, &cfg.revocations] {
        fifo_at(p);
    }
    d.wait_status("every file refused", |s| {
        fifo_refused(s, "license", &cfg.license)
            && fifo_refused(s, "trusted_keys", &cfg.trusted_keys)
            && fifo_refused(s, "revocations", &cfg.revocations)
    });
    // Denied within one tick (200 ms) of exp + grace, give or take a second
    // of clock granularity and scheduling.
    let deadline = Duration::from_secs(grace_end) + Duration::from_millis(200 + 1000);
    loop {
        if !d.allowed() {
            break;
        }
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        assert!(
            t < deadline,
            "still allowed at {t:?}, grace ended at {grace_end}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(now() >= grace_end, "denied before the grace ended");
    let s = d.status();
    assert_eq!(s["state"], "expired", "{s}");
    let (code, body) = d.spend("late");
    assert_eq!((code, &body["allowed"]), (403, &json!(false)), "{body}");
}

#[test]
fn attack_sigterm_ends_daemon_with_fifo_at_watched_path() {
    let (dir, cfg) = setup(Some(&standard_license()));
    let conf = write_config(dir.path(), &cfg, "shutdown_timeout = \"3s\"\n");
    let mut d = Proc::start(dir.path(), &conf);
    fifo_at(&cfg.license);
    fifo_at(&cfg.revocations);
    d.wait_status("FIFO refused", |s| fifo_refused(s, "license", &cfg.license));
    // An open event stream and an idle connection do not hold the exit either.
    let (_events, _) = events_until(d.addr, "first event", |t| t.contains("event: status"));
    let _idle = TcpStream::connect(d.addr).unwrap();
    let (st, took) = d.terminate(Duration::from_secs(3) + Duration::from_millis(1500));
    assert!(st.success(), "{st:?}: {}", d.logs());
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(d.logs().contains("stopped cleanly"), "{}", d.logs());
}

// ---------------------------------------------------------------------------
// 2. Connection exhaustion.

#[test]
fn attack_idle_connection_flood_under_low_fd_limit() {
    let have = kaching_kit::rlimit::raise_nofile().unwrap_or(0);
    assert!(
        have >= 1300,
        "the test needs ~1,200 descriptors; the hard limit allows {have}"
    );
    let v = Vendor::new();
    let mut l = v.license(1, "standard");
    l.quotas.get_mut("api_calls").unwrap().limit = 1_000_000;
    let (dir, cfg) = setup(Some(&v.sign(&l)));
    let conf = write_config(dir.path(), &cfg, "");
    let d = Proc::start_with(dir.path(), &conf, true);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", d.child.id())).unwrap();
    let soft: u64 = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(soft <= 1024, "the daemon runs with {soft} descriptors");
    let mut idle = Vec::new();
    for _ in 0..1100 {
        idle.push(TcpStream::connect_timeout(&d.addr, BOUND).unwrap());
    }
    let started = Instant::now();
    assert_eq!(d.get("/healthz").0, 200);
    let (code, body) = d.spend("after-flood");
    assert_eq!(code, 200, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answers took {:?}",
        started.elapsed()
    );
    drop(idle);
}

#[test]
fn attack_slowloris_headers_are_cut_off() {
    let (dir, cfg) = setup(Some(&standard_license()));
    let conf = write_config(dir.path(), &cfg, "header_read_timeout = \"1s\"\n");
    let d = Proc::start(dir.path(), &conf);
    let mut s = TcpStream::connect(d.addr).unwrap();
    let mut writer = s.try_clone().unwrap();
    let started = Instant::now();
    // One byte every 100 ms: always active, the head never completes.
    let drip = std::thread::spawn(move || {
        for b in b"GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Drip: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if writer.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    s.set_read_timeout(Some(BOUND)).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let took = started.elapsed();
    assert!(got.is_empty(), "answered an incomplete head: {got:?}");
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(4),
        "closed after {took:?}, header_read_timeout is 1s"
    );
    let _ = drip.join();
    assert_eq!(d.get("/healthz").0, 200);
}

#[test]
fn attack_half_closed_client_gets_answer() {
    let (dir, cfg) = setup(Some(&standard_license()));
    let conf = write_config(dir.path(), &cfg, "");
    let d = Proc::start(dir.path(), &conf);
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.write_all(b"GET /v1/features/basic-search HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    s.set_read_timeout(Some(BOUND)).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (code, body) = parse(&out);
    assert_eq!((code, &body["allowed"]), (200, &json!(true)), "{out}");
}

#[test]
fn event_stream_outlives_the_request_timeout() {
    let (dir, cfg) = setup(Some(&standard_license()));
    let conf = write_config(dir.path(), &cfg, "request_timeout = \"1s\"\n");
    let d = Proc::start(dir.path(), &conf);
    let (mut s, _) = events_until(d.addr, "first event", |t| t.contains("event: status"));
    std::thread::sleep(Duration::from_millis(1800));
    let v = Vendor::new();
    common::replace(&cfg.license, &v.sign(&v.license(2, "enterprise")));
    read_until(&mut s, "the reload event past request_timeout", |t| {
        t.contains("event: reload")
    });
}

// ---------------------------------------------------------------------------
// 4. Secrets.

#[test]
fn attack_world_readable_cluster_key_refused() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, cfg) = setup(Some(&standard_license()));
    let conf = write_config(dir.path(), &cfg, "");
    let out = verifier()
        .args(["check", "--allow-development-trust", "--config"])
        .arg(&conf)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let key = cfg.state_dir.join("cluster.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    for cmd in ["check", "run"] {
        let out = verifier()
            .args([cmd, "--config"])
            .arg(&conf)
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        let want = format!(
            "cluster key {} is readable by other users (mode 644): run `chmod 600 {}`",
            key.display(),
            key.display()
        );
        assert!(err.contains(&want), "{cmd}: {err}");
    }
}

#[test]
fn attack_world_readable_token_file_warns() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, cfg) = setup(Some(&standard_license()));
    let token_file = dir.path().join("api.token");
    std::fs::write(&token_file, "0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let conf = write_config(dir.path(), &cfg, &format!("token_file = {token_file:?}\n"));
    let d = Proc::start(dir.path(), &conf);
    // Served with the token (so start-up, and its log lines, are done) ...
    let auth = [("Authorization", "Bearer 0123456789abcdef0123456789abcdef")];
    assert_eq!(request(d.addr, "GET", "/v1/status", &auth, None).0, 200);
    assert_eq!(d.get("/v1/status").0, 401);
    // ... and loudly warned about.
    let log = d.logs();
    assert!(
        log.contains("WARN")
            && log.contains(&format!(
                "API token file {} is readable by every user",
                token_file.display()
            ))
            && log.contains("chmod 640"),
        "{log}"
    );
}

// ---------------------------------------------------------------------------
// 5. Protocol edges.

#[test]
fn attack_bearer_scheme_case_insensitive() {
    let (dir, cfg) = setup(Some(&standard_license()));
    let token_file = dir.path().join("api.token");
    std::fs::write(&token_file, "0123456789abcdef0123456789abcdef").unwrap();
    let conf = write_config(dir.path(), &cfg, &format!("token_file = {token_file:?}\n"));
    let d = Proc::start(dir.path(), &conf);
    let t = "0123456789abcdef0123456789abcdef";
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let h = format!("{scheme} {t}");
        let (code, s) = request(d.addr, "GET", "/v1/status", &[("Authorization", &h)], None);
        assert_eq!((code, &s["state"]), (200, &json!("active")), "{scheme}");
    }
    for bad in [
        format!("Basic {t}"),
        format!("Bearer{t}"),
        "Bearer wrong-token-0000".into(),
    ] {
        let (code, body) = request(
            d.addr,
            "GET",
            "/v1/status",
            &[("Authorization", &bad)],
            None,
        );
        assert_eq!(
            (code, &body["error"]["code"]),
            (401, &json!("unauthorized")),
            "{bad}"
        );
    }
}

#[test]
fn attack_unknown_route_and_wrong_method_get_json_errors() {
    let (dir, cfg) = setup(Some(&standard_license()));
    let conf = write_config(dir.path(), &cfg, "");
    let d = Proc::start(dir.path(), &conf);
    for (method, path, code, err) in [
        ("GET", "/nope", 404, "not_found"),
        ("DELETE", "/v1/status", 405, "method_not_allowed"),
        ("POST", "/healthz", 405, "method_not_allowed"),
        ("GET", "/v1/usage", 405, "method_not_allowed"),
        ("POST", "/v1/events", 405, "method_not_allowed"),
    ] {
        let raw = raw_request(d.addr, method, path, &[], None);
        let (got, body) = parse(&raw);
        assert_eq!(got, code, "{method} {path}: {raw}");
        assert_eq!(body["error"]["code"], err, "{method} {path}: {raw}");
        assert!(body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        assert!(
            raw.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{raw}"
        );
    }
}

#[test]
fn attack_status_into_closed_pipe() {
    let (dir, cfg) = setup(Some(&standard_license()));
    let conf = write_config(dir.path(), &cfg, "");
    let d = Proc::start(dir.path(), &conf);
    let url = format!("http://{}", d.addr);
    for json in [true, false] {
        let mut c = verifier();
        c.args(["status", "--url", &url]);
        if json {
            c.arg("--json");
        }
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before the answer is printed (`| head -0`).
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(out.status.code(), Some(0), "json={json}: {err}");
    }
}

#[test]
fn status_url_takes_a_token_file() {
    let (dir, cfg) = setup(Some(&standard_license()));
    let token = dir.path().join("api.token");
    std::fs::write(&token, "s3cret-token-for-status\n").unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let conf = write_config(
        dir.path(),
        &cfg,
        &format!("token_file = {:?}", token.display().to_string()),
    );
    let d = Proc::start(dir.path(), &conf);
    let url = format!("http://{}", d.addr);
    // Another operator's machine: a config that names no token.
    let other = dir.path().join("other.toml");
    std::fs::write(&other, "").unwrap();
    let bare = verifier()
        .args(["status", "--url", &url])
        .env("KACHING_CONFIG", &other)
        .env_remove("KACHING_TOKEN")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bare.stderr);
    assert_ne!(bare.status.code(), Some(0), "{err}");
    assert!(err.contains("401") && err.contains("Bearer"), "{err}");
    let with = verifier()
        .args(["status", "--url", &url, "--token-file"])
        .arg(&token)
        .env("KACHING_CONFIG", &other)
        .env_remove("KACHING_TOKEN")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&with.stdout);
    assert_eq!(
        with.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&with.stderr)
    );
    assert!(out.contains("state      active"), "{out}");
}

#[test]
fn attack_check_without_config_creates_nothing() {
    if Path::new("/etc/kaching/verifier.toml").exists() {
        eprintln!("skipped: /etc/kaching/verifier.toml exists on this machine");
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let system_state = Path::new("/var/lib/kaching");
    let existed = system_state.exists();
    let out = verifier()
        .arg("check")
        .env("HOME", home.path())
        .current_dir(home.path())
        .output()
        .unwrap();
    let created = !existed && system_state.exists();
    if created {
        // This test made it: take it away again before failing.
        let _ = std::fs::remove_dir_all(system_state);
    }
    assert!(
        !created,
        "`check` without a config created {}",
        system_state.display()
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "--config",
        "KACHING_CONFIG",
        "/etc/kaching/verifier.toml",
        "default-config",
    ] {
        assert!(err.contains(want), "missing {want:?} in: {err}");
    }
    assert_eq!(std::fs::read_dir(home.path()).unwrap().count(), 0);
    // Named explicitly, the same command works as before.
    let (dir, cfg) = setup(Some(&standard_license()));
    let conf = write_config(dir.path(), &cfg, "");
    let out = verifier()
        .args(["check", "--allow-development-trust", "--config"])
        .arg(&conf)
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
}

/// One request with `host` as its `Host` header (`None`: an HTTP/1.0
/// request without one, as no browser sends).
fn host_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    host: Option<&str>,
    body: &str,
) -> String {
    let mut s = TcpStream::connect_timeout(&addr, BOUND).unwrap();
    s.set_read_timeout(Some(BOUND)).unwrap();
    let req = match host {
        Some(h) => format!(
            "{method} {path} HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
        None => format!("{method} {path} HTTP/1.0\r\n\r\n"),
    };
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn attack_dns_rebinding_host_refused_on_api() {
    let v = Vendor::new();
    let (dir, cfg) = setup(Some(&v.sign(&v.license(1, "standard"))));
    let conf = write_config(dir.path(), &cfg, "allowed_hosts = [\"bzzz-1.internal\"]\n");
    let d = Proc::start(dir.path(), &conf);
    // A page on evil.example whose name now points at 127.0.0.1: the
    // browser sends its fetches with `Host: evil.example:PORT`. Nothing is
    // read, nothing is written.
    let spend = json!({"metric": "api_calls", "amount": 5, "idempotency_key": "k"}).to_string();
    for (method, path, body) in [
        ("GET", "/v1/status", ""),
        ("GET", "/v1/license", ""),
        ("GET", "/v1/events", ""),
        ("PUT", "/v1/nodes/n1", ""),
        ("POST", "/v1/usage", spend.as_str()),
    ] {
        let raw = host_request(d.addr, method, path, Some("evil.example:7741"), body);
        let (code, answer) = parse(&raw);
        assert_eq!(code, 421, "{method} {path}: {raw}");
        assert_eq!(answer["error"]["code"], "host_not_allowed", "{raw}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("127.0.0.1") && m.contains("allowed_hosts")),
            "{raw}"
        );
    }
    let s = d.status();
    assert_eq!(s["quotas"]["api_calls"]["used"], json!(0), "{s}");
    assert_eq!(d.get("/v1/nodes").1["nodes"], json!([]));
    // A name that merely starts like a loopback or listed one is not one.
    for host in [
        "127.0.0.1.evil.example",
        "localhost.evil.example:80",
        "bzzz-1.internal.evil.example",
    ] {
        let (code, _) = parse(&host_request(d.addr, "GET", "/v1/status", Some(host), ""));
        assert_eq!(code, 421, "{host}");
    }
    // Programs keep working: loopback names with any port, the listed
    // name, and a request with no Host at all.
    for host in [
        "127.0.0.1:1",
        "localhost",
        "LOCALHOST:7741",
        "[::1]:7741",
        "bzzz-1.internal:7741",
    ] {
        let (code, _) = parse(&host_request(d.addr, "GET", "/v1/status", Some(host), ""));
        assert_eq!(code, 200, "{host}");
    }
    let (code, _) = parse(&host_request(d.addr, "GET", "/healthz", None, ""));
    assert_eq!(code, 200);
    assert!(d.logs().contains("DNS rebinding"), "{}", d.logs());
}

// ---------------------------------------------------------------------------
// 6. Process life: one daemon per state folder, signals, start-up.

/// Runs `kaching-verifier run --config conf` to its end (killed, and the
/// test failed, if it is still running after `BOUND`): exit status, stdout
/// and stderr.
fn run_to_end(dir: &Path, conf: &Path) -> (std::process::ExitStatus, String, String) {
    let out = dir.join(format!("out-{}.txt", now_nanos()));
    let err = dir.join(format!("err-{}.txt", now_nanos()));
    let mut child = verifier()
        .args(["run", "--config"])
        .arg(conf)
        .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&err).unwrap()))
        .spawn()
        .unwrap();
    let started = Instant::now();
    let st = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if started.elapsed() > BOUND {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "still running after {BOUND:?}; stdout:\n{}\nstderr:\n{}",
                std::fs::read_to_string(&out).unwrap_or_default(),
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        st,
        std::fs::read_to_string(&out).unwrap(),
        std::fs::read_to_string(&err).unwrap(),
    )
}

/// A second daemon on a state folder in use refuses to start, naming the
/// folder and the holder (usage counted by both would be lost, node leases
/// granted twice); once the first stops, the folder is free again (an OS
/// lock: nothing stale is left behind).
#[test]
fn attack_second_daemon_on_the_same_state_folder_is_refused() {
    let (dir, cfg) = setup(Some(&standard_license()));
    let conf = write_config(dir.path(), &cfg, "");
    let mut first = Proc::start(dir.path(), &conf);
    assert_eq!(first.spend("k1").0, 200);
    let (st, out, err) = run_to_end(dir.path(), &conf);
    assert!(!st.success(), "{st:?}");
    assert!(!out.contains("listening on"), "{out}");
    let pid = first.child.id().to_string();
    assert!(
        err.contains(&format!(
            "state folder {} is in use",
            cfg.state_dir.display()
        )) && err.contains(&format!("process {pid}"))
            && err.contains("Stop the other daemon first"),
        "{err}"
    );
    // The first one is unharmed.
    assert_eq!(first.spend("k2").0, 200);
    let (st, _) = first.terminate(BOUND);
    assert!(st.success(), "{st:?}");
    let d = Proc::start(dir.path(), &conf);
    assert_eq!(d.status()["quotas"]["api_calls"]["used"], json!(2));
}

/// SIGHUP (a closed terminal, a habit from other daemons) does not stop
/// the daemon: its default action would kill it in a way systemd's
/// `Restart=on-failure` takes for a clean stop, leaving every check to
/// fail closed. It is logged, and SIGTERM still stops it cleanly.
#[test]
fn attack_sighup_does_not_stop_the_daemon() {
    let (dir, cfg) = setup(Some(&standard_license()));
    let conf = write_config(dir.path(), &cfg, "");
    let mut d = Proc::start(dir.path(), &conf);
    let pid = d.child.id().to_string();
    for _ in 0..3 {
        assert!(Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success());
    }
    let until = Instant::now() + BOUND;
    while !d
        .logs()
        .contains("SIGHUP: files are watched and reloaded on change")
    {
        assert!(Instant::now() < until, "no SIGHUP line; log:\n{}", d.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(d.child.try_wait().unwrap().is_none(), "{}", d.logs());
    assert_eq!(d.get("/healthz"), (200, json!({"ok": true})));
    let (st, _) = d.terminate(BOUND);
    assert!(st.success(), "{st:?}; log:\n{}", d.logs());
}

/// The readiness line (`listening on ADDR`) appears only once the daemon
/// serves: a start refused for a missing state database never printed it,
/// so a script waiting for it does not take a failed start for a started
/// daemon.
#[test]
fn a_start_that_fails_never_announces_its_address() {
    let (dir, cfg) = setup(Some(&standard_license()));
    let conf = write_config(dir.path(), &cfg, "");
    let mut d = Proc::start(dir.path(), &conf);
    assert!(d.terminate(BOUND).0.success());
    std::fs::remove_file(cfg.state_dir.join("state.db")).unwrap();
    let (st, out, err) = run_to_end(dir.path(), &conf);
    assert!(!st.success(), "{st:?}");
    assert!(err.contains("is missing"), "{err}");
    assert!(!out.contains("listening on"), "stdout: {out}");
}

/// Starts a daemon, spends once, lets `lose` do something to `state.db`,
/// and checks what follows: the next tick warns in status, every write
/// (usage, lease, upgrade request) is refused with 503
/// `state_database_lost` and nothing is counted, reads still answer, and
/// the error is logged once.
fn writes_refused_once_state_db_is(how: &str, lose: impl FnOnce(&Path)) {
    let (dir, cfg) = setup(Some(&standard_license()));
    let conf = write_config(dir.path(), &cfg, "");
    let d = Proc::start(dir.path(), &conf);
    assert_eq!(d.spend("before").0, 200);
    let db = cfg.state_dir.join("state.db");
    lose(&db);
    let s = d.wait_status("the lost state database in the warnings", |s| {
        s["warnings"].to_string().contains("state database")
    });
    let warning = s["warnings"].to_string();
    assert!(
        warning.contains(&format!("{} {how} while the daemon ran", db.display()))
            && warning.contains("restore it and restart"),
        "{s}"
    );
    let (code, body) = d.spend("after");
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["error"]["code"], "state_database_lost", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("restore it and restart"),
        "{body}"
    );
    let (code, body) = request(d.addr, "PUT", "/v1/nodes/n1", &[], None);
    assert_eq!(
        (code, &body["error"]["code"]),
        (503, &json!("state_database_lost"))
    );
    let upgrade = json!({"requested_tier": "enterprise", "message": "more"}).to_string();
    let (code, body) = request(d.addr, "POST", "/v1/upgrade-requests", &[], Some(&upgrade));
    assert_eq!(
        (code, &body["error"]["code"]),
        (503, &json!("state_database_lost"))
    );
    // Reads answer from memory; the one acknowledged spend is all that counted.
    assert!(d.allowed());
    let s = d.status();
    assert_eq!(s["quotas"]["api_calls"]["used"], 1, "{s}");
    // Ticks go on (the evaluation time moves on): still one error line.
    let seen = s["evaluated_at"].clone();
    d.wait_status("a later tick", |s| s["evaluated_at"] != seen);
    let logged = d
        .logs()
        .matches(&format!("{how} while the daemon ran"))
        .count();
    assert_eq!(logged, 1, "log:\n{}", d.logs());
}

/// Attack (or an operator's slip): `state.db` deleted under the running
/// daemon. Writes would be acknowledged into the unlinked file and lost
/// (the next start refuses a missing database): the tick sees it, and
/// writes are refused with 503 `state_database_lost` instead.
#[test]
fn attack_state_db_deleted_under_running_daemon_refuses_writes() {
    writes_refused_once_state_db_is("was deleted", |db| {
        std::fs::remove_file(db).unwrap();
    });
}

/// The same with `state.db` replaced (another file renamed over it, e.g. an
/// old backup restored under the running daemon).
#[test]
fn attack_state_db_replaced_under_running_daemon_refuses_writes() {
    writes_refused_once_state_db_is("was replaced by another file", |db| {
        let copy = db.with_extension("restored");
        std::fs::copy(db, &copy).unwrap();
        std::fs::rename(&copy, db).unwrap();
    });
}
