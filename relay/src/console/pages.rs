//! The console's pages: each handler reads, shapes ([`super::view`]) and
//! renders with the shared components; every value is escaped by maud.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use kaching_core::time::rfc3339;
use kaching_kit::web::components::{self as ui, Tone};
use kaching_kit::web::{html, page, urlencode, Assets, Nav};
use maud::{html as markup, Markup};
use serde::Deserialize;

use super::data::{Answer, Ask, FleetAsk, FleetPage, LicenseList, LicensePage};
use super::view::{self, Filter, PAGE};
use super::{Console, Session, PREFIX};
use crate::db::now;
use crate::error::ApiError;

const APP: &str = "Fleet console";
/// Licenses the licenses page shows in full per page. With their clusters,
/// sparklines and quota trends, a page of them stays within the consoles'
/// 100 KiB budget (tested: `licenses_page_sparklines_count_every_hour_of_a_busy_fleet`).
pub const LICENSES_PAGE: usize = 20;
/// Clusters listed under each license there; the fleet page, searched by
/// the license id, lists them all.
pub const CLUSTERS_PER_LICENSE: u32 = 5;
/// Upgrade requests listed under each license there, newest first; the
/// inbox, for the license, lists them all.
pub const UPGRADES_PER_LICENSE: u32 = 3;
/// Upgrade requests per inbox page, newest first.
pub const INBOX_PAGE: u32 = 50;
/// Rows of the renewals table, soonest first, on every page: the count
/// says how many expire in all, and the licenses below are listed
/// soonest to expire first.
pub const EXPIRING_SHOWN: usize = 20;
/// The sparklines' points: one a clock hour, the current hour and the 23
/// before it.
const BUCKETS: usize = 24;

const NAV: &[Nav<'static>] = &[
    Nav {
        href: "/console/",
        label: "Fleet",
    },
    Nav {
        href: "/console/licenses",
        label: "Licenses",
    },
    Nav {
        href: "/console/revocations",
        label: "Revocations",
    },
    Nav {
        href: "/console/inbox",
        label: "Upgrade requests",
    },
    Nav {
        href: "/console/audit",
        label: "Audit",
    },
];

fn assets() -> Assets<'static> {
    Assets {
        prefix: PREFIX,
        live: None,
    }
}

/// A live page: `head` stays, `region` is what the shared script replaces
/// with `live_url` on every `/console/events` event.
fn live_frame(s: &Session, title: &str, live_url: &str, head: Markup, region: Markup) -> Response {
    let assets = Assets {
        prefix: PREFIX,
        live: Some(("/console/events", live_url)),
    };
    let body = markup! {
        (head)
        div id="live" { (region) }
        form method="post" action="/console/logout" {
            (ui::csrf_field(&s.csrf))
            button class="quiet" type="submit" { "Sign out" }
        }
    };
    html(StatusCode::OK, page(APP, title, assets, NAV, body))
}

/// A live region alone (for the script), or why it could not be read.
fn fragment(region: Result<Markup, Response>) -> Response {
    match region {
        Ok(m) => html(StatusCode::OK, m),
        Err(resp) => resp,
    }
}

/// A page that says what went wrong and what to do.
pub(crate) fn problem(status: StatusCode, title: &str, what: &str) -> Response {
    kaching_kit::web::problem(APP, assets(), status, title, what)
}

fn unavailable(e: ApiError) -> Response {
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "Unavailable.",
        &format!("cannot read the relay's database ({}); retry", e.message),
    )
}

/// The sign-in page, with why the last attempt was refused.
pub(crate) fn login(csrf: &str, refused: Option<&str>) -> Markup {
    let body = markup! {
        @if let Some(why) = refused {
            (ui::banner(Tone::Bad, "Not signed in.", markup! { (why) }))
        }
        (ui::section("login", "Sign in", markup! {
            p { "The fleet console takes an " strong { "admin" } "-scope relay token \
                 (" code { "kaching-relay token create --scope admin --name NAME" } "). \
                 The browser keeps only a hash of it, in a cookie no script can read." }
            form method="post" action="/console/login" {
                (ui::csrf_field(csrf))
                (ui::secret_field("Admin token", "token"))
                button type="submit" { "Sign in" }
            }
        }))
    };
    page(APP, "Sign in", assets(), &[], body)
}

