//! Writes the documents a customer cluster would send back, so the vendor
//! side (`issue --bind`, `usage import`) can be tried before a verifier is
//! installed: `cargo run -p licensegen --example cluster_documents -- DIR [LICENSE_ID]`.
//!
//! DIR/cluster.key holds the demo cluster's key (PKCS#8 PEM, unencrypted:
//! a throwaway demo key, never a vendor key). Without LICENSE_ID it writes
//! DIR/activation.asc; with it, DIR/usage-report.asc.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kaching_core::cluster::{
    ActivationRequest, ReportChain, ReportedUpgrade, UpgradeRequest, UsageReport,
};
use kaching_core::{armor, cluster_id, DocKind, SecretKey};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| ".".into()));
    let license = args.next();
    std::fs::create_dir_all(&dir)?;
    let key_path = dir.join("cluster.key");
    let key = match std::fs::read_to_string(&key_path) {
        Ok(pem) => SecretKey::from_pkcs8_pem(&pem)?,
        Err(_) => {
            let k = SecretKey::generate();
            std::fs::write(&key_path, k.to_pkcs8_pem()?.as_bytes())?;
            k
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let id = cluster_id(&key.public());
    let (name, kind, bytes) = match license {
        None => {
            let req = ActivationRequest {
                cluster_id: id.clone(),
                cluster_key: *key.public().as_bytes(),
                hostname: "bzzz-01.umbrella.example".into(),
                nodes: 8,
                created: now,
            };
            ("activation.asc", DocKind::ActivationRequest, req.sign(&key))
        }
        Some(license) => {
            let day = kaching_core::time::period_key(kaching_core::license::Period::Day, now);
            let report = UsageReport {
                license_id: license.parse().map_err(anyhow::Error::msg)?,
                cluster_id: id.clone(),
                period_start: now.saturating_sub(30 * 86_400),
                period_end: now,
                counters: BTreeMap::from([(
                    "search_requests".to_string(),
                    BTreeMap::from([(day, 46_500u64)]),
                )]),
                peak_nodes: 9,
                upgrade_requests: vec![ReportedUpgrade {
                    id: Some(1),
                    request: UpgradeRequest {
                        requested_tier: "enterprise".into(),
                        message: "bulk operations for the Q3 migration".into(),
                        time: now.saturating_sub(86_400),
                    },
                }],
                // The demo cluster's first report, as a verifier writes it.
                chain: Some(ReportChain {
                    seq: 1,
                    prev: None,
                    trusted_time: now,
                    acked: 0,
                    node_peaks: BTreeMap::from([(
                        kaching_core::time::period_key(kaching_core::license::Period::Month, now),
                        9,
                    )]),
                }),
            };
            ("usage-report.asc", DocKind::UsageReport, report.sign(&key))
        }
    };
    let path = dir.join(name);
    std::fs::write(&path, armor::armor(kind, &bytes))?;
    println!("cluster {id}: wrote {}", path.display());
    Ok(())
}
