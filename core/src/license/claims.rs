//! The license's claims map, written and read directly as deterministic CBOR.
//!
//! Verification decodes every license and re-encodes it for the canonical
//! check, next to a single Ed25519 verification, so neither side builds a
//! `Value` tree: the writer appends bytes in key order and the reader takes
//! each claim from the received bytes, owning each string once.

use std::collections::{BTreeMap, BTreeSet};

use super::{cwt, HeartbeatPolicy, License, Limits, Quota, ReportPolicy};
use crate::cbor::{for_each_in_key_order, Key, Reader, Writer};
use crate::error::{Error, Result};
use crate::id::LicenseId;

/// Claims every license carries: 7 CWT claims and 7 product claims.
const REQUIRED_CLAIMS: usize = 14;

/// Appends the claims map. Keys are written in deterministic order: the CWT
/// integers 1–7, then text keys shorter first, then bytewise.
pub(super) fn encode(l: &License, w: &mut Writer) {
    let optional = [
        l.cluster.is_some(),
        l.heartbeat.is_some(),
        l.supersedes.is_some(),
        !l.degrade.is_empty(),
        l.report.is_some(),
    ];
    w.map(REQUIRED_CLAIMS + optional.iter().filter(|p| **p).count());
    w.int(cwt::ISS).text(&l.issuer);
    w.int(cwt::SUB).text(&l.customer_id);
    w.int(cwt::AUD).text(&l.audience);
    w.int(cwt::EXP).uint(l.expires_at);
    w.int(cwt::NBF).uint(l.not_before);
    w.int(cwt::IAT).uint(l.issued_at);
    w.int(cwt::CTI).bytes(&l.id.0);
    w.text("tier").text(&l.tier);
    w.text("grace").uint(l.grace);
    w.text("limits")
        .map(1 + usize::from(l.limits.max_cores.is_some()));
    if let Some(cores) = l.limits.max_cores {
        w.text("max_cores").uint(cores.into());
    }
    w.text("max_nodes").uint(l.limits.max_nodes.into());
    w.text("quotas").map(l.quotas.len());
    for_each_in_key_order(l.quotas.iter().map(|(n, q)| (n.as_str(), q)), |name, q| {
        w.text(name).map(2);
        w.text("limit").uint(q.limit);
        w.text("period").text(q.period.as_str());
    });
    if let Some(p) = &l.report {
        w.text("report").map(2 + usize::from(!p.deny.is_empty()));
        if !p.deny.is_empty() {
            w.text("deny").array(p.deny.len());
            for f in &p.deny {
                w.text(f);
            }
        }
        w.text("warn").uint(p.warn);
        w.text("every").uint(p.every);
    }
    if let Some(cluster) = &l.cluster {
        w.text("cluster").text(cluster);
    }
    if !l.degrade.is_empty() {
        w.text("degrade").array(l.degrade.len());
        for f in &l.degrade {
            w.text(f);
        }
    }
    w.text("overage").uint(l.overage.into());
    w.text("customer").text(&l.customer);
    // A set: its array is in the set's (sorted) order.
    w.text("features").array(l.features.len());
    for f in &l.features {
        w.text(f);
    }
    if let Some(h) = l.heartbeat {
        w.text("heartbeat").map(2);
        w.text("interval").uint(h.interval);
        w.text("offline_grace").uint(h.offline_grace);
    }
    if let Some(s) = l.supersedes {
        w.text("supersedes").bytes(&s.0);
    }
}

