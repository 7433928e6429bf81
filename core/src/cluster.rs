//! Documents a cluster signs with its own key: activation requests and usage
//! reports, carried by hand from air-gapped sites (and heartbeats, later).

use std::collections::BTreeMap;

use ciborium::value::Value;
use serde::Serialize;

use crate::cbor::{self, u, Fields, MapBuilder};
use crate::envelope::{self, DocKind};
use crate::error::{Error, Result};
use crate::id::{cluster_id, LicenseId};
use crate::keys::{PublicKey, SecretKey};
use crate::license::cwt;
use crate::time::Timestamp;

/// A cluster asking to be bound to a license.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActivationRequest {
    /// The cluster id (derived from `cluster_key`).
    pub cluster_id: String,
    /// The cluster's raw Ed25519 public key.
    #[serde(serialize_with = "ser_hex")]
    pub cluster_key: [u8; 32],
    /// Host the request was made on, for people.
    pub hostname: String,
    /// Nodes in the cluster when the request was made.
    pub nodes: u32,
    /// `iat`: when the request was made.
    pub created: Timestamp,
}

fn ser_hex<S: serde::Serializer>(b: &[u8; 32], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&crate::keys::hex(b))
}

impl ActivationRequest {
    /// The payload as deterministic CBOR.
    pub fn to_cbor(&self) -> Vec<u8> {
        cbor::to_vec(
            &MapBuilder::new()
                .int(cwt::IAT, u(self.created))
                .text("cluster_id", self.cluster_id.as_str())
                .text("cluster_key", Value::Bytes(self.cluster_key.to_vec()))
                .text("hostname", self.hostname.as_str())
                .text("nodes", u(self.nodes.into()))
                .build(),
        )
    }

    /// Decodes a payload.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self> {
        let mut f = Fields::open("activation request", cbor::from_slice(bytes)?)?;
        let created = cbor::time(f.int_key(cwt::IAT).ok_or_else(|| f.missing("iat"))?, "iat")?;
        let cluster_id = cbor::text(
            f.text_key("cluster_id")
                .ok_or_else(|| f.missing("cluster_id"))?,
            "cluster_id",
        )?;
        let cluster_key = cbor::bytes_n(
            f.text_key("cluster_key")
                .ok_or_else(|| f.missing("cluster_key"))?,
            "cluster_key",
        )?;
        let hostname = cbor::text(
            f.text_key("hostname")
                .ok_or_else(|| f.missing("hostname"))?,
            "hostname",
        )?;
        let nodes = cbor::uint32(
            f.text_key("nodes").ok_or_else(|| f.missing("nodes"))?,
            "nodes",
        )?;
        f.finish()?;
        let req = ActivationRequest {
            cluster_id,
            cluster_key,
            hostname,
            nodes,
            created,
        };
        canonical(req.to_cbor() == bytes, req)
    }

    /// Signs with the cluster key.
    pub fn sign(&self, key: &SecretKey) -> Vec<u8> {
        envelope::sign(DocKind::ActivationRequest, self.to_cbor(), key)
    }
}

/// Longest upgrade-request message, in bytes: what the verifier's API and
/// the relay's take, and what the relay stores from a cluster.
pub const MAX_UPGRADE_MESSAGE: usize = 4096;

/// Longest tier name in an upgrade request, in bytes.
pub const MAX_TIER_NAME: usize = 64;

/// A request to move to another tier, queued on the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct UpgradeRequest {
    /// Tier asked for.
    pub requested_tier: String,
    /// Free text from the person who asked.
    pub message: String,
    /// When it was asked.
    pub time: Timestamp,
}

