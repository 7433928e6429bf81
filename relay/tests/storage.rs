//! Storage bounded by clusters, not heartbeats (SQLite; the PostgreSQL
//! backend runs the same paths in tests/replicas.rs): each cluster's latest
//! heartbeat on its row, hourly rollups, optional raw history pruned in
//! small batches, one Merkle-root audit row per commit batch, and a
//! database from before all this upgraded in place.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use kaching_core::heartbeat::{ChainHead, Heartbeat};
use kaching_core::keys::hex;
use kaching_core::license::License;
use kaching_core::merkle::heartbeat_leaf;
use kaching_core::SecretKey;
use kaching_relay::console::data::{Answer, Ask, LicenseHour, LicenseList};
use kaching_relay::storage::{self, Database, Storage};
use kaching_relay::store::Activation;
use kaching_relay::tokens::Scope;

/// Relay time at the start of hour 500_000 (in 2027).
const H: u64 = 500_000 * 3600;

async fn open(dir: &Path, keep_raw: bool) -> Arc<dyn Storage> {
    storage::open(&Database::Sqlite(dir.join("relay.db")), 64, keep_raw)
        .await
        .unwrap()
}

fn activation(l: &License, key: &SecretKey, now: u64) -> Activation {
    Activation {
        license_id: l.id.to_string(),
        license_bytes: vec![1, 2, 3],
        customer: l.customer.clone(),
        tier: l.tier.clone(),
        expires_at: l.expires_at,
        cluster_id: kaching_core::cluster_id(&key.public()),
        cluster_key: *key.public().as_bytes(),
        hostname: "node-1".into(),
        nodes: 3,
        offline_grace: 86_400,
        now,
    }
}

fn beat_with(l: &License, key: &SecretKey, seq: u64, nodes: u32) -> Heartbeat {
    let mut hb = beat(l, key, seq);
    hb.active_nodes = nodes;
    hb.quotas.insert("api_calls".into(), seq * 10);
    hb
}

async fn send(s: &Arc<dyn Storage>, key: &SecretKey, hb: &Heartbeat, now: u64) {
    s.record_heartbeat(hb.clone(), *key.public().as_bytes(), now, None)
        .await
        .unwrap();
}

fn db(dir: &Path) -> rusqlite::Connection {
    kaching_relay::db::open(&dir.join("relay.db")).unwrap()
}

/// The console's trends of `licenses` from hour `first` to `last`.
async fn trends(
    s: &Arc<dyn Storage>,
    licenses: &[String],
    first: u64,
    last: u64,
) -> Vec<LicenseHour> {
    let ask = Ask::Trends {
        licenses: licenses.to_vec(),
        first_hour: first,
        last_hour: last,
    };
    let Answer::Trends(hours) = s.console(ask).await.unwrap() else {
        panic!("not trends");
    };
    hours
}

fn count(c: &rusqlite::Connection, sql: &str) -> i64 {
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Three heartbeats in one hour and one in the next: two rollup rows (beats,
/// least, most and last node count, last quota counters), the latest on
/// the cluster row, no raw history, and the console's trends read them
/// back hour by hour.
#[tokio::test]
async fn heartbeats_fold_into_hourly_rollups_and_the_cluster_row() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), false).await;
    let (l, key) = (license(1, 3600), cluster_key(1));
    s.activate(activation(&l, &key, H + 5)).await.unwrap();
    for (seq, nodes, at) in [(1, 3, 10), (2, 5, 20), (3, 4, 30), (4, 2, 3610)] {
        send(&s, &key, &beat_with(&l, &key, seq, nodes), H + at).await;
    }
    let c = db(dir.path());
    let rows: Vec<(u64, u64, u64, u64, u64, u64, String)> = c
        .prepare("SELECT hour, beats, min_nodes, max_nodes, last_nodes, last_at, quotas FROM heartbeat_hours_all ORDER BY hour")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let hour = H / 3600;
    assert_eq!(
        rows,
        vec![
            (hour, 3, 3, 5, 4, H + 30, r#"{"api_calls":30}"#.to_string()),
            (
                hour + 1,
                1,
                2,
                2,
                2,
                H + 3610,
                r#"{"api_calls":40}"#.to_string()
            ),
        ]
    );
    assert_eq!(
        count(&c, "SELECT count(*) FROM heartbeats"),
        0,
        "no raw history by default"
    );
    let (last_seq, nodes, beats): (u64, u64, u64) = c
        .query_row(
            "SELECT last_seq, active_nodes, heartbeats FROM clusters",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((last_seq, nodes, beats), (4, 2, 4));
    let hour_of = |hour, beats, max_nodes, api| LicenseHour {
        license_id: l.id.to_string(),
        hour,
        beats,
        max_nodes,
        quotas: [("api_calls".to_string(), api)].into(),
    };
    assert_eq!(
        trends(&s, &[l.id.to_string()], hour, hour + 23).await,
        [hour_of(hour, 3, 5, 30), hour_of(hour + 1, 1, 2, 40)]
    );
}

/// With `heartbeat_retention` above 0 every heartbeat also gets a raw row;
/// pruning deletes at most `limit` rows per call from each table (the
/// writer never stalls behind one large DELETE) until nothing is left
/// before the cut-offs.
#[tokio::test]
async fn raw_history_when_kept_and_rollups_are_pruned_in_small_batches() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), true).await;
    let (l, key) = (license(2, 3600), cluster_key(2));
    s.activate(activation(&l, &key, H)).await.unwrap();
    for seq in 1..=5u64 {
        send(&s, &key, &beat_with(&l, &key, seq, 3), H + seq * 3600).await;
    }
    let c = db(dir.path());
    assert_eq!(count(&c, "SELECT count(*) FROM heartbeats"), 5);
    assert_eq!(count(&c, "SELECT count(*) FROM heartbeat_hours_all"), 5);
    // Raw rows received before H + 4h (3 of them); rollups of hours before H + 3h (2).
    let mut calls = Vec::new();
    loop {
        let n = s
            .prune_history(H + 4 * 3600, H + 3 * 3600, 2)
            .await
            .unwrap();
        calls.push(n);
        if n < 2 {
            break;
        }
    }
    assert_eq!(calls, [2, 1]);
    assert_eq!(count(&c, "SELECT count(*) FROM heartbeats"), 2);
    assert_eq!(
        count(&c, "SELECT min(hour) FROM heartbeat_hours_all"),
        i64::try_from(H / 3600 + 3).unwrap()
    );
    assert_eq!(count(&c, "SELECT count(*) FROM heartbeat_hours_all"), 3);
    kaching_relay::audit::verify(&c).unwrap();
}

