//! `true-up`: a scripted year of chained usage reports imported into the
//! ledger, and the table and JSON sales ops bill from.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::common::{stderr, stdout, Env, PASS};
use kaching_core::cluster::{report_hash, ReportChain, UsageReport};
use kaching_core::license::{Period, Quota};
use kaching_core::time::parse_rfc3339;
use kaching_core::{cluster_id, LicenseId, SecretKey};
use licensegen::issue::{self, Mode};
use licensegen::keystore::{self, PassphraseSource, Unlock};
use licensegen::ledger::Ledger;
use licensegen::vendor_dir::{VendorDir, KEY_FILE, LEDGER_FILE};

const STANDARD: LicenseId = LicenseId([0x11; 16]);
const ENTERPRISE: LicenseId = LicenseId([0x22; 16]);

fn at(s: &str) -> u64 {
    parse_rfc3339(s).unwrap()
}

/// Issues (in-process, at fixed dates and ids) a standard license on
/// 2027-01-01 (10 nodes +20%, 50 000 searches a day) and its upgrade on
/// 2027-07-15 (20 nodes +20%, 100 000 a day).
fn issue_year(env: &Env) {
    let pass = env.tmp.path().join("pass");
    std::fs::write(&pass, PASS).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let vendor = VendorDir::open(&env.dir).unwrap();
    let key = keystore::unseal(
        &vendor.path(KEY_FILE),
        &vendor.public_key().unwrap(),
        &Unlock {
            passphrase: PassphraseSource { file: Some(pass) },
            identity: None,
        },
    )
    .unwrap();
    let catalog = vendor.catalog().unwrap();
    let mut ledger = Ledger::open(&vendor.path(LEDGER_FILE)).unwrap();
    let mut terms = |id, mode, tier: &str, from: &str, nodes, searches| {
        let req = issue::LicenseRequest {
            customer: Some("Initech".into()),
            tier: Some(tier.into()),
            expires: Some("2028-01-01".into()),
            ..Default::default()
        };
        let mut built = issue::build(&req, mode, &catalog, &vendor.config, at(from)).unwrap();
        let l = &mut built.license;
        l.id = id;
        l.grace = 0;
        l.limits.max_nodes = nodes;
        l.overage = 20;
        l.quotas = BTreeMap::from([(
            "search_requests".to_string(),
            Quota {
                limit: searches,
                period: Period::Day,
            },
        )]);
        issue::sign_and_record(&vendor, &mut ledger, &key, built, false, None, at(from))
            .unwrap()
            .license
    };
    let standard = terms(STANDARD, Mode::New, "standard", "2027-01-01", 10, 50_000);
    terms(
        ENTERPRISE,
        Mode::Upgrade(&standard),
        "enterprise",
        "2027-07-15",
        20,
        100_000,
    );
}

/// The cluster's monthly reports, chained, each written at the first second
/// of the next month and acknowledged before the next: (month, license,
/// node peak, busiest day's searches). May has no report and no peak: the
/// cluster was down.
fn write_reports(env: &Env) -> Vec<PathBuf> {
    let cluster = SecretKey::from_seed(&[7; 32]);
    let year: [(u32, LicenseId, u32, u64); 10] = [
        (1, STANDARD, 8, 40_000),
        (2, STANDARD, 10, 41_000),
        (3, STANDARD, 11, 60_000), // inside the overage; a day over the quota
        (4, STANDARD, 15, 45_000), // above the ceiling (12)
        (6, STANDARD, 9, 30_000),
        (7, ENTERPRISE, 18, 90_000), // the upgrade month: the higher limits
        (8, ENTERPRISE, 22, 99_000), // inside the new overage
        (9, ENTERPRISE, 20, 80_000),
        (10, ENTERPRISE, 12, 20_000),
        (11, ENTERPRISE, 25, 120_000), // above the new ceiling (24)
    ];
    let mut prev = None;
    let mut files = Vec::new();
    for (seq, (month, license, peak, searches)) in (1u64..).zip(year) {
        let key = format!("2027-{month:02}");
        let start = at(&format!("{key}-01"));
        let end = if month == 12 {
            at("2028-01-01")
        } else {
            at(&format!("2027-{:02}-01", month + 1))
        };
        let report = UsageReport {
            license_id: license,
            cluster_id: cluster_id(&cluster.public()),
            period_start: start,
            period_end: end,
            counters: BTreeMap::from([(
                "search_requests".to_string(),
                BTreeMap::from([
                    (format!("{key}-03"), searches),
                    (format!("{key}-04"), 1_000),
                ]),
            )]),
            peak_nodes: 25,
            upgrade_requests: Vec::new(),
            chain: Some(ReportChain {
                seq,
                prev,
                trusted_time: end,
                acked: seq - 1,
                node_peaks: BTreeMap::from([(key.clone(), peak)]),
            }),
        };
        let bytes = report.sign(&cluster);
        prev = Some(report_hash(&bytes));
        let path = env.tmp.path().join(format!("usage-{key}.cose"));
        std::fs::write(&path, bytes).unwrap();
        files.push(path);
    }
    files
}

