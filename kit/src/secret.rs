//! One rule for secrets kept in files, applied everywhere one is read:
//! a private key readable by group or others is refused; a token file
//! readable by others is used but warned about loudly.
//!
//! The check runs on the file's own metadata after following symlinks, so a
//! link cannot launder a world-readable target.

use std::path::{Path, PathBuf};

/// Why a secret file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The file's metadata could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The path is not a regular file (a FIFO, socket, device or folder).
    #[error("{what} {} is not a regular file: put the {what} itself there", path.display())]
    NotRegular {
        /// What the file holds ("relay key", "cluster key", ...).
        what: String,
        /// The file.
        path: PathBuf,
    },
    /// A private key that other accounts can read.
    #[error(
        "{what} {} is readable by other users (mode {mode:o}): run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    TooOpen {
        /// What the file holds.
        what: String,
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// Permission bits of a regular file, following symlinks.
fn mode_of(path: &Path, what: &str) -> Result<u32, SecretError> {
    let meta = std::fs::metadata(path).map_err(|source| SecretError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_file() {
        return Err(SecretError::NotRegular {
            what: what.to_string(),
            path: path.to_path_buf(),
        });
    }
    Ok(permission_bits(&meta))
}

#[cfg(unix)]
fn permission_bits(meta: &std::fs::Metadata) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777
}

#[cfg(not(unix))]
fn permission_bits(_: &std::fs::Metadata) -> u32 {
    0o600
}

/// Refuses a private key (or passphrase) file that group or others may read
/// or write, or that is not a regular file. `what` names it in the message,
/// e.g. "relay key".
pub fn check_private(path: &Path, what: &str) -> Result<(), SecretError> {
    let mode = mode_of(path, what)?;
    if mode & 0o077 != 0 {
        return Err(SecretError::TooOpen {
            what: what.to_string(),
            path: path.to_path_buf(),
            mode: mode & 0o777,
        });
    }
    Ok(())
}

/// Checks a bearer-token file: refused when it is not a regular file;
/// returns a warning (for the log) when others may read it. Group access is
/// allowed: a token file is often shared with a service group.
pub fn check_token(path: &Path, what: &str) -> Result<Option<String>, SecretError> {
    let mode = mode_of(path, what)?;
    if mode & 0o004 != 0 {
        return Ok(Some(format!(
            "{what} {} is readable by every user (mode {:o}): anyone on this machine can use it; run `chmod 640 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    Ok(None)
}

#[cfg(all(test, unix))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn file_with_mode(dir: &Path, mode: u32) -> PathBuf {
        let p = dir.join(format!("secret-{mode:o}"));
        std::fs::write(&p, b"x").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn private_key_readable_by_group_or_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o640, 0o604, 0o644, 0o660, 0o602] {
            let p = file_with_mode(dir.path(), mode);
            let e = check_private(&p, "relay key").unwrap_err().to_string();
            assert!(e.contains("chmod 600"), "{mode:o}: {e}");
            assert!(e.starts_with("relay key "), "{e}");
        }
        for mode in [0o600, 0o400] {
            check_private(&file_with_mode(dir.path(), mode), "relay key").unwrap();
        }
    }

    #[test]
    fn a_symlink_does_not_launder_an_open_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = file_with_mode(dir.path(), 0o644);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(check_private(&link, "cluster key").is_err());
    }

    #[test]
    fn token_readable_by_others_warns_group_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let warn = check_token(&file_with_mode(dir.path(), 0o644), "API token").unwrap();
        assert!(warn.is_some_and(|w| w.contains("chmod 640")));
        assert!(check_token(&file_with_mode(dir.path(), 0o640), "API token")
            .unwrap()
            .is_none());
    }

    #[test]
    fn special_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = check_private(dir.path(), "relay key").unwrap_err();
        assert!(matches!(e, SecretError::NotRegular { .. }), "{e}");
    }
}