impl UpgradeRequest {
    /// Cuts a request that came signed inside a cluster's document to the
    /// sizes the APIs take ([`MAX_TIER_NAME`], [`MAX_UPGRADE_MESSAGE`]), each
    /// cut field ending in `…`. A verifier never sends more, so a longer one
    /// was written by something else; it is kept, cut, rather than refused,
    /// so that the heartbeat carrying it still counts. Whether anything was cut.
    pub fn clip(&mut self) -> bool {
        let tier = clip_text(&mut self.requested_tier, MAX_TIER_NAME);
        let message = clip_text(&mut self.message, MAX_UPGRADE_MESSAGE);
        tier || message
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary, ending in `…`.
fn clip_text(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    let mut end = max - '…'.len_utf8();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push('…');
    true
}

/// An upgrade request as a usage report carries it: with the cluster's id for
/// it in chained reports (a receipt acknowledges requests by that id), without
/// one in reports from verifiers that predate the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportedUpgrade {
    /// The cluster's id for the request; `None` in an unchained report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// The request.
    #[serde(flatten)]
    pub request: UpgradeRequest,
}

/// Where a usage report sits in its cluster's chain of reports (absent from
/// reports written by verifiers that predate the chain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportChain {
    /// 1 for the cluster's first report, one more for each report after it.
    pub seq: u64,
    /// SHA-256 of the previous report's binary bytes; `None` for `seq` 1.
    #[serde(serialize_with = "ser_hex_opt")]
    pub prev: Option<[u8; 32]>,
    /// The verifier's trusted-time mark when it wrote the report.
    pub trusted_time: Timestamp,
    /// Sequence number of the newest report whose receipt the cluster has
    /// imported (0: none yet).
    pub acked: u64,
    /// Peak nodes per month (`2026-01`) not yet acknowledged.
    pub node_peaks: BTreeMap<String, u32>,
}

fn ser_hex_opt<S: serde::Serializer>(
    b: &Option<[u8; 32]>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match b {
        Some(b) => s.serialize_str(&crate::keys::hex(b)),
        None => s.serialize_none(),
    }
}

/// Usage of a license, signed by the cluster key: everything the vendor has
/// not acknowledged yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageReport {
    /// The license the usage was counted under.
    pub license_id: LicenseId,
    /// The reporting cluster.
    pub cluster_id: String,
    /// Start of the reporting period.
    pub period_start: Timestamp,
    /// End of the reporting period (also `iat`).
    pub period_end: Timestamp,
    /// Counter and gauge values: metric → period bucket → value.
    pub counters: BTreeMap<String, BTreeMap<String, u64>>,
    /// Most nodes holding a lease at once.
    pub peak_nodes: u32,
    /// Upgrade requests queued while offline and not yet acknowledged.
    pub upgrade_requests: Vec<ReportedUpgrade>,
    /// The report's place in the cluster's chain; `None`: an unchained
    /// report from a verifier that predates the chain (format.md §7.4).
    pub chain: Option<ReportChain>,
}

/// SHA-256 of a report's binary bytes: what the next report's `prev` and a
/// receipt's `report_hash` name.
pub fn report_hash(binary: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(binary).into()
}

pub(crate) fn counters_value(counters: &BTreeMap<String, BTreeMap<String, u64>>) -> Value {
    cbor::sorted_map(
        counters
            .iter()
            .map(|(metric, buckets)| {
                let inner = cbor::sorted_map(
                    buckets
                        .iter()
                        .map(|(b, v)| (Value::Text(b.clone()), u(*v)))
                        .collect(),
                );
                (Value::Text(metric.clone()), inner)
            })
            .collect(),
    )
}

pub(crate) fn counters_from(v: Value) -> Result<BTreeMap<String, BTreeMap<String, u64>>> {
    let mut counters = BTreeMap::new();
    for (metric, v) in cbor::text_map(v, "metric")? {
        let mut buckets = BTreeMap::new();
        for (b, n) in cbor::text_map(v, "period bucket")? {
            buckets.insert(b, cbor::uint(n, "counter")?);
        }
        counters.insert(metric, buckets);
    }
    Ok(counters)
}

pub(crate) fn peaks_value(peaks: &BTreeMap<String, u32>) -> Value {
    cbor::sorted_map(
        peaks
            .iter()
            .map(|(p, n)| (Value::Text(p.clone()), u((*n).into())))
            .collect(),
    )
}

pub(crate) fn peaks_from(v: Value) -> Result<BTreeMap<String, u32>> {
    cbor::text_map(v, "node_peaks")?
        .into_iter()
        .map(|(p, n)| Ok((p, cbor::uint32(n, "peak")?)))
        .collect()
}

