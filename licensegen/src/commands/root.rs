//! `root init|show|rotate|sign|install|discard`, `role add|remove`, and the
//! root rotation `key rotate` makes.
//!
//! A change to the root is a *draft*, `roots/root-v<N>.draft`: the next
//! root's claims with no signature yet. Key holders add theirs one run at a
//! time, on their own machines if they like (the file travels; nothing else
//! does), and the draft becomes `roots/root-v<N>.root` once a threshold of
//! the current root's root keys and a threshold of its own have signed,
//! checked exactly as every verifier will check it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use kaching_core::armor::armor;
use kaching_core::root::{
    add_signature, inspect_root, tally_root, verify_initial_root, verify_next_root, Role, RoleKeys,
    Root, Signing, Tally, TrustChain, VerifiedRoot,
};
use kaching_core::{DocKind, Kid, PublicKey, SecretKey};
use serde::Serialize;

use super::Ctx;
use crate::cli::{RoleCommand, RootCommand};
use crate::error::usage;
use crate::fsutil::{now, write_atomic, write_new};
use crate::keystore::{pub_file_of, seal, unseal_file, Protection, Unlock};
use crate::output::{json, line, note, out};
use crate::vendor_dir::{read_root_file, VendorDir, KEY_FILE, ROOTS_DIR};

/// Largest number of root keys `root init` makes (a root holds at most 64 keys).
const MAX_HOLDERS: usize = 16;

