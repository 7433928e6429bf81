//! The fixture set, computed in memory from fixed seeds and fixed times, so
//! the same code gives the same bytes on every machine. Shared by the
//! `regen-fixtures` example (which writes it) and `core/tests/fixtures/`
//! (which checks the checked-in files equal it).

use std::collections::{BTreeMap, BTreeSet};

use kaching_core::armor::armor;
use kaching_core::cluster::{
    ActivationRequest, ReportChain, ReportedUpgrade, UpgradeRequest, UsageReport,
};
use kaching_core::license::{HeartbeatPolicy, Limits};
use kaching_core::receipt::Receipt;
use kaching_core::revocation::{RevocationEntry, RevocationStatus};
use kaching_core::time::DAY;
use kaching_core::{
    cluster_id, DocKind, License, LicenseId, RevocationList, SecretKey, TierCatalog,
};
use sha2::{Digest, Sha256};

#[path = "attacks.rs"]
pub mod attacks;
#[path = "craft.rs"]
pub mod craft;

/// Relative path (under `fixtures/`) → file bytes.
pub type Files = BTreeMap<String, Vec<u8>>;

/// The folders of `fixtures/` the generator owns: it writes them whole and
/// deletes anything in them it did not write. Everything else in `fixtures/`
/// (README.md, tiers.toml) is hand-maintained and left alone.
pub const GENERATED_DIRS: [&str; 5] = ["cluster", "fail", "keys", "licenses", "revocations"];

/// 2026-01-01T00:00:00Z: every fixture license is issued and valid from here.
pub const ISSUED: u64 = 1_767_225_600;
/// 2026-01-15T00:00:00Z: the "now" at which the good fixtures are evaluated.
pub const NOW: u64 = ISSUED + 14 * DAY;
/// The vendor name in `iss`.
pub const ISSUER: &str = "KACHING Test Vendor";
/// The product every good fixture is licensed for.
pub const AUDIENCE: &str = "bzzz";

/// Seeds of the test keys. Public on purpose: these keys are test material.
pub const VENDOR_SEED: &[u8; 32] = b"KACHING TEST-ONLY vendor key 001";
/// The attacker's key: a valid Ed25519 key the verifier does not trust.
pub const ATTACKER_SEED: &[u8; 32] = b"KACHING TEST-ONLY attacker key 1";
/// The fixture cluster's own key (activation request, usage report).
pub const CLUSTER_SEED: &[u8; 32] = b"KACHING TEST-ONLY cluster key 01";
/// Another cluster's key, for the "bound to another cluster" case.
pub const OTHER_CLUSTER_SEED: &[u8; 32] = b"KACHING TEST-ONLY other cluster1";

/// Offline grace of the connected fixture license.
pub const OFFLINE_GRACE: u64 = 7 * DAY;

/// The vendor test key.
pub fn vendor() -> SecretKey {
    SecretKey::from_seed(VENDOR_SEED)
}

/// The attacker's key.
pub fn attacker() -> SecretKey {
    SecretKey::from_seed(ATTACKER_SEED)
}

/// The fixture cluster's key.
pub fn cluster() -> SecretKey {
    SecretKey::from_seed(CLUSTER_SEED)
}

/// The fixture cluster's id (what a bound license names).
pub fn this_cluster_id() -> String {
    cluster_id(&cluster().public())
}

/// Another cluster's id.
pub fn other_cluster_id() -> String {
    cluster_id(&SecretKey::from_seed(OTHER_CLUSTER_SEED).public())
}

