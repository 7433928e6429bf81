//! `root init`, `root show`, and the root rotation `key rotate` makes.
//!
//! Roots live in `roots/` of the vendor directory as `root-v<N>.root`
//! (armored). The chain is re-verified from v1 every time it is read, so a
//! file edited or dropped in by hand never counts unless it follows.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use kaching_core::armor::{armor, dearmor};
use kaching_core::root::{verify_initial_root, Role, RoleKeys, Root, TrustChain};
use kaching_core::{DocKind, SecretKey};
use serde::Serialize;

use super::Ctx;
use crate::cli::RootCommand;
use crate::fsutil::{now, write_atomic, write_new};
use crate::output::{json, line, out};
use crate::vendor_dir::VendorDir;

/// The folder of roots inside a vendor directory.
pub(crate) const ROOTS_DIR: &str = "roots";

fn file_of(v: &VendorDir, version: u64) -> PathBuf {
    v.path(ROOTS_DIR).join(format!("root-v{version}.root"))
}

/// The vendor's root chain, walked from v1; `None` before `root init`.
pub(crate) fn chain(v: &VendorDir) -> Result<Option<TrustChain>> {
    let first = file_of(v, 1);
    if !first.exists() {
        return Ok(None);
    }
    let read = |p: &PathBuf| -> Result<Vec<u8>> {
        let text = crate::fsutil::read(p)?;
        dearmor(&text, Some(DocKind::Root))
            .with_context(|| format!("{} is not a root", p.display()))
    };
    let v1 = verify_initial_root(&read(&first)?)
        .with_context(|| format!("{} does not verify", first.display()))?;
    let mut chain = TrustChain::new(v1);
    let mut next = 2;
    loop {
        let p = file_of(v, next);
        if !p.exists() {
            break;
        }
        let bytes = read(&p)?;
        let moved = chain.update([bytes.as_slice()], now());
        if moved.versions.is_empty() {
            bail!(
                "{} does not follow root v{}: {}",
                p.display(),
                next - 1,
                moved.refused.join("; ")
            );
        }
        next += 1;
    }
    Ok(Some(chain))
}

fn one_key_root(key: &SecretKey, issuer: &str, version: u64, expires: u64) -> Root {
    let kid = key.public().kid();
    let role = || RoleKeys {
        kids: vec![kid],
        threshold: 1,
    };
    Root {
        issuer: issuer.to_string(),
        version,
        issued_at: now(),
        expires,
        keys: vec![key.public()],
        roles: BTreeMap::from([
            (Role::Root, role()),
            (Role::Issuer, role()),
            (Role::Revoker, role()),
        ]),
        revocation_floor: None,
    }
}

#[derive(Serialize)]
struct RoleInfo {
    kids: Vec<String>,
    threshold: u32,
}

#[derive(Serialize)]
struct RootInfo {
    version: u64,
    issuer: String,
    expires: String,
    file: String,
    roles: BTreeMap<String, RoleInfo>,
}

pub(super) fn root(ctx: &Ctx<'_>, r: &RootCommand) -> Result<u8> {
    let v = ctx.vendor()?;
    match r {
        RootCommand::Init { expires } => {
            if chain(&v)?.is_some() {
                bail!(
                    "{} already exists: this vendor directory has a root (see `licensegen root show`)",
                    file_of(&v, 1).display()
                );
            }
            let secs = crate::vendor_dir::parse_duration(expires)?;
            let key = ctx.unlock(&v)?;
            let root = one_key_root(&key, &v.config.issuer, 1, now().saturating_add(secs));
            let dir = v.path(ROOTS_DIR);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let path = file_of(&v, 1);
            write_new(
                &path,
                armor(DocKind::Root, &root.sign(&[&key])).as_bytes(),
                false,
            )?;
            out(&format!(
                "root v1 in {}: key {} is its root, issuer and revoker key\n\
                 next: build verifiers with it pinned (KACHING_PINNED_ROOT={}), set it as the relay's `root`, \
                 and rotate with `licensegen key rotate` (it makes root v2)\n",
                path.display(),
                key.public().kid(),
                path.display()
            ))?;
        }
        RootCommand::Show {
            json: as_json,
            out: to,
        } => {
            let Some(chain) = chain(&v)? else {
                bail!(
                    "no root yet: run `licensegen root init` to make root v1 from the vendor key"
                );
            };
            let cur = chain.current();
            if let Some(path) = to {
                write_atomic(path, armor(DocKind::Root, &cur.bytes).as_bytes(), false)?;
                line(&format!(
                    "wrote root v{} to {}",
                    cur.root.version,
                    path.display()
                ))?;
                return Ok(crate::exit::OK);
            }
            let info = RootInfo {
                version: cur.root.version,
                issuer: cur.root.issuer.clone(),
                expires: kaching_core::time::rfc3339(cur.root.expires),
                file: file_of(&v, cur.root.version).display().to_string(),
                roles: cur
                    .root
                    .roles
                    .iter()
                    .map(|(role, k)| {
                        (
                            role.as_str().to_string(),
                            RoleInfo {
                                kids: k.kids.iter().map(|k| k.to_hex()).collect(),
                                threshold: k.threshold,
                            },
                        )
                    })
                    .collect(),
            };
            if *as_json {
                json(&info)?;
            } else {
                let mut s = format!(
                    "root v{} of {}\nexpires  {}\nfile     {}\n",
                    info.version, info.issuer, info.expires, info.file
                );
                for (role, r) in &info.roles {
                    s.push_str(&format!(
                        "{role:<8} {} of {}: {}\n",
                        r.threshold,
                        r.kids.len(),
                        r.kids.join(", ")
                    ));
                }
                out(&s)?;
            }
        }
    }
    Ok(crate::exit::OK)
}

/// Refuses a key rotation this release cannot carry into the root: a root
/// whose root role needs more than the vendor key.
pub(crate) fn check_rotatable(v: &VendorDir, old: &SecretKey) -> Result<()> {
    let Some(chain) = chain(v)? else {
        return Ok(());
    };
    let cur = &chain.current().root;
    if cur.roles.get(&Role::Root).map(|r| r.threshold) != Some(1)
        || !cur.roles_of(&old.public().kid()).contains(&Role::Root)
    {
        bail!(
            "root v{} needs signatures from root key holders other than the vendor key; this release \
             rotates only a root that the vendor key alone controls (multi-holder ceremonies come later)",
            cur.version
        );
    }
    Ok(())
}

/// After `key rotate`: root v(N+1) in which `new` replaces `old` in every
/// role, signed by both (the old root's threshold and the new one's), so
/// verifiers take it through the chain. `None` without a root.
pub(crate) fn rotate_key(
    v: &VendorDir,
    old: &SecretKey,
    new: &SecretKey,
) -> Result<Option<PathBuf>> {
    let Some(chain) = chain(v)? else {
        return Ok(None);
    };
    let cur = &chain.current().root;
    let expires = cur.expires.max(now().saturating_add(86_400));
    let next = one_key_root(new, &cur.issuer, cur.version + 1, expires);
    let bytes = next.sign(&[old, new]);
    // Check it the way every verifier will before writing it.
    kaching_core::root::verify_next_root(cur, &bytes, now())
        .context("the rotated root does not follow the current one")?;
    let path = file_of(v, next.version);
    write_new(&path, armor(DocKind::Root, &bytes).as_bytes(), false)?;
    Ok(Some(path))
}
