//! The innermost service of a route: pick an endpoint, send the request
//! over one of the endpoint's pooled connections, report the outcome.
//!
//! The per-try timeout lives here, not in a layer above: a try cut off by
//! it is the endpoint's failure, so outlier ejection counts it, peak EWMA
//! sees its latency, and the retry that follows avoids that endpoint. A
//! layer above could only drop the try, unseen. A try the route timeout
//! cuts off (see [`cutting_off`]) is counted the same way; one dropped
//! because the client went away is not.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::Balancer;
use crate::body::Body;
use crate::clock;
use crate::error::{outcome, BoxError, Outcome, Refusal};
use crate::metrics::Metrics;
use crate::resilience::timeout::{cutting_off, wake_at_or, Carrier};
use crate::upstream::pool::{Pool, PoolSettings};
use prometheus::IntCounter;

/// Sends each request to one endpoint chosen by the balancer.
#[derive(Clone)]
pub struct Balance {
    /// What every route to the cluster shares, behind one reference count:
    /// a route's stack is cloned per request.
    cluster: Arc<ClusterSide>,
    /// The route's per-try timeout.
    per_try: Option<Duration>,
}

struct ClusterSide {
    balancer: Arc<Balancer>,
    pool: Arc<PoolSettings>,
    version: Version,
    attempts: Arc<AttemptMetrics>,
}

/// `outrigger_upstream_attempts_total{cluster,result}`, bound once.
pub struct AttemptMetrics {
    success: IntCounter,
    failure: IntCounter,
}

impl AttemptMetrics {
    /// Binds the cluster label.
    pub fn new(metrics: &Metrics, cluster: &str) -> Self {
        AttemptMetrics {
            success: metrics.upstream_attempts.with_label_values(&[cluster, "success"]),
            failure: metrics.upstream_attempts.with_label_values(&[cluster, "failure"]),
        }
    }
}

impl Balance {
    /// A service over `balancer`'s endpoints, connecting as `pool` says.
    pub fn new(balancer: Arc<Balancer>, pool: Arc<PoolSettings>, attempts: Arc<AttemptMetrics>) -> Self {
        let cluster = ClusterSide { balancer, version: pool.protocol.version(), pool, attempts };
        Balance { cluster: Arc::new(cluster), per_try: None }
    }

    /// Cuts each try off after `per_try` (a route's `per_try_timeout`),
    /// failing it with a timeout charged to its endpoint.
    pub fn with_per_try_timeout(mut self, per_try: Option<Duration>) -> Self {
        self.per_try = per_try;
        self
    }
}

impl tower::Service<Request<Body>> for Balance {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let cluster = &self.cluster;
        let Some(endpoint) = cluster.balancer.pick(&req) else {
            return Box::pin(std::future::ready(Err(Refusal::NoEndpoints.into())));
        };
        address_to(&mut req, cluster.version, &endpoint);
        endpoint.requests.fetch_add(1, Ordering::Relaxed);
        let address = endpoint.address;
        let pool = Arc::clone(endpoint.pool.get_or_init(|| Arc::new(Pool::new(address, Arc::clone(&cluster.pool)))));
        let start = clock::now();
        let try_deadline = self.per_try.map(|t| start + t);
        let on_endpoint = OnEndpoint::new(endpoint, Arc::clone(cluster), start);
        Box::pin(Try {
            send: pool.send_at(req, start),
            deadline: try_deadline,
            own: Carrier::default(),
            on_endpoint,
            address,
        })
    }
}

pin_project! {
    /// One try on one endpoint, cut off at the per-try deadline if there
    /// is one. Written out rather than an `async` block over
    /// `timeout_at`, which moved the send future once more per request.
    ///
    /// The deadline rides on the route timeout's timer when one is polling
    /// ([`wake_at_or`]), and that on the connection's. Only without one
    /// does the try set its own.
    struct Try<F> {
        #[pin]
        send: F,
        deadline: Option<Instant>,
        // The try's own timer, when no route timeout carries the deadline
        // (rare: made then).
        own: Carrier,
        on_endpoint: OnEndpoint,
        address: SocketAddr,
    }
}

impl<F> Future for Try<F>
where
    F: Future<Output = Result<Response<Body>, BoxError>>,
{
    type Output = Result<Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // Its outcome is recorded once: a second poll would count it again.
        assert!(!this.on_endpoint.recorded, "a try polled after completion");
        let result = match this.send.poll(cx) {
            Poll::Ready(result) => result,
            Poll::Pending => match *this.deadline {
                Some(deadline) if passed(deadline, this.own, cx) => Err(Refusal::Timeout.into()),
                _ => return Poll::Pending,
            },
        };
        let address = *this.address;
        let result = result.map_err(|e| BoxError::from(super::EndpointError { endpoint: address, source: e }));
        this.on_endpoint.finish(outcome(&result));
        Poll::Ready(result)
    }
}

