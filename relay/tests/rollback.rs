//! Signs of rollback in connected mode (docs/threat-model.md, "Rollback of
//! the state database"): a cluster whose state database was restored, or a
//! clone beating with the same key, shows in `GET /v1/clusters`, in the
//! license status the vendor reads, and in the audit log, while a plain
//! replay of a recorded heartbeat does not; nor does a mark lowered by a
//! clock reset the heartbeat carries.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns

mod common;

use common::*;
use kaching_core::clock_reset::ClockReset;
use kaching_core::heartbeat::ChainHead;
use kaching_core::wire::relay::{
    accepts, ClusterPage, ACCEPTS_CHAIN_HEAD, ACCEPTS_CLOCK_RESET, ACCEPTS_HEADER,
};
use kaching_core::wire::LicenseStatus;
use kaching_core::{armor, DocKind, SecretKey};
use kaching_relay::tokens::Scope;

fn head(report_seq: u64, hash: u8, mark: u64) -> Option<ChainHead> {
    Some(ChainHead {
        report_seq,
        report_hash: (report_seq > 0).then_some([hash; 32]),
        mark,
        reset: None,
    })
}

/// Whether the answer `r` announces `token` in `Kaching-Accepts`.
fn announces(r: &reqwest::Response, token: &str) -> bool {
    accepts(
        r.headers()
            .get_all(ACCEPTS_HEADER)
            .iter()
            .filter_map(|v| v.to_str().ok()),
        token,
    )
}

/// The kinds of the rollback signs listed for the only cluster.
async fn kinds(relay: &Relay, admin: &str) -> Vec<String> {
    let (status, page) = relay.get_as::<ClusterPage>("/v1/clusters", admin).await;
    assert_eq!(status, 200);
    page.clusters[0]
        .anomalies
        .iter()
        .map(|a| a.kind.clone())
        .collect()
}

#[tokio::test]
async fn relay_announces_it_reads_the_chain_head() {
    let relay = Relay::start().await;
    let l = license(30, 3600);
    let c = cluster_key(1);
    let r = relay.activate(&l, &c).await;
    assert_eq!(r.status(), 200);
    assert!(announces(&r, ACCEPTS_CHAIN_HEAD));
    assert!(announces(&r, ACCEPTS_CLOCK_RESET));
    let hb = kaching_core::heartbeat::Heartbeat {
        chain: head(2, 2, now() - 10),
        ..beat(&l, &c, 1)
    };
    let r = relay.post_beat("/v1/heartbeat", &hb, &c).await;
    assert_eq!(r.status(), 200);
    assert!(announces(&r, ACCEPTS_CHAIN_HEAD));
    assert!(announces(&r, ACCEPTS_CLOCK_RESET));
    let admin = relay.token(Scope::Admin, "admin");
    let (_, page) = relay.get_as::<ClusterPage>("/v1/clusters", &admin).await;
    assert_eq!(page.clusters[0].report_seq, Some(2));
    assert!(page.clusters[0].anomalies.is_empty());
    relay.stop().await;
}

#[tokio::test]
async fn restored_state_database_shows_as_chain_head_and_mark_going_back() {
    let relay = Relay::start().await;
    let l = license(31, 3600);
    let c = cluster_key(1);
    relay.activate(&l, &c).await;
    let t = now();
    for (seq, chain) in [(1, head(4, 4, t - 20)), (2, head(5, 5, t - 10))] {
        let hb = kaching_core::heartbeat::Heartbeat {
            chain,
            ..beat(&l, &c, seq)
        };
        assert_eq!(
            relay.post_beat("/v1/heartbeat", &hb, &c).await.status(),
            200
        );
    }
    let admin = relay.token(Scope::Admin, "admin");
    assert!(
        kinds(&relay, &admin).await.is_empty(),
        "a growing head is clean"
    );
    // The state database from before reports 4 and 5 is restored: an
    // older head and an older trusted-time mark. The heartbeat is accepted
    // (its sequence number is fresh), and flagged.
    let hb = kaching_core::heartbeat::Heartbeat {
        chain: head(3, 3, t - 30),
        ..beat(&l, &c, 3)
    };
    assert_eq!(
        relay.post_beat("/v1/heartbeat", &hb, &c).await.status(),
        200
    );
    assert_eq!(kinds(&relay, &admin).await, ["time_back", "head_back"]);
    // Two different reports named as number 3: a fork.
    let hb = kaching_core::heartbeat::Heartbeat {
        chain: head(3, 0xee, t - 5),
        ..beat(&l, &c, 4)
    };
    assert_eq!(
        relay.post_beat("/v1/heartbeat", &hb, &c).await.status(),
        200
    );
    assert_eq!(kinds(&relay, &admin).await[0], "fork");
    // The vendor's license status says it too, in a sentence.
    let whoosh = relay.token(Scope::Whoosh, "whoosh");
    let (status, s) = relay
        .get_as::<LicenseStatus>(&format!("/v1/licenses/{}/status", l.id), &whoosh)
        .await;
    assert_eq!(status, 200);
    assert!(
        s.warnings
            .iter()
            .any(|w| w.contains("report chain went back") && w.contains("restored")),
        "{:?}",
        s.warnings
    );
    // Each sign is an audit entry, and the chain still verifies.
    let dir = relay.stop().await;
    let conn = kaching_relay::db::open(&dir.path().join("relay.db")).unwrap();
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM audit WHERE action = 'anomaly'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 3);
    kaching_relay::audit::verify(&conn).unwrap();
}

