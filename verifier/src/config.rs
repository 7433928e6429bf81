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
use kaching_kit::config::{ConfigError, EnvValues, Layers};
use serde::{Deserialize, Deserializer};

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
    /// Base URLs of the relay (`https://relay.example.com`): one, or several
    /// replicas to fail over between, tried in order; empty: air-gapped only.
    pub urls: Vec<String>,
    /// The relay's public key (SPKI PEM file), pinned: every relay answer
    /// must be signed by it. Required with a relay URL unless the root names the relay.
    pub public_key: Option<PathBuf>,
    /// Heartbeat interval instead of the license's `heartbeat.interval`.
    pub heartbeat_interval: Option<Duration>,
    /// Connect and answer timeout of one request (long-polls add `long_poll`).
    pub timeout: Duration,
    /// How long one revocation long-poll waits on the relay.
    pub long_poll: Duration,
    /// Longest pause between retries after failures (exponential backoff with jitter).
    pub max_backoff: Duration,
    /// Shortest time between two usage reports posted to the relay whose
    /// counters changed (new upgrade requests go at once).
    pub report_interval: Duration,
    /// How often a posted report is posted again, while it awaits its
    /// receipt, to pick the receipt up.
    pub receipt_poll: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            urls: Vec::new(),
            public_key: None,
            heartbeat_interval: None,
            timeout: Duration::from_secs(10),
            long_poll: Duration::from_secs(30),
            max_backoff: Duration::from_secs(300),
            report_interval: Duration::from_secs(86_400),
            receipt_poll: Duration::from_secs(600),
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
    /// Host names (besides localhost, 127.0.0.0/8 and [::1]) the API and
    /// page answer to when there is no token; any other `Host` is refused,
    /// so a rebound DNS name cannot reach them from a browser.
    pub allowed_hosts: Vec<String>,
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
    /// A license that takes anything away waits for `accept-downgrade`.
    pub hold_downgrades: bool,
    /// Connected mode: the `[relay]` section (off without a relay URL).
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
            allowed_hosts: Vec::new(),
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
            hold_downgrades: false,
            relay: RelayConfig::default(),
            pinned_root: None,
            clock: Clock::system(),
        }
    }
}

/// How defaults, file and environment combine (see `kaching_kit::config`).
/// The defaults are [`Config::default`] (a test keeps [`EXAMPLE`] equal to
/// them). Variables are text: numbers accept text, and `token` comes only
/// from the environment (`token_file` is its file form).
const LAYERS: Layers<'static> = Layers {
    defaults: "",
    env_prefix: "KACHING_",
    env_keys: ENV_KEYS,
    sections: &["relay"],
    env_only: &["token"],
    env_values: EnvValues::Text,
};

/// The configuration as the layers spell it: every key optional (unset:
/// the default), the same names as the file. Converted and checked once,
/// whole, by `TryFrom` (so an error still names the layer to fix).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Raw {
    license: Option<PathBuf>,
    trusted_keys: Option<PathBuf>,
    revocations: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    listen: Option<String>,
    token_file: Option<String>,
    token: Option<String>,
    #[serde(deserialize_with = "url_list")]
    allowed_hosts: Option<Vec<String>>,
    audience: Option<String>,
    #[serde(deserialize_with = "duration")]
    lease_ttl: Option<Duration>,
    #[serde(deserialize_with = "duration")]
    clock_tolerance: Option<Duration>,
    #[serde(deserialize_with = "duration")]
    expiring_window: Option<Duration>,
    #[serde(deserialize_with = "duration")]
    nbf_skew: Option<Duration>,
    #[serde(deserialize_with = "duration")]
    tick: Option<Duration>,
    #[serde(deserialize_with = "duration")]
    debounce: Option<Duration>,
    #[serde(deserialize_with = "duration")]
    idempotency_ttl: Option<Duration>,
    #[serde(deserialize_with = "number")]
    max_body_bytes: Option<usize>,
    #[serde(deserialize_with = "number")]
    max_connections: Option<usize>,
    #[serde(deserialize_with = "duration")]
    header_read_timeout: Option<Duration>,
    #[serde(deserialize_with = "duration")]
    idle_timeout: Option<Duration>,
    #[serde(deserialize_with = "duration")]
    request_timeout: Option<Duration>,
    #[serde(deserialize_with = "duration")]
    shutdown_timeout: Option<Duration>,
    tiers: Option<String>,
    #[serde(deserialize_with = "flag")]
    hold_downgrades: Option<bool>,
    relay: RawRelay,
}

