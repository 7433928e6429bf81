//! Configuration: built-in defaults, then a TOML file, then `KACHING_*`
//! environment variables. `config.example.toml` documents every key and is
//! what `kaching-verifier default-config` prints; a test keeps it equal to
//! [`Config::default`].

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::clock::Clock;

/// The documented example configuration (all defaults).
pub const EXAMPLE: &str = include_str!("../config.example.toml");

/// A secret string whose `Debug` output never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

/// The `[relay]` section: where the relay is and how to talk to it. See
/// docs/verifier.md "Connected mode" and docs/connected.md.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// Base URL of the relay (`https://relay.example.com`); unset: air-gapped only.
    pub url: Option<String>,
    /// The relay's public key (SPKI PEM file), pinned: every relay answer
    /// must be signed by it. Required when `url` is set.
    pub public_key: Option<PathBuf>,
    /// Heartbeat interval instead of the license's `heartbeat.interval`.
    pub heartbeat_interval: Option<Duration>,
    /// Connect and answer timeout of one request (long-polls add `long_poll`).
    pub timeout: Duration,
    /// How long one revocation long-poll waits on the relay.
    pub long_poll: Duration,
    /// Longest pause between retries after failures (exponential backoff with jitter).
    pub max_backoff: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            url: None,
            public_key: None,
            heartbeat_interval: None,
            timeout: Duration::from_secs(10),
            long_poll: Duration::from_secs(30),
            max_backoff: Duration::from_secs(300),
        }
    }
}

/// Everything the daemon needs to know; see `config.example.toml`.
#[derive(Debug, Clone)]
pub struct Config {
    /// License file, or a folder of license files.
    pub license: PathBuf,
    /// Vendor public keys (SPKI PEM bundle).
    pub trusted_keys: PathBuf,
    /// Vendor revocation list (optional file).
    pub revocations: PathBuf,
    /// Folder holding the cluster key and the state database.
    pub state_dir: PathBuf,
    /// API listen address (used by the binary and by `status`).
    pub listen: SocketAddr,
    /// File with the bearer token; required on a non-loopback address.
    pub token_file: Option<PathBuf>,
    /// The token itself, when set programmatically or via `KACHING_TOKEN`.
    pub token: Option<Secret>,
    /// Product this verifier guards.
    pub audience: String,
    /// Node lease lifetime without a heartbeat.
    pub lease_ttl: Duration,
    /// Wall clock may sit this far below the trusted-time mark.
    pub clock_tolerance: Duration,
    /// Window before expiry that reads `expiring`.
    pub expiring_window: Duration,
    /// Skew allowed against `nbf`.
    pub nbf_skew: Duration,
    /// Re-evaluation and file re-check interval.
    pub tick: Duration,
    /// File event debounce.
    pub debounce: Duration,
    /// How long idempotency keys are remembered.
    pub idempotency_ttl: Duration,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Open API connections at most (kept below the open-file limit).
    pub max_connections: usize,
    /// From a request's first byte to its complete head.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight is closed after this long.
    pub idle_timeout: Duration,
    /// Deadline of every API request except the `/v1/events` stream.
    pub request_timeout: Duration,
    /// From SIGTERM to the end of the process, whatever is still running.
    pub shutdown_timeout: Duration,
    /// Tier catalog to use instead of the built-in one.
    pub tiers: Option<PathBuf>,
    /// Connected mode: the `[relay]` section (off while `relay.url` is unset).
    pub relay: RelayConfig,
    /// Where "now" comes from. Not configurable from files: tests inject
    /// offsets here to simulate a clock wound back.
    pub clock: Clock,
    /// A root of trust pinned by the program that embeds the verifier (not
    /// settable from TOML or the environment: an editable file is exactly
    /// what pinning avoids). `None`: the root built into the binary, if any
    /// (`KACHING_PINNED_ROOT` at build time), else development trust.
    pub pinned_root: Option<std::sync::Arc<[u8]>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            license: "/etc/kaching/license.lic".into(),
            trusted_keys: "/etc/kaching/vendor.pub".into(),
            revocations: "/etc/kaching/revocations.krl".into(),
            state_dir: "/var/lib/kaching".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 7741)),
            token_file: None,
            token: None,
            audience: "bzzz".into(),
            lease_ttl: Duration::from_secs(300),
            clock_tolerance: Duration::from_secs(86_400),
            expiring_window: Duration::from_secs(30 * 86_400),
            nbf_skew: Duration::from_secs(300),
            tick: Duration::from_secs(1),
            debounce: Duration::from_millis(150),
            idempotency_ttl: Duration::from_secs(7 * 86_400),
            max_body_bytes: 16 * 1024,
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(10),
            tiers: None,
            relay: RelayConfig::default(),
            pinned_root: None,
            clock: Clock::system(),
        }
    }
}

