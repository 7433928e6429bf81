//! suspend, reinstate, revoke and the revocation list versions.

use std::process::Command as StdCommand;

use super::common::{stderr, stdout, Env, PASS};

#[test]
fn license_id_not_in_the_ledger() {
    let env = Env::new();
    let out = env
        .cmd()
        .args(["suspend", "0b7c1d2e-0000-4000-8000-000000000000"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out), "error: license 0b7c1d2e-0000-4000-8000-000000000000 is not in the ledger: check the id with `licensegen ledger list`\n");
    let out = env.cmd().args(["ledger", "show", "zzzz"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "error: license zzzz is not in the ledger: check the id with `licensegen ledger list`\n"
    );
}

#[test]
fn license_id_prefix_too_short_says_why() {
    let env = Env::new();
    let (id, _) = env.issue(&["--customer", "Acme", "--tier", "standard"]);
    for cmd in [&["suspend"][..], &["ledger", "show"], &["renew"]] {
        let out = env.cmd().args(cmd).arg(&id[..2]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd:?}");
        assert_eq!(
            stderr(&out),
            format!(
                "error: id prefix '{}' is too short: give at least 4 characters of the license id (see `licensegen ledger list`)\n",
                &id[..2]
            ),
            "{cmd:?}"
        );
    }
    // Four characters are enough.
    let out = env
        .cmd()
        .args(["ledger", "show", &id[..4]])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn list_valid_for_sets_the_lists_freshness_and_expires_is_refused() {
    let env = Env::new();
    let (id, _) = env.issue(&["--customer", "Acme", "--tier", "standard"]);
    let fresh_until = |env: &Env| {
        let out = env
            .cmd()
            .args(["revocations", "show", "--json"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (
            v["expires"].as_u64().unwrap(),
            v["issued_at"].as_u64().unwrap(),
        )
    };
    env.cmd()
        .args(["suspend", &id, "--list-valid-for", "30d"])
        .assert()
        .success();
    let (exp, iat) = fresh_until(&env);
    assert_eq!(exp - iat, 30 * 86_400);
    // `--expires` on suspend looks like a timed suspension: refused, with
    // what to use instead, and nothing signed.
    let version = env.revocation_version();
    for cmd in ["suspend", "reinstate", "revoke"] {
        let out = env
            .cmd()
            .args([cmd, &id, "--expires", "14d"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        assert_eq!(
            stderr(&out),
            "error: --expires 14d: a suspension does not end by itself (and a revocation never does): run `licensegen reinstate ID` when it should end. To set how long the signed revocation list stays fresh, use --list-valid-for 14d\n",
            "{cmd}"
        );
    }
    assert_eq!(env.revocation_version(), version);
    env.cmd()
        .args(["reinstate", &id, "--list-valid-for", "2d"])
        .assert()
        .success();
    let (exp, iat) = fresh_until(&env);
    assert_eq!(exp - iat, 2 * 86_400);
    env.cmd()
        .args(["revocations", "refresh", "--list-valid-for", "3d"])
        .assert()
        .success();
    let (exp, iat) = fresh_until(&env);
    assert_eq!(exp - iat, 3 * 86_400);
    let out = env
        .cmd()
        .args(["revoke", &id, "--list-valid-for", "2020-01-01"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "error: revocation list freshness deadline 2020-01-01T00:00:00Z (--list-valid-for) is in the past: pass a later date or a duration such as 7d\n"
    );
    let out = env
        .cmd()
        .args(["revocations", "refresh", "--help"])
        .output()
        .unwrap();
    let help = stdout(&out);
    assert!(help.contains("--list-valid-for <DURATION|DATE>"), "{help}");
    assert!(!help.contains("--expires"), "{help}");
}

#[test]
fn suspended_then_reinstated_license_is_active_again() {
    let env = Env::new();
    let (id, file) = env.issue(&["--customer", "Acme", "--tier", "standard"]);
    let verify = |code: i32, state: &str| {
        let out = env.cmd().arg("verify").arg(&file).output().unwrap();
        assert_eq!(out.status.code(), Some(code), "{}", stdout(&out));
        assert!(
            stdout(&out).starts_with(&format!("state:    {state}\n")),
            "{}",
            stdout(&out)
        );
    };
    verify(0, "active");
    let out = env
        .cmd()
        .args(["suspend", &id[..8], "--reason", "invoice 42 unpaid"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with(&format!(
        "suspended license {id} (Acme)\nrevocation list version 2 written to "
    )));
    verify(12, "suspended");
    let out = env.cmd().args(["suspend", &id]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!("error: license {id} is already suspended: `licensegen reinstate {id}` lifts it\n")
    );
    env.cmd().args(["reinstate", &id]).assert().success();
    verify(0, "active");
    // The list a verifier gets says the same.
    let list = kaching_core::verify_revocation_list(
        &std::fs::read(env.dir.join("revocations.cose")).unwrap(),
        &env.pubkey(),
    )
    .unwrap()
    .list;
    assert_eq!(list.version, 3);
    assert!(list.entries.is_empty());
    let out = env.cmd().args(["reinstate", &id]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!("error: license {id} is not suspended: nothing to reinstate\n")
    );
}

#[test]
fn revoked_license_stays_revoked() {
    let env = Env::new();
    let (id, file) = env.issue(&["--customer", "Acme", "--tier", "standard"]);
    env.cmd()
        .args(["revoke", &id, "--reason", "contract ended"])
        .assert()
        .success();
    let out = env.cmd().arg("verify").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(11));
    let out = env.cmd().args(["reinstate", &id]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out), format!("error: license {id} is revoked, and revocation is permanent: issue a new license instead\n"));
    let out = env
        .cmd()
        .args(["upgrade", &id, "--tier", "enterprise"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "error: license {id} is revoked: issue a new license with `licensegen issue` instead\n"
        )
    );
    let out = env
        .cmd()
        .args(["ledger", "show", &id, "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["state"], "revoked");
    assert_eq!(v["history"][1]["action"], "revoked");
    assert_eq!(
        v["history"][1]["detail"],
        "revocation list v2: contract ended"
    );
}

#[test]
fn revocation_list_versions_only_grow() {
    let env = Env::new();
    let (a, _) = env.issue(&["--customer", "A", "--tier", "standard"]);
    let (b, _) = env.issue(&["--customer", "B", "--tier", "standard"]);
    let mut last = env.revocation_version();
    let steps: Vec<Vec<&str>> = vec![
        vec!["suspend", &a],
        vec!["revoke", &b],
        vec!["revocations", "refresh", "--expires", "30d"],
        vec!["reinstate", &a],
        vec!["revocations", "refresh"],
    ];
    for s in steps {
        env.cmd().args(&s).assert().success();
        let v = env.revocation_version();
        assert_eq!(v, last + 1, "{s:?}");
        last = v;
    }
    let out = env
        .cmd()
        .args(["revocations", "show", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["version"], last);
    assert_eq!(v["entries"].as_array().unwrap().len(), 1);
    // A refused change signs nothing.
    let out = env.cmd().args(["reinstate", &b]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(env.revocation_version(), last);
}

#[test]
fn concurrent_suspensions_get_distinct_growing_versions() {
    let env = Env::new();
    let ids: Vec<String> = (0..4)
        .map(|i| {
            env.issue(&["--customer", &format!("C{i}"), "--tier", "standard"])
                .0
        })
        .collect();
    let children: Vec<_> = ids
        .iter()
        .map(|id| {
            let mut c = StdCommand::new(assert_cmd::cargo::cargo_bin("licensegen"));
            c.current_dir(env.tmp.path())
                .env("KACHING_DIR", &env.dir)
                .env("KACHING_PASSPHRASE", PASS)
                .args(["suspend", id])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(env.revocation_version(), 5);
    let out = env
        .cmd()
        .args(["revocations", "show", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["entries"].as_array().unwrap().len(), 4);
}

#[test]
fn attack_revocation_file_rolled_back_on_disk_does_not_lower_the_next_version() {
    let env = Env::new();
    let (a, _) = env.issue(&["--customer", "A", "--tier", "standard"]);
    let v1 = std::fs::read(env.dir.join("revocations.cose")).unwrap();
    env.cmd().args(["suspend", &a]).assert().success();
    env.cmd().args(["reinstate", &a]).assert().success();
    // Someone puts the old version-1 file back (a restore from an old backup, or on purpose).
    std::fs::write(env.dir.join("revocations.cose"), v1).unwrap();
    env.cmd().args(["revoke", &a]).assert().success();
    assert_eq!(env.revocation_version(), 4);
}

#[test]
fn attack_revocation_file_signed_by_another_key_is_refused() {
    let env = Env::new();
    let (a, _) = env.issue(&["--customer", "A", "--tier", "standard"]);
    let forged = kaching_core::RevocationList {
        issuer: "Example Software".into(),
        version: 99,
        issued_at: 1_795_000_000,
        expires: 1_900_000_000,
        entries: Vec::new(),
    }
    .sign(&kaching_core::SecretKey::generate());
    let path = env.dir.join("revocations.cose");
    std::fs::write(&path, &forged).unwrap();
    let out = env.cmd().args(["suspend", &a]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(
        e.starts_with(&format!(
            "error: {} does not verify (signed by unknown key ",
            path.display()
        )),
        "{e}"
    );
    assert!(e.ends_with("): restore it from backup\n"), "{e}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        forged,
        "the forged file was not replaced silently"
    );
}
