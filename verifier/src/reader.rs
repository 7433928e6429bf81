//! The reader thread: the only place the daemon reads the watched files.
//!
//! The engine thread owns state and verdicts and must never wait on a file:
//! a file system that hangs (a dead network mount) would otherwise freeze
//! every decision, including the time-driven ones (expiry, grace, overdue).
//! So the engine only *asks* for a read ([`Reader::request`]); this thread
//! compares the files' stamps, reads them when they changed (regular files
//! only, bounded in size: see [`crate::loader`]) and sends the bytes back as
//! [`crate::actor::Command::Files`]. Requests that arrive while a pass runs
//! are coalesced into one more pass. A pass stuck in the kernel is visible
//! through [`Reader::stuck`], so the engine can say so in status.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::loader::{self, FileSet, FileStamp, Watched};

struct State {
    /// Requests made so far; a pass serves every request made before it began.
    requested: u64,
    /// Read even when the stamps did not change (the engine wrote a file).
    force: bool,
    stop: bool,
    /// The path being touched by the pass in progress, and since when.
    busy: Option<(PathBuf, Instant)>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is plain counters: still consistent after a panic elsewhere.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn note(&self, path: &Path) {
        self.lock().busy = Some((path.to_path_buf(), Instant::now()));
    }
}

/// The engine's handle on the reader thread. Dropping it stops the thread
/// once its current pass ends.
pub struct Reader {
    shared: Arc<Shared>,
}

impl Reader {
    /// Starts the thread. `last` is the stamps of the files the engine has
    /// in force (a pass that finds the same stamps reads nothing);
    /// `deliver` gets every pass that read, and returns false when nobody is
    /// listening any more.
    pub fn spawn(
        watched: Watched,
        mut last: Vec<FileStamp>,
        mut deliver: impl FnMut(FileSet) -> bool + Send + 'static,
    ) -> std::io::Result<Reader> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                requested: 0,
                force: false,
                stop: false,
                busy: None,
            }),
            wake: Condvar::new(),
        });
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("kaching-reader".into())
            .spawn(move || {
                let shared = thread_shared;
                let mut served = 0u64;
                loop {
                    let (seq, force) = {
                        let mut st = shared.lock();
                        while !st.stop && st.requested == served {
                            st = shared.wake.wait(st).unwrap_or_else(PoisonError::into_inner);
                        }
                        if st.stop {
                            return;
                        }
                        (st.requested, std::mem::take(&mut st.force))
                    };
                    served = seq;
                    let mut progress = |p: &Path| shared.note(p);
                    let stamps = watched.fingerprint(&mut progress);
                    if stamps == last && !force {
                        shared.lock().busy = None;
                        continue;
                    }
                    let mut set = loader::read_files(&watched, seq, stamps, &mut progress);
                    // A file that changed while it was read may be half
                    // written: read again until the stamps hold still
                    // (bounded; whatever is read is verified anyway).
                    for _ in 0..3 {
                        let after = watched.fingerprint(&mut progress);
                        if after == set.fingerprint {
                            break;
                        }
                        set = loader::read_files(&watched, seq, after, &mut progress);
                    }
                    shared.lock().busy = None;
                    last.clone_from(&set.fingerprint);
                    if !deliver(set) {
                        return;
                    }
                }
            })?;
        Ok(Reader { shared })
    }

    /// Asks for a pass (coalesced with any already pending); returns the
    /// request's number.
    pub fn request(&self) -> u64 {
        let mut st = self.shared.lock();
        st.requested += 1;
        self.shared.wake.notify_one();
        st.requested
    }

    /// Asks for a pass that reads even if the stamps look unchanged; passes
    /// numbered below the returned value began before this call.
    pub fn request_fresh(&self) -> u64 {
        let mut st = self.shared.lock();
        st.requested += 1;
        st.force = true;
        self.shared.wake.notify_one();
        st.requested
    }

    /// The path a pass has been stuck on for at least `after`, if any.
    pub fn stuck(&self, after: Duration) -> Option<PathBuf> {
        let st = self.shared.lock();
        st.busy
            .as_ref()
            .filter(|(_, since)| since.elapsed() >= after)
            .map(|(p, _)| p.clone())
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
    }
}

/// Reads every watched file once on a helper thread and waits at most
/// `wait` for it: `None` when the read did not finish in time (the helper
/// is left to finish or hang on its own; it holds nothing else).
pub fn read_within(watched: &Watched, wait: Duration) -> Option<FileSet> {
    let (tx, rx) = std::sync::mpsc::channel();
    let w = watched.clone();
    let spawned = std::thread::Builder::new()
        .name("kaching-first-read".into())
        .spawn(move || {
            let stamps = w.fingerprint(&mut |_| {});
            let _ = tx.send(loader::read_files(&w, 0, stamps, &mut |_| {}));
        });
    if let Err(e) = spawned {
        tracing::warn!(%e, "cannot start a thread to read the license files");
        return None;
    }
    rx.recv_timeout(wait).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loader::{LicenseBytes, Loaded};

    fn watched(dir: &Path) -> Watched {
        Watched {
            license: dir.join("license.lic"),
            trusted_keys: dir.join("vendor.pub"),
            revocations: dir.join("revocations.krl"),
            roots: dir.join("roots"),
        }
    }

    #[test]
    fn passes_read_only_changes_and_coalesce_requests() {
        let dir = tempfile::tempdir().unwrap();
        let w = watched(dir.path());
        std::fs::write(&w.license, b"one").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = Reader::spawn(w.clone(), Vec::new(), move |set| tx.send(set).is_ok()).unwrap();
        for _ in 0..100 {
            reader.request();
        }
        let first = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(matches!(&first.license, LicenseBytes::File(Loaded::Good(b)) if b == b"one"));
        assert!(matches!(first.revocations, Loaded::Missing));
        // Nothing changed since: at most the one pass already queued, and it
        // reads nothing.
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
        std::fs::write(dir.path().join("new"), b"two").unwrap();
        std::fs::rename(dir.path().join("new"), &w.license).unwrap();
        let seq = reader.request();
        let second = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(second.seq >= seq);
        assert!(matches!(&second.license, LicenseBytes::File(Loaded::Good(b)) if b == b"two"));
        // A fresh request reads even without a change.
        let seq = reader.request_fresh();
        assert!(rx.recv_timeout(Duration::from_secs(5)).unwrap().seq >= seq);
        assert!(reader.stuck(Duration::ZERO).is_none());
    }
}