/// A relay database written before this release (per-heartbeat history
/// rows, per-heartbeat audit rows, a `chain_heads` table) is upgraded in
/// place at open: the chain head moves onto the cluster row (still read
/// through a `chain_heads` view), the old audit rows still verify, and the
/// cluster's next heartbeat is checked against the head it named before.
#[tokio::test]
async fn a_database_from_the_previous_schema_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    let (l, key) = (license(3, 3600), cluster_key(3));
    let id = kaching_core::cluster_id(&key.public());
    let head = ChainHead {
        report_seq: 7,
        report_hash: Some([9; 32]),
        mark: 11,
        reset: None,
    };
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(OLD_SCHEMA).unwrap();
        c.execute(
            "INSERT INTO clusters (cluster_id, license_id, cluster_key, hostname, status, activated_at, last_seen, last_seq, heartbeats)
             VALUES (?1, ?2, ?3, 'h', 'active', ?4, ?4, 5, 5)",
            rusqlite::params![id, l.id.to_string(), key.public().as_bytes().as_slice(), H],
        )
        .unwrap();
        c.execute(
            "INSERT INTO chain_heads (cluster_id, report_seq, report_hash, mark) VALUES (?1, 7, ?2, 11)",
            rusqlite::params![id, [9u8; 32].as_slice()],
        )
        .unwrap();
        for seq in 1..=5u64 {
            c.execute(
                "INSERT INTO heartbeats (cluster_id, seq, time, received_at, state, active_nodes, quotas)
                 VALUES (?1, ?2, ?3, ?3, 'active', 3, '{}')",
                rusqlite::params![id, seq, H + seq],
            )
            .unwrap();
            kaching_relay::audit::append(
                &c,
                H + seq,
                &format!("cluster:{id}"),
                "heartbeat",
                &l.id.to_string(),
                &serde_json::json!({"seq": seq}),
            )
            .unwrap();
        }
    }
    let s = open(dir.path(), false).await;
    let c = db(dir.path());
    assert_eq!(count(&c, "PRAGMA user_version"), 4);
    let (seq, hash, mark): (u64, Vec<u8>, u64) = c
        .query_row(
            "SELECT report_seq, report_hash, mark FROM chain_heads WHERE cluster_id = ?1",
            [&id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((seq, hash, mark), (7, vec![9; 32], 11));
    assert_eq!(
        count(&c, "SELECT count(*) FROM heartbeats"),
        5,
        "old history kept until pruned"
    );
    kaching_relay::audit::verify(&c).unwrap();
    // A replay is still refused (signed later than the last accepted one:
    // itself a sign of rollback); the next heartbeat naming the same head
    // raises no further sign; one naming an older head does.
    let replay = s
        .record_heartbeat(beat(&l, &key, 5), *key.public().as_bytes(), H + 100, None)
        .await
        .unwrap_err();
    assert_eq!(replay.code, "replayed_heartbeat");
    assert_eq!(count(&c, "SELECT count(*) FROM anomalies"), 1);
    let mut hb = beat(&l, &key, 6);
    hb.chain = Some(head);
    send(&s, &key, &hb, H + 100).await;
    assert_eq!(count(&c, "SELECT count(*) FROM anomalies"), 1);
    let mut hb = beat(&l, &key, 7);
    hb.chain = Some(ChainHead {
        report_seq: 6,
        report_hash: Some([8; 32]),
        mark: 11,
        reset: None,
    });
    send(&s, &key, &hb, H + 200).await;
    assert_eq!(count(&c, "SELECT count(*) FROM anomalies"), 2);
    let rows = s.clusters(None, String::new(), 10).await.unwrap();
    assert_eq!(rows[0].report_seq, Some(6));
    kaching_relay::audit::verify(&c).unwrap();
    s.close().await.unwrap();
    // Opening again changes nothing.
    let s = open(dir.path(), false).await;
    assert_eq!(count(&db(dir.path()), "PRAGMA user_version"), 4);
    s.close().await.unwrap();
}

/// Where a backend's rollups are read from, as text: one line per row of
/// the `heartbeat_hours_all` view ("hour beats min max last last_at quotas",
/// hour and time relative to `H`), in hour order.
enum Rows {
    Lite(std::path::PathBuf),
    Pg(tokio_postgres::Client),
}

const HOUR_ROWS: &str = "SELECT CAST(hour - 500000 AS TEXT) || ' ' || CAST(beats AS TEXT) || ' '
        || CAST(min_nodes AS TEXT) || ' ' || CAST(max_nodes AS TEXT) || ' ' || CAST(last_nodes AS TEXT)
        || ' ' || CAST(last_at - 1800000000 AS TEXT) || ' ' || quotas
    FROM heartbeat_hours_all ORDER BY hour, last_at";

impl Rows {
    async fn read(&self, sql: &str) -> Vec<String> {
        match self {
            Rows::Lite(dir) => {
                let c = db(dir);
                let mut st = c.prepare(sql).unwrap();
                let rows = st.query_map([], |r| r.get(0)).unwrap();
                rows.collect::<Result<_, _>>().unwrap()
            }
            Rows::Pg(c) => c
                .query(sql, &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect(),
        }
    }

    async fn exec(&self, sql: &str) {
        match self {
            Rows::Lite(dir) => db(dir).execute_batch(sql).unwrap(),
            Rows::Pg(c) => c.batch_execute(sql).await.unwrap(),
        }
    }

    async fn hours(&self) -> Vec<String> {
        self.read(HOUR_ROWS).await
    }

    async fn closed(&self) -> usize {
        self.read("SELECT CAST(count(*) AS TEXT) FROM heartbeat_hours")
            .await[0]
            .parse()
            .unwrap()
    }
}

/// A cluster's current hour is on its row: three heartbeats in one hour
/// write no rollup row; the first of the next hour closes it (one row in
/// `heartbeat_hours`); the `heartbeat_hours_all` view shows both. When
/// the relay's clock goes back into a closed hour and forth again, the
/// hour's counts are merged, not lost or doubled; a deactivation counts
/// in its hour; pruning removes closed hours only; the console's trends
/// read every heartbeat back.
async fn current_hour_on_the_row_and_closed_when_the_next_begins(s: Arc<dyn Storage>, rows: Rows) {
    assert_eq!(H, 500_000 * 3600);
    assert_eq!(H, 1_800_000_000);
    let (l, key) = (license(6, 3600), cluster_key(6));
    s.activate(activation(&l, &key, H + 5)).await.unwrap();
    for (seq, nodes, at) in [(1, 3, 10), (2, 5, 20), (3, 4, 30)] {
        send(&s, &key, &beat_with(&l, &key, seq, nodes), H + at).await;
    }
    assert_eq!(rows.hours().await, [r#"0 3 3 5 4 30 {"api_calls":30}"#]);
    assert_eq!(rows.closed().await, 0, "the current hour is on the row");
    send(&s, &key, &beat_with(&l, &key, 4, 2), H + 3610).await;
    assert_eq!(
        rows.hours().await,
        [
            r#"0 3 3 5 4 30 {"api_calls":30}"#,
            r#"1 1 2 2 2 3610 {"api_calls":40}"#
        ]
    );
    assert_eq!(rows.closed().await, 1);
    // The clock goes back into hour 0, then forth into hour 1 and on to 2.
    send(&s, &key, &beat_with(&l, &key, 5, 7), H + 40).await;
    send(&s, &key, &beat_with(&l, &key, 6, 1), H + 3620).await;
    send(&s, &key, &beat_with(&l, &key, 7, 6), H + 7200).await;
    let mut bye = beat_with(&l, &key, 8, 9);
    bye.deactivate = true;
    send(&s, &key, &bye, H + 7210).await;
    assert_eq!(
        rows.hours().await,
        [
            r#"0 4 3 7 7 40 {"api_calls":50}"#,
            r#"1 2 1 2 1 3620 {"api_calls":60}"#,
            r#"2 2 6 9 9 7210 {"api_calls":80}"#,
        ],
        "one row per hour, every heartbeat counted once"
    );
    assert_eq!(rows.closed().await, 2);
    let id = [l.id.to_string()];
    let per_hour = |hours: Vec<LicenseHour>| {
        hours
            .iter()
            .map(|h| {
                (
                    h.hour - H / 3600,
                    h.beats,
                    h.max_nodes,
                    h.quotas["api_calls"],
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        per_hour(trends(&s, &id, H / 3600, H / 3600 + 23).await),
        [(0, 4, 7, 50), (1, 2, 2, 60), (2, 2, 9, 80)],
        "the console reads every heartbeat back, once, in its hour"
    );
    assert_eq!(
        per_hour(trends(&s, &id, H / 3600 + 1, H / 3600 + 1).await),
        [(1, 2, 2, 60)],
        "only the hours asked for"
    );
    // Pruning the hours before hour 2 leaves the one on the row.
    while s.prune_history(H, H + 2 * 3600, 1).await.unwrap() > 0 {}
    assert_eq!(rows.hours().await, [r#"2 2 6 9 9 7210 {"api_calls":80}"#]);
    assert_eq!(rows.closed().await, 0);
    s.close().await.unwrap();
}

#[tokio::test]
async fn current_hour_on_the_row_and_closed_when_the_next_begins_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), false).await;
    current_hour_on_the_row_and_closed_when_the_next_begins(s, Rows::Lite(dir.path().into())).await;
}

#[tokio::test]
async fn current_hour_on_the_row_and_closed_when_the_next_begins_on_postgres() {
    let Some(pg) = common::postgres::fresh().await else {
        return;
    };
    let s = storage::open(&Database::Postgres(pg.url.clone()), 64, false)
        .await
        .unwrap();
    current_hour_on_the_row_and_closed_when_the_next_begins(s, Rows::Pg(pg.client().await)).await;
}

/// The licenses page's sparklines: the console reads the hours of the
/// licenses it shows, summed over each license's clusters (one deactivated
/// and the one that took the license over, an hour closed in the table and an hour
/// still on a row), whatever the rest of the fleet sent. 30 000 other
/// clusters with newer hours are in the database: a read of the newest
/// hours fleet-wide, as the page did before, leaves the license's older
/// hours out. A counter above `i64::MAX` reads as `i64::MAX`.
async fn trends_read_the_shown_licenses_hours_whatever_the_fleet_sends(
    s: Arc<dyn Storage>,
    rows: Rows,
) {
    let h0 = H / 3600;
    let l = license(7, 3600);
    let (old, new) = (cluster_key(7), cluster_key(8));
    s.activate(activation(&l, &old, H + 5)).await.unwrap();
    for (seq, nodes, at) in [(1, 3, 10), (2, 5, 20), (3, 4, 5 * 3600 + 1)] {
        let mut hb = beat_with(&l, &old, seq, nodes);
        hb.deactivate = seq == 3; // the license moves to the new cluster
        send(&s, &old, &hb, H + at).await;
    }
    s.activate(activation(&l, &new, H + 5 * 3600 + 10))
        .await
        .unwrap();
    for (seq, nodes, at) in [(1, 8, 5 * 3600 + 20), (2, 1, 23 * 3600)] {
        let mut hb = beat_with(&l, &new, seq, nodes);
        if seq == 2 {
            // A counter past what the database's integers hold.
            hb.quotas.insert("bytes".into(), u64::MAX);
        }
        send(&s, &new, &hb, H + at).await;
    }
    let key = match rows {
        Rows::Lite(_) => "X'00'",
        Rows::Pg(_) => "'\\x00'::BYTEA",
    };
    rows.exec(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 30000)
         INSERT INTO clusters (cluster_id, license_id, cluster_key, hostname, status, activated_at,
                               last_seen, hour, hour_beats, hour_min_nodes, hour_max_nodes,
                               hour_last_nodes, hour_last_at)
         SELECT 'crowd-' || i, 'crowd-' || i, {key}, 'h', 'active', {H}, {H} + 82800,
                {h0} + 23, 1, 1, 1, 1, {H} + 82800 FROM n;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 30000)
         INSERT INTO heartbeat_hours (hour, cluster_id, beats, min_nodes, max_nodes, last_nodes, last_at, quotas)
         SELECT {h0} + 22, 'crowd-' || i, 60, 1, 1, 1, {H} + 82000, '{{\"api_calls\":1}}' FROM n;"
    ))
    .await;
    let ids = [l.id.to_string(), "no-such-license".to_string()];
    let got: Vec<_> = trends(&s, &ids, h0, h0 + 23)
        .await
        .into_iter()
        .map(|h| (h.license_id, h.hour - h0, h.beats, h.max_nodes, h.quotas))
        .collect();
    let api = |n: u64| [("api_calls".to_string(), n)].into();
    let id = l.id.to_string();
    assert_eq!(
        got,
        [
            (id.clone(), 0, 2, 5, api(20)),
            (id.clone(), 5, 2, 8, api(30)),
            (
                id,
                23,
                1,
                1,
                [
                    ("api_calls".to_string(), 20),
                    ("bytes".to_string(), i64::MAX as u64),
                ]
                .into()
            ),
        ],
        "heartbeats summed, the most nodes and the highest counter of the license's clusters"
    );
    let crowd: Vec<_> = ["crowd-1".to_string(), "crowd-30000".to_string()].into();
    let got = trends(&s, &crowd, h0, h0 + 23).await;
    assert_eq!(
        got.iter()
            .map(|h| (h.hour - h0, h.beats))
            .collect::<Vec<_>>(),
        [(22, 60), (23, 1), (22, 60), (23, 1)]
    );
    s.close().await.unwrap();
}

#[tokio::test]
async fn trends_read_the_shown_licenses_hours_whatever_the_fleet_sends_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), false).await;
    trends_read_the_shown_licenses_hours_whatever_the_fleet_sends(s, Rows::Lite(dir.path().into()))
        .await;
}

