//! `init`, `key`, `completions`, `man`.

use std::path::Path;

use anyhow::{Context, Result};

use super::Ctx;
use crate::cli::InitArgs;
use crate::keystore::Protection;
use crate::output::{line, out};
use crate::vendor_dir::{self, Config, InitOptions, KEY_FILE, PUB_FILE};

pub(super) fn init(ctx: &Ctx<'_>, a: &InitArgs) -> Result<u8> {
    let config = Config {
        issuer: a.issuer.clone(),
        audience: a.audience.clone(),
        revocation_validity: a.revocation_validity.clone(),
        armor: a.armor,
        relay: None,
        // The default; a vendor who needs -19 sets `alg` in kaching.toml.
        alg: kaching_core::Alg::default(),
    };
    // Check everything cheap before asking for a passphrase.
    config.revocation_validity_secs()?;
    if let Some(f) = [vendor_dir::CONFIG_FILE, KEY_FILE, vendor_dir::LEDGER_FILE]
        .iter()
        .find(|f| a.dir.join(f).exists())
    {
        return Err(crate::error::usage(format!(
            "{} already holds a vendor directory ({f} exists): init never overwrites one; choose another folder",
            a.dir.display()
        )));
    }
    let protection = match &a.recipient {
        Some(r) => Protection::recipient(r)?,
        None => Protection::Passphrase(ctx.passphrase().new_passphrase()?),
    };
    let v = vendor_dir::init(
        &InitOptions {
            dir: a.dir.clone(),
            config,
        },
        &protection,
        crate::fsutil::now(),
    )?;
    let key = v.public_key()?;
    out(&format!(
        "created vendor directory {}\n  vendor key  {} (kid {}, {})\n  public key  {}\n  ledger      {}\n  revocations {} (version 1, empty)\n  tiers       {}\n  settings    {} (issuer {:?}, product {:?})\nBack up {} and its passphrase now: without them no license can be issued or revoked.\n",
        v.root.display(),
        v.path(KEY_FILE).display(),
        key.kid(),
        if a.recipient.is_some() { "encrypted to the age recipient" } else { "encrypted with your passphrase" },
        v.path(PUB_FILE).display(),
        v.path(vendor_dir::LEDGER_FILE).display(),
        v.path(vendor_dir::REVOCATIONS_FILE).display(),
        v.path(vendor_dir::TIERS_FILE).display(),
        v.path(vendor_dir::CONFIG_FILE).display(),
        v.config.issuer,
        v.config.audience,
        v.path(KEY_FILE).display(),
    ))?;
    Ok(crate::exit::OK)
}

pub(super) fn completions(shell: clap_complete::Shell) -> Result<u8> {
    let mut cmd = crate::cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "licensegen", &mut buf);
    out(&String::from_utf8_lossy(&buf))?;
    Ok(crate::exit::OK)
}

pub(super) fn man(dir: Option<&Path>) -> Result<u8> {
    let cmd = crate::cli::command();
    match dir {
        None => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut buf)?;
            out(&String::from_utf8_lossy(&buf))?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("cannot write man pages into {}", dir.display()))?;
            line(&format!("wrote man pages into {}", dir.display()))?;
        }
    }
    Ok(crate::exit::OK)
}
