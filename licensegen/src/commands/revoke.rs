//! `suspend`, `reinstate`, `revoke`, `revocations show|refresh`.

use anyhow::Result;
use kaching_core::revocation::RevocationStatus;
use kaching_core::time::{rfc3339, Timestamp};

use super::Ctx;
use crate::cli::{RevocationsCommand, RevokeArgs};
use crate::issue::parse_expiry;
use crate::ledger::{self, Ledger, LicenseRecord};
use crate::output::{json, out};
use crate::revocations::{self, Change};
use crate::vendor_dir::{VendorDir, LEDGER_FILE, REVOCATIONS_ARMORED_FILE, REVOCATIONS_FILE};

pub(super) fn suspend(ctx: &Ctx<'_>, a: &RevokeArgs) -> Result<u8> {
    change(ctx, a, Some(RevocationStatus::Suspended))
}

pub(super) fn revoke(ctx: &Ctx<'_>, a: &RevokeArgs) -> Result<u8> {
    change(ctx, a, Some(RevocationStatus::Revoked))
}

pub(super) fn reinstate(ctx: &Ctx<'_>, a: &RevokeArgs) -> Result<u8> {
    change(ctx, a, None)
}

/// The `--list-valid-for` deadline, refused when in the past (the CLI and the desk).
pub(crate) fn deadline(text: Option<&str>, now: Timestamp) -> Result<Option<Timestamp>> {
    let Some(text) = text else { return Ok(None) };
    let t = parse_expiry(text, now)?;
    if t <= now {
        return Err(crate::error::usage(format!(
            "revocation list freshness deadline {} (--list-valid-for) is in the past: pass a later date or a duration such as 7d",
            rfc3339(t)
        )));
    }
    Ok(Some(t))
}

fn change(ctx: &Ctx<'_>, a: &RevokeArgs, status: Option<RevocationStatus>) -> Result<u8> {
    if let Some(e) = &a.expires {
        return Err(crate::error::usage(format!(
            "--expires {e}: a suspension does not end by itself (and a revocation never does): \
             run `licensegen reinstate ID` when it should end. To set how long the signed \
             revocation list stays fresh, use --list-valid-for {e}"
        )));
    }
    let v = ctx.vendor()?;
    let now = crate::fsutil::now();
    let expires = deadline(a.list_valid_for.as_deref(), now)?;
    let mut ledger = Ledger::open(&v.path(LEDGER_FILE))?;
    let (rec, change) = plan_change(&v, &ledger, &a.license_id, status, a.reason.clone(), now)?;
    let key = ctx.revoker(&v, a.revoker_key.as_deref())?;
    let list = revocations::publish(&v, &mut ledger, &key, &change, expires, now)?;
    let verb = match status {
        Some(s) => s.as_str(),
        None => "reinstated",
    };
    out(&format!("{verb} license {} ({})\n", rec.id, rec.customer))?;
    print_published(&v, &list)
}

/// The revocation-list change that suspends (`Some(Suspended)`), revokes
/// or reinstates (`None`) license `license_id`, refused when impossible
/// (checked before any key is unlocked; `suspend`/`revoke`/`reinstate` and
/// the desk).
pub(crate) fn plan_change(
    v: &VendorDir,
    ledger: &Ledger,
    license_id: &str,
    status: Option<RevocationStatus>,
    reason: Option<String>,
    now: Timestamp,
) -> Result<(LicenseRecord, Change)> {
    let rec = ledger::find_license(&ledger.conn, license_id)?;
    let change = match status {
        Some(status) => Change::Set {
            id: rec.id,
            status,
            reason: reason.unwrap_or_else(|| format!("{} by the vendor", status.as_str())),
        },
        None => Change::Lift { id: rec.id },
    };
    // Refuse impossible changes before asking for the passphrase.
    let mut entries = revocations::current(v, ledger)?
        .map(|l| l.entries)
        .unwrap_or_default();
    change.apply(&mut entries, now)?;
    Ok((rec, change))
}

fn print_published(v: &VendorDir, list: &kaching_core::RevocationList) -> Result<u8> {
    out(&format!(
        "revocation list version {} written to {} and {} (fresh until {})\nsend it to every relay and air-gapped customer that runs this license\n",
        list.version,
        v.path(REVOCATIONS_FILE).display(),
        v.path(REVOCATIONS_ARMORED_FILE).display(),
        rfc3339(list.expires)
    ))?;
    Ok(crate::exit::OK)
}

pub(super) fn revocations(ctx: &Ctx<'_>, r: &RevocationsCommand) -> Result<u8> {
    let v = ctx.vendor()?;
    let mut ledger = Ledger::open(&v.path(LEDGER_FILE))?;
    match r {
        RevocationsCommand::Show { json: as_json } => {
            let Some(list) = revocations::current(&v, &ledger)? else {
                out("no revocation list yet\n")?;
                return Ok(crate::exit::OK);
            };
            if *as_json {
                json(&list)?;
            } else {
                out(&revocations::describe(&list))?;
            }
            Ok(crate::exit::OK)
        }
        RevocationsCommand::Refresh {
            list_valid_for,
            revoker_key,
        } => {
            let now = crate::fsutil::now();
            let expires = deadline(list_valid_for.as_deref(), now)?;
            let key = ctx.revoker(&v, revoker_key.as_deref())?;
            let list = revocations::publish(&v, &mut ledger, &key, &Change::Refresh, expires, now)?;
            print_published(&v, &list)
        }
    }
}
