//! Whether a verified license can be used at a given time at all: not
//! before its `nbf` (less the allowed skew), not once its grace period is
//! over. A license that cannot is never put in place of one that can (a
//! validly signed but stale or early file must not break a licensed
//! cluster); when nothing usable is in force it is used anyway, and the
//! verdict says `expired` or `not_yet_valid`. The boundaries are the ones
//! [`super::evaluate`] uses.

use std::fmt;

use super::inputs::Settings;
use crate::license::License;
use crate::time::{rfc3339, Timestamp};

/// Why a license cannot be used at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unusable {
    /// Its validity has not started yet.
    NotYetValid {
        /// The license's `nbf`.
        not_before: Timestamp,
    },
    /// It expired and its grace period is over.
    Expired {
        /// The license's `exp`.
        expires_at: Timestamp,
        /// `exp` plus its grace period.
        grace_end: Timestamp,
    },
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unusable::NotYetValid { not_before } => {
                write!(f, "is not valid until {}", rfc3339(*not_before))
            }
            Unusable::Expired {
                expires_at,
                grace_end,
            } if grace_end > expires_at => write!(
                f,
                "expired on {} (its grace period ended {})",
                rfc3339(*expires_at),
                rfc3339(*grace_end)
            ),
            Unusable::Expired { expires_at, .. } => {
                write!(f, "expired on {}", rfc3339(*expires_at))
            }
        }
    }
}

/// Checks that `license` can be used at `t`: `t + nbf_skew ≥ nbf` and
/// `t < exp + grace` (the same boundaries as the `not_yet_valid` and
/// `expired` states). Pure: the time is an argument.
pub fn usable_at(license: &License, settings: &Settings, t: Timestamp) -> Result<(), Unusable> {
    if t.saturating_add(settings.nbf_skew) < license.not_before {
        return Err(Unusable::NotYetValid {
            not_before: license.not_before,
        });
    }
    let grace_end = license.expires_at.saturating_add(license.grace);
    if t >= grace_end {
        return Err(Unusable::Expired {
            expires_at: license.expires_at,
            grace_end,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn license(nbf: Timestamp, exp: Timestamp, grace: Timestamp) -> License {
        License {
            not_before: nbf,
            expires_at: exp,
            grace,
            ..crate::license::sample()
        }
    }

    #[test]
    fn usable_between_nbf_less_skew_and_the_end_of_grace() {
        let s = Settings::default();
        let l = license(1_000, 2_000, 100);
        assert_eq!(
            usable_at(&l, &s, 1_000 - s.nbf_skew - 1),
            Err(Unusable::NotYetValid { not_before: 1_000 })
        );
        assert_eq!(usable_at(&l, &s, 1_000 - s.nbf_skew), Ok(()));
        // In grace it is still usable: the verdict says grace.
        assert_eq!(usable_at(&l, &s, 2_050), Ok(()));
        assert_eq!(
            usable_at(&l, &s, 2_100),
            Err(Unusable::Expired {
                expires_at: 2_000,
                grace_end: 2_100
            })
        );
    }

    #[test]
    fn the_reason_names_the_dates() {
        let e = Unusable::Expired {
            expires_at: 0,
            grace_end: 86_400,
        };
        assert_eq!(
            e.to_string(),
            "expired on 1970-01-01T00:00:00Z (its grace period ended 1970-01-02T00:00:00Z)"
        );
        let n = Unusable::NotYetValid { not_before: 0 };
        assert_eq!(n.to_string(), "is not valid until 1970-01-01T00:00:00Z");
    }
}
