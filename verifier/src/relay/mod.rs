//! Connected mode: the conversation with a kaching-relay (docs/connected.md).
//!
//! Two tasks run beside the API while `[relay]` is configured: the heartbeat
//! worker (activate, heartbeat every interval, deactivate on clean shutdown)
//! for connected licenses, and the revocation long-poll for every license.
//! They never touch the state database: documents are built and signed, and
//! answers applied, by the engine thread through [`Request`]s, so the relay
//! path uses the same acceptance rules and last-known-good state as files.
//!
//! Modules: [`client`] (HTTP and verification of answers), [`worker`] (the
//! loops, backoff), `engine_side` (what the engine does with each request).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use tokio::sync::oneshot;

use kaching_core::heartbeat::RelayTime;
use kaching_core::time::{rfc3339, Timestamp};
use kaching_core::PublicKey;

use crate::state::Db;

pub mod client;
mod engine_side;
pub mod worker;

pub use worker::spawn;

/// The `[relay]` section: where the relay is and how to talk to it. See
/// docs/verifier.md "Connected mode" and docs/connected.md.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// Base URL of the relay (`https://relay.example.com`); unset: air-gapped only.
    pub url: Option<String>,
    /// The relay's public key (SPKI PEM file), pinned: every relay answer
    /// must be signed by it. Required when `url` is set.
    pub public_key: Option<PathBuf>,
    /// Heartbeat interval instead of the license's `heartbeat.interval`.
    pub heartbeat_interval: Option<Duration>,
    /// Connect and answer timeout of one request (long-polls add `long_poll`).
    pub timeout: Duration,
    /// How long one revocation long-poll waits on the relay.
    pub long_poll: Duration,
    /// Longest pause between retries after failures (exponential backoff with jitter).
    pub max_backoff: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            url: None,
            public_key: None,
            heartbeat_interval: None,
            timeout: Duration::from_secs(10),
            long_poll: Duration::from_secs(30),
            max_backoff: Duration::from_secs(300),
        }
    }
}

/// `meta` keys of the relay's persisted state.
pub(crate) const LAST_CONTACT: &str = "relay_last_contact";
pub(crate) const SEQ: &str = "relay_seq";
pub(crate) const UPGRADES_SENT: &str = "relay_upgrades_sent";

/// The relay's pinned public key, read from `relay.public_key`.
pub fn load_relay_key(cfg: &RelayConfig) -> anyhow::Result<Option<PublicKey>> {
    let Some(url) = &cfg.url else { return Ok(None) };
    let Some(path) = &cfg.public_key else {
        anyhow::bail!(
            "relay.url is {url} but relay.public_key is not set: pin the relay's key \
             (`kaching-relay relay-key > /etc/kaching/relay.pub` on the relay host, copied here) \
             and set relay.public_key (or KACHING_RELAY_PUBLIC_KEY) to that file"
        );
    };
    read_key(path).map(Some)
}

fn read_key(path: &Path) -> anyhow::Result<PublicKey> {
    let bytes = match crate::loader::read_regular(path, 64 * 1024, "the relay's public key file") {
        crate::loader::Loaded::Good(b) => b,
        crate::loader::Loaded::Missing => anyhow::bail!(
            "cannot read the relay's public key {}: copy the output of `kaching-relay relay-key` there",
            path.display()
        ),
        crate::loader::Loaded::Rejected(why) => anyhow::bail!("relay public key: {why}"),
    };
    let text = String::from_utf8(bytes).unwrap_or_default();
    PublicKey::from_pem(&text).with_context(|| {
        format!(
            "{} is not the relay's public key (one PUBLIC KEY PEM block, from `kaching-relay relay-key`)",
            path.display()
        )
    })
}

