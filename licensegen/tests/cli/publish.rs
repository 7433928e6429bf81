//! `publish`: where the relay and token come from, and what each failure
//! says. Uploads to a real relay are tested end to end in `tests/` (kaching-e2e).

use super::common::{stderr, Env};

#[test]
fn publish_without_a_relay_says_where_to_configure_one() {
    let env = Env::new();
    let out = env
        .cmd()
        .env_remove("KACHING_RELAY_URL")
        .env_remove("KACHING_RELAY_TOKEN_FILE")
        .arg("publish")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "error: no relay to publish to: pass --relay URL, set KACHING_RELAY_URL, or add `[relay] url = \"…\"` to kaching.toml\n"
    );
}

#[test]
fn publish_without_a_token_says_how_to_make_one() {
    let env = Env::new();
    let out = env
        .cmd()
        .env_remove("KACHING_RELAY_TOKEN_FILE")
        .args(["publish", "--relay", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("kaching-relay token create --scope publish"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn publish_to_an_unreachable_relay_exits_20() {
    let env = Env::new();
    // Relay and token from kaching.toml; port 9 (discard) refuses on loopback.
    let toml = env.dir.join("kaching.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    text.push_str("\n[relay]\nurl = \"http://127.0.0.1:9\"\ntoken_file = \"relay.token\"\n");
    std::fs::write(&toml, text).unwrap();
    std::fs::write(env.dir.join("relay.token"), "sometoken\n").unwrap();
    private(&env.dir.join("relay.token"));
    let out = env
        .cmd()
        .env_remove("KACHING_RELAY_URL")
        .env_remove("KACHING_RELAY_TOKEN_FILE")
        .arg("publish")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(20), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("error: cannot reach the relay at http://127.0.0.1:9 ("),
        "{}",
        stderr(&out)
    );
}

fn private(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn attack_world_readable_relay_token_file_warns() {
    let env = Env::new();
    let token = env.dir.join("relay.token");
    std::fs::write(&token, "sometoken\n").unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = env
        .cmd()
        .args(["publish", "--relay", "http://127.0.0.1:9", "--token-file"])
        .arg(&token)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!(
            "warning: relay token file {} is readable by every user (mode 644)",
            token.display()
        )),
        "{err}"
    );
    assert!(err.contains("chmod 640"), "{err}");
    // A warning, not a refusal: publish went on to try the relay.
    assert_eq!(out.status.code(), Some(20), "{err}");
}
