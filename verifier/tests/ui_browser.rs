//! The license page in a real, headless Chromium (Debian's `chromium` and
//! `chromium-driver`; `scripts/ci-browser` installs them). Without them each
//! test prints one line and passes; under `CI=true` that is a failure.
//!
//! Screenshots go to `target/ui-screenshots/`; with
//! `KACHING_SCREENSHOTS=docs` they also replace the ones in `docs/img/`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use std::time::{Duration, Instant};

use common::*;
use kaching_core::revocation::RevocationStatus;
use kaching_testkit::{Browser, HostileSite};
use serde_json::{json, Value};

/// Milliseconds since the epoch, as the page's `Date.now()` counts them.
fn epoch_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

/// Saves a screenshot of the page `b` shows as `name`.
async fn screenshot(b: &Browser, name: &str) {
    screenshot_at(b, name, 1280).await;
}

/// [`screenshot`] at `width` CSS pixels.
async fn screenshot_at(b: &Browser, name: &str, width: u64) {
    b.keep_screenshot(name, width).await;
}

/// True once the page's script has connected to the event stream.
const LIVE: &str = "return document.getElementById('live-state').textContent === 'live';";

fn badge(state: &str) -> String {
    format!("return document.getElementById('state-badge').textContent === '{state}';")
}

