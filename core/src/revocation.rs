//! Revocation lists: the vendor's signed, versioned statement of which
//! licenses are revoked or suspended, and the rules for accepting a new one.

use ciborium::value::Value;
use serde::Serialize;

use crate::cbor::{self, u, Fields, MapBuilder};
use crate::envelope::{self, DocKind};
use crate::error::{Error, Result};
use crate::id::LicenseId;
use crate::keys::{Kid, SecretKey, TrustedKeys};
use crate::license::cwt;
use crate::time::Timestamp;

/// Whether an entry ends a license or pauses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RevocationStatus {
    /// Permanently withdrawn.
    Revoked,
    /// Paused; a later list without the entry lifts it.
    Suspended,
}

impl RevocationStatus {
    /// The spelling in documents.
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationStatus::Revoked => "revoked",
            RevocationStatus::Suspended => "suspended",
        }
    }
}

/// One revoked or suspended license.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevocationEntry {
    /// The license.
    pub id: LicenseId,
    /// Revoked or suspended.
    pub status: RevocationStatus,
    /// Why, for people.
    pub reason: String,
    /// When the vendor decided it.
    pub time: Timestamp,
}

/// A revocation list's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevocationList {
    /// `iss`: the vendor.
    pub issuer: String,
    /// `version`: strictly increasing.
    pub version: u64,
    /// `iat`: when it was signed.
    pub issued_at: Timestamp,
    /// `expires`: the next-update deadline; past it the list is stale (a freeze).
    pub expires: Timestamp,
    /// Entries, sorted by license id when encoded.
    pub entries: Vec<RevocationEntry>,
}

impl RevocationList {
    /// The entry for a license, if any.
    pub fn entry(&self, id: &LicenseId) -> Option<&RevocationEntry> {
        self.entries.iter().find(|e| &e.id == id)
    }

    /// The payload as deterministic CBOR.
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut entries = self.entries.clone();
        entries.sort_by_key(|e| e.id);
        let entries = entries
            .into_iter()
            .map(|e| {
                MapBuilder::new()
                    .text("id", Value::Bytes(e.id.0.to_vec()))
                    .text("status", e.status.as_str())
                    .text("reason", e.reason)
                    .text("time", u(e.time))
                    .build()
            })
            .collect();
        let v = MapBuilder::new()
            .int(cwt::ISS, self.issuer.as_str())
            .int(cwt::IAT, u(self.issued_at))
            .text("version", u(self.version))
            .text("expires", u(self.expires))
            .text("entries", Value::Array(entries))
            .build();
        cbor::to_vec(&v)
    }

    /// Decodes a payload, refusing unknown claims and non-canonical encodings.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self> {
        let mut f = Fields::open("revocation list", cbor::from_slice(bytes)?)?;
        let issuer = cbor::text(f.int_key(cwt::ISS).ok_or_else(|| f.missing("iss"))?, "iss")?;
        let issued_at = cbor::time(f.int_key(cwt::IAT).ok_or_else(|| f.missing("iat"))?, "iat")?;
        let version = cbor::uint(
            f.text_key("version").ok_or_else(|| f.missing("version"))?,
            "version",
        )?;
        let expires = cbor::time(
            f.text_key("expires").ok_or_else(|| f.missing("expires"))?,
            "expires",
        )?;
        let raw = cbor::array(
            f.text_key("entries").ok_or_else(|| f.missing("entries"))?,
            "entries",
        )?;
        f.finish()?;
        let mut entries = Vec::with_capacity(raw.len());
        for v in raw {
            let mut e = Fields::open("revocation entry", v)?;
            let id = LicenseId(cbor::bytes_n(
                e.text_key("id").ok_or_else(|| e.missing("id"))?,
                "id",
            )?);
            let status = match cbor::text(
                e.text_key("status").ok_or_else(|| e.missing("status"))?,
                "status",
            )?
            .as_str()
            {
                "revoked" => RevocationStatus::Revoked,
                "suspended" => RevocationStatus::Suspended,
                other => {
                    return Err(Error::Payload(format!(
                        "unknown revocation status {other:?}"
                    )))
                }
            };
            let reason = cbor::text(
                e.text_key("reason").ok_or_else(|| e.missing("reason"))?,
                "reason",
            )?;
            let time = cbor::time(e.text_key("time").ok_or_else(|| e.missing("time"))?, "time")?;
            e.finish()?;
            entries.push(RevocationEntry {
                id,
                status,
                reason,
                time,
            });
        }
        if entries.windows(2).any(|w| w[0].id >= w[1].id) {
            return Err(Error::Payload(
                "revocation entries must be sorted by id, without duplicates".into(),
            ));
        }
        let list = RevocationList {
            issuer,
            version,
            issued_at,
            expires,
            entries,
        };
        if list.to_cbor() != bytes {
            return Err(Error::Payload(
                "revocation list is not in canonical encoding".into(),
            ));
        }
        Ok(list)
    }

    /// Signs the list with the vendor key.
    pub fn sign(&self, key: &SecretKey) -> Vec<u8> {
        envelope::sign(DocKind::RevocationList, self.to_cbor(), key)
    }

    /// True once `now` is past the next-update deadline.
    pub fn is_stale(&self, now: Timestamp) -> bool {
        now >= self.expires
    }
}

/// A revocation list that passed signature verification.
#[derive(Debug, Clone)]
pub struct VerifiedRevocationList {
    /// The decoded list.
    pub list: RevocationList,
    /// The vendor key that signed it.
    pub kid: Kid,
    /// The binary bytes exactly as received.
    pub bytes: Vec<u8>,
}

/// Verifies a revocation list in either spelling against the trusted vendor keys.
pub fn verify_revocation_list(input: &[u8], keys: &TrustedKeys) -> Result<VerifiedRevocationList> {
    let bytes = crate::armor::dearmor(input, Some(DocKind::RevocationList))?;
    let opened = envelope::open(&bytes, DocKind::RevocationList, keys)?;
    let list = RevocationList::from_cbor(&opened.payload)?;
    Ok(VerifiedRevocationList {
        list,
        kid: opened.kid,
        bytes,
    })
}

/// Why a verified list may still not replace the current one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RollbackError {
    /// Its version is below the highest ever seen.
    #[error("revocation list version {offered} is older than version {highest} already seen (rollback refused)")]
    Older {
        /// The version offered.
        offered: u64,
        /// The highest version seen.
        highest: u64,
    },
    /// Same version as the current list but different bytes.
    #[error("revocation list version {0} differs from the version {0} already accepted (refused)")]
    Conflicting(u64),
}

/// What to do with a verified list offered to replace the current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acceptance {
    /// A newer version: replace the current list and raise the high-water mark.
    Newer,
    /// The same bytes as the current list: nothing to do.
    Same,
}

/// Decides whether `offered` may replace the list at `highest_version` whose
/// bytes are `current_bytes` (when known). Versions only grow.
pub fn accept_revocation_list(
    offered: &VerifiedRevocationList,
    highest_version: Option<u64>,
    current_bytes: Option<&[u8]>,
) -> std::result::Result<Acceptance, RollbackError> {
    let v = offered.list.version;
    match highest_version {
        None => Ok(Acceptance::Newer),
        Some(h) if v > h => Ok(Acceptance::Newer),
        Some(h) if v < h => Err(RollbackError::Older {
            offered: v,
            highest: h,
        }),
        Some(_) => match current_bytes {
            Some(cur) if cur == offered.bytes.as_slice() => Ok(Acceptance::Same),
            _ => Err(RollbackError::Conflicting(v)),
        },
    }
}
