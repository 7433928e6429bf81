//! The air-gap loop with receipts and the report chain (issue 11 items 1–2,
//! docs/air-gapped.md): nothing is marked done on the cluster until the
//! vendor's receipt says so, and a restored or cloned state database shows
//! at the vendor's next import.

use std::path::{Path, PathBuf};

use kaching_core::cluster::UsageReport;
use kaching_core::receipt::Receipt;
use kaching_core::report_chain::Finding;
use kaching_core::{DocKind, LicenseId, SecretKey};
use kaching_e2e::{bound_cluster, install, now, verifier_config, Issued, Vendor};
use kaching_verifier::{report, Engine};
use licensegen::exit::{CHAIN_GAP, CHAIN_ROLLBACK};

/// A vendor and one air-gapped cluster running a license bound to it.
struct Site {
    vendor: Vendor,
    cluster: PathBuf,
    lic: Issued,
}

async fn site() -> Site {
    let vendor = Vendor::new().await;
    let (cluster, lic) = bound_cluster(&vendor, "acme").await;
    Site {
        vendor,
        cluster,
        lic,
    }
}

fn engine(dir: &Path) -> Engine {
    Engine::open(verifier_config(dir, None), false).unwrap()
}

/// `POST /v1/upgrade-requests` on the cluster, `n` times.
fn request_upgrades(dir: &Path, n: usize) {
    let mut e = engine(dir);
    for i in 0..n {
        e.queue_upgrade("enterprise", &format!("request {i}"), now())
            .unwrap();
    }
}

/// `POST /v1/usage`: spends `amount` search requests.
fn spend(dir: &Path, amount: u64, key: &str) {
    engine(dir)
        .spend("search_requests", amount, key, now())
        .unwrap();
}

/// `kaching-verifier usage-report --out FILE`.
fn write_report(dir: &Path, file: &Path) -> UsageReport {
    let mut e = engine(dir);
    report::usage_report(&mut e, now(), |text| Ok(std::fs::write(file, text)?)).unwrap()
}

/// `kaching-verifier receipt import FILE`.
fn import_receipt(dir: &Path, file: &Path) -> anyhow::Result<report::ReceiptImported> {
    let mut e = engine(dir);
    report::import_receipt(&mut e, &std::fs::read(file).unwrap(), now())
}

impl Site {
    fn file(&self, name: &str) -> PathBuf {
        self.vendor.root.join(name)
    }

    /// `licensegen usage import REPORT` (receipt beside it); the exit code.
    async fn import(&self, report: &Path) -> u8 {
        self.vendor
            .licensegen(&["usage", "import", report.to_str().unwrap()])
            .await
    }

    /// What the ledger holds on the license's usage reports.
    fn ledger(&self) -> Vec<licensegen::ledger::UsageRecord> {
        let ledger =
            licensegen::ledger::Ledger::open(&self.vendor.dir.join("ledger.sqlite")).unwrap();
        let id: LicenseId = self.lic.id.parse().unwrap();
        licensegen::ledger::usage_for(&ledger.conn, &id).unwrap()
    }

    fn findings(&self) -> Vec<Finding> {
        self.ledger()
            .into_iter()
            .flat_map(|u| u.chain.map(|c| c.findings).unwrap_or_default())
            .collect()
    }
}

