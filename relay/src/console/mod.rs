//! The vendor's fleet console at `/console/` (DESIGN §10), on the relay's
//! own listener: fleet, licenses (heartbeat sparklines, quota trends,
//! expiry horizon), revocations (history, propagation), the upgrade-request
//! inbox, and the audit chain with the tokens' names and scopes.
//!
//! - Sign-in: an `admin`-scope relay token, typed once into a form; the
//!   browser then holds an HttpOnly, SameSite=Strict cookie that names the
//!   token and carries an expiry and a MAC keyed by the token's stored hash
//!   ([`session`]). No session is kept anywhere: every replica sharing the
//!   database, and the relay after a restart, accepts it; the token is
//!   looked up on every request, so one revoked with
//!   `kaching-relay token revoke` (or not `admin`) is refused at once
//!   everywhere. Sessions last [`session::SESSION_FOR`].
//! - Every post must come from the console itself (Origin) and carry an
//!   anti-forgery token: the session's ([`session::csrf`]), or for sign-in
//!   the value of a cookie set with the form. The console's only posts are
//!   sign-in and sign-out: it reads, and it never signs anything (the relay
//!   holds no license or list key).
//! - Pages are server-rendered maud (every value escaped) under the shared
//!   strict Content-Security-Policy; sparklines are inline SVG. Every page
//!   is live: the shared script follows `/console/events` ([`live`]) and
//!   swaps in the page's fragment (`/console/live`, `/console/inbox/live`,
//!   …). The fleet is filtered, ordered and paged by the database
//!   ([`data::Ask::Fleet`]).
//!
//! These routes are HTML for people, not the JSON API: they stay out of
//! the OpenAPI document (whose router test reads `routes/mod.rs`) and all
//! stay under `/console` (a test here holds that).

pub mod data;
pub mod live;
pub mod pages;
pub mod session;
pub mod view;

use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use kaching_kit::serve::request_timeout;
use kaching_kit::web::guard::{self, Csrf};
use kaching_kit::web::{html, see_other};
use serde::Deserialize;

use self::data::{Answer, Ask};
use crate::db::now;
use crate::error::request_timed_out;
use crate::state::AppState;
use crate::tokens::{self, Scope};

/// Where the console lives.
pub const PREFIX: &str = "/console/";

/// The sign-in form's anti-forgery cookie: the form carries the same
/// random value (any replica can compare the two).
pub const LOGIN_COOKIE: &str = "kaching_login";

/// What the console's handlers share.
#[derive(Clone)]
pub(crate) struct Console {
    pub(crate) st: Arc<AppState>,
    /// Wrong tokens at sign-in per client address (5 a minute, then 429).
    sign_ins: Arc<guard::SignInLimit>,
    /// The audit chain as this process last walked it whole (see
    /// `pages::audit_region`).
    pub(crate) walked: Arc<std::sync::Mutex<Option<pages::Walked>>>,
}

/// A signed-in request: whose session, and the anti-forgery token its
/// forms carry.
#[derive(Clone, Debug)]
pub(crate) struct Session {
    /// The admin token's name.
    pub(crate) name: String,
    /// The session's anti-forgery token ([`session::csrf`]).
    pub(crate) csrf: String,
}

/// The console's routes, merged into the relay's router by
/// [`crate::routes::router`].
pub fn router(st: Arc<AppState>) -> Router {
    let timeout = st.config.request_timeout;
    let console = Console {
        st,
        sign_ins: Arc::new(guard::SignInLimit::default()),
        walked: Arc::default(),
    };
    let gate = middleware::from_fn_with_state(console.clone(), gate);
    let pages = Router::new()
        .route("/console/", get(pages::fleet))
        .route("/console/licenses", get(pages::licenses))
        .route("/console/revocations", get(pages::revocations))
        .route("/console/inbox", get(pages::inbox))
        .route("/console/audit", get(pages::audit))
        .route("/console/live", get(pages::fleet_live))
        .route("/console/licenses/live", get(pages::licenses_live))
        .route("/console/revocations/live", get(pages::revocations_live))
        .route("/console/inbox/live", get(pages::inbox_live))
        .route("/console/audit/live", get(pages::audit_live))
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

fn unavailable(what: &str) -> Response {
    pages::problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "Unavailable.",
        &format!("cannot check the session's token ({what}); retry"),
    )
}

