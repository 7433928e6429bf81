//! Signs of rollback in connected mode (docs/threat-model.md, "Rollback of
//! the state database"): a cluster whose state database was restored, or a
//! clone beating with the same key, shows in `GET /v1/clusters`, in the
//! license status the vendor reads, and in the audit log, while a plain
//! replay of a recorded heartbeat does not.

mod common;

use common::*;
use kaching_core::heartbeat::ChainHead;
use kaching_core::wire::relay::{ClusterPage, ACCEPTS_CHAIN_HEAD, ACCEPTS_HEADER};
use kaching_core::wire::LicenseStatus;
use kaching_relay::tokens::Scope;

fn head(report_seq: u64, hash: u8, mark: u64) -> Option<ChainHead> {
    Some(ChainHead {
        report_seq,
        report_hash: (report_seq > 0).then_some([hash; 32]),
        mark,
    })
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
    assert_eq!(r.headers()[ACCEPTS_HEADER], ACCEPTS_CHAIN_HEAD);
    let hb = kaching_core::heartbeat::Heartbeat {
        chain: head(2, 2, now() - 10),
        ..beat(&l, &c, 1)
    };
    let r = relay.post_beat("/v1/heartbeat", &hb, &c).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()[ACCEPTS_HEADER], ACCEPTS_CHAIN_HEAD);
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