fn receipt_of(report: &Path) -> PathBuf {
    licensegen::usage::default_receipt_path(report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_reports_before_a_receipt_lose_nothing() {
    for import_second in [false, true] {
        let s = site().await;
        request_upgrades(&s.cluster, 3);
        // Two reports before any receipt: the second overwrites the first
        // file as a hurried user would, yet both carry all three requests.
        let first = s.file("usage-1.asc");
        let second = s.file("usage-2.asc");
        let r1 = write_report(&s.cluster, &first);
        let r2 = write_report(&s.cluster, &second);
        assert_eq!(r1.upgrade_requests.len(), 3);
        assert_eq!(
            r2.upgrade_requests.len(),
            3,
            "the second report lost nothing"
        );

        // The vendor gets either one of them.
        let (file, code) = if import_second {
            (&second, s.import(&second).await)
        } else {
            (&first, s.import(&first).await)
        };
        let expected = if import_second { CHAIN_GAP } else { 0 };
        assert_eq!(
            code, expected,
            "report 1 never arriving is a gap, not a loss"
        );
        let recorded = &s.ledger()[0];
        assert_eq!(recorded.upgrade_requests.as_array().unwrap().len(), 3);

        // Its receipt clears all three on the cluster; the next report
        // carries none, and nothing was lost on the way.
        let done = import_receipt(&s.cluster, &receipt_of(file)).unwrap();
        assert_eq!(done.cleared.upgrade_requests, vec![1, 2, 3]);
        let r3 = write_report(&s.cluster, &s.file("usage-3.asc"));
        assert!(r3.upgrade_requests.is_empty(), "{r3:#?}");
        assert_eq!(
            r3.chain.as_ref().unwrap().acked,
            if import_second { 2 } else { 1 }
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_receipt_changes_nothing() {
    let s = site().await;
    request_upgrades(&s.cluster, 2);
    spend(&s.cluster, 5, "k1");
    let file = s.file("usage-1.asc");
    write_report(&s.cluster, &file);
    assert_eq!(s.import(&file).await, 0);
    let receipt = receipt_of(&file);
    let receipt_bytes = std::fs::read(&receipt).unwrap();
    // Importing the same report again records nothing and writes the same receipt.
    assert_eq!(s.import(&file).await, 0);
    assert_eq!(s.ledger().len(), 1);
    assert_eq!(std::fs::read(&receipt).unwrap(), receipt_bytes);

    let first = import_receipt(&s.cluster, &receipt).unwrap();
    assert_eq!(first.cleared.upgrade_requests.len(), 2);
    assert!(!first.again);
    // A request filed after the report is not the receipt's to clear, and
    // the replay leaves it (and everything else) where it was.
    request_upgrades(&s.cluster, 1);
    let again = import_receipt(&s.cluster, &receipt).unwrap();
    assert!(again.again);
    assert!(again.cleared.is_empty(), "{:?}", again.cleared);
    let next = write_report(&s.cluster, &s.file("usage-2.asc"));
    assert_eq!(next.upgrade_requests.len(), 1);
    assert_eq!(next.upgrade_requests[0].id, Some(3));
    assert_eq!(next.counters["search_requests"].values().sum::<u64>(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_receipt_for_another_cluster_refused() {
    let s = site().await;
    request_upgrades(&s.cluster, 1);
    let file = s.file("usage-1.asc");
    write_report(&s.cluster, &file);
    assert_eq!(s.import(&file).await, 0);

    // Another cluster of the same customer, trusting the same vendor.
    let other = s.vendor.root.join("other");
    std::fs::create_dir_all(&other).unwrap();
    install(&other, &s.vendor, &s.lic);
    drop(Engine::open(verifier_config(&other, None), true).unwrap());
    request_upgrades(&other, 1);
    let err = import_receipt(&other, &receipt_of(&file))
        .unwrap_err()
        .to_string();
    assert!(err.contains("is for cluster"), "{err}");
    // Refused means untouched: the other cluster's request is still pending.
    let kaching_verifier::engine::Outcome::Upgrades(list) = engine(&other).list_upgrades().unwrap()
    else {
        panic!("not an upgrade list")
    };
    assert_eq!(list.upgrade_requests.len(), 1);
    assert!(!list.upgrade_requests[0].reported);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_receipt_signed_by_unknown_key_refused() {
    let s = site().await;
    request_upgrades(&s.cluster, 2);
    let file = s.file("usage-1.asc");
    let report = write_report(&s.cluster, &file);
    // A receipt naming the right cluster, report and hash, signed by a key
    // that is not the vendor's.
    let bytes =
        kaching_core::armor::dearmor(&std::fs::read(&file).unwrap(), Some(DocKind::UsageReport))
            .unwrap();
    let hash = kaching_core::cluster::report_hash(&bytes);
    let forged = Receipt::for_report(&report, hash, now()).unwrap();
    let forged_file = s.file("forged.receipt");
    std::fs::write(&forged_file, forged.sign(&SecretKey::generate())).unwrap();
    let err = import_receipt(&s.cluster, &forged_file)
        .unwrap_err()
        .to_string();
    assert!(err.contains("receipt refused"), "{err}");
    assert!(err.contains("not a key of your vendor"), "{err}");
    let next = write_report(&s.cluster, &s.file("usage-2.asc"));
    assert_eq!(next.upgrade_requests.len(), 2, "nothing was cleared");
}

/// Copies the state folder (database, WAL, key) as a backup would.
pub(crate) fn copy_state(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_restored_state_db_detected_at_next_import() {
    let s = site().await;
    spend(&s.cluster, 100, "k1");
    let one = s.file("usage-1.asc");
    write_report(&s.cluster, &one);
    assert_eq!(s.import(&one).await, 0);
    let state = verifier_config(&s.cluster, None).state_dir;
    let backup = s.vendor.root.join("backup");
    copy_state(&state, &backup);

    spend(&s.cluster, 900, "k2");
    let two = s.file("usage-2.asc");
    write_report(&s.cluster, &two);
    assert_eq!(s.import(&two).await, 0);

    // The customer restores the backup: 900 searches forgotten.
    copy_state(&backup, &state);
    spend(&s.cluster, 10, "k3");
    let restored = s.file("usage-2-restored.asc");
    let r = write_report(&s.cluster, &restored);
    assert_eq!(
        r.chain.as_ref().unwrap().seq,
        2,
        "the restored chain reuses 2"
    );
    assert_eq!(s.import(&restored).await, CHAIN_ROLLBACK);
    assert!(
        s.findings().contains(&Finding::Fork { seq: 2 }),
        "{:?}",
        s.findings()
    );

    // Hiding it behind a discarded report does not help: the counter that
    // went down shows against report 2 the vendor holds.
    let three = s.file("usage-3.asc");
    write_report(&s.cluster, &three);
    assert_eq!(s.import(&three).await, CHAIN_ROLLBACK);
    assert!(
        s.findings().iter().any(|f| matches!(
            f,
            Finding::CounterDown {
                earlier: 1000,
                later: 110,
                earlier_seq: 2,
                later_seq: 3,
                ..
            }
        )),
        "{:?}",
        s.findings()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_forked_report_chain_flagged() {
    let s = site().await;
    let one = s.file("usage-1.asc");
    write_report(&s.cluster, &one);
    assert_eq!(s.import(&one).await, 0);
    // The cluster is cloned (state folder and key copied to a second site);
    // both go on reporting under the same identity.
    let state = verifier_config(&s.cluster, None).state_dir;
    let clone = s.vendor.root.join("clone");
    install(&clone, &s.vendor, &s.lic);
    copy_state(&state, &verifier_config(&clone, None).state_dir);
    spend(&s.cluster, 3, "a");
    spend(&clone, 4, "b");
    let a = s.file("usage-2a.asc");
    let b = s.file("usage-2b.asc");
    write_report(&s.cluster, &a);
    write_report(&clone, &b);
    assert_eq!(s.import(&a).await, 0);
    assert_eq!(s.import(&b).await, CHAIN_ROLLBACK);
    assert_eq!(s.findings(), vec![Finding::Fork { seq: 2 }]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gap_in_report_chain_flagged_and_filled() {
    let s = site().await;
    let files: Vec<PathBuf> = (1..=3).map(|i| s.file(&format!("usage-{i}.asc"))).collect();
    for f in &files {
        write_report(&s.cluster, f);
    }
    assert_eq!(s.import(&files[0]).await, 0);
    assert_eq!(s.import(&files[2]).await, CHAIN_GAP);
    assert_eq!(
        s.findings(),
        vec![Finding::Gap {
            after: 1,
            before: 3
        }]
    );
    // The missing report turns up: it fits between the two, nothing new is flagged.
    assert_eq!(s.import(&files[1]).await, 0);
    assert_eq!(s.findings().len(), 1);
}
