//! licensegen's file writes and clock, on top of the kit's (`kaching_kit::fs`,
//! `kaching_kit::clock`): the same atomic write the daemons use, plus the
//! `--out` checks and messages sales ops see.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use kaching_core::time::Timestamp;

/// Seconds since the Unix epoch, now (the kit's clock, read in one place).
pub fn now() -> Timestamp {
    kaching_kit::clock::now()
}

/// Writes `bytes` to `path` so that a reader sees either the old file or the
/// new one, never a mix, even across a crash. `private` makes the file 0600
/// from its first byte. The kit's one atomic write.
pub fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> Result<()> {
    Ok(kaching_kit::fs::write_atomic(path, bytes, private)?)
}

/// Like [`write_atomic`], but never replaces an existing file (an `--out`
/// that appeared meanwhile is refused, not overwritten).
pub fn write_new(path: &Path, bytes: &[u8], private: bool) -> Result<()> {
    check_new_file(path)?;
    match kaching_kit::fs::write_new(path, bytes, private) {
        Err(kaching_kit::fs::WriteError::Exists { .. }) => Err(crate::error::usage(format!(
            "{} already exists: choose another --out path or move the old file away",
            path.display()
        ))),
        other => Ok(other?),
    }
}

/// Checks that a new file can go to `path` (an `--out` value) before any
/// work is done: not an existing file or folder, in a folder that exists.
pub fn check_new_file(path: &Path) -> Result<()> {
    if path.is_dir() {
        return Err(crate::error::usage(format!(
            "--out {} is a folder: give a file name in it, e.g. --out {}",
            path.display(),
            path.join("customer.license").display()
        )));
    }
    if path.exists() {
        return Err(crate::error::usage(format!(
            "{} already exists: choose another --out path or move the old file away",
            path.display()
        )));
    }
    let dir = parent_of(path);
    match fs::metadata(&dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(crate::error::usage(format!(
            "cannot write {}: {} is not a folder: choose another --out path",
            path.display(),
            dir.display()
        ))),
        Err(_) => Err(crate::error::usage(format!(
            "cannot write {}: folder {} does not exist: create it first (mkdir -p {}) or choose another --out path",
            path.display(),
            dir.display(),
            dir.display()
        ))),
    }
}

/// The folder holding `path` (`.` for a bare file name).
pub fn parent_of(path: &Path) -> PathBuf {
    kaching_kit::fs::parent_of(path)
}

/// Flushes a folder's entry list so a rename survives power loss (best
/// effort: not every platform can open a folder).
pub fn sync_dir(dir: &Path) {
    let _ = kaching_kit::fs::sync_dir(dir);
}

/// Reads a file with a helpful error.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        write_atomic(&p, b"one", false).unwrap();
        write_atomic(&p, b"two", true).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(write_new(&p, b"three", false).is_err());
        assert_eq!(fs::read(&p).unwrap(), b"two");
    }

    #[test]
    fn new_file_destination_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope").join("x.license");
        let e = check_new_file(&missing).unwrap_err().to_string();
        assert!(e.contains("does not exist: create it first"), "{e}");
        let e = check_new_file(dir.path()).unwrap_err().to_string();
        assert!(e.contains("is a folder: give a file name in it"), "{e}");
        let file = dir.path().join("f");
        fs::write(&file, b"x").unwrap();
        let e = check_new_file(&file.join("x.license"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not a folder"), "{e}");
        assert!(check_new_file(&dir.path().join("new.license")).is_ok());
        assert!(write_new(&missing, b"x", false).is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
