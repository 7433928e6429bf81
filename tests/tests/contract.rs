//! The API contract: the OpenAPI documents that the verifier and the relay
//! serve at `GET /openapi.json`, checked by schemathesis (PyPI, a pinned
//! version in a throwaway venv, `target/schemathesis-venv`) against the
//! real daemons on loopback. Every documented operation gets up to 100
//! generated requests (valid and invalid); an answer must not be a 5xx, its
//! status must be documented, and its content type and body must match the
//! document. Without python3 or PyPI the test prints one `skipped:` line,
//! except under `CI=true`, where it fails.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns: a panic is the failure report

use std::path::Path;
use std::time::{Duration, Instant};

use kaching_core::wire::verifier::VerifierStatus;
use kaching_e2e::{decode_value, install, verifier_config, Events, Relay, Vendor, Verifier};
use kaching_testkit::{pip_venv, skip, venv_bin, wait_for_value};

/// The pinned schemathesis.
const SCHEMATHESIS: [&str; 1] = ["schemathesis==4.32.5"];

/// schemathesis's command line, as its console script starts it.
const CLI: &str =
    "import sys; from schemathesis.cli import schemathesis; sys.argv[0] = 'schemathesis'; sys.exit(schemathesis())";

/// Every check of a stateless run but `positive_data_acceptance` (a valid
/// request may be refused on purpose: an unknown quota, a license id
/// never activated, a tier outside the vendor's catalog).
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
    response_schema_conformance,response_headers_conformance,negative_data_rejection,\
    missing_required_header,unsupported_method,allow_header_conformance,ignored_auth";

/// A body over `max_body_bytes` is refused with 413, which schemathesis
/// does not count as a rejection of invalid data unless told.
const CONFIG: &str = r#"[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]
"#;

/// The verifier's API token in this test.
const TOKEN: &str = "contract-test-token-0123456789abcdef";

/// One schemathesis run may take this long before it is killed.
const RUN_BOUND: Duration = Duration::from_secs(60);