/// What the engine knows about the relay conversation.
#[derive(Debug, Clone, Default)]
pub struct RelayState {
    /// The relay URL, when configured.
    pub url: Option<String>,
    /// Last relay-signed answer (persisted): feeds `Snapshot::last_relay_contact`.
    pub last_contact: Option<Timestamp>,
    /// Last failure, with its time; cleared by the next success.
    pub last_error: Option<(Timestamp, String)>,
    /// License id the relay last activated for this cluster.
    pub activated: Option<String>,
    /// Last message the relay sent for this cluster's operators.
    pub message: Option<String>,
    /// Newest revocation version the relay announced.
    pub relay_revocation_version: Option<u64>,
}

impl RelayState {
    /// Loads the persisted part.
    pub fn load(cfg: &RelayConfig, db: &Db) -> anyhow::Result<RelayState> {
        Ok(RelayState {
            url: cfg.url.clone(),
            last_contact: db.time(LAST_CONTACT)?,
            ..RelayState::default()
        })
    }

    /// The `relay` object of `GET /v1/status`.
    pub fn status(&self) -> Option<RelayStatus> {
        let url = self.url.clone()?;
        Some(RelayStatus {
            url,
            last_contact: self.last_contact.map(rfc3339),
            last_error: self
                .last_error
                .as_ref()
                .map(|(t, e)| format!("{}: {e}", rfc3339(*t))),
            activated_license: self.activated.clone(),
            message: self.message.clone(),
            relay_revocation_version: self.relay_revocation_version,
        })
    }
}

/// `GET /v1/status` → `relay`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RelayStatus {
    /// The relay URL.
    pub url: String,
    /// Last relay-signed answer, RFC 3339 (`null`: never).
    pub last_contact: Option<String>,
    /// Last failure with its time, until the next success.
    pub last_error: Option<String>,
    /// The license the relay holds for this cluster (connected licenses only).
    pub activated_license: Option<String>,
    /// The relay's last message for this cluster's operators.
    pub message: Option<String>,
    /// Newest revocation version the relay announced.
    pub relay_revocation_version: Option<u64>,
}

/// What the relay worker needs to activate.
#[derive(Debug, Clone)]
pub struct Activation {
    /// License id.
    pub license_id: String,
    /// The license, armored.
    pub license: String,
    /// A fresh activation request, armored, signed by the cluster key.
    pub request: String,
    /// Heartbeat interval (config override, else the license's).
    pub interval: Duration,
}

/// A signed heartbeat ready to post.
#[derive(Debug, Clone)]
pub struct Beat {
    /// The COSE_Sign1 bytes.
    pub bytes: Vec<u8>,
    /// Its sequence number (the answer must echo it).
    pub seq: u64,
    /// Row id of the last upgrade request it carries.
    pub upgrades_up_to: Option<i64>,
}

/// Work the relay worker asks of the engine thread.
#[derive(Debug)]
pub enum Request {
    /// Documents to activate with; `None` when no connected license is in force.
    Activation(oneshot::Sender<Option<Activation>>),
    /// Build and sign the next heartbeat (`deactivate`: the last one).
    Beat {
        /// True for the deactivation heartbeat.
        deactivate: bool,
        /// The signed heartbeat; `None` without a connected license.
        reply: oneshot::Sender<anyhow::Result<Option<Beat>>>,
    },
    /// A verified relay answer: raise the mark, record the contact.
    Contact {
        /// The relay-signed statement.
        time: RelayTime,
        /// True when it answers an activation (its `seq` is the last the relay accepted).
        activation: Option<String>,
        /// Upgrade requests up to this row id reached the relay.
        upgrades_up_to: Option<i64>,
        /// True when it answers the deactivation.
        deactivated: bool,
    },
    /// A failed exchange, for status and logs.
    Failed(String),
    /// A revocation list from the relay: accept it like a file (Ok(true): newer, in force).
    Revocations(Vec<u8>, oneshot::Sender<Result<bool, String>>),
    /// The revocation version held.
    Held(oneshot::Sender<u64>),
}