#[tokio::test]
async fn trends_read_the_shown_licenses_hours_whatever_the_fleet_sends_on_postgres() {
    let Some(pg) = common::postgres::fresh().await else {
        return;
    };
    let s = storage::open(&Database::Postgres(pg.url.clone()), 64, false)
        .await
        .unwrap();
    trends_read_the_shown_licenses_hours_whatever_the_fleet_sends(s, Rows::Pg(pg.client().await))
        .await;
}

/// Upgrade requests at scale: 1 200 stored, the 5 of license `lic-a` the
/// oldest. The licenses page gets each shown license's newest requests and
/// count (a read of the newest 1 000 fleet-wide, as the page did before,
/// has none of `lic-a`'s); the inbox pages through all of them, or one
/// license's, each with its customer; the API reads one license's through
/// its key.
async fn upgrade_requests_read_by_license_and_paged(s: Arc<dyn Storage>, rows: Rows) {
    let bytes = match rows {
        Rows::Lite(_) => "X''",
        Rows::Pg(_) => "'\\x'::BYTEA",
    };
    rows.exec(&format!(
        "INSERT INTO licenses (license_id, bytes, customer, tier, expires_at, first_seen)
         VALUES ('lic-a', {bytes}, 'Acme', 'standard', 2000000000, 1);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1200)
         INSERT INTO upgrade_requests (license_id, cluster_id, requested_tier, message, time, received_at, source)
         SELECT CASE WHEN i <= 5 THEN 'lic-a' ELSE 'lic-b' END, '', 'enterprise', 'm' || i, i, 1000 + i, 'whoosh'
         FROM n ORDER BY i;"
    ))
    .await;
    let messages = |rows: &[kaching_core::wire::relay::UpgradeRow]| {
        rows.iter().map(|r| r.message.clone()).collect::<Vec<_>>()
    };
    let ask = Ask::UpgradesOf {
        licenses: vec!["lic-a".into(), "lic-b".into(), "none".into()],
        newest: 3,
    };
    let Answer::UpgradesOf(of) = s.console(ask).await.unwrap() else {
        panic!("not upgrades");
    };
    assert_eq!(of.len(), 2, "{of:?}");
    assert_eq!(
        (messages(&of["lic-a"].0), of["lic-a"].1),
        (vec!["m5".into(), "m4".into(), "m3".into()], 5)
    );
    assert_eq!(messages(&of["lic-b"].0), ["m1200", "m1199", "m1198"]);
    assert_eq!(of["lic-b"].1, 1195);
    let inbox = |license: Option<&str>, offset, limit| Ask::Inbox {
        license: license.map(str::to_string),
        offset,
        limit,
    };
    let Answer::Inbox(page, total) = s.console(inbox(None, 50, 50)).await.unwrap() else {
        panic!("not the inbox");
    };
    assert_eq!(total, 1200);
    assert_eq!(page.len(), 50);
    assert_eq!(
        (page[0].0.message.as_str(), page[0].1.as_str()),
        ("m1150", "")
    );
    let Answer::Inbox(page, total) = s.console(inbox(Some("lic-a"), 3, 50)).await.unwrap() else {
        panic!("not the inbox");
    };
    assert_eq!(total, 5);
    let got: Vec<_> = page
        .iter()
        .map(|(u, c)| (u.message.as_str(), c.as_str(), u.cluster_id.is_none()))
        .collect();
    assert_eq!(got, [("m2", "Acme", true), ("m1", "Acme", true)]);
    assert_eq!(
        messages(&s.upgrade_requests(Some("lic-a".into())).await.unwrap()),
        ["m5", "m4", "m3", "m2", "m1"]
    );
    assert_eq!(s.upgrade_requests(None).await.unwrap().len(), 1000);
    s.close().await.unwrap();
}

