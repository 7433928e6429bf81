//! `inspect`, `verify`, `simulate`, `ledger list|show`, `usage import`, `true-up`.

use anyhow::{Context, Result};
use kaching_core::time::rfc3339;
use kaching_core::{TierCatalog, TrustedKeys};
use serde::Serialize;

use super::Ctx;
use crate::cli::{
    InspectArgs, JudgeArgs, LedgerCommand, SimulateArgs, TrueUpArgs, UsageCommand, VerifyArgs,
};
use crate::ledger::{
    self, ClockResetRecord, Event, Ledger, LedgerState, LicenseRecord, UsageRecord,
};
use crate::output::{date, json, out, table};
use crate::vendor_dir::{parse_duration, VendorDir, LEDGER_FILE};
use crate::verify::VerifyContext;

fn pubkeys(path: &std::path::Path) -> Result<TrustedKeys> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    TrustedKeys::from_pem_bundle(&text).map_err(|e| {
        crate::error::usage(format!(
            "{} holds no usable public key ({e}): pass a vendor.pub (SPKI PEM)",
            path.display()
        ))
    })
}

pub(super) fn inspect(ctx: &Ctx<'_>, a: &InspectArgs) -> Result<u8> {
    let keys = match &a.pubkey {
        Some(p) => Some(pubkeys(p)?),
        None => ctx.vendor().ok().and_then(|v| v.trusted_keys().ok()),
    };
    let i = crate::inspect::inspect(&a.file, keys.as_ref())?;
    crate::inspect::print(&i, a.json)?;
    Ok(crate::exit::OK)
}

/// What `verify` and `simulate` judge against: the keys and list given, else
/// the vendor directory's.
fn verify_context(ctx: &Ctx<'_>, j: &JudgeArgs) -> Result<VerifyContext> {
    let vendor = ctx.vendor().ok();
    let keys = match (j.pubkey.as_deref(), &vendor) {
        (Some(p), _) => pubkeys(p)?,
        (None, Some(v)) => v.trusted_keys()?,
        (None, None) => {
            return Err(crate::error::usage(
                "no vendor key to verify against: pass --pubkey vendor.pub, or run inside a vendor directory (--dir)",
            ))
        }
    };
    let revocations = match (j.revocations.as_deref(), &vendor) {
        (Some(p), _) => Some(
            kaching_core::verify_revocation_list(&crate::fsutil::read(p)?, &keys)
                .map_err(|e| anyhow::anyhow!("revocation list {} does not verify ({e}): use the list signed by this vendor", p.display()))?
                .list,
        ),
        // Never fall back to "no revocations" when the vendor's list cannot be read.
        (None, Some(v)) => crate::revocations::current(v, &Ledger::open_to_read(&v.path(LEDGER_FILE))?)?,
        (None, None) => None,
    };
    let at = match &j.at {
        Some(t) => parse_time("--at", t)?,
        None => crate::fsutil::now(),
    };
    Ok(VerifyContext {
        keys,
        revocations,
        catalog: vendor
            .as_ref()
            .and_then(|v| v.catalog().ok())
            .unwrap_or_else(TierCatalog::builtin),
        audience: vendor
            .as_ref()
            .map_or_else(|| "bzzz".to_string(), |v| v.config.audience.clone()),
        cluster: j.cluster.clone(),
        at,
        vendor_kid: match (&j.pubkey, &vendor) {
            (None, Some(v)) => v.public_key().ok().map(|k| k.kid().to_hex()),
            _ => None,
        },
    })
}

pub(super) fn verify(ctx: &Ctx<'_>, a: &VerifyArgs) -> Result<u8> {
    let vc = verify_context(ctx, &a.judge)?;
    let report = crate::verify::verify(&a.judge.file, &vc)?;
    crate::verify::print(&report, a.json)?;
    Ok(report.exit_code)
}