fn one_key_root(key: &PublicKey, issuer: &str, version: u64, expires: u64) -> Root {
    let role = || RoleKeys {
        kids: vec![key.kid()],
        threshold: 1,
    };
    Root {
        issuer: issuer.to_string(),
        version,
        issued_at: now(),
        expires,
        keys: vec![key.clone()],
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
    /// The draft of the next root, if one is waiting for signatures.
    pending: Option<PendingInfo>,
}

#[derive(Serialize)]
struct PendingInfo {
    file: String,
    version: u64,
    /// Root keys of the current root that signed, and how many must.
    signed_by_current: Vec<String>,
    current_threshold: u32,
    /// Root keys of the draft itself that signed, and how many must.
    signed_by_own: Vec<String>,
    own_threshold: u32,
}

pub(super) fn root(ctx: &Ctx<'_>, r: &RootCommand) -> Result<u8> {
    match r {
        RootCommand::Init {
            expires,
            key_count,
            threshold,
            holder_recipients,
            out_dir,
        } => {
            let v = ctx.vendor()?;
            if v.root_chain()?.is_some() {
                bail!(
                    "{} already exists: this vendor directory has a root (see `licensegen root show`)",
                    v.root_file(1).display()
                );
            }
            let secs = crate::vendor_dir::parse_duration(expires)?;
            let expires = now().saturating_add(secs);
            if key_count.is_none() && holder_recipients.is_empty() {
                if threshold.is_some() {
                    return Err(usage(
                        "--threshold needs --key-count N (or --holder-recipient once per holder)",
                    ));
                }
                init_single(ctx, &v, expires)
            } else {
                let n = key_count.unwrap_or(holder_recipients.len());
                init_holders(ctx, &v, expires, n, *threshold, holder_recipients, out_dir)
            }
        }
        RootCommand::Show {
            json: as_json,
            out: to,
        } => show(&ctx.vendor()?, *as_json, to.as_deref()),
        RootCommand::Rotate {
            add,
            remove,
            threshold,
            expires,
            revocation_floor,
        } => {
            let v = ctx.vendor()?;
            if add.is_empty()
                && remove.is_empty()
                && threshold.is_none()
                && expires.is_none()
                && revocation_floor.is_none()
            {
                return Err(usage(
                    "nothing to change: pass --add-root-key, --remove-root-key, --threshold, --expires or --revocation-floor",
                ));
            }
            let (chain, mut next) = start_draft(&v)?;
            let roles = next.roles.get(&Role::Root).cloned().unwrap_or(RoleKeys {
                kids: Vec::new(),
                threshold: 1,
            });
            let mut kids = roles.kids;
            for p in add {
                let key = read_public(p)?;
                if kids.contains(&key.kid()) {
                    return Err(usage(format!(
                        "{} (kid {}) is already a root key",
                        p.display(),
                        key.kid()
                    )));
                }
                kids.push(key.kid());
                add_key(&mut next, key);
            }
            for text in remove {
                let kid = find_kid(&next, text)?;
                if !kids.contains(&kid) {
                    return Err(usage(format!("key {kid} is not a root key")));
                }
                kids.retain(|k| *k != kid);
            }
            kids.sort();
            let threshold = threshold.unwrap_or(roles.threshold.min(kids.len() as u32).max(1));
            next.roles.insert(Role::Root, RoleKeys { kids, threshold });
            if let Some(d) = expires {
                next.expires = now().saturating_add(crate::vendor_dir::parse_duration(d)?);
            }
            if revocation_floor.is_some() {
                next.revocation_floor = *revocation_floor;
            }
            write_draft(&v, &chain, next)
        }
        RootCommand::Sign {
            draft,
            key,
            previous,
        } => sign(ctx, draft.as_deref(), key.as_deref(), previous.as_deref()),
        RootCommand::Install { file } => {
            let v = ctx.vendor()?;
            let chain = chain_of(&v)?;
            let path = match file {
                Some(p) => p.clone(),
                None => pending(&v, &chain)?,
            };
            install(&v, &chain, &read_root_file(&path)?)
        }
        RootCommand::Discard => {
            let v = ctx.vendor()?;
            let chain = chain_of(&v)?;
            let path = pending(&v, &chain)?;
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
            line(&format!("removed {}", path.display()))?;
            Ok(crate::exit::OK)
        }
    }
}

pub(super) fn role(ctx: &Ctx<'_>, r: &RoleCommand) -> Result<u8> {
    let v = ctx.vendor()?;
    let (chain, mut next) = start_draft(&v)?;
    match r {
        RoleCommand::Add {
            role,
            key,
            threshold,
        } => {
            let key = read_public(key)?;
            let kid = key.kid();
            let mut keys = next.roles.get(role).cloned().unwrap_or(RoleKeys {
                kids: Vec::new(),
                threshold: 1,
            });
            if keys.kids.contains(&kid) {
                return Err(usage(format!("key {kid} already holds the {role} role")));
            }
            keys.kids.push(kid);
            keys.kids.sort();
            if let Some(t) = threshold {
                keys.threshold = *t;
            }
            next.roles.insert(*role, keys);
            add_key(&mut next, key);
        }
        RoleCommand::Remove {
            role,
            kid,
            threshold,
        } => {
            let kid = find_kid(&next, kid)?;
            let Some(mut keys) = next.roles.get(role).cloned() else {
                return Err(usage(format!(
                    "root v{} has no {role} role",
                    next.version - 1
                )));
            };
            if !keys.kids.contains(&kid) {
                return Err(usage(format!("key {kid} does not hold the {role} role")));
            }
            keys.kids.retain(|k| *k != kid);
            if keys.kids.is_empty() {
                if *role == Role::Relay {
                    next.roles.remove(role);
                } else {
                    return Err(usage(format!(
                        "key {kid} is the last {role} key: add another first (`licensegen role add {role} KEY`)"
                    )));
                }
            } else {
                keys.threshold = threshold.unwrap_or(keys.threshold.min(keys.kids.len() as u32));
                next.roles.insert(*role, keys);
            }
            // A key that no role names any more leaves the root.
            if next.roles_of(&kid).is_empty() {
                next.keys.retain(|k| k.kid() != kid);
            }
        }
    }
    write_draft(&v, &chain, next)
}

/// Root v1 with the vendor key in every role.
fn init_single(ctx: &Ctx<'_>, v: &VendorDir, expires: u64) -> Result<u8> {
    let key = ctx.unlock(v)?;
    let root = one_key_root(&key.public(), &v.config.issuer, 1, expires);
    let path = write_first(v, &root.sign(&[&key]))?;
    out(&format!(
        "root v1 in {}: key {} is its root, issuer and revoker key\n\
         next: build verifiers with it pinned (KACHING_PINNED_ROOT={}), set it as the relay's `root`, \
         and rotate with `licensegen key rotate` (it makes root v2)\n",
        path.display(),
        key.public().kid(),
        path.display()
    ))?;
    Ok(crate::exit::OK)
}

/// Root v1 with `n` new root keys, `threshold` of which sign every later
/// root; the vendor key issues and revokes.
fn init_holders(
    ctx: &Ctx<'_>,
    v: &VendorDir,
    expires: u64,
    n: usize,
    threshold: Option<u32>,
    recipients: &[String],
    out_dir: &Option<PathBuf>,
) -> Result<u8> {
    if !(1..=MAX_HOLDERS).contains(&n) {
        return Err(usage(format!(
            "--key-count must be 1 to {MAX_HOLDERS}, not {n}"
        )));
    }
    if !recipients.is_empty() && recipients.len() != n {
        return Err(usage(format!(
            "{} --holder-recipient given for {n} root keys: give one per holder, or none to use passphrases",
            recipients.len()
        )));
    }
    let k = threshold.unwrap_or(n as u32 / 2 + 1);
    if k == 0 || k as usize > n {
        return Err(usage(format!(
            "--threshold must be 1 to {n} (the number of root keys), not {k}"
        )));
    }
    // Everything that can be refused is checked before any key is made.
    let protections: Vec<Option<Protection>> = if recipients.is_empty() {
        (0..n).map(|_| None).collect()
    } else {
        recipients
            .iter()
            .map(|r| Protection::recipient(r).map(Some))
            .collect::<Result<_>>()?
    };
    let vendor = v.public_key()?;
    let dir = out_dir.clone().unwrap_or_else(|| v.path("root-keys"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let shared = recipients.is_empty() && ctx.passphrase().is_non_interactive();
    if shared && n > 1 {
        note(&format!(
            "warning: all {n} root keys get the one passphrase from --passphrase-file or KACHING_PASSPHRASE: \
             each holder should re-encrypt theirs with their own (age -d FILE | age -p -a)"
        ));
    }
    let keys: Vec<SecretKey> = (0..n).map(|_| SecretKey::generate()).collect();
    let mut files = Vec::with_capacity(n);
    for (i, (key, protection)) in keys.iter().zip(protections).enumerate() {
        let protection = match protection {
            Some(p) => p,
            None => Protection::Passphrase(
                ctx.passphrase()
                    .new_passphrase_for(&format!("root key {} of {n}", i + 1))?,
            ),
        };
        let path = dir.join(format!("root-{}.key", key.public().kid()));
        write_new(&path, &seal(key, &protection)?, true)?;
        write_new(&pub_file_of(&path), key.public().to_pem().as_bytes(), false)?;
        files.push(path);
    }
    let mut all: Vec<PublicKey> = keys.iter().map(SecretKey::public).collect();
    let mut root_kids: Vec<Kid> = all.iter().map(PublicKey::kid).collect();
    root_kids.sort();
    all.push(vendor.clone());
    all.sort_by_key(PublicKey::kid);
    all.dedup_by_key(|k| k.kid());
    let vendor_role = || RoleKeys {
        kids: vec![vendor.kid()],
        threshold: 1,
    };
    let root = Root {
        issuer: v.config.issuer.clone(),
        version: 1,
        issued_at: now(),
        expires,
        keys: all,
        roles: BTreeMap::from([
            (
                Role::Root,
                RoleKeys {
                    kids: root_kids,
                    threshold: k,
                },
            ),
            (Role::Issuer, vendor_role()),
            (Role::Revoker, vendor_role()),
        ]),
        revocation_floor: None,
    };
    root.check().context("the new root is not valid")?;
    let refs: Vec<&SecretKey> = keys.iter().collect();
    let path = write_first(v, &root.sign(&refs))?;
    files.sort();
    let mut s = format!(
        "root v1 in {}: {k} of these {n} root keys must sign every later root\n",
        path.display()
    );
    for f in &files {
        s.push_str(&format!("  {}\n", f.display()));
    }
    s.push_str(&format!(
        "the vendor key {} issues licenses and signs revocation lists\n\
         next: give each holder one key file (and its .pub) and delete it here; \
         build verifiers with the root pinned (KACHING_PINNED_ROOT={})\n",
        vendor.kid(),
        path.display()
    ));
    out(&s)?;
    Ok(crate::exit::OK)
}

/// Checks and writes root v1.
fn write_first(v: &VendorDir, bytes: &[u8]) -> Result<PathBuf> {
    verify_initial_root(bytes).context("the new root does not verify")?;
    let dir = v.path(ROOTS_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = v.root_file(1);
    write_new(&path, armor(DocKind::Root, bytes).as_bytes(), false)?;
    Ok(path)
}

fn show(v: &VendorDir, as_json: bool, to: Option<&Path>) -> Result<u8> {
    let chain = chain_of(v)?;
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
    let draft = v.draft_file(cur.root.version + 1);
    let pending = if draft.exists() {
        let t = tally_root(&read_root_file(&draft)?, Some(&cur.root))
            .with_context(|| format!("{} is not a root draft", draft.display()))?;
        let prev = t.by_previous.clone().unwrap_or_else(|| t.by_own.clone());
        Some(PendingInfo {
            file: draft.display().to_string(),
            version: t.root.version,
            signed_by_current: prev.signed.iter().map(Kid::to_hex).collect(),
            current_threshold: prev.threshold,
            signed_by_own: t.by_own.signed.iter().map(Kid::to_hex).collect(),
            own_threshold: t.by_own.threshold,
        })
    } else {
        None
    };
    let info = RootInfo {
        version: cur.root.version,
        issuer: cur.root.issuer.clone(),
        expires: kaching_core::time::rfc3339(cur.root.expires),
        file: v.root_file(cur.root.version).display().to_string(),
        roles: cur
            .root
            .roles
            .iter()
            .map(|(role, k)| {
                (
                    role.as_str().to_string(),
                    RoleInfo {
                        kids: k.kids.iter().map(Kid::to_hex).collect(),
                        threshold: k.threshold,
                    },
                )
            })
            .collect(),
        pending,
    };
    if as_json {
        json(&info)?;
        return Ok(crate::exit::OK);
    }
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
    if let Some(p) = &info.pending {
        s.push_str(&format!(
            "pending  root v{} in {}: {} of {} signatures from v{}'s root keys, {} of {} from its own \
             (`licensegen root sign`)\n",
            p.version,
            p.file,
            p.signed_by_current.len(),
            p.current_threshold,
            info.version,
            p.signed_by_own.len(),
            p.own_threshold
        ));
    }
    out(&s)?;
    Ok(crate::exit::OK)
}

fn chain_of(v: &VendorDir) -> Result<TrustChain> {
    v.root_chain()?.ok_or_else(|| {
        usage("no root yet: run `licensegen root init` to make root v1 (see `licensegen root init --help`)")
    })
}

/// The vendor directory's draft of the next root.
fn pending(v: &VendorDir, chain: &TrustChain) -> Result<PathBuf> {
    let path = v.draft_file(chain.current().root.version + 1);
    if !path.exists() {
        return Err(usage(format!(
            "no root draft in {}: make one with `licensegen root rotate` or `licensegen role add|remove`",
            v.path(ROOTS_DIR).display()
        )));
    }
    Ok(path)
}

/// The claims of the next root to change: the unsigned pending draft's (so
/// several changes make one version), else the current root's.
fn start_draft(v: &VendorDir) -> Result<(TrustChain, Root)> {
    let chain = chain_of(v)?;
    let cur = &chain.current().root;
    let draft = v.draft_file(cur.version + 1);
    if draft.exists() {
        let (root, signers) = inspect_root(&read_root_file(&draft)?)
            .with_context(|| format!("{} is not a root draft", draft.display()))?;
        if !signers.is_empty() {
            return Err(usage(format!(
                "{} already carries {} signature(s): finish it (`licensegen root sign`) or throw it away \
                 (`licensegen root discard`) before changing it",
                draft.display(),
                signers.len()
            )));
        }
        return Ok((chain, root));
    }
    let mut next = cur.clone();
    next.version = cur.version + 1;
    next.issued_at = now();
    next.revocation_floor = None;
    Ok((chain, next))
}

/// Writes `next` as the unsigned draft and says who must sign it.
fn write_draft(v: &VendorDir, chain: &TrustChain, mut next: Root) -> Result<u8> {
    let cur = &chain.current().root;
    next.issued_at = now();
    next.check()
        .map_err(|e| usage(format!("the root this would make is not valid: {e}")))?;
    if next.expires <= now() {
        return Err(usage(
            "the root would already be expired: pass --expires to `licensegen root rotate`",
        ));
    }
    let path = save_draft(v, &next)?;
    let role_of = |r: &Root| r.roles.get(&Role::Root).cloned();
    let (old, new) = (role_of(cur), role_of(&next));
    let list = |r: &Option<RoleKeys>| {
        r.as_ref().map_or_else(String::new, |r| {
            format!("{} of {}", r.threshold, kid_list(&r.kids))
        })
    };
    let mut s = format!("root v{} drafted in {}\n", next.version, path.display());
    for role in Role::ALL {
        let (a, b) = (cur.roles.get(&role), next.roles.get(&role));
        if a != b {
            let show = |r: Option<&RoleKeys>| {
                r.map_or_else(
                    || "none".to_string(),
                    |r| format!("{} of [{}]", r.threshold, kid_list(&r.kids)),
                )
            };
            s.push_str(&format!("  {role:<8} {} -> {}\n", show(a), show(b)));
        }
    }
    s.push_str(&format!(
        "it needs signatures from {} (root v{}'s root keys) and {} (its own)\n\
         next: each holder runs `licensegen root sign {} --key THEIR_KEY` (pass the file on); \
         it is installed once both thresholds are met\n",
        list(&old),
        cur.version,
        list(&new),
        path.display()
    ));
    out(&s)?;
    Ok(crate::exit::OK)
}

fn sign(
    ctx: &Ctx<'_>,
    draft: Option<&Path>,
    key: Option<&Path>,
    previous: Option<&Path>,
) -> Result<u8> {
    // Key holders may sign away from the vendor directory: the draft and
    // their key file are all they need.
    let vendor = match (draft, key) {
        (Some(_), Some(_)) => ctx.vendor().ok(),
        _ => Some(ctx.vendor()?),
    };
    let chain = match &vendor {
        Some(v) => v.root_chain()?,
        None => None,
    };
    let path = match (draft, &vendor, &chain) {
        (Some(p), _, _) => p.to_path_buf(),
        (None, Some(v), Some(c)) => pending(v, c)?,
        (None, _, _) => return Err(usage("no root yet: run `licensegen root init`")),
    };
    let bytes = read_root_file(&path)?;
    let (claims, _) =
        inspect_root(&bytes).with_context(|| format!("{} is not a root draft", path.display()))?;
    let previous: Option<Root> = match (previous, &chain) {
        (Some(p), _) => Some(
            inspect_root(&read_root_file(p)?)
                .with_context(|| format!("{} is not a root", p.display()))?
                .0,
        ),
        (None, Some(c)) if c.current().root.version + 1 == claims.version => {
            Some(c.current().root.clone())
        }
        (None, Some(c)) => {
            return Err(usage(format!(
                "{} is root v{}, but this vendor directory's root is v{}: a draft must be the next version",
                path.display(),
                claims.version,
                c.current().root.version
            )))
        }
        (None, None) => None,
    };
    let key_path = match (key, &vendor) {
        (Some(k), _) => k.to_path_buf(),
        (None, Some(v)) => v.path(KEY_FILE),
        (None, None) => return Err(usage("pass --key KEY_FILE: the key to sign with")),
    };
    let unlock = Unlock {
        passphrase: ctx.passphrase(),
        identity: ctx.cli.global.identity.clone(),
    };
    let key = unseal_file(&key_path, &unlock)?;
    let kid = key.public().kid();
    let is_root_key = |r: &Root| {
        r.roles
            .get(&Role::Root)
            .is_some_and(|k| k.kids.contains(&kid))
    };
    match &previous {
        Some(p) if !is_root_key(p) && !is_root_key(&claims) => {
            return Err(usage(format!(
                "key {kid} ({}) is a root key of neither root v{} nor v{}: its signature would count \
                 for nothing; nothing was changed",
                key_path.display(),
                p.version,
                claims.version
            )))
        }
        None if !is_root_key(&claims) => note(&format!(
            "warning: key {kid} is not a root key of the draft: it counts only if it is one of root v{}'s \
             root keys (pass --previous ROOT_FILE to check)",
            claims.version.saturating_sub(1)
        )),
        _ => {}
    }
    let signed =
        add_signature(&bytes, &key).map_err(|e| usage(format!("{e}; nothing was changed")))?;
    write_atomic(&path, armor(DocKind::Root, &signed).as_bytes(), false)?;
    let t = tally_root(&signed, previous.as_ref())?;
    out(&format!(
        "signed root v{} in {} with key {kid}\n{}",
        claims.version,
        path.display(),
        progress(&t)
    ))?;
    match (&vendor, &chain) {
        // `install` clears the vendor directory's draft.
        (Some(v), Some(c)) if t.complete() && previous.is_some() => {
            install(v, c, &signed)?;
        }
        _ if t.complete() => line(&format!(
            "complete: bring {} back to the vendor directory and run `licensegen root install {}`",
            path.display(),
            path.display()
        ))?,
        _ => line(&format!(
            "next: pass {} to the next key holder: `licensegen root sign {} --key THEIR_KEY`",
            path.display(),
            path.display()
        ))?,
    }
    Ok(crate::exit::OK)
}

fn progress(t: &Signing) -> String {
    let row = |what: &str, t: &Tally| {
        let missing: Vec<String> = t.missing.iter().map(Kid::to_hex).collect();
        format!(
            "  {what}: {} of {} needed{}\n",
            t.signed.len(),
            t.threshold,
            if t.met() || missing.is_empty() {
                String::new()
            } else {
                format!(" (not yet signed: {})", missing.join(", "))
            }
        )
    };
    let mut s = String::new();
    if let Some(p) = &t.by_previous {
        s.push_str(&row(
            &format!("root v{}'s root keys", t.root.version - 1),
            p,
        ));
    }
    s.push_str(&row(
        &format!("root v{}'s own root keys", t.root.version),
        &t.by_own,
    ));
    s
}

/// Takes a fully signed root into the chain, checked as every verifier will.
fn install(v: &VendorDir, chain: &TrustChain, bytes: &[u8]) -> Result<u8> {
    let cur = &chain.current().root;
    let next = verify_next_root(cur, bytes, now()).map_err(|e| {
        usage(format!(
            "this root cannot follow root v{}: {e}; nothing was installed",
            cur.version
        ))
    })?;
    let path = store(v, &next)?;
    out(&format!(
        "root v{} installed in {}\nnext: `licensegen publish` sends it to the relay; give air-gapped \
         customers the file for their verifier's roots/ folder, before anything a new key signs\n",
        next.root.version,
        path.display()
    ))?;
    Ok(crate::exit::OK)
}

/// Writes a root that verified as the next one into the chain, and clears
/// its draft.
fn store(v: &VendorDir, next: &VerifiedRoot) -> Result<PathBuf> {
    let path = v.root_file(next.root.version);
    write_new(&path, armor(DocKind::Root, &next.bytes).as_bytes(), false)?;
    let draft = v.draft_file(next.root.version);
    if draft.exists() {
        std::fs::remove_file(&draft)
            .with_context(|| format!("cannot remove {}", draft.display()))?;
    }
    Ok(path)
}

/// Writes `next`, unsigned, as the vendor directory's draft of that version.
fn save_draft(v: &VendorDir, next: &Root) -> Result<PathBuf> {
    let path = v.draft_file(next.version);
    write_atomic(
        &path,
        armor(DocKind::Root, &next.sign(&[])).as_bytes(),
        false,
    )?;
    Ok(path)
}

/// Kids as `root show` prints them, comma-separated.
fn kid_list(kids: &[Kid]) -> String {
    kids.iter().map(Kid::to_hex).collect::<Vec<_>>().join(", ")
}

fn read_public(path: &Path) -> Result<PublicKey> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    PublicKey::from_pem(&text).map_err(|e| {
        usage(format!(
            "{} is not a public key ({e}): pass the .pub file `licensegen key new` wrote",
            path.display()
        ))
    })
}

/// The key of `root` whose kid is `text` (hex, as `root show` prints it).
fn find_kid(root: &Root, text: &str) -> Result<Kid> {
    let want = text.trim().to_ascii_lowercase();
    root.keys
        .iter()
        .map(PublicKey::kid)
        .find(|k| k.to_hex() == want)
        .ok_or_else(|| {
            usage(format!(
                "root v{} has no key {text:?}: see `licensegen root show` for the kids",
                root.version - 1
            ))
        })
}

fn add_key(root: &mut Root, key: PublicKey) {
    if root.key(&key.kid()).is_none() {
        root.keys.push(key);
        root.keys.sort_by_key(PublicKey::kid);
    }
}

/// What `key rotate` does to the root.
pub(crate) enum Rotated {
    /// No root: nothing to do.
    NoRoot,
    /// The vendor key alone controls the root: root v(N+1), signed by the
    /// old and the new key, is installed.
    Installed(PathBuf),
    /// Other root key holders must sign root v(N+1) naming the new key.
    Drafted(PathBuf),
}

/// Refuses a key rotation while a draft with signatures is pending (the
/// rotation must change the next root too).
pub(crate) fn check_rotatable(v: &VendorDir) -> Result<()> {
    let Some(chain) = v.root_chain()? else {
        return Ok(());
    };
    let draft = v.draft_file(chain.current().root.version + 1);
    if draft.exists() && !inspect_root(&read_root_file(&draft)?)?.1.is_empty() {
        bail!(
            "{} is being signed: finish it (`licensegen root sign`) or throw it away (`licensegen root discard`) \
             before rotating the vendor key",
            draft.display()
        );
    }
    Ok(())
}

/// After `key rotate`: root v(N+1) in which `new` replaces `old` in every
/// role. When the old key alone can sign for the root (threshold 1), old
/// and new sign it and it is installed; otherwise it is drafted for the
/// root key holders.
pub(crate) fn rotate_key(v: &VendorDir, old: &SecretKey, new: &SecretKey) -> Result<Rotated> {
    let Some(chain) = v.root_chain()? else {
        return Ok(Rotated::NoRoot);
    };
    let cur = &chain.current().root;
    let (old_kid, new_kid) = (old.public().kid(), new.public().kid());
    let (_, mut next) = start_draft(v)?;
    next.expires = next.expires.max(now().saturating_add(86_400));
    for keys in next.roles.values_mut() {
        if let Some(k) = keys.kids.iter_mut().find(|k| **k == old_kid) {
            *k = new_kid;
        }
        keys.kids.sort();
    }
    next.keys.retain(|k| k.kid() != old_kid);
    add_key(&mut next, new.public());
    next.check().context("the rotated root is not valid")?;
    let alone = cur.roles.get(&Role::Root).is_some_and(|r| r.threshold == 1)
        && cur.roles_of(&old_kid).contains(&Role::Root);
    if alone {
        let bytes = next.sign(&[old, new]);
        // Check it the way every verifier will before writing it.
        let verified = verify_next_root(cur, &bytes, now())
            .context("the rotated root does not follow the current one")?;
        return Ok(Rotated::Installed(store(v, &verified)?));
    }
    Ok(Rotated::Drafted(save_draft(v, &next)?))
}

/// Refuses to sign with a key that `role` does not list in the current root:
/// every verifier would refuse what it signs.
pub(crate) fn check_role(v: &VendorDir, key: &SecretKey, role: Role) -> Result<()> {
    let Some(chain) = v.root_chain()? else {
        return Ok(());
    };
    let cur = &chain.current().root;
    let kid = key.public().kid();
    if cur.roles.get(&role).is_some_and(|r| r.kids.contains(&kid)) {
        return Ok(());
    }
    let holders = cur
        .roles
        .get(&role)
        .map(|r| {
            r.kids
                .iter()
                .map(Kid::to_hex)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let hint = match role {
        Role::Revoker => {
            " (pass --revoker-key FILE, or set KACHING_REVOKER_KEY, with a revoker key)"
        }
        _ => "",
    };
    let pending = v.draft_file(cur.version + 1);
    let draft = if pending.exists() {
        format!(
            "; root v{} in {} is waiting for signatures",
            cur.version + 1,
            pending.display()
        )
    } else {
        String::new()
    };
    Err(usage(format!(
        "key {kid} is not {} in root v{} ({role} keys: {holders}): verifiers would refuse what it signs{hint}{draft}; nothing was signed",
        match role {
            Role::Issuer => "an issuer",
            Role::Revoker => "a revoker",
            Role::Relay => "a relay key",
            Role::Root => "a root key",
        },
        cur.version
    )))
}
