//! The license page's admin actions: install a license file (verified and
//! compared with the license in force before anything is written), and
//! download an activation request or the next usage report — what
//! `kaching-verifier activation-request` and `usage-report` write.
//!
//! The engine does the work on its own thread ([`Command::Inspect`]); an
//! installed file is written where the watcher looks, so it comes into
//! force through the same last-known-good rules as a file copied there by
//! hand.

use axum::extract::rejection::FormRejection;
use axum::extract::{Multipart, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use kaching_core::armor::armor;
use kaching_core::time::rfc3339;
use kaching_core::DocKind;
use kaching_kit::web::components::{banner, csrf_field, facts, section, table, Tone};
use kaching_kit::web::{html, page, see_other, Assets, UploadError};
use maud::{html as markup, Markup};
use serde::Deserialize;
use tokio::sync::oneshot;

use super::{bad_form, forged, problem, Ui};
use crate::actor::{Command, Job};
use crate::engine::preview::LicensePreview;
use crate::engine::Engine;

/// Runs `f` on the engine thread and waits for what it returns.
pub(super) async fn on_engine<T: Send + 'static>(
    ui: &Ui,
    f: impl FnOnce(&mut Engine, u64) -> T + Send + 'static,
) -> Result<T, Response> {
    let (tx, rx) = oneshot::channel();
    let job = Job(Box::new(move |engine, now| {
        let _ = tx.send(f(engine, now));
    }));
    let down = || {
        problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable.",
            "the verifier is shutting down; retry shortly",
        )
    };
    ui.api
        .handle
        .tx
        .send(Command::Inspect(job))
        .map_err(|_| down())?;
    rx.await.map_err(|_| down())
}

/// A text file to save.
fn attachment(name: &str, text: String) -> Response {
    let mut resp = (StatusCode::OK, text).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    kaching_kit::web::secure(&mut resp);
    resp
}

/// The forms of the page's "Administration" section.
pub fn forms(csrf: &str) -> Markup {
    section(
        "admin",
        "Administration",
        markup! {
            div class="grid" {
                form method="post" action="/ui/license/preview" enctype="multipart/form-data" class="card" {
                    h3 { "Install a license file" }
                    p class="muted" { "It is verified and compared with the license in force first; nothing is installed until you confirm." }
                    (csrf_field(csrf))
                    div class="field" {
                        label for="license-file" { "License file (.lic, armored or binary)" }
                        input type="file" id="license-file" name="license" required;
                    }
                    button type="submit" { "Check this file" }
                }
                form method="post" action="/ui/activation-request" class="card" {
                    h3 { "Activation request" }
                    p class="muted" { "Signed with this cluster's key; send it to your vendor to get a license bound to this cluster." }
                    (csrf_field(csrf))
                    button type="submit" { "Download an activation request" }
                }
                form method="post" action="/ui/usage-report" class="card" {
                    h3 { "Usage report" }
                    p class="muted" { "Everything your vendor has not acknowledged yet, upgrade requests included; each download is the next report of the chain. Send it to your vendor." }
                    (csrf_field(csrf))
                    button type="submit" { "Download a usage report" }
                }
            }
        },
    )
}

/// The preview page: what the file is, what it changes, and the button
/// that installs it.
fn preview_page(csrf: &str, p: &LicensePreview) -> Markup {
    let l = &p.verified.license;
    let armored = armor(DocKind::License, &p.verified.bytes);
    let change = match &p.change {
        None => {
            markup! { p { "No license is in force, or it is this very file: nothing to compare." } }
        }
        Some(c) => {
            let mut rows: Vec<Vec<Markup>> = Vec::new();
            if let Some((a, b)) = &c.tier {
                rows.push(vec![
                    markup! { "tier" },
                    markup! { (a) },
                    markup! { (b) },
                    markup! {},
                ]);
            }
            for f in &c.features_gained {
                rows.push(vec![
                    markup! { "feature " code { (f) } },
                    markup! { "—" },
                    markup! { span class="yes" { "gained" } },
                    markup! {},
                ]);
            }
            for f in &c.features_lost {
                rows.push(vec![
                    markup! { "feature " code { (f) } },
                    markup! { "included" },
                    markup! { span class="no" { "lost" } },
                    markup! { span class="no" { "less" } },
                ]);
            }
            for x in &c.changed {
                let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".into());
                rows.push(vec![
                    markup! { code { (x.name) } },
                    markup! { (show(&x.from)) },
                    markup! { (show(&x.to)) },
                    if x.lower {
                        markup! { span class="no" { "less" } }
                    } else {
                        markup! {}
                    },
                ]);
            }
            markup! {
                @if c.downgrade {
                    (banner(Tone::Warn, "This takes something away.", markup! { (c.summary()) }))
                }
                @if rows.is_empty() {
                    p { "Same terms as the license in force." }
                } @else {
                    (table(&format!("License {} → {}", c.from_license, c.to_license), &["What", "In force", "This file", ""], &rows))
                }
            }
        }
    };
    let body = markup! {
        (section("preview", "Install a license file", markup! {
            @if let Some(m) = &p.misfit {
                (banner(Tone::Bad, "This license does not belong here.", markup! { (m) }))
            } @else if let Some(u) = &p.unusable {
                (banner(Tone::Bad, "The signature verifies, but this license cannot be used now.", markup! { (u) }))
            } @else {
                (banner(Tone::Good, "The signature verifies.", markup! { "Signed by a key this verifier trusts." }))
            }
            (facts(&[
                ("License", markup! { code { (l.id.to_string()) } }),
                ("Customer", markup! { (l.customer) }),
                ("Tier", markup! { (l.tier) }),
                ("Valid", markup! { (rfc3339(l.not_before)) " to " (rfc3339(l.expires_at)) }),
                ("Nodes", markup! { (l.limits.max_nodes) }),
                ("Features", markup! { (l.features.iter().cloned().collect::<Vec<_>>().join(", ")) }),
            ]))
            h3 { "What changes" }
            (change)
            @if p.held {
                p { strong { "hold_downgrades is on: " } "after installing, the license in force stays until someone runs "
                    code { "kaching-verifier accept-downgrade" } "." }
            }
            @if p.misfit.is_none() && !p.kept_out {
                form method="post" action="/ui/license/install" {
                    (csrf_field(csrf))
                    input type="hidden" name="license" value=(armored);
                    button type="submit" { "Install this license" }
                    " " a href="/ui/" { "Cancel" }
                }
            } @else {
                p { a href="/ui/" { "Back to the license page" } }
            }
        }))
    };
    let assets = Assets {
        prefix: super::page::PREFIX,
        live: None,
    };
    page("License", "Install a license file", assets, &[], body)
}

