//! The sales-ops desk, `licensegen ui`: a local web app over the vendor
//! directory for the offline laptop (DESIGN §10, docs/sales-ops.md).
//!
//! - It listens on loopback only and answers only under a loopback `Host`
//!   (a re-pointed DNS name cannot make another site same-origin with it).
//! - It prints a one-time URL with a random token (as Jupyter does). The
//!   first visit trades the token for an `HttpOnly`, `SameSite=Strict`
//!   session cookie and is redirected to the same page without the token,
//!   so the token leaves the address bar, the history and any `Referer`;
//!   the token then no longer opens a session. Without the cookie every
//!   page is 401.
//! - Every post must come from the desk's own page (`Origin`) and carry its
//!   anti-forgery token (`kaching_kit::web::guard`).
//! - The vendor key is unlocked once per session (the form, or
//!   `KACHING_PASSPHRASE` / `--passphrase-file` / `--identity` at start) and
//!   kept only in this process's memory; "Lock" and exit drop it, and the
//!   key type wipes its bytes on drop.
//! - No decision is made here: issuing, upgrades, renewals, suspensions,
//!   clock resets and the ledger's filter and usage-report import are the
//!   functions the CLI commands call.
//!
//! These are HTML pages for a person, not an API: none is in an OpenAPI
//! document, and all stay under `/desk/`.

mod actions;
mod clock_reset;
mod pages;
mod requests;
mod usage;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, Result};
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use kaching_core::SecretKey;
use kaching_kit::web::guard::{self, Csrf};
use kaching_kit::web::see_other;

use crate::keystore::Unlock;
use crate::vendor_dir::VendorDir;

/// Where every desk page lives.
pub const PREFIX: &str = "/desk/";

/// How `licensegen ui` was asked to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The vendor directory.
    pub vendor: PathBuf,
    /// `--listen`: `127.0.0.1:0`, `PORT`, `localhost:PORT`, `[::1]:PORT`.
    pub listen: String,
    /// `--no-open`: do not start a browser.
    pub no_open: bool,
    /// The CLI's key sources (passphrase file / env, age identity).
    pub unlock: Unlock,
}

/// Where to listen: loopback only, else a usage error that says what to do.
pub fn listen_addr(text: &str) -> Result<SocketAddr> {
    let t = text.trim();
    if let Ok(port) = t.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if let Some(port) = t.strip_prefix("localhost:") {
        if let Ok(port) = port.parse::<u16>() {
            return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
        }
    }
    let addr: SocketAddr = t.parse().map_err(|_| {
        crate::error::usage(format!(
            "--listen {t:?}: write a port (8080) or a loopback address with a port (127.0.0.1:8080, [::1]:8080)"
        ))
    })?;
    if !addr.ip().is_loopback() {
        return Err(crate::error::usage(format!(
            "--listen {t}: the desk listens on loopback only (it holds the vendor key); use 127.0.0.1:PORT, \
             and from another machine reach it through `ssh -L PORT:127.0.0.1:PORT` instead"
        )));
    }
    Ok(addr)
}

/// What the desk's handlers share.
#[derive(Clone)]
pub(crate) struct Desk {
    /// The vendor directory (re-read per request: the CLI may write too).
    pub vendor_root: PathBuf,
    /// The one-time URL token; `None` once it was traded for a session.
    url_token: Arc<Mutex<Option<String>>>,
    /// What the session cookie stands for (never sent to the browser).
    session_secret: Arc<String>,
    /// This process's anti-forgery token.
    pub csrf: Arc<Csrf>,
    /// The unlocked vendor key, in memory only.
    pub key: Arc<Mutex<Option<SecretKey>>>,
    /// The CLI's key sources (an age identity for recipient-encrypted keys).
    pub unlock: Unlock,
}

impl Desk {
    /// Opens the vendor directory.
    pub fn vendor(&self) -> Result<VendorDir> {
        VendorDir::open(&self.vendor_root)
    }

