//! Vendor and cluster keys: Ed25519, SPKI PEM public keys, PKCS#8 v1 PEM private keys.
//!
//! A private key leaves this module only as a [`Zeroizing`] PEM string handed to
//! whoever encrypts it (licensegen wraps it in age). There is deliberately no
//! function here that writes a key to a path.

use std::collections::BTreeMap;
use std::fmt;

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

pub use crate::kid::{hex, Kid};

/// A public key that may verify signatures: parsed, not weak, with its kid.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    kid: Kid,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.kid)
    }
}

impl PublicKey {
    /// Accepts raw 32 bytes, refusing weak (small-order) points.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| {
            Error::Key(format!(
                "an Ed25519 public key is 32 bytes, not {}",
                bytes.len()
            ))
        })?;
        let key = VerifyingKey::from_bytes(&arr)
            .map_err(|_| Error::Key("not a point on the Ed25519 curve".into()))?;
        Self::from_verifying_key(key)
    }

    /// Wraps a dalek key, refusing weak keys.
    pub fn from_verifying_key(key: VerifyingKey) -> Result<Self> {
        if key.is_weak() {
            return Err(Error::Key("weak (small-order) public key refused".into()));
        }
        Ok(PublicKey {
            kid: Kid::of(&key),
            key,
        })
    }

    /// Parses one SPKI PEM block (`-----BEGIN PUBLIC KEY-----`).
    pub fn from_pem(pem: &str) -> Result<Self> {
        let key = VerifyingKey::from_public_key_pem(pem.trim())
            .map_err(|e| Error::Key(format!("not an Ed25519 SPKI PEM public key ({e})")))?;
        Self::from_verifying_key(key)
    }

    /// SPKI PEM, readable by openssl and any Ed25519 library.
    pub fn to_pem(&self) -> String {
        // Encoding a valid key into SPKI cannot fail; fall back to an empty
        // string rather than panic if the pkcs8 crate ever disagrees.
        self.key
            .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .unwrap_or_default()
    }

    /// The kid (first 8 bytes of SHA-256 of the raw key).
    pub fn kid(&self) -> Kid {
        self.kid
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }

    /// SHA-256 fingerprint of the raw key, hex.
    pub fn fingerprint(&self) -> String {
        hex(&Sha256::digest(self.key.as_bytes()))
    }

    /// Strict Ed25519 verification (rejects malleable and small-order signatures).
    pub fn verify_strict(&self, message: &[u8], signature: &[u8]) -> Result<()> {
        let sig = ed25519_dalek::Signature::from_slice(signature)
            .map_err(|_| Error::BadSignature(self.kid))?;
        self.key
            .verify_strict(message, &sig)
            .map_err(|_| Error::BadSignature(self.kid))
    }
}

/// A private signing key. It has no `Debug` output of its secret, no serde, and
/// no way to reach a file except through [`SecretKey::to_pkcs8_pem`], whose
/// result a caller must encrypt.
pub struct SecretKey {
    key: SigningKey,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({}, secret redacted)", self.public().kid())
    }
}

