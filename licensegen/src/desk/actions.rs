//! The desk's handlers: each gathers the form, calls the function the CLI
//! command calls, and answers with a page or a redirect.

use std::sync::PoisonError;

use age::secrecy::SecretString;
use anyhow::Result;
use axum::extract::rejection::FormRejection;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use kaching_core::revocation::RevocationStatus;
use kaching_core::root::Role;
use kaching_core::time::DAY;
use kaching_core::{armor, DocKind, SecretKey};
use kaching_kit::web::components::Tone;
use kaching_kit::web::{see_other, UploadError};
use serde::Deserialize;

use super::pages::{self, Chrome, Filter, IssueFields, LicenseView, Notice, Preview, Terms};
use super::Desk;
use crate::issue::{self, build, LicenseRequest, Mode};
use crate::ledger::{self, Ledger, LedgerState};
use crate::vendor_dir::{VendorDir, KEY_FILE, LEDGER_FILE, REVOCATIONS_ARMORED_FILE};

/// Decrypts the vendor key with `passphrase` (the form), else with the
/// CLI's sources (passphrase file, `KACHING_PASSPHRASE`, `--identity`).
pub(super) fn unseal(
    desk: &Desk,
    vendor: &VendorDir,
    passphrase: Option<SecretString>,
) -> Result<SecretKey> {
    let path = vendor.path(KEY_FILE);
    if !path.exists() {
        return Err(crate::error::usage(format!(
            "{} is not in this vendor directory (a copy without the private key): run the desk on the machine that keeps the vendor key",
            path.display()
        )));
    }
    let expected = vendor.public_key()?;
    match passphrase {
        Some(p) => crate::keystore::unseal_with(&path, &expected, &desk.unlock, p),
        None => crate::keystore::unseal(&path, &expected, &desk.unlock),
    }
}

pub(super) fn chrome<'a>(desk: &'a Desk, back: &'a str, notice: Option<Notice>) -> Chrome<'a> {
    Chrome {
        csrf: desk.csrf.token(),
        unlocked: desk.unlocked(),
        back,
        notice,
    }
}

pub(super) fn failed(e: &anyhow::Error) -> Response {
    pages::problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Not done.",
        &format!("{e:#}"),
    )
}

/// A form post that could not be read (malformed, cut off): say so, and
/// that reloading the page is the way on.
pub(super) fn bad_form(e: impl std::fmt::Display) -> Response {
    pages::problem(
        StatusCode::BAD_REQUEST,
        "That form could not be read.",
        &format!("{e}: reload the page and try again."),
    )
}

pub(super) fn forged() -> Response {
    tracing::warn!("desk form post without the page's anti-forgery token refused");
    pages::problem(
        StatusCode::FORBIDDEN,
        "Refused.",
        "the form did not carry this desk's token (the desk may have restarted): reload the page and try again; nothing was changed.",
    )
}

