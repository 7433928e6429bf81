#![allow(clippy::unwrap_used)]

use super::*;

/// A configuration shaped like the daemons': plain keys, a duration, a section.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
struct Conf {
    listen: String,
    max: usize,
    #[serde(deserialize_with = "duration")]
    idle: Duration,
    limit: Limit,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
struct Limit {
    per_second: f64,
    burst: u32,
}

impl Default for Conf {
    fn default() -> Self {
        Conf {
            listen: "127.0.0.1:1".into(),
            max: 10,
            idle: Duration::from_secs(60),
            limit: Limit::default(),
        }
    }
}

impl Default for Limit {
    fn default() -> Self {
        Limit {
            per_second: 20.0,
            burst: 100,
        }
    }
}

const DEFAULTS: &str = "listen = \"127.0.0.1:2\"\nidle = \"1m\"\n[limit]\nburst = 50\n";

const LAYERS: Layers<'static> = Layers {
    defaults: DEFAULTS,
    env_prefix: "APP_",
    env_keys: &["listen", "max", "idle", "limit_per_second", "limit_burst"],
    sections: &["limit"],
    env_only: &[],
    env_values: EnvValues::Typed,
};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn parse(text: &str, vars: &[(&str, &str)]) -> Result<Conf, ConfigError> {
    LAYERS.parse(text, Some(Path::new("/etc/app.toml")), env(vars))
}

#[test]
fn each_layer_overrides_the_one_before_key_by_key() {
    let c = parse("", &[]).unwrap();
    assert_eq!(c.listen, "127.0.0.1:2", "defaults text over Default");
    assert_eq!(c.limit.burst, 50);
    assert_eq!(c.limit.per_second, 20.0, "a section merges, not replaces");
    let c = parse("max = 3\n[limit]\nper_second = 1.5\n", &[]).unwrap();
    assert_eq!((c.max, c.limit.per_second, c.limit.burst), (3, 1.5, 50));
    let c = parse(
        "max = 3\nlisten = \"a:1\"\n",
        &[
            ("APP_MAX", "4"),
            ("APP_LIMIT_BURST", "7"),
            ("APP_IDLE", "5s"),
        ],
    )
    .unwrap();
    assert_eq!(c.max, 4, "the environment wins over the file");
    assert_eq!(c.listen, "a:1");
    assert_eq!(c.limit.burst, 7);
    assert_eq!(c.idle, Duration::from_secs(5));
}

#[test]
fn other_variables_with_the_prefix_are_left_alone() {
    let c = parse(
        "",
        &[("APP_URL", "x"), ("OTHER_MAX", "9"), ("APP_MAX", "2")],
    )
    .unwrap();
    assert_eq!(c.max, 2);
}

#[test]
fn typed_values_fall_back_to_text_and_text_mode_keeps_text() {
    assert_eq!(typed_value("100"), toml::Value::Integer(100));
    assert_eq!(typed_value("true"), toml::Value::Boolean(true));
    assert_eq!(typed_value("\"q\""), toml::Value::String("q".into()));
    for text in [
        "5m",
        "/var/lib/x",
        "127.0.0.1:9",
        "-----BEGIN PUBLIC KEY-----\nAA==\n",
    ] {
        assert_eq!(
            typed_value(text),
            toml::Value::String(text.into()),
            "{text}"
        );
    }
    #[derive(Debug, Deserialize)]
    struct Named {
        name: String,
    }
    let text = Layers {
        defaults: "",
        env_prefix: "APP_",
        env_keys: &["name"],
        sections: &[],
        env_only: &[],
        env_values: EnvValues::Text,
    };
    let n: Named = text.parse("", None, env(&[("APP_NAME", "123")])).unwrap();
    assert_eq!(n.name, "123");
}

#[test]
fn an_invalid_variable_is_named() {
    let e = parse("max = 3", &[("APP_LISTEN", "b:2"), ("APP_MAX", "many")]).unwrap_err();
    assert_eq!(e.to_string(), "in environment variable APP_MAX");
    let chain = format!("{e}: {}", std::error::Error::source(&e).unwrap());
    assert!(chain.contains("invalid type"), "{chain}");
}

