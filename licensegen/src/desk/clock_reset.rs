//! Signing a clock reset on the desk: the form takes what `licensegen
//! clock-reset` takes, checks it with the same `clock_reset::plan`, shows
//! what the command prints before signing, and signs with the same
//! `clock_reset::sign_and_record`. The file is written under
//! `clock-resets/` in the vendor directory (never over another file) and
//! offered for download from the ledger's copy.

use std::path::PathBuf;

use anyhow::Result;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use kaching_core::root::Role;
use kaching_core::time::Timestamp;
use kaching_core::Settings;
use kaching_kit::web::components::Tone;
use kaching_kit::web::see_other;
use serde::Deserialize;

use super::actions::{bad_form, chrome, failed, forged, with_key};
use super::pages::{self, Notice, ResetDone, ResetFields, ResetPreview};
use super::Desk;
use crate::clock_reset::{self, Known, Plan};
use crate::ledger::{self, Ledger, LedgerState};
use crate::vendor_dir::{VendorDir, LEDGER_FILE};

/// Where the desk writes the resets it signs.
pub const DIR: &str = "clock-resets";

/// Where the form lives.
const FORM: &str = "/desk/clock-reset";

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct FormQuery {
    /// Prefills the cluster id (the license page links here with it).
    cluster: String,
}

/// `GET /desk/clock-reset`: the empty form.
pub(super) async fn form(
    State(desk): State<Desk>,
    q: Result<Query<FormQuery>, QueryRejection>,
) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let f = ResetFields {
        cluster: q.cluster,
        valid_for: clock_reset::DEFAULT_VALID_FOR.to_string(),
        ..ResetFields::default()
    };
    pages::clock_reset(StatusCode::OK, &chrome(&desk, FORM, None), &f, None)
}

/// What the preview showed: the fields as typed and what the ledger knew
/// about the cluster (a reset signed in between, from another tab or a
/// second press of the button, shows the preview again instead).
fn fingerprint(f: &ResetFields, known: &Known) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for x in [&f.cluster, &f.mark, &f.valid_for] {
        h.update(x.trim().as_bytes());
        h.update([0u8]);
    }
    for (rec, bound, _) in &known.licenses {
        h.update(rec.id.to_string().as_bytes());
        h.update([u8::from(*bound)]);
    }
    h.update([0u8]);
    for r in &known.still_valid {
        h.update(r.id.as_bytes());
        h.update([0u8]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A new file for `cluster`'s reset under [`DIR`]: the name `licensegen
/// clock-reset` gives it, numbered when an earlier reset has that name.
fn target(v: &VendorDir, cluster: &str) -> Result<PathBuf> {
    let dir = v.path(DIR);
    std::fs::create_dir_all(&dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot create {} ({e}): check the vendor directory's permissions",
            dir.display()
        )
    })?;
    let first = clock_reset::default_path(cluster);
    (1..=1000u32)
        .map(|n| {
            if n == 1 {
                dir.join(&first)
            } else {
                dir.join(format!("clock-reset-{cluster}-{n}.asc"))
            }
        })
        .find(|p| !p.exists())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{} holds 1000 clock resets for cluster {cluster}: move old ones away",
                dir.display()
            )
        })
}

/// What a post of the form comes to.
enum Outcome {
    /// Refused by `plan` (or the ledger could not be read): the form again
    /// with the message.
    Refused(anyhow::Error),
    /// Checked: the preview, with a notice when it is shown instead of
    /// signing.
    Preview {
        plan: Plan,
        known: Known,
        previewed: String,
        notice: Option<Notice>,
    },
    /// Signed: the reset's page.
    Signed(String),
}

fn handle(desk: &Desk, f: &ResetFields, now: Timestamp) -> Outcome {
    let checked = clock_reset::plan(
        &f.cluster,
        &f.mark,
        &f.valid_for,
        now,
        Settings::default().clock_tolerance,
    )
    .and_then(|plan| {
        let v = desk.vendor()?;
        let ledger = Ledger::open(&v.path(LEDGER_FILE))?;
        let known = clock_reset::known(&v, &ledger, &plan, now)?;
        Ok((v, ledger, plan, known))
    });
    let (v, mut ledger, plan, known) = match checked {
        Ok(x) => x,
        Err(e) => return Outcome::Refused(e),
    };
    let seen = fingerprint(f, &known);
    if f.step != "sign" || f.previewed != seen {
        let notice = (f.step == "sign").then(|| Notice {
            tone: Tone::Warn,
            title: "Not signed yet.".into(),
            text: "The form, or what the ledger knows about this cluster, changed since the \
                   preview: check the new preview below, then sign."
                .into(),
        });
        return Outcome::Preview {
            plan,
            known,
            previewed: seen,
            notice,
        };
    }
    // The key first: a locked desk leaves no folder behind.
    let signed = with_key(desk, &v, Role::Issuer, |key| {
        let path = target(&v, &plan.cluster)?;
        clock_reset::sign_and_record(&mut ledger, key, &plan, &path, now)
    });
    match signed {
        Ok(s) => {
            tracing::info!(id = %s.reset.id_text(), cluster = %s.reset.cluster_id, "desk: clock reset signed");
            Outcome::Signed(format!(
                "/desk/clock-reset/{}?done=signed",
                s.reset.id_text()
            ))
        }
        Err(e) => Outcome::Preview {
            plan,
            known,
            previewed: seen,
            notice: Some(Notice {
                tone: Tone::Bad,
                title: "Not signed.".into(),
                text: format!("{e:#}"),
            }),
        },
    }
}

