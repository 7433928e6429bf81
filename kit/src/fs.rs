//! Atomic file writes: a reader (or a crash) sees the old file or the new
//! one, never half of either.
//!
//! The bytes go to a temporary file in the target's own folder (a rename is
//! atomic only within one file system), which is fsync'd, renamed over the
//! target, and then the folder is fsync'd so the rename survives power loss.
//!
//! Every temporary name is new (process id, a counter and a per-process
//! random value) and opened with `create_new`, so a temporary file left by a
//! crash is never reopened: it cannot lend its looser permissions to a
//! private file, and two writers of one target never share a temporary file.
//! A private file is created mode 0600 from its first byte.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a file could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The temporary file could not be created (folder missing or not writable).
    #[error("cannot create {}: {cause}", path.display())]
    Create {
        /// The temporary file.
        path: PathBuf,
        /// What the OS said (part of the message: "Permission denied",
        /// "Read-only file system", "No space left on device").
        cause: io::Error,
    },
    /// Writing or syncing the temporary file failed (disk full, I/O error).
    #[error("cannot write {}: {cause}", path.display())]
    Write {
        /// The temporary file.
        path: PathBuf,
        /// What the OS said (part of the message: "Permission denied",
        /// "Read-only file system", "No space left on device").
        cause: io::Error,
    },
    /// The finished file could not be moved into place.
    #[error("cannot replace {}: {cause}", path.display())]
    Replace {
        /// The target.
        path: PathBuf,
        /// What the OS said (part of the message: "Permission denied",
        /// "Read-only file system", "No space left on device").
        cause: io::Error,
    },
    /// The file is in place, but the folder could not be synced, so the
    /// rename might not survive a power loss.
    #[error("cannot sync folder {}: {cause}", path.display())]
    SyncDir {
        /// The folder.
        path: PathBuf,
        /// What the OS said (part of the message: "Permission denied",
        /// "Read-only file system", "No space left on device").
        cause: io::Error,
    },
    /// [`write_new`] found the target taken.
    #[error("{} already exists", path.display())]
    Exists {
        /// The target.
        path: PathBuf,
    },
}

/// Writes `bytes` to `path`, replacing it atomically; `private` creates the
/// file mode 0600 (else 0644, less the umask). The folder must exist.
pub fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> Result<(), WriteError> {
    let dir = parent_of(path);
    let tmp = write_temp(&dir, path, "tmp", bytes, private)?;
    if let Err(cause) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(WriteError::Replace {
            path: path.to_path_buf(),
            cause,
        });
    }
    sync_dir(&dir)
}

/// Like [`write_atomic`], but never replaces an existing file: the finished
/// temporary file is hard-linked into place, which fails when the name is
/// taken ([`WriteError::Exists`]). Where the file system has no hard links
/// (FAT), it checks, then renames.
pub fn write_new(path: &Path, bytes: &[u8], private: bool) -> Result<(), WriteError> {
    let exists = || WriteError::Exists {
        path: path.to_path_buf(),
    };
    if path.symlink_metadata().is_ok() {
        return Err(exists());
    }
    let dir = parent_of(path);
    let staged = write_temp(&dir, path, "new", bytes, private)?;
    let placed = match fs::hard_link(&staged, path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(exists()),
        Err(_) if path.symlink_metadata().is_ok() => Err(exists()),
        Err(_) => fs::rename(&staged, path).map_err(|cause| WriteError::Replace {
            path: path.to_path_buf(),
            cause,
        }),
    };
    // After a link the staged name is a second name for the same file; after
    // a rename it is gone already.
    let _ = fs::remove_file(&staged);
    placed?;
    sync_dir(&dir)
}

/// What [`try_lock`] found.
#[derive(Debug)]
pub enum Lock {
    /// This process holds the lock for as long as it keeps the file open;
    /// the OS lets go when the process ends, however it ends, so a crash
    /// never leaves a stale lock.
    Taken(File),
    /// Another process (or another open of the file) holds it; the file is
    /// open for reading whatever the holder wrote into it.
    Held(File),
}

/// Why [`try_lock`] could not tell.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The lock file could not be opened or created.
    #[error("cannot open the lock file {}: {cause}", path.display())]
    Open {
        /// The lock file.
        path: PathBuf,
        /// What the OS said.
        cause: io::Error,
    },
    /// The file system refused the lock itself.
    #[error("cannot lock {}: {cause}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// What the OS said.
        cause: io::Error,
    },
}

/// Takes an exclusive OS lock (`flock`) on the file at `path`, creating it
/// when missing (never truncating it), without waiting: one daemon per
/// state folder or database.
pub fn try_lock(path: &Path) -> Result<Lock, LockError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|cause| LockError::Open {
            path: path.to_path_buf(),
            cause,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(Lock::Taken(file)),
        Err(fs::TryLockError::WouldBlock) => Ok(Lock::Held(file)),
        Err(fs::TryLockError::Error(cause)) => Err(LockError::Lock {
            path: path.to_path_buf(),
            cause,
        }),
    }
}

