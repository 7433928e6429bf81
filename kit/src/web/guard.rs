//! Who may use a page, and which form posts count.
//!
//! - A session is a cookie holding a hash of the app's bearer token (never
//!   the token), `HttpOnly` (scripts cannot read it) and `SameSite=Strict`
//!   (another site's page never sends it).
//! - A form post counts only when it comes from the page itself: its
//!   `Origin` (or, without one, `Sec-Fetch-Site`) names this host, and it
//!   carries the per-process anti-forgery token the page was rendered with.
//! - A page served without a token (loopback) also checks that `Host` is a
//!   loopback name, so a hostile name re-pointed at 127.0.0.1 (DNS
//!   rebinding) does not make another site same-origin with it.

use std::fmt::Write as _;

use axum::http::{header, HeaderMap, HeaderValue};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "kaching_session";

/// Constant-time comparison: a secret must not leak through timing.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The anti-forgery token of one process: random, put in every form, and
/// required back on every post.
#[derive(Clone)]
pub struct Csrf(String);

impl std::fmt::Debug for Csrf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Csrf(..)")
    }
}

impl Csrf {
    /// A fresh random token.
    pub fn random() -> Csrf {
        let mut b = [0u8; 32];
        OsRng.fill_bytes(&mut b);
        Csrf(hex(&b))
    }

    /// The value to put in forms.
    pub fn token(&self) -> &str {
        &self.0
    }

    /// True when `given` is this token.
    pub fn check(&self, given: &str) -> bool {
        same(given.as_bytes(), self.0.as_bytes())
    }
}

/// The cookie value that stands for `secret` (a hash, so the cookie jar
/// never holds the token itself).
pub fn session_value(secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"kaching web session\0");
    h.update(secret.as_bytes());
    hex(&h.finalize())
}

/// The `Set-Cookie` value of a session for pages under `path`.
pub fn session_cookie(secret: &str, path: &str) -> Option<HeaderValue> {
    let v = format!(
        "{SESSION_COOKIE}={}; HttpOnly; SameSite=Strict; Path={path}",
        session_value(secret)
    );
    HeaderValue::from_str(&v).ok()
}

/// The `Set-Cookie` value that ends a session.
pub fn clear_cookie(path: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path={path}; Max-Age=0"
    ))
    .ok()
}

/// The value of cookie `name`, if the request sent one.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// True when the request's session cookie stands for `secret`.
pub fn has_session(headers: &HeaderMap, secret: &str) -> bool {
    cookie(headers, SESSION_COOKIE)
        .is_some_and(|v| same(v.as_bytes(), session_value(secret).as_bytes()))
}

/// `Ok` when a state-changing request comes from this site's own pages;
/// otherwise why not (for the refusal and the log).
pub fn same_origin(headers: &HeaderMap) -> Result<(), &'static str> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .ok_or("the request names no Host")?;
    match headers.get(header::ORIGIN).map(|v| v.to_str()) {
        Some(Ok(origin)) => {
            let ours = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                == Some(host);
            if ours {
                Ok(())
            } else {
                Err("the form was posted from another site")
            }
        }
        Some(Err(_)) => Err("the request's Origin is not readable"),
        None => match headers.get("sec-fetch-site").map(HeaderValue::as_bytes) {
            Some(b"same-origin") => Ok(()),
            _ => Err("the request carries no Origin: post the form from the page itself"),
        },
    }
}

/// True when `Host` is `localhost`, a 127.0.0.0/8 address or `[::1]`
/// (with or without a port).
pub fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn a_post_from_another_origin_is_refused() {
        let ours = headers(&[
            ("host", "127.0.0.1:7070"),
            ("origin", "http://127.0.0.1:7070"),
        ]);
        assert_eq!(same_origin(&ours), Ok(()));
        let theirs = headers(&[
            ("host", "127.0.0.1:7070"),
            ("origin", "http://evil.example"),
        ]);
        assert!(same_origin(&theirs).is_err());
        let null = headers(&[("host", "127.0.0.1:7070"), ("origin", "null")]);
        assert!(same_origin(&null).is_err());
        let bare = headers(&[("host", "127.0.0.1:7070")]);
        assert!(same_origin(&bare).is_err());
        let fetch = headers(&[("host", "h"), ("sec-fetch-site", "cross-site")]);
        assert!(same_origin(&fetch).is_err());
        let fetch = headers(&[("host", "h"), ("sec-fetch-site", "same-origin")]);
        assert_eq!(same_origin(&fetch), Ok(()));
    }

    #[test]
    fn only_loopback_names_pass_the_rebinding_check() {
        for ok in [
            "127.0.0.1:1",
            "localhost:8",
            "LOCALHOST",
            "[::1]:9",
            "127.3.2.1",
        ] {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_str(ok).unwrap());
            assert!(loopback_host(&h), "{ok}");
        }
        for bad in [
            "evil.example:7070",
            "10.0.0.1:80",
            "127.0.0.1.evil.example",
            "[::2]:1",
        ] {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_str(bad).unwrap());
            assert!(!loopback_host(&h), "{bad}");
        }
        assert!(!loopback_host(&HeaderMap::new()));
    }

    #[test]
    fn the_session_cookie_holds_a_hash_and_is_strict() {
        let c = session_cookie("s3cret", "/ui/").unwrap();
        let c = c.to_str().unwrap();
        assert!(!c.contains("s3cret"), "{c}");
        assert!(
            c.contains("HttpOnly") && c.contains("SameSite=Strict"),
            "{c}"
        );
        let value = session_value("s3cret");
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("a=b; {SESSION_COOKIE}={value}")).unwrap(),
        );
        assert!(has_session(&h, "s3cret"));
        assert!(!has_session(&h, "other"));
        assert!(!has_session(&HeaderMap::new(), "s3cret"));
    }

    #[test]
    fn csrf_tokens_are_random_and_checked_exactly() {
        let (a, b) = (Csrf::random(), Csrf::random());
        assert_ne!(a.token(), b.token());
        assert!(a.check(a.token()));
        assert!(!a.check(b.token()) && !a.check(""));
    }
}
