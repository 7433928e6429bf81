//! `/console/events`: every console page's event stream. It says `status`
//! when a revocation list is published here, and when the console's
//! fingerprint ([`super::data::Ask::Pulse`]: clusters, heartbeats, latest
//! contact, newest upgrade request, newest audit row) changes, polled every
//! [`POLL`] (at most one such event per [`MIN_GAP`]) so what other replicas
//! took counts too. The shared live script then fetches the page's live
//! fragment (`/console/live`, `/console/inbox/live`, …).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

use super::data::{Answer, Ask};
use super::Console;

/// How often the fleet's fingerprint is read for each open page.
pub const POLL: Duration = Duration::from_secs(1);
/// After a heartbeat event, the next poll waits this long: a busy fleet
/// refreshes an open page at most this often (each refresh reads the fleet).
pub const MIN_GAP: Duration = Duration::from_secs(3);
/// A stream ends after this (the browser reconnects by itself).
pub const STREAM_FOR: Duration = Duration::from_secs(300);

async fn pulse(c: &Console) -> Option<[u64; 5]> {
    match c.st.storage.console(Ask::Pulse).await {
        Ok(Answer::Pulse(p)) => Some(p),
        _ => None,
    }
}

/// `GET /console/events` (signed in).
pub(crate) async fn events(State(c): State<Console>) -> Response {
    let lists = c.st.revocations.subscribe();
    let stop = c.st.shutdown.clone();
    let last = pulse(&c).await;
    let until = Instant::now() + STREAM_FOR;
    let next = Instant::now() + POLL;
    let stream = futures_util::stream::unfold(
        (c, last, lists, stop, until, next),
        |(c, mut last, mut lists, mut stop, until, mut next)| async move {
            loop {
                let what = tokio::select! {
                    () = stop.recv() => return None,
                    () = tokio::time::sleep_until(until) => return None,
                    changed = lists.changed() => match changed {
                        Ok(()) => "publish",
                        Err(_) => return None,
                    },
                    () = tokio::time::sleep_until(next) => {
                        let now = pulse(&c).await;
                        next = Instant::now() + POLL;
                        if now.is_none() || now == last {
                            continue;
                        }
                        last = now;
                        next = Instant::now() + MIN_GAP;
                        "changed"
                    }
                };
                let event = Event::default().event("status").data(what);
                return Some((
                    Ok::<_, Infallible>(event),
                    (c, last, lists, stop, until, next),
                ));
            }
        },
    );
    let mut resp = Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response();
    kaching_kit::web::secure(&mut resp);
    resp
}