/// Runs `f` with the unlocked key, refused unless the current root gives
/// it `role`; a locked desk says how to unlock.
pub(super) fn with_key<T>(
    desk: &Desk,
    vendor: &VendorDir,
    role: Role,
    f: impl FnOnce(&SecretKey) -> Result<T>,
) -> Result<T> {
    let guard = desk.key.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(key) = guard.as_ref() else {
        return Err(crate::error::usage(
            "the vendor key is locked: enter its passphrase in the Unlock form at the top of the page, then try again",
        ));
    };
    crate::commands::root::check_role(vendor, key, role)?;
    f(key)
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct LedgerQuery {
    q: String,
    state: String,
    expiring: String,
    done: String,
    page: usize,
}

fn ledger_page(desk: &Desk, q: &LedgerQuery) -> Result<Response> {
    let v = desk.vendor()?;
    let ledger = Ledger::open(&v.path(LEDGER_FILE))?;
    let list = crate::revocations::current(&v, &ledger)?;
    let now = crate::fsutil::now();
    let horizon = match q.expiring.trim() {
        "" => None,
        d => Some(now.saturating_add(
            d.parse::<u64>().map_err(|_| {
                crate::error::usage(format!(
                    "expiring within {d:?} days: write a whole number of days, e.g. 30"
                ))
            })? * DAY,
        )),
    };
    let records = ledger::list_licenses(&ledger.conn)?;
    let customer = Some(q.q.trim()).filter(|s| !s.is_empty());
    let rows: Vec<_> = ledger::select(&records, list.as_ref(), now, customer, horizon)
        .into_iter()
        .filter(|(_, s)| q.state.is_empty() || s.as_str() == q.state)
        .collect();
    let notice = match q.done.as_str() {
        "locked" => Some(Notice {
            tone: Tone::Info,
            title: "Locked.".into(),
            text: "The vendor key is forgotten; unlock it again to sign.".into(),
        }),
        _ => None,
    };
    let f = Filter {
        q: &q.q,
        state: &q.state,
        expiring: &q.expiring,
        page: q.page,
    };
    Ok(pages::ledger(
        &chrome(desk, "/desk/", notice),
        &f,
        &rows,
        records.len(),
    ))
}

pub(super) async fn ledger(
    State(desk): State<Desk>,
    q: Result<Query<LedgerQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    ledger_page(&desk, &q).unwrap_or_else(|e| failed(&e))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct LicenseQuery {
    done: String,
}

fn done_text(done: &str) -> Option<Notice> {
    let (title, text) = match done {
        "issued" => ("Issued.", "The license was signed, written under licenses/ and recorded in the ledger: download it below and send it to the customer."),
        "upgraded" | "renewed" => ("Signed.", "This new license replaces the old one: download it below and send it to the customer."),
        "suspended" | "revoked" | "reinstated" => ("Signed.", "The new revocation list is written (revocations.cose and revocations.asc): download it below (Revocation list) for an air-gapped customer, or `licensegen publish` it to the relay."),
        _ => return None,
    };
    Some(Notice {
        tone: Tone::Good,
        title: title.into(),
        text: text.into(),
    })
}

fn license_page(desk: &Desk, id: &str, q: &LicenseQuery) -> Result<Response> {
    license_page_with(desk, id, done_text(&q.done), None)
}

/// The license page, with a notice and the preview of an upgrade or renewal.
fn license_page_with(
    desk: &Desk,
    id: &str,
    notice: Option<Notice>,
    reissue: Option<pages::Reissue<'_>>,
) -> Result<Response> {
    let v = desk.vendor()?;
    let ledger = Ledger::open(&v.path(LEDGER_FILE))?;
    let list = crate::revocations::current(&v, &ledger)?;
    let rec = ledger::find_license(&ledger.conn, id)?;
    let lic = issue::recorded_license(&v, &rec)?;
    let history = ledger::events(&ledger.conn, &rec.id)?;
    let usage = ledger::usage_for(&ledger.conn, &rec.id)?;
    let receipts = usage
        .iter()
        .map(|u| ledger::receipt_for(&ledger.conn, &u.file_sha256).map(|r| r.is_some()))
        .collect::<Result<Vec<_>>>()?;
    let catalog = v.catalog()?;
    let clock_resets = ledger::clock_resets_for_license(&ledger.conn, &rec, &usage)?;
    let view = LicenseView {
        rec: &rec,
        state: LedgerState::of(&rec, list.as_ref(), crate::fsutil::now()),
        license: &lic,
        history: &history,
        usage: &usage,
        receipts,
        has_list: v.path(REVOCATIONS_ARMORED_FILE).exists(),
        revoker_key: std::env::var("KACHING_REVOKER_KEY").unwrap_or_default(),
        tiers: catalog
            .tiers
            .iter()
            .map(|t| (t.name.clone(), t.name.clone()))
            .collect(),
        reissue,
        clock_resets: &clock_resets,
    };
    let back = format!("/desk/license/{}", rec.id);
    Ok(pages::license(&chrome(desk, &back, notice), &view))
}

pub(super) async fn license(
    State(desk): State<Desk>,
    Path(id): Path<String>,
    q: Result<Query<LicenseQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    license_page(&desk, &id, &q).unwrap_or_else(|e| failed(&e))
}

fn download_file(desk: &Desk, id: &str, form: &str) -> Result<Response> {
    let v = desk.vendor()?;
    let ledger = Ledger::open(&v.path(LEDGER_FILE))?;
    let rec = ledger::find_license(&ledger.conn, id)?;
    let is_armored = armor::is_armored(&rec.file);
    let name = format!(
        "{}-{}",
        issue::slug(&rec.customer_id),
        issue::short_id(&rec.id)
    );
    let (body, name, kind) = match form {
        "armored" => {
            let text = if is_armored {
                rec.file.clone()
            } else {
                armor::armor(DocKind::License, &rec.file).into_bytes()
            };
            (
                text,
                format!("{name}.license.asc"),
                "text/plain; charset=utf-8",
            )
        }
        "binary" => {
            let bin = if is_armored {
                armor::dearmor(&rec.file, Some(DocKind::License)).map_err(|e| {
                    anyhow::anyhow!("the ledger's copy of license {} is not readable armor ({e}): restore the ledger from backup", rec.id)
                })?
            } else {
                rec.file.clone()
            };
            (bin, format!("{name}.license"), "application/octet-stream")
        }
        other => {
            return Err(crate::error::usage(format!(
                "no download form {other:?}: use armored or binary"
            )))
        }
    };
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    kaching_kit::web::secure(&mut resp);
    Ok(resp)
}

/// `GET /desk/revocations/download`: the current signed revocation list,
/// armored, to carry to air-gapped customers (as `revocations.asc`).
pub(super) async fn download_list(State(desk): State<Desk>) -> Response {
    let run = || -> Result<Response> {
        let v = desk.vendor()?;
        let path = v.path(REVOCATIONS_ARMORED_FILE);
        if !path.exists() {
            return Ok(pages::problem(
                StatusCode::NOT_FOUND,
                "No revocation list here.",
                "revocations.asc is not in the vendor directory: run `licensegen revocations refresh` to sign the current list again",
            ));
        }
        let bytes = crate::fsutil::read(&path)?;
        let mut resp = (StatusCode::OK, bytes).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment; filename=\"revocations.asc\""),
        );
        kaching_kit::web::secure(&mut resp);
        Ok(resp)
    };
    run().unwrap_or_else(|e| failed(&e))
}

