//! The license document: who may run what, on how many nodes, until when.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::cbor::Writer;
use crate::envelope::{self, Alg, DocKind};
use crate::error::Result;
use crate::id::LicenseId;
use crate::keys::{Kid, SecretKey, TrustedKeys};
use crate::time::Timestamp;

pub use crate::time::Period;

mod claims;

/// Room for a typical license payload, so encoding rarely reallocates.
const ENCODED_SIZE_HINT: usize = 512;

/// CWT claim keys (RFC 8392).
pub(crate) mod cwt {
    pub const ISS: i64 = 1;
    pub const SUB: i64 = 2;
    pub const AUD: i64 = 3;
    pub const EXP: i64 = 4;
    pub const NBF: i64 = 5;
    pub const IAT: i64 = 6;
    pub const CTI: i64 = 7;
}

/// A quota: how much of a metric may be used per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Quota {
    /// The most that may be used in one period.
    pub limit: u64,
    /// How usage is bucketed.
    pub period: Period,
}

/// Size limits of the licensed deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Limits {
    /// Most nodes that may hold a lease at once (before overage).
    pub max_nodes: u32,
    /// Most CPU cores in the cluster, when limited.
    pub max_cores: Option<u32>,
}

/// Present on connected licenses: how often to reach the relay, and how long
/// the cluster may run without reaching it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HeartbeatPolicy {
    /// Seconds between heartbeats.
    pub interval: u64,
    /// Seconds without a relay contact before the license is `overdue`.
    pub offline_grace: u64,
}

/// An air-gapped license's duty to report: a usage report acknowledged by
/// the vendor (a receipt imported, or relay contact) at least every `every`
/// seconds; status warns `warn` seconds before the deadline; once it has
/// passed the license is `report_overdue` and the `deny` features stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportPolicy {
    /// Seconds between acknowledged reports.
    pub every: u64,
    /// Seconds before the deadline that status starts warning.
    pub warn: u64,
    /// Features denied while the report is overdue (empty: warn only).
    pub deny: BTreeSet<String>,
}

/// A license's claims. Field order here is irrelevant: encoding is deterministic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct License {
    /// `cti`: the license id.
    pub id: LicenseId,
    /// `iss`: the vendor.
    pub issuer: String,
    /// `sub`: the customer id.
    pub customer_id: String,
    /// `customer`: the customer's display name.
    pub customer: String,
    /// `aud`: the product (e.g. `bzzz`).
    pub audience: String,
    /// `iat`: when it was signed.
    pub issued_at: Timestamp,
    /// `nbf`: not valid before.
    pub not_before: Timestamp,
    /// `exp`: end of validity (grace follows).
    pub expires_at: Timestamp,
    /// `tier`: name of a tier in the catalog.
    pub tier: String,
    /// `features`: enabled feature names (a set; encoded sorted).
    pub features: BTreeSet<String>,
    /// `limits`.
    pub limits: Limits,
    /// `quotas`: metric name → quota.
    pub quotas: BTreeMap<String, Quota>,
    /// `grace`: seconds after `exp` during which everything still works.
    pub grace: u64,
    /// `overage`: percent of `max_nodes` allowed over the limit (rounded down).
    pub overage: u32,
    /// `cluster`: the only cluster id this license runs on, when bound.
    pub cluster: Option<String>,
    /// `heartbeat`: present on connected licenses.
    pub heartbeat: Option<HeartbeatPolicy>,
    /// `supersedes`: the license this one replaces.
    pub supersedes: Option<LicenseId>,
    /// `degrade`: features that keep working once the license has expired
    /// (past its grace): the vendor's basic level, so a missed renewal does
    /// not take everything down. Empty: nothing does.
    pub degrade: BTreeSet<String>,
    /// `report`: the duty to report usage, for air-gapped licenses.
    pub report: Option<ReportPolicy>,
}

impl License {
    /// The payload as deterministic CBOR.
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(ENCODED_SIZE_HINT);
        claims::encode(self, &mut w);
        w.into_vec()
    }

    /// Decodes a payload, refusing unknown claims and non-canonical encodings.
    ///
    /// Decoding is strict enough that decode→encode is the identity on every
    /// accepted payload (see `claims::decode` for why), so release builds do
    /// not re-encode to check: that comparison cost about 0.7 % of a
    /// verification. Debug builds (tests, proptests, fuzzing) still do.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self> {
        let license = claims::decode(bytes)?;
        debug_assert!(
            license.to_cbor() == bytes,
            "an accepted license payload must re-encode to its own bytes"
        );
        Ok(license)
    }

    /// Signs the license with the vendor key and the default alg (EdDSA, −8):
    /// binary COSE_Sign1 bytes.
    pub fn sign(&self, key: &SecretKey) -> Vec<u8> {
        self.sign_with(key, Alg::default())
    }

    /// Signs the license with the vendor key, naming `alg` in the header.
    pub fn sign_with(&self, key: &SecretKey, alg: Alg) -> Vec<u8> {
        envelope::sign_with(DocKind::License, self.to_cbor(), key, alg)
    }

    /// True for licenses that expect a relay (they carry a heartbeat policy).
    pub fn is_connected(&self) -> bool {
        self.heartbeat.is_some()
    }

    /// Whether a feature is granted by this license.
    pub fn has_feature(&self, name: &str) -> bool {
        self.features.contains(name)
    }

    /// Nodes allowed including overage: `max_nodes + floor(max_nodes × overage / 100)`.
    pub fn node_ceiling(&self) -> u64 {
        let max = u64::from(self.limits.max_nodes);
        max + max * u64::from(self.overage) / 100
    }
}

/// A license that passed signature verification, with the bytes it came from.
#[derive(Debug, Clone)]
pub struct VerifiedLicense {
    /// The decoded claims.
    pub license: License,
    /// The vendor key that signed it.
    pub kid: Kid,
    /// The binary COSE_Sign1 bytes (after de-armoring), exactly as received.
    pub bytes: Vec<u8>,
}

/// Verifies a license file in either spelling (binary or armored) against the
/// trusted vendor keys. The signature is checked before the claims are decoded.
pub fn verify_license(input: &[u8], keys: &TrustedKeys) -> Result<VerifiedLicense> {
    let bytes = crate::armor::dearmor(input, Some(DocKind::License))?;
    let opened = envelope::open(&bytes, DocKind::License, keys)?;
    let license = License::from_cbor(&opened.payload)?;
    Ok(VerifiedLicense {
        license,
        kid: opened.kid,
        bytes,
    })
}

/// A small license for unit tests anywhere in the crate.
#[cfg(test)]
pub(crate) fn sample() -> License {
    let mut l = License {
        id: LicenseId([7; 16]),
        issuer: "vendor".into(),
        customer_id: "c".into(),
        customer: "C".into(),
        audience: "bzzz".into(),
        issued_at: 100,
        not_before: 100,
        expires_at: 200,
        tier: "standard".into(),
        features: ["analytics", "basic-search"].map(String::from).into(),
        limits: Limits::default(),
        quotas: BTreeMap::new(),
        grace: 0,
        overage: 0,
        cluster: None,
        heartbeat: None,
        supersedes: None,
        degrade: Default::default(),
        report: None,
    };
    l.limits.max_nodes = 3;
    l
}
