//! End-to-end: licensegen, kaching-relay and kaching-verifier together, on
//! loopback with temporary folders (harness: `kaching_e2e`). One test
//! target; each test is named after what an operator relies on.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns: a panic is the failure report

mod airgap;
mod clock;
mod clusters;
mod console;
mod mailbox;
mod offline;
mod receipts;
mod revocations;
mod roots;
mod ui;
