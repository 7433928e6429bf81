//! `kaching.toml`: the vendor's settings (issuer, product, defaults).

use std::time::Duration;

use anyhow::{Context, Result};
use kaching_core::Alg;
use serde::{Deserialize, Deserializer};

/// The vendor settings read from `kaching.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `iss` of every license and revocation list.
    pub issuer: String,
    /// `aud`: the product licenses are for.
    #[serde(default = "default_audience")]
    pub audience: String,
    /// How long a revocation list stays fresh (its `expires`), e.g. `7d`.
    #[serde(default = "default_validity")]
    pub revocation_validity: String,
    /// Write armored (text) license files by default.
    #[serde(default)]
    pub armor: bool,
    /// COSE alg named in every license and revocation list the vendor key
    /// signs: `"EdDSA"` (−8, the default) or `"Ed25519"` (−19).
    #[serde(default, deserialize_with = "alg_by_name")]
    pub alg: Alg,
    /// Where `licensegen publish` uploads revocation lists (optional `[relay]` table).
    #[serde(default)]
    pub relay: Option<RelaySettings>,
}

/// `[relay]` in kaching.toml: defaults for `licensegen publish`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelaySettings {
    /// Relay base URL, e.g. `https://relay.example.com`.
    pub url: Option<String>,
    /// File holding a publish-scope token (relative paths: from the vendor directory).
    pub token_file: Option<std::path::PathBuf>,
}

/// Reads `alg = "…"` by its IANA name, refusing any algorithm KACHING does not write.
fn alg_by_name<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Alg, D::Error> {
    let name = String::deserialize(d)?;
    Alg::from_name(&name).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "alg = {name:?} is not one KACHING signs with: use \"EdDSA\" (COSE -8, the default, which stock COSE libraries verify) or \"Ed25519\" (COSE -19)"
        ))
    })
}

fn default_audience() -> String {
    "bzzz".into()
}

fn default_validity() -> String {
    "7d".into()
}

impl Config {
    /// Parses and checks the file's text.
    pub fn from_toml(text: &str) -> Result<Self> {
        let c: Config = toml::from_str(text).context("kaching.toml is not valid")?;
        c.revocation_validity_secs()?;
        if c.issuer.trim().is_empty() || c.audience.trim().is_empty() {
            anyhow::bail!("kaching.toml: issuer and audience must not be empty");
        }
        Ok(c)
    }

    /// `revocation_validity` in seconds.
    pub fn revocation_validity_secs(&self) -> Result<u64> {
        parse_duration(&self.revocation_validity)
            .with_context(|| "kaching.toml: revocation_validity".to_string())
    }

    /// The file's text, with comments.
    pub fn to_toml(&self) -> String {
        format!(
            "# licensegen vendor settings (see docs/sales-ops.md).\n\
             # Issuer name written into every license and revocation list.\n\
             issuer = {}\n\
             # Product (audience) licenses are issued for; verifiers check it.\n\
             audience = {}\n\
             # How long each revocation list stays fresh before it must be re-signed\n\
             # (connected clusters go overdue after a stale list plus their offline grace).\n\
             revocation_validity = {}\n\
             # Write armored (text) license files unless --armor says otherwise.\n\
             armor = {}\n\
             # COSE algorithm named in licenses and revocation lists: \"EdDSA\" (-8), which\n\
             # stock COSE libraries verify, or \"Ed25519\" (-19, RFC 9864). KACHING verifiers\n\
             # accept both; the signature is Ed25519 either way (docs/format.md 3.1).\n\
             alg = {}\n",
            quote(&self.issuer),
            quote(&self.audience),
            quote(&self.revocation_validity),
            self.armor,
            quote(self.alg.name())
        )
    }
}

fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Parses a duration such as `7d`, `12h`, `1y`, `6months`, `30min` (humantime),
/// refusing a bare `m`, which humantime reads as minutes.
pub fn parse_duration(s: &str) -> Result<u64> {
    refuse_bare_m(s)?;
    humantime::parse_duration(s.trim())
        .map(|d: Duration| d.as_secs())
        .map_err(|e| {
            crate::error::usage(format!(
                "cannot read duration {s:?} ({e}): use e.g. 30d, 12h, 1y, 6months, 30min"
            ))
        })
}

/// Refuses `12m` (and `1y6m`): people mean months, humantime reads minutes.
pub fn refuse_bare_m(s: &str) -> Result<()> {
    let (mut num, mut unit) = (String::new(), String::new());
    for c in s.trim().chars().chain([' ']) {
        if c.is_ascii_alphabetic() {
            unit.push(c);
            continue;
        }
        if unit == "m" {
            return Err(crate::error::usage(format!(
                "`{num}m` is ambiguous: write `{num}months` or `{num}min`"
            )));
        }
        if !unit.is_empty() {
            num.clear();
            unit.clear();
        }
        if c.is_ascii_digit() {
            num.push(c);
        } else {
            num.clear();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_config_reads_back() {
        for alg in Alg::ALL {
            let c = Config {
                issuer: "Acme \"Software\"".into(),
                audience: "bzzz".into(),
                revocation_validity: "7d".into(),
                armor: true,
                relay: None,
                alg,
            };
            assert_eq!(Config::from_toml(&c.to_toml()).unwrap(), c);
            assert_eq!(c.revocation_validity_secs().unwrap(), 7 * 86_400);
        }
    }

    #[test]
    fn bare_m_is_refused_months_and_minutes_are_read() {
        for (text, num) in [("12m", "12"), (" 3m ", "3"), ("1y 6m", "6"), ("1y6m", "6")] {
            let e = parse_duration(text).unwrap_err().to_string();
            assert_eq!(
                e,
                format!("`{num}m` is ambiguous: write `{num}months` or `{num}min`")
            );
        }
        assert_eq!(parse_duration("12min").unwrap(), 720);
        assert_eq!(parse_duration("5 minutes").unwrap(), 300);
        assert_eq!(parse_duration("1month").unwrap(), 2_630_016);
        assert_eq!(parse_duration("2months").unwrap(), 2 * 2_630_016);
        assert_eq!(parse_duration("1M").unwrap(), 2_630_016);
        assert_eq!(parse_duration("7d").unwrap(), 7 * 86_400);
    }

    #[test]
    fn alg_defaults_to_eddsa_and_names_are_checked() {
        let c = Config::from_toml("issuer = \"V\"\n").unwrap();
        assert_eq!(
            c.alg,
            Alg::EdDSA,
            "files written before the setting existed"
        );
        let c = Config::from_toml("issuer = \"V\"\nalg = \"Ed25519\"\n").unwrap();
        assert_eq!(c.alg, Alg::Ed25519);
        let c = Config::from_toml("issuer = \"V\"\nalg = \"eddsa\"\n").unwrap();
        assert_eq!(c.alg, Alg::EdDSA);
        let err = Config::from_toml("issuer = \"V\"\nalg = \"ES256\"\n").unwrap_err();
        let chain = format!("{err:#}");
        assert!(
            chain.contains("alg = \"ES256\" is not one KACHING signs with: use \"EdDSA\""),
            "{chain}"
        );
    }
}
