//! `cargo run -p kaching-demo`: the whole KACHING story in a temp folder.
//!
//! Sales ops make a vendor key and issue an evaluation license with the real
//! `licensegen` CLI (run in-process); the real verifier daemon starts on
//! loopback with that license; then, as BZZZ and WHOOSH would, the demo asks
//! it questions over HTTP and shows what it enforces. Finally sales ops
//! upgrade the license and the daemon picks up the new file live.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// Where the vendor works and where the customer's cluster keeps its files.
struct Folders {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    vendor: PathBuf,
    site: PathBuf,
    passphrase: PathBuf,
}

fn main() -> std::process::ExitCode {
    match tokio::runtime::Runtime::new()
        .context("cannot start the async runtime")
        .and_then(|rt| rt.block_on(demo()))
    {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\ndemo failed: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn step(title: &str) {
    println!("\n── {title}");
}

/// Runs one `licensegen` command in-process, echoing it as a person would type it.
fn licensegen(f: &Folders, args: &[&str]) -> Result<()> {
    let shown: Vec<String> = args
        .iter()
        .map(|a| {
            a.replace(&*f.vendor.to_string_lossy(), "$VENDOR")
                .replace(&*f.site.to_string_lossy(), "$SITE")
                .replace(&*f.root.to_string_lossy(), ".")
        })
        .collect();
    println!("$ licensegen {}", shown.join(" "));
    let mut argv = vec![
        "licensegen".to_string(),
        "--passphrase-file".to_string(),
        f.passphrase.to_string_lossy().into_owned(),
    ];
    argv.extend(args.iter().map(|s| s.to_string()));
    match licensegen::run_code(argv) {
        0 => Ok(()),
        code => bail!("licensegen {} exited with code {code}", args.join(" ")),
    }
}

async fn demo() -> Result<()> {
    let root = tempfile::Builder::new()
        .prefix("kaching-demo-")
        .tempdir()
        .context("cannot create a temp folder")?;
    let f = Folders {
        vendor: root.path().join("vendor"),
        site: root.path().join("site"),
        passphrase: root.path().join("passphrase.txt"),
        root: root.path().to_path_buf(),
        _tmp: root,
    };
    std::fs::create_dir_all(&f.site)?;
    std::fs::write(&f.passphrase, "correct horse battery staple\n")?;
    // The passphrase unlocks the vendor key: licensegen refuses it readable by others.
    #[cfg(unix)]
    std::fs::set_permissions(
        &f.passphrase,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )?;
    println!(
        "KACHING demo — everything happens under {}",
        f.site
            .parent()
            .map(Path::display)
            .map(|d| d.to_string())
            .unwrap_or_default()
    );
    println!("($VENDOR is the vendor's laptop, $SITE the customer's cluster)");

    step("1. Sales ops create the vendor key (private key encrypted with age)");
    let vendor = f.vendor.to_string_lossy().into_owned();
    licensegen(&f, &["init", &vendor, "--issuer", "Demo Vendor"])?;

    step("2. Sales ops issue an evaluation license for Acme Robotics");
    let license = f.site.join("license.lic").to_string_lossy().into_owned();
    licensegen(
        &f,
        &[
            "--dir",
            &vendor,
            "issue",
            "--customer",
            "Acme Robotics",
            "--tier",
            "evaluation",
            "--expires",
            "90d",
            "--out",
            &license,
        ],
    )?;
    std::fs::copy(f.vendor.join("vendor.pub"), f.site.join("vendor.pub"))
        .context("copying vendor.pub")?;
    std::fs::copy(
        f.vendor.join("revocations.cose"),
        f.site.join("revocations.krl"),
    )
    .context("copying the revocation list")?;

    step("3. The customer starts kaching-verifier on loopback with that license");
    let config = kaching_verifier::Config::for_dir(&f.site);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(kaching_verifier::run(listener, config, async move {
        let _ = stop_rx.await;
    }));
    let http = reqwest::Client::new();
    wait_ready(&http, &base).await?;
    println!("verifier listening on {base}");
    let status = get(&http, &format!("{base}/v1/status")).await?;
    show_status(&status);
    let license_id = status["license_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    step("4. BZZZ asks for features: basic-search is in the tier, analytics is not");
    for feature in ["basic-search", "analytics"] {
        show_feature(&get(&http, &format!("{base}/v1/features/{feature}")).await?);
    }

    step("5. Nodes join: the evaluation tier allows 3, the 4th is refused");
    for n in 1..=4 {
        show_node(&http, &base, &format!("node-{n}")).await?;
    }

    step("6. Quota spent: 850 search requests, then a retry of the same request (idempotent), then 200 more");
    for (amount, key) in [(850, "batch-1"), (850, "batch-1"), (200, "batch-2")] {
        let (code, body) =
            send(http.post(format!("{base}/v1/usage")).json(
                &json!({"metric": "search_requests", "amount": amount, "idempotency_key": key}),
            ))
            .await?;
        println!(
            "POST /v1/usage {amount} ({key}) → {code} {}",
            compact(&body)
        );
    }
    let status = get(&http, &format!("{base}/v1/status")).await?;
    for s in status["upgrade_suggestions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        println!(
            "upgrade suggestion for WHOOSH: {} → {} ({})",
            s["current_tier"],
            s["suggested_tier"],
            s["reason"].as_str().unwrap_or_default()
        );
    }

    step("7. Sales ops upgrade the license to standard; the customer drops the new file in place");
    let incoming = f.root.join("upgraded.lic").to_string_lossy().into_owned();
    licensegen(
        &f,
        &[
            "--dir",
            &vendor,
            "upgrade",
            &license_id,
            "--tier",
            "standard",
            "--out",
            &incoming,
        ],
    )?;
    println!("$ mv upgraded.lic $SITE/license.lic");
    let started = Instant::now();
    std::fs::rename(&incoming, &license).context("replacing the license file")?;
    let status = wait_for_tier(&http, &base, "standard").await?;
    println!(
        "verifier picked up the new license {} ms after the file was replaced",
        started.elapsed().as_millis()
    );
    show_status(&status);
    show_feature(&get(&http, &format!("{base}/v1/features/analytics")).await?);
    show_node(&http, &base, "node-4").await?;

    step("8. Shutting down the verifier cleanly");
    let _ = stop_tx.send(());
    daemon.await.context("verifier task panicked")??;
    println!("done: the license was issued, enforced, and upgraded live, all offline.");
    Ok(())
}

async fn send(req: reqwest::RequestBuilder) -> Result<(u16, Value)> {
    let resp = req.send().await.context("verifier did not answer")?;
    let code = resp.status().as_u16();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    Ok((code, body))
}

async fn get(http: &reqwest::Client, url: &str) -> Result<Value> {
    let (code, body) = send(http.get(url)).await?;
    if code != 200 {
        bail!("GET {url} answered {code}: {body}");
    }
    Ok(body)
}

async fn wait_ready(http: &reqwest::Client, base: &str) -> Result<()> {
    for _ in 0..100 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the verifier did not come up within 5 s")
}

async fn wait_for_tier(http: &reqwest::Client, base: &str, tier: &str) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = get(http, &format!("{base}/v1/status")).await?;
        if status["tier"] == tier {
            return Ok(status);
        }
        if Instant::now() > deadline {
            bail!("the verifier did not pick up the {tier} license within 10 s (status: {status})");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn show_node(http: &reqwest::Client, base: &str, node: &str) -> Result<()> {
    let (code, body) = send(http.put(format!("{base}/v1/nodes/{node}"))).await?;
    println!("PUT /v1/nodes/{node} → {code} {}", compact(&body));
    Ok(())
}

fn show_feature(v: &Value) {
    let verdict = if v["allowed"] == true {
        "allowed"
    } else {
        "DENIED "
    };
    println!(
        "feature {:<14} {verdict}  {}",
        v["feature"].as_str().unwrap_or_default(),
        v["reason"].as_str().unwrap_or_default()
    );
}

fn show_status(s: &Value) {
    println!(
        "status: {} | tier {} | customer {} | expires {} | nodes {}/{} | features {}",
        s["state"].as_str().unwrap_or_default(),
        s["tier"].as_str().unwrap_or("-"),
        s["customer"].as_str().unwrap_or("-"),
        s["expires_at"].as_str().unwrap_or("-"),
        s["nodes_in_use"],
        s["max_nodes"],
        s["features"]
            .as_array()
            .map(|a| a
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default()
    );
}

fn compact(v: &Value) -> String {
    let mut s = v.to_string();
    if s.len() > 160 {
        s.truncate(157);
        s.push_str("...");
    }
    s
}
