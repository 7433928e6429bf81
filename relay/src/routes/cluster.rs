//! Cluster endpoints: activate, heartbeat, deactivate. Bodies are signed by
//! the cluster key; answers are relay-signed `RelayTime` statements.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use kaching_core::clock_reset::{verify_clock_reset, VerifiedClockReset};
use kaching_core::cluster::verify_activation_request;
use kaching_core::heartbeat::{verify_heartbeat, Heartbeat, RelayTime};
use kaching_core::wire::relay::{ActivateBody, ACCEPTS_HEADER};
use kaching_core::wire::ErrorBody;
use kaching_core::{verify_license, DocKind, LicenseId};

use crate::db::now;
use crate::error::{ApiError, ApiResult};
use crate::extract::{json, RawBody};
use crate::responses::{BeatRefused, Busy, Internal, RateLimited, SignedDocument, TooLarge};
use crate::state::AppState;
use crate::store::Activation;

/// Refuses signed times too far from the relay clock.
fn check_window(st: &AppState, signed: u64, now: u64, what: &str) -> ApiResult<()> {
    let window = st.config.clock_window.as_secs();
    if signed.abs_diff(now) > window {
        return Err(ApiError::bad_request(format!(
            "{what} was signed at {signed}, {} s from the relay's clock ({now}); the window is {window} s: fix the cluster's clock (NTP) and sign a fresh one",
            signed.abs_diff(now)
        ))
        .with_code("clock_skew"));
    }
    Ok(())
}

impl ApiError {
    fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }
}

/// What this relay reads beyond the first heartbeat format, as announced
/// in `Kaching-Accepts`: the chain head (`ACCEPTS_CHAIN_HEAD`) and the
/// clock reset in it (`ACCEPTS_CLOCK_RESET`), comma-separated.
pub const ACCEPTED: &str = "chain-head, clock-reset";

/// A relay-signed answer, announcing the heartbeat claims this relay reads
/// (`Kaching-Accepts`: a verifier sends a claim only to a relay that reads it).
fn relay_time(st: &AppState, rt: &RelayTime) -> Response {
    (
        [
            (header::CONTENT_TYPE, DocKind::RelayTime.content_type()),
            (header::HeaderName::from_static(ACCEPTS_HEADER), ACCEPTED),
        ],
        rt.sign(&st.relay_key),
    )
        .into_response()
}

/// The clock reset a heartbeat's chain head carries, verified against the
/// keys that may sign one (the issuer keys, as for licenses; never a
/// revoker's or the relay's). One that does not verify is ignored with a
/// warning: the heartbeat still counts, and a mark going back is flagged
/// as it would be without it. Whether a verified one accounts for the mark
/// going back is core's call (`check_head_with_reset`), made in storage
/// against the head held.
fn carried_reset(st: &AppState, hb: &Heartbeat) -> Option<VerifiedClockReset> {
    let bytes = hb.chain.as_ref()?.reset.as_deref()?;
    match verify_clock_reset(bytes, &st.license_keys()) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(cluster = %hb.cluster_id, license = %hb.license_id, error = %e, "the clock reset carried by a heartbeat does not verify against the issuer keys: ignored (the heartbeat counts; a trusted-time mark going back is flagged)");
            None
        }
    }
}

/// What the cluster's operators should know about the license now.
fn notice(st: &AppState, id: &LicenseId) -> Option<String> {
    let cur = st.revocations.borrow();
    let list = &cur.as_ref()?.verified.list;
    let e = list.entry(id)?;
    Some(format!(
        "license {id} is {} in revocation list version {} ({}): fetch GET /v1/revocations",
        e.status.as_str(),
        list.version,
        e.reason
    ))
}

/// `POST /v1/activate`: binds a license to the requesting cluster.
#[utoipa::path(
    post,
    path = "/v1/activate",
    tag = "clusters",
    request_body(content = ActivateBody, description = "The license and the cluster's signed activation request, both armored (read as JSON whatever the Content-Type)"),
    responses(
        (status = 200, description = "Bound: a relay-signed time statement (COSE_Sign1) naming the cluster, its last sequence number and a notice", body = SignedDocument, content_type = "application/vnd.kaching.relay-time+cbor"),
        (status = 400, description = "`bad_request` (the body is not the expected JSON) or `clock_skew` (the request was signed too far from the relay's clock)", body = ErrorBody),
        (status = 403, description = "`bound_to_another_cluster`, `license_expired` or `license_revoked`: the license may not be bound here", body = ErrorBody),
        (status = 409, description = "`license_in_use`: another live cluster holds this license", body = ErrorBody),
        (status = 422, description = "`invalid_document`: the license or the activation request does not verify", body = ErrorBody),
        TooLarge,
        RateLimited,
        Internal,
        Busy,
    ),
    security(())
)]
pub async fn activate(
    State(st): State<Arc<AppState>>,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    let t = now();
    let req: ActivateBody = json(&body)?;
    let lic = verify_license(req.license.as_bytes(), &st.license_keys())
        .map_err(|e| ApiError::invalid_document("license", e))?;
    let ar = verify_activation_request(req.activation_request.as_bytes())
        .map_err(|e| ApiError::invalid_document("activation request", e))?;
    check_window(&st, ar.doc.created, t, "activation request")?;
    let l = &lic.license;
    // The decision is core's; the relay only maps it to a status code.
    let list = st.revocations.borrow().clone();
    kaching_core::binding::admit(
        l,
        &ar.doc.cluster_id,
        list.as_ref().map(|c| &c.verified.list),
        t,
    )
    .map_err(|r| ApiError::forbidden(r.code(), r.message(l.id)))?;
    let offline_grace =
        kaching_core::binding::hold_grace(l, st.config.default_offline_grace.as_secs());
    let crate::storage::Activated {
        last_seq,
        displaced,
    } = st
        .storage
        .activate(Activation {
            license_id: l.id.to_string(),
            license_bytes: lic.bytes.clone(),
            customer: l.customer.clone(),
            tier: l.tier.clone(),
            expires_at: l.expires_at.min(i64::MAX as u64),
            cluster_id: ar.doc.cluster_id.clone(),
            cluster_key: ar.doc.cluster_key,
            hostname: ar.doc.hostname.clone(),
            nodes: ar.doc.nodes,
            offline_grace,
            now: t,
        })
        .await?;
    tracing::info!(license = %l.id, cluster = %ar.doc.cluster_id, ?displaced, "activated");
    let message = if displaced.is_empty() {
        notice(&st, &l.id)
    } else {
        Some(format!(
            "activated; stale cluster(s) {} no longer hold this license",
            displaced.join(", ")
        ))
    };
    Ok(relay_time(
        &st,
        &RelayTime {
            time: t,
            revocation_version: st.revocation_version(),
            cluster_id: Some(ar.doc.cluster_id),
            seq: Some(last_seq),
            message,
        },
    ))
}