pub(super) async fn download(
    State(desk): State<Desk>,
    Path((id, form)): Path<(String, String)>,
) -> Response {
    download_file(&desk, &id, &form).unwrap_or_else(|e| failed(&e))
}

#[derive(Deserialize)]
pub(super) struct ChangeForm {
    csrf: String,
    action: String,
    #[serde(default)]
    tier: String,
    #[serde(default)]
    expires: String,
    #[serde(default)]
    reason: String,
    #[serde(default, rename = "revoke-reason")]
    revoke_reason: String,
    #[serde(default)]
    list_valid_for: String,
    /// Upgrade and renew: `sign` after the preview.
    #[serde(default)]
    step: String,
    /// Upgrade and renew: the fingerprint of the fields the preview showed.
    #[serde(default)]
    previewed: String,
    #[serde(default)]
    revoker_key: String,
    #[serde(default)]
    revoker_passphrase: String,
    /// Upgrade and renew: the other terms `licensegen upgrade|renew` take
    /// (empty: as the mode decides, like a flag not given).
    #[serde(flatten)]
    terms: Terms,
}

/// The passphrase typed in a form, or `None` to take it from the CLI's
/// sources (`--passphrase-file`, `KACHING_PASSPHRASE`, `--identity`); never
/// a terminal prompt, as the desk runs in the background.
fn typed_or_sources(desk: &Desk, typed: &str, whose: &str) -> Result<Option<SecretString>> {
    let sources = desk.unlock.passphrase.is_non_interactive() || desk.unlock.identity.is_some();
    if typed.is_empty() && !sources {
        return Err(crate::error::usage(format!(
            "no passphrase entered: type the {whose}'s passphrase"
        )));
    }
    // An empty field with only an age identity: the identity unlocks a
    // recipient-encrypted key, and a passphrase key is refused rather than
    // asked for at the terminal.
    Ok(
        if !typed.is_empty() || !desk.unlock.passphrase.is_non_interactive() {
            Some(SecretString::from(typed.to_string()))
        } else {
            None
        },
    )
}

