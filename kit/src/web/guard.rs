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
    host_allowed(headers, &[])
}

/// The name part of a `Host` value: without the port, an IPv6 address
/// without its brackets.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    }
}

/// True when `Host` is a loopback name ([`loopback_host`]) or one of
/// `extra` (bare names, compared without case, any port; an IPv6 address
/// with or without brackets). A request without a readable `Host` is false.
pub fn host_allowed(headers: &HeaderMap, extra: &[String]) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let name = host_name(host);
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
        || extra.iter().any(|e| {
            let e = e
                .strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
                .unwrap_or(e);
            !e.is_empty() && e.eq_ignore_ascii_case(name)
        })
}

/// Failed sign-ins counted per client address: after `max` failures
/// within `window`, every sign-in from that address is refused until the
/// window ends, right token or not (else guessing would simply go on). A
/// success does not count. IPv6 addresses count by /64 (one host holds a
/// whole /64). The table is capped: when it is full of live entries, new
/// addresses share one overflow entry, so memory stays bounded and an
/// attacker with many addresses still gets `max` more guesses per window,
/// not `max` per address.
#[derive(Debug)]
pub struct SignInLimit {
    table: std::sync::Mutex<std::collections::HashMap<Option<std::net::IpAddr>, Failures>>,
    max: u32,
    window: std::time::Duration,
    cap: usize,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    since: std::time::Instant,
}

impl Default for SignInLimit {
    /// 5 failures per minute per address, 4096 addresses tracked.
    fn default() -> Self {
        SignInLimit::new(5, std::time::Duration::from_secs(60), 4096)
    }
}

impl SignInLimit {
    /// At most `max` failures per `window` per address; at most `cap`
    /// addresses tracked (plus the overflow entry).
    pub fn new(max: u32, window: std::time::Duration, cap: usize) -> SignInLimit {
        SignInLimit {
            table: std::sync::Mutex::new(std::collections::HashMap::new()),
            max: max.max(1),
            window,
            cap: cap.max(1),
        }
    }

    fn key(ip: std::net::IpAddr) -> std::net::IpAddr {
        match ip {
            std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => std::net::IpAddr::V4(v4),
                None => {
                    let s = v6.segments();
                    std::net::IpAddr::V6(std::net::Ipv6Addr::new(
                        s[0], s[1], s[2], s[3], 0, 0, 0, 0,
                    ))
                }
            },
            v4 => v4,
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<Option<std::net::IpAddr>, Failures>>
    {
        // Plain counters: still consistent after a panic elsewhere.
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The entry `ip` counts under: its own, or the overflow entry when
    /// the table is full of live entries.
    fn slot(
        &self,
        table: &mut std::collections::HashMap<Option<std::net::IpAddr>, Failures>,
        ip: std::net::IpAddr,
        now: std::time::Instant,
    ) -> Option<std::net::IpAddr> {
        let key = Some(Self::key(ip));
        if table.contains_key(&key) || table.len() < self.cap {
            return key;
        }
        let window = self.window;
        table.retain(|_, f| now.saturating_duration_since(f.since) < window);
        if table.len() < self.cap {
            key
        } else {
            None
        }
    }

    /// `Err(wait)` when `ip` used up its failures: refuse the sign-in and
    /// say to retry after `wait`. Check before looking at the token.
    pub fn check(
        &self,
        ip: std::net::IpAddr,
        now: std::time::Instant,
    ) -> Result<(), std::time::Duration> {
        let table = self.lock();
        let key = Some(Self::key(ip));
        // An address with no entry of its own counts under the overflow
        // entry while the table is full.
        let key = if table.contains_key(&key) || table.len() < self.cap {
            key
        } else {
            None
        };
        let Some(f) = table.get(&key).copied() else {
            return Ok(());
        };
        let age = now.saturating_duration_since(f.since);
        if age < self.window && f.count >= self.max {
            Err(self.window - age)
        } else {
            Ok(())
        }
    }

    /// Counts a failed sign-in from `ip`.
    pub fn failed(&self, ip: std::net::IpAddr, now: std::time::Instant) {
        let mut table = self.lock();
        let key = self.slot(&mut table, ip, now);
        let window = self.window;
        let f = table.entry(key).or_insert(Failures {
            count: 0,
            since: now,
        });
        if now.saturating_duration_since(f.since) >= window {
            *f = Failures {
                count: 0,
                since: now,
            };
        }
        f.count = f.count.saturating_add(1);
    }

    /// Addresses tracked now (the overflow entry included).
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }
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
    fn listed_names_pass_the_rebinding_check_with_any_port() {
        let extra = ["bzzz-1.internal".to_string(), "fd00::7".to_string()];
        for ok in [
            "bzzz-1.internal:7741",
            "BZZZ-1.INTERNAL",
            "[fd00::7]:1",
            "localhost",
        ] {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_str(ok).unwrap());
            assert!(host_allowed(&h, &extra), "{ok}");
        }
        for bad in [
            "bzzz-1.internal.evil.example",
            "evil.example",
            "[fd00::8]:1",
        ] {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_str(bad).unwrap());
            assert!(!host_allowed(&h, &extra), "{bad}");
        }
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
    fn sign_in_failures_are_limited_per_address_then_forgotten() {
        use std::net::IpAddr;
        use std::time::{Duration, Instant};
        let limit = SignInLimit::new(3, Duration::from_secs(60), 8);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limit.check(a, t0), Ok(()));
            limit.failed(a, t0);
        }
        let wait = limit.check(a, t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        // Another address is not affected; the window's end forgets.
        assert_eq!(limit.check(b, t0), Ok(()));
        assert_eq!(limit.check(a, t0 + Duration::from_secs(60)), Ok(()));
        // One IPv6 host holds a /64: its addresses count together.
        let (v1, v2): (IpAddr, IpAddr) = (
            "fd00:1:2:3::1".parse().unwrap(),
            "fd00:1:2:3::ffff".parse().unwrap(),
        );
        for _ in 0..3 {
            limit.failed(v1, t0);
        }
        assert!(limit.check(v2, t0).is_err());
    }

    #[test]
    fn a_full_sign_in_table_shares_one_overflow_entry() {
        use std::net::{IpAddr, Ipv4Addr};
        use std::time::{Duration, Instant};
        let limit = SignInLimit::new(2, Duration::from_secs(60), 4);
        let t0 = Instant::now();
        for i in 0..1000u32 {
            limit.failed(IpAddr::V4(Ipv4Addr::from(i)), t0);
        }
        // Bounded: 4 addresses plus the overflow entry, which is used up.
        assert_eq!(limit.tracked(), 5);
        assert!(limit.check(IpAddr::V4(Ipv4Addr::from(5000)), t0).is_err());
        // Once the entries are old, new addresses get their own again.
        let later = t0 + Duration::from_secs(61);
        limit.failed(IpAddr::V4(Ipv4Addr::from(6000)), later);
        assert!(limit.tracked() <= 5);
        assert_eq!(limit.check(IpAddr::V4(Ipv4Addr::from(6000)), later), Ok(()));
    }

    #[test]
    fn csrf_tokens_are_random_and_checked_exactly() {
        let (a, b) = (Csrf::random(), Csrf::random());
        assert_ne!(a.token(), b.token());
        assert!(a.check(a.token()));
        assert!(!a.check(b.token()) && !a.check(""));
    }
}
