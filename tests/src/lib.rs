//! kaching-e2e: the three programs together on loopback. A small harness
//! runs `licensegen` in-process ([`Vendor`]), a real relay ([`Relay`],
//! `kaching_relay::run`) and real verifiers ([`Verifier`],
//! `kaching_verifier::run`) on 127.0.0.1 port 0 over temporary folders, so
//! the end-to-end tests in `tests/e2e/` and the latency measurement in
//! `examples/suspension_latency.rs` read like the operator's steps.
//!
//! Waits are bounded polls ([`WAIT`]); nothing asserts on elapsed time.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Test harness: a panic (with the state it saw) is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use kaching_core::wire::verifier::{FeatureAnswer, VerifierStatus};
use kaching_testkit::{wait_for_value, Json, Served};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

pub use kaching_testkit::{decode, decode_value, now, Events, WAIT};

/// The vendor key passphrase used by every test vendor.
pub const PASS: &str = "correct horse battery staple";

static ENV: Once = Once::new();

/// Test-only scrypt work factor for licensegen's vendor keys (set once, before
/// any thread reads it).
fn fast_scrypt() {
    ENV.call_once(|| std::env::set_var("KACHING_TEST_SCRYPT_LOG_N", "4"));
}

/// A license file written by `licensegen issue`.
#[derive(Debug, Clone)]
pub struct Issued {
    /// License id.
    pub id: String,
    /// The file.
    pub path: PathBuf,
}

/// A vendor directory driven through `licensegen::run_code`.
pub struct Vendor {
    _tmp: tempfile::TempDir,
    /// Folder holding the vendor directory, the passphrase file and issued licenses.
    pub root: PathBuf,
    /// The vendor directory.
    pub dir: PathBuf,
    pass: PathBuf,
}

