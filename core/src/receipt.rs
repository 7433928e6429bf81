//! Receipts: the vendor's signed acknowledgment of one usage report
//! (docs/format.md §7.8), and the pure rules of the air-gap loop around it:
//! what a report carries, what a receipt acknowledges, and what importing a
//! receipt clears on the cluster.
//!
//! Nothing is marked done on the cluster until a receipt says the vendor has
//! it: a report carries every upgrade request, every open counter bucket and
//! every closed bucket or monthly node peak not yet acknowledged, so a lost
//! or overwritten report file loses nothing.
//!
//! A receipt is signed by an **issuer** key (the vendor key, or a key of the
//! root's issuer role): it lifts an obligation of the customer, so a key that
//! may only restrict (revoker) cannot sign one.

use std::collections::{BTreeMap, BTreeSet};

use ciborium::value::Value;
use serde::Serialize;

use crate::cbor::{self, u, Fields, MapBuilder};
use crate::cluster::{
    canonical, counters_from, counters_value, peaks_from, peaks_value, UsageReport,
};
use crate::envelope::{self, DocKind};
use crate::error::{Error, Result};
use crate::id::LicenseId;
use crate::keys::{Kid, SecretKey, TrustedKeys};
use crate::license::cwt;
use crate::time::{from_civil, Date, Timestamp};

/// metric → period bucket → value.
pub type Counters = BTreeMap<String, BTreeMap<String, u64>>;

/// The vendor's acknowledgment of one usage report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Receipt {
    /// The cluster that wrote the report.
    pub cluster_id: String,
    /// The license the report was counted under.
    pub license_id: LicenseId,
    /// The report's sequence number.
    pub report_seq: u64,
    /// SHA-256 of the report's binary bytes.
    #[serde(serialize_with = "ser_hex")]
    pub report_hash: [u8; 32],
    /// `iat`: when the vendor imported the report and signed this.
    pub issued: Timestamp,
    /// Ids of the upgrade requests acknowledged, ascending.
    pub upgrade_requests: Vec<u64>,
    /// Closed counter buckets acknowledged, with the value acknowledged.
    pub counters: Counters,
    /// Closed months' node peaks acknowledged, with the peak acknowledged.
    pub node_peaks: BTreeMap<String, u32>,
}

fn ser_hex<S: serde::Serializer>(b: &[u8; 32], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&crate::keys::hex(b))
}

impl Receipt {
    /// The receipt for a chained report, issued at `now`: it acknowledges
    /// the report's upgrade requests, and the counter buckets and monthly
    /// node peaks that had closed when the report was written (an open one
    /// may still grow, so it stays in the cluster's next report). `None` for
    /// an unchained report (its verifier cannot import receipts).
    pub fn for_report(report: &UsageReport, hash: [u8; 32], now: Timestamp) -> Option<Receipt> {
        let chain = report.chain.as_ref()?;
        let at = report.period_end;
        let mut counters = Counters::new();
        for (metric, buckets) in &report.counters {
            let closed: BTreeMap<String, u64> = buckets
                .iter()
                .filter(|(b, _)| bucket_closed(b, at))
                .map(|(b, v)| (b.clone(), *v))
                .collect();
            if !closed.is_empty() {
                counters.insert(metric.clone(), closed);
            }
        }
        let mut upgrade_requests: Vec<u64> = report
            .upgrade_requests
            .iter()
            .filter_map(|r| r.id)
            .collect();
        upgrade_requests.sort_unstable();
        upgrade_requests.dedup();
        Some(Receipt {
            cluster_id: report.cluster_id.clone(),
            license_id: report.license_id,
            report_seq: chain.seq,
            report_hash: hash,
            issued: now,
            upgrade_requests,
            counters,
            node_peaks: chain
                .node_peaks
                .iter()
                .filter(|(p, _)| bucket_closed(p, at))
                .map(|(p, n)| (p.clone(), *n))
                .collect(),
        })
    }

