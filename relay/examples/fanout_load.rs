//! Bounded loopback fan-out: N clusters long-poll `GET /v1/revocations`, one
//! suspension is published, and the tool times how long each poller takes to
//! receive the new list. Prints p50/p99/max delivery latency and the relay's
//! thread count and RSS while every poll is parked.
//!
//! ```text
//! cargo build --release -p kaching-relay --bins --examples
//! target/release/examples/fanout_load --pollers 10000 --rounds 3
//! ```
//!
//! It starts `kaching-relay serve` (next to this example's directory, or
//! `--relay-bin`) on 127.0.0.1:0 with a temporary data directory, publishes
//! list version 1, opens one HTTP/1.1 connection per poller, each waiting with
//! `?after=<held>&wait=60s`, waits until the relay reports all of them parked
//! (`kaching_relay_long_polls_waiting`) or were refused (`503
//! long_polls_full`, beyond `--max-long-polls`, default the relay's own),
//! then publishes a list that suspends a license. Latency is from just before the `PUT` is sent to the moment a
//! poller has read the whole new list.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kaching_core::revocation::{RevocationEntry, RevocationList, RevocationStatus};
use kaching_core::{LicenseId, SecretKey};
use kaching_relay::tokens::Scope;
use support::percentile;

#[allow(dead_code)] // shared by the load tools; this one signs no license and reads no CPU time
mod support;

struct Args {
    pollers: usize,
    rounds: u64,
    relay_bin: PathBuf,
    /// The relay's `max_long_polls` (`None`: its default).
    max_long_polls: Option<usize>,
}

fn args() -> Args {
    let mut a = Args {
        pollers: 10_000,
        rounds: 3,
        relay_bin: support::default_relay_bin(),
        max_long_polls: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().unwrap_or_default();
        match flag.as_str() {
            "--pollers" => a.pollers = v.parse().expect("--pollers N"),
            "--rounds" => a.rounds = v.parse().expect("--rounds N"),
            "--relay-bin" => a.relay_bin = PathBuf::from(v),
            "--max-long-polls" => a.max_long_polls = Some(v.parse().expect("--max-long-polls N")),
            _ => panic!("unknown flag {flag}: use --pollers --rounds --relay-bin --max-long-polls"),
        }
    }
    a
}

fn list(version: u64, vendor: &SecretKey) -> Vec<u8> {
    let t = kaching_relay::db::now();
    RevocationList {
        issuer: "bench".into(),
        version,
        issued_at: t,
        expires: t + 86_400,
        entries: (1..version)
            .map(|i| RevocationEntry {
                id: LicenseId([i as u8; 16]),
                status: RevocationStatus::Suspended,
                reason: "fan-out bench".into(),
                time: t,
            })
            .collect(),
    }
    .sign(vendor)
}

async fn parked(http: &reqwest::Client, addr: &str) -> usize {
    let text = match http.get(format!("http://{addr}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => return 0,
    };
    text.lines()
        .find(|l| l.starts_with(kaching_relay::metrics::LONG_POLLS_WAITING))
        .and_then(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .map_or(0, |v| v as usize)
}

#[tokio::main]
async fn main() {
    let a = args();
    let vendor = SecretKey::from_seed(&[0xbe; 32]);
    // Parked polls may take at most half the connections: make room for them.
    let extra = match a.max_long_polls {
        Some(n) => format!(
            "public_metrics = true\nmax_long_polls = {n}\nmax_connections = {}\n",
            (2 * n + 2).max(16_384)
        ),
        None => "public_metrics = true\n".to_string(),
    };
    let relay = support::Relay::start(&a.relay_bin, &vendor, &extra).await;
    let addr = relay.addr.clone();
    let token = {
        let mut conn = kaching_relay::db::open_and_migrate(&relay.data.join("relay.db")).unwrap();
        kaching_relay::tokens::create(&mut conn, Scope::Publish, "bench", kaching_relay::db::now())
            .unwrap()
    };
    let control = reqwest::Client::new();
    let publish = |version: u64| {
        let (control, addr, token) = (control.clone(), addr.clone(), token.clone());
        let body = list(version, &vendor);
        async move {
            let r = control
                .put(format!("http://{addr}/v1/revocations"))
                .bearer_auth(token)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201, "publish version {version}");
        }
    };
    publish(1).await;
    // One connection per poller: the pool keeps them all.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(a.pollers)
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let mut all: Vec<u32> = Vec::new();
    for round in 1..=a.rounds {
        let held = round;
        let url = Arc::new(format!(
            "http://{addr}/v1/revocations?after={held}&wait=60s"
        ));
        // Polls the relay could not park (503 long_polls_full) end at once.
        let refused = Arc::new(AtomicUsize::new(0));
        let polls: Vec<_> = (0..a.pollers)
            .map(|_| {
                let (http, url, refused) = (http.clone(), url.clone(), refused.clone());
                tokio::spawn(async move {
                    let r = http.get(url.as_str()).send().await.ok()?;
                    let status = r.status();
                    let _ = r.bytes().await.ok()?;
                    if status == 503 {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    (status == 200).then(Instant::now)
                })
            })
            .collect();
        let park_start = Instant::now();
        loop {
            let n = parked(&control, &addr).await;
            let r = refused.load(Ordering::Relaxed);
            if n + r >= a.pollers {
                break;
            }
            assert!(
                park_start.elapsed() < Duration::from_secs(50),
                "only {n} of {} polls parked ({r} refused) after 50 s",
                a.pollers
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let park_secs = park_start.elapsed().as_secs_f64();
        let threads = relay.status("Threads:");
        let rss = relay.status("VmRSS:");
        let t0 = Instant::now();
        publish(held + 1).await;
        let publish_ms = t0.elapsed().as_secs_f64() * 1000.0;
        let refused = refused.load(Ordering::Relaxed);
        let mut lat = Vec::with_capacity(a.pollers);
        let mut missed = 0usize;
        for p in polls {
            match p.await.unwrap() {
                Some(at) => lat.push(
                    at.saturating_duration_since(t0)
                        .as_micros()
                        .min(u128::from(u32::MAX)) as u32,
                ),
                None => missed += 1,
            }
        }
        // A refused poll got no list in this round.
        missed -= refused;
        lat.sort_unstable();
        println!(
            "round={round} pollers={} parked={} refused={refused} in {park_secs:.1}s | relay threads={threads} RSS={rss} while parked | publish answered in {publish_ms:.1}ms | delivered={} missed={missed} | p50={:.1}ms p99={:.1}ms max={:.1}ms",
            a.pollers,
            a.pollers - refused,
            lat.len(),
            percentile(&lat, 0.50),
            percentile(&lat, 0.99),
            percentile(&lat, 1.0),
        );
        all.extend(lat);
    }
    all.sort_unstable();
    println!(
        "all rounds: delivered={} p50={:.1}ms p99={:.1}ms max={:.1}ms",
        all.len(),
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        percentile(&all, 1.0),
    );
    relay.stop().await;
}
