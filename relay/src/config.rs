//! Configuration: built-in defaults, then a TOML file, then `KACHING_RELAY_*`
//! environment variables. The commented default file is embedded and printed
//! by `kaching-relay default-config`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use kaching_core::armor::dearmor;
use kaching_core::root::{verify_initial_root, VerifiedRoot};
use kaching_core::{DocKind, TierCatalog, TrustedKeys};
use kaching_kit::config::{ConfigError, EnvValues, Layers};
use serde::Deserialize;

/// The documented default configuration, as printed by `default-config`.
pub const DEFAULT_CONFIG: &str = include_str!("default-config.toml");

/// Largest `long_poll_max` accepted.
const LONG_POLL_CEILING: Duration = Duration::from_secs(3600);

/// Default `max_long_polls`: parked polls cost about 16 KiB each
/// (docs/benchmarks.md), so 4 096 of them stay near 64 MiB, and a relay for
/// 100 000 clusters stays under 150 MiB.
pub const DEFAULT_MAX_LONG_POLLS: usize = 4096;

/// Sections whose keys an environment variable may name (`RATE_LIMIT_BURST`).
const SECTIONS: [&str; 2] = ["rate_limit", "commit"];

/// The `KACHING_RELAY_*` names the relay reads (lower-cased, without the
/// prefix). Others are left alone: the verifier's `[relay]` overrides share
/// the prefix (`KACHING_RELAY_URL`, …) and may sit in the same environment.
const ENV_KEYS: [&str; 23] = [
    "listen",
    "data_dir",
    "database",
    "vendor_keys",
    "vendor_keys_file",
    "root",
    "clock_window",
    "default_offline_grace",
    "long_poll_max",
    "max_long_polls",
    "max_body_bytes",
    "heartbeat_retention",
    "rollup_retention",
    "max_connections",
    "header_read_timeout",
    "idle_timeout",
    "request_timeout",
    "shutdown_timeout",
    "public_metrics",
    "rate_limit_per_second",
    "rate_limit_burst",
    "commit_max_batch",
    "tiers",
];

/// Largest tier catalog file read (the built-in one is a few KiB).
const MAX_CATALOG_BYTES: u64 = 1 << 20;

/// How defaults, file and environment combine (see `kaching_kit::config`).
/// The embedded file is the defaults layer; a test keeps it equal to
/// [`Config::default`], which fills what it leaves out (`vendor_keys`).
const LAYERS: Layers<'static> = Layers {
    defaults: DEFAULT_CONFIG,
    env_prefix: "KACHING_RELAY_",
    env_keys: &ENV_KEYS,
    sections: &SECTIONS,
    env_only: &[],
    env_values: EnvValues::Typed,
};

/// Default days of hourly rollups kept (docs/benchmarks.md: their bytes).
const ROLLUP_RETENTION_DAYS: u64 = 3;

