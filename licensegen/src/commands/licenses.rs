//! `issue`, `upgrade`, `renew`.

use std::path::PathBuf;

use anyhow::Result;
use kaching_core::time::{human_duration, rfc3339, Timestamp};
use kaching_core::{LicenseId, TierCatalog};

use super::Ctx;
use crate::cli::{IssueArgs, ReissueArgs, Terms};
use crate::issue::{self, build, read_spec, Built, Issued, LicenseRequest, Mode};
use crate::ledger::{self, Ledger, LedgerState};
use crate::output::{note, out};
use crate::vendor_dir::{VendorDir, LEDGER_FILE};

fn request(
    customer: Option<String>,
    customer_id: Option<String>,
    tier: Option<String>,
    t: &Terms,
) -> LicenseRequest {
    LicenseRequest {
        customer,
        customer_id,
        tier,
        expires: t.expires.clone(),
        nodes: t.nodes,
        cores: t.cores,
        features: t.features.clone(),
        quotas: t.quotas.clone(),
        custom_quotas: t.custom_quotas.clone(),
        grace: t.grace.clone(),
        overage: t.overage,
        cluster: t.cluster.clone(),
        bind: t.bind.clone(),
        heartbeat: t.heartbeat.clone(),
        offline_grace: t.offline_grace.clone(),
        report_every: t.report_every.clone(),
        report_warn: t.report_warn.clone(),
        report_deny: t.report_deny.clone(),
        degrade: t.degrade.clone(),
        armor: None,
        out: None,
    }
}

/// Checks `--out` before the passphrase is asked for: a new file in a folder
/// that exists.
fn check_out(out: Option<&PathBuf>) -> Result<()> {
    match out {
        Some(p) => crate::fsutil::check_new_file(p),
        None => Ok(()),
    }
}

pub(super) fn issue(ctx: &Ctx<'_>, a: &IssueArgs) -> Result<u8> {
    let v = ctx.vendor()?;
    let catalog = v.catalog()?;
    let now = crate::fsutil::now();
    let requests = match &a.spec {
        Some(spec) => read_spec(spec)?,
        None => {
            let mut r = request(
                a.customer.clone(),
                a.customer_id.clone(),
                a.tier.clone(),
                &a.terms,
            );
            r.out = a.out.clone();
            vec![r]
        }
    };
    // Build and check every license, and where each goes, before the
    // passphrase is asked for: a batch issues all or nothing.
    let mut jobs: Vec<(Built, bool, Option<PathBuf>)> = Vec::new();
    let mut targets = std::collections::BTreeSet::new();
    for r in &requests {
        check_out(r.out.as_ref())?;
        let built = build(r, Mode::New, &catalog, &v.config, now)?;
        let armored = r.armor.unwrap_or(a.armor || v.config.armor);
        let path = issue::planned_path(&v, &built.license, armored, r.out.as_deref());
        if path.exists() {
            crate::fsutil::check_new_file(&path)?;
        }
        if !targets.insert(std::path::absolute(&path).unwrap_or_else(|_| path.clone())) {
            return Err(crate::error::usage(format!(
                "two licenses of the batch would both be written to {}: give each its own `out` (nothing was issued)",
                path.display()
            )));
        }
        jobs.push((built, armored, r.out.clone()));
    }
    let key = ctx.issuer(&v)?;
    let mut ledger = Ledger::open(&v.path(LEDGER_FILE))?;
    for (built, armored, out_path) in jobs {
        let issued = issue::sign_and_record(
            &v,
            &mut ledger,
            &key,
            built,
            armored,
            out_path.as_deref(),
            now,
        )?;
        print_issued(&issued)?;
    }
    Ok(crate::exit::OK)
}

pub(super) fn reissue(ctx: &Ctx<'_>, a: &ReissueArgs, upgrade: bool) -> Result<u8> {
    let v = ctx.vendor()?;
    let catalog = v.catalog()?;
    let now = crate::fsutil::now();
    if upgrade && a.tier.is_none() {
        return Err(crate::error::usage(
            "upgrade needs --tier (the tier to move to); `licensegen renew` keeps the tier",
        ));
    }
    check_out(a.out.as_ref())?;
    let mut ledger = Ledger::open(&v.path(LEDGER_FILE))?;
    let r = request(None, None, a.tier.clone(), &a.terms);
    let plan = plan_reissue(&v, &ledger, &catalog, &a.license_id, &r, upgrade, now)?;
    for n in &plan.notes {
        note(n);
    }
    let key = ctx.issuer(&v)?;
    let armored = a.armor || v.config.armor || plan.was_armored;
    let issued = issue::sign_and_record(
        &v,
        &mut ledger,
        &key,
        plan.built,
        armored,
        a.out.as_deref(),
        now,
    )
    .map_err(|e| match e.downcast_ref::<ledger::AlreadyReplaced>() {
        // Another upgrade or renewal of the same license won the race.
        Some(r) => already_replaced(&r.old, &r.by, upgrade),
        None => e,
    })?;
    print_issued(&issued)?;
    Ok(crate::exit::OK)
}

