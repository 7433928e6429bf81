//! `clock-reset`.

use anyhow::Result;
use kaching_core::time::{human_duration, rfc3339};
use kaching_core::Settings;

use super::Ctx;
use crate::cli::ClockResetArgs;
use crate::clock_reset::{self, Signed};
use crate::ledger::{Ledger, LedgerState, LicenseRecord};
use crate::output::{note, out};
use crate::vendor_dir::LEDGER_FILE;

pub(super) fn clock_reset(ctx: &Ctx<'_>, a: &ClockResetArgs) -> Result<u8> {
    let now = crate::fsutil::now();
    // Everything is checked before the passphrase is asked for.
    let plan = clock_reset::plan(
        &a.cluster,
        &a.mark,
        &a.valid_for,
        now,
        Settings::default().clock_tolerance,
    )?;
    let path = a
        .out
        .clone()
        .unwrap_or_else(|| clock_reset::default_path(&plan.cluster));
    crate::fsutil::check_new_file(&path)?;
    let v = ctx.vendor()?;
    let mut ledger = Ledger::open(&v.path(LEDGER_FILE))?;
    let known = clock_reset::known(&v, &ledger, &plan, now)?;
    for n in clock_reset::notices(&plan, &known) {
        note(&n);
    }
    let key = ctx.issuer(&v)?;
    let signed = clock_reset::sign_and_record(&mut ledger, &key, &plan, &path, now)?;
    out(&describe(&signed, &known.licenses))?;
    Ok(crate::exit::OK)
}

fn describe(s: &Signed, on_cluster: &[(LicenseRecord, bool, LedgerState)]) -> String {
    let r = &s.reset;
    let mut t = format!("signed clock reset {}\n", r.id_text());
    t.push_str(&format!("  cluster     {}\n", r.cluster_id));
    t.push_str(&format!(
        "  mark        {} (the cluster's, {} ahead of this computer's clock)\n",
        rfc3339(r.mark),
        human_duration(r.mark.saturating_sub(r.issued))
    ));
    t.push_str(&format!(
        "  new mark    {} (this computer's clock)\n",
        rfc3339(r.issued)
    ));
    t.push_str(&format!(
        "  valid until {} ({})\n",
        rfc3339(r.expires),
        human_duration(r.expires.saturating_sub(r.issued))
    ));
    for (rec, bound, state) in on_cluster {
        t.push_str(&format!(
            "  license     {} {} ({}), {}, {state}, {}\n",
            rec.id,
            rec.customer,
            rec.customer_id,
            rec.tier,
            if *bound {
                "bound to this cluster"
            } else {
                "unbound, reported from this cluster"
            }
        ));
    }
    t.push_str(&format!("  file        {}\n", s.path.display()));
    t.push_str(&format!(
        "send the file to the customer; on the cluster, with the verifier daemon stopped, they run:\n  kaching-verifier clock-reset {}\n",
        s.path.file_name().map_or_else(
            || s.path.display().to_string(),
            |n| n.to_string_lossy().into_owned()
        )
    ));
    t.push_str(&format!(
        "it works once, on cluster {} only, until {}\n",
        r.cluster_id,
        rfc3339(r.expires)
    ));
    t
}
