//! The binary: `check` exit codes per state, `default-config`, the
//! air-gapped documents, and kill -9 during a burst of usage writes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use kaching_core::cluster::{verify_activation_request, verify_usage_report};
use kaching_core::revocation::RevocationStatus;
use kaching_testkit::wait_until;
use kaching_verifier::state::Db;
use kaching_verifier::Config;
use serde_json::{json, Value};

fn verifier() -> Command {
    verifier_cmd("warn")
}

fn check(dir: &Path, cfg: &Config) -> (i32, Value) {
    let conf = write_config(dir, cfg, "");
    let out = verifier()
        .args(["check", "--allow-development-trust", "--json", "--config"])
        .arg(&conf)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), v)
}

/// `kaching-verifier check` (plain text) over `dir`'s configuration: the
/// whole output, for tests that read its error.
fn check_plain(dir: &Path, cfg: &Config) -> std::process::Output {
    let conf = write_config(dir, cfg, "");
    verifier()
        .args(["check", "--allow-development-trust", "--config"])
        .arg(&conf)
        .output()
        .unwrap()
}

/// `kaching-verifier activation-request` over the configuration `conf`
/// (run in `cwd` when given), written to `out_file`: the request, verified.
fn activation_request(
    conf: &Path,
    cwd: Option<&Path>,
    out_file: &Path,
) -> kaching_core::cluster::SelfSigned<kaching_core::cluster::ActivationRequest> {
    let mut cmd = verifier();
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    let out = cmd
        .args(["activation-request", "--config"])
        .arg(conf)
        .arg("--out")
        .arg(out_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    verify_activation_request(&std::fs::read(out_file).unwrap()).unwrap()
}

fn check_license(l: Option<Vec<u8>>) -> (i32, Value) {
    let (dir, cfg) = setup(l.as_deref());
    check(dir.path(), &cfg)
}

#[test]
fn check_exit_codes_follow_the_state() {
    let v = Vendor::new();
    assert_eq!(check_license(None).0, 10, "unlicensed");
    let (code, s) = check_license(Some(v.sign(&v.license(1, "standard"))));
    assert_eq!((code, s["state"].as_str()), (0, Some("active")));
    assert_eq!(check_license(Some(b"garbage".to_vec())).0, 10, "invalid");
    let mut l = v.license(1, "standard");
    l.expires_at = now() - 30 * DAY;
    l.issued_at = now() - 400 * DAY;
    l.not_before = l.issued_at;
    assert_eq!(check_license(Some(v.sign(&l))).0, 13, "expired");
    let mut l = v.license(1, "standard");
    l.expires_at = now() - DAY;
    l.issued_at = now() - 400 * DAY;
    l.not_before = l.issued_at;
    assert_eq!(check_license(Some(v.sign(&l))).0, 0, "grace is usable");
    let mut l = v.license(1, "standard");
    l.not_before = now() + 10 * DAY;
    assert_eq!(check_license(Some(v.sign(&l))).0, 14, "not yet valid");
    // A connected license that has never reached a relay, issued two days ago
    // with one day of offline grace: overdue.
    let mut l = v.license(1, "standard");
    l.issued_at = now() - 2 * DAY;
    l.not_before = l.issued_at;
    l.heartbeat = Some(kaching_core::license::HeartbeatPolicy {
        interval: 60,
        offline_grace: DAY,
    });
    assert_eq!(check_license(Some(v.sign(&l))).0, 16, "overdue");

    for (status, code) in [
        (RevocationStatus::Revoked, 11),
        (RevocationStatus::Suspended, 12),
    ] {
        let (dir, cfg) = setup(Some(&v.sign(&v.license(1, "standard"))));
        std::fs::write(&cfg.revocations, v.revocations(1, &[(1, status)])).unwrap();
        assert_eq!(check(dir.path(), &cfg).0, code, "{status:?}");
    }

    // Clock tampering: a trusted-time mark ten days ahead of the wall clock.
    let (dir, cfg) = setup(Some(&v.sign(&v.license(1, "standard"))));
    assert_eq!(check(dir.path(), &cfg).0, 0);
    Db::open(&cfg.state_dir, false)
        .unwrap()
        .raise_trusted_time(now() + 10 * DAY)
        .unwrap();
    assert_eq!(check(dir.path(), &cfg).0, 15, "clock tampered");
}

/// The state folder's files with a hash of their bytes and their mtime
/// (SQLite's `-wal`/`-shm` side files aside: a reader maps them, and they
/// hold nothing committed).
fn state_files(dir: &Path) -> Vec<(String, u64, std::time::SystemTime)> {
    use std::hash::{Hash, Hasher};
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            !p.to_string_lossy().ends_with("-shm") && !p.to_string_lossy().ends_with("-wal")
        })
        .map(|p| {
            let meta = std::fs::metadata(&p).unwrap();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let mut h = std::collections::hash_map::DefaultHasher::new();
            std::fs::read(&p).unwrap().hash(&mut h);
            (name, h.finish(), meta.modified().unwrap())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn check_reports_what_a_start_would_enforce_and_writes_nothing() {
    let v = Vendor::new();
    let (dir, cfg) = setup(Some(&v.sign(&v.license(1, "standard"))));
    // The first check sets the state folder up, as a first start does.
    assert_eq!(check(dir.path(), &cfg).0, 0);
    let before = state_files(&cfg.state_dir);
    assert!(before.iter().any(|(n, _, _)| n == "state.db"), "{before:?}");
    // A suspension arrives as a file: check reports it from the file...
    std::fs::write(
        &cfg.revocations,
        v.revocations(1, &[(1, RevocationStatus::Suspended)]),
    )
    .unwrap();
    let (code, s) = check(dir.path(), &cfg);
    assert_eq!((code, s["state"].as_str()), (12, Some("suspended")));
    // ...the same on every run, and the state folder is untouched: no
    // trusted-time mark, no list, no license recorded by a check.
    assert_eq!(check(dir.path(), &cfg).0, 12);
    assert_eq!(state_files(&cfg.state_dir), before);
    // What the state database holds counts as at a start: a list recorded
    // there (by the daemon) stays in force when the file is rolled back.
    Db::open(&cfg.state_dir, false)
        .unwrap()
        .store_revocations(2, &v.revocations(2, &[(1, RevocationStatus::Revoked)]))
        .unwrap();
    let (code, s) = check(dir.path(), &cfg);
    assert_eq!((code, s["state"].as_str()), (11, Some("revoked")));
    assert!(
        s["warnings"]
            .to_string()
            .contains("revocations file refused"),
        "{s}"
    );
}

/// Attack (or a restore mistake): the cluster key file is replaced by
/// another cluster's key while the state database still records the first
/// key's cluster id. `check` takes a recorded id only for the key it was
/// derived from, so it reports the new key's id and refuses a license
/// bound to the first cluster, as a start would.
#[test]
fn attack_swapped_cluster_key_check_reports_the_new_keys_cluster() {
    let v = Vendor::new();
    let (dir, cfg) = setup(None);
    let (_, s) = check(dir.path(), &cfg); // a first check sets the state up and records the id
    let first = s["cluster_id"].as_str().unwrap().to_string();
    let mut l = v.license(1, "standard");
    l.cluster = Some(first.clone());
    std::fs::write(&cfg.license, v.sign(&l)).unwrap();
    let (code, s) = check(dir.path(), &cfg);
    assert_eq!((code, s["cluster_id"].as_str()), (0, Some(first.as_str())));

    let (other, other_cfg) = setup(None);
    let (_, s) = check(other.path(), &other_cfg);
    let second = s["cluster_id"].as_str().unwrap().to_string();
    assert_ne!(first, second);
    std::fs::copy(
        other_cfg.state_dir.join("cluster.key"),
        cfg.state_dir.join("cluster.key"),
    )
    .unwrap();
    let (code, s) = check(dir.path(), &cfg);
    assert_eq!(s["cluster_id"].as_str(), Some(second.as_str()), "{s}");
    assert_eq!(code, 10, "{s}");
    assert!(
        s["reason"].as_str().unwrap().contains("bound to cluster"),
        "{s}"
    );
}

/// Attack: the customer writes another cluster's id into the state
/// database's record, with the fingerprint of its own key. The daemon never
/// takes the record (a start derives the id from the key and rewrites the
/// record), so a license bound to the other cluster stays refused where it
/// is enforced; only `check` runs before that start would print the planted
/// id (docs/threat-model.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_planted_cluster_id_record_is_not_taken_by_a_start() {
    use kaching_verifier::identity::{Identity, RecordedId};
    let v = Vendor::new();
    let (dir, cfg) = setup(None);
    let (_, s) = check(dir.path(), &cfg);
    let own = s["cluster_id"].as_str().unwrap().to_string();
    let planted = "othercluster2345".to_string();
    let fingerprint = Identity::load_or_create(&cfg.state_dir, false)
        .unwrap()
        .record()
        .fingerprint;
    Db::open(&cfg.state_dir, false)
        .unwrap()
        .record_cluster_id(&RecordedId {
            fingerprint,
            cluster_id: planted.clone(),
        })
        .unwrap();
    let mut l = v.license(1, "standard");
    l.cluster = Some(planted.clone());
    std::fs::write(&cfg.license, v.sign(&l)).unwrap();
    let d = Daemon::start(cfg.clone()).await;
    let status = d.status().await;
    assert_eq!(
        status["cluster_id"].as_str(),
        Some(own.as_str()),
        "{status}"
    );
    assert!(
        status["reason"].to_string().contains("bound to cluster"),
        "{status}"
    );
    d.stop().await;
    // The start put the record right: check reports the key's own id too.
    let (code, s) = {
        let (dir, cfg) = (dir.path().to_path_buf(), cfg.clone());
        tokio::task::spawn_blocking(move || check(&dir, &cfg))
            .await
            .unwrap()
    };
    assert_eq!(
        (code, s["cluster_id"].as_str()),
        (10, Some(own.as_str())),
        "{s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reads_what_a_running_daemon_committed() {
    let v = Vendor::new();
    let (dir, cfg) = setup(Some(&v.sign(&v.license(1, "standard"))));
    let d = Daemon::start(cfg.clone()).await;
    assert_eq!(d.spend("api_calls", 7, "a").await.0, 200);
    // The daemon holds the database open (WAL): check reads the committed
    // spend through it, without waiting for a checkpoint.
    let (code, s) = {
        let (dir, cfg) = (dir.path().to_path_buf(), cfg.clone());
        tokio::task::spawn_blocking(move || check(&dir, &cfg))
            .await
            .unwrap()
    };
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["quotas"]["api_calls"]["used"], json!(7), "{s}");
    assert_eq!(d.spend("api_calls", 1, "b").await.0, 200);
    d.stop().await;
}

#[test]
fn missing_state_database_is_an_error_not_a_reset() {
    let v = Vendor::new();
    let (dir, cfg) = setup(Some(&v.sign(&v.license(1, "standard"))));
    assert_eq!(check(dir.path(), &cfg).0, 0);
    std::fs::remove_file(cfg.state_dir.join("state.db")).unwrap();
    let out = check_plain(dir.path(), &cfg);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("missing") && err.contains("Restore it from a backup"),
        "{err}"
    );
}

