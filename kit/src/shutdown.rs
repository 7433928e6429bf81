//! Stopping a daemon: the signal that starts it, a broadcast every task
//! listens to, and a way to learn that they have all finished.
//!
//! A [`Shutdown`] hands out [`Listener`]s. [`Trigger::fire`] (or
//! [`Shutdown::completed`]) flips them all at once; a `watch` channel rather
//! than a broadcast, so that a listener made or polled after the flip still
//! sees it. Each listener also holds a sender of a channel nobody sends on:
//! when the last listener is dropped the channel closes, which is how
//! [`Shutdown::completed`] knows every task is done.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

/// Completes on SIGTERM (what systemd and `kill` send) or Ctrl-C (SIGINT).
/// The handlers are installed when this is called, not when the future is
/// first polled: call it before the daemon announces its address, so a
/// SIGTERM sent as soon as it answers stops it cleanly instead of killing
/// it. Where SIGTERM cannot be watched, Ctrl-C alone.
///
/// SIGHUP is caught too (its default action would kill the daemon in a way
/// `Restart=on-failure` takes for a clean stop) and does not stop it: it is
/// logged at info. [`signal_with_hangup`] says what a daemon does on it.
pub fn signal() -> impl std::future::Future<Output = ()> {
    signal_with_hangup(|| {
        tracing::info!("SIGHUP: ignored; the daemon keeps running (stop it with SIGTERM)");
    })
}

/// [`signal`], calling `on_hangup` on every SIGHUP instead of the default
/// log line (from the future, so only once it is polled; the handler that
/// keeps SIGHUP from killing the process is installed at once).
pub fn signal_with_hangup(
    on_hangup: impl Fn() + Send + 'static,
) -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let handlers = {
        use tokio::signal::unix::{signal, SignalKind};
        signal(SignalKind::terminate())
            .and_then(|term| Ok((term, signal(SignalKind::interrupt())?)))
            .ok()
    };
    // Apart from the others: failing to catch SIGHUP must not cost SIGTERM.
    #[cfg(unix)]
    let hangup = {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::hangup()) {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(%e, "cannot catch SIGHUP: it will stop the daemon");
                None
            }
        }
    };
    async move {
        #[cfg(unix)]
        if let Some((mut term, mut int)) = handlers {
            let mut hangup = hangup;
            loop {
                let hup = async {
                    match hangup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                };
                let mut gone = false;
                tokio::select! {
                    _ = term.recv() => return,
                    _ = int.recv() => return,
                    got = hup => match got {
                        Some(()) => on_hangup(),
                        None => gone = true,
                    },
                }
                if gone {
                    hangup = None;
                }
            }
        }
        #[cfg(not(unix))]
        let _ = &on_hangup;
        // No handler could be installed: a failure to listen is no reason to stop.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The owning side: makes listeners, and waits for them after the flip.
#[derive(Debug)]
pub struct Shutdown {
    /// The flag every listener watches; shared with [`Trigger`]s.
    flag: Arc<watch::Sender<bool>>,
    /// Cloned into every listener; dropped by [`Shutdown::completed`] so the
    /// channel closes when the last listener goes.
    alive: mpsc::Sender<()>,
    /// Yields `None` once every sender (ours and the listeners') is gone.
    done: mpsc::Receiver<()>,
}

/// Flips the shutdown flag; cheap to clone into a signal handler or a future.
#[derive(Debug, Clone)]
pub struct Trigger {
    /// The flag shared with the [`Shutdown`] that made this trigger.
    flag: Arc<watch::Sender<bool>>,
}

/// A task's view of shutdown. Keep it for as long as the task runs:
/// dropping it is how the task says it has finished.
#[derive(Debug, Clone)]
pub struct Listener {
    /// True once shutdown started.
    flag: watch::Receiver<bool>,
    /// Never sent on; its drop counts this task as done.
    _alive: mpsc::Sender<()>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A shutdown not yet started.
    pub fn new() -> Self {
        let (flag, _) = watch::channel(false);
        let (alive, done) = mpsc::channel(1);
        Shutdown {
            flag: Arc::new(flag),
            alive,
            done,
        }
    }

    /// A new listener for one task.
    pub fn listener(&self) -> Listener {
        Listener {
            flag: self.flag.subscribe(),
            _alive: self.alive.clone(),
        }
    }

    /// A handle that starts the shutdown from elsewhere.
    pub fn trigger(&self) -> Trigger {
        Trigger {
            flag: self.flag.clone(),
        }
    }

    /// Starts the shutdown (if not started yet) and waits until every
    /// listener has been dropped. Bound it with `tokio::time::timeout` when
    /// a task may hang.
    pub async fn completed(self) {
        let Shutdown {
            flag,
            alive,
            mut done,
        } = self;
        flag.send_replace(true);
        drop(alive);
        // Nobody sends, so this returns `None` exactly when the channel closes.
        let _ = done.recv().await;
    }
}

impl Trigger {
    /// Starts the shutdown: every listener sees it at once.
    pub fn fire(&self) {
        // send_replace stores the value even when no listener exists yet.
        self.flag.send_replace(true);
    }
}

impl Listener {
    /// True once shutdown started.
    pub fn is_shutdown(&self) -> bool {
        *self.flag.borrow()
    }

    /// Waits until shutdown starts (returns at once if it has). Also returns
    /// when the [`Shutdown`] and every [`Trigger`] are gone, since nobody can
    /// start it any more and a task waiting for it would wait forever.
    pub async fn recv(&mut self) {
        let _ = self.flag.wait_for(|stop| *stop).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;

    const BOUND: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn every_listener_sees_the_flip_even_one_made_late() {
        let shutdown = Shutdown::new();
        let mut early = shutdown.listener();
        assert!(!early.is_shutdown());
        let waiting = tokio::spawn(async move { early.recv().await });
        shutdown.trigger().fire();
        tokio::time::timeout(BOUND, waiting).await.unwrap().unwrap();
        let mut late = shutdown.listener();
        assert!(late.is_shutdown());
        tokio::time::timeout(BOUND, late.recv()).await.unwrap();
    }

    #[tokio::test]
    async fn completed_waits_for_the_last_listener() {
        let shutdown = Shutdown::new();
        let (finished_tx, mut finished_rx) = mpsc::unbounded_channel();
        for n in 0..3u64 {
            let mut l = shutdown.listener();
            let finished = finished_tx.clone();
            tokio::spawn(async move {
                l.recv().await;
                // Clean-up takes a while; `completed` must wait for it.
                tokio::time::sleep(Duration::from_millis(20 * n)).await;
                let _ = finished.send(n);
                drop(l);
            });
        }
        drop(finished_tx);
        tokio::time::timeout(BOUND, shutdown.completed())
            .await
            .unwrap();
        let mut seen = Vec::new();
        while let Ok(n) = finished_rx.try_recv() {
            seen.push(n);
        }
        seen.sort_unstable();
        assert_eq!(seen, [0, 1, 2]);
    }

    #[tokio::test]
    async fn a_listener_whose_shutdown_is_gone_does_not_wait_forever() {
        let shutdown = Shutdown::new();
        let mut l = shutdown.listener();
        drop(shutdown);
        tokio::time::timeout(BOUND, l.recv()).await.unwrap();
    }
}
