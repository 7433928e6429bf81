//! `licensegen ui`, the sales-ops desk, over HTTP: the real binary on a
//! loopback port. Who gets in (one-time link, cookie), what a forged or
//! rebound request gets, and that the desk's buttons do what the CLI does.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;
#[path = "common/desk.rs"]
mod desk_support;

use common::{Env, PASS};
use desk_support::Desk;

fn license_path(env: &Env, id: &str) -> std::path::PathBuf {
    let out = env
        .cmd()
        .args(["ledger", "show", id, "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["path"].as_str().unwrap().into()
}

#[test]
fn desk_link_is_traded_once_for_a_strict_cookie_and_leaves_the_url() {
    let env = Env::new();
    let d = Desk::start(&env, false);
    let token = d.link.split("token=").nth(1).unwrap().to_string();
    assert!(token.len() >= 32, "{token}");
    let r = d.http.get(&d.link).send().unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        "/desk/",
        "the token must leave the address"
    );
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains(&token),
        "the cookie holds the token: {cookie}"
    );
    let session = cookie.split(';').next().unwrap();
    let (s, body) = d.get("/desk/", session);
    assert_eq!(s, 200);
    assert!(
        body.contains("Ledger") && body.contains("key locked"),
        "{body}"
    );
    // The link works once: a leaked copy (history, a shoulder) opens nothing.
    let again = d.http.get(&d.link).send().unwrap();
    assert_eq!(again.status(), 401);
    assert!(again.text().unwrap().contains("already used"));
}

#[test]
fn desk_without_the_cookie_every_page_is_401_with_what_to_do() {
    let env = Env::new();
    let (id, _) = env.issue(&["--customer", "ACME", "--tier", "standard"]);
    let d = Desk::start(&env, false);
    for path in [
        "/desk/",
        "/desk/issue",
        &format!("/desk/license/{id}"),
        &format!("/desk/license/{id}/download/binary"),
    ] {
        let (s, body) = d.get(path, "kaching_session=forged");
        assert_eq!(s, 401, "{path}");
        assert!(
            body.contains("Open the link `licensegen ui` printed"),
            "{path}: {body}"
        );
    }
    let (s, _, _) = d.post_from(
        &format!("/desk/license/{id}/change"),
        "",
        Some(&d.base),
        &[("csrf", "x"), ("action", "suspend")],
    );
    assert_eq!(s, 401);
    // The stylesheet is not a secret.
    assert_eq!(d.get("/desk/assets/kaching.css", "").0, 200);
}

#[test]
fn desk_attack_cross_site_post_and_missing_token_are_refused() {
    let env = Env::new();
    let (id, _) = env.issue(&["--customer", "ACME", "--tier", "standard"]);
    let d = Desk::start(&env, true);
    let cookie = d.sign_in();
    let csrf = d.csrf(&cookie);
    let before = env.revocation_version();
    let path = format!("/desk/license/{id}/change");
    let form = [("csrf", csrf.as_str()), ("action", "suspend")];
    let (s, _, body) = d.post_from(&path, &cookie, Some("http://evil.example"), &form);
    assert_eq!(s, 403);
    assert!(
        body.contains("another site") && body.contains("nothing was changed"),
        "{body}"
    );
    let (s, _, _) = d.post_from(&path, &cookie, None, &form);
    assert_eq!(s, 403, "a post without Origin");
    let (s, _, body) = d.post(&path, &cookie, &[("csrf", "guess"), ("action", "suspend")]);
    assert_eq!(s, 403);
    assert!(body.contains("token"), "{body}");
    assert_eq!(
        env.revocation_version(),
        before,
        "a refused post signed a list"
    );
    // The page's own post goes through.
    let (s, loc, body) = d.post(&path, &cookie, &form);
    assert_eq!(s, 303, "{body}");
    assert!(loc.ends_with("?done=suspended"), "{loc}");
    assert_eq!(env.revocation_version(), before + 1);
}

#[test]
fn desk_attack_rebound_host_name_is_refused() {
    let env = Env::new();
    let d = Desk::start(&env, false);
    let r = d
        .http
        .get(&d.link)
        .header("host", "evil.example")
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().unwrap().contains("Wrong address"));
    // The refused request did not spend the one-time link.
    assert_eq!(d.http.get(&d.link).send().unwrap().status(), 303);
}

#[test]
fn desk_refuses_to_listen_off_loopback() {
    let env = Env::new();
    for listen in ["0.0.0.0:0", "192.0.2.1:8080"] {
        let out = env
            .cmd()
            .args(["ui", "--no-open", "--listen", listen])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{listen}");
        let err = common::stderr(&out);
        assert!(
            err.contains("loopback only") && err.contains("ssh -L"),
            "{err}"
        );
    }
}

#[test]
fn desk_on_a_port_in_use_names_the_other_process_and_the_flag() {
    let env = Env::new();
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = held.local_addr().unwrap().to_string();
    let out = env
        .cmd()
        .args(["ui", "--no-open", "--listen", &listen])
        .output()
        .unwrap();
    let err = common::stderr(&out);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!(
            "cannot listen on {listen}: another process is using it"
        )) && err.contains("set another --listen"),
        "{err}"
    );
}

#[test]
fn desk_attack_script_in_a_customer_name_renders_as_text() {
    let env = Env::new();
    let (id, _) = env.issue(&[
        "--customer",
        "<script>alert(1)</script>",
        "--tier",
        "standard",
    ]);
    let d = Desk::start(&env, false);
    let cookie = d.sign_in();
    for path in ["/desk/".to_string(), format!("/desk/license/{id}")] {
        let (s, body) = d.get(&path, &cookie);
        assert_eq!(s, 200);
        assert!(!body.contains("<script>alert"), "{path}: {body}");
        assert!(
            body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{path}"
        );
    }
}