/// An upgrade or renewal ready to sign (what `upgrade`/`renew` and the desk
/// do before the key is needed).
pub(crate) struct Reissue {
    /// The new claims.
    pub built: Built,
    /// The old license's file was armored (the new one follows).
    pub was_armored: bool,
    /// Warnings for the user (`note: …`).
    pub notes: Vec<String>,
}

/// Checks that license `license_id` may be upgraded (`upgrade`) or renewed
/// and builds the new claims from `r` (tier and terms; customer ignored).
pub(crate) fn plan_reissue(
    v: &VendorDir,
    ledger: &Ledger,
    catalog: &TierCatalog,
    license_id: &str,
    r: &LicenseRequest,
    upgrade: bool,
    now: Timestamp,
) -> Result<Reissue> {
    let rec = ledger::find_license(&ledger.conn, license_id)?;
    let list = crate::revocations::current(v, ledger)?;
    let mut notes = Vec::new();
    match LedgerState::of(&rec, list.as_ref(), now) {
        LedgerState::Revoked => {
            return Err(crate::error::usage(format!(
                "license {} is revoked: issue a new license with `licensegen issue` instead",
                rec.id
            )))
        }
        LedgerState::Superseded => {
            return Err(already_replaced(
                &rec.id,
                &rec.superseded_by.map(|s| s.to_string()).unwrap_or_default(),
                upgrade,
            ))
        }
        LedgerState::Suspended => notes.push(format!(
            "note: license {} is suspended; the new license is not (suspend it too if that is intended)",
            rec.id
        )),
        _ => {}
    }
    let old = issue::recorded_license(v, &rec)?;
    let mode = if upgrade {
        Mode::Upgrade(&old)
    } else {
        Mode::Renew(&old)
    };
    let built = build(r, mode, catalog, &v.config, now)?;
    if upgrade {
        notes.extend(issue::lowered_limits(&old, &built.license, r));
    }
    Ok(Reissue {
        built,
        was_armored: rec.path.ends_with(".asc"),
        notes,
    })
}

fn already_replaced(old: &LicenseId, by: &str, upgrade: bool) -> anyhow::Error {
    crate::error::usage(format!(
        "license {old} was already replaced by {by}: {} that one instead",
        if upgrade { "upgrade" } else { "renew" }
    ))
}

fn print_issued(i: &Issued) -> Result<()> {
    let l = &i.license;
    let mut s = format!(
        "issued license {}\n  customer    {} ({})\n  tier        {}, {} nodes, expires {}\n",
        l.id,
        l.customer,
        l.customer_id,
        l.tier,
        l.limits.max_nodes,
        rfc3339(l.expires_at)
    );
    if let Some(c) = &l.cluster {
        s.push_str(&format!("  cluster     {c}\n"));
    }
    if let Some(h) = l.heartbeat {
        s.push_str(&format!(
            "  heartbeat   every {}, offline grace {} (connected)\n",
            human_duration(h.interval),
            human_duration(h.offline_grace)
        ));
    }
    if let Some(p) = &l.report {
        s.push_str(&format!(
            "  report      every {} (warned {} ahead){}\n",
            human_duration(p.every),
            human_duration(p.warn),
            if p.deny.is_empty() {
                String::new()
            } else {
                format!(
                    "; late: {} off",
                    p.deny.iter().cloned().collect::<Vec<_>>().join(", ")
                )
            }
        ));
    }
    if !l.degrade.is_empty() {
        s.push_str(&format!(
            "  degrade     {} keep working after expiry\n",
            l.degrade.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    if let Some(old) = l.supersedes {
        s.push_str(&format!("  supersedes  {old}\n"));
    }
    for n in &i.notes {
        s.push_str(&format!("  note        {n}\n"));
    }
    s.push_str(&format!("  file        {}\n", i.path.display()));
    out(&s)
}