async fn ask(c: &Console, a: Ask) -> Result<Answer, Response> {
    c.st.storage.console(a).await.map_err(unavailable)
}

async fn licenses_of(c: &Console, list: LicenseList) -> Result<LicensePage, Response> {
    match ask(c, Ask::Licenses(list)).await? {
        Answer::Licenses(l) => Ok(l),
        _ => Err(problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Unavailable.",
            "unexpected answer; retry",
        )),
    }
}

fn when(t: u64) -> Markup {
    markup! { time datetime=(rfc3339(t)) { (rfc3339(t)) } }
}

fn status_tone(status: &str) -> Tone {
    match status {
        "active" => Tone::Good,
        "displaced" => Tone::Warn,
        _ => Tone::Info,
    }
}

fn state_tone(state: &str) -> Tone {
    match state {
        "active" => Tone::Good,
        "grace" | "degraded" => Tone::Warn,
        "suspended" | "revoked" | "expired" | "invalid" => Tone::Bad,
        _ => Tone::Info,
    }
}

/// What the database is asked for the fleet page `f`.
pub fn fleet_ask(f: &Filter) -> FleetAsk {
    FleetAsk {
        status: f.status.clone(),
        q: f.q.trim().to_lowercase(),
        flagged_only: f.anomalies.is_some(),
        offset: (f.page as u64).saturating_mul(PAGE as u64),
        limit: PAGE as u32,
    }
}

async fn fleet_data(c: &Console, f: &Filter) -> Result<FleetPage, Response> {
    match ask(c, Ask::Fleet(fleet_ask(f))).await? {
        Answer::Fleet(p) => Ok(p),
        _ => Err(problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Unavailable.",
            "unexpected answer; retry",
        )),
    }
}

