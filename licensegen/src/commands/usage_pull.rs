//! `usage pull`: the connected half of the air-gap loop. Connected
//! verifiers post their usage reports to the relay (a mailbox: it signs
//! nothing); this fetches those without a receipt, imports each through
//! the same code as `usage import` ([`crate::usage::import_document`]) and
//! posts the receipt back (`POST /v1/receipts`) for the cluster to pick up.

use std::time::Duration;

use anyhow::{Context, Result};
use kaching_core::wire::mailbox::{
    ReportRow, ReportRows, MAX_REPORTS_PER_PAGE, RECEIPTS_PATH, REPORTS_PATH,
};
use kaching_core::wire::ErrorBody;
use kaching_core::DocKind;

use super::publish::relay_target;
use super::Ctx;
use crate::cli::RelayArgs;
use crate::exit;
use crate::ledger::Ledger;
use crate::output::{note, out};
use crate::usage::{describe, import_document, Signer};
use crate::vendor_dir::LEDGER_FILE;

/// Pages fetched at most in one run (bounded: 100 × 100 reports).
const MAX_PAGES: usize = 100;

/// A relay request that failed: the exit code and what to tell the user.
struct Failed(u8, String);

fn failed(url: &str, status: reqwest::StatusCode, text: &str, what: &str) -> Failed {
    let message = serde_json::from_str::<ErrorBody>(text)
        .map(|e| e.error.message)
        .unwrap_or_else(|_| text.chars().take(200).collect());
    match status.as_u16() {
        401 | 403 => Failed(
            exit::RELAY_TOKEN,
            format!("error: the relay refused the token ({status}: {message}): use a live publish-scope token (`kaching-relay token create --scope publish`)"),
        ),
        404 if what == "list" => Failed(
            exit::RELAY_REFUSED,
            format!("error: the relay at {url} has no usage-report mailbox ({status}): upgrade kaching-relay, or carry reports as files (`licensegen usage import`)"),
        ),
        429 | 500..=599 => Failed(
            exit::RELAY_UNREACHABLE,
            format!("error: the relay at {url} is busy or failing ({status}: {message}): pull again shortly"),
        ),
        _ => Failed(
            exit::RELAY_REFUSED,
            format!("error: the relay refused the {what} ({status}: {message})"),
        ),
    }
}

pub(super) fn pull(ctx: &Ctx<'_>, a: &RelayArgs) -> Result<u8> {
    let v = ctx.vendor()?;
    let (url, _, token) = relay_target(&v, a, "pull from")?;
    let base = url.trim_end_matches('/').to_string();
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(a.timeout.max(1)))
        .user_agent(concat!("licensegen/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot set up the HTTP client")?;

    let rows = match list(&client, &base, &token) {
        Ok(rows) => rows,
        Err(Failed(code, message)) => {
            note(&message);
            return Ok(code);
        }
    };
    if rows.is_empty() {
        out(&format!(
            "no usage reports waiting on {url}: every report there has its receipt\n"
        ))?;
        return Ok(exit::OK);
    }
    let mut ledger = Ledger::open(&v.path(LEDGER_FILE))?;
    let catalog = v.catalog()?;
    // One passphrase for the whole run.
    let key = ctx.issuer(&v)?;
    let mut worst = Outcome::default();
    let (mut imported, mut posted) = (0usize, 0usize);
    for row in &rows {
        let what = format!(
            "usage report {} from cluster {} (relay id {})",
            row.seq, row.cluster_id, row.id
        );
        let mut receipt = None;
        let mut keep = |bytes: &[u8]| -> Result<()> {
            receipt = Some(bytes.to_vec());
            Ok(())
        };
        let done = import_document(
            &mut ledger,
            row.report.as_bytes(),
            &what,
            |rec| crate::issue::recorded_license(&v, rec),
            &catalog,
            Some(Signer::Key(&key)),
            &mut keep,
            crate::fsutil::now(),
        );
        let done = match done {
            Ok(d) => d,
            Err(e) => {
                note(&format!("error: {what}: {e:#}"));
                worst.error(exit::FAILURE);
                continue;
            }
        };
        imported += 1;
        worst.chain(done.exit_code());
        // The receipt line of `usage import` names a file; here it is posted.
        let text = describe(&done);
        let text: String = text
            .lines()
            .filter(|l| {
                !l.starts_with("receipt written to") && !l.starts_with("no receipt written")
            })
            .map(|l| format!("{l}\n"))
            .collect();
        out(&text)?;
        let Some(bytes) = receipt else {
            continue;
        };
        match post_receipt(&client, &base, &token, bytes) {
            Ok(()) => {
                posted += 1;
                out(&format!(
                    "receipt posted to the relay: cluster {} picks it up with its next report\n",
                    row.cluster_id
                ))?;
            }
            Err(Failed(code, message)) => {
                note(&format!("{message}; pull again to post it"));
                worst.error(code);
            }
        }
    }
    out(&format!(
        "{imported} of {} usage report(s) imported from {url}, {posted} receipt(s) posted\n",
        rows.len()
    ))?;
    Ok(worst.code())
}

