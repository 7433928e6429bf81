//! `kaching-verifier status`: asks the running daemon and prints a table.

use anyhow::Context;
use kaching_verifier::Config;
use serde_json::Value;

/// Fetches `/v1/status` and prints it (as a table, or raw JSON).
pub fn show(cfg: &Config, url: Option<String>, json: bool) -> anyhow::Result<()> {
    let base = url.unwrap_or_else(|| format!("http://{}", cfg.listen));
    let token = cfg.read_token()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let body: Value = rt.block_on(async {
        let mut req = reqwest::Client::new()
            .get(format!("{}/v1/status", base.trim_end_matches('/')))
            .timeout(std::time::Duration::from_secs(10));
        if let Some(t) = &token {
            req = req.bearer_auth(&t.0);
        }
        let resp = req.send().await.with_context(|| {
            format!("cannot reach the verifier at {base}: is `kaching-verifier run` running? (check `listen` in the config)")
        })?;
        let status = resp.status();
        let v: Value = resp.json().await.context("the verifier answered with something that is not JSON")?;
        if !status.is_success() {
            anyhow::bail!("the verifier answered {status}: {}", v["error"]["message"]);
        }
        Ok::<_, anyhow::Error>(v)
    })?;
    if json {
        kaching_kit::stdout::println(&serde_json::to_string_pretty(&body)?)?;
    } else {
        kaching_kit::stdout::print(&render(&body))?;
    }
    Ok(())
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn bar(used: u64, limit: u64) -> String {
    const W: u64 = 20;
    let full = if used > 0 { W } else { 0 };
    let fill = used
        .saturating_mul(W)
        .checked_div(limit)
        .map_or(full, |f| f.min(W));
    let pct = used.saturating_mul(100).checked_div(limit).unwrap_or(0);
    format!(
        "[{}{}] {pct:>3}%",
        "#".repeat(fill as usize),
        ".".repeat((W - fill) as usize)
    )
}

/// The readable table.
pub fn render(b: &Value) -> String {
    let mut out = String::new();
    let mut row = |k: &str, v: String| out.push_str(&format!("{k:<10} {v}\n"));
    row("cluster", s(&b["cluster_id"]));
    row(
        "license",
        format!("{} ({})", s(&b["license_id"]), s(&b["customer"])),
    );
    row("tier", s(&b["tier"]));
    row("state", format!("{} — {}", s(&b["state"]), s(&b["reason"])));
    row("expires", s(&b["expires_at"]));
    row("grace", format!("until {}", s(&b["grace_ends_at"])));
    let used = b["nodes_in_use"].as_u64().unwrap_or(0);
    let ceiling = b["node_ceiling"].as_u64().unwrap_or(0);
    row(
        "nodes",
        format!(
            "{used} of {} (ceiling {ceiling} with overage) {}",
            s(&b["max_nodes"]),
            bar(used, ceiling)
        ),
    );
    row(
        "features",
        b["features"]
            .as_array()
            .map(|a| a.iter().map(s).collect::<Vec<_>>().join(", "))
            .unwrap_or_default(),
    );
    if b["relay"].is_object() {
        let r = &b["relay"];
        row(
            "relay",
            format!(
                "{} — last contact {}{}",
                s(&r["url"]),
                s(&r["last_contact"]),
                match &r["activated_license"] {
                    serde_json::Value::String(id) => format!(", holds license {id}"),
                    _ => String::new(),
                }
            ),
        );
        if r["last_error"].is_string() {
            row("relay err", s(&r["last_error"]));
        }
        if r["message"].is_string() {
            row("relay msg", s(&r["message"]));
        }
    }
    if let Some(q) = b["quotas"].as_object() {
        out.push_str("quotas\n");
        for (name, v) in q {
            let u = v["used"].as_u64().unwrap_or(0);
            let l = v["limit"].as_u64().unwrap_or(0);
            out.push_str(&format!(
                "  {name:<18} {:>22} {}\n",
                format!("{u} / {l}"),
                bar(u, l)
            ));
        }
    }
    for key in ["warnings"] {
        if let Some(w) = b[key].as_array().filter(|a| !a.is_empty()) {
            out.push_str("warnings\n");
            for x in w {
                out.push_str(&format!("  ! {}\n", s(x)));
            }
        }
    }
    if let Some(u) = b["upgrade_suggestions"]
        .as_array()
        .filter(|a| !a.is_empty())
    {
        out.push_str("upgrades\n");
        for x in u {
            out.push_str(&format!(
                "  → {} ({}): {}\n",
                s(&x["suggested_tier"]),
                s(&x["urgency"]),
                s(&x["reason"])
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_contact_and_error_are_shown() {
        let body = serde_json::json!({
            "state": "active",
            "relay": {
                "url": "https://relay.example.com",
                "last_contact": "2026-11-22T18:42:54Z",
                "last_error": "2026-11-22T18:43:00Z: relay unreachable",
                "activated_license": "9c77fe2a",
                "message": null
            }
        });
        let text = render(&body);
        assert!(text.contains("relay      https://relay.example.com — last contact 2026-11-22T18:42:54Z, holds license 9c77fe2a\n"), "{text}");
        assert!(
            text.contains("relay err  2026-11-22T18:43:00Z: relay unreachable\n"),
            "{text}"
        );
        assert!(!text.contains("relay msg"), "{text}");
        assert!(!render(&serde_json::json!({"state": "active"})).contains("relay"));
    }
}
