//! What the engine hands out: the verdict with its pre-rendered JSON (read
//! by the API without touching the engine thread) and the events of
//! `GET /v1/events`.

use std::sync::Arc;

use axum::body::Bytes;
use serde::Serialize;

use kaching_core::armor::armor;
use kaching_core::wire::verifier::{LicenseAnswer, QuotasAnswer, ReloadEvent, VerifierStatus};
use kaching_core::wire::LicenseStatus;
use kaching_core::DocKind;
use kaching_core::{
    evaluate, LicenseInput, Settings, Snapshot, TierCatalog, TrustedKeys, Verdict, VerifiedLicense,
};

/// What the API serves: the verdict plus pre-rendered JSON, swapped whole.
#[derive(Debug)]
pub struct Published {
    /// The verdict in force.
    pub verdict: Verdict,
    /// `GET /v1/status` body.
    pub status: VerifierStatus,
    /// `status` as JSON bytes (served without re-serializing).
    pub status_json: Bytes,
    /// `GET /v1/quotas` body as JSON bytes.
    pub quotas_json: Bytes,
    /// `GET /v1/license` body as JSON bytes.
    pub license_json: Bytes,
    /// Keys the relay's answers must be signed by (`None`: no relay key).
    pub relay_signers: Option<Arc<TrustedKeys>>,
    /// What the license page shows under "trust and freshness" beyond the
    /// status body.
    pub freshness: Freshness,
}

/// The revocation list and relay facts the license page shows (`/ui/`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Freshness {
    /// Version of the revocation list in force.
    pub revocation_version: Option<u64>,
    /// When that list expires (past it: a freeze).
    pub revocation_expires: Option<kaching_core::time::Timestamp>,
    /// The last relay contact.
    pub last_relay_contact: Option<kaching_core::time::Timestamp>,
    /// The license's offline grace, for connected licenses (seconds).
    pub offline_grace: Option<u64>,
}

impl Published {
    /// Renders `status` and the quotas view once, for every reader.
    pub(crate) fn new(
        verdict: Verdict,
        status: VerifierStatus,
        license_json: Bytes,
        relay_signers: Option<Arc<TrustedKeys>>,
    ) -> Published {
        let status_json = Bytes::from(serde_json::to_vec(&status).unwrap_or_default());
        let quotas = QuotasAnswer {
            license_id: status.status.license_id.clone(),
            state: verdict.state,
            quotas: verdict.quotas.clone(),
        };
        let quotas_json = Bytes::from(serde_json::to_vec(&quotas).unwrap_or_default());
        Published {
            verdict,
            status,
            status_json,
            quotas_json,
            license_json,
            relay_signers,
            freshness: Freshness::default(),
        }
    }

    /// An empty publication, replaced by the first real verdict in
    /// [`super::Engine::open`].
    pub(crate) fn placeholder() -> Published {
        let verdict = evaluate(
            LicenseInput::Missing,
            None,
            &Snapshot::default(),
            &TierCatalog::builtin(),
            &Settings::default(),
            0,
        );
        let status = VerifierStatus {
            status: LicenseStatus::from(&verdict),
            cluster_id: String::new(),
            evaluated_at: String::new(),
            rejections: Vec::new(),
            trusted_time: String::new(),
            trust: String::new(),
            root_version: None,
            relay: None,
            license_change: None,
            pending_downgrade: None,
        };
        Published {
            verdict,
            status,
            status_json: Bytes::new(),
            quotas_json: Bytes::new(),
            license_json: Bytes::new(),
            relay_signers: None,
            freshness: Freshness::default(),
        }
    }
}

/// `GET /v1/license` for the license and root in force.
pub(crate) fn license_json(
    license: Option<&VerifiedLicense>,
    trust: &str,
    root: Option<&[u8]>,
) -> Bytes {
    let answer = LicenseAnswer {
        license: license.map(|l| armor(DocKind::License, &l.bytes)),
        trust: trust.into(),
        root: root.map(|r| armor(DocKind::Root, r)),
    };
    Bytes::from(serde_json::to_vec(&answer).unwrap_or_default())
}

/// A server-sent event: its name and JSON data.
#[derive(Debug, Clone)]
pub struct Event {
    /// `status`, `reload`, `rejected`, `upgrade_request`.
    pub kind: &'static str,
    /// JSON text.
    pub data: String,
}

impl Event {
    /// An event named `kind` carrying `data` as JSON.
    pub(crate) fn new(kind: &'static str, data: &impl Serialize) -> Event {
        Event {
            kind,
            data: serde_json::to_string(data).unwrap_or_default(),
        }
    }

    /// `reload`: what is in force changed.
    pub(crate) fn reload(
        license: Option<&VerifiedLicense>,
        revocation_version: Option<u64>,
        source: Option<&str>,
    ) -> Event {
        Event::new(
            "reload",
            &ReloadEvent {
                license_id: license.map(|l| l.license.id.to_string()),
                revocation_version,
                source: source.map(str::to_string),
            },
        )
    }
}

/// What changes make a `status` event: not the reason text (which counts
/// down every second in grace), but anything a client acts on.
pub(crate) fn event_key(b: &VerifierStatus) -> impl PartialEq + '_ {
    let s = &b.status;
    (
        (
            &s.state,
            &s.license_id,
            &s.tier,
            &s.features,
            s.node_ceiling,
            s.nodes_in_use,
        ),
        (
            &s.quotas,
            &s.expires_at,
            s.upgrade_suggestions.len(),
            &b.rejections,
        ),
    )
}
