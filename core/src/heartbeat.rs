//! Connected-mode documents exchanged with a relay: the cluster's signed
//! [`Heartbeat`] and the relay's signed [`RelayTime`] answer.
//!
//! A heartbeat is self-signed like an activation request: the cluster key
//! travels in the protected header and the cluster id in the claims must be
//! derived from it. The relay decides whether that key is the one bound at
//! activation. A relay-time statement is signed by the relay's own key, which
//! the verifier pins; it feeds the verifier's trusted-time mark.
//!
//! A heartbeat with `deactivate` set is the cluster's last one: the relay
//! accepts it only on `POST /v1/deactivate`, and a plain heartbeat only on
//! `POST /v1/heartbeat`, so one can never be replayed as the other.

use std::collections::BTreeMap;

use ciborium::value::Value;
use serde::Serialize;

use crate::cbor::{self, u, Fields, MapBuilder};
use crate::cluster::{
    canonical, upgrade_requests_from, upgrade_requests_value, SelfSigned, UpgradeRequest,
};
use crate::envelope::{self, DocKind};
use crate::error::{Error, Result};
use crate::id::{cluster_id, LicenseId};
use crate::keys::{PublicKey, SecretKey, TrustedKeys};
use crate::license::cwt;
use crate::time::Timestamp;

/// A cluster's periodic report to the relay, signed by the cluster key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heartbeat {
    /// The license the cluster runs under.
    pub license_id: LicenseId,
    /// The sending cluster (derived from the signing key).
    pub cluster_id: String,
    /// Per-cluster sequence number; the relay refuses any not above the last accepted.
    pub seq: u64,
    /// `iat`: the cluster's clock when it signed.
    pub time: Timestamp,
    /// The verifier's current policy state name (`active`, `suspended`, …).
    pub state: String,
    /// Nodes holding a live lease.
    pub active_nodes: u32,
    /// Usage per quota metric in the current period (gauges: the last level).
    pub quotas: BTreeMap<String, u64>,
    /// Version of the verifier that sent it.
    pub verifier_version: String,
    /// Upgrade requests queued on the cluster since the last accepted heartbeat.
    pub upgrade_requests: Vec<UpgradeRequest>,
    /// True on the last heartbeat, sent to `POST /v1/deactivate`.
    pub deactivate: bool,
    /// The head of the cluster's usage-report chain and its trusted-time
    /// mark, so the relay can flag a restored state database or a cloned
    /// cluster as the vendor does on report import. Sent only to a relay
    /// that announced it reads it (older relays refuse unknown claims).
    pub chain: Option<ChainHead>,
}

/// Where a cluster's usage-report chain stands, as its heartbeat says
/// (docs/format.md §7.6): both only ever grow on one cluster, except the
/// mark when the cluster took a clock reset, which the head then carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainHead {
    /// Sequence number of the last usage report written (0: none yet).
    pub report_seq: u64,
    /// SHA-256 of that report's binary bytes (`None` before the first).
    #[serde(serialize_with = "ser_hex_opt")]
    pub report_hash: Option<[u8; 32]>,
    /// The verifier's trusted-time mark, as persisted when it signed.
    pub mark: Timestamp,
    /// The clock reset the cluster took (docs/format.md §7.9), its binary
    /// bytes exactly as received, so the relay can tell the mark going
    /// back from a restored state database. Carried only to a relay that
    /// announced it reads it ([`crate::wire::relay::ACCEPTS_CLOCK_RESET`]),
    /// until one such heartbeat is accepted. Not checked here: the relay
    /// verifies it against the issuer keys.
    #[serde(
        serialize_with = "ser_hex_bytes_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub reset: Option<Vec<u8>>,
}

fn ser_hex_bytes_opt<S: serde::Serializer>(
    b: &Option<Vec<u8>>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match b {
        Some(b) => s.serialize_some(&crate::keys::hex(b)),
        None => s.serialize_none(),
    }
}