impl SecretKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        SecretKey {
            key: SigningKey::generate(&mut rand_core::OsRng),
        }
    }

    /// A key derived from a 32-byte seed. For test fixtures and for loading;
    /// never derive production keys from guessable seeds.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        SecretKey {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// Parses PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), e.g. after age
    /// decryption: v1 (what [`SecretKey::to_pkcs8_pem`] writes) or v2 with the
    /// public key (what earlier versions wrote), whose public key must match.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self> {
        let key = SigningKey::from_pkcs8_pem(pem.trim())
            .map_err(|e| Error::Key(format!("not an Ed25519 PKCS#8 PEM private key ({e})")))?;
        Ok(SecretKey { key })
    }

    /// The 32-byte seed of a PKCS#8 PEM private key, without deriving the
    /// public half (a scalar multiplication, ~170k instructions) that
    /// [`SecretKey::from_pkcs8_pem`] does at once. For a one-shot reader
    /// that may not need the key at all (`kaching-verifier check`);
    /// [`SecretKey::from_seed`] makes the key from it later. `Ok(None)` for
    /// a v2 file that carries a public key, which only
    /// [`SecretKey::from_pkcs8_pem`] checks against the seed.
    pub fn pkcs8_pem_seed(pem: &str) -> Result<Option<Zeroizing<[u8; 32]>>> {
        let pair = ed25519_dalek::pkcs8::KeypairBytes::from_pkcs8_pem(pem.trim())
            .map_err(|e| Error::Key(format!("not an Ed25519 PKCS#8 PEM private key ({e})")))?;
        if pair.public_key.is_some() {
            return Ok(None);
        }
        Ok(Some(Zeroizing::new(pair.secret_key)))
    }

    /// SHA-256 over `label` and a 32-byte seed: says whether a key file
    /// still holds a given key without storing or deriving anything from
    /// its public half. The label keeps fingerprints of different uses apart.
    pub fn seed_fingerprint(label: &[u8], seed: &[u8; 32]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(label);
        h.update(seed);
        h.finalize().into()
    }

    /// [`SecretKey::seed_fingerprint`] of this key's seed.
    pub fn fingerprint(&self, label: &[u8]) -> [u8; 32] {
        Self::seed_fingerprint(label, self.key.as_bytes())
    }

    /// PKCS#8 v1 PEM of the secret (RFC 5208 `PrivateKeyInfo`, RFC 8410),
    /// wiped from memory on drop. Encrypt it before it goes anywhere near a disk.
    ///
    /// v1, not the v2 `OneAsymmetricKey` that ed25519-dalek writes: OpenSSL
    /// 3.0, Node and pyca/cryptography refuse v2 Ed25519 keys, and a vendor
    /// must be able to take the key to another tool or an HSM.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>> {
        pkcs8_v1_pem(self.key.as_bytes())
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        let key = self.key.verifying_key();
        PublicKey {
            kid: Kid::of(&key),
            key,
        }
    }

    /// Signs a message (Ed25519 is deterministic: same key, same message, same bytes).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

/// The fixed start of an Ed25519 PKCS#8 v1 `PrivateKeyInfo` (RFC 8410 §7):
/// SEQUENCE (46 bytes) { INTEGER 0 (v1), SEQUENCE { OID 1.3.101.112 }
/// (id-Ed25519, no parameters), OCTET STRING (34) { OCTET STRING (32) <seed> } }.
const PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The 48-byte PKCS#8 v1 DER of an Ed25519 seed, wiped on drop.
fn pkcs8_v1_der(seed: &[u8; 32]) -> Zeroizing<[u8; 48]> {
    let mut der = Zeroizing::new([0u8; 48]);
    der[..16].copy_from_slice(&PKCS8_V1_PREFIX);
    der[16..].copy_from_slice(seed);
    der
}

/// PEM (RFC 7468) of the PKCS#8 v1 DER. Every buffer the secret passes
/// through is wiped on drop; 48 bytes are exactly one 64-column base64 line.
fn pkcs8_v1_pem(seed: &[u8; 32]) -> Result<Zeroizing<String>> {
    use base64::Engine;
    const BEGIN: &str = "-----BEGIN PRIVATE KEY-----\n";
    const END: &str = "-----END PRIVATE KEY-----\n";
    let der = pkcs8_v1_der(seed);
    let mut line = Zeroizing::new([0u8; 64]);
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(der.as_slice(), line.as_mut_slice())
        .map_err(|e| Error::Key(format!("cannot encode private key: {e}")))?;
    let mut pem = Zeroizing::new(String::with_capacity(BEGIN.len() + 65 + END.len()));
    pem.push_str(BEGIN);
    // Base64 output is ASCII, so every byte is a char; the capacity above
    // means no reallocation leaves a copy behind.
    pem.extend(line[..written].iter().map(|&b| char::from(b)));
    pem.push('\n');
    pem.push_str(END);
    Ok(pem)
}

