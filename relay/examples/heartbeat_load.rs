//! Bounded loopback load for the relay: N clusters activate, then heartbeat
//! B rounds each. Prints heartbeats/s, latency percentiles, the relay's CPU
//! time per heartbeat against the floor measured in the same run (open and
//! verify one heartbeat, sign one answer) and the part of it spent in the
//! SQLite writer thread (`relay-writer`: statements, commit, fsync) and
//! how many writes each commit carried (from `/metrics`), the
//! relay's CPU time per bare
//! HTTP request (`GET /healthz`, as many as one round's heartbeats: what
//! HTTP alone costs), the relay's RSS and the database size.
//!
//! ```text
//! cargo build --release -p kaching-relay --bins --examples
//! target/release/examples/heartbeat_load --clusters 10000 --beats 10 --concurrency 64
//! ```
//!
//! With `--postgres postgres://user:pw@host/db` it creates a fresh database
//! on that server, runs `--replicas N` relays on it (default 1) and spreads
//! the heartbeats over them round-robin; CPU is then the sum over the
//! replicas, and the database size is PostgreSQL's (`pg_database_size`).
//!
//! It starts `kaching-relay serve` (next to this example's directory, or
//! `--relay-bin`) on 127.0.0.1:0 with a temporary data directory, signs every
//! license, activation request and heartbeat in-process with test keys, and
//! kills the relay at the end. Heartbeats of a round are signed before the
//! round's clock starts, so the figures are the relay's, plus the HTTP client
//! running on the same cores.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use kaching_core::cluster::ActivationRequest;
use kaching_core::heartbeat::{verify_heartbeat, Heartbeat, RelayTime};

use kaching_core::{armor, cluster_id, DocKind, LicenseId, SecretKey};
use support::percentile;

mod support;

struct Args {
    clusters: u32,
    beats: u64,
    concurrency: usize,
    relay_bin: PathBuf,
    postgres: Option<String>,
    replicas: usize,
}

