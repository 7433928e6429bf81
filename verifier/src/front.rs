//! The API's per-request checks as tower layers: the `Host` guard, the
//! bearer token and the request counter ([`crate::api::router`] says which
//! routes each covers). axum's `middleware::from_fn` would box a future,
//! clone the inner service and build a `Next` for every request; these
//! call the inner service directly, or answer at once.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::MatchedPath;
use axum::http::Request;
use axum::response::Response;

/// Answers a request at once when `check` returns a response (a refusal);
/// otherwise hands it on untouched.
#[derive(Clone)]
pub struct Check<F> {
    check: F,
}

impl<F> Check<F> {
    /// A layer running `check` before the routes it wraps.
    pub fn new(check: F) -> Check<F> {
        Check { check }
    }
}

impl<S, F: Clone> tower::Layer<S> for Check<F> {
    type Service = CheckService<S, F>;

    fn layer(&self, inner: S) -> CheckService<S, F> {
        CheckService {
            inner,
            check: self.check.clone(),
        }
    }
}

/// The service [`Check`] wraps around the routes.
#[derive(Clone)]
pub struct CheckService<S, F> {
    inner: S,
    check: F,
}

impl<S, F, B> tower::Service<Request<B>> for CheckService<S, F>
where
    S: tower::Service<Request<B>, Response = Response>,
    F: Fn(&Request<B>) -> Option<Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = CheckFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match (self.check)(&req) {
            Some(refusal) => CheckFuture::Refused {
                refusal: Some(refusal),
            },
            None => CheckFuture::Passed {
                inner: self.inner.call(req),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The refusal, or the inner call.
    #[project = CheckProj]
    pub enum CheckFuture<F> {
        /// Answered by the check.
        Refused { refusal: Option<Response> },
        /// Handed on.
        Passed { #[pin] inner: F },
    }
}

impl<F, E> Future for CheckFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            CheckProj::Refused { refusal } => Poll::Ready(Ok(refusal.take().unwrap_or_default())),
            CheckProj::Passed { inner } => inner.poll(cx),
        }
    }
}

/// Counts every answered request by route template and status
/// (`kaching_api_requests_total`), refusals and timeouts included.
#[derive(Clone, Copy, Default)]
pub struct Count;

impl<S> tower::Layer<S> for Count {
    type Service = CountService<S>;

    fn layer(&self, inner: S) -> CountService<S> {
        CountService { inner }
    }
}

/// The service [`Count`] wraps around the routes.
#[derive(Clone)]
pub struct CountService<S> {
    inner: S,
}

impl<S, B> tower::Service<Request<B>> for CountService<S>
where
    S: tower::Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = CountFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The template the router matched (an `Arc<str>`: no copy).
        let route = req.extensions().get::<MatchedPath>().cloned();
        CountFuture {
            inner: self.inner.call(req),
            route,
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner call; its status is counted when it answers.
    pub struct CountFuture<F> {
        #[pin]
        inner: F,
        route: Option<MatchedPath>,
    }
}

impl<F, E> Future for CountFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        if let Ok(resp) = &out {
            let route = this.route.as_ref().map_or("unmatched", MatchedPath::as_str);
            crate::metrics::api_request(route, resp.status().as_u16());
        }
        Poll::Ready(out)
    }
}
