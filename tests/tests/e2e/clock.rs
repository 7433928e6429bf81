//! A clock once ahead, end to end (docs/verifier.md "Clock reset",
//! docs/sales-ops.md "Clock resets"): an air-gapped cluster whose clock ran
//! months ahead is `clock_tampered` once the clock is right again; the
//! customer sends the line `status` prints, sales ops sign a reset with
//! `licensegen clock-reset`, the cluster takes it, and the usage report
//! after it reaches the vendor without a rollback flag.

use std::path::Path;

use kaching_core::clock_reset::Taken;
use kaching_core::time::{parse_rfc3339, DAY};
use kaching_core::State;
use kaching_e2e::{bound_cluster, now, verifier_config, Vendor};
use kaching_verifier::clock::Clock;
use kaching_verifier::{clock_reset, report, Config, Engine};

/// How far the clock ran ahead.
const AHEAD: i64 = 200 * DAY as i64;

fn config(dir: &Path, offset: i64) -> Config {
    let mut c = verifier_config(dir, None);
    c.clock = Clock::with_offset(offset);
    c
}

/// `kaching-verifier usage-report --out FILE`, with the clock shifted by `offset`.
fn write_report(dir: &Path, offset: i64, file: &Path) {
    let cfg = config(dir, offset);
    let at = cfg.clock.now();
    let mut e = Engine::open(cfg, false).unwrap();
    report::usage_report(&mut e, at, |text| Ok(std::fs::write(file, text)?)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_locked_out_by_a_clock_once_ahead_recovers_with_the_vendors_reset() {
    let vendor = Vendor::new().await;
    let (cluster, lic) = bound_cluster(&vendor, "acme").await;

    // The clock runs years ahead for a while: the mark follows it, and a
    // usage report written then carries it to the vendor.
    let ahead = Engine::open(config(&cluster, AHEAD), false).unwrap();
    assert_eq!(ahead.current().verdict.state, State::Active);
    drop(ahead);
    let before = vendor.root.join("usage-1.asc");
    write_report(&cluster, AHEAD, &before);
    let report_cmd = ["usage", "import", before.to_str().unwrap()];
    assert_eq!(vendor.licensegen(&report_cmd).await, 0);

    // The clock is right again: locked out, with the line to send.
    let stuck = Engine::open_read_only(config(&cluster, 0))
        .unwrap()
        .current();
    assert_eq!(stuck.verdict.state, State::ClockTampered);
    let (id, mark) = (
        stuck.status.cluster_id.clone(),
        stuck.status.trusted_time.clone(),
    );
    assert!(parse_rfc3339(&mark).unwrap() > now() + 199 * DAY);

    // Sales ops sign the reset from that line, as `status` spells it.
    let file = vendor.root.join("clock.reset");
    let code = vendor
        .licensegen(&[
            "clock-reset",
            "--cluster",
            &id,
            "--mark",
            &mark,
            "--out",
            file.to_str().unwrap(),
        ])
        .await;
    assert_eq!(code, 0);

    // The cluster takes it (daemon stopped): the mark is the vendor's time.
    let applied = clock_reset::apply(config(&cluster, 0), &std::fs::read(&file).unwrap()).unwrap();
    let Taken::Lowered { to, .. } = applied.taken else {
        panic!("not lowered: {:?}", applied.taken)
    };
    assert!(to <= now() && to + 60 > now(), "the vendor's clock, now");
    assert_eq!(applied.after.verdict.state, State::Active);
    // A second time it is refused: a reset is taken once.
    let again = clock_reset::apply(config(&cluster, 0), &std::fs::read(&file).unwrap());
    assert!(
        again.unwrap_err().to_string().contains("already used"),
        "replayed"
    );

    // The next report carries the lowered mark; the vendor's ledger knows
    // the reset, so the import is clean rather than a rollback.
    let after = vendor.root.join("usage-2.asc");
    write_report(&cluster, 0, &after);
    let report_cmd = ["usage", "import", after.to_str().unwrap()];
    assert_eq!(vendor.licensegen(&report_cmd).await, 0);
    let ledger = licensegen::ledger::Ledger::open(&vendor.dir.join("ledger.sqlite")).unwrap();
    let findings: Vec<_> = licensegen::ledger::usage_for(&ledger.conn, &lic.id.parse().unwrap())
        .unwrap()
        .into_iter()
        .flat_map(|u| u.chain.map(|c| c.findings).unwrap_or_default())
        .collect();
    assert!(findings.is_empty(), "{findings:?}");
}