fn scripted_year() -> Env {
    let env = Env::new();
    issue_year(&env);
    for f in write_reports(&env) {
        let out = env
            .cmd()
            .args(["usage", "import", "--no-receipt"])
            .arg(&f)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    env
}

const TABLE: &str = "\
Initech (initech)
  license 11111111-1111-1111-1111-111111111111 standard, 10 nodes +20% (ceiling 12), from 2027-01-01
  license 22222222-2222-2222-2222-222222222222 enterprise, 20 nodes +20% (ceiling 24), from 2027-07-15 (replaced the one above)
  10 usage report(s) imported, the newest written 2027-12-01
MONTH    LICENSE            WHAT                 LICENSED  CEILING  PEAK    TO BILL  NOTE
2027-01  11111111           nodes                10        12       8       0        final
                            search_requests/day  50000     -        40000   0
2027-02  11111111           nodes                10        12       10      0        final
                            search_requests/day  50000     -        41000   0
2027-03  11111111           nodes                10        12       11      1        final, within overage
                            search_requests/day  50000     -        60000   10000    1 day(s) over
2027-04  11111111           nodes                10        12       15      5        final, ABOVE CEILING
                            search_requests/day  50000     -        45000   0
2027-05  11111111           nodes                10        12       -       0        final, no peak recorded
                            search_requests/day  50000     -        -       0
2027-06  11111111           nodes                10        12       9       0        final
                            search_requests/day  50000     -        30000   0
2027-07  11111111+22222222  nodes                20        24       18      0        final, license changed: higher limits apply
                            search_requests/day  100000    -        90000   0
2027-08  22222222           nodes                20        24       22      2        final, within overage
                            search_requests/day  100000    -        99000   0
2027-09  22222222           nodes                20        24       20      0        final
                            search_requests/day  100000    -        80000   0
2027-10  22222222           nodes                20        24       12      0        final
                            search_requests/day  100000    -        20000   0
2027-11  22222222           nodes                20        24       25      5        final, ABOVE CEILING
                            search_requests/day  100000    -        120000  20000    1 day(s) over
2027-12  22222222           nodes                20        24       -       0        partial, no peak recorded
                            search_requests/day  100000    -        -       0
  highest peak 25 nodes (2027-11); node overage: 5 at most in one month, 13 node-months in all
  quota overage over the months: search_requests 30000
  warning: peak above the ceiling in 2027-04, 2027-11: the verifier admits no more than the ceiling, so look for the license on a second cluster, a cloned cluster, or a restored state database
note: figures come from usage reports imported with `licensegen usage import`; relay heartbeats are not in the ledger, so a connected cluster counts here only through the usage reports its verifier writes
";

#[test]
fn true_up_bills_a_scripted_year_from_imported_reports() {
    let env = scripted_year();
    let out = env
        .cmd()
        .args(["true-up", "--customer", "initech", "--at", "2028-01-10"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), TABLE);
    // The same from either license of the lineage.
    for id in ["2222", "11111111-1111-1111-1111-111111111111"] {
        let out = env
            .cmd()
            .args(["true-up", "--license", id, "--at", "2028-01-10"])
            .output()
            .unwrap();
        assert_eq!(stdout(&out), TABLE);
    }
    // --since keeps the months from the one holding the date; --at inside
    // November leaves it open.
    let out = env
        .cmd()
        .args([
            "true-up",
            "--since",
            "2027-10-20",
            "--at",
            "2027-11-20T00:00:00Z",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let months = &j["lineages"][0]["months"];
    assert_eq!(months.as_array().unwrap().len(), 2);
    assert_eq!(months[0]["month"], "2027-10");
    assert_eq!(months[0]["status"], "final");
    assert_eq!(months[1]["month"], "2027-11");
    assert_eq!(months[1]["status"], "open");
    assert_eq!(months[1]["nodes"]["peak"], 25);
    assert_eq!(months[1]["nodes"]["overage"], 5);
    assert_eq!(months[1]["nodes"]["above_ceiling"], true);
    assert_eq!(months[1]["quotas"][0]["overage"], 20_000);
    assert_eq!(j["lineages"][0]["totals"]["node_overage_months"], 5);
    assert_eq!(j["lineages"][0]["totals"]["peak_nodes"]["nodes"], 25);
    assert!(j["sources"]
        .as_str()
        .unwrap()
        .contains("relay heartbeats are not in the ledger"));
}

#[test]
fn true_up_without_reports_and_with_bad_flags() {
    let env = Env::new();
    let out = env.cmd().args(["true-up"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("no licenses match\n"),
        "{}",
        stdout(&out)
    );
    let out = env
        .cmd()
        .args(["true-up", "--since", "last year"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "error: cannot read --since \"last year\": use a date (2027-01-31) or a UTC time (2027-01-31T12:00:00Z)\n"
    );
    let out = env
        .cmd()
        .args(["true-up", "--license", "abcdef"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is not in the ledger"),
        "{}",
        stderr(&out)
    );
}