/// `POST /desk/clock-reset`: preview, or sign what was previewed.
pub(super) async fn post(
    State(desk): State<Desk>,
    form: Result<Form<ResetFields>, FormRejection>,
) -> Response {
    let mut f = match form {
        Ok(Form(f)) => f,
        Err(e) => return bad_form(e),
    };
    if !desk.csrf.check(&f.csrf) {
        return forged();
    }
    let now = crate::fsutil::now();
    match handle(&desk, &f, now) {
        Outcome::Signed(to) => see_other(&to),
        Outcome::Refused(e) => {
            let notice = Notice {
                tone: Tone::Bad,
                title: "Not signed.".into(),
                text: format!("{e:#}"),
            };
            f.previewed.clear();
            pages::clock_reset(
                StatusCode::UNPROCESSABLE_ENTITY,
                &chrome(&desk, FORM, Some(notice)),
                &f,
                None,
            )
        }
        Outcome::Preview {
            plan,
            known,
            previewed,
            notice,
        } => {
            let status = if notice.as_ref().is_some_and(|n| n.tone == Tone::Bad) {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::OK
            };
            f.previewed = previewed;
            let notices = clock_reset::notices(&plan, &known);
            let p = ResetPreview {
                plan: &plan,
                known: &known,
                notices: &notices,
                now,
            };
            pages::clock_reset(status, &chrome(&desk, FORM, notice), &f, Some(&p))
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct DoneQuery {
    done: String,
}

fn reset_page(desk: &Desk, id: &str, q: &DoneQuery) -> Result<Response> {
    let v = desk.vendor()?;
    let ledger = Ledger::open(&v.path(LEDGER_FILE))?;
    let Some(rec) = ledger::find_clock_reset(&ledger.conn, id)? else {
        return Ok(pages::problem(
            StatusCode::NOT_FOUND,
            "No such clock reset.",
            "The ledger has no clock reset with this id: the license pages list the ones signed for their cluster.",
        ));
    };
    let now = crate::fsutil::now();
    let list = crate::revocations::current(&v, &ledger)?;
    let licenses: Vec<_> = ledger::licenses_on_cluster(&ledger.conn, &rec.cluster_id)?
        .into_iter()
        .map(|(l, bound)| {
            let state = LedgerState::of(&l, list.as_ref(), now);
            (l, bound, state)
        })
        .collect();
    let notice = (q.done == "signed").then(|| Notice {
        tone: Tone::Good,
        title: "Signed.".into(),
        text: "The clock reset was signed, recorded in the ledger and written under \
               clock-resets/: download it below and send it to the customer."
            .into(),
    });
    let back = format!("/desk/clock-reset/{}", rec.id);
    let view = ResetDone {
        rec: &rec,
        file_name: &download_name(&rec.cluster_id),
        licenses: &licenses,
        now,
    };
    Ok(pages::clock_reset_done(&chrome(desk, &back, notice), &view))
}

/// `GET /desk/clock-reset/{id}`: a signed reset and what to do with it.
pub(super) async fn show(
    State(desk): State<Desk>,
    Path(id): Path<String>,
    q: Result<Query<DoneQuery>, QueryRejection>,
) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    reset_page(&desk, &id, &q).unwrap_or_else(|e| failed(&e))
}

/// The name the customer gets the file by (the one the CLI writes).
fn download_name(cluster: &str) -> String {
    clock_reset::default_path(cluster).display().to_string()
}

fn download_file(desk: &Desk, id: &str) -> Result<Response> {
    let v = desk.vendor()?;
    let ledger = Ledger::open(&v.path(LEDGER_FILE))?;
    let Some(rec) = ledger::find_clock_reset(&ledger.conn, id)? else {
        return Ok(pages::problem(
            StatusCode::NOT_FOUND,
            "No such clock reset.",
            "The ledger has no clock reset with this id.",
        ));
    };
    let mut resp = (StatusCode::OK, rec.file.clone()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    let name = download_name(&rec.cluster_id);
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    kaching_kit::web::secure(&mut resp);
    Ok(resp)
}

/// `GET /desk/clock-reset/{id}/download`: the armored file, from the
/// ledger's copy.
pub(super) async fn download(State(desk): State<Desk>, Path(id): Path<String>) -> Response {
    download_file(&desk, &id).unwrap_or_else(|e| failed(&e))
}
