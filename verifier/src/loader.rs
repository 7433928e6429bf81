//! Reading the vendor's files: trusted keys, license (file or folder) and
//! revocation list. Reading ([`read_files`], on the reader thread of
//! [`crate::reader`]) is kept apart from verifying (`*_from`, on the engine
//! thread): a file system that hangs can stall a read, never a verdict.
//! Which result is put in force (and what is kept as last-known-good) is the
//! engine's decision.
//!
//! Only regular files are read. A FIFO, socket, device or folder at a watched
//! path is refused without being read: it is opened (if at all) with
//! `O_NONBLOCK` and checked with `fstat` on the opened descriptor, so neither
//! the open nor the read can wait for a writer that never comes.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::trust::Trust;
use kaching_core::root::Role;
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

/// Largest watched file read: trusted-key bundles may exceed one document,
/// so a few documents' worth.
pub const MAX_FILE_BYTES: u64 = (MAX_DOCUMENT_SIZE * 4) as u64;

/// What a non-regular file is, for messages.
fn special_kind(ft: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a FIFO";
        }
        if ft.is_socket() {
            return "a socket";
        }
        if ft.is_block_device() || ft.is_char_device() {
            return "a device";
        }
    }
    if ft.is_dir() {
        "a folder"
    } else {
        "a special file"
    }
}

fn not_regular(path: &Path, ft: std::fs::FileType, replace_with: &str) -> String {
    format!(
        "{} is {}, not a regular file; replace it with {replace_with}",
        path.display(),
        special_kind(ft)
    )
}

/// Opens for reading without ever waiting: `O_NONBLOCK` makes opening a FIFO
/// (or a device) return at once instead of waiting for the other end.
fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let flag = i32::try_from(rustix::fs::OFlags::NONBLOCK.bits()).unwrap_or(0);
        opts.custom_flags(flag);
    }
    opts.open(path)
}

/// Reads a regular file (symlinks followed) of at most `limit` bytes.
/// Anything else at `path` is refused with a message naming what it is and
/// ending in "replace it with `replace_with`".
pub fn read_regular(path: &Path, limit: u64, replace_with: &str) -> Loaded<Vec<u8>> {
    // A special file is refused on its metadata, without being opened.
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Loaded::Missing,
        Err(e) => return Loaded::Rejected(format!("cannot read {}: {e}", path.display())),
        Ok(m) if !m.is_file() => {
            return Loaded::Rejected(not_regular(path, m.file_type(), replace_with))
        }
        Ok(_) => {}
    }
    let file = match open_nonblocking(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Loaded::Missing,
        Err(e) => return Loaded::Rejected(format!("cannot read {}: {e}", path.display())),
    };
    // Checked again on the open descriptor: the path may have been swapped
    // for a FIFO between the two looks.
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(e) => return Loaded::Rejected(format!("cannot read {}: {e}", path.display())),
    };
    if !meta.is_file() {
        return Loaded::Rejected(not_regular(path, meta.file_type(), replace_with));
    }
    let too_large = || {
        Loaded::Rejected(format!(
            "{} is larger than {limit} bytes: this is not a KACHING file",
            path.display()
        ))
    };
    if meta.len() > limit {
        return too_large();
    }
    let mut buf = Vec::new();
    match file.take(limit + 1).read_to_end(&mut buf) {
        Ok(_) if buf.len() as u64 > limit => too_large(),
        Ok(_) => Loaded::Good(buf),
        Err(e) => Loaded::Rejected(format!("cannot read {}: {e}", path.display())),
    }
}

/// The three watched paths.
#[derive(Debug, Clone)]
pub struct Watched {
    /// License file or folder.
    pub license: PathBuf,
    /// Trusted vendor keys.
    pub trusted_keys: PathBuf,
    /// Revocation list.
    pub revocations: PathBuf,
    /// Folder of newer roots of trust (`roots/` beside the trusted keys):
    /// each file in it is offered to the chain.
    pub roots: PathBuf,
}

impl Watched {
    /// Which watched file `path` is (`license`, `revocations`, `trusted_keys`).
    pub fn kind_of(&self, path: &Path) -> &'static str {
        if path == self.trusted_keys {
            "trusted_keys"
        } else if path == self.revocations {
            "revocations"
        } else {
            "license"
        }
    }

    /// Stamps of every watched file (see [`fingerprint`]).
    pub fn fingerprint(&self, progress: &mut dyn FnMut(&Path)) -> Vec<FileStamp> {
        fingerprint_with(
            &[
                &self.license,
                &self.trusted_keys,
                &self.revocations,
                &self.roots,
            ],
            progress,
        )
    }
}

