//! What every request passes before its route: the per-client rate limit
//! ([`crate::ratelimit`]) and, around it, the request metrics
//! ([`crate::metrics`]), so that a rate-limited request is counted too.
//!
//! One tower layer, applied with `Router::layer` so that the matched route
//! template (`/v1/licenses/{id}/status`, not the raw path) is known. It
//! replaces two `axum::middleware::from_fn` layers, each of which cloned and
//! boxed the inner service and boxed its future on every request
//! (docs/benchmarks.md, "Relay CPU per heartbeat").

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath};
use axum::http::{Method, Request};
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ErrorCode};
use crate::metrics::Metrics;
use crate::ratelimit::{self, Limiter};

/// The layer: a limiter and the metrics it reports to.
#[derive(Clone)]
pub struct Front {
    limiter: Limiter,
    metrics: Arc<Metrics>,
}

impl Front {
    /// The layer for `limiter` and `metrics`.
    pub fn new(limiter: Limiter, metrics: Arc<Metrics>) -> Self {
        Front { limiter, metrics }
    }
}

impl<S> tower::Layer<S> for Front {
    type Service = FrontService<S>;

    fn layer(&self, inner: S) -> FrontService<S> {
        FrontService {
            inner,
            front: self.clone(),
        }
    }
}

/// A route behind the limiter and the metrics.
#[derive(Clone)]
pub struct FrontService<S> {
    inner: S,
    front: Front,
}

/// What the metrics need of a request once it is answered.
pub struct Counted {
    metrics: Arc<Metrics>,
    route: Option<MatchedPath>,
    method: Method,
}

impl Counted {
    fn count(&self, resp: &Response) {
        let code = resp.extensions().get::<ErrorCode>().map(|c| c.0);
        self.metrics.request(
            self.route.as_ref().map(MatchedPath::as_str),
            &self.method,
            resp.status(),
            code,
        );
    }
}

impl<S, B> tower::Service<Request<B>> for FrontService<S>
where
    S: tower::Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = FrontFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let counted = Counted {
            metrics: self.front.metrics.clone(),
            // A clone of the matched path is a reference count, not a copy.
            route: req.extensions().get::<MatchedPath>().cloned(),
            method: req.method().clone(),
        };
        if self.front.limiter.enabled() {
            let refusal = match req.extensions().get::<ConnectInfo<SocketAddr>>() {
                Some(ConnectInfo(peer)) => self
                    .front
                    .limiter
                    .take(peer.ip(), Instant::now())
                    .err()
                    .map(|wait| ratelimit::refused(peer.ip(), wait)),
                // The server loop (kaching_kit::serve) gives every request
                // its peer; without one there is nothing to limit by.
                None => Some(
                    ApiError::internal("request without its peer address: cannot rate-limit it")
                        .into_response(),
                ),
            };
            if let Some(resp) = refusal {
                counted.count(&resp);
                return FrontFuture::Answered {
                    response: Some(resp),
                };
            }
        }
        FrontFuture::Running {
            inner: self.inner.call(req),
            counted,
        }
    }
}

pin_project_lite::pin_project! {
    /// The route's answer, counted when it is ready; or the limiter's.
    #[project = FrontProj]
    pub enum FrontFuture<F> {
        /// Refused before the route ran.
        Answered { response: Option<Response> },
        /// The route is running.
        Running {
            #[pin]
            inner: F,
            counted: Counted,
        },
    }
}

impl<F, E> Future for FrontFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            FrontProj::Answered { response } => match response.take() {
                Some(r) => Poll::Ready(Ok(r)),
                // Polled again after it completed: a caller's bug, answered
                // rather than panicking.
                None => Poll::Ready(Ok(ApiError::internal(
                    "request future polled after completion",
                )
                .into_response())),
            },
            FrontProj::Running { inner, counted } => match inner.poll(cx) {
                Poll::Ready(Ok(resp)) => {
                    counted.count(&resp);
                    Poll::Ready(Ok(resp))
                }
                other => other,
            },
        }
    }
}
