//! Where "now" comes from. Core never reads the clock; the daemon does,
//! through the kit's [`Clock`], so tests can wind it back or forward without
//! touching the system clock.

pub use kaching_kit::clock::Clock;
