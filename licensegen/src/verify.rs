//! `verify`: the verdict a verifier would give a license file, with an exit
//! code per state (see [`crate::exit`]).

use std::path::Path;

use anyhow::Result;
use kaching_core::policy::{explain, Explanation};
use kaching_core::time::{rfc3339, Timestamp};
use kaching_core::{
    verify_license, DocKind, LicenseInput, RevocationList, Settings, Snapshot, TierCatalog,
    TrustedKeys, Verdict,
};
use serde::Serialize;

use crate::output::{json, out};

/// What to verify against.
#[derive(Debug, Clone)]
pub struct VerifyContext {
    /// Trusted vendor keys.
    pub keys: TrustedKeys,
    /// The current revocation list, if any.
    pub revocations: Option<RevocationList>,
    /// Catalog for feature decisions.
    pub catalog: TierCatalog,
    /// Product the verifier guards.
    pub audience: String,
    /// Cluster the verifier runs on (default: the license's own binding).
    pub cluster: Option<String>,
    /// The time to judge at.
    pub at: Timestamp,
    /// The keys are this vendor directory's (kid of its current key), not
    /// a `--pubkey` file: a foreign signature is another vendor's license.
    pub vendor_kid: Option<String>,
}

/// The result of `verify`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The file verified.
    pub file: String,
    /// The state name.
    pub state: String,
    /// The exit code for that state.
    pub exit_code: u8,
    /// The full verdict.
    pub verdict: Verdict,
}

/// Verifies and evaluates a license file as a fresh verifier would (no
/// nodes, no usage).
pub fn verify(path: &Path, ctx: &VerifyContext) -> Result<Report> {
    let verdict = simulate(path, ctx, &Snapshot::default())?.verdict;
    Ok(Report {
        file: path.display().to_string(),
        state: verdict.state.as_str().into(),
        exit_code: crate::exit::for_state(verdict.state),
        verdict,
    })
}

/// Verifies a license file and explains, rule by rule, the verdict a
/// verifier would reach with `snapshot` (nodes, usage) at `ctx.at`.
pub fn simulate(path: &Path, ctx: &VerifyContext, snapshot: &Snapshot) -> Result<Explanation> {
    let input = crate::fsutil::read(path)?;
    let checked = verify_license(&input, &ctx.keys);
    let rejected;
    let (license_input, bound) = match &checked {
        Ok(v) => (
            LicenseInput::Verified(&v.license),
            v.license.cluster.clone(),
        ),
        Err(e) => {
            rejected = match (e, &ctx.vendor_kid) {
                _ if input.iter().all(u8::is_ascii_whitespace) => format!(
                    "{} is empty: it is not a license file (check that you picked the right file)",
                    path.display()
                ),
                _ if other_kind(&input).is_some() => format!(
                    "{} is a {}, not a license: `licensegen inspect {}` shows what it holds and checks its signature",
                    path.display(),
                    other_kind(&input).map_or_else(String::new, |k| k.to_string()),
                    path.display()
                ),
                (kaching_core::Error::UnknownKey(kid), Some(ours)) => format!(
                    "signed by a different vendor key ({kid}) than this vendor directory's ({ours}): it is another vendor's license, or was signed in another vendor directory"
                ),
                _ => e.to_string(),
            };
            (LicenseInput::Rejected(&rejected), None)
        }
    };
    let settings = Settings {
        audience: ctx.audience.clone(),
        cluster_id: ctx.cluster.clone().or(bound),
        ..Settings::default()
    };
    Ok(explain(
        license_input,
        ctx.revocations.as_ref(),
        snapshot,
        &ctx.catalog,
        &settings,
        ctx.at,
    ))
}

/// The kind of a KACHING document other than a license (a receipt, a
/// clock reset handed to `verify` by mistake).
fn other_kind(input: &[u8]) -> Option<DocKind> {
    let bytes = kaching_core::armor::dearmor(input, None).ok()?;
    let (kind, _) = kaching_core::envelope::peek(&bytes).ok()?;
    (kind != DocKind::License).then_some(kind)
}

/// Prints a report as text or JSON.
pub fn print(r: &Report, as_json: bool) -> Result<()> {
    if as_json {
        return json(r);
    }
    let v = &r.verdict;
    let mut s = format!("state:    {}\nreason:   {}\n", r.state, v.reason);
    if let Some(id) = v.license_id {
        s.push_str(&format!(
            "license:  {id} ({}, tier {})\n",
            v.customer.as_deref().unwrap_or("?"),
            v.tier.as_deref().unwrap_or("?")
        ));
    }
    if let Some(exp) = v.expires_at {
        s.push_str(&format!("expires:  {}\n", rfc3339(exp)));
    }
    let allowed: Vec<&str> = v
        .features
        .iter()
        .filter(|(_, d)| d.allowed)
        .map(|(n, _)| n.as_str())
        .collect();
    if v.license_id.is_some() {
        s.push_str(&format!(
            "features: {}\n",
            if allowed.is_empty() {
                "none usable".into()
            } else {
                allowed.join(", ")
            }
        ));
    }
    for w in &v.warnings {
        s.push_str(&format!("warning:  {w}\n"));
    }
    s.push_str(&format!("exit:     {}\n", r.exit_code));
    out(&s)
}
