//! Test harness: a real relay on 127.0.0.1:0 with a temporary data directory
//! (served or spawned by `kaching-testkit`), and in-process signing of
//! licenses, activation requests and heartbeats.

// Helpers shared by test targets: each target uses a subset, and a panic is
// the failure report (clippy.toml allows these only inside #[test] functions).
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use kaching_core::cluster::ActivationRequest;
use kaching_core::heartbeat::Heartbeat;
use kaching_core::license::{HeartbeatPolicy, License, Limits, Period, Quota};
use kaching_core::revocation::{RevocationEntry, RevocationList, RevocationStatus};
use kaching_core::root::{Role, RoleKeys, Root};
use kaching_core::wire::relay::ActivateBody;
use kaching_core::wire::ErrorBody;
use kaching_core::{armor, cluster_id, DocKind, LicenseId, SecretKey};
use kaching_relay::storage::Database;
use kaching_relay::tokens::{self, Scope};
use kaching_relay::{db, Config};
use kaching_testkit::{decode, Json, Served, Spawned};

pub mod postgres;

pub const VENDOR_SEED: [u8; 32] = [1; 32];

pub fn vendor() -> SecretKey {
    SecretKey::from_seed(&VENDOR_SEED)
}

pub use kaching_testkit::now;

/// A connected license with id `[n; 16]`.
pub fn license(n: u8, offline_grace: u64) -> License {
    let t = now();
    License {
        id: LicenseId([n; 16]),
        issuer: "vendor".into(),
        customer_id: format!("cust-{n}"),
        customer: format!("Customer {n}"),
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
        quotas: BTreeMap::from([(
            "api_calls".to_string(),
            Quota {
                limit: 1000,
                period: Period::Month,
            },
        )]),
        grace: 86_400,
        overage: 0,
        cluster: None,
        heartbeat: Some(HeartbeatPolicy {
            interval: 60,
            offline_grace,
        }),
        supersedes: None,
        degrade: Default::default(),
        report: None,
    }
}

pub fn armored_license(l: &License, key: &SecretKey) -> String {
    armor::armor(DocKind::License, &l.sign(key))
}

pub fn cluster_key(n: u8) -> SecretKey {
    SecretKey::from_seed(&[100 + n; 32])
}

pub fn activation_body(l: &License, cluster: &SecretKey) -> ActivateBody {
    let req = ActivationRequest {
        cluster_id: cluster_id(&cluster.public()),
        cluster_key: *cluster.public().as_bytes(),
        hostname: "node-a".into(),
        nodes: 3,
        created: now(),
    };
    ActivateBody {
        license: armored_license(l, &vendor()),
        activation_request: armor::armor(DocKind::ActivationRequest, &req.sign(cluster)),
    }
}

pub fn beat(l: &License, cluster: &SecretKey, seq: u64) -> Heartbeat {
    Heartbeat {
        license_id: l.id,
        cluster_id: cluster_id(&cluster.public()),
        seq,
        time: now(),
        state: "active".into(),
        active_nodes: 4,
        quotas: BTreeMap::from([("api_calls".to_string(), 123)]),
        verifier_version: "0.1.0-test".into(),
        upgrade_requests: Vec::new(),
        deactivate: false,
        chain: None,
    }
}

pub fn revocation_list(version: u64, suspended: &[LicenseId], key: &SecretKey) -> Vec<u8> {
    RevocationList {
        issuer: "vendor".into(),
        version,
        issued_at: now(),
        expires: now() + 7 * 86_400,
        entries: suspended
            .iter()
            .map(|id| RevocationEntry {
                id: *id,
                status: RevocationStatus::Suspended,
                reason: "unpaid invoice".into(),
                time: now(),
            })
            .collect(),
    }
    .sign(key)
}

/// A relay served in this process (see [`kaching_testkit::Served`]) over
/// a temporary data directory.
pub struct Relay {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config: Config,
    /// The client of [`Relay::json`], for requests built by hand.
    pub http: reqwest::Client,
    /// A JSON client for it, without a token.
    pub json: Json,
    served: Served,
    /// The PostgreSQL database it runs on, when it does (dropped after it).
    pub pg: Option<postgres::PgDb>,
}

pub fn config(dir: &std::path::Path) -> Config {
    let mut c = Config {
        data_dir: dir.to_path_buf(),
        vendor_keys: Some(vendor().public().to_pem()),
        long_poll_max: Duration::from_secs(20),
        ..Config::default()
    };
    c.rate_limit.per_second = 0.0;
    c
}

