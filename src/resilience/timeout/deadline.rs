//! The route's deadline on the request itself, for layers below the route
//! timeout that must tell, when they are dropped, a timeout (the route
//! timeout cut the request off) from a client that went away.
//!
//! The breaker needs it: the timeout drops the call before any inner layer
//! can report an outcome, and a try's own start says nothing of how long the
//! request had already waited (in a bulkhead queue, on earlier tries).

use std::task::{Context, Poll};
use std::time::Duration;

use http::Request;
use tokio::time::Instant;

/// When the route timeout fires for this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(pub Instant);

impl Deadline {
    /// The deadline `req` carries, if its route marks one.
    pub fn of<B>(req: &Request<B>) -> Option<Instant> {
        req.extensions().get::<Deadline>().map(|d| d.0)
    }
}

/// Puts [`Deadline`] on each request. Added just inside the route timeout,
/// only where a layer below reads it (an allocation per request otherwise
/// spent for nothing).
#[derive(Debug, Clone, Copy)]
pub struct MarkDeadlineLayer {
    timeout: Duration,
}

impl MarkDeadlineLayer {
    /// For a route timeout of `timeout`.
    pub fn new(timeout: Duration) -> Self {
        MarkDeadlineLayer { timeout }
    }
}

impl<S> tower::Layer<S> for MarkDeadlineLayer {
    type Service = MarkDeadline<S>;

    fn layer(&self, inner: S) -> MarkDeadline<S> {
        MarkDeadline { inner, timeout: self.timeout }
    }
}

/// See [`MarkDeadlineLayer`].
#[derive(Debug, Clone)]
pub struct MarkDeadline<S> {
    inner: S,
    timeout: Duration,
}

impl<S, B> tower::Service<Request<B>> for MarkDeadline<S>
where
    S: tower::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> S::Future {
        req.extensions_mut().insert(Deadline(Instant::now() + self.timeout));
        self.inner.call(req)
    }
}
