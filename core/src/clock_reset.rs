//! Clock resets: the vendor's signed permission to lower one cluster's
//! trusted-time mark (docs/format.md §7.9), and the pure rule that decides
//! whether a cluster takes it.
//!
//! The mark only grows (the highest time seen from the wall clock, license
//! and list `iat`, relay time), so a clock that was once wrong *ahead* (a VM
//! booted with a bad RTC, an NTP mishap) leaves the cluster `clock_tampered`
//! until real time catches up with the wrong one, possibly years. Nothing on
//! the customer's machine may lower the mark, since the customer controls it;
//! a clock reset is the vendor's answer. It names the cluster and the mark it
//! was asked to lower (the highest it may replace), and sets the mark to its
//! own `iat`: the time on the vendor's machine when it was signed. A reset is
//! used once (the cluster records its id) and only within its validity.
//!
//! Signed by an **issuer** key (the vendor key, or a key of the root's issuer
//! role): lowering the mark lifts a restriction, so a revoker cannot sign one.

use ciborium::value::Value;
use serde::Serialize;

use crate::cbor::{self, u, Fields, MapBuilder};
use crate::cluster::canonical;
use crate::envelope::{self, DocKind};
use crate::error::{Error, Result};
use crate::id::LicenseId;
use crate::keys::{Kid, SecretKey, TrustedKeys};
use crate::license::cwt;
use crate::time::{rfc3339, Timestamp};

/// The vendor's permission to lower one cluster's trusted-time mark.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClockReset {
    /// `cti`: 16 random bytes; a cluster takes each reset once.
    #[serde(serialize_with = "ser_id")]
    pub id: [u8; 16],
    /// The cluster whose mark may be lowered.
    pub cluster_id: String,
    /// The mark the cluster reported: the highest mark this reset replaces.
    pub mark: Timestamp,
    /// `iat`: the vendor's time when it signed; the cluster's new mark.
    pub issued: Timestamp,
    /// `exp`: after this (by the cluster's clock) the reset is not taken.
    pub expires: Timestamp,
}

fn ser_id<S: serde::Serializer>(b: &[u8; 16], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&LicenseId(*b).to_string())
}

impl ClockReset {
    /// A new reset with a random id.
    pub fn new(cluster_id: &str, mark: Timestamp, issued: Timestamp, expires: Timestamp) -> Self {
        ClockReset {
            id: LicenseId::random().0,
            cluster_id: cluster_id.to_string(),
            mark,
            issued,
            expires,
        }
    }

    /// The id as a UUID, the way licenses' ids are shown.
    pub fn id_text(&self) -> String {
        LicenseId(self.id).to_string()
    }

    /// The payload as deterministic CBOR.
    pub fn to_cbor(&self) -> Vec<u8> {
        cbor::to_vec(
            &MapBuilder::new()
                .int(cwt::EXP, u(self.expires))
                .int(cwt::IAT, u(self.issued))
                .int(cwt::CTI, Value::Bytes(self.id.to_vec()))
                .text("cluster_id", self.cluster_id.as_str())
                .text("mark", u(self.mark))
                .build(),
        )
    }

    /// Decodes a payload, refusing one that is not deterministic CBOR or
    /// whose times are out of order.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self> {
        let mut f = Fields::open("clock reset", cbor::from_slice(bytes)?)?;
        let expires = cbor::time(f.int_key(cwt::EXP).ok_or_else(|| f.missing("exp"))?, "exp")?;
        let issued = cbor::time(f.int_key(cwt::IAT).ok_or_else(|| f.missing("iat"))?, "iat")?;
        let id = cbor::bytes_n(f.int_key(cwt::CTI).ok_or_else(|| f.missing("cti"))?, "cti")?;
        let cluster_id = cbor::text(f.required("cluster_id")?, "cluster_id")?;
        let mark = cbor::time(f.required("mark")?, "mark")?;
        f.finish()?;
        if cluster_id.is_empty() {
            return Err(Error::Payload("cluster_id is empty".into()));
        }
        if expires <= issued {
            return Err(Error::Payload("exp is not after iat".into()));
        }
        if mark <= issued {
            return Err(Error::Payload(
                "mark is not after iat: such a reset would lower nothing".into(),
            ));
        }
        let reset = ClockReset {
            id,
            cluster_id,
            mark,
            issued,
            expires,
        };
        canonical(reset.to_cbor() == bytes, reset)
    }

    /// Signs with an issuer key.
    pub fn sign(&self, key: &SecretKey) -> Vec<u8> {
        envelope::sign(DocKind::ClockReset, self.to_cbor(), key)
    }
}

/// A clock reset whose signature checked out against the issuer keys.
#[derive(Debug, Clone)]
pub struct VerifiedClockReset {
    /// The decoded claims.
    pub reset: ClockReset,
    /// The key that signed it.
    pub kid: Kid,
    /// The binary bytes exactly as received.
    pub bytes: Vec<u8>,
}

