//! The bulkhead at run time: one [`Bulkhead`] pool per scope, shared by
//! every stack that uses it, and the tower service that takes a slot.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use prometheus::{IntCounter, IntGauge};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::ServiceExt;

use super::adaptive::AdaptiveLimit;
use super::BulkheadSettings;
use crate::body::Body;
use crate::error::{outcome, BoxError, Outcome, Refusal};
use crate::metrics::Metrics;
use crate::proxy::state::Scope;
use crate::resilience::timeout::cutting_off;

/// A pool of slots with a bounded, timed queue.
pub struct Bulkhead {
    settings: BulkheadSettings,
    semaphore: Semaphore,
    queued: AtomicUsize,
    in_flight: AtomicUsize,
    rejected: AtomicU64,
    limit: AtomicUsize,
    /// Permits still to retire after the adaptive limit fell below the
    /// number in use: retired as they come back.
    owed: AtomicUsize,
    adaptive: Option<Mutex<AdaptiveLimit>>,
    m: Gauges,
}

struct Gauges {
    in_flight: IntGauge,
    queued: IntGauge,
    rejected: IntCounter,
    limit: IntGauge,
}

/// What /clusters shows of a bulkhead.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct BulkheadView {
    /// Requests holding a slot.
    pub in_flight: usize,
    /// Requests waiting for one.
    pub queued: usize,
    /// The limit now.
    pub limit: usize,
    /// Requests refused so far.
    pub rejected: u64,
}

impl Bulkhead {
    /// A pool for `(scope, name)`.
    pub fn new(settings: BulkheadSettings, scope: Scope, name: &str, metrics: &Metrics) -> Self {
        let labels = [scope.label(), name];
        let m = Gauges {
            in_flight: metrics.bulkhead_in_flight.with_label_values(&labels),
            queued: metrics.bulkhead_queued.with_label_values(&labels),
            rejected: metrics.bulkhead_rejected.with_label_values(&labels),
            limit: metrics.bulkhead_limit.with_label_values(&labels),
        };
        m.limit.set(settings.max_concurrent as i64);
        Bulkhead {
            semaphore: Semaphore::new(settings.max_concurrent),
            queued: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            rejected: AtomicU64::new(0),
            limit: AtomicUsize::new(settings.max_concurrent),
            owed: AtomicUsize::new(0),
            adaptive: settings
                .adaptive
                .map(|(min, max)| Mutex::new(AdaptiveLimit::new(settings.max_concurrent, min, max))),
            settings,
            m,
        }
    }

    /// Counts for /clusters.
    pub fn view(&self) -> BulkheadView {
        BulkheadView {
            in_flight: self.in_flight.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed),
            limit: self.limit.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
        }
    }

    /// Takes a slot: at once, or after waiting in the queue, or not at all.
    pub async fn acquire(self: &Arc<Self>) -> Result<Slot, Refusal> {
        if let Some(slot) = self.try_acquire() {
            return Ok(slot);
        }
        self.wait().await.ok_or_else(|| self.reject())?;
        Ok(self.slot())
    }

    /// A slot if one is free now, without queueing.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Slot> {
        let permit = self.semaphore.try_acquire().ok()?;
        // The slot gives it back (or retires it) when dropped: no owned
        // permit, which would hold a second reference to the semaphore.
        permit.forget();
        Some(self.slot())
    }

    /// A slot for a permit just taken (and forgotten).
    fn slot(self: &Arc<Self>) -> Slot {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.m.in_flight.inc();
        Slot { bulkhead: Arc::clone(self), earlier: None }
    }

    /// Waits in the queue for a permit, and forgets it (see `slot`).
    async fn wait(&self) -> Option<()> {
        let max = self.settings.max_queued;
        self.queued.fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| (q < max).then_some(q + 1)).ok()?;
        self.m.queued.inc();
        let _queued = Queued(self);
        let permit = tokio::time::timeout(self.settings.queue_timeout, self.semaphore.acquire()).await.ok()?.ok()?;
        permit.forget();
        Some(())
    }

    fn reject(&self) -> Refusal {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        self.m.rejected.inc();
        Refusal::BulkheadFull
    }

    /// Feeds the adaptive limit (no-op for a static one).
    fn sample(&self, start: Instant, dropped: bool) {
        let Some(adaptive) = &self.adaptive else { return };
        let mut a = adaptive.lock().unwrap_or_else(|p| p.into_inner());
        let new = a.sample(start.elapsed(), self.in_flight.load(Ordering::Relaxed), dropped);
        let old = self.limit.swap(new, Ordering::AcqRel);
        if new > old {
            let mut add = new - old;
            // Pay back permits still owed before minting new ones.
            let _ = self.owed.fetch_update(Ordering::AcqRel, Ordering::Acquire, |o| {
                let pay = o.min(add);
                add -= pay;
                Some(o - pay)
            });
            self.semaphore.add_permits(add);
        } else if new < old {
            let gone = self.semaphore.forget_permits(old - new);
            self.owed.fetch_add(old - new - gone, Ordering::AcqRel);
        }
        drop(a);
        self.m.limit.set(new as i64);
    }
}