/// Reads the claims map, accepting exactly the bytes [`encode`] writes.
///
/// The reader refuses indefinite lengths, heads not in shortest form, keys
/// not strictly ascending by their encoded bytes (so duplicates too) and
/// trailing bytes; this refuses unknown claims, wrong types, missing claims
/// and features out of order. What is left has one encoding: each value is
/// kept exactly (text and byte strings as read, integers whose shortest form
/// was checked, periods that spell back the same), every entry read is kept,
/// so the counts match, and a set of keys has one ascending order, which is
/// the order `encode` writes (every round-trip test checks it, since this
/// reader refuses any other). Hence decode→encode is the identity.
pub(super) fn decode(bytes: &[u8]) -> Result<License> {
    let mut r = Reader::new(bytes);
    let mut m = r.map("license")?;
    let (mut iss, mut sub, mut aud, mut exp, mut nbf, mut iat, mut cti) =
        (None, None, None, None, None, None, None);
    let (mut tier, mut grace, mut limits, mut quotas, mut overage, mut customer, mut features) =
        (None, None, None, None, None, None, None);
    let (mut cluster, mut heartbeat, mut supersedes) = (None, None, None);
    let (mut degrade, mut report) = (None, None);
    while let Some(key) = r.key(&mut m)? {
        match key {
            Key::Int(cwt::ISS) => iss = Some(r.text("iss")?.to_owned()),
            Key::Int(cwt::SUB) => sub = Some(r.text("sub")?.to_owned()),
            Key::Int(cwt::AUD) => aud = Some(r.text("aud")?.to_owned()),
            Key::Int(cwt::EXP) => exp = Some(r.uint("exp")?),
            Key::Int(cwt::NBF) => nbf = Some(r.uint("nbf")?),
            Key::Int(cwt::IAT) => iat = Some(r.uint("iat")?),
            Key::Int(cwt::CTI) => cti = Some(LicenseId(r.bytes_n("cti")?)),
            Key::Text(b"tier") => tier = Some(r.text("tier")?.to_owned()),
            Key::Text(b"grace") => grace = Some(r.uint("grace")?),
            Key::Text(b"limits") => limits = Some(read_limits(&mut r)?),
            Key::Text(b"quotas") => quotas = Some(read_quotas(&mut r)?),
            Key::Text(b"cluster") => cluster = Some(r.text("cluster")?.to_owned()),
            Key::Text(b"overage") => overage = Some(r.uint32("overage")?),
            Key::Text(b"customer") => customer = Some(r.text("customer")?.to_owned()),
            Key::Text(b"features") => features = Some(read_features(&mut r)?),
            Key::Text(b"heartbeat") => heartbeat = Some(read_heartbeat(&mut r)?),
            Key::Text(b"supersedes") => supersedes = Some(LicenseId(r.bytes_n("supersedes")?)),
            Key::Text(b"degrade") => degrade = Some(read_nonempty_set(&mut r, "degrade")?),
            Key::Text(b"report") => report = Some(read_report(&mut r)?),
            other => return Err(m.unknown(other)),
        }
    }
    r.end()?;
    let features = features.ok_or_else(|| m.missing("features"))?;
    let degrade = degrade.unwrap_or_default();
    let report: Option<ReportPolicy> = report;
    for (claim, names) in [
        ("degrade", Some(&degrade)),
        ("report deny", report.as_ref().map(|p| &p.deny)),
    ] {
        if let Some(f) = names.and_then(|n| n.iter().find(|f| !features.contains(*f))) {
            return Err(Error::Payload(format!(
                "license {claim} names feature {f:?}, which the license does not include"
            )));
        }
    }
    Ok(License {
        id: cti.ok_or_else(|| m.missing("cti"))?,
        issuer: iss.ok_or_else(|| m.missing("iss"))?,
        customer_id: sub.ok_or_else(|| m.missing("sub"))?,
        customer: customer.ok_or_else(|| m.missing("customer"))?,
        audience: aud.ok_or_else(|| m.missing("aud"))?,
        issued_at: iat.ok_or_else(|| m.missing("iat"))?,
        not_before: nbf.ok_or_else(|| m.missing("nbf"))?,
        expires_at: exp.ok_or_else(|| m.missing("exp"))?,
        tier: tier.ok_or_else(|| m.missing("tier"))?,
        features,
        limits: limits.ok_or_else(|| m.missing("limits"))?,
        quotas: quotas.ok_or_else(|| m.missing("quotas"))?,
        grace: grace.ok_or_else(|| m.missing("grace"))?,
        overage: overage.ok_or_else(|| m.missing("overage"))?,
        cluster,
        heartbeat,
        supersedes,
        degrade,
        report,
    })
}

/// A sorted, unique, non-empty list of feature names (an empty one is
/// written by leaving the claim out, so it cannot round trip).
fn read_nonempty_set(r: &mut Reader<'_>, what: &str) -> Result<BTreeSet<String>> {
    let set = read_features(r)?;
    if set.is_empty() {
        return Err(Error::Payload(format!(
            "license is not in canonical encoding: an empty {what} list is written by leaving it out"
        )));
    }
    Ok(set)
}

