#![allow(clippy::unwrap_used)]

use super::*;

fn same(a: &Config, b: &Config) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn parse(text: &str, vars: &[(&str, &str)]) -> anyhow::Result<Config> {
    Config::parse(
        text,
        Some(Path::new("/etc/kaching/verifier.toml")),
        env(vars),
    )
}

/// The whole error chain, as the binary prints it.
fn refused(text: &str, vars: &[(&str, &str)]) -> String {
    format!("{:#}", parse(text, vars).unwrap_err())
}

#[test]
fn example_config_is_the_defaults() {
    let c = parse(EXAMPLE, &[]).unwrap();
    assert!(same(&c, &Config::default()), "{c:?}");
    assert!(same(&parse("", &[]).unwrap(), &Config::default()));
}

#[test]
fn environment_overrides_file() {
    let c = parse(
        "listen = \"127.0.0.1:9000\"\nlease_ttl = \"2s\"",
        &[("KACHING_LISTEN", "127.0.0.1:9100")],
    )
    .unwrap();
    assert_eq!(c.listen.port(), 9100);
    assert_eq!(c.lease_ttl, Duration::from_secs(2));
}

#[test]
fn relay_section_and_its_environment_overrides() {
    let file = "[relay]\nurl = \"https://relay.example.com/\"\npublic_key = \"/etc/kaching/relay.pub\"\nheartbeat_interval = \"30s\"";
    let c = parse(file, &[]).unwrap();
    assert_eq!(c.relay.urls, ["https://relay.example.com"]);
    assert_eq!(c.relay.heartbeat_interval, Some(Duration::from_secs(30)));
    let c = parse(file, &[("KACHING_RELAY_URL", "http://127.0.0.1:9/")]).unwrap();
    assert_eq!(c.relay.urls, ["http://127.0.0.1:9"]);
    assert_eq!(c.relay.public_key, Some("/etc/kaching/relay.pub".into()));
    let c = parse(
        file,
        &[
            ("KACHING_RELAY_URL", ""),
            ("KACHING_RELAY_HEARTBEAT_INTERVAL", ""),
            ("KACHING_RELAY_TIMEOUT", "3s"),
        ],
    )
    .unwrap();
    assert!(c.relay.urls.is_empty(), "empty is unset");
    assert_eq!(c.relay.heartbeat_interval, None);
    assert_eq!(c.relay.timeout, Duration::from_secs(3));
    assert!(parse("[relay]\nurll = \"x\"", &[]).is_err());
}

#[test]
fn report_interval_and_receipt_poll_have_defaults_a_file_and_the_environment() {
    let c = parse("", &[]).unwrap();
    assert_eq!(c.relay.report_interval, Duration::from_secs(86_400));
    assert_eq!(c.relay.receipt_poll, Duration::from_secs(600));
    let file = "[relay]\nreport_interval = \"2h\"\nreceipt_poll = \"30s\"";
    let c = parse(file, &[]).unwrap();
    assert_eq!(c.relay.report_interval, Duration::from_secs(7200));
    assert_eq!(c.relay.receipt_poll, Duration::from_secs(30));
    let c = parse(file, &[("KACHING_RELAY_RECEIPT_POLL", "5s")]).unwrap();
    assert_eq!(c.relay.receipt_poll, Duration::from_secs(5));
    assert!(parse("[relay]\nreceipt_poll = \"0s\"", &[]).is_err());
}

#[test]
fn several_relay_urls_from_the_file_or_one_variable() {
    let file =
        "[relay]\nurls = [\"https://relay-a.example.com/\", \"https://relay-b.example.com\"]";
    let c = parse(file, &[]).unwrap();
    assert_eq!(
        c.relay.urls,
        ["https://relay-a.example.com", "https://relay-b.example.com"]
    );
    let c = parse(
        "",
        &[("KACHING_RELAY_URLS", "http://127.0.0.1:9, http://[::1]:9/")],
    )
    .unwrap();
    assert_eq!(c.relay.urls, ["http://127.0.0.1:9", "http://[::1]:9"]);
    let e = refused("[relay]\nurl = \"https://a\"\nurls = [\"https://b\"]", &[]);
    assert!(e.contains("both relay.url and relay.urls"), "{e}");
    let e = refused("[relay]\nurls = [\"relay.example.com\"]", &[]);
    assert!(e.contains("must start with https://"), "{e}");
}

#[test]
fn unknown_key_is_an_error() {
    let e = refused("lisen = \"x\"", &[]);
    assert!(
        e.starts_with(
            "invalid configuration (see `kaching-verifier default-config` for every key): \
             in config file /etc/kaching/verifier.toml: unknown field `lisen`"
        ),
        "{e}"
    );
}