struct Queued<'a>(&'a Bulkhead);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::AcqRel);
        self.0.m.queued.dec();
    }
}

/// A held slot: released when dropped, which for a relayed response is
/// when its body has been sent or the client went away.
pub struct Slot {
    /// Holds one of its semaphore's permits (forgotten when taken).
    bulkhead: Arc<Bulkhead>,
    /// A slot of another bulkhead the same request holds (a route's own
    /// and its cluster's shared one), released with this one.
    earlier: Option<Box<Slot>>,
}

impl Slot {
    /// Makes `earlier` travel (and be released) with this slot.
    pub(crate) fn chain(&mut self, earlier: Option<Slot>) {
        debug_assert!(self.earlier.is_none(), "a slot is chained once");
        self.earlier = earlier.map(Box::new);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let b = &self.bulkhead;
        b.in_flight.fetch_sub(1, Ordering::Relaxed);
        b.m.in_flight.dec();
        // A permit owed to a lowered adaptive limit is retired, not given back.
        let retire = b.owed.fetch_update(Ordering::AcqRel, Ordering::Acquire, |o| o.checked_sub(1)).is_ok();
        if !retire {
            b.semaphore.add_permits(1);
        }
    }
}

/// Holds a slot of each of its bulkheads (up to two, taken in order: the
/// route's own, then the cluster's shared one) for the whole request and
/// response. One service for both, rather than one layer each: a layer
/// passes every request and response through a move of its own.
#[derive(Clone)]
pub struct BulkheadService<S> {
    inner: S,
    /// `[None, None]`: no bulkhead, every call passes straight through.
    bulkheads: [Option<Arc<Bulkhead>>; 2],
}

impl<S> BulkheadService<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, bulkhead: Arc<Bulkhead>) -> Self {
        BulkheadService { inner, bulkheads: [Some(bulkhead), None] }
    }

    /// Wraps `inner` with the bulkheads given, in order (none: a
    /// pass-through).
    pub fn optional(inner: S, bulkheads: [Option<Arc<Bulkhead>>; 2]) -> Self {
        BulkheadService { inner, bulkheads }
    }
}

impl<S> tower::Service<Request<Body>> for BulkheadService<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture<S>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Ready when the inner service is: waiting for a slot happens per
        // request, bounded by queue_timeout, so a full pool answers 503
        // rather than stalling.
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        if self.bulkheads.iter().all(Option::is_none) {
            return ResponseFuture::Through { fut: self.inner.call(req) };
        }
        // Free slots (the common case) call the inner service, polled
        // ready above, inline; only a request that must queue gets a boxed
        // future for its wait, and a clone of the inner service to call
        // once it has its slots.
        let mut runs = [None, None];
        for (i, bulkhead) in self.bulkheads.iter().enumerate() {
            let Some(bulkhead) = bulkhead else { continue };
            match bulkhead.try_acquire() {
                Some(slot) => runs[i] = Some(Run::new(slot)),
                None => return self.queue(req, runs, i),
            }
        }
        ResponseFuture::Running { fut: self.inner.call(req), runs }
    }
}

