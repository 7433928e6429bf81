//! Console sessions that every replica and every restart honour, with no
//! session state anywhere: the cookie names the admin token (by its name),
//! an expiry, and an HMAC-SHA256 over both keyed by that token's stored
//! hash (`tokens.hash`, in the database every replica shares). So:
//!
//! - the cookie never holds the token, and the relay never stores it;
//! - a cookie cannot be made or altered without the stored hash (which the
//!   database holds and no page shows);
//! - revoking the token ends its sessions on every replica at once (the
//!   token is looked up on every request), and a token re-created under the
//!   same name has another hash, so the old cookies do not match it;
//! - a cookie is good for [`SESSION_FOR`], then refused.
//!
//! Whoever can read the database can make a cookie; the console only shows
//! what that database holds, so that reader gains nothing. Signing out
//! clears the browser's cookie; a copy taken before stays good until it
//! expires or the token is revoked.
//!
//! Everything here is pure: time is an argument.

use hmac::digest::generic_array::GenericArray;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// How long a console session lasts.
pub const SESSION_FOR: u64 = 12 * 3600;

const VERSION: &str = "v1";

fn mac(key: &str, purpose: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
    // The stored hash, hashed again into one SHA-256 block (zero-padded,
    // as HMAC pads a short key): a key of fixed size, so no error path.
    let mut k = [0u8; 64];
    k[..32].copy_from_slice(&Sha256::digest(key.as_bytes()));
    let mut m = <Hmac<Sha256> as KeyInit>::new(GenericArray::from_slice(&k));
    m.update(purpose);
    for p in parts {
        m.update(&(p.len() as u64).to_be_bytes());
        m.update(p);
    }
    m
}

fn hex(b: &[u8]) -> String {
    kaching_core::keys::hex(b)
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The cookie value of a session of the token `name` (stored hash
/// `token_hash`) signed in at `now`.
pub fn issue(name: &str, token_hash: &str, now: u64) -> String {
    let expires = now.saturating_add(SESSION_FOR);
    let tag = mac(
        token_hash,
        b"kaching console session\0",
        &[VERSION.as_bytes(), name.as_bytes(), &expires.to_be_bytes()],
    )
    .finalize()
    .into_bytes();
    format!("{VERSION}.{}.{expires}.{}", hex(name.as_bytes()), hex(&tag))
}

/// A cookie value taken apart, not yet checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// The token name it claims.
    pub name: String,
    expires: u64,
    tag: Vec<u8>,
}

/// Takes a cookie value apart: `None` when it is not a session cookie.
pub fn claimed(value: &str) -> Option<Claimed> {
    let mut it = value.split('.');
    let (v, name, expires, tag) = (it.next()?, it.next()?, it.next()?, it.next()?);
    if v != VERSION || it.next().is_some() {
        return None;
    }
    Some(Claimed {
        name: String::from_utf8(unhex(name)?).ok()?,
        expires: expires.parse().ok()?,
        tag: unhex(tag)?,
    })
}

/// Why a session cookie was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its MAC does not match the token's stored hash (made up, altered,
    /// or the token was re-created).
    Forged,
    /// It has expired.
    Expired,
}

/// Checks `c` against the stored hash of the token it names, at `now`.
pub fn check(c: &Claimed, token_hash: &str, now: u64) -> Result<(), Refused> {
    mac(
        token_hash,
        b"kaching console session\0",
        &[
            VERSION.as_bytes(),
            c.name.as_bytes(),
            &c.expires.to_be_bytes(),
        ],
    )
    .verify_slice(&c.tag)
    .map_err(|_| Refused::Forged)?;
    if now >= c.expires {
        return Err(Refused::Expired);
    }
    Ok(())
}

/// The anti-forgery token of the forms on pages of session `cookie`: any
/// replica derives the same one, and no other session's token matches.
pub fn csrf(cookie: &str, token_hash: &str) -> String {
    hex(
        &mac(token_hash, b"kaching console csrf\0", &[cookie.as_bytes()])
            .finalize()
            .into_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn a_fresh_cookie_is_accepted_until_it_expires() {
        let v = issue("ops", H, 1000);
        let c = claimed(&v).unwrap();
        assert_eq!(c.name, "ops");
        assert_eq!(check(&c, H, 1000), Ok(()));
        assert_eq!(check(&c, H, 1000 + SESSION_FOR - 1), Ok(()));
        assert_eq!(check(&c, H, 1000 + SESSION_FOR), Err(Refused::Expired));
    }

    #[test]
    fn attack_altered_name_expiry_tag_or_key_is_refused() {
        let v = issue("ops", H, 1000);
        let parts: Vec<&str> = v.split('.').collect();
        let other_name = format!("v1.{}.{}.{}", hex(b"root"), parts[2], parts[3]);
        let later = format!("v1.{}.{}.{}", parts[1], 1000 + 10 * SESSION_FOR, parts[3]);
        let mut tag = parts[3].to_string();
        tag.replace_range(0..1, if tag.starts_with('0') { "1" } else { "0" });
        let flipped = format!("v1.{}.{}.{tag}", parts[1], parts[2]);
        for bad in [other_name, later, flipped] {
            let c = claimed(&bad).unwrap();
            assert_eq!(check(&c, H, 1001), Err(Refused::Forged), "{bad}");
        }
        // The same cookie against another token's hash (re-created token).
        let c = claimed(&v).unwrap();
        assert_eq!(check(&c, &H.replace('9', "8"), 1001), Err(Refused::Forged));
        for junk in [
            "",
            "forged",
            "v1.zz.1.00",
            "v2.6f7073.1.00",
            "v1.6f7073.x.00",
        ] {
            assert!(claimed(junk).is_none(), "{junk}");
        }
    }

    #[test]
    fn csrf_tokens_differ_per_session_and_agree_across_replicas() {
        let a = issue("ops", H, 1000);
        let b = issue("ops", H, 1001);
        assert_eq!(csrf(&a, H), csrf(&a, H));
        assert_ne!(csrf(&a, H), csrf(&b, H));
    }
}
