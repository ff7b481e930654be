//! The breaker at run time: one [`CircuitBreaker`] per scope, shared by
//! every stack that uses it, and the tower service that consults it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use pin_project_lite::pin_project;
use prometheus::{IntCounter, IntGauge};
use tokio::time::Instant;

use super::state::{Admission, Machine, State};
use super::CircuitBreakerSettings;
use crate::body::Body;
use crate::clock;
use crate::error::{outcome, BoxError, Refusal};
use crate::metrics::Metrics;
use crate::proxy::state::Scope;
use crate::resilience::timeout::cutting_off;

/// A breaker's shared state and its metric handles.
pub struct CircuitBreaker {
    machine: Mutex<Machine>,
    /// The machine is closed: a request is admitted without the lock.
    /// Written under the lock after every change; a request that reads it
    /// a moment stale is one that came a moment earlier.
    closed: AtomicBool,
    /// [`Machine::at_rest`]: a success (not a probe) changes nothing, so it
    /// is not recorded under the lock.
    at_rest: AtomicBool,
    /// Whether calls are timed (a slow-call rule).
    timed: bool,
    scope: Scope,
    name: String,
    state_gauge: IntGauge,
    to_closed: IntCounter,
    to_open: IntCounter,
    to_half_open: IntCounter,
}

impl CircuitBreaker {
    /// A closed breaker for `(scope, name)`.
    pub fn new(settings: CircuitBreakerSettings, scope: Scope, name: &str, metrics: &Metrics) -> Self {
        let labels = [scope.label(), name];
        let to = |s: State| metrics.circuit_transitions.with_label_values(&[scope.label(), name, s.name()]);
        let state_gauge = metrics.circuit_state.with_label_values(&labels);
        state_gauge.set(0);
        let timed = settings.slow_call.is_some();
        let machine = Machine::new(settings, Instant::now());
        CircuitBreaker {
            timed,
            closed: AtomicBool::new(true),
            at_rest: AtomicBool::new(machine.at_rest()),
            machine: Mutex::new(machine),
            scope,
            name: name.to_owned(),
            state_gauge,
            to_closed: to(State::Closed),
            to_open: to(State::Open),
            to_half_open: to(State::HalfOpen),
        }
    }

    /// The state now.
    pub fn state(&self) -> State {
        self.lock().state()
    }

    /// When an open breaker admits probes again.
    pub fn open_until(&self) -> Option<Instant> {
        self.lock().open_until()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Machine> {
        self.machine.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks the machine; also returns the try's start when a slow-call
    /// rule will want its duration. The clock is read only when needed,
    /// and a closed breaker admits without taking the lock.
    fn admit(&self) -> (Admission, Option<Instant>) {
        if self.closed.load(Ordering::Relaxed) {
            return (Admission::Allowed { probe: false }, self.timed.then(clock::now));
        }
        let mut read = None;
        let (admission, changed) = self.change(|m| m.admit_with(|| *read.get_or_insert_with(clock::now)));
        if let Some(s) = changed {
            self.changed(s);
        }
        let start = self.timed.then(|| read.unwrap_or_else(clock::now));
        (admission, start)
    }

    fn record(&self, probe: bool, outcome: crate::error::Outcome, start: Option<Instant>) {
        if !probe && outcome == crate::error::Outcome::Success && self.at_rest.load(Ordering::Relaxed) {
            return;
        }
        let mut read = None;
        let mut now = || *read.get_or_insert_with(clock::now);
        let took = start.map_or(Duration::ZERO, |s| now().saturating_duration_since(s));
        let jitter = 0.9 + fastrand::f64() * 0.2;
        let changed = self.change(|m| m.record_with(now, probe, outcome, took, jitter));
        if let Some(s) = changed {
            self.changed(s);
        }
    }

    /// Changes the machine under the lock, and publishes what the
    /// lock-free paths read before letting go: every change goes through
    /// here.
    fn change<R>(&self, f: impl FnOnce(&mut Machine) -> R) -> R {
        let mut m = self.lock();
        let out = f(&mut m);
        self.closed.store(m.state() == State::Closed, Ordering::Relaxed);
        self.at_rest.store(m.at_rest(), Ordering::Relaxed);
        out
    }

    fn changed(&self, to: State) {
        self.state_gauge.set(to.gauge());
        match to {
            State::Closed => {
                self.to_closed.inc();
                tracing::info!(scope = self.scope.label(), name = %self.name, "circuit closed");
            }
            State::Open => {
                self.to_open.inc();
                tracing::warn!(scope = self.scope.label(), name = %self.name, "circuit opened");
            }
            State::HalfOpen => {
                self.to_half_open.inc();
                tracing::info!(scope = self.scope.label(), name = %self.name, "circuit half-open: probing");
            }
        }
    }
}

/// Fails fast while a breaker is open; feeds every outcome to each.
///
/// Holds up to two breakers, consulted in order: the route's own, then the
/// cluster's shared one. One service for both, rather than one layer each:
/// a layer passes every request and response through a move of its own.
#[derive(Clone)]
pub struct CircuitBreakerService<S> {
    inner: S,
    /// `[None, None]`: no breaker, every call passes straight through.
    breakers: [Option<Arc<CircuitBreaker>>; 2],
}

impl<S> CircuitBreakerService<S> {
    /// Wraps `inner` with the breakers given, in order (none: a
    /// pass-through). A call dropped while a timeout above cuts it off (the
    /// route timeout drops the call before any inner layer can report it)
    /// is a failure; one dropped because the client went away is not.
    pub fn optional(inner: S, breakers: [Option<Arc<CircuitBreaker>>; 2]) -> Self {
        CircuitBreakerService { inner, breakers }
    }
}

impl<S> tower::Service<Request<Body>> for CircuitBreakerService<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = BoxError>,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let mut calls = [None, None];
        for (call, breaker) in calls.iter_mut().zip(&self.breakers) {
            let Some(breaker) = breaker else { continue };
            match breaker.admit() {
                // Refused: a breaker that admitted the call first hears of
                // it as the refusal it is (ignored), when polled.
                (Admission::Rejected, _) => return ResponseFuture { inner: None, calls },
                (Admission::Allowed { probe }, start) => {
                    *call = Some(Call { breaker: Arc::clone(breaker), probe, start, recorded: false });
                }
            }
        }
        ResponseFuture { inner: Some(self.inner.call(req)), calls }
    }
}