    /// The payload as deterministic CBOR.
    pub fn to_cbor(&self) -> Vec<u8> {
        cbor::to_vec(
            &MapBuilder::new()
                .int(cwt::IAT, u(self.issued))
                .text("cluster_id", self.cluster_id.as_str())
                .text("license", Value::Bytes(self.license_id.0.to_vec()))
                .text("report_seq", u(self.report_seq))
                .text("report_hash", Value::Bytes(self.report_hash.to_vec()))
                .text(
                    "upgrade_requests",
                    Value::Array(self.upgrade_requests.iter().map(|i| u(*i)).collect()),
                )
                .text("counters", counters_value(&self.counters))
                .text("node_peaks", peaks_value(&self.node_peaks))
                .build(),
        )
    }

    /// Decodes a payload.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self> {
        let mut f = Fields::open("receipt", cbor::from_slice(bytes)?)?;
        let issued = cbor::time(f.int_key(cwt::IAT).ok_or_else(|| f.missing("iat"))?, "iat")?;
        let cluster_id = cbor::text(f.required("cluster_id")?, "cluster_id")?;
        let license_id = LicenseId(cbor::bytes_n(f.required("license")?, "license")?);
        let report_seq = cbor::uint(f.required("report_seq")?, "report_seq")?;
        let report_hash = cbor::bytes_n(f.required("report_hash")?, "report_hash")?;
        let upgrade_requests = cbor::array(f.required("upgrade_requests")?, "upgrade_requests")?
            .into_iter()
            .map(|v| cbor::uint(v, "upgrade request id"))
            .collect::<Result<Vec<u64>>>()?;
        if upgrade_requests.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::Payload(
                "upgrade request ids must be strictly increasing".into(),
            ));
        }
        let counters = counters_from(f.required("counters")?)?;
        let node_peaks = peaks_from(f.required("node_peaks")?)?;
        f.finish()?;
        let receipt = Receipt {
            cluster_id,
            license_id,
            report_seq,
            report_hash,
            issued,
            upgrade_requests,
            counters,
            node_peaks,
        };
        canonical(receipt.to_cbor() == bytes, receipt)
    }

    /// Signs with an issuer key.
    pub fn sign(&self, key: &SecretKey) -> Vec<u8> {
        envelope::sign(DocKind::Receipt, self.to_cbor(), key)
    }
}

/// A receipt whose signature checked out against the issuer keys.
#[derive(Debug, Clone)]
pub struct VerifiedReceipt {
    /// The decoded claims.
    pub receipt: Receipt,
    /// The key that signed it.
    pub kid: Kid,
    /// The binary bytes exactly as received.
    pub bytes: Vec<u8>,
}

/// Verifies a receipt in either spelling against the keys allowed to sign
/// one: the issuer keys (the vendor key, or the root's issuer role).
pub fn verify_receipt(input: &[u8], issuers: &TrustedKeys) -> Result<VerifiedReceipt> {
    let bytes = crate::armor::dearmor(input, Some(DocKind::Receipt))?;
    let opened = envelope::open(&bytes, DocKind::Receipt, issuers)?;
    let receipt = Receipt::from_cbor(&opened.payload)?;
    Ok(VerifiedReceipt {
        receipt,
        kid: opened.kid,
        bytes,
    })
}

/// Has the counter bucket or month `bucket` (`2026-01-14`, `2026-01`) ended
/// at `at`? `total`, gauges and anything else never close.
pub fn bucket_closed(bucket: &str, at: Timestamp) -> bool {
    bucket_end(bucket).is_some_and(|end| end <= at)
}

/// The first second after a day or month bucket.
fn bucket_end(bucket: &str) -> Option<Timestamp> {
    let mut parts = bucket.split('-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let (next_year, next_month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    match parts.next() {
        None => from_civil(Date {
            year: next_year,
            month: next_month,
            day: 1,
        }),
        Some(day) => {
            if parts.next().is_some() {
                return None;
            }
            let day: u32 = day.parse().ok()?;
            from_civil(Date { year, month, day }).map(|t| t + crate::time::DAY)
        }
    }
}

/// What the cluster still holds that no receipt has acknowledged: the input
/// of both [`outstanding`] and [`clearing`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pending {
    /// Ids of queued upgrade requests not yet acknowledged.
    pub upgrade_requests: BTreeSet<u64>,
    /// Every counter bucket with its current value.
    pub counters: Counters,
    /// The value a receipt acknowledged, per bucket.
    pub acked_counters: Counters,
    /// Every month's node peak.
    pub node_peaks: BTreeMap<String, u32>,
    /// The peak a receipt acknowledged, per month.
    pub acked_node_peaks: BTreeMap<String, u32>,
}

