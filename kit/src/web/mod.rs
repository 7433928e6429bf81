//! The shared look and the safety rules of every KACHING web page: the
//! verifier's license page (`/ui/`), and later the relay's console and the
//! licensegen desk. One stylesheet and one small script, embedded in the
//! binary and served by each app under its own prefix; pages are built with
//! maud (which escapes every interpolated value) from the components in
//! [`components`] inside the [`layout::page`] frame, and answered by
//! [`html`], which sets a Content-Security-Policy that allows nothing but
//! the page's own origin (no inline script or style, no frames, forms only
//! to itself). [`guard`] holds the session cookie and the cross-site
//! request checks.
//!
//! An app mounts its assets with [`asset`] at `{prefix}assets/kaching.css`
//! and `{prefix}assets/live.js` (see [`Assets`]).

pub mod components;
pub mod guard;
pub mod layout;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::Markup;

pub use layout::{page, Assets, Nav};

/// The stylesheet every page links.
pub const STYLESHEET: &str = include_str!("kaching.css");

/// The script every live page loads: follows the page's event stream and
/// swaps its live region (see the file's header).
pub const LIVE_JS: &str = include_str!("live.js");

/// The policy of every page: only this origin, no inline code, no frames,
/// forms post only here.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
frame-ancestors 'none'; base-uri 'none'";

/// Sets the headers every web answer carries (pages and assets alike).
pub fn secure(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Not `no-referrer`: with it Chromium sends `Origin: null` on the page's
    // own form posts, which the cross-site check must refuse.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
}

/// An HTML answer (page or fragment), never cached: it shows live state.
pub fn html(status: StatusCode, body: Markup) -> Response {
    let mut resp = (status, body.into_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    secure(&mut resp);
    resp
}

/// An embedded asset (`text/css` or `text/javascript`), cacheable for an
/// hour: it changes only with the binary.
pub fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    secure(&mut resp);
    resp
}

/// The stylesheet as an answer.
pub fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", STYLESHEET)
}

/// The live script as an answer.
pub fn live_js() -> Response {
    asset("text/javascript; charset=utf-8", LIVE_JS)
}

/// `s` as one value of a query string (or a path segment): unreserved
/// bytes as they are, every other byte `%XX`.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b))
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `303 See Other` to `location` (after a form post: reloading the page
/// does not post again).
pub fn see_other(location: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    secure(&mut resp);
    resp
}

/// A page of `app` that says what went wrong (`title`, in a red banner)
/// and what to do next (`what`): every app's error page.
pub fn problem(
    app: &str,
    assets: Assets<'_>,
    status: StatusCode,
    title: &str,
    what: &str,
) -> Response {
    html(
        status,
        page(
            app,
            title,
            assets,
            &[],
            components::banner(components::Tone::Bad, title, maud::html! { (what) }),
        ),
    )
}

/// A posted multipart form holding the page's anti-forgery token and one file.
#[derive(Debug, Default)]
pub struct Upload {
    /// The `csrf` field, if sent.
    pub csrf: Option<String>,
    /// The file field's bytes, if sent.
    pub file: Option<Vec<u8>>,
}

/// Why an upload could not be read.
#[derive(Debug)]
pub enum UploadError {
    /// A field ended before its data did.
    CutOff,
    /// The body is not a readable multipart form (with the reason).
    Unreadable(String),
}

/// Reads a multipart form: the `csrf` field and the file in `file_field`;
/// other fields are ignored. The caller checks the token and says what a
/// missing or empty file means.
pub async fn read_upload(
    form: &mut axum::extract::Multipart,
    file_field: &str,
) -> Result<Upload, UploadError> {
    let mut got = Upload::default();
    loop {
        match form.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or_default().to_string();
                let data = field.bytes().await.map_err(|_| UploadError::CutOff)?;
                if name == "csrf" {
                    got.csrf = Some(String::from_utf8_lossy(&data).into_owned());
                } else if name == file_field {
                    got.file = Some(data.to_vec());
                }
            }
            Ok(None) => return Ok(got),
            Err(e) => return Err(UploadError::Unreadable(e.to_string())),
        }
    }
}

/// Reads every field of a multipart form, in order, as (name, bytes): for
/// a form that mixes text fields with an optional file. The caller checks
/// the `csrf` field.
pub async fn read_fields(
    form: &mut axum::extract::Multipart,
) -> Result<Vec<(String, Vec<u8>)>, UploadError> {
    let mut got = Vec::new();
    loop {
        match form.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or_default().to_string();
                let data = field.bytes().await.map_err(|_| UploadError::CutOff)?;
                got.push((name, data.to_vec()));
            }
            Ok(None) => return Ok(got),
            Err(e) => return Err(UploadError::Unreadable(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_keep_only_unreserved_bytes() {
        assert_eq!(urlencode("lic-0A_b.~"), "lic-0A_b.~");
        assert_eq!(urlencode("a b&c=d/é#"), "a%20b%26c%3Dd%2F%C3%A9%23");
    }

    #[test]
    fn pages_carry_a_policy_without_inline_code_or_frames() {
        let resp = html(StatusCode::OK, maud::html! { p { "hi" } });
        let csp = resp.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(csp.contains("script-src 'self';"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(resp.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(resp.headers()[header::REFERRER_POLICY], "same-origin");
        assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store");
    }

    #[test]
    fn assets_stay_small() {
        // The page-weight budget is 100 KiB with assets; these two are shared.
        assert!(STYLESHEET.len() + LIVE_JS.len() < 16 * 1024);
        assert!(!LIVE_JS.contains("http:") && !STYLESHEET.contains("http"));
    }
}