/// `POST /v1/heartbeat`.
#[utoipa::path(
    post,
    path = "/v1/heartbeat",
    tag = "clusters",
    request_body(description = "A heartbeat signed by the cluster key (COSE_Sign1), read whatever the Content-Type", content(
        (SignedDocument = "application/vnd.kaching.heartbeat+cbor"),
        (SignedDocument = "application/octet-stream"),
    )),
    responses(
        (status = 200, description = "Recorded: a relay-signed time statement (COSE_Sign1)", body = SignedDocument, content_type = "application/vnd.kaching.relay-time+cbor"),
        BeatRefused,
        TooLarge,
        RateLimited,
        Internal,
        Busy,
    ),
    security(())
)]
pub async fn heartbeat(
    State(st): State<Arc<AppState>>,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    beat(st, &body, false).await
}

/// `POST /v1/deactivate`: the cluster's last heartbeat, releasing its license.
#[utoipa::path(
    post,
    path = "/v1/deactivate",
    tag = "clusters",
    request_body(description = "A heartbeat with `deactivate = true`, signed by the cluster key, read whatever the Content-Type", content(
        (SignedDocument = "application/vnd.kaching.heartbeat+cbor"),
        (SignedDocument = "application/octet-stream"),
    )),
    responses(
        (status = 200, description = "Released: a relay-signed time statement (COSE_Sign1)", body = SignedDocument, content_type = "application/vnd.kaching.relay-time+cbor"),
        BeatRefused,
        TooLarge,
        RateLimited,
        Internal,
        Busy,
    ),
    security(())
)]
pub async fn deactivate(
    State(st): State<Arc<AppState>>,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    beat(st, &body, true).await
}

async fn beat(st: Arc<AppState>, body: &[u8], deactivate: bool) -> ApiResult<Response> {
    let t = now();
    let v = verify_heartbeat(body).map_err(|e| ApiError::invalid_document("heartbeat", e))?;
    if v.doc.deactivate != deactivate {
        return Err(ApiError::bad_request(if deactivate {
            "POST /v1/deactivate takes a heartbeat with deactivate = true"
        } else {
            "a heartbeat with deactivate = true goes to POST /v1/deactivate"
        })
        .with_code("wrong_endpoint"));
    }
    check_window(&st, v.doc.time, t, "heartbeat")?;
    // The database stores integers as i64; larger values are refused here as bad input.
    let too_big = |n: u64| n > i64::MAX as u64;
    if too_big(v.doc.seq) || v.doc.upgrade_requests.iter().any(|r| too_big(r.time)) {
        return Err(ApiError::bad_request(
            "seq and upgrade request times must fit in a signed 64-bit integer",
        ));
    }
    let mut doc = v.doc;
    // A verifier never queues more than the APIs take; a request larger
    // than that is stored cut, and the heartbeat still counts.
    let clipped = doc
        .upgrade_requests
        .iter_mut()
        .map(|r| r.clip())
        .filter(|cut| *cut)
        .count();
    if clipped > 0 {
        tracing::warn!(cluster = %doc.cluster_id, clipped, "upgrade requests over the size limits, stored cut");
    }
    let (cluster_id, seq, license_id) = (doc.cluster_id.clone(), doc.seq, doc.license_id);
    let reset = carried_reset(&st, &doc);
    st.storage
        .record_heartbeat(doc, *v.signer.as_bytes(), t, reset)
        .await?;
    if deactivate {
        tracing::info!(license = %license_id, cluster = %cluster_id, "deactivated");
    }
    Ok(relay_time(
        &st,
        &RelayTime {
            time: t,
            revocation_version: st.revocation_version(),
            cluster_id: Some(cluster_id),
            seq: Some(seq),
            message: notice(&st, &license_id),
        },
    ))
}

#[cfg(test)]
mod tests {
    use kaching_core::wire::relay::{accepts, ACCEPTS_CHAIN_HEAD, ACCEPTS_CLOCK_RESET};

    #[test]
    fn the_announcement_names_the_chain_head_and_the_clock_reset() {
        assert!(accepts([super::ACCEPTED], ACCEPTS_CHAIN_HEAD));
        assert!(accepts([super::ACCEPTED], ACCEPTS_CLOCK_RESET));
    }
}