#[tokio::test]
async fn upgrade_requests_read_by_license_and_paged_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), false).await;
    upgrade_requests_read_by_license_and_paged(s, Rows::Lite(dir.path().into())).await;
}

#[tokio::test]
async fn upgrade_requests_read_by_license_and_paged_on_postgres() {
    let Some(pg) = common::postgres::fresh().await else {
        return;
    };
    let s = storage::open(&Database::Postgres(pg.url.clone()), 64, false)
        .await
        .unwrap();
    upgrade_requests_read_by_license_and_paged(s, Rows::Pg(pg.client().await)).await;
}

/// The licenses page's list: a page in order of expiry (then id), one
/// license by id, the count, and the renewals horizon (after now, up to
/// its end: not the expired, not the far), counted in full and cut to the
/// soonest few.
async fn licenses_are_paged_and_counted_by_the_database(s: Arc<dyn Storage>, rows: Rows) {
    let bytes = match rows {
        Rows::Lite(_) => "X''",
        Rows::Pg(_) => "'\\x'::BYTEA",
    };
    let day = 86_400;
    let mut values = Vec::new();
    // (id, expires in days from H): expired, soon, tied with soon (by id), later, far.
    for (id, days) in [
        ("l1", -1i64),
        ("l2", 5),
        ("l0", 5),
        ("l3", 40),
        ("l4", 20),
        ("l5", 400),
    ] {
        let at = H as i64 + days * day;
        values.push(format!("('{id}', {bytes}, 'C {id}', 'standard', {at}, 1)"));
    }
    rows.exec(&format!(
        "INSERT INTO licenses (license_id, bytes, customer, tier, expires_at, first_seen) VALUES {}",
        values.join(", ")
    ))
    .await;
    let list = |only: Option<&str>, offset, limit, expiring| LicenseList {
        only: only.map(str::to_string),
        offset,
        limit,
        now: H,
        until: H + 60 * day as u64,
        expiring,
    };
    let ask = |l| async {
        match s.console(Ask::Licenses(l)).await.unwrap() {
            Answer::Licenses(p) => p,
            _ => panic!("not licenses"),
        }
    };
    let ids = |v: &[kaching_relay::console::data::LicenseRow]| {
        v.iter().map(|l| l.license_id.clone()).collect::<Vec<_>>()
    };
    let page = ask(list(None, 1, 3, 2)).await;
    assert_eq!(ids(&page.shown), ["l0", "l2", "l4"]);
    assert_eq!(page.total, 6);
    assert_eq!(ids(&page.expiring), ["l0", "l2"]);
    assert_eq!(page.expiring_total, 4);
    assert_eq!(ids(&ask(list(None, 5, 3, 2)).await.shown), ["l5"]);
    let one = ask(list(Some("l3"), 0, 3, 20)).await;
    assert_eq!(
        (ids(&one.shown), one.total, ids(&one.expiring)),
        (
            vec!["l3".into()],
            6,
            vec!["l0".into(), "l2".into(), "l4".into(), "l3".into()]
        )
    );
    assert_eq!(one.shown[0].customer, "C l3");
    assert!(ask(list(Some("nope"), 0, 3, 2)).await.shown.is_empty());
    let index = match rows {
        Rows::Lite(_) => {
            "SELECT CAST(count(*) AS TEXT) FROM sqlite_master WHERE name = 'licenses_by_expiry'"
        }
        Rows::Pg(_) => {
            "SELECT CAST(count(*) AS TEXT) FROM pg_indexes WHERE indexname = 'licenses_by_expiry'"
        }
    };
    assert_eq!(
        rows.read(index).await,
        ["1"],
        "read in order of expiry through an index"
    );
    s.close().await.unwrap();
}

