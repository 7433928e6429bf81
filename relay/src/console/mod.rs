//! The vendor's fleet console at `/console/` (DESIGN §10), on the relay's
//! own listener: fleet, licenses (heartbeat sparklines, quota trends,
//! expiry horizon), revocations (history, propagation), the upgrade-request
//! inbox, and the audit chain with the tokens' names and scopes.
//!
//! - Sign-in: an `admin`-scope relay token, typed once into a form; the
//!   browser then holds an HttpOnly, SameSite=Strict cookie with a hash of
//!   it (`kaching_kit::web::guard`). This process remembers which token a
//!   cookie stands for (in memory, at most [`MAX_SESSIONS`]) and looks the
//!   token up again on every request: a token revoked with
//!   `kaching-relay token revoke` or one that is not `admin` is refused at
//!   once. A session is per relay process (behind several replicas, sign in
//!   on each; after a restart, sign in again).
//! - Every post must come from the console itself (Origin) and carry the
//!   process's anti-forgery token. The console's only posts are sign-in and
//!   sign-out: it reads, and it never signs anything (the relay holds no
//!   license or list key).
//! - Pages are server-rendered maud (every value escaped) under the shared
//!   strict Content-Security-Policy; sparklines are inline SVG. The fleet
//!   page is live: the shared script follows `/console/events` ([`live`])
//!   and swaps in `/console/live`.
//!
//! These routes are HTML for people, not the JSON API: they stay out of
//! the OpenAPI document (whose router test reads `routes/mod.rs`) and all
//! stay under `/console` (a test here holds that).

pub mod data;
pub mod live;
pub mod pages;
pub mod view;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::rejection::FormRejection;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use kaching_kit::serve::request_timeout;
use kaching_kit::web::guard::{self, Csrf};
use kaching_kit::web::{html, see_other};
use serde::Deserialize;

use crate::error::request_timed_out;
use crate::state::AppState;
use crate::tokens::Scope;

/// Where the console lives.
pub const PREFIX: &str = "/console/";

/// Sessions one process remembers; the oldest is forgotten beyond this.
pub const MAX_SESSIONS: usize = 256;

/// What the console's handlers share.
#[derive(Clone)]
pub(crate) struct Console {
    pub(crate) st: Arc<AppState>,
    pub(crate) csrf: Arc<Csrf>,
    /// Cookie value → (token, order of sign-in).
    sessions: Arc<Mutex<HashMap<String, (String, u64)>>>,
    /// Wrong tokens at sign-in per client address (5 a minute, then 429).
    sign_ins: Arc<guard::SignInLimit>,
}

impl Console {
    fn remember(&self, token: &str) {
        let Ok(mut s) = self.sessions.lock() else {
            return;
        };
        let next = s.values().map(|(_, n)| *n).max().unwrap_or(0) + 1;
        s.insert(guard::session_value(token), (token.to_string(), next));
        while s.len() > MAX_SESSIONS {
            let Some(oldest) = s
                .iter()
                .min_by_key(|(_, (_, n))| *n)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            s.remove(&oldest);
        }
    }

    fn token_of(&self, headers: &HeaderMap) -> Option<String> {
        let cookie = guard::cookie(headers, guard::SESSION_COOKIE)?;
        let s = self.sessions.lock().ok()?;
        s.iter()
            .find(|(k, _)| guard::same(k.as_bytes(), cookie.as_bytes()))
            .map(|(_, (t, _))| t.clone())
    }

    fn forget(&self, headers: &HeaderMap) {
        if let (Some(cookie), Ok(mut s)) = (
            guard::cookie(headers, guard::SESSION_COOKIE),
            self.sessions.lock(),
        ) {
            s.remove(cookie);
        }
    }
}

/// The console's routes, merged into the relay's router by
/// [`crate::routes::router`].
pub fn router(st: Arc<AppState>) -> Router {
    let timeout = st.config.request_timeout;
    let console = Console {
        st,
        csrf: Arc::new(Csrf::random()),
        sessions: Arc::new(Mutex::new(HashMap::new())),
        sign_ins: Arc::new(guard::SignInLimit::default()),
    };
    let gate = middleware::from_fn_with_state(console.clone(), gate);
    let pages = Router::new()
        .route("/console/", get(pages::fleet))
        .route("/console/licenses", get(pages::licenses))
        .route("/console/revocations", get(pages::revocations))
        .route("/console/inbox", get(pages::inbox))
        .route("/console/audit", get(pages::audit))
        .route("/console/live", get(pages::fleet_live))
        .route("/console/logout", post(logout))
        .route_layer(gate.clone())
        .route("/console", get(|| async { see_other(PREFIX) }))
        .route("/console/login", post(login))
        .route(
            "/console/assets/kaching.css",
            get(|| async { kaching_kit::web::stylesheet() }),
        )
        .route(
            "/console/assets/live.js",
            get(|| async { kaching_kit::web::live_js() }),
        )
        .with_state(console.clone());
    let pages = request_timeout(pages, timeout, request_timed_out);
    // The stream bounds its own lifetime (live::STREAM_FOR, and shutdown).
    let stream = Router::new()
        .route("/console/events", get(live::events))
        .route_layer(gate)
        .with_state(console);
    pages.merge(stream)
}

