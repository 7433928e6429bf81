//! The vendor private key at rest: PKCS#8 PEM inside an armored age file,
//! encrypted to a passphrase (scrypt) or to an age X25519 recipient.
//!
//! The key is only ever decrypted into memory (zeroized buffers); nothing in
//! this module writes plaintext key material anywhere.

mod passphrase;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use age::armor::{ArmoredReader, ArmoredWriter, Format};
use age::secrecy::SecretString;
use anyhow::{Context, Result};
use kaching_core::{PublicKey, SecretKey};
use zeroize::Zeroizing;

pub use passphrase::{PassphraseSource, PASSPHRASE_ENV};

/// Test-only: scrypt work factor (log2 N) for new passphrase-encrypted keys,
/// so test suites do not spend seconds per key. Never set it in real use.
pub const TEST_SCRYPT_ENV: &str = "KACHING_TEST_SCRYPT_LOG_N";

/// Largest scrypt work factor accepted when decrypting (2^22: about 4 GiB of
/// memory). vendor.key is our own file, so the bound only stops a planted
/// file from exhausting the machine.
const MAX_SCRYPT_LOG_N: u8 = 22;

/// How a new vendor key is protected.
pub enum Protection {
    /// age scrypt with this passphrase.
    Passphrase(SecretString),
    /// age X25519 to this recipient (automation; unlock with `--identity`).
    Recipient(Box<age::x25519::Recipient>),
}

impl Protection {
    /// Parses an `age1…` recipient.
    pub fn recipient(text: &str) -> Result<Self> {
        text.trim()
            .parse::<age::x25519::Recipient>()
            .map(|r| Protection::Recipient(Box::new(r)))
            .map_err(|e| {
                crate::error::usage(format!(
                    "{text:?} is not an age X25519 recipient ({e}): pass the age1… line from `age-keygen`"
                ))
            })
    }
}

/// How an existing vendor key is unlocked.
#[derive(Debug, Clone, Default)]
pub struct Unlock {
    /// Passphrase sources (for scrypt-encrypted keys).
    pub passphrase: PassphraseSource,
    /// `--identity FILE` (for recipient-encrypted keys).
    pub identity: Option<PathBuf>,
}

/// Encrypts a private key into an armored age file.
pub fn seal(key: &SecretKey, protection: &Protection) -> Result<Vec<u8>> {
    let pem = key.to_pkcs8_pem().context("cannot encode the vendor key")?;
    let encryptor = match protection {
        Protection::Passphrase(p) => {
            let mut r = age::scrypt::Recipient::new(p.clone());
            if let Some(log_n) = test_work_factor() {
                crate::output::note(&format!(
                    "warning: {TEST_SCRYPT_ENV}={log_n} weakens the key's passphrase protection: for test suites only"
                ));
                r.set_work_factor(log_n);
            }
            age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient))
        }
        Protection::Recipient(r) => {
            age::Encryptor::with_recipients(std::iter::once(r.as_ref() as &dyn age::Recipient))
        }
    }
    .map_err(|e| anyhow::anyhow!("cannot encrypt the vendor key: {e}"))?;
    let armored = ArmoredWriter::wrap_output(Vec::new(), Format::AsciiArmor)?;
    let mut w = encryptor.wrap_output(armored)?;
    w.write_all(pem.as_bytes())?;
    Ok(w.finish()?.finish()?)
}

fn test_work_factor() -> Option<u8> {
    std::env::var(TEST_SCRYPT_ENV)
        .ok()
        .and_then(|v| v.parse::<u8>().ok())
        .filter(|n| (1..=30).contains(n))
}

/// Decrypts `vendor.key` into memory and checks it matches `vendor.pub`.
pub fn unseal(key_path: &Path, expected: &PublicKey, unlock: &Unlock) -> Result<SecretKey> {
    let key = open(key_path, unlock, None)?;
    matches_pub(key_path, key, expected)
}

/// [`unseal`] with a passphrase already in hand (the desk's unlock form)
/// instead of the command line's sources; an identity-encrypted key still
/// needs `unlock.identity`.
pub fn unseal_with(
    key_path: &Path,
    expected: &PublicKey,
    unlock: &Unlock,
    passphrase: SecretString,
) -> Result<SecretKey> {
    let key = open(key_path, unlock, Some(passphrase))?;
    matches_pub(key_path, key, expected)
}

fn matches_pub(key_path: &Path, key: SecretKey, expected: &PublicKey) -> Result<SecretKey> {
    if key.public().kid() != expected.kid() {
        anyhow::bail!(
            "{} does not match vendor.pub (kid {} vs {}): restore the matching pair from backup",
            key_path.display(),
            key.public().kid(),
            expected.kid()
        );
    }
    Ok(key)
}

/// The public key file written beside a key file: `X.key` → `X.pub`.
pub fn pub_file_of(key_path: &Path) -> PathBuf {
    key_path.with_extension("pub")
}

