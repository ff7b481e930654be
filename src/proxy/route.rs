//! A route's stack, built once when the config loads:
//!
//! ```text
//! timeout (whole request; what it cuts off counts as failed below, see `cutting_off`)
//!   bulkhead (route's own, then the cluster's shared one)
//!     retry (policy, backoff, budget, replayable body)
//!       circuit breaker (route's own, then the cluster's shared one)
//!         balancer (per-try timeout) -> endpoint client
//! ```
//!
//! The per-try timeout is the balancer's, not a layer of its own, so a try
//! it cuts off is charged to the endpoint that hung (see
//! [`crate::balance::service`]).
//!
//! A weighted split picks its cluster first, so every retry of a request
//! stays on the cluster it started on.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use futures_util::future::BoxFuture;
use http::{Request, Response};
use thread_local::ThreadLocal;
use tower::{Layer, ServiceBuilder, ServiceExt};

use super::cluster::Cluster;
use super::state::{Scope, StateStore, BREAKER, BULKHEAD};
use crate::body::Body;
use crate::config::settings::{ClusterSettings, RouteSettings};
use crate::error::BoxError;
use crate::metrics::{Metrics, RouteMetrics};
use crate::resilience::bulkhead::{Bulkhead, BulkheadLayer, BulkheadSettings};
use crate::resilience::circuit_breaker::{CircuitBreaker, CircuitBreakerLayer, CircuitBreakerSettings};
use crate::resilience::retry::RetryLayer;
use crate::resilience::timeout::{Timeout, TimeoutLayer};

/// The type every stack is erased to at a module boundary: shared, called
/// through `&self`. Each call boxes only its response future, where a
/// `BoxCloneSyncService` would also box a clone of itself per request.
pub type HttpService = Arc<dyn SharedService>;

/// A service callable through a shared reference.
pub trait SharedService: Send + Sync {
    /// Sends one request through the stack.
    fn call(&self, req: Request<Body>) -> BoxFuture<'static, Result<Response<Body>, BoxError>>;
}

/// A stack, called through `&self`: each worker thread calls its own
/// instance in place. Cloning the stack per request instead cost a
/// reference-count increment and decrement per layer (twelve atomic
/// operations with every layer on).
struct Shared<S: Send> {
    stack: S,
    local: ThreadLocal<RefCell<S>>,
}

impl<S: Send> Shared<S> {
    fn new(stack: S) -> Self {
        Shared { stack, local: ThreadLocal::new() }
    }
}

impl<S> SharedService for Shared<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = BoxError> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    fn call(&self, req: Request<Body>) -> BoxFuture<'static, Result<Response<Body>, BoxError>> {
        let local = self.local.get_or(|| RefCell::new(self.stack.clone()));
        match local.try_borrow_mut() {
            Ok(mut svc) => call_ready(&mut *svc, req),
            // Not reached (a call does not call its own stack again), but
            // a clone would do.
            Err(_) => call_ready(&mut self.stack.clone(), req),
        }
    }
}

/// Every layer of a route stack is ready at once (waiting, for a bulkhead
/// slot say, happens in the response future), so `svc` is asked first,
/// and called straight away: a `Oneshot` would box the stack and the
/// request with the future, and move the future again on its first poll.
/// Should a service not be ready, a `Oneshot` over a clone asks again with
/// the task's waker. (Inlined into both arms of `Shared::call`, as it
/// was before the timeout grew a branch: called, it moves the request
/// once more.)
#[inline(always)]
fn call_ready<S>(svc: &mut S, req: Request<Body>) -> BoxFuture<'static, Result<Response<Body>, BoxError>>
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    match svc.poll_ready(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Ok(())) => Box::pin(svc.call(req)),
        Poll::Ready(Err(e)) => Box::pin(std::future::ready(Err(e))),
        Poll::Pending => Box::pin(svc.clone().oneshot(req)),
    }
}

/// One route, ready to serve.
pub struct Route {
    /// Its settings (compared on reload).
    pub settings: RouteSettings,
    targets: Vec<Target>,
    total_weight: u32,
}

/// One cluster a route sends to, with its stack and metric handles.
pub struct Target {
    /// The cluster's name.
    pub cluster: String,
    weight: u32,
    /// The whole stack for this route and cluster.
    pub service: HttpService,
    /// Labels bound to (listener, route, cluster).
    pub metrics: RouteMetrics,
}

