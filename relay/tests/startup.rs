//! Starting the relay and its admin commands as an operator does: one relay
//! per SQLite database, `listening on` only once the relay can serve, no
//! admin command that quietly makes a new database, `listen` checked.

// Helpers outside #[test] functions panic as the failure report.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use kaching_relay::storage::Database;
use kaching_relay::tokens::Scope;

/// The relay binary with `args`, the data directory `dir` from the
/// environment and `env` on top.
fn cli_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kaching-relay"));
    cmd.args(args)
        .env("KACHING_RELAY_DATA_DIR", dir)
        .env_remove("KACHING_RELAY_CONFIG")
        .env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run kaching-relay")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `serve --config FILE`, which must refuse to start: it never printed the
/// readiness line, and stderr says `why`.
fn refused_to_serve(config: &Path, why: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_kaching-relay"))
        .args(["serve", "--config"])
        .arg(config)
        .env_remove("KACHING_RELAY_CONFIG")
        .output()
        .expect("run kaching-relay");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(
        !stdout.contains("listening on"),
        "announced before failing: {stdout}\n{stderr}"
    );
    assert!(stderr.contains(why), "expected {why:?} in: {stderr}");
}

/// A relay on SQLite, whatever `KACHING_TEST_RELAY_BACKEND` says: these
/// tests are about the SQLite file.
async fn sqlite_relay() -> Relay {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = config(dir.path());
    Relay::start_on(dir, c, None).await
}

fn serving_since(db: &Path) -> u64 {
    let conn = kaching_relay::db::open(db).expect("db");
    kaching_relay::db::serving_since(&conn).expect("serving_since")
}

// Finding: two relay processes served one SQLite file, each with its own
// in-memory revocation list and the second restarting every grace window.

#[tokio::test]
async fn attack_second_relay_on_one_sqlite_database_refuses_to_start() {
    let first = sqlite_relay().await;
    let db = first.dir.path().join("relay.db");
    let since = serving_since(&db);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    // Without the lock, this one would serve (and stop at once: the
    // shutdown future is ready); it must refuse before touching the file.
    let err = kaching_relay::run(listener, first.config.clone(), async {})
        .await
        .expect_err("a second relay on the same SQLite database must not start");
    let err = format!("{err:#}");
    assert!(
        err.contains("another kaching-relay is serving the database")
            && err.contains(&db.display().to_string())
            && err.contains("PostgreSQL"),
        "{err}"
    );
    assert_eq!(serving_since(&db), since, "the first relay's start is kept");
    // The first one still serves.
    assert_eq!(
        first
            .http
            .get(first.url("/healthz"))
            .send()
            .await
            .expect("healthz")
            .status(),
        200
    );
    // Once it stops, the lock is let go: a relay starts on the file again.
    let dir = first.stop().await;
    let c = config(dir.path());
    let again = Relay::start_on(dir, c, None).await;
    assert_eq!(
        again
            .http
            .get(again.url("/healthz"))
            .send()
            .await
            .expect("healthz")
            .status(),
        200
    );
}

#[tokio::test]
async fn second_relay_binary_on_one_sqlite_database_says_why_and_exits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = write_config(dir.path(), "");
    let _first = spawn_relay(&conf).await;
    let mut second = tokio::process::Command::new(env!("CARGO_BIN_EXE_kaching-relay"));
    second
        .args(["serve", "--config"])
        .arg(&conf)
        .env_remove("KACHING_RELAY_CONFIG")
        .kill_on_drop(true);
    // A bound, not a timing assertion: a second relay that served would
    // otherwise hang the suite.
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), second.output())
        .await
        .expect("the second relay refuses to start instead of serving")
        .expect("run kaching-relay");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(!stdout.contains("listening on"), "{stdout}");
    assert!(
        stderr.contains("another kaching-relay is serving the database")
            && stderr.contains(&dir.path().join("data/relay.db").display().to_string())
            && stderr.contains("use PostgreSQL"),
        "{stderr}"
    );
}

