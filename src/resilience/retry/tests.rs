//! The retry layer over a scripted inner service, on paused time.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

use super::*;
use crate::balance::{AvoidEndpoint, EndpointError};
use crate::body::Body;
use crate::error::{classify, BoxError, Refusal, ATTEMPTS_HEADER, ERROR_HEADER};
use crate::metrics::Metrics;
use crate::resilience::timeout::TimeoutLayer;

/// What the scripted upstream does with one try.
#[derive(Clone, Copy)]
enum Step {
    Status(u16),
    RetryAfter(u16, u64),
    Fail(Refusal),
    Slow(Duration),
}

/// What one try looked like on arrival.
struct Seen {
    body: Bytes,
    avoid: Option<AvoidEndpoint>,
    at: Instant,
}

const FAILED_ON: &str = "10.0.0.7:8080";

#[derive(Clone, Default)]
struct Upstream {
    plan: Arc<Mutex<VecDeque<Step>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    fn plan(steps: &[Step]) -> Self {
        let u = Upstream::default();
        u.plan.lock().unwrap().extend(steps.iter().copied());
        u
    }

    fn tries(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    async fn serve(self, req: Request<Body>) -> Result<Response<Body>, BoxError> {
        let avoid = req.extensions().get::<AvoidEndpoint>().copied();
        let body = req.into_body().collect().await?.to_bytes();
        self.seen.lock().unwrap().push(Seen { body, avoid, at: Instant::now() });
        let step = self.plan.lock().unwrap().pop_front().unwrap_or(Step::Status(200));
        let status = match step {
            Step::Status(s) => s,
            Step::RetryAfter(s, secs) => {
                return Ok(Response::builder().status(s).header("retry-after", secs).body(Body::empty())?);
            }
            Step::Fail(r) => {
                let endpoint: SocketAddr = FAILED_ON.parse().unwrap();
                return Err(EndpointError { endpoint, source: Box::new(r) }.into());
            }
            Step::Slow(d) => {
                tokio::time::sleep(d).await;
                200
            }
        };
        Ok(Response::builder().status(status).body(Body::empty())?)
    }
}

struct Harness {
    upstream: Upstream,
    metrics: Metrics,
    settings: RetrySettings,
}

impl Harness {
    fn new(steps: &[Step], settings: RetrySettings) -> Self {
        Harness { upstream: Upstream::plan(steps), metrics: Metrics::unregistered(), settings }
    }

    /// The retry layer over a per-try timeout of 1 s over the upstream.
    fn service(&self) -> impl Service<Request<Body>, Response = Response<Body>, Error = BoxError> + Clone {
        let budget = self.settings.budget.as_ref().map(|b| Arc::new(Budget::new(b)));
        let up = self.upstream.clone();
        let inner = TimeoutLayer::new(Duration::from_secs(1)).layer(tower::service_fn(move |r| up.clone().serve(r)));
        RetryLayer::new("r", "c", &self.settings, budget, &self.metrics).layer(inner)
    }

    async fn send(&self, req: Request<Body>) -> Result<Response<Body>, BoxError> {
        self.service().oneshot(req).await
    }

    fn retries(&self) -> u64 {
        self.metrics.retries.with_label_values(&["r", "c"]).get()
    }

    fn exhausted(&self) -> u64 {
        self.metrics.retry_budget_exhausted.with_label_values(&["r", "c"]).get()
    }
}

fn get() -> Request<Body> {
    Request::get("/").body(Body::empty()).unwrap()
}

fn header<'a>(resp: &'a Response<Body>, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// 503, 503, 200: the client gets the 200, marked as the third try; two
/// retries are counted.
#[tokio::test(start_paused = true)]
async fn retries_until_success() {
    let h = Harness::new(&[Step::Status(503), Step::Status(503)], test_settings());
    let resp = h.send(get()).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, ATTEMPTS_HEADER), Some("3"));
    assert_eq!(h.upstream.tries(), 3);
    assert_eq!(h.retries(), 2);
}

