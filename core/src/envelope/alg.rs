//! Which COSE algorithm identifier a document names. Both identifiers mean
//! the same pure Ed25519 signature (RFC 8032); only the header value differs,
//! so the choice changes the signed bytes but never what verifies them.

use std::fmt;

use coset::iana;

/// The `alg` (protected-header label 1) a writer puts in a document. Readers
/// accept both; every other algorithm is refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Alg {
    /// −8, "EdDSA" (RFC 9053): the default, because deployed COSE libraries
    /// (pycose 1.1, go-cose 1.3) verify it and reject −19.
    #[default]
    EdDSA,
    /// −19, "Ed25519" (RFC 9864): the fully specified identifier, written
    /// when a vendor asks for it (`alg = "Ed25519"` in licensegen's kaching.toml).
    Ed25519,
}

impl Alg {
    /// Both spellings, the default first.
    pub const ALL: [Alg; 2] = [Alg::EdDSA, Alg::Ed25519];

    /// The COSE algorithm value written in the header: −8 or −19.
    pub fn cose_value(self) -> i64 {
        match self {
            Alg::EdDSA => -8,
            Alg::Ed25519 => -19,
        }
    }

    /// The IANA name, as a vendor writes it in kaching.toml.
    pub fn name(self) -> &'static str {
        match self {
            Alg::EdDSA => "EdDSA",
            Alg::Ed25519 => "Ed25519",
        }
    }

    /// The alg with this IANA name, ignoring ASCII case; `None` for any other name.
    pub fn from_name(name: &str) -> Option<Alg> {
        Alg::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name.trim()))
    }

    /// The same value as coset names it.
    pub(crate) fn iana(self) -> iana::Algorithm {
        match self {
            Alg::EdDSA => iana::Algorithm::EdDSA,
            Alg::Ed25519 => iana::Algorithm::Ed25519,
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (COSE {})", self.name(), self.cose_value())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_the_iana_registrations() {
        for alg in Alg::ALL {
            assert_eq!(alg.iana() as i64, alg.cose_value(), "{alg}");
            assert_eq!(Alg::from_name(alg.name()), Some(alg));
        }
        assert_eq!(Alg::default(), Alg::EdDSA);
        assert_eq!(Alg::from_name(" ed25519 "), Some(Alg::Ed25519));
        assert_eq!(Alg::from_name("ES256"), None);
        assert_eq!(Alg::EdDSA.to_string(), "EdDSA (COSE -8)");
    }
}
