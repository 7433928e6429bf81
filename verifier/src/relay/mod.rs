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
//! loops, backoff). What the engine does with each request is
//! [`crate::engine::relay`]; the `[relay]` settings are
//! [`crate::config::RelayConfig`].

use std::path::Path;

use anyhow::Context;

use kaching_core::PublicKey;

pub use crate::config::RelayConfig;
pub use crate::engine::relay::{Activation, Beat, Request};

pub mod client;
pub mod worker;

pub use worker::spawn;

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
