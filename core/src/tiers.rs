//! The tier catalog (`fixtures/tiers.toml`): default features, limits and
//! quotas per tier, in upgrade order, and the thresholds for suggestions.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::license::Quota;
use crate::time::Period;

/// The catalog shipped with KACHING, embedded at build time.
pub const BUILTIN_CATALOG: &str = include_str!("../../fixtures/tiers.toml");

/// One tier of [`BUILTIN_CATALOG`], as constant data.
struct BuiltinTier {
    name: &'static str,
    display_name: &'static str,
    features: &'static [&'static str],
    max_nodes: u32,
    overage: u32,
    duration_days: u64,
    grace_days: u64,
    max_search_results: i64,
    quotas: &'static [(&'static str, u64, Period)],
}

/// `[upgrade_thresholds]` of [`BUILTIN_CATALOG`].
const BUILTIN_THRESHOLDS: &[(&str, f64)] = &[
    ("default", 0.80),
    ("nodes", 0.80),
    ("search_requests", 0.80),
    ("api_calls", 0.85),
    ("storage_gb", 0.90),
];

/// The `[[tier]]`s of [`BUILTIN_CATALOG`], smallest first. Keep in step with
/// fixtures/tiers.toml: `builtin_catalog_as_rust_data_equals_the_toml_file`
/// fails when they differ.
const BUILTIN_TIERS: &[BuiltinTier] = &[
    BuiltinTier {
        name: "evaluation",
        display_name: "Evaluation",
        features: &["basic-search"],
        max_nodes: 3,
        overage: 0,
        duration_days: 30,
        grace_days: 3,
        max_search_results: 50,
        quotas: &[
            ("search_requests", 1000, Period::Day),
            ("api_calls", 10_000, Period::Month),
            ("storage_gb", 10, Period::Gauge),
        ],
    },
    BuiltinTier {
        name: "standard",
        display_name: "Standard",
        features: &["basic-search", "advanced-search", "analytics"],
        max_nodes: 10,
        overage: 10,
        duration_days: 365,
        grace_days: 14,
        max_search_results: 1000,
        quotas: &[
            ("search_requests", 50_000, Period::Day),
            ("api_calls", 1_000_000, Period::Month),
            ("storage_gb", 500, Period::Gauge),
        ],
    },
    BuiltinTier {
        name: "enterprise",
        display_name: "Enterprise",
        features: &[
            "basic-search",
            "advanced-search",
            "analytics",
            "bulk-operations",
            "enterprise-support",
        ],
        max_nodes: 100,
        overage: 20,
        duration_days: 365,
        grace_days: 30,
        max_search_results: -1,
        quotas: &[
            ("search_requests", 1_000_000, Period::Day),
            ("api_calls", 50_000_000, Period::Month),
            ("storage_gb", 10_000, Period::Gauge),
        ],
    },
];

/// One tier's defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// Identifier used in licenses (`standard`).
    pub name: String,
    /// Name shown to people (`Standard`).
    pub display_name: String,
    /// Features included.
    pub features: Vec<String>,
    /// Default node limit.
    pub max_nodes: u32,
    /// Default overage percent.
    #[serde(default)]
    pub overage: u32,
    /// Default validity in days.
    pub duration_days: u64,
    /// Default grace after expiry in days.
    #[serde(default)]
    pub grace_days: u64,
    /// Search result cap shown to WHOOSH (-1: unlimited).
    #[serde(default)]
    pub max_search_results: i64,
    /// Default quotas.
    #[serde(default)]
    pub quotas: BTreeMap<String, Quota>,
}

/// The whole catalog.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierCatalog {
    /// Tiers from smallest to largest.
    #[serde(rename = "tier")]
    pub tiers: Vec<Tier>,
    /// Share of a limit (0..1) that triggers a suggestion, per metric,
    /// `nodes` for the node limit, `default` for the rest.
    #[serde(default)]
    pub upgrade_thresholds: BTreeMap<String, f64>,
}