/// The last failure is relayed as is once the tries are used up; a first
/// try that succeeds carries no attempts header.
#[tokio::test(start_paused = true)]
async fn relays_the_last_failure() {
    let h = Harness::new(&[Step::Status(502); 5], test_settings());
    let resp = h.send(get()).await.unwrap();
    assert_eq!((resp.status().as_u16(), header(&resp, ATTEMPTS_HEADER)), (502, Some("3")));
    assert_eq!(h.upstream.tries(), 3);
    let h = Harness::new(&[], test_settings());
    let resp = h.send(get()).await.unwrap();
    assert_eq!((resp.status().as_u16(), header(&resp, ATTEMPTS_HEADER)), (200, None));
}

/// POST is not in `methods`: one try, the 503 relayed.
#[tokio::test(start_paused = true)]
async fn non_retryable_methods_get_one_try() {
    let h = Harness::new(&[Step::Status(503)], test_settings());
    let req = Request::post("/").body(Body::from("order")).unwrap();
    let resp = h.send(req).await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(h.upstream.tries(), 1);
    assert_eq!(h.retries(), 0);
}

/// Breaker, bulkhead and discovery refusals from inside are not retried,
/// even with every condition on.
#[tokio::test(start_paused = true)]
async fn local_refusals_are_not_retried() {
    for refusal in [Refusal::CircuitOpen, Refusal::BulkheadFull, Refusal::NoEndpoints] {
        let on = RetryOn { connect_failure: true, reset: true, timeout: true, any_5xx: true, ..Default::default() };
        let h = Harness::new(&[Step::Fail(refusal)], RetrySettings { on, ..test_settings() });
        let err = h.send(get()).await.unwrap_err();
        assert_eq!(classify(err.as_ref()), refusal);
        assert_eq!(h.upstream.tries(), 1, "{refusal}");
    }
}

/// A retry after a connect failure asks the balancer to avoid the endpoint
/// it failed on; the first try asks nothing.
#[tokio::test(start_paused = true)]
async fn retries_avoid_the_failed_endpoint() {
    let h = Harness::new(&[Step::Fail(Refusal::UpstreamConnectFailure)], test_settings());
    assert_eq!(h.send(get()).await.unwrap().status(), 200);
    let seen = h.upstream.seen.lock().unwrap();
    assert_eq!(seen[0].avoid, None);
    assert_eq!(seen[1].avoid, Some(AvoidEndpoint(FAILED_ON.parse().unwrap())));
}

/// The per-try timeout's elapse is retried when `timeout` is a condition,
/// and the retry is not held up by the slow first try past its second.
#[tokio::test(start_paused = true)]
async fn per_try_timeouts_are_retried() {
    let on = RetryOn { timeout: true, ..Default::default() };
    let h = Harness::new(&[Step::Slow(Duration::from_secs(30))], RetrySettings { on, ..test_settings() });
    let start = Instant::now();
    let resp = h.send(get()).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(h.upstream.tries(), 2);
    assert!(start.elapsed() < Duration::from_millis(1200), "{:?}", start.elapsed());
}

/// With the budget empty, a retryable response is relayed marked
/// `retry-budget-exhausted`; an error with no response becomes the
/// refusal. Both are counted.
#[tokio::test(start_paused = true)]
async fn exhausted_budget_relays_or_refuses() {
    let empty = BudgetSettings { ratio: 0.0, min_per_second: 0, window: Duration::from_secs(10) };
    let settings = RetrySettings { budget: Some(empty), ..test_settings() };
    let h = Harness::new(&[Step::Status(503), Step::Fail(Refusal::UpstreamConnectFailure)], settings);
    let resp = h.send(get()).await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(header(&resp, ERROR_HEADER), Some("retry-budget-exhausted"));
    assert_eq!(header(&resp, ATTEMPTS_HEADER), None);
    let err = h.send(get()).await.unwrap_err();
    assert_eq!(classify(err.as_ref()), Refusal::RetryBudgetExhausted);
    assert_eq!(h.upstream.tries(), 2);
    assert_eq!(h.exhausted(), 2);
    assert_eq!(h.retries(), 0);
}