#[test]
fn an_invalid_file_is_named_and_unknown_keys_are_refused() {
    let e = parse("lisen = \"x\"", &[("APP_MAX", "4")]).unwrap_err();
    assert!(matches!(
        &e,
        ConfigError::Invalid {
            origin: Origin::File(Some(_)),
            ..
        }
    ));
    assert_eq!(e.to_string(), "in config file /etc/app.toml");
    let cause = std::error::Error::source(&e).unwrap().to_string();
    assert!(cause.contains("unknown field `lisen`"), "{cause}");
    let e = parse("idle = \"soon\"", &[]).unwrap_err();
    let cause = std::error::Error::source(&e).unwrap().to_string();
    assert!(
        cause.contains("\"soon\" is not a duration like 30s"),
        "{cause}"
    );
}

#[test]
fn a_syntax_error_names_the_file() {
    let e = parse("max = = 3", &[]).unwrap_err();
    assert_eq!(e.to_string(), "config file /etc/app.toml is not valid TOML");
    let e = LAYERS
        .parse::<Conf>("max = = 3", None, Vec::new())
        .unwrap_err();
    assert_eq!(e.to_string(), "the configuration is not valid TOML");
}

#[test]
fn a_section_key_over_a_plain_value_names_the_variable() {
    let e = parse("limit = 5", &[("APP_LIMIT_BURST", "7")]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "[limit] must be a table (environment variable APP_LIMIT_BURST sets a key in it)"
    );
}

#[test]
fn load_names_an_unreadable_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let e = LAYERS.load::<Conf>(Some(&missing)).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert!(e.to_string().starts_with("cannot read config file "), "{e}");
    let file = dir.path().join("app.toml");
    std::fs::write(&file, "max = 8\n").unwrap();
    assert_eq!(LAYERS.load::<Conf>(Some(&file)).unwrap().max, 8);
}

#[test]
fn an_env_only_key_is_taken_from_a_variable_and_refused_in_the_file() {
    #[derive(Debug, Default, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Secretive {
        token: Option<String>,
        limit: Limit,
    }
    let layers = Layers {
        defaults: "",
        env_prefix: "APP_",
        env_keys: &["token", "limit_burst"],
        sections: &["limit"],
        env_only: &["token", "limit_burst"],
        env_values: EnvValues::Typed,
    };
    let path = Some(Path::new("/etc/app.toml"));
    let s: Secretive = layers
        .parse(
            "",
            path,
            env(&[("APP_TOKEN", "t0k3n"), ("APP_LIMIT_BURST", "9")]),
        )
        .unwrap();
    assert_eq!(s.token.as_deref(), Some("t0k3n"));
    assert_eq!(s.limit.burst, 9);
    let e = layers
        .parse::<Secretive>("token = \"t0k3n\"", path, env(&[("APP_TOKEN", "x")]))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "config file /etc/app.toml sets `token`, which only environment variable APP_TOKEN may set"
    );
    let e = layers
        .parse::<Secretive>("[limit]\nburst = 3", path, Vec::new())
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "config file /etc/app.toml sets `limit.burst`, which only environment variable APP_LIMIT_BURST may set"
    );
    // The same key name in another section, or a section's own key, is not it.
    let s: Secretive = layers
        .parse("[limit]\nper_second = 2.0", path, Vec::new())
        .unwrap();
    assert_eq!(s.limit.per_second, 2.0);
}

#[test]
fn a_number_may_be_an_integer_or_its_text_and_nothing_else() {
    #[derive(Debug, Deserialize)]
    struct Counted {
        #[serde(deserialize_with = "number")]
        n: usize,
    }
    let layers = Layers {
        defaults: "",
        env_prefix: "APP_",
        env_keys: &["n"],
        sections: &[],
        env_only: &[],
        env_values: EnvValues::Text,
    };
    let n = |text: &str, vars: &[(&str, &str)]| layers.parse::<Counted>(text, None, env(vars));
    assert_eq!(n("n = 12", &[]).unwrap().n, 12);
    assert_eq!(n("n = \"12\"", &[]).unwrap().n, 12);
    assert_eq!(n("n = 1", &[("APP_N", "40")]).unwrap().n, 40);
    for (text, why) in [
        ("n = -1", "\"-1\" is not a whole number like 1024"),
        ("n = \"many\"", "\"many\" is not a whole number like 1024"),
        ("n = 1.5", "expected a whole number, like 1024"),
        ("n = true", "expected a whole number, like 1024"),
    ] {
        let e = n(text, &[]).unwrap_err();
        let cause = std::error::Error::source(&e).unwrap().to_string();
        assert!(
            cause.contains(why) && cause.contains("in `n`"),
            "{text}: {cause}"
        );
    }
}
