//! The air-gapped round trip on the vendor side: `issue --bind` from a
//! cluster's activation request, `usage import` of its usage report, and
//! vendor keys encrypted to an age recipient for automation.

use std::collections::BTreeMap;

use super::common::{bare, parse_issued, stderr, stdout, Env};
use age::secrecy::ExposeSecret;
use kaching_core::cluster::{ActivationRequest, ReportedUpgrade, UpgradeRequest, UsageReport};
use kaching_core::{armor, cluster_id, verify_license, DocKind, LicenseId, SecretKey};

fn activation_request(env: &Env, key: &SecretKey, nodes: u32) -> std::path::PathBuf {
    let req = ActivationRequest {
        cluster_id: cluster_id(&key.public()),
        cluster_key: *key.public().as_bytes(),
        hostname: "bzzz-01.customer.example".into(),
        nodes,
        created: 1_795_000_000,
    };
    let path = env.tmp.path().join("activation.asc");
    std::fs::write(
        &path,
        armor::armor(DocKind::ActivationRequest, &req.sign(key)),
    )
    .unwrap();
    path
}

fn usage_report(env: &Env, key: &SecretKey, license: &str, name: &str) -> std::path::PathBuf {
    usage_report_with_peak(env, key, license, name, 14)
}

fn usage_report_with_peak(
    env: &Env,
    key: &SecretKey,
    license: &str,
    name: &str,
    peak_nodes: u32,
) -> std::path::PathBuf {
    let mut counters = BTreeMap::new();
    counters.insert(
        "search_requests".to_string(),
        BTreeMap::from([
            ("2026-11-21".to_string(), 41_000u64),
            ("2026-11-22".to_string(), 12_000),
        ]),
    );
    let report = UsageReport {
        license_id: license.parse::<LicenseId>().unwrap(),
        cluster_id: cluster_id(&key.public()),
        period_start: 1_795_000_000,
        period_end: 1_795_300_000,
        counters,
        peak_nodes,
        upgrade_requests: vec![ReportedUpgrade {
            id: None,
            request: UpgradeRequest {
                requested_tier: "enterprise".into(),
                message: "we need bulk operations".into(),
                time: 1_795_200_000,
            },
        }],
        chain: None,
    };
    let path = env.tmp.path().join(name);
    std::fs::write(&path, report.sign(key)).unwrap();
    path
}

/// Issues a license of `tier` bound to `cluster` through its activation
/// request; returns the license id.
fn issue_bound(env: &Env, cluster: &SecretKey, tier: &str) -> String {
    let req = activation_request(env, cluster, 3);
    let req = req.to_str().unwrap();
    let (id, _) = env.issue(&["--customer", "Acme", "--tier", tier, "--bind", req]);
    id
}

/// `licensegen usage import REPORT`.
fn import(env: &Env, report: &std::path::Path) -> std::process::Output {
    env.cmd()
        .args(["usage", "import"])
        .arg(report)
        .output()
        .unwrap()
}

