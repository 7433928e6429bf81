//! `kaching-verifier clock-reset`: the vendor's way out of a trusted-time
//! mark a wrong clock left ahead (docs/verifier.md "Clock reset"), and the
//! ways a customer could try to misuse it (docs/threat-model.md). Every
//! refusal leaves the mark in state.db as it was.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use kaching_core::armor::armor;
use kaching_core::clock_reset::{ClockReset, Taken};
use kaching_core::root::{Role, RoleKeys, Root};
use kaching_core::time::{rfc3339, Timestamp};
use kaching_core::{DocKind, SecretKey};
use kaching_verifier::state::Db;
use kaching_verifier::{Clock, Config, Engine};

fn key(n: u8) -> SecretKey {
    SecretKey::from_seed(&[n; 32])
}

/// A cluster over `dir`: the license and keys in `cfg`, state made by a
/// start, its config file written, its mark as the start left it.
struct Stuck {
    dir: tempfile::TempDir,
    cfg: Config,
    conf: PathBuf,
    cluster: String,
    /// The mark (for a stuck cluster: years ahead of the clock).
    ahead: Timestamp,
}

fn started(dir: tempfile::TempDir, cfg: Config) -> Stuck {
    let cluster = Engine::open(cfg.clone(), true)
        .unwrap()
        .identity
        .cluster_id
        .clone();
    let conf = write_config(dir.path(), &cfg, "");
    let mut s = Stuck {
        dir,
        cfg,
        conf,
        cluster,
        ahead: 0,
    };
    s.ahead = s.mark();
    s
}

/// [`started`], then the mark raised years ahead, as a clock once wrong by
/// years leaves it.
fn stuck_with(dir: tempfile::TempDir, cfg: Config) -> Stuck {
    let mut s = started(dir, cfg);
    s.ahead = now() + 1000 * DAY;
    s.set_mark(s.ahead);
    s
}

fn stuck() -> Stuck {
    let v = Vendor::new();
    let (dir, cfg) = setup(Some(&v.sign(&v.license(1, "standard"))));
    stuck_with(dir, cfg)
}

impl Stuck {
    /// The mark in state.db.
    fn mark(&self) -> Timestamp {
        Db::open(&self.cfg.state_dir, false)
            .unwrap()
            .trusted_time()
            .unwrap()
    }

    fn set_mark(&self, t: Timestamp) {
        Db::open(&self.cfg.state_dir, false)
            .unwrap()
            .raise_trusted_time(t)
            .unwrap();
    }

    /// A reset for this cluster and its mark, signed now, valid a week.
    fn reset(&self) -> ClockReset {
        ClockReset::new(&self.cluster, self.ahead, now(), now() + 7 * DAY)
    }

    /// `reset` signed by `signer`, armored, in a file.
    fn file(&self, reset: &ClockReset, signer: &SecretKey) -> PathBuf {
        self.file_bytes(armor(DocKind::ClockReset, &reset.sign(signer)).as_bytes())
    }

    fn file_bytes(&self, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join("clock.reset");
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn clock_reset(&self, file: &Path) -> Output {
        verifier_cmd("warn")
            .args(["clock-reset", "--config"])
            .arg(&self.conf)
            .arg(file)
            .output()
            .unwrap()
    }

    fn check(&self) -> Output {
        verifier_cmd("warn")
            .args(["check", "--allow-development-trust", "--config"])
            .arg(&self.conf)
            .output()
            .unwrap()
    }

    /// The line `check` and `status` print for a clock_tampered cluster.
    fn request_line(&self, mark: Timestamp) -> String {
        let (id, t) = (&self.cluster, rfc3339(mark));
        format!(
            "clock reset: send the vendor cluster {id} and mark {t} (licensegen clock-reset --cluster {id} --mark {t})"
        )
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A refused reset: exit 1, an error that says `why`, the mark unchanged.
fn assert_refused(s: &Stuck, out: &Output, why: &str, mark: Timestamp) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}{}", text(&out.stdout));
    assert!(err.contains(why), "{err}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert_eq!(s.mark(), mark, "the mark in state.db did not move");
}

#[test]
fn clock_reset_recovers_a_cluster_stuck_clock_tampered() {
    let s = stuck();
    let out = s.check();
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(15), "{said}");
    assert!(said.starts_with("clock_tampered: "), "{said}");
    assert!(
        said.contains(&format!("\n{}\n", s.request_line(s.ahead))),
        "{said}"
    );

    // The vendor signs a reset for what the admin sent; binary spelling.
    let reset = s.reset();
    let file = s.file_bytes(&reset.sign(&Vendor::new().key));
    let out = s.clock_reset(&file);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "clock reset {} taken: the trusted-time mark went down from {} to {}\n\
             license now: active: license valid until {}\n\
             start the daemon again: systemctl start kaching-verifier\n",
            reset.id_text(),
            rfc3339(s.ahead),
            rfc3339(reset.issued),
            rfc3339(Vendor::new().license(1, "standard").expires_at),
        )
    );
    assert_eq!(s.mark(), reset.issued);
    let out = s.check();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(!text(&out.stdout).contains("clock reset"));
    // A start keeps the lowered mark (nothing re-raises it from elsewhere).
    drop(Engine::open(s.cfg.clone(), false).unwrap());
    assert!(s.mark() >= reset.issued && s.mark() <= now());

    let help = verifier_cmd("warn")
        .args(["clock-reset", "--help"])
        .output()
        .unwrap();
    let help = text(&help.stdout);
    for taught in [
        "systemctl stop kaching-verifier",
        "kaching-verifier clock-reset RESET-FILE",
        "kaching-verifier status",
        "send your",
    ] {
        assert!(help.contains(taught), "{taught}: {help}");
    }
}