#[test]
fn numbers_from_the_file_or_the_environment() {
    let c = parse(
        "max_body_bytes = 2048\nmax_connections = \"7\"",
        &[("KACHING_MAX_BODY_BYTES", "4096")],
    )
    .unwrap();
    assert_eq!((c.max_body_bytes, c.max_connections), (4096, 7));
    let e = refused("", &[("KACHING_MAX_CONNECTIONS", "many")]);
    assert!(
        e.contains("in environment variable KACHING_MAX_CONNECTIONS, key `max_connections`: \"many\" is not a whole number"),
        "{e}"
    );
}

#[test]
fn a_bad_value_names_the_key_the_layer_and_what_to_write() {
    let e = refused("lease_ttl = \"soon\"", &[]);
    assert!(
        e.ends_with("in config file /etc/kaching/verifier.toml, key `lease_ttl`: \"soon\" is not a duration: write e.g. \"150ms\", \"5m\", \"24h\" or \"30days\""),
        "{e}"
    );
    let e = refused("", &[("KACHING_RELAY_TIMEOUT", "")]);
    assert!(
        e.contains("in environment variable KACHING_RELAY_TIMEOUT, key `relay.timeout`: \"\" is not a duration"),
        "{e}"
    );
    let e = refused("", &[("KACHING_LISTEN", "localhost")]);
    assert!(
        e.contains("in environment variable KACHING_LISTEN: listen = \"localhost\" is not an address: write e.g. \"127.0.0.1:7741\""),
        "{e}"
    );
    for (text, why) in [
        (
            "tick = \"0s\"",
            "tick and lease_ttl must be greater than zero",
        ),
        ("max_connections = 0", "max_connections must be at least 1"),
        (
            "idle_timeout = \"0s\"",
            "idle_timeout must be greater than zero",
        ),
        (
            "[relay]\nheartbeat_interval = \"0s\"",
            "relay timeout, max_backoff, heartbeat_interval, report_interval and receipt_poll must be greater than zero",
        ),
    ] {
        let e = refused(text, &[]);
        assert!(
            e.contains(&format!("in config file /etc/kaching/verifier.toml: {why}")),
            "{text}: {e}"
        );
    }
}

#[test]
fn the_effective_configuration_is_what_is_checked() {
    // Invalid in the file, overridden by a variable: accepted.
    let c = parse("tick = \"0s\"", &[("KACHING_TICK", "2s")]).unwrap();
    assert_eq!(c.tick, Duration::from_secs(2));
    // Valid in the file, made invalid by a variable: that variable is named.
    let e = refused("tick = \"2s\"", &[("KACHING_TICK", "0s")]);
    assert!(
        e.contains(
            "in environment variable KACHING_TICK: tick and lease_ttl must be greater than zero"
        ),
        "{e}"
    );
}

#[test]
fn the_token_comes_from_the_environment_only() {
    let c = parse("", &[("KACHING_TOKEN", "0123456789abcdef")]).unwrap();
    assert_eq!(c.token, Some(Secret("0123456789abcdef".into())));
    assert_eq!(parse("", &[("KACHING_TOKEN", "")]).unwrap().token, None);
    let e = refused("token = \"0123456789abcdef\"", &[]);
    assert!(
        e.contains("config file /etc/kaching/verifier.toml sets `token`, which only environment variable KACHING_TOKEN may set"),
        "{e}"
    );
    let c = parse("token_file = \"\"\ntiers = \"\"", &[]).unwrap();
    assert_eq!((c.token_file, c.tiers), (None, None), "empty is unset");
}

#[test]
fn other_kaching_variables_are_left_alone() {
    let c = parse(
        "",
        &[
            ("KACHING_LOG", "debug"),
            ("KACHING_CONFIG", "/x.toml"),
            ("KACHING_RELAY_DATA_DIR", "/srv/relay"),
            ("KACHING_AUDIENCE", "whoosh"),
        ],
    )
    .unwrap();
    assert_eq!(c.audience, "whoosh");
}

#[test]
fn load_names_an_unreadable_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let e = format!("{:#}", Config::load(Some(&missing)).unwrap_err());
    assert!(
        e.starts_with(&format!(
            "cannot read config file {}: check the path, or run without --config to use the defaults: ",
            missing.display()
        )),
        "{e}"
    );
}

#[test]
fn token_is_redacted_in_debug() {
    let c = Config {
        token: Some(Secret("hunter2-very-secret".into())),
        ..Config::default()
    };
    assert!(!format!("{c:?}").contains("hunter2"));
}