#[tokio::test]
async fn heartbeat_counter_going_back_is_flagged_but_a_replay_is_not() {
    let relay = Relay::start().await;
    let l = license(32, 3600);
    let c = cluster_key(1);
    relay.activate(&l, &c).await;
    let mut accepted = beat(&l, &c, 5);
    accepted.time = now() - 30;
    assert_eq!(
        relay
            .post_beat("/v1/heartbeat", &accepted, &c)
            .await
            .status(),
        200
    );
    let admin = relay.token(Scope::Admin, "admin");
    // A recording played back (same bytes, or any older one): refused, no sign.
    let mut older = beat(&l, &c, 4);
    older.time = now() - 40;
    for hb in [&accepted, &older] {
        let (status, code) = error_code(relay.post_beat("/v1/heartbeat", hb, &c).await).await;
        assert_eq!((status, code.as_str()), (409, "replayed_heartbeat"));
    }
    assert!(kinds(&relay, &admin).await.is_empty());
    // A restored cluster (or a clone) signs a new heartbeat, now, with a
    // number already used: refused as ever, and flagged.
    let (status, code) =
        error_code(relay.post_beat("/v1/heartbeat", &beat(&l, &c, 3), &c).await).await;
    assert_eq!((status, code.as_str()), (409, "replayed_heartbeat"));
    assert_eq!(kinds(&relay, &admin).await, ["beat_back"]);
    relay.stop().await;
}

#[tokio::test]
async fn chain_head_withheld_after_being_sent_is_flagged_once() {
    let relay = Relay::start().await;
    let l = license(33, 3600);
    let c = cluster_key(1);
    relay.activate(&l, &c).await;
    let hb = kaching_core::heartbeat::Heartbeat {
        chain: head(2, 2, now() - 10),
        ..beat(&l, &c, 1)
    };
    assert_eq!(
        relay.post_beat("/v1/heartbeat", &hb, &c).await.status(),
        200
    );
    for seq in [2, 3] {
        let r = relay
            .post_beat("/v1/heartbeat", &beat(&l, &c, seq), &c)
            .await;
        assert_eq!(r.status(), 200);
    }
    let admin = relay.token(Scope::Admin, "admin");
    assert_eq!(kinds(&relay, &admin).await, ["head_withheld"]);
    relay.stop().await;
}

// Clock resets (docs/format.md §7.9): a cluster that took one carries it in
// its chain head, so its mark going back is no sign of rollback. The relay
// runs under a root of trust, so the issuer and the revoker are different
// keys: only the issuer's reset counts.

/// Seed of the root's revoker in these tests.
const REVOKER: u8 = 60;
const DAY: u64 = 86_400;

