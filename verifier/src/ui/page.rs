//! The license page's HTML, from what the API already serves: the published
//! verdict and status, the node leases and the upgrade queue. Nothing here
//! decides anything; it only lays out what `kaching-core` decided.

use kaching_core::time::{from_civil, human_duration, rfc3339, to_civil, Date, Period, Timestamp};
use kaching_core::wire::verifier::{NodeList, UpgradeList};
use kaching_core::State;
use kaching_kit::web::components::{
    badge, banner, bar, card, csrf_field, facts, section, table, text_area, text_field, Tone,
};
use kaching_kit::web::{page, Assets, Nav};
use maud::{html, Markup};

use crate::engine::Published;

/// The page's URL prefix.
pub const PREFIX: &str = "/ui/";

/// Everything one rendering shows.
pub struct View<'a> {
    /// The verdict and status in force.
    pub published: &'a Published,
    /// The live node leases.
    pub nodes: &'a NodeList,
    /// The upgrade requests filed here.
    pub upgrades: &'a UpgradeList,
    /// The wall clock now (countdowns).
    pub now: Timestamp,
    /// How long a lease lasts (seconds): its last renewal is its expiry
    /// minus this.
    pub lease_ttl: u64,
}

/// A message shown above the request form after a post.
pub struct Notice {
    /// Good (filed) or bad (refused).
    pub tone: Tone,
    /// "Filed.", "Not filed.", "Installed.".
    pub title: &'static str,
    /// What happened, and what to do next.
    pub text: String,
}

/// How a state is coloured.
pub fn tone(state: State) -> Tone {
    match state {
        State::Active => Tone::Good,
        State::Expiring | State::Grace | State::ReportOverdue => Tone::Warn,
        _ => Tone::Bad,
    }
}

/// When a quota's counter next starts from zero (`None`: never).
pub fn next_reset(period: Period, now: Timestamp) -> Option<Timestamp> {
    let (d, _) = to_civil(now);
    match period {
        Period::Day => Some(now - now % 86_400 + 86_400),
        Period::Month => {
            let (year, month) = if d.month == 12 {
                (d.year + 1, 1)
            } else {
                (d.year, d.month + 1)
            };
            from_civil(Date {
                year,
                month,
                day: 1,
            })
        }
        Period::Total | Period::Gauge => None,
    }
}

/// `2026-12-05T20:00:00Z (in 3d 4h)` or `(5m ago)`.
fn when(t: Timestamp, now: Timestamp) -> String {
    if t >= now {
        format!("{} (in {})", rfc3339(t), human_duration(t - now))
    } else {
        format!("{} ({} ago)", rfc3339(t), human_duration(now - t))
    }
}

fn or_dash(v: Option<&str>) -> &str {
    v.unwrap_or("—")
}

/// The whole page: the live region, then the request form.
pub fn full(view: &View<'_>, csrf: &str, signed_in: bool, notice: Option<&Notice>) -> Markup {
    let nav = [
        Nav {
            href: "#state",
            label: "State",
        },
        Nav {
            href: "#features",
            label: "Features",
        },
        Nav {
            href: "#nodes",
            label: "Nodes",
        },
        Nav {
            href: "#quotas",
            label: "Quotas",
        },
        Nav {
            href: "#upgrades",
            label: "Upgrades",
        },
        Nav {
            href: "#trust",
            label: "Trust",
        },
        Nav {
            href: "#admin",
            label: "Admin",
        },
    ];
    let assets = Assets {
        prefix: PREFIX,
        live: Some(("/ui/events", "/ui/live")),
    };
    let body = html! {
        @if let Some(n) = notice {
            (banner(n.tone, n.title, html! { (n.text) }))
        }
        div id="live" { (live(view)) }
        (request_form(view, csrf))
        (super::admin::forms(csrf))
        @if signed_in {
            form method="post" action="/ui/logout" {
                (csrf_field(csrf))
                button class="quiet" type="submit" { "Sign out" }
            }
        }
    };
    page("License", "License", assets, &nav, body)
}

