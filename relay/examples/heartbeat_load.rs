//! Bounded loopback load for the relay: N clusters activate, then heartbeat
//! B rounds each. Prints heartbeats/s, latency percentiles, the relay's RSS
//! and the database size.
//!
//! ```text
//! cargo build --release -p kaching-relay --bins --examples
//! target/release/examples/heartbeat_load --clusters 10000 --beats 10 --concurrency 64
//! ```
//!
//! It starts `kaching-relay serve` (next to this example's directory, or
//! `--relay-bin`) on 127.0.0.1:0 with a temporary data directory, signs every
//! license, activation request and heartbeat in-process with test keys, and
//! kills the relay at the end. Heartbeats of a round are signed before the
//! round's clock starts, so the figures are the relay's, plus the HTTP client
//! running on the same cores.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use kaching_core::cluster::ActivationRequest;
use kaching_core::heartbeat::Heartbeat;
use kaching_core::license::{HeartbeatPolicy, License, Limits};
use kaching_core::{armor, cluster_id, DocKind, LicenseId, SecretKey};
use tokio::io::AsyncBufReadExt;

struct Args {
    clusters: u32,
    beats: u64,
    concurrency: usize,
    relay_bin: PathBuf,
}

fn args() -> Args {
    let mut a = Args {
        clusters: 1000,
        beats: 10,
        concurrency: 64,
        relay_bin: std::env::current_exe()
            .ok()
            .and_then(|p| Some(p.parent()?.parent()?.join("kaching-relay")))
            .unwrap_or_else(|| PathBuf::from("kaching-relay")),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().unwrap_or_default();
        match flag.as_str() {
            "--clusters" => a.clusters = v.parse().expect("--clusters N"),
            "--beats" => a.beats = v.parse().expect("--beats N"),
            "--concurrency" => a.concurrency = v.parse().expect("--concurrency N"),
            "--relay-bin" => a.relay_bin = PathBuf::from(v),
            _ => panic!("unknown flag {flag}: use --clusters --beats --concurrency --relay-bin"),
        }
    }
    a
}

fn now() -> u64 {
    kaching_relay::db::now()
}

fn seed(tag: u8, i: u32) -> [u8; 32] {
    let mut s = [tag; 32];
    s[..4].copy_from_slice(&i.to_be_bytes());
    s
}

fn license_id(i: u32) -> LicenseId {
    let mut b = [0x4b; 16];
    b[..4].copy_from_slice(&i.to_be_bytes());
    LicenseId(b)
}

fn license(i: u32) -> License {
    let t = now();
    License {
        id: license_id(i),
        issuer: "bench".into(),
        customer_id: format!("c{i}"),
        customer: format!("Customer {i}"),
        audience: "bzzz".into(),
        issued_at: t - 60,
        not_before: t - 60,
        expires_at: t + 365 * 86_400,
        tier: "standard".into(),
        features: BTreeSet::from(["basic-search".to_string()]),
        limits: Limits {
            max_nodes: 10,
            max_cores: None,
        },
        quotas: BTreeMap::new(),
        grace: 0,
        overage: 0,
        cluster: None,
        heartbeat: Some(HeartbeatPolicy {
            interval: 60,
            offline_grace: 86_400,
        }),
        supersedes: None,
        degrade: Default::default(),
        report: None,
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[idx]) / 1000.0
}

fn proc_status(pid: u32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .map(|l| l[field.len()..].trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}

#[tokio::main]
async fn main() {
    let a = args();
    let vendor = SecretKey::from_seed(&[0xbe; 32]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("relay.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\nvendor_keys = \"\"\"\n{}\"\"\"\n[rate_limit]\nper_second = 0\n",
            dir.path().join("data"),
            vendor.public().to_pem()
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(&a.relay_bin)
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e} (build it with cargo build --release -p kaching-relay)",
                a.relay_bin.display()
            )
        });
    let pid = child.id().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next_line().await.unwrap().unwrap();
    let addr = line.strip_prefix("listening on ").unwrap().to_string();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let keys: Vec<SecretKey> = (0..a.clusters)
        .map(|i| SecretKey::from_seed(&seed(0xc1, i)))
        .collect();

    // Activation.
    let t0 = Instant::now();
    let act_url = format!("http://{addr}/v1/activate");
    let failures = stream::iter(0..a.clusters)
        .map(|i| {
            let (http, url, key) = (http.clone(), act_url.clone(), &keys[i as usize]);
            let lic = armor::armor(DocKind::License, &license(i).sign(&vendor));
            let req = ActivationRequest {
                cluster_id: cluster_id(&key.public()),
                cluster_key: *key.public().as_bytes(),
                hostname: format!("host{i}"),
                nodes: 3,
                created: now(),
            };
            let body = serde_json::json!({
                "license": lic,
                "activation_request": armor::armor(DocKind::ActivationRequest, &req.sign(key)),
            });
            async move {
                http.post(url)
                    .json(&body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            }
        })
        .buffer_unordered(a.concurrency)
        .filter(|r| std::future::ready(!matches!(r, Ok(200))))
        .count()
        .await;
    let act_secs = t0.elapsed().as_secs_f64();
    assert_eq!(failures, 0, "activations failed");

    // Heartbeat rounds.
    let hb_url = format!("http://{addr}/v1/heartbeat");
    let mut lat: Vec<u32> = Vec::with_capacity((a.clusters as u64 * a.beats) as usize);
    let mut busy = Duration::ZERO;
    let mut errors = 0usize;
    for seq in 1..=a.beats {
        let bodies: Vec<Vec<u8>> = (0..a.clusters)
            .map(|i| {
                let key = &keys[i as usize];
                Heartbeat {
                    license_id: license_id(i),
                    cluster_id: cluster_id(&key.public()),
                    seq,
                    time: now(),
                    state: "active".into(),
                    active_nodes: 3,
                    quotas: BTreeMap::from([("api_calls".to_string(), seq * 10)]),
                    verifier_version: "bench".into(),
                    upgrade_requests: Vec::new(),
                    deactivate: false,
                }
                .sign(key)
            })
            .collect();
        let start = Instant::now();
        let results: Vec<(bool, u32)> = stream::iter(bodies)
            .map(|body| {
                let (http, url) = (http.clone(), hb_url.clone());
                async move {
                    let t = Instant::now();
                    let ok = matches!(http.post(url).body(body).send().await, Ok(r) if r.status() == 200);
                    (ok, t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32)
                }
            })
            .buffer_unordered(a.concurrency)
            .collect()
            .await;
        busy += start.elapsed();
        for (ok, us) in results {
            if ok {
                lat.push(us);
            } else {
                errors += 1;
            }
        }
    }
    lat.sort_unstable();
    let total = lat.len();
    let rss = proc_status(pid, "VmRSS:");
    let hwm = proc_status(pid, "VmHWM:");
    let data = dir.path().join("data");
    let size = |f: &str| {
        std::fs::metadata(data.join(f))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    let db_mib = (size("relay.db") + size("relay.db-wal")) as f64 / (1024.0 * 1024.0);
    let _ = child.start_kill();
    let _ = child.wait().await;
    println!(
        "clusters={} beats={} concurrency={} | activations/s={:.0} | heartbeats ok={} errors={} | heartbeats/s={:.0} | p50={:.2}ms p99={:.2}ms max={:.2}ms | relay RSS={} peak={} | db={:.1} MiB",
        a.clusters,
        a.beats,
        a.concurrency,
        f64::from(a.clusters) / act_secs,
        total,
        errors,
        total as f64 / busy.as_secs_f64(),
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0),
        rss,
        hwm,
        db_mib
    );
}
