//! issue, upgrade, renew, spec files, and the errors that refuse an issue.

use std::collections::BTreeMap;
use std::process::Command as StdCommand;

use kaching_core::{
    evaluate, verify_license, LicenseInput, Settings, Snapshot, State, TierCatalog,
};

use super::common::{parse_issued, stderr, stdout, Env, PASS};

#[test]
fn issued_license_verifies_with_kaching_core_and_is_in_the_ledger() {
    let env = Env::new();
    let (id, file) = env.issue(&[
        "--customer",
        "Acme Corp",
        "--tier",
        "standard",
        "--nodes",
        "12",
        "--quota",
        "api_calls=5000/day",
    ]);
    let v = verify_license(&std::fs::read(&file).unwrap(), &env.pubkey()).unwrap();
    let l = &v.license;
    assert_eq!(l.id.to_string(), id);
    assert_eq!(
        (l.customer.as_str(), l.customer_id.as_str(), l.tier.as_str()),
        ("Acme Corp", "acme-corp", "standard")
    );
    assert_eq!(
        (l.issuer.as_str(), l.audience.as_str()),
        ("Example Software", "bzzz")
    );
    assert_eq!(l.limits.max_nodes, 12);
    assert_eq!(l.quotas["api_calls"].limit, 5000);
    assert_eq!(l.expires_at - l.issued_at, 365 * 86_400);
    let verdict = evaluate(
        LicenseInput::Verified(l),
        None,
        &Snapshot::default(),
        &TierCatalog::builtin(),
        &Settings::default(),
        l.issued_at + 60,
    );
    assert_eq!(verdict.state, State::Active);
    assert!(file.starts_with(env.dir.join("licenses")));
    let out = env
        .cmd()
        .args(["ledger", "list", "--json"])
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["id"], id);
    assert_eq!(rows[0]["state"], "active");
    assert_eq!(rows[0]["file_sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn armored_issue_to_chosen_path_and_no_overwrite() {
    let env = Env::new();
    let out_path = env.tmp.path().join("acme.lic.asc");
    let out = env
        .cmd()
        .args([
            "issue",
            "--customer",
            "Acme",
            "--tier",
            "evaluation",
            "--armor",
            "--expires",
            "2099-01-01",
            "--out",
        ])
        .arg(&out_path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (_, file) = parse_issued(&stdout(&out));
    assert_eq!(file, out_path);
    let text = std::fs::read_to_string(&out_path).unwrap();
    assert!(text.starts_with("-----BEGIN KACHING LICENSE-----\n"));
    let l = verify_license(text.as_bytes(), &env.pubkey())
        .unwrap()
        .license;
    assert_eq!(
        kaching_core::time::rfc3339(l.expires_at),
        "2099-01-01T00:00:00Z"
    );
    let out = env
        .cmd()
        .args([
            "issue",
            "--customer",
            "Acme",
            "--tier",
            "evaluation",
            "--out",
        ])
        .arg(&out_path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "error: {} already exists: choose another --out path or move the old file away\n",
            out_path.display()
        )
    );
}

fn assert_issue_error(env: &Env, args: &[&str], message: &str) {
    let before = env.snapshot();
    let out = env.cmd().arg("issue").args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(stderr(&out), format!("error: {message}\n"));
    assert_eq!(
        env.snapshot(),
        before,
        "files changed after a refused issue"
    );
}

#[test]
fn unknown_tier_offers_the_closest_name() {
    let env = Env::new();
    assert_issue_error(
        &env,
        &["--customer", "A", "--tier", "standrd"],
        "unknown tier \"standrd\": did you mean \"standard\"? (tiers.toml lists them)",
    );
    assert_issue_error(&env, &["--customer", "A", "--tier", "platinum"], "unknown tier \"platinum\": the tiers are evaluation, standard, enterprise (tiers.toml lists them)");
}

#[test]
fn unknown_feature_offers_the_closest_name() {
    let env = Env::new();
    assert_issue_error(
        &env,
        &[
            "--customer",
            "A",
            "--tier",
            "standard",
            "--feature",
            "analytic",
        ],
        "unknown feature \"analytic\": did you mean \"analytics\"?",
    );
}

#[test]
fn expiry_in_the_past_is_refused() {
    let env = Env::new();
    assert_issue_error(
        &env,
        &[
            "--customer",
            "A",
            "--tier",
            "standard",
            "--expires",
            "2020-01-01",
        ],
        "expiry 2020-01-01T00:00:00Z is in the past: pass a later date or a duration such as 365d",
    );
    assert_issue_error(
        &env,
        &["--customer", "A", "--tier", "standard", "--expires", "soon"],
        "cannot read expiry \"soon\": use a date (2027-12-31) or a duration (365d, 1y, 12months)",
    );
}

#[test]
fn missing_required_flags_are_usage_errors() {
    let env = Env::new();
    let out = env
        .cmd()
        .args(["issue", "--tier", "standard"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with(
        "error: the following required arguments were not provided:\n  --customer <CUSTOMER>"
    ));
    let out = env
        .cmd()
        .args([
            "issue",
            "--customer",
            "A",
            "--tier",
            "standard",
            "--heartbeat",
            "5min",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn concurrent_issue_runs_lose_nothing() {
    let env = Env::new();
    let n = 6;
    let children: Vec<_> = (0..n)
        .map(|i| {
            let mut c = StdCommand::new(assert_cmd::cargo::cargo_bin("licensegen"));
            c.current_dir(env.tmp.path())
                .env("KACHING_TEST_SCRYPT_LOG_N", "4")
                .env("KACHING_DIR", &env.dir)
                .env("KACHING_PASSPHRASE", PASS)
                .args([
                    "issue",
                    "--customer",
                    &format!("Customer {i}"),
                    "--tier",
                    "standard",
                ])
                .stdout(std::process::Stdio::piped())
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
    let out = env
        .cmd()
        .args(["ledger", "list", "--json"])
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), n);
    assert_eq!(
        std::fs::read_dir(env.dir.join("licenses")).unwrap().count(),
        n
    );
}

#[test]
fn upgrade_supersedes_and_keeps_customer_and_binding() {
    let env = Env::new();
    let (old, _) = env.issue(&[
        "--customer",
        "Acme",
        "--tier",
        "standard",
        "--cluster",
        "abcdefghijklmnop",
        "--expires",
        "2099-06-30",
    ]);
    let out = env
        .cmd()
        .args(["upgrade", &old, "--tier", "enterprise", "--nodes", "40"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (new, file) = parse_issued(&stdout(&out));
    let l = verify_license(&std::fs::read(&file).unwrap(), &env.pubkey())
        .unwrap()
        .license;
    assert_eq!(l.supersedes.unwrap().to_string(), old);
    assert_eq!(
        (l.tier.as_str(), l.limits.max_nodes, l.customer.as_str()),
        ("enterprise", 40, "Acme")
    );
    assert_eq!(l.cluster.as_deref(), Some("abcdefghijklmnop"));
    assert!(l.has_feature("bulk-operations"));
    assert_eq!(
        kaching_core::time::rfc3339(l.expires_at),
        "2099-06-30T00:00:00Z"
    );
    let out = env
        .cmd()
        .args(["ledger", "list", "--json"])
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let states: BTreeMap<String, String> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(states[&old], "superseded");
    assert_eq!(states[&new], "active");
    let out = env
        .cmd()
        .args(["upgrade", &old, "--tier", "enterprise"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!("error: license {old} was already replaced by {new}: upgrade that one instead\n")
    );
    let out = env.cmd().args(["upgrade", &new]).output().unwrap();
    assert_eq!(
        stderr(&out),
        "error: upgrade needs --tier (the tier to move to); `licensegen renew` keeps the tier\n"
    );
}

#[test]
fn renew_extends_by_one_term_after_the_old_expiry() {
    let env = Env::new();
    let (old, file) = env.issue(&["--customer", "Acme", "--tier", "standard", "--nodes", "7"]);
    let before = verify_license(&std::fs::read(&file).unwrap(), &env.pubkey())
        .unwrap()
        .license;
    let out = env.cmd().args(["renew", &old]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (_, file) = parse_issued(&stdout(&out));
    let after = verify_license(&std::fs::read(&file).unwrap(), &env.pubkey())
        .unwrap()
        .license;
    assert_eq!(after.expires_at, before.expires_at + 365 * 86_400);
    assert_eq!(after.limits.max_nodes, 7);
    assert_eq!(after.supersedes, Some(before.id));
}

#[test]
fn issue_from_spec_file_with_several_licenses() {
    let env = Env::new();
    let spec = env.tmp.path().join("batch.toml");
    std::fs::write(
        &spec,
        "[[license]]\ncustomer = 'Initech'\ntier = 'evaluation'\nexpires = '30d'\n\n[[license]]\ncustomer = 'Umbrella'\ntier = 'enterprise'\nnodes = 250\nquotas = ['search_requests=2000000/day']\narmor = true\nout = 'umbrella.lic.asc'\n",
    )
    .unwrap();
    let out = env
        .cmd()
        .arg("issue")
        .arg("--spec")
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).matches("issued license ").count(), 2);
    let l = verify_license(
        &std::fs::read(env.tmp.path().join("umbrella.lic.asc")).unwrap(),
        &env.pubkey(),
    )
    .unwrap()
    .license;
    assert_eq!(
        (l.limits.max_nodes, l.quotas["search_requests"].limit),
        (250, 2_000_000)
    );
    std::fs::write(&spec, "customer = 'X'\ntier = 'gold'\n").unwrap();
    let out = env
        .cmd()
        .arg("issue")
        .arg("--spec")
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out), "error: unknown tier \"gold\": the tiers are evaluation, standard, enterprise (tiers.toml lists them)\n");
}

#[test]
fn custom_quota_is_explicit_and_upgrade_checks_quota_names_too() {
    let env = Env::new();
    let (id, file) = env.issue(&[
        "--customer",
        "Acme",
        "--tier",
        "standard",
        "--custom-quota",
        "exports=500/day",
    ]);
    let l = verify_license(&std::fs::read(&file).unwrap(), &env.pubkey())
        .unwrap()
        .license;
    assert_eq!(l.quotas["exports"].limit, 500);
    for cmd in ["upgrade", "renew"] {
        let out = env
            .cmd()
            .args([
                cmd,
                &id,
                "--tier",
                "enterprise",
                "--quota",
                "search_request=9/day",
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        assert_eq!(
            stderr(&out),
            "error: unknown quota \"search_request\": did you mean \"search_requests\"? (for a quota outside the tier catalog, use --custom-quota search_request=9/day)\n",
            "{cmd}"
        );
    }
}

#[test]
fn a_bare_m_is_refused_and_months_are_months() {
    let env = Env::new();
    assert_issue_error(
        &env,
        &["--customer", "A", "--tier", "standard", "--expires", "12m"],
        "`12m` is ambiguous: write `12months` or `12min`",
    );
    assert_issue_error(
        &env,
        &["--customer", "A", "--tier", "standard", "--grace", "2m"],
        "`2m` is ambiguous: write `2months` or `2min`",
    );
    let out = env
        .cmd()
        .args(["issue", "--customer", "A", "--tier", "standard"])
        .args(["--expires", "12min"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is less than a day away: a license runs at least one day"),
        "{}",
        stderr(&out)
    );
    let (_, file) = env.issue(&[
        "--customer",
        "A",
        "--tier",
        "standard",
        "--expires",
        "12months",
    ]);
    let l = verify_license(&std::fs::read(&file).unwrap(), &env.pubkey())
        .unwrap()
        .license;
    assert_eq!(l.expires_at - l.issued_at, 12 * 2_630_016);
    let out = env
        .cmd()
        .args(["ledger", "list", "--expiring-within", "2m"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "error: `2m` is ambiguous: write `2months` or `2min`\n"
    );
    let out = env
        .cmd()
        .args(["ledger", "list", "--expiring-within", "13months"])
        .output()
        .unwrap();
    assert!(
        stdout(&out).contains("A (a)") || stdout(&out).contains(" A "),
        "{}",
        stdout(&out)
    );
}

/// Starts `licensegen ARGS` without waiting for it.
fn spawn(env: &Env, args: &[&str]) -> std::process::Child {
    StdCommand::new(assert_cmd::cargo::cargo_bin("licensegen"))
        .current_dir(env.tmp.path())
        .env("KACHING_TEST_SCRYPT_LOG_N", "4")
        .env("KACHING_DIR", &env.dir)
        .env("KACHING_PASSPHRASE", PASS)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn attack_concurrent_upgrades_leave_exactly_one_replacement() {
    let env = Env::new();
    for round in 0..4 {
        let (old, _) = env.issue(&["--customer", &format!("Acme {round}"), "--tier", "standard"]);
        let tiers = ["standard", "enterprise", "enterprise"];
        let children: Vec<_> = tiers
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if i == 2 {
                    spawn(&env, &["renew", &old])
                } else {
                    spawn(&env, &["upgrade", &old, "--tier", t])
                }
            })
            .collect();
        let outs: Vec<_> = children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect();
        let won: Vec<_> = outs.iter().filter(|o| o.status.success()).collect();
        assert_eq!(won.len(), 1, "round {round}: exactly one replacement wins");
        let (new, _) = parse_issued(&stdout(won[0]));
        for o in outs.iter().filter(|o| !o.status.success()) {
            assert_eq!(o.status.code(), Some(2), "{}", stderr(o));
            let e = stderr(o);
            assert!(
                e.starts_with(&format!(
                    "error: license {old} was already replaced by {new}: "
                )) && e.ends_with(" that one instead\n"),
                "{e}"
            );
        }
        let rows: serde_json::Value = serde_json::from_slice(
            &env.cmd()
                .args(["ledger", "list", "--json"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        let rows = rows.as_array().unwrap();
        let replacements: Vec<_> = rows
            .iter()
            .filter(|r| r["supersedes"].as_str() == Some(old.as_str()))
            .collect();
        assert_eq!(
            replacements.len(),
            1,
            "round {round}: one ledger row replaces {old}"
        );
        assert_eq!(replacements[0]["state"], "active");
        assert_eq!(rows.len(), 2 * (round + 1), "no row left by a loser");
        assert_eq!(
            std::fs::read_dir(env.dir.join("licenses")).unwrap().count(),
            2 * (round + 1),
            "no file left by a loser"
        );
    }
}

#[test]
fn attack_spec_batch_writing_one_file_twice_issues_nothing() {
    let env = Env::new();
    let spec = env.tmp.path().join("batch.toml");
    std::fs::write(
        &spec,
        "[[license]]\ncustomer = 'Initech'\ntier = 'standard'\nout = 'same.license'\n\n[[license]]\ncustomer = 'Umbrella'\ntier = 'standard'\nout = 'same.license'\n",
    )
    .unwrap();
    let before = env.snapshot();
    let out = env
        .cmd()
        .arg("issue")
        .arg("--spec")
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "error: two licenses of the batch would both be written to {}: give each its own `out` (nothing was issued)\n",
            env.tmp.path().join("same.license").display()
        )
    );
    assert!(!env.tmp.path().join("same.license").exists());
    assert_eq!(env.snapshot(), before, "a refused batch changes nothing");
    // A later entry's file already there: refused before the first is signed.
    std::fs::write(env.tmp.path().join("taken.license"), b"keep me").unwrap();
    std::fs::write(
        &spec,
        "[[license]]\ncustomer = 'Initech'\ntier = 'standard'\n\n[[license]]\ncustomer = 'Umbrella'\ntier = 'standard'\nout = 'taken.license'\n",
    )
    .unwrap();
    let out = env
        .cmd()
        .arg("issue")
        .arg("--spec")
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    assert_eq!(env.snapshot(), before);
}

#[test]
fn upgrade_says_which_negotiated_limits_go_down() {
    let env = Env::new();
    let (old, _) = env.issue(&[
        "--customer",
        "Acme",
        "--tier",
        "standard",
        "--nodes",
        "150",
        "--quota",
        "search_requests=2000000/day",
    ]);
    let out = env
        .cmd()
        .args(["upgrade", &old, "--tier", "enterprise"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains(
            "note: nodes 150 → 100 (the enterprise tier's default); pass --nodes 150 to keep it\n"
        ),
        "{e}"
    );
    assert!(
        e.contains("note: quota search_requests 2000000/day → 1000000/day (the enterprise tier's default); pass --quota search_requests=2000000/day to keep it\n"),
        "{e}"
    );
    // Kept when asked: no note.
    let (new, _) = parse_issued(&stdout(&out));
    let out = env
        .cmd()
        .args(["upgrade", &new, "--tier", "enterprise", "--nodes", "100"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("note: nodes"), "{}", stderr(&out));
}

#[test]
fn ledger_records_absolute_paths() {
    let env = Env::new();
    let out = super::common::bare(env.tmp.path())
        .env("KACHING_PASSPHRASE", PASS)
        .args([
            "--dir",
            "vendor",
            "issue",
            "--customer",
            "Acme",
            "--tier",
            "standard",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = super::common::bare(env.tmp.path())
        .env("KACHING_PASSPHRASE", PASS)
        .args([
            "--dir",
            "vendor",
            "issue",
            "--customer",
            "Umbrella",
            "--tier",
            "standard",
        ])
        .args(["--out", "umbrella.license"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_slice(
        &env.cmd()
            .args(["ledger", "list", "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    for r in rows.as_array().unwrap() {
        let p = std::path::Path::new(r["path"].as_str().unwrap());
        assert!(p.is_absolute(), "{}", p.display());
        assert!(p.is_file(), "{}", p.display());
    }
}

#[test]
fn a_very_long_customer_name_still_gets_a_file() {
    let env = Env::new();
    let name = "Very Long Customer Name ".repeat(12);
    let (_, file) = env.issue(&["--customer", &name, "--tier", "standard"]);
    assert!(file.is_file());
    let file_name = file.file_name().unwrap().to_str().unwrap();
    assert!(file_name.len() <= 100, "{file_name}");
    assert!(
        file_name.starts_with("very-long-customer-name-"),
        "{file_name}"
    );
}
