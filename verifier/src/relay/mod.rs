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

pub use crate::config::RelayConfig;
pub use crate::engine::relay::{Activation, Beat, Request};

pub mod client;
pub mod worker;

pub use worker::spawn;

/// Refuses connected mode with no way to check the relay's answers.
pub fn check_relay_keys(cfg: &RelayConfig, have_signers: bool) -> anyhow::Result<()> {
    match cfg.urls.first() {
        Some(url) if !have_signers => anyhow::bail!(
            "the relay URL is {url} but there is no relay key to check its answers: pin the relay's key \
             (`kaching-relay relay-key > /etc/kaching/relay.pub` on the relay host, copied here) \
             and set relay.public_key (or KACHING_RELAY_PUBLIC_KEY) to that file, or have the vendor \
             name it in the root (`licensegen role add relay KEY`)"
        ),
        _ => Ok(()),
    }
}