impl Route {
    /// Builds the route's stacks over `clusters` (every named cluster must
    /// exist: validation made sure).
    pub fn build(
        listener: &str,
        settings: RouteSettings,
        clusters: &HashMap<String, Arc<Cluster>>,
        metrics: &Metrics,
        state: &StateStore,
    ) -> Route {
        let targets: Vec<Target> = settings
            .targets
            .iter()
            .map(|(name, weight)| {
                let cluster = &clusters[name];
                Target {
                    cluster: name.clone(),
                    weight: *weight,
                    service: stack(&settings, cluster, metrics, state),
                    metrics: RouteMetrics::new(metrics, listener, &settings.name, name),
                }
            })
            .collect();
        let total_weight = targets.iter().map(|t| t.weight).sum();
        Route { settings, targets, total_weight }
    }

    /// The route's name.
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// The target for one request: by weight when split.
    pub fn target(&self) -> &Target {
        if self.targets.len() == 1 {
            return &self.targets[0];
        }
        let mut n = fastrand::u32(..self.total_weight.max(1));
        for t in &self.targets {
            if n < t.weight {
                return t;
            }
            n -= t.weight;
        }
        &self.targets[0]
    }
}

/// The stack for one (route, cluster), over the cluster's endpoints.
fn stack(route: &RouteSettings, cluster: &Cluster, metrics: &Metrics, state: &StateStore) -> HttpService {
    let per_try = route.per_try_timeout();
    let inner = cluster.endpoint_service().with_per_try_timeout(per_try);
    stack_over(route, &cluster.settings, inner, metrics, state)
}

/// The stack for one (route, cluster) over any innermost service (the
/// balancer in the proxy, which keeps the per-try timeout; an in-memory
/// upstream in benches). A route with no layer configured but its timeout
/// (every route has one, 15 s by default) is the timeout over the
/// innermost service, without the pass-throughs.
pub fn stack_over<S>(
    route: &RouteSettings,
    cluster: &ClusterSettings,
    inner: S,
    metrics: &Metrics,
    state: &StateStore,
) -> HttpService
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = BoxError> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    let layers = Layers::new(route, cluster, metrics, state);
    if layers.only_timeout() {
        return Arc::new(Shared::new(layers.timeout_over(inner)));
    }
    Arc::new(Shared::new(layers.over(inner)))
}

/// A route's layers, `None` where not configured. Stacked, one that is not
/// configured is a pass-through of the same type, not an `Either` around
/// it: a stack has one type whichever layers its route has, and a request
/// pays no wrapper per absent layer.
struct Layers {
    timeout: Option<TimeoutLayer>,
    route_bulkhead: Option<Arc<Bulkhead>>,
    cluster_bulkhead: Option<Arc<Bulkhead>>,
    retry: Option<RetryLayer>,
    route_breaker: Option<Arc<CircuitBreaker>>,
    cluster_breaker: Option<Arc<CircuitBreaker>>,
}

impl Layers {
    fn new(route: &RouteSettings, cluster: &ClusterSettings, metrics: &Metrics, state: &StateStore) -> Self {
        Layers {
            // A per-try deadline rides on the route timeout's timer.
            timeout: route.timeout.map(|t| TimeoutLayer::new(t).carrying(route.per_try_timeout().is_some())),
            route_bulkhead: bulkhead(Scope::Route, &route.name, route.bulkhead.as_ref(), metrics, state),
            cluster_bulkhead: bulkhead(Scope::Cluster, &cluster.name, cluster.bulkhead.as_ref(), metrics, state),
            retry: RetryLayer::for_route(&route.name, &cluster.name, route.retry.as_ref(), metrics, state),
            route_breaker: breaker(Scope::Route, &route.name, route.circuit_breaker.as_ref(), metrics, state),
            cluster_breaker: breaker(Scope::Cluster, &cluster.name, cluster.circuit_breaker.as_ref(), metrics, state),
        }
    }

    /// Whether no layer but the timeout is configured.
    fn only_timeout(&self) -> bool {
        self.route_bulkhead.is_none()
            && self.cluster_bulkhead.is_none()
            && self.retry.is_none()
            && self.route_breaker.is_none()
            && self.cluster_breaker.is_none()
    }

    /// The timeout alone over `inner`.
    fn timeout_over<S>(&self, inner: S) -> Timeout<S> {
        self.timeout.unwrap_or_default().layer(inner)
    }

    /// The layers over `inner`, listed outermost first.
    fn over<S>(
        self,
        inner: S,
    ) -> impl tower::Service<Request<Body>, Response = Response<Body>, Error = BoxError, Future: Send + 'static>
           + Clone
           + Send
           + Sync
           + 'static
    where
        S: tower::Service<Request<Body>, Response = Response<Body>, Error = BoxError> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
    {
        ServiceBuilder::new()
            // Whole request, every retry included.
            .layer(self.timeout.unwrap_or_default())
            // One slot per request (the route's, then the cluster's), held
            // across retries until the body ends.
            .layer(BulkheadLayer::pair(self.route_bulkhead, self.cluster_bulkhead))
            // Tries again as the route's policy and budget allow (absent: no retries).
            .layer(self.retry.unwrap_or_default())
            // Fails fast while open (the route's, then the cluster's); sees
            // every try.
            .layer(CircuitBreakerLayer::pair(self.route_breaker, self.cluster_breaker))
            .service(inner)
    }
}

