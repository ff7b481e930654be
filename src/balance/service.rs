//! The innermost service of a route: pick an endpoint, send the request
//! over one of the endpoint's pooled connections, report the outcome.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use tokio::time::Instant;

use super::Balancer;
use crate::body::Body;
use crate::error::{outcome, BoxError, Outcome, Refusal};
use crate::metrics::Metrics;
use crate::upstream::pool::{Pool, PoolSettings};
use prometheus::IntCounter;

/// Sends each request to one endpoint chosen by the balancer.
#[derive(Clone)]
pub struct Balance {
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
        Balance { balancer, version: pool.protocol.version(), pool, attempts }
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
        let Some(endpoint) = self.balancer.pick(&req) else {
            return Box::pin(std::future::ready(Err(Refusal::NoEndpoints.into())));
        };
        address_to(&mut req, self.version, &endpoint);
        endpoint.requests.fetch_add(1, Ordering::Relaxed);
        let address = endpoint.address;
        let pool = Arc::clone(endpoint.pool.get_or_init(|| Arc::new(Pool::new(address, Arc::clone(&self.pool)))));
        let in_flight = InFlight::new(endpoint);
        let start = Instant::now();
        let fut = pool.send(req);
        let balancer = Arc::clone(&self.balancer);
        let attempts = Arc::clone(&self.attempts);
        Box::pin(async move {
            let result = fut.await.map_err(|e| BoxError::from(super::EndpointError { endpoint: address, source: e }));
            let outcome = outcome(&result);
            match outcome {
                Outcome::Failure => attempts.failure.inc(),
                _ => attempts.success.inc(),
            }
            balancer.record(&in_flight.0, outcome, start.elapsed());
            drop(in_flight);
            result
        })
    }
}

/// Points `req` at `endpoint` in the form `version` wants: HTTP/2 names the
/// endpoint in `:scheme` and `:authority`; HTTP/1.1 sends origin form, with
/// a Host (an HTTP/1.0 client may have sent none: then the endpoint's).
fn address_to(req: &mut Request<Body>, version: Version, endpoint: &super::Endpoint) {
    let http2 = version == Version::HTTP_2;
    let origin_form = req.uri().scheme().is_none() && req.uri().path_and_query().is_some();
    if http2 || !origin_form {
        let path = req.uri().path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.uri_mut() = if http2 {
            let mut parts = http::uri::Parts::default();
            parts.scheme = Some(Scheme::HTTP);
            parts.authority = Some(endpoint.authority.clone());
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

/// Counts a request in flight on an endpoint until dropped, so a try that
/// is cancelled (timeout, client gone) is uncounted too.
struct InFlight(Arc<super::Endpoint>);

impl InFlight {
    fn new(endpoint: Arc<super::Endpoint>) -> Self {
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(endpoint)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
