//! What one connection is doing, shared between its socket (which sees
//! bytes arrive), its requests (which begin and end) and its supervisor
//! (which enforces the timeouts). Lock-free: a few atomics per connection.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Milliseconds since the connection opened, plus one (0 means "not set").
type Stamp = AtomicU64;

/// One connection's activity.
#[derive(Debug)]
pub(super) struct Track {
    opened: Instant,
    /// Requests whose head has been parsed and whose response has not ended.
    active: AtomicUsize,
    /// When the current idle spell began (connection opened or last response ended).
    idle_since: Stamp,
    /// First byte of a request head received while idle; cleared when the request begins.
    head_started: Stamp,
    /// Wakes the supervisor when a head starts, so its deadline moves up.
    pub(super) head_began: tokio::sync::Notify,
}

/// What the supervisor should do now.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Due {
    /// Nothing yet; look again at this instant.
    At(Instant),
    /// The head did not arrive in time: cut the connection.
    HeadTimeout,
    /// No request and no byte for the idle timeout: close it.
    Idle,
}

impl Track {
    pub(super) fn new() -> Arc<Track> {
        Arc::new(Track {
            opened: Instant::now(),
            active: AtomicUsize::new(0),
            idle_since: AtomicU64::new(1),
            head_started: AtomicU64::new(0),
            head_began: tokio::sync::Notify::new(),
        })
    }

    fn stamp(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    fn instant(&self, stamp: u64) -> Instant {
        self.opened + Duration::from_millis(stamp.saturating_sub(1))
    }

    /// Bytes arrived on the socket.
    fn received(&self) {
        if self.active.load(Ordering::Acquire) == 0
            && self.head_started.load(Ordering::Acquire) == 0
        {
            let first = self
                .head_started
                .compare_exchange(0, self.stamp(), Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
            if first {
                self.head_began.notify_one();
            }
        }
    }

    /// A request head was parsed; the guard ends the request when dropped
    /// (with its response body, so a streamed response counts as in flight).
    pub(super) fn begin(self: &Arc<Self>) -> Active {
        self.active.fetch_add(1, Ordering::AcqRel);
        self.head_started.store(0, Ordering::Release);
        Active(self.clone())
    }

    /// True when no request is in flight and the connection has been idle
    /// (or stuck in a head) for at least `min`.
    pub(super) fn evictable(&self, min: Duration) -> bool {
        if self.active.load(Ordering::Acquire) != 0 {
            return false;
        }
        let since = self.idle_since.load(Ordering::Acquire);
        self.instant(since).elapsed() >= min
    }

    /// Applies the two timeouts as of `now`.
    pub(super) fn due(&self, header: Duration, idle: Duration, now: Instant) -> Due {
        if self.active.load(Ordering::Acquire) != 0 {
            // Look again later: the request may end and the idle clock start.
            return Due::At(now + idle.min(header));
        }
        let head = self.head_started.load(Ordering::Acquire);
        if head != 0 {
            let deadline = self.instant(head) + header;
            return if now >= deadline {
                Due::HeadTimeout
            } else {
                Due::At(deadline)
            };
        }
        let deadline = self.instant(self.idle_since.load(Ordering::Acquire)) + idle;
        if now >= deadline {
            Due::Idle
        } else {
            Due::At(deadline)
        }
    }
}

/// A request in flight; see [`Track::begin`].
#[derive(Debug)]
pub(super) struct Active(Arc<Track>);

impl Drop for Active {
    fn drop(&mut self) {
        let t = &self.0;
        // Stamp before the count drops so the supervisor never sees a stale idle start.
        if t.active.load(Ordering::Acquire) == 1 {
            t.idle_since.store(t.stamp(), Ordering::Release);
        }
        t.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The socket, reporting received bytes to its [`Track`].
pub(super) struct Tracked<S> {
    pub(super) inner: S,
    pub(super) track: Arc<Track>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.track.received();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Duration = Duration::from_secs(10);
    const I: Duration = Duration::from_secs(60);

    #[test]
    fn a_silent_connection_is_idle_after_the_idle_timeout() {
        let t = Track::new();
        let start = t.opened;
        assert_eq!(t.due(H, I, start), Due::At(start + I));
        assert_eq!(t.due(H, I, start + I), Due::Idle);
    }

    #[test]
    fn a_started_head_must_finish_within_the_header_timeout() {
        let t = Track::new();
        t.received();
        let head = t.instant(t.head_started.load(Ordering::Acquire));
        assert_eq!(
            t.due(H, I, head + H - Duration::from_millis(1)),
            Due::At(head + H)
        );
        assert_eq!(t.due(H, I, head + H), Due::HeadTimeout);
    }

    #[test]
    fn a_request_in_flight_is_never_due_nor_evictable() {
        let t = Track::new();
        t.received();
        let guard = t.begin();
        let later = t.opened + Duration::from_secs(3600);
        assert!(matches!(t.due(H, I, later), Due::At(_)));
        assert!(!t.evictable(Duration::ZERO));
        drop(guard);
        assert!(t.evictable(Duration::ZERO));
        assert_eq!(t.head_started.load(Ordering::Acquire), 0);
    }
}
