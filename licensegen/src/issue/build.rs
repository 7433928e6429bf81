//! Turning a request into license claims: tier defaults, then the license
//! being reissued, then the user's overrides, all checked against the catalog.

use std::collections::BTreeSet;

use anyhow::Result;
use kaching_core::cluster::{verify_activation_request, ActivationRequest, SelfSigned};
use kaching_core::license::{HeartbeatPolicy, Limits, Period, Quota};
use kaching_core::tiers::{closest, Tier};
use kaching_core::time::{parse_rfc3339, rfc3339, Timestamp, DAY};
use kaching_core::{License, LicenseId, TierCatalog};

use super::request::LicenseRequest;
use crate::error::usage;
use crate::vendor_dir::{parse_duration, Config};

/// How the new license relates to an earlier one.
#[derive(Debug, Clone, Copy)]
pub enum Mode<'a> {
    /// A new customer license.
    New,
    /// Same tier and terms, later expiry; supersedes the old one.
    Renew(&'a License),
    /// Another tier (its defaults), same customer and binding; supersedes the old one.
    Upgrade(&'a License),
}

/// A license ready to sign, with notes for the ledger history.
#[derive(Debug, Clone)]
pub struct Built {
    /// The claims.
    pub license: License,
    /// Human notes (binding source, …).
    pub notes: Vec<String>,
}

/// Builds and checks license claims.
pub fn build(
    req: &LicenseRequest,
    mode: Mode<'_>,
    catalog: &TierCatalog,
    config: &Config,
    now: Timestamp,
) -> Result<Built> {
    let base = match mode {
        Mode::New => None,
        Mode::Renew(b) | Mode::Upgrade(b) => Some(b),
    };
    let tier_name = req
        .tier
        .as_deref()
        .or(base.map(|b| b.tier.as_str()))
        .ok_or_else(|| usage("--tier is required"))?;
    let tier = find_tier(catalog, tier_name)?;
    let mut lic = match mode {
        Mode::Renew(b) => b.clone(),
        _ => from_tier(tier, config, now),
    };
    if let Some(b) = base {
        lic.customer = b.customer.clone();
        lic.customer_id = b.customer_id.clone();
        lic.cluster = b.cluster.clone();
        lic.heartbeat = b.heartbeat;
        // The duty to report and the degraded level carry over.
        lic.report = b.report.clone();
        lic.degrade = b.degrade.clone();
        lic.supersedes = Some(b.id);
        if let Mode::Upgrade(_) = mode {
            // Add-on features bought on top of the old tier stay.
            let old_defaults: BTreeSet<&str> = catalog
                .get(&b.tier)
                .map(|t| t.features.iter().map(String::as_str).collect())
                .unwrap_or_default();
            lic.features.extend(
                b.features
                    .iter()
                    .filter(|f| !old_defaults.contains(f.as_str()))
                    .cloned(),
            );
        }
    } else {
        let customer = req
            .customer
            .clone()
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| usage("--customer is required (the customer's name)"))?;
        lic.customer_id = req.customer_id.clone().unwrap_or_else(|| slug(&customer));
        lic.customer = customer;
    }
    lic.id = LicenseId::random();
    lic.issuer = config.issuer.clone();
    lic.audience = config.audience.clone();
    lic.issued_at = now;
    lic.not_before = now;
    lic.tier = tier.name.clone();
    let term = tier.duration_days * DAY;
    lic.expires_at = match (&req.expires, mode) {
        (Some(e), _) => parse_expiry(e, now)?,
        (None, Mode::New) => now + term,
        (None, Mode::Renew(b)) => b.expires_at.max(now) + term,
        (None, Mode::Upgrade(b)) if b.expires_at > now => b.expires_at,
        (None, Mode::Upgrade(_)) => now + term,
    };
    let mut notes = Vec::new();
    apply_overrides(&mut lic, req, tier, catalog, &mut notes)?;
    Ok(Built {
        license: lic,
        notes,
    })
}