#[test]
fn issue_bind_binds_the_license_to_the_requesting_cluster() {
    let env = Env::new();
    let cluster = SecretKey::generate();
    let req = activation_request(&env, &cluster, 3);
    let out = env
        .cmd()
        .args([
            "issue",
            "--customer",
            "Acme",
            "--tier",
            "standard",
            "--bind",
        ])
        .arg(&req)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let cid = cluster_id(&cluster.public());
    let s = stdout(&out);
    assert!(s.contains(&format!("  cluster     {cid}\n")), "{s}");
    assert!(s.contains(&format!("  note        bound to cluster {cid} (activation request from host bzzz-01.customer.example, 3 nodes, made 2026-11-18T11:06:40Z)\n")), "{s}");
    let (id, file) = parse_issued(&s);
    let l = verify_license(&std::fs::read(&file).unwrap(), &env.pubkey())
        .unwrap()
        .license;
    assert_eq!(l.cluster.as_deref(), Some(cid.as_str()));
    // The bound cluster may run it; any other cluster may not.
    env.cmd()
        .arg("verify")
        .arg(&file)
        .args(["--cluster", &cid])
        .assert()
        .code(0);
    let out = env
        .cmd()
        .arg("verify")
        .arg(&file)
        .args(["--cluster", "aaaaaaaaaaaaaaaa"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(10));
    assert!(stdout(&out).contains("license is bound to cluster"));
    let out = env.cmd().args(["ledger", "show", &id]).output().unwrap();
    assert!(
        stdout(&out).contains("  note        bound to cluster "),
        "{}",
        stdout(&out)
    );
}

#[test]
fn attack_forged_activation_request_is_refused() {
    let env = Env::new();
    let cluster = SecretKey::generate();
    let req = activation_request(&env, &cluster, 3);
    let mut bytes = armor::dearmor(&std::fs::read(&req).unwrap(), None).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 1; // flip a signature bit
    std::fs::write(&req, &bytes).unwrap();
    let before = env.snapshot();
    let out = env
        .cmd()
        .args([
            "issue",
            "--customer",
            "Acme",
            "--tier",
            "standard",
            "--bind",
        ])
        .arg(&req)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let e = stderr(&out);
    assert!(
        e.starts_with(&format!(
            "error: {} is not a valid activation request (",
            req.display()
        )),
        "{e}"
    );
    assert!(
        e.ends_with("): ask the customer to run `kaching-verifier activation-request` again\n"),
        "{e}"
    );
    assert_eq!(env.snapshot(), before);
}

#[test]
fn usage_import_reads_an_unchained_report_from_an_older_verifier() {
    let env = Env::new();
    let cluster = SecretKey::generate();
    let id = issue_bound(&env, &cluster, "standard");
    let report = usage_report(&env, &cluster, &id, "usage.cose");
    let out = import(&env, &report);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let cid = cluster_id(&cluster.public());
    assert_eq!(
        stdout(&out),
        format!(
            "imported usage report for license {id}\n  cluster {cid}, 2026-11-18T11:06:40Z to 2026-11-21T22:26:40Z, peak 14 nodes\n  search_requests: 2026-11-21=41000, 2026-11-22=12000\n  upgrade request (2026-11-20T18:40:00Z): tier enterprise — we need bulk operations\n  warning: unchained report from a verifier older than receipts: recorded without chain checks and without a receipt; upgrade the customer's kaching-verifier\n  warning: peak of 14 nodes is above the license's 10 nodes\n  warning: search_requests reached 41000 of 50000 per day (82%) in 2026-11-21: offer an upgrade\n"
        )
    );
    let out = import(&env, &report);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).starts_with(&format!(
        "usage report for license {id} was already imported; nothing changed\n"
    )));
    let out = env
        .cmd()
        .args(["ledger", "show", &id, "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let reports = v["usage_reports"].as_array().unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0]["peak_nodes"], 14);
    assert_eq!(
        reports[0]["counters"]["search_requests"]["2026-11-21"],
        41000
    );
    assert_eq!(
        reports[0]["upgrade_requests"][0]["requested_tier"],
        "enterprise"
    );
    let out = env.cmd().args(["ledger", "show", &id]).output().unwrap();
    assert!(
        stdout(&out).contains("usage reports:\n  (unchained) 2026-11-18 to 2026-11-21  cluster "),
        "{}",
        stdout(&out)
    );
}

/// Regression: `usage import` compared the peak with `max_nodes`, so a
/// customer inside the allowed overage got a false warning. The standard
/// tier allows 10 nodes + 10 % overage: 11 is within the license, 12 is not.
#[test]
fn usage_import_warns_only_above_the_overage_ceiling() {
    let env = Env::new();
    let cluster = SecretKey::generate();
    let id = issue_bound(&env, &cluster, "standard");
    for (peak, warned) in [(10, false), (11, false), (12, true)] {
        let name = format!("usage-{peak}.cose");
        let report = usage_report_with_peak(&env, &cluster, &id, &name, peak);
        let out = import(&env, &report);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let s = stdout(&out);
        let line = format!("  warning: peak of {peak} nodes is above the license's 10 nodes\n");
        assert_eq!(s.contains(&line), warned, "peak {peak}: {s}");
        assert_eq!(s.contains("nodes is above"), warned, "peak {peak}: {s}");
    }
}

#[test]
fn attack_license_sharing_report_from_another_cluster_is_flagged() {
    let env = Env::new();
    let cluster = SecretKey::generate();
    let id = issue_bound(&env, &cluster, "enterprise");
    let stranger = SecretKey::generate();
    let report = usage_report(&env, &stranger, &id, "stranger.cose");
    let out = import(&env, &report);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains(&format!(
        "  warning: report comes from cluster {}, but the license is bound to {}: the license may be in use elsewhere\n",
        cluster_id(&stranger.public()),
        cluster_id(&cluster.public())
    )));
}