impl<S> BulkheadService<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
{
    /// Waits for the slots from `from` on (those before it are held in
    /// `runs`), in order, then makes the call.
    fn queue(&mut self, req: Request<Body>, mut runs: [Option<Run>; 2], from: usize) -> ResponseFuture<S> {
        let bulkheads = self.bulkheads.clone();
        let inner = self.inner.clone();
        ResponseFuture::Queued {
            fut: Box::pin(async move {
                for (i, bulkhead) in bulkheads.iter().enumerate().skip(from) {
                    let Some(bulkhead) = bulkhead else { continue };
                    match bulkhead.acquire().await {
                        Ok(slot) => runs[i] = Some(Run::new(slot)),
                        // The slots already held see the refusal as the
                        // result, as an outer layer would have.
                        Err(refusal) => {
                            let mut result = Err(refusal.into());
                            finish(&mut runs, &mut result);
                            return result;
                        }
                    }
                }
                let mut result = inner.oneshot(req).await;
                finish(&mut runs, &mut result);
                result
            }),
        }
    }
}

/// Each run, innermost first (as nested layers would), finishes with the
/// result: its slot goes into the response body.
fn finish(runs: &mut [Option<Run>; 2], result: &mut Result<Response<Body>, BoxError>) {
    for run in runs.iter_mut().rev() {
        if let Some(run) = run.take() {
            run.finish(result);
        }
    }
}

/// A request holding its slot.
struct Run {
    slot: Option<Slot>,
    /// When it started: kept only for an adaptive limit, which learns from
    /// latency; taken once sampled.
    start: Option<Instant>,
}

impl Run {
    fn new(slot: Slot) -> Self {
        let start = slot.bulkhead.adaptive.is_some().then(crate::clock::now);
        Run { slot: Some(slot), start }
    }

    /// Samples the latency (adaptive limit) and hands the slot to the
    /// response body.
    /// The result stays where it is: a response is moved once per layer
    /// already.
    fn finish(mut self, result: &mut Result<Response<Body>, BoxError>) {
        let slot = self.slot.take().expect("a run holds its slot until it finishes");
        if let Some(start) = self.start.take() {
            slot.bulkhead.sample(start, outcome(result) == Outcome::Failure);
        }
        if let Ok(resp) = result {
            resp.body_mut().hold(slot);
        }
    }
}

impl Drop for Run {
    /// A request the route timeout cut off is a drop for the adaptive limit
    /// (the upstream was too slow), like a 5xx; one the client abandoned
    /// says nothing about the upstream.
    fn drop(&mut self) {
        if let (Some(start), Some(slot)) = (self.start.take(), &self.slot) {
            if cutting_off() {
                slot.bulkhead.sample(start, true);
            }
        }
    }
}

type Boxed = Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>> + Send>>;

pin_project! {
    /// The response future of [`BulkheadService`].
    #[project = Proj]
    #[allow(missing_docs)]
    pub enum ResponseFuture<S>
    where
        S: tower::Service<Request<Body>>,
    {
        // No bulkhead: the request, passed straight through.
        Through { #[pin] fut: S::Future },
        // Holding its slots, the request under way.
        Running { #[pin] fut: S::Future, runs: [Option<Run>; 2] },
        // Waiting in the queue (or refused), then the request.
        Queued { fut: Boxed },
    }
}

impl<S> Future for ResponseFuture<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = BoxError>,
{
    type Output = Result<Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Proj::Through { fut } => fut.poll(cx),
            Proj::Running { fut, runs } => {
                let mut result = ready!(fut.poll(cx));
                assert!(runs.iter().any(Option::is_some), "polled after completion");
                finish(runs, &mut result);
                Poll::Ready(result)
            }
            Proj::Queued { fut } => fut.as_mut().poll(cx),
        }
    }
}