impl Vendor {
    /// `licensegen init` in a fresh temporary folder.
    pub async fn new() -> Vendor {
        fast_scrypt();
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let pass = root.join("passphrase");
        std::fs::write(&pass, format!("{PASS}\n")).unwrap();
        std::fs::set_permissions(&pass, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let dir = root.join("vendor");
        let v = Vendor {
            _tmp: tmp,
            root,
            dir,
            pass,
        };
        let code = v
            .licensegen(&[
                "init",
                v.dir.to_str().unwrap(),
                "--issuer",
                "Example Software",
            ])
            .await;
        assert_eq!(code, 0, "licensegen init failed");
        v
    }

    /// Runs `licensegen --dir … --passphrase-file … ARGS` on a blocking
    /// thread (it may unlock the key and do blocking HTTP); returns its exit code.
    pub async fn licensegen(&self, args: &[&str]) -> u8 {
        let mut argv: Vec<String> = vec![
            "licensegen".into(),
            "--passphrase-file".into(),
            self.pass.to_string_lossy().into_owned(),
        ];
        if args.first() != Some(&"init") {
            argv.push("--dir".into());
            argv.push(self.dir.to_string_lossy().into_owned());
        }
        argv.extend(args.iter().map(|s| s.to_string()));
        tokio::task::spawn_blocking(move || licensegen::run_code(argv))
            .await
            .unwrap()
    }

    /// `licensegen issue --customer NAME --tier standard ARGS --out …`.
    pub async fn issue(&self, name: &str, args: &[&str]) -> Issued {
        let path = self.root.join(format!("{name}.license"));
        let mut all = vec![
            "issue",
            "--customer",
            name,
            "--tier",
            "standard",
            "--out",
            path.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        assert_eq!(self.licensegen(&all).await, 0, "licensegen issue failed");
        let bytes = std::fs::read(&path).unwrap();
        let keys = kaching_core::TrustedKeys::from_pem_bundle(&self.public_pem()).unwrap();
        let id = kaching_core::verify_license(&bytes, &keys)
            .unwrap()
            .license
            .id
            .to_string();
        Issued { id, path }
    }

    /// A connected license: heartbeat every second, `grace` of offline grace.
    pub async fn issue_connected(&self, name: &str, grace: &str) -> Issued {
        self.issue(name, &["--heartbeat", "1s", "--offline-grace", grace])
            .await
    }

    /// `licensegen publish --relay URL --token-file F`.
    pub async fn publish(&self, relay: &Relay) -> u8 {
        self.licensegen(&[
            "publish",
            "--relay",
            &relay.url,
            "--token-file",
            relay.token_file.to_str().unwrap(),
        ])
        .await
    }

    /// The vendor public key, PEM.
    pub fn public_pem(&self) -> String {
        std::fs::read_to_string(self.dir.join("vendor.pub")).unwrap()
    }

    /// The current signed revocation list file.
    pub fn revocations_file(&self) -> PathBuf {
        self.dir.join("revocations.cose")
    }
}

/// A relay served by `kaching_relay::run` on 127.0.0.1 port 0.
pub struct Relay {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The relay's public key (PEM file) for verifiers to pin.
    pub key_file: PathBuf,
    /// A publish-scope token (file).
    pub token_file: PathBuf,
    /// An admin-scope token (the vendor's read side).
    pub admin_token: String,
    /// The relay served in this process.
    served: Served,
}

impl Relay {
    /// Starts a relay keeping its data in `root/relay`, trusting `vendor_pem`.
    pub async fn start(root: &Path, vendor_pem: &str) -> Relay {
        Relay::start_with(root, Some(vendor_pem), None).await
    }

    /// Starts a relay whose trust is the root of trust in `root_file`.
    pub async fn start_with_root(root: &Path, root_file: &Path) -> Relay {
        Relay::start_with(root, None, Some(root_file)).await
    }

    /// [`Relay::start`] with `tweak` applied to the test configuration.
    pub async fn start_tweaked(
        root: &Path,
        vendor_pem: &str,
        tweak: impl FnOnce(&mut kaching_relay::Config),
    ) -> Relay {
        Relay::start_configured(root, Some(vendor_pem), None, tweak).await
    }

    async fn start_with(root: &Path, vendor_pem: Option<&str>, root_file: Option<&Path>) -> Relay {
        Relay::start_configured(root, vendor_pem, root_file, |_| {}).await
    }

    async fn start_configured(
        root: &Path,
        vendor_pem: Option<&str>,
        root_file: Option<&Path>,
        tweak: impl FnOnce(&mut kaching_relay::Config),
    ) -> Relay {
        let mut config = kaching_relay::Config {
            data_dir: root.join("relay"),
            vendor_keys: vendor_pem.map(str::to_string),
            root: root_file.map(Path::to_path_buf),
            // Tests burst; the limiter has its own tests in relay/.
            rate_limit: kaching_relay::config::RateLimit {
                per_second: 0.0,
                burst: 1000,
            },
            ..kaching_relay::Config::default()
        };
        tweak(&mut config);
        let key = kaching_relay::state::load_or_create_key(&config.key_path()).unwrap();
        let key_file = root.join("relay.pub");
        std::fs::write(&key_file, key.public().to_pem()).unwrap();
        let mut conn = kaching_relay::db::open_and_migrate(&config.db_path()).unwrap();
        let token = kaching_relay::tokens::create(
            &mut conn,
            kaching_relay::tokens::Scope::Publish,
            "e2e-publisher",
            now(),
        )
        .unwrap();
        let admin_token = kaching_relay::tokens::create(
            &mut conn,
            kaching_relay::tokens::Scope::Admin,
            "e2e-admin",
            now(),
        )
        .unwrap();
        drop(conn);
        let token_file = root.join("relay-publish.token");
        std::fs::write(&token_file, format!("{token}\n")).unwrap();
        let served =
            Served::start(|listener, shutdown| kaching_relay::run(listener, config, shutdown))
                .await
                .unwrap();
        Relay {
            url: served.url().to_string(),
            key_file,
            token_file,
            admin_token,
            served,
        }
    }

    /// GET a vendor-side path with the admin token, the answer read as the
    /// relay wire type `T` (`ClusterPage`, `UpgradeRows`, `LicenseStatus`, …);
    /// panics with the body unless it is a 200 holding a `T`.
    pub async fn admin_get<T: DeserializeOwned>(&self, path: &str) -> T {
        let (code, body) = self
            .served
            .json
            .with_token(&self.admin_token)
            .get_as::<Value>(path)
            .await;
        assert_eq!(code, 200, "GET {path}: {body}");
        decode_value(&format!("GET {path}"), &body)
    }

    /// Stops the relay (graceful) and waits for it.
    pub async fn stop(&mut self) {
        self.served.stop().await;
    }
}

/// A verifier served by `kaching_verifier::run` on 127.0.0.1 port 0.
pub struct Verifier {
    /// Its folder (license, keys, revocations, state).
    pub dir: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The verifier served in this process.
    served: Served,
}

/// A verifier configuration rooted in `dir`, fast ticks, talking to `relay`.
pub fn verifier_config(dir: &Path, relay: Option<&Relay>) -> kaching_verifier::Config {
    let mut c = kaching_verifier::Config::for_dir(dir);
    c.tick = Duration::from_millis(100);
    c.debounce = Duration::from_millis(50);
    if let Some(r) = relay {
        c.relay.urls = vec![r.url.clone()];
        c.relay.public_key = Some(r.key_file.clone());
        c.relay.timeout = Duration::from_secs(5);
        c.relay.max_backoff = Duration::from_secs(1);
    }
    c
}

/// Puts the vendor key and a license where a verifier rooted in `dir` reads them.
pub fn install(dir: &Path, vendor: &Vendor, license: &Issued) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("vendor.pub"), vendor.public_pem()).unwrap();
    std::fs::copy(&license.path, dir.join("license.lic")).unwrap();
}

