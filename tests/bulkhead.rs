//! Bulkheads against real slow upstreams.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

fn cfg(slow: &Upstream, fast: &Upstream, bulkhead: &str) -> String {
    format!(
        "listeners: [{{name: l, address: 127.0.0.1:0, routes: [
            {{name: slow, match: {{path_prefix: /slow}}, cluster: slow, timeout: 10s, bulkhead: {bulkhead}}},
            {{name: fast, cluster: fast}}]}}]
clusters: [{{name: slow, endpoints: [\"{}\"]}}, {{name: fast, endpoints: [\"{}\"]}}]\n",
        slow.addr, fast.addr
    )
}

/// A route bulkhead of 2 + queue 1: of 10 concurrent slow requests 3 are
/// answered and 7 refused at once with bulkhead-full (none waits for the
/// slow upstream); meanwhile a route to a healthy cluster answers while the
/// slow requests are still in flight.
#[tokio::test]
async fn caps_concurrency_and_isolates() {
    const SLOW: Duration = Duration::from_secs(1);
    let slow = Upstream::start_with(Fault::Delay(SLOW, 200)).await;
    let fast = Upstream::start().await;
    let p = TestProxy::start(&cfg(&slow, &fast, "{max_concurrent: 2, max_queued: 1, queue_timeout: 3s}")).await;
    let slow_answered = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let url = p.url("/slow");
            let slow_answered = Arc::clone(&slow_answered);
            tokio::spawn(async move {
                let t = Instant::now();
                let r = client().get(&url).await;
                if r.status == 200 {
                    slow_answered.fetch_add(1, Ordering::SeqCst);
                }
                (r.status.as_u16(), r.header("x-outrigger-error").map(str::to_owned), t.elapsed())
            })
        })
        .collect();
    // While the slow route is saturated, the other route is unaffected.
    eventually(Duration::from_secs(5), "two slow requests in flight", || async { slow.hits() >= 2 }).await;
    for _ in 0..20 {
        assert_eq!(client().get(&p.url("/other")).await.status, 200);
    }
    assert_eq!(slow_answered.load(Ordering::SeqCst), 0, "the other route waited for the slow one");
    let mut ok = 0;
    let mut refused = 0;
    for task in tasks {
        let (status, error, took) = task.await.unwrap();
        match status {
            200 => ok += 1,
            503 => {
                assert_eq!(error.as_deref(), Some("bulkhead-full"));
                assert!(took < SLOW, "a refusal waited for the upstream: {took:?}");
                refused += 1;
            }
            s => panic!("unexpected {s}"),
        }
    }
    assert_eq!((ok, refused), (3, 7));
    assert_eq!(slow.max_in_flight(), 2);
    assert_eq!(p.metric(r#"outrigger_bulkhead_rejected_total{scope="route",name="slow"}"#).await, 7.0);
}

/// 100 clients that disconnect mid-request leave no slot behind.
#[tokio::test]
async fn disconnects_release_slots() {
    let slow = Upstream::start_with(Fault::Delay(Duration::from_secs(30), 200)).await;
    let fast = Upstream::start().await;
    let p = TestProxy::start(&cfg(&slow, &fast, "{max_concurrent: 200}")).await;
    let tasks: Vec<_> = (0..100).map(|_| tokio::spawn(client().get_owned(p.url("/slow")))).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while slow.hits() < 100 {
        assert!(Instant::now() < deadline, "only {} arrived", slow.hits());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let in_flight = r#"outrigger_bulkhead_in_flight{scope="route",name="slow"}"#;
    assert_eq!(p.metric(in_flight).await, 100.0);
    for t in tasks {
        t.abort();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while p.metric(in_flight).await != 0.0 {
        assert!(Instant::now() < deadline, "slots leaked: {}", p.metric(in_flight).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A slot is held while the response body streams, and freed when the
/// client drops it half-read.
#[tokio::test]
async fn slot_held_until_body_ends() {
    use http_body_util::BodyExt;
    let up = Upstream::start().await;
    let p = TestProxy::start(&cfg(&up, &up, "{max_concurrent: 1}")).await;
    let c = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<outrigger::body::Body>();
    let req = http::Request::get(p.url("/slow/download?bytes=500000000")).body(outrigger::body::Body::empty()).unwrap();
    let resp = c.request(req).await.unwrap();
    let mut body = resp.into_body();
    body.frame().await.unwrap().unwrap();
    let r = client().get(&p.url("/slow")).await;
    assert_eq!(r.header("x-outrigger-error"), Some("bulkhead-full"), "slot still held by the streaming body");
    drop(body);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if client().get(&p.url("/slow")).await.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "slot not released after the client dropped the body");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A cluster's bulkhead is one pool for every route to it.
#[tokio::test]
async fn cluster_pool_is_shared() {
    let slow = Upstream::start_with(Fault::Delay(Duration::from_millis(400), 200)).await;
    let p = TestProxy::start(&format!(
        "listeners: [{{name: l, address: 127.0.0.1:0, routes: [{{name: a, match: {{path_prefix: /a}}, cluster: c}}, {{name: b, cluster: c}}]}}]\nclusters: [{{name: c, endpoints: [\"{}\"], bulkhead: {{max_concurrent: 1}}}}]\n",
        slow.addr
    ))
    .await;
    let url = p.url("/a");
    let first = tokio::spawn(async move { client().get(&url).await.status });
    eventually(Duration::from_secs(5), "the first request in flight", || async { slow.hits() >= 1 }).await;
    assert_eq!(client().get(&p.url("/b")).await.header("x-outrigger-error"), Some("bulkhead-full"));
    assert_eq!(first.await.unwrap(), 200);
}

/// An adaptive bulkhead learns from a failing upstream: 5xx answers cut its
/// limit down to `min` (shown in `outrigger_bulkhead_limit` and /clusters),
/// and the lowered limit is enforced: of 6 concurrent slow requests only
/// `min` get through.
#[tokio::test]
async fn adaptive_limit_falls_with_failures_and_is_enforced() {
    let slow = Upstream::start_with(Fault::Status(503)).await;
    let fast = Upstream::start().await;
    let p =
        TestProxy::start(&cfg(&slow, &fast, "{max_concurrent: 20, max_queued: 0, adaptive: {min: 2, max: 40}}")).await;
    let limit = r#"outrigger_bulkhead_limit{scope="route",name="slow"}"#;
    assert_eq!(p.metric(limit).await, 20.0);
    for _ in 0..40 {
        assert_eq!(client().get(&p.url("/slow")).await.status, 503);
    }
    assert_eq!(p.metric(limit).await, 2.0, "40 failures in a row bring the limit to min");
    let (_, clusters) = p.admin_get("/clusters").await;
    assert!(clusters.contains("\"limit\": 2"), "{clusters}");

    slow.set_default(Fault::Delay(Duration::from_millis(300), 200));
    let answers = futures_util::future::join_all((0..6).map(|_| {
        let url = p.url("/slow");
        async move { client().get(&url).await }
    }))
    .await;
    let ok = answers.iter().filter(|r| r.status == 200).count();
    let full = answers.iter().filter(|r| r.header("x-outrigger-error") == Some("bulkhead-full")).count();
    assert_eq!((ok, full), (2, 4));
}