/// Everything the relay needs to start.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the binary listens on (the library takes a bound listener).
    pub listen: String,
    /// Directory of the database and the relay's signing key.
    pub data_dir: PathBuf,
    /// Where the state lives: `sqlite:///path/relay.db` (default:
    /// `data_dir/relay.db`) or `postgres://user:password@host:5432/db`
    /// for several replicas. Its password is redacted in `Debug`.
    pub database: Option<DatabaseUrl>,
    /// Inline PEM bundle of trusted vendor public keys.
    pub vendor_keys: Option<String>,
    /// File holding a PEM bundle of trusted vendor public keys.
    pub vendor_keys_file: Option<PathBuf>,
    /// The vendor's initial root of trust (armored or binary). When set,
    /// the root decides which keys sign licenses and revocation lists, and
    /// the relay serves and extends the root chain (`/v1/roots`).
    pub root: Option<PathBuf>,
    /// Largest distance between a cluster's signed time and the relay clock.
    #[serde(deserialize_with = "kaching_kit::config::duration")]
    pub clock_window: Duration,
    /// How long a cluster holds a license without a heartbeat policy after its last contact.
    #[serde(deserialize_with = "kaching_kit::config::duration")]
    pub default_offline_grace: Duration,
    /// Longest long-poll wait granted.
    #[serde(deserialize_with = "kaching_kit::config::duration")]
    pub long_poll_max: Duration,
    /// Long-polls parked at once at most, and never more than seven eighths
    /// of the connection cap; beyond, a poll that would wait is answered 503
    /// `long_polls_full` with `Retry-After` (0: none ever waits).
    pub max_long_polls: usize,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// How long a raw history row of every heartbeat is kept; `0s` (the
    /// default): none is written, each cluster's latest heartbeat and its
    /// hourly rollups are enough.
    #[serde(deserialize_with = "kaching_kit::config::duration")]
    pub heartbeat_retention: Duration,
    /// How long hourly heartbeat rollups (per cluster: heartbeats, least,
    /// most and last node count, last quota counters) are kept.
    #[serde(deserialize_with = "kaching_kit::config::duration")]
    pub rollup_retention: Duration,
    /// Open connections at most; lowered at start to stay below the open-file limit.
    pub max_connections: usize,
    /// From a request's first byte to its complete head (slowloris).
    #[serde(deserialize_with = "kaching_kit::config::duration")]
    pub header_read_timeout: Duration,
    /// A connection with no request in flight is closed after this long without a byte.
    #[serde(deserialize_with = "kaching_kit::config::duration")]
    pub idle_timeout: Duration,
    /// Deadline of every request except the revocation long-poll (bounded by `long_poll_max`).
    #[serde(deserialize_with = "kaching_kit::config::duration")]
    pub request_timeout: Duration,
    /// At shutdown, requests still running after this long are cut off.
    #[serde(deserialize_with = "kaching_kit::config::duration")]
    pub shutdown_timeout: Duration,
    /// Serve `GET /metrics` without a token (default: a `whoosh` or `admin` token is needed).
    pub public_metrics: bool,
    /// The vendor's tier catalog (TOML, the verifier's `tiers` format) for
    /// upgrade suggestions and the upgrade-request tier check; unset or
    /// empty: the built-in catalog.
    pub tiers: Option<PathBuf>,
    /// Per-client-IP rate limit.
    pub rate_limit: RateLimit,
    /// Group commit settings.
    pub commit: Commit,
}

/// The `database` URL; `Debug` hides its password.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct DatabaseUrl(pub String);

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::storage::redact(&self.0))
    }
}

/// Token bucket per client IP.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimit {
    /// Average requests per second; 0 disables limiting.
    pub per_second: f64,
    /// Bucket size.
    pub burst: u32,
}

/// Group commit settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Commit {
    /// Most writes committed in one transaction.
    pub max_batch: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:7878".into(),
            data_dir: PathBuf::from("/var/lib/kaching-relay"),
            database: None,
            vendor_keys: None,
            vendor_keys_file: None,
            root: None,
            clock_window: Duration::from_secs(300),
            default_offline_grace: Duration::from_secs(86_400),
            long_poll_max: Duration::from_secs(60),
            max_long_polls: DEFAULT_MAX_LONG_POLLS,
            max_body_bytes: 256 * 1024,
            heartbeat_retention: Duration::ZERO,
            rollup_retention: Duration::from_secs(ROLLUP_RETENTION_DAYS * 86_400),
            // The relay holds one long-poll per connected cluster.
            max_connections: 16_384,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(10),
            public_metrics: false,
            tiers: None,
            rate_limit: RateLimit::default(),
            commit: Commit::default(),
        }
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            per_second: 20.0,
            burst: 100,
        }
    }
}

impl Default for Commit {
    fn default() -> Self {
        Commit { max_batch: 512 }
    }
}