/// Verifies a clock reset in either spelling against the keys allowed to
/// sign one: the issuer keys (the vendor key, or the root's issuer role).
pub fn verify_clock_reset(input: &[u8], issuers: &TrustedKeys) -> Result<VerifiedClockReset> {
    let bytes = crate::armor::dearmor(input, Some(DocKind::ClockReset))?;
    let opened = envelope::open(&bytes, DocKind::ClockReset, issuers)?;
    let reset = ClockReset::from_cbor(&opened.payload)?;
    Ok(VerifiedClockReset {
        reset,
        kid: opened.kid,
        bytes,
    })
}

/// What taking a reset does to the cluster's mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// The mark goes from `from` down to `to` (the reset's `iat`).
    Lowered {
        /// The mark before.
        from: Timestamp,
        /// The mark after.
        to: Timestamp,
    },
    /// The mark is not ahead of the reset's `iat`: nothing to lower, and
    /// the reset is not used up.
    NotAhead {
        /// The mark as it stays.
        mark: Timestamp,
    },
}

/// Why a genuine clock reset is refused by this cluster. Nothing changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClockResetRefusal {
    /// It names another cluster.
    #[error("this clock reset is for cluster {reset}, and this is cluster {ours}: use it on the cluster it names")]
    OtherCluster {
        /// The reset's cluster.
        reset: String,
        /// This cluster.
        ours: String,
    },
    /// This cluster took this reset before.
    #[error("this clock reset ({id}) was already used on this cluster; a reset is taken once: ask the vendor for a new one if the clock is wrong again")]
    AlreadyUsed {
        /// The reset's id.
        id: String,
    },
    /// The reset's validity ended.
    #[error("this clock reset expired at {expires} (the clock reads {now}): ask the vendor for a new one")]
    Expired {
        /// `exp`, RFC 3339.
        expires: String,
        /// The clock, RFC 3339.
        now: String,
    },
    /// The clock is still far behind the vendor's time when it signed: the
    /// cluster would stay `clock_tampered`, and the reset would be spent.
    #[error("the clock reads {now}, more than the tolerance before this reset was signed ({issued}): set the clock right first (NTP), then use the reset")]
    ClockBehind {
        /// The clock, RFC 3339.
        now: String,
        /// `iat`, RFC 3339.
        issued: String,
    },
    /// The mark moved past the one the reset was made for.
    #[error("the trusted-time mark is {mark}, later than the {reset_mark} this reset was made for: ask the vendor for a reset naming the mark `kaching-verifier status` shows now")]
    MarkMoved {
        /// The cluster's mark, RFC 3339.
        mark: String,
        /// The reset's `mark`, RFC 3339.
        reset_mark: String,
    },
}

/// Decides whether cluster `ours`, whose trusted-time mark is `mark` and
/// whose clock reads `now`, takes `reset`; `used` says whether this cluster
/// took a reset with this id before. `tolerance` is the cluster's clock
/// tolerance (the same one that decides `clock_tampered`).
///
/// Taken when the reset names this cluster, is unused and unexpired, the
/// clock is not more than `tolerance` behind the reset's `iat`, and the mark
/// is no later than the one the reset names. The new mark is the reset's
/// `iat`: the vendor's clock, never the customer's.
pub fn take(
    reset: &ClockReset,
    ours: &str,
    mark: Timestamp,
    now: Timestamp,
    tolerance: u64,
    used: bool,
) -> std::result::Result<Taken, ClockResetRefusal> {
    if reset.cluster_id != ours {
        return Err(ClockResetRefusal::OtherCluster {
            reset: reset.cluster_id.clone(),
            ours: ours.to_string(),
        });
    }
    if used {
        return Err(ClockResetRefusal::AlreadyUsed {
            id: reset.id_text(),
        });
    }
    if now > reset.expires {
        return Err(ClockResetRefusal::Expired {
            expires: rfc3339(reset.expires),
            now: rfc3339(now),
        });
    }
    if now.saturating_add(tolerance) < reset.issued {
        return Err(ClockResetRefusal::ClockBehind {
            now: rfc3339(now),
            issued: rfc3339(reset.issued),
        });
    }
    if mark > reset.mark {
        return Err(ClockResetRefusal::MarkMoved {
            mark: rfc3339(mark),
            reset_mark: rfc3339(reset.mark),
        });
    }
    if mark <= reset.issued {
        return Ok(Taken::NotAhead { mark });
    }
    Ok(Taken::Lowered {
        from: mark,
        to: reset.issued,
    })
}