#[tokio::test]
async fn licenses_are_paged_and_counted_by_the_database_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), false).await;
    licenses_are_paged_and_counted_by_the_database(s, Rows::Lite(dir.path().into())).await;
}

#[tokio::test]
async fn licenses_are_paged_and_counted_by_the_database_on_postgres() {
    let Some(pg) = common::postgres::fresh().await else {
        return;
    };
    let s = storage::open(&Database::Postgres(pg.url.clone()), 64, false)
        .await
        .unwrap();
    licenses_are_paged_and_counted_by_the_database(s, Rows::Pg(pg.client().await)).await;
}

/// The console's live audit check resumes from the head a whole walk
/// found: rows added since are walked; a row added since that was edited,
/// or the resumed-from row itself edited, is caught; an edit to an older
/// row is caught by the next whole walk (the page walks the whole chain
/// when opened and every few minutes).
async fn audit_walks_resume_from_a_verified_head(s: Arc<dyn Storage>, rows: Rows) {
    for n in 20..23u8 {
        s.activate(activation(
            &license(n, 3600),
            &cluster_key(n),
            H + u64::from(n),
        ))
        .await
        .unwrap();
    }
    let audit = |from: Option<(i64, String)>| async {
        match s.console(Ask::Audit { latest: 5, from }).await.unwrap() {
            Answer::Audit(v, _) => v,
            _ => panic!("not the audit"),
        }
    };
    let (n, head) = audit(None).await.unwrap();
    assert!(n >= 3, "{n}");
    s.activate(activation(&license(23, 3600), &cluster_key(23), H + 30))
        .await
        .unwrap();
    let (n2, head2) = audit(Some((n, head.clone()))).await.unwrap();
    assert!(n2 > n);
    assert_eq!(
        audit(None).await.unwrap(),
        (n2, head2.clone()),
        "the same as a whole walk"
    );
    // A row added since the resumed-from head, edited (then put back).
    let actor = rows
        .read(&format!("SELECT actor FROM audit WHERE id = {n2}"))
        .await[0]
        .clone();
    rows.exec(&format!(
        "UPDATE audit SET actor = 'someone else' WHERE id = {n2}"
    ))
    .await;
    let why = audit(Some((n, head.clone()))).await.unwrap_err();
    assert!(
        why.contains(&format!("audit log broken at row {n2}")),
        "{why}"
    );
    rows.exec(&format!(
        "UPDATE audit SET actor = '{actor}' WHERE id = {n2}"
    ))
    .await;
    assert!(audit(Some((n, head.clone()))).await.is_ok(), "put back");
    // The resumed-from row itself, edited.
    rows.exec(&format!(
        "UPDATE audit SET hash = 'ab' || hash WHERE id = {n}"
    ))
    .await;
    let why = audit(Some((n, head.clone()))).await.unwrap_err();
    assert!(
        why.contains(&format!(
            "audit log broken at row {n}: it no longer holds the hash"
        )),
        "{why}"
    );
    rows.exec(&format!("UPDATE audit SET hash = '{head}' WHERE id = {n}"))
        .await;
    assert!(audit(Some((n, head.clone()))).await.is_ok(), "put back");
    // An older row, edited: the whole walk finds it.
    rows.exec("UPDATE audit SET subject = 'x' WHERE id = 1")
        .await;
    let why = audit(None).await.unwrap_err();
    assert!(why.contains("audit log broken at row 1"), "{why}");
    s.close().await.unwrap();
}

#[tokio::test]
async fn audit_walks_resume_from_a_verified_head_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), false).await;
    audit_walks_resume_from_a_verified_head(s, Rows::Lite(dir.path().into())).await;
}

#[tokio::test]
async fn audit_walks_resume_from_a_verified_head_on_postgres() {
    let Some(pg) = common::postgres::fresh().await else {
        return;
    };
    let s = storage::open(&Database::Postgres(pg.url.clone()), 64, false)
        .await
        .unwrap();
    audit_walks_resume_from_a_verified_head(s, Rows::Pg(pg.client().await)).await;
}

/// The licenses page's clusters: each shown license's first clusters by
/// id (byte order), with their own signs of rollback and whether the
/// license has more, in two statements; the same rows the API's
/// per-license read gives.
async fn clusters_of_the_shown_licenses_in_one_read(s: Arc<dyn Storage>, rows: Rows) {
    let key = match rows {
        Rows::Lite(_) => "X'00'",
        Rows::Pg(_) => "'\\x00'::BYTEA",
    };
    let mut values = Vec::new();
    for (id, license) in [
        ("m-07", "lic-many"),
        ("m-03", "lic-many"),
        ("m-05", "lic-many"),
        ("m-01", "lic-many"),
        ("m-09", "lic-many"),
        ("m-02", "lic-many"),
        ("m-08", "lic-many"),
        ("M-99", "lic-many"),
        ("f-2", "lic-few"),
        ("f-1", "lic-few"),
        ("o-1", "lic-other"),
    ] {
        values.push(format!(
            "('{id}', '{license}', {key}, 'h-{id}', 'deactivated', 1, 2)"
        ));
    }
    rows.exec(&format!(
        "INSERT INTO clusters (cluster_id, license_id, cluster_key, hostname, status, activated_at, last_seen)
         VALUES {};
         INSERT INTO anomalies (cluster_id, license_id, at, kind, detail) VALUES
           ('m-02', 'lic-many', 10, 'seq_regression', 'first'),
           ('m-02', 'lic-many', 20, 'seq_regression', 'second'),
           ('f-1', 'lic-few', 30, 'clock_regression', 'third'),
           ('o-1', 'lic-other', 40, 'seq_regression', 'not shown');",
        values.join(", ")
    ))
    .await;
    let ask = Ask::ClustersOf {
        licenses: vec!["lic-many".into(), "lic-few".into(), "none".into()],
        first: 5,
    };
    let Answer::ClustersOf(of) = s.console(ask).await.unwrap() else {
        panic!("not clusters");
    };
    let ids = |v: &[kaching_core::wire::relay::ClusterRow]| {
        v.iter().map(|r| r.cluster_id.clone()).collect::<Vec<_>>()
    };
    assert_eq!(of.len(), 2, "{of:?}");
    // Byte order: upper case first.
    assert_eq!(
        ids(&of["lic-many"].0),
        ["M-99", "m-01", "m-02", "m-03", "m-05"]
    );
    assert!(of["lic-many"].1, "more than five");
    assert_eq!(
        (ids(&of["lic-few"].0), of["lic-few"].1),
        (vec!["f-1".into(), "f-2".into()], false)
    );
    let details = |r: &kaching_core::wire::relay::ClusterRow| {
        r.anomalies
            .iter()
            .map(|a| a.detail.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(details(&of["lic-many"].0[2]), ["second", "first"]);
    assert_eq!(details(&of["lic-few"].0[0]), ["third"]);
    assert!(of["lic-many"].0[1].anomalies.is_empty());
    // The same rows as the API's read of one license.
    let api = s
        .clusters(Some("lic-many".into()), String::new(), 5)
        .await
        .unwrap();
    assert_eq!(api, of["lic-many"].0);
    s.close().await.unwrap();
}

#[tokio::test]
async fn clusters_of_the_shown_licenses_in_one_read_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), false).await;
    clusters_of_the_shown_licenses_in_one_read(s, Rows::Lite(dir.path().into())).await;
}