/// The file form: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    license: Option<PathBuf>,
    trusted_keys: Option<PathBuf>,
    revocations: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    listen: Option<String>,
    token_file: Option<PathBuf>,
    audience: Option<String>,
    lease_ttl: Option<String>,
    clock_tolerance: Option<String>,
    expiring_window: Option<String>,
    nbf_skew: Option<String>,
    tick: Option<String>,
    debounce: Option<String>,
    idempotency_ttl: Option<String>,
    max_body_bytes: Option<usize>,
    max_connections: Option<usize>,
    header_read_timeout: Option<String>,
    idle_timeout: Option<String>,
    request_timeout: Option<String>,
    shutdown_timeout: Option<String>,
    tiers: Option<PathBuf>,
    relay: Option<FileRelay>,
}

/// The file form of `[relay]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRelay {
    url: Option<String>,
    public_key: Option<PathBuf>,
    heartbeat_interval: Option<String>,
    timeout: Option<String>,
    long_poll: Option<String>,
    max_backoff: Option<String>,
}

/// Keys that may be set from the environment as `KACHING_<KEY>`.
pub const ENV_KEYS: &[&str] = &[
    "license",
    "trusted_keys",
    "revocations",
    "state_dir",
    "listen",
    "token_file",
    "token",
    "audience",
    "lease_ttl",
    "clock_tolerance",
    "expiring_window",
    "nbf_skew",
    "tick",
    "debounce",
    "idempotency_ttl",
    "max_body_bytes",
    "max_connections",
    "header_read_timeout",
    "idle_timeout",
    "request_timeout",
    "shutdown_timeout",
    "tiers",
    "relay_url",
    "relay_public_key",
    "relay_heartbeat_interval",
    "relay_timeout",
    "relay_long_poll",
    "relay_max_backoff",
];

impl Config {
    /// The three files the daemon watches.
    pub fn watched(&self) -> crate::loader::Watched {
        crate::loader::Watched {
            license: self.license.clone(),
            trusted_keys: self.trusted_keys.clone(),
            revocations: self.revocations.clone(),
            roots: crate::loader::roots_folder(&self.trusted_keys),
        }
    }

    /// A configuration rooted in one folder (for tests and demos):
    /// `dir/license.lic`, `dir/vendor.pub`, `dir/revocations.krl`,
    /// `dir/state/`, listening on 127.0.0.1 port 0.
    pub fn for_dir(dir: &Path) -> Config {
        Config {
            license: dir.join("license.lic"),
            trusted_keys: dir.join("vendor.pub"),
            revocations: dir.join("revocations.krl"),
            state_dir: dir.join("state"),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Config::default()
        }
    }

