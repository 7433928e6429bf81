//! Logging for the daemons and commands: one variable, `KACHING_LOG`, read
//! the same way by every binary (a `tracing` filter such as `info` or
//! `kaching_relay=debug,info`). `RUST_LOG` is honoured when `KACHING_LOG`
//! is unset. Logs go to stderr, with colour only on a terminal (never in
//! journald or a log file).

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// The variable every KACHING binary reads its log filter from.
pub const VAR: &str = "KACHING_LOG";

/// The filter `KACHING_LOG` (else `RUST_LOG`, else `default`) names. A
/// filter that does not parse falls back to `default` and says so.
pub fn filter(default: &str) -> EnvFilter {
    for var in [VAR, "RUST_LOG"] {
        match std::env::var(var) {
            Ok(text) if !text.trim().is_empty() => match EnvFilter::try_new(&text) {
                Ok(f) => return f,
                Err(e) => {
                    eprintln!(
                        "warning: {var}={text:?} is not a log filter ({e}); using {default:?}"
                    );
                    return EnvFilter::new(default);
                }
            },
            _ => {}
        }
    }
    EnvFilter::new(default)
}

/// Installs the stderr logger with [`filter`]`(default)`. Call once, first
/// thing in `main`; a second call changes nothing.
pub fn init(default: &str) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter(default))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