/// Does `reset` account for a usage report chain whose trusted-time mark
/// went from `earlier` down to `later` (the vendor's `time_back` finding)?
/// It does when the earlier mark is one the reset could lower and the later
/// one is at or past the time the reset set: what a cluster that took it
/// reports next. A mark that went below the reset's time is still flagged.
pub fn explains(reset: &ClockReset, earlier: Timestamp, later: Timestamp) -> bool {
    later < earlier && earlier <= reset.mark && later >= reset.issued
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = crate::time::DAY;
    const NOW: Timestamp = 1_796_000_000; // late 2026
    const AHEAD: Timestamp = NOW + 1_000 * DAY; // a clock once wrong by years

    fn reset() -> ClockReset {
        ClockReset {
            id: [7; 16],
            cluster_id: "c1".into(),
            mark: AHEAD,
            issued: NOW,
            expires: NOW + 7 * DAY,
        }
    }

    #[test]
    fn a_reset_lowers_the_mark_to_the_vendors_time() {
        assert_eq!(
            take(&reset(), "c1", AHEAD, NOW + 60, DAY, false),
            Ok(Taken::Lowered {
                from: AHEAD,
                to: NOW
            })
        );
        // A mark below the one named (it cannot grow while the clock is
        // behind it, but a restore could lower it) is lowered all the same.
        assert_eq!(
            take(&reset(), "c1", AHEAD - DAY, NOW, DAY, false),
            Ok(Taken::Lowered {
                from: AHEAD - DAY,
                to: NOW
            })
        );
    }

    #[test]
    fn a_reset_is_refused_on_another_cluster_twice_late_or_for_an_older_mark() {
        let r = reset();
        assert!(matches!(
            take(&r, "c2", AHEAD, NOW, DAY, false),
            Err(ClockResetRefusal::OtherCluster { .. })
        ));
        assert!(matches!(
            take(&r, "c1", AHEAD, NOW, DAY, true),
            Err(ClockResetRefusal::AlreadyUsed { .. })
        ));
        assert!(matches!(
            take(&r, "c1", AHEAD, r.expires + 1, DAY, false),
            Err(ClockResetRefusal::Expired { .. })
        ));
        assert_eq!(
            take(&r, "c1", AHEAD, r.expires, DAY, false),
            Ok(Taken::Lowered {
                from: AHEAD,
                to: NOW
            })
        );
        assert!(matches!(
            take(&r, "c1", AHEAD + 1, NOW, DAY, false),
            Err(ClockResetRefusal::MarkMoved { .. })
        ));
    }

    #[test]
    fn a_reset_waits_for_a_clock_still_behind_and_lowers_nothing_not_ahead() {
        let r = reset();
        assert!(matches!(
            take(&r, "c1", AHEAD, NOW - DAY - 1, DAY, false),
            Err(ClockResetRefusal::ClockBehind { .. })
        ));
        assert!(take(&r, "c1", AHEAD, NOW - DAY, DAY, false).is_ok());
        assert_eq!(
            take(&r, "c1", NOW - 5, NOW, DAY, false),
            Ok(Taken::NotAhead { mark: NOW - 5 })
        );
        assert_eq!(
            take(&r, "c1", NOW, NOW, DAY, false),
            Ok(Taken::NotAhead { mark: NOW })
        );
    }

    #[test]
    fn a_reset_explains_the_mark_going_back_to_its_time_and_no_further() {
        let r = reset();
        assert!(explains(&r, AHEAD, NOW));
        assert!(explains(&r, AHEAD - DAY, NOW + DAY));
        assert!(!explains(&r, AHEAD, NOW - 1), "below the vendor's time");
        assert!(
            !explains(&r, AHEAD + 1, NOW),
            "a mark the reset could not lower"
        );
        assert!(!explains(&r, NOW, NOW), "nothing went back");
    }

    #[test]
    fn claims_round_trip_and_refuse_disorder() {
        let r = reset();
        assert_eq!(ClockReset::from_cbor(&r.to_cbor()).unwrap(), r);
        let bad = ClockReset {
            expires: r.issued,
            ..r.clone()
        };
        assert!(ClockReset::from_cbor(&bad.to_cbor()).is_err());
        let lowers_nothing = ClockReset {
            mark: r.issued,
            ..r.clone()
        };
        assert!(ClockReset::from_cbor(&lowers_nothing.to_cbor()).is_err());
        let no_cluster = ClockReset {
            cluster_id: String::new(),
            ..r
        };
        assert!(ClockReset::from_cbor(&no_cluster.to_cbor()).is_err());
    }

    #[test]
    fn signed_by_an_issuer_it_verifies_and_by_another_key_it_does_not() {
        let vendor = SecretKey::from_seed(&[1; 32]);
        let other = SecretKey::from_seed(&[2; 32]);
        let signed = reset().sign(&vendor);
        let issuers = TrustedKeys::from(vendor.public());
        let v = verify_clock_reset(&signed, &issuers).unwrap();
        assert_eq!(v.reset, reset());
        let armored = crate::armor::armor(DocKind::ClockReset, &signed);
        assert!(verify_clock_reset(armored.as_bytes(), &issuers).is_ok());
        assert!(verify_clock_reset(&reset().sign(&other), &issuers).is_err());
        let mut tampered = signed.clone();
        let at = tampered.len() - 70;
        tampered[at] ^= 1;
        assert!(verify_clock_reset(&tampered, &issuers).is_err());
        let receipt_kind = envelope::sign(DocKind::Receipt, reset().to_cbor(), &vendor);
        assert!(verify_clock_reset(&receipt_kind, &issuers).is_err());
    }
}
