//! Fan-out: one connection per replica `LISTEN`s for what other replicas publish.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_postgres::{AsyncMessage, NoTls};

use super::CHANNEL;

/// Keeps a `LISTEN` connection open, reconnecting after a loss; ticks
/// `ticks` on each notification and on each (re)connection (anything
/// published while it was away is then read from the tables).
pub async fn listen_loop(url: String, ticks: watch::Sender<u64>) {
    let mut backoff = Duration::from_millis(250);
    loop {
        match listen_once(&url, &ticks).await {
            Ok(()) => backoff = Duration::from_millis(250),
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "lost the PostgreSQL LISTEN connection; reconnecting"
                );
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn listen_once(url: &str, ticks: &watch::Sender<u64>) -> anyhow::Result<()> {
    let (client, mut connection) = tokio_postgres::connect(url, NoTls).await?;
    let (note_tx, mut notes) = mpsc::unbounded_channel::<()>();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notification(_)) => {
                    if note_tx.send(()).is_err() {
                        return Ok(());
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    // Listening from here on: whatever came before is read from the tables.
    ticks.send_modify(|n| *n = n.wrapping_add(1));
    while notes.recv().await.is_some() {
        ticks.send_modify(|n| *n = n.wrapping_add(1));
    }
    drop(client);
    driver.await??;
    anyhow::bail!("the LISTEN connection closed")
}
