//! One connection: hyper's HTTP/1 state machine plus a supervisor that
//! enforces the timeouts, yields to pressure and follows shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tower::ServiceExt as _;

use super::track::{Active, Due, Track, Tracked};
use super::{Limits, EVICT_MIN_IDLE};

/// Everything a connection task needs; the permit is released when it ends.
pub(super) struct Conn {
    pub(super) app: Router,
    pub(super) peer: SocketAddr,
    pub(super) limits: Limits,
    /// Bumped when the server is full: idle connections leave.
    pub(super) pressure: watch::Receiver<u64>,
    /// Set at shutdown.
    pub(super) stop: watch::Receiver<bool>,
    pub(super) _permit: OwnedSemaphorePermit,
}

impl Conn {
    pub(super) async fn run(mut self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let track = Track::new();
        let io = TokioIo::new(Tracked {
            inner: stream,
            track: track.clone(),
        });
        let (app, peer) = (self.app.clone(), self.peer);
        let svc_track = track.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            let active = svc_track.begin();
            req.extensions_mut().insert(ConnectInfo(peer));
            let call = app.clone().oneshot(req.map(Body::new));
            async move {
                let resp = match call.await {
                    Ok(r) => r,
                    Err(never) => match never {},
                };
                Ok::<_, Infallible>(resp.map(|b| {
                    Body::new(Guarded {
                        inner: b,
                        _active: active,
                    })
                }))
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .half_close(true)
            .keep_alive(true)
            // The supervisor below owns the header and idle timeouts.
            .header_read_timeout(None)
            .serve_connection(io, service);
        let mut conn = std::pin::pin!(conn);
        let mut closing = false;
        loop {
            let wake = match track.due(
                self.limits.header_read_timeout,
                self.limits.idle_timeout,
                std::time::Instant::now(),
            ) {
                Due::At(at) => at,
                Due::HeadTimeout => {
                    tracing::debug!(%peer, "request head not received in time; closing");
                    return;
                }
                Due::Idle => {
                    tracing::trace!(%peer, "idle connection closed");
                    return;
                }
            };
            tokio::select! {
                done = conn.as_mut() => {
                    if let Err(e) = done {
                        tracing::trace!(%peer, %e, "connection ended with an error");
                    }
                    return;
                }
                () = tokio::time::sleep_until(wake.into()) => {}
                () = track.head_began.notified() => {}
                changed = self.pressure.changed() => {
                    if changed.is_ok() && track.evictable(EVICT_MIN_IDLE) {
                        tracing::trace!(%peer, "server full: idle connection closed");
                        return;
                    }
                }
                changed = self.stop.changed(), if !closing => {
                    closing = true;
                    if changed.is_err() || track.evictable(std::time::Duration::ZERO) {
                        return;
                    }
                    // Finish the request in flight, then close.
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// A response body that keeps its request counted as in flight until the
/// body has been sent (or dropped), so streams are never taken for idle.
struct Guarded {
    inner: Body,
    _active: Active,
}

impl http_body::Body for Guarded {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