fn ser_hex_opt<S: serde::Serializer>(
    b: &Option<[u8; 32]>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match b {
        Some(b) => s.serialize_some(&crate::keys::hex(b)),
        None => s.serialize_none(),
    }
}

impl ChainHead {
    fn to_value(&self) -> Value {
        MapBuilder::new()
            .text("seq", u(self.report_seq))
            .text_opt("hash", self.report_hash.map(|h| Value::Bytes(h.to_vec())))
            .text("mark", u(self.mark))
            .text_opt("reset", self.reset.clone().map(Value::Bytes))
            .build()
    }

    fn from_value(v: Value) -> Result<Self> {
        let mut f = Fields::open("heartbeat chain head", v)?;
        let report_seq = cbor::uint(f.required("seq")?, "chain seq")?;
        let report_hash = f
            .text_key("hash")
            .map(|v| cbor::bytes_n(v, "chain hash"))
            .transpose()?;
        let mark = cbor::time(f.required("mark")?, "chain mark")?;
        let reset = f
            .text_key("reset")
            .map(|v| cbor::bytes(v, "chain reset"))
            .transpose()?;
        f.finish()?;
        if (report_seq == 0) != report_hash.is_none() {
            return Err(Error::Payload(
                "a chain head names a report hash exactly when its seq is above 0".into(),
            ));
        }
        if reset.as_ref().is_some_and(Vec::is_empty) {
            return Err(Error::Payload(
                "a chain head's reset, when present, is a clock reset's bytes".into(),
            ));
        }
        Ok(ChainHead {
            report_seq,
            report_hash,
            mark,
            reset,
        })
    }
}

impl Heartbeat {
    /// The payload as deterministic CBOR.
    pub fn to_cbor(&self) -> Vec<u8> {
        let quotas = cbor::sorted_map(
            self.quotas
                .iter()
                .map(|(k, v)| (Value::Text(k.clone()), u(*v)))
                .collect(),
        );
        cbor::to_vec(
            &MapBuilder::new()
                .int(cwt::IAT, u(self.time))
                .text("license", Value::Bytes(self.license_id.0.to_vec()))
                .text("cluster_id", self.cluster_id.as_str())
                .text("seq", u(self.seq))
                .text("state", self.state.as_str())
                .text("nodes", u(self.active_nodes.into()))
                .text("quotas", quotas)
                .text("version", self.verifier_version.as_str())
                .text(
                    "upgrade_requests",
                    upgrade_requests_value(&self.upgrade_requests),
                )
                // Present only when true, so an ordinary heartbeat has one spelling.
                .text_opt("deactivate", self.deactivate.then_some(true))
                .text_opt("chain", self.chain.as_ref().map(ChainHead::to_value))
                .build(),
        )
    }

    /// Decodes a payload, refusing unknown claims and non-canonical encodings.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self> {
        let mut f = Fields::open("heartbeat", cbor::from_slice(bytes)?)?;
        macro_rules! req {
            ($take:expr, $name:expr) => {
                $take.ok_or_else(|| f.missing($name))?
            };
        }
        let time = cbor::time(req!(f.int_key(cwt::IAT), "iat"), "iat")?;
        let license_id = LicenseId(cbor::bytes_n(
            req!(f.text_key("license"), "license"),
            "license",
        )?);
        let cluster_id = cbor::text(req!(f.text_key("cluster_id"), "cluster_id"), "cluster_id")?;
        let seq = cbor::uint(req!(f.text_key("seq"), "seq"), "seq")?;
        let state = cbor::text(req!(f.text_key("state"), "state"), "state")?;
        let active_nodes = cbor::uint32(req!(f.text_key("nodes"), "nodes"), "nodes")?;
        let mut quotas = BTreeMap::new();
        for (name, v) in cbor::text_map(req!(f.text_key("quotas"), "quotas"), "quota name")? {
            quotas.insert(name, cbor::uint(v, "quota usage")?);
        }
        let verifier_version = cbor::text(req!(f.text_key("version"), "version"), "version")?;
        let upgrade_requests =
            upgrade_requests_from(req!(f.text_key("upgrade_requests"), "upgrade_requests"))?;
        let deactivate = match f.text_key("deactivate") {
            None => false,
            Some(Value::Bool(true)) => true,
            Some(_) => {
                return Err(Error::Payload(
                    "deactivate must be true when present".into(),
                ))
            }
        };
        let chain = f.text_key("chain").map(ChainHead::from_value).transpose()?;
        f.finish()?;
        let hb = Heartbeat {
            license_id,
            cluster_id,
            seq,
            time,
            state,
            active_nodes,
            quotas,
            verifier_version,
            upgrade_requests,
            deactivate,
            chain,
        };
        canonical(hb.to_cbor() == bytes, hb)
    }

    /// Signs with the cluster key (which travels in the protected header).
    pub fn sign(&self, key: &SecretKey) -> Vec<u8> {
        envelope::sign(DocKind::Heartbeat, self.to_cbor(), key)
    }
}

