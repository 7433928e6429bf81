//! `key show`, `key export-public`, `key rotate`.

use anyhow::{Context, Result};
use kaching_core::SecretKey;
use serde::Serialize;

use super::root::Rotated;
use super::Ctx;
use crate::cli::KeyCommand;
use crate::fsutil::{write_atomic, write_new};
use crate::keystore::{pub_file_of, seal, Protection};
use crate::output::{json, line, out};
use crate::vendor_dir::{VendorDir, KEY_FILE, PUB_FILE, RETIRED_DIR};

#[derive(Serialize)]
struct KeyInfo {
    kid: String,
    algorithm: &'static str,
    /// The COSE alg documents name (kaching.toml `alg`): -8 or -19.
    cose_alg: i64,
    fingerprint_sha256: String,
    public_key_file: String,
    private_key_file: String,
    issuer: String,
    retired_kids: Vec<String>,
}

pub(super) fn key(ctx: &Ctx<'_>, k: &KeyCommand) -> Result<u8> {
    if let KeyCommand::New {
        out: path,
        recipient,
    } = k
    {
        return new_key(ctx, path, recipient.as_deref());
    }
    let v = ctx.vendor()?;
    let key = v.public_key()?;
    match k {
        KeyCommand::Show { json: as_json } => {
            let info = KeyInfo {
                kid: key.kid().to_hex(),
                algorithm: "Ed25519",
                cose_alg: v.config.alg.cose_value(),
                fingerprint_sha256: key.fingerprint(),
                public_key_file: v.path(PUB_FILE).display().to_string(),
                private_key_file: v.path(KEY_FILE).display().to_string(),
                issuer: v.config.issuer.clone(),
                retired_kids: v.retired_keys()?.iter().map(|k| k.kid().to_hex()).collect(),
            };
            if *as_json {
                json(&info)?;
            } else {
                let mut s = format!(
                    "kid:         {}\nalgorithm:   {}, signed as {}\nfingerprint: SHA256:{}\npublic key:  {}\nprivate key: {} (age-encrypted)\nissuer:      {}\n",
                    info.kid,
                    info.algorithm,
                    v.config.alg,
                    info.fingerprint_sha256,
                    info.public_key_file,
                    info.private_key_file,
                    info.issuer
                );
                for r in &info.retired_kids {
                    s.push_str(&format!(
                        "retired:     {r} (still trusted for documents it signed)\n"
                    ));
                }
                out(&s)?;
            }
        }
        KeyCommand::ExportPublic { out: path, all } => {
            let mut pem = key.to_pem();
            if *all {
                for r in v.retired_keys()? {
                    pem.push_str(&r.to_pem());
                }
            }
            match path {
                None => out(&pem)?,
                Some(path) => {
                    write_atomic(path, pem.as_bytes(), false)?;
                    line(&format!("wrote {}", path.display()))?;
                }
            }
        }
        KeyCommand::Rotate { recipient } => rotate(ctx, &v, recipient.as_deref())?,
        KeyCommand::New { .. } => {}
    }
    Ok(crate::exit::OK)
}

/// A key pair for another role: `path` gets the sealed private key, the
/// `.pub` beside it the public key. Needs no vendor directory (a revoker key
/// can be made on the machine that will keep it).
fn new_key(ctx: &Ctx<'_>, path: &std::path::Path, recipient: Option<&str>) -> Result<u8> {
    let pub_path = pub_file_of(path);
    if pub_path == path {
        return Err(crate::error::usage(format!(
            "{} would be both the private and the public key file: name it e.g. revoker.key",
            path.display()
        )));
    }
    crate::fsutil::check_new_file(path)?;
    crate::fsutil::check_new_file(&pub_path)?;
    let protection = match recipient {
        Some(r) => Protection::recipient(r)?,
        None => Protection::Passphrase(ctx.passphrase().new_passphrase_for("the new key")?),
    };
    let key = SecretKey::generate();
    write_new(path, &seal(&key, &protection)?, true)?;
    write_new(&pub_path, key.public().to_pem().as_bytes(), false)?;
    out(&format!(
        "new key {} in {} (public key: {})\nnext: give it a role in the next root, e.g. `licensegen role add revoker {}`\n",
        key.public().kid(),
        path.display(),
        pub_path.display(),
        pub_path.display()
    ))?;
    Ok(crate::exit::OK)
}

/// Retires the current key pair into `retired-keys/` and makes a new one.
/// The old private key stays encrypted; move it offline once no license
/// signed by it needs to be touched again.
fn rotate(ctx: &Ctx<'_>, v: &VendorDir, recipient: Option<&str>) -> Result<()> {
    // Unlocking proves the caller holds the current key.
    let old = ctx.unlock(v)?;
    let protection = match recipient {
        Some(r) => Protection::recipient(r)?,
        None => Protection::Passphrase(ctx.passphrase().new_passphrase()?),
    };
    let new = SecretKey::generate();
    // With a root, the rotation is also root v(N+1); check it can be made
    // before anything is replaced.
    super::root::check_rotatable(v)?;
    let sealed = seal(&new, &protection)?;
    let kid = old.public().kid();
    let retired = v.path(RETIRED_DIR);
    std::fs::create_dir_all(&retired)
        .with_context(|| format!("cannot create {}", retired.display()))?;
    // Retired copies first: a crash after this point leaves the old pair intact.
    write_atomic(
        &retired.join(format!("{kid}.pub")),
        old.public().to_pem().as_bytes(),
        false,
    )?;
    write_atomic(
        &retired.join(format!("{kid}.key")),
        &crate::fsutil::read(&v.path(KEY_FILE))?,
        true,
    )?;
    write_atomic(&v.path(KEY_FILE), &sealed, true)?;
    write_atomic(&v.path(PUB_FILE), new.public().to_pem().as_bytes(), false)?;
    match super::root::rotate_key(v, &old, &new)? {
        Rotated::NoRoot => {}
        Rotated::Installed(path) => out(&format!(
            "new root {} names key {} in the old key's roles, signed by the old and the new key: \
             give it to verifiers (their roots/ folder, or `licensegen publish` to the relay) \
             before anything the new key signs\n",
            path.display(),
            new.public().kid()
        ))?,
        Rotated::Drafted(path) => out(&format!(
            "root draft {} names key {} in the old key's roles; the new key signs nothing verifiers \
             take until the root key holders sign it: `licensegen root sign {} --key THEIR_KEY`\n",
            path.display(),
            new.public().kid(),
            path.display()
        ))?,
    }
    out(&format!(
        "new vendor key {} in {}\nretired key {kid} to {}\nnext: give every verifier and relay the bundle from `licensegen key export-public --all` BEFORE sending them anything the new key signs\n",
        new.public().kid(),
        v.path(KEY_FILE).display(),
        retired.display()
    ))
}
