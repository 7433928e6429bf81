//! inspect, verify (exit code per state), ledger views.

use kaching_core::verify_license;

use super::common::{bare, stderr, stdout, Env};

#[test]
fn a_file_that_is_not_a_kaching_document() {
    let env = Env::new();
    let f = env.tmp.path().join("notes.txt");
    std::fs::write(&f, "hello").unwrap();
    let out = env.cmd().arg("inspect").arg(&f).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!("error: {} is not a KACHING document (not a signed KACHING envelope): expected a license, revocation list, activation request, usage report, receipt or clock reset\n", f.display())
    );
    let out = env.cmd().arg("verify").arg(&f).output().unwrap();
    assert_eq!(out.status.code(), Some(10));
    assert!(stdout(&out).starts_with("state:    invalid\nreason:   license file rejected: "));
    let out = env
        .cmd()
        .args(["usage", "import"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with(&format!(
        "error: {} is not a valid usage report (",
        f.display()
    )));
}

#[test]
fn inspect_shows_license_and_revocation_list_with_signature_status() {
    let env = Env::new();
    let (id, file) = env.issue(&[
        "--customer",
        "Acme",
        "--tier",
        "standard",
        "--cluster",
        "abcdefghijklmnop",
        "--heartbeat",
        "5min",
        "--offline-grace",
        "3d",
    ]);
    let out = env.cmd().arg("inspect").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let s = stdout(&out);
    let kid = env.pubkey().iter().next().unwrap().kid();
    assert!(
        s.contains(&format!("signature:   valid: signed by vendor key {kid}\n")),
        "{s}"
    );
    assert!(s.contains(&format!("license id:  {id}\n")));
    assert!(s.contains("cluster:     abcdefghijklmnop\n"));
    assert!(s.contains("heartbeat:   every 5m, offline grace 3d (connected)\n"));
    let out = env
        .cmd()
        .args(["inspect", "--json"])
        .arg(env.dir.join("revocations.asc"))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "revocation list");
    assert_eq!(v["armored"], true);
    assert_eq!(v["signature"]["status"], "valid");
    assert_eq!(v["content"]["version"], 1);
    // Outside the vendor directory, with no key, the signature is unchecked.
    let out = bare(env.tmp.path())
        .args(["inspect", "--json"])
        .arg(&file)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["signature"]["status"], "unchecked");
    assert_eq!(v["content"]["tier"], "standard");
}

