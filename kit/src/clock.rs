//! The wall clock, read in one place. `kaching-core` never reads it: every
//! decision there takes `now` as an argument, and the binaries get it here.
//!
//! Times are whole seconds since the Unix epoch, the `u64` that
//! `kaching_core::time::Timestamp` names (kit does not depend on core).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since 1970-01-01T00:00:00Z by the system clock; 0 for a clock
/// set before 1970 (which every time check then treats as far in the past).
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The system clock shifted by a fixed number of seconds, so tests and
/// demos can wind a daemon's time back or forward without touching the
/// machine's clock.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// Seconds added to the system clock (negative: in the past).
    offset: i64,
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clock(system{:+}s)", self.offset)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
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

    /// Seconds since the Unix epoch, shifted; never below 0.
    pub fn now(&self) -> u64 {
        now().saturating_add_signed(self.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_after_this_code_was_written() {
        // 2025-01-01T00:00:00Z: a clock before it is broken, not "now".
        assert!(now() > 1_735_689_600);
    }

    #[test]
    fn an_offset_clock_shifts_and_never_goes_below_zero() {
        let back = Clock::with_offset(-3600).now();
        let wall = now();
        assert!(back + 3600 >= wall && back + 3600 <= wall + 1);
        assert_eq!(Clock::with_offset(i64::MIN).now(), 0);
        assert_eq!(format!("{:?}", Clock::with_offset(-5)), "Clock(system-5s)");
        assert_eq!(format!("{:?}", Clock::default()), "Clock(system+0s)");
    }
}
