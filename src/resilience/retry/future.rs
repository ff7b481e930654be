//! The response future of [`Retry`](super::Retry): a small state machine
//! (read the body, call, wait, call again) written out by hand so a request
//! costs no allocation beyond its kept head and body.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::request::Parts;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::budget::Budget;
use super::head::KeptHead;
use super::policy::Decision;
use super::replay::{Buffering, Replay};
use super::service::Stack;
use crate::balance::{served_by, AvoidEndpoint};
use crate::body::Body;
use crate::clock;
use crate::error::{BoxError, Refusal, ATTEMPTS_HEADER, ERROR_HEADER};

const ATTEMPTS: HeaderName = HeaderName::from_static(ATTEMPTS_HEADER);
const ERROR: HeaderName = HeaderName::from_static(ERROR_HEADER);

pin_project! {
    /// The response future of [`Retry`](super::Retry).
    pub struct ResponseFuture<S, F> {
        // The try in flight, if any.
        #[pin]
        fut: Option<F>,
        // The backoff being waited out, if any. Boxed, as `attempts` is:
        // this future is inline in every route's stack future (an `Either`
        // is as large as its larger side), retrying or not, and small
        // stays cheap to allocate and move.
        sleep: Option<Pin<Box<Sleep>>>,
        // `None`: not retryable (method, or a body too large to keep), one try.
        attempts: Option<Box<Attempts<S>>>,
    }
}

impl<S, F> ResponseFuture<S, F> {
    /// The one try of a request that is not retried.
    pub(super) fn once(fut: F) -> Self {
        ResponseFuture { fut: Some(fut), sleep: None, attempts: None }
    }

    /// A retryable request; `fut` is its first try unless the body must be
    /// read first.
    pub(super) fn retrying(fut: Option<F>, attempts: Attempts<S>) -> Self {
        ResponseFuture { fut, sleep: None, attempts: Some(Box::new(attempts)) }
    }
}

/// One retryable request's progress. Kept small (it is allocated for every
/// retryable request and moved as the try starts): what only a request
/// whose body is still being read needs is boxed apart, in [`Unread`].
pub(super) struct Attempts<S> {
    /// The service for the retries: the one that made the first try when
    /// the body was read first, else a clone of the stack's, made for the
    /// first retry (and polled ready before each).
    svc: Option<S>,
    stack: Arc<Stack<S>>,
    phase: Phase<S>,
    /// A copy of the request's head, for the retries (the first try takes
    /// the head itself).
    kept: KeptHead,
    /// The body every try sends; `None` once it is known not to replay.
    body: Option<Bytes>,
    /// Tries sent so far.
    tries: u32,
    /// The route deadline: no retry waits past it.
    deadline: Option<Instant>,
    /// The endpoint the last try failed on, for the next try to avoid.
    avoid: Option<SocketAddr>,
}

/// Where a retryable request is.
enum Phase<S> {
    /// Reading the body before the first try.
    Buffering(Box<Unread<S>>),
    /// Waiting for the service to be ready for a retry.
    Ready,
    /// A try is in flight.
    Calling,
    /// Waiting out a backoff.
    Backoff,
}

/// A request whose body is read before its first try.
struct Unread<S> {
    body: Buffering,
    /// The request's head, for the first try.
    parts: Parts,
    /// The service, polled ready before `call`, that makes the first try.
    svc: S,
}

impl<S> Attempts<S> {
    /// A retryable request with head `parts` and a body already kept,
    /// reaching the layer now (the route deadline counts from it); its
    /// first try is made at once ([`Attempts::first_request`]).
    pub(super) fn new(stack: Arc<Stack<S>>, parts: &Parts, body: Option<Bytes>) -> Self {
        let deadline = stack.shared.route_timeout.map(|t| clock::now() + t);
        let kept = KeptHead::of(parts);
        Attempts { svc: None, stack, phase: Phase::Calling, kept, body, tries: 0, deadline, avoid: None }
    }

    /// A retryable request whose body must be read before its first try,
    /// which `svc` (polled ready) then makes.
    pub(super) fn reading(stack: Arc<Stack<S>>, parts: Parts, body: Buffering, svc: S) -> Self {
        let mut attempts = Attempts::new(stack, &parts, None);
        attempts.phase = Phase::Buffering(Box::new(Unread { body, parts, svc }));
        attempts
    }

    /// The first try: the request's own head, with the kept body, or with
    /// `streamed` (a body too large to keep, which rules out a retry).
    pub(super) fn first_request(&mut self, parts: Parts, streamed: Option<Body>) -> Request<Body> {
        self.tries = 1;
        let body = match streamed {
            Some(body) => body,
            None => Body::from(self.body.clone().unwrap_or_default()),
        };
        Request::from_parts(parts, body)
    }

    /// A retry: the kept head and body, steered away from the endpoint
    /// that just failed.
    fn retry_request(&mut self) -> Request<Body> {
        let mut req = self.kept.request(Body::from(self.body.clone().unwrap_or_default()));
        self.stack.shared.retries.inc();
        if let Some(addr) = self.avoid {
            req.extensions_mut().insert(AvoidEndpoint(addr));
        }
        tracing::debug!(route = %self.stack.shared.route, attempt = self.tries + 1, avoid = ?self.avoid, "retrying");
        self.tries += 1;
        req
    }