/// The set of vendor public keys a verifier trusts, looked up by kid.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    by_kid: BTreeMap<Kid, PublicKey>,
}

impl TrustedKeys {
    /// An empty set (every document is then refused as signed by an unknown key).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key; a second key with the same kid replaces the first.
    pub fn insert(&mut self, key: PublicKey) {
        self.by_kid.insert(key.kid(), key);
    }

    /// Parses every `PUBLIC KEY` PEM block in a text (one file may hold several,
    /// which is how a key rotation is rolled out).
    pub fn from_pem_bundle(text: &str) -> Result<Self> {
        let mut keys = TrustedKeys::new();
        let mut rest = text;
        const BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
        const END: &str = "-----END PUBLIC KEY-----";
        while let Some(start) = rest.find(BEGIN) {
            let after = &rest[start..];
            let end = after
                .find(END)
                .ok_or_else(|| Error::Key("PEM block has no END PUBLIC KEY line".into()))?;
            let block = &after[..end + END.len()];
            keys.insert(PublicKey::from_pem(block)?);
            rest = &after[end + END.len()..];
        }
        if keys.is_empty() {
            return Err(Error::Key(
                "no -----BEGIN PUBLIC KEY----- block found".into(),
            ));
        }
        Ok(keys)
    }

    /// The key with this kid, if trusted.
    pub fn get(&self, kid: &Kid) -> Option<&PublicKey> {
        self.by_kid.get(kid)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.by_kid.len()
    }

    /// True when no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.by_kid.is_empty()
    }

    /// The keys in kid order.
    pub fn iter(&self) -> impl Iterator<Item = &PublicKey> {
        self.by_kid.values()
    }
}