#[tokio::test]
async fn clusters_of_the_shown_licenses_in_one_read_on_postgres() {
    let Some(pg) = common::postgres::fresh().await else {
        return;
    };
    let s = storage::open(&Database::Postgres(pg.url.clone()), 64, false)
        .await
        .unwrap();
    clusters_of_the_shown_licenses_in_one_read(s, Rows::Pg(pg.client().await)).await;
}

/// How a relay of the release before recorded a heartbeat's hour (the
/// upsert it runs, per backend), with literal values: hour 0, nodes 9,
/// relay time `H` + 20, quotas `{"api_calls":99}`.
fn old_release_upsert(rows: &Rows, cluster: &str) -> String {
    let (beats, min, max) = match rows {
        Rows::Lite(_) => (
            "beats + 1",
            "min(min_nodes, excluded.min_nodes)",
            "max(max_nodes, excluded.max_nodes)",
        ),
        Rows::Pg(_) => (
            "heartbeat_hours.beats + 1",
            "LEAST(heartbeat_hours.min_nodes, excluded.min_nodes)",
            "GREATEST(heartbeat_hours.max_nodes, excluded.max_nodes)",
        ),
    };
    format!(
        "INSERT INTO heartbeat_hours (hour, cluster_id, beats, min_nodes, max_nodes, last_nodes, last_at, quotas)
         VALUES (500000, '{cluster}', 1, 9, 9, 9, {}, '{{\"api_calls\":99}}')
         ON CONFLICT (hour, cluster_id) DO UPDATE SET beats = {beats}, min_nodes = {min}, max_nodes = {max},
             last_nodes = excluded.last_nodes, last_at = excluded.last_at, quotas = excluded.quotas",
        H + 20
    )
}

/// A rolling upgrade: a relay of the release before, still serving against
/// the upgraded database, upserts its heartbeat's hour into
/// `heartbeat_hours` as it always did, while this release keeps the same
/// hour on the cluster row. Both count (the view shows the hour twice,
/// adding up), and when the next hour begins the row's part is merged into
/// the old relay's row: one row, every heartbeat counted once.
async fn an_old_release_s_rollup_rows_merge_when_the_hour_closes(s: Arc<dyn Storage>, rows: Rows) {
    let (l, key) = (license(7, 3600), cluster_key(7));
    s.activate(activation(&l, &key, H + 5)).await.unwrap();
    send(&s, &key, &beat_with(&l, &key, 1, 3), H + 10).await;
    rows.exec(&old_release_upsert(
        &rows,
        &kaching_core::cluster_id(&key.public()),
    ))
    .await;
    assert_eq!(
        rows.hours().await,
        [
            r#"0 1 3 3 3 10 {"api_calls":10}"#,
            r#"0 1 9 9 9 20 {"api_calls":99}"#
        ]
    );
    send(&s, &key, &beat_with(&l, &key, 2, 2), H + 3610).await;
    assert_eq!(
        rows.hours().await,
        [
            r#"0 2 3 9 9 20 {"api_calls":99}"#,
            r#"1 1 2 2 2 3610 {"api_calls":20}"#
        ]
    );
    s.close().await.unwrap();
}

#[tokio::test]
async fn an_old_release_s_rollup_rows_merge_when_the_hour_closes_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), false).await;
    an_old_release_s_rollup_rows_merge_when_the_hour_closes(s, Rows::Lite(dir.path().into())).await;
}

#[tokio::test]
async fn an_old_release_s_rollup_rows_merge_when_the_hour_closes_on_postgres() {
    let Some(pg) = common::postgres::fresh().await else {
        return;
    };
    let s = storage::open(&Database::Postgres(pg.url.clone()), 64, false)
        .await
        .unwrap();
    an_old_release_s_rollup_rows_merge_when_the_hour_closes(s, Rows::Pg(pg.client().await)).await;
}

/// Rollups as the previous schema kept them (every hour a row of
/// `heartbeat_hours`): cluster a has hours 0, 1 and 2, cluster b hour 1,
/// cluster c none. Columns: hour, cluster, beats, min, max, last nodes,
/// last_at (quotas: the cluster's own).
const OLD_HOURS: [(i64, &str, i64, i64, i64, i64, i64); 4] = [
    (500_000, "a", 5, 1, 4, 2, 1_800_000_100),
    (500_001, "a", 7, 2, 3, 3, 1_800_003_700),
    (500_002, "a", 1, 6, 6, 6, 1_800_007_300),
    (500_001, "b", 2, 9, 9, 9, 1_800_003_900),
];

const OLD_HOURS_READ: [&str; 4] = [
    r#"0 5 1 4 2 100 {"q":1}"#,
    r#"1 7 2 3 3 3700 {"q":1}"#,
    r#"1 2 9 9 9 3900 {"q":2}"#,
    r#"2 1 6 6 6 7300 {"q":1}"#,
];

/// The cluster rows of [`OLD_HOURS`], in SQL either backend takes.
fn old_clusters(quotas_of: impl Fn(&str) -> &'static str) -> String {
    ["a", "b", "c"]
        .iter()
        .map(|c| {
            format!(
                "INSERT INTO clusters (cluster_id, license_id, cluster_key, hostname, status, activated_at, last_seen, quotas)
                 VALUES ('{c}', 'l-{c}', '\\x00', 'h', 'active', 1, 1, '{}');",
                quotas_of(c)
            )
        })
        .collect()
}

fn old_quotas(c: &str) -> &'static str {
    match c {
        "a" => r#"{"q":1}"#,
        "b" => r#"{"q":2}"#,
        _ => "{}",
    }
}

fn old_hour_rows() -> String {
    OLD_HOURS
        .iter()
        .map(|(h, c, beats, min, max, last, at)| {
            format!(
                "INSERT INTO heartbeat_hours (hour, cluster_id, beats, min_nodes, max_nodes, last_nodes, last_at, quotas)
                 VALUES ({h}, '{c}', {beats}, {min}, {max}, {last}, {at}, '{}');",
                old_quotas(c)
            )
        })
        .collect()
}

