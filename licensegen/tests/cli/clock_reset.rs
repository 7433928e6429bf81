//! `clock-reset`: the vendor's signed permission to lower one cluster's
//! trusted-time mark (docs/format.md §7.9), and `usage import` telling the
//! mark going back to a reset's time from a rollback.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::common::{stderr, stdout, Env};
use kaching_core::clock_reset::{verify_clock_reset, ClockReset};
use kaching_core::cluster::{report_hash, ReportChain, UsageReport};
use kaching_core::time::{rfc3339, Timestamp, DAY};
use kaching_core::{cluster_id, LicenseId, SecretKey};
use licensegen::ledger::{self, Ledger};

fn now() -> Timestamp {
    kaching_testkit::now()
}

/// A mark from a clock that was wrong by years.
fn far_mark() -> Timestamp {
    now() + 800 * DAY
}

/// A cluster key and a license bound to its cluster id.
fn bound_license(env: &Env) -> (SecretKey, String, String) {
    let key = SecretKey::generate();
    let cluster = cluster_id(&key.public());
    let (id, _) = env.issue(&[
        "--customer",
        "Acme",
        "--tier",
        "standard",
        "--cluster",
        &cluster,
    ]);
    (key, cluster, id)
}

fn clock_reset(env: &Env, args: &[&str]) -> std::process::Output {
    env.cmd().arg("clock-reset").args(args).output().unwrap()
}

/// Signs a reset for `cluster` at `mark` and returns it as core reads it.
fn signed_reset(env: &Env, cluster: &str, mark: Timestamp) -> ClockReset {
    let out = clock_reset(env, &["--cluster", cluster, "--mark", &rfc3339(mark)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let file = env.tmp.path().join(format!("clock-reset-{cluster}.asc"));
    verify_clock_reset(&std::fs::read(file).unwrap(), &env.pubkey())
        .unwrap()
        .reset
}

fn recorded_resets(env: &Env, cluster: &str) -> Vec<ledger::ClockResetRecord> {
    let l = Ledger::open_to_read(&env.dir.join("ledger.sqlite")).unwrap();
    ledger::clock_resets_for(&l.conn, &[cluster]).unwrap()
}

/// Report `seq` of `key`'s cluster for `license`, chained to `prev`, with
/// trusted-time mark `mark`; returns its file and its binary bytes.
fn report(
    env: &Env,
    key: &SecretKey,
    license: &str,
    seq: u64,
    prev: Option<&[u8]>,
    mark: Timestamp,
) -> (PathBuf, Vec<u8>) {
    let r = UsageReport {
        license_id: license.parse::<LicenseId>().unwrap(),
        cluster_id: cluster_id(&key.public()),
        period_start: 1_795_000_000,
        period_end: 1_795_000_000 + seq * DAY,
        counters: BTreeMap::from([(
            "search_requests".to_string(),
            BTreeMap::from([("2026-11-21".to_string(), 1_000 * seq)]),
        )]),
        peak_nodes: 2,
        upgrade_requests: Vec::new(),
        chain: Some(ReportChain {
            seq,
            prev: prev.map(report_hash),
            trusted_time: mark,
            acked: 0,
            node_peaks: BTreeMap::new(),
        }),
    };
    let bytes = r.sign(key);
    let path = env.tmp.path().join(format!("usage-{seq}-{mark}.cose"));
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

fn import(env: &Env, file: &Path) -> std::process::Output {
    env.cmd()
        .args(["usage", "import", "--no-receipt"])
        .arg(file)
        .output()
        .unwrap()
}

fn ledger_show(env: &Env, id: &str) -> String {
    let out = env.cmd().args(["ledger", "show", id]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    stdout(&out)
}

#[test]
fn clock_reset_signs_a_reset_the_core_verifies_and_records_it() {
    let env = Env::new();
    let (_, cluster, license) = bound_license(&env);
    let mark = far_mark();
    let before = now();
    let out = clock_reset(
        &env,
        &[
            "--cluster",
            &cluster.to_uppercase(),
            "--mark",
            &rfc3339(mark),
            "--valid-for",
            "7d",
        ],
    );
    let after = now();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    let name = format!("clock-reset-{cluster}.asc");
    let file = std::fs::read(env.tmp.path().join(&name)).unwrap();
    assert!(file.starts_with(b"-----BEGIN KACHING CLOCK RESET-----\n"));
    let v = verify_clock_reset(&file, &env.pubkey()).unwrap();
    let r = &v.reset;
    assert_eq!(r.cluster_id, cluster);
    assert_eq!(r.mark, mark);
    assert!((before..=after).contains(&r.issued), "iat is now");
    assert_eq!(r.expires, r.issued + 7 * DAY);
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!(
            "signed clock reset {}\n  cluster     {cluster}\n  mark        {} (the cluster's, ",
            r.id_text(),
            rfc3339(mark)
        )),
        "{text}"
    );
    assert!(text.contains(&format!(
        "  new mark    {} (this computer's clock)\n",
        rfc3339(r.issued)
    )));
    assert!(text.contains(&format!("  valid until {} (7d)\n", rfc3339(r.expires))));
    assert!(text.contains(&format!(
        "  license     {license} Acme (acme), standard, active, bound to this cluster\n"
    )));
    assert!(text.contains(&format!("\n  kaching-verifier clock-reset {name}\n")));
    // The ledger has the row, with the file as written.
    let rows = recorded_resets(&env, &cluster);
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.id, r.id_text());
    assert_eq!(
        (row.mark, row.issued, row.expires),
        (r.mark, r.issued, r.expires)
    );
    assert_eq!(row.kid, v.kid.to_hex());
    assert_eq!(row.file, file);
    assert!(Path::new(&row.path).is_absolute() && row.path.ends_with(&name));
    assert_eq!(row.reset().as_ref(), Some(r));
    // `ledger show` of the bound license lists it.
    assert!(ledger_show(&env, &license).contains(&format!(
        "clock resets:\n  {}  cluster {cluster}  for mark {}",
        r.id_text(),
        rfc3339(mark)
    )));
    // `inspect` reads it.
    let out = env.cmd().arg("inspect").arg(&name).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("kind:        clock reset (armored)\n"),
        "{text}"
    );
    assert!(
        text.contains("signature:   valid: signed by vendor key"),
        "{text}"
    );
    assert!(
        text.contains(&format!("reset id:    {}\n", r.id_text())),
        "{text}"
    );
    assert!(
        text.contains(&format!("cluster:     {cluster}\n")),
        "{text}"
    );
    // `verify` says what it is instead of judging it as a license.
    let out = env.cmd().arg("verify").arg(&name).output().unwrap();
    assert_eq!(out.status.code(), Some(10));
    assert!(stdout(&out).contains(&format!(
        "{name} is a clock reset, not a license: `licensegen inspect {name}` shows what it holds"
    )));
}

