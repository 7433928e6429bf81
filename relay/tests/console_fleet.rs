//! The fleet page's filter, order and paging run in the database
//! (`Ask::Fleet`): on SQLite and (with `KACHING_TEST_POSTGRES`) on
//! PostgreSQL they must pick exactly the clusters the reference filter in
//! Rust (`console::view::select`, what the page did before over the whole
//! fleet) picks. The ignored bench times both at 10k and 100k clusters.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use kaching_core::wire::relay::ClusterRow;
use kaching_relay::console::data::{Answer, Ask, FleetPage};
use kaching_relay::console::pages::{fleet_ask, CLUSTERS_PER_LICENSE, LICENSES_PAGE};
use kaching_relay::console::view::{self, Filter};
use kaching_relay::storage::{self, Database, Storage};

const STATUSES: [&str; 3] = ["active", "deactivated", "displaced"];

/// Cluster `i` of a seeded fleet: (cluster id, license id, hostname,
/// status, flagged). Ids are scrambled so id order is not seed order;
/// each license has one cluster of each status (one live binding).
fn seeded(i: u64, n: u64) -> (String, String, String, &'static str, bool) {
    let scrambled = (i * 7919) % (n.max(1) * 7919 + 1);
    (
        format!("c{scrambled:012}"),
        format!("lic-{:08}", i / 3),
        format!(
            "Host-{}-{}",
            ["Alpha", "beta", "GAMMA"][(i % 3) as usize],
            i % 100
        ),
        STATUSES[(i % 3) as usize],
        i % 37 == 5,
    )
}

fn customer(license: u64) -> String {
    if license.is_multiple_of(10) {
        format!("ACME Corp {license}")
    } else {
        format!("Customer {license}")
    }
}

fn seed_sqlite(path: &std::path::Path, n: u64) {
    let mut conn = kaching_relay::db::open_and_migrate(path).unwrap();
    let tx = conn.transaction().unwrap();
    for l in 0..n.div_ceil(3) {
        tx.execute(
            "INSERT INTO licenses (license_id, bytes, customer, tier, expires_at, first_seen)
             VALUES (?1, x'', ?2, 'standard', 2000000000, 1)",
            rusqlite::params![format!("lic-{l:08}"), customer(l)],
        )
        .unwrap();
    }
    for i in 0..n {
        let (id, lic, host, status, flagged) = seeded(i, n);
        tx.execute(
            "INSERT INTO clusters (cluster_id, license_id, cluster_key, hostname, status,
                 activated_at, last_seen, heartbeats, active_nodes, quotas)
             VALUES (?1, ?2, x'00', ?3, ?4, 1, ?5, ?6, 3, '{\"api_calls\": 5}')",
            rusqlite::params![id, lic, host, status, 1000 + i, i % 50],
        )
        .unwrap();
        if flagged {
            for k in 0..2 {
                tx.execute(
                    "INSERT INTO anomalies (cluster_id, license_id, at, kind, detail)
                     VALUES (?1, ?2, ?3, 'seq_regression', 'restored snapshot')",
                    rusqlite::params![id, lic, 2000 + k],
                )
                .unwrap();
            }
        }
    }
    tx.commit().unwrap();
}

/// A day of hours for every seeded cluster, as heartbeats once a minute
/// leave them: the 23 hours before the hour of `now` closed in
/// `heartbeat_hours` (60 heartbeats each; hour `now - k` at counters
/// `api_calls` `100 - k`, `gpu_hours` `50 - k`, `seats` `30 - k`), the
/// current one on the cluster row (`beats` so far, counters 100, 50, 30).
/// Returns the first seeded hour.
fn seed_hours_sqlite(path: &std::path::Path, now: u64, beats: u64) -> u64 {
    let hour = now / 3600;
    let conn = kaching_relay::db::open_and_migrate(path).unwrap();
    conn.execute(
        "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 23)
         INSERT INTO heartbeat_hours (hour, cluster_id, beats, min_nodes, max_nodes, last_nodes, last_at, quotas)
         SELECT ?1 - k.i, cluster_id, 60, 2, 3 + k.i % 4, 3, (?1 - k.i) * 3600 + 3590,
                '{\"api_calls\":' || (100 - k.i) || ',\"gpu_hours\":' || (50 - k.i)
                    || ',\"seats\":' || (30 - k.i) || '}'
         FROM clusters, k",
        [hour],
    )
    .unwrap();
    conn.execute(
        "UPDATE clusters SET hour = ?1, hour_beats = ?2, hour_min_nodes = 2, hour_max_nodes = 3,
             hour_last_nodes = 3, hour_last_at = ?3,
             quotas = '{\"api_calls\":100,\"gpu_hours\":50,\"seats\":30}'",
        rusqlite::params![hour, beats, now],
    )
    .unwrap();
    hour - 23
}