    /// The first request once the body is read: replayable or not.
    fn first_request_read(&mut self, parts: Parts, replay: Replay) -> Request<Body> {
        match replay {
            Replay::Buffered(bytes) => {
                self.body = Some(bytes);
                self.first_request(parts, None)
            }
            Replay::Streamed(body) => self.first_request(parts, Some(body)),
        }
    }

    fn decide(&self, result: &Result<Response<Body>, BoxError>) -> Decision {
        // Most tries succeed: those are relayed without reading the clock
        // or seeding a random number generator.
        if self.body.is_none() || !self.stack.shared.policy.may_retry(result, self.tries) {
            return Decision::Relay;
        }
        let budget = self.stack.shared.budget.as_deref();
        let mut rng = fastrand::Rng::new();
        self.stack
            .shared
            .policy
            .decide(result, self.tries, clock::now(), self.deadline, &mut rng, || budget.is_none_or(Budget::withdraw))
    }

    /// The final result, marked with the tries it took.
    fn relay(&self, mut result: Result<Response<Body>, BoxError>) -> Result<Response<Body>, BoxError> {
        if let Ok(resp) = &mut result {
            if self.tries > 1 {
                resp.headers_mut().insert(ATTEMPTS, attempts_value(self.tries));
            }
        }
        result
    }

    /// A retry was due and the budget said no: the upstream's own response
    /// goes back, marked; a failure with no response becomes the refusal.
    fn exhausted(&self, result: Result<Response<Body>, BoxError>) -> Result<Response<Body>, BoxError> {
        self.stack.shared.exhausted.inc();
        tracing::debug!(route = %self.stack.shared.route, tries = self.tries, "retry budget exhausted");
        match self.relay(result) {
            Ok(mut resp) => {
                resp.headers_mut().insert(ERROR, HeaderValue::from_static(Refusal::RetryBudgetExhausted.token()));
                Ok(resp)
            }
            Err(_) => Err(Refusal::RetryBudgetExhausted.into()),
        }
    }
}

/// `x-outrigger-attempts: N`, without formatting the common values.
fn attempts_value(n: u32) -> HeaderValue {
    const SMALL: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    match SMALL.get(n as usize) {
        Some(s) => HeaderValue::from_static(s),
        None => HeaderValue::from(n),
    }
}

impl<S, F, E> Future for ResponseFuture<S, F>
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Future = F, Error = E> + Clone,
    F: Future<Output = Result<Response<Body>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut fut = this.fut;
        let sleep = this.sleep;
        let Some(a) = this.attempts.as_mut() else {
            let once = fut.as_pin_mut().expect("polled after completion");
            return once.poll(cx).map_err(Into::into);
        };
        loop {
            match &mut a.phase {
                Phase::Buffering(unread) => {
                    let replay = match ready!(unread.body.poll(cx)) {
                        Ok(replay) => replay,
                        Err(e) => return Poll::Ready(Err(e)),
                    };
                    let Phase::Buffering(unread) = std::mem::replace(&mut a.phase, Phase::Calling) else {
                        unreachable!("matched just above")
                    };
                    let Unread { parts, svc, .. } = *unread;
                    let req = a.first_request_read(parts, replay);
                    // The service was polled ready before `call`; it
                    // serves the retries too.
                    fut.set(Some(a.svc.insert(svc).call(req)));
                }
                Phase::Ready => {
                    let svc = a.svc.get_or_insert_with(|| a.stack.inner.clone());
                    if let Err(e) = ready!(svc.poll_ready(cx)) {
                        return Poll::Ready(Err(e.into()));
                    }
                    let req = a.retry_request();
                    let svc = a.svc.as_mut().expect("polled ready just now");
                    fut.set(Some(svc.call(req)));
                    a.phase = Phase::Calling;
                }
                Phase::Calling => {
                    let pending = fut.as_mut().as_pin_mut().expect("a try is in flight while calling");
                    let result = ready!(pending.poll(cx)).map_err(Into::into);
                    fut.set(None);
                    match a.decide(&result) {
                        Decision::Relay => return Poll::Ready(a.relay(result)),
                        Decision::BudgetExhausted => return Poll::Ready(a.exhausted(result)),
                        Decision::Retry(wait) => {
                            a.avoid = served_by(&result);
                            drop(result);
                            if wait.is_zero() {
                                a.phase = Phase::Ready;
                            } else {
                                *sleep = Some(Box::pin(tokio::time::sleep(wait)));
                                a.phase = Phase::Backoff;
                            }
                        }
                    }
                }
                Phase::Backoff => {
                    ready!(sleep.as_mut().expect("a backoff is armed while waiting").as_mut().poll(cx));
                    *sleep = None;
                    a.phase = Phase::Ready;
                }
            }
        }
    }
}