    /// Defaults, then `file` (when given), then the process environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        let mut cfg = Config::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).with_context(|| {
                format!(
                    "cannot read config file {}: check the path, or run without --config to use the defaults",
                    path.display()
                )
            })?;
            cfg.apply_toml(&text)
                .with_context(|| format!("in config file {}", path.display()))?;
        }
        cfg.apply_env(std::env::vars())?;
        Ok(cfg)
    }

    /// Applies a TOML document over the current values.
    pub fn apply_toml(&mut self, text: &str) -> anyhow::Result<()> {
        let f: FileConfig = toml::from_str(text).context(
            "invalid configuration: see `kaching-verifier default-config` for every key",
        )?;
        macro_rules! set {
            ($($k:ident),*) => {$(
                if let Some(v) = f.$k { self.set(stringify!($k), &v_to_string(v))?; }
            )*};
        }
        set!(
            license,
            trusted_keys,
            revocations,
            state_dir,
            listen,
            token_file,
            audience,
            lease_ttl,
            clock_tolerance,
            expiring_window,
            nbf_skew,
            tick,
            debounce,
            idempotency_ttl,
            max_body_bytes,
            max_connections,
            header_read_timeout,
            idle_timeout,
            request_timeout,
            shutdown_timeout,
            tiers
        );
        if let Some(r) = f.relay {
            macro_rules! set_relay {
                ($($k:ident),*) => {$(
                    if let Some(v) = r.$k { self.set(concat!("relay_", stringify!($k)), &v_to_string(v))?; }
                )*};
            }
            set_relay!(
                url,
                public_key,
                heartbeat_interval,
                timeout,
                long_poll,
                max_backoff
            );
        }
        Ok(())
    }

    /// Applies `KACHING_*` variables from an iterator of (name, value).
    pub fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<()> {
        for (name, value) in vars {
            let Some(key) = name.strip_prefix("KACHING_") else {
                continue;
            };
            let key = key.to_ascii_lowercase();
            if ENV_KEYS.contains(&key.as_str()) {
                self.set(&key, &value)
                    .with_context(|| format!("in environment variable {name}"))?;
            }
        }
        Ok(())
    }

    /// Sets one key from its text form.
    pub fn set(&mut self, key: &str, value: &str) -> anyhow::Result<()> {
        let dur = |v: &str| -> anyhow::Result<Duration> {
            humantime::parse_duration(v)
                .with_context(|| format!("{key} = {v:?} is not a duration: write e.g. \"150ms\", \"5m\", \"24h\" or \"30days\""))
        };
        match key {
            "license" => self.license = value.into(),
            "trusted_keys" => self.trusted_keys = value.into(),
            "revocations" => self.revocations = value.into(),
            "state_dir" => self.state_dir = value.into(),
            "listen" => {
                self.listen = value.parse().with_context(|| {
                    format!("listen = {value:?} is not an address: write e.g. \"127.0.0.1:7741\"")
                })?
            }
            "token_file" => self.token_file = (!value.is_empty()).then(|| value.into()),
            "token" => self.token = (!value.is_empty()).then(|| Secret(value.into())),
            "audience" => self.audience = value.into(),
            "lease_ttl" => self.lease_ttl = dur(value)?,
            "clock_tolerance" => self.clock_tolerance = dur(value)?,
            "expiring_window" => self.expiring_window = dur(value)?,
            "nbf_skew" => self.nbf_skew = dur(value)?,
            "tick" => self.tick = dur(value)?,
            "debounce" => self.debounce = dur(value)?,
            "idempotency_ttl" => self.idempotency_ttl = dur(value)?,
            "max_body_bytes" => {
                self.max_body_bytes = value.parse().with_context(|| {
                    format!("max_body_bytes = {value:?} is not a number of bytes")
                })?
            }
            "max_connections" => {
                self.max_connections = value.parse().with_context(|| {
                    format!("max_connections = {value:?} is not a number of connections")
                })?
            }
            "header_read_timeout" => self.header_read_timeout = dur(value)?,
            "idle_timeout" => self.idle_timeout = dur(value)?,
            "request_timeout" => self.request_timeout = dur(value)?,
            "shutdown_timeout" => self.shutdown_timeout = dur(value)?,
            "tiers" => self.tiers = (!value.is_empty()).then(|| value.into()),
            "relay_url" => {
                self.relay.url =
                    (!value.is_empty()).then(|| value.trim_end_matches('/').to_string())
            }
            "relay_public_key" => self.relay.public_key = (!value.is_empty()).then(|| value.into()),
            "relay_heartbeat_interval" => {
                self.relay.heartbeat_interval = if value.is_empty() {
                    None
                } else {
                    Some(dur(value)?)
                }
            }
            "relay_timeout" => self.relay.timeout = dur(value)?,
            "relay_long_poll" => self.relay.long_poll = dur(value)?,
            "relay_max_backoff" => self.relay.max_backoff = dur(value)?,
            other => bail!("unknown configuration key {other:?}"),
        }
        if self.tick.is_zero() || self.lease_ttl.is_zero() {
            bail!("tick and lease_ttl must be greater than zero");
        }
        if self.max_connections == 0 {
            bail!("max_connections must be at least 1");
        }
        for (name, d) in [
            ("header_read_timeout", self.header_read_timeout),
            ("idle_timeout", self.idle_timeout),
            ("request_timeout", self.request_timeout),
            ("shutdown_timeout", self.shutdown_timeout),
        ] {
            if d.is_zero() {
                bail!("{name} must be greater than zero");
            }
        }
        if self.relay.timeout.is_zero()
            || self.relay.max_backoff.is_zero()
            || self.relay.heartbeat_interval.is_some_and(|d| d.is_zero())
        {
            bail!("relay timeout, max_backoff and heartbeat_interval must be greater than zero");
        }
        Ok(())
    }

    /// The bearer token clients must present, read from `token`/`token_file`.
    /// The file must be a regular file; one readable by every user is used
    /// but warned about loudly (the same rule as the relay's token files).
    pub fn read_token(&self) -> anyhow::Result<Option<Arc<Secret>>> {
        if let Some(t) = &self.token {
            return Ok(Some(Arc::new(t.clone())));
        }
        let Some(path) = &self.token_file else {
            return Ok(None);
        };
        let hint = || {
            format!(
                "create it with a long random token (e.g. `openssl rand -hex 32 > {}`)",
                path.display()
            )
        };
        match kaching_kit::secret::check_token(path, "API token file") {
            Ok(None) => {}
            Ok(Some(warning)) => tracing::warn!("{warning}"),
            Err(e @ kaching_kit::secret::SecretError::Unreadable { .. }) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "cannot read token file {}: {}",
                    path.display(),
                    hint()
                )))
            }
            Err(e) => return Err(e.into()),
        }
        let bytes = match crate::loader::read_regular(path, 4096, "a file holding the token") {
            crate::loader::Loaded::Good(b) => b,
            crate::loader::Loaded::Missing => {
                bail!("cannot read token file {}: {}", path.display(), hint())
            }
            crate::loader::Loaded::Rejected(why) => bail!("token file: {why}"),
        };
        let text = String::from_utf8(bytes)
            .map_err(|_| anyhow::anyhow!("token file {} is not text", path.display()))?;
        let token = text.trim().to_string();
        if token.len() < 16 {
            bail!(
                "token in {} is shorter than 16 characters: use a long random token",
                path.display()
            );
        }
        Ok(Some(Arc::new(Secret(token))))
    }

    /// The server loop's limits, with `max_connections` kept below the
    /// open-file limit `nofile` (see [`kaching_kit::rlimit::connection_cap`]).
    /// Requests in flight at shutdown get three quarters of
    /// `shutdown_timeout`; the rest is for the relay's goodbye and the flush.
    pub fn limits(&self, nofile: Option<u64>) -> kaching_kit::serve::Limits {
        kaching_kit::serve::Limits {
            max_connections: kaching_kit::rlimit::connection_cap(self.max_connections, nofile),
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            drain_timeout: self.shutdown_timeout.mul_f64(0.75),
        }
    }

    /// Refuses a listen address other than loopback without a token.
    pub fn check_listen(&self, addr: SocketAddr, token: Option<&Secret>) -> anyhow::Result<()> {
        if !addr.ip().is_loopback() && token.is_none() {
            bail!(
                "refusing to listen on {addr} without a bearer token: the API decides who may run; \
                 set token_file in the config (or KACHING_TOKEN_FILE), or listen on 127.0.0.1"
            );
        }
        Ok(())
    }
}