/// Runs `schemathesis run` against `base/openapi.json` with `token`,
/// skipping `excluded` paths; panics with its report unless it passes.
async fn schemathesis(
    venv: &Path,
    name: &str,
    base: &str,
    token: &str,
    filters: &[&str],
) -> Duration {
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("schemathesis.toml");
    std::fs::write(&config, CONFIG).unwrap();
    // Through the venv's python: the console script's `#!` names the
    // folder the venv was built in, before it was renamed into place.
    let mut cmd = tokio::process::Command::new(venv_bin(venv, "python"));
    cmd.current_dir(work.path())
        .env("NO_COLOR", "1")
        .args(["-c", CLI, "--config-file"])
        .arg(&config)
        .arg("run")
        .arg(format!("{base}/openapi.json"))
        .args([
            "--checks",
            CHECKS,
            "--max-examples",
            "100",
            "--phases",
            "examples,coverage,fuzzing",
            // One worker: with two, CPython 3.11's ast.parse (hypothesis reads
            // lambda sources) races itself ("AST constructor recursion depth
            // mismatch").
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--generation-database",
            "none",
            "--generation-with-security-parameters",
            "false",
            "--no-color",
            "--report",
            "json",
            "--report-json-path",
        ])
        .arg(kaching_testkit::target_dir().join(format!("schemathesis-{name}.json")))
        .arg("--header")
        .arg(format!("Authorization: Bearer {token}"));
    cmd.args(filters);
    cmd.kill_on_drop(true);
    let started = Instant::now();
    let out = tokio::time::timeout(RUN_BOUND, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("schemathesis against {base} ran past {RUN_BOUND:?}"))
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis found the API at {base} untrue to its document:\n{report}"
    );
    // The whole report stays beside the venv; the summary goes to the log.
    let _ = std::fs::write(
        kaching_testkit::target_dir().join(format!("schemathesis-{name}.txt")),
        &report,
    );
    let summary = report.rfind("SUMMARY").map_or("", |at| &report[at..]);
    eprintln!("schemathesis, {name}: {summary}");
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_verifier_and_relay_true_to_their_openapi_documents() {
    let venv = match tokio::task::spawn_blocking(|| pip_venv("schemathesis-venv", &SCHEMATHESIS))
        .await
        .unwrap()
    {
        Ok(venv) => venv,
        Err(why) => {
            return skip(&format!(
            "skipped: the OpenAPI contract check needs python3 and PyPI ({why}); run .ci/run, or \
                 `cargo test -p kaching-e2e --test contract` where both are available"
        ))
        }
    };
    let vendor = Vendor::new().await;
    // Long-polls end within a second, so no generated `wait` outlasts a request timeout.
    let mut relay = Relay::start_tweaked(&vendor.root, &vendor.public_pem(), |c| {
        c.long_poll_max = Duration::from_secs(1);
    })
    .await;
    assert_eq!(
        vendor.publish(&relay).await,
        0,
        "publish the revocation list"
    );
    let license = vendor.issue_connected("Contract Co", "1h").await;
    let dir = vendor.root.join("verifier");
    install(&dir, &vendor, &license);
    let mut config = verifier_config(&dir, Some(&relay));
    config.token = Some(kaching_verifier::config::Secret(TOKEN.into()));
    let mut verifier = Verifier::start(config).await;
    let api = verifier.json().with_token(TOKEN);
    // Activated on the relay: its fleet views have a cluster to show.
    wait_for_value(
        "the verifier's first relay contact",
        || async {
            decode_value::<VerifierStatus>("GET /v1/status", &api.get("/v1/status").await.1)
        },
        |s| s.relay.as_ref().is_some_and(|r| r.last_contact.is_some()),
    )
    .await;

    // Both documents are served without a token, and are the daemons' own.
    let (code, doc) = verifier.get("/openapi.json").await;
    assert_eq!(code, 200, "{doc}");
    assert_eq!(
        doc,
        serde_json::to_value(kaching_verifier::openapi::document()).unwrap()
    );
    let (code, doc) = kaching_testkit::Json::new(&relay.url)
        .get("/openapi.json")
        .await;
    assert_eq!(code, 200, "{doc}");
    assert_eq!(
        doc,
        serde_json::to_value(kaching_relay::openapi::document()).unwrap()
    );

    // The event stream never ends by itself within a request timeout, so
    // schemathesis leaves it out and it is held to its document here: 401
    // without the token, text/event-stream with the status first.
    let (code, body) = verifier.get("/v1/events").await;
    assert_eq!(code, 401, "{body}");
    let resp = api
        .request(reqwest::Method::GET, "/v1/events")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()[reqwest::header::CONTENT_TYPE],
        "text/event-stream"
    );
    drop(resp);
    let mut events = Events::open(&api, "/v1/events").await;
    let (kind, first) = events.next().await.expect("a first event");
    assert_eq!(kind, "status");
    decode_value::<VerifierStatus>("the first event", &first);
    drop(events);

    // DELETE /v1/nodes/{node_id} gets a run of its own: sharing its path
    // with PUT, schemathesis would try only a handful of node ids on it.
    let runs: [(&str, &str, &str, &[&str]); 3] = [
        (
            "verifier",
            &verifier.url,
            TOKEN,
            &["--exclude-path", "/v1/events", "--exclude-method", "DELETE"],
        ),
        (
            "verifier-delete",
            &verifier.url,
            TOKEN,
            &["--include-method", "DELETE"],
        ),
        ("relay", &relay.url, &relay.admin_token, &[]),
    ];
    for (name, url, token, filters) in runs {
        let took = schemathesis(&venv, name, url, token, filters).await;
        eprintln!("schemathesis: {name} true to its document ({took:.1?})");
    }

    // Still serving after the barrage.
    assert_eq!(api.get("/v1/status").await.0, 200);
    verifier.stop().await;
    relay.stop().await;
}
