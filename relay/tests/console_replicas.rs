//! Console sessions across relay replicas: two real `kaching-relay`
//! processes on one PostgreSQL database. A session signed in on one is
//! honoured by the other (no sticky load balancing needed), and revoking
//! its token ends it on both.
//!
//! Needs `KACHING_TEST_POSTGRES` (`eval "$(bash scripts/ci-postgres)"`);
//! without it the test skips (one line), and fails under `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::postgres;
use common::*;
use kaching_relay::tokens::Scope;
use kaching_testkit::Spawned;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn csrf_in(page: &str) -> String {
    let at = page
        .find(r#"name="csrf" value=""#)
        .expect("a form with csrf")
        + 19;
    page[at..].split('"').next().unwrap().to_string()
}

fn first_cookie(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .find(|c| c.starts_with(&format!("{name}=")))
}

async fn get(at: &Spawned, path: &str, cookie: &str) -> (u16, String) {
    let resp = client()
        .get(format!("http://{}{path}", at.addr))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn serving(s: &Spawned) {
    let status = client()
        .get(format!("http://{}/v1/relay-key", s.addr))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn console_session_signed_in_on_one_replica_reads_on_another() {
    let Some(db) = postgres::fresh().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &format!("database = {:?}", db.url));
    let (a, b) = (spawn_relay(&config).await, spawn_relay(&config).await);
    serving(&a).await;
    serving(&b).await;
    let admin = pg_token(&db.url, Scope::Admin, "ops");

    // The sign-in form comes from A and is posted to B (no sticky sessions).
    let login = client()
        .get(format!("http://{}/console/", a.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 401);
    let login_cookie = first_cookie(&login, "kaching_login").unwrap();
    let csrf = csrf_in(&login.text().await.unwrap());
    let resp = client()
        .post(format!("http://{}/console/login", b.addr))
        .header("origin", format!("http://{}", b.addr))
        .header("cookie", &login_cookie)
        .form(&[("csrf", csrf.as_str()), ("token", admin.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let cookie = first_cookie(&resp, "kaching_session").expect("a session");

    // Signed in on B: A reads with the same cookie, every page.
    for path in [
        "/console/",
        "/console/licenses",
        "/console/inbox/live",
        "/console/audit",
    ] {
        let (status, body) = get(&a, path, &cookie).await;
        assert_eq!(status, 200, "{path} on A: {body}");
    }
    // A form rendered by A is accepted by B (the session's own token).
    let (_, page) = get(&a, "/console/", &cookie).await;
    let (_, page_b) = get(&b, "/console/", &cookie).await;
    assert_eq!(csrf_in(&page), csrf_in(&page_b));

    // Revoked (on the shared database): refused by both at once.
    let pool = kaching_relay::storage::postgres::pool(&db.url).unwrap();
    kaching_relay::storage::postgres::admin::revoke_token(&pool, "ops", now())
        .await
        .unwrap();
    for at in [&a, &b] {
        assert_eq!(get(at, "/console/", &cookie).await.0, 401, "{}", at.addr);
    }
    drop((a, b));
}