fn read_report(r: &mut Reader<'_>) -> Result<ReportPolicy> {
    let mut m = r.map("report")?;
    let (mut every, mut warn, mut deny) = (None, None, None);
    while let Some(key) = r.key(&mut m)? {
        match key {
            Key::Text(b"deny") => deny = Some(read_nonempty_set(r, "report deny")?),
            Key::Text(b"warn") => warn = Some(r.uint("warn")?),
            Key::Text(b"every") => every = Some(r.uint("every")?),
            other => return Err(m.unknown(other)),
        }
    }
    let every = every.ok_or_else(|| m.missing("every"))?;
    if every == 0 {
        return Err(Error::Payload(
            "license report every must be above zero".into(),
        ));
    }
    Ok(ReportPolicy {
        every,
        warn: warn.ok_or_else(|| m.missing("warn"))?,
        deny: deny.unwrap_or_default(),
    })
}

fn read_features(r: &mut Reader<'_>) -> Result<BTreeSet<String>> {
    let mut features = BTreeSet::new();
    let mut prev: Option<&str> = None;
    for _ in 0..r.array_len("features")? {
        let f = r.text("feature")?;
        // The set is written in its order, so anything else cannot round trip.
        if prev.is_some_and(|p| p >= f) {
            return Err(Error::Payload(
                "license is not in canonical encoding: features must be sorted, without duplicates"
                    .into(),
            ));
        }
        prev = Some(f);
        features.insert(f.to_owned());
    }
    Ok(features)
}

fn read_limits(r: &mut Reader<'_>) -> Result<Limits> {
    let mut m = r.map("limits")?;
    let (mut max_nodes, mut max_cores) = (None, None);
    while let Some(key) = r.key(&mut m)? {
        match key {
            Key::Text(b"max_cores") => max_cores = Some(r.uint32("max_cores")?),
            Key::Text(b"max_nodes") => max_nodes = Some(r.uint32("max_nodes")?),
            other => return Err(m.unknown(other)),
        }
    }
    Ok(Limits {
        max_nodes: max_nodes.ok_or_else(|| m.missing("max_nodes"))?,
        max_cores,
    })
}

fn read_quotas(r: &mut Reader<'_>) -> Result<BTreeMap<String, Quota>> {
    let mut quotas = BTreeMap::new();
    let mut m = r.map("quotas")?;
    while let Some(key) = r.key(&mut m)? {
        let Key::Text(name) = key else {
            return Err(Error::Payload("quota name must be a text string".into()));
        };
        let name = std::str::from_utf8(name)
            .map_err(|_| Error::Payload("not CBOR: text is not UTF-8".into()))?;
        let mut q = r.map("quota")?;
        let (mut limit, mut period) = (None, None);
        while let Some(key) = r.key(&mut q)? {
            match key {
                Key::Text(b"limit") => limit = Some(r.uint("limit")?),
                Key::Text(b"period") => {
                    period = Some(r.text("period")?.parse().map_err(Error::Payload)?)
                }
                other => return Err(q.unknown(other)),
            }
        }
        let quota = Quota {
            limit: limit.ok_or_else(|| q.missing("limit"))?,
            period: period.ok_or_else(|| q.missing("period"))?,
        };
        quotas.insert(name.to_owned(), quota);
    }
    Ok(quotas)
}

