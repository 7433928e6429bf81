//! The desk's HTML: ledger, license, issue form, built from the shared
//! components of `kaching_kit::web` (maud escapes every value).

use axum::http::StatusCode;
use axum::response::Response;
use kaching_core::time::rfc3339;
use kaching_core::{License, TierCatalog};
use kaching_kit::web::components::{
    badge, banner, csrf_field, facts, optional_field, optional_field_with_id, section,
    select_field, table, Tone,
};
use kaching_kit::web::{html, page, Assets, Nav};
use maud::{html as markup, Markup};

use super::PREFIX;
use crate::clock_reset::{Known, Plan};
use crate::ledger::{ClockResetRecord, Event, LedgerState, LicenseRecord, UsageRecord};

const APP: &str = "Sales-ops desk";

const NAV: &[Nav<'static>] = &[
    Nav {
        href: "/desk/",
        label: "Ledger",
    },
    Nav {
        href: "/desk/issue",
        label: "Issue",
    },
    Nav {
        href: "/desk/clock-reset",
        label: "Clock reset",
    },
];

fn assets() -> Assets<'static> {
    Assets {
        prefix: PREFIX,
        live: None,
    }
}

/// A message shown at the top of a page.
pub struct Notice {
    /// Colour.
    pub tone: Tone,
    /// Bold first words.
    pub title: String,
    /// What happened and what to do.
    pub text: String,
}

/// What every page shows around its content: the key's state and the
/// unlock / lock form.
pub struct Chrome<'a> {
    /// The anti-forgery token.
    pub csrf: &'a str,
    /// Whether the vendor key is in memory.
    pub unlocked: bool,
    /// Where to come back after unlocking.
    pub back: &'a str,
    /// The notice, if any.
    pub notice: Option<Notice>,
}

/// A page that says what went wrong and what to do.
pub fn problem(status: StatusCode, title: &str, what: &str) -> Response {
    kaching_kit::web::problem(APP, assets(), status, title, what)
}

fn frame(status: StatusCode, c: &Chrome<'_>, title: &str, main: Markup) -> Response {
    let key = if c.unlocked {
        markup! {
            form class="actions" method="post" action="/desk/lock" {
                (csrf_field(c.csrf))
                p id="key-state" { (badge(Tone::Good, "key unlocked", None)) " signing works; the key is in this process's memory only." }
                button class="quiet" type="submit" { "Lock (forget the key)" }
            }
        }
    } else {
        markup! {
            form class="actions" method="post" action="/desk/unlock" {
                (csrf_field(c.csrf))
                input type="hidden" name="back" value=(c.back);
                p id="key-state" { (badge(Tone::Warn, "key locked", None)) " reading works; to sign, unlock the vendor key." }
                div class="field" {
                    label for="passphrase" { "Vendor key passphrase" }
                    input type="password" id="passphrase" name="passphrase" autocomplete="current-password";
                }
                button type="submit" { "Unlock" }
            }
        }
    };
    let body = markup! {
        @if let Some(n) = &c.notice {
            (banner(n.tone, &n.title, markup! { (n.text) }))
        }
        (key)
        (main)
    };
    html(status, page(APP, title, assets(), NAV, body))
}

fn state_badge(s: LedgerState) -> Markup {
    let tone = match s {
        LedgerState::Active => Tone::Good,
        LedgerState::Suspended => Tone::Warn,
        LedgerState::Revoked | LedgerState::Expired => Tone::Bad,
        LedgerState::Superseded => Tone::Info,
    };
    badge(tone, s.as_str(), None)
}

/// The ledger's filter as the form shows it.
pub struct Filter<'a> {
    /// Customer name or id contains.
    pub q: &'a str,
    /// One state, or empty for all.
    pub state: &'a str,
    /// Active and expiring within this many days, or empty.
    pub expiring: &'a str,
    /// Page of [`LEDGER_PAGE`] matching licenses, from 0.
    pub page: usize,
}

/// Licenses per page of the ledger: a page stays within the 100 KiB
/// budget however many the ledger holds.
pub const LEDGER_PAGE: usize = 100;

impl Filter<'_> {
    /// The ledger at page `page` of this filter.
    fn link(&self, page: usize) -> String {
        let mut query: Vec<String> = [
            ("q", self.q),
            ("state", self.state),
            ("expiring", self.expiring),
        ]
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", kaching_kit::web::urlencode(v)))
        .collect();
        if page > 0 {
            query.push(format!("page={page}"));
        }
        if query.is_empty() {
            "/desk/".to_string()
        } else {
            format!("/desk/?{}", query.join("&"))
        }
    }
}

