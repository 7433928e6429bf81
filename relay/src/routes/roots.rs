//! `GET /v1/roots?after=N` (the root chain) and `PUT /v1/roots` (publish).
//!
//! The relay only stores and forwards roots, like revocation lists: a root
//! is accepted only as the next version of the root in force, signed by a
//! threshold of that root's root keys and of its own (`verify_next_root`),
//! and it is served byte for byte as the key holders signed it.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use kaching_core::armor::{armor, dearmor};
use kaching_core::root::{verify_next_root, Role};
use kaching_core::wire::relay::{RootPublished, RootsAnswer};
use kaching_core::wire::ErrorBody;
use kaching_core::DocKind;

use crate::db::now;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, RawBody};
use crate::responses::{Busy, Internal, RateLimited, SignedDocument, Token, TooLarge};
use crate::state::AppState;
use crate::tokens::Scope;

/// Query of `GET /v1/roots`.
#[derive(Deserialize)]
pub struct Params {
    /// The version the client trusts: answer with the roots above it.
    after: Option<u64>,
}

/// `GET /v1/roots[?after=N]`: every root above version N, ascending,
/// armored; no token needed (roots are public, like revocation lists).
#[utoipa::path(
    get,
    path = "/v1/roots",
    tag = "distribution",
    params(("after" = Option<u64>, Query, description = "The root version the client trusts (default 0)")),
    responses(
        (status = 200, description = "The roots above `after`, ascending, armored (empty without a root)", body = RootsAnswer),
        (status = 400, description = "`bad_request`: `after` is not a version", body = ErrorBody),
        RateLimited,
        Busy,
    ),
    security(())
)]
pub async fn get(
    State(st): State<Arc<AppState>>,
    query: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(p) = query
        .map_err(|e| ApiError::bad_request(format!("bad query: {e}; use ?after=<version>")))?;
    let answer = match &st.roots {
        None => RootsAnswer {
            roots: Vec::new(),
            latest: 0,
        },
        Some(roots) => {
            let (newer, latest) = roots.after(p.after.unwrap_or(0));
            RootsAnswer {
                roots: newer.iter().map(|b| armor(DocKind::Root, b)).collect(),
                latest,
            }
        }
    };
    Ok(kaching_kit::http::json(StatusCode::OK, &answer))
}

/// `PUT /v1/roots` (publish scope): body is one root, binary or armored.
#[utoipa::path(
    put,
    path = "/v1/roots",
    tag = "distribution",
    request_body(description = "The next root, signed by a threshold of the current root's and its own root keys, binary or armored, read whatever the Content-Type", content(
        (SignedDocument = "application/vnd.kaching.root+cbor"),
        (SignedDocument = "application/octet-stream"),
        (String = "text/plain"),
    )),
    responses(
        (status = 201, description = "Published: the relay's newest root", body = RootPublished),
        (status = 200, description = "Already the relay's newest root", body = RootPublished),
        (status = 409, description = "`no_root`: this relay has no root of trust configured", body = ErrorBody),
        (status = 422, description = "`invalid_document`: not a root, or not the next version signed by the thresholds", body = ErrorBody),
        Token,
        TooLarge,
        RateLimited,
        Internal,
        Busy,
    ),
    security(("bearer" = []))
)]
pub async fn put(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    caller.require(&[Scope::Publish])?;
    let Some(roots) = &st.roots else {
        return Err(ApiError::conflict(
            "no_root",
            "this relay has no root of trust: set `root` in the relay config (KACHING_RELAY_ROOT) to the vendor's initial root file and restart it",
        ));
    };
    let bytes =
        dearmor(&body, Some(DocKind::Root)).map_err(|e| ApiError::invalid_document("root", e))?;
    // One publish at a time: the root in force cannot change between the
    // check and the commit.
    let _serial = roots.publish.lock().await;
    let current = roots.current();
    if bytes == current.bytes {
        return Ok(kaching_kit::http::json(
            StatusCode::OK,
            &RootPublished {
                version: current.root.version,
                accepted: false,
            },
        ));
    }
    let t = now();
    let verified = verify_next_root(&current.root, &bytes, t)
        .map_err(|e| ApiError::invalid_document("root", e))?;
    let version = verified.root.version;
    let dropped_lists = st
        .storage
        .publish_root(verified.clone(), caller.name.clone(), t)
        .await?;
    roots.push(verified);
    if !dropped_lists.is_empty() {
        // Serve the newest list at or below the floor that the new revoker
        // keys sign, or none until the vendor publishes one above the floor.
        let keys = roots.keys_for(Role::Revoker);
        let list = crate::load_current_list(st.storage.as_ref(), &keys)
            .await
            .map_err(ApiError::internal)?;
        st.revocations.send_replace(list);
        tracing::warn!(
            version,
            dropped = ?dropped_lists,
            "root revocation_floor: dropped the revocation lists above it"
        );
    }
    tracing::info!(version, token = %caller.name, "root published");
    Ok(kaching_kit::http::json(
        StatusCode::CREATED,
        &RootPublished {
            version,
            accepted: true,
        },
    ))
}