/// Decrypts a key file that is not the vendor key (a root key holder's, a
/// revoker's) into memory; when the `.pub` written beside it is there, the
/// key must match it.
pub fn unseal_file(key_path: &Path, unlock: &Unlock) -> Result<SecretKey> {
    unseal_file_with(key_path, unlock, None)
}

/// [`unseal_file`] with a passphrase already typed (the desk's form); `None`
/// takes it from `unlock` as the CLI does.
pub fn unseal_file_with(
    key_path: &Path,
    unlock: &Unlock,
    passphrase: Option<SecretString>,
) -> Result<SecretKey> {
    let key = open(key_path, unlock, passphrase)?;
    let pub_path = pub_file_of(key_path);
    if let Ok(text) = std::fs::read_to_string(&pub_path) {
        let expected = PublicKey::from_pem(&text).with_context(|| {
            format!(
                "{} is not a public key: restore it from backup",
                pub_path.display()
            )
        })?;
        if expected.kid() != key.public().kid() {
            anyhow::bail!(
                "{} does not match {} (kid {} vs {}): restore the matching pair from backup",
                key_path.display(),
                pub_path.display(),
                key.public().kid(),
                expected.kid()
            );
        }
    }
    Ok(key)
}

fn open(key_path: &Path, unlock: &Unlock, given: Option<SecretString>) -> Result<SecretKey> {
    let file = crate::fsutil::read(key_path)?;
    let not_age = || {
        anyhow::anyhow!(
            "{} is not an age-encrypted key file: restore it from backup",
            key_path.display()
        )
    };
    let decryptor = age::Decryptor::new(ArmoredReader::new(&file[..])).map_err(|_| not_age())?;
    let reader = if decryptor.is_scrypt() {
        let pass = match given {
            Some(p) => p,
            None => unlock.passphrase.existing_passphrase(key_path)?,
        };
        let mut id = age::scrypt::Identity::new(pass);
        id.set_max_work_factor(MAX_SCRYPT_LOG_N);
        decryptor
            .decrypt(std::iter::once(&id as &dyn age::Identity))
            .map_err(|e| match e {
                age::DecryptError::ExcessiveWork { required, .. } => anyhow::anyhow!(
                    "{} needs scrypt work factor {required}, above the limit {MAX_SCRYPT_LOG_N}: re-encrypt it with `age`",
                    key_path.display()
                ),
                _ => anyhow::anyhow!(
                    "wrong passphrase for {}: try again (check --passphrase-file or {PASSPHRASE_ENV}); nothing was changed",
                    key_path.display()
                ),
            })?
    } else {
        let Some(path) = &unlock.identity else {
            return Err(crate::error::usage(format!(
                "{} is encrypted to an age recipient: pass --identity FILE (or set KACHING_IDENTITY) with the matching age identity",
                key_path.display()
            )));
        };
        let ids = age::IdentityFile::from_file(path.to_string_lossy().into_owned())
            .with_context(|| format!("cannot read age identity file {}", path.display()))?
            .into_identities()
            .map_err(|e| anyhow::anyhow!("age identity file {}: {e}", path.display()))?;
        decryptor
            .decrypt(ids.iter().map(|i| i.as_ref() as &dyn age::Identity))
            .map_err(|_| {
                anyhow::anyhow!(
                    "identity {} does not unlock {}: use the identity the key was encrypted to; nothing was changed",
                    path.display(),
                    key_path.display()
                )
            })?
    };
    // Pre-size the buffer so it never reallocates (which would leave copies
    // of the key in freed memory).
    let mut plain = Zeroizing::new(Vec::with_capacity(16 * 1024));
    reader
        .take(16 * 1024)
        .read_to_end(&mut plain)
        .map_err(|_| not_age())?;
    let pem = std::str::from_utf8(&plain).map_err(|_| not_age())?;
    SecretKey::from_pkcs8_pem(pem).map_err(|_| not_age())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_key_round_trips_and_wrong_passphrase_fails() {
        std::env::set_var(TEST_SCRYPT_ENV, "4");
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::generate();
        let sealed = seal(
            &key,
            &Protection::Passphrase(SecretString::from("correct horse".to_string())),
        )
        .unwrap();
        let text = String::from_utf8(sealed.clone()).unwrap();
        assert!(text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
        assert!(!text.contains("PRIVATE KEY"));
        let path = dir.path().join("vendor.key");
        std::fs::write(&path, &sealed).unwrap();
        let pass_file = dir.path().join("pass");
        let unlock = |p: &str| {
            std::fs::write(&pass_file, p).unwrap();
            // A passphrase file others can read is refused (passphrase.rs).
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&pass_file, std::fs::Permissions::from_mode(0o600))
                    .unwrap();
            }
            Unlock {
                passphrase: PassphraseSource {
                    file: Some(pass_file.clone()),
                },
                identity: None,
            }
        };
        let back = unseal(&path, &key.public(), &unlock("correct horse\n")).unwrap();
        assert_eq!(back.public(), key.public());
        let err = unseal(&path, &key.public(), &unlock("wrong")).unwrap_err();
        assert!(err.to_string().starts_with("wrong passphrase"), "{err}");
    }
}