async fn seed_postgres(url: &str, n: u64) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    // One transaction: one WAL flush for the whole fleet, not one per row.
    client.batch_execute("BEGIN").await.unwrap();
    for l in 0..n.div_ceil(3) {
        client
            .execute(
                "INSERT INTO licenses (license_id, bytes, customer, tier, expires_at, first_seen)
                 VALUES ($1, '\\x', $2, 'standard', 2000000000, 1)",
                &[&format!("lic-{l:08}"), &customer(l)],
            )
            .await
            .unwrap();
    }
    for i in 0..n {
        let (id, lic, host, status, flagged) = seeded(i, n);
        client
            .execute(
                "INSERT INTO clusters (cluster_id, license_id, cluster_key, hostname, status,
                     activated_at, last_seen, heartbeats, active_nodes, quotas)
                 VALUES ($1, $2, '\\x00', $3, $4, 1, $5, $6, 3, '{\"api_calls\": 5}')",
                &[
                    &id,
                    &lic,
                    &host,
                    &status,
                    &(1000 + i as i64),
                    &((i % 50) as i64),
                ],
            )
            .await
            .unwrap();
        if flagged {
            for k in 0..2i64 {
                client
                    .execute(
                        "INSERT INTO anomalies (cluster_id, license_id, at, kind, detail)
                         VALUES ($1, $2, $3, 'seq_regression', 'restored snapshot')",
                        &[&id, &lic, &(2000 + k)],
                    )
                    .await
                    .unwrap();
            }
        }
    }
    client.batch_execute("COMMIT").await.unwrap();
}

/// [`seed_hours_sqlite`] on PostgreSQL: the same day of hours.
async fn seed_hours_postgres(url: &str, now: u64, beats: u64) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let hour = i32::try_from(now / 3600).unwrap();
    client
        .execute(
            "INSERT INTO heartbeat_hours (hour, cluster_id, beats, min_nodes, max_nodes, last_nodes, last_at, quotas)
             SELECT $1 - k, cluster_id, 60, 2, 3 + k % 4, 3, ($1 - k)::bigint * 3600 + 3590,
                    '{\"api_calls\":' || (100 - k) || ',\"gpu_hours\":' || (50 - k)
                        || ',\"seats\":' || (30 - k) || '}'
             FROM clusters, generate_series(1, 23) AS k",
            &[&hour],
        )
        .await
        .unwrap();
    client
        .execute(
            "UPDATE clusters SET hour = $1, hour_beats = $2, hour_min_nodes = 2, hour_max_nodes = 3,
                 hour_last_nodes = 3, hour_last_at = $3,
                 quotas = '{\"api_calls\":100,\"gpu_hours\":50,\"seats\":30}'",
            &[&hour, &i32::try_from(beats).unwrap(), &i64::try_from(now).unwrap()],
        )
        .await
        .unwrap();
    client.batch_execute("ANALYZE").await.unwrap();
}

/// The whole fleet the way the page read it before, and the customers.
async fn everything(s: &Arc<dyn Storage>) -> (Vec<ClusterRow>, BTreeMap<String, String>) {
    let mut all = Vec::new();
    let mut after = String::new();
    loop {
        let rows = s.clusters(None, after, 10_000).await.unwrap();
        let done = rows.len() < 10_000;
        after = rows
            .last()
            .map(|r| r.cluster_id.clone())
            .unwrap_or_default();
        all.extend(rows);
        if done {
            break;
        }
    }
    let every = kaching_relay::console::data::LicenseList {
        limit: u32::MAX,
        ..Default::default()
    };
    let Answer::Licenses(l) = s.console(Ask::Licenses(every)).await.unwrap() else {
        panic!("licenses")
    };
    (
        all,
        l.shown
            .into_iter()
            .map(|l| (l.license_id, l.customer))
            .collect(),
    )
}

async fn in_the_database(s: &Arc<dyn Storage>, f: &Filter) -> FleetPage {
    let Answer::Fleet(p) = s.console(Ask::Fleet(fleet_ask(f))).await.unwrap() else {
        panic!("fleet")
    };
    p
}

