//! Atomic file writes (temp file in the same folder, fsync, rename, fsync the
//! folder) and the clock: the only two places licensegen touches the outside
//! world besides SQLite and the terminal.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use kaching_core::time::Timestamp;

/// Seconds since the Unix epoch, now.
pub fn now() -> Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Writes `bytes` to `path` so that a reader sees either the old file or the
/// new one, never a mix, even across a crash. `private` makes the file 0600.
pub fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> Result<()> {
    let dir = parent_of(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(".{name}.tmp-{}-{}", std::process::id(), nonce()));
    let result = (|| -> Result<()> {
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(if private { 0o600 } else { 0o644 });
        }
        let mut f = opts
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
        sync_dir(&dir);
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Like [`write_atomic`], but never replaces an existing file: the finished
/// temp file is hard-linked into place, which fails if the name is taken
/// (where the file system has no hard links, e.g. FAT, it checks, then renames).
pub fn write_new(path: &Path, bytes: &[u8], private: bool) -> Result<()> {
    let exists = || {
        crate::error::usage(format!(
            "{} already exists: choose another --out path or move the old file away",
            path.display()
        ))
    };
    if path.exists() {
        return Err(exists());
    }
    check_new_file(path)?;
    let dir = parent_of(path);
    let staged = dir.join(format!(
        ".{}.new-{}-{}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id(),
        nonce()
    ));
    write_atomic(&staged, bytes, private)?;
    let linked = fs::hard_link(&staged, path);
    let result = match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(exists()),
        Err(_) if path.exists() => Err(exists()),
        Err(_) => {
            fs::rename(&staged, path).with_context(|| format!("cannot write {}", path.display()))
        }
    };
    let _ = fs::remove_file(&staged);
    sync_dir(&dir);
    result
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
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Flushes a folder's entry list so a rename survives power loss (best effort:
/// not every platform can open a folder).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Reads a file with a helpful error.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
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