impl TierCatalog {
    /// Parses a catalog and checks it: unique names, thresholds within (0, 1].
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let cat: TierCatalog = toml::from_str(text).map_err(|e| format!("tier catalog: {e}"))?;
        if cat.tiers.is_empty() {
            return Err("tier catalog lists no [[tier]]".into());
        }
        for (i, t) in cat.tiers.iter().enumerate() {
            if cat.tiers[..i].iter().any(|o| o.name == t.name) {
                return Err(format!("tier catalog names tier {:?} twice", t.name));
            }
        }
        if let Some((k, v)) = cat
            .upgrade_thresholds
            .iter()
            .find(|(_, v)| !(**v > 0.0 && **v <= 1.0))
        {
            return Err(format!("upgrade threshold {k} = {v} must be in (0, 1]"));
        }
        Ok(cat)
    }

    /// The catalog embedded in the binary: [`BUILTIN_CATALOG`] as Rust data,
    /// so a process that only needs the built-in catalog (`licensegen
    /// verify`, a verifier's `check`) does not parse TOML at start-up. A
    /// unit test checks that it equals the parsed file.
    pub fn builtin() -> Self {
        let tiers = BUILTIN_TIERS
            .iter()
            .map(|t| Tier {
                name: t.name.to_string(),
                display_name: t.display_name.to_string(),
                features: t.features.iter().map(|f| (*f).to_string()).collect(),
                max_nodes: t.max_nodes,
                overage: t.overage,
                duration_days: t.duration_days,
                grace_days: t.grace_days,
                max_search_results: t.max_search_results,
                quotas: t
                    .quotas
                    .iter()
                    .map(|(n, limit, period)| {
                        (
                            (*n).to_string(),
                            Quota {
                                limit: *limit,
                                period: *period,
                            },
                        )
                    })
                    .collect(),
            })
            .collect();
        let upgrade_thresholds = BUILTIN_THRESHOLDS
            .iter()
            .map(|(k, v)| ((*k).to_string(), *v))
            .collect();
        TierCatalog {
            tiers,
            upgrade_thresholds,
        }
    }

    /// A tier by name.
    pub fn get(&self, name: &str) -> Option<&Tier> {
        self.tiers.iter().find(|t| t.name == name)
    }

    /// Position of a tier in the upgrade order.
    pub fn rank(&self, name: &str) -> Option<usize> {
        self.tiers.iter().position(|t| t.name == name)
    }

    /// Tiers above `name`, nearest first.
    pub fn above(&self, name: &str) -> &[Tier] {
        match self.rank(name) {
            Some(r) => &self.tiers[r + 1..],
            None => &[],
        }
    }

    /// Every feature any tier includes, sorted.
    pub fn all_features(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .tiers
            .iter()
            .flat_map(|t| t.features.iter().cloned())
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// Every quota name any tier has, sorted.
    pub fn quota_names(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .tiers
            .iter()
            .flat_map(|t| t.quotas.keys().cloned())
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// The smallest tier that includes a feature.
    pub fn lowest_with_feature(&self, feature: &str) -> Option<&Tier> {
        self.tiers
            .iter()
            .find(|t| t.features.iter().any(|f| f == feature))
    }

    /// Threshold for a metric (`nodes` for the node limit).
    pub fn threshold(&self, metric: &str) -> f64 {
        self.upgrade_thresholds
            .get(metric)
            .or_else(|| self.upgrade_thresholds.get("default"))
            .copied()
            .unwrap_or(0.8)
    }

    /// The known tier names, for error messages.
    pub fn names(&self) -> Vec<&str> {
        self.tiers.iter().map(|t| t.name.as_str()).collect()
    }
}

/// The closest string to `word` among `options` (edit distance ≤ 3), for
/// "did you mean …?" hints on tier and feature names.
pub fn closest<'a>(word: &str, options: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    options
        .into_iter()
        .map(|o| (edit_distance(word, o), o))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, o)| o)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::license::Period;

    #[test]
    fn builtin_catalog_as_rust_data_equals_the_toml_file() {
        let parsed = TierCatalog::from_toml(BUILTIN_CATALOG).expect("builtin catalog parses");
        assert_eq!(TierCatalog::builtin(), parsed);
    }

    #[test]
    fn builtin_catalog_has_the_three_seed_tiers_in_order() {
        let cat = TierCatalog::from_toml(BUILTIN_CATALOG).expect("builtin catalog parses");
        assert_eq!(cat.names(), ["evaluation", "standard", "enterprise"]);
        assert_eq!(
            cat.get("evaluation").map(|t| t.features.clone()),
            Some(vec!["basic-search".to_string()])
        );
        assert_eq!(cat.threshold("search_requests"), 0.80);
        assert_eq!(cat.threshold("api_calls"), 0.85);
        assert_eq!(cat.threshold("storage_gb"), 0.90);
        let q = cat
            .get("standard")
            .and_then(|t| t.quotas.get("storage_gb"))
            .copied();
        assert_eq!(q.map(|q| q.period), Some(Period::Gauge));
        assert_eq!(
            cat.lowest_with_feature("analytics")
                .map(|t| t.name.as_str()),
            Some("standard")
        );
    }

    #[test]
    fn duplicate_tier_names_refused() {
        let text =
            "[[tier]]\nname='a'\ndisplay_name='A'\nfeatures=[]\nmax_nodes=1\nduration_days=1\n";
        let twice = format!("{text}{text}");
        assert!(TierCatalog::from_toml(&twice).is_err());
    }

    #[test]
    fn closest_suggests_near_misses_only() {
        let names = ["evaluation", "standard", "enterprise"];
        assert_eq!(closest("standrd", names), Some("standard"));
        assert_eq!(closest("platinum", names), None);
    }
}