/// The live region: every section the event stream refreshes.
pub fn live(view: &View<'_>) -> Markup {
    html! {
        (state(view))
        (features(view))
        (nodes(view))
        (quotas(view))
        (upgrades(view))
        (trust(view))
    }
}

fn state(view: &View<'_>) -> Markup {
    let p = view.published;
    let st = &p.status.status;
    let v = &p.verdict;
    let t = tone(v.state);
    let expires = v.expires_at.map(|e| when(e, view.now));
    let grace = v.grace_ends_at.map(|g| {
        if v.expires_at.is_some_and(|e| view.now < e) {
            format!(
                "{} after expiry",
                human_duration(g.saturating_sub(v.expires_at.unwrap_or(g)))
            )
        } else {
            when(g, view.now)
        }
    });
    let tone_class = match t {
        Tone::Good => "state good",
        Tone::Warn => "state warn",
        Tone::Bad | Tone::Info => "state bad",
    };
    html! {
        section id="state" class=(tone_class) aria-labelledby="state-h" {
            h1 id="state-h" { (or_dash(st.customer.as_deref())) }
            p { (badge(t, v.state.as_str(), Some("state-badge"))) " " span id="reason" { (v.reason) } }
            @for r in &p.status.rejections {
                (banner(Tone::Bad, &format!("A new {} file was refused", r.file), html! {
                    "(" (r.at) "): " code { (r.reason) } ". The last good one stays in force."
                }))
            }
            (facts(&[
                ("Tier", html! { span id="tier" { (or_dash(st.tier.as_deref())) } }),
                ("License", html! { code { (or_dash(st.license_id.as_deref())) } }),
                ("Expires", html! { (expires.as_deref().unwrap_or("—")) }),
                ("Grace", html! { (grace.as_deref().unwrap_or("—")) }),
                ("Cluster", html! { code { (p.status.cluster_id) } }),
            ]))
            @if !st.warnings.is_empty() {
                ul class="warnings" { @for w in &st.warnings { li { (w) } } }
            }
        }
    }
}

fn features(view: &View<'_>) -> Markup {
    let rows: Vec<Vec<Markup>> = view
        .published
        .verdict
        .features
        .iter()
        .map(|(name, d)| {
            vec![
                html! { code { (name) } },
                if d.allowed {
                    html! { span class="yes" { "allowed" } }
                } else {
                    html! { span class="no" { "denied" } }
                },
                html! { (d.reason) },
            ]
        })
        .collect();
    section(
        "features",
        "Features",
        table(
            "What may run now, and why",
            &["Feature", "Decision", "Why"],
            &rows,
        ),
    )
}

/// Leases the page lists (those that end soonest): a page stays within
/// the 100 KiB budget with any number of nodes; `GET /v1/nodes` lists all.
pub const NODES_SHOWN: usize = 50;

fn nodes(view: &View<'_>) -> Markup {
    let n = view.nodes;
    let rows: Vec<Vec<Markup>> = n
        .nodes
        .iter()
        .map(|l| {
            let expires = kaching_core::time::parse_rfc3339(&l.expires_at);
            let left = expires
                .map(|e| human_duration(e.saturating_sub(view.now)))
                .unwrap_or_default();
            let renewed = expires
                .map(|e| {
                    let t = e.saturating_sub(view.lease_ttl);
                    format!("{} ago", human_duration(view.now.saturating_sub(t)))
                })
                .unwrap_or_default();
            vec![
                html! { code { (l.node_id) } },
                html! { (renewed) },
                html! { (l.expires_at) },
                html! { (left) },
            ]
        })
        .collect();
    section(
        "nodes",
        "Nodes",
        html! {
            (facts(&[
                ("In use", html! { span id="nodes-in-use" { (n.nodes_in_use) } }),
                ("Licensed", html! { (n.max_nodes) }),
                ("Ceiling with overage", html! { (n.node_ceiling) }),
            ]))
            (bar("nodes in use", n.nodes_in_use, n.node_ceiling, html! {
                (n.nodes_in_use) " of " (n.node_ceiling) " nodes"
            }))
            @if rows.is_empty() {
                p class="muted" { "No node holds a lease." }
            } @else {
                @if n.nodes_in_use > rows.len() as u64 {
                    p class="muted" id="nodes-shown" { "The " (rows.len()) " of " (n.nodes_in_use) " leases that end soonest; " code { "GET /v1/nodes" } " lists them all." }
                }
                (table("Live leases, ending soonest first (a node renews its lease with PUT /v1/nodes/{id})",
                    &["Node", "Last renewal", "Lease expires", "Time left"], &rows))
            }
        },
    )
}

