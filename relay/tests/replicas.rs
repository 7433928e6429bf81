//! Several relay replicas on one PostgreSQL database: real `kaching-relay`
//! processes on loopback, each with its own port, sharing nothing but the
//! database (and the relay key, as operators deploy them). Every invariant
//! the single SQLite writer keeps must hold across replicas.
//!
//! Needs `KACHING_TEST_POSTGRES` (`eval "$(bash scripts/ci-postgres)"`);
//! without it each test skips (one line), and fails under `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::postgres::{self, PgDb};
use common::*;
use kaching_core::wire::relay::ClusterPage;
use kaching_core::LicenseId;
use kaching_relay::tokens::Scope;
use kaching_testkit::Spawned;

/// Two (or more) replicas on one fresh database.
struct Replicas {
    /// Holds the config file and the relay key.
    _dir: tempfile::TempDir,
    config: std::path::PathBuf,
    db: PgDb,
    http: reqwest::Client,
}

impl Replicas {
    async fn new() -> Option<Replicas> {
        let db = postgres::fresh().await?;
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), &format!("database = {:?}", db.url));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Some(Replicas {
            _dir: dir,
            config,
            db,
            http,
        })
    }

    /// Starts one more replica (same config: same database and relay key),
    /// and waits until it serves (it announces its port before it has
    /// connected to the database and migrated it).
    async fn spawn(&self) -> Spawned {
        let s = spawn_relay(&self.config).await;
        let status = self
            .http
            .get(format!("http://{}/v1/relay-key", s.addr))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
        s
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_kaching-relay"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .unwrap()
    }

    fn token(&self, scope: Scope, name: &str) -> String {
        pg_token(&self.db.url, scope, name)
    }

    async fn activate(&self, at: &Spawned, l: &kaching_core::License, n: u8) -> u16 {
        self.http
            .post(format!("http://{}/v1/activate", at.addr))
            .json(&activation_body(l, &cluster_key(n)))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn beat_bytes(&self, at: &Spawned, body: Vec<u8>) -> reqwest::Response {
        self.http
            .post(format!("http://{}/v1/heartbeat", at.addr))
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// `kaching-relay audit verify` on the shared database.
    fn audit_verify(&self) -> String {
        let out = self.cli(&["audit", "verify"]);
        assert!(
            out.status.success(),
            "audit verify failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

#[tokio::test]
async fn attack_heartbeat_replayed_to_another_replica_refused() {
    let Some(r) = Replicas::new().await else {
        return;
    };
    let (a, b) = (r.spawn().await, r.spawn().await);
    let l = license(1, 3600);
    let c = cluster_key(1);
    assert_eq!(r.activate(&a, &l, 1).await, 200);
    // Another cluster cannot take the live license through the other replica.
    assert_eq!(r.activate(&b, &l, 2).await, 409);

    let first = beat(&l, &c, 1).sign(&c);
    assert_eq!(r.beat_bytes(&b, first.clone()).await.status(), 200);
    // The same signed heartbeat replayed to the other replica: refused.
    let (status, code) = error_code(r.beat_bytes(&a, first).await).await;
    assert_eq!((status, code.as_str()), (409, "replayed_heartbeat"));
    // A lower sequence number than the one B accepted (a recording: signed
    // before it): refused on A too.
    let five = beat(&l, &c, 5);
    let mut four = beat(&l, &c, 4);
    four.time = five.time - 1;
    assert_eq!(r.beat_bytes(&b, five.sign(&c)).await.status(), 200);
    let (status, code) = error_code(r.beat_bytes(&a, four.sign(&c)).await).await;
    assert_eq!((status, code.as_str()), (409, "replayed_heartbeat"));
    assert_eq!(
        r.beat_bytes(&a, beat(&l, &c, 6).sign(&c)).await.status(),
        200
    );

    // Both replicas show the same cluster state.
    let admin = r.token(Scope::Admin, "admin");
    for at in [&a, &b] {
        let (_, page) = at
            .json
            .with_token(&admin)
            .get_as::<ClusterPage>("/v1/clusters")
            .await;
        assert_eq!(page.clusters.len(), 1, "{page:?}");
        assert_eq!(page.clusters[0].last_seq, 6);
        assert_eq!(page.clusters[0].heartbeats, 3);
    }
    // The three accepted heartbeats are leaves of the chain (sealed or pending).
    assert!(r.audit_verify().contains("audit log intact"));
    assert_eq!(audited_beats(&r.db.client().await).await, 3);
}

/// Issue 11 item 2 on PostgreSQL: the signs of rollback a cluster's
/// heartbeats show through one replica are listed by the other, and are
/// audited in the one chain.
#[tokio::test]
async fn restored_cluster_flagged_through_one_replica_is_listed_by_the_other() {
    let Some(r) = Replicas::new().await else {
        return;
    };
    let (a, b) = (r.spawn().await, r.spawn().await);
    let l = license(2, 3600);
    let c = cluster_key(1);
    assert_eq!(r.activate(&a, &l, 1).await, 200);
    let head = |report_seq: u64, mark: u64| {
        Some(kaching_core::heartbeat::ChainHead {
            report_seq,
            report_hash: Some([report_seq as u8; 32]),
            mark,
            reset: None,
        })
    };
    let t = now();
    let mut one = beat(&l, &c, 1);
    one.chain = head(5, t - 10);
    one.time = t - 20;
    assert_eq!(r.beat_bytes(&a, one.sign(&c)).await.status(), 200);
    // Restored: an older head and mark through B, then a heartbeat that
    // reuses an accepted number, signed later (refused, and flagged).
    let mut two = beat(&l, &c, 2);
    two.chain = head(3, t - 30);
    assert_eq!(r.beat_bytes(&b, two.sign(&c)).await.status(), 200);
    let mut again = beat(&l, &c, 2);
    again.time = two.time + 1;
    let (status, code) = error_code(r.beat_bytes(&a, again.sign(&c)).await).await;
    assert_eq!((status, code.as_str()), (409, "replayed_heartbeat"));

    let admin = r.token(Scope::Admin, "admin");
    let (_, page) = a
        .json
        .with_token(&admin)
        .get_as::<ClusterPage>("/v1/clusters")
        .await;
    let kinds: Vec<&str> = page.clusters[0]
        .anomalies
        .iter()
        .map(|x| x.kind.as_str())
        .collect();
    assert_eq!(kinds, ["beat_back", "time_back", "head_back"], "{page:?}");
    assert_eq!(page.clusters[0].report_seq, Some(3));
    // The admin token, 1 activation, 3 signs of rollback; the 2 heartbeats
    // are pending leaves, sealed within a minute.
    let verified = r.audit_verify();
    assert!(verified.contains("audit log intact: 5 rows"), "{verified}");
    assert_eq!(audited_beats(&r.db.client().await).await, 2);
}

#[tokio::test]
async fn attack_activation_race_across_replicas_has_exactly_one_winner() {
    let Some(r) = Replicas::new().await else {
        return;
    };
    let (a, b) = (Arc::new(r.spawn().await), Arc::new(r.spawn().await));
    let r = Arc::new(r);
    const LICENSES: u8 = 12;
    let mut races = Vec::new();
    for n in 0..LICENSES {
        let l = license(100 + n, 3600);
        // Both requests built first, then sent together, one to each replica.
        let (ra, rb) = (r.clone(), r.clone());
        let (aa, bb) = (a.clone(), b.clone());
        let (la, lb) = (l.clone(), l.clone());
        races.push(tokio::spawn(async move {
            // Two clusters of their own per license.
            let (x, y) = tokio::join!(
                async move { ra.activate(&aa, &la, 2 * n).await },
                async move { rb.activate(&bb, &lb, 2 * n + 1).await }
            );
            (n, x, y)
        }));
    }
    let mut answers = Vec::new();
    for race in races {
        answers.push(race.await.unwrap());
    }
    for (n, x, y) in answers {
        let mut got = [x, y];
        got.sort_unstable();
        assert_eq!(got, [200, 409], "license {n}: answers {x} (A) and {y} (B)");
    }
    // The database holds one live cluster per license.
    let client = r.db.client().await;
    let rows = client
        .query(
            "SELECT license_id, count(*) FROM clusters WHERE status = 'active' GROUP BY license_id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), usize::from(LICENSES));
    assert!(rows.iter().all(|row| row.get::<_, i64>(1) == 1));
    r.audit_verify();
}

#[tokio::test]
async fn suspension_published_on_one_replica_wakes_a_long_poll_on_another_within_100ms() {
    let Some(r) = Replicas::new().await else {
        return;
    };
    let (a, b) = (r.spawn().await, r.spawn().await);
    let publish = r.token(Scope::Publish, "publisher");
    let put = |list: Vec<u8>| {
        r.http
            .put(format!("http://{}/v1/revocations", a.addr))
            .bearer_auth(&publish)
            .body(list)
            .send()
    };
    assert_eq!(
        put(revocation_list(1, &[], &vendor()))
            .await
            .unwrap()
            .status(),
        201
    );
    // B serves v1 too (caught up from the notification).
    let http = r.http.clone();
    let url = format!("http://{}/v1/revocations?after=1&wait=20s", b.addr);
    let poll = tokio::spawn(async move {
        let resp = http.get(url).send().await.unwrap();
        (Instant::now(), resp)
    });
    // Give the poll time to park; the outcome does not depend on it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let suspended = LicenseId([9; 16]);
    let sent = Instant::now();
    let answer = put(revocation_list(2, &[suspended], &vendor()))
        .await
        .unwrap();
    let acked = Instant::now();
    assert_eq!(answer.status(), 201);
    let (woke, resp) = tokio::time::timeout(Duration::from_secs(15), poll)
        .await
        .expect("the long-poll on B answered before its wait ended")
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-kaching-revocation-version"], "2");
    let list = kaching_core::verify_revocation_list(
        &resp.bytes().await.unwrap(),
        &vendor().public().into(),
    )
    .unwrap();
    assert_eq!(list.list.entries[0].id, suspended);
    let after_ack = woke.saturating_duration_since(acked);
    eprintln!(
        "propagation A→B: {:?} after the publish was acknowledged ({:?} after it was sent)",
        after_ack,
        woke.saturating_duration_since(sent)
    );
    assert!(
        after_ack < Duration::from_millis(100),
        "B's long-poll woke {after_ack:?} after A acknowledged the publish"
    );
}

#[tokio::test]
async fn a_replica_that_missed_the_notification_catches_up_from_the_table() {
    let Some(r) = Replicas::new().await else {
        return;
    };
    let b = r.spawn().await;
    // Published straight into the table, with no NOTIFY at all (as if B's
    // LISTEN connection was down at that moment).
    let list = revocation_list(3, &[LicenseId([7; 16])], &vendor());
    let client = r.db.client().await;
    client
        .execute(
            "INSERT INTO revocation_lists (version, bytes, kid, received_at) VALUES (3, $1, 'k', 0)",
            &[&list],
        )
        .await
        .unwrap();
    let got = kaching_testkit::wait_within("B serves list v3", Duration::from_secs(12), || async {
        let resp = r
            .http
            .get(format!("http://{}/v1/revocations", b.addr))
            .send()
            .await
            .ok()?;
        (resp.status() == 200).then(|| resp.headers()["x-kaching-revocation-version"].clone())
    })
    .await;
    assert_eq!(got, "3");
}

#[tokio::test]
async fn acknowledged_heartbeats_survive_kill_9_of_one_replica() {
    let Some(r) = Replicas::new().await else {
        return;
    };
    let (a, b) = (r.spawn().await, r.spawn().await);
    let (mut child_a, addr_a, addr_b) = (a.child, a.addr, b.addr.clone());
    const CLUSTERS: u8 = 6;
    const KILL_AFTER: usize = 300;
    let acked: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let killed = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for n in 0..CLUSTERS {
        let l = license(50 + n, 3600);
        let key = cluster_key(n);
        let resp = r
            .http
            .post(format!("http://{addr_a}/v1/activate"))
            .json(&activation_body(&l, &key))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let (http, acked, survivor, killed) = (
            r.http.clone(),
            acked.clone(),
            addr_b.clone(),
            killed.clone(),
        );
        // Half the clusters beat through A, half through B, until A dies;
        // then everyone fails over to B (a load balancer's job).
        let addrs = if n % 2 == 0 {
            [addr_a.clone(), addr_b.clone()]
        } else {
            [addr_b.clone(), addr_a.clone()]
        };
        tasks.push(tokio::spawn(async move {
            let id = kaching_core::cluster_id(&key.public());
            let mut seq = 1u64;
            let mut at = 0usize;
            let mut after_kill = 0;
            // Bounded: at most 2000 heartbeats per cluster.
            while seq < 2000 && after_kill < 20 {
                let addr = if at == 0 { &addrs[0] } else { &survivor };
                let sent = http
                    .post(format!("http://{addr}/v1/heartbeat"))
                    .body(beat(&l, &key, seq).sign(&key))
                    .send()
                    .await;
                match sent {
                    Ok(resp) if resp.status() == 200 => {
                        acked.lock().unwrap().push((id.clone(), seq));
                        if killed.load(Ordering::SeqCst) {
                            after_kill += 1;
                        }
                        seq += 1;
                    }
                    // Committed before the kill but never answered: the
                    // retry on B is a replay, and the next one moves on.
                    Ok(resp) if resp.status() == 409 => seq += 1,
                    _ => at = 1,
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
    child_a.start_kill().unwrap(); // SIGKILL
    child_a.wait().await.unwrap();
    killed.store(true, Ordering::SeqCst);
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("clusters finish on the surviving replica")
            .unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= KILL_AFTER,
        "only {} acknowledged",
        acked.len()
    );

    let client = r.db.client().await;
    // Each acknowledged heartbeat is counted in its cluster's hourly rollups
    // (no raw history by default) and is a leaf of a batch's audit row.
    let mut acked_per: BTreeMap<String, i64> = BTreeMap::new();
    let mut highest: BTreeMap<String, u64> = BTreeMap::new();
    for (cluster, seq) in &acked {
        *acked_per.entry(cluster.clone()).or_default() += 1;
        let h = highest.entry(cluster.clone()).or_default();
        *h = (*h).max(*seq);
    }
    for (cluster, n) in &acked_per {
        let counted: i64 = client
            .query_one(
                "SELECT COALESCE(sum(beats), 0)::BIGINT FROM heartbeat_hours_all WHERE cluster_id = $1",
                &[cluster],
            )
            .await
            .unwrap()
            .get(0);
        assert!(
            counted >= *n,
            "{cluster}: {n} acknowledged, {counted} in the rollups"
        );
    }
    assert!(
        audited_beats(&client).await >= i64::try_from(acked.len()).unwrap(),
        "every acknowledged heartbeat is a leaf of a sealed or pending audit row"
    );
    for (cluster, seq) in highest {
        let last: i64 = client
            .query_one(
                "SELECT last_seq FROM clusters WHERE cluster_id = $1",
                &[&cluster],
            )
            .await
            .unwrap()
            .get(0);
        assert!(
            last >= i64::try_from(seq).unwrap(),
            "{cluster}: last_seq {last} < {seq}"
        );
    }
    // Nothing went to another cluster: every binding is still live.
    let live: i64 = client
        .query_one("SELECT count(*) FROM clusters WHERE status = 'active'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(live, i64::from(CLUSTERS));
    r.audit_verify();
}

#[tokio::test]
async fn audit_chain_written_by_two_replicas_verifies_and_detects_an_edit() {
    let Some(r) = Replicas::new().await else {
        return;
    };
    let (a, b) = (r.spawn().await, r.spawn().await);
    let mut tasks = Vec::new();
    for n in 0..4u8 {
        let l = license(200 + n, 3600);
        let key = cluster_key(n);
        let at = if n % 2 == 0 {
            a.addr.clone()
        } else {
            b.addr.clone()
        };
        let other = if n % 2 == 0 {
            b.addr.clone()
        } else {
            a.addr.clone()
        };
        let http = r.http.clone();
        tasks.push(tokio::spawn(async move {
            let resp = http
                .post(format!("http://{at}/v1/activate"))
                .json(&activation_body(&l, &key))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            // Alternate replicas on every beat: both append to one chain.
            for seq in 1..=25u64 {
                let to = if seq % 2 == 0 { &at } else { &other };
                let resp = http
                    .post(format!("http://{to}/v1/heartbeat"))
                    .body(beat(&l, &key, seq).sign(&key))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let client = r.db.client().await;
    // 4 activations, and the 100 heartbeats as leaves of batch rows.
    assert_eq!(audited_beats(&client).await, 100);
    let rows: i64 = client
        .query_one("SELECT count(*) FROM audit", &[])
        .await
        .unwrap()
        .get(0);
    assert!((4..=104).contains(&rows), "{rows} audit rows");
    assert!(r
        .audit_verify()
        .contains(&format!("audit log intact: {rows} rows")));
    let edited = 2i64;
    client
        .execute("UPDATE audit SET detail = '{}' WHERE id = $1", &[&edited])
        .await
        .unwrap();
    let out = r.cli(&["audit", "verify"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("audit log broken at row {edited}")),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn attack_heartbeat_batch_rows_deleted_or_truncated_on_postgres_are_detected() {
    let Some(r) = Replicas::new().await else {
        return;
    };
    let l = license(60, 3600);
    let key = cluster_key(60);
    let a = r.spawn().await;
    assert_eq!(r.activate(&a, &l, 60).await, 200);
    // Three rounds of heartbeats, each sealed into its own batch row by the
    // next replica's start (a start seals what is pending).
    let mut replicas = vec![a];
    for round in 0..3u64 {
        let at = replicas.last().unwrap();
        for seq in round * 5 + 1..=round * 5 + 5 {
            let resp = r.beat_bytes(at, beat(&l, &key, seq).sign(&key)).await;
            assert_eq!(resp.status(), 200);
        }
        replicas.push(r.spawn().await);
    }
    drop(replicas);
    let client = r.db.client().await;
    let batches: Vec<i64> = client
        .query(
            "SELECT id FROM audit WHERE action = 'heartbeats' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(batches.len() >= 3, "batch rows {batches:?}");
    let head: i64 = client
        .query_one("SELECT max(id) FROM audit", &[])
        .await
        .unwrap()
        .get(0);
    assert!(r
        .audit_verify()
        .contains(&format!("audit log intact: {head} rows")));
    let refused = |want: String| {
        let out = r.cli(&["audit", "verify"]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{err}");
        assert!(err.contains(&want), "want {want:?}: {err}");
    };
    // Truncated: the last batch row and everything after it are gone.
    client
        .execute("DELETE FROM audit WHERE id >= $1", &[&batches[2]])
        .await
        .unwrap();
    refused(format!(
        "the head records {head} rows but {} chain correctly",
        batches[2] - 1
    ));
    // Deleted: a batch row in the middle (a later row still follows it).
    client
        .execute("DELETE FROM audit WHERE id = $1", &[&batches[0]])
        .await
        .unwrap();
    refused(format!("row {} is missing", batches[0]));
}

#[tokio::test]
async fn migrate_from_sqlite_preserves_bindings_lists_tokens_and_audit() {
    let Some(db) = postgres::fresh().await else {
        return;
    };
    // A single-node SQLite relay with some history.
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    let relay = Relay::start_on(dir, c, None).await;
    let admin = relay.token(Scope::Admin, "admin");
    let whoosh = relay.token(Scope::Whoosh, "whoosh");
    let publish = relay.token(Scope::Publish, "publisher");
    let licenses: Vec<_> = (0..3u8).map(|n| license(30 + n, 3600)).collect();
    for (n, l) in licenses.iter().enumerate() {
        let c = cluster_key(u8::try_from(n).unwrap());
        assert_eq!(relay.activate(l, &c).await.status(), 200);
        for seq in 1..=3 {
            assert_eq!(
                relay
                    .post_beat("/v1/heartbeat", &beat(l, &c, seq), &c)
                    .await
                    .status(),
                200
            );
        }
    }
    assert_eq!(
        relay
            .file_upgrade(&whoosh, &licenses[0], "enterprise")
            .await
            .status(),
        201
    );
    assert_eq!(
        relay
            .publish(&publish, revocation_list(4, &[licenses[2].id], &vendor()))
            .await
            .status(),
        201
    );
    let (_, before) = relay.get_as::<ClusterPage>("/v1/clusters", &admin).await;
    let (_, upgrades_before) = relay
        .get_as::<serde_json::Value>("/v1/upgrade-requests", &admin)
        .await;
    let sqlite_path = relay.config.db_path();
    // Read after the stop, which seals the last heartbeats into the chain.
    let data = relay.stop().await;
    let audit_before = {
        let conn = kaching_relay::db::open(&sqlite_path).unwrap();
        kaching_relay::audit::verify(&conn).unwrap()
    };

    let out = migrate_cli(data.path(), &sqlite_path, &db.url);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "migrate failed: {stderr}");
    assert!(
        stderr.contains(&format!(
            "audit log intact there: {} rows, head {}",
            audit_before.rows, audit_before.head
        )),
        "{stderr}"
    );
    // A second copy into the now non-empty database is refused.
    let again = migrate_cli(data.path(), &sqlite_path, &db.url);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("migrate into an empty database"));

    // A replica on PostgreSQL serves the same state.
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &format!("database = {:?}", db.url));
    let replica = spawn_relay(&cfg).await;
    let (status, after) = replica
        .json
        .with_token(&admin)
        .get_as::<ClusterPage>("/v1/clusters")
        .await;
    assert_eq!(
        status, 200,
        "the SQLite relay's admin token works on the replica"
    );
    assert_eq!(
        serde_json::to_value(&after).unwrap(),
        serde_json::to_value(&before).unwrap()
    );
    let (_, upgrades_after) = replica
        .json
        .with_token(&admin)
        .get_as::<serde_json::Value>("/v1/upgrade-requests")
        .await;
    assert_eq!(upgrades_after, upgrades_before);
    let http = reqwest::Client::new();
    let list = http
        .get(format!("http://{}/v1/revocations", replica.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(list.headers()["x-kaching-revocation-version"], "4");
    // Sequence numbers came along: an old one is a replay, the next is fine.
    let c = cluster_key(0);
    let post = |seq, earlier: u64| {
        let mut hb = beat(&licenses[0], &c, seq);
        hb.time -= earlier;
        http.post(format!("http://{}/v1/heartbeat", replica.addr))
            .body(hb.sign(&c))
            .send()
    };
    // (A recording: signed before the last heartbeat accepted.)
    assert_eq!(post(3, 60).await.unwrap().status(), 409);
    assert_eq!(post(4, 0).await.unwrap().status(), 200);
    // Another cluster is still refused the bound license.
    let other = http
        .post(format!("http://{}/v1/activate", replica.addr))
        .json(&activation_body(&licenses[1], &cluster_key(9)))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 409);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kaching-relay"))
        .args(["audit", "verify", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let verified = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        // The new heartbeat is a pending leaf, sealed within a minute.
        verified.contains(&format!("audit log intact: {} rows", audit_before.rows)),
        "{verified} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Root keys (2 of 3), the issuer, and the revokers before and after a rotation.
const ROOT_KEYS: [u8; 3] = [41, 42, 43];
const REVOKER: u8 = 60;
const NEW_REVOKER: u8 = 61;

/// Root `version` naming `revoker` as the only revoker, signed by two root keys.
fn signed_root(version: u64, revoker: u8) -> Vec<u8> {
    sign_root(&test_root(version, &ROOT_KEYS, revoker), &ROOT_KEYS[..2])
}

#[tokio::test]
async fn root_published_on_one_replica_is_served_and_obeyed_by_another() {
    let Some(db) = postgres::fresh().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root_file = dir.path().join("root.kaching");
    std::fs::write(
        &root_file,
        kaching_core::armor::armor(kaching_core::DocKind::Root, &signed_root(1, REVOKER)),
    )
    .unwrap();
    let r = Replicas {
        config: write_config(
            dir.path(),
            &format!("database = {:?}\nroot = {:?}", db.url, root_file),
        ),
        _dir: dir,
        db,
        http: reqwest::Client::new(),
    };
    let (a, b) = (r.spawn().await, r.spawn().await);
    let publish = r.token(Scope::Publish, "publisher");
    let put = |at: &Spawned, path: &str, body: Vec<u8>| {
        r.http
            .put(format!("http://{}{path}", at.addr))
            .bearer_auth(&publish)
            .body(body)
            .send()
    };
    // A list signed by the revoker-to-be is refused while root v1 is in force.
    let list = revocation_list(1, &[LicenseId([5; 16])], &seed_key(NEW_REVOKER));
    assert_eq!(
        put(&b, "/v1/revocations", list.clone())
            .await
            .unwrap()
            .status(),
        422
    );
    // Root v2 (new revoker) through A...
    let published = put(&a, "/v1/roots", signed_root(2, NEW_REVOKER))
        .await
        .unwrap();
    assert_eq!(published.status(), 201);
    // ...is served by B, which then judges lists by the new revoker.
    let latest =
        kaching_testkit::wait_within("B serves root v2", Duration::from_secs(10), || async {
            let answer: kaching_core::wire::relay::RootsAnswer = r
                .http
                .get(format!("http://{}/v1/roots?after=1", b.addr))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (answer.latest == 2).then_some(answer.latest)
        })
        .await;
    assert_eq!(latest, 2);
    assert_eq!(
        put(&b, "/v1/revocations", list).await.unwrap().status(),
        201
    );
}

#[tokio::test]
async fn starting_a_replica_while_another_serves_keeps_the_fleets_serving_since() {
    let Some(r) = Replicas::new().await else {
        return;
    };
    let a = r.spawn().await;
    let client = r.db.client().await;
    let serving_since = || async {
        client
            .query_one("SELECT value FROM meta WHERE key = 'serving_since'", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let first = serving_since().await;
    // A later second, so a restarted clock would show.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let b = r.spawn().await;
    assert_eq!(
        serving_since().await,
        first,
        "B's start is no outage: silence keeps counting from A's"
    );
    // After the whole fleet was down longer than FLEET_DOWN_AFTER, the next
    // start restarts it (simulated: both killed, their last sign of life made old).
    drop((a, b)); // kill -9
    tokio::time::sleep(Duration::from_millis(200)).await;
    client
        .execute(
            "UPDATE meta SET value = value - 60 WHERE key = 'alive_at'",
            &[],
        )
        .await
        .unwrap();
    let _c = r.spawn().await;
    assert!(serving_since().await > first);
}

#[tokio::test]
async fn concurrent_heartbeats_with_refusals_mixed_in_keep_only_the_accepted_ones() {
    let Some(r) = Replicas::new().await else {
        return;
    };
    let a = Arc::new(r.spawn().await);
    let r = Arc::new(r);
    const CLUSTERS: u8 = 24;
    for n in 0..CLUSTERS {
        assert_eq!(r.activate(&a, &license(150 + n, 3600), n).await, 200);
    }
    // Two waves, each sent all at once so they share commit batches: every
    // cluster's first heartbeat with one from a cluster that never
    // activated; then a replay of every first heartbeat.
    let mut firsts = Vec::new();
    let mut wave = Vec::new();
    for n in 0..CLUSTERS {
        let l = license(150 + n, 3600);
        let (key, stranger) = (cluster_key(n), cluster_key(100 + n));
        let good = beat(&l, &key, 1).sign(&key);
        firsts.push(good.clone());
        wave.push(good);
        wave.push(beat(&l, &stranger, 1).sign(&stranger));
    }
    let mut statuses = BTreeMap::new();
    for bodies in [wave, firsts] {
        let sends: Vec<_> = bodies
            .into_iter()
            .map(|body| {
                let (r, a) = (r.clone(), a.clone());
                tokio::spawn(async move { r.beat_bytes(&a, body).await.status().as_u16() })
            })
            .collect();
        for s in sends {
            *statuses.entry(s.await.unwrap()).or_insert(0) += 1;
        }
    }
    let n = u32::from(CLUSTERS);
    assert_eq!(
        statuses,
        BTreeMap::from([(200, n), (403, n), (409, n)]),
        "one accepted, one replay and one stranger per cluster"
    );
    let client = r.db.client().await;
    let count = |sql: &'static str| {
        let client = &client;
        async move { client.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(
        count("SELECT COALESCE(sum(beats), 0)::BIGINT FROM heartbeat_hours_all").await,
        i64::from(CLUSTERS)
    );
    assert_eq!(audited_beats(&client).await, i64::from(CLUSTERS));
    assert_eq!(
        count("SELECT count(*) FROM clusters WHERE last_seq = 1 AND heartbeats = 1").await,
        i64::from(CLUSTERS)
    );
    let rows = count("SELECT count(*) FROM audit").await;
    assert!(
        rows >= i64::from(n) && rows <= i64::from(2 * n),
        "{rows} audit rows"
    );
    assert!(r
        .audit_verify()
        .contains(&format!("audit log intact: {rows} rows")));
    // The replica counts what its writer committed: every activation and
    // heartbeat above (refusals too: they were answered after a commit).
    let text = r
        .http
        .get(format!("http://{}/metrics", a.addr))
        .bearer_auth(r.token(Scope::Whoosh, "prometheus"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counter = |name: &str| -> u64 {
        let line = text.lines().find(|l| l.starts_with(&format!("{name} ")));
        line.and_then(|l| l.split(' ').nth(1)?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /metrics"))
    };
    let (commits, writes) = (
        counter(kaching_relay::metrics::COMMITS),
        counter(kaching_relay::metrics::COMMITTED_WRITES),
    );
    assert!(writes >= u64::from(4 * n), "{writes} committed writes");
    assert!(commits >= 1 && commits <= writes, "{commits} commits");
    // And how long each commit took, on PostgreSQL too.
    let hist = kaching_relay::metrics::COMMIT_SECONDS;
    assert_eq!(counter(&format!("{hist}_count")), commits);
    assert_eq!(counter(&format!("{hist}_bucket{{le=\"+Inf\"}}")), commits);
}

/// Heartbeats the audit chain's sealed rows hold as Merkle leaves, and
/// those pending (sealed within a minute).
async fn audited_beats(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one(
            "SELECT (COALESCE(sum((detail::jsonb ->> 'heartbeats')::BIGINT), 0)
                     + COALESCE((SELECT beats FROM audit_pending), 0))::BIGINT
             FROM audit WHERE action = 'heartbeats'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}
