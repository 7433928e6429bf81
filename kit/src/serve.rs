//! The HTTP/1 server loop both daemons use, built so that no client can
//! starve the others of connections:
//!
//! - at most `max_connections` are open; when all are taken, connections with
//!   no request in flight are closed to make room (newest requests win over
//!   idle sockets), and further clients wait in the kernel's backlog, which
//!   costs this process no file descriptor;
//! - a request head must arrive within `header_read_timeout` of its first
//!   byte (slowloris), and a connection with no request in flight is closed
//!   after `idle_timeout` without a byte (idle keep-alive, or never spoke);
//! - a client that half-closes its socket after sending a request still gets
//!   its answer;
//! - on shutdown no new connection is accepted, idle ones close, requests in
//!   flight get `drain_timeout` to finish.
//!
//! Per-request deadlines are the router's business ([`request_timeout`]),
//! because the long-poll and event-stream routes bound their own lifetimes.

mod conn;
mod track;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::response::Response;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// Bounds on connections. See docs/verifier.md and docs/relay.md.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections at most (already reduced with [`crate::rlimit::connection_cap`]).
    pub max_connections: usize,
    /// From the first byte of a request to its complete head.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight and no byte received for this long is closed.
    pub idle_timeout: Duration,
    /// At shutdown, requests still running after this long are cut off.
    pub drain_timeout: Duration,
}

/// How long a connection must have been idle before pressure may close it:
/// long enough for the last response to leave hyper's buffers and for a new
/// client to send its first request line.
const EVICT_MIN_IDLE: Duration = Duration::from_millis(100);

/// How often a full server re-asks idle connections to leave while it waits.
const PRESSURE_EVERY: Duration = Duration::from_millis(50);

/// Serves `app` on `listener` until `shutdown` completes, then drains.
///
/// Every request carries `axum::extract::ConnectInfo<SocketAddr>` of its peer.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (pressure_tx, pressure_rx) = watch::channel(0u64);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    'accept: loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => loop {
                // Full: ask idle connections to leave, then wait for a slot.
                pressure_tx.send_modify(|g| *g = g.wrapping_add(1));
                tokio::select! {
                    p = permits.clone().acquire_owned() => match p {
                        Ok(p) => break p,
                        Err(_) => break 'accept,
                    },
                    () = tokio::time::sleep(PRESSURE_EVERY) => {}
                    () = &mut shutdown => break 'accept,
                }
            },
        };
        while conns.try_join_next().is_some() {}
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let task = conn::Conn {
                        app: app.clone(),
                        peer,
                        limits,
                        pressure: pressure_rx.clone(),
                        stop: stop_rx.clone(),
                        _permit: permit,
                    };
                    conns.spawn(task.run(stream));
                }
                Err(e) if is_per_connection(&e) => {}
                Err(e) => {
                    // Out of descriptors (EMFILE/ENFILE) or memory: shed idle
                    // connections and retry shortly instead of spinning.
                    tracing::warn!(%e, "accept failed; closing idle connections and retrying");
                    pressure_tx.send_modify(|g| *g = g.wrapping_add(1));
                    tokio::time::sleep(PRESSURE_EVERY).await;
                }
            },
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(limits.drain_timeout, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = conns.len(),
            "requests still running after the drain timeout; cutting them off"
        );
        conns.abort_all();
    }
    Ok(())
}

/// Prints `listening on ADDR` on stdout and returns the bound address:
/// scripts and tests read the line to learn the port (port 0 picks one).
/// A closed stdout is logged, not returned: nobody reading is no reason to
/// stop serving.
pub fn announce(listener: &TcpListener) -> std::io::Result<std::net::SocketAddr> {
    let addr = listener.local_addr()?;
    if let Err(e) = crate::stdout::println(&format!("listening on {addr}")) {
        tracing::debug!(%e, "cannot print the listening address");
    }
    Ok(addr)
}