/// With `budget: None` (explicitly disabled) every failure gets its tries.
#[tokio::test(start_paused = true)]
async fn disabled_budget_never_refuses() {
    let h = Harness::new(&[Step::Status(503); 300], RetrySettings { budget: None, ..test_settings() });
    for _ in 0..100 {
        h.send(get()).await.unwrap();
    }
    assert_eq!(h.upstream.tries(), 300);
    assert_eq!(h.exhausted(), 0);
}

/// A small PUT body is replayed byte for byte on every try.
#[tokio::test(start_paused = true)]
async fn bodies_replay_identically() {
    let h = Harness::new(&[Step::Status(503), Step::Status(504)], test_settings());
    let frames: Vec<Result<Frame<Bytes>, Infallible>> =
        ["part one, ", "part two"].into_iter().map(|c| Ok(Frame::data(Bytes::from(c)))).collect();
    let body = Body::boxed(http_body_util::StreamBody::new(futures_util::stream::iter(frames)));
    let req = Request::builder().method(Method::PUT).uri("/").body(body).unwrap();
    assert_eq!(h.send(req).await.unwrap().status(), 200);
    let seen = h.upstream.seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|s| s.body == "part one, part two"));
}

/// A body over the cap is sent whole, once: not retried.
#[tokio::test(start_paused = true)]
async fn large_bodies_get_one_try() {
    let settings = RetrySettings { max_body_bytes: 8, ..test_settings() };
    let h = Harness::new(&[Step::Status(503)], settings);
    let frames: Vec<Result<Frame<Bytes>, Infallible>> =
        ["0123456", "789ab", "cdef"].into_iter().map(|c| Ok(Frame::data(Bytes::from(c)))).collect();
    let body = Body::boxed(http_body_util::StreamBody::new(futures_util::stream::iter(frames)));
    let req = Request::builder().method(Method::PUT).uri("/").body(body).unwrap();
    assert_eq!(h.send(req).await.unwrap().status(), 503);
    let seen = h.upstream.seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, "0123456789abcdef");
}

/// `Retry-After: 2` on a 503 waits 2 s (not the 10 ms backoff); one that
/// would pass the route timeout is relayed at once.
#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_within_the_deadline() {
    let h = Harness::new(&[Step::RetryAfter(503, 2)], test_settings());
    assert_eq!(h.send(get()).await.unwrap().status(), 200);
    {
        let seen = h.upstream.seen.lock().unwrap();
        assert_eq!(seen[1].at - seen[0].at, Duration::from_secs(2));
    }
    let h = Harness::new(&[Step::RetryAfter(503, 20)], test_settings());
    let start = Instant::now();
    let resp = h.send(get()).await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(header(&resp, "retry-after"), Some("20"));
    assert_eq!(h.upstream.tries(), 1);
    assert!(start.elapsed() < Duration::from_millis(1));
}

/// Backoffs grow: retry n waits at most base * 2^(n-1).
#[tokio::test(start_paused = true)]
async fn backoff_spaces_the_tries() {
    let settings = RetrySettings { attempts: 4, ..test_settings() };
    let h = Harness::new(&[Step::Status(503); 3], settings);
    assert_eq!(h.send(get()).await.unwrap().status(), 200);
    let seen = h.upstream.seen.lock().unwrap();
    for (n, pair) in seen.windows(2).enumerate() {
        let ceiling = Duration::from_millis(10) * (1 << n);
        assert!(pair[1].at - pair[0].at <= ceiling, "retry {} waited {:?}", n + 1, pair[1].at - pair[0].at);
    }
}