/// The license as read: one file, or every candidate file of a folder.
#[derive(Debug)]
pub enum LicenseBytes {
    /// `license` names a file.
    File(Loaded<Vec<u8>>),
    /// `license` names a folder: each regular, non-hidden file in it.
    Folder(Vec<(PathBuf, Loaded<Vec<u8>>)>),
}

/// Everything read in one pass over the watched files, not yet verified.
#[derive(Debug)]
pub struct FileSet {
    /// The reader's request counter when this pass began (see [`crate::reader`]).
    pub seq: u64,
    /// The files' stamps taken just before they were read.
    pub fingerprint: Vec<FileStamp>,
    /// The trusted-keys file.
    pub keys: Loaded<Vec<u8>>,
    /// The revocation list.
    pub revocations: Loaded<Vec<u8>>,
    /// The license.
    pub license: LicenseBytes,
    /// Each file of the roots folder (empty when there is none).
    pub roots: Vec<(PathBuf, Loaded<Vec<u8>>)>,
}

/// The folder newer roots are dropped into: `roots/` beside the trusted keys.
pub fn roots_folder(trusted_keys: &Path) -> PathBuf {
    kaching_kit::fs::parent_of(trusted_keys).join("roots")
}

/// At most this many files of the roots folder are read in one pass.
pub const MAX_ROOT_FILES: usize = 64;

const SIGNED_FILE: &str = "the signed file from your vendor";
const KEYS_FILE: &str = "the vendor's public key file";

/// Reads every watched file (never verifying); `fingerprint` is their stamps
/// taken just before. `progress` is told each path before it is touched, so
/// a read stuck in the kernel can be named.
pub fn read_files(
    w: &Watched,
    seq: u64,
    fingerprint: Vec<FileStamp>,
    progress: &mut dyn FnMut(&Path),
) -> FileSet {
    progress(&w.trusted_keys);
    let keys = read_regular(&w.trusted_keys, MAX_FILE_BYTES, KEYS_FILE);
    progress(&w.revocations);
    let revocations = read_regular(&w.revocations, MAX_FILE_BYTES, SIGNED_FILE);
    progress(&w.license);
    let license = if w.license.is_dir() {
        LicenseBytes::Folder(
            folder_files(&w.license)
                .into_iter()
                .map(|f| {
                    progress(&w.license);
                    let r = read_regular(&f, MAX_FILE_BYTES, SIGNED_FILE);
                    (f, r)
                })
                .collect(),
        )
    } else {
        LicenseBytes::File(read_regular(&w.license, MAX_FILE_BYTES, SIGNED_FILE))
    };
    let roots = if w.roots.is_dir() {
        folder_files(&w.roots)
            .into_iter()
            .take(MAX_ROOT_FILES)
            .map(|f| {
                progress(&w.roots);
                let r = read_regular(&f, MAX_FILE_BYTES, "a root of trust from your vendor");
                (f, r)
            })
            .collect()
    } else {
        Vec::new()
    };
    FileSet {
        seq,
        fingerprint,
        keys,
        revocations,
        license,
        roots,
    }
}

