//! kaching-testkit: what every KACHING test suite needs to drive a daemon.
//!
//! The verifier and the relay both expose `run(listener, config, shutdown)`
//! and their binaries both print `listening on ADDR`, so one harness serves
//! either: [`Served`] runs a daemon's `run` in this process on 127.0.0.1
//! port 0, [`Spawned`] runs the real binary, [`Json`] talks to either
//! (as `Value`s, or with the `*_as` helpers as the shared wire types that
//! [`decode`] reads, panicking with the body when it does not fit),
//! [`Events`] reads `/v1/events`, [`Browser`] drives a headless Chromium, [`wait_until`] is the one bounded poll,
//! [`routes_in_source`] with [`documented_operations`] hold an OpenAPI
//! document to the router it describes, and [`pip_venv`] brings a tool
//! from PyPI for interop and contract checks.
//!
//! Waits are generous bounds ([`WAIT`]); nothing asserts on elapsed time.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Test harness: a panic (with the state it saw) is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod browser;
mod events;
mod json;
mod openapi;
mod served;
mod spawned;
mod venv;
mod wait;

pub use browser::{Browser, HostileSite, Request, BROWSER_SKIP, CHROMIUM_ARGS};
pub use events::Events;
pub use json::{decode, decode_value, Json};
pub use openapi::{
    assert_document_matches_router, assert_refs_resolve, documented_operations, routes_in_source,
};
pub use served::Served;
pub use spawned::Spawned;
pub use venv::{pip_venv, skip, target_dir, venv_bin};
pub use wait::{wait_for_value, wait_until, wait_within, WAIT};

/// Seconds since the Unix epoch, by the system clock.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