#[test]
fn verify_exit_codes_per_state() {
    let env = Env::new();
    let (_, file) = env.issue(&["--customer", "A", "--tier", "evaluation"]);
    let code = |args: &[&str]| {
        env.cmd()
            .arg("verify")
            .arg(&file)
            .args(args)
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(code(&[]), Some(0));
    assert_eq!(code(&["--at", "2099-01-01"]), Some(13));
    assert_eq!(code(&["--at", "2000-01-01"]), Some(15));
    assert_eq!(
        code(&["--cluster", "someotherclusterx"]),
        Some(0),
        "unbound licenses run anywhere"
    );
    let other = env.tmp.path().join("other.pub");
    std::fs::write(
        &other,
        kaching_core::SecretKey::generate().public().to_pem(),
    )
    .unwrap();
    let out = env
        .cmd()
        .arg("verify")
        .arg(&file)
        .arg("--pubkey")
        .arg(&other)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(10));
    assert!(stdout(&out).contains("signed by unknown key"));
    let (_, connected) = env.issue(&[
        "--customer",
        "B",
        "--tier",
        "standard",
        "--heartbeat",
        "5min",
        "--offline-grace",
        "1d",
    ]);
    let issued = verify_license(&std::fs::read(&connected).unwrap(), &env.pubkey())
        .unwrap()
        .license
        .issued_at;
    let later = kaching_core::time::rfc3339(issued + 2 * 86_400);
    let out = env
        .cmd()
        .arg("verify")
        .arg(&connected)
        .args(["--at", &later, "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(16));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["state"], "overdue");
    assert_eq!(v["exit_code"], 16);
}

#[test]
fn help_documents_the_exit_codes() {
    let out = bare(std::path::Path::new("."))
        .args(["verify", "--help"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let s = stdout(&out);
    for line in [
        "  0   success; for verify: usable",
        "  10  verify: invalid or no license",
        "  11  verify: revoked",
        "  12  verify: suspended",
        "  13  verify: expired",
        "  14  verify: not yet valid",
        "  15  verify: clock tampered",
        "  16  verify: overdue",
    ] {
        assert!(s.contains(line), "missing {line:?}");
    }
}

#[test]
fn ledger_filters_and_show() {
    let env = Env::new();
    let (a, _) = env.issue(&[
        "--customer",
        "Acme",
        "--tier",
        "standard",
        "--expires",
        "20d",
    ]);
    env.issue(&["--customer", "Globex", "--tier", "standard"]);
    let out = env
        .cmd()
        .args(["ledger", "list", "--expiring-within", "30d"])
        .output()
        .unwrap();
    let s = stdout(&out);
    assert!(s.starts_with("ID  ") || s.starts_with("ID "), "{s}");
    assert!(s.contains(&a) && !s.contains("Globex"), "{s}");
    let out = env
        .cmd()
        .args(["ledger", "list", "--customer", "glob"])
        .output()
        .unwrap();
    let s = stdout(&out);
    assert!(s.contains("Globex") && !s.contains("Acme"), "{s}");
    let out = env
        .cmd()
        .args(["ledger", "list", "--customer", "nobody"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "no licenses match\n");
    let out = env.cmd().args(["ledger", "show", &a]).output().unwrap();
    let s = stdout(&out);
    assert!(
        s.starts_with(&format!(
            "license id:  {a}\nstate:       active\ncustomer:    Acme (acme)\n"
        )),
        "{s}"
    );
    assert!(
        s.contains("history:\n") && s.contains("  issued      tier standard, 10 nodes, expires "),
        "{s}"
    );
}

#[test]
fn ledger_list_expiring_within_shows_the_soonest_expiry_first() {
    let env = Env::new();
    // Issued latest-expiry first, so the ledger's own order (issue order) is
    // the opposite of the one wanted.
    let (late, _) = env.issue(&[
        "--customer",
        "Late",
        "--tier",
        "standard",
        "--expires",
        "25d",
    ]);
    let (mid, _) = env.issue(&[
        "--customer",
        "Mid",
        "--tier",
        "standard",
        "--expires",
        "15d",
    ]);
    let (soon, _) = env.issue(&[
        "--customer",
        "Soon",
        "--tier",
        "standard",
        "--expires",
        "5d",
    ]);
    env.issue(&["--customer", "Later", "--tier", "standard"]);
    let out = env
        .cmd()
        .args(["ledger", "list", "--expiring-within", "30d"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let ids: Vec<String> = stdout(&out)
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    assert_eq!(ids, [soon.clone(), mid.clone(), late.clone()]);
    let out = env
        .cmd()
        .args(["ledger", "list", "--expiring-within", "30d", "--json"])
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [soon.as_str(), mid.as_str(), late.as_str()]);
    // Without the filter every license is listed, the one without a
    // near expiry too.
    let out = env.cmd().args(["ledger", "list"]).output().unwrap();
    assert_eq!(stdout(&out).lines().skip(1).count(), 4, "{}", stdout(&out));
}

#[test]
fn verify_says_plainly_what_is_wrong_with_the_file() {
    let env = Env::new();
    let empty = env.tmp.path().join("empty.license");
    std::fs::write(&empty, b"").unwrap();
    let out = env.cmd().arg("verify").arg(&empty).output().unwrap();
    assert_eq!(out.status.code(), Some(10));
    assert!(
        stdout(&out).contains(&format!(
            "{} is empty: it is not a license file (check that you picked the right file)",
            empty.display()
        )),
        "{}",
        stdout(&out)
    );
    // Another vendor's license, verified on this vendor's side.
    let other = Env::new();
    let (_, file) = other.issue(&["--customer", "Acme", "--tier", "standard"]);
    let out = env.cmd().arg("verify").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(10));
    let s = stdout(&out);
    assert!(
        s.contains("signed by a different vendor key (")
            && s.contains(") than this vendor directory's ("),
        "{s}"
    );
    assert!(!s.contains("add its public key"), "{s}");
}
