//! Bounded loopback load tool for the verifier's local API (docs/benchmarks.md).
//!
//! ```text
//! load setup DIR                     # vendor key, 200k-node license, DIR/verifier.toml
//! load get ADDR PATH N C             # N GET requests over C keep-alive connections
//! load leases ADDR N [C]             # N node leases (PUT /v1/nodes/node-i) over C connections
//! load usage ADDR N C                # N POST /v1/usage (fresh idempotency keys) over C connections
//! load renew ADDR N C                # N lease renewals, one node per connection
//! load reload DIR ADDR K             # K license replacements (rename); time until visible
//! load reload-in-place DIR ADDR K    # the same, rewriting the file in place
//! load sqlite-floor DIR N            # item 1's floor: the daemon's own database code per usage write, 64 writes per fsync'd group, no HTTP
//! ```
//! Speaks HTTP/1.1 over plain keep-alive TCP so the client costs little next
//! to the server being measured. Loopback only; every run is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark tool: a panic is a failed run

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use kaching_core::license::{Limits, Period, Quota};
use kaching_core::{License, LicenseId, SecretKey};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn license(id: u8) -> Vec<u8> {
    let t = now() - 60;
    let mut quotas = BTreeMap::new();
    quotas.insert(
        "api_calls".to_string(),
        Quota {
            limit: 1_000_000_000,
            period: Period::Month,
        },
    );
    License {
        id: LicenseId([id; 16]),
        issuer: "bench-vendor".into(),
        customer_id: "bench".into(),
        customer: "Bench Inc".into(),
        audience: "bzzz".into(),
        issued_at: t,
        not_before: t,
        expires_at: t + 365 * 86_400,
        tier: "standard".into(),
        features: ["basic-search", "advanced-search", "analytics"]
            .iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>(),
        limits: Limits {
            max_nodes: 200_000,
            max_cores: None,
        },
        quotas,
        grace: 7 * 86_400,
        overage: 0,
        cluster: None,
        heartbeat: None,
        supersedes: None,
        degrade: Default::default(),
        report: None,
    }
    .sign(&SecretKey::from_seed(&[42; 32]))
}

fn setup(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("vendor.pub"),
        SecretKey::from_seed(&[42; 32]).public().to_pem(),
    )
    .unwrap();
    std::fs::write(dir.join("license.lic"), license(1)).unwrap();
    let d = dir.display();
    std::fs::write(
        dir.join("verifier.toml"),
        format!(
            "license = \"{d}/license.lic\"\ntrusted_keys = \"{d}/vendor.pub\"\nrevocations = \"{d}/revocations.krl\"\nstate_dir = \"{d}/state\"\nlisten = \"127.0.0.1:7799\"\n"
        ),
    )
    .unwrap();
    println!("{d}/verifier.toml");
}

/// One keep-alive connection: sends a request, reads one response.
struct Conn {
    r: BufReader<TcpStream>,
}

impl Conn {
    async fn open(addr: &str) -> Conn {
        let s = TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        Conn {
            r: BufReader::new(s),
        }
    }

    async fn call(&mut self, method: &str, path: &str) -> (u16, Vec<u8>) {
        self.call_with(method, path, "").await
    }

    async fn call_with(&mut self, method: &str, path: &str, body: &str) -> (u16, Vec<u8>) {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.r.get_mut().write_all(req.as_bytes()).await.unwrap();
        let mut line = String::new();
        self.r.read_line(&mut line).await.unwrap();
        let status: u16 = line.split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0);
        let mut len = 0usize;
        loop {
            line.clear();
            self.r.read_line(&mut line).await.unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0; len];
        self.r.read_exact(&mut body).await.unwrap();
        (status, body)
    }
}

fn pct(sorted: &[u32], p: f64) -> u32 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// One request: method, path, body.
type Req = (&'static str, String, String);

/// `n` requests over `c` keep-alive connections, each sending its next
/// request when the previous answer arrived; `req(connection, i)` makes the
/// i-th request of a connection. Prints throughput and client-side latency.
async fn drive(
    label: String,
    noun: &str,
    addr: String,
    n: usize,
    c: usize,
    req: impl Fn(usize, usize) -> Req + Send + Sync + Clone + 'static,
) {
    let per = n / c;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for conn_no in 0..c {
        let (addr, req) = (addr.clone(), req.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(&addr).await;
            let mut lat = Vec::with_capacity(per);
            for i in 0..per {
                let (method, path, body) = req(conn_no, i);
                let t = Instant::now();
                let (s, b) = conn.call_with(method, &path, &body).await;
                assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
                lat.push(t.elapsed().as_micros() as u32);
            }
            lat
        }));
    }
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort_unstable();
    println!(
        "{label}: {} {noun}, {c} connections, {:.2} s, {:.0} {noun}/s, p50 {} µs, p99 {} µs, max {} µs",
        all.len(),
        secs,
        all.len() as f64 / secs,
        pct(&all, 0.50),
        pct(&all, 0.99),
        all[all.len() - 1]
    );
}

async fn get(addr: String, path: String, n: usize, c: usize) {
    let p = path.clone();
    drive(
        format!("GET {path}"),
        "requests",
        addr,
        n,
        c,
        move |_, _| ("GET", p.clone(), String::new()),
    )
    .await
}