/// What a usage report carries: counter buckets and monthly node peaks,
/// except those a receipt acknowledged at exactly their current value (a
/// bucket that changed after its receipt is carried again).
pub fn outstanding(p: &Pending) -> (Counters, BTreeMap<String, u32>) {
    let mut counters = Counters::new();
    for (metric, buckets) in &p.counters {
        let acked = p.acked_counters.get(metric);
        let left: BTreeMap<String, u64> = buckets
            .iter()
            .filter(|(b, v)| acked.and_then(|a| a.get(*b)) != Some(*v))
            .map(|(b, v)| (b.clone(), *v))
            .collect();
        if !left.is_empty() {
            counters.insert(metric.clone(), left);
        }
    }
    let peaks = p
        .node_peaks
        .iter()
        .filter(|(m, n)| p.acked_node_peaks.get(*m) != Some(*n))
        .map(|(m, n)| (m.clone(), *n))
        .collect();
    (counters, peaks)
}

/// What importing a receipt marks as acknowledged on the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Clearing {
    /// Upgrade requests no longer carried.
    pub upgrade_requests: Vec<u64>,
    /// (metric, bucket, value) acknowledged: the bucket is no longer carried
    /// while it keeps that value.
    pub counters: Vec<(String, String, u64)>,
    /// (month, peak) acknowledged, likewise.
    pub node_peaks: Vec<(String, u32)>,
}

impl Clearing {
    /// True when the receipt changes nothing (a replay, or everything it
    /// names was cleared before).
    pub fn is_empty(&self) -> bool {
        self.upgrade_requests.is_empty() && self.counters.is_empty() && self.node_peaks.is_empty()
    }
}

/// Why a genuine receipt is refused by this cluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptRefusal {
    /// It acknowledges another cluster's report.
    #[error("this receipt is for cluster {receipt}, and this is cluster {ours}: import it on the cluster that wrote the report")]
    OtherCluster {
        /// The receipt's cluster.
        receipt: String,
        /// This cluster.
        ours: String,
    },
    /// This cluster has no record of writing a report with that number.
    #[error("this cluster has no record of writing usage report {seq}: the receipt may be for a restored or cloned state database, or for a report written since that state was restored")]
    UnknownReport {
        /// The report's sequence number.
        seq: u64,
    },
    /// This cluster wrote report `seq`, but with other bytes.
    #[error("usage report {seq} written here is not the one this receipt acknowledges (the hashes differ): the state database was restored or the cluster cloned since that report")]
    OtherReport {
        /// The report's sequence number.
        seq: u64,
    },
}