fn v_to_string<T: ToStringish>(v: T) -> String {
    v.to_stringish()
}

/// Lets the `set!` macro turn any file value into the text `set` parses.
trait ToStringish {
    fn to_stringish(&self) -> String;
}
impl ToStringish for String {
    fn to_stringish(&self) -> String {
        self.clone()
    }
}
impl ToStringish for PathBuf {
    fn to_stringish(&self) -> String {
        self.to_string_lossy().into_owned()
    }
}
impl ToStringish for usize {
    fn to_stringish(&self) -> String {
        self.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(a: &Config, b: &Config) -> bool {
        format!("{a:?}") == format!("{b:?}")
    }

    #[test]
    fn example_config_is_the_defaults() {
        let mut c = Config::default();
        c.apply_toml(EXAMPLE).unwrap();
        assert!(same(&c, &Config::default()), "{c:?}");
    }

    #[test]
    fn environment_overrides_file() {
        let mut c = Config::default();
        c.apply_toml("listen = \"127.0.0.1:9000\"\nlease_ttl = \"2s\"")
            .unwrap();
        c.apply_env([("KACHING_LISTEN".to_string(), "127.0.0.1:9100".to_string())])
            .unwrap();
        assert_eq!(c.listen.port(), 9100);
        assert_eq!(c.lease_ttl, Duration::from_secs(2));
    }

    #[test]
    fn relay_section_and_its_environment_overrides() {
        let mut c = Config::default();
        c.apply_toml(
            "[relay]\nurl = \"https://relay.example.com/\"\npublic_key = \"/etc/kaching/relay.pub\"\nheartbeat_interval = \"30s\"",
        )
        .unwrap();
        assert_eq!(c.relay.url.as_deref(), Some("https://relay.example.com"));
        assert_eq!(c.relay.heartbeat_interval, Some(Duration::from_secs(30)));
        c.apply_env([(
            "KACHING_RELAY_URL".to_string(),
            "http://127.0.0.1:9".to_string(),
        )])
        .unwrap();
        assert_eq!(c.relay.url.as_deref(), Some("http://127.0.0.1:9"));
        assert!(c.apply_toml("[relay]\nurll = \"x\"").is_err());
    }

    #[test]
    fn unknown_key_is_an_error() {
        let mut c = Config::default();
        assert!(c.apply_toml("lisen = \"x\"").is_err());
    }

    #[test]
    fn token_is_redacted_in_debug() {
        let c = Config {
            token: Some(Secret("hunter2-very-secret".into())),
            ..Config::default()
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
