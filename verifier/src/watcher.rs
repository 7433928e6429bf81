//! Watches the folders holding the license, revocation list and trusted keys.
//!
//! The parent folder is watched, not the file: editors and `cp` replace files
//! (a new inode), which a watch on the old file would miss. Events are
//! debounced so a burst of writes becomes one reload.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_mini::{new_debouncer, DebounceEventResult, Debouncer};
use tokio::sync::mpsc::UnboundedSender;

use crate::actor::Command;
use crate::config::Config;

/// Keeps the watch alive; dropping it stops watching.
pub struct Watcher {
    _debouncer: Debouncer<RecommendedWatcher>,
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
    let mut debouncer = new_debouncer(cfg.debounce, move |res: DebounceEventResult| {
        let Ok(events) = res else {
            // On a watcher error reload anyway: better a spare reload than a missed one.
            let _ = tx.send(Command::Reload);
            return;
        };
        let in_dir = |e: &notify_debouncer_mini::DebouncedEvent, d: &Option<PathBuf>| {
            d.as_ref().is_some_and(|d| {
                e.path
                    .parent()
                    .and_then(|p| std::fs::canonicalize(p).ok())
                    .as_ref()
                    == Some(d)
            })
        };
        let relevant = events.iter().any(|e| {
            e.path.file_name().is_some_and(|n| names.contains(n))
                || in_dir(e, &license_dir)
                || in_dir(e, &roots_dir)
        });
        if relevant {
            let _ = tx.send(Command::Reload);
        }
    })?;
    for d in &dirs {
        if d.is_dir() {
            debouncer.watcher().watch(d, RecursiveMode::NonRecursive)?;
        } else {
            tracing::warn!(folder = %d.display(), "folder does not exist; not watched (re-checked every tick)");
        }
    }
    Ok(Watcher {
        _debouncer: debouncer,
    })
}