/// Binds `addr` for one of the binaries' servers; on failure, says why in
/// words an operator can act on: another process holds the port, the port
/// needs privileges, the address is not this machine's. `setting` names
/// where the address is set (`` `listen` `` in a config file, `--listen`).
pub async fn bind(addr: std::net::SocketAddr, setting: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| cannot_listen(&addr, &e, setting))
}

/// Why `addr` could not be bound, and what to do (see [`bind`]).
pub fn cannot_listen(addr: &dyn std::fmt::Display, e: &std::io::Error, setting: &str) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        AddrInUse => format!(
            "cannot listen on {addr}: another process is using it ({e}): stop it, or set another {setting}"
        ),
        PermissionDenied => format!(
            "cannot listen on {addr}: not permitted ({e}): ports below 1024 need privileges; pick a higher port in {setting}"
        ),
        AddrNotAvailable => format!(
            "cannot listen on {addr}: {e}: it is not an address of this machine; check {setting}"
        ),
        _ => format!(
            "cannot listen on {addr}: {e}: check {setting} (HOST:PORT, an address of this machine)"
        ),
    }
}

/// Accept errors that concern one connection only (the peer gave up).
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock
    )
}

/// Wraps every route of `router` in a per-request deadline; a request still
/// running after `timeout` gets `on_timeout(timeout)` (a JSON error body).
/// Apply it to the short routes only, before merging the long-poll and SSE
/// routes, which bound their own lifetimes.
///
/// A tower layer rather than `axum::middleware::from_fn`: per request it
/// costs the deadline's timer and nothing else (no boxed `Next`, no clone of
/// the inner service, no boxed future).
pub fn request_timeout(
    router: Router,
    timeout: Duration,
    on_timeout: fn(Duration) -> Response,
) -> Router {
    router.layer(Deadline {
        timeout,
        on_timeout,
    })
}

/// The layer [`request_timeout`] applies.
#[derive(Clone, Copy)]
struct Deadline {
    timeout: Duration,
    on_timeout: fn(Duration) -> Response,
}

impl<S> tower::Layer<S> for Deadline {
    type Service = DeadlineService<S>;

    fn layer(&self, inner: S) -> DeadlineService<S> {
        DeadlineService { inner, cfg: *self }
    }
}

/// A service whose calls end at the deadline.
#[derive(Clone)]
struct DeadlineService<S> {
    inner: S,
    cfg: Deadline,
}

impl<S, B> tower::Service<axum::http::Request<B>> for DeadlineService<S>
where
    S: tower::Service<axum::http::Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = DeadlineFuture<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: axum::http::Request<B>) -> Self::Future {
        DeadlineFuture {
            inner: self.inner.call(req),
            sleep: tokio::time::sleep(self.cfg.timeout),
            cfg: self.cfg,
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner call raced against its deadline.
    struct DeadlineFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: tokio::time::Sleep,
        cfg: Deadline,
    }
}

impl<F, E> Future for DeadlineFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        // The answer first, as `tokio::time::timeout` does: one that is ready
        // when the deadline passes still goes out.
        if let std::task::Poll::Ready(r) = this.inner.poll(cx) {
            return std::task::Poll::Ready(r);
        }
        match this.sleep.poll(cx) {
            std::task::Poll::Ready(()) => {
                std::task::Poll::Ready(Ok((this.cfg.on_timeout)(this.cfg.timeout)))
            }
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_port_in_use_or_an_address_elsewhere_is_named_with_what_to_do() {
        let held = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = held.local_addr().unwrap();
        let e = bind(addr, "`listen`").await.unwrap_err();
        assert!(
            e.contains(&format!(
                "cannot listen on {addr}: another process is using it"
            )) && e.ends_with("stop it, or set another `listen`"),
            "{e}"
        );
        // TEST-NET-1: not an address of this machine, no one else to blame.
        let elsewhere = "192.0.2.1:7878".parse().unwrap();
        let e = bind(elsewhere, "--listen").await.unwrap_err();
        assert!(
            e.starts_with("cannot listen on 192.0.2.1:7878")
                && !e.contains("another process")
                && e.contains("--listen"),
            "{e}"
        );
    }
}
