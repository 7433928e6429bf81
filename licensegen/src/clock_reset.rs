//! `clock-reset`: sign the vendor's permission to lower one cluster's
//! trusted-time mark (docs/format.md §7.9), record it in the ledger, write
//! it for the customer. The document and every rule about taking it are
//! `kaching_core::clock_reset`'s; this module checks what sales ops typed
//! and does the I/O.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use kaching_core::armor::armor;
use kaching_core::clock_reset::{verify_clock_reset, ClockReset};
use kaching_core::time::{human_duration, parse_rfc3339, rfc3339, Timestamp, DAY};
use kaching_core::{DocKind, SecretKey, TrustedKeys};
use rusqlite::TransactionBehavior;

use crate::error::usage;
use crate::ledger::{self, ClockResetRecord, Ledger, LedgerState, LicenseRecord};
use crate::vendor_dir::VendorDir;

/// How long a reset stays usable unless `--valid-for` says otherwise.
pub const DEFAULT_VALID_FOR: &str = "14d";
/// The shortest `--valid-for`: time to carry the file to the cluster.
pub const MIN_VALID_FOR: u64 = 3600;
/// The longest `--valid-for`.
pub const MAX_VALID_FOR: u64 = 90 * DAY;

/// A reset checked and ready to sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The cluster, as `kaching_core::cluster_id` spells it.
    pub cluster: String,
    /// The cluster's mark the reset replaces.
    pub mark: Timestamp,
    /// Seconds from signing to `exp`.
    pub valid_for: u64,
    /// Things to tell sales ops before signing (signing goes on).
    pub warnings: Vec<String>,
}

/// Checks what was asked for against this computer's clock `now` and the
/// verifier's clock `tolerance` (its default: a cluster's own may differ).
/// Pure: the refusals are usage errors saying what to do instead.
pub fn plan(
    cluster: &str,
    mark: &str,
    valid_for: &str,
    now: Timestamp,
    tolerance: u64,
) -> Result<Plan> {
    let cluster = crate::issue::cluster_id_shape(cluster).ok_or_else(|| {
        usage(format!(
            "{cluster:?} is not a cluster id: a cluster id is 16 characters of a-z and 2-7, like \
             xdr73xb67d6me5jq. Ask the customer for what `kaching-verifier status` prints on the \
             cluster: its cluster id and its trusted-time mark"
        ))
    })?;
    let mark = parse_mark(mark)?;
    let valid_for = parse_valid_for(valid_for)?;
    if mark <= now {
        return Err(usage(format!(
            "the mark {} is not ahead of this computer's clock ({}): the cluster's clock is behind, \
             not its mark; it needs its clock set right (NTP), no reset. If this computer's clock \
             is the wrong one, set it right first: a reset gives the cluster this computer's time",
            rfc3339(mark),
            rfc3339(now)
        )));
    }
    let mut warnings = Vec::new();
    let ahead = mark - now;
    if ahead < tolerance {
        warnings.push(format!(
            "the mark is only {} ahead of this computer's clock, less than the verifier's {} \
             tolerance: a skew this small does not make clock_tampered; check that the \
             cluster's `kaching-verifier status` really says clock_tampered before sending this",
            human_duration(ahead),
            hours(tolerance)
        ));
    }
    Ok(Plan {
        cluster,
        mark,
        valid_for,
        warnings,
    })
}

/// `24h`: a tolerance as the verifier's docs give it.
fn hours(secs: u64) -> String {
    if secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else {
        human_duration(secs)
    }
}

/// Reads `--mark`: a UTC time as `kaching-verifier status` prints it. A
/// date alone is refused: midnight would be below the cluster's mark, and
/// the verifier refuses a reset made for a mark lower than its own.
fn parse_mark(text: &str) -> Result<Timestamp> {
    let hint = "give the mark exactly as `kaching-verifier status` prints it on the cluster, a UTC time such as 2029-03-01T12:00:00Z";
    let t = text.trim();
    if !t.contains(['T', ' ']) && parse_rfc3339(t).is_some() {
        return Err(usage(format!(
            "--mark {text:?} is a date without a time: {hint}. The verifier refuses a reset made \
             for a mark below its own, and midnight is below it"
        )));
    }
    parse_rfc3339(t).ok_or_else(|| usage(format!("cannot read --mark {text:?}: {hint}")))
}