/// One admitted call. Dropped without an outcome: a failure if a timeout
/// cut it off, else a cancellation (a probe's slot is freed).
struct Call {
    breaker: Arc<CircuitBreaker>,
    probe: bool,
    /// When the call started, if the breaker times calls.
    start: Option<Instant>,
    recorded: bool,
}

impl Drop for Call {
    fn drop(&mut self) {
        if self.recorded {
            return;
        }
        if cutting_off() {
            self.breaker.record(self.probe, crate::error::Outcome::Failure, self.start);
        } else if self.probe {
            self.breaker.change(Machine::release_probe);
        }
    }
}

pin_project! {
    /// The response future of [`CircuitBreakerService`].
    pub struct ResponseFuture<F> {
        // `None`: a breaker refused the call.
        #[pin]
        inner: Option<F>,
        calls: [Option<Call>; 2],
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Body>, BoxError>>,
{
    type Output = Result<Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = match this.inner.as_pin_mut() {
            Some(inner) => std::task::ready!(inner.poll(cx)),
            None => Err(Refusal::CircuitOpen.into()),
        };
        // Innermost first, as nested layers would record.
        for call in this.calls.iter_mut().rev() {
            if let Some(mut call) = call.take() {
                call.breaker.record(call.probe, outcome(&result), call.start);
                call.recorded = true;
            }
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Outcome::{Failure, Success};

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(super::super::state_tests::settings(), Scope::Route, "r", &Metrics::unregistered())
    }

    fn admitted(b: &CircuitBreaker) -> bool {
        matches!(b.admit().0, Admission::Allowed { .. })
    }

    /// The lock-free paths (admitting while closed, a success while at
    /// rest) agree with the machine: a success still breaks a streak, the
    /// streak still trips, and an open breaker refuses.
    #[tokio::test]
    async fn lock_free_paths_keep_the_machine_s_answers() {
        let b = breaker();
        for outcome in [Failure, Failure, Success, Failure, Failure] {
            assert!(admitted(&b));
            b.record(false, outcome, None);
        }
        assert_eq!(b.state(), State::Closed, "the success broke the streak");
        assert!(admitted(&b));
        b.record(false, Failure, None);
        assert_eq!(b.state(), State::Open);
        assert!(!admitted(&b), "an open breaker refuses without waiting for the lock-free path");
        b.record(false, Success, None);
        assert_eq!(b.state(), State::Open, "a late success does not close it");
    }
}