#[test]
fn allowed_hosts_are_bare_names_from_file_or_environment() {
    let c = parse(
        "allowed_hosts = [\"BZZZ-1.internal\", \"fd00::7\", \"\"]",
        &[],
    )
    .unwrap();
    assert_eq!(c.allowed_hosts, ["bzzz-1.internal", "fd00::7"]);
    let c = parse("", &[("KACHING_ALLOWED_HOSTS", "a.internal, b.internal")]).unwrap();
    assert_eq!(c.allowed_hosts, ["a.internal", "b.internal"]);
    for bad in [
        "verifier.internal:7741",
        "http://verifier.internal",
        "[fd00::7]:80",
    ] {
        let err = refused(&format!("allowed_hosts = [{bad:?}]"), &[]);
        assert!(err.contains("not a bare host name"), "{bad}: {err}");
    }
}

/// A duration far past what any setup needs (a unit slip: "5M" is five
/// months; or a keyboard slip) is refused, naming the setting, the value
/// and the limit; the limit itself is accepted.
#[test]
fn durations_past_any_working_setup_are_refused_naming_the_setting() {
    for (text, name) in [
        ("lease_ttl = \"5months\"", "lease_ttl"),
        ("lease_ttl = \"99999999999y\"", "lease_ttl"),
        ("idempotency_ttl = \"1year\"", "idempotency_ttl"),
        ("[relay]\nreceipt_poll = \"400d\"", "relay.receipt_poll"),
    ] {
        let e = refused(text, &[]);
        assert!(
            e.contains(&format!("{name} = \"")) && e.contains("allowed at most"),
            "{e}"
        );
    }
    let e = refused("", &[("KACHING_LEASE_TTL", "8days")]);
    assert!(
        e.contains("lease_ttl = \"8days\"") && e.contains("\"7days\""),
        "{e}"
    );
    assert_eq!(
        parse("lease_ttl = \"7days\"", &[]).unwrap().lease_ttl,
        Duration::from_secs(7 * 86_400)
    );
}

/// humantime reads "M" as months and "m" as minutes: "M" is refused.
#[test]
fn capital_m_for_months_is_refused_as_too_easy_to_mix_up_with_minutes() {
    let e = refused("nbf_skew = \"5M\"", &[]);
    assert!(e.contains("\"M\" means months"), "{e}");
    assert_eq!(
        parse("nbf_skew = \"5m\"", &[]).unwrap().nbf_skew,
        Duration::from_secs(300)
    );
}

/// Relative paths written in the config file are taken from the file's
/// folder; the same key set by a variable stays relative to the current
/// directory, and absolute paths are left alone.
#[test]
fn relative_paths_in_the_file_resolve_against_its_folder_variables_against_the_current_directory() {
    let file = "license = \"license.lic\"\ntrusted_keys = \"keys/vendor.pub\"\nrevocations = \"/abs/revocations.krl\"\n\
                state_dir = \"../state\"\ntoken_file = \"api.token\"\ntiers = \"tiers.toml\"\n\
                [relay]\npublic_key = \"relay.pub\"\n";
    let c = Config::parse(file, Some(Path::new("/srv/kaching/verifier.toml")), []).unwrap();
    assert_eq!(c.license, Path::new("/srv/kaching/license.lic"));
    assert_eq!(c.trusted_keys, Path::new("/srv/kaching/keys/vendor.pub"));
    assert_eq!(c.watched().roots, Path::new("/srv/kaching/keys/roots"));
    assert_eq!(c.revocations, Path::new("/abs/revocations.krl"));
    assert_eq!(c.state_dir, Path::new("/srv/kaching/../state"));
    assert_eq!(
        c.token_file.as_deref(),
        Some(Path::new("/srv/kaching/api.token"))
    );
    assert_eq!(
        c.tiers.as_deref(),
        Some(Path::new("/srv/kaching/tiers.toml"))
    );
    assert_eq!(
        c.relay.public_key.as_deref(),
        Some(Path::new("/srv/kaching/relay.pub"))
    );
    let c = Config::parse(
        file,
        Some(Path::new("/srv/kaching/verifier.toml")),
        env(&[
            ("KACHING_STATE_DIR", "here/state"),
            ("KACHING_RELAY_PUBLIC_KEY", "relay.pub"),
        ]),
    )
    .unwrap();
    assert_eq!(
        c.state_dir,
        Path::new("here/state"),
        "a variable's path is the shell's"
    );
    assert_eq!(c.relay.public_key.as_deref(), Some(Path::new("relay.pub")));
    assert_eq!(c.license, Path::new("/srv/kaching/license.lic"));
    // A config file named relatively: its folder is made absolute.
    let c = Config::parse(file, Some(Path::new("conf/verifier.toml")), []).unwrap();
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(c.license, cwd.join("conf/license.lic"));
    let c = Config::parse(file, Some(Path::new("verifier.toml")), []).unwrap();
    assert_eq!(c.license, cwd.join("./license.lic"));
    // Without a file (text only) nothing is resolved.
    let c = Config::parse(file, None, []).unwrap();
    assert_eq!(c.license, Path::new("license.lic"));
}
