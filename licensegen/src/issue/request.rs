//! What a user asks for when issuing: from flags, or from a `--spec` TOML file
//! holding one license (top-level keys) or many (`[[license]]` tables).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

/// One license to issue. Every field but customer and tier may be left out;
/// the tier's defaults (or the license being reissued) fill the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenseRequest {
    /// Customer display name.
    pub customer: Option<String>,
    /// Customer id (`sub`); defaults to a slug of the name.
    pub customer_id: Option<String>,
    /// Tier name from the catalog.
    pub tier: Option<String>,
    /// Date (`2027-12-31`) or duration from now (`365d`, `1y`).
    pub expires: Option<String>,
    /// Node limit.
    pub nodes: Option<u32>,
    /// CPU core limit.
    pub cores: Option<u32>,
    /// Features added to the tier's.
    #[serde(default)]
    pub features: Vec<String>,
    /// `NAME=LIMIT[/day|month|total|gauge]`; NAME must be a quota of the tier catalog.
    #[serde(default)]
    pub quotas: Vec<String>,
    /// Like `quotas`, for names outside the tier catalog (`--custom-quota`).
    #[serde(default)]
    pub custom_quotas: Vec<String>,
    /// Grace after expiry (`14d`).
    pub grace: Option<String>,
    /// Percent over the node limit allowed.
    pub overage: Option<u32>,
    /// Bind to this cluster id.
    pub cluster: Option<String>,
    /// Bind to the cluster of this activation request file.
    pub bind: Option<PathBuf>,
    /// Heartbeat interval (connected license).
    pub heartbeat: Option<String>,
    /// How long a connected cluster may run without the relay.
    pub offline_grace: Option<String>,
    /// How often a usage report must be acknowledged (`90d`).
    pub report_every: Option<String>,
    /// Warning lead before a report is due (`14d`).
    pub report_warn: Option<String>,
    /// Features off while a report is late.
    #[serde(default)]
    pub report_deny: Vec<String>,
    /// Features kept after expiry and grace.
    #[serde(default)]
    pub degrade: Vec<String>,
    /// Write the armored spelling.
    pub armor: Option<bool>,
    /// Output file.
    pub out: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Many {
    license: Vec<LicenseRequest>,
}

/// Reads a spec file; relative `bind` and `out` paths are taken from the
/// spec file's folder.
pub fn read_spec(path: &Path) -> Result<Vec<LicenseRequest>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read spec file {}", path.display()))?;
    let bad = |e: toml::de::Error| {
        crate::error::usage(format!(
            "spec file {} is not valid: {}",
            path.display(),
            e.message()
        ))
    };
    let value: toml::Table = toml::from_str(&text).map_err(bad)?;
    let mut requests = if value.contains_key("license") {
        toml::from_str::<Many>(&text).map_err(bad)?.license
    } else {
        vec![toml::from_str::<LicenseRequest>(&text).map_err(bad)?]
    };
    if requests.is_empty() {
        return Err(crate::error::usage(format!(
            "spec file {} lists no license",
            path.display()
        )));
    }
    let base = crate::fsutil::parent_of(path);
    for r in &mut requests {
        for p in [&mut r.bind, &mut r.out].into_iter().flatten() {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if r.customer.is_none() || r.tier.is_none() {
            return Err(crate::error::usage(format!(
                "spec file {}: every license needs customer and tier",
                path.display()
            )));
        }
    }
    Ok(requests)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_with_one_or_many_licenses() {
        let dir = tempfile::tempdir().unwrap();
        let one = dir.path().join("one.toml");
        std::fs::write(
            &one,
            "customer = 'A'\ntier = 'standard'\nbind = 'req.asc'\n",
        )
        .unwrap();
        let r = read_spec(&one).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(
            r[0].bind.as_deref(),
            Some(dir.path().join("req.asc").as_path())
        );
        let many = dir.path().join("many.toml");
        std::fs::write(
            &many,
            "[[license]]\ncustomer = 'A'\ntier = 'standard'\n[[license]]\ncustomer = 'B'\ntier = 'evaluation'\nquotas = ['api_calls=5/day']\n",
        )
        .unwrap();
        assert_eq!(read_spec(&many).unwrap().len(), 2);
        std::fs::write(&many, "customer = 'A'\ntier = 'standard'\ncolour = 'red'\n").unwrap();
        assert!(read_spec(&many).is_err());
    }
}
