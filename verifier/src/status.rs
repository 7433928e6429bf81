//! `kaching-verifier status`: asks the running daemon and prints a table.

use anyhow::Context;
use kaching_core::wire::verifier::VerifierStatus;
use kaching_core::wire::ErrorBody;

use crate::config::Config;

/// Fetches `/v1/status` and prints it (as a table, or raw JSON).
pub fn show(cfg: &Config, url: Option<String>, json: bool) -> anyhow::Result<()> {
    let base = url.unwrap_or_else(|| format!("http://{}", cfg.listen));
    let token = cfg.read_token()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let text: String = rt.block_on(async {
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
        let text = resp.text().await.context("the verifier's answer was cut off")?;
        if !status.is_success() {
            let why = serde_json::from_str::<ErrorBody>(&text)
                .map(|e| e.to_string())
                .unwrap_or(text);
            anyhow::bail!("the verifier answered {status}: {why}");
        }
        Ok::<_, anyhow::Error>(text)
    })?;
    let not_status =
        || format!("{base} did not answer with a verifier status: is it a kaching-verifier?");
    if json {
        let v: serde_json::Value = serde_json::from_str(&text).with_context(not_status)?;
        kaching_kit::stdout::println(&serde_json::to_string_pretty(&v)?)?;
    } else {
        let body: VerifierStatus = serde_json::from_str(&text).with_context(not_status)?;
        kaching_kit::stdout::print(&render(&body))?;
    }
    Ok(())
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

/// The readable table of a `GET /v1/status` answer.
pub fn render(b: &VerifierStatus) -> String {
    let st = &b.status;
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mut out = String::new();
    let mut row = |k: &str, v: String| out.push_str(&format!("{k:<10} {v}\n"));
    row("cluster", b.cluster_id.clone());
    if b.trust == "development" {
        row(
            "trust",
            "development build: trust comes from an editable file (see docs/verifier.md)".into(),
        );
    } else if let Some(v) = b.root_version {
        row("trust", format!("{} root v{v}", b.trust));
    }
    row(
        "license",
        format!("{} ({})", opt(&st.license_id), opt(&st.customer)),
    );
    row("tier", opt(&st.tier));
    // Clock tampered: the line under it says what to send the vendor.
    let reset = if st.state == kaching_core::State::ClockTampered.as_str() {
        format!(
            "\n{}",
            crate::clock_reset::request_line(&b.cluster_id, &b.trusted_time)
        )
    } else {
        String::new()
    };
    row("state", format!("{} — {}{reset}", st.state, st.reason));
    row("expires", opt(&st.expires_at));
    row("grace", format!("until {}", opt(&st.grace_ends_at)));
    row(
        "nodes",
        format!(
            "{} of {} (ceiling {} with overage) {}",
            st.nodes_in_use,
            st.max_nodes,
            st.node_ceiling,
            bar(st.nodes_in_use, st.node_ceiling)
        ),
    );
    row("features", st.features.join(", "));
    if let Some(r) = &b.relay {
        row(
            "relay",
            format!(
                "{} — last contact {}{}",
                r.url,
                opt(&r.last_contact),
                r.activated_license
                    .as_ref()
                    .map(|id| format!(", holds license {id}"))
                    .unwrap_or_default()
            ),
        );
        if let Some(e) = &r.last_error {
            row("relay err", e.clone());
        }
        if let Some(m) = &r.message {
            row("relay msg", m.clone());
        }
        if let Some(m) = &r.last_receipt {
            row("receipt", m.clone());
        }
    }
    if !st.quotas.is_empty() {
        out.push_str("quotas\n");
        for (name, q) in &st.quotas {
            out.push_str(&format!(
                "  {name:<18} {:>22} {}\n",
                format!("{} / {}", q.used, q.limit),
                bar(q.used, q.limit)
            ));
        }
    }
    if !st.warnings.is_empty() {
        out.push_str("warnings\n");
        for w in &st.warnings {
            out.push_str(&format!("  ! {w}\n"));
        }
    }
    if !st.upgrade_suggestions.is_empty() {
        out.push_str("upgrades\n");
        for x in &st.upgrade_suggestions {
            let urgency = serde_json::to_value(x.urgency)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            out.push_str(&format!(
                "  → {} ({urgency}): {}\n",
                x.suggested_tier, x.reason
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kaching_core::wire::verifier::RelayStatus;

    fn status(relay: Option<RelayStatus>) -> VerifierStatus {
        let verdict = kaching_core::evaluate(
            kaching_core::LicenseInput::Missing,
            None,
            &kaching_core::Snapshot::default(),
            &kaching_core::TierCatalog::builtin(),
            &kaching_core::Settings::default(),
            0,
        );
        VerifierStatus {
            status: kaching_core::wire::LicenseStatus::from(&verdict),
            cluster_id: "aaaaaaaaaaaaaaaa".into(),
            evaluated_at: String::new(),
            rejections: Vec::new(),
            trusted_time: String::new(),
            trust: "development".into(),
            root_version: None,
            relay,
            license_change: None,
            pending_downgrade: None,
        }
    }

    #[test]
    fn a_clock_tampered_cluster_is_told_what_to_send_the_vendor() {
        let mut body = status(None);
        body.trusted_time = "2029-08-01T00:00:00Z".into();
        assert!(!render(&body).contains("clock reset"));
        body.status.state = kaching_core::State::ClockTampered.as_str().into();
        let text = render(&body);
        assert!(
            text.contains("\nclock reset: send the vendor cluster aaaaaaaaaaaaaaaa and mark 2029-08-01T00:00:00Z (licensegen clock-reset --cluster aaaaaaaaaaaaaaaa --mark 2029-08-01T00:00:00Z)\n"),
            "{text}"
        );
    }

    #[test]
    fn relay_contact_and_error_are_shown() {
        let body = status(Some(RelayStatus {
            url: "https://relay.example.com".into(),
            last_contact: Some("2026-11-22T18:42:54Z".into()),
            last_error: Some("2026-11-22T18:43:00Z: relay unreachable".into()),
            activated_license: Some("9c77fe2a".into()),
            message: None,
            relay_revocation_version: None,
            last_receipt: None,
        }));
        let text = render(&body);
        assert!(text.contains("relay      https://relay.example.com — last contact 2026-11-22T18:42:54Z, holds license 9c77fe2a\n"), "{text}");
        assert!(
            text.contains("relay err  2026-11-22T18:43:00Z: relay unreachable\n"),
            "{text}"
        );
        assert!(!text.contains("relay msg"), "{text}");
        assert!(!render(&status(None)).contains("relay"));
    }
}