/// The ledger: filter form and the matching licenses.
pub fn ledger(
    c: &Chrome<'_>,
    f: &Filter<'_>,
    rows: &[(&LicenseRecord, LedgerState)],
    total: usize,
) -> Response {
    let states: Vec<(String, String)> = std::iter::once(("".to_string(), "any".to_string()))
        .chain(
            ["active", "suspended", "revoked", "superseded", "expired"]
                .iter()
                .map(|s| (s.to_string(), s.to_string())),
        )
        .collect();
    let first = f.page.saturating_mul(LEDGER_PAGE);
    let shown = rows.get(first..).unwrap_or_default();
    let shown = &shown[..shown.len().min(LEDGER_PAGE)];
    let cells: Vec<Vec<Markup>> = shown
        .iter()
        .map(|(r, s)| {
            vec![
                markup! { a href={ "/desk/license/" (r.id) } { code { (crate::issue::short_id(&r.id)) } } },
                markup! { (r.customer) br; span class="muted" { (r.customer_id) } },
                markup! { (r.tier) },
                markup! { (r.max_nodes) },
                markup! { (crate::output::date(r.expires_at)) },
                state_badge(*s),
            ]
        })
        .collect();
    let main = markup! {
        (section("filter", "Ledger", markup! {
            form class="actions" method="get" action="/desk/" role="search" {
                (optional_field("Customer", "q", "search", f.q, "name or id contains"))
                (select_field("State", "state", &states, f.state))
                (optional_field("Expiring within (days)", "expiring", "number", f.expiring, "active licenses only"))
                button type="submit" { "Filter" }
            }
            p class="muted" id="count" {
                (rows.len()) " of " (total) " licenses"
                @if rows.len() > LEDGER_PAGE && !shown.is_empty() { "; " (first + 1) "–" (first + shown.len()) " shown" }
            }
            @if rows.len() > LEDGER_PAGE {
                nav class="pager" aria-label="Pages" {
                    @if f.page > 0 { a href=(f.link(f.page - 1)) rel="prev" { "← Previous" } }
                    @if first + shown.len() < rows.len() { a href=(f.link(f.page + 1)) rel="next" { "Next →" } }
                }
            }
        }))
        (section("usage", "Import a usage report", markup! {
            form class="actions" method="post" action="/desk/usage" enctype="multipart/form-data" {
                (csrf_field(c.csrf))
                div class="field" {
                    label for="report" { "Usage report file (from kaching-verifier usage-report)" }
                    input type="file" id="report" name="report" required;
                }
                button type="submit" id="do-import" { "Import" }
            }
            p class="muted" { "As `licensegen usage import`: verified, checked against the cluster's report chain, recorded; the receipt for the customer is signed with the vendor key." }
        }))
        @if rows.is_empty() {
            (banner(Tone::Info, "No licenses match.", markup! { "Clear the filter, or issue one." }))
        } @else if shown.is_empty() {
            (banner(Tone::Info, "Past the last page.", markup! { a href=(f.link(0)) { "First page" } }))
        } @else {
            (table("Licenses in the order issued (soonest expiry first when filtered by expiry)",
                &["License", "Customer", "Tier", "Nodes", "Expires", "State"], &cells))
        }
    };
    frame(StatusCode::OK, c, "Ledger", main)
}

/// What an import (or a later receipt) did.
pub struct ImportView<'a> {
    /// What `usage::import` returned.
    pub imported: &'a crate::usage::Imported,
    /// The report's hash (the ledger's key for it).
    pub sha: &'a str,
    /// The receipt's file name, when one was written.
    pub receipt: Option<&'a str>,
    /// The page answers the "Sign the receipt" button.
    pub signing: bool,
}

/// The form that signs the receipt of a report recorded without one.
fn sign_receipt_form(csrf: &str, license: &str, sha: &str, id: &str) -> Markup {
    markup! {
        form class="actions" method="post" action={ "/desk/license/" (license) "/receipt" } {
            (csrf_field(csrf))
            input type="hidden" name="report" value=(sha);
            button type="submit" id=(id) { "Sign the receipt" }
        }
    }
}

/// What an imported usage report said.
pub fn imported(c: &Chrome<'_>, v: &ImportView<'_>) -> Response {
    let i = v.imported;
    let chained = i.report.chain.is_some();
    let (tone, title) = if !i.findings.is_empty() {
        (Tone::Bad, "Imported, with chain findings.")
    } else if v.signing && v.receipt.is_some() {
        (Tone::Good, "Receipt signed.")
    } else if !i.warnings.is_empty() {
        (Tone::Warn, "Imported, with warnings.")
    } else if i.new {
        (Tone::Good, "Imported.")
    } else {
        (Tone::Info, "Already imported.")
    };
    let id = i.report.license_id.to_string();
    // The CLI's last line names its flag; the page says it in its own words below.
    let said: String = crate::usage::describe(i)
        .lines()
        .filter(|l| !l.starts_with("no receipt written"))
        .map(|l| format!("{l}\n"))
        .collect();
    let main = markup! {
        (section("imported", "Usage report", markup! {
            (banner(tone, title, markup! {
                "Report of cluster " (i.report.cluster_id) " for license "
                a href={ "/desk/license/" (id) } { (id) } "."
            }))
            @for f in &i.findings { p class="finding" { (badge(Tone::Bad, "flagged", None)) " " (f) } }
            pre id="import-said" { (said) }
            @if let Some(r) = v.receipt {
                p { a id="download-receipt" href={ "/desk/usage/" (r) } download { "Download the receipt (" (r) ")" } " and send it to the customer: " code { "kaching-verifier receipt import" } }
            } @else if chained {
                div id="no-receipt" {
                    (banner(Tone::Warn, "Recorded without a receipt.", markup! {
                        "The report, its figures and its chain findings are in the ledger. "
                        "Unlock the key to produce the receipt the customer imports to clear what you now have: "
                        @if c.unlocked { "the key is unlocked, press the button." } @else { "enter the passphrase at the top of this page, then press the button." }
                    }))
                    (sign_receipt_form(c.csrf, &id, v.sha, "do-sign-receipt"))
                }
            }
        }))
    };
    frame(StatusCode::OK, c, "Usage report", main)
}

