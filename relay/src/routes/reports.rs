//! The usage-report mailbox (docs/relay.md "Usage reports and receipts"):
//! a connected cluster posts its usage report (signed by the key it
//! activated with) and gets back the receipts waiting for it; the vendor's
//! `licensegen usage pull` lists the reports and posts a receipt for each.
//! The relay checks both signatures and forwards; it signs nothing here and
//! holds no key that could sign a receipt.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use kaching_kit::http::json as answer;
use serde::Deserialize;

use kaching_core::armor::armor;
use kaching_core::cluster::{report_hash, verify_usage_report};
use kaching_core::receipt::verify_receipt;
use kaching_core::wire::mailbox::{ReceiptFiled, ReportFiled, ReportRows, MAX_REPORTS_PER_PAGE};
use kaching_core::wire::ErrorBody;
use kaching_core::{DocKind, MAX_DOCUMENT_SIZE};

use crate::db::now;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, RawBody};
use crate::responses::{Busy, Internal, RateLimited, SignedDocument, Token, TooLarge};
use crate::state::AppState;
use crate::storage::mailbox::{NewReceipt, NewReport};
use crate::tokens::Scope;

/// A mailbox document is one signed document: anything larger is refused
/// before it is parsed, whatever `max_body_bytes` allows.
fn check_size(body: &[u8]) -> ApiResult<()> {
    if body.len() > MAX_DOCUMENT_SIZE {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the body is {} bytes; one signed document is at most {MAX_DOCUMENT_SIZE}",
                body.len()
            ),
        ));
    }
    Ok(())
}

/// `POST /v1/usage-reports`: a cluster's usage report.
#[utoipa::path(
    post,
    path = "/v1/usage-reports",
    tag = "clusters",
    request_body(description = "A chained usage report (`kaching-verifier usage-report`), binary or armored, signed by the cluster key the relay bound at activation; read whatever the Content-Type", content(
        (SignedDocument = "application/vnd.kaching.usage+cbor"),
        (SignedDocument = "application/octet-stream"),
    )),
    responses(
        (status = 201, description = "Stored; the receipts waiting for this cluster", body = ReportFiled),
        (status = 200, description = "Held already (same cluster, sequence number and bytes); the receipts waiting for this cluster", body = ReportFiled),
        (status = 400, description = "`bad_request`: an unchained report (from a verifier older than receipts) or numbers beyond a signed 64-bit integer", body = ErrorBody),
        (status = 403, description = "`not_activated`, `wrong_key` or `wrong_license`: the report is not from the cluster bound to its license with that key", body = ErrorBody),
        (status = 409, description = "`report_fork`: the relay holds another report with this sequence number from this cluster", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: larger than one signed document (64 KiB) or `max_body_bytes`", body = ErrorBody),
        (status = 422, description = "`invalid_document`: not a usage report, or its signature does not verify", body = ErrorBody),
        RateLimited,
        Internal,
        Busy,
    ),
    security(())
)]
pub async fn post_report(
    State(st): State<Arc<AppState>>,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    check_size(&body)?;
    let v =
        verify_usage_report(&body).map_err(|e| ApiError::invalid_document("usage report", e))?;
    let Some(chain) = &v.doc.chain else {
        return Err(ApiError::bad_request(
            "an unchained usage report (from a verifier older than receipts) cannot be answered with a receipt: upgrade kaching-verifier",
        ));
    };
    if chain.seq > i64::MAX as u64 || chain.acked > i64::MAX as u64 {
        return Err(ApiError::bad_request(
            "seq and acked must fit in a signed 64-bit integer",
        ));
    }
    let (cluster_id, seq) = (v.doc.cluster_id.clone(), chain.seq);
    let stored = st
        .storage
        .file_report(NewReport {
            cluster_id: cluster_id.clone(),
            key: *v.signer.as_bytes(),
            license_id: v.doc.license_id.to_string(),
            seq,
            hash: report_hash(&v.bytes),
            acked: chain.acked,
            bytes: v.bytes,
            now: now(),
        })
        .await?;
    if stored.stored {
        tracing::info!(cluster = %cluster_id, seq, "usage report stored");
    }
    Ok(answer(
        if stored.stored {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        &ReportFiled {
            cluster_id,
            seq,
            stored: stored.stored,
            receipts: stored
                .receipts
                .iter()
                .map(|b| armor(DocKind::Receipt, b))
                .collect(),
        },
    ))
}

/// Query of `GET /v1/usage-reports`.
#[derive(Deserialize)]
pub struct ReportQuery {
    after: Option<u64>,
    limit: Option<u32>,
    #[serde(default)]
    unreceipted: bool,
}

/// `GET /v1/usage-reports[?after=ID][&limit=N][&unreceipted=true]`
/// (publish or admin), ascending by the relay's id.
#[utoipa::path(
    get,
    path = "/v1/usage-reports",
    tag = "vendor",
    params(
        ("after" = Option<u64>, Query, description = "Start after this id (the last `id` of the previous page)"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 100 (default 100; values outside are clamped)"),
        ("unreceipted" = Option<bool>, Query, description = "Only reports the vendor has not posted a receipt for"),
    ),
    responses(
        (status = 200, description = "One page of stored usage reports, ascending by id", body = ReportRows),
        (status = 400, description = "`bad_request`: a malformed query", body = ErrorBody),
        Token,
        RateLimited,
        Internal,
        Busy,
    ),
    security(("bearer" = []))
)]
pub async fn list_reports(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    query: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    caller.require(&[Scope::Publish])?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(format!("bad query: {e}")))?;
    let limit = q
        .limit
        .unwrap_or(MAX_REPORTS_PER_PAGE)
        .clamp(1, MAX_REPORTS_PER_PAGE);
    let reports = st
        .storage
        .reports(q.after.unwrap_or(0), limit, q.unreceipted)
        .await?;
    Ok(answer(StatusCode::OK, &ReportRows { reports }))
}

