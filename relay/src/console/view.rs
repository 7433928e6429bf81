//! The console's pure shaping: the reference fleet filter (see [`select`])
//! and each license's hours of heartbeats placed in sparkline points. Time
//! is an argument; nothing here reads a clock or a database. (List
//! propagation and the renewals horizon are counted by the database:
//! `data::Ask::Propagation`, `data::Ask::Licenses`.)

use std::collections::BTreeMap;

use kaching_core::wire::relay::ClusterRow;

use super::data::LicenseHour;

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
    /// Page index from 0. The URL's `?page=` counts from 1, as the
    /// pages say; 0 or none is the first page too.
    #[serde(default, deserialize_with = "page_index")]
    pub page: usize,
}

/// The index from 0 of the page a URL's `?page=N` names (counted from 1;
/// 0 is the first page too).
pub fn page_index<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let n = <usize as serde::Deserialize>::deserialize(d)?;
    Ok(n.saturating_sub(1))
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

/// A license's heartbeats in the `n` clock hours up to and including the
/// current one (oldest first): heartbeats per hour, the most nodes
/// reported, and per quota the highest usage reported.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Trend {
    /// Heartbeats received per hour.
    pub beats: Vec<u64>,
    /// Highest node count per hour.
    pub nodes: Vec<u64>,
    /// Quota name → highest usage per hour.
    pub quotas: BTreeMap<String, Vec<u64>>,
    /// Heartbeats in those hours.
    pub total: u64,
}

/// The first and last hour (relay time / 3600) of the `n` hours that end
/// with `now`'s.
pub fn hours(now: u64, n: usize) -> (u64, u64) {
    let last = now / 3600;
    let back = u64::try_from(n.max(1) - 1).unwrap_or(u64::MAX);
    (last.saturating_sub(back), last)
}

/// Puts each license's hours (see [`super::data::Ask::Trends`]) in its
/// [`Trend`] over the [`hours`] of `now` and `n`; hours outside are left out.
pub fn trends(rows: &[LicenseHour], now: u64, n: usize) -> BTreeMap<String, Trend> {
    let n = n.max(1);
    let (first, last) = hours(now, n);
    let mut out: BTreeMap<String, Trend> = BTreeMap::new();
    for h in rows.iter().filter(|h| (first..=last).contains(&h.hour)) {
        let i = usize::try_from(h.hour - first)
            .unwrap_or(usize::MAX)
            .min(n - 1);
        let t = out.entry(h.license_id.clone()).or_insert_with(|| Trend {
            beats: vec![0; n],
            nodes: vec![0; n],
            ..Trend::default()
        });
        t.beats[i] += h.beats;
        t.total += h.beats;
        t.nodes[i] = t.nodes[i].max(h.max_nodes);
        for (q, used) in &h.quotas {
            let v = t.quotas.entry(q.clone()).or_insert_with(|| vec![0; n]);
            v[i] = v[i].max(*used);
        }
    }
    out
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
    fn each_hour_lands_in_its_point_and_the_current_hour_is_the_last() {
        let hour = |license: &str, hour, beats, nodes, q: &[(&str, u64)]| LicenseHour {
            license_id: license.into(),
            hour,
            beats,
            max_nodes: nodes,
            quotas: q.iter().map(|(k, v)| ((*k).to_string(), *v)).collect(),
        };
        let now = 100 * 3600 + 59; // a minute into hour 100
        assert_eq!(hours(now, 24), (77, 100));
        let rows = [
            hour("L", 76, 50, 9, &[]), // before the first of the 24 hours
            hour("L", 77, 2, 4, &[("api", 9)]),
            hour("L", 90, 3, 1, &[]),
            hour("L", 100, 1, 2, &[("api", 12), ("gpu", 1)]),
            hour("M", 100, 7, 5, &[]),
            hour("L", 101, 5, 9, &[]), // after now (a clock stepped back)
        ];
        let t = trends(&rows, now, 24);
        let l = &t["L"];
        assert_eq!(l.total, 6);
        assert_eq!((l.beats[0], l.beats[13], l.beats[23]), (2, 3, 1));
        assert_eq!(l.beats.iter().sum::<u64>(), 6);
        assert_eq!((l.nodes[0], l.nodes[23]), (4, 2));
        assert_eq!((l.quotas["api"][0], l.quotas["api"][23]), (9, 12));
        assert_eq!(l.quotas["gpu"][23], 1);
        assert_eq!((t["M"].total, t["M"].beats[23]), (7, 7));
        assert_eq!(hours(10, 24), (0, 0), "no hour before the epoch's");
    }
}