#[test]
fn attack_clock_reset_replayed_is_refused() {
    let s = stuck();
    let reset = s.reset();
    let file = s.file(&reset, &Vendor::new().key);
    assert!(s.clock_reset(&file).status.success());
    assert_eq!(s.mark(), reset.issued);
    // The clock goes wrong again; the same reset is kept and used again.
    let again = s.ahead - DAY;
    s.set_mark(again);
    let out = s.clock_reset(&file);
    assert_refused(&s, &out, "was already used on this cluster", again);
}

#[test]
fn attack_clock_reset_for_another_cluster_is_refused() {
    let s = stuck();
    let mut reset = s.reset();
    reset.cluster_id = "zzzzzzzzzzzzzzzz".into();
    let out = s.clock_reset(&s.file(&reset, &Vendor::new().key));
    assert_refused(
        &s,
        &out,
        &format!(
            "clock reset refused, nothing changed: this clock reset is for cluster zzzzzzzzzzzzzzzz, and this is cluster {}",
            s.cluster
        ),
        s.ahead,
    );
}

#[test]
fn attack_clock_reset_signed_by_a_revoker_is_refused() {
    // A root with issuer key 10 and revoker key 20 (root keys 1 and 2).
    let mut keys: Vec<_> = [1u8, 2, 10, 20].iter().map(|&s| key(s).public()).collect();
    keys.sort_by_key(|k| k.kid());
    let role = |seeds: &[u8], threshold| {
        let mut kids: Vec<_> = seeds.iter().map(|&s| key(s).public().kid()).collect();
        kids.sort();
        RoleKeys { kids, threshold }
    };
    let root = Root {
        issuer: "vendor".into(),
        version: 1,
        issued_at: now() - 60,
        expires: now() + 365 * DAY,
        keys,
        roles: BTreeMap::from([
            (Role::Root, role(&[1, 2], 2)),
            (Role::Issuer, role(&[10], 1)),
            (Role::Revoker, role(&[20], 1)),
        ]),
        revocation_floor: None,
    };
    let (dir, cfg) = setup(None);
    std::fs::write(
        &cfg.trusted_keys,
        armor(DocKind::Root, &root.sign(&[&key(1), &key(2)])),
    )
    .unwrap();
    std::fs::write(
        &cfg.license,
        Vendor::new().license(1, "standard").sign(&key(10)),
    )
    .unwrap();
    let s = stuck_with(dir, cfg);
    let reset = s.reset();
    let out = s.clock_reset(&s.file(&reset, &key(20)));
    assert_refused(&s, &out, "clock reset refused: key ", s.ahead);
    assert!(
        text(&out.stderr)
            .contains("has the revoker role in root v1; only issuer keys may sign this"),
        "{}",
        text(&out.stderr)
    );
    // Nor a root key: only the issuer role lifts a restriction.
    let out = s.clock_reset(&s.file(&reset, &key(1)));
    assert_refused(&s, &out, "clock reset refused", s.ahead);
    // The issuer's reset is taken.
    let out = s.clock_reset(&s.file(&reset, &key(10)));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(s.mark(), reset.issued);
}

#[test]
fn attack_clock_reset_with_tampered_bytes_is_refused() {
    let s = stuck();
    let v = Vendor::new();
    let signed = s.reset().sign(&v.key);
    // A byte of the claims (the time it sets, say) and a byte of the signature.
    for at in [signed.len() - 70, signed.len() - 1] {
        let mut bytes = signed.clone();
        bytes[at] ^= 1;
        let out = s.clock_reset(&s.file_bytes(&bytes));
        assert_refused(&s, &out, "clock reset refused", s.ahead);
    }
    // Another kind of document signed by the same key is not a reset.
    let receipt_kind = kaching_core::envelope::sign(DocKind::Receipt, s.reset().to_cbor(), &v.key);
    let out = s.clock_reset(&s.file_bytes(&receipt_kind));
    assert_refused(&s, &out, "clock reset refused", s.ahead);
    // A key the vendor never had.
    let out = s.clock_reset(&s.file(&s.reset(), &Vendor::other().key));
    assert_refused(&s, &out, "clock reset refused", s.ahead);
}