impl UsageReport {
    /// The payload as deterministic CBOR.
    pub fn to_cbor(&self) -> Vec<u8> {
        let requests = Value::Array(
            self.upgrade_requests
                .iter()
                .map(|r| {
                    let mut m = MapBuilder::new()
                        .text("tier", r.request.requested_tier.as_str())
                        .text("message", r.request.message.as_str())
                        .text("time", u(r.request.time));
                    if let Some(id) = r.id {
                        m = m.text("id", u(id));
                    }
                    m.build()
                })
                .collect(),
        );
        let mut m = MapBuilder::new()
            .int(cwt::IAT, u(self.period_end))
            .text("license", Value::Bytes(self.license_id.0.to_vec()))
            .text("cluster_id", self.cluster_id.as_str())
            .text("period_start", u(self.period_start))
            .text("counters", counters_value(&self.counters))
            .text("peak_nodes", u(self.peak_nodes.into()))
            .text("upgrade_requests", requests);
        if let Some(c) = &self.chain {
            m = m
                .text("seq", u(c.seq))
                .text_opt("prev", c.prev.map(|p| Value::Bytes(p.to_vec())))
                .text("trusted_time", u(c.trusted_time))
                .text("acked", u(c.acked))
                .text("node_peaks", peaks_value(&c.node_peaks));
        }
        cbor::to_vec(&m.build())
    }

    /// Decodes a payload: a chained report, or an unchained one from a
    /// verifier that predates the chain.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self> {
        let mut f = Fields::open("usage report", cbor::from_slice(bytes)?)?;
        let period_end = cbor::time(f.int_key(cwt::IAT).ok_or_else(|| f.missing("iat"))?, "iat")?;
        let license_id = LicenseId(cbor::bytes_n(f.required("license")?, "license")?);
        let cluster_id = cbor::text(f.required("cluster_id")?, "cluster_id")?;
        let period_start = cbor::time(f.required("period_start")?, "period_start")?;
        let counters = counters_from(f.required("counters")?)?;
        let peak_nodes = cbor::uint32(f.required("peak_nodes")?, "peak_nodes")?;
        let requests = f
            .text_key("upgrade_requests")
            .ok_or_else(|| f.missing("upgrade_requests"))?;
        let chain = match f.text_key("seq") {
            None => None,
            Some(seq) => {
                let seq = cbor::uint(seq, "seq")?;
                let prev = f
                    .text_key("prev")
                    .map(|p| cbor::bytes_n(p, "prev"))
                    .transpose()?;
                if seq == 0 || (seq == 1) != prev.is_none() {
                    return Err(Error::Payload(
                        "seq starts at 1, and every report after the first names the previous one (prev)".into(),
                    ));
                }
                let trusted_time = cbor::time(f.required("trusted_time")?, "trusted_time")?;
                let acked = cbor::uint(f.required("acked")?, "acked")?;
                let node_peaks = peaks_from(f.required("node_peaks")?)?;
                Some(ReportChain {
                    seq,
                    prev,
                    trusted_time,
                    acked,
                    node_peaks,
                })
            }
        };
        // Fields::finish refuses prev, trusted_time, … without seq.
        f.finish()?;
        let upgrade_requests = reported_upgrades_from(requests, chain.is_some())?;
        let report = UsageReport {
            license_id,
            cluster_id,
            period_start,
            period_end,
            counters,
            peak_nodes,
            upgrade_requests,
            chain,
        };
        canonical(report.to_cbor() == bytes, report)
    }

    /// Signs with the cluster key.
    pub fn sign(&self, key: &SecretKey) -> Vec<u8> {
        envelope::sign(DocKind::UsageReport, self.to_cbor(), key)
    }
}

/// Reads a report's upgrade requests: each with an `id` in a chained report,
/// none with one in an unchained report.
fn reported_upgrades_from(v: Value, chained: bool) -> Result<Vec<ReportedUpgrade>> {
    cbor::array(v, "upgrade_requests")?
        .into_iter()
        .map(|v| {
            let mut r = Fields::open("upgrade request", v)?;
            let id = r.text_key("id").map(|v| cbor::uint(v, "id")).transpose()?;
            if id.is_some() != chained {
                return Err(Error::Payload(
                    "upgrade requests carry an id in a chained report (seq) and only there".into(),
                ));
            }
            let request = upgrade_request_fields(&mut r)?;
            r.finish()?;
            Ok(ReportedUpgrade { id, request })
        })
        .collect()
}

/// Passes `value` through when its re-encoding matched the received bytes.
pub(crate) fn canonical<T>(ok: bool, value: T) -> Result<T> {
    if ok {
        Ok(value)
    } else {
        Err(Error::Payload(
            "claims are not in canonical encoding".into(),
        ))
    }
}