impl From<PublicKey> for TrustedKeys {
    fn from(key: PublicKey) -> Self {
        let mut keys = TrustedKeys::new();
        keys.insert(key);
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_keeps_kid() {
        let sk = SecretKey::from_seed(&[7; 32]);
        let pk = sk.public();
        let again = PublicKey::from_pem(&pk.to_pem()).expect("parse");
        assert_eq!(again.kid(), pk.kid());
        let pem = sk.to_pkcs8_pem().expect("pem");
        let sk2 = SecretKey::from_pkcs8_pem(&pem).expect("parse secret");
        assert_eq!(sk2.public().kid(), pk.kid());
    }

    /// Base64 of a PEM body, decoded (the test reads what was written).
    fn pem_der(pem: &str) -> Vec<u8> {
        use base64::Engine;
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .expect("base64")
    }

    #[test]
    fn private_key_pem_is_pkcs8_v1_and_reads_back() {
        let seed = [0x5a; 32];
        let sk = SecretKey::from_seed(&seed);
        let pem = sk.to_pkcs8_pem().expect("pem");
        let lines: Vec<&str> = pem.lines().collect();
        assert_eq!(lines.len(), 3, "{}", pem.as_str());
        assert_eq!(lines[0], "-----BEGIN PRIVATE KEY-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines[2], "-----END PRIVATE KEY-----");
        assert!(pem.ends_with("-----\n"));
        let mut expected = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        expected.extend_from_slice(&seed);
        assert_eq!(pem_der(&pem), expected, "PrivateKeyInfo v1, no public key");
        let again = SecretKey::from_pkcs8_pem(&pem).expect("reads back");
        assert_eq!(again.public(), sk.public());
        assert_eq!(again.sign(b"m"), sk.sign(b"m"));
        // The pkcs8 crate reads it as v1 with no public key: a second,
        // independent parser agrees on the structure.
        let der = pem_der(&pem);
        let info = ed25519_dalek::pkcs8::PrivateKeyInfo::try_from(der.as_slice()).expect("DER");
        assert!(info.public_key.is_none());
    }

    /// The fixture vendor key as KACHING wrote keys before it switched to v1:
    /// PKCS#8 v2 (`OneAsymmetricKey` with the public key). Existing vendor.key files
    /// and verifier state folders hold this form and must keep working.
    const V2_PEM: &str = "-----BEGIN PRIVATE KEY-----
MFECAQEwBQYDK2VwBCIEIEtBQ0hJTkcgVEVTVC1PTkxZIHZlbmRvciBrZXkgMDAx
gSEADZjYHSnOmxx2+Qa175+eJ3VQW1RbipaEXQ3F0pJZAPU=
-----END PRIVATE KEY-----
";

    #[test]
    fn pkcs8_v2_private_key_with_public_key_still_reads() {
        assert_eq!(pem_der(V2_PEM)[..5], [0x30, 0x51, 0x02, 0x01, 0x01], "v2");
        let sk = SecretKey::from_pkcs8_pem(V2_PEM).expect("v2 reads");
        let seed = b"KACHING TEST-ONLY vendor key 001";
        assert_eq!(sk.public(), SecretKey::from_seed(seed).public());
        assert_eq!(sk.public().kid().to_hex(), "86bdf61e30cf28eb");
        // Written back, it is v1.
        assert_eq!(
            pem_der(&sk.to_pkcs8_pem().expect("pem"))[..5],
            [0x30, 0x2e, 0x02, 0x01, 0x00]
        );
    }

    #[test]
    fn pkcs8_pem_seed_reads_the_seed_of_v1_and_defers_v2_to_the_checked_parse() {
        let seed = [0x5a; 32];
        let pem = SecretKey::from_seed(&seed).to_pkcs8_pem().expect("pem");
        let read = SecretKey::pkcs8_pem_seed(&pem).expect("v1 reads");
        assert_eq!(read.as_deref(), Some(&seed));
        // v2 carries a public key that must match the seed: no shortcut.
        assert!(SecretKey::pkcs8_pem_seed(V2_PEM)
            .expect("v2 parses")
            .is_none());
        let sk = SecretKey::from_seed(&seed);
        assert_eq!(
            sk.fingerprint(b"l"),
            SecretKey::seed_fingerprint(b"l", &seed)
        );
        assert_ne!(
            sk.fingerprint(b"l"),
            sk.fingerprint(b"m"),
            "the label counts"
        );
        assert_ne!(
            sk.fingerprint(b"l"),
            SecretKey::from_seed(&[0x5b; 32]).fingerprint(b"l")
        );
        assert!(matches!(
            SecretKey::pkcs8_pem_seed(
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
            ),
            Err(Error::Key(_))
        ));
    }

    #[test]
    fn pkcs8_v2_with_a_public_key_of_another_seed_is_refused() {
        // The seed of V2_PEM with another key's public key: a corrupted or
        // spliced file, refused rather than signing under a surprise kid.
        let mut der = pem_der(V2_PEM);
        let other = SecretKey::from_seed(&[9; 32]).public();
        let at = der.len() - 32;
        der[at..].copy_from_slice(other.as_bytes());
        use base64::Engine;
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(der)
        );
        assert!(matches!(
            SecretKey::from_pkcs8_pem(&pem),
            Err(Error::Key(_))
        ));
    }

    #[test]
    fn weak_public_key_refused() {
        // The identity point (y = 1) has small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(matches!(
            PublicKey::from_bytes(&identity),
            Err(Error::Key(_))
        ));
    }

    #[test]
    fn secret_debug_redacts() {
        let sk = SecretKey::from_seed(&[1; 32]);
        assert!(format!("{sk:?}").contains("redacted"));
    }

    #[test]
    fn bundle_with_two_keys_trusts_both() {
        let a = SecretKey::from_seed(&[1; 32]).public();
        let b = SecretKey::from_seed(&[2; 32]).public();
        let bundle = format!("# old\n{}\n# new\n{}", a.to_pem(), b.to_pem());
        let keys = TrustedKeys::from_pem_bundle(&bundle).expect("bundle");
        assert_eq!(keys.len(), 2);
        assert!(keys.get(&a.kid()).is_some() && keys.get(&b.kid()).is_some());
    }
}