#[test]
fn attack_clock_reset_expired_is_refused() {
    let s = stuck();
    let reset = ClockReset::new(&s.cluster, s.ahead, now() - 10 * DAY, now() - 3 * DAY);
    let out = s.clock_reset(&s.file(&reset, &Vendor::new().key));
    assert_refused(
        &s,
        &out,
        &format!("this clock reset expired at {}", rfc3339(reset.expires)),
        s.ahead,
    );
}

#[test]
fn attack_clock_reset_for_an_older_mark_is_refused() {
    let s = stuck();
    let reset = s.reset();
    // The mark moved past the one the reset was made for.
    let later = s.ahead + DAY;
    s.set_mark(later);
    let out = s.clock_reset(&s.file(&reset, &Vendor::new().key));
    assert_refused(
        &s,
        &out,
        &format!(
            "the trusted-time mark is {}, later than the {} this reset was made for",
            rfc3339(later),
            rfc3339(s.ahead)
        ),
        later,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_reset_while_the_daemon_runs_is_refused() {
    let s = stuck();
    let d = Daemon::start(s.cfg.clone()).await;
    d.wait_status("clock tampered", |v| v["state"] == "clock_tampered")
        .await;
    let (conf, url) = (s.conf.clone(), d.url.clone());
    let status = tokio::task::spawn_blocking(move || {
        verifier_cmd("warn")
            .args(["status", "--config"])
            .arg(&conf)
            .args(["--url", &url])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let table = text(&status.stdout);
    assert!(status.status.success(), "{}", text(&status.stderr));
    assert!(
        table.contains(&format!("\n{}\n", s.request_line(s.ahead))),
        "{table}"
    );
    // The license page says the same, for an admin who reads it there.
    let page = d.text("/ui/").await;
    assert!(page.contains(&s.request_line(s.ahead)), "{page}");

    let file = s.file(&s.reset(), &Vendor::new().key);
    let (conf, f) = (s.conf.clone(), file.clone());
    let out = tokio::task::spawn_blocking(move || {
        verifier_cmd("warn")
            .args(["clock-reset", "--config"])
            .arg(&conf)
            .arg(&f)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_refused(&s, &out, "verifier.lock", s.ahead);
    let err = text(&out.stderr);
    for said in [
        "the kaching-verifier daemon is running",
        "would write the old mark back",
        "systemctl stop kaching-verifier",
        "systemctl start kaching-verifier",
        "Nothing was changed",
    ] {
        assert!(err.contains(said), "{said}: {err}");
    }
    d.stop().await;
    // Stopped, the same reset is taken.
    let out = s.clock_reset(&file);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(s.mark() < s.ahead);
}

#[test]
fn clock_reset_with_a_clock_still_behind_is_refused_and_not_spent() {
    let s = stuck();
    // Signed on the vendor's machine three days after this cluster's clock.
    let issued = now() + 3 * DAY;
    let reset = ClockReset::new(&s.cluster, s.ahead, issued, issued + 7 * DAY);
    let file = s.file(&reset, &Vendor::new().key);
    let out = s.clock_reset(&file);
    assert_refused(
        &s,
        &out,
        "more than the tolerance before this reset was signed",
        s.ahead,
    );
    assert!(text(&out.stderr).contains("set the clock right first (NTP)"));
    assert!(!Db::open(&s.cfg.state_dir, false)
        .unwrap()
        .clock_reset_taken(&reset.id)
        .unwrap());
    // With the clock set right, the same reset is taken.
    let mut cfg = s.cfg.clone();
    cfg.clock = Clock::with_offset(i64::try_from(3 * DAY).unwrap());
    let done = kaching_verifier::clock_reset::apply(cfg, &std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(
        done.taken,
        Taken::Lowered {
            from: s.ahead,
            to: issued
        }
    );
    assert_eq!(done.after.verdict.state, kaching_core::State::Active);
    assert_eq!(s.mark(), issued);
}

#[test]
fn clock_reset_for_a_mark_not_ahead_changes_nothing_and_is_not_spent() {
    // The clock was wrong ahead a little, or not at all: the mark is not
    // ahead of the time the vendor signed.
    let v = Vendor::new();
    let (dir, cfg) = setup(Some(&v.sign(&v.license(1, "standard"))));
    let s = started(dir, cfg);
    let mark = s.mark();
    let reset = ClockReset::new(&s.cluster, now() + 1000 * DAY, now() + 60, now() + 7 * DAY);
    let out = s.clock_reset(&s.file(&reset, &v.key));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.starts_with(&format!(
            "the trusted-time mark ({}) is not ahead of the time clock reset {} was signed ({}): nothing changed, and the reset is not spent\nlicense now: active: ",
            rfc3339(mark),
            reset.id_text(),
            rfc3339(reset.issued)
        )),
        "{said}"
    );
    assert_eq!(s.mark(), mark);
    assert!(!Db::open(&s.cfg.state_dir, false)
        .unwrap()
        .clock_reset_taken(&reset.id)
        .unwrap());
}