/// After the upgrade: the view reads the rows [`OLD_HOURS`] wrote, each
/// cluster's newest hour is on its row, the older ones are closed.
async fn upgraded_hours_read_as_before(rows: &Rows) {
    assert_eq!(rows.hours().await, OLD_HOURS_READ);
    assert_eq!(rows.closed().await, 2, "a's hours 0 and 1");
    assert_eq!(
        rows.read("SELECT cluster_id || ' ' || COALESCE(CAST(hour - 500000 AS TEXT), '-') FROM clusters ORDER BY cluster_id")
            .await,
        ["a 2", "b 1", "c -"]
    );
}

/// A database whose rollups are all rows (schema version 1) is upgraded in
/// place: each cluster's newest hour moves onto its row, the older ones
/// are the closed hours, and the view reads the same rows as before.
#[tokio::test]
async fn rollups_of_the_previous_schema_move_their_newest_hour_onto_the_row_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    {
        let c = kaching_relay::db::create_at_version(&path, 1).unwrap();
        let sql = old_clusters(old_quotas).replace("'\\x00'", "x'00'") + &old_hour_rows();
        c.execute_batch(&sql).unwrap();
    }
    let s = open(dir.path(), false).await;
    let rows = Rows::Lite(dir.path().into());
    assert_eq!(count(&db(dir.path()), "PRAGMA user_version"), 4);
    upgraded_hours_read_as_before(&rows).await;
    s.close().await.unwrap();
}

#[tokio::test]
async fn rollups_of_the_previous_schema_move_their_newest_hour_onto_the_row_on_postgres() {
    let Some(pg) = common::postgres::fresh().await else {
        return;
    };
    let mut client = pg.client().await;
    kaching_relay::storage::postgres::schema::migrate_through(&mut client, 4)
        .await
        .unwrap();
    client
        .batch_execute(&(old_clusters(old_quotas) + &old_hour_rows()))
        .await
        .unwrap();
    let s = storage::open(&Database::Postgres(pg.url.clone()), 64, false)
        .await
        .unwrap();
    let rows = Rows::Pg(client);
    upgraded_hours_read_as_before(&rows).await;
    s.close().await.unwrap();
}

/// A relay with three heartbeats a minute apart, so each is sealed into
/// its own audit row (the last at the forced seal); returns them in order.
async fn three_batches(dir: &Path) -> Vec<Heartbeat> {
    let s = open(dir, false).await;
    let (l, key) = (license(4, 3600), cluster_key(4));
    s.activate(activation(&l, &key, H)).await.unwrap();
    let beats: Vec<Heartbeat> = (1..=3).map(|seq| beat_with(&l, &key, seq, 3)).collect();
    for (i, hb) in beats.iter().enumerate() {
        send(&s, &key, hb, H + 60 * (i as u64 + 1)).await;
    }
    assert!(!s.seal_heartbeats(H + 200, false).await.unwrap(), "not due");
    assert!(s.seal_heartbeats(H + 200, true).await.unwrap());
    s.close().await.unwrap();
    beats
}

fn verify_cli(dir: &Path) -> (bool, String) {
    let out = relay_cli(dir, &["audit", "verify"]);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Heartbeats accepted after the last seal are not in a row yet: `audit
/// verify` says how many, so an operator knows what the chain does not
/// cover until the next seal.
#[tokio::test]
async fn audit_verify_counts_heartbeats_not_yet_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), false).await;
    let (l, key) = (license(5, 3600), cluster_key(5));
    s.activate(activation(&l, &key, H)).await.unwrap();
    for seq in 1..=2 {
        send(&s, &key, &beat_with(&l, &key, seq, 3), H + seq).await;
    }
    s.close().await.unwrap();
    let (ok, out) = verify_cli(dir.path());
    assert!(ok, "{out}");
    assert!(out.contains("audit log intact: 1 rows"), "{out}");
    assert!(
        out.contains("2 heartbeat(s) accepted since the last seal"),
        "{out}"
    );
    // Once sealed, nothing is pending and the line is gone.
    let s = open(dir.path(), false).await;
    assert!(s.seal_heartbeats(H + 100, true).await.unwrap());
    s.close().await.unwrap();
    let (ok, out) = verify_cli(dir.path());
    assert!(ok && out.contains("audit log intact: 2 rows"), "{out}");
    assert!(!out.contains("since the last seal"), "{out}");
}

/// A minute's heartbeats are one audit row holding the Merkle root of
/// their leaves: anyone holding a heartbeat can recompute it (here one
/// heartbeat per minute, so the root is that heartbeat's leaf).
#[tokio::test]
async fn each_minute_audits_its_heartbeats_as_one_merkle_root() {
    let dir = tempfile::tempdir().unwrap();
    let beats = three_batches(dir.path()).await;
    let c = db(dir.path());
    let rows: Vec<(String, String)> = c
        .prepare("SELECT action, detail FROM audit ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0].0, "activate");
    for (row, hb) in rows[1..].iter().zip(&beats) {
        assert_eq!(row.0, "heartbeats");
        let detail: serde_json::Value = serde_json::from_str(&row.1).unwrap();
        assert_eq!(detail["heartbeats"], 1);
        assert_eq!(detail["since"], H + 60 * hb.seq);
        assert_eq!(detail["merkle_root"], hex(&heartbeat_leaf(hb)));
    }
    let (ok, out) = verify_cli(dir.path());
    assert!(ok && out.contains("audit log intact: 4 rows"), "{out}");
}

#[tokio::test]
async fn attack_heartbeat_batch_row_edited_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    three_batches(dir.path()).await;
    // Swap in another root, as someone hiding a heartbeat would.
    db(dir.path())
        .execute(
            "UPDATE audit SET detail = json_set(detail, '$.merkle_root', ?1) WHERE id = 3",
            [hex(&[0u8; 32])],
        )
        .unwrap();
    let (ok, out) = verify_cli(dir.path());
    assert!(!ok);
    assert!(
        out.contains("audit log broken at row 3 (heartbeats batch)"),
        "{out}"
    );
}

#[tokio::test]
async fn attack_heartbeat_batch_row_deleted_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    three_batches(dir.path()).await;
    db(dir.path())
        .execute("DELETE FROM audit WHERE id = 2", [])
        .unwrap();
    let (ok, out) = verify_cli(dir.path());
    assert!(!ok);
    assert!(out.contains("row 2 is missing"), "{out}");
}

#[tokio::test]
async fn attack_audit_log_truncated_after_heartbeat_batches_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    three_batches(dir.path()).await;
    db(dir.path())
        .execute("DELETE FROM audit WHERE id >= 3", [])
        .unwrap();
    let (ok, out) = verify_cli(dir.path());
    assert!(!ok);
    assert!(
        out.contains("the head records 4 rows but 2 chain correctly"),
        "{out}"
    );
}