#[tokio::test]
async fn admin_commands_work_while_the_relay_serves() {
    let relay = sqlite_relay().await;
    let dir = relay.dir.path();
    let created = cli_env(
        dir,
        &["token", "create", "--scope", "admin", "--name", "ops"],
        &[],
    );
    assert!(created.status.success(), "{}", text(&created.stderr));
    let token = text(&created.stdout).trim().to_string();
    // The serving relay accepts the token the CLI made next to it.
    let (status, _) = relay
        .get_as::<serde_json::Value>("/v1/upgrade-requests", &token)
        .await;
    assert_eq!(status, 200);
    for args in [
        &["token", "list"][..],
        &["audit", "verify"],
        &["migrate"],
        &["relay-key"],
    ] {
        let out = cli_env(dir, args, &[]);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    }
    assert!(cli_env(dir, &["token", "revoke", "ops"], &[])
        .status
        .success());
}

/// Finding: a second relay (or a list written by another process) left the
/// served list behind, and publishing it again answered "already the
/// current one" while the old version kept being served.
#[tokio::test]
async fn republishing_the_stored_list_serves_it_when_the_relay_is_behind() {
    let relay = sqlite_relay().await;
    let token = relay.token(Scope::Publish, "pub");
    let list = revocation_list(3, &[], &vendor());
    // Stored by another writer: this relay's in-memory copy does not know.
    let conn = kaching_relay::db::open(&relay.dir.path().join("relay.db")).expect("db");
    conn.execute(
        "INSERT INTO revocation_lists (version, bytes, kid, received_at) VALUES (3, ?1, ?2, ?3)",
        rusqlite::params![list, vendor().public().kid().to_string(), now()],
    )
    .expect("insert");
    let r = relay.publish(&token, list.clone()).await;
    assert_eq!(r.status(), 200);
    let got = relay
        .http
        .get(relay.url("/v1/revocations"))
        .send()
        .await
        .expect("get");
    assert_eq!(got.status(), 200, "the stored list is served now");
    assert_eq!(got.headers()["x-kaching-revocation-version"], "3");
    assert_eq!(got.bytes().await.expect("body").to_vec(), list);
}

// Finding: admin commands run against a wrong data_dir made a new, empty
// database and answered as if it were the relay's.

#[test]
fn token_commands_refuse_a_missing_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wrong = dir.path().join("wrong");
    for args in [
        &["token", "list"][..],
        &["token", "create", "--scope", "admin", "--name", "ops"],
        &["token", "revoke", "ops"],
        &["audit", "verify"],
    ] {
        let out = cli_env(&wrong, args, &[]);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {}", text(&out.stdout));
        assert!(
            stderr.contains(&format!(
                "no database at {}",
                wrong.join("relay.db").display()
            )) && stderr.contains("check data_dir"),
            "{args:?}: {stderr}"
        );
        assert!(text(&out.stdout).is_empty(), "{args:?}");
    }
    assert!(!wrong.exists(), "nothing was created");
    // `migrate` is the admin command that makes a new relay's database
    // (tokens can then be created before it first serves).
    assert!(cli_env(&wrong, &["migrate"], &[]).status.success());
    let out = cli_env(
        &wrong,
        &["token", "create", "--scope", "admin", "--name", "ops"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn migrate_from_a_missing_sqlite_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope/relay.db");
    let out = migrate_cli(dir.path(), &missing, "postgres://u:p@127.0.0.1:1/db");
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no database at"), "{stderr}");
    assert!(!missing.exists());
}

#[test]
fn sqlite_url_with_a_relative_path_is_refused_with_the_expected_form() {
    for bad in [
        "sqlite://tmp/x.db",
        "sqlite://relay.db",
        "sqlite://./relay.db",
    ] {
        let err = Database::parse(bad).expect_err(bad).to_string();
        assert!(
            err.contains("sqlite:///var/lib/kaching-relay/relay.db") && err.contains("absolute"),
            "{bad}: {err}"
        );
    }
    assert!(matches!(
        Database::parse("sqlite:///tmp/x.db"),
        Ok(Database::Sqlite(p)) if p == Path::new("/tmp/x.db")
    ));
}

// Finding: `listening on ADDR` (what scripts wait for) was printed before
// the database and the relay key were opened.

#[test]
fn serve_does_not_announce_with_a_bad_database_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = write_config(dir.path(), "database = \"mysql://db/relay\"");
    refused_to_serve(&conf, "neither sqlite:///path/relay.db nor postgres://");
}