fn read_heartbeat(r: &mut Reader<'_>) -> Result<HeartbeatPolicy> {
    let mut m = r.map("heartbeat")?;
    let (mut interval, mut offline_grace) = (None, None);
    while let Some(key) = r.key(&mut m)? {
        match key {
            Key::Text(b"interval") => interval = Some(r.uint("interval")?),
            Key::Text(b"offline_grace") => offline_grace = Some(r.uint("offline_grace")?),
            other => return Err(m.unknown(other)),
        }
    }
    Ok(HeartbeatPolicy {
        interval: interval.ok_or_else(|| m.missing("interval"))?,
        offline_grace: offline_grace.ok_or_else(|| m.missing("offline_grace"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cbor::{self, u, MapBuilder};
    use crate::license::{sample, Period};
    use ciborium::value::Value;
    use proptest::prelude::*;

    /// The encoding as the first (`Value` tree) encoder built it: the direct
    /// writer must produce these bytes, or signed fixtures would change.
    fn reference(l: &License) -> Vec<u8> {
        let limits = MapBuilder::new()
            .text("max_nodes", u(l.limits.max_nodes.into()))
            .text_opt("max_cores", l.limits.max_cores.map(|c| u(c.into())))
            .build();
        let quotas = cbor::sorted_map(
            l.quotas
                .iter()
                .map(|(name, q)| {
                    let entry = MapBuilder::new()
                        .text("limit", u(q.limit))
                        .text("period", q.period.as_str())
                        .build();
                    (Value::Text(name.clone()), entry)
                })
                .collect(),
        );
        let features = l.features.iter().map(|f| Value::Text(f.clone())).collect();
        let map = MapBuilder::new()
            .int(cwt::ISS, l.issuer.as_str())
            .int(cwt::SUB, l.customer_id.as_str())
            .int(cwt::AUD, l.audience.as_str())
            .int(cwt::EXP, u(l.expires_at))
            .int(cwt::NBF, u(l.not_before))
            .int(cwt::IAT, u(l.issued_at))
            .int(cwt::CTI, Value::Bytes(l.id.0.to_vec()))
            .text("customer", l.customer.as_str())
            .text("tier", l.tier.as_str())
            .text("features", Value::Array(features))
            .text("limits", limits)
            .text("quotas", quotas)
            .text("grace", u(l.grace))
            .text("overage", u(l.overage.into()))
            .text_opt("cluster", l.cluster.as_deref())
            .text_opt(
                "heartbeat",
                l.heartbeat.map(|h| {
                    MapBuilder::new()
                        .text("interval", u(h.interval))
                        .text("offline_grace", u(h.offline_grace))
                        .build()
                }),
            )
            .text_opt(
                "supersedes",
                l.supersedes.map(|s| Value::Bytes(s.0.to_vec())),
            )
            .text_opt(
                "degrade",
                (!l.degrade.is_empty()).then(|| {
                    Value::Array(l.degrade.iter().map(|f| Value::Text(f.clone())).collect())
                }),
            )
            .text_opt(
                "report",
                l.report.as_ref().map(|p| {
                    MapBuilder::new()
                        .text("every", u(p.every))
                        .text("warn", u(p.warn))
                        .text_opt(
                            "deny",
                            (!p.deny.is_empty()).then(|| {
                                Value::Array(
                                    p.deny.iter().map(|f| Value::Text(f.clone())).collect(),
                                )
                            }),
                        )
                        .build()
                }),
            )
            .build();
        cbor::to_vec(&map)
    }

    fn license() -> impl Strategy<Value = License> {
        let period = prop_oneof![
            Just(Period::Day),
            Just(Period::Month),
            Just(Period::Total),
            Just(Period::Gauge)
        ];
        let quota = (any::<u64>(), period).prop_map(|(limit, period)| Quota { limit, period });
        (
            (
                any::<[u8; 16]>(),
                ".{0,60}",
                ".{0,30}",
                ".{0,30}",
                ".{0,10}",
            ),
            (any::<u64>(), any::<u64>(), any::<u64>(), ".{0,12}"),
            proptest::collection::btree_set(".{0,30}", 0..6),
            proptest::collection::btree_map(".{0,40}", quota, 0..5),
            (
                any::<u32>(),
                proptest::option::of(any::<u32>()),
                any::<u64>(),
                any::<u32>(),
            ),
            (
                proptest::option::of(".{0,20}"),
                proptest::option::of((any::<u64>(), any::<u64>())),
                proptest::option::of(any::<[u8; 16]>()),
            ),
            (
                0usize..4,
                proptest::option::of((1..u64::MAX, any::<u64>(), 0usize..4)),
            ),
        )
            .prop_map(
                |(
                    (id, issuer, customer_id, customer, audience),
                    (iat, nbf, exp, tier),
                    features,
                    quotas,
                    (max_nodes, max_cores, grace, overage),
                    (cluster, hb, supersedes),
                    (degrade, report),
                )| License {
                    // Subsets of the features, as a decodable license has.
                    degrade: features.iter().take(degrade).cloned().collect(),
                    report: report.map(|(every, warn, deny)| ReportPolicy {
                        every,
                        warn,
                        deny: features.iter().rev().take(deny).cloned().collect(),
                    }),
                    id: LicenseId(id),
                    issuer,
                    customer_id,
                    customer,
                    audience,
                    issued_at: iat,
                    not_before: nbf,
                    expires_at: exp,
                    tier,
                    features,
                    limits: Limits {
                        max_nodes,
                        max_cores,
                    },
                    quotas,
                    grace,
                    overage,
                    cluster,
                    heartbeat: hb.map(|(interval, offline_grace)| HeartbeatPolicy {
                        interval,
                        offline_grace,
                    }),
                    supersedes: supersedes.map(LicenseId),
                },
            )
    }

    fn payload_error(bytes: &[u8]) -> String {
        match decode(bytes) {
            Err(Error::Payload(m)) => m,
            other => panic!("expected a payload error, got {other:?}"),
        }
    }

    proptest! {
        #[test]
        fn direct_encoding_is_byte_identical_to_the_value_tree_encoding(l in license()) {
            prop_assert_eq!(l.to_cbor(), reference(&l));
        }

        #[test]
        fn strict_decoding_round_trips_every_encoding(l in license()) {
            prop_assert_eq!(decode(&l.to_cbor()).expect("decodes"), l);
        }
    }

    /// A license with the duty to report and a degraded level.
    fn reporting() -> License {
        let mut l = sample();
        l.features = ["analytics", "basic-search", "export"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        l.degrade = ["basic-search".to_string()].into();
        l.report = Some(ReportPolicy {
            every: 90 * 86_400,
            warn: 14 * 86_400,
            deny: ["analytics".to_string(), "export".to_string()].into(),
        });
        l
    }

    #[test]
    fn degrade_and_report_round_trip_in_canonical_order() {
        let l = reporting();
        assert_eq!(l.to_cbor(), reference(&l));
        assert_eq!(decode(&l.to_cbor()).expect("decodes"), l);
        // Warn only: no deny list is written.
        let mut warn_only = reporting();
        warn_only.report.as_mut().expect("set").deny.clear();
        assert_eq!(warn_only.to_cbor(), reference(&warn_only));
        assert_eq!(decode(&warn_only.to_cbor()).expect("decodes"), warn_only);
    }

    #[test]
    fn degrade_or_deny_naming_a_feature_the_license_lacks_is_refused() {
        let mut l = reporting();
        l.degrade.insert("bulk-operations".into());
        let e = payload_error(&l.to_cbor());
        assert!(
            e.contains("degrade names feature \"bulk-operations\""),
            "{e}"
        );
        let mut l = reporting();
        l.report.as_mut().expect("set").deny.insert("nope".into());
        let e = payload_error(&l.to_cbor());
        assert!(e.contains("report deny names feature \"nope\""), "{e}");
        let mut l = reporting();
        l.report.as_mut().expect("set").every = 0;
        assert!(payload_error(&l.to_cbor()).contains("above zero"));
    }

    #[test]
    fn unsorted_features_refused_as_non_canonical() {
        let bytes = sample().to_cbor();
        let pos = bytes
            .windows(9)
            .position(|w| w == b"analytics")
            .expect("feature present");
        let mut swapped = bytes[..pos - 1].to_vec();
        swapped.extend_from_slice(b"\x6cbasic-search\x69analytics");
        swapped.extend_from_slice(&bytes[pos + 9 + 13..]);
        assert!(payload_error(&swapped).contains("canonical"));
    }

    #[test]
    fn non_shortest_integer_refused_as_non_canonical() {
        let bytes = sample().to_cbor();
        // `exp` (key 0x04) is 200, written 0x18 0xc8; spell it 0x19 0x00 0xc8.
        let pos = bytes
            .windows(3)
            .position(|w| w == [0x04, 0x18, 0xc8])
            .expect("exp present");
        let long = [&bytes[..pos + 1], &[0x19, 0x00, 0xc8], &bytes[pos + 3..]].concat();
        assert!(payload_error(&long).contains("canonical"));
    }

    #[test]
    fn trailing_bytes_refused_as_non_canonical() {
        let bytes = [sample().to_cbor(), vec![0x00]].concat();
        assert!(payload_error(&bytes).contains("canonical"));
    }
}
