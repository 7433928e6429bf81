//! Where "now" comes from. Core never reads the clock; the daemon does, here,
//! so tests can wind it back or forward without touching the system clock.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use kaching_core::time::Timestamp;

/// The wall clock, optionally shifted by a fixed number of seconds.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    offset: i64,
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clock(system{:+}s)", self.offset)
    }
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock { offset: 0 }
    }

    /// The system clock shifted by `offset` seconds (negative: in the past).
    pub fn with_offset(offset: i64) -> Self {
        Clock { offset }
    }

    /// Seconds since the Unix epoch.
    pub fn now(&self) -> Timestamp {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        wall.saturating_add_signed(self.offset)
    }
}
