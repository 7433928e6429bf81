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
    let change = |id: &str, fields: &[(&str, &str)]| {
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend_from_slice(fields);
        d.post(&format!("/desk/license/{id}/change"), &cookie, &form)
    };
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
    let (s, _, body) = change(&id, &[("action", "reinstate")]);
    assert_eq!(s, 303, "{body}");
    assert_eq!(state(&id), "active");
    // Upgrade: a new license on the new tier replaces the old one.
    let (s, loc, body) = change(&id, &[("action", "upgrade"), ("tier", "enterprise")]);
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
}

#[test]
fn desk_pages_stay_under_100_kib_with_assets() {
    let env = Env::new();
    for i in 0..20 {
        env.issue(&["--customer", &format!("Customer {i}"), "--tier", "standard"]);
    }
    let d = Desk::start(&env, false);
    let cookie = d.sign_in();
    let css = d.get("/desk/assets/kaching.css", &cookie).1.len();
    for path in ["/desk/", "/desk/issue"] {
        let (s, body) = d.get(path, &cookie);
        assert_eq!(s, 200);
        let weight = body.len() + css;
        println!("page weight {path}: {weight} bytes (20 licenses)");
        assert!(weight < 100 * 1024, "{path}: {weight} bytes");
    }
    let _ = PASS;
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
        upgrade_requests: Vec::new(),
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

fn upload(d: &Desk, cookie: &str, csrf: &str, bytes: Vec<u8>) -> (u16, String) {
    // multipart/form-data as a browser sends a file input.
    let b = "kachingboundary7f3a";
    let mut body = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"report\"; filename=\"usage.cose\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&bytes);
    body.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
    let r = d
        .http
        .post(format!("{}/desk/usage", d.base))
        .header("cookie", cookie)
        .header("origin", &d.base)
        .header("content-type", format!("multipart/form-data; boundary={b}"))
        .body(body)
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
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
    // The receipt is signed: a locked desk says how to unlock.
    let (s, body) = upload(&d, &cookie, &csrf, bytes.clone());
    assert_eq!(s, 422);
    assert!(body.contains("the vendor key is locked"), "{body}");
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
