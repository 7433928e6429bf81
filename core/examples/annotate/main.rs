//! Prints an annotated hex dump of a binary KACHING document:
//! `cargo run -p kaching-core --example annotate -- fixtures/licenses/bound.cbor`.
//! docs/format.md embeds its output for real fixtures.

mod dump;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(path) = std::env::args().nth(1) else {
        return Err(
            "usage: annotate <binary document> (for example fixtures/licenses/bound.cbor)".into(),
        );
    };
    let bytes = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
    let bytes = kaching_core::armor::dearmor(&bytes, None)?;
    print!("{}", dump::annotate(&bytes)?);
    Ok(())
}