fn filter(status: &str, q: &str, flagged: bool, page: usize) -> Filter {
    Filter {
        status: status.into(),
        q: q.into(),
        anomalies: flagged.then(|| "1".to_string()),
        page,
    }
}

async fn database_agrees_with_the_reference(s: Arc<dyn Storage>, n: u64) {
    let (all, customers) = everything(&s).await;
    assert_eq!(all.len() as u64, n);
    let mut checked = 0;
    for f in [
        filter("", "", false, 0),
        filter("", "", false, 1),
        filter("", "", false, 2),
        filter("active", "", false, 0),
        filter("displaced", "", false, 1),
        filter("", "", true, 0),
        filter("", "acme", false, 0),
        filter("", "ACME", false, 0),
        filter("", "host-gamma-1", false, 0),
        filter("", "  alpha ", false, 1),
        filter("deactivated", "beta", true, 0),
        filter("", "lic-0000001", false, 0),
        filter("", "c0000", false, 0),
        filter("", "no such thing", false, 0),
        filter("", "", false, 99),
        filter("bogus", "", false, 0),
        filter("", "%", false, 0),
        filter("", "_", false, 0),
    ] {
        let (want, matched) = view::select(&all, &customers, &f);
        let got = in_the_database(&s, &f).await;
        let ids = |rows: &[&ClusterRow]| {
            rows.iter()
                .map(|r| r.cluster_id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            got.rows
                .iter()
                .map(|r| r.cluster_id.clone())
                .collect::<Vec<_>>(),
            ids(&want),
            "{f:?}"
        );
        assert_eq!(got.matched, matched as u64, "{f:?}");
        for (g, w) in got.rows.iter().zip(&want) {
            assert_eq!(g.anomalies, w.anomalies, "{}", g.cluster_id);
            assert_eq!(g.hostname, w.hostname);
            assert_eq!(g.status, w.status);
            assert_eq!(g.quotas, w.quotas);
            assert_eq!(g.last_seen, w.last_seen);
            assert_eq!(
                got.customers.get(&g.license_id),
                customers.get(&g.license_id)
            );
        }
        let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
        for r in &all {
            *by_status.entry(r.status.clone()).or_default() += 1;
        }
        assert_eq!(got.by_status, by_status);
        assert_eq!(
            got.flagged,
            all.iter().filter(|r| !r.anomalies.is_empty()).count() as u64
        );
        checked += usize::from(!want.is_empty());
    }
    assert!(checked >= 12, "most filters should select something");
    // One license's clusters (scattered over the id range), read by license,
    // each with its own signs of rollback and no other cluster's.
    let mut flagged_seen = 0;
    for l in 0..(n / 3) {
        let lic = format!("lic-{l:08}");
        let mut want: Vec<&ClusterRow> = all.iter().filter(|r| r.license_id == lic).collect();
        want.sort_by(|a, b| a.cluster_id.cmp(&b.cluster_id));
        let got = s
            .clusters(Some(lic.clone()), String::new(), 100)
            .await
            .unwrap();
        assert_eq!(got.len(), want.len(), "{lic}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.cluster_id, w.cluster_id, "{lic}");
            assert_eq!(g.anomalies.len(), w.anomalies.len(), "{}", g.cluster_id);
            flagged_seen += usize::from(!g.anomalies.is_empty());
        }
    }
    assert!(flagged_seen > 0, "some license has a flagged cluster");
    s.close().await.unwrap();
}

#[tokio::test]
async fn fleet_filter_order_and_paging_in_sqlite_match_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    seed_sqlite(&path, 400);
    let s = storage::open(&Database::Sqlite(path), 64, false)
        .await
        .unwrap();
    database_agrees_with_the_reference(s, 400).await;
}

#[tokio::test]
async fn fleet_filter_order_and_paging_in_postgres_match_the_reference() {
    let Some(db) = postgres::fresh().await else {
        return;
    };
    let d = Database::Postgres(db.url.clone());
    // Opening creates the schema.
    storage::open(&d, 64, false)
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    seed_postgres(&db.url, 400).await;
    let s = storage::open(&d, 64, false).await.unwrap();
    database_agrees_with_the_reference(s, 400).await;
}

