//! init, keys, finding the vendor directory, passphrases, corrupt files, generated docs.

use std::process::Command as StdCommand;

use super::common::{bare, stderr, stdout, Env, PASS};

#[test]
fn init_creates_every_vendor_file_and_never_writes_the_key_in_clear() {
    let env = Env::new();
    for f in [
        "vendor.key",
        "vendor.pub",
        "ledger.sqlite",
        "revocations.cose",
        "revocations.asc",
        "tiers.toml",
        "kaching.toml",
    ] {
        assert!(env.dir.join(f).is_file(), "{f} missing");
    }
    let key = std::fs::read_to_string(env.dir.join("vendor.key")).unwrap();
    assert!(key.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
    for (path, bytes) in env.snapshot() {
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("PRIVATE KEY"),
            "{} holds a clear key",
            path.display()
        );
    }
    let toml = std::fs::read_to_string(env.dir.join("kaching.toml")).unwrap();
    assert!(toml.contains("issuer = \"Example Software\"") && toml.contains("audience = \"bzzz\""));
    assert_eq!(env.revocation_version(), 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(env.dir.join("vendor.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn init_prints_what_it_made() {
    let tmp = tempfile::tempdir().unwrap();
    let out = bare(tmp.path())
        .args(["init", "v"])
        .env("KACHING_PASSPHRASE", PASS)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let s = stdout(&out);
    assert!(
        s.starts_with("created vendor directory v\n  vendor key  v/vendor.key (kid "),
        "{s}"
    );
    assert!(s.ends_with("Back up v/vendor.key and its passphrase now: without them no license can be issued or revoked.\n"));
}

#[test]
fn init_refuses_to_overwrite_a_vendor_directory() {
    let env = Env::new();
    let before = env.snapshot();
    let out = env.cmd().args(["init", "vendor"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "error: vendor already holds a vendor directory (kaching.toml exists): init never overwrites one; choose another folder\n"
    );
    assert_eq!(env.snapshot(), before);
}

#[test]
fn init_off_a_terminal_without_passphrase_says_how_to_give_one() {
    let tmp = tempfile::tempdir().unwrap();
    let out = bare(tmp.path()).args(["init", "v"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "error: no passphrase: not at a terminal, so pass --passphrase-file FILE or set KACHING_PASSPHRASE\n"
    );
    assert!(!tmp.path().join("v").exists());
}

#[test]
fn passphrase_file_works_for_init_and_issue() {
    let tmp = tempfile::tempdir().unwrap();
    let pf = tmp.path().join("pass.txt");
    std::fs::write(&pf, format!("{PASS}\n")).unwrap();
    set_mode(&pf, 0o600);
    bare(tmp.path())
        .args(["init", "v", "--passphrase-file"])
        .arg(&pf)
        .assert()
        .success();
    bare(tmp.path())
        .args([
            "--dir",
            "v",
            "issue",
            "--customer",
            "A",
            "--tier",
            "evaluation",
            "--passphrase-file",
        ])
        .arg(&pf)
        .assert()
        .success();
}

#[test]
fn missing_vendor_directory_says_to_run_init() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = std::fs::canonicalize(tmp.path()).unwrap();
    let out = bare(&cwd).args(["ledger", "list"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "error: no vendor directory in {} or its parents: run `licensegen init DIR`, or pass --dir DIR (or set KACHING_DIR)\n",
            cwd.display()
        )
    );
    // `--dir` naming a folder that is no vendor directory:
    // tests/cmd/not-a-vendor-dir.toml.
}

#[test]
fn vendor_directory_is_found_from_a_subfolder_like_git() {
    let env = Env::new();
    let sub = env.dir.join("licenses");
    let out = bare(&sub).args(["key", "show"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("algorithm:   Ed25519, signed as EdDSA (COSE -8)"));
}

#[test]
fn key_show_and_export_public_match_vendor_pub() {
    let env = Env::new();
    let pk = env.pubkey();
    let key = pk.iter().next().unwrap();
    let out = env.cmd().args(["key", "show", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kid"], key.kid().to_hex());
    assert_eq!(v["algorithm"], "Ed25519");
    assert_eq!(v["cose_alg"], -8);
    assert_eq!(v["fingerprint_sha256"], key.fingerprint());
    let out = env.cmd().args(["key", "export-public"]).output().unwrap();
    assert_eq!(
        stdout(&out),
        std::fs::read_to_string(env.dir.join("vendor.pub")).unwrap()
    );
}

#[test]
fn vendor_pub_is_readable_by_openssl() {
    let env = Env::new();
    match StdCommand::new("openssl")
        .args(["pkey", "-pubin", "-noout", "-in"])
        .arg(env.dir.join("vendor.pub"))
        .output()
    {
        Err(_) => println!(
            "SKIPPED: openssl is not installed, vendor.pub not checked by a third-party tool"
        ),
        Ok(out) => assert!(
            out.status.success(),
            "openssl: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

#[test]
fn wrong_passphrase_is_clear_and_changes_nothing() {
    let env = Env::new();
    let (id, _) = env.issue(&["--customer", "A", "--tier", "standard"]);
    let before = env.snapshot();
    let key = env.dir.join("vendor.key");
    let expected = format!("error: wrong passphrase for {}: try again (check --passphrase-file or KACHING_PASSPHRASE); nothing was changed\n", key.display());
    for args in [
        vec!["issue", "--customer", "B", "--tier", "standard"],
        vec!["suspend", id.as_str()],
        vec!["upgrade", id.as_str(), "--tier", "enterprise"],
        vec!["revocations", "refresh"],
    ] {
        let out = env
            .cmd()
            .args(&args)
            .env("KACHING_PASSPHRASE", "not the passphrase")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(stderr(&out), expected, "{args:?}");
        assert_eq!(env.snapshot(), before, "{args:?} changed files");
    }
}

#[test]
fn corrupt_ledger_is_reported_and_left_alone() {
    let env = Env::new();
    let ledger = env.dir.join("ledger.sqlite");
    std::fs::write(&ledger, b"this is not sqlite, just some bytes that are long enough to be a header......................................................").unwrap();
    let before = env.snapshot();
    for args in [
        vec!["ledger", "list"],
        vec!["issue", "--customer", "A", "--tier", "standard"],
    ] {
        let out = env.cmd().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            stderr(&out),
            format!("error: ledger {} is corrupt or not a licensegen ledger (file is not a database): restore it from your backup of the vendor directory\n", ledger.display())
        );
    }
    let mut after = env.snapshot();
    after.retain(|p, _| {
        !p.to_string_lossy().ends_with("-shm") && !p.to_string_lossy().ends_with("-wal")
    });
    assert_eq!(after, before);
}

#[test]
fn completions_and_man_pages_come_from_the_clap_definition() {
    let tmp = tempfile::tempdir().unwrap();
    let out = bare(tmp.path())
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("licensegen") && stdout(&out).contains("revocations"));
    let out = bare(tmp.path()).args(["man"]).output().unwrap();
    assert!(
        stdout(&out).starts_with(".ie \\n(.g .ds Aq"),
        "{}",
        stdout(&out)
    );
    bare(tmp.path())
        .args(["man", "--out", "man"])
        .assert()
        .success();
    assert!(tmp.path().join("man/licensegen.1").is_file());
    assert!(tmp.path().join("man/licensegen-issue.1").is_file());
}

#[test]
fn in_process_run_behaves_like_the_binary() {
    let env = Env::new();
    let dir = env.dir.to_string_lossy().into_owned();
    assert_eq!(
        licensegen::run_code(["licensegen", "--dir", &dir, "key", "show"]),
        0
    );
    assert_eq!(
        licensegen::run_code(["licensegen", "--dir", &dir, "ledger", "show", "ffff"]),
        2
    );
    assert_eq!(licensegen::run_code(["licensegen", "--no-such-flag"]), 2);
    assert_eq!(licensegen::run_code(["licensegen", "--version"]), 0);
}

fn set_mode(p: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn attack_group_readable_passphrase_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let pf = tmp.path().join("pass.txt");
    std::fs::write(&pf, format!("{PASS}\n")).unwrap();
    set_mode(&pf, 0o640);
    let out = bare(tmp.path())
        .args(["init", "v", "--passphrase-file"])
        .arg(&pf)
        .assert()
        .failure()
        .get_output()
        .clone();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err,
        format!(
            "error: passphrase file {0} is readable by other users (mode 640): run `chmod 600 {0}`\n",
            pf.display()
        )
    );
    assert!(!tmp.path().join("v").exists(), "nothing may be created");
}

#[test]
fn a_ledger_that_cannot_be_written_is_not_called_corrupt() {
    // Root ignores file modes, so a folder where SQLite's `-wal` or `-shm`
    // file belongs stands in for a read-only one.
    let env = Env::new();
    for side in ["ledger.sqlite-wal", "ledger.sqlite-shm"] {
        let blocker = env.dir.join(side);
        std::fs::create_dir(&blocker).unwrap();
        let before = env.snapshot();
        {
            let args = ["issue", "--customer", "A", "--tier", "standard"];
            let out = env.cmd().args(args).output().unwrap();
            assert_eq!(out.status.code(), Some(1), "{args:?}");
            let e = stderr(&out);
            assert!(
                e.starts_with(&format!(
                    "error: cannot write the ledger {}: {} is read-only for this user (or not a plain file): make it writable (chmod u+w {}) ",
                    env.dir.join("ledger.sqlite").display(),
                    blocker.display(),
                    blocker.display()
                )),
                "{args:?}: {e}"
            );
            assert!(e.contains("do not restore it from backup"), "{e}");
            assert!(!e.contains("corrupt"), "{e}");
        }
        assert_eq!(env.snapshot(), before, "nothing issued");
        // A command that only reads works without the scratch file `-shm`
        // (SQLite needs `-wal` itself) and otherwise names the same file.
        let out = env.cmd().args(["ledger", "list"]).output().unwrap();
        if side.ends_with("-shm") {
            assert_eq!(out.status.code(), Some(0), "{side}: {}", stderr(&out));
            assert_eq!(stdout(&out), "no licenses match\n");
        } else {
            assert_eq!(out.status.code(), Some(1));
            assert!(stderr(&out).contains(&format!("{} is read-only", blocker.display())));
        }
        std::fs::remove_dir(&blocker).unwrap();
    }
    env.issue(&["--customer", "A", "--tier", "standard"]);
}

#[test]
fn init_refuses_a_vendor_directory_inside_another() {
    let env = Env::new();
    let inner = env.dir.join("licenses");
    let out = bare(env.tmp.path())
        .env("KACHING_PASSPHRASE", PASS)
        .arg("init")
        .arg(&inner)
        .args(["--issuer", "X"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "error: {} is inside the vendor directory {}: a vendor directory cannot hold another one; use that one (--dir {}) or choose a folder outside it\n",
            inner.display(),
            env.dir.display(),
            env.dir.display()
        )
    );
    assert!(!inner.join("vendor.key").exists());
    let out = bare(env.tmp.path())
        .args(["--dir", "vendor/licenses", "ledger", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "error: vendor/licenses is not a vendor directory, but it is inside the vendor directory {}: use that one (--dir {})\n",
            env.dir.display(),
            env.dir.display()
        )
    );
}