/// Decides what a verified receipt clears on cluster `ours`, which wrote
/// report `receipt.report_seq` with hash `written` (`None`: no such report
/// is recorded here). Clears exactly what the receipt names and is still
/// pending at the value it names; a replayed receipt clears nothing.
pub fn clearing(
    receipt: &Receipt,
    ours: &str,
    written: Option<[u8; 32]>,
    pending: &Pending,
) -> std::result::Result<Clearing, ReceiptRefusal> {
    if receipt.cluster_id != ours {
        return Err(ReceiptRefusal::OtherCluster {
            receipt: receipt.cluster_id.clone(),
            ours: ours.to_string(),
        });
    }
    match written {
        None => {
            return Err(ReceiptRefusal::UnknownReport {
                seq: receipt.report_seq,
            })
        }
        Some(h) if h != receipt.report_hash => {
            return Err(ReceiptRefusal::OtherReport {
                seq: receipt.report_seq,
            })
        }
        Some(_) => {}
    }
    let mut c = Clearing {
        upgrade_requests: receipt
            .upgrade_requests
            .iter()
            .copied()
            .filter(|id| pending.upgrade_requests.contains(id))
            .collect(),
        ..Clearing::default()
    };
    for (metric, buckets) in &receipt.counters {
        for (bucket, value) in buckets {
            let current = pending.counters.get(metric).and_then(|b| b.get(bucket));
            let acked = pending
                .acked_counters
                .get(metric)
                .and_then(|b| b.get(bucket));
            if current == Some(value) && acked != Some(value) {
                c.counters.push((metric.clone(), bucket.clone(), *value));
            }
        }
    }
    for (month, peak) in &receipt.node_peaks {
        if pending.node_peaks.get(month) == Some(peak)
            && pending.acked_node_peaks.get(month) != Some(peak)
        {
            c.node_peaks.push((month.clone(), *peak));
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_close_at_the_first_second_after_them() {
        let jan15 = crate::time::parse_rfc3339("2026-01-15T00:00:00Z").unwrap();
        assert!(!bucket_closed("2026-01-14", jan15 - 1));
        assert!(bucket_closed("2026-01-14", jan15));
        let feb1 = crate::time::parse_rfc3339("2026-02-01T00:00:00Z").unwrap();
        assert!(!bucket_closed("2026-01", feb1 - 1));
        assert!(bucket_closed("2026-01", feb1));
        let jan1 = crate::time::parse_rfc3339("2027-01-01T00:00:00Z").unwrap();
        assert!(bucket_closed("2026-12", jan1));
        assert!(!bucket_closed("total", u64::MAX));
        assert!(!bucket_closed("2026-13", u64::MAX));
        assert!(!bucket_closed("2026-01-01-01", u64::MAX));
    }

    fn pending() -> Pending {
        let mut p = Pending::default();
        p.upgrade_requests.extend([1, 2, 3]);
        p.counters.entry("api".into()).or_default().extend([
            ("2026-01".to_string(), 10u64),
            ("2026-02".to_string(), 4u64),
        ]);
        p.node_peaks.insert("2026-01".into(), 5);
        p
    }

    fn receipt() -> Receipt {
        let mut counters = Counters::new();
        counters
            .entry("api".into())
            .or_default()
            .insert("2026-01".into(), 10);
        Receipt {
            cluster_id: "c".into(),
            license_id: LicenseId([7; 16]),
            report_seq: 2,
            report_hash: [9; 32],
            issued: 100,
            upgrade_requests: vec![1, 2],
            counters,
            node_peaks: [("2026-01".to_string(), 5)].into(),
        }
    }

    #[test]
    fn receipt_roundtrips_canonically() {
        let r = receipt();
        assert_eq!(Receipt::from_cbor(&r.to_cbor()).unwrap(), r);
    }

    #[test]
    fn clearing_takes_exactly_what_is_named_and_still_pending() {
        let mut p = pending();
        let c = clearing(&receipt(), "c", Some([9; 32]), &p).unwrap();
        assert_eq!(c.upgrade_requests, vec![1, 2]);
        assert_eq!(c.counters, vec![("api".into(), "2026-01".into(), 10)]);
        assert_eq!(c.node_peaks, vec![("2026-01".into(), 5)]);
        // Applied: a replay clears nothing.
        p.upgrade_requests.remove(&1);
        p.upgrade_requests.remove(&2);
        p.acked_counters = receipt().counters;
        p.acked_node_peaks = receipt().node_peaks;
        assert!(clearing(&receipt(), "c", Some([9; 32]), &p)
            .unwrap()
            .is_empty());
        let (counters, peaks) = outstanding(&p);
        assert_eq!(counters["api"].keys().collect::<Vec<_>>(), vec!["2026-02"]);
        assert!(peaks.is_empty());
    }

    #[test]
    fn a_bucket_that_grew_after_its_report_is_not_cleared() {
        let mut p = pending();
        p.counters
            .get_mut("api")
            .unwrap()
            .insert("2026-01".into(), 11);
        let c = clearing(&receipt(), "c", Some([9; 32]), &p).unwrap();
        assert!(c.counters.is_empty());
    }

    #[test]
    fn receipts_for_other_clusters_or_reports_are_refused() {
        let p = pending();
        assert!(matches!(
            clearing(&receipt(), "other", Some([9; 32]), &p),
            Err(ReceiptRefusal::OtherCluster { .. })
        ));
        assert_eq!(
            clearing(&receipt(), "c", None, &p),
            Err(ReceiptRefusal::UnknownReport { seq: 2 })
        );
        assert_eq!(
            clearing(&receipt(), "c", Some([8; 32]), &p),
            Err(ReceiptRefusal::OtherReport { seq: 2 })
        );
    }
}