/// The breaker of `(scope, name)`, kept across reloads while its settings
/// hold.
fn breaker(
    scope: Scope,
    name: &str,
    settings: Option<&CircuitBreakerSettings>,
    metrics: &Metrics,
    state: &StateStore,
) -> Option<Arc<CircuitBreaker>> {
    let s = settings?;
    Some(state.get_or_make(BREAKER, scope, name, s, || CircuitBreaker::new(s.clone(), scope, name, metrics)))
}

/// The bulkhead of `(scope, name)`, kept across reloads while its settings
/// hold.
fn bulkhead(
    scope: Scope,
    name: &str,
    settings: Option<&BulkheadSettings>,
    metrics: &Metrics,
    state: &StateStore,
) -> Option<Arc<Bulkhead>> {
    let s = settings?;
    Some(state.get_or_make(BULKHEAD, scope, name, s, || Bulkhead::new(*s, scope, name, metrics)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::service::{AttemptMetrics, Balance};
    use crate::balance::{Balancer, BalancerSettings};
    use crate::upstream::pool::PoolSettings;

    /// Not ready when first asked, with a counter of how often it was.
    #[derive(Clone)]
    struct ReadyLater(Arc<std::sync::atomic::AtomicUsize>);

    impl tower::Service<Request<Body>> for ReadyLater {
        type Response = Response<Body>;
        type Error = BoxError;
        type Future = std::future::Ready<Result<Response<Body>, BoxError>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            if self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _req: Request<Body>) -> Self::Future {
            std::future::ready(Ok(Response::new(Body::from("ok"))))
        }
    }

    /// A stack is called straight away when it is ready at once, and only
    /// once it is ready when it is not: the request is answered either way.
    #[tokio::test]
    async fn a_stack_not_ready_at_once_is_called_when_ready() {
        let polls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let svc: HttpService = Arc::new(Shared::new(ReadyLater(Arc::clone(&polls))));
        let resp = svc.call(Request::new(Body::empty())).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(polls.load(std::sync::atomic::Ordering::SeqCst), 2, "asked again, then called");
        let resp = svc.call(Request::new(Body::empty())).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(polls.load(std::sync::atomic::Ordering::SeqCst), 3, "ready at once: asked once");
    }

    /// The future every request boxes (the whole stack's, over the real
    /// balancer) stays within glibc's small-allocation fast path (tcache,
    /// up to 1,032 bytes), retry configured or not: at 1,048 bytes it was
    /// a slow-path malloc and a larger copy on every request.
    #[tokio::test]
    async fn a_route_future_stays_small() {
        let settings = crate::config::parse(
            r#"
listeners:
  - name: l
    address: 127.0.0.1:0
    routes:
      - {name: bare, match: {path: /bare}, cluster: c}
      - name: layered
        cluster: c
        timeout: 5s
        retry: {attempts: 2, per_try_timeout: 2s}
        bulkhead: {max_concurrent: 10}
        circuit_breaker: {consecutive_failures: 5}
clusters:
  - {name: c, endpoints: [127.0.0.1:1], circuit_breaker: {consecutive_failures: 5}}
"#,
            "t.yaml",
        )
        .unwrap();
        let metrics = Metrics::unregistered();
        let state = StateStore::default();
        let cluster = &settings.clusters[0];
        let balancer = Arc::new(Balancer::new("c", BalancerSettings::from(cluster)));
        let inner = Balance::new(
            balancer,
            Arc::new(PoolSettings::new(cluster.connect_timeout, cluster.protocol)),
            Arc::new(AttemptMetrics::new(&metrics, "c")),
        );
        for route in &settings.listeners[0].routes {
            let per_try = route.per_try_timeout();
            let inner = inner.clone().with_per_try_timeout(per_try);
            let layers = Layers::new(route, cluster, &metrics, &state);
            // Both shapes `stack_over` boxes: the timeout alone, and all
            // layers (pass-throughs for those not configured).
            let mut timeout_only = layers.timeout_over(inner.clone());
            let fut = tower::Service::call(&mut timeout_only, Request::new(Body::empty()));
            let size = std::mem::size_of_val(&fut);
            assert!(size <= 1024, "route {}, timeout only: {size} bytes", route.name);
            let mut all = layers.over(inner);
            let fut = tower::Service::call(&mut all, Request::new(Body::empty()));
            let size = std::mem::size_of_val(&fut);
            assert!(size <= 1024, "route {}: {size} bytes", route.name);
        }
    }
}