/// An air-gapped cluster in `vendor.root/cluster`: it writes an activation
/// request, the vendor issues a license bound to it for customer `name`,
/// and the cluster has it installed with the vendor key.
pub async fn bound_cluster(vendor: &Vendor, name: &str) -> (PathBuf, Issued) {
    let cluster = vendor.root.join("cluster");
    std::fs::create_dir_all(&cluster).unwrap();
    std::fs::write(cluster.join("vendor.pub"), vendor.public_pem()).unwrap();
    let request = vendor.root.join("cluster.request");
    let engine = kaching_verifier::Engine::open(verifier_config(&cluster, None), true).unwrap();
    std::fs::write(
        &request,
        kaching_verifier::report::activation_request(&engine, now()),
    )
    .unwrap();
    drop(engine);
    let lic = vendor
        .issue(name, &["--bind", request.to_str().unwrap()])
        .await;
    install(&cluster, vendor, &lic);
    (cluster, lic)
}

impl Verifier {
    /// Starts a verifier with `config`.
    pub async fn start(config: kaching_verifier::Config) -> Verifier {
        let dir = config.state_dir.parent().unwrap().to_path_buf();
        let served =
            Served::start(|listener, shutdown| kaching_verifier::run(listener, config, shutdown))
                .await
                .unwrap();
        Verifier {
            dir,
            url: served.url().to_string(),
            served,
        }
    }

    /// The JSON client for this verifier.
    pub fn json(&self) -> &Json {
        &self.served.json
    }

    /// GET a path; status code and JSON body.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.served.json.get(path).await
    }

    /// POST JSON to a path; status code and JSON body.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.served.json.post(path, &body).await
    }

    /// GET a path, the answer read as the wire type `T`; panics with the
    /// body when it is not one.
    pub async fn get_as<T: DeserializeOwned>(&self, path: &str) -> (u16, T) {
        self.served.json.get_as(path).await
    }

    /// POST `body` to a path, the answer read as the wire type `T`; panics
    /// with the body when it is not one.
    pub async fn post_as<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> (u16, T) {
        self.served.json.post_as(path, body).await
    }

    /// `GET /v1/status`; panics with the code and body unless it is a
    /// [`VerifierStatus`].
    pub async fn status(&self) -> VerifierStatus {
        self.get_as("/v1/status").await.1
    }

    /// Polls `/v1/status` until `ok` holds; panics with the last status after [`WAIT`].
    pub async fn wait_status(
        &self,
        what: &str,
        ok: impl Fn(&VerifierStatus) -> bool,
    ) -> VerifierStatus {
        wait_for_value(what, || self.status(), ok).await
    }

    /// Waits until the relay answered this verifier at least once.
    pub async fn wait_relay_contact(&self) -> VerifierStatus {
        self.wait_status("a relay contact", |s| {
            s.relay.as_ref().is_some_and(|r| r.last_contact.is_some())
        })
        .await
    }

    /// `GET /v1/features/{name}` → allowed?
    pub async fn feature_allowed(&self, name: &str) -> bool {
        let (_, f) = self
            .get_as::<FeatureAnswer>(&format!("/v1/features/{name}"))
            .await;
        f.decision.allowed
    }

    /// Subscribes to `GET /v1/events`.
    pub async fn events(&self) -> Events {
        Events::open(&self.served.json, "/v1/events").await
    }

    /// Stops the verifier cleanly and waits for it.
    pub async fn stop(&mut self) {
        self.served.stop().await;
    }
}
