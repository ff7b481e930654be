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
    body.push_guard(Box::new(held));
    assert_eq!(b.view().in_flight, 1);
    drop(body);
    assert_eq!(b.view().in_flight, 0);
    assert!(b.acquire().await.is_ok());
}