/// Verifies a heartbeat in either spelling: its own signature, and that its
/// cluster id is the signer's. Whether the signer is the key bound at
/// activation, and whether `seq` and `time` are fresh, is the relay's call.
pub fn verify_heartbeat(input: &[u8]) -> Result<SelfSigned<Heartbeat>> {
    let bytes = crate::armor::dearmor(input, Some(DocKind::Heartbeat))?;
    let opened = envelope::open_self_signed(&bytes, DocKind::Heartbeat)?;
    let signer = opened
        .signer
        .ok_or_else(|| Error::Malformed("no signer key".into()))?;
    let doc = Heartbeat::from_cbor(&opened.payload)?;
    if doc.cluster_id != cluster_id(&signer) {
        return Err(Error::Payload(
            "cluster id does not match the signing key".into(),
        ));
    }
    Ok(SelfSigned { doc, signer, bytes })
}

/// The relay's signed answer: its clock and the newest revocation version,
/// echoing the heartbeat it answers so a response cannot be replayed to
/// another cluster or for another heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RelayTime {
    /// `iat`: the relay's clock when it signed.
    pub time: Timestamp,
    /// Version of the newest revocation list the relay holds (0: none yet).
    pub revocation_version: u64,
    /// The cluster this answers, when it answers one.
    pub cluster_id: Option<String>,
    /// The heartbeat sequence number this answers, when it answers one.
    pub seq: Option<u64>,
    /// Something the cluster's operators should read (suspension notice, …).
    pub message: Option<String>,
}

impl RelayTime {
    /// The payload as deterministic CBOR.
    pub fn to_cbor(&self) -> Vec<u8> {
        cbor::to_vec(
            &MapBuilder::new()
                .int(cwt::IAT, u(self.time))
                .text("revocation_version", u(self.revocation_version))
                .text_opt("cluster_id", self.cluster_id.as_deref())
                .text_opt("seq", self.seq.map(u))
                .text_opt("message", self.message.as_deref())
                .build(),
        )
    }

    /// Decodes a payload, refusing unknown claims and non-canonical encodings.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self> {
        let mut f = Fields::open("relay time statement", cbor::from_slice(bytes)?)?;
        let time = cbor::time(f.int_key(cwt::IAT).ok_or_else(|| f.missing("iat"))?, "iat")?;
        let revocation_version = cbor::uint(
            f.text_key("revocation_version")
                .ok_or_else(|| f.missing("revocation_version"))?,
            "revocation_version",
        )?;
        let cluster_id = f
            .text_key("cluster_id")
            .map(|v| cbor::text(v, "cluster_id"))
            .transpose()?;
        let seq = f
            .text_key("seq")
            .map(|v| cbor::uint(v, "seq"))
            .transpose()?;
        let message = f
            .text_key("message")
            .map(|v| cbor::text(v, "message"))
            .transpose()?;
        f.finish()?;
        let rt = RelayTime {
            time,
            revocation_version,
            cluster_id,
            seq,
            message,
        };
        canonical(rt.to_cbor() == bytes, rt)
    }

    /// Signs with the relay key.
    pub fn sign(&self, key: &SecretKey) -> Vec<u8> {
        envelope::sign(DocKind::RelayTime, self.to_cbor(), key)
    }
}