/// `[relay]` as the layers spell it.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawRelay {
    url: Option<String>,
    #[serde(deserialize_with = "url_list")]
    urls: Option<Vec<String>>,
    public_key: Option<String>,
    /// Empty: unset, like the other optional keys.
    #[serde(deserialize_with = "duration_or_unset")]
    heartbeat_interval: Option<Duration>,
    #[serde(deserialize_with = "duration")]
    timeout: Option<Duration>,
    #[serde(deserialize_with = "duration")]
    long_poll: Option<Duration>,
    #[serde(deserialize_with = "duration")]
    max_backoff: Option<Duration>,
    #[serde(deserialize_with = "duration")]
    report_interval: Option<Duration>,
    #[serde(deserialize_with = "duration")]
    receipt_poll: Option<Duration>,
}

/// `relay.urls` and `allowed_hosts`: a TOML array, or (from the
/// environment) the entries in one text, separated by commas or spaces.
fn url_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Spelled {
        List(Vec<String>),
        Text(String),
    }
    Ok(Some(match Spelled::deserialize(d)? {
        Spelled::List(l) => l,
        Spelled::Text(t) => t
            .split(|c: char| c == ',' || c.is_whitespace())
            .map(str::to_string)
            .collect(),
    }))
}

/// A duration the way people write it.
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    parse_duration(&String::deserialize(d)?).map(Some)
}

/// A duration, or empty text for unset.
fn duration_or_unset<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    if text.is_empty() {
        return Ok(None);
    }
    parse_duration(&text).map(Some)
}

fn parse_duration<E: serde::de::Error>(text: &str) -> Result<Duration, E> {
    // humantime reads `M` as months and `m` as minutes: "5M" meant as
    // minutes would be five months. Months are written out instead.
    let units = text
        .split(|c: char| c.is_ascii_digit() || c.is_whitespace() || c == '.')
        .filter(|u| !u.is_empty());
    if units.clone().any(|u| u == "M") {
        return Err(E::custom(format!(
            "{text:?}: \"M\" means months (and \"m\" minutes), too easy to mix up: write minutes as \"5min\" \
             or \"5m\", and months as days (\"30days\")"
        )));
    }
    humantime::parse_duration(text).map_err(|_| {
        E::custom(format!(
            "{text:?} is not a duration: write e.g. \"150ms\", \"5m\", \"24h\" or \"30days\""
        ))
    })
}

/// A whole number, as a TOML integer or as text.
fn number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    kaching_kit::config::number(d).map(Some)
}

/// true or false, as a TOML boolean or as text (a variable).
fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Text(String),
    }
    match Flag::deserialize(d)? {
        Flag::Bool(b) => Ok(Some(b)),
        Flag::Text(t) => match t.trim() {
            "true" => Ok(Some(true)),
            "false" => Ok(Some(false)),
            other => Err(serde::de::Error::custom(format!(
                "{other:?} is not true or false"
            ))),
        },
    }
}