/// Upgrade requests as carried by usage reports and heartbeats.
pub(crate) fn upgrade_requests_value(requests: &[UpgradeRequest]) -> Value {
    Value::Array(
        requests
            .iter()
            .map(|r| {
                MapBuilder::new()
                    .text("tier", r.requested_tier.as_str())
                    .text("message", r.message.as_str())
                    .text("time", u(r.time))
                    .build()
            })
            .collect(),
    )
}

/// Reads the array written by [`upgrade_requests_value`].
pub(crate) fn upgrade_requests_from(v: Value) -> Result<Vec<UpgradeRequest>> {
    cbor::array(v, "upgrade_requests")?
        .into_iter()
        .map(|v| {
            let mut r = Fields::open("upgrade request", v)?;
            let request = upgrade_request_fields(&mut r)?;
            r.finish()?;
            Ok(request)
        })
        .collect()
}

/// Takes the three fields every upgrade request has.
fn upgrade_request_fields(r: &mut Fields) -> Result<UpgradeRequest> {
    let requested_tier = cbor::text(r.text_key("tier").ok_or_else(|| r.missing("tier"))?, "tier")?;
    let message = cbor::text(
        r.text_key("message").ok_or_else(|| r.missing("message"))?,
        "message",
    )?;
    let time = cbor::time(r.text_key("time").ok_or_else(|| r.missing("time"))?, "time")?;
    Ok(UpgradeRequest {
        requested_tier,
        message,
        time,
    })
}

/// A cluster-signed document after its signature and signer were checked.
#[derive(Debug, Clone)]
pub struct SelfSigned<T> {
    /// The decoded claims.
    pub doc: T,
    /// The key that signed it; its cluster id matches the claims.
    pub signer: PublicKey,
    /// Binary bytes as received.
    pub bytes: Vec<u8>,
}

/// Verifies an activation request: its own signature, and that the key in
/// the header is the key and cluster id in the claims.
pub fn verify_activation_request(input: &[u8]) -> Result<SelfSigned<ActivationRequest>> {
    let bytes = crate::armor::dearmor(input, Some(DocKind::ActivationRequest))?;
    let opened = envelope::open_self_signed(&bytes, DocKind::ActivationRequest)?;
    let signer = opened
        .signer
        .ok_or_else(|| Error::Malformed("no signer key".into()))?;
    let doc = ActivationRequest::from_cbor(&opened.payload)?;
    if &doc.cluster_key != signer.as_bytes() || doc.cluster_id != cluster_id(&signer) {
        return Err(Error::Payload(
            "cluster key or id does not match the signing key".into(),
        ));
    }
    Ok(SelfSigned { doc, signer, bytes })
}

/// Verifies a usage report: its own signature, and that its cluster id is the signer's.
pub fn verify_usage_report(input: &[u8]) -> Result<SelfSigned<UsageReport>> {
    let bytes = crate::armor::dearmor(input, Some(DocKind::UsageReport))?;
    let opened = envelope::open_self_signed(&bytes, DocKind::UsageReport)?;
    let signer = opened
        .signer
        .ok_or_else(|| Error::Malformed("no signer key".into()))?;
    let doc = UsageReport::from_cbor(&opened.payload)?;
    if doc.cluster_id != cluster_id(&signer) {
        return Err(Error::Payload(
            "cluster id does not match the signing key".into(),
        ));
    }
    Ok(SelfSigned { doc, signer, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_cuts_oversized_requests_on_a_character_boundary() {
        let mut r = UpgradeRequest {
            requested_tier: "t".repeat(65),
            message: "é".repeat(3000),
            time: 1,
        };
        assert!(r.clip());
        assert!(r.requested_tier.len() <= MAX_TIER_NAME && r.requested_tier.ends_with('…'));
        assert!(r.message.len() <= MAX_UPGRADE_MESSAGE && r.message.ends_with('…'));
        assert!(
            r.message.len() > MAX_UPGRADE_MESSAGE - 8,
            "cut no more than needed"
        );
        let mut fits = UpgradeRequest {
            requested_tier: "enterprise".into(),
            message: "x".repeat(MAX_UPGRADE_MESSAGE),
            time: 1,
        };
        let before = fits.clone();
        assert!(!fits.clip());
        assert_eq!(fits, before);
    }
}
