//! Regenerates `fixtures/` from fixed seeds and fixed times:
//! `cargo run -p kaching-core --example regen-fixtures`.
//!
//! Same command, same bytes. Files the generator no longer produces are
//! removed from the folders it owns (`generate::GENERATED_DIRS`), so they
//! always equal what `core/tests/fixtures/` expects; README.md and
//! tiers.toml are hand-maintained and left alone.

use std::path::{Path, PathBuf};

mod generate;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// Writes through a temporary file and a rename, so a reader never sees half a file.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("regen-tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn existing_files(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir.join(rel))? {
        let entry = entry?;
        let rel = rel.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            existing_files(dir, &rel, out)?;
        } else {
            out.push(rel);
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = fixtures_dir();
    let files = generate::generate()?;
    let mut changed = 0;
    for (rel, bytes) in &files {
        let path = dir.join(rel);
        if std::fs::read(&path).ok().as_deref() != Some(bytes.as_slice()) {
            write_atomic(&path, bytes)?;
            changed += 1;
            println!("wrote   fixtures/{rel}");
        }
    }
    let mut present = Vec::new();
    for sub in generate::GENERATED_DIRS {
        existing_files(&dir, Path::new(sub), &mut present)?;
    }
    let mut removed = 0;
    for rel in present {
        let name = rel.to_string_lossy().replace('\\', "/");
        if !files.contains_key(&name) {
            std::fs::remove_file(dir.join(&rel))?;
            removed += 1;
            println!("removed fixtures/{name}");
        }
    }
    println!(
        "{} fixture files: {changed} written, {removed} removed, the rest unchanged",
        files.len()
    );
    Ok(())
}
