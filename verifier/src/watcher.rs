//! Watches the folders holding the license, revocation list and trusted keys.
//!
//! The parent folder is watched, not the file: editors and `cp` replace files
//! (a new inode), which a watch on the old file would miss.
//!
//! A change is *complete* when a file was renamed into place, created, removed
//! or closed after writing: the reload is asked for at once (a few
//! milliseconds from the rename to the new verdict). A write in place that is
//! not followed by a close (a writer keeping the file open) is only taken
//! once the file has been quiet for `debounce`, so a half-written file is not
//! read on its account. Either way the reader verifies what it reads, and a
//! file that does not verify never replaces the one in force.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc::UnboundedSender;

use crate::actor::Command;
use crate::config::Config;

/// Keeps the watch alive; dropping it stops watching.
pub struct Watcher {
    _watcher: RecommendedWatcher,
}

/// What one file event means for the files we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    /// The file is complete: reload now.
    Now,
    /// Written in place and maybe still being written: reload once quiet.
    Quiet,
}

fn signal_of(kind: &EventKind) -> Option<Signal> {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write))
        | EventKind::Create(_)
        | EventKind::Remove(_)
        | EventKind::Modify(ModifyKind::Name(_)) => Some(Signal::Now),
        EventKind::Modify(_) | EventKind::Any | EventKind::Other => Some(Signal::Quiet),
        // Reads (our own included) change nothing.
        EventKind::Access(_) => None,
    }
}

/// Turns signals into reloads: `Now` at once, `Quiet` after `settle` without
/// another event. Ends when the watcher (the sender) is dropped.
fn settle(rx: mpsc::Receiver<Signal>, settle: Duration, tx: UnboundedSender<Command>) {
    let mut due: Option<Instant> = None;
    loop {
        let got = match due {
            None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            Some(at) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
        };
        let reload = match got {
            Ok(Signal::Now) => true,
            Ok(Signal::Quiet) => {
                due = Some(Instant::now() + settle);
                false
            }
            Err(mpsc::RecvTimeoutError::Timeout) => true,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        if reload {
            due = None;
            if tx.send(Command::Reload).is_err() {
                return;
            }
        }
    }
}

fn parent(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Starts watching; each relevant change sends one [`Command::Reload`].
/// Folders that do not exist are skipped (the periodic re-check still notices
/// files appearing there).
pub fn spawn(cfg: &Config, tx: UnboundedSender<Command>) -> anyhow::Result<Watcher> {
    let mut dirs = BTreeSet::new();
    let mut names: BTreeSet<OsString> = BTreeSet::new();
    let mut license_dir = None;
    if cfg.license.is_dir() {
        dirs.insert(cfg.license.clone());
        license_dir = std::fs::canonicalize(&cfg.license).ok();
    } else {
        dirs.insert(parent(&cfg.license));
    }
    for p in [&cfg.license, &cfg.trusted_keys, &cfg.revocations] {
        if let Some(n) = p.file_name() {
            names.insert(n.to_os_string());
        }
    }
    dirs.insert(parent(&cfg.trusted_keys));
    dirs.insert(parent(&cfg.revocations));
    // Newer roots dropped into the roots/ folder beside the trusted keys.
    let roots = cfg.watched().roots;
    if let Some(n) = roots.file_name() {
        names.insert(n.to_os_string());
    }
    let roots_dir = std::fs::canonicalize(&roots).ok();
    if roots.is_dir() {
        dirs.insert(roots);
    }
    let (sig_tx, sig_rx) = mpsc::channel();
    let quiet = cfg.debounce;
    std::thread::Builder::new()
        .name("kaching-watch".into())
        .spawn(move || settle(sig_rx, quiet, tx))?;
    let in_dir = |path: &Path, d: &Option<PathBuf>| {
        d.as_ref().is_some_and(|d| {
            path.parent()
                .and_then(|p| std::fs::canonicalize(p).ok())
                .as_ref()
                == Some(d)
        })
    };
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let signal = match res {
            // On a watcher error reload anyway: better a spare reload than a missed one.
            Err(_) => Some(Signal::Now),
            Ok(event) => signal_of(&event.kind).filter(|_| {
                event.paths.iter().any(|p| {
                    p.file_name().is_some_and(|n| names.contains(n))
                        || in_dir(p, &license_dir)
                        || in_dir(p, &roots_dir)
                })
            }),
        };
        if let Some(s) = signal {
            let _ = sig_tx.send(s);
        }
    })?;
    for d in &dirs {
        if d.is_dir() {
            watcher.watch(d, RecursiveMode::NonRecursive)?;
        } else {
            tracing::warn!(folder = %d.display(), "folder does not exist; not watched (re-checked every tick)");
        }
    }
    Ok(Watcher { _watcher: watcher })
}