/// Verifies a relay time statement in either spelling against the relay's
/// pinned public key. The caller checks `cluster_id` and `seq` are its own.
pub fn verify_relay_time(input: &[u8], relay_key: &PublicKey) -> Result<RelayTime> {
    verify_relay_time_by(input, &TrustedKeys::from(relay_key.clone()))
}

/// [`verify_relay_time`] against any of `keys` (the relay role of a root,
/// see [`crate::root::relay_signers`]).
pub fn verify_relay_time_by(input: &[u8], keys: &TrustedKeys) -> Result<RelayTime> {
    let bytes = crate::armor::dearmor(input, Some(DocKind::RelayTime))?;
    let opened = envelope::open(&bytes, DocKind::RelayTime, keys)?;
    RelayTime::from_cbor(&opened.payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(key: &SecretKey) -> Heartbeat {
        Heartbeat {
            license_id: LicenseId([9; 16]),
            cluster_id: cluster_id(&key.public()),
            seq: 42,
            time: 1_795_369_941,
            state: "active".into(),
            active_nodes: 3,
            quotas: BTreeMap::from([("api_calls".into(), 17), ("storage_gb".into(), 4)]),
            verifier_version: "0.1.0".into(),
            upgrade_requests: vec![UpgradeRequest {
                requested_tier: "enterprise".into(),
                message: "more nodes please".into(),
                time: 1_795_369_000,
            }],
            deactivate: false,
            chain: None,
        }
    }

    #[test]
    fn heartbeat_round_trips_through_signature() {
        let key = SecretKey::from_seed(&[5; 32]);
        let heads = [
            None,
            Some(ChainHead {
                report_seq: 0,
                report_hash: None,
                mark: 1_795_369_900,
                reset: None,
            }),
            Some(ChainHead {
                report_seq: 7,
                report_hash: Some([3; 32]),
                mark: 1_795_369_900,
                reset: None,
            }),
            Some(ChainHead {
                report_seq: 7,
                report_hash: Some([3; 32]),
                mark: 1_795_369_900,
                reset: Some(vec![0xd2, 0x84, 1, 2, 3]),
            }),
        ];
        for (deactivate, chain) in [false, true]
            .into_iter()
            .zip(heads.clone())
            .chain([(false, heads[2].clone()), (false, heads[3].clone())])
        {
            let hb = Heartbeat {
                deactivate,
                chain,
                ..beat(&key)
            };
            let bytes = hb.sign(&key);
            let got = verify_heartbeat(&bytes).expect("verify");
            assert_eq!(got.doc, hb);
            assert_eq!(got.signer, key.public());
            assert_eq!(got.bytes, bytes);
            let armored = crate::armor::armor(DocKind::Heartbeat, &bytes);
            assert_eq!(
                verify_heartbeat(armored.as_bytes()).expect("armored").doc,
                hb
            );
        }
    }

    #[test]
    fn heartbeat_signed_by_another_cluster_refused() {
        let victim = SecretKey::from_seed(&[5; 32]);
        let attacker = SecretKey::from_seed(&[6; 32]);
        // The attacker claims the victim's cluster id but can only sign with its own key.
        let bytes = beat(&victim).sign(&attacker);
        assert!(matches!(verify_heartbeat(&bytes), Err(Error::Payload(_))));
    }

    #[test]
    fn altered_heartbeat_refused() {
        let key = SecretKey::from_seed(&[5; 32]);
        let mut bytes = beat(&key).sign(&key);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(verify_heartbeat(&bytes).is_err());
    }

    #[test]
    fn relay_time_round_trips_and_wrong_relay_key_refused() {
        let relay = SecretKey::from_seed(&[7; 32]);
        let other = SecretKey::from_seed(&[8; 32]);
        for rt in [
            RelayTime {
                time: 1_795_369_941,
                revocation_version: 3,
                cluster_id: Some("abcdefghijklmnop".into()),
                seq: Some(42),
                message: Some("license suspended".into()),
            },
            RelayTime {
                time: 1,
                revocation_version: 0,
                cluster_id: None,
                seq: None,
                message: None,
            },
        ] {
            let bytes = rt.sign(&relay);
            assert_eq!(verify_relay_time(&bytes, &relay.public()).expect("ok"), rt);
            assert!(matches!(
                verify_relay_time(&bytes, &other.public()),
                Err(Error::UnknownKey(_))
            ));
        }
    }

    #[test]
    fn heartbeat_is_not_a_relay_time_or_activation_request() {
        let key = SecretKey::from_seed(&[5; 32]);
        let bytes = beat(&key).sign(&key);
        assert!(matches!(
            verify_relay_time(&bytes, &key.public()),
            Err(Error::WrongKind { .. })
        ));
        assert!(crate::cluster::verify_activation_request(&bytes).is_err());
    }

    #[test]
    fn chain_head_with_hash_but_no_report_refused() {
        let key = SecretKey::from_seed(&[5; 32]);
        for (report_seq, report_hash) in [(0, Some([1; 32])), (2, None)] {
            let hb = Heartbeat {
                chain: Some(ChainHead {
                    report_seq,
                    report_hash,
                    mark: 5,
                    reset: None,
                }),
                ..beat(&key)
            };
            let bytes = envelope::sign(DocKind::Heartbeat, hb.to_cbor(), &key);
            assert!(matches!(verify_heartbeat(&bytes), Err(Error::Payload(_))));
        }
    }

    #[test]
    fn chain_head_reset_is_a_sorted_optional_byte_string() {
        let key = SecretKey::from_seed(&[5; 32]);
        let head = ChainHead {
            report_seq: 0,
            report_hash: None,
            mark: 9,
            reset: Some(vec![7; 3]),
        };
        // Deterministic: keys in bytewise order of their encoding ("mark",
        // "reset" and "seq" are all 4-5 byte text: length first, then bytes).
        let Value::Map(m) = head.to_value() else {
            panic!("not a map")
        };
        let keys: Vec<_> = m.iter().map(|(k, _)| k.as_text().unwrap()).collect();
        assert_eq!(keys, ["seq", "mark", "reset"]);
        // An empty reset is refused: absent is the one spelling of none.
        let hb = Heartbeat {
            chain: Some(ChainHead {
                reset: Some(Vec::new()),
                ..head.clone()
            }),
            ..beat(&key)
        };
        let bytes = envelope::sign(DocKind::Heartbeat, hb.to_cbor(), &key);
        assert!(matches!(verify_heartbeat(&bytes), Err(Error::Payload(_))));
        // Text instead of bytes is refused too.
        let mut v = cbor::from_slice(&beat(&key).to_cbor()).expect("cbor");
        if let Value::Map(m) = &mut v {
            m.push((
                Value::Text("chain".into()),
                MapBuilder::new()
                    .text("seq", u(0))
                    .text("mark", u(9))
                    .text("reset", "abc")
                    .build(),
            ));
        }
        let payload = cbor::to_vec(&cbor::sorted_map(match v {
            Value::Map(m) => m,
            _ => Vec::new(),
        }));
        let bytes = envelope::sign(DocKind::Heartbeat, payload, &key);
        assert!(matches!(verify_heartbeat(&bytes), Err(Error::Payload(_))));
    }

    #[test]
    fn unknown_heartbeat_claim_refused() {
        let key = SecretKey::from_seed(&[5; 32]);
        let mut v = cbor::from_slice(&beat(&key).to_cbor()).expect("cbor");
        if let Value::Map(m) = &mut v {
            m.push((Value::Text("zzz".into()), Value::Bool(true)));
        }
        let payload = cbor::to_vec(&cbor::sorted_map(match v {
            Value::Map(m) => m,
            _ => Vec::new(),
        }));
        let bytes = envelope::sign(DocKind::Heartbeat, payload, &key);
        assert!(matches!(verify_heartbeat(&bytes), Err(Error::Payload(_))));
    }
}