/// `POST /v1/receipts` (publish or admin): the vendor's receipt for a
/// report the relay holds, for its cluster to pick up.
#[utoipa::path(
    post,
    path = "/v1/receipts",
    tag = "vendor",
    request_body(description = "A receipt (`licensegen usage import`), binary or armored, signed by a vendor issuer key; read whatever the Content-Type", content(
        (SignedDocument = "application/vnd.kaching.receipt+cbor"),
        (SignedDocument = "application/octet-stream"),
    )),
    responses(
        (status = 201, description = "Stored for the cluster to pick up", body = ReceiptFiled),
        (status = 200, description = "A receipt for that report was held already", body = ReceiptFiled),
        (status = 404, description = "`not_found`: the relay holds no such report", body = ErrorBody),
        (status = 409, description = "`other_report`: the relay's report with that sequence number has another hash", body = ErrorBody),
        (status = 422, description = "`invalid_document`: not a receipt, or not signed by a key of the vendor's issuer role", body = ErrorBody),
        TooLarge,
        Token,
        RateLimited,
        Internal,
        Busy,
    ),
    security(("bearer" = []))
)]
pub async fn post_receipt(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    caller.require(&[Scope::Publish])?;
    check_size(&body)?;
    let v = verify_receipt(&body, &st.license_keys())
        .map_err(|e| ApiError::invalid_document("receipt", e))?;
    let r = &v.receipt;
    if r.report_seq > i64::MAX as u64 {
        return Err(ApiError::bad_request(
            "report_seq must fit in a signed 64-bit integer",
        ));
    }
    let stored = st
        .storage
        .file_receipt(NewReceipt {
            cluster_id: r.cluster_id.clone(),
            report_seq: r.report_seq,
            report_hash: r.report_hash,
            bytes: v.bytes.clone(),
            now: now(),
        })
        .await?;
    if stored {
        tracing::info!(cluster = %r.cluster_id, seq = r.report_seq, token = %caller.name, "receipt stored");
    }
    Ok(answer(
        if stored {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        &ReceiptFiled {
            cluster_id: r.cluster_id.clone(),
            report_seq: r.report_seq,
            stored,
        },
    ))
}