#[test]
fn usage_report_for_unknown_license_is_refused() {
    let env = Env::new();
    let cluster = SecretKey::generate();
    let id = "0b7c1d2e-0000-4000-8000-000000000000";
    let report = usage_report(&env, &cluster, id, "u.cose");
    let out = import(&env, &report);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out), format!("error: license {id} is not in the ledger: check the id with `licensegen ledger list`\n"));
}

#[test]
fn inspect_reads_cluster_documents() {
    let env = Env::new();
    let cluster = SecretKey::generate();
    let req = activation_request(&env, &cluster, 5);
    let out = env.cmd().args(["inspect"]).arg(&req).output().unwrap();
    let s = stdout(&out);
    assert!(
        s.contains("kind:        activation request (armored)\n"),
        "{s}"
    );
    assert!(
        s.contains(&format!(
            "signature:   valid: self-signed by cluster key of {}\n",
            cluster_id(&cluster.public())
        )),
        "{s}"
    );
    assert!(s.contains("hostname:    bzzz-01.customer.example\n"), "{s}");
}

#[test]
fn vendor_key_encrypted_to_an_age_recipient_unlocks_with_the_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let identity = age::x25519::Identity::generate();
    let id_file = tmp.path().join("ops.agekey");
    std::fs::write(
        &id_file,
        format!("{}\n", identity.to_string().expose_secret()),
    )
    .unwrap();
    let recipient = identity.to_public().to_string();
    bare(tmp.path())
        .args(["init", "v", "--recipient", &recipient])
        .assert()
        .success();
    let key = std::fs::read_to_string(tmp.path().join("v/vendor.key")).unwrap();
    assert!(key.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
    let out = bare(tmp.path())
        .args([
            "--dir",
            "v",
            "issue",
            "--customer",
            "A",
            "--tier",
            "standard",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "error: v/vendor.key is encrypted to an age recipient: pass --identity FILE (or set KACHING_IDENTITY) with the matching age identity\n"
    );
    bare(tmp.path())
        .args([
            "--dir",
            "v",
            "issue",
            "--customer",
            "A",
            "--tier",
            "standard",
            "--identity",
        ])
        .arg(&id_file)
        .assert()
        .success();
    let other = tmp.path().join("other.agekey");
    std::fs::write(
        &other,
        format!(
            "{}\n",
            age::x25519::Identity::generate()
                .to_string()
                .expose_secret()
        ),
    )
    .unwrap();
    let out = bare(tmp.path())
        .args([
            "--dir",
            "v",
            "issue",
            "--customer",
            "B",
            "--tier",
            "standard",
        ])
        .env("KACHING_IDENTITY", &other)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!("error: identity {} does not unlock v/vendor.key: use the identity the key was encrypted to; nothing was changed\n", other.display())
    );
    let out = bare(tmp.path())
        .args(["init", "w", "--recipient", "age1nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("error: \"age1nope\" is not an age X25519 recipient ("));
}

