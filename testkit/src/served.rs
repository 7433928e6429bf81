//! A daemon's `run(listener, config, shutdown)` served in this process.

use std::future::Future;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{wait_until, Json, WAIT};

/// A daemon served in-process on 127.0.0.1 port 0 until [`Served::stop`].
pub struct Served {
    /// A client for it (`json.base` is `http://127.0.0.1:PORT`).
    pub json: Json,
    /// The address it listens on, for tests that speak raw TCP to it.
    pub addr: std::net::SocketAddr,
    /// Fires the shutdown future handed to `run`.
    stop: Option<oneshot::Sender<()>>,
    /// The `run` task: its result is the daemon's exit.
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Served {
    /// Binds port 0 and spawns `run(listener, shutdown)`; returns once
    /// `/healthz` answers, or the error `run` ended with.
    pub async fn start<R, Fut>(run: R) -> anyhow::Result<Served>
    where
        R: FnOnce(
            tokio::net::TcpListener,
            std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
        ) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let json = Json::new(format!("http://{addr}"));
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(run(
            listener,
            Box::pin(async move {
                let _ = rx.await;
            }),
        ));
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if task.is_finished() {
                task.await??;
                anyhow::bail!("the daemon stopped before answering");
            }
            if json.answers().await {
                return Ok(Served {
                    json,
                    addr,
                    stop: Some(tx),
                    task: Some(task),
                });
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("the daemon did not answer /healthz within {WAIT:?}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.json.base
    }

    /// Shuts the daemon down and waits for `run` to return; panics if it
    /// failed or did not stop within [`WAIT`].
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let mut task = Some(task);
            let result = wait_until("the daemon to stop", || {
                let done = task.as_ref().is_some_and(|t| t.is_finished());
                let t = if done { task.take() } else { None };
                async move {
                    match t {
                        Some(t) => Some(t.await),
                        None => None,
                    }
                }
            })
            .await;
            result.unwrap().unwrap();
        }
    }
}