/// One license: claims, actions, downloads, history, usage reports.
pub struct LicenseView<'a> {
    /// The ledger's record.
    pub rec: &'a LicenseRecord,
    /// Its state now.
    pub state: LedgerState,
    /// Its claims (from the signed file).
    pub license: &'a License,
    /// Its history.
    pub history: &'a [Event],
    /// Usage reports imported for it.
    pub usage: &'a [UsageRecord],
    /// Per usage report (same order): whether its receipt was signed.
    pub receipts: Vec<bool>,
    /// Tier names for the upgrade form.
    pub tiers: Vec<(String, String)>,
    /// The revoker key file to offer (`KACHING_REVOKER_KEY`), if any.
    pub revoker_key: String,
    /// Whether a signed revocation list exists (to download).
    pub has_list: bool,
    /// An upgrade or renewal previewed, waiting for "Sign".
    pub reissue: Option<Reissue<'a>>,
    /// The clock resets `ledger show` lists for it.
    pub clock_resets: &'a [ClockResetRecord],
}

/// An upgrade or renewal shown before it is signed.
pub struct Reissue<'a> {
    /// `upgrade` or `renew`.
    pub action: &'a str,
    /// The tier asked for (upgrade).
    pub tier: &'a str,
    /// The expiry asked for (empty: the mode's default).
    pub expires: &'a str,
    /// The other terms asked for, by form name (empty: the mode's default).
    pub terms: [(&'static str, &'a str); 7],
    /// The fingerprint of these fields.
    pub previewed: &'a str,
    /// The new license's claims.
    pub preview: Preview<'a>,
}

/// The terms an upgrade or renewal may change besides tier and expiry, as
/// `licensegen upgrade|renew` flags, folded away; ids carry the action
/// (both forms are on one page), names are the form's.
fn other_terms(action: &str, expires: bool) -> Markup {
    let field = |label: &str, name: &str, hint: &str| {
        optional_field_with_id(&format!("{action}-{name}"), label, name, "text", "", hint)
    };
    markup! {
        details {
            summary { "Other terms (empty: as `licensegen " (action) "` without the flag)" }
            @if expires {
                (field("New expiry", "expires", "date (2028-01-31) or duration (365d)"))
            }
            (field("Node limit", "nodes", "a whole number"))
            (field("CPU core limit", "cores", "a whole number"))
            (field("Add features", "features", "comma separated, beyond the tier's"))
            (field("Quotas from the tier catalog", "quotas", "name=limit/period, comma separated, e.g. search_requests=100000/day"))
            (field("Custom quotas", "custom_quotas", "name=limit/period the catalog does not name, e.g. exports=500/day"))
            (field("Grace after expiry", "grace", "e.g. 14d"))
            (field("Overage", "overage", "percent of the node limit allowed over it"))
        }
    }
}

/// The revocation-list fields of suspend / reinstate / revoke: as
/// `--list-valid-for` and `--revoker-key` (the ids carry the action).
fn list_fields(action: &str, revoker_key: &str) -> Markup {
    let valid = format!("{action}-valid");
    let key = format!("{action}-revoker-key");
    let pass = format!("{action}-revoker-pass");
    markup! {
        div class="field" {
            label for=(valid) { "Revocation list fresh for" }
            input type="text" id=(valid) name="list_valid_for" aria-describedby={ (valid) "-hint" };
            span class="caption" id={ (valid) "-hint" } { "duration or date (7d, 2027-01-31): how long verifiers accept this list; empty: revocation_validity in kaching.toml" }
        }
        details open[!revoker_key.is_empty()] {
            summary { "Sign with a revoker key instead of the vendor key" }
            div class="field" {
                label for=(key) { "Revoker key file (made by licensegen key new, given the revoker role)" }
                input type="text" id=(key) name="revoker_key" value=(revoker_key);
            }
            div class="field" {
                label for=(pass) { "Its passphrase" }
                input type="password" id=(pass) name="revoker_passphrase" autocomplete="off";
            }
        }
    }
}