/// Reads `--valid-for`, between [`MIN_VALID_FOR`] and [`MAX_VALID_FOR`].
fn parse_valid_for(text: &str) -> Result<u64> {
    let secs =
        crate::vendor_dir::parse_duration(text).map_err(|e| usage(format!("--valid-for: {e}")))?;
    if secs < MIN_VALID_FOR {
        return Err(usage(format!(
            "--valid-for {text} is too short: give at least {}, time to carry the file to the \
             cluster and use it (default {DEFAULT_VALID_FOR})",
            human_duration(MIN_VALID_FOR)
        )));
    }
    if secs > MAX_VALID_FOR {
        return Err(usage(format!(
            "--valid-for {text} is too long: at most {}. A reset is for a cluster stuck now; \
             one that lies around unused is a signed permission nobody needs. Sign a new one \
             if this one runs out (default {DEFAULT_VALID_FOR})",
            human_duration(MAX_VALID_FOR)
        )));
    }
    Ok(secs)
}

/// What the ledger knows about the cluster of a planned reset, shown before
/// signing (by `clock-reset` and the desk).
#[derive(Debug, Clone)]
pub struct Known {
    /// The licenses on the cluster: bound to it (`true`) or unbound and
    /// reporting from it (`false`), each with its state now.
    pub licenses: Vec<(LicenseRecord, bool, LedgerState)>,
    /// Resets signed earlier for the cluster that can still be used.
    pub still_valid: Vec<ClockResetRecord>,
}

/// Reads what the ledger knows about `plan`'s cluster at `now`.
pub fn known(v: &VendorDir, ledger: &Ledger, plan: &Plan, now: Timestamp) -> Result<Known> {
    let list = crate::revocations::current(v, ledger)?;
    let licenses = ledger::licenses_on_cluster(&ledger.conn, &plan.cluster)?
        .into_iter()
        .map(|(rec, bound)| {
            let state = LedgerState::of(&rec, list.as_ref(), now);
            (rec, bound, state)
        })
        .collect();
    let still_valid = ledger::clock_resets_for(&ledger.conn, &[plan.cluster.as_str()])?
        .into_iter()
        .filter(|r| r.expires >= now)
        .collect();
    Ok(Known {
        licenses,
        still_valid,
    })
}

/// Everything to tell sales ops before signing, in order: the plan's
/// warnings, a cluster the ledger knows no license on, earlier resets
/// still usable. Each line starts with `warning:` or `note:`.
pub fn notices(plan: &Plan, known: &Known) -> Vec<String> {
    let mut lines: Vec<String> = plan
        .warnings
        .iter()
        .map(|w| format!("warning: {w}"))
        .collect();
    if known.licenses.is_empty() {
        lines.push(format!(
            "warning: the ledger knows no license on cluster {}: none is bound to it and no usage \
             report came from it. An air-gapped cluster with an unbound license may still need \
             this; check the cluster id with the customer",
            plan.cluster
        ));
    }
    for earlier in &known.still_valid {
        lines.push(format!(
            "note: clock reset {} for this cluster, signed {}, can be used until {}; a \
             cluster takes each reset once: this new one is for when that one was lost or \
             refused",
            earlier.id,
            rfc3339(earlier.issued),
            rfc3339(earlier.expires)
        ));
    }
    lines
}

/// Where a reset goes without `--out`: `clock-reset-<cluster>.asc` in the
/// current folder.
pub fn default_path(cluster: &str) -> PathBuf {
    PathBuf::from(format!("clock-reset-{cluster}.asc"))
}

/// A reset that was signed, recorded and written.
#[derive(Debug, Clone)]
pub struct Signed {
    /// The claims.
    pub reset: ClockReset,
    /// Where the file went.
    pub path: PathBuf,
}

