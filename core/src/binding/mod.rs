//! Whether the relay may bind a license to a cluster, and when a cluster's
//! hold on a license lapses.
//!
//! [`admit`] judges the license itself (its binding, expiry and revocation);
//! [`take_over`] judges the other clusters that hold it. Each [`Refusal`]
//! carries the relay's error code and message ([`Refusal::code`],
//! [`Refusal::message`]), so every route answers in the same words.
//!
//! The relay binds a license to one live cluster. A holder that goes silent
//! loses its hold after the license's offline grace, so a replacement
//! cluster can take over. Silence is counted only while the relay was
//! serving: an outage of the relay is not the holder's silence. The relay
//! does not record how long it was down; instead every hold gets a full
//! grace window from the moment the relay (re)started serving, like a
//! failover heartbeat TTL. So a relay outage can delay a takeover by at
//! most one grace period per restart, and never hands a license to whoever
//! reconnects first.

mod admission;
mod hold;

pub use admission::{admit, hold_grace, take_over, Refusal};
pub use hold::Hold;
