//! Test harness: a vendor that signs documents in-process, and a real daemon
//! on 127.0.0.1 port 0 over temporary folders.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kaching_core::license::{Limits, Period, Quota};
use kaching_core::revocation::{RevocationEntry, RevocationStatus};
use kaching_core::{License, LicenseId, RevocationList, SecretKey};
use kaching_verifier::Config;
use serde_json::Value;
use tokio::sync::oneshot;

pub const DAY: u64 = 86_400;

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The vendor: a fixed test key.
pub struct Vendor {
    pub key: SecretKey,
}

impl Vendor {
    pub fn new() -> Self {
        Vendor {
            key: SecretKey::from_seed(&[7; 32]),
        }
    }

    pub fn other() -> Self {
        Vendor {
            key: SecretKey::from_seed(&[9; 32]),
        }
    }

    pub fn public_pem(&self) -> String {
        self.key.public().to_pem()
    }

    /// A standard-tier license valid for a year, issued a minute ago.
    pub fn license(&self, id: u8, tier: &str) -> License {
        let t = now() - 60;
        let features: BTreeSet<String> = match tier {
            "evaluation" => ["basic-search"].iter().map(|s| s.to_string()).collect(),
            _ => ["basic-search", "advanced-search", "analytics"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        let mut quotas = BTreeMap::new();
        quotas.insert(
            "api_calls".to_string(),
            Quota {
                limit: 1000,
                period: Period::Month,
            },
        );
        quotas.insert(
            "search_requests".to_string(),
            Quota {
                limit: 100,
                period: Period::Day,
            },
        );
        License {
            id: LicenseId([id; 16]),
            issuer: "vendor".into(),
            customer_id: "acme".into(),
            customer: "ACME Corp".into(),
            audience: "bzzz".into(),
            issued_at: t,
            not_before: t,
            expires_at: t + 365 * DAY,
            tier: tier.into(),
            features,
            limits: Limits {
                max_nodes: 3,
                max_cores: None,
            },
            quotas,
            grace: 7 * DAY,
            overage: 0,
            cluster: None,
            heartbeat: None,
            supersedes: None,
        }
    }

    pub fn sign(&self, l: &License) -> Vec<u8> {
        l.sign(&self.key)
    }

    pub fn revocations(&self, version: u64, entries: &[(u8, RevocationStatus)]) -> Vec<u8> {
        let t = now() - 30;
        RevocationList {
            issuer: "vendor".into(),
            version,
            issued_at: t,
            expires: t + 30 * DAY,
            entries: entries
                .iter()
                .map(|(id, status)| RevocationEntry {
                    id: LicenseId([*id; 16]),
                    status: *status,
                    reason: "test".into(),
                    time: t,
                })
                .collect(),
        }
        .sign(&self.key)
    }
}

/// Replaces a file the way `cp` over an editor save does: new file, rename.
pub fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("incoming");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A temp folder with vendor.pub and (optionally) a license.
pub fn setup(license: Option<&[u8]>) -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::for_dir(dir.path());
    std::fs::write(&cfg.trusted_keys, Vendor::new().public_pem()).unwrap();
    if let Some(l) = license {
        std::fs::write(&cfg.license, l).unwrap();
    }
    (dir, cfg)
}

/// A daemon running in this process.
pub struct Daemon {
    pub url: String,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Daemon {
    pub async fn start(cfg: Config) -> Daemon {
        Self::try_start(cfg).await.unwrap()
    }

    pub async fn try_start(cfg: Config) -> anyhow::Result<Daemon> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(kaching_verifier::run(listener, cfg, async move {
            let _ = rx.await;
        }));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        // Wait until it answers (or the task ended with an error).
        for _ in 0..200 {
            if task.is_finished() {
                task.await??;
                anyhow::bail!("daemon stopped before answering");
            }
            if http.get(format!("{url}/healthz")).send().await.is_ok() {
                return Ok(Daemon {
                    url,
                    http,
                    stop: Some(tx),
                    task: Some(task),
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        anyhow::bail!("daemon did not come up")
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn status(&self) -> Value {
        self.get("/v1/status").await.1
    }

    pub async fn put_node(&self, id: &str) -> (u16, Value) {
        let r = self
            .http
            .put(format!("{}/v1/nodes/{id}", self.url))
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn spend(&self, metric: &str, amount: u64, key: &str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/v1/usage", self.url))
            .json(&serde_json::json!({"metric": metric, "amount": amount, "idempotency_key": key}))
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    /// Polls the status until `pred` holds (generous bound; no timing asserted).
    pub async fn wait_status(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        wait_for(what, || async {
            Some(self.status().await).filter(|v| pred(v))
        })
        .await
    }
}

/// Polls `f` every 20 ms until it yields `Some`, failing after 20 s.
pub async fn wait_for<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    for _ in 0..1000 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

pub fn state_dir(dir: &Path) -> PathBuf {
    dir.join("state")
}