#[test]
fn desk_issue_previews_the_claims_then_signs_a_license_that_verifies() {
    let env = Env::new();
    let d = Desk::start(&env, false);
    let cookie = d.sign_in();
    let csrf = d.csrf(&cookie);
    let mut form = vec![
        ("csrf", csrf.as_str()),
        ("customer", "Globex"),
        ("tier", "standard"),
        ("nodes", "7"),
        ("features", "bulk-operations"),
        ("step", "preview"),
    ];
    let (s, _, body) = d.post("/desk/issue", &cookie, &form);
    assert_eq!(s, 200, "{body}");
    assert!(body.contains(r#"id="preview-customer">Globex"#), "{body}");
    assert!(body.contains("&quot;max_nodes&quot;: 7"), "{body}");
    assert!(env
        .snapshot()
        .keys()
        .all(|p| !p.starts_with(env.dir.join("licenses"))));
    let at = body.find(r#"name="previewed" value=""#).unwrap() + 24;
    let previewed = body[at..].split('"').next().unwrap().to_string();
    // Signing needs the key, and signs only what was previewed.
    form.retain(|(k, _)| *k != "step");
    form.push(("step", "sign"));
    let mut changed = form.clone();
    changed.push(("previewed", &previewed));
    changed.retain(|(k, v)| !(*k == "nodes" && *v == "7"));
    changed.push(("nodes", "70"));
    let (s, _, body) = d.post("/desk/issue", &cookie, &changed);
    assert_eq!(s, 200);
    assert!(
        body.contains("The form changed since the preview"),
        "{body}"
    );
    assert!(body.contains("&quot;max_nodes&quot;: 70"), "{body}");
    form.push(("previewed", &previewed));
    let (s, _, body) = d.post("/desk/issue", &cookie, &form);
    assert_eq!(s, 422);
    assert!(body.contains("the vendor key is locked"), "{body}");
    d.unlock(&cookie);
    let (s, loc, body) = d.post("/desk/issue", &cookie, &form);
    assert_eq!(s, 303, "{body}");
    let id = loc
        .strip_prefix("/desk/license/")
        .and_then(|l| l.strip_suffix("?done=issued"))
        .unwrap()
        .to_string();
    let file = license_path(&env, &id);
    let out = env.cmd().arg("verify").arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", common::stdout(&out));
    let (s, page) = d.get(&loc, &cookie);
    assert_eq!(s, 200);
    assert!(
        page.contains("Issued.") && page.contains("Globex"),
        "{page}"
    );
}

#[test]
fn desk_refuses_an_unknown_feature_with_the_nearest_name_as_the_cli_does() {
    let env = Env::new();
    let d = Desk::start(&env, true);
    let cookie = d.sign_in();
    let csrf = d.csrf(&cookie);
    let (s, _, body) = d.post(
        "/desk/issue",
        &cookie,
        &[
            ("csrf", &csrf),
            ("customer", "Globex"),
            ("tier", "standard"),
            ("features", "analytcs"),
            ("step", "sign"),
        ],
    );
    assert_eq!(s, 422);
    let cli = env
        .cmd()
        .args([
            "issue",
            "--customer",
            "Globex",
            "--tier",
            "standard",
            "--feature",
            "analytcs",
        ])
        .output()
        .unwrap();
    let said = common::stderr(&cli);
    let said = said.trim().strip_prefix("error: ").unwrap();
    assert!(said.contains(r#"did you mean "analytics"?"#), "{said}");
    let escaped = said.replace('"', "&quot;");
    assert!(
        body.contains(&escaped),
        "the desk said otherwise than `{said}`: {body}"
    );
    let (s, _, body) = d.post(
        "/desk/issue",
        &cookie,
        &[
            ("csrf", &csrf),
            ("customer", "G"),
            ("tier", "standrd"),
            ("step", "preview"),
        ],
    );
    assert_eq!(s, 422);
    assert!(
        body.contains("did you mean &quot;standard&quot;?"),
        "{body}"
    );
}

#[test]
fn desk_suspend_reinstate_upgrade_and_revoke_do_what_the_cli_does() {
    let env = Env::new();
    let (id, _) = env.issue(&["--customer", "ACME", "--tier", "standard"]);
    let d = Desk::start(&env, true);
    let cookie = d.sign_in();
    let csrf = d.csrf(&cookie);
    let v0 = env.revocation_version();
    let change = |id: &str, fields: &[(&str, &str)]| d.change(&cookie, &csrf, id, fields);
    let state = |id: &str| {
        let out = env
            .cmd()
            .args(["ledger", "show", id, "--json"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["state"].as_str().unwrap().to_string()
    };
    let (s, _, body) = change(&id, &[("action", "suspend"), ("reason", "unpaid invoice")]);
    assert_eq!(s, 303, "{body}");
    assert_eq!(state(&id), "suspended");
    assert_eq!(env.revocation_version(), v0 + 1);
    let shown = env.cmd().args(["revocations", "show"]).output().unwrap();
    assert!(common::stdout(&shown).contains("unpaid invoice"));
    // The list to carry to an air-gapped customer, as signed on disk.
    let (_, page) = d.get(&format!("/desk/license/{id}?done=suspended"), &cookie);
    assert!(page.contains(r#"id="download-revocations""#), "{page}");
    let (s, list) = d.bytes("/desk/revocations/download", &cookie);
    assert_eq!(s, 200);
    assert_eq!(
        list,
        std::fs::read(env.dir.join("revocations.asc")).unwrap()
    );
    let (s, _, body) = change(&id, &[("action", "reinstate")]);
    assert_eq!(s, 303, "{body}");
    assert_eq!(state(&id), "active");
    // Upgrade: previewed first (nothing signed), then a new license on the
    // new tier replaces the old one.
    let licenses = || std::fs::read_dir(env.dir.join("licenses")).unwrap().count();
    let before = licenses();
    let (s, _, body) = change(&id, &[("action", "upgrade"), ("tier", "enterprise")]);
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("Preview: the upgraded license"), "{body}");
    assert!(body.contains(r#"id="preview-tier">enterprise<"#), "{body}");
    assert_eq!(licenses(), before, "a preview signed a license");
    let previewed = hidden(&body, "previewed");
    // Signing with another tier than the one previewed shows it again instead.
    let (s, _, body) = change(
        &id,
        &[
            ("action", "upgrade"),
            ("tier", "evaluation"),
            ("step", "sign"),
            ("previewed", &previewed),
        ],
    );
    assert_eq!(s, 200, "{body}");
    assert!(
        body.contains("The form changed since the preview"),
        "{body}"
    );
    assert_eq!(licenses(), before);
    let (s, loc, body) = change(
        &id,
        &[
            ("action", "upgrade"),
            ("tier", "enterprise"),
            ("step", "sign"),
            ("previewed", &previewed),
        ],
    );
    assert_eq!(s, 303, "{body}");
    let new = loc
        .strip_prefix("/desk/license/")
        .and_then(|l| l.strip_suffix("?done=upgraded"))
        .unwrap()
        .to_string();
    assert_eq!(state(&id), "superseded");
    let (_, page) = d.get(&format!("/desk/license/{new}"), &cookie);
    assert!(page.contains(r#"id="tier">enterprise"#), "{page}");
    // The CLI's refusal, word for word: a replaced license is not upgraded again.
    let (s, _, body) = change(&id, &[("action", "renew")]);
    assert_eq!(s, 422);
    assert!(body.contains("was already replaced by"), "{body}");
    let (s, _, _) = change(&new, &[("action", "revoke"), ("revoke-reason", "fraud")]);
    assert_eq!(s, 303);
    assert_eq!(state(&new), "revoked");
}

#[test]
fn desk_ledger_filters_by_customer_state_and_expiry() {
    let env = Env::new();
    let (acme, _) = env.issue(&[
        "--customer",
        "ACME",
        "--tier",
        "standard",
        "--expires",
        "20d",
    ]);
    let (globex, _) = env.issue(&[
        "--customer",
        "Globex",
        "--tier",
        "standard",
        "--expires",
        "200d",
    ]);
    env.cmd().args(["suspend", &globex]).assert().success();
    let d = Desk::start(&env, false);
    let cookie = d.sign_in();
    let shows = |q: &str| {
        let (s, body) = d.get(&format!("/desk/?{q}"), &cookie);
        assert_eq!(s, 200, "{q}: {body}");
        (body.contains(&acme[..8]), body.contains(&globex[..8]))
    };
    assert_eq!(shows(""), (true, true));
    assert_eq!(shows("q=glob"), (false, true));
    assert_eq!(shows("state=suspended"), (false, true));
    assert_eq!(shows("state=active"), (true, false));
    assert_eq!(shows("expiring=30"), (true, false));
    let (s, body) = d.get("/desk/?expiring=soon", &cookie);
    assert_eq!(s, 422);
    assert!(body.contains("whole number of days"), "{body}");
    // A license's history.
    let (_, page) = d.get(&format!("/desk/license/{globex}"), &cookie);
    assert!(page.contains("suspended"), "{page}");
}

#[test]
fn desk_downloads_a_license_armored_or_binary() {
    let env = Env::new();
    let (id, file) = env.issue(&["--customer", "ACME", "--tier", "standard"]);
    let d = Desk::start(&env, false);
    let cookie = d.sign_in();
    let on_disk = std::fs::read(env.tmp.path().join(&file))
        .or_else(|_| std::fs::read(&file))
        .unwrap();
    let (s, bin) = d.bytes(&format!("/desk/license/{id}/download/binary"), &cookie);
    assert_eq!(s, 200);
    let (s, asc) = d.bytes(&format!("/desk/license/{id}/download/armored"), &cookie);
    assert_eq!(s, 200);
    assert!(kaching_core::armor::is_armored(&asc));
    assert_eq!(kaching_core::armor::dearmor(&asc, None).unwrap(), bin);
    let disk_bin = if kaching_core::armor::is_armored(&on_disk) {
        kaching_core::armor::dearmor(&on_disk, None).unwrap()
    } else {
        on_disk
    };
    assert_eq!(bin, disk_bin, "the download is not the issued license");
    assert!(kaching_core::verify_license(&bin, &env.pubkey()).is_ok());
    let (s, _) = d.get(&format!("/desk/license/{id}/download/zip"), &cookie);
    assert_eq!(s, 422);
    // The list to download, and without it what to do.
    assert_eq!(d.bytes("/desk/revocations/download", &cookie).0, 200);
    std::fs::remove_file(env.dir.join("revocations.asc")).unwrap();
    let (s, body) = d.get("/desk/revocations/download", &cookie);
    assert_eq!(s, 404);
    assert!(body.contains("licensegen revocations refresh"), "{body}");
}

#[test]
fn desk_pages_stay_under_100_kib_with_assets() {
    let env = Env::new();
    let mut last = String::new();
    for i in 0..19 {
        last = env
            .issue(&["--customer", &format!("Customer {i}"), "--tier", "standard"])
            .0;
    }
    // The last one bound to a cluster that got a clock reset.
    let (bound, cluster) = bound_license(&env);
    let out = env
        .cmd()
        .args(["clock-reset", "--cluster", &cluster, "--mark", &far_mark()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    let reset = common::stdout(&out)
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("signed clock reset "))
        .unwrap()
        .to_string();
    let d = Desk::start(&env, false);
    let cookie = d.sign_in();
    let css = d.get("/desk/assets/kaching.css", &cookie).1.len();
    let license = format!("/desk/license/{last}");
    let bound = format!("/desk/license/{bound}");
    let reset = format!("/desk/clock-reset/{reset}");
    for path in [
        "/desk/",
        "/desk/issue",
        license.as_str(),
        bound.as_str(),
        "/desk/clock-reset",
        reset.as_str(),
    ] {
        let (s, body) = d.get(path, &cookie);
        assert_eq!(s, 200);
        let weight = body.len() + css;
        println!("page weight {path}: {weight} bytes (20 licenses)");
        assert!(weight < 100 * 1024, "{path}: {weight} bytes");
    }
    let csrf = d.csrf(&cookie);
    let mark = far_mark();
    let (s, _, body) = post_reset(
        &d,
        &cookie,
        &csrf,
        &[("cluster", &cluster), ("mark", &mark), ("valid_for", "14d")],
    );
    assert_eq!(s, 200, "{body}");
    let weight = body.len() + css;
    println!("page weight clock-reset preview: {weight} bytes");
    assert!(weight < 100 * 1024, "clock-reset preview: {weight} bytes");
    let _ = PASS;
}

/// A ledger of 230 licenses is paged 100 at a time in the order issued,
/// the filter kept in the page links, and a page stays within the budget.
#[test]
fn desk_ledger_pages_a_large_ledger_within_the_budget() {
    let env = Env::new();
    for i in 0..230 {
        env.issue(&[
            "--customer",
            &format!("Customer {i} Industrial Holdings"),
            "--tier",
            "standard",
        ]);
    }
    let d = Desk::start(&env, false);
    let cookie = d.sign_in();
    let rows = |body: &str| body.matches("<tr><td>").count();
    let (s, first) = d.get("/desk/", &cookie);
    assert_eq!(s, 200);
    assert_eq!(rows(&first), 100);
    assert!(
        first.contains("230 of 230 licenses; 1–100 shown"),
        "{first}"
    );
    assert!(
        first.contains(r#"<a href="/desk/?page=1" rel="next">"#),
        "{first}"
    );
    let css = d.get("/desk/assets/kaching.css", &cookie).1.len();
    assert!(
        first.len() + css < 100 * 1024,
        "{} bytes",
        first.len() + css
    );
    let (_, middle) = d.get("/desk/?page=1", &cookie);
    let (_, last) = d.get("/desk/?page=2", &cookie);
    assert_eq!(rows(&last), 30);
    // Every license on exactly one page, in the order issued (many in
    // one second: recorded order, not id order).
    let seen: Vec<u32> = [&first, &middle, &last]
        .iter()
        .flat_map(|body| body.split("<td>Customer ").skip(1))
        .map(|rest| rest.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(seen, (0..230).collect::<Vec<u32>>());
    assert!(
        last.contains(r#"<a href="/desk/?page=1" rel="prev">"#),
        "{last}"
    );
    assert!(!last.contains(r#"rel="next""#), "{last}");
    // "Customer 1" matches 1, 10–19 and 100–199: 111, two pages.
    let (_, some) = d.get("/desk/?q=Customer+1+&page=1", &cookie);
    assert_eq!(rows(&some), 11, "{some}");
    assert!(
        some.contains("111 of 230 licenses; 101–111 shown"),
        "{some}"
    );
    assert!(
        some.contains(r#"<a href="/desk/?q=Customer%201%20" rel="prev">"#),
        "{some}"
    );
    let (_, past) = d.get("/desk/?page=9", &cookie);
    assert!(past.contains("Past the last page."), "{past}");
}

/// A chained usage report (the first of its chain) signed by `cluster`.
fn chained_report(
    env: &Env,
    cluster: &kaching_core::SecretKey,
    license: &str,
) -> std::path::PathBuf {
    use kaching_core::cluster::{ReportChain, UsageReport};
    use std::collections::BTreeMap;
    let report = UsageReport {
        license_id: license.parse().unwrap(),
        cluster_id: kaching_core::cluster_id(&cluster.public()),
        period_start: 1_795_000_000,
        period_end: 1_795_300_000,
        counters: BTreeMap::from([(
            "search_requests".to_string(),
            BTreeMap::from([("2026-11-21".to_string(), 41_000u64)]),
        )]),
        peak_nodes: 4,
        upgrade_requests: vec![kaching_core::cluster::ReportedUpgrade {
            id: Some(1),
            request: kaching_core::cluster::UpgradeRequest {
                requested_tier: "enterprise".into(),
                message: "we need SSO".into(),
                time: 1_795_200_000,
            },
        }],
        chain: Some(ReportChain {
            seq: 1,
            prev: None,
            trusted_time: 1_795_300_000,
            acked: 0,
            node_peaks: BTreeMap::new(),
        }),
    };
    let path = env.tmp.path().join("usage.cose");
    std::fs::write(&path, report.sign(cluster)).unwrap();
    path
}

/// POSTs multipart/form-data as a browser sends a form with a file input:
/// status, `Location` and body.
fn multipart(
    d: &Desk,
    cookie: &str,
    path: &str,
    fields: &[(&str, &str)],
    file: Option<(&str, &[u8])>,
) -> (u16, String, String) {
    let b = "kachingboundary7f3a";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{b}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    if let Some((name, bytes)) = file {
        body.extend_from_slice(
            format!(
                "--{b}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"upload.bin\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{b}--\r\n").as_bytes());
    let r = d
        .http
        .post(format!("{}{path}", d.base))
        .header("cookie", cookie)
        .header("origin", &d.base)
        .header("content-type", format!("multipart/form-data; boundary={b}"))
        .body(body)
        .send()
        .unwrap();
    let loc = r
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string())
        .unwrap_or_default();
    (r.status().as_u16(), loc, r.text().unwrap())
}

fn upload(d: &Desk, cookie: &str, csrf: &str, bytes: Vec<u8>) -> (u16, String) {
    let (s, _, body) = multipart(
        d,
        cookie,
        "/desk/usage",
        &[("csrf", csrf)],
        Some(("report", &bytes)),
    );
    (s, body)
}

/// The value of the hidden field `name` in a page.
fn hidden(body: &str, name: &str) -> String {
    let pat = format!(r#"name="{name}" value=""#);
    let at = body
        .find(&pat)
        .unwrap_or_else(|| panic!("no {name} in {body}"))
        + pat.len();
    body[at..].split('"').next().unwrap().to_string()
}

/// A license's claims as signed in its file.
fn claims(env: &Env, id: &str) -> kaching_core::License {
    let file = std::fs::read(license_path(env, id)).unwrap();
    kaching_core::verify_license(&file, &env.pubkey())
        .unwrap()
        .license
}

#[test]
fn desk_imports_a_usage_report_as_the_cli_does_and_offers_the_receipt() {
    let env = Env::new();
    let (id, _) = env.issue(&["--customer", "ACME", "--tier", "standard"]);
    let cluster = kaching_core::SecretKey::generate();
    let report = chained_report(&env, &cluster, &id);
    let d = Desk::start(&env, false);
    let cookie = d.sign_in();
    let csrf = d.csrf(&cookie);
    let bytes = std::fs::read(&report).unwrap();
    d.unlock(&cookie);
    let (s, body) = upload(&d, &cookie, &csrf, bytes.clone());
    assert_eq!(s, 200, "{body}");
    // What `usage import` prints, warnings included (82 % of a day quota).
    assert!(body.contains("Imported, with warnings."), "{body}");
    assert!(
        body.contains("reached 41000 of 50000 per day (82%)"),
        "{body}"
    );
    assert!(
        body.contains(&format!("imported usage report 1 for license {id}")),
        "{body}"
    );
    let at = body.find(r#"href="/desk/usage/"#).expect("a receipt link") + 6;
    let link = body[at..].split('"').next().unwrap().to_string();
    let (s, receipt) = d.bytes(&link, &cookie);
    assert_eq!(s, 200);
    assert!(
        kaching_core::armor::is_armored(&receipt),
        "not an armored receipt"
    );
    // The ledger has it, as `usage import` would have recorded it.
    let out = env
        .cmd()
        .args(["ledger", "show", &id, "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["usage_reports"].as_array().unwrap().len(), 1);
    // The same file again changes nothing.
    let (s, body) = upload(&d, &cookie, &csrf, bytes);
    assert_eq!(s, 200);
    assert!(
        body.contains("was already imported; nothing changed"),
        "{body}"
    );
    // A file that is not a signed report is refused with the CLI's words.
    let (s, body) = upload(&d, &cookie, &csrf, b"not a report".to_vec());
    assert_eq!(s, 422);
    assert!(body.contains("is not a valid usage report"), "{body}");
    // Receipts are served by plain names only.
    assert_eq!(d.get("/desk/usage/..%2Fkaching.toml", &cookie).0, 404);
}

#[test]
fn desk_forgets_the_key_on_lock_and_on_ctrl_c() {
    let env = Env::new();
    let (id, _) = env.issue(&["--customer", "ACME", "--tier", "standard"]);
    let d = Desk::start(&env, false);
    let cookie = d.sign_in();
    d.unlock(&cookie);
    let csrf = d.csrf(&cookie);
    assert!(d.get("/desk/", &cookie).1.contains("key unlocked"));
    let (s, loc, _) = d.post("/desk/lock", &cookie, &[("csrf", &csrf)]);
    assert_eq!((s, loc.as_str()), (303, "/desk/?done=locked"));
    assert!(d.get("/desk/", &cookie).1.contains("key locked"));
    let (s, _, body) = d.post(
        &format!("/desk/license/{id}/change"),
        &cookie,
        &[("csrf", &csrf), ("action", "suspend")],
    );
    assert_eq!(s, 422);
    assert!(body.contains("the vendor key is locked"), "{body}");
    // A wrong passphrase leaves it locked, and says so.
    let (s, _, body) = d.post(
        "/desk/unlock",
        &cookie,
        &[("csrf", &csrf), ("passphrase", "wrong"), ("back", "/desk/")],
    );
    assert_eq!(s, 401);
    assert!(body.contains("wrong passphrase"), "{body}");
    d.unlock(&cookie);
    let (code, said) = d.interrupt();
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("the vendor key is forgotten"), "{said}");
}

#[test]
fn desk_locked_import_records_the_report_and_signs_its_receipt_after_unlock() {
    let env = Env::new();
    let (id, _) = env.issue(&["--customer", "ACME", "--tier", "standard"]);
    let cluster = kaching_core::SecretKey::generate();
    let report = chained_report(&env, &cluster, &id);
    let d = Desk::start(&env, false);
    let cookie = d.sign_in();
    let csrf = d.csrf(&cookie);
    let bytes = std::fs::read(&report).unwrap();
    // Locked: recorded as `usage import --no-receipt` records it, not refused.
    let (s, body) = upload(&d, &cookie, &csrf, bytes.clone());
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("Recorded without a receipt."), "{body}");
    assert!(
        body.contains("Unlock the key to produce the receipt"),
        "{body}"
    );
    assert!(
        body.contains("reached 41000 of 50000 per day (82%)"),
        "{body}"
    );
    assert!(
        !body.contains("--no-receipt"),
        "the CLI's flag leaked: {body}"
    );
    assert!(!body.contains(r#"id="download-receipt""#), "{body}");
    let sha = hidden(&body, "report");
    let ledger = |env: &Env| {
        let out = env
            .cmd()
            .args(["ledger", "show", &id, "--json"])
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    assert_eq!(ledger(&env)["usage_reports"].as_array().unwrap().len(), 1);
    let receipts = |env: &Env| {
        std::fs::read_dir(env.dir.join("usage-reports"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".receipt.asc")
            })
            .count()
    };
    assert_eq!(receipts(&env), 0);
    // The button, still locked, says what to do and signs nothing.
    let path = format!("/desk/license/{id}/receipt");
    let form = [("csrf", csrf.as_str()), ("report", sha.as_str())];
    let (s, _, body) = d.post(&path, &cookie, &form);
    assert_eq!(s, 422);
    assert!(body.contains("the vendor key is locked"), "{body}");
    // The license page offers the same button for the report, and says
    // what the report said.
    let (_, page) = d.get(&format!("/desk/license/{id}"), &cookie);
    assert!(page.contains("do-sign-receipt-0"), "{page}");
    assert!(
        page.contains("search_requests: up to 41000 (2026-11-21)")
            && page.contains("upgrade request: tier enterprise — we need SSO"),
        "{page}"
    );
    d.unlock(&cookie);
    let (s, _, body) = d.post(&path, &cookie, &form);
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("Receipt signed."), "{body}");
    let at = body.find(r#"href="/desk/usage/"#).expect("a receipt link") + 6;
    let link = body[at..].split('"').next().unwrap().to_string();
    let (s, receipt) = d.bytes(&link, &cookie);
    assert_eq!(s, 200);
    assert!(kaching_core::armor::is_armored(&receipt));
    // Nothing recorded twice; the license page shows the receipt signed.
    assert_eq!(ledger(&env)["usage_reports"].as_array().unwrap().len(), 1);
    let (_, page) = d.get(&format!("/desk/license/{id}"), &cookie);
    assert!(!page.contains("do-sign-receipt-0"), "{page}");
    assert!(page.contains(">signed<"), "{page}");
    // The CLI agrees the receipt exists: importing again writes the same one.
    let out = env
        .cmd()
        .args(["usage", "import"])
        .arg(&report)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    let again = std::fs::read(env.tmp.path().join("usage.receipt.asc")).unwrap();
    assert_eq!(
        kaching_core::armor::dearmor(&again, None).unwrap(),
        kaching_core::armor::dearmor(&receipt, None).unwrap(),
        "the desk's receipt is not the one the ledger keeps"
    );
    // A report hash the license does not have is refused.
    let (s, _, body) = d.post(&path, &cookie, &[("csrf", &csrf), ("report", "00ff")]);
    assert_eq!(s, 422);
    assert!(body.contains("has no usage report"), "{body}");
}

#[test]
fn desk_signs_the_receipt_of_a_report_the_cli_imported_without_one() {
    let env = Env::new();
    let (id, _) = env.issue(&["--customer", "ACME", "--tier", "standard"]);
    let cluster = kaching_core::SecretKey::generate();
    let report = chained_report(&env, &cluster, &id);
    env.cmd()
        .args(["usage", "import", "--no-receipt"])
        .arg(&report)
        .assert()
        .success();
    let d = Desk::start(&env, true);
    let cookie = d.sign_in();
    let (_, page) = d.get(&format!("/desk/license/{id}"), &cookie);
    let sha = hidden(&page, "report");
    let csrf = d.csrf(&cookie);
    let (s, _, body) = d.post(
        &format!("/desk/license/{id}/receipt"),
        &cookie,
        &[("csrf", &csrf), ("report", &sha)],
    );
    assert_eq!(s, 200, "{body}");
    assert!(body.contains(r#"id="download-receipt""#), "{body}");
}

#[test]
fn desk_issue_form_signs_every_claim_licensegen_issue_takes() {
    let env = Env::new();
    let d = Desk::start(&env, true);
    let cookie = d.sign_in();
    let csrf = d.csrf(&cookie);
    let mut form = vec![
        ("csrf", csrf.as_str()),
        ("customer", "Globex"),
        ("tier", "standard"),
        ("custom_quotas", "exports=500/day"),
        ("report_every", "90d"),
        ("report_warn", "10d"),
        ("report_deny", "bulk-operations"),
        ("features", "bulk-operations"),
        ("degrade", "analytics"),
        ("heartbeat", "1h"),
        ("offline_grace", "7d"),
        ("step", "preview"),
    ];
    let (s, _, body) = d.post("/desk/issue", &cookie, &form);
    assert_eq!(s, 200, "{body}");
    // The preview shows each of them in words, before anything is signed.
    for shown in [
        "acknowledged every 90d, warn 10d before; while late, off: bulk-operations",
        "still on: analytics",
        "exports 500 per day",
        "every 1h, offline grace 7d",
    ] {
        assert!(body.contains(shown), "{shown}: {body}");
    }
    let previewed = hidden(&body, "previewed");
    form.retain(|(k, _)| *k != "step");
    form.push(("step", "sign"));
    form.push(("previewed", &previewed));
    let (s, loc, body) = d.post("/desk/issue", &cookie, &form);
    assert_eq!(s, 303, "{body}");
    let id = loc
        .strip_prefix("/desk/license/")
        .and_then(|l| l.strip_suffix("?done=issued"))
        .unwrap();
    // The same flags on the CLI sign the same claims.
    let (cli_id, _) = env.issue(&[
        "--customer",
        "Globex",
        "--tier",
        "standard",
        "--custom-quota",
        "exports=500/day",
        "--report-every",
        "90d",
        "--report-warn",
        "10d",
        "--report-deny",
        "bulk-operations",
        "--feature",
        "bulk-operations",
        "--degrade",
        "analytics",
        "--heartbeat",
        "1h",
        "--offline-grace",
        "7d",
    ]);
    let (desk, cli) = (claims(&env, id), claims(&env, &cli_id));
    assert!(desk.report.is_some());
    assert_eq!(desk.report, cli.report);
    assert_eq!(desk.degrade, cli.degrade);
    assert_eq!(desk.quotas, cli.quotas);
    assert_eq!(desk.features, cli.features);
    assert_eq!(desk.heartbeat, cli.heartbeat);
    assert_eq!(desk.limits, cli.limits);
    // Refusals in the CLI's words.
    let refused = |fields: &[(&str, &str)], cli_args: &[&str]| {
        let mut form = vec![
            ("csrf", csrf.as_str()),
            ("customer", "G"),
            ("tier", "standard"),
            ("step", "preview"),
        ];
        form.extend_from_slice(fields);
        let (s, _, body) = d.post("/desk/issue", &cookie, &form);
        assert_eq!(s, 422, "{fields:?}: {body}");
        let out = env
            .cmd()
            .args(["issue", "--customer", "G", "--tier", "standard"])
            .args(cli_args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let said = common::stderr(&out);
        let said = said.trim().strip_prefix("error: ").unwrap().to_string();
        assert!(
            body.contains(&said.replace('"', "&quot;")),
            "the desk said otherwise than `{said}`: {body}"
        );
    };
    refused(
        &[("report_every", "90d"), ("report_deny", "sso")],
        &["--report-every", "90d", "--report-deny", "sso"],
    );
    refused(
        &[("degrade", "bulk-operations")],
        &["--degrade", "bulk-operations"],
    );
    refused(&[("report_every", "0d")], &["--report-every", "0d"]);
    let (s, _, body) = d.post(
        "/desk/issue",
        &cookie,
        &[
            ("csrf", &csrf),
            ("customer", "G"),
            ("tier", "standard"),
            ("report_warn", "3d"),
            ("step", "preview"),
        ],
    );
    assert_eq!(s, 422);
    assert!(body.contains("need --report-every"), "{body}");
}

fn activation_request(cluster: &kaching_core::SecretKey, nodes: u32) -> Vec<u8> {
    use kaching_core::cluster::ActivationRequest;
    let req = ActivationRequest {
        cluster_id: kaching_core::cluster_id(&cluster.public()),
        cluster_key: *cluster.public().as_bytes(),
        hostname: "bzzz-01.customer.example".into(),
        nodes,
        created: 1_795_000_000,
    };
    kaching_core::armor::armor(kaching_core::DocKind::ActivationRequest, &req.sign(cluster))
        .into_bytes()
}

#[test]
fn desk_binds_a_license_to_an_uploaded_activation_request() {
    let env = Env::new();
    let d = Desk::start(&env, true);
    let cookie = d.sign_in();
    let csrf = d.csrf(&cookie);
    let cluster = kaching_core::SecretKey::generate();
    let cid = kaching_core::cluster_id(&cluster.public());
    let request = activation_request(&cluster, 40);
    let fields = [
        ("csrf", csrf.as_str()),
        ("customer", "Initech"),
        ("tier", "standard"),
        ("step", "preview"),
    ];
    let (s, _, body) = multipart(
        &d,
        &cookie,
        "/desk/issue",
        &fields,
        Some(("bind", &request)),
    );
    assert_eq!(s, 200, "{body}");
    // The preview says what the request binds to, and warns of its size.
    assert!(
        body.contains(&format!(r#"id="preview-cluster">{cid}<"#)),
        "{body}"
    );
    assert!(
        body.contains("activation request from host bzzz-01.customer.example, 40 nodes"),
        "{body}"
    );
    assert!(
        body.contains("the cluster reported 40 nodes, above this license"),
        "{body}"
    );
    let saved = hidden(&body, "bind_saved");
    let previewed = hidden(&body, "previewed");
    assert!(!saved.is_empty(), "{body}");
    // Signing carries the saved request by name (a file input cannot be refilled).
    let sign = [
        ("csrf", csrf.as_str()),
        ("customer", "Initech"),
        ("tier", "standard"),
        ("bind_saved", &saved),
        ("previewed", &previewed),
        ("step", "sign"),
    ];
    let (s, loc, body) = multipart(&d, &cookie, "/desk/issue", &sign, None);
    assert_eq!(s, 303, "{body}");
    let id = loc
        .strip_prefix("/desk/license/")
        .and_then(|l| l.strip_suffix("?done=issued"))
        .unwrap()
        .to_string();
    assert_eq!(claims(&env, &id).cluster.as_deref(), Some(cid.as_str()));
    let (_, page) = d.get(&format!("/desk/license/{id}"), &cookie);
    assert!(
        page.contains(&format!(
            "bound to cluster {cid} (activation request from host"
        )),
        "the ledger's history lacks the binding: {page}"
    );
    // As the CLI: a cluster id and a request together are refused.
    let mut both = fields.to_vec();
    both.push(("cluster", "abcdabcdabcdabcd"));
    let (s, _, body) = multipart(&d, &cookie, "/desk/issue", &both, Some(("bind", &request)));
    assert_eq!(s, 422);
    assert!(body.contains("--cluster and --bind: give one"), "{body}");
    // "Drop this activation request" unbinds.
    let mut drop = fields.to_vec();
    drop.push(("bind_saved", &saved));
    drop.push(("unbind", "on"));
    let (s, _, body) = multipart(&d, &cookie, "/desk/issue", &drop, None);
    assert_eq!(s, 200, "{body}");
    assert!(
        body.contains(r#"id="preview-cluster">not bound<"#),
        "{body}"
    );
}

#[test]
fn desk_attack_forged_activation_request_or_another_file_is_refused_for_bind() {
    let env = Env::new();
    let d = Desk::start(&env, true);
    let cookie = d.sign_in();
    let csrf = d.csrf(&cookie);
    let cluster = kaching_core::SecretKey::generate();
    // A request whose node count was edited after signing.
    let armored = activation_request(&cluster, 4);
    let mut bin = kaching_core::armor::dearmor(&armored, None).unwrap();
    let at = bin.len() - 70;
    bin[at] ^= 1;
    let fields = [
        ("csrf", csrf.as_str()),
        ("customer", "Initech"),
        ("tier", "standard"),
        ("step", "preview"),
    ];
    let (s, _, body) = multipart(&d, &cookie, "/desk/issue", &fields, Some(("bind", &bin)));
    assert_eq!(s, 422, "{body}");
    assert!(
        body.contains("the uploaded file is not a valid activation request"),
        "{body}"
    );
    assert!(
        !env.dir.join("activation-requests").exists()
            || std::fs::read_dir(env.dir.join("activation-requests"))
                .unwrap()
                .next()
                .is_none(),
        "a forged request was kept"
    );
    // The form names only requests the desk saved: not the key, not a path.
    for name in ["../vendor.key", "/etc/passwd", "../kaching.toml"] {
        let mut f = fields.to_vec();
        f.push(("bind_saved", name));
        let (s, _, body) = multipart(&d, &cookie, "/desk/issue", &f, None);
        assert_eq!(s, 422, "{name}");
        assert!(body.contains("is not one the desk saved"), "{name}: {body}");
    }
    assert!(
        !env.dir.join("licenses").exists()
            || std::fs::read_dir(env.dir.join("licenses"))
                .unwrap()
                .next()
                .is_none()
    );
}

#[test]
fn desk_suspends_with_a_revoker_key_as_revoker_key_does() {
    let env = Env::new();
    let (id, _) = env.issue(&["--customer", "ACME", "--tier", "standard"]);
    // A root that names the roles (the vendor key: issuer and revoker).
    env.cmd()
        .args(["root", "init", "--key-count", "1", "--threshold", "1"])
        .assert()
        .success();
    // The vendor key is not unlocked in the desk.
    let d = Desk::start(&env, false);
    let cookie = d.sign_in();
    let csrf = d.csrf(&cookie);
    let v0 = env.revocation_version();
    let path = format!("/desk/license/{id}/change");
    // The page's suspend form has the two fields, labelled.
    let (_, page) = d.get(&format!("/desk/license/{id}"), &cookie);
    for field in [
        r#"<label for="suspend-valid">"#,
        r#"id="suspend-valid" name="list_valid_for""#,
        r#"<label for="suspend-revoker-key">"#,
        r#"id="suspend-revoker-key" name="revoker_key""#,
        r#"id="suspend-revoker-pass" name="revoker_passphrase""#,
    ] {
        assert!(page.contains(field), "{field}: {page}");
    }
    let vendor_key = env.dir.join("vendor.key").display().to_string();
    // A key file the root does not name a revoker.
    common::bare(env.tmp.path())
        .args(["key", "new", "--out", "other.key"])
        .env("KACHING_PASSPHRASE", "other pass phrase")
        .assert()
        .success();
    let other = env.tmp.path().join("other.key").display().to_string();
    let (s, _, body) = d.post(
        &path,
        &cookie,
        &[
            ("csrf", &csrf),
            ("action", "suspend"),
            ("revoker_key", &other),
            ("revoker_passphrase", "other pass phrase"),
        ],
    );
    assert_eq!(s, 422);
    assert!(body.contains("not a revoker"), "{body}");
    let (s, _, body) = d.post(
        &path,
        &cookie,
        &[
            ("csrf", &csrf),
            ("action", "suspend"),
            ("revoker_key", &vendor_key),
            ("revoker_passphrase", "wrong"),
        ],
    );
    assert_eq!(s, 422);
    assert!(body.contains("wrong passphrase"), "{body}");
    let (s, _, body) = d.post(
        &path,
        &cookie,
        &[
            ("csrf", &csrf),
            ("action", "suspend"),
            ("revoker_key", &vendor_key),
            ("revoker_passphrase", PASS),
            ("list_valid_for", "2020-01-01"),
        ],
    );
    assert_eq!(s, 422);
    assert!(body.contains("is in the past"), "{body}");
    assert_eq!(
        env.revocation_version(),
        v0,
        "a refused change signed a list"
    );
    // The vendor key's file as the revoker key (it holds the role in the
    // first root), with a list fresh for 3 days.
    let (s, loc, body) = d.post(
        &path,
        &cookie,
        &[
            ("csrf", &csrf),
            ("action", "suspend"),
            ("revoker_key", &vendor_key),
            ("revoker_passphrase", PASS),
            ("list_valid_for", "3d"),
        ],
    );
    assert_eq!(s, 303, "{body}");
    assert!(loc.ends_with("?done=suspended"), "{loc}");
    assert_eq!(env.revocation_version(), v0 + 1);
    // Signed by the key given, downloadable for the customer.
    let (s, list) = d.bytes("/desk/revocations/download", &cookie);
    assert_eq!(s, 200);
    let list = kaching_core::armor::dearmor(&list, None).unwrap();
    assert!(kaching_core::verify_revocation_list(&list, &env.pubkey()).is_ok());
    // Dropped after that one list: the desk is still locked.
    assert!(d.get("/desk/", &cookie).1.contains("key locked"));
    let out = env
        .cmd()
        .args(["revocations", "show", "--json"])
        .output()
        .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expires = list["expires"].as_u64().unwrap();
    assert!(
        expires > now + 2 * 86_400 && expires <= now + 3 * 86_400 + 60,
        "list fresh until {expires}, now {now}"
    );
}

#[test]
fn desk_upgrade_and_renew_take_the_terms_licensegen_upgrade_takes() {
    let env = Env::new();
    let (desk_id, _) = env.issue(&["--customer", "ACME", "--tier", "standard"]);
    let (cli_id, _) = env.issue(&["--customer", "ACME", "--tier", "standard"]);
    let d = Desk::start(&env, true);
    let cookie = d.sign_in();
    let csrf = d.csrf(&cookie);
    let change = |id: &str, fields: &[(&str, &str)]| d.change(&cookie, &csrf, id, fields);
    // The license page offers the terms on both forms, each with its own ids.
    let (_, page) = d.get(&format!("/desk/license/{desk_id}"), &cookie);
    for id in [
        "upgrade-nodes",
        "upgrade-expires",
        "renew-nodes",
        "renew-overage",
    ] {
        assert!(page.contains(&format!(r#"id="{id}""#)), "{id}: {page}");
    }
    let terms = [
        ("nodes", "250"),
        ("features", "bulk-operations"),
        ("custom_quotas", "exports=500/day"),
        ("grace", "30d"),
        ("overage", "10"),
    ];
    let mut form = vec![("action", "upgrade"), ("tier", "enterprise")];
    form.extend_from_slice(&terms);
    let (s, _, body) = change(&desk_id, &form);
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("exports 500 per day"), "{body}");
    // The preview carries every term to the sign step.
    assert_eq!(hidden(&body, "nodes"), "250");
    assert_eq!(hidden(&body, "custom_quotas"), "exports=500/day");
    let previewed = hidden(&body, "previewed");
    // A term changed after the preview is shown again, not signed.
    let mut changed: Vec<(&str, &str)> = form
        .iter()
        .map(|&(k, v)| if k == "nodes" { (k, "300") } else { (k, v) })
        .collect();
    changed.extend([("step", "sign"), ("previewed", previewed.as_str())]);
    let (s, _, body) = change(&desk_id, &changed);
    assert_eq!(s, 200, "{body}");
    assert!(
        body.contains("The form changed since the preview"),
        "{body}"
    );
    form.extend([("step", "sign"), ("previewed", previewed.as_str())]);
    let (s, loc, body) = change(&desk_id, &form);
    assert_eq!(s, 303, "{body}");
    let upgraded = loc
        .strip_prefix("/desk/license/")
        .and_then(|l| l.strip_suffix("?done=upgraded"))
        .unwrap()
        .to_string();
    // The CLI's upgrade with the same flags signs the same terms.
    let out = env
        .cmd()
        .args([
            "upgrade",
            &cli_id,
            "--tier",
            "enterprise",
            "--nodes",
            "250",
            "--feature",
            "bulk-operations",
            "--custom-quota",
            "exports=500/day",
            "--grace",
            "30d",
            "--overage",
            "10",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stdout(&out));
    let (cli_new, _) = common::parse_issued(&common::stdout(&out));
    let (desk, cli) = (claims(&env, &upgraded), claims(&env, &cli_new));
    assert_eq!(desk.tier, "enterprise");
    assert_eq!(desk.limits.max_nodes, 250);
    assert_eq!(desk.limits, cli.limits);
    assert_eq!(desk.features, cli.features);
    assert_eq!(desk.quotas, cli.quotas);
    assert_eq!((desk.grace, desk.overage), (cli.grace, cli.overage));
    // Renew with a node limit: the new license keeps its tier, takes the
    // limit, and a word the CLI refuses is refused in its words.
    let (s, _, body) = change(&upgraded, &[("action", "renew"), ("nodes", "lots")]);
    assert_eq!(s, 422, "{body}");
    assert!(body.contains("write a whole number"), "{body}");
    let (s, _, body) = change(&upgraded, &[("action", "renew"), ("nodes", "400")]);
    assert_eq!(s, 200, "{body}");
    let previewed = hidden(&body, "previewed");
    let (s, loc, body) = change(
        &upgraded,
        &[
            ("action", "renew"),
            ("nodes", "400"),
            ("step", "sign"),
            ("previewed", &previewed),
        ],
    );
    assert_eq!(s, 303, "{body}");
    let renewed = loc
        .strip_prefix("/desk/license/")
        .and_then(|l| l.strip_suffix("?done=renewed"))
        .unwrap();
    let r = claims(&env, renewed);
    assert_eq!((r.tier.as_str(), r.limits.max_nodes), ("enterprise", 400));
    assert!(r.expires_at > desk.expires_at, "a renewal extends the term");
}

/// A license bound to a new cluster; returns its id and the cluster id.
fn bound_license(env: &Env) -> (String, String) {
    let key = kaching_core::SecretKey::generate();
    let cluster = kaching_core::cluster_id(&key.public());
    let (id, _) = env.issue(&[
        "--customer",
        "Umbrella Health",
        "--tier",
        "standard",
        "--cluster",
        &cluster,
    ]);
    (id, cluster)
}

/// A mark from a clock that was wrong ahead by years.
fn far_mark() -> String {
    kaching_core::time::rfc3339(kaching_testkit::now() + 800 * kaching_core::time::DAY)
}

/// The clock resets the ledger holds for `cluster`.
fn recorded_resets(env: &Env, cluster: &str) -> Vec<licensegen::ledger::ClockResetRecord> {
    let l = licensegen::ledger::Ledger::open_to_read(&env.dir.join("ledger.sqlite")).unwrap();
    licensegen::ledger::clock_resets_for(&l.conn, &[cluster]).unwrap()
}

/// Previews a reset of cluster `cluster` for a mark far ahead (14 days'
/// validity): the fields that sign what the preview showed.
fn previewed_reset(
    d: &Desk,
    cookie: &str,
    csrf: &str,
    cluster: &str,
) -> Vec<(&'static str, String)> {
    let mark = far_mark();
    let fields = [
        ("cluster", cluster),
        ("mark", mark.as_str()),
        ("valid_for", "14d"),
    ];
    let (s, _, body) = post_reset(d, cookie, csrf, &fields);
    assert_eq!(s, 200, "{body}");
    let mut sign: Vec<(&'static str, String)> = vec![
        ("cluster", cluster.to_string()),
        ("mark", mark.clone()),
        ("valid_for", "14d".to_string()),
    ];
    sign.extend([
        ("step", "sign".to_string()),
        ("previewed", hidden(&body, "previewed")),
    ]);
    sign
}

/// Posts the clock-reset form with `csrf` and `fields`.
fn post_reset(
    d: &Desk,
    cookie: &str,
    csrf: &str,
    fields: &[(&str, &str)],
) -> (u16, String, String) {
    let mut form = vec![("csrf", csrf)];
    form.extend_from_slice(fields);
    d.post("/desk/clock-reset", cookie, &form)
}

#[test]
fn desk_signs_a_clock_reset_after_a_preview_and_records_it() {
    let env = Env::new();
    let (license, cluster) = bound_license(&env);
    let d = Desk::start(&env, true);
    let cookie = d.sign_in();
    let csrf = d.csrf(&cookie);
    let (s, page) = d.get("/desk/clock-reset", &cookie);
    assert_eq!(s, 200, "{page}");
    assert!(page.contains(r#"name="valid_for" value="14d""#), "{page}");
    // The license page offers it for its cluster.
    let (_, page) = d.get(&format!("/desk/license/{license}"), &cookie);
    assert!(
        page.contains(&format!(r#"href="/desk/clock-reset?cluster={cluster}""#)),
        "{page}"
    );
    let mark = far_mark();
    let fields = [
        ("cluster", cluster.to_uppercase()),
        ("mark", mark.clone()),
        ("valid_for", "7d".to_string()),
    ];
    let with = |extra: &[(&'static str, String)]| -> Vec<(&'static str, String)> {
        fields
            .iter()
            .cloned()
            .chain(extra.iter().cloned())
            .collect()
    };
    let post = |f: &[(&str, String)]| {
        let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        post_reset(&d, &cookie, &csrf, &f)
    };
    // The preview says what `licensegen clock-reset` says before signing,
    // and signs nothing.
    let (s, _, body) = post(&with(&[("step", "preview".into())]));
    assert_eq!(s, 200, "{body}");
    assert!(
        body.contains(&format!(r#"id="preview-cluster">{cluster}<"#)),
        "{body}"
    );
    assert!(
        body.contains(&format!(r#"id="preview-mark">{mark}<"#)),
        "{body}"
    );
    assert!(body.contains("ahead of this computer's clock"), "{body}");
    assert!(body.contains(r#"id="preview-new-mark""#), "{body}");
    assert!(body.contains("(7d)"), "{body}");
    assert!(
        body.contains(&format!(r#"href="/desk/license/{license}""#))
            && body.contains("bound to this cluster"),
        "{body}"
    );
    assert!(!body.contains("Check:"), "no warning due: {body}");
    assert!(
        recorded_resets(&env, &cluster).is_empty(),
        "a preview signed"
    );
    assert!(!env.dir.join("clock-resets").exists());
    let previewed = hidden(&body, "previewed");
    let sign = with(&[("step", "sign".into()), ("previewed", previewed.clone())]);
    let (s, loc, body) = post(&sign);
    assert_eq!(s, 303, "{body}");
    let id = loc
        .strip_prefix("/desk/clock-reset/")
        .and_then(|l| l.strip_suffix("?done=signed"))
        .unwrap()
        .to_string();
    // The result page: what was signed, the file and what the customer runs.
    let (s, page) = d.get(&loc, &cookie);
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("Signed."), "{page}");
    assert!(page.contains(&format!(r#"id="reset-id">{id}<"#)), "{page}");
    let name = format!("clock-reset-{cluster}.asc");
    assert!(
        page.contains(&format!("kaching-verifier clock-reset {name}")),
        "{page}"
    );
    // The download is the file written under clock-resets/, and it verifies
    // against the vendor key.
    let (s, file) = d.bytes(&format!("/desk/clock-reset/{id}/download"), &cookie);
    assert_eq!(s, 200);
    assert_eq!(
        file,
        std::fs::read(env.dir.join("clock-resets").join(&name)).unwrap()
    );
    let r = kaching_core::clock_reset::verify_clock_reset(&file, &env.pubkey())
        .unwrap()
        .reset;
    assert_eq!(r.id_text(), id);
    assert_eq!(r.cluster_id, cluster);
    assert_eq!(kaching_core::time::rfc3339(r.mark), mark);
    assert_eq!(r.expires, r.issued + 7 * kaching_core::time::DAY);
    let now = kaching_testkit::now();
    assert!(r.issued <= now && r.issued + 60 > now, "iat is now");
    let rows = recorded_resets(&env, &cluster);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].id, id);
    assert_eq!(rows[0].file, file);
    // A second press of the button does not sign a second reset: the ledger
    // changed since the preview, which is shown again with the earlier one.
    let (s, _, body) = post(&sign);
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("changed since the"), "{body}");
    assert!(
        body.contains(&format!("clock reset {id} for this cluster")),
        "{body}"
    );
    assert_eq!(recorded_resets(&env, &cluster).len(), 1);
    // The license page lists it as `ledger show` does.
    let (_, page) = d.get(&format!("/desk/license/{license}"), &cookie);
    assert!(page.contains(r#"id="clock-resets""#), "{page}");
    assert!(
        page.contains(&format!(r#"href="/desk/clock-reset/{id}""#)),
        "{page}"
    );
    let shown = env
        .cmd()
        .args(["ledger", "show", &license])
        .output()
        .unwrap();
    assert!(common::stdout(&shown).contains(&id));
}

#[test]
fn desk_clock_reset_refuses_a_mark_not_ahead_and_signs_nothing() {
    let env = Env::new();
    let (_, cluster) = bound_license(&env);
    // Locked: refusals need no key, and a locked key signs nothing either.
    let d = Desk::start(&env, false);
    let cookie = d.sign_in();
    let csrf = d.csrf(&cookie);
    let behind = kaching_core::time::rfc3339(kaching_testkit::now() - kaching_core::time::DAY);
    for step in ["preview", "sign"] {
        let (s, _, body) = post_reset(
            &d,
            &cookie,
            &csrf,
            &[
                ("cluster", &cluster),
                ("mark", &behind),
                ("valid_for", "14d"),
                ("step", step),
                ("previewed", "0000"),
            ],
        );
        assert_eq!(s, 422, "{step}: {body}");
        assert!(body.contains("Not signed."), "{body}");
        assert!(
            body.contains(&format!("the mark {behind} is not ahead of this computer")),
            "{body}"
        );
        // What was typed stays to fix; there is nothing to sign.
        assert!(
            body.contains(&format!(r#"name="mark" value="{behind}""#)),
            "{body}"
        );
        assert!(!body.contains(r#"id="do-sign""#), "{body}");
    }
    // The CLI's other refusals, in its words.
    for (cluster, valid, says) in [
        ("not-a-cluster", "14d", "is not a cluster id"),
        (cluster.as_str(), "91d", "is too long"),
        (cluster.as_str(), "10min", "is too short"),
    ] {
        let mark = far_mark();
        let (s, _, body) = post_reset(
            &d,
            &cookie,
            &csrf,
            &[
                ("cluster", cluster),
                ("mark", &mark),
                ("valid_for", valid),
                ("step", "preview"),
            ],
        );
        assert_eq!(s, 422, "{says}: {body}");
        assert!(body.contains(says), "{says}: {body}");
    }
    // A mark ahead, previewed, then signed with the key locked: the preview
    // again with what to do.
    let sign = previewed_reset(&d, &cookie, &csrf, &cluster);
    let sign: Vec<(&str, &str)> = sign.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (s, _, body) = post_reset(&d, &cookie, &csrf, &sign);
    assert_eq!(s, 422, "{body}");
    assert!(body.contains("the vendor key is locked"), "{body}");
    assert!(body.contains(r#"id="preview-mark""#), "{body}");
    assert!(recorded_resets(&env, &cluster).is_empty());
    assert!(!env.dir.join("clock-resets").exists());
}

#[test]
fn attack_desk_clock_reset_without_the_csrf_token_is_refused() {
    let env = Env::new();
    let (_, cluster) = bound_license(&env);
    let d = Desk::start(&env, true);
    let cookie = d.sign_in();
    let csrf = d.csrf(&cookie);
    let sign = previewed_reset(&d, &cookie, &csrf, &cluster);
    let sign: Vec<(&str, &str)> = sign.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut with_token = vec![("csrf", csrf.as_str())];
    with_token.extend_from_slice(&sign);
    // Another site's page posting the (complete) form: refused on Origin.
    let (s, _, body) = d.post_from(
        "/desk/clock-reset",
        &cookie,
        Some("http://evil.example"),
        &with_token,
    );
    assert_eq!(s, 403);
    assert!(
        body.contains("another site") && body.contains("nothing was changed"),
        "{body}"
    );
    let (s, _, _) = d.post_from("/desk/clock-reset", &cookie, None, &with_token);
    assert_eq!(s, 403, "a post without Origin");
    // Same origin but no token, or a guessed one.
    let (s, _, body) = d.post("/desk/clock-reset", &cookie, &sign);
    assert_eq!(s, 403);
    assert!(body.contains("token"), "{body}");
    let (s, _, body) = post_reset(&d, &cookie, "guess", &sign);
    assert_eq!(s, 403);
    assert!(body.contains("token"), "{body}");
    assert!(
        recorded_resets(&env, &cluster).is_empty(),
        "a refused post signed"
    );
    assert!(!env.dir.join("clock-resets").exists());
    // The page's own post goes through.
    let (s, loc, body) = d.post("/desk/clock-reset", &cookie, &with_token);
    assert_eq!(s, 303, "{body}");
    assert!(loc.ends_with("?done=signed"), "{loc}");
    assert_eq!(recorded_resets(&env, &cluster).len(), 1);
}

#[test]
fn desk_upgrade_preview_shows_the_limits_the_new_tier_lowers() {
    let env = Env::new();
    let (id, _) = env.issue(&[
        "--customer",
        "Acme",
        "--tier",
        "standard",
        "--nodes",
        "150",
        "--quota",
        "search_requests=2000000/day",
    ]);
    let d = Desk::start(&env, true);
    let cookie = d.sign_in();
    let csrf = d.csrf(&cookie);
    let (s, _, body) = d.change(
        &cookie,
        &csrf,
        &id,
        &[("action", "upgrade"), ("tier", "enterprise")],
    );
    assert_eq!(s, 200, "{body}");
    // The notes `licensegen upgrade` prints, word for word.
    for note in [
        "nodes 150 → 100 (the enterprise tier's default); pass --nodes 150 to keep it",
        "quota search_requests 2000000/day → 1000000/day (the enterprise tier's default); pass --quota search_requests=2000000/day to keep it",
    ] {
        assert!(
            body.contains(&format!(r#"<span class="preview-check">{note}</span>"#)),
            "{note}: {body}"
        );
    }
    assert!(body.contains("Node limit"), "{body}");
    // A limit kept through the form: no note for it.
    let (s, _, body) = d.change(
        &cookie,
        &csrf,
        &id,
        &[
            ("action", "upgrade"),
            ("tier", "enterprise"),
            ("nodes", "150"),
        ],
    );
    assert_eq!(s, 200, "{body}");
    assert!(!body.contains("nodes 150 → 100"), "{body}");
    assert!(body.contains("quota search_requests 2000000/day"), "{body}");
}