/// `relay.url` (one) or `relay.urls` (several), without trailing slashes;
/// empty entries are dropped, so an empty text or list is unset.
fn relay_urls(url: Option<String>, urls: Option<Vec<String>>) -> anyhow::Result<Vec<String>> {
    let clean = |list: Vec<String>| -> Vec<String> {
        list.iter()
            .map(|u| u.trim().trim_end_matches('/').to_string())
            .filter(|u| !u.is_empty())
            .collect()
    };
    let one = clean(url.into_iter().collect());
    let many = clean(urls.unwrap_or_default());
    if !one.is_empty() && !many.is_empty() {
        bail!(
            "both relay.url and relay.urls are set: keep one (relay.urls = [\"https://relay-a\", \"https://relay-b\"] lists every replica)"
        );
    }
    let list = if many.is_empty() { one } else { many };
    if let Some(bad) = list
        .iter()
        .find(|u| !(u.starts_with("http://") || u.starts_with("https://")))
    {
        bail!("relay URL {bad:?} must start with https:// (or http:// on a trusted network)");
    }
    Ok(list)
}

/// `allowed_hosts`: bare host names or addresses (no scheme, port or
/// path), compared without case; empty entries are dropped.
fn allowed_hosts(list: Vec<String>) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for h in list {
        let h = h.trim().to_ascii_lowercase();
        if h.is_empty() {
            continue;
        }
        let with_port = h.matches(':').count() == 1 || h.contains("]:");
        if h.contains('/') || with_port {
            bail!(
                "allowed_hosts entry {h:?} is not a bare host name: write the name only, e.g. \"verifier.internal\" (any port is accepted)"
            );
        }
        out.push(h);
    }
    Ok(out)
}

/// Empty text is unset.
fn non_empty(text: Option<String>) -> Option<String> {
    text.filter(|t| !t.is_empty())
}

/// [`Config`] read through [`LAYERS`]: deserializing it checks the whole.
#[derive(Deserialize)]
#[serde(try_from = "Raw")]
struct Checked(Config);

impl TryFrom<Raw> for Checked {
    type Error = anyhow::Error;