/// The query string of `f` at page index `page` (the URL counts from 1).
fn query_of(f: &Filter, page: usize) -> String {
    let mut q = vec![("page", page.saturating_add(1).to_string())];
    if !f.status.is_empty() {
        q.push(("status", f.status.clone()));
    }
    if !f.q.is_empty() {
        q.push(("q", f.q.clone()));
    }
    if f.anomalies.is_some() {
        q.push(("anomalies", "1".into()));
    }
    q.iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The part of the fleet page the live script replaces.
fn fleet_region(d: &FleetPage, f: &Filter) -> Markup {
    let customers = &d.customers;
    let by_status = &d.by_status;
    let all: u64 = by_status.values().sum();
    let flagged = d.flagged;
    let rows = &d.rows;
    let total = usize::try_from(d.matched).unwrap_or(usize::MAX);
    let table_rows: Vec<Vec<Markup>> = rows
        .iter()
        .map(|r| {
            vec![
                markup! {
                    code { (r.cluster_id) }
                    @for a in &r.anomalies {
                        br; (ui::badge(Tone::Bad, &a.kind, None)) " " span class="muted" { (a.at) ": " (a.detail) }
                    }
                },
                markup! { (customers.get(&r.license_id).map_or("", String::as_str)) br; a href=(license_link(&r.license_id)) { code { (r.license_id) } } },
                markup! { (r.hostname) },
                markup! { (ui::badge(status_tone(&r.status), &r.status, None)) },
                markup! { @if let Some(s) = &r.state { (ui::badge(state_tone(s), s, None)) } @else { span class="muted" { "no heartbeat yet" } } },
                markup! { (r.last_seen) },
                markup! { (r.active_nodes) },
                markup! { (r.verifier_version.as_deref().unwrap_or("—")) },
            ]
        })
        .collect();
    markup! {
        @if flagged > 0 {
            (ui::banner(Tone::Bad, "Signs of rollback.", markup! {
                (flagged) " cluster(s) sent heartbeats that contradict their own history \
                 (a restored snapshot or a copied state directory). They are listed first; "
                a href="/console/?anomalies=1" { "show only them" } "."
            }))
        }
        (ui::section("summary", "Clusters by status", ui::facts(&by_status.iter().map(|(k, v)| (k.as_str(), markup! { (v) })).collect::<Vec<_>>())))
        (ui::section("clusters", "Clusters", markup! {
            p class="muted" id="matched" { (total) " of " (all) " cluster(s) match." }
            (ui::table("Clusters, signs of rollback first", &["Cluster", "Customer / license", "Hostname", "Binding", "State", "Last seen", "Nodes", "Verifier"], &table_rows))
            nav class="pager" aria-label="Pages" {
                @if f.page > 0 { a href={ "/console/?" (query_of(f, f.page - 1)) } rel="prev" { "← Previous" } }
                @if (f.page + 1).saturating_mul(PAGE) < total { a href={ "/console/?" (query_of(f, f.page + 1)) } rel="next" { "Next →" } }
            }
        }))
    }
}

fn filter_of(q: Result<Query<Filter>, axum::extract::rejection::QueryRejection>) -> Filter {
    q.map(|Query(f)| f).unwrap_or_default()
}

/// `GET /console/`: the fleet, live.
pub(crate) async fn fleet(
    State(c): State<Console>,
    Extension(s): Extension<Session>,
    q: Result<Query<Filter>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let f = filter_of(q);
    let d = match fleet_data(&c, &f).await {
        Ok(d) => d,
        Err(resp) => return resp,
    };
    let live_url = format!("/console/live?{}", query_of(&f, f.page));
    let head = markup! {
        h1 { "Fleet" }
        form class="filters" id="filter" method="get" action="/console/" {
            div class="field" {
                label for="q" { "Search" }
                input type="search" id="q" name="q" value=(f.q) placeholder="cluster, license, hostname, customer";
            }
            div class="field" {
                label for="status" { "Status" }
                select id="status" name="status" {
                    @for st in ["", "active", "deactivated", "displaced"] {
                        option value=(st) selected[f.status == st] { @if st.is_empty() { "any" } @else { (st) } }
                    }
                }
            }
            div class="field" {
                label for="anomalies" { "Only with signs of rollback" }
                input type="checkbox" id="anomalies" name="anomalies" value="1" checked[f.anomalies.is_some()];
            }
            button type="submit" { "Filter" }
        }
    };
    live_frame(&s, "Fleet", &live_url, head, fleet_region(&d, &f))
}

/// `GET /console/live`: the fleet page's live region.
pub(crate) async fn fleet_live(
    State(c): State<Console>,
    q: Result<Query<Filter>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let f = filter_of(q);
    fragment(fleet_data(&c, &f).await.map(|d| fleet_region(&d, &f)))
}

/// The licenses page showing only license `id`.
fn license_link(id: &str) -> String {
    format!("/console/licenses?license={}#l-{id}", urlencode(id))
}

/// The licenses page's query: the renewals horizon, the page, or one license.
#[derive(Deserialize, Default)]
pub(crate) struct LicensesQuery {
    days: Option<u64>,
    /// Counted from 1 (0 is the first page too).
    page: Option<usize>,
    license: Option<String>,
}

/// What the licenses page shows.
struct LicensesAsk {
    /// Renewals horizon: 30, 60 or 90 days.
    days: u64,
    /// Index of the page of [`LICENSES_PAGE`] licenses, from 0 (the URL's
    /// `page` counts from 1).
    page: usize,
    /// Only this license.
    only: Option<String>,
}

impl LicensesAsk {
    /// Page `page` of every license, at horizon `days`.
    fn page_link(days: u64, page: usize) -> String {
        let at = LicensesAsk {
            days,
            page,
            only: None,
        };
        format!("/console/licenses?{}", at.query())
    }

    /// The page's own query string (the live region asks the same).
    fn query(&self) -> String {
        match &self.only {
            Some(id) => format!("days={}&license={}", self.days, urlencode(id)),
            None if self.page == 0 => format!("days={}", self.days),
            None => format!("days={}&page={}", self.days, self.page.saturating_add(1)),
        }
    }
}

fn licenses_ask(
    q: Result<Query<LicensesQuery>, axum::extract::rejection::QueryRejection>,
) -> LicensesAsk {
    let h = q.map(|Query(h)| h).unwrap_or_default();
    LicensesAsk {
        days: h.days.filter(|d| [30, 60, 90].contains(d)).unwrap_or(30),
        page: h.page.unwrap_or(0).saturating_sub(1),
        only: h.license.filter(|l| !l.is_empty()),
    }
}

/// `GET /console/licenses[?days=30|60|90][&page=N | &license=ID]`, live.
pub(crate) async fn licenses(
    State(c): State<Console>,
    Extension(s): Extension<Session>,
    q: Result<Query<LicensesQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let want = licenses_ask(q);
    match licenses_region(&c, &want).await {
        Ok(region) => live_frame(
            &s,
            "Licenses",
            &format!("/console/licenses/live?{}", want.query()),
            markup! { h1 { "Licenses" } },
            region,
        ),
        Err(resp) => resp,
    }
}

/// `GET /console/licenses/live`: the licenses page's live region.
pub(crate) async fn licenses_live(
    State(c): State<Console>,
    q: Result<Query<LicensesQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    fragment(licenses_region(&c, &licenses_ask(q)).await)
}

/// The licenses page's live region: renewals at risk over every license,
/// then one page of licenses in full, each with its own clusters (read by
/// license, so the page costs the same with 100 clusters or 100 000).
async fn licenses_region(c: &Console, want: &LicensesAsk) -> Result<Markup, Response> {
    let t = now();
    let days = want.days;
    let LicensePage {
        shown,
        total,
        expiring: soon,
        expiring_total,
    } = licenses_of(
        c,
        LicenseList {
            only: want.only.clone(),
            offset: (want.page.saturating_mul(LICENSES_PAGE)) as u64,
            limit: LICENSES_PAGE as u32,
            now: t,
            until: t.saturating_add(days.saturating_mul(86_400)),
            expiring: EXPIRING_SHOWN as u32,
        },
    )
    .await?;
    // The shown licenses' clusters, hours and upgrade requests.
    let ids: Vec<String> = shown.iter().map(|l| l.license_id.clone()).collect();
    let clusters = match ask(
        c,
        Ask::ClustersOf {
            licenses: ids.clone(),
            first: CLUSTERS_PER_LICENSE,
        },
    )
    .await?
    {
        Answer::ClustersOf(m) => m,
        _ => BTreeMap::new(),
    };
    let (first_hour, last_hour) = view::hours(t, BUCKETS);
    let hours = match ask(
        c,
        Ask::Trends {
            licenses: ids.clone(),
            first_hour,
            last_hour,
        },
    )
    .await?
    {
        Answer::Trends(h) => h,
        _ => Vec::new(),
    };
    let upgrades = match ask(
        c,
        Ask::UpgradesOf {
            licenses: ids,
            newest: UPGRADES_PER_LICENSE,
        },
    )
    .await?
    {
        Answer::UpgradesOf(u) => u,
        _ => BTreeMap::new(),
    };
    let trends = view::trends(&hours, t, BUCKETS);
    let expiry_rows: Vec<Vec<Markup>> = soon
        .iter()
        .map(|l| {
            let left = (l.expires_at - t) / 86_400;
            let tone = if left < 30 {
                Tone::Bad
            } else if left < 60 {
                Tone::Warn
            } else {
                Tone::Info
            };
            vec![
                markup! { (l.customer) },
                markup! { a href=(license_link(&l.license_id)) { code { (l.license_id) } } },
                markup! { (l.tier) },
                markup! { (when(l.expires_at)) },
                markup! { (ui::badge(tone, &format!("{left} days"), None)) },
            ]
        })
        .collect();
    Ok(markup! {
        (ui::section("expiry", "Renewals at risk", markup! {
            nav class="pager" aria-label="Horizon" {
                @for d in [30u64, 60, 90] {
                    @if d == days { strong { "next " (d) " days" } } @else { a href={ "/console/licenses?days=" (d) "#expiry" } { "next " (d) " days" } }
                }
            }
            @if soon.is_empty() {
                p class="muted" id="expiring" { "No license expires in the next " (days) " days." }
            } @else {
                p class="muted" id="expiring" {
                    (expiring_total) " license(s) expire in the next " (days) " days."
                    @if expiring_total > soon.len() as u64 { " The " (soon.len()) " soonest are below; the licenses further down are listed soonest to expire first." }
                }
                (ui::table("Expiring soonest first", &["Customer", "License", "Tier", "Expires", "Left"], &expiry_rows))
            }
        }))
        @if let Some(id) = &want.only {
            p class="muted" id="shown" {
                @if shown.is_empty() { "No license " code { (id) } " on this relay. " } @else { "License " code { (id) } " only. " }
                a href=(LicensesAsk::page_link(days, 0)) { "All licenses" }
            }
        } @else if shown.is_empty() && want.page > 0 {
            p class="muted" id="shown" {
                "Page " (want.page + 1) " is past the last license (" (total) " in all). "
                a href=(LicensesAsk::page_link(days, 0)) { "First page" }
            }
        } @else if total > LICENSES_PAGE as u64 {
            p class="muted" id="shown" {
                "Licenses " (want.page.saturating_mul(LICENSES_PAGE) + 1) "–" (want.page.saturating_mul(LICENSES_PAGE) + shown.len())
                " of " (total)
                ", soonest to expire first."
            }
            nav class="pager" aria-label="Pages" {
                @if want.page > 0 { a href=(LicensesAsk::page_link(days, want.page - 1)) rel="prev" { "← Previous" } }
                @if ((want.page + 1).saturating_mul(LICENSES_PAGE) as u64) < total { a href=(LicensesAsk::page_link(days, want.page + 1)) rel="next" { "Next →" } }
            }
        }
        @for l in &shown {
            @let (mine, more) = clusters.get(&l.license_id).map_or((&[][..], false), |(rows, more)| (rows.as_slice(), *more));
            @let (asks, asked) = upgrades.get(&l.license_id).map_or((&[][..], 0), |(rows, n)| (rows.as_slice(), *n));
            @let trend = trends.get(&l.license_id).cloned().unwrap_or_else(|| view::Trend { beats: vec![0; BUCKETS], nodes: vec![0; BUCKETS], ..Default::default() });
            section id={ "l-" (l.license_id) } class="license" aria-label=(l.customer) {
                h2 { (l.customer) " " span class="muted" { (l.tier) } }
                (ui::facts(&[
                    ("License", markup! { code { (l.license_id) } }),
                    ("Expires", when(l.expires_at)),
                    ("First seen", when(l.first_seen)),
                    ("Heartbeats, last 24 h", markup! { span class="beats" { (trend.total) } " " (ui::sparkline("heartbeats per hour, last 24 hours", &trend.beats)) }),
                    ("Nodes, last 24 h", ui::sparkline("most nodes per hour, last 24 hours", &trend.nodes)),
                ]))
                @if !trend.quotas.is_empty() {
                    h3 { "Quota trends (highest reported per hour, last 24 h)" }
                    ul {
                        @for (name, v) in &trend.quotas {
                            li { code { (name) } " " (ui::sparkline(&format!("{name} per hour, last 24 hours"), v)) " now " (v.iter().rev().find(|x| **x > 0).copied().unwrap_or(0)) }
                        }
                    }
                }
                h3 { "Clusters" }
                @if mine.is_empty() { p class="muted" { "None." } }
                ul {
                    @for r in mine {
                        li { code { (r.cluster_id) } " " (r.hostname) " " (ui::badge(status_tone(&r.status), &r.status, None)) " last seen " (r.last_seen)
                            @if !r.anomalies.is_empty() { " " (ui::badge(Tone::Bad, "signs of rollback", None)) } }
                    }
                }
                @if more {
                    p class="muted" { "The first " (CLUSTERS_PER_LICENSE) " by id. " a href={ "/console/?q=" (urlencode(&l.license_id)) } { "Every cluster of this license" } " is on the fleet page." }
                }
                @if !asks.is_empty() {
                    h3 { "Upgrade requests" }
                    ul { @for u in asks { li { (u.requested_tier) " — " (excerpt(&u.message)) " " span class="muted" { (u.received_at) } } } }
                    @if asked > asks.len() as u64 {
                        p class="muted" { "The newest " (asks.len()) " of " (asked) ". " a href={ "/console/inbox?license=" (urlencode(&l.license_id)) } { "All of this license's requests" } " are in the inbox." }
                    }
                }
            }
        }
        @if total == 0 {
            p class="muted" { "No license has been activated on this relay yet." }
        }
    })
}

/// `GET /console/revocations`, live.
pub(crate) async fn revocations(
    State(c): State<Console>,
    Extension(s): Extension<Session>,
) -> Response {
    match revocations_region(&c).await {
        Ok(region) => live_frame(
            &s,
            "Revocations",
            "/console/revocations/live",
            markup! { h1 { "Revocations" } },
            region,
        ),
        Err(resp) => resp,
    }
}

/// `GET /console/revocations/live`: the revocations page's live region.
pub(crate) async fn revocations_live(State(c): State<Console>) -> Response {
    fragment(revocations_region(&c).await)
}

async fn revocations_region(c: &Console) -> Result<Markup, Response> {
    let lists = match ask(c, Ask::Lists).await? {
        Answer::Lists(l) => l,
        _ => Vec::new(),
    };
    let current = c.st.revocations.borrow().clone();
    let published = current
        .as_ref()
        .and_then(|cur| lists.iter().find(|l| l.version == cur.version()))
        .map(|l| l.received_at);
    let reach = match published {
        Some(since) => match ask(c, Ask::Propagation { since }).await? {
            Answer::Propagation(p) => Some(p),
            _ => None,
        },
        None => None,
    };
    let history: Vec<Vec<Markup>> = lists
        .iter()
        .map(|l| {
            vec![
                markup! { (l.version) },
                markup! { code { (l.kid) } },
                when(l.received_at),
            ]
        })
        .collect();
    Ok(markup! {
        (ui::section("current", "List in force", markup! {
            @match &current {
                Some(cur) => {
                    @let list = &cur.verified.list;
                    @let expired = list.expires <= now();
                    (ui::facts(&[
                        ("Version", markup! { span id="list-version" { (list.version) } }),
                        ("Issued", when(list.issued_at)),
                        ("Expires", markup! { (when(list.expires)) @if expired { " " (ui::badge(Tone::Bad, "expired: publish a new list", None)) } }),
                        ("Entries", markup! { (list.entries.len()) }),
                    ]))
                    @if !list.entries.is_empty() {
                        (ui::table("Entries", &["License", "Status", "Reason", "Since"], &list.entries.iter().map(|e| vec![
                            markup! { code { (e.id) } },
                            markup! { (format!("{:?}", e.status).to_lowercase()) },
                            markup! { (e.reason) },
                            when(e.time),
                        ]).collect::<Vec<_>>()))
                    }
                }
                None => { p class="muted" { "No revocation list has been published to this relay." } }
            }
        }))
        @if let Some(p) = &reach {
            (ui::section("propagation", "Propagation", markup! {
                p class="muted" { "The relay does not record which list version each cluster holds. \
                    Shown here: active clusters whose last contact came after this list was published \
                    (they have talked to the relay since; a verifier follows the list by long-poll, so it very likely holds it) \
                    and those silent since." }
                (ui::facts(&[
                    ("Contacted since publish", markup! { span id="reached" { (p.reached) } }),
                    ("Silent since publish", markup! { span id="silent" { (p.silent) } }),
                ]))
                @if !p.oldest_silent.is_empty() {
                    @let title = if p.silent > p.oldest_silent.len() as u64 {
                        format!("The {} active clusters silent the longest since the list was published", p.oldest_silent.len())
                    } else {
                        "Active clusters silent since the list was published".to_string()
                    };
                    (ui::table(&title, &["Cluster", "Hostname", "Last seen"], &p.oldest_silent.iter().map(|(id, host, seen)| vec![
                        markup! { code { (id) } }, markup! { (host) }, when(*seen),
                    ]).collect::<Vec<_>>()))
                }
            }))
        }
        (ui::section("history", "History", markup! {
            @if history.is_empty() { p class="muted" { "None stored." } }
            @else { (ui::table("Stored lists, newest first", &["Version", "Signed by", "Published here"], &history)) }
        }))
    })
}

/// The inbox's query: the page, or one license's requests.
#[derive(Deserialize, Default)]
pub(crate) struct InboxQuery {
    /// The page's index from 0 once read ([`InboxQuery::of`]); the URL's
    /// `page` counts from 1 (0 is the first page too).
    page: Option<u64>,
    license: Option<String>,
}

impl InboxQuery {
    fn of(q: Result<Query<InboxQuery>, axum::extract::rejection::QueryRejection>) -> Self {
        let q = q.map(|Query(q)| q).unwrap_or_default();
        InboxQuery {
            page: q.page.map(|p| p.saturating_sub(1)).filter(|p| *p > 0),
            license: q.license.filter(|l| !l.is_empty()),
        }
    }

    /// The inbox at page index `page` of the same filter (also the live
    /// region's query); the URL counts from 1.
    fn link(&self, page: u64, live: bool) -> String {
        let mut query = Vec::new();
        if let Some(id) = &self.license {
            query.push(format!("license={}", urlencode(id)));
        }
        if page > 0 {
            query.push(format!("page={}", page.saturating_add(1)));
        }
        let path = if live {
            "/console/inbox/live"
        } else {
            "/console/inbox"
        };
        match query.is_empty() {
            true => path.to_string(),
            false => format!("{path}?{}", query.join("&")),
        }
    }
}

/// `GET /console/inbox[?license=ID][&page=N]`: upgrade requests from WHOOSH
/// and from clusters, newest first, [`INBOX_PAGE`] a page; live.
pub(crate) async fn inbox(
    State(c): State<Console>,
    Extension(s): Extension<Session>,
    q: Result<Query<InboxQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = InboxQuery::of(q);
    let page = q.page.unwrap_or(0);
    match inbox_region(&c, &q).await {
        Ok(region) => live_frame(
            &s,
            "Upgrade requests",
            &q.link(page, true),
            markup! { h1 { "Upgrade requests" } },
            region,
        ),
        Err(resp) => resp,
    }
}

/// `GET /console/inbox/live`: the inbox's live region.
pub(crate) async fn inbox_live(
    State(c): State<Console>,
    q: Result<Query<InboxQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    fragment(inbox_region(&c, &InboxQuery::of(q)).await)
}

async fn inbox_region(c: &Console, q: &InboxQuery) -> Result<Markup, Response> {
    let page = q.page.unwrap_or(0);
    let (upgrades, total) = match ask(
        c,
        Ask::Inbox {
            license: q.license.clone(),
            offset: page.saturating_mul(u64::from(INBOX_PAGE)),
            limit: INBOX_PAGE,
        },
    )
    .await?
    {
        Answer::Inbox(rows, total) => (rows, total),
        _ => (Vec::new(), 0),
    };
    let first = page.saturating_mul(u64::from(INBOX_PAGE));
    let rows: Vec<Vec<Markup>> = upgrades
        .iter()
        .map(|(u, customer)| {
            vec![
                markup! { (u.received_at) },
                markup! { (customer) br; a href=(license_link(&u.license_id)) { code { (u.license_id) } } },
                markup! { strong class="tier" { (u.requested_tier) } },
                markup! { (excerpt(&u.message)) },
                markup! { @match &u.cluster_id { Some(c) => { "cluster " code { (c) } }, None => { "WHOOSH" } } " (" (u.source) ")" },
            ]
        })
        .collect();
    Ok(markup! {
        (ui::section("inbox", "Inbox", markup! {
            @if let Some(id) = &q.license {
                p class="muted" id="filter" { "License " code { (id) } " only. " a href="/console/inbox" { "Every request" } }
            }
            @if total == 0 { p class="muted" id="empty" { "No upgrade request yet." } }
            @else if rows.is_empty() {
                p class="muted" id="shown" { "Page " (page + 1) " is past the last request (" (total) " in all). " a href=(q.link(0, false)) { "Newest" } }
            } @else {
                p class="muted" id="shown" { "Requests " (first + 1) "–" (first + rows.len() as u64) " of " (total) ", newest first." }
                (ui::table("Newest first", &["Received", "Customer / license", "Tier", "Message", "Filed through"], &rows))
                @if total > u64::from(INBOX_PAGE) {
                    nav class="pager" aria-label="Pages" {
                        @if page > 0 { a href=(q.link(page - 1, false)) rel="prev" { "← Newer" } }
                        @if first + (rows.len() as u64) < total { a href=(q.link(page + 1, false)) rel="next" { "Older →" } }
                    }
                }
            }
            p class="muted" { "Act on a request with licensegen (upgrade, then send the new file); the console never signs." }
        }))
    })
}

/// The audit chain as the console last walked it: the head it reached and
/// when it last walked the whole chain (relay time).
#[derive(Debug, Clone)]
pub(crate) struct Walked {
    id: i64,
    hash: String,
    whole_at: u64,
}

/// While the audit page stays open, its live updates walk only the rows
/// added since the last walk, and the whole chain again at least this
/// often (seconds). Opening the page always walks the whole chain.
pub const WHOLE_WALK_EVERY: u64 = 300;

/// `GET /console/audit`: the chain's status, its latest rows, the tokens; live.
pub(crate) async fn audit(State(c): State<Console>, Extension(s): Extension<Session>) -> Response {
    match audit_region(&c, true).await {
        Ok(region) => live_frame(
            &s,
            "Audit",
            "/console/audit/live",
            markup! { h1 { "Audit" } },
            region,
        ),
        Err(resp) => resp,
    }
}

/// `GET /console/audit/live`: the audit page's live region.
pub(crate) async fn audit_live(State(c): State<Console>) -> Response {
    fragment(audit_region(&c, false).await)
}

/// The audit page's region. `opened`: the page itself (walks the whole
/// chain); otherwise a live update, which walks the rows added since the
/// last walk unless the last whole walk is [`WHOLE_WALK_EVERY`] old. A
/// broken chain forgets the last walk, so the next update walks it all.
async fn audit_region(c: &Console, opened: bool) -> Result<Markup, Response> {
    let t = now();
    let last = c
        .walked
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let from = last
        .as_ref()
        .filter(|w| !opened && t.saturating_sub(w.whole_at) < WHOLE_WALK_EVERY);
    let ask_for = Ask::Audit {
        latest: 50,
        from: from.map(|w| (w.id, w.hash.clone())),
    };
    let (verified, rows) = match ask(c, ask_for).await? {
        Answer::Audit(v, r) => (v, r),
        _ => (Err("unexpected answer; retry".to_string()), Vec::new()),
    };
    let whole_at = from.map_or(t, |w| w.whole_at);
    *c.walked
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) =
        verified.as_ref().ok().map(|(n, head)| Walked {
            id: *n,
            hash: head.clone(),
            whole_at,
        });
    let tokens = match ask(c, Ask::Tokens).await? {
        Answer::Tokens(t) => t,
        _ => Vec::new(),
    };
    Ok(markup! {
        (ui::section("chain", "Chain", markup! {
            @match &verified {
                Ok((n, head)) => {
                    (ui::banner(Tone::Good, "The chain verifies.", markup! {
                        (n) " rows, each hashed over the one before; head " code { (head) } ". Record the head elsewhere to detect a rebuilt log later. "
                        span class="muted" id="walked" { "Walked whole " (when(whole_at)) "; rows added since are checked as they come, and the whole chain again every " (WHOLE_WALK_EVERY / 60) " minutes and whenever the page is opened." }
                    }))
                }
                Err(why) => {
                    (ui::banner(Tone::Bad, "The chain is broken.", markup! { (why) ". Compare with a backup and `kaching-relay audit verify`." }))
                }
            }
            (ui::table("Latest entries, newest first", &["#", "Time", "Actor", "Action", "Subject", "Detail"], &rows.iter().map(|r| vec![
                markup! { (r.id) }, when(r.time), markup! { (r.actor) }, markup! { (r.action) }, markup! { code { (r.subject) } }, markup! { code { (r.detail) } },
            ]).collect::<Vec<_>>()))
        }))
        (ui::section("tokens", "Tokens", markup! {
            (ui::table("Names and scopes (secrets are never stored or shown)", &["Name", "Scope", "Created", "Revoked"], &tokens.iter().map(|t| vec![
                markup! { (t.name) }, markup! { (t.scope) }, when(t.created_at),
                markup! { @if let Some(r) = t.revoked_at { (when(r)) } @else { "—" } },
            ]).collect::<Vec<_>>()))
        }))
    })
}

/// Characters of an upgrade request's message a page shows: 50 requests at
/// the 4096 bytes the API takes would break the 100 KiB page budget alone,
/// and rows filed before that cap may be longer still.
/// `GET /v1/upgrade-requests` has every message whole.
pub const MESSAGE_SHOWN: usize = 280;

/// `message`, cut after [`MESSAGE_SHOWN`] characters (marked with `…`).
fn excerpt(message: &str) -> std::borrow::Cow<'_, str> {
    match message.char_indices().nth(MESSAGE_SHOWN) {
        None => message.into(),
        Some((end, _)) => format!("{}…", &message[..end]).into(),
    }
}