/// The session a request's cookie stands for, if it is still good: its MAC
/// matches the named token's stored hash, it has not expired, and the
/// token is still an unrevoked admin token (looked up on every request).
async fn signed_in(c: &Console, headers: &HeaderMap) -> Result<Option<Session>, Response> {
    let Some(cookie) = guard::cookie(headers, guard::SESSION_COOKIE) else {
        return Ok(None);
    };
    let Some(claimed) = session::claimed(cookie) else {
        tracing::warn!("console cookie that is no session cookie refused");
        return Ok(None);
    };
    let key = match c
        .st
        .storage
        .console(Ask::Session {
            name: claimed.name.clone(),
        })
        .await
    {
        Ok(Answer::Session(key)) => key,
        Ok(_) => return Err(unavailable("unexpected answer")),
        Err(e) => return Err(unavailable(&e.message)),
    };
    let Some(key) = key else {
        tracing::warn!(token = %claimed.name, "console session of an unknown token refused");
        return Ok(None);
    };
    if let Err(why) = session::check(&claimed, &key.hash, now()) {
        match why {
            session::Refused::Forged => {
                tracing::warn!(token = %claimed.name, "forged or altered console cookie refused");
            }
            session::Refused::Expired => {
                tracing::info!(token = %claimed.name, "expired console session");
            }
        }
        return Ok(None);
    }
    if key.revoked || key.scope != Scope::Admin.as_str() {
        tracing::warn!(token = %claimed.name, "console session of a revoked or non-admin token refused");
        return Ok(None);
    }
    Ok(Some(Session {
        csrf: session::csrf(cookie, &key.hash),
        name: claimed.name,
    }))
}

fn cookie_header(v: String) -> Option<HeaderValue> {
    HeaderValue::from_str(&v).ok()
}

/// The sign-in page (with why the last attempt was refused), setting the
/// anti-forgery cookie its form is checked against.
fn login_page(status: StatusCode, refused: Option<&str>) -> Response {
    let csrf = Csrf::random();
    let mut resp = html(status, pages::login(csrf.token(), refused));
    if let Some(v) = cookie_header(format!(
        "{LOGIN_COOKIE}={}; HttpOnly; SameSite=Strict; Path={PREFIX}",
        csrf.token()
    )) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// Who may see the console, and which posts count (see the module header).
async fn gate(State(c): State<Console>, mut req: Request, next: Next) -> Response {
    let s = match signed_in(&c, req.headers()).await {
        Err(resp) => return resp,
        Ok(None) => {
            if req.method() == Method::GET {
                return login_page(StatusCode::UNAUTHORIZED, None);
            }
            return pages::problem(
                StatusCode::UNAUTHORIZED,
                "Not signed in.",
                "Open /console/ and sign in with an admin-scope relay token.",
            );
        }
        Ok(Some(s)) => s,
    };
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
    req.extensions_mut().insert(s);
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
        "the form did not carry this page's anti-forgery token: reload the page and try again.",
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
    let at = std::time::Instant::now();
    if let Err(wait) = c.sign_ins.check(ip, at) {
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
    let expected = guard::cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !guard::same(expected.as_bytes(), f.csrf.as_bytes()) {
        return forged();
    }
    let token = f.token.trim().to_string();
    let why = match c.st.storage.lookup_token(token.clone()).await {
        Ok(Some((name, Scope::Admin, false))) => {
            tracing::info!(token = %name, "console sign-in");
            let value = session::issue(&name, &tokens::hash(&token), now());
            let mut resp = see_other(PREFIX);
            if let Some(v) = cookie_header(format!(
                "{}={value}; HttpOnly; SameSite=Strict; Path={PREFIX}; Max-Age={}",
                guard::SESSION_COOKIE,
                session::SESSION_FOR
            )) {
                resp.headers_mut().append(header::SET_COOKIE, v);
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
    c.sign_ins.failed(ip, at);
    tracing::warn!(%ip, "console sign-in refused: {why}");
    login_page(StatusCode::UNAUTHORIZED, Some(&why))
}

#[derive(Deserialize)]
struct LogoutForm {
    csrf: String,
}

async fn logout(
    Extension(s): Extension<Session>,
    form: Result<Form<LogoutForm>, FormRejection>,
) -> Response {
    match form {
        Ok(Form(f)) if guard::same(f.csrf.as_bytes(), s.csrf.as_bytes()) => {}
        Ok(_) => return forged(),
        Err(e) => return bad_form(e),
    }
    tracing::info!(token = %s.name, "console sign-out");
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
