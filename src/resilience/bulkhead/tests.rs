//! The pool with paused time: queueing, timeouts, and release on every
//! path out.

use std::sync::Arc;
use std::time::Duration;

use super::{Bulkhead, BulkheadSettings};
use crate::error::Refusal;
use crate::metrics::Metrics;
use crate::proxy::state::Scope;

fn pool(max: usize, queued: usize, timeout_ms: u64) -> Arc<Bulkhead> {
    let s = BulkheadSettings {
        max_concurrent: max,
        max_queued: queued,
        queue_timeout: Duration::from_millis(timeout_ms),
        adaptive: None,
    };
    Arc::new(Bulkhead::new(s, Scope::Route, "r", &Metrics::unregistered()))
}

/// Past max_concurrent, one request may queue; the next is refused; the
/// queued one gets the first slot released.
#[tokio::test(start_paused = true)]
async fn queue_then_refuse() {
    let b = pool(1, 1, 1000);
    let first = b.acquire().await.unwrap();
    let b2 = Arc::clone(&b);
    let waiter = tokio::spawn(async move { b2.acquire().await.map(|_| ()) });
    tokio::task::yield_now().await;
    assert_eq!(b.view().queued, 1);
    assert_eq!(b.acquire().await.err(), Some(Refusal::BulkheadFull));
    drop(first);
    assert!(waiter.await.unwrap().is_ok());
    assert_eq!(b.view().in_flight, 0);
    assert_eq!(b.view().rejected, 1);
}

/// A queued request gives up after queue_timeout.
#[tokio::test(start_paused = true)]
async fn queue_timeout_refuses() {
    let b = pool(1, 5, 50);
    let _held = b.acquire().await.unwrap();
    let t = tokio::time::Instant::now();
    assert_eq!(b.acquire().await.err(), Some(Refusal::BulkheadFull));
    assert_eq!(t.elapsed(), Duration::from_millis(50));
    assert_eq!(b.view().queued, 0);
}

/// A waiter whose future is dropped (client gone) leaves the queue, and a
/// slot travels with the response body until the body is dropped.
#[tokio::test(start_paused = true)]
async fn release_on_drop() {
    let b = pool(1, 1, 1000);
    let held = b.acquire().await.unwrap();
    let b2 = Arc::clone(&b);
    let waiter = tokio::spawn(async move { b2.acquire().await.map(|_| ()) });
    tokio::task::yield_now().await;
    waiter.abort();
    let _ = waiter.await;
    assert_eq!(b.view().queued, 0);
    let mut body = crate::body::Body::empty();
    body.hold(held);
    assert_eq!(b.view().in_flight, 1);
    drop(body);
    assert_eq!(b.view().in_flight, 0);
    assert!(b.acquire().await.is_ok());
}

/// A request inside two bulkheads (a route's own and its cluster's
/// shared one) holds a slot of each until its response body is dropped.
#[tokio::test(start_paused = true)]
async fn a_body_holds_the_slots_of_both_bulkheads() {
    let (route, cluster) = (pool(1, 0, 10), pool(1, 0, 10));
    let mut body = crate::body::Body::empty();
    body.hold(cluster.acquire().await.unwrap());
    body.hold(route.acquire().await.unwrap());
    assert_eq!((route.view().in_flight, cluster.view().in_flight), (1, 1));
    assert_eq!(cluster.acquire().await.err(), Some(Refusal::BulkheadFull));
    drop(body);
    assert_eq!((route.view().in_flight, cluster.view().in_flight), (0, 0));
    assert!(route.acquire().await.is_ok() && cluster.acquire().await.is_ok());
}

/// An adaptive limit learns from requests the route timeout cuts off (a
/// drop: the limit falls by a tenth each) but not from requests a client
/// abandons.
#[tokio::test(start_paused = true)]
async fn adaptive_limit_falls_on_timeouts_not_on_hang_ups() {
    use crate::body::Body;
    use crate::resilience::bulkhead::BulkheadService;
    use crate::resilience::timeout::Timeout;
    use http::{Request, Response};
    use tower::{Service, ServiceExt};

    let s = BulkheadSettings {
        max_concurrent: 20,
        max_queued: 0,
        queue_timeout: Duration::from_millis(10),
        adaptive: Some((2, 40)),
    };
    let b = Arc::new(Bulkhead::new(s, Scope::Route, "r", &Metrics::unregistered()));
    let hang = tower::service_fn(|_req: Request<Body>| {
        std::future::pending::<Result<Response<Body>, crate::error::BoxError>>()
    });
    let mut svc = Timeout::new(BulkheadService::new(hang, Arc::clone(&b)), Duration::from_millis(100));
    for _ in 0..3 {
        let err = svc.ready().await.unwrap().call(Request::new(Body::empty())).await.unwrap_err();
        assert_eq!(crate::error::classify(err.as_ref()), Refusal::Timeout);
    }
    // 20 * 0.9^3 = 14.58
    assert_eq!(b.view().limit, 14);
    for _ in 0..3 {
        let fut = svc.ready().await.unwrap().call(Request::new(Body::empty()));
        let _ = tokio::time::timeout(Duration::from_millis(10), fut).await;
    }
    assert_eq!(b.view().limit, 14, "a client hang-up moved the limit");
    assert_eq!(b.view().in_flight, 0);
}