impl Config {
    /// Loads defaults, then `file` (when given), then the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        let config: Config = LAYERS.load(file).map_err(|e| match e {
            // Already says which file and what the OS said.
            e @ ConfigError::Read { .. } => anyhow::Error::new(e),
            e => anyhow::Error::new(e).context(invalid(file)),
        })?;
        config.check().context(invalid(file))?;
        Ok(config)
    }

    /// Parses TOML text and applies `KACHING_RELAY_*` overrides (testable without a process environment).
    pub fn from_parts(
        toml_text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Config> {
        let config: Config = LAYERS.parse(toml_text, None, env)?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> anyhow::Result<()> {
        check_listen(&self.listen)?;
        if self.rate_limit.per_second < 0.0 || !self.rate_limit.per_second.is_finite() {
            bail!("rate_limit.per_second must be 0 (off) or a positive number");
        }
        if self.commit.max_batch == 0 {
            bail!("commit.max_batch must be at least 1");
        }
        if self.max_connections == 0 {
            bail!("max_connections must be at least 1");
        }
        for (name, value) in [
            ("header_read_timeout", self.header_read_timeout),
            ("idle_timeout", self.idle_timeout),
            ("request_timeout", self.request_timeout),
            ("shutdown_timeout", self.shutdown_timeout),
        ] {
            if value.is_zero() {
                bail!("{name} must be longer than 0s");
            }
        }
        // The long-poll is exempt from request_timeout, so this is its only bound.
        if self.long_poll_max > LONG_POLL_CEILING {
            bail!(
                "long_poll_max must be at most {}: a long-poll holds a connection and is re-sent by the client anyway",
                humantime::format_duration(LONG_POLL_CEILING)
            );
        }
        if self.max_body_bytes < kaching_core::MAX_DOCUMENT_SIZE {
            bail!(
                "max_body_bytes must be at least {} (one document)",
                kaching_core::MAX_DOCUMENT_SIZE
            );
        }
        Ok(())
    }

    /// The trusted vendor keys from `vendor_keys` and `vendor_keys_file`.
    pub fn trusted_keys(&self) -> anyhow::Result<TrustedKeys> {
        let mut keys = TrustedKeys::new();
        if let Some(pem) = &self.vendor_keys {
            for k in TrustedKeys::from_pem_bundle(pem)
                .context("vendor_keys in the config is not a PEM bundle of public keys")?
                .iter()
            {
                keys.insert(k.clone());
            }
        }
        if let Some(path) = &self.vendor_keys_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read vendor_keys_file {}", path.display()))?;
            for k in TrustedKeys::from_pem_bundle(&text)
                .with_context(|| format!("{} is not a PEM bundle of public keys", path.display()))?
                .iter()
            {
                keys.insert(k.clone());
            }
        }
        if keys.is_empty() && self.root_path().is_none() {
            bail!("no trusted vendor keys: set vendor_keys_file (or vendor_keys) to the vendor's public key PEM");
        }
        Ok(keys)
    }

    /// The `root` file, when set and not empty.
    pub fn root_path(&self) -> Option<&Path> {
        self.root.as_deref().filter(|p| !p.as_os_str().is_empty())
    }

    /// The vendor's initial root from the `root` file (armored or binary),
    /// verified with its own root keys; `None` when `root` is unset. A file
    /// that is missing, too large or does not verify is an error naming it.
    pub fn initial_root(&self) -> anyhow::Result<Option<VerifiedRoot>> {
        let Some(path) = self.root_path() else {
            return Ok(None);
        };
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot read root {} (root)", path.display()))?;
        if !meta.is_file() {
            bail!("root {} (root) is not a regular file", path.display());
        }
        // Armor adds a third and some lines to the binary limit.
        let limit = 2 * kaching_core::MAX_DOCUMENT_SIZE as u64;
        if meta.len() > limit {
            bail!(
                "root {} (root) is larger than {limit} bytes: it is not a KACHING root",
                path.display()
            );
        }
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read root {} (root)", path.display()))?;
        let root = dearmor(&bytes, Some(DocKind::Root))
            .and_then(|b| verify_initial_root(&b))
            .map_err(|e| {
                anyhow::anyhow!(
                    "root {} (root) does not verify: {e}; set `root` to the vendor's initial root file (KACHING ROOT)",
                    path.display()
                )
            })?;
        Ok(Some(root))
    }

    /// The tier catalog: the `tiers` file when set, else the built-in one.
    /// A missing, unreadable or invalid file is an error naming it.
    pub fn tier_catalog(&self) -> anyhow::Result<TierCatalog> {
        let Some(path) = self.tiers.as_ref().filter(|p| !p.as_os_str().is_empty()) else {
            return Ok(TierCatalog::builtin());
        };
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot read tier catalog {} (tiers)", path.display()))?;
        if !meta.is_file() {
            bail!(
                "tier catalog {} (tiers) is not a regular file",
                path.display()
            );
        }
        if meta.len() > MAX_CATALOG_BYTES {
            bail!(
                "tier catalog {} (tiers) is larger than {MAX_CATALOG_BYTES} bytes",
                path.display()
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read tier catalog {} (tiers)", path.display()))?;
        TierCatalog::from_toml(&text)
            .map_err(|e| anyhow::anyhow!("tier catalog {} (tiers): {e}", path.display()))
    }

    /// How many long-polls may be parked at once: `max_long_polls`, but at
    /// most seven eighths of the connection cap `limits`, so that parked
    /// polls always leave connections for heartbeats and the API.
    pub fn long_poll_cap(&self, limits: &kaching_kit::serve::Limits) -> usize {
        self.max_long_polls
            .min(limits.max_connections - limits.max_connections / 8)
    }

    /// Connection bounds for the server loop, with the connection cap
    /// lowered below the open-file limit `nofile` (see `kaching_kit::rlimit`).
    pub fn limits(&self, nofile: Option<u64>) -> kaching_kit::serve::Limits {
        kaching_kit::serve::Limits {
            max_connections: kaching_kit::rlimit::connection_cap(self.max_connections, nofile),
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            drain_timeout: self.shutdown_timeout,
        }
    }

    /// Path of the SQLite database when `database` is unset.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("relay.db")
    }

    /// The database `database` names, or SQLite at [`Config::db_path`].
    pub fn database(&self) -> anyhow::Result<crate::storage::Database> {
        match &self.database {
            None => Ok(crate::storage::Database::Sqlite(self.db_path())),
            Some(DatabaseUrl(url)) if url.is_empty() => {
                Ok(crate::storage::Database::Sqlite(self.db_path()))
            }
            Some(DatabaseUrl(url)) => crate::storage::Database::parse(url)
                .context("the `database` setting (KACHING_RELAY_DATABASE)"),
        }
    }

    /// Path of the relay's signing key.
    pub fn key_path(&self) -> PathBuf {
        self.data_dir.join("relay-key.pem")
    }
}

/// What a configuration error is wrapped in: where to look, and what to read.
/// `listen` must be HOST:PORT (`127.0.0.1:7878`, `[::1]:7878`,
/// `localhost:7878`): a missing port is a configuration error, not a bind
/// failure at start.
fn check_listen(listen: &str) -> anyhow::Result<()> {
    let shape =
        "write HOST:PORT, e.g. listen = \"127.0.0.1:7878\" (or \"[::1]:7878\", \"0.0.0.0:7878\")";
    let Some((host, port)) = listen.rsplit_once(':') else {
        bail!("listen = {listen:?} has no port: {shape}");
    };
    let bracketed = host.starts_with('[') && host.ends_with(']') && host.len() > 2;
    if host.is_empty() || (host.contains(':') && !bracketed) {
        bail!("listen = {listen:?} is not HOST:PORT (an IPv6 address goes in brackets): {shape}");
    }
    if port.parse::<u16>().is_err() {
        bail!("listen = {listen:?}: {port:?} is not a port (0 to 65535): {shape}");
    }
    Ok(())
}

fn invalid(file: Option<&Path>) -> String {
    match file {
        Some(p) => format!("invalid configuration in {} or KACHING_RELAY_* variables: see `kaching-relay default-config`", p.display()),
        None => "invalid KACHING_RELAY_* variables: see `kaching-relay default-config`".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_config_matches_defaults() {
        let c = Config::from_parts(DEFAULT_CONFIG, []).expect("default config parses");
        let d = Config::default();
        assert_eq!(c.listen, d.listen);
        assert_eq!(c.clock_window, d.clock_window);
        assert_eq!(c.default_offline_grace, d.default_offline_grace);
        assert_eq!(c.long_poll_max, d.long_poll_max);
        assert_eq!(c.max_body_bytes, d.max_body_bytes);
        assert_eq!(c.heartbeat_retention, d.heartbeat_retention);
        assert_eq!(c.rollup_retention, d.rollup_retention);
        assert_eq!(c.rate_limit.burst, d.rate_limit.burst);
        assert_eq!(c.commit.max_batch, d.commit.max_batch);
        assert_eq!(c.max_connections, d.max_connections);
        assert_eq!(c.header_read_timeout, d.header_read_timeout);
        assert_eq!(c.idle_timeout, d.idle_timeout);
        assert_eq!(c.request_timeout, d.request_timeout);
        assert_eq!(c.shutdown_timeout, d.shutdown_timeout);
        assert_eq!(c.public_metrics, d.public_metrics);
        assert_eq!(c.tiers, d.tiers);
        assert_eq!(c.root, d.root);
    }

    #[test]
    fn root_from_environment_and_errors_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("root.kaching");
        let c = Config::from_parts(
            "",
            [("KACHING_RELAY_ROOT".to_string(), path.display().to_string())],
        )
        .expect("config");
        assert_eq!(c.root_path(), Some(path.as_path()));
        // Without vendor keys: a root is enough.
        c.trusted_keys().expect("a root stands in for vendor keys");
        let e = format!("{:#}", c.initial_root().expect_err("missing"));
        assert!(e.contains(&path.display().to_string()), "{e}");
        std::fs::write(
            &path,
            "-----BEGIN KACHING ROOT-----\nAAAA\n-----END KACHING ROOT-----\n",
        )
        .expect("write");
        let e = format!("{:#}", c.initial_root().expect_err("not a root"));
        assert!(
            e.contains(&path.display().to_string()) && e.contains("does not verify"),
            "{e}"
        );
        // Unset or empty: no root, and vendor keys are needed again.
        let empty = Config::from_parts("", [("KACHING_RELAY_ROOT".to_string(), String::new())])
            .expect("config");
        assert!(empty.initial_root().expect("no root").is_none());
        assert!(empty.trusted_keys().is_err());
    }

    #[test]
    fn tier_catalog_from_file_builtin_when_unset_and_errors_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let unset = Config::from_parts("", []).expect("config");
        assert_eq!(
            unset.tier_catalog().expect("builtin"),
            TierCatalog::builtin()
        );
        let empty = Config::from_parts("", [("KACHING_RELAY_TIERS".to_string(), String::new())])
            .expect("config");
        assert_eq!(
            empty.tier_catalog().expect("builtin"),
            TierCatalog::builtin()
        );

        let good = dir.path().join("tiers.toml");
        std::fs::write(
            &good,
            "[[tier]]\nname = \"bronze\"\ndisplay_name = \"Bronze\"\nfeatures = []\nmax_nodes = 1\nduration_days = 30\n",
        )
        .expect("write");
        let c = Config::from_parts(
            "",
            [(
                "KACHING_RELAY_TIERS".to_string(),
                good.display().to_string(),
            )],
        )
        .expect("config");
        assert_eq!(c.tiers.as_deref(), Some(good.as_path()));
        assert_eq!(c.tier_catalog().expect("catalog").names(), vec!["bronze"]);

        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "[[tier]]\nname = 3\n").expect("write");
        let missing = dir.path().join("missing.toml");
        for path in [&bad, &missing, &dir.path().to_path_buf()] {
            let c = Config::from_parts(&format!("tiers = {:?}", path.display().to_string()), [])
                .expect("config");
            let e = format!("{:#}", c.tier_catalog().expect_err("refused"));
            assert!(e.contains(&path.display().to_string()), "{e}");
        }
    }

    #[test]
    fn connection_settings_from_environment_and_checked() {
        let c = Config::from_parts(
            "",
            [
                (
                    "KACHING_RELAY_MAX_CONNECTIONS".to_string(),
                    "900".to_string(),
                ),
                ("KACHING_RELAY_IDLE_TIMEOUT".into(), "5s".into()),
                ("KACHING_RELAY_HEADER_READ_TIMEOUT".into(), "2s".into()),
                ("KACHING_RELAY_REQUEST_TIMEOUT".into(), "3s".into()),
                ("KACHING_RELAY_SHUTDOWN_TIMEOUT".into(), "4s".into()),
            ],
        )
        .expect("config");
        assert_eq!(c.max_connections, 900);
        let l = c.limits(Some(1024));
        assert_eq!(l.max_connections, 896, "kept below the fd limit");
        assert_eq!(
            c.long_poll_cap(&l),
            784,
            "parked long-polls leave an eighth of the connections free"
        );
        let d = Config::default();
        let dl = d.limits(None);
        assert_eq!(d.long_poll_cap(&dl), DEFAULT_MAX_LONG_POLLS);
        assert_eq!(
            Config::from_parts("max_long_polls = 10", [])
                .expect("config")
                .long_poll_cap(&dl),
            10
        );
        assert_eq!(l.idle_timeout, Duration::from_secs(5));
        assert_eq!(l.header_read_timeout, Duration::from_secs(2));
        assert_eq!(l.drain_timeout, Duration::from_secs(4));
        assert_eq!(c.request_timeout, Duration::from_secs(3));
        assert!(Config::from_parts("max_connections = 0", []).is_err());
        assert!(Config::from_parts("idle_timeout = \"0s\"", []).is_err());
        assert!(Config::from_parts("long_poll_max = \"2h\"", []).is_err());
    }

    #[test]
    fn listen_without_a_port_is_a_config_error() {
        for bad in [
            "127.0.0.1",
            "127.0.0.1:",
            ":7878",
            "::1",
            "127.0.0.1:99999",
            "host:port",
        ] {
            let err = Config::from_parts(&format!("listen = {bad:?}"), [])
                .expect_err(bad)
                .to_string();
            assert!(
                err.contains(&format!("listen = {bad:?}")) && err.contains("HOST:PORT"),
                "{bad}: {err}"
            );
        }
        for good in ["127.0.0.1:0", "[::1]:7878", "localhost:7878", "0.0.0.0:9"] {
            assert!(
                Config::from_parts(&format!("listen = {good:?}"), []).is_ok(),
                "{good}"
            );
        }
        // From the environment too.
        let env = [("KACHING_RELAY_LISTEN".to_string(), "127.0.0.1".to_string())];
        assert!(Config::from_parts("", env).is_err());
    }

    #[test]
    fn environment_overrides_file() {
        let c = Config::from_parts(
            "listen = \"127.0.0.1:1\"\n[rate_limit]\nburst = 3\n",
            [
                ("KACHING_RELAY_LISTEN".to_string(), "0.0.0.0:9".to_string()),
                ("KACHING_RELAY_RATE_LIMIT_PER_SECOND".into(), "0".into()),
                ("KACHING_RELAY_CLOCK_WINDOW".into(), "10s".into()),
                ("KACHING_RELAY_DATA_DIR".into(), "/tmp/x".into()),
                ("KACHING_RELAY_PUBLIC_METRICS".into(), "true".into()),
            ],
        )
        .expect("config");
        assert!(c.public_metrics);
        assert_eq!(c.listen, "0.0.0.0:9");
        assert_eq!(c.rate_limit.per_second, 0.0);
        assert_eq!(c.rate_limit.burst, 3);
        assert_eq!(c.clock_window, Duration::from_secs(10));
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn verifier_relay_variables_in_the_same_environment_are_ignored() {
        let env = [
            (
                "KACHING_RELAY_URL".to_string(),
                "http://127.0.0.1:1".to_string(),
            ),
            (
                "KACHING_RELAY_PUBLIC_KEY".into(),
                "/etc/kaching/relay.pub".into(),
            ),
            ("KACHING_RELAY_LISTEN".into(), "127.0.0.1:9".into()),
        ];
        let c = Config::from_parts("", env).expect("verifier variables must not break the relay");
        assert_eq!(c.listen, "127.0.0.1:9");
    }

    #[test]
    fn unknown_key_refused() {
        assert!(Config::from_parts("lisen = \"x\"", []).is_err());
    }
}