/// The license page.
pub fn license(c: &Chrome<'_>, v: &LicenseView<'_>) -> Response {
    let r = v.rec;
    let id = r.id.to_string();
    let events: Vec<Vec<Markup>> = v
        .history
        .iter()
        .map(|e| {
            vec![
                markup! { (rfc3339(e.time)) },
                markup! { (e.action) },
                markup! { (e.detail) },
            ]
        })
        .collect();
    let id_text = r.id.to_string();
    let reports: Vec<Vec<Markup>> = v
        .usage
        .iter()
        .enumerate()
        .map(|(n, u)| {
            let signed = v.receipts.get(n).copied().unwrap_or(false);
            vec![
                markup! { (crate::output::date(u.period_start)) " to " (crate::output::date(u.period_end)) },
                markup! { (u.cluster_id) },
                markup! { (u.peak_nodes) },
                said(u),
                markup! {
                    @for f in u.chain.iter().flat_map(|c| &c.findings) { (badge(Tone::Bad, "flagged", None)) " " (f) br; }
                },
                markup! {
                    @if u.chain.is_none() { span class="muted" { "none (unchained report)" } }
                    @else if signed { (badge(Tone::Good, "signed", None)) }
                    @else { (sign_receipt_form(c.csrf, &id_text, &u.file_sha256, &format!("do-sign-receipt-{n}"))) }
                },
            ]
        })
        .collect();
    let open = !matches!(v.state, LedgerState::Revoked | LedgerState::Superseded);
    let action = |name: &str, label: &str, fields: Markup| {
        markup! {
            form class="actions" method="post" action={ "/desk/license/" (id) "/change" } {
                (csrf_field(c.csrf))
                input type="hidden" name="action" value=(name);
                (fields)
                button type="submit" id={ "do-" (name) } { (label) }
            }
        }
    };
    let reissue = v.reissue.as_ref().map(|x| {
        let (title, label) = if x.action == "upgrade" {
            (
                "Preview: the upgraded license that will be signed",
                "Sign the upgrade",
            )
        } else {
            (
                "Preview: the renewed license that will be signed",
                "Sign the renewal",
            )
        };
        preview_section(
            title,
            &x.preview,
            markup! {
                form class="actions" method="post" action={ "/desk/license/" (id) "/change" } {
                    (csrf_field(c.csrf))
                    input type="hidden" name="action" value=(x.action);
                    input type="hidden" name="tier" value=(x.tier);
                    input type="hidden" name="expires" value=(x.expires);
                    @for (name, value) in &x.terms {
                        input type="hidden" name=(name) value=(value);
                    }
                    input type="hidden" name="previewed" value=(x.previewed);
                    button type="submit" name="step" value="sign" id="do-sign-reissue" { (label) }
                    a href={ "/desk/license/" (id) } { "Cancel" }
                }
            },
        )
    });
    let main = markup! {
        @if let Some(x) = reissue { (x) }
        (section("license", &r.customer, markup! {
            p { (state_badge(v.state)) " " code id="license-id" { (id) } }
            (facts(&[
                ("Customer id", markup! { (r.customer_id) }),
                ("Tier", markup! { span id="tier" { (r.tier) } }),
                ("Nodes", markup! { (r.max_nodes) " (+" (v.license.overage) " % overage)" }),
                ("Issued", markup! { (rfc3339(r.issued_at)) }),
                ("Expires", markup! { (rfc3339(r.expires_at)) }),
                ("Cluster", markup! { (r.cluster.clone().unwrap_or_else(|| "not bound".into())) }),
                ("Features", markup! { (v.license.features.iter().cloned().collect::<Vec<_>>().join(", ")) }),
                ("Quotas", markup! { (quotas_text(v.license)) }),
                ("Replaces", markup! { @if let Some(o) = r.supersedes { a href={ "/desk/license/" (o) } { (o) } } @else { "—" } }),
                ("Replaced by", markup! { @if let Some(n) = r.superseded_by { a href={ "/desk/license/" (n) } { (n) } } @else { "—" } }),
                ("File", markup! { (r.path) }),
            ]))
            p class="actions" {
                a id="download-armored" href={ "/desk/license/" (id) "/download/armored" } download { "Download armored (.license.asc)" }
                a id="download-binary" href={ "/desk/license/" (id) "/download/binary" } download { "Download binary (.license)" }
            }
        }))
        (section("actions", "Change", markup! {
            @if open {
                (action("upgrade", "Preview the upgrade", markup! {
                    (select_field("To tier", "tier", &v.tiers, &r.tier))
                    (other_terms("upgrade", true))
                }))
                (action("renew", "Preview the renewal", markup! {
                    (optional_field("New expiry", "expires", "text", "", "date (2028-01-31) or duration (365d); empty: one tier term after the old expiry"))
                    (other_terms("renew", false))
                }))
                @if v.state == LedgerState::Suspended {
                    (action("reinstate", "Reinstate", markup! {
                        (list_fields("reinstate", &v.revoker_key))
                    }))
                } @else {
                    (action("suspend", "Suspend", markup! {
                        (optional_field("Reason (the customer sees it)", "reason", "text", "", ""))
                        (list_fields("suspend", &v.revoker_key))
                    }))
                }
                (action("revoke", "Revoke for good", markup! {
                    (optional_field("Reason (the customer sees it) ", "revoke-reason", "text", "", ""))
                    (list_fields("revoke", &v.revoker_key))
                }))
                p class="muted" { "Suspend, reinstate and revoke sign the next revocation list (revocations.cose) as `licensegen suspend` does; carry it to an air-gapped customer or `licensegen publish` it." }
            } @else {
                p { "This license is " (v.state) ": nothing more to change. Issue a new license instead." }
            }
            @if v.has_list {
                p class="actions" { a id="download-revocations" href="/desk/revocations/download" download { "Download the current revocation list (revocations.asc)" } }
            }
        }))
        (section("history", "History", table("What happened to this license", &["When", "What", "Detail"], &events)))
        @if !reports.is_empty() {
            (section("usage", "Usage reports", table("Imported with `licensegen usage import` or on this desk", &["Period", "Cluster", "Peak nodes", "What it said", "Chain", "Receipt"], &reports)))
        }
        @if !v.clock_resets.is_empty() || r.cluster.is_some() {
            (section("clock-resets", "Clock resets", markup! {
                @if !v.clock_resets.is_empty() {
                    (reset_table("Signed for the cluster this license is bound to or reports from (as `ledger show`)", v.clock_resets))
                }
                @if let Some(cluster) = &r.cluster {
                    p class="actions" { a id="new-clock-reset" href={ "/desk/clock-reset?cluster=" (cluster) } { "Sign a clock reset for cluster " (cluster) } }
                }
            }))
        }
    };
    frame(StatusCode::OK, c, &r.customer, main)
}

