//! Bounded loopback load for the relay's usage-report mailbox: N clusters
//! activate; then, for each of R rounds, every cluster sends one heartbeat
//! (the baseline, measured in the same run), posts one new usage report,
//! and posts it again (what a verifier does every `relay.receipt_poll`
//! while it awaits its receipt). Prints requests/s and the relay's CPU time
//! per request for each kind, and the ratios against the heartbeat.
//!
//! ```text
//! cargo build --release -p kaching-relay --bins --examples
//! target/release/examples/mailbox_load --clusters 2000 --rounds 3 --concurrency 32
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Instant;

use futures_util::stream::{self, StreamExt};
use kaching_core::cluster::{
    ActivationRequest, ReportChain, ReportedUpgrade, UpgradeRequest, UsageReport,
};
use kaching_core::heartbeat::Heartbeat;
use kaching_core::{armor, cluster_id, DocKind, LicenseId, SecretKey};

#[allow(dead_code)] // shared with the other load tools; this one reads no percentiles
mod support;

fn now() -> u64 {
    kaching_relay::db::now()
}

fn license_id(i: u32) -> LicenseId {
    let mut b = [0x4d; 16];
    b[..4].copy_from_slice(&i.to_be_bytes());
    LicenseId(b)
}

/// A usage report as a verifier writes it: one counter, one upgrade request.
fn report(i: u32, key: &SecretKey, seq: u64) -> Vec<u8> {
    let t = now();
    UsageReport {
        license_id: license_id(i),
        cluster_id: cluster_id(&key.public()),
        period_start: t - 3600,
        period_end: t,
        counters: BTreeMap::from([(
            "search_requests".to_string(),
            BTreeMap::from([("2026-12-05".to_string(), seq * 100)]),
        )]),
        peak_nodes: 3,
        upgrade_requests: vec![ReportedUpgrade {
            id: Some(seq),
            request: UpgradeRequest {
                requested_tier: "enterprise".into(),
                message: "need more".into(),
                time: t - 60,
            },
        }],
        chain: Some(ReportChain {
            seq,
            prev: (seq > 1).then_some([seq as u8; 32]),
            trusted_time: t,
            acked: 0,
            node_peaks: BTreeMap::new(),
        }),
    }
    .sign(key)
}

/// Posts every body to `path`; returns (ok count, requests/s, relay CPU µs per request).
async fn round(
    http: &reqwest::Client,
    addr: &str,
    path: &str,
    pid: u32,
    bodies: Vec<Vec<u8>>,
    conc: usize,
) -> (usize, f64, f64) {
    let n = bodies.len();
    let url = format!("http://{addr}{path}");
    let cpu0 = support::cpu_secs(pid);
    let t = Instant::now();
    let ok = stream::iter(bodies)
        .map(|b| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                matches!(http.post(url).body(b).send().await, Ok(r) if r.status().is_success())
            }
        })
        .buffer_unordered(conc)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    let secs = t.elapsed().as_secs_f64();
    let cpu = support::cpu_secs(pid) - cpu0;
    (ok, n as f64 / secs, cpu * 1e6 / n.max(1) as f64)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let (mut clusters, mut rounds, mut conc) = (1000u32, 3u64, 32usize);
    let mut relay_bin = support::default_relay_bin();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().unwrap_or_default();
        match flag.as_str() {
            "--clusters" => clusters = v.parse().expect("--clusters N"),
            "--rounds" => rounds = v.parse().expect("--rounds N"),
            "--concurrency" => conc = v.parse().expect("--concurrency N"),
            "--relay-bin" => relay_bin = v.into(),
            _ => panic!("unknown flag {flag}: use --clusters --rounds --concurrency --relay-bin"),
        }
    }
    let vendor = SecretKey::from_seed(&[0xbe; 32]);
    let relay = support::Relay::start(&relay_bin, &vendor, "").await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(conc)
        .build()
        .unwrap();
    let keys: Vec<SecretKey> = (0..clusters)
        .map(|i| {
            let mut s = [0xc7; 32];
            s[..4].copy_from_slice(&i.to_be_bytes());
            SecretKey::from_seed(&s)
        })
        .collect();
    for (i, key) in keys.iter().enumerate() {
        let i = i as u32;
        let req = ActivationRequest {
            cluster_id: cluster_id(&key.public()),
            cluster_key: *key.public().as_bytes(),
            hostname: format!("host{i}"),
            nodes: 3,
            created: now(),
        };
        let body = serde_json::json!({
            "license": armor::armor(DocKind::License, &support::license(i, license_id(i)).sign(&vendor)),
            "activation_request": armor::armor(DocKind::ActivationRequest, &req.sign(key)),
        });
        let r = http
            .post(format!("http://{}/v1/activate", relay.addr))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "activation");
    }
    let (mut beat, mut post, mut repost) = (Vec::new(), Vec::new(), Vec::new());
    for seq in 1..=rounds {
        let beats = keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                Heartbeat {
                    license_id: license_id(i as u32),
                    cluster_id: cluster_id(&key.public()),
                    seq,
                    time: now(),
                    state: "active".into(),
                    active_nodes: 3,
                    quotas: BTreeMap::from([("search_requests".to_string(), seq * 100)]),
                    verifier_version: "bench".into(),
                    upgrade_requests: Vec::new(),
                    deactivate: false,
                    chain: None,
                }
                .sign(key)
            })
            .collect();
        let reports: Vec<Vec<u8>> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| report(i as u32, k, seq))
            .collect();
        let b = round(&http, &relay.addr, "/v1/heartbeat", relay.pid, beats, conc).await;
        let p = round(
            &http,
            &relay.addr,
            "/v1/usage-reports",
            relay.pid,
            reports.clone(),
            conc,
        )
        .await;
        let r = round(
            &http,
            &relay.addr,
            "/v1/usage-reports",
            relay.pid,
            reports,
            conc,
        )
        .await;
        let n = clusters as usize;
        assert!(
            b.0 == n && p.0 == n && r.0 == n,
            "failures: {b:?} {p:?} {r:?}"
        );
        println!(
            "round {seq}: heartbeat {:.0}/s {:.0}us CPU | new report {:.0}/s {:.0}us CPU | repost {:.0}/s {:.0}us CPU",
            b.1, b.2, p.1, p.2, r.1, r.2
        );
        beat.push(b);
        post.push(p);
        repost.push(r);
    }
    let m = |v: &[(usize, f64, f64)], f: fn(&(usize, f64, f64)) -> f64| {
        median(v.iter().map(f).collect())
    };
    let (bc, pc, rc) = (m(&beat, |x| x.2), m(&post, |x| x.2), m(&repost, |x| x.2));
    let (br, pr, rr) = (m(&beat, |x| x.1), m(&post, |x| x.1), m(&repost, |x| x.1));
    println!(
        "clusters={clusters} rounds={rounds} concurrency={conc} | medians: heartbeat {br:.0}/s {bc:.0}us | new report {pr:.0}/s {pc:.0}us (CPU x{:.2}) | repost {rr:.0}/s {rc:.0}us (CPU x{:.2}) | relay RSS={} db={:.1} MiB",
        pc / bc,
        rc / bc,
        relay.status("VmRSS:"),
        (std::fs::metadata(relay.data.join("relay.db")).map(|m| m.len()).unwrap_or(0)
            + std::fs::metadata(relay.data.join("relay.db-wal")).map(|m| m.len()).unwrap_or(0)) as f64
            / (1024.0 * 1024.0)
    );
    relay.stop().await;
}