impl Relay {
    pub async fn start() -> Relay {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = config(dir.path());
        Self::start_with(dir, c).await
    }

    /// A relay with the test configuration changed by `change`.
    pub async fn start_changed(change: impl FnOnce(&mut Config)) -> Relay {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = config(dir.path());
        change(&mut c);
        Self::start_with(dir, c).await
    }

    /// Starts the relay in this process. With `KACHING_TEST_RELAY_BACKEND=postgres`
    /// (and `KACHING_TEST_POSTGRES`), a config without a `database` runs on a
    /// fresh PostgreSQL database: the SQLite suites then test that backend.
    pub async fn start_with(dir: tempfile::TempDir, mut config: Config) -> Relay {
        let mut pg = None;
        if config.database.is_none()
            && std::env::var("KACHING_TEST_RELAY_BACKEND").as_deref() == Ok("postgres")
        {
            let db = postgres::fresh()
                .await
                .expect("KACHING_TEST_RELAY_BACKEND=postgres needs KACHING_TEST_POSTGRES");
            config.database = Some(kaching_relay::config::DatabaseUrl(db.url.clone()));
            pg = Some(db);
        }
        Self::start_on(dir, config, pg).await
    }

    /// Starts the relay on `config`, keeping `pg` (its database) until it is dropped.
    pub async fn start_on(
        dir: tempfile::TempDir,
        config: Config,
        pg: Option<postgres::PgDb>,
    ) -> Relay {
        let cfg = config.clone();
        let served =
            Served::start(|listener, shutdown| kaching_relay::run(listener, cfg, shutdown))
                .await
                .expect("relay starts");
        Relay {
            addr: served.addr,
            dir,
            config,
            http: served.json.client().clone(),
            json: served.json.clone(),
            served,
            pg,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn token(&self, scope: Scope, name: &str) -> String {
        match self.config.database().expect("database") {
            Database::Sqlite(path) => {
                let mut conn = db::open_and_migrate(&path).expect("db");
                tokens::create(&mut conn, scope, name, now()).expect("token")
            }
            Database::Postgres(url) => pg_token(&url, scope, name),
        }
    }

    pub async fn activate(&self, l: &License, cluster: &SecretKey) -> reqwest::Response {
        self.http
            .post(self.url("/v1/activate"))
            .json(&activation_body(l, cluster))
            .send()
            .await
            .expect("activate")
    }

    pub async fn post_beat(
        &self,
        path: &str,
        hb: &Heartbeat,
        key: &SecretKey,
    ) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .header("content-type", DocKind::Heartbeat.content_type())
            .body(hb.sign(key))
            .send()
            .await
            .expect("heartbeat")
    }

    /// `GET path` with `token`: the status and the body read as `T` (a body
    /// that is not a `T` fails the test, showing the body).
    pub async fn get_as<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        token: &str,
    ) -> (u16, T) {
        self.json.with_token(token).get_as(path).await
    }

    /// `POST /v1/upgrade-requests` for `l` and `tier` with `token`.
    pub async fn file_upgrade(&self, token: &str, l: &License, tier: &str) -> reqwest::Response {
        self.file_upgrade_with(token, l, tier, String::new()).await
    }

    /// [`Relay::file_upgrade`] with `message`.
    pub async fn file_upgrade_with(
        &self,
        token: &str,
        l: &License,
        tier: &str,
        message: String,
    ) -> reqwest::Response {
        self.http
            .post(self.url("/v1/upgrade-requests"))
            .bearer_auth(token)
            .json(&kaching_core::wire::relay::FileUpgrade {
                license_id: l.id.to_string(),
                requested_tier: tier.into(),
                message,
            })
            .send()
            .await
            .expect("file upgrade")
    }

    pub async fn publish(&self, token: &str, list: Vec<u8>) -> reqwest::Response {
        self.http
            .put(self.url("/v1/revocations"))
            .bearer_auth(token)
            .body(list)
            .send()
            .await
            .expect("publish")
    }

    /// Stops the server and returns its data directory.
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.served.stop().await;
        self.dir
    }
}

pub async fn error_code(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let code = r
        .json::<ErrorBody>()
        .await
        .map(|b| b.error.code)
        .unwrap_or_default();
    (status, code)
}

