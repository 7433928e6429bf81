//! licensegen's CLI suite, one test binary: every command, every
//! user-facing error with its exact message and exit code, and the
//! behaviour sales ops rely on. Runs the real binary with a test-only
//! scrypt work factor so it stays fast.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns: a panic is the failure report

#[path = "../common/mod.rs"]
mod common;

mod airgap;
mod ceremony;
mod clock_reset;
mod fixtures;
mod inspect_verify;
mod interop;
mod issue;
mod publish;
mod revocations;
mod setup;
mod trueup;
