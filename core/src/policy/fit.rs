//! Whether a verified license belongs on this deployment at all: made for
//! the product guarded here, and, when bound, bound to this cluster. A
//! license that does not fit is `invalid`, whatever its dates say.

use std::fmt;

use super::inputs::Settings;
use crate::license::License;

/// Why a license whose signature verified still does not belong here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misfit<'a> {
    /// The license is for another product.
    Audience {
        /// The license's `aud`.
        license: &'a str,
        /// The product this deployment guards.
        here: &'a str,
    },
    /// The license is bound to another cluster, or this cluster's id is unknown.
    Cluster {
        /// The cluster the license is bound to.
        bound: &'a str,
        /// This cluster's id, when known.
        here: Option<&'a str>,
    },
}

impl fmt::Display for Misfit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Misfit::Audience { license, here } => write!(
                f,
                "license is for product {license:?}, this verifier guards {here:?}: ask your vendor for a {here} license"
            ),
            Misfit::Cluster { bound, here } => write!(
                f,
                "license is bound to cluster {bound}, this is cluster {}: send an activation request from this cluster to your vendor",
                here.unwrap_or("(unknown)")
            ),
        }
    }
}

/// Checks that a verified license is meant for this deployment: its audience
/// is the product in `settings`, and a cluster binding names
/// `settings.cluster_id`. The audience is checked first.
pub fn fit<'a>(license: &'a License, settings: &'a Settings) -> Result<(), Misfit<'a>> {
    if license.audience != settings.audience {
        return Err(Misfit::Audience {
            license: &license.audience,
            here: &settings.audience,
        });
    }
    match (&license.cluster, &settings.cluster_id) {
        (Some(bound), here) if Some(bound) != here.as_ref() => Err(Misfit::Cluster {
            bound,
            here: here.as_deref(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn license(audience: &str, cluster: Option<&str>) -> License {
        License {
            audience: audience.into(),
            cluster: cluster.map(Into::into),
            ..crate::license::sample()
        }
    }

    fn here(cluster: Option<&str>) -> Settings {
        Settings {
            cluster_id: cluster.map(Into::into),
            ..Settings::default()
        }
    }

    #[test]
    fn unbound_license_for_this_product_fits_any_cluster() {
        let l = license("bzzz", None);
        assert_eq!(fit(&l, &here(None)), Ok(()));
        assert_eq!(fit(&l, &here(Some("abc"))), Ok(()));
    }

    #[test]
    fn bound_license_fits_only_its_cluster() {
        let l = license("bzzz", Some("abc"));
        assert_eq!(fit(&l, &here(Some("abc"))), Ok(()));
        assert_eq!(
            fit(&l, &here(Some("xyz"))),
            Err(Misfit::Cluster {
                bound: "abc",
                here: Some("xyz")
            })
        );
        let unknown = here(None);
        let err = fit(&l, &unknown).expect_err("an unknown cluster cannot hold a binding");
        assert_eq!(
            err.to_string(),
            "license is bound to cluster abc, this is cluster (unknown): send an activation request from this cluster to your vendor"
        );
    }

    #[test]
    fn audience_is_checked_before_the_binding() {
        let l = license("other", Some("abc"));
        let s = here(Some("xyz"));
        let err = fit(&l, &s).expect_err("another product");
        assert_eq!(
            err,
            Misfit::Audience {
                license: "other",
                here: "bzzz"
            }
        );
        assert_eq!(
            err.to_string(),
            "license is for product \"other\", this verifier guards \"bzzz\": ask your vendor for a bzzz license"
        );
    }
}