/// A page of the state database that `check` itself never reads (the
/// idempotency table: only usage writes look there) is damaged. A start
/// refuses such a database (SQLite's quick check), so `check` must too:
/// it answers "what would a start enforce", and a verdict from a database
/// a start would refuse would be a false all-clear.
#[test]
fn attack_corrupt_state_page_check_never_reads_fails_check_as_a_start_does() {
    let v = Vendor::new();
    let (dir, cfg) = setup(Some(&v.sign(&v.license(1, "standard"))));
    assert_eq!(check(dir.path(), &cfg).0, 0);
    let db = cfg.state_dir.join("state.db");
    let (root, page_size) = {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        let root: i64 = c
            .query_row(
                "SELECT rootpage FROM sqlite_master WHERE name = 'idempotency'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
        (
            usize::try_from(root).unwrap(),
            usize::try_from(size).unwrap(),
        )
    };
    let mut bytes = std::fs::read(&db).unwrap();
    // The table's root page: its b-tree page type becomes one SQLite
    // does not know.
    bytes[(root - 1) * page_size] = 0xff;
    std::fs::write(&db, &bytes).unwrap();

    let out = check_plain(dir.path(), &cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("restore it from a backup"), "{err}");
    assert!(
        String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "no verdict"
    );
    // A start refuses it the same way, and neither repairs nor resets it.
    let start = Db::open(&cfg.state_dir, false).err().unwrap().to_string();
    assert!(start.contains("restore it from a backup"), "{start}");
    assert_eq!(std::fs::read(&db).unwrap(), bytes);
}

#[test]
fn default_config_prints_the_documented_defaults() {
    let out = verifier().arg("default-config").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let c = Config::parse(&text, None, []).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:7741");
}

#[test]
fn activation_request_is_signed_by_the_cluster_key() {
    let (dir, cfg) = setup(None);
    let conf = write_config(dir.path(), &cfg, "");
    let req = activation_request(&conf, None, &dir.path().join("activation.req"));
    let (_, s) = check(dir.path(), &cfg);
    assert_eq!(req.doc.cluster_id, s["cluster_id"].as_str().unwrap());
    // A license bound to that cluster is in force here; another cluster refuses it.
    let v = Vendor::new();
    let mut l = v.license(3, "standard");
    l.cluster = Some(req.doc.cluster_id.clone());
    std::fs::write(&cfg.license, v.sign(&l)).unwrap();
    assert_eq!(check(dir.path(), &cfg).0, 0);
    let (other, other_cfg) = setup(Some(&v.sign(&l)));
    let (code, s) = check(other.path(), &other_cfg);
    assert_eq!(code, 10);
    assert!(
        s["reason"].as_str().unwrap().contains("bound to cluster"),
        "{s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_report_carries_everything_until_a_receipt_clears_it() {
    let v = Vendor::new();
    let (dir, cfg) = setup(Some(&v.sign(&v.license(1, "standard"))));
    let d = Daemon::start(cfg.clone()).await;
    assert_eq!(d.spend("api_calls", 7, "a").await.0, 200);
    assert_eq!(d.put_node("n1").await.0, 200);
    assert_eq!(d.put_node("n2").await.0, 200);
    let r = d
        .http
        .post(format!("{}/v1/upgrade-requests", d.url))
        .json(&json!({"requested_tier": "enterprise", "message": "more nodes"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    d.stop().await;
    let conf = write_config(dir.path(), &cfg, "");
    let out_file = dir.path().join("usage.report");
    let usage_report = || {
        verifier()
            .args(["usage-report", "--config"])
            .arg(&conf)
            .arg("--out")
            .arg(&out_file)
            .output()
            .unwrap()
    };
    let out = usage_report();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rep = verify_usage_report(&std::fs::read(&out_file).unwrap()).unwrap();
    assert_eq!(
        rep.doc.license_id.to_string(),
        "01010101-0101-0101-0101-010101010101"
    );
    let api: u64 = rep.doc.counters["api_calls"].values().sum();
    assert_eq!(api, 7);
    assert_eq!(rep.doc.peak_nodes, 2);
    assert_eq!(rep.doc.upgrade_requests.len(), 1);
    assert_eq!(
        rep.doc.upgrade_requests[0].request.requested_tier,
        "enterprise"
    );

    // The vendor's receipt, imported with `receipt import`, clears the
    // request; a second import says so and changes nothing.
    let receipt = kaching_core::receipt::Receipt::for_report(
        &rep.doc,
        kaching_core::cluster::report_hash(&rep.bytes),
        rep.doc.period_end,
    )
    .unwrap();
    let receipt_file = dir.path().join("usage.receipt.asc");
    std::fs::write(
        &receipt_file,
        kaching_core::armor::armor(kaching_core::DocKind::Receipt, &receipt.sign(&v.key)),
    )
    .unwrap();
    let import = || {
        verifier()
            .args(["receipt", "import", "--config"])
            .arg(&conf)
            .arg(&receipt_file)
            .output()
            .unwrap()
    };
    let out = import();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .starts_with("receipt for usage report 1 applied: 1 upgrade request(s)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = import();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "receipt for usage report 1 was imported before; nothing changed\n"
    );
    let out = usage_report();
    assert!(out.status.success());
    let next = verify_usage_report(&std::fs::read(&out_file).unwrap()).unwrap();
    assert!(next.doc.upgrade_requests.is_empty());
    let chain = next.doc.chain.unwrap();
    assert_eq!((chain.seq, chain.acked), (2, 1));
}

/// kill -9 in the middle of a burst of usage writes: every increment that
/// was acknowledged is still counted after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_usage_burst_loses_no_acknowledged_increment() {
    let v = Vendor::new();
    let mut l = v.license(1, "standard");
    l.quotas.get_mut("api_calls").unwrap().limit = 1_000_000;
    let (dir, mut cfg) = setup(Some(&v.sign(&l)));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    cfg.listen = format!("127.0.0.1:{port}").parse().unwrap();
    let conf = write_config(dir.path(), &cfg, "");
    let spawn = || {
        verifier()
            .args(["run", "--config"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let up = |http: reqwest::Client, url: String| async move {
        wait_until("daemon up", || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                http.get(format!("{url}/healthz"))
                    .send()
                    .await
                    .ok()
                    .map(|_| ())
            }
        })
        .await
    };
    let mut child = spawn();
    up(http.clone(), url.clone()).await;

    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, u64)>::new()));
    let mut writers = Vec::new();
    // Sixteen writers at once: their writes share commits (group commit).
    const WRITERS: u64 = 16;
    for w in 0..WRITERS {
        let (http, url, acked) = (http.clone(), url.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for i in 0..200u64 {
                let key = format!("w{w}-{i}");
                let amount = 1 + (i % 5);
                let body = json!({"metric": "api_calls", "amount": amount, "idempotency_key": key});
                match http
                    .post(format!("{url}/v1/usage"))
                    .json(&body)
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => acked.lock().unwrap().push((key, amount)),
                    _ => break,
                }
            }
        }));
    }
    wait_until("some writes acknowledged", || {
        let n = acked.lock().unwrap().len();
        async move { (n >= 100).then_some(()) }
    })
    .await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().unwrap().clone();
    let acked_sum: u64 = acked.iter().map(|(_, a)| a).sum();

    let mut child = spawn();
    up(http.clone(), url.clone()).await;
    let s: Value = http
        .get(format!("{url}/v1/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let used = s["quotas"]["api_calls"]["used"].as_u64().unwrap();
    // In flight at the kill: at most one unacknowledged write per writer may also have landed.
    assert!(used >= acked_sum, "used {used} < acknowledged {acked_sum}");
    assert!(
        used <= acked_sum + WRITERS * 5,
        "used {used} far above acknowledged {acked_sum}"
    );
    // Replaying acknowledged keys counts nothing twice.
    for (key, amount) in acked.iter().take(20) {
        let body = json!({"metric": "api_calls", "amount": amount, "idempotency_key": key});
        let r = http
            .post(format!("{url}/v1/usage"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.headers()
                .get("idempotent-replayed")
                .map(|v| v.to_str().unwrap()),
            Some("true")
        );
    }
    let s: Value = http
        .get(format!("{url}/v1/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(s["quotas"]["api_calls"]["used"].as_u64(), Some(used));
    // SIGTERM: a clean stop.
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let status = child.wait().unwrap();
    assert!(status.success(), "clean shutdown on SIGTERM: {status:?}");
}

#[test]
fn completions_and_man_pages_come_from_the_clap_definition() {
    let out = verifier().args(["completions", "bash"]).output().unwrap();
    assert!(out.status.success());
    let script = String::from_utf8_lossy(&out.stdout);
    assert!(script.contains("kaching-verifier") && script.contains("activation-request"));

    let dir = tempfile::tempdir().unwrap();
    let out = verifier()
        .args(["man", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for page in [
        "kaching-verifier.1",
        "kaching-verifier-run.1",
        "kaching-verifier-check.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{page}");
    }
}

#[test]
fn check_refuses_a_development_build_unless_allowed() {
    let v = Vendor::new();
    let (dir, cfg) = setup(Some(&v.sign(&v.license(1, "standard"))));
    let conf = write_config(dir.path(), &cfg, "");
    let out = verifier()
        .args(["check", "--config"])
        .arg(&conf)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("development build") && err.contains("--allow-development-trust"),
        "{err}"
    );
    assert_eq!(check(dir.path(), &cfg).0, 0);
}

fn explain(dir: &Path, cfg: &Config, args: &[&str]) -> (i32, String) {
    let conf = write_config(dir, cfg, "");
    let out = verifier()
        .arg("explain")
        .args(args)
        .arg("--config")
        .arg(&conf)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
    )
}

#[test]
fn explain_names_the_deciding_rule_for_the_license_in_force() {
    let v = Vendor::new();
    // No license at all.
    let (dir, cfg) = setup(None);
    let (code, text) = explain(dir.path(), &cfg, &[]);
    assert_eq!(code, 10);
    assert!(
        text.contains("=> license     no license installed"),
        "{text}"
    );

    // Not valid for ten more days: every earlier rule passes, not_before decides.
    let mut l = v.license(1, "standard");
    l.not_before = now() + 10 * DAY;
    let (dir, cfg) = setup(Some(&v.sign(&l)));
    let (code, text) = explain(dir.path(), &cfg, &["--feature", "analytics"]);
    assert_eq!(code, 14, "{text}");
    let rules: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("  ok ").or_else(|| l.strip_prefix("  => ")))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        rules,
        ["license", "fit", "revocation", "clock", "not_before"]
    );
    assert!(text.contains("feature analytics: denied:"), "{text}");
    assert!(text.contains("development build"), "{text}");

    // The same license asked about a date after it starts, before expiry.
    let at = kaching_core::time::rfc3339(now() + 20 * DAY);
    let (code, text) = explain(dir.path(), &cfg, &["--at", &at, "--json"]);
    assert_eq!(code, 0, "{text}");
    let e: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(e["verdict"]["state"], "active");
    assert_eq!(
        e["steps"].as_array().unwrap().last().unwrap()["rule"],
        "active"
    );

    // A time before the mark: what the daemon would say with that clock.
    let (code, text) = explain(dir.path(), &cfg, &["--at", "2020-01-01"]);
    assert_eq!(code, 15, "{text}");
    assert!(text.contains("=> clock"), "{text}");
    let (code, _) = explain(dir.path(), &cfg, &["--at", "next tuesday"]);
    assert_eq!(code, 1);
}

/// Relative paths in verifier.toml are taken from the file's folder: run
/// from another current directory, `check` reads the same license and the
/// same state folder (the same cluster id) and creates nothing where it
/// runs, and `activation-request` names the same cluster.
#[test]
fn relative_paths_in_the_config_file_resolve_against_its_folder() {
    let v = Vendor::new();
    let (dir, cfg) = setup(Some(&v.sign(&v.license(1, "standard"))));
    let conf = dir.path().join("verifier.toml");
    std::fs::write(
        &conf,
        "license = \"license.lic\"\ntrusted_keys = \"vendor.pub\"\nrevocations = \"revocations.krl\"\n\
         state_dir = \"state\"\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let check_from = |cwd: &Path| -> Value {
        let out = verifier()
            .current_dir(cwd)
            .args(["check", "--allow-development-trust", "--json", "--config"])
            .arg(&conf)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let home = check_from(dir.path());
    let id = home["cluster_id"].as_str().unwrap().to_string();
    assert!(cfg.state_dir.join("cluster.key").is_file());

    let elsewhere = tempfile::tempdir().unwrap();
    let away = check_from(elsewhere.path());
    assert_eq!(away["state"].as_str(), Some("active"), "{away}");
    assert_eq!(away["cluster_id"].as_str(), Some(id.as_str()), "{away}");
    let req = activation_request(
        &conf,
        Some(elsewhere.path()),
        &elsewhere.path().join("activation.req"),
    );
    assert_eq!(req.doc.cluster_id, id);
    assert!(
        !elsewhere.path().join("state").exists(),
        "no state folder may appear in the current directory"
    );
}

/// A port another process holds: `run` says so and what to change, instead
/// of guessing that another verifier runs.
#[test]
fn run_on_a_port_in_use_names_the_other_process_and_the_setting() {
    let v = Vendor::new();
    let (dir, mut cfg) = setup(Some(&v.sign(&v.license(1, "standard"))));
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    cfg.listen = held.local_addr().unwrap();
    let conf = write_config(dir.path(), &cfg, "");
    let out = verifier()
        .args(["run", "--config"])
        .arg(&conf)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "cannot listen on {}: another process is using it",
            cfg.listen
        )) && err.contains("set another `listen` in the config"),
        "{err}"
    );
}