/// Signs the reset `plan` asks for with the issuer key `key` (`iat` =
/// `now`, this computer's clock), records it in the ledger and writes it,
/// armored, to `path`, which it never replaces.
///
/// The ledger row is committed before the file is written, and taken out
/// again if the file cannot be: a crash in between leaves a row for a reset
/// nobody received, never a signed reset the ledger does not know.
pub fn sign_and_record(
    ledger: &mut Ledger,
    key: &SecretKey,
    plan: &Plan,
    path: &Path,
    now: Timestamp,
) -> Result<Signed> {
    let reset = ClockReset::new(
        &plan.cluster,
        plan.mark,
        now,
        now.saturating_add(plan.valid_for),
    );
    let bytes = reset.sign(key);
    verify_clock_reset(&bytes, &TrustedKeys::from(key.public()))
        .context("self-check of the new clock reset failed")?;
    let text = armor(DocKind::ClockReset, &bytes);
    crate::fsutil::check_new_file(path)?;
    // Recorded absolute, so `ledger show` finds it from any folder.
    let recorded_path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let rec = ClockResetRecord {
        id: reset.id_text(),
        cluster_id: reset.cluster_id.clone(),
        mark: reset.mark,
        issued: reset.issued,
        expires: reset.expires,
        kid: key.public().kid().to_hex(),
        path: recorded_path.display().to_string(),
        created: now,
        file: text.clone().into_bytes(),
    };
    let tx = ledger
        .conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context("cannot lock the ledger")?;
    ledger::insert_clock_reset(&tx, &rec)?;
    tx.commit().context("cannot commit the ledger")?;
    if let Err(e) = crate::fsutil::write_new(path, text.as_bytes(), false) {
        return Err(match ledger::delete_clock_reset(&ledger.conn, &rec.id) {
            Ok(()) => e,
            Err(undo) => e.context(format!(
                "clock reset {} is in the ledger but was never written, and could not be taken out ({undo:#}); nobody has it, so it can be ignored",
                rec.id
            )),
        });
    }
    Ok(Signed {
        reset,
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = 1_796_000_000;
    const CLUSTER: &str = "xdr73xb67d6me5jq";

    fn plan_at(mark: &str, valid_for: &str) -> Result<Plan> {
        plan(CLUSTER, mark, valid_for, NOW, DAY)
    }

    #[test]
    fn a_mark_ahead_is_planned_and_a_small_skew_only_warned() {
        let far = rfc3339(NOW + 400 * DAY);
        let p = plan(" XDR73XB67D6ME5JQ ", &far, "14d", NOW, DAY).unwrap();
        assert_eq!(p.cluster, CLUSTER);
        assert_eq!(p.mark, NOW + 400 * DAY);
        assert_eq!(p.valid_for, 14 * DAY);
        assert!(p.warnings.is_empty());
        let near = plan_at(&rfc3339(NOW + 3600), "14d").unwrap();
        assert_eq!(near.warnings.len(), 1);
        assert!(
            near.warnings[0].contains("does not make clock_tampered"),
            "{:?}",
            near.warnings
        );
    }

    #[test]
    fn what_cannot_make_a_useful_reset_is_refused() {
        let far = rfc3339(NOW + 400 * DAY);
        for (cluster, mark, valid, says) in [
            ("not-a-cluster", far.as_str(), "14d", "is not a cluster id"),
            (CLUSTER, "2029-03-01", "14d", "a date without a time"),
            (CLUSTER, "yesterday", "14d", "cannot read --mark"),
            (
                CLUSTER,
                &rfc3339(NOW),
                "14d",
                "is not ahead of this computer's clock",
            ),
            (CLUSTER, far.as_str(), "59min", "too short"),
            (CLUSTER, far.as_str(), "91d", "too long"),
            (CLUSTER, far.as_str(), "1m", "ambiguous"),
        ] {
            let e = plan(cluster, mark, valid, NOW, DAY).unwrap_err();
            assert!(e.to_string().contains(says), "{mark} {valid}: {e}");
            assert_eq!(crate::error::exit_code_of(&e), crate::exit::USAGE);
        }
        assert!(plan_at(&far, "1h").is_ok());
        assert!(plan_at(&far, "90d").is_ok());
    }
}