/// The worst of a run: a rollback first, then a failed request, then a gap.
#[derive(Default)]
struct Outcome {
    rollback: bool,
    error: Option<u8>,
    gap: bool,
}

impl Outcome {
    fn chain(&mut self, code: u8) {
        self.rollback |= code == exit::CHAIN_ROLLBACK;
        self.gap |= code == exit::CHAIN_GAP;
    }

    fn error(&mut self, code: u8) {
        self.error.get_or_insert(code);
    }

    fn code(&self) -> u8 {
        if self.rollback {
            exit::CHAIN_ROLLBACK
        } else if let Some(e) = self.error {
            e
        } else if self.gap {
            exit::CHAIN_GAP
        } else {
            exit::OK
        }
    }
}

/// Every report on the relay without a receipt, page by page (bounded).
fn list(
    client: &reqwest::blocking::Client,
    base: &str,
    token: &str,
) -> std::result::Result<Vec<ReportRow>, Failed> {
    let mut rows: Vec<ReportRow> = Vec::new();
    for _ in 0..MAX_PAGES {
        let after = rows.last().map_or(0, |r| r.id);
        let resp = client
            .get(format!("{base}{REPORTS_PATH}"))
            .query(&[
                ("unreceipted", "true".to_string()),
                ("after", after.to_string()),
                ("limit", MAX_REPORTS_PER_PAGE.to_string()),
            ])
            .bearer_auth(token)
            .send()
            .map_err(|e| unreachable(base, &e))?;
        let status = resp.status();
        let text = resp.text().unwrap_or_default();
        if !status.is_success() {
            return Err(failed(base, status, &text, "list"));
        }
        let page: ReportRows = serde_json::from_str(&text).map_err(|e| {
            Failed(
                exit::FAILURE,
                format!("error: the relay's answer is not a list of usage reports ({e}): check --relay points at a kaching-relay"),
            )
        })?;
        let full = page.reports.len() >= MAX_REPORTS_PER_PAGE as usize;
        rows.extend(page.reports);
        if !full {
            break;
        }
    }
    Ok(rows)
}

fn post_receipt(
    client: &reqwest::blocking::Client,
    base: &str,
    token: &str,
    bytes: Vec<u8>,
) -> std::result::Result<(), Failed> {
    let resp = client
        .post(format!("{base}{RECEIPTS_PATH}"))
        .bearer_auth(token)
        .header(
            reqwest::header::CONTENT_TYPE,
            DocKind::Receipt.content_type(),
        )
        .body(bytes)
        .send()
        .map_err(|e| unreachable(base, &e))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let text = resp.text().unwrap_or_default();
    Err(failed(base, status, &text, "receipt"))
}

fn unreachable(base: &str, e: &reqwest::Error) -> Failed {
    Failed(
        exit::RELAY_UNREACHABLE,
        format!("error: cannot reach the relay at {base} ({e}): check the URL and that the relay is running, then pull again"),
    )
}
