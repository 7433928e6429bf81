//! `cargo run -p kaching-demo`: the whole KACHING story in a temp folder.
//!
//! Sales ops make a vendor key and issue an evaluation license with the real
//! `licensegen` CLI (run in-process); the real verifier daemon starts on
//! loopback with that license; then, as BZZZ and WHOOSH would, the demo asks
//! it questions over HTTP and shows what it enforces. Sales ops then upgrade
//! the license (picked up live), suspend it and reinstate it with signed
//! revocation lists. `--keep DIR` leaves everything behind for exploring.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde_json::{json, Value};

/// The KACHING story end to end on embedded defaults: vendor key, license,
/// verifier, enforcement, live upgrade, suspension and reinstatement.
///
/// Everything runs offline on loopback. The commands are echoed so you can
/// paste them afterwards (with --keep) and explore on your own.
#[derive(Debug, Parser)]
#[command(name = "kaching-demo")]
struct Cli {
    /// Run in DIR (new or empty) and keep it afterwards, instead of a temp folder
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
}

/// The demo's passphrase for its throwaway vendor key.
const PASSPHRASE: &str = "correct horse battery staple";
/// Width that reasons are wrapped to.
const WIDTH: usize = 78;

/// Where the vendor works and where the customer's cluster keeps its files.
struct Folders {
    /// Deletes the folder at the end unless `--keep` was given.
    _tmp: Option<tempfile::TempDir>,
    /// The demo folder (`$DEMO`), shown in place of its path.
    root: PathBuf,
    /// The vendor's laptop (`$VENDOR`): key, ledger, revocation list.
    vendor: PathBuf,
    /// The customer's cluster (`$SITE`): license, vendor.pub, list, verifier state.
    site: PathBuf,
    /// The vendor key's passphrase, 0600, passed to licensegen as a file.
    passphrase: PathBuf,
}