/// What a usage report said, in short: each counter's highest bucket and
/// the upgrade requests it carried (the full text is shown at import).
fn said(u: &UsageRecord) -> Markup {
    let counters: Vec<String> = u
        .counters
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(metric, buckets)| {
            let (bucket, most) = buckets
                .as_object()?
                .iter()
                .filter_map(|(b, v)| Some((b, v.as_u64()?)))
                .max_by_key(|(_, v)| *v)?;
            Some(format!("{metric}: up to {most} ({bucket})"))
        })
        .collect();
    let requests: Vec<String> = u
        .upgrade_requests
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            format!(
                "upgrade request: tier {} — {}",
                r["requested_tier"].as_str().unwrap_or("?"),
                r["message"].as_str().unwrap_or("")
            )
        })
        .collect();
    markup! {
        @for c in &counters { (c) br; }
        @for r in &requests { strong { (r) } br; }
        @if counters.is_empty() && requests.is_empty() { span class="muted" { "no counters" } }
    }
}

fn quotas_text(l: &License) -> String {
    l.quotas
        .iter()
        .map(|(n, q)| format!("{n} {} per {:?}", q.limit, q.period).to_lowercase())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The terms issue, upgrade and renew all take, as the CLI's `--nodes`,
/// `--cores`, `--feature`, `--quota`, `--custom-quota`, `--grace` and
/// `--overage` (all text, as typed; lists comma or newline separated;
/// empty: the flag not given).
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(default)]
pub struct Terms {
    /// Node limit.
    pub nodes: String,
    /// Core limit.
    pub cores: String,
    /// Features added, comma-separated.
    pub features: String,
    /// Quotas, comma-separated `NAME=LIMIT[/PERIOD]`.
    pub quotas: String,
    /// Quotas outside the tier catalog (`--custom-quota`), comma-separated.
    pub custom_quotas: String,
    /// Grace.
    pub grace: String,
    /// Overage percent.
    pub overage: String,
}

impl Terms {
    /// Each field's form name and value, in one fixed order (hidden fields
    /// and preview fingerprints).
    pub fn fields(&self) -> [(&'static str, &str); 7] {
        [
            ("nodes", &self.nodes),
            ("cores", &self.cores),
            ("features", &self.features),
            ("quotas", &self.quotas),
            ("custom_quotas", &self.custom_quotas),
            ("grace", &self.grace),
            ("overage", &self.overage),
        ]
    }
}

/// The issue form's values (all text, as typed).
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(default)]
pub struct IssueFields {
    /// Anti-forgery token.
    pub csrf: String,
    /// `preview` or `sign`.
    pub step: String,
    /// Customer display name.
    pub customer: String,
    /// Customer id.
    pub customer_id: String,
    /// Tier.
    pub tier: String,
    /// Expiry.
    pub expires: String,
    /// Limits, features, quotas, grace and overage (shared with upgrade
    /// and renew).
    #[serde(flatten)]
    pub terms: Terms,
    /// Cluster id.
    pub cluster: String,
    /// Heartbeat interval.
    pub heartbeat: String,
    /// Offline grace.
    pub offline_grace: String,
    /// `--report-every`: how often a usage report must be acknowledged.
    pub report_every: String,
    /// `--report-warn`: the warning lead before a report is due.
    pub report_warn: String,
    /// `--report-deny`: features off while a report is late, comma-separated.
    pub report_deny: String,
    /// `--degrade`: features kept after expiry and grace, comma-separated.
    pub degrade: String,
    /// The activation request uploaded for `--bind`, as saved by the desk
    /// (a plain name under `activation-requests/`).
    pub bind_saved: String,
    /// `on`: drop the activation request chosen before.
    pub unbind: String,
    /// `on` for the armored spelling.
    pub armor: String,
    /// The fingerprint of the fields the preview showed.
    pub previewed: String,
}

/// What the preview shows: the claims and the notes the ledger will keep
/// (what an activation request binds to).
pub struct Preview<'a> {
    /// The claims.
    pub license: &'a License,
    /// Notes for the ledger history.
    pub notes: &'a [String],
    /// What the CLI command tells sales ops before signing (`note: …`),
    /// not kept: `upgrade`'s lowered limits, a suspended license.
    pub checks: &'a [String],
}

fn duration(secs: u64) -> String {
    kaching_core::time::human_duration(secs)
}