fn some(s: &str) -> Option<String> {
    Some(s.trim().to_string()).filter(|s| !s.is_empty())
}

/// What a change did: signed (go to this page), or an upgrade or renewal
/// to preview first.
enum Changed {
    Done(String),
    Preview {
        built: Box<issue::Built>,
        /// What `licensegen upgrade|renew` prints before signing (a lowered
        /// limit, a suspended license).
        notes: Vec<String>,
        previewed: String,
        changed: bool,
    },
}

/// What the upgrade / renew fields said when previewed.
fn reissue_fingerprint(id: &str, f: &ChangeForm) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let terms = f.terms.fields();
    for x in [id, &f.action, &f.tier, &f.expires]
        .into_iter()
        .chain(terms.iter().map(|(_, v)| *v))
    {
        h.update(x.trim().as_bytes());
        h.update([0u8]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn apply_change(desk: &Desk, id: &str, f: &ChangeForm) -> Result<Changed> {
    let v = desk.vendor()?;
    let mut ledger = Ledger::open(&v.path(LEDGER_FILE))?;
    let now = crate::fsutil::now();
    let status = match f.action.as_str() {
        "upgrade" | "renew" => {
            let upgrade = f.action == "upgrade";
            let r = LicenseRequest {
                tier: if upgrade { some(&f.tier) } else { None },
                expires: some(&f.expires),
                ..terms_request(&f.terms)?
            };
            let catalog = v.catalog()?;
            let plan = crate::commands::licenses::plan_reissue(
                &v, &ledger, &catalog, id, &r, upgrade, now,
            )?;
            // Sign only what was previewed, as the issue form does.
            let seen = reissue_fingerprint(id, f);
            if f.step != "sign" || f.previewed != seen {
                return Ok(Changed::Preview {
                    built: Box::new(plan.built),
                    notes: plan.notes,
                    previewed: seen,
                    changed: f.step == "sign",
                });
            }
            let armored = v.config.armor || plan.was_armored;
            let issued = with_key(desk, &v, Role::Issuer, |key| {
                issue::sign_and_record(&v, &mut ledger, key, plan.built, armored, None, now)
            })?;
            let done = if upgrade { "upgraded" } else { "renewed" };
            return Ok(Changed::Done(format!(
                "/desk/license/{}?done={done}",
                issued.license.id
            )));
        }
        "suspend" => Some(RevocationStatus::Suspended),
        "revoke" => Some(RevocationStatus::Revoked),
        "reinstate" => None,
        other => {
            return Err(crate::error::usage(format!(
                "no action {other:?}: use the buttons on the license page"
            )))
        }
    };
    let reason = some(&f.reason).or_else(|| some(&f.revoke_reason));
    let expires = crate::commands::revoke::deadline(some(&f.list_valid_for).as_deref(), now)?;
    let (rec, change) = crate::commands::revoke::plan_change(&v, &ledger, id, status, reason, now)?;
    match some(&f.revoker_key) {
        // As `--revoker-key`: unlocked for this one list, then dropped.
        Some(path) => {
            let typed = zeroize::Zeroizing::new(f.revoker_passphrase.clone());
            let given = typed_or_sources(desk, &typed, "revoker key")?;
            let key = crate::keystore::unseal_file_with(
                std::path::Path::new(&path),
                &desk.unlock,
                given,
            )?;
            crate::commands::root::check_role(&v, &key, Role::Revoker)?;
            crate::revocations::publish(&v, &mut ledger, &key, &change, expires, now)?;
        }
        None => {
            with_key(desk, &v, Role::Revoker, |key| {
                crate::revocations::publish(&v, &mut ledger, key, &change, expires, now)
            })?;
        }
    }
    let done = match status {
        Some(RevocationStatus::Suspended) => "suspended",
        Some(RevocationStatus::Revoked) => "revoked",
        None => "reinstated",
    };
    Ok(Changed::Done(format!(
        "/desk/license/{}?done={done}",
        rec.id
    )))
}

pub(super) async fn change(
    State(desk): State<Desk>,
    Path(id): Path<String>,
    form: Result<Form<ChangeForm>, FormRejection>,
) -> Response {
    let f = match form {
        Ok(Form(f)) => f,
        Err(e) => return bad_form(e),
    };
    if !desk.csrf.check(&f.csrf) {
        return forged();
    }
    match apply_change(&desk, &id, &f) {
        Ok(Changed::Done(to)) => see_other(&to),
        Ok(Changed::Preview {
            built,
            notes,
            previewed,
            changed,
        }) => {
            let notice = changed.then(|| Notice {
                tone: Tone::Warn,
                title: "Not signed yet.".into(),
                text: "The form changed since the preview: check the new preview, then sign."
                    .into(),
            });
            let reissue = pages::Reissue {
                action: &f.action,
                tier: &f.tier,
                expires: &f.expires,
                terms: f.terms.fields(),
                previewed: &previewed,
                preview: Preview {
                    license: &built.license,
                    notes: &built.notes,
                    checks: &notes,
                },
            };
            license_page_with(&desk, &id, notice, Some(reissue)).unwrap_or_else(|e| failed(&e))
        }
        Err(e) => failed(&e),
    }
}

pub(super) async fn issue_form(State(desk): State<Desk>) -> Response {
    let run = || -> Result<Response> {
        let catalog = desk.vendor()?.catalog()?;
        Ok(pages::issue(
            StatusCode::OK,
            &chrome(&desk, "/desk/issue", None),
            &catalog,
            &IssueFields::default(),
            None,
        ))
    };
    run().unwrap_or_else(|e| failed(&e))
}

fn number(label: &str, text: &str) -> Result<Option<u32>> {
    match text.trim() {
        "" => Ok(None),
        t => t.parse::<u32>().map(Some).map_err(|_| {
            crate::error::usage(format!(
                "{label} {t:?}: write a whole number, or leave it empty for the tier's"
            ))
        }),
    }
}

fn list(text: &str) -> Vec<String> {
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// What the fields said when previewed (a hash, carried in the form).
fn fingerprint(f: &IssueFields) -> String {
    use sha2::{Digest, Sha256};
    let fields = [
        &f.customer,
        &f.customer_id,
        &f.tier,
        &f.expires,
        &f.terms.nodes,
        &f.terms.cores,
        &f.terms.features,
        &f.terms.quotas,
        &f.terms.grace,
        &f.terms.overage,
        &f.cluster,
        &f.heartbeat,
        &f.offline_grace,
        &f.terms.custom_quotas,
        &f.report_every,
        &f.report_warn,
        &f.report_deny,
        &f.degrade,
        &f.bind_saved,
        &f.armor,
    ];
    let mut h = Sha256::new();
    for x in fields {
        h.update(x.trim().as_bytes());
        h.update([0u8]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The form as the request `licensegen issue` builds from its flags;
/// `requests` is where the desk keeps uploaded activation requests.
fn request_of(f: &IssueFields, requests: &std::path::Path) -> Result<LicenseRequest> {
    let bind = match f.bind_saved.trim() {
        "" => None,
        name => Some(requests.join(super::requests::checked_name(name)?)),
    };
    Ok(LicenseRequest {
        customer: some(&f.customer),
        customer_id: some(&f.customer_id),
        tier: some(&f.tier),
        expires: some(&f.expires),
        cluster: some(&f.cluster),
        bind,
        heartbeat: some(&f.heartbeat),
        offline_grace: some(&f.offline_grace),
        report_every: some(&f.report_every),
        report_warn: some(&f.report_warn),
        report_deny: list(&f.report_deny),
        degrade: list(&f.degrade),
        ..terms_request(&f.terms)?
    })
}

/// The terms as the request the CLI's flags build (the rest default).
fn terms_request(t: &Terms) -> Result<LicenseRequest> {
    Ok(LicenseRequest {
        nodes: number("nodes", &t.nodes)?,
        cores: number("cores", &t.cores)?,
        features: list(&t.features),
        quotas: list(&t.quotas),
        custom_quotas: list(&t.custom_quotas),
        grace: some(&t.grace),
        overage: number("overage", &t.overage)?,
        ..LicenseRequest::default()
    })
}

/// Reads the issue form: multipart as the page sends it (it may carry an
/// activation request file), or urlencoded.
async fn read_issue_form(req: Request) -> Result<(IssueFields, Option<Vec<u8>>), Response> {
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !multipart {
        return match Form::<IssueFields>::from_request(req, &()).await {
            Ok(Form(f)) => Ok((f, None)),
            Err(e) => Err(bad_form(e)),
        };
    }
    let mut form = Multipart::from_request(req, &()).await.map_err(bad_form)?;
    let fields = kaching_kit::web::read_fields(&mut form)
        .await
        .map_err(|e| match e {
            UploadError::CutOff => bad_form("the upload was cut off"),
            UploadError::Unreadable(e) => bad_form(e),
        })?;
    let mut text = serde_json::Map::new();
    let mut file = None;
    for (name, bytes) in fields {
        if name == "bind" {
            file = Some(bytes).filter(|b| !b.is_empty());
        } else {
            text.insert(
                name,
                serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned()),
            );
        }
    }
    let f = serde_json::from_value(serde_json::Value::Object(text)).map_err(bad_form)?;
    Ok((f, file))
}

pub(super) async fn issue(State(desk): State<Desk>, req: Request) -> Response {
    let (mut f, upload) = match read_issue_form(req).await {
        Ok(got) => got,
        Err(resp) => return resp,
    };
    if !desk.csrf.check(&f.csrf) {
        return forged();
    }
    let v = match desk.vendor() {
        Ok(v) => v,
        Err(e) => return failed(&e),
    };
    let catalog = match v.catalog() {
        Ok(c) => c,
        Err(e) => return failed(&e),
    };
    let now = crate::fsutil::now();
    let refused = |f: &IssueFields, e: &anyhow::Error| {
        let notice = Notice {
            tone: Tone::Bad,
            title: "Not issued.".into(),
            text: format!("{e:#}"),
        };
        pages::issue(
            StatusCode::UNPROCESSABLE_ENTITY,
            &chrome(&desk, "/desk/issue", Some(notice)),
            &catalog,
            f,
            None,
        )
    };
    if f.unbind == "on" {
        f.bind_saved.clear();
        f.unbind.clear();
    }
    if let Some(bytes) = upload {
        match super::requests::save(&v, &bytes) {
            Ok(name) => f.bind_saved = name,
            Err(e) => return refused(&f, &e),
        }
    }
    let requests = v.path(super::requests::DIR);
    let built =
        request_of(&f, &requests).and_then(|r| build(&r, Mode::New, &catalog, &v.config, now));
    let built = match built {
        Ok(b) => b,
        Err(e) => return refused(&f, &e),
    };
    let seen = fingerprint(&f);
    if f.step != "sign" || f.previewed != seen {
        // Sign only what was previewed: a form changed since shows its preview again.
        let notice = (f.step == "sign").then(|| Notice {
            tone: Tone::Warn,
            title: "Not signed yet.".into(),
            text: "The form changed since the preview: check the new preview below, then sign."
                .into(),
        });
        let mut shown = f.clone();
        shown.previewed = seen;
        return pages::issue(
            StatusCode::OK,
            &chrome(&desk, "/desk/issue", notice),
            &catalog,
            &shown,
            Some(&Preview {
                license: &built.license,
                notes: &built.notes,
                checks: &[],
            }),
        );
    }
    let armored = f.armor == "on" || v.config.armor;
    let signed = Ledger::open(&v.path(LEDGER_FILE)).and_then(|mut ledger| {
        with_key(&desk, &v, Role::Issuer, |key| {
            issue::sign_and_record(&v, &mut ledger, key, built.clone(), armored, None, now)
        })
    });
    match signed {
        Ok(i) => see_other(&format!("/desk/license/{}?done=issued", i.license.id)),
        Err(e) => {
            // Keep the preview so nothing typed is lost.
            let notice = Notice {
                tone: Tone::Bad,
                title: "Not issued.".into(),
                text: format!("{e:#}"),
            };
            pages::issue(
                StatusCode::UNPROCESSABLE_ENTITY,
                &chrome(&desk, "/desk/issue", Some(notice)),
                &catalog,
                &f,
                Some(&Preview {
                    license: &built.license,
                    notes: &built.notes,
                    checks: &[],
                }),
            )
        }
    }
}

#[derive(Deserialize)]
pub(super) struct UnlockForm {
    csrf: String,
    #[serde(default)]
    passphrase: String,
    #[serde(default)]
    back: String,
}

/// Where to go after (un)locking: a desk page, never elsewhere.
fn back_to(back: &str) -> &str {
    if back.starts_with(super::PREFIX) && !back.contains("//") {
        back
    } else {
        super::PREFIX
    }
}

pub(super) async fn unlock(
    State(desk): State<Desk>,
    form: Result<Form<UnlockForm>, FormRejection>,
) -> Response {
    let f = match form {
        Ok(Form(f)) => f,
        Err(e) => return bad_form(e),
    };
    if !desk.csrf.check(&f.csrf) {
        return forged();
    }
    let pass = zeroize::Zeroizing::new(f.passphrase);
    let got = desk.vendor().and_then(|v| {
        let given = typed_or_sources(&desk, &pass, "vendor key")?;
        unseal(&desk, &v, given)
    });
    match got {
        Ok(key) => {
            tracing::info!("desk: vendor key unlocked");
            *desk.key.lock().unwrap_or_else(PoisonError::into_inner) = Some(key);
            see_other(back_to(&f.back))
        }
        Err(e) => pages::problem(
            StatusCode::UNAUTHORIZED,
            "Still locked.",
            &format!("{e:#} — go back and enter the vendor key's passphrase again."),
        ),
    }
}

#[derive(Deserialize)]
pub(super) struct LockForm {
    csrf: String,
}

pub(super) async fn lock(
    State(desk): State<Desk>,
    form: Result<Form<LockForm>, FormRejection>,
) -> Response {
    match form {
        Ok(Form(f)) if desk.csrf.check(&f.csrf) => {}
        Ok(_) => return forged(),
        Err(e) => return bad_form(e),
    }
    desk.forget_key();
    see_other("/desk/?done=locked")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_unlocking_the_desk_goes_only_to_its_own_pages() {
        assert_eq!(back_to("/desk/license/ab"), "/desk/license/ab");
        assert_eq!(back_to("https://evil.example/"), "/desk/");
        assert_eq!(back_to("//evil.example/desk/"), "/desk/");
        assert_eq!(back_to("/desk//evil.example"), "/desk/");
    }

    #[test]
    fn the_form_reads_as_the_cli_flags_do() {
        let f = IssueFields {
            customer: " ACME ".into(),
            tier: "standard".into(),
            terms: Terms {
                nodes: "5".into(),
                features: "sso, audit_log,".into(),
                quotas: "search_requests=100/day".into(),
                ..Terms::default()
            },
            ..IssueFields::default()
        };
        let r = request_of(&f, std::path::Path::new("/nowhere")).unwrap();
        assert_eq!(r.customer.as_deref(), Some("ACME"));
        assert_eq!(r.nodes, Some(5));
        assert_eq!(r.features, ["sso", "audit_log"]);
        assert_eq!(r.quotas, ["search_requests=100/day"]);
        assert!(r.expires.is_none() && r.cluster.is_none());
        let bad = IssueFields {
            terms: Terms {
                nodes: "five".into(),
                ..f.terms.clone()
            },
            ..f
        };
        let e = request_of(&bad, std::path::Path::new("/nowhere"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("whole number"), "{e}");
    }
}
