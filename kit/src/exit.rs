//! How a command ends: an exit code, and the whole error chain printed once.
//!
//! Binaries return a code from `main` instead of calling
//! `std::process::exit`, so destructors run and buffered output is flushed.
//! A closed stdout (the reader of `… | head -1` went away) is a normal end,
//! not a failure. Codes with a meaning of their own (a license state, a
//! relay refusal) are each binary's, documented in its `--help`.

use std::error::Error;
use std::io::Write;

/// The command did what was asked.
pub const SUCCESS: u8 = 0;
/// Any failure without a code of its own (I/O, configuration, database).
pub const FAILURE: u8 = 1;
/// The command line was wrong (clap's own code for a usage error).
pub const USAGE: u8 = 2;

/// The error and its causes on one line, outermost first, joined by `": "`
/// (what `anyhow` prints for `{:#}`).
pub fn chain(err: &(dyn Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cause = err.source();
    while let Some(e) = cause {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cause = e.source();
    }
    out
}

/// Ends a command that failed: a closed stdout pipe anywhere in the chain
/// gives [`SUCCESS`] and prints nothing; otherwise prints `error: ` and the
/// [`chain`] once on stderr and gives `code`.
pub fn report(err: &(dyn Error + 'static), code: u8) -> u8 {
    report_to(&mut std::io::stderr().lock(), err, code)
}

fn report_to(out: &mut dyn Write, err: &(dyn Error + 'static), code: u8) -> u8 {
    if crate::stdout::is_broken_pipe(err) {
        return SUCCESS;
    }
    // With stderr gone too there is nobody left to tell; the code still says it.
    let _ = writeln!(out, "error: {}", chain(err));
    code
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_reads_like_anyhows_alternate_form() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = anyhow::Error::new(io)
            .context("cannot read config file /etc/x.toml")
            .context("starting the relay");
        assert_eq!(chain(err.as_ref()), format!("{err:#}"));
        assert_eq!(
            chain(err.as_ref()),
            "starting the relay: cannot read config file /etc/x.toml: no such file"
        );
    }

    #[test]
    fn a_broken_pipe_is_success_and_other_errors_keep_their_code() {
        let pipe = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            .context("printing the token list");
        let mut out = Vec::new();
        assert_eq!(report_to(&mut out, pipe.as_ref(), FAILURE), SUCCESS);
        assert!(out.is_empty(), "nothing printed for a reader that left");
        let other = anyhow::anyhow!("audit log broken").context("audit verify");
        assert_eq!(report_to(&mut out, other.as_ref(), USAGE), USAGE);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "error: audit verify: audit log broken\n"
        );
    }
}