fn names(set: &std::collections::BTreeSet<String>) -> String {
    if set.is_empty() {
        "none".into()
    } else {
        set.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// The preview: every claim that will be signed.
fn preview_section(title: &str, p: &Preview<'_>, sign: Markup) -> Markup {
    let l = p.license;
    markup! {
        (section("preview", title, markup! {
            @for n in p.checks {
                (banner(Tone::Warn, "Note:", markup! { span class="preview-check" { (n.trim_start_matches("note:").trim()) } }))
            }
            @if p.checks.iter().any(|n| n.contains(" to keep it")) {
                p class="muted" { "To keep a value, give it under Other terms of the upgrade form below (--nodes is Node limit, --quota is Quotas from the tier catalog) and preview again." }
            }
            @for n in p.notes {
                @if n.starts_with("warning:") {
                    (banner(Tone::Warn, "Check:", markup! { span class="preview-note" { (n.trim_start_matches("warning:").trim()) } }))
                } @else {
                    p class="preview-note" { (badge(Tone::Info, "binding", None)) " " (n) }
                }
            }
            (facts(&[
                ("Customer", markup! { span id="preview-customer" { (l.customer) } " (" (l.customer_id) ")" }),
                ("Tier", markup! { span id="preview-tier" { (l.tier) } }),
                ("Issuer / audience", markup! { (l.issuer) " / " (l.audience) }),
                ("Nodes", markup! { span id="preview-nodes" { (l.limits.max_nodes) } " (+" (l.overage) " % overage)" }),
                ("Cores", markup! { (l.limits.max_cores.map_or_else(|| "no limit".to_string(), |c| c.to_string())) }),
                ("Valid", markup! { (rfc3339(l.not_before)) " to " span id="preview-expires" { (rfc3339(l.expires_at)) } }),
                ("Grace", markup! { (duration(l.grace)) " after expiry" }),
                ("Features", markup! { span id="preview-features" { (l.features.iter().cloned().collect::<Vec<_>>().join(", ")) } }),
                ("Quotas", markup! { span id="preview-quotas" { (quotas_text(l)) } }),
                ("Cluster", markup! { span id="preview-cluster" { (l.cluster.clone().unwrap_or_else(|| "not bound".into())) } }),
                ("Heartbeat", markup! { span id="preview-heartbeat" { @match &l.heartbeat {
                    Some(h) => { "every " (duration(h.interval)) ", offline grace " (duration(h.offline_grace)) }
                    None => { "none (not a connected license)" }
                } } }),
                ("Usage reports", markup! { span id="preview-report" { @match &l.report {
                    Some(r) => { "acknowledged every " (duration(r.every)) ", warn " (duration(r.warn)) " before; while late, off: " (names(&r.deny)) }
                    None => { "not required" }
                } } }),
                ("After expiry and grace", markup! { span id="preview-degrade" { @if l.degrade.is_empty() { "everything stops" } @else { "still on: " (names(&l.degrade)) } } }),
            ]))
            details {
                summary { "All claims (JSON)" }
                pre { (serde_json::to_string_pretty(l).unwrap_or_default()) }
            }
            p class="muted" { "The license id and issue time are drawn again when you sign." }
            (sign)
        }))
    }
}

/// The issue form, with an error or a preview of the claims.
pub fn issue(
    status: StatusCode,
    c: &Chrome<'_>,
    catalog: &TierCatalog,
    f: &IssueFields,
    preview: Option<&Preview<'_>>,
) -> Response {
    let tiers: Vec<(String, String)> = catalog
        .tiers
        .iter()
        .map(|t| (t.name.clone(), format!("{} ({})", t.display_name, t.name)))
        .collect();
    let defaults: Vec<Vec<Markup>> = catalog
        .tiers
        .iter()
        .map(|t| {
            vec![
                markup! { (t.name) },
                markup! { (t.max_nodes) " (+" (t.overage) " %)" },
                markup! { (t.duration_days) " d, grace " (t.grace_days) " d" },
                markup! { (t.features.join(", ")) },
                markup! { (t.quotas.iter().map(|(n, q)| format!("{n}={}/{:?}", q.limit, q.period).to_lowercase()).collect::<Vec<_>>().join(", ")) },
            ]
        })
        .collect();
    let tier = if f.tier.is_empty() {
        catalog.tiers.first().map(|t| t.name.as_str()).unwrap_or("")
    } else {
        f.tier.as_str()
    };
    let main = markup! {
        @if let Some(p) = preview { (preview_section("Preview: the claims that will be signed", p, markup! {})) }
        (section("issue", "Issue a license", markup! {
            form method="post" action="/desk/issue" enctype="multipart/form-data" {
                (csrf_field(c.csrf))
                input type="hidden" name="previewed" value=(f.previewed);
                input type="hidden" name="bind_saved" value=(f.bind_saved);
                div class="field" {
                    label for="customer" { "Customer name" }
                    input type="text" id="customer" name="customer" value=(f.customer) required;
                }
                (optional_field("Customer id", "customer_id", "text", &f.customer_id, "empty: made from the name"))
                (select_field("Tier", "tier", &tiers, tier))
                (optional_field("Expires", "expires", "text", &f.expires, "date (2027-12-31) or duration (365d, 1y); empty: the tier's term"))
                (optional_field("Nodes", "nodes", "number", &f.terms.nodes, "empty: the tier's"))
                (optional_field("Cores", "cores", "number", &f.terms.cores, "empty: no core limit"))
                (optional_field("Extra features", "features", "text", &f.terms.features, "comma-separated, added to the tier's"))
                (optional_field("Quotas", "quotas", "text", &f.terms.quotas, "comma-separated NAME=LIMIT[/day|month|total|gauge], names from the tier catalog"))
                (optional_field("Custom quotas", "custom_quotas", "text", &f.terms.custom_quotas, "quotas the catalog does not name, e.g. exports=500/day"))
                (optional_field("Grace", "grace", "text", &f.terms.grace, "after expiry, e.g. 14d; empty: the tier's"))
                (optional_field("Overage %", "overage", "number", &f.terms.overage, "empty: the tier's"))
                fieldset {
                    legend { "Binding to a cluster (one of the two, or neither)" }
                    (optional_field("Cluster id", "cluster", "text", &f.cluster, "16 characters; empty: not bound"))
                    div class="field" {
                        label for="bind" { "Activation request file (from kaching-verifier activation-request)" }
                        input type="file" id="bind" name="bind" aria-describedby="bind-hint";
                        span class="caption" id="bind-hint" {
                            @if f.bind_saved.is_empty() {
                                "binds the license to the cluster that made the request; the preview shows which"
                            } @else {
                                "chosen: " code id="bind-chosen" { (f.bind_saved) } " (see the preview); another file replaces it"
                            }
                        }
                    }
                    @if !f.bind_saved.is_empty() {
                        div class="field" {
                            label { input type="checkbox" id="unbind" name="unbind" value="on"; " Drop this activation request" }
                        }
                    }
                }
                fieldset {
                    legend { "Connected: heartbeat to the relay (both, or neither)" }
                    (optional_field("Heartbeat", "heartbeat", "text", &f.heartbeat, "interval, e.g. 1h"))
                    (optional_field("Offline grace", "offline_grace", "text", &f.offline_grace, "how long the cluster may run without the relay, e.g. 7d"))
                }
                fieldset {
                    legend { "Air-gapped: usage reports due (report or degrade)" }
                    (optional_field("Report every", "report_every", "text", &f.report_every, "a usage report must be acknowledged this often, e.g. 90d; empty: not required"))
                    (optional_field("Warn before due", "report_warn", "text", &f.report_warn, "lead time, e.g. 14d (the default)"))
                    (optional_field("Features off while late", "report_deny", "text", &f.report_deny, "comma-separated features of this license; empty: warn only"))
                }
                (optional_field("Kept after expiry", "degrade", "text", &f.degrade, "comma-separated features that keep working after expiry and grace (the basic level)"))
                div class="field" {
                    label { input type="checkbox" name="armor" value="on" checked[f.armor == "on"]; " Armored file (.license.asc, text)" }
                }
                p class="actions" {
                    button type="submit" name="step" value="preview" id="do-preview" { "Preview" }
                    @if preview.is_some() {
                        button type="submit" name="step" value="sign" id="do-sign" { "Sign and write" }
                    }
                }
            }
        }))
        (section("tiers", "Tier defaults (from the catalog)", table("What each tier gives when a field is left empty",
            &["Tier", "Nodes", "Term", "Features", "Quotas"], &defaults)))
    };
    frame(status, c, "Issue", main)
}

/// Clock resets as `ledger show` lists them: id, cluster, the mark it was
/// made for, when it was signed (the new mark), until when, where written.
fn reset_table(caption: &str, resets: &[ClockResetRecord]) -> Markup {
    let rows: Vec<Vec<Markup>> = resets
        .iter()
        .map(|c| {
            vec![
                markup! { a href={ "/desk/clock-reset/" (c.id) } { code { (c.id) } } },
                markup! { (c.cluster_id) },
                markup! { (rfc3339(c.mark)) },
                markup! { (rfc3339(c.issued)) },
                markup! { (rfc3339(c.expires)) },
                markup! { (c.path) },
            ]
        })
        .collect();
    table(
        caption,
        &[
            "Reset",
            "Cluster",
            "For mark",
            "Signed (the new mark)",
            "Valid until",
            "File",
        ],
        &rows,
    )
}

/// Licenses listed for a cluster on a reset's pages: the page stays within
/// the 100 KiB budget however many one cluster went through.
pub const CLUSTER_LICENSES: usize = 50;

/// The licenses the ledger knows on a cluster, with their state (the
/// first [`CLUSTER_LICENSES`]).
fn cluster_licenses(licenses: &[(LicenseRecord, bool, LedgerState)]) -> Markup {
    let more = licenses.len().saturating_sub(CLUSTER_LICENSES);
    let rows: Vec<Vec<Markup>> = licenses
        .iter()
        .take(CLUSTER_LICENSES)
        .map(|(l, bound, state)| {
            vec![
                markup! { a href={ "/desk/license/" (l.id) } { code { (crate::issue::short_id(&l.id)) } } },
                markup! { (l.customer) " (" (l.customer_id) ")" },
                markup! { (l.tier) },
                state_badge(*state),
                markup! { @if *bound { "bound to this cluster" } @else { "unbound, reported from this cluster" } },
            ]
        })
        .collect();
    markup! {
        @if licenses.is_empty() {
            p id="reset-licenses" { "none known" }
        } @else {
            div id="reset-licenses" {
                (table("The licenses the ledger knows on this cluster", &["License", "Customer", "Tier", "State", "How"], &rows))
                @if more > 0 { p class="muted" { "and " (more) " more (licensegen clock-reset lists them all)" } }
            }
        }
    }
}

/// The clock-reset form's values (all text, as typed).
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(default)]
pub struct ResetFields {
    /// Anti-forgery token.
    pub csrf: String,
    /// `preview` or `sign`.
    pub step: String,
    /// `--cluster`.
    pub cluster: String,
    /// `--mark`.
    pub mark: String,
    /// `--valid-for`.
    pub valid_for: String,
    /// The fingerprint of what the preview showed.
    pub previewed: String,
}

/// What `licensegen clock-reset` shows before it signs.
pub struct ResetPreview<'a> {
    /// The checked request.
    pub plan: &'a Plan,
    /// What the ledger knows about the cluster.
    pub known: &'a Known,
    /// `clock_reset::notices`: warnings and notes.
    pub notices: &'a [String],
    /// This computer's clock (the new mark, drawn again when signing).
    pub now: kaching_core::time::Timestamp,
}