/// `println!` that returns a broken pipe as an error instead of panicking
/// (`cargo run -p kaching-demo | head` ends quietly).
macro_rules! out {
    ($($arg:tt)*) => {
        kaching_kit::stdout::println(&format!($($arg)*))?
    };
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match tokio::runtime::Runtime::new()
        .context("cannot start the async runtime")
        .and_then(|rt| rt.block_on(demo(cli)))
    {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The reader of our output went away (`| head`): not a failure.
        Err(e) if e.chain().any(kaching_kit::stdout::is_broken_pipe) => {
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("\ndemo failed: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn step(title: &str) -> Result<()> {
    out!("\n── {title}");
    Ok(())
}

/// `text` wrapped at [`WIDTH`], every line after the first indented by `indent`.
fn wrap(text: &str, first: usize, indent: usize) -> String {
    let mut out = String::new();
    let mut col = first;
    for word in text.split_whitespace() {
        if col > indent && col + 1 + word.chars().count() > WIDTH {
            out.push('\n');
            out.push_str(&" ".repeat(indent));
            col = indent;
        } else if col > first || !out.is_empty() {
            out.push(' ');
            col += 1;
        }
        out.push_str(word);
        col += word.chars().count();
    }
    out
}

/// One argument as it would be typed in a POSIX shell: folder paths become
/// `"$VENDOR/…"`, and anything with spaces or shell characters is quoted.
fn shell_word(f: &Folders, arg: &str) -> String {
    let mut shown = arg.to_string();
    for (dir, var) in [
        (&f.vendor, "$VENDOR"),
        (&f.site, "$SITE"),
        (&f.root, "$DEMO"),
    ] {
        shown = shown.replace(&*dir.to_string_lossy(), var);
    }
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c);
    if shown.chars().all(plain) && !shown.is_empty() {
        shown
    } else if shown.contains('$') {
        format!("\"{}\"", shown.replace('"', "\\\""))
    } else {
        format!("'{}'", shown.replace('\'', "'\\''"))
    }
}

/// Runs one `licensegen` command in-process, echoing it as a person would type it.
fn licensegen(f: &Folders, args: &[&str]) -> Result<()> {
    let shown: Vec<String> = args.iter().map(|a| shell_word(f, a)).collect();
    out!("$ licensegen {}", shown.join(" "));
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

/// The demo folder: `--keep DIR` (created, or empty) or a temp folder.
fn folders(keep: Option<&Path>) -> Result<Folders> {
    let (tmp, root) = match keep {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let used = std::fs::read_dir(dir)
                .with_context(|| format!("cannot read {}", dir.display()))?
                .next()
                .is_some();
            if used {
                bail!(
                    "{} is not empty: --keep needs a new or empty folder, so nothing of yours is overwritten",
                    dir.display()
                );
            }
            let root = dir
                .canonicalize()
                .with_context(|| format!("cannot resolve {}", dir.display()))?;
            (None, root)
        }
        None => {
            let tmp = tempfile::Builder::new()
                .prefix("kaching-demo-")
                .tempdir()
                .context("cannot create a temp folder")?;
            let root = tmp.path().to_path_buf();
            (Some(tmp), root)
        }
    };
    let f = Folders {
        vendor: root.join("vendor"),
        site: root.join("site"),
        passphrase: root.join("passphrase.txt"),
        root,
        _tmp: tmp,
    };
    std::fs::create_dir_all(&f.site)?;
    std::fs::write(&f.passphrase, format!("{PASSPHRASE}\n"))?;
    // The passphrase unlocks the vendor key: licensegen refuses it readable by others.
    #[cfg(unix)]
    std::fs::set_permissions(
        &f.passphrase,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )?;
    Ok(f)
}

/// The verifier's config file on the site, as a customer admin would write it.
fn write_verifier_config(f: &Folders) -> Result<PathBuf> {
    let path = f.site.join("verifier.toml");
    let line = |key: &str, p: &Path| format!("{key} = {:?}\n", p.to_string_lossy());
    let text = format!(
        "# kaching-verifier configuration written by kaching-demo.\n\
         # `kaching-verifier default-config` prints every key with its default.\n\
         {}{}{}{}listen = \"127.0.0.1:7741\"\n",
        line("license", &f.site.join("license.lic")),
        line("trusted_keys", &f.site.join("vendor.pub")),
        line("revocations", &f.site.join("revocations.krl")),
        line("state_dir", &f.site.join("state")),
    );
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

async fn demo(cli: Cli) -> Result<()> {
    let f = folders(cli.keep.as_deref())?;
    out!(
        "KACHING demo — everything happens under {}",
        f.root.display()
    );
    out!("$VENDOR is the vendor's laptop, $SITE the customer's cluster:");
    out!(
        "  DEMO={} VENDOR={} SITE={}",
        shell_word(&f, &f.root.to_string_lossy()).replace("$DEMO", &f.root.to_string_lossy()),
        shell_word(&f, &f.vendor.to_string_lossy()).replace("$VENDOR", "$DEMO/vendor"),
        shell_word(&f, &f.site.to_string_lossy()).replace("$SITE", "$DEMO/site"),
    );

    step("1. Sales ops create the vendor key (private key encrypted with age)")?;
    let vendor = f.vendor.to_string_lossy().into_owned();
    licensegen(&f, &["init", &vendor, "--issuer", "Demo Vendor"])?;

    step("2. Sales ops issue an evaluation license for Acme Robotics")?;
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
    out!("$ cp \"$VENDOR/vendor.pub\" \"$SITE/\"; cp \"$VENDOR/revocations.cose\" \"$SITE/revocations.krl\"");
    copy_list(&f)?;
    std::fs::copy(f.vendor.join("vendor.pub"), f.site.join("vendor.pub"))
        .context("copying vendor.pub")?;

    step("3. The customer starts kaching-verifier with that license")?;
    let config_path = write_verifier_config(&f)?;
    out!("$ kaching-verifier run --config \"$SITE/verifier.toml\"   (here: in-process, on a free loopback port)");
    let config = kaching_verifier::Config::load(Some(&config_path))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(kaching_verifier::run(listener, config, async move {
        let _ = stop_rx.await;
    }));
    let http = reqwest::Client::new();
    wait_ready(&http, &base).await?;
    out!("verifier listening on {base}");
    let status = get(&http, &format!("{base}/v1/status")).await?;
    show_status(&status)?;
    let license_id = text(&status["license_id"]).to_string();

    step("4. BZZZ asks for features: basic-search is in the tier, analytics is not")?;
    for feature in ["basic-search", "analytics"] {
        show_feature(&get(&http, &format!("{base}/v1/features/{feature}")).await?)?;
    }

    step("5. Nodes join: the evaluation tier allows 3 and no overage, so the 4th is refused")?;
    for n in 1..=4 {
        show_node(&http, &base, &format!("node-{n}")).await?;
    }

    step("6. Quota spent: 850 search requests, a retry of the same batch (counted once), then 200 more")?;
    for (amount, key) in [(850, "batch-1"), (850, "batch-1"), (200, "batch-2")] {
        let (code, body) =
            send(http.post(format!("{base}/v1/usage")).json(
                &json!({"metric": "search_requests", "amount": amount, "idempotency_key": key}),
            ))
            .await?;
        let head = format!("POST /v1/usage {amount:>3} ({key}) → {code} ");
        let what = if code == 200 {
            format!("allowed: {} of {} used today", body["used"], body["limit"])
        } else {
            refusal(&body)
        };
        out!("{head}{}", wrap(&what, head.chars().count(), 4));
    }
    let status = get(&http, &format!("{base}/v1/status")).await?;
    for s in status["upgrade_suggestions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let head = format!(
            "WHOOSH suggests an upgrade {} → {}: ",
            text(&s["current_tier"]),
            text(&s["suggested_tier"])
        );
        out!(
            "{head}{}",
            wrap(text(&s["reason"]), head.chars().count(), 4)
        );
    }

    step("7. Sales ops upgrade the license to standard; the customer drops the new file in place")?;
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
    out!("$ mv \"$DEMO/upgraded.lic\" \"$SITE/license.lic\"");
    let started = Instant::now();
    std::fs::rename(&incoming, &license).context("replacing the license file")?;
    let status = wait_for(
        &http,
        &base,
        |s| s["tier"] == "standard",
        "the standard license",
    )
    .await?;
    out!(
        "verifier picked up the new license {} ms after the file was replaced",
        started.elapsed().as_millis()
    );
    show_status(&status)?;
    show_feature(&get(&http, &format!("{base}/v1/features/analytics")).await?)?;
    show_node(&http, &base, "node-4").await?;
    let upgraded_id = text(&status["license_id"]).to_string();

    step("8. Sales ops suspend the license (unpaid invoice); the customer installs the new revocation list")?;
    licensegen(
        &f,
        &[
            "--dir",
            &vendor,
            "suspend",
            &upgraded_id,
            "--reason",
            "invoice 1042 is 60 days overdue",
        ],
    )?;
    out!("$ cp \"$VENDOR/revocations.cose\" \"$SITE/revocations.krl\"");
    copy_list(&f)?;
    let status = wait_for(
        &http,
        &base,
        |s| s["state"] == "suspended",
        "the suspension",
    )
    .await?;
    show_status(&status)?;
    show_feature(&get(&http, &format!("{base}/v1/features/analytics")).await?)?;

    step("9. The invoice is paid: sales ops reinstate it, and the next list lifts the suspension")?;
    licensegen(&f, &["--dir", &vendor, "reinstate", &upgraded_id])?;
    out!("$ cp \"$VENDOR/revocations.cose\" \"$SITE/revocations.krl\"");
    copy_list(&f)?;
    let status = wait_for(
        &http,
        &base,
        |s| s["state"] == "active",
        "the reinstatement",
    )
    .await?;
    show_status(&status)?;
    show_feature(&get(&http, &format!("{base}/v1/features/analytics")).await?)?;

    step("10. Shutting down the verifier cleanly")?;
    let _ = stop_tx.send(());
    daemon.await.context("verifier task panicked")??;
    out!("done: the license was issued, enforced, upgraded, suspended and reinstated live, all offline.");
    out!("\nNext: docs/sales-ops.md walks through every licensegen command;");
    out!("docs/verifier.md is the customer admin's guide to kaching-verifier.");
    match cli.keep {
        Some(_) => {
            out!(
                "\nEverything is kept in {}. To explore it:",
                f.root.display()
            );
            out!(
                "  export DEMO={}",
                shell_word(&f, &f.root.to_string_lossy())
                    .replace("$DEMO", &f.root.to_string_lossy())
            );
            out!("  export VENDOR=\"$DEMO/vendor\" SITE=\"$DEMO/site\" KACHING_PASSPHRASE='{PASSPHRASE}'   # demo key only");
            out!("  cargo run -q -p licensegen -- --dir \"$VENDOR\" ledger list");
            out!("  cargo run -q -p kaching-verifier -- check --config \"$SITE/verifier.toml\"");
        }
        None => out!(
            "(run `cargo run -p kaching-demo -- --keep DIR` to keep the files and explore them)"
        ),
    }
    Ok(())
}

/// Installs the vendor's current revocation list on the site, as a file copy would.
fn copy_list(f: &Folders) -> Result<()> {
    let target = f.site.join("revocations.krl");
    let staged = f.site.join(".revocations.krl.new");
    std::fs::copy(f.vendor.join("revocations.cose"), &staged)
        .context("copying the revocation list")?;
    std::fs::rename(&staged, &target).context("installing the revocation list")?;
    Ok(())
}

/// A JSON string field, or "-".
fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

/// "code: message" of a refusal, whole.
fn refusal(body: &Value) -> String {
    let e = &body["error"];
    format!("{}: {}", text(&e["code"]), text(&e["message"]))
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

/// Polls the status until `done` holds (10 s at most).
async fn wait_for(
    http: &reqwest::Client,
    base: &str,
    done: impl Fn(&Value) -> bool,
    what: &str,
) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = get(http, &format!("{base}/v1/status")).await?;
        if done(&status) {
            return Ok(status);
        }
        if Instant::now() > deadline {
            bail!("the verifier did not pick up {what} within 10 s (status: {status})");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn show_node(http: &reqwest::Client, base: &str, node: &str) -> Result<()> {
    let (code, body) = send(http.put(format!("{base}/v1/nodes/{node}"))).await?;
    let head = format!("PUT /v1/nodes/{node} → {code} ");
    let what = if code == 200 {
        format!("allowed: {}", text(&body["reason"]))
    } else {
        refusal(&body)
    };
    out!("{head}{}", wrap(&what, head.chars().count(), 4));
    Ok(())
}

fn show_feature(v: &Value) -> Result<()> {
    let verdict = if v["allowed"] == true {
        "allowed"
    } else {
        "DENIED "
    };
    let head = format!("feature {:<14} {verdict}  ", text(&v["feature"]));
    out!(
        "{head}{}",
        wrap(text(&v["reason"]), head.chars().count(), 4)
    );
    Ok(())
}

fn show_status(s: &Value) -> Result<()> {
    let licensed = s["max_nodes"].as_u64().unwrap_or(0);
    let ceiling = s["node_ceiling"].as_u64().unwrap_or(licensed);
    let nodes = if ceiling > licensed {
        format!(
            "{} in use; {licensed} licensed + {} overage = {ceiling} before a node is refused",
            s["nodes_in_use"],
            ceiling - licensed
        )
    } else {
        format!(
            "{} in use of {licensed} licensed (no overage)",
            s["nodes_in_use"]
        )
    };
    let features = s["features"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| "none usable".into());
    out!(
        "status    {} — {}",
        text(&s["state"]),
        wrap(text(&s["reason"]), 10 + text(&s["state"]).len() + 3, 10)
    );
    out!(
        "  tier     {}, customer {}, expires {}",
        text(&s["tier"]),
        text(&s["customer"]),
        text(&s["expires_at"])
    );
    out!("  nodes    {nodes}");
    out!("  features {}", wrap(&features, 11, 11));
    Ok(())
}