/// A fixed license id per fixture name (SHA-256 of the name, UUID v4 layout).
pub fn license_id(name: &str) -> LicenseId {
    let digest = Sha256::digest(format!("kaching fixture license {name}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    LicenseId(b)
}

/// A license with the catalog defaults of `tier`, issued at [`ISSUED`].
pub fn tier_license(tier: &str, name: &str) -> Result<License, String> {
    let catalog = TierCatalog::builtin();
    let t = catalog
        .get(tier)
        .ok_or_else(|| format!("tier {tier:?} is not in fixtures/tiers.toml"))?;
    Ok(License {
        id: license_id(name),
        issuer: ISSUER.into(),
        customer_id: "cust-test-0001".into(),
        customer: "Acme Test Corp".into(),
        audience: AUDIENCE.into(),
        issued_at: ISSUED,
        not_before: ISSUED,
        expires_at: ISSUED + t.duration_days * DAY,
        tier: t.name.clone(),
        features: t.features.iter().cloned().collect::<BTreeSet<_>>(),
        limits: Limits {
            max_nodes: t.max_nodes,
            // One fixture exercises the optional claim.
            max_cores: (tier == "enterprise").then_some(1024),
        },
        quotas: t.quotas.clone(),
        grace: t.grace_days * DAY,
        overage: t.overage,
        cluster: None,
        heartbeat: None,
        supersedes: None,
        degrade: Default::default(),
        report: None,
    })
}

/// The standard license bound to the fixture cluster; it supersedes the
/// unbound standard license (the usual re-issue after activation).
pub fn bound_license() -> Result<License, String> {
    let mut l = tier_license("standard", "bound")?;
    l.cluster = Some(this_cluster_id());
    l.supersedes = Some(license_id("standard"));
    Ok(l)
}

/// The standard license with a heartbeat policy: a connected license.
pub fn connected_license() -> Result<License, String> {
    let mut l = tier_license("standard", "connected")?;
    l.heartbeat = Some(HeartbeatPolicy {
        interval: 300,
        offline_grace: OFFLINE_GRACE,
    });
    Ok(l)
}

/// Revocation list `version` of the fixture series:
/// v1 empty; v2 suspends `standard`; v3 lifts that and revokes `evaluation`.
pub fn revocation_list(version: u64) -> RevocationList {
    let issued_at = match version {
        1 => ISSUED,
        2 => ISSUED + 7 * DAY,
        _ => ISSUED + 10 * DAY,
    };
    let entries = match version {
        1 => vec![],
        2 => vec![RevocationEntry {
            id: license_id("standard"),
            status: RevocationStatus::Suspended,
            reason: "invoice 2026-001 unpaid".into(),
            time: issued_at,
        }],
        _ => vec![RevocationEntry {
            id: license_id("evaluation"),
            status: RevocationStatus::Revoked,
            reason: "evaluation replaced by a standard license".into(),
            time: issued_at,
        }],
    };
    RevocationList {
        issuer: ISSUER.into(),
        version,
        issued_at,
        expires: issued_at + 30 * DAY,
        entries,
    }
}

/// The fixture cluster's activation request.
pub fn activation_request() -> ActivationRequest {
    let key = cluster().public();
    ActivationRequest {
        cluster_id: cluster_id(&key),
        cluster_key: *key.as_bytes(),
        hostname: "bzzz-test-1.example.invalid".into(),
        nodes: 3,
        created: ISSUED + DAY,
    }
}

/// The fixture cluster's usage report for the first days of January 2026.
pub fn usage_report() -> UsageReport {
    UsageReport {
        license_id: license_id("bound"),
        cluster_id: this_cluster_id(),
        period_start: ISSUED,
        period_end: NOW,
        counters: BTreeMap::from([
            (
                "api_calls".to_string(),
                BTreeMap::from([("2026-01".to_string(), 123_456)]),
            ),
            (
                "search_requests".to_string(),
                BTreeMap::from([
                    ("2026-01-13".to_string(), 41_000),
                    ("2026-01-14".to_string(), 43_500),
                ]),
            ),
            (
                "storage_gb".to_string(),
                BTreeMap::from([("total".to_string(), 120)]),
            ),
        ]),
        peak_nodes: 9,
        upgrade_requests: vec![ReportedUpgrade {
            id: None,
            request: UpgradeRequest {
                requested_tier: "enterprise".into(),
                message: "we need bulk-operations for the spring migration".into(),
                time: NOW - DAY,
            },
        }],
        chain: None,
    }
}

/// The fixture cluster's first chained usage report (format.md §7.4): the
/// same usage, numbered 1 in its chain, with request ids, the trusted-time
/// mark and January's node peak.
pub fn chained_usage_report() -> UsageReport {
    let mut r = usage_report();
    for (i, u) in r.upgrade_requests.iter_mut().enumerate() {
        u.id = Some(i as u64 + 1);
    }
    r.chain = Some(ReportChain {
        seq: 1,
        prev: None,
        trusted_time: NOW,
        acked: 0,
        node_peaks: BTreeMap::from([("2026-01".to_string(), 9)]),
    });
    r
}

/// The vendor's receipt for [`chained_usage_report`] signed by `cluster`,
/// issued a day after it.
pub fn receipt(cluster: &SecretKey) -> Result<Receipt, String> {
    let bytes = chained_usage_report().sign(cluster);
    let hash = kaching_core::cluster::report_hash(&bytes);
    Receipt::for_report(&chained_usage_report(), hash, NOW + DAY)
        .ok_or_else(|| "the chained report has no receipt".to_string())
}

/// PKCS#8 PEM of a test private key, headed so nobody mistakes it for a real one.
fn test_private_key_file(role: &str, key: &SecretKey) -> Result<Vec<u8>, String> {
    let pem = key.to_pkcs8_pem().map_err(|e| e.to_string())?;
    Ok(format!(
        "# TEST ONLY - NEVER USE IN PRODUCTION.\n\
         # KACHING fixture {role} private key (Ed25519, PKCS#8, unencrypted).\n\
         # It is public test material: it is in the repository, so anyone can sign\n\
         # with it. Never trust its public key outside tests and the demo.\n\
         # Regenerate with: cargo run -p kaching-core --example regen-fixtures\n\
         {}",
        pem.as_str()
    )
    .into_bytes())
}

fn add_keys(files: &mut Files) -> Result<(), String> {
    for (role, key) in [
        ("vendor", vendor()),
        ("attacker", attacker()),
        ("cluster", cluster()),
    ] {
        files.insert(
            format!("keys/{role}-test.pub"),
            key.public().to_pem().into_bytes(),
        );
        files.insert(
            format!("keys/{role}-test.private.TEST-ONLY.pem"),
            test_private_key_file(role, &key)?,
        );
    }
    Ok(())
}

/// Adds a document in both spellings: `<stem>.cbor` and `<stem>.asc`.
pub fn add_both(files: &mut Files, stem: &str, kind: DocKind, bytes: Vec<u8>) {
    files.insert(format!("{stem}.asc"), armor(kind, &bytes).into_bytes());
    files.insert(format!("{stem}.cbor"), bytes);
}

/// Every fixture file.
pub fn generate() -> Result<Files, String> {
    let vendor = vendor();
    let mut files = Files::new();
    add_keys(&mut files)?;
    for tier in ["evaluation", "standard", "enterprise"] {
        let l = tier_license(tier, tier)?;
        add_both(
            &mut files,
            &format!("licenses/{tier}"),
            DocKind::License,
            l.sign(&vendor),
        );
    }
    add_both(
        &mut files,
        "licenses/bound",
        DocKind::License,
        bound_license()?.sign(&vendor),
    );
    add_both(
        &mut files,
        "licenses/connected",
        DocKind::License,
        connected_license()?.sign(&vendor),
    );
    // Every other fixture names alg -8 (EdDSA, the default); -19 (Ed25519),
    // written when a vendor sets `alg = "Ed25519"`, must be accepted too.
    // Built by hand from the spec: `crafted_envelope_matches_core_signer`
    // checks it equals what core's signer writes with `Alg::Ed25519`.
    let ed25519 = tier_license("standard", "alg-ed25519")?;
    let header = craft::vendor_header(
        DocKind::License,
        Some(craft::ALG_ED25519),
        &vendor.public().kid().0,
    );
    add_both(
        &mut files,
        "licenses/alg-ed25519",
        DocKind::License,
        craft::sign_with_header(header, &ed25519.to_cbor(), &vendor),
    );
    for v in 1..=3 {
        add_both(
            &mut files,
            &format!("revocations/v{v}"),
            DocKind::RevocationList,
            revocation_list(v).sign(&vendor),
        );
    }
    let cluster = cluster();
    add_both(
        &mut files,
        "cluster/activation-request",
        DocKind::ActivationRequest,
        activation_request().sign(&cluster),
    );
    add_both(
        &mut files,
        "cluster/usage-report",
        DocKind::UsageReport,
        usage_report().sign(&cluster),
    );
    add_both(
        &mut files,
        "cluster/usage-report-chained",
        DocKind::UsageReport,
        chained_usage_report().sign(&cluster),
    );
    add_both(
        &mut files,
        "cluster/receipt",
        DocKind::Receipt,
        receipt(&cluster)?.sign(&vendor),
    );
    attacks::add(&mut files)?;
    Ok(files)
}
