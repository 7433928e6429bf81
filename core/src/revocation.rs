//! Revocation lists: the vendor's signed, versioned statement of which
//! licenses are revoked or suspended, and the rules for accepting a new one.

use serde::Serialize;

use crate::cbor::{Key, Reader, Writer};
use crate::envelope::{self, Alg, DocKind};
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

/// A change to one license's entry that the rules refuse: revocation is
/// permanent, and a change must change something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransitionError {
    /// The license is revoked; no later list may suspend, reinstate or
    /// revoke it again (a returning customer gets a new license).
    #[error("the license is revoked, and revocation is permanent")]
    Permanent,
    /// The license already has the status asked for.
    #[error("the license is already {}", .0.as_str())]
    Unchanged(RevocationStatus),
    /// There is nothing to lift: the license has no entry.
    #[error("the license is not suspended")]
    NotListed,
}

/// Whether one license's entry may go from `from` to `to` in the next list
/// (`None`: no entry). A suspension may be lifted or turned into a
/// revocation; a revocation is permanent.
pub fn check_transition(
    from: Option<RevocationStatus>,
    to: Option<RevocationStatus>,
) -> std::result::Result<(), TransitionError> {
    match (from, to) {
        (Some(RevocationStatus::Revoked), _) => Err(TransitionError::Permanent),
        (None, None) => Err(TransitionError::NotListed),
        (Some(now), Some(next)) if now == next => Err(TransitionError::Unchanged(now)),
        _ => Ok(()),
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

    /// The payload as deterministic CBOR, written directly (no `Value` tree).
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(64 + 64 * self.entries.len());
        self.encode(&mut w);
        w.into_vec()
    }

    /// Keys in deterministic order: `iss`, `iat`, then the text keys (all
    /// seven letters long) bytewise; entries sorted by license id.
    fn encode(&self, w: &mut Writer) {
        w.map(5);
        w.int(cwt::ISS).text(&self.issuer);
        w.int(cwt::IAT).uint(self.issued_at);
        w.text("entries").array(self.entries.len());
        let mut sorted: Vec<&RevocationEntry> = self.entries.iter().collect();
        if !sorted.windows(2).all(|p| p[0].id <= p[1].id) {
            // Stable, like the sort the first encoder used.
            sorted.sort_by_key(|e| e.id);
        }
        for e in sorted {
            w.map(4);
            w.text("id").bytes(&e.id.0);
            w.text("time").uint(e.time);
            w.text("reason").text(&e.reason);
            w.text("status").text(e.status.as_str());
        }
        w.text("expires").uint(self.expires);
        w.text("version").uint(self.version);
    }

    /// Decodes a payload, refusing unknown claims and non-canonical encodings.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let mut m = r.map("revocation list")?;
        let (mut issuer, mut issued_at, mut entries, mut expires, mut version) =
            (None, None, None, None, None);
        while let Some(key) = r.key(&mut m)? {
            match key {
                Key::Int(cwt::ISS) => issuer = Some(r.text("iss")?.to_owned()),
                Key::Int(cwt::IAT) => issued_at = Some(r.uint("iat")?),
                Key::Text(b"entries") => entries = Some(read_entries(&mut r)?),
                Key::Text(b"expires") => expires = Some(r.uint("expires")?),
                Key::Text(b"version") => version = Some(r.uint("version")?),
                other => return Err(m.unknown(other)),
            }
        }
        r.end()?;
        let list = RevocationList {
            issuer: issuer.ok_or_else(|| m.missing("iss"))?,
            version: version.ok_or_else(|| m.missing("version"))?,
            issued_at: issued_at.ok_or_else(|| m.missing("iat"))?,
            expires: expires.ok_or_else(|| m.missing("expires"))?,
            entries: entries.ok_or_else(|| m.missing("entries"))?,
        };
        // As for licenses: the reader refuses what it can see, and the
        // re-encoding keeps decode→encode byte identity a guarantee.
        let mut w = Writer::with_capacity(bytes.len());
        list.encode(&mut w);
        if w.into_vec() != bytes {
            return Err(Error::Payload(
                "revocation list is not in canonical encoding".into(),
            ));
        }
        Ok(list)
    }

    /// Signs the list with the vendor key and the default alg (EdDSA, −8).
    pub fn sign(&self, key: &SecretKey) -> Vec<u8> {
        self.sign_with(key, Alg::default())
    }

    /// Signs the list with the vendor key, naming `alg` in the header.
    pub fn sign_with(&self, key: &SecretKey, alg: Alg) -> Vec<u8> {
        envelope::sign_with(DocKind::RevocationList, self.to_cbor(), key, alg)
    }

    /// True once `now` is past the next-update deadline.
    pub fn is_stale(&self, now: Timestamp) -> bool {
        now >= self.expires
    }
}

/// Reads the entries array: each entry's claims, then their order by id.
fn read_entries(r: &mut Reader<'_>) -> Result<Vec<RevocationEntry>> {
    let n = r.array_len("entries")?;
    // `n` is bounded by the bytes left, not by what they can hold: cap the guess.
    let mut entries: Vec<RevocationEntry> = Vec::with_capacity(n.min(256));
    for _ in 0..n {
        let mut m = r.map("revocation entry")?;
        let (mut id, mut time, mut reason, mut status) = (None, None, None, None);
        while let Some(key) = r.key(&mut m)? {
            match key {
                Key::Text(b"id") => id = Some(LicenseId(r.bytes_n("id")?)),
                Key::Text(b"time") => time = Some(r.uint("time")?),
                Key::Text(b"reason") => reason = Some(r.text("reason")?.to_owned()),
                Key::Text(b"status") => {
                    status = Some(match r.text("status")? {
                        "revoked" => RevocationStatus::Revoked,
                        "suspended" => RevocationStatus::Suspended,
                        other => {
                            return Err(Error::Payload(format!(
                                "unknown revocation status {other:?}"
                            )))
                        }
                    })
                }
                other => return Err(m.unknown(other)),
            }
        }
        let entry = RevocationEntry {
            id: id.ok_or_else(|| m.missing("id"))?,
            status: status.ok_or_else(|| m.missing("status"))?,
            reason: reason.ok_or_else(|| m.missing("reason"))?,
            time: time.ok_or_else(|| m.missing("time"))?,
        };
        if entries.last().is_some_and(|prev| prev.id >= entry.id) {
            return Err(Error::Payload(
                "revocation entries must be sorted by id, without duplicates".into(),
            ));
        }
        entries.push(entry);
    }
    Ok(entries)
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

#[cfg(test)]
mod tests {
    use super::RevocationStatus::{Revoked, Suspended};
    use super::*;

    #[test]
    fn revocation_is_permanent_and_a_suspension_can_go_either_way() {
        let table = [
            // (from, to, outcome)
            (None, Some(Suspended), Ok(())),
            (None, Some(Revoked), Ok(())),
            (None, None, Err(TransitionError::NotListed)),
            (Some(Suspended), None, Ok(())),
            (Some(Suspended), Some(Revoked), Ok(())),
            (
                Some(Suspended),
                Some(Suspended),
                Err(TransitionError::Unchanged(Suspended)),
            ),
            (Some(Revoked), None, Err(TransitionError::Permanent)),
            (
                Some(Revoked),
                Some(Suspended),
                Err(TransitionError::Permanent),
            ),
            (
                Some(Revoked),
                Some(Revoked),
                Err(TransitionError::Permanent),
            ),
        ];
        for (from, to, outcome) in table {
            assert_eq!(check_transition(from, to), outcome, "{from:?} -> {to:?}");
        }
    }
}
