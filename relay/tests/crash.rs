//! kill -9 of the relay binary under heartbeat load: every heartbeat answered
//! 2xx before the kill is in the database after a restart (its cluster's
//! last_seq, its hour's rollup, its batch's audit row).

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

const CLUSTERS: u8 = 8;
/// Acknowledged heartbeats after which the relay is killed (bounded run).
const KILL_AFTER: usize = 400;

#[tokio::test]
async fn acknowledged_heartbeats_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = write_config(dir.path(), "");
    let relay = spawn_relay(&cfg_path).await;
    let (mut child, addr) = (relay.child, relay.addr);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let acked: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let mut tasks = Vec::new();
    for n in 0..CLUSTERS {
        let l = license(50 + n, 3600);
        let key = cluster_key(n);
        let r = http
            .post(format!("http://{addr}/v1/activate"))
            .json(&activation_body(&l, &key))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let (http, acked, addr) = (http.clone(), acked.clone(), addr.clone());
        tasks.push(tokio::spawn(async move {
            let id = kaching_core::cluster_id(&key.public());
            // Bounded: at most 10k heartbeats per cluster even if the kill never came.
            for seq in 1..10_000u64 {
                let sent = http
                    .post(format!("http://{addr}/v1/heartbeat"))
                    .body(beat(&l, &key, seq).sign(&key))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 200 => acked.lock().unwrap().push((id.clone(), seq)),
                    _ => return,
                }
            }
        }));
    }
    for _ in 0..3000 {
        if acked.lock().unwrap().len() >= KILL_AFTER {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.start_kill().unwrap(); // SIGKILL
    child.wait().await.unwrap();
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(20), t).await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= KILL_AFTER,
        "only {} heartbeats acknowledged",
        acked.len()
    );

    // Restart on the same data directory; then every acknowledged heartbeat is there.
    let mut child = spawn_relay(&cfg_path).await.child;
    let conn = kaching_relay::db::open(&dir.path().join("data/relay.db")).unwrap();
    // Each acknowledged heartbeat is counted in its cluster's hourly
    // rollups (no raw history by default) and moved its last_seq.
    let mut acked_per: BTreeMap<String, u64> = BTreeMap::new();
    let mut highest: BTreeMap<String, u64> = BTreeMap::new();
    for (cluster, seq) in &acked {
        *acked_per.entry(cluster.clone()).or_default() += 1;
        let h = highest.entry(cluster.clone()).or_default();
        *h = (*h).max(*seq);
    }
    for (cluster, n) in &acked_per {
        let counted: u64 = conn
            .query_row(
                "SELECT COALESCE(sum(beats), 0) FROM heartbeat_hours_all WHERE cluster_id = ?1",
                [cluster],
                |r| r.get(0),
            )
            .unwrap();
        assert!(
            counted >= *n,
            "{cluster}: {n} heartbeats acknowledged, {counted} in the rollups"
        );
    }
    for (cluster, seq) in highest {
        let last: u64 = conn
            .query_row(
                "SELECT last_seq FROM clusters WHERE cluster_id = ?1",
                [&cluster],
                |r| r.get(0),
            )
            .unwrap();
        assert!(
            last >= seq,
            "{cluster}: last_seq {last} < acknowledged {seq}"
        );
    }
    // And each is a leaf of a sealed audit row or of the pending ones (the
    // restarted relay seals those at start).
    let audited: u64 = conn
        .query_row(
            "SELECT COALESCE(sum(json_extract(detail, '$.heartbeats')), 0)
                    + COALESCE((SELECT beats FROM audit_pending), 0)
             FROM audit WHERE action = 'heartbeats'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        audited >= acked.len() as u64,
        "{} acknowledged, {audited} audited",
        acked.len()
    );
    kaching_relay::audit::verify(&conn).expect("audit chain intact after kill -9");
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}
