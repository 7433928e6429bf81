//! The license page (`/ui/`) over plain HTTP: who may see it, which posts
//! count, what every answer carries. The same page in a real browser is
//! `ui_browser.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::*;
use kaching_verifier::config::Secret;
use reqwest::header;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// A client that shows redirects instead of following them, with no cookie jar.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The anti-forgery token a page was rendered with.
fn csrf_of(html: &str) -> String {
    let at = html.find(r#"name="csrf" value=""#).expect("a csrf field") + 19;
    html[at..].split('"').next().unwrap().to_string()
}

async fn get(
    d: &Daemon,
    path: &str,
    cookie: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = client().get(format!("{}{path}", d.url));
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    let r = req.send().await.unwrap();
    let (code, h) = (r.status().as_u16(), r.headers().clone());
    (code, h, r.text().await.unwrap())
}

async fn post(
    d: &Daemon,
    path: &str,
    origin: Option<&str>,
    cookie: Option<&str>,
    form: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = client().post(format!("{}{path}", d.url)).form(form);
    if let Some(o) = origin {
        req = req.header(header::ORIGIN, o);
    }
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    let r = req.send().await.unwrap();
    let (code, h) = (r.status().as_u16(), r.headers().clone());
    (code, h, r.text().await.unwrap())
}

async fn queued(d: &Daemon) -> usize {
    d.get("/v1/upgrade-requests").await.1["upgrade_requests"]
        .as_array()
        .unwrap()
        .len()
}

/// A cluster with more nodes than the page lists: the page names how many
/// hold a lease, lists the 50 that end soonest (one renewed early ends
/// last and drops off), points to `GET /v1/nodes` for all, and stays
/// within the 100 KiB budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_of_many_nodes_lists_the_leases_ending_soonest_within_budget() {
    let v = Vendor::new();
    let mut l = v.license(1, "standard");
    l.limits.max_nodes = 500;
    let (_dir, cfg) = setup(Some(&v.sign(&l)));
    let d = Daemon::start(cfg).await;
    for i in 0..300 {
        assert_eq!(
            d.put_node(&format!("gpu-worker-{i:04}.eu-central.example.com"))
                .await
                .0,
            200
        );
    }
    let (code, _, html) = get(&d, "/ui/", None).await;
    assert_eq!(code, 200);
    assert!(html.contains(r#"id="nodes-in-use">300<"#), "{html}");
    assert!(
        html.contains(
            "The 50 of 300 leases that end soonest; <code>GET /v1/nodes</code> lists them all."
        ),
        "{html}"
    );
    assert_eq!(html.matches("<code>gpu-worker-").count(), 50);
    // The first lease, renewed last, now ends later than every other.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        d.put_node("gpu-worker-0000.eu-central.example.com").await.0,
        200
    );
    let (_, _, html) = get(&d, "/ui/", None).await;
    assert!(
        !html.contains("gpu-worker-0000."),
        "renewed, so not among the soonest: {html}"
    );
    let (_, _, css) = get(&d, "/ui/assets/kaching.css", None).await;
    let (_, _, js) = get(&d, "/ui/assets/live.js", None).await;
    let weight = html.len() + css.len() + js.len();
    assert!(weight < 100 * 1024, "page weight {weight} bytes");
    assert_eq!(
        d.get("/v1/nodes").await.1["nodes"]
            .as_array()
            .unwrap()
            .len(),
        300
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_verdict_under_a_strict_policy_and_within_budget() {
    let v = Vendor::new();
    let (_dir, cfg) = setup(Some(&v.sign(&v.license(1, "standard"))));
    let d = Daemon::start(cfg).await;
    assert_eq!(d.spend("search_requests", 85, "k").await.0, 200);
    let (code, h, html) = get(&d, "/ui/", None).await;
    assert_eq!(code, 200, "{html}");
    assert_eq!(h[header::CONTENT_TYPE], "text/html; charset=utf-8");
    let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(h[header::REFERRER_POLICY], "same-origin");
    assert!(html.contains(r#"id="state-badge">active<"#), "{html}");
    assert!(html.contains(r#"id="tier">standard<"#), "{html}");
    assert!(html.contains(r#"data-quota="search_requests""#), "{html}");
    assert!(html.contains(r#"value="85""#), "{html}");
    assert!(html.contains("Request upgrade"), "{html}");
    // No inline code anywhere: the policy would block it.
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "{html}"
    );
    // Page weight with its two assets (budget 100 KiB).
    let (c1, h1, css) = get(&d, "/ui/assets/kaching.css", None).await;
    let (c2, _, js) = get(&d, "/ui/assets/live.js", None).await;
    assert_eq!((c1, c2), (200, 200));
    assert!(h1.contains_key(header::CONTENT_SECURITY_POLICY));
    let weight = html.len() + css.len() + js.len();
    assert!(weight < 100 * 1024, "page weight {weight} bytes");
    // The live fragment is the same sections without the frame.
    let (code, _, live) = get(&d, "/ui/live", None).await;
    assert_eq!(code, 200);
    assert!(live.contains(r#"id="state-badge">active<"#) && !live.contains("<html"));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_xss_in_license_fields_is_escaped_on_the_page() {
    let v = Vendor::new();
    let mut l = v.license(1, "standard");
    l.customer = r#"<script>alert(1)</script><img src=x onerror="alert(2)">"#.into();
    let (_dir, cfg) = setup(Some(&v.sign(&l)));
    let d = Daemon::start(cfg).await;
    let (code, _, html) = get(&d, "/ui/", None).await;
    assert_eq!(code, 200);
    assert!(
        !html.contains("<script>alert(1)") && !html.contains("<img src=x"),
        "{html}"
    );
    assert!(
        html.contains(
            "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=&quot;alert(2)&quot;&gt;"
        ),
        "{html}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_cross_site_form_posts_are_refused() {
    let v = Vendor::new();
    let (_dir, cfg) = setup(Some(&v.sign(&v.license(1, "standard"))));
    let d = Daemon::start(cfg).await;
    let (_, _, html) = get(&d, "/ui/", None).await;
    let csrf = csrf_of(&html);
    let form = [
        ("csrf", csrf.as_str()),
        ("requested_tier", "enterprise"),
        ("message", "m"),
    ];
    // Another site's page, even one that somehow knew the token.
    let (code, _, body) = post(
        &d,
        "/ui/upgrade-requests",
        Some("http://evil.example"),
        None,
        &form,
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("posted from another site"), "{body}");
    // No Origin at all (and no Sec-Fetch-Site): not from the page.
    assert_eq!(
        post(&d, "/ui/upgrade-requests", None, None, &form).await.0,
        403
    );
    // Same origin without the page's token.
    let ours = d.url.clone();
    let forged = [
        ("csrf", "0000"),
        ("requested_tier", "enterprise"),
        ("message", "m"),
    ];
    let (code, _, body) = post(&d, "/ui/upgrade-requests", Some(&ours), None, &forged).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("reload the page"), "{body}");
    assert_eq!(queued(&d).await, 0, "a refused post filed something");
    // The page's own post files it, like POST /v1/upgrade-requests.
    let (code, h, _) = post(&d, "/ui/upgrade-requests", Some(&ours), None, &form).await;
    assert_eq!(code, 303);
    assert!(h[header::LOCATION]
        .to_str()
        .unwrap()
        .starts_with("/ui/?filed="));
    assert_eq!(queued(&d).await, 1);
    // An unknown tier is refused with the engine's own words, on the page.
    let typo = [
        ("csrf", csrf.as_str()),
        ("requested_tier", "enterprize"),
        ("message", ""),
    ];
    let (code, _, body) = post(&d, "/ui/upgrade-requests", Some(&ours), None, &typo).await;
    assert_eq!(code, 422);
    assert!(
        body.contains("Not filed.") && body.contains("enterprise"),
        "{body}"
    );
    assert_eq!(queued(&d).await, 1);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_a_rebound_host_name_does_not_reach_the_open_page() {
    let (_dir, cfg) = setup(None);
    let d = Daemon::start(cfg).await;
    let r = client()
        .get(format!("{}/ui/", d.url))
        .header(header::HOST, "evil.example:80")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("http://127.0.0.1:PORT/ui/"));
    assert_eq!(get(&d, "/ui/", None).await.0, 200);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_without_the_token_the_page_asks_for_it_then_keeps_a_strict_cookie() {
    let v = Vendor::new();
    let (_dir, mut cfg) = setup(Some(&v.sign(&v.license(1, "standard"))));
    cfg.token = Some(Secret(TOKEN.into()));
    let d = Daemon::start(cfg).await;
    // No session: a sign-in form, and nothing of the license.
    let (code, _, html) = get(&d, "/ui/", None).await;
    assert_eq!(code, 401);
    assert!(
        html.contains("API token") && !html.contains("ACME"),
        "{html}"
    );
    for path in ["/ui/live", "/ui/events"] {
        assert_eq!(get(&d, path, None).await.0, 401, "{path}");
    }
    let csrf = csrf_of(&html);
    let ours = d.url.clone();
    // A wrong token, and the right one from another site, are refused.
    let (code, h, _) = post(
        &d,
        "/ui/login",
        Some(&ours),
        None,
        &[("csrf", &csrf), ("token", "nope")],
    )
    .await;
    assert_eq!(code, 401);
    assert!(!h.contains_key(header::SET_COOKIE));
    let (code, h, _) = post(
        &d,
        "/ui/login",
        Some("http://evil.example"),
        None,
        &[("csrf", &csrf), ("token", TOKEN)],
    )
    .await;
    assert_eq!(code, 403);
    assert!(!h.contains_key(header::SET_COOKIE));
    // The right token: a cookie that scripts cannot read and other sites never send.
    let (code, h, _) = post(
        &d,
        "/ui/login",
        Some(&ours),
        None,
        &[("csrf", &csrf), ("token", TOKEN)],
    )
    .await;
    assert_eq!(code, 303);
    let set = h[header::SET_COOKIE].to_str().unwrap().to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/ui/"),
        "{set}"
    );
    assert!(
        !set.contains(TOKEN),
        "the cookie holds the token itself: {set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    let (code, _, html) = get(&d, "/ui/", Some(&cookie)).await;
    assert_eq!(code, 200);
    assert!(
        html.contains("ACME Corp") && html.contains("Sign out"),
        "{html}"
    );
    let r = client()
        .get(format!("{}/ui/events", d.url))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "text/event-stream");
    drop(r);
    // A made-up cookie is no session.
    assert_eq!(get(&d, "/ui/", Some("kaching_session=00")).await.0, 401);
    // The JSON API still wants the bearer header, cookie or not.
    let r = client()
        .get(format!("{}/v1/status", d.url))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    d.stop().await;
}

/// The install step of the page's form (as the browser posts it after a
/// preview): its status and body.
async fn install(d: &Daemon, csrf: &str, armored: &str) -> (u16, String) {
    let (code, _, body) = post(
        d,
        "/ui/license/install",
        Some(&d.url),
        None,
        &[("csrf", csrf), ("license", armored)],
    )
    .await;
    (code, body)
}

/// A `multipart/form-data` post of the page's upload form, built by hand.
async fn upload(d: &Daemon, csrf: &str, file: &[u8]) -> (u16, String) {
    let boundary = "kachingboundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"license\"; filename=\"new.lic\"\r\nContent-Type: application/octet-stream\r\n\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let r = client()
        .post(format!("{}/ui/license/preview", d.url))
        .header(header::ORIGIN, &d.url)
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The value of the hidden `license` field of the preview page.
fn license_field(html: &str) -> String {
    let at = html
        .find(r#"name="license" value=""#)
        .expect("an install form")
        + 22;
    let raw = html[at..].split('"').next().unwrap();
    raw.replace("&#10;", "\n").replace("&amp;", "&")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_license_is_verified_and_compared_before_it_is_installed() {
    let v = Vendor::new();
    let (_dir, cfg) = setup(Some(&v.sign(&v.license(1, "standard"))));
    let license_path = cfg.license.clone();
    let d = Daemon::start(cfg).await;
    let (_, _, page) = get(&d, "/ui/", None).await;
    let csrf = csrf_of(&page);
    let mut up = v.license(2, "enterprise");
    up.limits.max_nodes = 10;
    up.features.insert("bulk-operations".into());
    let bytes = v.sign(&up);
    // Preview: verified, the difference shown, nothing written yet.
    let (code, html) = upload(&d, &csrf, &bytes).await;
    assert_eq!(code, 200, "{html}");
    assert!(html.contains("The signature verifies."), "{html}");
    for shown in [
        "standard",
        "enterprise",
        "max_nodes",
        "bulk-operations",
        "gained",
        "Install this license",
    ] {
        assert!(html.contains(shown), "{shown} missing: {html}");
    }
    let id1 = "01010101-0101-0101-0101-010101010101";
    assert_eq!(d.status().await["license_id"], id1);
    // Install: written where the watcher looks, then in force.
    let armored = license_field(&html);
    let ours = d.url.clone();
    let (code, h, body) = post(
        &d,
        "/ui/license/install",
        Some(&ours),
        None,
        &[("csrf", &csrf), ("license", &armored)],
    )
    .await;
    assert_eq!(code, 303, "{body}");
    let id2 = "02020202-0202-0202-0202-020202020202";
    assert_eq!(
        h[header::LOCATION],
        format!("/ui/?installed={id2}").as_str()
    );
    d.wait_status("the uploaded license in force", |s| s["license_id"] == id2)
        .await;
    assert_eq!(std::fs::read_to_string(&license_path).unwrap(), armored);
    let (_, _, page) = get(&d, &format!("/ui/?installed={id2}"), None).await;
    assert!(
        page.contains("Installed.") && page.contains(r#"id="tier">enterprise<"#),
        "{page}"
    );
    // A made-up id puts no words on the page.
    let (_, _, page) = get(&d, "/ui/?installed=%3Cb%3Ehi", None).await;
    assert!(!page.contains("Installed."), "{page}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_a_forged_license_upload_is_refused_and_nothing_is_written() {
    let v = Vendor::new();
    let good = v.sign(&v.license(1, "standard"));
    let (_dir, cfg) = setup(Some(&good));
    let license_path = cfg.license.clone();
    let d = Daemon::start(cfg).await;
    let (_, _, page) = get(&d, "/ui/", None).await;
    let csrf = csrf_of(&page);
    let forged = Vendor::other().sign(&Vendor::other().license(3, "enterprise"));
    let (code, html) = upload(&d, &csrf, &forged).await;
    assert_eq!(code, 422, "{html}");
    assert!(
        html.contains("not a license this verifier accepts")
            && !html.contains("Install this license"),
        "{html}"
    );
    // Posting it to the install step directly is refused the same way.
    let armored = kaching_core::armor::armor(kaching_core::DocKind::License, &forged);
    let (code, body) = install(&d, &csrf, &armored).await;
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("Not installed."), "{body}");
    assert_eq!(
        std::fs::read(&license_path).unwrap(),
        good,
        "the license file was touched"
    );
    // And without the page's token nothing is even looked at.
    assert_eq!(upload(&d, "0000", &forged).await.0, 403);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_hands_out_an_activation_request_and_the_next_usage_report() {
    let v = Vendor::new();
    let (_dir, cfg) = setup(Some(&v.sign(&v.license(1, "standard"))));
    let d = Daemon::start(cfg).await;
    assert_eq!(d.spend("api_calls", 7, "a").await.0, 200);
    let (_, _, page) = get(&d, "/ui/", None).await;
    let csrf = csrf_of(&page);
    let ours = d.url.clone();
    let form = [
        ("csrf", csrf.as_str()),
        ("requested_tier", "enterprise"),
        ("message", "from the page"),
    ];
    assert_eq!(
        post(&d, "/ui/upgrade-requests", Some(&ours), None, &form)
            .await
            .0,
        303
    );
    let (code, h, text) = post(
        &d,
        "/ui/activation-request",
        Some(&ours),
        None,
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(code, 200, "{text}");
    assert!(h[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .starts_with("attachment; filename=\"activation-request-"));
    let req = kaching_core::cluster::verify_activation_request(text.as_bytes()).unwrap();
    assert_eq!(
        req.doc.cluster_id,
        d.status().await["cluster_id"].as_str().unwrap()
    );
    let (code, h, text) = post(
        &d,
        "/ui/usage-report",
        Some(&ours),
        None,
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(code, 200, "{text}");
    assert_eq!(
        h[header::CONTENT_DISPOSITION],
        "attachment; filename=\"usage-report-1.asc\""
    );
    let rep = kaching_core::cluster::verify_usage_report(text.as_bytes()).unwrap();
    assert_eq!(rep.doc.counters["api_calls"].values().sum::<u64>(), 7);
    assert_eq!(rep.doc.upgrade_requests[0].request.message, "from the page");
    // The next one is the next of the chain.
    let (_, h, _) = post(
        &d,
        "/ui/usage-report",
        Some(&ours),
        None,
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(
        h[header::CONTENT_DISPOSITION],
        "attachment; filename=\"usage-report-2.asc\""
    );
    // Not from another site.
    let (code, _, _) = post(
        &d,
        "/ui/usage-report",
        Some("http://evil.example"),
        None,
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(code, 403);
    d.stop().await;
}

/// A sign-in post from `client` (its own source address).
async fn sign_in(
    c: &reqwest::Client,
    d: &Daemon,
    csrf: &str,
    token: &str,
) -> (u16, reqwest::header::HeaderMap, String) {
    let r = c
        .post(format!("{}/ui/login", d.url))
        .header(header::ORIGIN, &d.url)
        .form(&[("csrf", csrf), ("token", token)])
        .send()
        .await
        .unwrap();
    let (code, h) = (r.status().as_u16(), r.headers().clone());
    (code, h, r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_guessing_the_token_at_sign_in_is_paused_per_address() {
    let v = Vendor::new();
    let (_dir, mut cfg) = setup(Some(&v.sign(&v.license(1, "standard"))));
    cfg.token = Some(Secret(TOKEN.into()));
    let d = Daemon::start(cfg).await;
    let csrf = csrf_of(&get(&d, "/ui/", None).await.2);
    let c = client();
    // Signing in with the right token is never limited.
    for _ in 0..8 {
        assert_eq!(sign_in(&c, &d, &csrf, TOKEN).await.0, 303);
    }
    // Five wrong tokens are answered as wrong...
    for i in 0..5 {
        let guess = format!("guess-{i}");
        assert_eq!(sign_in(&c, &d, &csrf, &guess).await.0, 401, "{guess}");
    }
    // ...then this address is paused, right token or not, with a sentence
    // and Retry-After; no session is handed out.
    for token in ["guess-5", TOKEN] {
        let (code, h, html) = sign_in(&c, &d, &csrf, token).await;
        assert_eq!(code, 429, "{html}");
        assert!(!h.contains_key(header::SET_COOKIE));
        let wait: u64 = h[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&wait), "Retry-After {wait}");
        assert!(html.contains("Wait, then sign in"), "{html}");
    }
    // Another address is not paused by this one's guesses.
    let other = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    assert_eq!(sign_in(&other, &d, &csrf, TOKEN).await.0, 303);
    d.stop().await;
}

/// An expired (past grace) but validly signed license uploaded while a
/// working one is in force: the preview says plainly that it is expired
/// and would not take effect, offers no install, and a direct post to the
/// install step is refused; the license file is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_an_expired_license_upload_says_so_and_is_not_installed() {
    let v = Vendor::new();
    let good = v.sign(&v.license(1, "standard"));
    let (_dir, cfg) = setup(Some(&good));
    let license_path = cfg.license.clone();
    let d = Daemon::start(cfg).await;
    let (_, _, page) = get(&d, "/ui/", None).await;
    let csrf = csrf_of(&page);
    let mut old = v.license(2, "enterprise");
    old.issued_at = now() - 400 * DAY;
    old.not_before = old.issued_at;
    old.expires_at = now() - 30 * DAY;
    let expired = v.sign(&old);
    let (code, html) = upload(&d, &csrf, &expired).await;
    assert_eq!(code, 200, "{html}");
    assert!(
        html.contains("cannot be used now")
            && html.contains("expired on")
            && html.contains("would not take effect")
            && !html.contains("Install this license"),
        "{html}"
    );
    let armored = kaching_core::armor::armor(kaching_core::DocKind::License, &expired);
    let (code, body) = install(&d, &csrf, &armored).await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body.contains("Not installed.") && body.contains("expired on"),
        "{body}"
    );
    assert_eq!(std::fs::read(&license_path).unwrap(), good);
    d.stop().await;
}

/// An install the verifier cannot write says why, in the OS's words (here
/// the folder is gone; under systemd it is "Read-only file system" when
/// the unit does not list the folder in ReadWritePaths=).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_install_says_what_the_os_said() {
    let v = Vendor::new();
    let (dir, mut cfg) = setup(None);
    let folder = dir.path().join("etc");
    std::fs::create_dir(&folder).unwrap();
    cfg.license = folder.join("license.lic");
    std::fs::write(&cfg.license, v.sign(&v.license(1, "standard"))).unwrap();
    let d = Daemon::start(cfg).await;
    let (_, _, page) = get(&d, "/ui/", None).await;
    let csrf = csrf_of(&page);
    let (code, html) = upload(&d, &csrf, &v.sign(&v.license(2, "enterprise"))).await;
    assert_eq!(code, 200, "{html}");
    let armored = license_field(&html);
    std::fs::remove_dir_all(&folder).unwrap();
    let (code, body) = install(&d, &csrf, &armored).await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body.contains("Not installed.")
            && body.contains("No such file or directory")
            && body.contains("ReadWritePaths"),
        "{body}"
    );
    d.stop().await;
}
