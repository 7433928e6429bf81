//! `kaching-verifier clock-reset`: taking the vendor's clock reset
//! (docs/format.md §7.9, docs/verifier.md "Clock reset").
//!
//! The trusted-time mark only grows, so a clock that was once wrong ahead
//! leaves the cluster `clock_tampered` until real time catches up. A clock
//! reset, signed by an issuer key, lets this cluster lower its mark once, to
//! the vendor's time. Whether it is taken is `kaching_core::clock_reset::take`'s
//! decision; this module reads the state around it and writes the result.
//!
//! The daemon must be stopped: it holds the mark in memory and persists the
//! highest it has seen, so it would write the old mark back. The state
//! folder's lock ([`StateLock::acquire_stopped`]) makes sure it is.

use std::sync::Arc;

use anyhow::{anyhow, bail};
use kaching_core::clock_reset::{self, verify_clock_reset, ClockReset, Taken};
use kaching_core::time::Timestamp;

use crate::config::Config;
use crate::engine::{Engine, Published};
use crate::state::{ClockResetRecord, StateLock};

/// What `kaching-verifier clock-reset` did.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The reset, verified.
    pub reset: ClockReset,
    /// The mark lowered, or left as it was (the reset is then not spent).
    pub taken: Taken,
    /// The verdict now, reached as `kaching-verifier check` reaches it.
    pub after: Arc<Published>,
}

/// Takes the clock reset `input` (either spelling) on the state folder of
/// `cfg`, with the daemon stopped: refuses while another process holds the
/// state folder's lock. Verified against the issuer keys (the vendor key or
/// the root's issuer role; a revoker key does not count), then taken by
/// `kaching_core::clock_reset::take` with the clock and `clock_tolerance`
/// of `cfg`. When the mark is lowered, the new mark and the record of the
/// reset are written in one transaction; a refusal writes nothing.
pub fn apply(cfg: Config, input: &[u8]) -> anyhow::Result<Applied> {
    let _lock = StateLock::acquire_stopped(&cfg.state_dir)?;
    let clock = cfg.clock;
    let mut engine = Engine::open(cfg.clone(), false)?;
    // After opening: the mark it recorded is not ahead of this reading.
    let now = clock.now();
    let (reset, taken) = take(&mut engine, input, now)?;
    drop(engine);
    // The verdict from what was just committed, by `check`'s path.
    let after = Engine::open_read_only(cfg)?.current();
    Ok(Applied {
        reset,
        taken,
        after,
    })
}

fn take(engine: &mut Engine, input: &[u8], now: Timestamp) -> anyhow::Result<(ClockReset, Taken)> {
    let Some(trust) = engine.trust.as_ref() else {
        bail!(
            "no trusted keys are loaded, so no clock reset can be checked: see `kaching-verifier check`"
        );
    };
    let verified = verify_clock_reset(input, &trust.issuers).map_err(|e| {
        crate::report::refused_by_issuer_keys(trust, &e, "clock reset", "clock resets")
    })?;
    let reset = &verified.reset;
    let used = engine.db.clock_reset_taken(&reset.id)?;
    let taken = clock_reset::take(
        reset,
        &engine.identity.cluster_id,
        engine.trusted_time(),
        now,
        engine.settings.clock_tolerance,
        used,
    )
    .map_err(|r| anyhow!("clock reset refused, nothing changed: {r}"))?;
    if let Taken::Lowered { from, to } = taken {
        engine.db.take_clock_reset(&ClockResetRecord {
            id: &reset.id,
            cluster_id: &reset.cluster_id,
            from,
            to,
            taken_at: now,
            bytes: &verified.bytes,
            lease_ttl: engine.cfg.lease_ttl.as_secs(),
        })?;
        engine.mark_lowered_to(to);
    }
    Ok((verified.reset, taken))
}

/// What to send the vendor for a clock reset, for a cluster whose verdict
/// is `clock_tampered`: its id and its mark (RFC 3339), and the command the
/// vendor runs with them. `check` and `status` print it.
pub fn request_line(cluster_id: &str, mark: &str) -> String {
    format!(
        "clock reset: send the vendor cluster {cluster_id} and mark {mark} (licensegen clock-reset --cluster {cluster_id} --mark {mark})"
    )
}