/// Parses the trusted vendor keys (a PEM bundle) read from `path`.
pub fn keys_from(path: &Path, read: Loaded<Vec<u8>>) -> Loaded<TrustedKeys> {
    match read {
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

/// Reads the relay's public key (one PEM block) from `path`.
pub fn relay_public_key(path: &Path) -> anyhow::Result<kaching_core::PublicKey> {
    let bytes = match read_regular(path, 64 * 1024, "the relay's public key file") {
        Loaded::Good(b) => b,
        Loaded::Missing => anyhow::bail!(
            "cannot read the relay's public key {}: copy the output of `kaching-relay relay-key` there",
            path.display()
        ),
        Loaded::Rejected(why) => anyhow::bail!("relay public key: {why}"),
    };
    let text = String::from_utf8(bytes).unwrap_or_default();
    kaching_core::PublicKey::from_pem(&text).map_err(|e| {
        anyhow::anyhow!(
            "{} is not the relay's public key (one PUBLIC KEY PEM block, from `kaching-relay relay-key`): {e}",
            path.display()
        )
    })
}

/// Verifies license bytes, naming the file in the error.
pub fn verify_license_bytes(
    path: &Path,
    bytes: &[u8],
    trust: &Trust,
) -> Result<VerifiedLicense, String> {
    verify_license(bytes, &trust.issuers)
        .map_err(|e| format!("{}: {}", path.display(), explained(&e, trust, Role::Issuer)))
}

/// The verification error, with why its key does not count when the root
/// chain knows that key (rotated out, or a key of another role).
fn explained(e: &kaching_core::Error, trust: &Trust, role: Role) -> String {
    match e {
        kaching_core::Error::UnknownKey(kid) => match trust.explain(kid, role) {
            Some(why) => format!("signed by key {kid}, which does not count here: {why}"),
            None => e.to_string(),
        },
        _ => e.to_string(),
    }
}

/// Verifies the license read from `path`. In a folder every file is tried;
/// among those that verify, one that `fits` wins, then one that is `usable`
/// now (not expired past its grace, not before its start: an old short
/// license issued last never beats a current annual one), then the newest.
pub fn license_from(
    path: &Path,
    read: &LicenseBytes,
    trust: &Trust,
    fits: impl Fn(&VerifiedLicense) -> bool,
    usable: impl Fn(&VerifiedLicense) -> bool,
) -> Loaded<VerifiedLicense> {
    let files = match read {
        LicenseBytes::File(Loaded::Missing) => return Loaded::Missing,
        LicenseBytes::File(Loaded::Rejected(e)) => return Loaded::Rejected(e.clone()),
        LicenseBytes::File(Loaded::Good(bytes)) => {
            return match verify_license_bytes(path, bytes, trust) {
                Ok(v) => Loaded::Good(v),
                Err(e) => Loaded::Rejected(e),
            }
        }
        LicenseBytes::Folder(files) => files,
    };
    let mut good: Vec<VerifiedLicense> = Vec::new();
    let mut errors = Vec::new();
    for (file, read) in files {
        match read {
            Loaded::Good(bytes) => match verify_license_bytes(file, bytes, trust) {
                Ok(v) => good.push(v),
                Err(e) => errors.push(e),
            },
            Loaded::Rejected(e) => errors.push(e.clone()),
            Loaded::Missing => {}
        }
    }
    // Prefer a license that fits this verifier, then one usable now, then
    // the one issued last.
    good.sort_by_key(|v| (fits(v), usable(v), v.license.issued_at));
    match good.pop() {
        Some(v) => Loaded::Good(v),
        None if errors.is_empty() => Loaded::Missing,
        None => Loaded::Rejected(errors.join("; ")),
    }
}

/// Verifies the revocation list read from `path`.
pub fn revocations_from(
    path: &Path,
    read: Loaded<Vec<u8>>,
    trust: &Trust,
) -> Loaded<VerifiedRevocationList> {
    match read {
        Loaded::Missing => Loaded::Missing,
        Loaded::Rejected(e) => Loaded::Rejected(e),
        Loaded::Good(bytes) => match verify_revocation_list(&bytes, &trust.revokers) {
            Ok(v) => Loaded::Good(v),
            Err(e) => Loaded::Rejected(format!(
                "{}: {}",
                path.display(),
                explained(&e, trust, Role::Revoker)
            )),
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
    fingerprint_with(paths, &mut |_| {})
}

fn fingerprint_with(paths: &[&Path], progress: &mut dyn FnMut(&Path)) -> Vec<FileStamp> {
    let mut out = Vec::new();
    for p in paths {
        progress(p);
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

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn special_files_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("license.lic");
        let ok = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(ok.success());
        // Without O_NONBLOCK this would wait forever for a writer.
        let Loaded::Rejected(why) = read_regular(&fifo, 10, SIGNED_FILE) else {
            panic!("a FIFO must be refused");
        };
        assert!(
            why.ends_with("license.lic is a FIFO, not a regular file; replace it with the signed file from your vendor"),
            "{why}"
        );
        let Loaded::Rejected(why) = read_regular(dir.path(), 10, KEYS_FILE) else {
            panic!("a folder must be refused");
        };
        assert!(why.contains("is a folder, not a regular file"), "{why}");
        let Loaded::Rejected(why) = read_regular(Path::new("/dev/zero"), 10, SIGNED_FILE) else {
            panic!("a device must be refused");
        };
        assert!(why.contains("is a device"), "{why}");
    }

    #[test]
    fn symlinks_to_regular_files_are_followed_and_sizes_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::write(&real, b"hello").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(matches!(read_regular(&link, 5, SIGNED_FILE), Loaded::Good(b) if b == b"hello"));
        assert!(
            matches!(read_regular(&link, 4, SIGNED_FILE), Loaded::Rejected(e) if e.contains("larger than 4 bytes"))
        );
        assert!(matches!(
            read_regular(&dir.path().join("nope"), 4, SIGNED_FILE),
            Loaded::Missing
        ));
    }
}
