//! The JSON that crosses a process boundary, as types: what the verifier's
//! local API, the relay's HTTP API and their errors send, and what every
//! client (the verifier's relay client, `licensegen publish`,
//! `kaching-verifier status`, WHOOSH, the e2e suite) reads back.
//!
//! Servers build these and serialize them; clients deserialize them. Field
//! names and shapes are the API contract (docs/verifier.md "API",
//! docs/connected.md, docs/whoosh.md): a change here is a change for every
//! reader. Signed documents (licenses, heartbeats, relay time) are CBOR and
//! live in their own modules; only the JSON framing around them is here.
//!
//! - [`error`]: the one error body `{"error": {"code", "message"}}`.
//! - [`verifier`]: the verifier's API answers and events.
//! - [`relay`]: the relay's request bodies and answers.
//! - [`mailbox`]: the relay's usage-report and receipt mailbox.

pub mod error;
pub mod mailbox;
pub mod relay;
pub mod verifier;

pub use crate::status::{LicenseStatus, QuotaJson};
pub use error::{ErrorBody, ErrorDetail};
