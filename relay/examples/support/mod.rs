//! What the relay load tools share: starting the release relay on loopback
//! with a temporary data directory, reading `/proc`, percentiles.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;

use kaching_core::license::{HeartbeatPolicy, License, Limits};
use kaching_core::{LicenseId, SecretKey};
use tokio::io::AsyncBufReadExt;

/// `kaching-relay` next to the examples directory (`target/release`).
pub fn default_relay_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.parent()?.join("kaching-relay")))
        .unwrap_or_else(|| PathBuf::from("kaching-relay"))
}

/// A relay process serving on 127.0.0.1, killed when dropped.
pub struct Relay {
    /// The process.
    pub child: tokio::process::Child,
    /// Its pid, for `/proc`.
    pub pid: u32,
    /// `host:port`.
    pub addr: String,
    /// Its data directory (the database lives here).
    pub data: PathBuf,
    _dir: tempfile::TempDir,
}

impl Relay {
    /// Starts `bin serve` trusting `vendor`, rate limiting off, with `extra`
    /// top-level settings (TOML lines).
    pub async fn start(bin: &std::path::Path, vendor: &SecretKey, extra: &str) -> Relay {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let cfg = dir.path().join("relay.toml");
        std::fs::write(
            &cfg,
            format!(
                "listen = \"127.0.0.1:0\"\ndata_dir = {data:?}\n{extra}vendor_keys = \"\"\"\n{}\"\"\"\n[rate_limit]\nper_second = 0\n",
                vendor.public().to_pem()
            ),
        )
        .unwrap();
        let mut child = tokio::process::Command::new(bin)
            .args(["serve", "--config"])
            .arg(&cfg)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e} (build it with cargo build --release -p kaching-relay)",
                    bin.display()
                )
            });
        let pid = child.id().unwrap();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines.next_line().await.unwrap().unwrap();
        let addr = line.strip_prefix("listening on ").unwrap().to_string();
        Relay {
            child,
            pid,
            addr,
            data,
            _dir: dir,
        }
    }

    /// A field of `/proc/<pid>/status` (`VmRSS:`, `Threads:`), or `?`.
    pub fn status(&self, field: &str) -> String {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(field))
                    .map(|l| l[field.len()..].trim().to_string())
            })
            .unwrap_or_else(|| "?".into())
    }

    /// Kills the relay and waits for it.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// The `p` quantile of sorted microseconds, in milliseconds.
pub fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[idx]) / 1000.0
}

/// A database made for one benchmark run on a PostgreSQL server
/// (heartbeat_load's `--postgres`; the other tools do not use it).
#[allow(dead_code)]
pub struct PgBench {
    /// The database's URL (for the relays' `database`).
    pub url: String,
    server: String,
    name: String,
}

#[allow(dead_code)]
impl PgBench {
    /// Creates `bench_<pid>_<time>` on `server` (the role needs CREATEDB).
    pub async fn create(server: &str) -> PgBench {
        let name = format!("bench_{}_{}", std::process::id(), kaching_relay::db::now());
        let (client, conn) = tokio_postgres::connect(server, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to --postgres: {e}"));
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let mut parts = server.splitn(4, '/');
        let (scheme, empty, host) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        PgBench {
            url: format!("{scheme}/{empty}/{host}/{name}"),
            server: server.to_string(),
            name,
        }
    }

    /// `pg_database_size` of the database, in bytes.
    pub async fn size(&self) -> u64 {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let n: i64 = client
            .query_one("SELECT pg_database_size(current_database())", &[])
            .await
            .unwrap()
            .get(0);
        u64::try_from(n).unwrap_or(0)
    }

    /// Drops the database.
    pub async fn drop_database(self) {
        let (client, conn) = tokio_postgres::connect(&self.server, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let _ = client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await;
    }
}

/// A year's standard license for load tools: customer `c{i}`, a
/// heartbeat policy so clusters bind, license id `id`.
pub fn license(i: u32, id: LicenseId) -> License {
    let t = kaching_relay::db::now();
    License {
        id,
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

/// The relay's CPU time so far (user + system), from `/proc/<pid>/stat`
/// (clock ticks of 10 ms, `CLK_TCK` = 100 on Linux).
pub fn cpu_secs(pid: u32) -> f64 {
    stat_cpu_secs(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default())
}

/// The CPU time so far of the relay's threads named `name` (`relay-writer`:
/// the SQLite writer), from `/proc/<pid>/task/*/stat`.
pub fn thread_cpu_secs(pid: u32, name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let comm = format!("({name})");
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("stat")).ok())
        .filter(|stat| stat.contains(&comm))
        .map(|stat| stat_cpu_secs(&stat))
        .sum()
}

/// utime + stime of one `/proc/.../stat` line, in seconds.
fn stat_cpu_secs(stat: &str) -> f64 {
    // Fields after the command name, which ends with the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat; here 0-based after ')': 11, 12.
    (tick(11) + tick(12)) / 100.0
}