/// The clock-reset form, with a refusal or the preview.
pub fn clock_reset(
    status: StatusCode,
    c: &Chrome<'_>,
    f: &ResetFields,
    preview: Option<&ResetPreview<'_>>,
) -> Response {
    let preview = preview.map(|p| {
        let plan = p.plan;
        let ahead = plan.mark.saturating_sub(p.now);
        let until = p.now.saturating_add(plan.valid_for);
        markup! {
            (section("preview", "Preview: the clock reset that will be signed", markup! {
                @for n in p.notices {
                    @if let Some(w) = n.strip_prefix("warning:") {
                        (banner(Tone::Warn, "Check:", markup! { span class="preview-note" { (w.trim()) } }))
                    } @else {
                        (banner(Tone::Info, "Note:", markup! { span class="preview-note" { (n.trim_start_matches("note:").trim()) } }))
                    }
                }
                (facts(&[
                    ("Cluster", markup! { span id="preview-cluster" { (plan.cluster) } }),
                    ("Mark", markup! { span id="preview-mark" { (rfc3339(plan.mark)) } " (the cluster's, " span id="preview-ahead" { (duration(ahead)) } " ahead of this computer's clock)" }),
                    ("New mark", markup! { span id="preview-new-mark" { (rfc3339(p.now)) } " (this computer's clock, read again when you sign: check that it is right)" }),
                    ("Valid until", markup! { span id="preview-until" { (rfc3339(until)) } " (" (duration(plan.valid_for)) ")" }),
                    ("Licenses on the cluster", cluster_licenses(&p.known.licenses)),
                ]))
                p class="muted" { "The reset id and signing time are drawn when you sign. It works once, on this cluster only, until it expires." }
            }))
        }
    });
    let main = markup! {
        @if let Some(p) = &preview { (p) }
        (section("clock-reset", "Sign a clock reset", markup! {
            p { "For a cluster whose clock was once wrong ahead and that stays " code { "clock_tampered" } " now that its clock is right: the reset lowers its trusted-time mark to this computer's time, as " code { "licensegen clock-reset" } " does. Ask the customer for what " code { "kaching-verifier status" } " prints on the cluster." }
            form method="post" action="/desk/clock-reset" {
                (csrf_field(c.csrf))
                input type="hidden" name="previewed" value=(f.previewed);
                div class="field" {
                    label for="cluster" { "Cluster id" }
                    input type="text" id="cluster" name="cluster" value=(f.cluster) required aria-describedby="cluster-hint";
                    span class="caption" id="cluster-hint" { "16 characters of a-z and 2-7, as status prints it" }
                }
                div class="field" {
                    label for="mark" { "Mark" }
                    input type="text" id="mark" name="mark" value=(f.mark) required aria-describedby="mark-hint";
                    span class="caption" id="mark-hint" { "the cluster's trusted-time mark exactly as status prints it, a UTC time such as 2029-03-01T12:00:00Z" }
                }
                (optional_field("Valid for", "valid_for", "text", &f.valid_for, "how long the customer has to use it: 1h to 90d (default 14d)"))
                p class="actions" {
                    button type="submit" name="step" value="preview" id="do-preview" { "Preview" }
                    @if preview.is_some() {
                        button type="submit" name="step" value="sign" id="do-sign" { "Sign and write" }
                    }
                }
            }
        }))
    };
    frame(status, c, "Clock reset", main)
}

