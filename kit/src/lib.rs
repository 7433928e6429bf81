//! kaching-kit: the I/O pieces that `licensegen`, `kaching-verifier` and
//! `kaching-relay` share. Decisions live in `kaching-core`; this crate only
//! touches the world: sockets, files, the process.
//!
//! - [`serve`]: an HTTP/1 server loop with a connection cap, header-read and
//!   idle timeouts, eviction of idle connections under pressure, half-close
//!   support and a bounded graceful shutdown;
//! - [`secret`]: one rule for reading private keys and tokens from files;
//! - [`stdout`]: output that treats a closed pipe as a normal end;
//! - [`rlimit`]: raising the open-file limit and sizing the connection cap;
//! - [`fs`]: atomic file writes (private files 0600 from the first byte);
//! - [`clock`]: the wall clock, read in one place;
//! - [`shutdown`]: SIGTERM/Ctrl-C, a stop flag every task sees, and waiting
//!   for them all;
//! - [`config`]: defaults, then a TOML file, then `KACHING_*` variables, into
//!   any serde type, with errors that name the file or the variable;
//! - [`exit`]: exit codes and the error chain printed once;
//! - [`http`]: JSON answers, and the one place the error body is written;
//! - [`log`]: one log variable (`KACHING_LOG`) for every binary;
//! - [`manual`]: shell completions and man pages from a clap definition;
//! - [`openapi`]: the bearer scheme and `GET /openapi.json` both daemons serve;
//! - [`web`]: the shared look (layout, components, stylesheet, live script)
//!   and safety rules (CSP, session cookie, cross-site checks) of web pages.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod clock;
pub mod config;
pub mod exit;
pub mod fs;
pub mod http;
pub mod log;
pub mod manual;
pub mod openapi;
pub mod rlimit;
pub mod secret;
pub mod serve;
pub mod shutdown;
pub mod stdout;
pub mod web;