fn quotas(view: &View<'_>) -> Markup {
    let q = &view.published.verdict.quotas;
    section(
        "quotas",
        "Quotas",
        html! {
            @if q.is_empty() {
                p class="muted" { "This license sets no quotas." }
            }
            @for (name, u) in q {
                div class="quota" data-quota=(name) {
                    h3 { code { (name) } }
                    (bar(name, u.used, u.limit, html! {
                        (u.used) " of " (u.limit) " (" (format!("{:.0}", u.percent)) " %) · per " (u.period)
                        @if let Some(r) = next_reset(u.period, view.now) {
                            " · resets " (when(r, view.now))
                        }
                        " · marks at 80 % and 90 %"
                    }))
                }
            }
        },
    )
}

fn upgrades(view: &View<'_>) -> Markup {
    let s = &view.published.verdict.upgrade_suggestions;
    let rows: Vec<Vec<Markup>> = view
        .upgrades
        .upgrade_requests
        .iter()
        .map(|r| {
            vec![
                html! { (r.id) },
                html! { (r.requested_tier) },
                html! { (r.message) },
                html! { (r.time) },
                if r.reported {
                    html! { span class="yes" { "acknowledged" } }
                } else {
                    html! { "waiting: carried by the next usage report or heartbeat" }
                },
            ]
        })
        .collect();
    section(
        "upgrades",
        "Upgrades",
        html! {
            @if s.is_empty() {
                p class="muted" { "No upgrade is suggested: no limit is being approached." }
            } @else {
                div class="grid" {
                    @for x in s {
                        @let urgency = serde_json::to_value(x.urgency).ok()
                            .and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
                        @let t = match urgency.as_str() { "high" => Tone::Bad, "medium" => Tone::Warn, _ => Tone::Info };
                        (card(&format!("{} → {}", x.current_tier, x.suggested_tier), Some(t), html! {
                            p { (badge(t, &urgency, None)) " " (x.reason) }
                            @if !x.benefits.is_empty() {
                                ul { @for b in &x.benefits { li { (b) } } }
                            }
                            @if let Some(roi) = &x.roi_estimate { p class="muted" { (roi) } }
                            a href="#request" { "Request upgrade" }
                        }))
                    }
                }
            }
            @if rows.is_empty() {
                p class="muted" { "No upgrade request has been filed here." }
            } @else {
                (table("Requests filed here", &["#", "Tier", "Message", "Filed", "Reached the vendor"], &rows))
            }
        },
    )
}

