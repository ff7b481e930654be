//! Bulkheads against real slow upstreams.

mod support;

use std::time::{Duration, Instant};

use support::*;

fn cfg(slow: &Upstream, fast: &Upstream, bulkhead: &str) -> String {
    format!(
        "listeners: [{{name: l, address: 127.0.0.1:0, routes: [
            {{name: slow, match: {{path_prefix: /slow}}, cluster: slow, timeout: 60s, bulkhead: {bulkhead}}},
            {{name: fast, cluster: fast}}]}}]
clusters: [{{name: slow, endpoints: [\"{}\"]}}, {{name: fast, endpoints: [\"{}\"]}}]\n",
        slow.addr, fast.addr
    )
}

/// A route bulkhead of 2 + queue 1: of 10 concurrent slow requests 3 are
/// answered and 7 refused at once with bulkhead-full (all 7 before the
/// slow upstream has answered anything); meanwhile a route to a healthy
/// cluster answers while the slow requests are still in flight.
#[tokio::test]
async fn caps_concurrency_and_isolates() {
    // The slow upstream answers when the test opens the gate: every fact
    // below is "before it answered", with no guess at how long that takes.
    let gate = Gate::new();
    let slow = Upstream::start_with(Fault::Gated(gate.clone(), 200)).await;
    let fast = Upstream::start().await;
    let p = TestProxy::start(&cfg(&slow, &fast, "{max_concurrent: 2, max_queued: 1, queue_timeout: 60s}")).await;
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let url = p.url("/slow");
            tokio::spawn(async move {
                let r = client().get(&url).await;
                (r.status.as_u16(), r.header("x-outrigger-error").map(str::to_owned))
            })
        })
        .collect();
    // 2 hold the slots, 1 waits in the queue: the other 7 are answered
    // without the upstream.
    eventually(Duration::from_secs(10), "two slow requests in flight and 7 answered", || async {
        slow.hits() >= 2 && tasks.iter().filter(|t| t.is_finished()).count() >= 7
    })
    .await;
    // While the slow route is saturated, the other route is unaffected (a
    // request stuck behind the slow ones would wait for the gate).
    for _ in 0..20 {
        let r = tokio::time::timeout(Duration::from_secs(10), client().get(&p.url("/other")))
            .await
            .expect("the other route waited for the slow one");
        assert_eq!(r.status, 200);
    }
    let answered_before_the_upstream: Vec<bool> = tasks.iter().map(|t| t.is_finished()).collect();
    gate.open();
    let mut ok = 0;
    let mut refused = 0;
    for (task, early) in tasks.into_iter().zip(answered_before_the_upstream) {
        let (status, error) = task.await.unwrap();
        match status {
            200 => {
                assert!(!early, "answered 200 before the upstream answered");
                ok += 1;
            }
            503 => {
                assert_eq!(error.as_deref(), Some("bulkhead-full"));
                assert!(early, "a refusal waited for the upstream");
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
    let deadline = Instant::now() + Duration::from_secs(10);
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
    let deadline = Instant::now() + Duration::from_secs(10);
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
    let gate = Gate::new();
    let slow = Upstream::start_with(Fault::Gated(gate.clone(), 200)).await;
    let p = TestProxy::start(&format!(
        "listeners: [{{name: l, address: 127.0.0.1:0, routes: [{{name: a, match: {{path_prefix: /a}}, cluster: c}}, {{name: b, cluster: c}}]}}]\nclusters: [{{name: c, endpoints: [\"{}\"], bulkhead: {{max_concurrent: 1}}}}]\n",
        slow.addr
    ))
    .await;
    let url = p.url("/a");
    let first = tokio::spawn(async move { client().get(&url).await.status });
    eventually(Duration::from_secs(10), "the first request in flight", || async { slow.hits() >= 1 }).await;
    assert_eq!(client().get(&p.url("/b")).await.header("x-outrigger-error"), Some("bulkhead-full"));
    assert!(!first.is_finished(), "the first request no longer held the slot");
    gate.open();
    assert_eq!(first.await.unwrap(), 200);
}

/// A route with a bulkhead of its own in front of its cluster's: a request
/// holds a slot of each; one queued for the cluster's slot keeps its
/// route slot while it waits; one the cluster's pool refuses gives its
/// route slot back; every slot is free again once the answers are sent.
#[tokio::test]
async fn route_and_cluster_bulkheads_both_hold() {
    let gate = Gate::new();
    let slow = Upstream::start_with(Fault::Gated(gate.clone(), 200)).await;
    let p = TestProxy::start(&format!(
        "listeners: [{{name: l, address: 127.0.0.1:0, routes: [{{name: r, cluster: c, timeout: 60s, bulkhead: {{max_concurrent: 5}}}}]}}]\nclusters: [{{name: c, endpoints: [\"{}\"], bulkhead: {{max_concurrent: 1, max_queued: 1, queue_timeout: 60s}}}}]\n",
        slow.addr
    ))
    .await;
    let in_flight = |scope: &'static str, name: &'static str| {
        let p = &p;
        async move { p.metric(&format!("outrigger_bulkhead_in_flight{{scope=\"{scope}\",name=\"{name}\"}}")).await }
    };
    let spawn = || {
        let url = p.url("/x");
        tokio::spawn(async move { client().get(&url).await.status })
    };
    let first = spawn();
    eventually(Duration::from_secs(10), "the first request in flight", || async { slow.hits() >= 1 }).await;
    let queued = spawn();
    eventually(Duration::from_secs(10), "the second request queued on the cluster's pool", || async {
        p.metric(r#"outrigger_bulkhead_queued{scope="cluster",name="c"}"#).await == 1.0
    })
    .await;
    assert_eq!(in_flight("route", "r").await, 2.0, "a queued request keeps its route slot");
    assert_eq!(in_flight("cluster", "c").await, 1.0);
    let refused = client().get(&p.url("/x")).await;
    assert_eq!(refused.header("x-outrigger-error"), Some("bulkhead-full"));
    assert_eq!(in_flight("route", "r").await, 2.0, "a refused request gave its route slot back");
    gate.open();
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(queued.await.unwrap(), 200);
    eventually(Duration::from_secs(10), "every slot released", || async {
        in_flight("route", "r").await == 0.0 && in_flight("cluster", "c").await == 0.0
    })
    .await;
    assert_eq!(p.metric(r#"outrigger_bulkhead_rejected_total{scope="cluster",name="c"}"#).await, 1.0);
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

    // Held until the gate opens, so all 6 arrive while the first ones are
    // still in flight, however slowly they are sent.
    let gate = Gate::new();
    slow.set_default(Fault::Gated(gate.clone(), 200));
    let before = slow.hits();
    let tasks: Vec<_> = (0..6).map(|_| tokio::spawn(client().get_owned(p.url("/slow")))).collect();
    eventually(Duration::from_secs(10), "2 held and 4 answered", || async {
        slow.hits() - before >= 2 && tasks.iter().filter(|t| t.is_finished()).count() >= 4
    })
    .await;
    assert_eq!(slow.hits() - before, 2, "requests let through at a limit of 2");
    gate.open();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let ok = answers.iter().filter(|r| r.status == 200).count();
    let full = answers.iter().filter(|r| r.header("x-outrigger-error") == Some("bulkhead-full")).count();
    assert_eq!((ok, full), (2, 4));
}
