//! Reading the vendor's files: trusted keys, license (file or folder) and
//! revocation list. These functions only read and verify; which result is put
//! in force (and what is kept as last-known-good) is the engine's decision.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use kaching_core::{
    verify_license, verify_revocation_list, TrustedKeys, VerifiedLicense, VerifiedRevocationList,
    MAX_DOCUMENT_SIZE,
};

/// The outcome of reading one file.
#[derive(Debug)]
pub enum Loaded<T> {
    /// No file at the path.
    Missing,
    /// The file exists but cannot be used; the text says why and what to do.
    Rejected(String),
    /// The file verified.
    Good(T),
}

/// Reads at most `MAX_DOCUMENT_SIZE + 1` bytes so an oversized file is refused
/// without reading it all.
fn read_limited(path: &Path) -> Loaded<Vec<u8>> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Loaded::Missing,
        Err(e) => return Loaded::Rejected(format!("cannot read {}: {e}", path.display())),
    };
    let mut buf = Vec::new();
    // Trusted-key bundles may exceed one document; allow a few of them.
    let limit = (MAX_DOCUMENT_SIZE * 4) as u64;
    match file.take(limit + 1).read_to_end(&mut buf) {
        Ok(_) if buf.len() as u64 > limit => Loaded::Rejected(format!(
            "{} is larger than {limit} bytes: this is not a KACHING file",
            path.display()
        )),
        Ok(_) => Loaded::Good(buf),
        Err(e) => Loaded::Rejected(format!("cannot read {}: {e}", path.display())),
    }
}

/// Reads the trusted vendor keys (a PEM bundle).
pub fn load_keys(path: &Path) -> Loaded<TrustedKeys> {
    match read_limited(path) {
        Loaded::Missing => Loaded::Missing,
        Loaded::Rejected(e) => Loaded::Rejected(e),
        Loaded::Good(bytes) => match std::str::from_utf8(&bytes)
            .map_err(|_| "not UTF-8 text".to_string())
            .and_then(|t| TrustedKeys::from_pem_bundle(t).map_err(|e| e.to_string()))
        {
            Ok(k) => Loaded::Good(k),
            Err(e) => Loaded::Rejected(format!(
                "trusted keys {} unusable: {e}; put the vendor's PUBLIC KEY PEM there",
                path.display()
            )),
        },
    }
}

/// Verifies license bytes, naming the file in the error.
pub fn verify_license_bytes(
    path: &Path,
    bytes: &[u8],
    keys: &TrustedKeys,
) -> Result<VerifiedLicense, String> {
    verify_license(bytes, keys).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads the license. A folder is scanned: every regular, non-hidden file is
/// tried; among those that verify, one that `fits` wins, then the newest.
pub fn load_license(
    path: &Path,
    keys: &TrustedKeys,
    fits: impl Fn(&VerifiedLicense) -> bool,
) -> Loaded<VerifiedLicense> {
    if !path.is_dir() {
        return match read_limited(path) {
            Loaded::Missing => Loaded::Missing,
            Loaded::Rejected(e) => Loaded::Rejected(e),
            Loaded::Good(bytes) => match verify_license_bytes(path, &bytes, keys) {
                Ok(v) => Loaded::Good(v),
                Err(e) => Loaded::Rejected(e),
            },
        };
    }
    let mut good: Vec<VerifiedLicense> = Vec::new();
    let mut errors = Vec::new();
    for file in folder_files(path) {
        match read_limited(&file) {
            Loaded::Good(bytes) => match verify_license_bytes(&file, &bytes, keys) {
                Ok(v) => good.push(v),
                Err(e) => errors.push(e),
            },
            Loaded::Rejected(e) => errors.push(e),
            Loaded::Missing => {}
        }
    }
    // Prefer a license that fits this verifier, then the one issued last.
    good.sort_by_key(|v| (fits(v), v.license.issued_at));
    match good.pop() {
        Some(v) => Loaded::Good(v),
        None if errors.is_empty() => Loaded::Missing,
        None => Loaded::Rejected(errors.join("; ")),
    }
}

/// Reads the revocation list.
pub fn load_revocations(path: &Path, keys: &TrustedKeys) -> Loaded<VerifiedRevocationList> {
    match read_limited(path) {
        Loaded::Missing => Loaded::Missing,
        Loaded::Rejected(e) => Loaded::Rejected(e),
        Loaded::Good(bytes) => match verify_revocation_list(&bytes, keys) {
            Ok(v) => Loaded::Good(v),
            Err(e) => Loaded::Rejected(format!("{}: {e}", path.display())),
        },
    }
}

fn folder_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with('.') && !n.ends_with(".tmp") && !n.ends_with('~'))
        })
        .collect();
    files.sort();
    files
}

/// One file's identity: path, inode (a rename always changes it), size, mtime.
pub type FileStamp = (PathBuf, u64, u64, Option<SystemTime>);

#[cfg(unix)]
fn inode(m: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(m)
}

#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> u64 {
    0
}

/// Stamps of the watched files: tells a real change from a file event that
/// changed nothing, and catches changes the watcher missed (inotify limits).
pub fn fingerprint(paths: &[&Path]) -> Vec<FileStamp> {
    let mut out = Vec::new();
    for p in paths {
        let files = if p.is_dir() {
            folder_files(p)
        } else {
            vec![p.to_path_buf()]
        };
        for f in files {
            let meta = std::fs::metadata(&f).ok();
            out.push((
                f,
                meta.as_ref().map(inode).unwrap_or(0),
                meta.as_ref().map(|m| m.len()).unwrap_or(u64::MAX),
                meta.and_then(|m| m.modified().ok()),
            ));
        }
    }
    out
}