/// The status and error body of an answer that must be an error.
pub async fn error_body(r: reqwest::Response) -> (u16, ErrorBody) {
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (status, decode(&format!("an error ({status})"), &text))
}

/// Starts the relay binary with `serve --config`, announcing its address.
pub async fn spawn_relay(config: &std::path::Path) -> Spawned {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_kaching-relay"));
    cmd.args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::null());
    Spawned::start(cmd).await
}

/// Writes a relay config for the binary (port 0, data in `dir/data`, the
/// test vendor key, no rate limit) with `extra` top-level TOML lines.
pub fn write_config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("relay.toml");
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n{extra}\nvendor_keys = \"\"\"\n{}\"\"\"\n[rate_limit]\nper_second = 0\n",
            dir.join("data"),
            vendor().public().to_pem()
        ),
    )
    .unwrap();
    path
}

/// Runs the relay binary with a data directory from the environment.
pub fn relay_cli(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_kaching-relay"))
        .args(args)
        .env("KACHING_RELAY_DATA_DIR", dir)
        .env_remove("KACHING_RELAY_CONFIG")
        .output()
        .unwrap()
}

/// `kaching-relay migrate --from sqlite://<sqlite> --to <url>`, run with the
/// data directory `dir`.
pub fn migrate_cli(
    dir: &std::path::Path,
    sqlite: &std::path::Path,
    url: &str,
) -> std::process::Output {
    relay_cli(
        dir,
        &[
            "migrate",
            "--from",
            &format!("sqlite://{}", sqlite.display()),
            "--to",
            url,
        ],
    )
}

/// Creates a token in the PostgreSQL database at `url` (from sync code
/// running inside a runtime: on a thread with a runtime of its own).
pub fn pg_token(url: &str, scope: Scope, name: &str) -> String {
    let (url, name) = (url.to_string(), name.to_string());
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let pool = kaching_relay::storage::postgres::connect_and_migrate(&url)
                    .await
                    .unwrap();
                kaching_relay::storage::postgres::admin::create_token(&pool, scope, &name, now())
                    .await
                    .unwrap()
            })
    })
    .join()
    .unwrap()
}

/// The test issuer's key seed in [`test_root`].
pub const ROOT_ISSUER: u8 = 50;

/// The key of seed `n`: test roots name their keys by seed.
pub fn seed_key(n: u8) -> SecretKey {
    SecretKey::from_seed(&[n; 32])
}

/// A root of `version`: root keys `root_keys` (2 of 3), issuer
/// [`ROOT_ISSUER`], `revoker` as the only revoker; keys are named by their
/// seed ([`seed_key`]).
pub fn test_root(version: u64, root_keys: &[u8], revoker: u8) -> Root {
    let roles: [(Role, &[u8], u32); 3] = [
        (Role::Root, root_keys, 2),
        (Role::Issuer, &[ROOT_ISSUER], 1),
        (Role::Revoker, std::slice::from_ref(&revoker), 1),
    ];
    let mut keys: Vec<_> = roles
        .iter()
        .flat_map(|(_, seeds, _)| seeds.iter().map(|&s| seed_key(s).public()))
        .collect();
    keys.sort_by_key(|k| k.kid());
    keys.dedup_by_key(|k| k.kid());
    let roles = roles
        .iter()
        .map(|(role, seeds, threshold)| {
            let mut kids: Vec<_> = seeds.iter().map(|&s| seed_key(s).public().kid()).collect();
            kids.sort();
            (
                *role,
                RoleKeys {
                    kids,
                    threshold: *threshold,
                },
            )
        })
        .collect::<BTreeMap<_, _>>();
    Root {
        issuer: "vendor".into(),
        version,
        // Whole hours: the same root built twice in one test has the same
        // bytes even when the clock's second ticks over in between.
        issued_at: now() / 3600 * 3600 - 3600,
        expires: now() / 3600 * 3600 + 365 * 86_400,
        keys,
        roles,
        revocation_floor: None,
    }
}

/// `r` signed by the keys of `seeds`.
pub fn sign_root(r: &Root, seeds: &[u8]) -> Vec<u8> {
    let keys: Vec<SecretKey> = seeds.iter().map(|&s| seed_key(s)).collect();
    let refs: Vec<&SecretKey> = keys.iter().collect();
    r.sign(&refs)
}