/// The tables a relay of the previous release created (those this
/// release changes, and what the test writes to).
const OLD_SCHEMA: &str = "
CREATE TABLE clusters (
    cluster_id      TEXT PRIMARY KEY,
    license_id      TEXT NOT NULL,
    cluster_key     BLOB NOT NULL,
    hostname        TEXT NOT NULL,
    status          TEXT NOT NULL,
    activated_at    INTEGER NOT NULL,
    ended_at        INTEGER,
    last_seen       INTEGER NOT NULL,
    last_seq        INTEGER NOT NULL DEFAULT 0,
    heartbeat_time  INTEGER,
    state           TEXT,
    active_nodes    INTEGER NOT NULL DEFAULT 0,
    quotas          TEXT NOT NULL DEFAULT '{}',
    verifier_version TEXT,
    heartbeats      INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE heartbeats (
    id           INTEGER PRIMARY KEY,
    cluster_id   TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    time         INTEGER NOT NULL,
    received_at  INTEGER NOT NULL,
    state        TEXT NOT NULL,
    active_nodes INTEGER NOT NULL,
    quotas       TEXT NOT NULL
);
CREATE TABLE chain_heads (
    cluster_id  TEXT PRIMARY KEY,
    report_seq  INTEGER NOT NULL,
    report_hash BLOB,
    mark        INTEGER NOT NULL
);
CREATE TABLE audit (
    id       INTEGER PRIMARY KEY,
    time     INTEGER NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    subject  TEXT NOT NULL,
    detail   TEXT NOT NULL,
    hash     TEXT NOT NULL
);
CREATE TABLE audit_head (
    one   INTEGER PRIMARY KEY CHECK (one = 1),
    id    INTEGER NOT NULL,
    hash  TEXT NOT NULL
);
CREATE TABLE anomalies (
    id          INTEGER PRIMARY KEY,
    cluster_id  TEXT NOT NULL,
    license_id  TEXT NOT NULL,
    at          INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    detail      TEXT NOT NULL
);
";

/// `cargo test --release -p kaching-relay --test storage -- --ignored --nocapture`:
/// a year of heartbeat seal rows (one a minute, 525 600) walked whole, as
/// the audit page does when opened, and resumed from the head one row
/// back, as its live updates do; medians of 3.
#[test]
#[ignore = "bench: run by hand, see docs/benchmarks.md"]
fn bench_audit_walk_whole_and_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let c = kaching_relay::db::open_and_migrate(&dir.path().join("relay.db")).unwrap();
    c.execute_batch("BEGIN").unwrap();
    let detail =
        serde_json::json!({"heartbeats": 6000, "since": H, "merkle_root": "ab".repeat(32)});
    for i in 0..525_600u64 {
        kaching_relay::audit::append(&c, H + i * 60, "relay", "heartbeats", "batch", &detail)
            .unwrap();
    }
    c.execute_batch("COMMIT").unwrap();
    let whole = kaching_relay::audit::verify(&c).unwrap();
    let back: String = c
        .query_row(
            "SELECT hash FROM audit WHERE id = ?1",
            [whole.rows - 1],
            |r| r.get(0),
        )
        .unwrap();
    let median = |f: &dyn Fn()| {
        let mut t: Vec<_> = (0..3)
            .map(|_| {
                let at = std::time::Instant::now();
                f();
                at.elapsed()
            })
            .collect();
        t.sort();
        t[1]
    };
    let w = median(&|| assert_eq!(kaching_relay::audit::verify(&c).unwrap().rows, 525_600));
    let r = median(&|| {
        let v =
            kaching_relay::audit::verify_from(&c, Some((whole.rows - 1, back.clone()))).unwrap();
        assert_eq!(v.head, whole.head);
    });
    println!(
        "audit walk, {} rows: whole {:.1} ms, resumed one row back {:.3} ms, ratio {:.0}x",
        whole.rows,
        w.as_secs_f64() * 1e3,
        r.as_secs_f64() * 1e3,
        w.as_secs_f64() / r.as_secs_f64()
    );
}

/// A database from before names were unique among live tokens only (a
/// `UNIQUE` name column) is upgraded: its tokens are kept, a revoked
/// token's name can be reused, two live tokens still cannot share one.
#[test]
fn token_names_become_unique_among_live_tokens_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    {
        let mut c = kaching_relay::db::create_at_version(&path, 3).unwrap();
        kaching_relay::tokens::create(&mut c, Scope::Admin, "ops", H).unwrap();
        kaching_relay::tokens::revoke(&mut c, "ops", H + 1).unwrap();
        kaching_relay::tokens::create(&mut c, Scope::Whoosh, "whoosh", H).unwrap();
    }
    let mut c = kaching_relay::db::open_and_migrate(&path).unwrap();
    assert_eq!(count(&c, "PRAGMA user_version"), 4);
    assert_eq!(count(&c, "SELECT count(*) FROM tokens"), 2, "tokens kept");
    let again = kaching_relay::tokens::create(&mut c, Scope::Admin, "ops", H + 2).unwrap();
    assert_eq!(
        kaching_relay::tokens::lookup(&c, &again)
            .unwrap()
            .map(|t| t.2),
        Some(false)
    );
    assert!(kaching_relay::tokens::create(&mut c, Scope::Admin, "ops", H + 3).is_err());
    // The database itself refuses a second live name, whoever writes it.
    assert!(c
        .execute(
            "INSERT INTO tokens (hash, name, scope, created_at) VALUES ('x', 'whoosh', 'admin', 1)",
            [],
        )
        .is_err());
    kaching_relay::audit::verify(&c).unwrap();
}

#[tokio::test]
async fn token_names_become_unique_among_live_tokens_on_postgres() {
    use kaching_relay::storage::postgres;
    let Some(pg) = common::postgres::fresh().await else {
        return;
    };
    let mut client = pg.client().await;
    postgres::schema::migrate_through(&mut client, 6)
        .await
        .unwrap();
    let pool = postgres::pool(&pg.url).unwrap();
    postgres::admin::create_token(&pool, Scope::Admin, "ops", H)
        .await
        .unwrap();
    postgres::admin::revoke_token(&pool, "ops", H + 1)
        .await
        .unwrap();
    postgres::admin::create_token(&pool, Scope::Whoosh, "whoosh", H)
        .await
        .unwrap();
    assert!(
        postgres::admin::create_token(&pool, Scope::Admin, "ops", H + 2)
            .await
            .is_err(),
        "before the migration the name is still taken (the test can fail)"
    );
    let pool = postgres::connect_and_migrate(&pg.url).await.unwrap();
    postgres::admin::create_token(&pool, Scope::Admin, "ops", H + 2)
        .await
        .expect("a revoked token's name can be reused");
    assert!(
        postgres::admin::create_token(&pool, Scope::Admin, "ops", H + 3)
            .await
            .is_err()
    );
    assert!(client
        .batch_execute(
            "INSERT INTO tokens (hash, name, scope, created_at) VALUES ('x', 'whoosh', 'admin', 1)"
        )
        .await
        .is_err());
    assert_eq!(postgres::admin::list_tokens(&pool).await.unwrap().len(), 3);
}