#[test]
fn serve_does_not_announce_with_a_relay_key_others_may_read() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = write_config(dir.path(), "");
    let data = dir.path().join("data");
    assert!(cli_env(&data, &["relay-key"], &[]).status.success());
    let key = data.join("relay-key.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    refused_to_serve(&conf, "chmod 600");
}

#[test]
fn serve_does_not_announce_when_data_dir_cannot_be_made() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = write_config(dir.path(), "");
    // data_dir is a file: no directory can be made there (even as root).
    std::fs::write(dir.path().join("data"), b"not a directory").expect("write");
    refused_to_serve(&conf, "cannot create data directory");
}

#[test]
fn serve_does_not_announce_when_postgres_is_unreachable() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Port 1 on loopback: refused at once.
    let conf = write_config(dir.path(), "database = \"postgres://u:p@127.0.0.1:1/db\"");
    refused_to_serve(&conf, "127.0.0.1");
}

// Finding: `listen` without a port failed at bind time, suggesting another
// process held it.

#[test]
fn listen_without_a_port_is_refused_naming_the_layer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = cli_env(
        dir.path(),
        &["serve"],
        &[("KACHING_RELAY_LISTEN", "127.0.0.1")],
    );
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("invalid KACHING_RELAY_* variables")
            && stderr.contains("listen = \"127.0.0.1\" has no port"),
        "{stderr}"
    );
    assert!(!stderr.contains("another process"), "{stderr}");
    let conf = write_config(dir.path(), "");
    let text_conf = std::fs::read_to_string(&conf)
        .expect("read")
        .replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1\"");
    std::fs::write(&conf, text_conf).expect("write");
    refused_to_serve(
        &conf,
        &format!("invalid configuration in {}", conf.display()),
    );
}

#[test]
fn listen_failures_blame_another_process_only_when_the_port_is_taken() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let conf = write_config(dir.path(), "");
    let with = |listen: &str| {
        let t = std::fs::read_to_string(&conf)
            .expect("read")
            .lines()
            .map(|l| {
                if l.starts_with("listen = ") {
                    format!("listen = {listen:?}")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&conf, t).expect("write");
    };
    with(&addr);
    refused_to_serve(&conf, "another process is using it");
    // Not an address of this machine (TEST-NET-1): no one else to blame.
    with("192.0.2.1:7878");
    let out = Command::new(env!("CARGO_BIN_EXE_kaching-relay"))
        .args(["serve", "--config"])
        .arg(&conf)
        .output()
        .expect("run");
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot listen on 192.0.2.1:7878") && !stderr.contains("another process"),
        "{stderr}"
    );
    // The database was not touched by a relay that could not listen.
    assert!(!dir.path().join("data/relay.db").exists());
}

/// Opening the database moved before the announcement; the signal handler
/// is still installed before it: a SIGTERM sent the moment the address is
/// read stops the relay cleanly (exit 0), every time.
#[tokio::test]
async fn sigterm_right_after_the_address_is_announced_stops_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = write_config(dir.path(), "");
    for _ in 0..5 {
        let mut relay = spawn_relay(&conf).await;
        let pid = relay.child.id().expect("pid").to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(sent.success());
        // A bound, not a timing assertion: a relay that ignored the signal
        // would otherwise hang the suite.
        let status = tokio::time::timeout(std::time::Duration::from_secs(60), relay.child.wait())
            .await
            .expect("the relay stops on SIGTERM")
            .expect("wait");
        assert!(status.success(), "{status:?}");
    }
}
