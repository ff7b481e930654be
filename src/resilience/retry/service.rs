//! The retry service: decides per request whether it may be retried, keeps
//! what a retry needs, and hands the rest to [`ResponseFuture`].

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use prometheus::IntCounter;

use super::budget::Budget;
use super::future::{Attempts, ResponseFuture};
use super::policy::Policy;
use super::replay::{self, Replay, Start};
use crate::body::Body;
use crate::error::BoxError;

/// What every request of one (route, cluster) stack shares.
pub(super) struct Shared {
    pub(super) policy: Policy,
    /// The route's budget (shared by its clusters); `None` when disabled.
    pub(super) budget: Option<Arc<Budget>>,
    /// The route timeout, measured from when a request reaches this layer
    /// (after any bulkhead queue, so a little late; the outer timeout
    /// still cuts the request at the true deadline).
    pub(super) route_timeout: Option<Duration>,
    /// `outrigger_retries_total{route,cluster}`
    pub(super) retries: IntCounter,
    /// `outrigger_retry_budget_exhausted_total{route,cluster}`
    pub(super) exhausted: IntCounter,
    /// For logs.
    pub(super) route: String,
}

/// What a retryable request keeps: the route's shared state, and a
/// service its retries are sent through (cloned only for a retry: the
/// request holds one reference count, not the stack's several).
pub(super) struct Stack<S> {
    pub(super) shared: Arc<Shared>,
    pub(super) inner: S,
}

/// Retries failed tries of `S` as a route's policy and budget allow.
#[derive(Clone)]
pub struct Retry<S> {
    inner: S,
    /// `None`: the route does not retry; every call passes straight through.
    stack: Option<Arc<Stack<S>>>,
}

impl<S: Clone> Retry<S> {
    pub(super) fn new(inner: S, shared: Option<Arc<Shared>>) -> Self {
        let stack = shared.map(|shared| Arc::new(Stack { shared, inner: inner.clone() }));
        Retry { inner, stack }
    }
}

impl<S> tower::Service<Request<Body>> for Retry<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture<S, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let Some(stack) = &self.stack else {
            return ResponseFuture::once(self.inner.call(req));
        };
        let shared = &stack.shared;
        // Every request earns the route a fraction of a retry.
        if let Some(budget) = &shared.budget {
            budget.deposit();
        }
        if !shared.policy.retries_method(req.method()) {
            return ResponseFuture::once(self.inner.call(req));
        }
        let (parts, body) = req.into_parts();
        match replay::start(body, &parts.headers, shared.policy.max_body_bytes()) {
            Start::Ready(Replay::Streamed(body)) => {
                ResponseFuture::once(self.inner.call(Request::from_parts(parts, body)))
            }
            Start::Ready(Replay::Buffered(bytes)) => {
                let mut attempts = Attempts::new(Arc::clone(stack), &parts, Some(bytes));
                let fut = self.inner.call(attempts.first_request(parts, None));
                ResponseFuture::retrying(Some(fut), attempts)
            }
            Start::Read(buffering) => {
                // The ready service makes the first try once the body is read.
                let clone = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, clone);
                let attempts = Attempts::reading(Arc::clone(stack), parts, buffering, ready);
                ResponseFuture::retrying(None, attempts)
            }
        }
    }
}