/// Whether a try's `deadline` has passed; if not, a wake-up for it is
/// arranged: on the route timeout's timer when one carries it, else on
/// the try's `own`.
fn passed(deadline: Instant, own: &mut Carrier, cx: &mut Context<'_>) -> bool {
    // (In the poll that set the deadline, the time is that poll's one
    // reading: no clock is read.)
    if clock::now() >= deadline {
        return true;
    }
    wake_at_or(own, deadline, cx);
    false
}

/// Points `req` at `endpoint` in the form `version` wants. HTTP/1.1 sends
/// origin form, with the client's Host (an HTTP/1.0 client may have sent
/// none: then the endpoint's). HTTP/2 carries the client's Host as
/// `:authority` and no Host header: RFC 9113 (8.3.1) forbids a Host that
/// differs from `:authority`, and servers such as NGINX refuse one with
/// 400 ("duplicate host header"). With no usable Host, `:authority` names
/// the endpoint.
fn address_to(req: &mut Request<Body>, version: Version, endpoint: &super::Endpoint) {
    let http2 = version == Version::HTTP_2;
    let origin_form = req.uri().scheme().is_none() && req.uri().path_and_query().is_some();
    if http2 || !origin_form {
        let path = req.uri().path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.uri_mut() = if http2 {
            let host = req.headers_mut().remove(http::header::HOST);
            let authority = host
                .and_then(|h| http::uri::Authority::try_from(h.as_bytes()).ok())
                .or_else(|| req.uri().authority().cloned())
                .unwrap_or_else(|| endpoint.authority.clone());
            let mut parts = http::uri::Parts::default();
            parts.scheme = Some(Scheme::HTTP);
            parts.authority = Some(authority);
            parts.path_and_query = Some(path);
            Uri::from_parts(parts).expect("scheme, authority and path make a URI")
        } else {
            Uri::from(path)
        };
    }
    if !http2 && !req.headers().contains_key(http::header::HOST) {
        if let Ok(host) = http::HeaderValue::from_str(endpoint.authority.as_str()) {
            req.headers_mut().insert(http::header::HOST, host);
        }
    }
    *req.version_mut() = version;
}

/// One try on an endpoint: counted in flight until dropped, its outcome
/// recorded once. Dropped without an outcome while a timeout cuts it off:
/// a failure of the endpoint. Dropped otherwise, the client went away:
/// nothing is recorded.
struct OnEndpoint {
    endpoint: Arc<super::Endpoint>,
    cluster: Arc<ClusterSide>,
    start: Instant,
    recorded: bool,
}

impl OnEndpoint {
    fn new(endpoint: Arc<super::Endpoint>, cluster: Arc<ClusterSide>, start: Instant) -> Self {
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        OnEndpoint { endpoint, cluster, start, recorded: false }
    }

    fn finish(&mut self, outcome: Outcome) {
        self.recorded = true;
        match outcome {
            Outcome::Failure => self.cluster.attempts.failure.inc(),
            _ => self.cluster.attempts.success.inc(),
        }
        let end = clock::now();
        self.cluster.balancer.record_at(&self.endpoint, outcome, end.saturating_duration_since(self.start), end);
    }
}

impl Drop for OnEndpoint {
    fn drop(&mut self) {
        if !self.recorded && cutting_off() {
            self.finish(Outcome::Failure);
        }
        self.endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::BalancerSettings;
    use crate::discovery::EndpointSpec;
    use tower::ServiceExt;

    /// With no route timeout carrying its deadline (none polls it), a try
    /// sets a timer of its own: an endpoint that never answers is cut off
    /// at the per-try timeout, as a timeout charged to that endpoint.
    #[tokio::test]
    async fn a_try_no_timeout_carries_sets_its_own_timer() {
        // Accepts connections (the kernel does) and never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap();
        let settings = crate::config::parse(
            &format!(
                "listeners: [{{name: l, address: 127.0.0.1:0, routes: [{{name: r, cluster: c}}]}}]\n\
                 clusters: [{{name: c, endpoints: [\"{addr}\"]}}]\n"
            ),
            "t.yaml",
        )
        .unwrap();
        let cluster = &settings.clusters[0];
        let balancer = Arc::new(Balancer::new("c", BalancerSettings::from(cluster)));
        balancer.update(vec![EndpointSpec::new(addr)]);
        let balance = Balance::new(
            balancer,
            Arc::new(PoolSettings::new(cluster.connect_timeout, cluster.protocol)),
            Arc::new(AttemptMetrics::new(&Metrics::unregistered(), "c")),
        )
        .with_per_try_timeout(Some(Duration::from_millis(200)));
        let started = std::time::Instant::now();
        let err = tokio::time::timeout(Duration::from_secs(10), balance.oneshot(Request::new(Body::empty())))
            .await
            .expect("cut off by its own timer, long before this")
            .unwrap_err();
        assert_eq!(crate::error::classify(err.as_ref()), Refusal::Timeout);
        assert!(started.elapsed() >= Duration::from_millis(200), "{:?}", started.elapsed());
        drop(silent);
    }
}