/// `POST /ui/license/preview`: the uploaded file, verified and compared.
pub(super) async fn preview(State(ui): State<Ui>, mut form: Multipart) -> Response {
    let (csrf, bytes) = match kaching_kit::web::read_upload(&mut form, "license").await {
        Ok(u) => (u.csrf, u.file),
        Err(UploadError::CutOff) => {
            return problem(StatusCode::BAD_REQUEST, "The upload was cut off.", "choose the file again and retry (licenses are a few KiB; the limit is max_body_bytes)");
        }
        Err(UploadError::Unreadable(e)) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "The upload could not be read.",
                &format!("{e}: choose the file again and retry (the limit is max_body_bytes)"),
            );
        }
    };
    if !csrf.is_some_and(|c| ui.csrf.check(&c)) {
        return forged();
    }
    let Some(bytes) = bytes.filter(|b| !b.is_empty()) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "No file.",
            "choose the license file your vendor sent, then press Check this file",
        );
    };
    match on_engine(&ui, move |e, now| e.preview_license(&bytes, now)).await {
        Err(resp) => resp,
        Ok(Err(why)) => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "This file is not a license this verifier accepts.",
            &format!("{why}. Nothing was installed; the license in force stays."),
        ),
        Ok(Ok(p)) => html(StatusCode::OK, preview_page(ui.csrf.token(), &p)),
    }
}

#[derive(Deserialize)]
pub(super) struct InstallForm {
    csrf: String,
    license: String,
}

/// `POST /ui/license/install`: verified again, then written where the
/// watcher looks.
pub(super) async fn install(
    State(ui): State<Ui>,
    form: Result<Form<InstallForm>, FormRejection>,
) -> Response {
    let f = match form {
        Ok(Form(f)) => f,
        Err(e) => return bad_form(e),
    };
    if !ui.csrf.check(&f.csrf) {
        return forged();
    }
    let checked = on_engine(&ui, move |e, now| {
        let p = e.preview_license(f.license.as_bytes(), now)?;
        if let Some(m) = p.misfit {
            return Err(m);
        }
        if p.kept_out {
            return Err(p
                .unusable
                .unwrap_or_else(|| "this license cannot be used now".into()));
        }
        let target = e.license_target(&p.verified);
        kaching_kit::fs::write_atomic(&target, f.license.as_bytes(), false).map_err(|err| {
            let why = format!(
                "cannot write {}: {}; give the verifier write access to that folder \
                 (systemd: ReadWritePaths=, docs/install.md) or copy the file there yourself",
                target.display(),
                err
            );
            tracing::warn!(license = %p.verified.license.id, reason = %why, "license install from the license page failed");
            why
        })?;
        tracing::info!(license = %p.verified.license.id, path = %target.display(), "license installed from the license page");
        Ok(p.verified.license.id.to_string())
    })
    .await;
    match checked {
        Err(resp) => resp,
        Ok(Err(why)) => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Not installed.",
            &format!("{why}. The license in force stays."),
        ),
        Ok(Ok(id)) => see_other(&format!("/ui/?installed={id}")),
    }
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    csrf: String,
}

/// `POST /ui/activation-request`: the signed request, as a download.
pub(super) async fn activation_request(
    State(ui): State<Ui>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    match form {
        Ok(Form(f)) if ui.csrf.check(&f.csrf) => {}
        Ok(_) => return forged(),
        Err(e) => return bad_form(e),
    }
    match on_engine(&ui, |e, now| {
        (
            e.identity.cluster_id.clone(),
            crate::report::activation_request(e, now),
        )
    })
    .await
    {
        Err(resp) => resp,
        Ok((cluster, text)) => attachment(&format!("activation-request-{cluster}.asc"), text),
    }
}

/// `POST /ui/usage-report`: the next report of the chain, as a download.
pub(super) async fn usage_report(
    State(ui): State<Ui>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    match form {
        Ok(Form(f)) if ui.csrf.check(&f.csrf) => {}
        Ok(_) => return forged(),
        Err(e) => return bad_form(e),
    }
    let made = on_engine(&ui, |e, now| {
        let mut text = String::new();
        let r = crate::report::usage_report(e, now, |t| {
            text = t.to_string();
            Ok(())
        });
        r.map(|r| (r.chain.as_ref().map_or(0, |c| c.seq), text))
            .map_err(|err| format!("{err:#}"))
    })
    .await;
    match made {
        Err(resp) => resp,
        Ok(Err(why)) => problem(StatusCode::UNPROCESSABLE_ENTITY, "No usage report.", &why),
        Ok(Ok((seq, text))) => attachment(&format!("usage-report-{seq}.asc"), text),
    }
}