/// A license with more clusters than the licenses page lists under it
/// shows the first [`CLUSTERS_PER_LICENSE`] by id and sends the reader to
/// the fleet page, searched by the license, for the rest; one with few
/// lists them all. The page shows [`LICENSES_PAGE`] of the fleet's licenses.
#[tokio::test]
async fn licenses_page_lists_a_license_s_first_clusters_and_links_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let Database::Sqlite(path) = cfg.database().unwrap() else {
        panic!("sqlite")
    };
    seed_sqlite(&path, 300);
    {
        let conn = kaching_relay::db::open_and_migrate(&path).unwrap();
        // 30 more (deactivated) clusters of license 1, which has 3.
        for i in 0..30 {
            conn.execute(
                "INSERT INTO clusters (cluster_id, license_id, cluster_key, hostname, status,
                     activated_at, last_seen, heartbeats, active_nodes, quotas)
                 VALUES (?1, 'lic-00000001', x'00', 'extra', 'deactivated', 1, 1, 0, 0, '{}')",
                [format!("x{i:04}")],
            )
            .unwrap();
        }
    }
    let (r, cookie) = signed_in(dir, cfg, &path).await;
    let http = reqwest::Client::new();
    let page = |path: &str| page_as(&http, r.url(path), &cookie);
    let listed = |body: &str| body.matches("<li><code>").count();
    let many = page("/console/licenses?license=lic-00000001").await;
    assert_eq!(listed(&many), CLUSTERS_PER_LICENSE as usize, "{many}");
    assert!(
        many.contains(r#"<a href="/console/?q=lic-00000001">Every cluster of this license</a>"#),
        "{many}"
    );
    let few = page("/console/licenses?license=lic-00000002").await;
    assert_eq!(listed(&few), 3, "{few}");
    assert!(!few.contains("Every cluster of this license"), "{few}");
    let all = page("/console/licenses").await;
    assert_eq!(all.matches(r#"class="license""#).count(), LICENSES_PAGE);
    assert!(
        all.contains(&format!("Licenses 1–{LICENSES_PAGE} of 100")),
        "{all}"
    );
    r.stop().await;
}

/// The licenses page's sparklines count every heartbeat of the last 24
/// hours of each license it shows, summed over the license's clusters,
/// in a fleet whose day of heartbeats (1 000 clusters once a minute,
/// ~1.4 million) is far more than the 20 000 newest heartbeats the page
/// once read fleet-wide (which left all but the current hour of a few
/// hundred clusters out); the quota line ends at the current counter. A
/// page of such licenses stays within the 100 KiB budget.
#[tokio::test]
async fn licenses_page_sparklines_count_every_hour_of_a_busy_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let Database::Sqlite(path) = cfg.database().unwrap() else {
        panic!("sqlite")
    };
    seed_sqlite(&path, 1_000);
    let first = seed_hours_sqlite(&path, now(), 7);
    {
        // The heaviest page: licenses with more clusters than a section
        // lists (deactivated ones, no heartbeats), long host names, and as
        // many renewals at risk as the table shows and more.
        let conn = kaching_relay::db::open_and_migrate(&path).unwrap();
        conn.execute(
            "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < 29)
             INSERT INTO clusters (cluster_id, license_id, cluster_key, hostname, status,
                 activated_at, last_seen, heartbeats, active_nodes, quotas)
             SELECT 'x' || l.license_id || '-' || k.i, l.license_id, x'00',
                    'build-node-' || k.i || '.eu-central.example.com', 'deactivated', 1, 1, 0, 0, '{}'
             FROM licenses l, k",
            [],
        )
        .unwrap();
        conn.execute(
            "UPDATE licenses SET expires_at = ?1 + 86400 * (1 + rowid % 29)",
            [now()],
        )
        .unwrap();
        // Five upgrade requests per license, 120-character messages.
        conn.execute(
            "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 5)
             INSERT INTO upgrade_requests (license_id, cluster_id, requested_tier, message, time,
                                           received_at, source)
             SELECT license_id, '', 'enterprise', substr(hex(zeroblob(60)), 1, 120) || k.i, k.i,
                    1000 + k.i, 'whoosh'
             FROM licenses, k",
            [],
        )
        .unwrap();
    }
    let (r, cookie) = signed_in(dir, cfg, &path).await;
    let http = reqwest::Client::new();
    // The page's 24 hours end with the hour it is read in: fetched again
    // if an hour began meanwhile.
    let (body, hour) = loop {
        let before = now() / 3600;
        let body = page_as(
            &http,
            r.url("/console/licenses?license=lic-00000000"),
            &cookie,
        )
        .await;
        if now() / 3600 == before {
            break (body, before);
        }
    };
    // Per cluster: 60 in each closed hour still in the page's window, 7 in the current one.
    let per_cluster: u64 = (first..first + 23)
        .filter(|h| *h + 23 >= hour && *h <= hour)
        .map(|_| 60)
        .sum::<u64>()
        + if first + 23 + 23 >= hour { 7 } else { 0 };
    assert!(per_cluster >= 60 * 22, "the seeded day is the page's day");
    assert!(
        body.contains(&format!(
            r#"<span class="beats">{}</span>"#,
            3 * per_cluster
        )),
        "three clusters' heartbeats, every hour: {body}"
    );
    assert!(body.contains("<code>api_calls</code>"), "{body}");
    assert!(body.contains(" now 100</li>"), "{body}");
    // A full page of such licenses (a day of heartbeats and three quota
    // counters each, 33 clusters of which 5 are listed, 5 upgrade
    // requests), with 334 renewals at risk, stays within the consoles'
    // 100 KiB budget with its stylesheet and script.
    let full = page_as(&http, r.url("/console/licenses"), &cookie).await;
    assert_eq!(full.matches(r#"class="license""#).count(), LICENSES_PAGE);
    assert_eq!(
        full.matches(r#"<svg class="spark""#).count(),
        5 * LICENSES_PAGE
    );
    assert_eq!(
        full.matches("<li><code>").count(),
        LICENSES_PAGE * (3 + CLUSTERS_PER_LICENSE as usize),
        "quota lines and listed clusters"
    );
    assert!(full.contains("334 license(s) expire in the next 30 days. The 20 soonest"));
    let weight = with_assets(&http, &r, &full).await;
    eprintln!("licenses page weight: {weight} bytes with the stylesheet and script");
    assert!(weight < 100 * 1024, "{weight} bytes");
    r.stop().await;
}

/// Upgrade requests at scale on the pages: 1 200 stored with 200-character
/// messages, license 0's five the oldest. Its section on the licenses
/// page shows its newest three and links to the inbox for all five (the
/// page once took the newest 1 000 fleet-wide and showed none); the inbox
/// pages newest first, filters by license with the customer, and a page
/// stays within the 100 KiB budget.
#[tokio::test]
async fn upgrade_requests_page_by_license_and_stay_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let Database::Sqlite(path) = cfg.database().unwrap() else {
        panic!("sqlite")
    };
    seed_sqlite(&path, 300);
    kaching_relay::db::open_and_migrate(&path)
        .unwrap()
        .execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1200)
             INSERT INTO upgrade_requests (license_id, cluster_id, requested_tier, message, time,
                                           received_at, source)
             SELECT CASE WHEN i <= 5 THEN 'lic-00000000' ELSE 'lic-00000001' END,
                    'c000000000000', 'enterprise', 'm' || i || ' ' || substr(hex(zeroblob(100)), 1, 200),
                    i, 1000 + i, 'heartbeat'
             FROM n ORDER BY i",
            [],
        )
        .unwrap();
    let (r, cookie) = signed_in(dir, cfg, &path).await;
    let http = reqwest::Client::new();
    let page = |path: &str| page_as(&http, r.url(path), &cookie);
    let first = page("/console/licenses?license=lic-00000000").await;
    for (m, shown) in [("m5 ", true), ("m4 ", true), ("m3 ", true), ("m2 ", false)] {
        assert_eq!(first.contains(&format!("— {m}")), shown, "{m}: {first}");
    }
    assert!(first.contains("The newest 3 of 5."), "{first}");
    assert!(
        first.contains(
            r#"<a href="/console/inbox?license=lic-00000000">All of this license's requests</a>"#
        ),
        "{first}"
    );
    let rows = |body: &str| body.matches("<tr><td>").count();
    let inbox = page("/console/inbox").await;
    assert_eq!(rows(&inbox), 50);
    assert!(
        inbox.contains("Requests 1–50 of 1200, newest first."),
        "{inbox}"
    );
    assert!(inbox.contains("<td>m1200 "), "{inbox}");
    assert!(
        inbox.contains(r#"<a href="/console/inbox?page=2" rel="next">"#),
        "{inbox}"
    );
    assert!(
        inbox.contains(r#"data-live="/console/inbox/live""#),
        "{inbox}"
    );
    // Pages count from 1, as the page says; 0 is the first page too.
    let zero = page("/console/inbox?page=0").await;
    assert!(
        zero.contains("Requests 1–50 of 1200, newest first."),
        "{zero}"
    );
    let second = page("/console/inbox?page=2").await;
    assert!(
        second.contains("Requests 51–100 of 1200, newest first."),
        "{second}"
    );
    assert!(
        second.contains(r#"<a href="/console/inbox" rel="prev">"#)
            && second.contains(r#"<a href="/console/inbox?page=3" rel="next">"#),
        "{second}"
    );
    let older = page("/console/inbox?page=24").await;
    assert_eq!(rows(&older), 50);
    assert!(
        older.contains("<td>m50 ") && older.contains("<td>m1 "),
        "{older}"
    );
    assert!(
        older.contains(r#"data-live="/console/inbox/live?page=24""#),
        "{older}"
    );
    assert!(!older.contains(r#"rel="next""#), "{older}");
    // The fleet (300 clusters, 50 a page) counts pages from 1 as well.
    for first in ["/console/", "/console/?page=0", "/console/?page=1"] {
        let fleet = page(first).await;
        assert!(
            fleet.contains(r#"<a href="/console/?page=2" rel="next">"#)
                && !fleet.contains(r#"rel="prev""#),
            "{first}: {fleet}"
        );
    }
    let fleet = page("/console/?page=6").await;
    assert!(
        fleet.contains(r#"<a href="/console/?page=5" rel="prev">"#)
            && !fleet.contains(r#"rel="next""#)
            && fleet.contains(r#"data-live="/console/live?page=6""#),
        "{fleet}"
    );
    let past = page("/console/inbox?page=25").await;
    assert!(
        past.contains("Page 25 is past the last request (1200 in all)."),
        "{past}"
    );
    let one = page("/console/inbox?license=lic-00000000").await;
    assert_eq!(rows(&one), 5);
    assert!(one.contains("Requests 1–5 of 5, newest first."), "{one}");
    assert!(one.contains("ACME Corp 0<br>"), "the customer: {one}");
    assert!(
        one.contains(r#"data-live="/console/inbox/live?license=lic-00000000""#),
        "{one}"
    );
    let weight = with_assets(&http, &r, &inbox).await;
    eprintln!("inbox page weight: {weight} bytes with the stylesheet and script");
    assert!(weight < 100 * 1024, "{weight} bytes");
    r.stop().await;
}

/// The licenses page pages through every license, however many: with
/// 10 001 the last is on page 501 (the page once read the 10 000 soonest to
/// expire and could not reach it), and the renewals count covers all.
#[tokio::test]
async fn licenses_page_reaches_every_license_past_ten_thousand() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let Database::Sqlite(path) = cfg.database().unwrap() else {
        panic!("sqlite")
    };
    kaching_relay::db::open_and_migrate(&path)
        .unwrap()
        .execute(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 10000)
             INSERT INTO licenses (license_id, bytes, customer, tier, expires_at, first_seen)
             SELECT printf('lic-%08d', i), x'', 'Customer ' || i, 'standard', ?1 + 60 + i * 60, 1 FROM n",
            [now()],
        )
        .unwrap();
    let (r, cookie) = signed_in(dir, cfg, &path).await;
    let http = reqwest::Client::new();
    let last = page_as(&http, r.url("/console/licenses?page=501"), &cookie).await;
    assert!(last.contains("Licenses 10001–10001 of 10001"), "{last}");
    assert!(last.contains(r#"id="l-lic-00010000""#), "{last}");
    assert!(
        last.contains("10001 license(s) expire in the next 30 days. The 20 soonest"),
        "{last}"
    );
    r.stop().await;
}

/// A relay started over the seeded database at `path` and a console
/// session cookie of an admin token made for it.
async fn signed_in(
    dir: tempfile::TempDir,
    cfg: kaching_relay::config::Config,
    path: &std::path::Path,
) -> (Relay, String) {
    let admin = {
        let mut conn = kaching_relay::db::open_and_migrate(path).unwrap();
        kaching_relay::tokens::create(&mut conn, kaching_relay::tokens::Scope::Admin, "ops", now())
            .unwrap()
    };
    let r = Relay::start_with(dir, cfg).await;
    let cookie = format!(
        "kaching_session={}",
        kaching_relay::console::session::issue("ops", &kaching_relay::tokens::hash(&admin), now())
    );
    (r, cookie)
}

/// The bytes of `page` with the console's stylesheet and script: what the
/// 100 KiB budget counts.
async fn with_assets(http: &reqwest::Client, r: &Relay, page: &str) -> usize {
    let mut weight = page.len();
    for a in ["/console/assets/kaching.css", "/console/assets/live.js"] {
        weight += http
            .get(r.url(a))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .len();
    }
    weight
}

/// A console page fetched with a session cookie; it must answer 200.
async fn page_as(http: &reqwest::Client, url: String, cookie: &str) -> String {
    let resp = http
        .get(&url)
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{url}");
    resp.text().await.unwrap()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// `cargo test --release -p kaching-relay --test console_fleet -- --ignored --nocapture`:
/// the fleet page's reads before (whole fleet read, filtered in Rust) and
/// after (`Ask::Fleet`), interleaved, then the whole page over loopback
/// HTTP (a serving relay holds the database's lock, so not at the same
/// time), at 10k and 100k clusters on SQLite; medians of 5 runs. Also the
/// whole licenses page (over a day of heartbeat hours) and the revocations
/// page's propagation counts.
#[tokio::test]
#[ignore = "bench: run by hand, see docs/benchmarks.md"]
async fn bench_fleet_page_at_10k_and_100k_clusters() {
    for n in [10_000u64, 100_000] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let Database::Sqlite(path) = cfg.database().unwrap() else {
            panic!("sqlite")
        };
        seed_sqlite(&path, n);
        // A day of heartbeats once a minute (the licenses page's sparklines).
        seed_hours_sqlite(&path, now(), 30);
        // The reads first, on a storage of the bench's own: a serving relay
        // holds the database's lock, so the pages are timed after.
        let s = storage::open(&Database::Sqlite(path.clone()), 64, false)
            .await
            .unwrap();
        for (label, f) in [
            ("first page", filter("", "", false, 0)),
            ("search", filter("", "acme", false, 0)),
        ] {
            let (mut before, mut after) = (Vec::new(), Vec::new());
            for _ in 0..5 {
                let t = Instant::now();
                let (all, customers) = everything(&s).await;
                let (rows, _) = view::select(&all, &customers, &f);
                assert!(!rows.is_empty());
                before.push(t.elapsed());
                let t = Instant::now();
                let p = in_the_database(&s, &f).await;
                assert!(!p.rows.is_empty());
                after.push(t.elapsed());
            }
            let (b, a) = (median(before), median(after));
            println!(
                "fleet {n} clusters, {label}: before (read all, filter in Rust) {:.1} ms; \
                 after (SQL) {:.1} ms; ratio before/after {:.1}x",
                b.as_secs_f64() * 1e3,
                a.as_secs_f64() * 1e3,
                b.as_secs_f64() / a.as_secs_f64(),
            );
        }
        // The revocations page's propagation: before, every cluster read
        // and split in Rust; now counted (and the longest silent listed)
        // by the database. Half the seeded clusters were seen after `since`.
        let since = 1000 + n / 2;
        let (mut before, mut after) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            let t = Instant::now();
            let (all, _) = everything(&s).await;
            let (reached, silent): (Vec<&ClusterRow>, Vec<&ClusterRow>) =
                all.iter().filter(|c| c.status == "active").partition(|c| {
                    kaching_core::time::parse_rfc3339(&c.last_seen).is_some_and(|t| t >= since)
                });
            before.push(t.elapsed());
            let t = Instant::now();
            let Answer::Propagation(p) = s.console(Ask::Propagation { since }).await.unwrap()
            else {
                panic!("propagation")
            };
            after.push(t.elapsed());
            assert_eq!(
                (p.reached, p.silent),
                (reached.len() as u64, silent.len() as u64),
                "the database counts what the page counted"
            );
        }
        let (b, a) = (median(before), median(after));
        println!(
            "propagation {n} clusters: before (read all, split in Rust) {:.1} ms; after (SQL) {:.1} ms; ratio {:.1}x",
            b.as_secs_f64() * 1e3,
            a.as_secs_f64() * 1e3,
            b.as_secs_f64() / a.as_secs_f64()
        );
        s.close().await.unwrap();

        // The whole pages over loopback HTTP.
        let (r, cookie) = signed_in(dir, cfg, &path).await;
        let http = reqwest::Client::new();
        for (label, query) in [("first page", ""), ("search", "?q=acme")] {
            let mut page = Vec::new();
            for _ in 0..5 {
                let t = Instant::now();
                let body = page_as(&http, r.url(&format!("/console/{query}")), &cookie).await;
                assert!(body.contains("cluster(s) match"));
                page.push(t.elapsed());
            }
            println!(
                "fleet {n} clusters, {label}: whole page over HTTP {:.1} ms",
                median(page).as_secs_f64() * 1e3
            );
        }
        // The licenses page: renewals over every license, one page of
        // licenses in full, each with its own clusters.
        let mut licenses_page = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let body = page_as(&http, r.url("/console/licenses"), &cookie).await;
            assert!(body.contains("lic-00000000"), "the first license is shown");
            licenses_page.push((t.elapsed(), body.len()));
        }
        licenses_page.sort();
        let (lt, lbytes) = licenses_page[licenses_page.len() / 2];
        let body = page_as(&http, r.url("/console/licenses"), &cookie).await;
        let shown = body
            .split(r#"<span class="beats">"#)
            .nth(1)
            .and_then(|s| s.split('<').next())
            .unwrap_or("?");
        println!(
            "licenses page {n} clusters: whole page over HTTP {:.1} ms, {} KiB; \
             the first license's heartbeats in 24 h: {shown} (seeded: 3 x (23 x 60 + 30) = 4230)",
            lt.as_secs_f64() * 1e3,
            lbytes / 1024
        );
        r.stop().await;
    }
}

/// `eval "$(bash scripts/ci-postgres)"; cargo test --release -p kaching-relay --test console_fleet -- --ignored --nocapture postgres_against_sqlite`:
/// every console page over loopback HTTP from a relay on PostgreSQL and
/// one on SQLite holding the same fleet (a day of heartbeat hours), at 10k
/// and 100k clusters; medians of 5 rounds, the two relays alternating
/// within each round.
#[tokio::test]
#[ignore = "bench: run by hand, see docs/benchmarks.md"]
async fn bench_console_pages_on_postgres_against_sqlite() {
    if postgres::server().is_none() {
        return;
    }
    let http = reqwest::Client::new();
    for n in [10_000u64, 100_000] {
        let t = Instant::now();
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let Database::Sqlite(path) = cfg.database().unwrap() else {
            panic!("sqlite")
        };
        seed_sqlite(&path, n);
        seed_hours_sqlite(&path, now(), 30);
        let (lite, lite_cookie) = signed_in(dir, cfg, &path).await;

        let db = postgres::fresh().await.unwrap();
        let url = db.url.clone();
        storage::open(&Database::Postgres(url.clone()), 64, false)
            .await
            .unwrap()
            .close()
            .await
            .unwrap();
        seed_postgres(&url, n).await;
        seed_hours_postgres(&url, now(), 30).await;
        let admin = pg_token(&url, kaching_relay::tokens::Scope::Admin, "ops");
        let pdir = tempfile::tempdir().unwrap();
        let mut pcfg = config(pdir.path());
        pcfg.database = Some(kaching_relay::config::DatabaseUrl(url));
        let pg = Relay::start_on(pdir, pcfg, Some(db)).await;
        let pg_cookie = format!(
            "kaching_session={}",
            kaching_relay::console::session::issue(
                "ops",
                &kaching_relay::tokens::hash(&admin),
                now()
            )
        );
        println!(
            "{n} clusters seeded on both backends in {:.0} s",
            t.elapsed().as_secs_f64()
        );
        let both = [(&lite, &lite_cookie), (&pg, &pg_cookie)];
        for (label, page, expect) in [
            ("fleet page, first", "/console/", "cluster(s) match"),
            ("fleet page, search", "/console/?q=acme", "cluster(s) match"),
            ("licenses page", "/console/licenses", "lic-00000000"),
            ("revocations page", "/console/revocations", "<h1"),
            ("inbox page", "/console/inbox", "<h1"),
            ("audit page", "/console/audit", "<h1"),
        ] {
            let mut times = [Vec::new(), Vec::new()];
            for _ in 0..5 {
                for (k, (r, cookie)) in both.iter().enumerate() {
                    let t = Instant::now();
                    let body = page_as(&http, r.url(page), cookie).await;
                    times[k].push(t.elapsed());
                    assert!(body.contains(expect), "{label} on relay {k}");
                }
            }
            let [l, p] = times.map(median);
            println!(
                "{n} clusters, {label}: SQLite {:.1} ms, PostgreSQL {:.1} ms, PostgreSQL / SQLite {:.2}",
                l.as_secs_f64() * 1e3,
                p.as_secs_f64() * 1e3,
                p.as_secs_f64() / l.as_secs_f64()
            );
        }
        lite.stop().await;
        pg.stop().await;
    }
}