fn from_tier(tier: &Tier, config: &Config, now: Timestamp) -> License {
    License {
        id: LicenseId([0; 16]),
        issuer: config.issuer.clone(),
        customer_id: String::new(),
        customer: String::new(),
        audience: config.audience.clone(),
        issued_at: now,
        not_before: now,
        expires_at: now,
        tier: tier.name.clone(),
        features: tier.features.iter().cloned().collect(),
        limits: Limits {
            max_nodes: tier.max_nodes,
            max_cores: None,
        },
        quotas: tier.quotas.clone(),
        grace: tier.grace_days * DAY,
        overage: tier.overage,
        cluster: None,
        heartbeat: None,
        supersedes: None,
        degrade: Default::default(),
        report: None,
    }
}

fn apply_overrides(
    lic: &mut License,
    req: &LicenseRequest,
    tier: &Tier,
    catalog: &TierCatalog,
    notes: &mut Vec<String>,
) -> Result<()> {
    if let Some(n) = req.nodes {
        if n == 0 {
            return Err(usage("--nodes must be at least 1"));
        }
        lic.limits.max_nodes = n;
    }
    if let Some(c) = req.cores {
        lic.limits.max_cores = Some(c);
    }
    let known = catalog.all_features();
    for f in &req.features {
        if !known.iter().any(|k| k == f) {
            let hint = match closest(f, known.iter().map(String::as_str)) {
                Some(c) => format!("did you mean {c:?}?"),
                None => format!("known features: {}", known.join(", ")),
            };
            return Err(usage(format!("unknown feature {f:?}: {hint}")));
        }
        lic.features.insert(f.clone());
    }
    let catalog_quotas = quota_names(catalog);
    for q in &req.quotas {
        let (name, quota) = parse_quota(q, tier)?;
        if !catalog_quotas.contains(name.as_str()) {
            let hint = match closest(&name, catalog_quotas.iter().copied()) {
                Some(c) => format!("did you mean {c:?}?"),
                None => format!(
                    "the tier catalog's quotas are {}",
                    catalog_quotas
                        .iter()
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            return Err(usage(format!(
                "unknown quota {name:?}: {hint} (for a quota outside the tier catalog, use --custom-quota {q})"
            )));
        }
        lic.quotas.insert(name, quota);
    }
    for q in &req.custom_quotas {
        let (name, quota) = parse_quota(q, tier)?;
        lic.quotas.insert(name, quota);
    }
    if let Some(g) = &req.grace {
        lic.grace = parse_duration(g)?;
    }
    if let Some(o) = req.overage {
        lic.overage = o;
    }
    if req.cluster.is_some() && req.bind.is_some() {
        return Err(usage(
            "--cluster and --bind: give one (the activation request names its cluster)",
        ));
    }
    if let Some(c) = &req.cluster {
        lic.cluster = Some(parse_cluster_id(c)?);
    }
    if let Some(path) = &req.bind {
        let bytes = crate::fsutil::read(path)?;
        let r = check_activation_request(&bytes, &path.display().to_string())?;
        notes.push(format!(
            "bound to cluster {} (activation request from host {}, {} nodes, made {})",
            r.doc.cluster_id,
            r.doc.hostname,
            r.doc.nodes,
            rfc3339(r.doc.created)
        ));
        if r.doc.nodes > lic.limits.max_nodes {
            notes.push(format!(
                "warning: the cluster reported {} nodes, above this license's {}",
                r.doc.nodes, lic.limits.max_nodes
            ));
        }
        lic.cluster = Some(r.doc.cluster_id);
    }
    match (&req.heartbeat, &req.offline_grace) {
        (Some(h), Some(g)) => {
            lic.heartbeat = Some(HeartbeatPolicy {
                interval: parse_duration(h)?,
                offline_grace: parse_duration(g)?,
            })
        }
        (None, None) => {}
        _ => {
            return Err(usage(
                "--heartbeat and --offline-grace go together (a connected license needs both)",
            ))
        }
    }
    if let Some(every) = &req.report_every {
        let every = parse_duration(every)?;
        if every == 0 {
            return Err(usage("--report-every must be longer than zero, e.g. 90d"));
        }
        let warn = match &req.report_warn {
            Some(w) => parse_duration(w)?,
            None => 14 * DAY,
        };
        lic.report = Some(kaching_core::license::ReportPolicy {
            every,
            warn,
            deny: req.report_deny.iter().cloned().collect(),
        });
    } else if req.report_warn.is_some() || !req.report_deny.is_empty() {
        return Err(usage("--report-warn and --report-deny need --report-every"));
    }
    if !req.degrade.is_empty() {
        lic.degrade = req.degrade.iter().cloned().collect();
    }
    // Both lists name features of this license (verifiers refuse otherwise).
    for (flag, names) in [
        ("--degrade", lic.degrade.iter().collect::<Vec<_>>()),
        (
            "--report-deny",
            lic.report.iter().flat_map(|p| p.deny.iter()).collect(),
        ),
    ] {
        if let Some(f) = names.into_iter().find(|f| !lic.features.contains(*f)) {
            return Err(usage(format!(
                "{flag} {f}: this license does not include {f} (its features: {})",
                lic.features.iter().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    if lic.expires_at <= lic.issued_at {
        return Err(usage(format!(
            "expiry {} is in the past: pass a later date or a duration such as 365d",
            rfc3339(lic.expires_at)
        )));
    }
    if let Some(e) = req.expires.as_deref() {
        if lic.expires_at < lic.issued_at.saturating_add(DAY) {
            return Err(usage(format!(
                "expiry {e:?} ({}) is less than a day away: a license runs at least one day; for months write e.g. 12months",
                rfc3339(lic.expires_at)
            )));
        }
    }
    Ok(())
}

/// Notes for an upgrade that lowers a node limit or a quota the old license
/// had (the new tier's defaults replace negotiated terms `req` does not set).
pub fn lowered_limits(old: &License, new: &License, req: &LicenseRequest) -> Vec<String> {
    let mut notes = Vec::new();
    let tier = &new.tier;
    let set_by_user = |name: &str| {
        req.quotas
            .iter()
            .chain(&req.custom_quotas)
            .any(|q| q.split('=').next().map(str::trim) == Some(name))
    };
    if req.nodes.is_none() && new.limits.max_nodes < old.limits.max_nodes {
        notes.push(format!(
            "note: nodes {} → {} (the {tier} tier's default); pass --nodes {} to keep it",
            old.limits.max_nodes, new.limits.max_nodes, old.limits.max_nodes
        ));
    }
    for (name, q) in &old.quotas {
        if let Some(n) = new.quotas.get(name).filter(|_| !set_by_user(name)) {
            if n.period == q.period && n.limit < q.limit {
                notes.push(format!(
                    "note: quota {name} {}/{} → {}/{} (the {tier} tier's default); pass --quota {name}={}/{} to keep it",
                    q.limit, q.period, n.limit, n.period, q.limit, q.period
                ));
            }
        }
    }
    notes
}

/// Verifies an activation request (`what` names it in the refusal): the
/// check behind `--bind`, shared with the desk's upload.
pub fn check_activation_request(bytes: &[u8], what: &str) -> Result<SelfSigned<ActivationRequest>> {
    verify_activation_request(bytes).map_err(|e| {
        usage(format!(
            "{what} is not a valid activation request ({e}): ask the customer to run `kaching-verifier activation-request` again"
        ))
    })
}

/// Finds a tier, or says which one was probably meant.
pub fn find_tier<'a>(catalog: &'a TierCatalog, name: &str) -> Result<&'a Tier> {
    catalog.get(name).ok_or_else(|| {
        let names = catalog.names();
        let hint = match closest(name, names.iter().copied()) {
            Some(c) => format!("did you mean {c:?}?"),
            None => format!("the tiers are {}", names.join(", ")),
        };
        usage(format!(
            "unknown tier {name:?}: {hint} (tiers.toml lists them)"
        ))
    })
}

/// Every quota name any tier of the catalog sets.
fn quota_names(catalog: &TierCatalog) -> BTreeSet<&str> {
    catalog
        .tiers
        .iter()
        .flat_map(|t| t.quotas.keys().map(String::as_str))
        .collect()
}

/// Length of a cluster id: base32 of 10 bytes (`kaching_core::cluster_id`).
const CLUSTER_ID_LEN: usize = 16;

/// Checks `--cluster`: the form `kaching_core::cluster_id` gives (16 characters
/// of lower-case base32: a-z and 2-7). Upper case is folded, space trimmed.
pub fn parse_cluster_id(text: &str) -> Result<String> {
    if let Some(id) = cluster_id_shape(text) {
        return Ok(id);
    }
    Err(usage(format!(
        "{text:?} is not a cluster id: a cluster id is {CLUSTER_ID_LEN} characters of a-z and 2-7, \
         like xdr73xb67d6me5jq. The customer's `kaching-verifier activation-request` prints it and \
         writes a request file you can pass as --bind FILE instead"
    )))
}

/// The cluster id in `text` when it has the form `kaching_core::cluster_id`
/// gives, folded to lower case and trimmed (every command taking a cluster
/// id checks it so, each with its own hint where to find the id).
pub fn cluster_id_shape(text: &str) -> Option<String> {
    let id = text.trim().to_ascii_lowercase();
    let base32 = |c: char| c.is_ascii_lowercase() || ('2'..='7').contains(&c);
    (id.chars().count() == CLUSTER_ID_LEN && id.chars().all(base32)).then_some(id)
}

/// Parses `--expires`: a date or date-time (UTC) or a duration from now.
pub fn parse_expiry(text: &str, now: Timestamp) -> Result<Timestamp> {
    if let Some(t) = parse_rfc3339(text) {
        return Ok(t);
    }
    crate::vendor_dir::refuse_bare_m(text)?;
    humantime::parse_duration(text.trim())
        .map(|d| now.saturating_add(d.as_secs()))
        .map_err(|_| {
            usage(format!(
                "cannot read expiry {text:?}: use a date (2027-12-31) or a duration (365d, 1y, 12months)"
            ))
        })
}

fn parse_quota(text: &str, tier: &Tier) -> Result<(String, Quota)> {
    let bad = || {
        usage(format!(
            "cannot read quota {text:?}: use NAME=LIMIT or NAME=LIMIT/PERIOD (day, month, total, gauge), e.g. search_requests=100000/day"
        ))
    };
    let (name, rest) = text.split_once('=').ok_or_else(bad)?;
    let name = name.trim();
    if name.is_empty() {
        return Err(bad());
    }
    let (limit, period) = match rest.split_once('/') {
        Some((l, p)) => (l, Some(p.trim().parse::<Period>().map_err(usage)?)),
        None => (rest, None),
    };
    let limit: u64 = limit.trim().parse().map_err(|_| bad())?;
    let period = period
        .or_else(|| tier.quotas.get(name).map(|q| q.period))
        .unwrap_or(Period::Total);
    Ok((name.to_string(), Quota { limit, period }))
}

/// A customer id from a display name: lower-case letters, digits and dashes.
pub fn slug(name: &str) -> String {
    let mut s = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.ends_with('-') && !s.is_empty() {
            s.push('-');
        }
    }
    let s = s.trim_end_matches('-').to_string();
    if s.is_empty() {
        "customer".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config {
            issuer: "Vendor".into(),
            audience: "bzzz".into(),
            revocation_validity: "7d".into(),
            armor: false,
            relay: None,
            alg: kaching_core::Alg::default(),
        }
    }

    fn req(customer: &str, tier: &str) -> LicenseRequest {
        LicenseRequest {
            customer: Some(customer.into()),
            tier: Some(tier.into()),
            ..Default::default()
        }
    }

    const NOW: Timestamp = 1_800_000_000;

    #[test]
    fn tier_defaults_then_overrides() {
        let cat = TierCatalog::builtin();
        let mut r = req("Acme Corp.", "standard");
        r.nodes = Some(25);
        r.features = vec!["bulk-operations".into()];
        r.quotas = vec!["api_calls=5".into()];
        r.custom_quotas = vec!["exports=9/day".into()];
        let b = build(&r, Mode::New, &cat, &config(), NOW).unwrap().license;
        assert_eq!(b.customer_id, "acme-corp");
        assert_eq!(b.limits.max_nodes, 25);
        assert!(b.has_feature("analytics") && b.has_feature("bulk-operations"));
        assert_eq!(b.quotas["api_calls"].period, Period::Month);
        assert_eq!(b.quotas["exports"].period, Period::Day);
        assert_eq!(b.expires_at, NOW + 365 * DAY);
        assert_eq!(b.grace, 14 * DAY);
    }

    #[test]
    fn unknown_names_get_a_suggestion() {
        let cat = TierCatalog::builtin();
        let e = build(&req("A", "standrd"), Mode::New, &cat, &config(), NOW).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown tier \"standrd\": did you mean \"standard\"? (tiers.toml lists them)"
        );
        let mut r = req("A", "standard");
        r.features = vec!["analytic".into()];
        let e = build(&r, Mode::New, &cat, &config(), NOW).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown feature \"analytic\": did you mean \"analytics\"?"
        );
    }

    #[test]
    fn quotas_outside_the_catalog_need_custom_quota() {
        let cat = TierCatalog::builtin();
        let mut r = req("A", "standard");
        r.quotas = vec!["search_request=100000/day".into()];
        let e = build(&r, Mode::New, &cat, &config(), NOW).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown quota \"search_request\": did you mean \"search_requests\"? (for a quota outside the tier catalog, use --custom-quota search_request=100000/day)"
        );
        r.quotas = vec!["foo=10".into()];
        let e = build(&r, Mode::New, &cat, &config(), NOW).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("unknown quota \"foo\": the tier catalog's quotas are api_calls, search_requests, storage_gb"));
        r.quotas = vec![];
        r.custom_quotas = vec!["foo=10".into()];
        let l = build(&r, Mode::New, &cat, &config(), NOW).unwrap().license;
        assert_eq!(l.quotas["foo"].limit, 10);
        assert_eq!(l.quotas["foo"].period, Period::Total);
    }

    #[test]
    fn cluster_ids_are_checked() {
        assert_eq!(
            parse_cluster_id(" XDR73XB67D6ME5JQ ").unwrap(),
            "xdr73xb67d6me5jq"
        );
        for bad in [
            "not-a-cluster",
            "xdr73xb67d6me5j",
            "xdr73xb67d6me5jq1",
            "xdr73xb67d6me5j0",
        ] {
            let e = parse_cluster_id(bad).unwrap_err().to_string();
            assert!(e.contains("is not a cluster id"), "{bad}: {e}");
        }
    }

    #[test]
    fn upgrade_keeps_customer_binding_and_expiry_and_supersedes() {
        let cat = TierCatalog::builtin();
        let mut r = req("Acme", "standard");
        r.cluster = Some("abcdabcdabcdabcd".into());
        let old = build(&r, Mode::New, &cat, &config(), NOW).unwrap().license;
        let up = LicenseRequest {
            tier: Some("enterprise".into()),
            ..Default::default()
        };
        let new = build(&up, Mode::Upgrade(&old), &cat, &config(), NOW + 10)
            .unwrap()
            .license;
        assert_eq!(new.supersedes, Some(old.id));
        assert_eq!(new.customer_id, old.customer_id);
        assert_eq!(new.cluster, old.cluster);
        assert_eq!(new.expires_at, old.expires_at);
        assert_eq!(new.limits.max_nodes, 100);
        let renewed = build(
            &LicenseRequest::default(),
            Mode::Renew(&old),
            &cat,
            &config(),
            NOW + 20,
        )
        .unwrap()
        .license;
        assert_eq!(renewed.expires_at, old.expires_at + 365 * DAY);
        assert_eq!(renewed.tier, "standard");
    }

    #[test]
    fn past_expiry_refused() {
        let cat = TierCatalog::builtin();
        let mut r = req("A", "standard");
        r.expires = Some("2020-01-01".into());
        let e = build(&r, Mode::New, &cat, &config(), NOW).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("expiry 2020-01-01T00:00:00Z is in the past"));
        assert_eq!(parse_expiry("1y", NOW).unwrap(), NOW + 31_557_600);
    }

    #[test]
    fn expiry_in_minutes_is_refused() {
        let cat = TierCatalog::builtin();
        let mut r = req("A", "standard");
        r.expires = Some("12m".into());
        let e = build(&r, Mode::New, &cat, &config(), NOW).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`12m` is ambiguous: write `12months` or `12min`"
        );
        r.expires = Some("12min".into());
        let e = build(&r, Mode::New, &cat, &config(), NOW).unwrap_err();
        assert!(e.to_string().starts_with("expiry \"12min\" ("), "{e}");
        assert!(e.to_string().contains("is less than a day away"), "{e}");
        r.expires = Some("12months".into());
        let l = build(&r, Mode::New, &cat, &config(), NOW).unwrap().license;
        assert_eq!(l.expires_at, NOW + 12 * 2_630_016);
    }
}
