//! The customer's license page at `/ui/` (DESIGN §10), on the API's own
//! listener and under the API's access rule: open on loopback without a
//! token; with a token, signed in once through a form and then carried in
//! an HttpOnly, SameSite=Strict cookie (see `kaching_kit::web::guard`).
//!
//! It reads what the JSON API reads (the published verdict, the node and
//! upgrade lists through the engine) and files upgrade requests through the
//! same engine write as `POST /v1/upgrade-requests`. Every post must come
//! from the page itself (Origin) and carry the page's anti-forgery token.
//! The page follows `/ui/events` (the `/v1/events` stream behind the
//! cookie, since a browser's EventSource cannot send a bearer header) and
//! swaps in `/ui/live`.
//!
//! These routes are HTML for people, not the JSON API: they are not in the
//! OpenAPI document (whose router test reads api.rs), and all stay under
//! `/ui` (a test here holds that).

pub mod admin;
pub mod page;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::FormRejection;
use axum::extract::{Query, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use kaching_core::wire::verifier::{NodeList, UpgradeBody, UpgradeList};
use kaching_kit::serve::request_timeout;
use kaching_kit::web::components::Tone;
use kaching_kit::web::guard::{self, Csrf};
use kaching_kit::web::{html, see_other};
use serde::Deserialize;

use crate::actor::Command;
use crate::api::AppState;
use crate::engine::Outcome;
use crate::error::request_timed_out;
use page::{Notice, View};

/// What the page's handlers share.
#[derive(Clone)]
pub(crate) struct Ui {
    /// The API's state: engine handle, token, event-stream slots.
    api: AppState,
    /// This process's anti-forgery token, put in every form.
    csrf: Arc<Csrf>,
}

/// The page's routes, merged into the API's router by [`crate::api::router`].
pub fn router(api: AppState, timeout: Duration) -> Router {
    let ui = Ui {
        api,
        csrf: Arc::new(Csrf::random()),
    };
    let gate = middleware::from_fn_with_state(ui.clone(), gate);
    let pages = Router::new()
        .route("/ui/", get(index))
        .route("/ui/live", get(live))
        .route("/ui/upgrade-requests", post(file_upgrade))
        .route("/ui/logout", post(logout))
        .route("/ui/license/preview", post(admin::preview))
        .route("/ui/license/install", post(admin::install))
        .route("/ui/activation-request", post(admin::activation_request))
        .route("/ui/usage-report", post(admin::usage_report))
        .route_layer(gate.clone())
        .route("/ui", get(|| async { see_other("/ui/") }))
        .route("/ui/login", post(login))
        .route(
            "/ui/assets/kaching.css",
            get(|| async { kaching_kit::web::stylesheet() }),
        )
        .route(
            "/ui/assets/live.js",
            get(|| async { kaching_kit::web::live_js() }),
        )
        .with_state(ui.clone());
    let pages = request_timeout(pages, timeout, request_timed_out);
    // The stream bounds its own lifetime, like /v1/events.
    let stream = Router::new()
        .route("/ui/events", get(events))
        .route_layer(gate)
        .with_state(ui);
    pages.merge(stream)
}

/// A page that says what went wrong and what to do.
pub(crate) fn problem(status: StatusCode, title: &str, what: &str) -> Response {
    let assets = kaching_kit::web::Assets {
        prefix: page::PREFIX,
        live: None,
    };
    kaching_kit::web::problem("License", assets, status, title, what)
}

/// Who may see the page, and which posts count (see the module header).
async fn gate(State(ui): State<Ui>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    match &ui.api.token {
        // Open on loopback: only under a loopback name, so a rebound DNS
        // name cannot make another site same-origin with this page.
        None if !guard::host_allowed(headers, &ui.api.allowed_hosts) => {
            tracing::warn!(host = ?headers.get(header::HOST), "license page asked for under a non-loopback name; refused");
            return problem(
                StatusCode::FORBIDDEN,
                "Wrong address.",
                "This page answers only as http://127.0.0.1:PORT/ui/ or http://localhost:PORT/ui/ \
                 (or list this name in allowed_hosts, or set a token_file, to serve it under other names).",
            );
        }
        Some(token) if !guard::has_session(headers, &token.0) => {
            if req.method() == Method::GET && req.uri().path() == "/ui/" {
                return html(StatusCode::UNAUTHORIZED, page::login(ui.csrf.token(), None));
            }
            return problem(
                StatusCode::UNAUTHORIZED,
                "Not signed in.",
                "Open /ui/ and sign in with the verifier's API token.",
            );
        }
        _ => {}
    }
    if req.method() == Method::POST {
        if let Err(why) = guard::same_origin(headers) {
            tracing::warn!(path = %req.uri().path(), why, "cross-site form post refused");
            return problem(
                StatusCode::FORBIDDEN,
                "Refused.",
                &format!("{why}: nothing was changed."),
            );
        }
    }
    next.run(req).await
}

/// What one rendering needs from the engine, in one trip: the leases, the
/// requests and the lease TTL (a lease's last renewal is its expiry minus it).
async fn lists(ui: &Ui) -> Result<(NodeList, UpgradeList, u64), Response> {
    let got = admin::on_engine(ui, |e, now| {
        let nodes = e.soonest_nodes(now, page::NODES_SHOWN);
        let upgrades = match e.list_upgrades() {
            Ok(Outcome::Upgrades(u)) => Ok(u),
            Ok(_) => Err("the engine did not list the upgrade requests; retry".to_string()),
            Err(err) => Err(format!(
                "cannot read the upgrade requests from the state database ({err:#}); retry"
            )),
        };
        (nodes, upgrades, e.cfg.lease_ttl.as_secs())
    })
    .await?;
    match got {
        (n, Ok(u), ttl) => Ok((n, u, ttl)),
        (_, Err(why), _) => Err(problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable.",
            &why,
        )),
    }
}