#[test]
fn key_rotation_keeps_old_licenses_manageable_and_verifiable_with_the_bundle() {
    let env = Env::new();
    let (old_id, old_file) = env.issue(&["--customer", "Acme", "--tier", "standard"]);
    let old_kid = env.pubkey().iter().next().unwrap().kid();
    let out = env.cmd().args(["key", "rotate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains(&format!("retired key {old_kid} to ")));
    let new_kid = env.pubkey().iter().next().unwrap().kid();
    assert_ne!(new_kid, old_kid);
    assert!(env
        .dir
        .join(format!("retired-keys/{old_kid}.key"))
        .is_file());
    // The bundle trusts both keys; the new vendor.pub alone does not know the old license.
    let bundle = env.tmp.path().join("trusted.pem");
    env.cmd()
        .args(["key", "export-public", "--all", "--out"])
        .arg(&bundle)
        .assert()
        .success();
    env.cmd()
        .arg("verify")
        .arg(&old_file)
        .arg("--pubkey")
        .arg(&bundle)
        .assert()
        .code(0);
    let only_new = env.tmp.path().join("new.pem");
    env.cmd()
        .args(["key", "export-public", "--out"])
        .arg(&only_new)
        .assert()
        .success();
    env.cmd()
        .arg("verify")
        .arg(&old_file)
        .arg("--pubkey")
        .arg(&only_new)
        .assert()
        .code(10);
    // Old licenses can still be suspended and renewed; new documents carry the new kid.
    env.cmd().args(["suspend", &old_id]).assert().success();
    let list = std::fs::read(env.dir.join("revocations.cose")).unwrap();
    assert_eq!(kaching_core::envelope::peek(&list).unwrap().1, new_kid);
    env.cmd().args(["reinstate", &old_id]).assert().success();
    let out = env.cmd().args(["renew", &old_id]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (_, new_file) = parse_issued(&stdout(&out));
    assert_eq!(
        verify_license(&std::fs::read(new_file).unwrap(), &env.pubkey())
            .unwrap()
            .kid,
        new_kid
    );
    let out = env.cmd().args(["key", "show"]).output().unwrap();
    assert!(stdout(&out).contains(&format!(
        "retired:     {old_kid} (still trusted for documents it signed)\n"
    )));
}

/// A chained usage report (seq 1) for `license`, written to `name`.
fn chained_report(env: &Env, key: &SecretKey, license: &str, name: &str) -> std::path::PathBuf {
    let report = UsageReport {
        license_id: license.parse::<LicenseId>().unwrap(),
        cluster_id: cluster_id(&key.public()),
        period_start: 1_795_000_000,
        period_end: 1_795_300_000,
        counters: BTreeMap::new(),
        peak_nodes: 2,
        upgrade_requests: Vec::new(),
        chain: Some(kaching_core::cluster::ReportChain {
            seq: 1,
            prev: None,
            trusted_time: 1_795_300_000,
            acked: 0,
            node_peaks: BTreeMap::new(),
        }),
    };
    let path = env.tmp.path().join(name);
    std::fs::write(&path, report.sign(key)).unwrap();
    path
}

#[test]
fn attack_receipt_never_overwrites_a_chosen_file() {
    let env = Env::new();
    let cluster = SecretKey::generate();
    let id = issue_bound(&env, &cluster, "standard");
    let report = chained_report(&env, &cluster, &id, "usage.cose");
    let license = env.tmp.path().join("precious.license");
    std::fs::write(&license, b"a license the customer needs").unwrap();
    for target in [&license, &report] {
        let before = std::fs::read(target).unwrap();
        let out = env
            .cmd()
            .args(["usage", "import"])
            .arg(&report)
            .arg("--receipt")
            .arg(target)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert_eq!(
            stderr(&out),
            format!(
                "error: {} already exists: pick another --receipt name, or delete the file first if it is an old receipt you no longer need\n",
                target.display()
            )
        );
        assert_eq!(std::fs::read(target).unwrap(), before);
    }
    // A new name works, and importing again to the same name is no error.
    let receipt = env.tmp.path().join("r.asc");
    for _ in 0..2 {
        let out = env
            .cmd()
            .args(["usage", "import"])
            .arg(&report)
            .arg("--receipt")
            .arg(&receipt)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    assert!(std::fs::read_to_string(&receipt)
        .unwrap()
        .starts_with("-----BEGIN KACHING RECEIPT-----"));
}

#[test]
fn concurrent_imports_of_one_report_both_answer() {
    let env = Env::new();
    for round in 0..3 {
        let cluster = SecretKey::generate();
        let id = issue_bound(&env, &cluster, "standard");
        let report = chained_report(&env, &cluster, &id, &format!("usage-{round}.cose"));
        let children: Vec<_> = (0..3)
            .map(|i| {
                std::process::Command::new(assert_cmd::cargo::cargo_bin("licensegen"))
                    .current_dir(env.tmp.path())
                    .env("KACHING_TEST_SCRYPT_LOG_N", "4")
                    .env("KACHING_DIR", &env.dir)
                    .env("KACHING_PASSPHRASE", super::common::PASS)
                    .args(["usage", "import"])
                    .arg(&report)
                    .arg("--receipt")
                    .arg(env.tmp.path().join(format!("r-{round}-{i}.asc")))
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let outs: Vec<_> = children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect();
        for o in &outs {
            assert!(o.status.success(), "round {round}: {}", stderr(o));
        }
        let receipts: Vec<Vec<u8>> = (0..3)
            .map(|i| std::fs::read(env.tmp.path().join(format!("r-{round}-{i}.asc"))).unwrap())
            .collect();
        assert!(receipts.iter().all(|r| r == &receipts[0]), "one receipt");
        let fresh = outs
            .iter()
            .filter(|o| stdout(o).starts_with("imported usage report"))
            .count();
        let again = outs
            .iter()
            .filter(|o| stdout(o).contains("was already imported; nothing changed"))
            .count();
        assert_eq!((fresh, again), (1, 2), "round {round}");
    }
}