/// A standard license with some use: 85 of 100 searches today, two nodes.
async fn busy_daemon() -> (tempfile::TempDir, kaching_verifier::Config, Daemon) {
    let v = Vendor::new();
    let (dir, cfg) = setup(Some(&v.sign(&v.license(1, "standard"))));
    let d = Daemon::start(cfg.clone()).await;
    assert_eq!(d.spend("search_requests", 85, "s").await.0, 200);
    assert_eq!(d.spend("api_calls", 420, "a").await.0, 200);
    assert_eq!(d.put_node("node-a").await.0, 200);
    assert_eq!(d.put_node("node-b").await.0, 200);
    (dir, cfg, d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_shows_tier_state_and_quota_bars_from_a_real_daemon() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let (_dir, _cfg, d) = busy_daemon().await;
    b.goto(&format!("{}/ui/", d.url)).await;
    assert_eq!(b.text("#state-badge").await, "active");
    assert_eq!(b.text("#tier").await, "standard");
    assert_eq!(b.text("#state-h").await, "ACME Corp");
    let bars = b
        .run(
            "return Array.from(document.querySelectorAll('#quotas meter')).map(m => [m.closest('[data-quota]').dataset.quota, m.value, m.max]);",
            json!([]),
        )
        .await;
    assert_eq!(
        bars,
        json!([["api_calls", 420, 1000], ["search_requests", 85, 100]])
    );
    assert_eq!(b.text("#nodes-in-use").await, "2");
    let leases = b.text("#nodes table").await;
    assert!(
        leases.contains("Last renewal") && leases.contains("node-a") && leases.contains("node-b"),
        "{leases}"
    );
    let cards = b.text("#upgrades").await;
    assert!(
        cards.contains("standard → enterprise") && cards.contains("Request upgrade"),
        "{cards}"
    );
    b.wait_for("the page to go live", LIVE, Duration::from_secs(20))
        .await;
    screenshot(&b, "verifier-ui.png").await;
    screenshot_at(&b, "verifier-ui-phone.png", 390).await;
    b.quit().await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_upgrade_request_filed_on_the_page_is_in_the_next_usage_report() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let (dir, cfg, d) = busy_daemon().await;
    b.goto(&format!("{}/ui/", d.url)).await;
    b.fill("#requested_tier", "enterprise").await;
    b.fill(
        "#message",
        "we need more searches — filed from the license page",
    )
    .await;
    b.click("#request button[type=submit]").await;
    b.wait_for_url("/ui/?filed=").await;
    assert!(b.text("main .banner").await.contains("is queued"));
    let filed = b.text("#upgrades table").await;
    assert!(filed.contains("we need more searches"), "{filed}");
    d.stop().await;
    b.quit().await;
    let conf = write_config(dir.path(), &cfg, "");
    let out = dir.path().join("usage.report");
    let run = verifier_cmd("warn")
        .args(["usage-report", "--config"])
        .arg(&conf)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let rep = kaching_core::cluster::verify_usage_report(&std::fs::read(&out).unwrap()).unwrap();
    let asked: Vec<_> = rep
        .doc
        .upgrade_requests
        .iter()
        .map(|u| {
            (
                u.request.requested_tier.as_str(),
                u.request.message.as_str(),
            )
        })
        .collect();
    assert_eq!(
        asked,
        [(
            "enterprise",
            "we need more searches — filed from the license page"
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_attack_customer_name_with_script_renders_as_text() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let v = Vendor::new();
    let mut l = v.license(1, "standard");
    let name = r#"<script>window.pwned=1</script><img src=x onerror="window.pwned=2">"#;
    l.customer = name.into();
    let (_dir, cfg) = setup(Some(&v.sign(&l)));
    let d = Daemon::start(cfg).await;
    b.goto(&format!("{}/ui/", d.url)).await;
    assert_eq!(b.text("#state-h").await, name);
    b.wait_for("the page to go live", LIVE, Duration::from_secs(20))
        .await;
    // After a live swap too: the fragment is escaped the same way.
    assert_eq!(d.spend("api_calls", 1, "x").await.0, 200);
    b.wait_for(
        "a live update",
        "return Number(document.body.dataset.updates || 0) >= 2;",
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(b.text("#state-h").await, name);
    let ran = b
        .run(
            "return [typeof window.pwned, document.querySelectorAll('#state-h *').length];",
            json!([]),
        )
        .await;
    assert_eq!(ran, json!(["undefined", 0]));
    b.quit().await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_attack_cross_site_form_post_is_refused() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let v = Vendor::new();
    let (_dir, cfg) = setup(Some(&v.sign(&v.license(1, "standard"))));
    let d = Daemon::start(cfg).await;
    // Another site (localhost on another port is another site than
    // 127.0.0.1) whose page posts a form to the verifier as soon as it loads.
    let target = format!("{}/ui/upgrade-requests", d.url);
    let evil = HostileSite::posting(
        &target,
        &[
            ("csrf", "guess"),
            ("requested_tier", "enterprise"),
            ("message", "forged"),
        ],
    )
    .await;
    b.goto(&format!("http://localhost:{}/", evil.port)).await;
    b.wait_for(
        "the forged post's answer",
        "return location.pathname === '/ui/upgrade-requests' && document.readyState === 'complete';",
        Duration::from_secs(20),
    )
    .await;
    let said = b.text("main").await;
    assert!(
        said.contains("Refused.") && said.contains("another site"),
        "{said}"
    );
    let queued = d.get("/v1/upgrade-requests").await.1;
    assert_eq!(
        queued["upgrade_requests"],
        json!([]),
        "the forged post was filed"
    );
    b.quit().await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_attack_the_page_makes_no_request_outside_loopback() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let (_dir, _cfg, d) = busy_daemon().await;
    b.goto(&format!("{}/ui/", d.url)).await;
    b.wait_for("the page to go live", LIVE, Duration::from_secs(20))
        .await;
    // A live update and a form post, so every kind of request is made.
    assert_eq!(d.spend("api_calls", 5, "more").await.0, 200);
    b.wait_for(
        "a live update",
        "return Number(document.body.dataset.updates || 0) >= 2;",
        Duration::from_secs(20),
    )
    .await;
    b.fill("#requested_tier", "enterprise").await;
    b.click("#request button[type=submit]").await;
    b.wait_for_url("/ui/?filed=").await;
    // Every request made for a document of this daemon (the browser's own
    // start page is not ours) went to this daemon.
    let ours = format!("{}/", d.url);
    let seen: Vec<_> = b
        .requests()
        .await
        .into_iter()
        .filter(|r| r.document.starts_with(&ours))
        .collect();
    let urls: Vec<&str> = seen.iter().map(|r| r.url.as_str()).collect();
    assert!(
        urls.len() >= 4,
        "the performance log saw too little: {urls:?}"
    );
    let outside: Vec<_> = urls.iter().filter(|u| !u.starts_with(&ours)).collect();
    assert!(outside.is_empty(), "requests outside {ours}: {outside:?}");
    for kind in [
        "/ui/assets/kaching.css",
        "/ui/assets/live.js",
        "/ui/events",
        "/ui/live",
    ] {
        assert!(
            urls.iter().any(|u| u.contains(kind)),
            "{kind} not requested: {urls:?}"
        );
    }
    let console = b.console().await;
    assert!(
        !console
            .iter()
            .any(|m| m.contains("Content Security Policy")),
        "the page broke its own policy: {console:?}"
    );
    // Were something injected anyway, the policy stops it from reaching out
    // (192.0.2.1 is a documentation address: nothing answers there).
    b.run(
        "const i = document.createElement('img'); i.src = 'http://192.0.2.1/pixel.png'; \
         document.body.appendChild(i); fetch('http://192.0.2.1/beacon').catch(() => {});",
        json!([]),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let injected: Vec<_> = b
        .requests()
        .await
        .into_iter()
        .filter(|r| r.url.contains("192.0.2.1"))
        .collect();
    // Chromium logs the attempt, then blocks it before it leaves.
    assert!(
        !injected.is_empty(),
        "the injected loads were not even attempted"
    );
    let leaked: Vec<_> = injected
        .iter()
        .filter(|r| r.blocked.as_deref() != Some("csp"))
        .collect();
    assert!(
        leaked.is_empty(),
        "an injected element reached out: {leaked:?}"
    );
    let console = b.console().await;
    assert!(
        console
            .iter()
            .any(|m| m.contains("192.0.2.1") && m.contains("Content Security Policy")),
        "no policy violation reported: {console:?}"
    );
    b.quit().await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_a_suspension_turns_the_open_page_suspended_within_2s_without_reload() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let v = Vendor::new();
    let (_dir, cfg, d) = busy_daemon().await;
    b.goto(&format!("{}/ui/", d.url)).await;
    b.wait_for("the page to go live", LIVE, Duration::from_secs(20))
        .await;
    assert_eq!(b.text("#state-badge").await, "active");
    // A reload would forget this.
    b.run("window.sameDocument = true;", json!([])).await;
    let dropped = Instant::now();
    replace(
        &cfg.revocations,
        &v.revocations(2, &[(1, RevocationStatus::Suspended)]),
    );
    b.wait_for(
        "the badge to read suspended",
        &badge("suspended"),
        Duration::from_secs(2),
    )
    .await;
    let took = dropped.elapsed();
    eprintln!("suspension on the open page after {took:?}");
    assert_eq!(
        b.run("return window.sameDocument === true;", json!([]))
            .await,
        json!(true)
    );
    let reason = b.text("#reason").await;
    assert!(reason.contains("suspend"), "{reason}");
    assert!(b.text("#trust").await.contains("version 2"));
    screenshot(&b, "verifier-ui-suspended.png").await;
    b.quit().await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_a_license_file_chosen_on_the_page_is_previewed_then_installed() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let v = Vendor::new();
    let (dir, _cfg, d) = busy_daemon().await;
    let mut up = v.license(2, "enterprise");
    up.limits.max_nodes = 10;
    up.features.insert("bulk-operations".into());
    let file = dir.path().join("from-the-vendor.lic");
    std::fs::write(&file, v.sign(&up)).unwrap();
    b.goto(&format!("{}/ui/", d.url)).await;
    b.choose_file("#license-file", &file).await;
    b.click("#admin form[action='/ui/license/preview'] button")
        .await;
    b.wait_for_url("/ui/license/preview").await;
    let preview = b.text("main").await;
    assert!(
        preview.contains("The signature verifies.") && preview.contains("bulk-operations"),
        "{preview}"
    );
    assert_eq!(
        d.status().await["tier"],
        "standard",
        "installed before the confirmation"
    );
    screenshot(&b, "verifier-ui-install.png").await;
    b.click("form[action='/ui/license/install'] button").await;
    b.wait_for_url("/ui/?installed=02020202-").await;
    b.wait_for(
        "the page to show the new tier",
        "return document.getElementById('tier').textContent === 'enterprise';",
        Duration::from_secs(20),
    )
    .await;
    b.quit().await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_every_control_is_labelled_and_a_request_can_be_filed_from_the_keyboard() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let (_dir, _cfg, d) = busy_daemon().await;
    b.goto(&format!("{}/ui/", d.url)).await;
    let controls = b
        .run(
            "const all = Array.from(document.querySelectorAll('input:not([type=hidden]), textarea, select')); \
             return [all.length, all.filter(e => !e.labels || e.labels.length === 0 \
                 || !e.labels[0].textContent.trim()).map(e => e.name)];",
            json!([]),
        )
        .await;
    assert!(controls[0].as_u64() >= Some(3), "{controls}");
    assert_eq!(controls[1], json!([]), "controls without a label");
    // Enter in the tier field submits its form (no mouse).
    b.fill("#requested_tier", "enterprise\u{E007}").await;
    b.wait_for(
        "the keyboard-filed request",
        "return location.search.startsWith('?filed=');",
        Duration::from_secs(20),
    )
    .await;
    let queued = d.get("/v1/upgrade-requests").await.1;
    assert_eq!(
        queued["upgrade_requests"][0]["requested_tier"],
        "enterprise"
    );
    b.quit().await;
    d.stop().await;
}

/// Measures (never asserts) first render, each live update and page
/// weight; docs/benchmarks.md has the figures and this command:
/// `cargo test -p kaching-verifier --test ui_browser -- --ignored --nocapture measure_`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run by hand (see docs/benchmarks.md)"]
async fn measure_first_render_live_update_and_page_weight() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let v = Vendor::new();
    let (_dir, cfg, d) = busy_daemon().await;
    let url = format!("{}/ui/", d.url);
    let median = |mut xs: Vec<f64>| {
        xs.sort_by(|a, b| a.total_cmp(b));
        xs[xs.len() / 2]
    };
    // First render: navigation start to load end, 5 loads; baseline: the
    // same browser fetching GET /v1/status (the JSON the page is built from).
    let (mut render, mut base) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        b.goto(&url).await;
        let t = b
            .run(
                "const n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd - n.startTime;",
                json!([]),
            )
            .await;
        render.push(t.as_f64().unwrap());
        let t = b
            .run_async(
                "const done = arguments[0]; const t0 = performance.now(); \
                 fetch('/v1/status').then(r => r.text()).then(() => done(performance.now() - t0));",
            )
            .await;
        base.push(t.as_f64().unwrap());
    }
    let weight = b
        .run(
            "const r = performance.getEntriesByType('resource').filter(e => !e.name.includes('/ui/events') && !e.name.includes('/ui/live')); \
             const n = performance.getEntriesByType('navigation')[0]; \
             return n.decodedBodySize + r.reduce((s, e) => s + e.decodedBodySize, 0);",
            json!([]),
        )
        .await;
    b.wait_for("the page to go live", LIVE, Duration::from_secs(20))
        .await;
    // Live updates: flip suspended / active with newer revocation lists.
    let (mut drop_to_dom, mut event_to_dom) = (Vec::new(), Vec::new());
    for i in 0..10u64 {
        let suspend = i % 2 == 0;
        let entries: &[(u8, RevocationStatus)] = if suspend {
            &[(1, RevocationStatus::Suspended)]
        } else {
            &[]
        };
        let want = if suspend { "suspended" } else { "active" };
        let before = b
            .run(
                "return Number(document.body.dataset.updates || 0);",
                json!([]),
            )
            .await;
        let dropped_ms = epoch_ms();
        replace(&cfg.revocations, &v.revocations(10 + i, entries));
        b.wait_for("the badge", &badge(want), Duration::from_secs(10))
            .await;
        // The page stamps its own swap (same machine clock): no polling
        // delay in the figure.
        let gap = b
            .run(
                "return [Number(document.body.dataset.updatedAt), Number(document.body.dataset.updatedAt) - Number(document.body.dataset.eventAt), Number(document.body.dataset.updates)];",
                json!([]),
            )
            .await;
        assert!(gap[2].as_f64() > before.as_f64());
        drop_to_dom.push(gap[0].as_f64().unwrap() - dropped_ms);
        event_to_dom.push(gap[1].as_f64().unwrap());
    }
    // Baseline for live updates: the same flips seen by polling
    // GET /v1/status every millisecond (the file watcher and engine alone).
    let mut drop_to_api = Vec::new();
    for i in 0..10u64 {
        let suspend = i % 2 == 0;
        let entries: &[(u8, RevocationStatus)] = if suspend {
            &[(1, RevocationStatus::Suspended)]
        } else {
            &[]
        };
        let want = if suspend { "suspended" } else { "active" };
        let t0 = Instant::now();
        replace(&cfg.revocations, &v.revocations(30 + i, entries));
        while d.status().await["state"] != want {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "no {want} within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        drop_to_api.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    let (dom, api) = (median(drop_to_dom.clone()), median(drop_to_api));
    eprintln!("live update ms, file dropped -> GET /v1/status shows it (median of 10): {api:.1}; page/API ratio {:.2}x", dom / api);
    eprintln!(
        "first render ms (median of 5): {:.1}; GET /v1/status from the page ms: {:.1}; ratio {:.1}x",
        median(render.clone()),
        median(base.clone()),
        median(render) / median(base)
    );
    eprintln!("page weight bytes (document + css + js): {weight}");
    eprintln!(
        "live update ms, file dropped -> DOM (median of 10): {:.1}; SSE event -> DOM: {:.1}",
        median(drop_to_dom),
        median(event_to_dom)
    );
    let _: Value = Value::Null;
    b.quit().await;
    d.stop().await;
}
