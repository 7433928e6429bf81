//! Output that ends quietly when the reader goes away.
//!
//! Rust ignores SIGPIPE, so `println!` panics when stdout is a pipe whose
//! reader exited (`kaching-verifier status --json | head -1`). Binaries write
//! through these functions instead and treat [`is_broken_pipe`] errors as a
//! normal end, as ripgrep does.

use std::io::Write;

/// Writes `text` to stdout and flushes.
pub fn print(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Writes `text` and a newline to stdout and flushes.
pub fn println(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

/// True when an error chain bottoms out in a closed pipe: the reader of our
/// output has gone, which is not a failure of ours.
pub fn is_broken_pipe(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::BrokenPipe {
                return true;
            }
        }
        cur = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("writing the report")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn broken_pipe_is_found_down_the_chain() {
        let e = Outer(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(is_broken_pipe(&e));
        let other = Outer(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        assert!(!is_broken_pipe(&other));
    }
}