/// Writes at `c` connections, `n` in all: `usage` posts one api_calls
/// spend each (a fresh idempotency key every time); `renew` renews the lease
/// of one node per connection again and again.
async fn writes(kind: String, addr: String, n: usize, c: usize) {
    let run = std::process::id();
    let usage = kind == "usage";
    drive(kind, "writes", addr, n, c, move |conn_no, i| {
        if usage {
            let body = format!(
                r#"{{"metric":"api_calls","amount":1,"idempotency_key":"{run}-{conn_no}-{i}"}}"#
            );
            ("POST", "/v1/usage".to_string(), body)
        } else {
            ("PUT", format!("/v1/nodes/bench-{conn_no}"), String::new())
        }
    })
    .await
}

/// `n` distinct nodes take a lease, over `c` connections.
async fn leases(addr: String, n: usize, c: usize) {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..c {
        let addr = addr.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(&addr).await;
            for i in (k..n).step_by(c) {
                let (s, b) = conn.call("PUT", &format!("/v1/nodes/node-{i}")).await;
                assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    println!(
        "{n} leases over {c} connections in {:.2} s",
        start.elapsed().as_secs_f64()
    );
}

/// `in_place`: the license file is rewritten where it is (truncate, write,
/// close, as `cp` over an existing file does) instead of renamed over.
async fn reload(dir: String, addr: String, k: u8, in_place: bool) {
    let mut conn = Conn::open(&addr).await;
    let path = Path::new(&dir).join("license.lic");
    let mut lat = Vec::new();
    for i in 0..k {
        let id = 100 + i;
        let want = LicenseId([id; 16]).to_string();
        let bytes = license(id);
        let t;
        if in_place {
            t = Instant::now();
            std::fs::write(&path, &bytes).unwrap();
        } else {
            let tmp = path.with_extension("incoming");
            std::fs::write(&tmp, &bytes).unwrap();
            t = Instant::now();
            std::fs::rename(&tmp, &path).unwrap();
        }
        loop {
            let (_, body) = conn.call("GET", "/v1/status").await;
            if String::from_utf8_lossy(&body).contains(&want) {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "reload not seen in 10 s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        lat.push(t.elapsed().as_millis() as u32);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    lat.sort_unstable();
    println!(
        "reload{}: {k} license replacements, write→visible p50 {} ms, max {} ms",
        if in_place { " (in place)" } else { "" },
        pct(&lat, 0.5),
        lat[lat.len() - 1]
    );
}

/// Item 1's floor: what the daemon's own database code costs for `n` usage
/// writes, with no HTTP and no engine around it. A fresh state database in
/// `dir`, opened by the daemon's `Db::open` (its schema and indexes, WAL,
/// `synchronous = FULL`); per write the daemon's idempotency lookup and
/// `record_spend` (counter upsert and idempotency row, in a savepoint),
/// with the keys `load usage` sends (64 interleaved sequences, as from 64
/// connections) and an answer body of the real size; 64 writes per group,
/// one commit (fsync) per group. One thread, prepared statements cached.
fn sqlite_floor(dir: &Path, n: usize) {
    use kaching_core::wire::verifier::UsageAnswer;
    const BATCH: usize = 64;
    const CONNS: usize = 64;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let mut db = kaching_verifier::state::Db::open(dir, true).unwrap();
    let run = now();
    let t0 = Instant::now();
    let mut done = 0;
    while done < n {
        db.begin_group().unwrap();
        for _ in 0..BATCH.min(n - done) {
            let key = format!("{run}-{}-{}", done % CONNS, done / CONNS);
            done += 1;
            assert!(db.idempotent_reply(&key).unwrap().is_none());
            let body = serde_json::to_string(&UsageAnswer {
                allowed: true,
                metric: "api_calls".into(),
                amount: 1,
                used: done as u64,
                limit: Some(1_000_000_000),
                period: "2026-12".into(),
                idempotency_key: key.clone(),
                over_limit: None,
            })
            .unwrap();
            db.record_spend("api_calls", "2026-12", done as u64, &key, &body, now())
                .unwrap();
        }
        db.commit_group().unwrap();
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "sqlite-floor: {n} writes, {BATCH} per transaction, {:.0} writes/s",
        n as f64 / secs
    );
}

#[tokio::main]
async fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| a.get(i).cloned().unwrap_or_default();
    match arg(0).as_str() {
        "setup" => setup(Path::new(&arg(1))),
        "get" => {
            get(
                arg(1),
                arg(2),
                arg(3).parse().unwrap(),
                arg(4).parse().unwrap(),
            )
            .await
        }
        "leases" => leases(arg(1), arg(2).parse().unwrap(), arg(3).parse().unwrap_or(1)).await,
        "usage" | "renew" => {
            writes(
                arg(0),
                arg(1),
                arg(2).parse().unwrap(),
                arg(3).parse().unwrap(),
            )
            .await
        }
        "reload" => reload(arg(1), arg(2), arg(3).parse().unwrap(), false).await,
        "reload-in-place" => reload(arg(1), arg(2), arg(3).parse().unwrap(), true).await,
        "sqlite-floor" => sqlite_floor(Path::new(&arg(1)), arg(2).parse().unwrap()),
        _ => eprintln!(
            "usage: load setup DIR | get ADDR PATH N C | leases ADDR N [C] | usage ADDR N C | renew ADDR N C | reload DIR ADDR K | reload-in-place DIR ADDR K | sqlite-floor DIR N"
        ),
    }
}