/// Renders the full page (status 200, or 422 after a refused request).
async fn render(ui: &Ui, status: StatusCode, notice: Option<Notice>) -> Response {
    let (nodes, upgrades, lease_ttl) = match lists(ui).await {
        Ok(l) => l,
        Err(resp) => return resp,
    };
    let published = ui.api.handle.published.borrow().clone();
    let view = View {
        now: published.verdict.evaluated_at,
        published: &published,
        nodes: &nodes,
        upgrades: &upgrades,
        lease_ttl,
    };
    let body = page::full(
        &view,
        ui.csrf.token(),
        ui.api.token.is_some(),
        notice.as_ref(),
    );
    html(status, body)
}

#[derive(Deserialize)]
struct Filed {
    filed: Option<i64>,
    installed: Option<String>,
}

async fn index(
    State(ui): State<Ui>,
    q: Result<Query<Filed>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = q.ok().map(|Query(f)| f);
    let filed = q.as_ref().and_then(|f| f.filed).map(|id| Notice {
        tone: Tone::Good,
        title: "Filed.",
        text: format!(
            "Upgrade request #{id} is queued; it reaches the vendor with the next usage report or heartbeat."
        ),
    });
    // Only a license id: the query cannot put other words on the page.
    let installed = q
        .and_then(|f| f.installed)
        .and_then(|id| id.parse::<kaching_core::LicenseId>().ok())
        .map(|id| Notice {
        tone: Tone::Good,
        title: "Installed.",
        text: format!(
            "License {id} was written where this verifier looks; it is in force within a second (this page follows by itself), \
             unless the state above says why not."
        ),
    });
    let notice = filed.or(installed);
    render(&ui, StatusCode::OK, notice).await
}

async fn live(State(ui): State<Ui>) -> Response {
    let (nodes, upgrades, lease_ttl) = match lists(&ui).await {
        Ok(l) => l,
        Err(resp) => return resp,
    };
    let published = ui.api.handle.published.borrow().clone();
    let view = View {
        now: published.verdict.evaluated_at,
        published: &published,
        nodes: &nodes,
        upgrades: &upgrades,
        lease_ttl,
    };
    html(StatusCode::OK, page::live(&view))
}

async fn events(State(ui): State<Ui>) -> Response {
    crate::api::events(State(ui.api)).await
}

#[derive(Deserialize)]
struct UpgradeForm {
    csrf: String,
    requested_tier: String,
    #[serde(default)]
    message: String,
}

pub(crate) fn bad_form(e: FormRejection) -> Response {
    problem(
        StatusCode::BAD_REQUEST,
        "That form could not be read.",
        &format!("{e}: reload the page and try again."),
    )
}

pub(crate) fn forged() -> Response {
    tracing::warn!("form post without this page's anti-forgery token refused");
    problem(
        StatusCode::FORBIDDEN,
        "Refused.",
        "the form did not carry this page's token (the verifier may have restarted): reload the page and try again.",
    )
}

