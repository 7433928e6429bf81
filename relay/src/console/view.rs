//! The console's pure shaping: the reference fleet filter (see [`select`]), bucketing
//! heartbeat history into sparkline points and the expiry horizon. Time is
//! an argument; nothing here reads a clock or a database. (List
//! propagation is counted by the database: `data::Ask::Propagation`.)

use std::collections::BTreeMap;

use kaching_core::wire::relay::ClusterRow;

use super::data::{Beat, LicenseRow};

/// Rows per fleet page.
pub const PAGE: usize = 50;

/// The fleet's filter, from the page's query string.
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct Filter {
    /// Binding status (`active`, `deactivated`, `displaced`); empty: any.
    #[serde(default)]
    pub status: String,
    /// Words to find in the cluster id, license id, hostname or customer.
    #[serde(default)]
    pub q: String,
    /// Only clusters with signs of rollback.
    #[serde(default)]
    pub anomalies: Option<String>,
    /// Page number from 0.
    #[serde(default)]
    pub page: usize,
}

/// The clusters `f` selects (`customer` names each license's customer),
/// clusters with signs of rollback first, and how many matched in all.
/// The page itself asks the database ([`super::data::Ask::Fleet`]); this is
/// the reference its tests and bench hold the database's answer against.
pub fn select<'a>(
    rows: &'a [ClusterRow],
    customer: &BTreeMap<String, String>,
    f: &Filter,
) -> (Vec<&'a ClusterRow>, usize) {
    let q = f.q.trim().to_lowercase();
    let mut hit: Vec<&ClusterRow> = rows
        .iter()
        .filter(|r| f.status.is_empty() || r.status == f.status)
        .filter(|r| f.anomalies.is_none() || !r.anomalies.is_empty())
        .filter(|r| {
            q.is_empty()
                || [
                    r.cluster_id.as_str(),
                    r.license_id.as_str(),
                    r.hostname.as_str(),
                    customer.get(&r.license_id).map_or("", String::as_str),
                ]
                .iter()
                .any(|s| s.to_lowercase().contains(&q))
        })
        .collect();
    hit.sort_by_key(|r| r.anomalies.is_empty());
    let total = hit.len();
    let page = hit.into_iter().skip(f.page * PAGE).take(PAGE).collect();
    (page, total)
}

/// A license's heartbeat history in `n` equal buckets over
/// `[now - window, now)`: heartbeats per bucket, the most nodes reported,
/// and per quota the highest usage reported.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Trend {
    /// Heartbeats received per bucket.
    pub beats: Vec<u64>,
    /// Highest node count per bucket.
    pub nodes: Vec<u64>,
    /// Quota name → highest usage per bucket.
    pub quotas: BTreeMap<String, Vec<u64>>,
    /// Heartbeats in the window.
    pub total: u64,
}

/// Buckets `beats` per license (see [`Trend`]).
pub fn trends(beats: &[Beat], now: u64, window: u64, n: usize) -> BTreeMap<String, Trend> {
    let mut out: BTreeMap<String, Trend> = BTreeMap::new();
    let n = n.max(1);
    let start = now.saturating_sub(window);
    let width = (window / n.max(1) as u64).max(1);
    for b in beats {
        if b.received_at < start || b.received_at > now {
            continue;
        }
        let i = usize::try_from((b.received_at - start) / width)
            .unwrap_or(usize::MAX)
            .min(n - 1);
        let t = out.entry(b.license_id.clone()).or_insert_with(|| Trend {
            beats: vec![0; n],
            nodes: vec![0; n],
            ..Trend::default()
        });
        t.beats[i] += 1;
        t.total += 1;
        t.nodes[i] = t.nodes[i].max(b.active_nodes);
        for (q, used) in crate::storage::parse_quotas(&b.quotas) {
            let v = t.quotas.entry(q).or_insert_with(|| vec![0; n]);
            v[i] = v[i].max(used);
        }
    }
    out
}

/// Licenses that expire within `days` of `now` (not yet expired), soonest first.
pub fn expiring(licenses: &[LicenseRow], now: u64, days: u64) -> Vec<&LicenseRow> {
    let until = now.saturating_add(days * 86_400);
    let mut v: Vec<&LicenseRow> = licenses
        .iter()
        .filter(|l| l.expires_at > now && l.expires_at <= until)
        .collect();
    v.sort_by_key(|l| l.expires_at);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, license: &str, host: &str, status: &str, seen: u64) -> ClusterRow {
        ClusterRow {
            cluster_id: id.into(),
            license_id: license.into(),
            hostname: host.into(),
            status: status.into(),
            activated_at: kaching_core::time::rfc3339(0),
            last_seen: kaching_core::time::rfc3339(seen),
            last_seq: 0,
            heartbeats: 0,
            state: None,
            active_nodes: 0,
            quotas: BTreeMap::new(),
            verifier_version: None,
            report_seq: None,
            anomalies: Vec::new(),
        }
    }

    #[test]
    fn the_filter_matches_status_and_words_and_pages() {
        let mut rows: Vec<ClusterRow> = (0..120)
            .map(|i| row(&format!("c{i:03}"), "L1", "node", "active", 0))
            .collect();
        rows.push(row("x", "L2", "Edge-Host", "displaced", 0));
        let customers = BTreeMap::from([("L2".to_string(), "Globex".to_string())]);
        let f = |status: &str, q: &str, page| Filter {
            status: status.into(),
            q: q.into(),
            anomalies: None,
            page,
        };
        let (p, total) = select(&rows, &customers, &f("", "", 0));
        assert_eq!((p.len(), total), (PAGE, 121));
        let (p, _) = select(&rows, &customers, &f("", "", 2));
        assert_eq!(p.len(), 21);
        let (p, total) = select(&rows, &customers, &f("displaced", "", 0));
        assert_eq!((p[0].cluster_id.as_str(), total), ("x", 1));
        assert_eq!(select(&rows, &customers, &f("", "edge-h", 0)).1, 1);
        assert_eq!(select(&rows, &customers, &f("", "GLOBEX", 0)).1, 1);
        assert_eq!(select(&rows, &customers, &f("active", "globex", 0)).1, 0);
    }

    #[test]
    fn history_lands_in_its_bucket_with_the_peak() {
        let beat = |at, nodes, q: &str| Beat {
            license_id: "L".into(),
            received_at: at,
            active_nodes: nodes,
            quotas: q.into(),
        };
        let beats = [
            beat(1_000, 3, r#"{"api":5}"#),
            beat(1_050, 4, r#"{"api":9}"#),
            beat(1_999, 1, "{}"),
            beat(10, 9, "{}"),
        ];
        let t = &trends(&beats, 2_000, 1_000, 10)["L"];
        assert_eq!(t.total, 3);
        assert_eq!(t.beats, vec![2, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(t.nodes[0], 4);
        assert_eq!(t.quotas["api"][0], 9);
    }

    #[test]
    fn the_horizon_keeps_only_what_expires_within_it() {
        let l = |id: &str, at| LicenseRow {
            license_id: id.into(),
            customer: String::new(),
            tier: String::new(),
            expires_at: at,
            first_seen: 0,
        };
        let day = 86_400;
        let ls = [
            l("late", 80 * day),
            l("soon", 10 * day),
            l("gone", 0),
            l("far", 400 * day),
        ];
        let ids = |days| {
            expiring(&ls, 1, days)
                .iter()
                .map(|l| l.license_id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(30), ["soon"]);
        assert_eq!(ids(90), ["soon", "late"]);
    }
}