#[test]
fn clock_reset_warns_about_an_unknown_cluster_and_a_small_skew() {
    let env = Env::new();
    let cluster = cluster_id(&SecretKey::generate().public());
    let out = clock_reset(
        &env,
        &["--cluster", &cluster, "--mark", &rfc3339(now() + 3 * 3600)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(e.contains("warning: the mark is only "), "{e}");
    assert!(e.contains("less than the verifier's 24h tolerance"), "{e}");
    assert!(e.contains("does not make clock_tampered"), "{e}");
    assert!(
        e.contains(&format!(
            "warning: the ledger knows no license on cluster {cluster}"
        )),
        "{e}"
    );
    assert!(!stdout(&out).contains("  license "));
    assert_eq!(recorded_resets(&env, &cluster).len(), 1);
}

#[test]
fn clock_reset_refuses_a_mark_not_ahead() {
    let env = Env::new();
    let (_, cluster, _) = bound_license(&env);
    let before = env.snapshot();
    for mark in [rfc3339(now() - 3600), rfc3339(now())] {
        let out = clock_reset(&env, &["--cluster", &cluster, "--mark", &mark]);
        assert_eq!(out.status.code(), Some(2), "{mark}");
        let e = stderr(&out);
        assert!(
            e.starts_with(&format!(
                "error: the mark {mark} is not ahead of this computer's clock ("
            )),
            "{e}"
        );
        assert!(
            e.contains("the cluster's clock is behind, not its mark; it needs its clock set right (NTP), no reset"),
            "{e}"
        );
    }
    // A date alone would be midnight, below the cluster's mark.
    let out = clock_reset(&env, &["--cluster", &cluster, "--mark", "2031-01-01"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is a date without a time"),
        "{}",
        stderr(&out)
    );
    // Nor a malformed cluster id.
    let out = clock_reset(
        &env,
        &["--cluster", "cluster-1", "--mark", &rfc3339(far_mark())],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("\"cluster-1\" is not a cluster id"));
    assert_eq!(env.snapshot(), before, "nothing signed or recorded");
    assert!(recorded_resets(&env, &cluster).is_empty());
    assert!(!env
        .tmp
        .path()
        .join(format!("clock-reset-{cluster}.asc"))
        .exists());
}

#[test]
fn clock_reset_never_overwrites_an_existing_file() {
    let env = Env::new();
    let (_, cluster, _) = bound_license(&env);
    let mark = rfc3339(far_mark());
    let precious = env.tmp.path().join("precious.license");
    std::fs::write(&precious, b"a license the customer needs").unwrap();
    let default = env.tmp.path().join(format!("clock-reset-{cluster}.asc"));
    std::fs::write(&default, b"an earlier reset").unwrap();
    // Refused before the key is unlocked: no passphrase is needed to hear it.
    for (target, args) in [
        (&precious, vec!["--out", "precious.license"]),
        (&default, vec![]),
    ] {
        let out = env
            .cmd()
            .env_remove("KACHING_PASSPHRASE")
            .args(["clock-reset", "--cluster", &cluster, "--mark", &mark])
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert_eq!(
            stderr(&out),
            format!(
                "error: {} already exists: choose another --out path or move the old file away\n",
                target.strip_prefix(env.tmp.path()).unwrap().display()
            )
        );
    }
    assert_eq!(
        std::fs::read(&precious).unwrap(),
        b"a license the customer needs"
    );
    assert_eq!(std::fs::read(&default).unwrap(), b"an earlier reset");
    assert!(recorded_resets(&env, &cluster).is_empty());
    // Another name works.
    let out = clock_reset(
        &env,
        &[
            "--cluster",
            &cluster,
            "--mark",
            &mark,
            "--out",
            "second.asc",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("\n  kaching-verifier clock-reset second.asc\n"));
    assert_eq!(recorded_resets(&env, &cluster).len(), 1);
}

#[test]
fn clock_reset_refuses_a_validity_out_of_bounds() {
    let env = Env::new();
    let (_, cluster, _) = bound_license(&env);
    let mark = rfc3339(far_mark());
    for (valid, says) in [
        (
            "59min",
            "error: --valid-for 59min is too short: give at least 1h",
        ),
        ("91d", "error: --valid-for 91d is too long: at most 90d."),
        ("1m", "`1m` is ambiguous: write `1months` or `1min`"),
        ("soon", "cannot read duration \"soon\""),
    ] {
        let out = clock_reset(
            &env,
            &["--cluster", &cluster, "--mark", &mark, "--valid-for", valid],
        );
        assert_eq!(out.status.code(), Some(2), "{valid}");
        assert!(stderr(&out).contains(says), "{valid}: {}", stderr(&out));
    }
    assert!(recorded_resets(&env, &cluster).is_empty());
    for (valid, secs) in [("1h", 3600), ("90d", 90 * DAY)] {
        let out = clock_reset(
            &env,
            &[
                "--cluster",
                &cluster,
                "--mark",
                &mark,
                "--valid-for",
                valid,
                "--out",
                valid,
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{valid}: {}", stderr(&out));
        let r = verify_clock_reset(
            &std::fs::read(env.tmp.path().join(valid)).unwrap(),
            &env.pubkey(),
        )
        .unwrap()
        .reset;
        assert_eq!(r.expires - r.issued, secs, "{valid}");
    }
}

#[test]
fn usage_import_notes_a_mark_lowered_by_a_recorded_clock_reset() {
    let env = Env::new();
    let (key, cluster, license) = bound_license(&env);
    let ahead = far_mark();
    let (first, first_bytes) = report(&env, &key, &license, 1, None, ahead);
    let out = import(&env, &first);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let reset = signed_reset(&env, &cluster, ahead);
    // The cluster took the reset: its next report carries the reset's time.
    let (second, _) = report(&env, &key, &license, 2, Some(&first_bytes), reset.issued);
    let out = import(&env, &second);
    assert_eq!(
        out.status.code(),
        Some(0),
        "not a rollback: {}",
        stdout(&out)
    );
    let text = stdout(&out);
    let note = format!(
        "trusted time went back from {} in report 1 to {} in report 2: the clock reset {} signed {} for this cluster set it there; not a rollback",
        rfc3339(ahead),
        rfc3339(reset.issued),
        reset.id_text(),
        rfc3339(reset.issued)
    );
    assert!(text.contains(&format!("  note: {note}\n")), "{text}");
    assert!(!text.contains("FLAGGED"), "{text}");
    // Stored as a note in the history, not as a finding.
    let shown = ledger_show(&env, &license);
    assert!(!shown.contains("FLAGGED"), "{shown}");
    assert!(
        shown.contains(&format!("note        cluster {cluster} report 2: {note}")),
        "{shown}"
    );
    let l = Ledger::open_to_read(&env.dir.join("ledger.sqlite")).unwrap();
    let usage = ledger::usage_for(&l.conn, &license.parse().unwrap()).unwrap();
    assert_eq!(usage.len(), 2);
    assert!(usage
        .iter()
        .all(|u| u.chain.as_ref().unwrap().findings.is_empty()));
    // Imported again: nothing changes, nothing is flagged.
    let out = import(&env, &second);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("was already imported; nothing changed"));
    assert!(!stdout(&out).contains("FLAGGED"));
}

#[test]
fn attack_usage_import_flags_a_mark_lowered_below_the_reset() {
    let env = Env::new();
    let (key, cluster, license) = bound_license(&env);
    let ahead = far_mark();
    let (first, first_bytes) = report(&env, &key, &license, 1, None, ahead);
    assert_eq!(import(&env, &first).status.code(), Some(0));
    let reset = signed_reset(&env, &cluster, ahead);
    // Below the vendor's time: a restored state database, reset or not.
    let (below, _) = report(
        &env,
        &key,
        &license,
        2,
        Some(&first_bytes),
        reset.issued - 1,
    );
    let out = import(&env, &below);
    assert_eq!(out.status.code(), Some(31), "{}", stdout(&out));
    let flag = format!(
        "  FLAGGED trusted time went back: {} in report 1, {} in report 2: the state database was restored\n",
        rfc3339(ahead),
        rfc3339(reset.issued - 1)
    );
    assert!(stdout(&out).contains(&flag), "{}", stdout(&out));
    assert!(!stdout(&out).contains("note:"));
    assert!(ledger_show(&env, &license).contains("      FLAGGED trusted time went back"));

    // A cluster with no reset of its own: another cluster's reset explains nothing.
    let (other_key, _, other) = bound_license(&env);
    let (first, first_bytes) = report(&env, &other_key, &other, 1, None, ahead);
    assert_eq!(import(&env, &first).status.code(), Some(0));
    let (lowered, _) = report(
        &env,
        &other_key,
        &other,
        2,
        Some(&first_bytes),
        reset.issued,
    );
    let out = import(&env, &lowered);
    assert_eq!(out.status.code(), Some(31), "{}", stdout(&out));
    assert!(stdout(&out).contains("  FLAGGED trusted time went back: "));
    assert!(!stdout(&out).contains("note:"));
    assert!(ledger_show(&env, &other).contains("      FLAGGED trusted time went back"));
}

#[test]
fn clock_resets_upgrade_an_old_ledger_and_a_read_only_one_still_reads() {
    let env = Env::new();
    let (_, cluster, license) = bound_license(&env);
    let path = env.dir.join("ledger.sqlite");
    // A ledger from before clock resets.
    Ledger::open(&path)
        .unwrap()
        .conn
        .execute_batch("DROP INDEX clock_resets_cluster; DROP TABLE clock_resets;")
        .unwrap();
    // Read-only (a folder where SQLite's `-shm` belongs stands in for it,
    // as root ignores modes): the read-only commands work as before.
    let blocker = env.dir.join("ledger.sqlite-shm");
    std::fs::create_dir(&blocker).unwrap();
    let shown = ledger_show(&env, &license);
    assert!(!shown.contains("clock resets:"), "{shown}");
    let out = env
        .cmd()
        .args(["ledger", "show", &license, "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    std::fs::remove_dir(&blocker).unwrap();
    // Writable again: the first clock reset adds the table.
    signed_reset(&env, &cluster, far_mark());
    assert_eq!(recorded_resets(&env, &cluster).len(), 1);
    assert!(ledger_show(&env, &license).contains("clock resets:\n"));
}
