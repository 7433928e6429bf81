//! Writing to the terminal: text and JSON to stdout, notes to stderr. A
//! closed pipe (`licensegen ledger list | head`) is not an error.

use std::io::Write;

use anyhow::Result;
use kaching_core::time::{rfc3339, Timestamp};
use serde::Serialize;

/// Prints text to stdout as is.
pub fn out(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Prints one line to stdout.
pub fn line(text: &str) -> Result<()> {
    out(&format!("{text}\n"))
}

/// Prints a value as pretty JSON to stdout.
pub fn json<T: Serialize>(value: &T) -> Result<()> {
    line(&serde_json::to_string_pretty(value)?)
}

/// Prints a note (progress, warnings) to stderr.
pub fn note(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// A date for tables: `2027-11-22`.
pub fn date(t: Timestamp) -> String {
    rfc3339(t).chars().take(10).collect()
}

/// Renders rows as left-aligned columns separated by two spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let fmt_row = |cells: Vec<String>| {
        let n = cells.len();
        let mut s = String::new();
        for (i, (c, w)) in cells.into_iter().zip(&widths).enumerate() {
            if i + 1 == n {
                s.push_str(&c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut s = fmt_row(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        s.push_str(&fmt_row(r.clone()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let t = table(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A    BB\nxxx  y\n");
    }
}