pub(super) fn simulate(ctx: &Ctx<'_>, a: &SimulateArgs) -> Result<u8> {
    let vc = verify_context(ctx, &a.judge)?;
    let mut quota_usage = std::collections::BTreeMap::new();
    for u in &a.usage {
        let (name, amount) = u
            .split_once('=')
            .and_then(|(n, a)| Some((n.trim(), a.trim().parse::<u64>().ok()?)))
            .filter(|(n, _)| !n.is_empty())
            .ok_or_else(|| {
                crate::error::usage(format!(
                    "--usage {u:?}: write NAME=AMOUNT, e.g. search_requests=45000"
                ))
            })?;
        quota_usage.insert(name.to_string(), amount);
    }
    let snapshot = kaching_core::Snapshot {
        live_nodes: a.nodes,
        quota_usage,
        ..kaching_core::Snapshot::default()
    };
    let e = crate::verify::simulate(&a.judge.file, &vc, &snapshot)?;
    if let Some(license) = e.verdict.license_id {
        // A usage name the license has no quota for would silently count for nothing.
        let v = &e.verdict;
        for name in snapshot.quota_usage.keys() {
            if !v.quotas.contains_key(name) {
                let hint = kaching_core::tiers::closest(name, v.quotas.keys().map(String::as_str))
                    .map(|c| format!("did you mean {c:?}? "))
                    .unwrap_or_default();
                return Err(crate::error::usage(format!(
                    "license {license} has no quota {name:?}: {hint}(its quotas: {})",
                    v.quotas.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
        }
    }
    if a.json {
        json(&e)?;
    } else {
        out(&e.render(a.feature.as_deref()))?;
    }
    Ok(crate::exit::for_state(e.verdict.state))
}

#[derive(Serialize)]
struct Row<'a> {
    #[serde(flatten)]
    record: &'a LicenseRecord,
    state: LedgerState,
}

#[derive(Serialize)]
struct Detail<'a> {
    #[serde(flatten)]
    record: &'a LicenseRecord,
    state: LedgerState,
    history: Vec<Event>,
    usage_reports: Vec<UsageRecord>,
    /// Clock resets signed for the cluster the license is bound to or
    /// reported from.
    clock_resets: Vec<ClockResetRecord>,
}

pub(super) fn ledger(ctx: &Ctx<'_>, l: &LedgerCommand) -> Result<u8> {
    let v = ctx.vendor()?;
    let ledger = Ledger::open_to_read(&v.path(LEDGER_FILE))?;
    let list = crate::revocations::current(&v, &ledger)?;
    let now = crate::fsutil::now();
    match l {
        LedgerCommand::List {
            customer,
            expiring_within,
            json: as_json,
        } => {
            let horizon = expiring_within
                .as_deref()
                .map(parse_duration)
                .transpose()?
                .map(|d| now.saturating_add(d));
            let records = ledger::list_licenses(&ledger.conn)?;
            let rows: Vec<Row<'_>> =
                ledger::select(&records, list.as_ref(), now, customer.as_deref(), horizon)
                    .into_iter()
                    .map(|(record, state)| Row { record, state })
                    .collect();
            if *as_json {
                json(&rows)?;
            } else if rows.is_empty() {
                out("no licenses match\n")?;
            } else {
                let cells: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| {
                        vec![
                            r.record.id.to_string(),
                            r.record.customer.clone(),
                            r.record.tier.clone(),
                            r.record.max_nodes.to_string(),
                            date(r.record.expires_at),
                            r.state.to_string(),
                        ]
                    })
                    .collect();
                out(&table(
                    &["ID", "CUSTOMER", "TIER", "NODES", "EXPIRES", "STATE"],
                    &cells,
                ))?;
            }
        }
        LedgerCommand::Show {
            license_id,
            json: as_json,
        } => {
            let rec = ledger::find_license(&ledger.conn, license_id)?;
            let usage_reports = ledger::usage_for(&ledger.conn, &rec.id)?;
            let clock_resets =
                ledger::clock_resets_for_license(&ledger.conn, &rec, &usage_reports)?;
            let d = Detail {
                record: &rec,
                state: LedgerState::of(&rec, list.as_ref(), now),
                history: ledger::events(&ledger.conn, &rec.id)?,
                usage_reports,
                clock_resets,
            };
            if *as_json {
                json(&d)?;
            } else {
                out(&show_text(&v, &d)?)?;
            }
        }
    }
    Ok(crate::exit::OK)
}

fn show_text(v: &VendorDir, d: &Detail<'_>) -> Result<String> {
    let r = d.record;
    let lic = crate::issue::recorded_license(v, r)?;
    let mut s = String::new();
    let mut row = |k: &str, val: String| s.push_str(&format!("{:<13}{val}\n", format!("{k}:")));
    row("license id", r.id.to_string());
    row("state", d.state.to_string());
    row("customer", format!("{} ({})", r.customer, r.customer_id));
    row("tier", r.tier.clone());
    row(
        "features",
        lic.features.iter().cloned().collect::<Vec<_>>().join(", "),
    );
    row(
        "nodes",
        format!("{} (+{}% overage)", r.max_nodes, lic.overage),
    );
    row("issued", rfc3339(r.issued_at));
    row("expires", rfc3339(r.expires_at));
    row(
        "cluster",
        r.cluster.clone().unwrap_or_else(|| "not bound".into()),
    );
    if let Some(old) = r.supersedes {
        row("supersedes", old.to_string());
    }
    if let Some(new) = r.superseded_by {
        row("replaced by", new.to_string());
    }
    row("file", format!("{} (sha256 {})", r.path, r.file_sha256));
    s.push_str("history:\n");
    for e in &d.history {
        s.push_str(&format!(
            "  {}  {:<10}  {}\n",
            rfc3339(e.time),
            e.action,
            e.detail
        ));
    }
    if !d.usage_reports.is_empty() {
        s.push_str("usage reports:\n");
        for u in &d.usage_reports {
            let seq = u
                .chain
                .as_ref()
                .map_or_else(|| "(unchained)".to_string(), |c| format!("#{}", c.seq));
            s.push_str(&format!(
                "  {seq} {} to {}  cluster {}  peak {} nodes  {}\n",
                date(u.period_start),
                date(u.period_end),
                u.cluster_id,
                u.peak_nodes,
                counters_text(&u.counters)
            ));
            for f in u.chain.iter().flat_map(|c| &c.findings) {
                s.push_str(&format!("      FLAGGED {f}\n"));
            }
        }
    }
    if !d.clock_resets.is_empty() {
        s.push_str("clock resets:\n");
        for c in &d.clock_resets {
            s.push_str(&format!(
                "  {}  cluster {}  for mark {}, signed {} (the new mark), valid until {}  {}\n",
                c.id,
                c.cluster_id,
                rfc3339(c.mark),
                rfc3339(c.issued),
                rfc3339(c.expires),
                c.path
            ));
        }
    }
    Ok(s)
}

/// `metric bucket=value, …; metric …` from the stored JSON counters.
fn counters_text(counters: &serde_json::Value) -> String {
    let Some(map) = counters.as_object() else {
        return String::new();
    };
    map.iter()
        .map(|(metric, buckets)| {
            let b: Vec<String> = buckets
                .as_object()
                .map(|o| o.iter().map(|(k, v)| format!("{k}={v}")).collect())
                .unwrap_or_default();
            format!("{metric} {}", b.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

pub(super) fn usage(ctx: &Ctx<'_>, u: &UsageCommand) -> Result<u8> {
    let (file, receipt, no_receipt) = match u {
        UsageCommand::Import {
            file,
            receipt,
            no_receipt,
        } => (file, receipt, no_receipt),
        UsageCommand::Pull(a) => return super::usage_pull::pull(ctx, a),
    };
    let v = ctx.vendor()?;
    let mut ledger = Ledger::open(&v.path(LEDGER_FILE))?;
    let catalog = v.catalog()?;
    let unlock = || ctx.issuer(&v);
    let opts = crate::usage::ReceiptOptions {
        out: receipt.as_deref(),
        key: (!no_receipt).then_some(&unlock as &dyn Fn() -> Result<kaching_core::SecretKey>),
    };
    let imported = crate::usage::import(
        &mut ledger,
        file,
        |rec| crate::issue::recorded_license(&v, rec),
        &catalog,
        &opts,
        crate::fsutil::now(),
    )?;
    out(&crate::usage::describe(&imported))?;
    Ok(imported.exit_code())
}

/// Reads a time flag (`--at`, `--since`): a date or a UTC time.
fn parse_time(flag: &str, t: &str) -> Result<kaching_core::time::Timestamp> {
    kaching_core::time::parse_rfc3339(t).ok_or_else(|| {
        crate::error::usage(format!(
            "cannot read {flag} {t:?}: use a date (2027-01-31) or a UTC time (2027-01-31T12:00:00Z)"
        ))
    })
}

pub(super) fn true_up(ctx: &Ctx<'_>, a: &TrueUpArgs) -> Result<u8> {
    // Bad dates are refused before anything is read.
    let since = a
        .since
        .as_deref()
        .map(|t| parse_time("--since", t))
        .transpose()?;
    let now = match a.at.as_deref() {
        Some(t) => parse_time("--at", t)?,
        None => crate::fsutil::now(),
    };
    let v = ctx.vendor()?;
    let ledger = Ledger::open_to_read(&v.path(LEDGER_FILE))?;
    let license = a
        .license
        .as_deref()
        .map(|id| ledger::find_license(&ledger.conn, id).map(|r| r.id))
        .transpose()?;
    let filter = crate::trueup::Filter {
        customer: a.customer.clone(),
        license,
        since,
    };
    let t = crate::trueup::compute(
        &ledger.conn,
        &filter,
        |rec| crate::issue::recorded_license(&v, rec),
        now,
    )?;
    if a.json {
        json(&t)?;
    } else {
        out(&crate::trueup::render(&t))?;
    }
    Ok(crate::exit::OK)
}