/// A relay under a root (issuer [`ROOT_ISSUER`], revoker [`REVOKER`]), on
/// SQLite or on a fresh PostgreSQL database (`None`: no server).
async fn relay_with_issuer(postgres: bool) -> Option<Relay> {
    let pg = match postgres {
        true => Some(common::postgres::fresh().await?),
        false => None,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("root.kaching");
    let root = sign_root(&test_root(1, &[41, 42, 43], REVOKER), &[41, 42]);
    std::fs::write(&path, armor::armor(DocKind::Root, &root)).unwrap();
    let mut c = config(dir.path());
    c.root = Some(path);
    if let Some(db) = &pg {
        c.database = Some(kaching_relay::config::DatabaseUrl(db.url.clone()));
    }
    Some(Relay::start_on(dir, c, pg).await)
}

/// Activates `c` with `l` signed by the root's issuer.
async fn activate_by_issuer(relay: &Relay, l: &kaching_core::license::License, c: &SecretKey) {
    let mut body = activation_body(l, c);
    body.license = armored_license(l, &seed_key(ROOT_ISSUER));
    let r = relay
        .http
        .post(relay.url("/v1/activate"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
}

/// A reset for `cluster` of the mark `ahead`, signed a minute ago by `by`.
fn reset_for(cluster: &SecretKey, ahead: u64, by: &SecretKey) -> (ClockReset, Vec<u8>) {
    let t = now();
    let r = ClockReset::new(
        &kaching_core::cluster_id(&cluster.public()),
        ahead,
        t - 60,
        t + 14 * DAY,
    );
    let bytes = r.sign(by);
    (r, bytes)
}

/// Heartbeat `seq` of `c` naming report `report` and `mark`, carrying `reset`.
fn beat_with_head(
    l: &kaching_core::license::License,
    c: &SecretKey,
    seq: u64,
    report: u64,
    mark: u64,
    reset: Option<Vec<u8>>,
) -> kaching_core::heartbeat::Heartbeat {
    let mut chain = head(report, report as u8, mark);
    if let Some(h) = chain.as_mut() {
        h.reset = reset;
    }
    kaching_core::heartbeat::Heartbeat {
        chain,
        ..beat(l, c, seq)
    }
}

/// The audit rows of `action` (actor, subject, detail), read on either
/// backend; the relay is stopped (on SQLite after checking the chain).
async fn audit_then_stop(relay: Relay, action: &str) -> Vec<(String, String, serde_json::Value)> {
    let parse = |(actor, subject, detail): (String, String, String)| {
        (actor, subject, serde_json::from_str(&detail).unwrap())
    };
    if let Some(pg) = &relay.pg {
        let client = pg.client().await;
        let rows = client
            .query(
                "SELECT actor, subject, detail FROM audit WHERE action = $1 ORDER BY id",
                &[&action],
            )
            .await
            .unwrap();
        let out = rows
            .iter()
            .map(|r| parse((r.get(0), r.get(1), r.get(2))))
            .collect();
        drop(client);
        relay.stop().await;
        return out;
    }
    let dir = relay.stop().await;
    let conn = kaching_relay::db::open(&dir.path().join("relay.db")).unwrap();
    kaching_relay::audit::verify(&conn).unwrap();
    let mut st = conn
        .prepare("SELECT actor, subject, detail FROM audit WHERE action = ?1 ORDER BY id")
        .unwrap();
    let rows = st
        .query_map([action], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(|r| parse(r.unwrap()))
        .collect();
    rows
}

async fn explained(postgres: bool) {
    let Some(relay) = relay_with_issuer(postgres).await else {
        return;
    };
    let l = license(34, 3600);
    let c = cluster_key(1);
    let cluster = kaching_core::cluster_id(&c.public());
    activate_by_issuer(&relay, &l, &c).await;
    let t = now();
    let ahead = t + 900 * DAY; // a clock once wrong by years
    let ok = |r: reqwest::Response| {
        assert_eq!(r.status(), 200);
        r
    };
    ok(relay
        .post_beat(
            "/v1/heartbeat",
            &beat_with_head(&l, &c, 1, 2, ahead, None),
            &c,
        )
        .await);
    // The vendor signs a reset; the cluster takes it (its mark goes down to
    // the reset's time) and its next heartbeat carries it.
    let (reset, bytes) = reset_for(&c, ahead, &seed_key(ROOT_ISSUER));
    let hb = beat_with_head(&l, &c, 2, 2, reset.issued + 30, Some(bytes.clone()));
    let r = ok(relay.post_beat("/v1/heartbeat", &hb, &c).await);
    assert!(announces(&r, ACCEPTS_CLOCK_RESET));
    let admin = relay.token(Scope::Admin, "admin");
    assert!(
        kinds(&relay, &admin).await.is_empty(),
        "a mark lowered by a clock reset is no sign of rollback"
    );
    // The answer was lost, so the next heartbeat carries it again: the mark
    // did not go back this time, nothing more is recorded.
    let hb = beat_with_head(&l, &c, 3, 3, reset.issued + 90, Some(bytes));
    ok(relay.post_beat("/v1/heartbeat", &hb, &c).await);
    // Then the mark going back is flagged again, as ever.
    ok(relay
        .post_beat(
            "/v1/heartbeat",
            &beat_with_head(&l, &c, 4, 3, t - 3600, None),
            &c,
        )
        .await);
    assert_eq!(kinds(&relay, &admin).await, ["time_back"]);
    // The vendor's license status carries no rollback warning for the reset.
    let whoosh = relay.token(Scope::Whoosh, "whoosh");
    let (_, s) = relay
        .get_as::<LicenseStatus>(&format!("/v1/licenses/{}/status", l.id), &whoosh)
        .await;
    assert_eq!(
        s.warnings
            .iter()
            .filter(|w| w.contains("trusted time went back"))
            .count(),
        1,
        "{:?}",
        s.warnings
    );
    // The audit log says what happened, once.
    let rows = audit_then_stop(relay, "clock_reset").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let (actor, subject, detail) = &rows[0];
    assert_eq!(actor, &format!("cluster:{cluster}"));
    assert_eq!(subject, &l.id.to_string());
    assert_eq!(detail["reset"], reset.id_text());
    assert_eq!(
        detail["kid"],
        seed_key(ROOT_ISSUER).public().kid().to_string()
    );
    assert_eq!(detail["earlier"], kaching_core::time::rfc3339(ahead));
    assert_eq!(
        detail["later"],
        kaching_core::time::rfc3339(reset.issued + 30)
    );
    assert!(detail["detail"]
        .as_str()
        .unwrap()
        .contains("not a rollback"));
}

#[tokio::test]
async fn a_heartbeat_carrying_the_clock_reset_explains_its_mark_going_back_on_sqlite() {
    explained(false).await;
}

#[tokio::test]
async fn a_heartbeat_carrying_the_clock_reset_explains_its_mark_going_back_on_postgres() {
    explained(true).await;
}

async fn still_flagged(postgres: bool) {
    let Some(relay) = relay_with_issuer(postgres).await else {
        return;
    };
    let l = license(35, 3600);
    let c = cluster_key(1);
    activate_by_issuer(&relay, &l, &c).await;
    let t = now();
    let ahead = t + 900 * DAY;
    let issuer = seed_key(ROOT_ISSUER);
    let (good, good_bytes) = reset_for(&c, ahead, &issuer);
    let mut tampered = good_bytes.clone();
    let at = tampered.len() - 70;
    tampered[at] ^= 1;
    let cases: Vec<(&str, Vec<u8>, u64)> = vec![
        // Signed by the root's revoker: a key that may not lift a restriction.
        (
            "revoker",
            reset_for(&c, ahead, &seed_key(REVOKER)).1,
            good.issued + 30,
        ),
        // Signed by a key the relay does not trust at all.
        (
            "stranger",
            reset_for(&c, ahead, &cluster_key(9)).1,
            good.issued + 30,
        ),
        // The issuer's bytes, altered.
        ("tampered", tampered, good.issued + 30),
        // Genuine, for another cluster.
        (
            "foreign",
            reset_for(&cluster_key(2), ahead, &issuer).1,
            good.issued + 30,
        ),
        // Genuine and for this cluster, but the mark went below its time.
        ("below iat", good_bytes, good.issued - 3600),
    ];
    let admin = relay.token(Scope::Admin, "admin");
    let mut seq = 0;
    for (i, (what, bytes, lowered)) in cases.iter().enumerate() {
        // The mark ahead again, then lowered with the reset carried.
        seq += 1;
        let up = beat_with_head(&l, &c, seq, 2, ahead, None);
        assert_eq!(
            relay.post_beat("/v1/heartbeat", &up, &c).await.status(),
            200
        );
        seq += 1;
        let down = beat_with_head(&l, &c, seq, 2, *lowered, Some(bytes.clone()));
        let r = relay.post_beat("/v1/heartbeat", &down, &c).await;
        assert_eq!(r.status(), 200, "{what}: the heartbeat still counts");
        assert_eq!(
            kinds(&relay, &admin).await,
            vec!["time_back"; i + 1],
            "{what}: flagged"
        );
    }
    let rows = audit_then_stop(relay, "clock_reset").await;
    assert!(rows.is_empty(), "{rows:?}");
}

#[tokio::test]
async fn attack_heartbeat_with_a_forged_or_foreign_clock_reset_is_still_flagged_on_sqlite() {
    still_flagged(false).await;
}

#[tokio::test]
async fn attack_heartbeat_with_a_forged_or_foreign_clock_reset_is_still_flagged_on_postgres() {
    still_flagged(true).await;
}
