//! Test harness: a vendor that signs documents in-process, and a real daemon
//! on 127.0.0.1 port 0 over temporary folders (served by `kaching-testkit`).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use kaching_core::license::{Limits, Period, Quota};
use kaching_core::revocation::{RevocationEntry, RevocationStatus};
use kaching_core::{License, LicenseId, RevocationList, SecretKey};
use kaching_testkit::{wait_for_value, Json, Served};
use kaching_verifier::Config;
use serde_json::Value;

pub const DAY: u64 = 86_400;

pub use kaching_testkit::now;

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
            degrade: Default::default(),
            report: None,
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

/// The `kaching-verifier` binary, logging at `log`, with none of the
/// test's own `KACHING_*` variables.
pub fn verifier_cmd(log: &str) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_kaching-verifier"));
    for (k, _) in std::env::vars() {
        if k.starts_with("KACHING_") {
            c.env_remove(k);
        }
    }
    c.env("KACHING_LOG", log);
    c
}

/// Writes `dir/verifier.toml` naming `cfg`'s files and address, plus `extra`.
pub fn write_config(dir: &Path, cfg: &Config, extra: &str) -> PathBuf {
    let path = dir.join("verifier.toml");
    let text = format!(
        "license = {:?}\ntrusted_keys = {:?}\nrevocations = {:?}\nstate_dir = {:?}\nlisten = \"{}\"\n{extra}",
        cfg.license, cfg.trusted_keys, cfg.revocations, cfg.state_dir, cfg.listen
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A daemon running in this process (see [`kaching_testkit::Served`]).
pub struct Daemon {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The client of [`Daemon::json`], for requests built by hand.
    pub http: reqwest::Client,
    /// A JSON client for it.
    pub json: Json,
    served: Served,
}

impl Daemon {
    pub async fn start(cfg: Config) -> Daemon {
        Self::try_start(cfg).await.unwrap()
    }

    /// Serves `cfg`; returns once it answers, or the error `run` ended with.
    pub async fn try_start(cfg: Config) -> anyhow::Result<Daemon> {
        let served =
            Served::start(|listener, shutdown| kaching_verifier::run(listener, cfg, shutdown))
                .await?;
        Ok(Daemon {
            url: served.url().to_string(),
            http: served.json.client().clone(),
            json: served.json.clone(),
            served,
        })
    }

    pub async fn stop(mut self) {
        self.served.stop().await;
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.json.get(path).await
    }

    /// The body of `GET path` as text (a page, `/metrics`).
    pub async fn text(&self, path: &str) -> String {
        let r = self.http.get(format!("{}{path}", self.url)).send().await;
        r.unwrap().text().await.unwrap()
    }

    pub async fn status(&self) -> Value {
        self.get("/v1/status").await.1
    }

    pub async fn put_node(&self, id: &str) -> (u16, Value) {
        self.json.put(&format!("/v1/nodes/{id}")).await
    }

    pub async fn spend(&self, metric: &str, amount: u64, key: &str) -> (u16, Value) {
        let body = serde_json::json!({"metric": metric, "amount": amount, "idempotency_key": key});
        self.json.post("/v1/usage", &body).await
    }

    /// Polls the status until `pred` holds (generous bound; no timing
    /// asserted); a timeout shows the last status seen.
    pub async fn wait_status(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        wait_for_value(what, || self.status(), pred).await
    }
}

pub fn state_dir(dir: &Path) -> PathBuf {
    dir.join("state")
}

/// Writes a usage report from `engine` into `dir` and returns the vendor's
/// receipt for it, unsigned (sign it with the key under test).
pub fn report_and_receipt(
    engine: &mut kaching_verifier::Engine,
    dir: &Path,
) -> kaching_core::receipt::Receipt {
    let file = dir.join("usage.asc");
    let report =
        kaching_verifier::report::usage_report(engine, now(), |t| Ok(std::fs::write(&file, t)?))
            .unwrap();
    let bin = kaching_core::armor::dearmor(&std::fs::read(&file).unwrap(), None).unwrap();
    kaching_core::receipt::Receipt::for_report(
        &report,
        kaching_core::cluster::report_hash(&bin),
        now(),
    )
    .unwrap()
}