fn trust(view: &View<'_>) -> Markup {
    let p = view.published;
    let f = &p.freshness;
    let mark = p.verdict.trusted_time;
    let clock = if view.now + 60 >= mark {
        format!("clock {} is at or past the mark", rfc3339(view.now))
    } else if p.verdict.state == kaching_core::State::ClockTampered {
        // What to send the vendor, as `check` and `status` say it.
        format!(
            "clock {} is {} behind the mark. {}",
            rfc3339(view.now),
            human_duration(mark - view.now),
            crate::clock_reset::request_line(&p.status.cluster_id, &rfc3339(mark))
        )
    } else {
        format!(
            "clock {} is {} behind the mark",
            rfc3339(view.now),
            human_duration(mark - view.now)
        )
    };
    let trust = if p.status.trust == "development" {
        "development build: trust comes from the trusted-keys file".to_string()
    } else {
        match p.status.root_version {
            Some(v) => format!("{} root, version {v}", p.status.trust),
            None => p.status.trust.clone(),
        }
    };
    let revocations = match (f.revocation_version, f.revocation_expires) {
        (Some(v), Some(e)) => format!("version {v}, expires {}", when(e, view.now)),
        _ => "none installed".to_string(),
    };
    let relay = match &p.status.relay {
        None => "air-gapped: no relay configured".to_string(),
        Some(r) => match f.last_relay_contact {
            Some(c) => format!("{}: last contact {}", r.url, when(c, view.now)),
            None => format!("{}: never reached", r.url),
        },
    };
    let offline = match (f.offline_grace, f.last_relay_contact) {
        (Some(g), Some(c)) => {
            let end = c.saturating_add(g);
            if end > view.now {
                format!("{} left", human_duration(end - view.now))
            } else {
                "used up: reach the relay".to_string()
            }
        }
        (Some(g), None) => format!("{} from the first contact", human_duration(g)),
        (None, _) => "not applicable (air-gapped license)".to_string(),
    };
    section(
        "trust",
        "Trust and freshness",
        facts(&[
            (
                "Trusted-time mark",
                html! { (rfc3339(mark)) br; span class="muted" { (clock) } },
            ),
            ("Root of trust", html! { (trust) }),
            ("Revocation list", html! { (revocations) }),
            ("Relay", html! { (relay) }),
            ("Offline grace", html! { (offline) }),
        ]),
    )
}

fn request_form(view: &View<'_>, csrf: &str) -> Markup {
    let mut tiers: Vec<String> = view
        .published
        .verdict
        .upgrade_suggestions
        .iter()
        .map(|s| s.suggested_tier.clone())
        .collect();
    tiers.dedup();
    let first = tiers.first().cloned().unwrap_or_default();
    section(
        "request",
        "Request an upgrade",
        html! {
            p class="muted" {
                "The request is queued here and reaches the vendor with the next usage report "
                "(air-gapped) or heartbeat (connected)."
            }
            form method="post" action="/ui/upgrade-requests" {
                (csrf_field(csrf))
                (text_field("Tier wanted", "requested_tier", &first, &tiers))
                (text_area("Message to the vendor (optional)", "message", kaching_core::cluster::MAX_UPGRADE_MESSAGE))
                button type="submit" { "Request upgrade" }
            }
        },
    )
}

/// The sign-in page (a token is configured and the browser has no session).
pub fn login(csrf: &str, error: Option<&str>) -> Markup {
    let assets = Assets {
        prefix: PREFIX,
        live: None,
    };
    page(
        "License",
        "Sign in",
        assets,
        &[],
        section(
            "signin",
            "Sign in",
            html! {
                @if let Some(e) = error { (banner(Tone::Bad, "Not signed in.", html! { (e) })) }
                p { "This verifier asks for its API token (the file named by "
                    code { "token_file" } " in its configuration). It is kept in an "
                    "HttpOnly cookie for this browser session." }
                form method="post" action="/ui/login" {
                    (csrf_field(csrf))
                    (kaching_kit::web::components::secret_field("API token", "token"))
                    button type="submit" { "Sign in" }
                }
            },
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_and_month_quotas_reset_at_the_next_utc_boundary() {
        // 2026-12-05T20:00:00Z
        let now = 1_796_500_800;
        assert_eq!(rfc3339(now), "2026-12-05T20:00:00Z");
        assert_eq!(
            next_reset(Period::Day, now).map(rfc3339).as_deref(),
            Some("2026-12-06T00:00:00Z")
        );
        assert_eq!(
            next_reset(Period::Month, now).map(rfc3339).as_deref(),
            Some("2027-01-01T00:00:00Z")
        );
        assert_eq!(next_reset(Period::Total, now), None);
        assert_eq!(next_reset(Period::Gauge, now), None);
    }
}