    /// Whether the key is unlocked.
    pub fn unlocked(&self) -> bool {
        self.key
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Drops the key (its bytes are wiped on drop).
    pub fn forget_key(&self) {
        drop(
            self.key
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }
}

/// Runs the desk until Ctrl-C: prints the one-time URL, opens a browser
/// unless `no_open`, and forgets the key on the way out.
pub fn serve(opts: &Options) -> Result<u8> {
    let addr = listen_addr(&opts.listen)?;
    let vendor = VendorDir::open(&opts.vendor)?;
    let desk = Desk {
        vendor_root: opts.vendor.clone(),
        url_token: Arc::new(Mutex::new(Some(Csrf::random().token().to_string()))),
        session_secret: Arc::new(Csrf::random().token().to_string()),
        csrf: Arc::new(Csrf::random()),
        key: Arc::new(Mutex::new(None)),
        unlock: opts.unlock.clone(),
    };
    // The CLI's non-interactive sources unlock at start, as for any command.
    if opts.unlock.passphrase.is_non_interactive() || opts.unlock.identity.is_some() {
        let key = actions::unseal(&desk, &vendor, None)?;
        *desk.key.lock().unwrap_or_else(PoisonError::into_inner) = Some(key);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the desk's runtime")?;
    let result = rt.block_on(async {
        let listener = kaching_kit::serve::bind(addr, "--listen")
            .await
            .map_err(anyhow::Error::msg)?;
        let local = listener.local_addr()?;
        let token = desk
            .url_token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_default();
        let url = format!("http://{local}{PREFIX}?token={token}");
        crate::output::out(&format!(
            "licensegen desk for {}\nopen {url}\n(the link works once, in one browser; Ctrl-C stops the desk and forgets the key)\n",
            vendor.root.display()
        ))?;
        if !opts.no_open {
            open_browser(&url);
        }
        axum::serve(listener, router(desk.clone()))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("the desk's listener failed")
    });
    desk.forget_key();
    crate::output::note("desk stopped; the vendor key is forgotten");
    result.map(|()| crate::exit::OK)
}

/// Starts the system's browser on `url`, if there is one; never fatal.
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let started = std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if started.is_err() {
        crate::output::note("no browser started: open the link above yourself");
    }
}

/// The desk's routes.
pub(crate) fn router(desk: Desk) -> Router {
    let gate = middleware::from_fn_with_state(desk.clone(), gate);
    Router::new()
        .route("/desk/", get(actions::ledger))
        .route("/desk/license/{id}", get(actions::license))
        .route("/desk/license/{id}/download/{form}", get(actions::download))
        .route("/desk/license/{id}/change", post(actions::change))
        .route("/desk/license/{id}/receipt", post(usage::receipt_for))
        .route("/desk/issue", get(actions::issue_form).post(actions::issue))
        .route(
            "/desk/clock-reset",
            get(clock_reset::form).post(clock_reset::post),
        )
        .route("/desk/clock-reset/{id}", get(clock_reset::show))
        .route(
            "/desk/clock-reset/{id}/download",
            get(clock_reset::download),
        )
        .route("/desk/revocations/download", get(actions::download_list))
        .route("/desk/usage", post(usage::import))
        .route("/desk/usage/{file}", get(usage::receipt))
        .route("/desk/unlock", post(actions::unlock))
        .route("/desk/lock", post(actions::lock))
        .route(
            "/desk/assets/kaching.css",
            get(|| async { kaching_kit::web::stylesheet() }),
        )
        .route("/desk", get(|| async { see_other(PREFIX) }))
        .layer(gate)
        .with_state(desk)
}

/// Loopback name, one-time token exchange, session, same-origin posts (see
/// the module header).
async fn gate(State(desk): State<Desk>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    if !guard::loopback_host(headers) {
        tracing::warn!(host = ?headers.get(header::HOST), "desk asked for under a non-loopback name; refused");
        return pages::problem(
            StatusCode::FORBIDDEN,
            "Wrong address.",
            "The desk answers only as http://127.0.0.1:PORT/desk/ or http://localhost:PORT/desk/.",
        );
    }
    if req.uri().path() == "/desk/assets/kaching.css" {
        return next.run(req).await;
    }
    let given = req.uri().query().and_then(|q| {
        q.split('&')
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| *k == "token")
            .map(|(_, v)| v.to_string())
    });
    if let Some(given) = given {
        let mut slot = desk
            .url_token
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let ok = slot
            .as_deref()
            .is_some_and(|t| guard::same(t.as_bytes(), given.as_bytes()));
        if !ok {
            return pages::problem(
                StatusCode::UNAUTHORIZED,
                "This link does not open the desk.",
                "Its token is wrong or was already used (each link works once): restart `licensegen ui` for a new link.",
            );
        }
        *slot = None;
        // Back to the same page without the token in the address (a desk
        // path only: never a `//host` redirect).
        let path = req.uri().path();
        let to = if path.starts_with(PREFIX) && !path.contains("//") {
            path
        } else {
            PREFIX
        };
        let mut resp = see_other(to);
        if let Some(c) = guard::session_cookie(&desk.session_secret, PREFIX) {
            resp.headers_mut().insert(header::SET_COOKIE, c);
        }
        return resp;
    }
    if !guard::has_session(headers, &desk.session_secret) {
        return pages::problem(
            StatusCode::UNAUTHORIZED,
            "Not signed in.",
            "Open the link `licensegen ui` printed (it works once); for a new link, restart `licensegen ui`.",
        );
    }
    if req.method() == Method::POST {
        if let Err(why) = guard::same_origin(headers) {
            tracing::warn!(path = %req.uri().path(), why, "cross-site form post to the desk refused");
            return pages::problem(
                StatusCode::FORBIDDEN,
                "Refused.",
                &format!("{why}: nothing was changed."),
            );
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses_are_accepted() {
        assert_eq!(
            listen_addr("8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            listen_addr("localhost:9").unwrap(),
            "127.0.0.1:9".parse().unwrap()
        );
        assert!(listen_addr("[::1]:0").is_ok());
        for bad in [
            "0.0.0.0:80",
            "10.1.2.3:8080",
            "[::]:1",
            "example.com:80",
            "",
        ] {
            assert!(listen_addr(bad).is_err(), "{bad}");
        }
        let e = listen_addr("0.0.0.0:8080").unwrap_err().to_string();
        assert!(e.contains("loopback only") && e.contains("ssh -L"), "{e}");
    }

    #[test]
    fn desk_routes_stay_under_desk() {
        let routes = kaching_testkit::routes_in_source(include_str!("mod.rs"), &[]);
        assert!(routes.len() >= 8, "{routes:?}");
        for (method, path) in &routes {
            assert!(
                path == "/desk" || path.starts_with("/desk/"),
                "{method} {path}"
            );
        }
    }
}