/// Which admin token a request's session stands for, if it still is one.
async fn signed_in(c: &Console, headers: &HeaderMap) -> Result<Option<String>, Response> {
    let Some(token) = c.token_of(headers) else {
        return Ok(None);
    };
    match c.st.storage.lookup_token(token).await {
        Ok(Some((name, Scope::Admin, false))) => Ok(Some(name)),
        Ok(_) => Ok(None),
        Err(e) => Err(pages::problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable.",
            &format!("cannot check the session's token ({}); retry", e.message),
        )),
    }
}

/// Who may see the console, and which posts count (see the module header).
async fn gate(State(c): State<Console>, req: Request, next: Next) -> Response {
    match signed_in(&c, req.headers()).await {
        Err(resp) => return resp,
        Ok(None) => {
            c.forget(req.headers());
            if req.method() == Method::GET {
                return html(StatusCode::UNAUTHORIZED, pages::login(c.csrf.token(), None));
            }
            return pages::problem(
                StatusCode::UNAUTHORIZED,
                "Not signed in.",
                "Open /console/ and sign in with an admin-scope relay token.",
            );
        }
        Ok(Some(_)) => {}
    }
    if req.method() == Method::POST {
        if let Err(why) = guard::same_origin(req.headers()) {
            tracing::warn!(path = %req.uri().path(), why, "cross-site console post refused");
            return pages::problem(
                StatusCode::FORBIDDEN,
                "Refused.",
                &format!("{why}: nothing was changed."),
            );
        }
    }
    next.run(req).await
}

fn bad_form(e: FormRejection) -> Response {
    pages::problem(
        StatusCode::BAD_REQUEST,
        "That form could not be read.",
        &format!("{e}: reload the page and try again."),
    )
}

fn forged() -> Response {
    tracing::warn!("console post without the console's anti-forgery token refused");
    pages::problem(
        StatusCode::FORBIDDEN,
        "Refused.",
        "the form did not carry this console's token (the relay may have restarted): reload the page and try again.",
    )
}

#[derive(Deserialize)]
struct LoginForm {
    csrf: String,
    token: String,
}

async fn login(
    State(c): State<Console>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    // Guessing a token is bounded per client address, before any lookup.
    let ip = peer.map_or(std::net::IpAddr::from([0, 0, 0, 0]), |p| p.0 .0.ip());
    let now = std::time::Instant::now();
    if let Err(wait) = c.sign_ins.check(ip, now) {
        tracing::warn!(%ip, "console sign-in refused: too many wrong tokens from this address");
        let secs = wait.as_secs().max(1);
        let mut resp = pages::problem(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many wrong tokens.",
            &format!(
                "Sign-in from this address is paused for {secs} s after repeated wrong tokens. \
                 Wait, then sign in with an admin token (`kaching-relay token create --scope admin`)."
            ),
        );
        if let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return resp;
    }
    if let Err(why) = guard::same_origin(&headers) {
        tracing::warn!(why, "cross-site console sign-in refused");
        return pages::problem(
            StatusCode::FORBIDDEN,
            "Refused.",
            &format!("{why}: sign in from /console/."),
        );
    }
    let f = match form {
        Ok(Form(f)) => f,
        Err(e) => return bad_form(e),
    };
    if !c.csrf.check(&f.csrf) {
        return forged();
    }
    let token = f.token.trim().to_string();
    let why = match c.st.storage.lookup_token(token.clone()).await {
        Ok(Some((name, Scope::Admin, false))) => {
            tracing::info!(token = %name, "console sign-in");
            c.remember(&token);
            let mut resp = see_other(PREFIX);
            if let Some(v) = guard::session_cookie(&token, PREFIX) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            return resp;
        }
        Ok(Some((name, scope, false))) => format!(
            "token {name:?} has scope {scope}; the console takes an admin token: create one with `kaching-relay token create --scope admin --name NAME`"
        ),
        Ok(Some((name, _, true))) => format!(
            "token {name:?} was revoked: create a new one with `kaching-relay token create --scope admin --name NAME`"
        ),
        Ok(None) => "that is not a token of this relay: copy the secret `kaching-relay token create --scope admin` printed".to_string(),
        Err(e) => {
            return pages::problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable.",
                &format!("cannot check the token ({}); retry", e.message),
            )
        }
    };
    c.sign_ins.failed(ip, now);
    tracing::warn!(%ip, "console sign-in refused: {why}");
    html(
        StatusCode::UNAUTHORIZED,
        pages::login(c.csrf.token(), Some(&why)),
    )
}

#[derive(Deserialize)]
struct LogoutForm {
    csrf: String,
}

async fn logout(
    State(c): State<Console>,
    headers: HeaderMap,
    form: Result<Form<LogoutForm>, FormRejection>,
) -> Response {
    match form {
        Ok(Form(f)) if c.csrf.check(&f.csrf) => {}
        Ok(_) => return forged(),
        Err(e) => return bad_form(e),
    }
    c.forget(&headers);
    let mut resp = see_other(PREFIX);
    if let Some(v) = guard::clear_cookie(PREFIX) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    #[test]
    fn console_routes_stay_under_console_and_out_of_the_api_document() {
        let routes = kaching_testkit::routes_in_source(include_str!("mod.rs"), &[]);
        assert!(routes.len() >= 8, "{routes:?}");
        let doc = serde_json::to_value(crate::openapi::document()).unwrap();
        for (method, path) in &routes {
            assert!(
                path == "/console" || path.starts_with("/console/"),
                "{method} {path}"
            );
            assert!(
                doc["paths"].get(path).is_none(),
                "{path} is in the API document"
            );
        }
    }
}