async fn file_upgrade(
    State(ui): State<Ui>,
    form: Result<Form<UpgradeForm>, FormRejection>,
) -> Response {
    let f = match form {
        Ok(Form(f)) => f,
        Err(e) => return bad_form(e),
    };
    if !ui.csrf.check(&f.csrf) {
        return forged();
    }
    let body = UpgradeBody {
        requested_tier: f.requested_tier.trim().to_string(),
        message: f.message,
    };
    let refused = |text: String| Notice {
        tone: Tone::Bad,
        title: "Not filed.",
        text,
    };
    if let Err(e) = crate::api::check_upgrade(&body) {
        return render(
            &ui,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(refused(e.message)),
        )
        .await;
    }
    let write = crate::actor::Write::Upgrade(body.requested_tier, body.message);
    match crate::api::command(&ui.api, |r| Command::Write(write, r)).await {
        Ok(Outcome::UpgradeQueued(q)) => see_other(&format!("/ui/?filed={}#request", q.id)),
        Ok(Outcome::UpgradeRefused(e)) => {
            render(
                &ui,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(refused(e.error.message)),
            )
            .await
        }
        Ok(Outcome::StateDatabaseLost(e)) => {
            render(
                &ui,
                StatusCode::SERVICE_UNAVAILABLE,
                Some(refused(e.error.message)),
            )
            .await
        }
        Ok(_) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable.",
            "unexpected answer from the engine; retry",
        ),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, "Not filed.", &e.message),
    }
}

#[derive(Deserialize)]
struct LoginForm {
    csrf: String,
    token: String,
}

async fn login(
    State(ui): State<Ui>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: axum::http::HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Some(token) = &ui.api.token else {
        return see_other("/ui/");
    };
    // Guessing the token is bounded per client address (before the token
    // is looked at: a locked-out address learns nothing, right or wrong).
    let ip = peer.map_or(std::net::IpAddr::from([0, 0, 0, 0]), |p| p.0 .0.ip());
    let now = std::time::Instant::now();
    if let Err(wait) = ui.api.sign_ins.check(ip, now) {
        tracing::warn!(%ip, "license page sign-in refused: too many wrong tokens from this address");
        let secs = wait.as_secs().max(1);
        let mut resp = problem(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many wrong tokens.",
            &format!(
                "Sign-in from this address is paused for {secs} s after repeated wrong tokens. \
                 Wait, then sign in with the token from the file named by token_file."
            ),
        );
        if let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return resp;
    }
    if let Err(why) = guard::same_origin(&headers) {
        tracing::warn!(why, "cross-site sign-in refused");
        return problem(
            StatusCode::FORBIDDEN,
            "Refused.",
            &format!("{why}: sign in from /ui/."),
        );
    }
    let f = match form {
        Ok(Form(f)) => f,
        Err(e) => return bad_form(e),
    };
    if !ui.csrf.check(&f.csrf) {
        return forged();
    }
    if !guard::same(f.token.trim().as_bytes(), token.0.as_bytes()) {
        ui.api.sign_ins.failed(ip, now);
        tracing::warn!(%ip, "license page sign-in with a wrong token refused");
        return html(
            StatusCode::UNAUTHORIZED,
            page::login(
                ui.csrf.token(),
                Some("that is not this verifier's API token: copy it from the file named by token_file"),
            ),
        );
    }
    let mut resp = see_other("/ui/");
    if let Some(c) = guard::session_cookie(&token.0, page::PREFIX) {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    resp
}

#[derive(Deserialize)]
struct LogoutForm {
    csrf: String,
}

async fn logout(State(ui): State<Ui>, form: Result<Form<LogoutForm>, FormRejection>) -> Response {
    match form {
        Ok(Form(f)) if ui.csrf.check(&f.csrf) => {}
        Ok(_) => return forged(),
        Err(e) => return bad_form(e),
    }
    let mut resp = see_other("/ui/");
    if let Some(c) = guard::clear_cookie(page::PREFIX) {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    resp
}

#[cfg(test)]
mod tests {
    #[test]
    fn page_routes_stay_under_ui_and_out_of_the_api_document() {
        let routes = kaching_testkit::routes_in_source(include_str!("mod.rs"), &[]);
        assert!(routes.len() >= 8, "{routes:?}");
        let doc = serde_json::to_value(crate::openapi::document()).unwrap();
        for (method, path) in &routes {
            assert!(path == "/ui" || path.starts_with("/ui/"), "{method} {path}");
            assert!(
                doc["paths"].get(path).is_none(),
                "{path} is in the API document"
            );
        }
    }
}