/// The folder holding `path` (`.` for a bare file name).
pub fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Flushes a folder's entry list so that a rename in it survives power loss.
/// File systems that cannot sync a folder (they answer EINVAL or ENOTSUP)
/// count as synced; elsewhere than Unix a folder cannot be opened, so this
/// does nothing.
pub fn sync_dir(dir: &Path) -> Result<(), WriteError> {
    #[cfg(unix)]
    {
        let synced = File::open(dir).and_then(|d| d.sync_all());
        match synced {
            Err(e)
                if !matches!(
                    e.kind(),
                    io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
                ) =>
            {
                return Err(WriteError::SyncDir {
                    path: dir.to_path_buf(),
                    cause: e,
                });
            }
            _ => {}
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// How many fresh names to try before giving up: a clash needs another
/// process with our pid and random value, so more than one retry means
/// something else is wrong.
const NAME_ATTEMPTS: u32 = 4;

/// Writes and syncs `bytes` into a new hidden file next to `target`
/// (`.NAME.KIND-PID-N-RANDOM`) and returns its path; removes it on failure.
fn write_temp(
    dir: &Path,
    target: &Path,
    kind: &str,
    bytes: &[u8],
    private: bool,
) -> Result<PathBuf, WriteError> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut attempt = 0;
    let (tmp, mut file) = loop {
        let tmp = dir.join(format!(".{name}.{kind}-{}", unique_suffix()));
        match opts.open(&tmp) {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt + 1 < NAME_ATTEMPTS => {
                attempt += 1;
            }
            Err(cause) => return Err(WriteError::Create { path: tmp, cause }),
        }
    };
    if let Err(cause) = file.write_all(bytes).and_then(|()| file.sync_all()) {
        drop(file);
        let _ = fs::remove_file(&tmp);
        return Err(WriteError::Write { path: tmp, cause });
    }
    Ok(tmp)
}

/// `PID-N-RANDOM`: unique within this process by the counter, and across
/// processes by the pid and a value seeded from the OS's randomness (the
/// standard library's hasher keys), so no extra dependency is needed.
fn unique_suffix() -> String {
    use std::hash::BuildHasher;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let random = std::collections::hash_map::RandomState::new().hash_one(n);
    format!("{}-{n}-{random:016x}", std::process::id())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_is_held_until_its_file_is_dropped_and_keeps_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.lock");
        let Lock::Taken(mut first) = try_lock(&path).unwrap() else {
            panic!("the first lock is taken")
        };
        writeln!(first, "4242").unwrap();
        let Lock::Held(second) = try_lock(&path).unwrap() else {
            panic!("a second lock on the same file is refused while the first is held")
        };
        assert_eq!(io::read_to_string(second).unwrap(), "4242\n");
        drop(first);
        assert!(matches!(try_lock(&path).unwrap(), Lock::Taken(_)));
        assert!(matches!(
            try_lock(&dir.path().join("missing").join("x.lock")),
            Err(LockError::Open { .. })
        ));
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn replaces_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        write_atomic(&p, b"one", false).unwrap();
        write_atomic(&p, b"two", true).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(names(dir.path()), ["a.txt"]);
    }

    #[test]
    fn write_new_refuses_a_taken_name_and_keeps_the_old_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("license.lic");
        write_new(&p, b"first", false).unwrap();
        let e = write_new(&p, b"second", false).unwrap_err();
        assert!(matches!(e, WriteError::Exists { .. }), "{e}");
        assert_eq!(fs::read(&p).unwrap(), b"first");
        assert_eq!(names(dir.path()), ["license.lic"]);
    }

    #[test]
    fn a_missing_folder_names_the_temporary_file_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope").join("a.txt");
        let e = write_atomic(&p, b"x", false).unwrap_err();
        assert!(matches!(e, WriteError::Create { .. }), "{e}");
        assert!(e.to_string().contains("nope"), "{e}");
        assert!(names(dir.path()).is_empty());
    }

    /// The message carries the OS's reason (the license page shows it as
    /// is: "Permission denied", "Read-only file system"), once, also when
    /// printed as an error chain.
    #[test]
    fn the_message_says_what_the_os_said() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope").join("a.txt");
        let e = write_atomic(&p, b"x", false).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("(os error 2)"), "{text}");
        let chain = format!("{:#}", anyhow::Error::new(e));
        assert_eq!(chain.matches("os error 2").count(), 1, "{chain}");
    }

    #[test]
    fn a_bare_file_name_lives_in_the_current_folder() {
        assert_eq!(parent_of(Path::new("a.txt")), PathBuf::from("."));
        assert_eq!(parent_of(Path::new("d/a.txt")), PathBuf::from("d"));
    }

    #[test]
    fn temporary_names_do_not_repeat() {
        assert_ne!(unique_suffix(), unique_suffix());
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_0600_even_over_a_stale_open_temporary_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key.pem");
        // What older writers left after a crash, readable by everyone.
        for stale in ["key.pem.tmp", ".key.pem.tmp", "key.tmp"] {
            let s = dir.path().join(stale);
            fs::write(&s, b"left over").unwrap();
            fs::set_permissions(&s, fs::Permissions::from_mode(0o644)).unwrap();
        }
        write_atomic(&p, b"secret", true).unwrap();
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(fs::read(&p).unwrap(), b"secret");
        // A public file written over a private one is public again.
        write_atomic(&p, b"public", false).unwrap();
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o600, 0o600);
        assert_eq!(mode & 0o022, 0, "never group- or world-writable");
    }

    #[cfg(unix)]
    #[test]
    fn write_new_refuses_a_dangling_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.lic");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &p).unwrap();
        assert!(matches!(
            write_new(&p, b"x", false),
            Err(WriteError::Exists { .. })
        ));
        assert!(!dir.path().join("elsewhere").exists());
    }
}