/// A signed clock reset, for its page.
pub struct ResetDone<'a> {
    /// The ledger's row.
    pub rec: &'a ClockResetRecord,
    /// The name the download gets (and the customer types).
    pub file_name: &'a str,
    /// The licenses the ledger knows on its cluster now.
    pub licenses: &'a [(LicenseRecord, bool, LedgerState)],
    /// Now, to say whether it can still be used.
    pub now: kaching_core::time::Timestamp,
}

/// A signed clock reset: what it says, the file, what the customer does.
pub fn clock_reset_done(c: &Chrome<'_>, v: &ResetDone<'_>) -> Response {
    let r = v.rec;
    let usable = r.expires >= v.now;
    let main = markup! {
        (section("reset", "Clock reset", markup! {
            p {
                @if usable { (badge(Tone::Good, "usable", None)) } @else { (badge(Tone::Bad, "expired", None)) }
                " " code id="reset-id" { (r.id) }
            }
            (facts(&[
                ("Cluster", markup! { span id="reset-cluster" { (r.cluster_id) } }),
                ("Mark", markup! { span id="reset-mark" { (rfc3339(r.mark)) } " (the cluster's, " (duration(r.mark.saturating_sub(r.issued))) " ahead of this computer's clock when signed)" }),
                ("New mark", markup! { (rfc3339(r.issued)) " (this computer's clock when signed)" }),
                ("Valid until", markup! { span id="reset-until" { (rfc3339(r.expires)) } " (" (duration(r.expires.saturating_sub(r.issued))) ")" }),
                ("Licenses on the cluster", cluster_licenses(v.licenses)),
                ("File", markup! { span id="reset-path" { (r.path) } }),
            ]))
            p class="actions" {
                a id="download-clock-reset" href={ "/desk/clock-reset/" (r.id) "/download" } download { "Download (" (v.file_name) ")" }
            }
            p { "Send the file to the customer; on the cluster, with the verifier daemon stopped, they run:" }
            pre id="reset-command" { "kaching-verifier clock-reset " (v.file_name) }
            p { "It works once, on cluster " (r.cluster_id) " only, until " (rfc3339(r.expires)) "." }
        }))
    };
    frame(StatusCode::OK, c, "Clock reset", main)
}