    fn try_from(raw: Raw) -> anyhow::Result<Checked> {
        let d = Config::default();
        let listen = match raw.listen {
            Some(text) => text.parse().with_context(|| {
                format!("listen = {text:?} is not an address: write e.g. \"127.0.0.1:7741\"")
            })?,
            None => d.listen,
        };
        let r = raw.relay;
        let c = Config {
            license: raw.license.unwrap_or(d.license),
            trusted_keys: raw.trusted_keys.unwrap_or(d.trusted_keys),
            revocations: raw.revocations.unwrap_or(d.revocations),
            state_dir: raw.state_dir.unwrap_or(d.state_dir),
            listen,
            token_file: non_empty(raw.token_file).map(PathBuf::from),
            token: non_empty(raw.token).map(Secret),
            allowed_hosts: allowed_hosts(raw.allowed_hosts.unwrap_or_default())?,
            audience: raw.audience.unwrap_or(d.audience),
            lease_ttl: raw.lease_ttl.unwrap_or(d.lease_ttl),
            clock_tolerance: raw.clock_tolerance.unwrap_or(d.clock_tolerance),
            expiring_window: raw.expiring_window.unwrap_or(d.expiring_window),
            nbf_skew: raw.nbf_skew.unwrap_or(d.nbf_skew),
            tick: raw.tick.unwrap_or(d.tick),
            debounce: raw.debounce.unwrap_or(d.debounce),
            idempotency_ttl: raw.idempotency_ttl.unwrap_or(d.idempotency_ttl),
            max_body_bytes: raw.max_body_bytes.unwrap_or(d.max_body_bytes),
            max_connections: raw.max_connections.unwrap_or(d.max_connections),
            header_read_timeout: raw.header_read_timeout.unwrap_or(d.header_read_timeout),
            idle_timeout: raw.idle_timeout.unwrap_or(d.idle_timeout),
            request_timeout: raw.request_timeout.unwrap_or(d.request_timeout),
            shutdown_timeout: raw.shutdown_timeout.unwrap_or(d.shutdown_timeout),
            tiers: non_empty(raw.tiers).map(PathBuf::from),
            hold_downgrades: raw.hold_downgrades.unwrap_or(d.hold_downgrades),
            relay: RelayConfig {
                urls: relay_urls(r.url, r.urls)?,
                public_key: non_empty(r.public_key).map(PathBuf::from),
                heartbeat_interval: r.heartbeat_interval,
                timeout: r.timeout.unwrap_or(d.relay.timeout),
                long_poll: r.long_poll.unwrap_or(d.relay.long_poll),
                max_backoff: r.max_backoff.unwrap_or(d.relay.max_backoff),
                report_interval: r.report_interval.unwrap_or(d.relay.report_interval),
                receipt_poll: r.receipt_poll.unwrap_or(d.relay.receipt_poll),
            },
            ..d
        };
        c.check()?;
        Ok(Checked(c))
    }
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
    "allowed_hosts",
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
    "hold_downgrades",
    "relay_url",
    "relay_urls",
    "relay_public_key",
    "relay_heartbeat_interval",
    "relay_timeout",
    "relay_long_poll",
    "relay_max_backoff",
    "relay_report_interval",
    "relay_receipt_poll",
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
    /// Relative paths the file sets are taken from the file's folder (see
    /// [`Config::resolve_file_paths`]).
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        let mut c = LAYERS
            .load::<Checked>(file)
            .map(|c| c.0)
            .map_err(|e| match e {
                ConfigError::Read { path, source } => anyhow::Error::new(source).context(format!(
                    "cannot read config file {}: check the path, or run without --config to use the defaults",
                    path.display()
                )),
                e => invalid(e),
            })?;
        if let Some(file) = file {
            let from_env =
                env_set_keys(std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()));
            c.resolve_file_paths(file, &from_env)?;
        }
        Ok(c)
    }

    /// Defaults, then the config file's `text` (`path` names it in errors),
    /// then `env` (name, value) pairs instead of the process environment:
    /// [`Config::load`] without reading anything, for tests.
    pub fn parse(
        text: &str,
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Config> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        let from_env = env_set_keys(env.iter().map(|(k, _)| k.clone()));
        let mut c = LAYERS
            .parse::<Checked>(text, path, env)
            .map(|c| c.0)
            .map_err(invalid)?;
        if let Some(file) = path {
            c.resolve_file_paths(file, &from_env)?;
        }
        Ok(c)
    }

    /// Relative paths written in the config `file` are taken from the
    /// folder holding it (made absolute), so the configuration means the
    /// same files, state folder and cluster identity from whatever current
    /// directory a command runs in. Paths a `KACHING_*` variable set (keys
    /// in `from_env`) and command-line flags stay relative to the current
    /// directory, like any path typed in a shell. The defaults are absolute,
    /// so a relative path no variable set came from the file.
    fn resolve_file_paths(&mut self, file: &Path, from_env: &[String]) -> anyhow::Result<()> {
        let paths: [(&str, Option<&mut PathBuf>); 7] = [
            ("license", Some(&mut self.license)),
            ("trusted_keys", Some(&mut self.trusted_keys)),
            ("revocations", Some(&mut self.revocations)),
            ("state_dir", Some(&mut self.state_dir)),
            ("token_file", self.token_file.as_mut()),
            ("tiers", self.tiers.as_mut()),
            ("relay_public_key", self.relay.public_key.as_mut()),
        ];
        let mut base: Option<PathBuf> = None;
        for (key, path) in paths {
            let Some(path) = path else { continue };
            if !path.is_relative()
                || path.as_os_str().is_empty()
                || from_env.iter().any(|k| k == key)
            {
                continue;
            }
            let dir = match &base {
                Some(dir) => dir,
                None => base.insert(
                    std::path::absolute(kaching_kit::fs::parent_of(file)).with_context(|| {
                        format!(
                            "cannot tell which folder holds config file {} (the relative paths in it are taken from there): \
                             check that the current directory still exists, or pass --config as an absolute path",
                            file.display()
                        )
                    })?,
                ),
            };
            *path = dir.join(&*path);
        }
        Ok(())
    }

    /// The rules no single key can check, on the effective configuration.
    fn check(&self) -> anyhow::Result<()> {
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
            || self.relay.report_interval.is_zero()
            || self.relay.receipt_poll.is_zero()
            || self.relay.heartbeat_interval.is_some_and(|d| d.is_zero())
        {
            bail!("relay timeout, max_backoff, heartbeat_interval, report_interval and receipt_poll must be greater than zero");
        }
        for (name, value, max) in self.bounded_durations() {
            if value > max {
                bail!(
                    "{name} = \"{}\" is longer than any working setup needs: allowed at most \"{}\" \
                     (docs/verifier.md, \"Configuration\", lists every limit); check the unit \
                     (\"m\" is minutes, \"d\" days)",
                    humantime::format_duration(value),
                    humantime::format_duration(max)
                );
            }
        }
        Ok(())
    }

    /// Every duration setting with the longest value accepted: far above
    /// what a real setup uses, low enough that a slip of the unit ("5M",
    /// five months, for a lease) or of the keyboard is refused instead of
    /// expiring leases in the year 100002055456.
    fn bounded_durations(&self) -> Vec<(&'static str, Duration, Duration)> {
        const MIN: u64 = 60;
        const HOUR: u64 = 3_600;
        const DAY: u64 = 86_400;
        let d = Duration::from_secs;
        let mut v = vec![
            ("lease_ttl", self.lease_ttl, d(7 * DAY)),
            ("clock_tolerance", self.clock_tolerance, d(30 * DAY)),
            ("expiring_window", self.expiring_window, d(366 * DAY)),
            ("nbf_skew", self.nbf_skew, d(DAY)),
            ("tick", self.tick, d(HOUR)),
            ("debounce", self.debounce, d(MIN)),
            ("idempotency_ttl", self.idempotency_ttl, d(90 * DAY)),
            ("header_read_timeout", self.header_read_timeout, d(10 * MIN)),
            ("idle_timeout", self.idle_timeout, d(DAY)),
            ("request_timeout", self.request_timeout, d(10 * MIN)),
            ("shutdown_timeout", self.shutdown_timeout, d(10 * MIN)),
            ("relay.timeout", self.relay.timeout, d(10 * MIN)),
            ("relay.long_poll", self.relay.long_poll, d(HOUR)),
            ("relay.max_backoff", self.relay.max_backoff, d(DAY)),
            (
                "relay.report_interval",
                self.relay.report_interval,
                d(31 * DAY),
            ),
            ("relay.receipt_poll", self.relay.receipt_poll, d(DAY)),
        ];
        if let Some(h) = self.relay.heartbeat_interval {
            v.push(("relay.heartbeat_interval", h, d(7 * DAY)));
        }
        v
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

/// The keys of [`ENV_KEYS`] that the variables named in `names` set
/// (matched as `kaching_kit::config` matches them: the prefix as written,
/// the key in any case).
fn env_set_keys(names: impl IntoIterator<Item = String>) -> Vec<String> {
    names
        .into_iter()
        .filter_map(|name| {
            let key = name.strip_prefix(LAYERS.env_prefix)?.to_ascii_lowercase();
            ENV_KEYS.contains(&key.as_str()).then_some(key)
        })
        .collect()
}

/// A configuration error on one line (in config file F, key `tick`: …,
/// where TOML writes the key on a line of its own), with where to read
/// about every key.
fn invalid(e: ConfigError) -> anyhow::Error {
    let e = match e {
        ConfigError::Invalid { origin, source } => {
            let message = source.message();
            let text = source.to_string();
            match text
                .strip_prefix(message)
                .and_then(|rest| rest.trim().strip_prefix("in "))
            {
                Some(key) => anyhow::anyhow!("in {origin}, key {key}: {message}"),
                None => anyhow::anyhow!("in {origin}: {}", text.trim_end()),
            }
        }
        e => anyhow::Error::new(e),
    };
    e.context("invalid configuration (see `kaching-verifier default-config` for every key)")
}

#[cfg(test)]
mod tests;