fn args() -> Args {
    let mut a = Args {
        clusters: 1000,
        beats: 10,
        concurrency: 64,
        relay_bin: support::default_relay_bin(),
        postgres: None,
        replicas: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().unwrap_or_default();
        match flag.as_str() {
            "--clusters" => a.clusters = v.parse().expect("--clusters N"),
            "--beats" => a.beats = v.parse().expect("--beats N"),
            "--concurrency" => a.concurrency = v.parse().expect("--concurrency N"),
            "--relay-bin" => a.relay_bin = PathBuf::from(v),
            "--postgres" => a.postgres = Some(v),
            "--replicas" => a.replicas = v.parse().expect("--replicas N"),
            _ => panic!(
                "unknown flag {flag}: use --clusters --beats --concurrency --relay-bin --postgres --replicas"
            ),
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

/// The floor a heartbeat cannot go below, measured here in one thread: open
/// the signed heartbeat (COSE decode, `verify_strict`) and sign the answer.
fn floor_us(key: &SecretKey, relay: &SecretKey) -> (f64, f64) {
    let body = Heartbeat {
        license_id: license_id(0),
        cluster_id: cluster_id(&key.public()),
        seq: 1,
        time: now(),
        state: "active".into(),
        active_nodes: 3,
        quotas: BTreeMap::from([("api_calls".to_string(), 10)]),
        verifier_version: "bench".into(),
        upgrade_requests: Vec::new(),
        deactivate: false,
        chain: None,
    }
    .sign(key);
    // The fastest of 7 batches: the machine is shared, and the floor is what
    // the work costs when nothing else runs.
    let best = |f: &dyn Fn()| {
        (0..7)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..300 {
                    f();
                }
                t.elapsed().as_secs_f64() * 1e6 / 300.0
            })
            .fold(f64::INFINITY, f64::min)
    };
    let verify = best(&|| {
        std::hint::black_box(verify_heartbeat(std::hint::black_box(&body)).unwrap());
    });
    let answer = RelayTime {
        time: now(),
        revocation_version: 0,
        cluster_id: Some(cluster_id(&key.public())),
        seq: Some(1),
        message: None,
    };
    let sign = best(&|| {
        std::hint::black_box(std::hint::black_box(&answer).sign(relay));
    });
    (verify, sign)
}

#[tokio::main]
async fn main() {
    let a = args();
    let vendor = SecretKey::from_seed(&[0xbe; 32]);
    let pg = match &a.postgres {
        Some(server) => Some(support::PgBench::create(server).await),
        None => None,
    };
    // Public metrics: the client reads the writer's commit counters.
    let extra = pg
        .as_ref()
        .map(|p| format!("database = {:?}\n", p.url))
        .unwrap_or_default()
        + "public_metrics = true\n";
    let mut relays = Vec::new();
    for _ in 0..a.replicas.max(1) {
        relays.push(support::Relay::start(&a.relay_bin, &vendor, &extra).await);
    }
    let pids: Vec<u32> = relays.iter().map(|r| r.pid).collect();
    let addrs: Vec<String> = relays.iter().map(|r| r.addr.clone()).collect();
    let addr = addrs[0].clone();
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
            let lic = armor::armor(
                DocKind::License,
                &support::license(i, license_id(i)).sign(&vendor),
            );
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

    // Heartbeat rounds, spread over the replicas.
    let hb_urls: Vec<String> = addrs
        .iter()
        .map(|a| format!("http://{a}/v1/heartbeat"))
        .collect();
    let mut lat: Vec<u32> = Vec::with_capacity((a.clusters as u64 * a.beats) as usize);
    let mut busy = Duration::ZERO;
    let mut errors = 0usize;
    let cpu_all = || pids.iter().map(|p| support::cpu_secs(*p)).sum::<f64>();
    let cpu0 = cpu_all();
    let writer_all = || {
        pids.iter()
            .map(|p| support::thread_cpu_secs(*p, "relay-writer"))
            .sum::<f64>()
    };
    let writer0 = writer_all();
    let commits0 = commits(&http, &addrs).await;
    let data = relays[0].data.clone();
    let mut db_after_first = 0;
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
                    chain: None,
                }
                .sign(key)
            })
            .collect();
        let start = Instant::now();
        let results: Vec<(bool, u32)> = stream::iter(bodies.into_iter().enumerate())
            .map(|(i, body)| {
                let (http, url) = (http.clone(), hb_urls[i % hb_urls.len()].clone());
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
        if seq == 1 {
            // Outside the timed rounds; the relay's CPU is counted per process.
            db_after_first = db_bytes(pg.as_ref(), &data).await;
        }
        for (ok, us) in results {
            if ok {
                lat.push(us);
            } else {
                errors += 1;
            }
        }
    }
    let cpu = cpu_all() - cpu0;
    let writer_cpu = writer_all() - writer0;
    let commits1 = commits(&http, &addrs).await;
    let per_commit = match (commits0, commits1) {
        (Some((c0, w0)), Some((c1, w1))) => format!("{:.1}", (w1 - w0) / (c1 - c0).max(1.0)),
        _ => "-".into(),
    };
    // What HTTP alone costs the relay: as many `GET /healthz` as heartbeats
    // in one round, same connections and concurrency, no body, no signature,
    // no database.
    let health_urls: Vec<String> = addrs
        .iter()
        .map(|a| format!("http://{a}/healthz"))
        .collect();
    let cpu_h0 = cpu_all();
    let health_ok = stream::iter(0..a.clusters as usize)
        .map(|i| {
            let (http, url) = (http.clone(), health_urls[i % health_urls.len()].clone());
            async move { matches!(http.get(url).send().await, Ok(r) if r.status() == 200) }
        })
        .buffer_unordered(a.concurrency)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    let http_us = (cpu_all() - cpu_h0) * 1e6 / health_ok.max(1) as f64;
    lat.sort_unstable();
    let total = lat.len();
    let (verify, sign) = floor_us(&keys[0], &SecretKey::from_seed(&[0x5e; 32]));
    let floor = verify + sign;
    let per_beat = cpu * 1e6 / total.max(1) as f64;
    let writer_per_beat = writer_cpu * 1e6 / total.max(1) as f64;
    let rss = relays[0].status("VmRSS:");
    let hwm = relays[0].status("VmHWM:");
    let db_end = db_bytes(pg.as_ref(), &data).await;
    let db_mib = db_end as f64 / (1024.0 * 1024.0);
    let per_cluster = |b: u64| b as f64 / f64::from(a.clusters.max(1));
    for r in relays {
        r.stop().await;
    }
    if let Some(p) = pg {
        p.drop_database().await;
    }
    println!(
        "backend={} replicas={} clusters={} beats={} concurrency={} | activations/s={:.0} | heartbeats ok={} errors={} | heartbeats/s={:.0} | p50={:.2}ms p99={:.2}ms max={:.2}ms | relay CPU/heartbeat={:.0}us floor(open+verify {:.0}us + sign {:.0}us)={:.0}us ratio={:.2} | of which writer thread={:.0}us | writes/commit={} | relay CPU/GET /healthz={:.0}us | relay RSS={} peak={} | db={:.1} MiB | db bytes/cluster after beat 1={:.0} after beat {}={:.0}",
        if a.postgres.is_some() { "postgres" } else { "sqlite" },
        a.replicas.max(1),
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
        per_beat,
        verify,
        sign,
        floor,
        per_beat / floor,
        writer_per_beat,
        per_commit,
        http_us,
        rss,
        hwm,
        db_mib,
        per_cluster(db_after_first),
        a.beats,
        per_cluster(db_end)
    );
}

/// `(commits, writes)` the relays' writers have committed, summed over
/// the replicas (`kaching_relay_commits_total`, `..._committed_writes_total`);
/// `None` from a relay too old to export them.
async fn commits(http: &reqwest::Client, addrs: &[String]) -> Option<(f64, f64)> {
    let mut sum = (0.0, 0.0);
    for a in addrs {
        let text = http
            .get(format!("http://{a}/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let get = |name: &str| -> Option<f64> {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        };
        sum.0 += get(kaching_relay::metrics::COMMITS)?;
        sum.1 += get(kaching_relay::metrics::COMMITTED_WRITES)?;
    }
    Some(sum)
}

/// The database's stored bytes: PostgreSQL's `pg_database_size`; for
/// SQLite, after a checkpoint, the file's pages in use (free pages left
/// by deletes are not data).
async fn db_bytes(pg: Option<&support::PgBench>, data: &std::path::Path) -> u64 {
    if let Some(p) = pg {
        return p.size().await;
    }
    let c = rusqlite::Connection::open(data.join("relay.db")).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    let _ = c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    let pragma = |p: &str| -> u64 {
        c.query_row(&format!("PRAGMA {p}"), [], |r| r.get(0))
            .unwrap()
    };
    (pragma("page_count") - pragma("freelist_count")) * pragma("page_size")
}
