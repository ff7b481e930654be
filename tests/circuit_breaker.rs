//! Circuit breaking against real failing upstreams.

mod support;

use std::time::{Duration, Instant};

use support::*;

fn cfg(up: &Upstream, breaker: &str) -> String {
    format!(
        "listeners: [{{name: l, address: 127.0.0.1:0, routes: [{{name: r, cluster: c, circuit_breaker: {breaker}}}]}}]\nclusters: [{{name: c, endpoints: [\"{}\"]}}]\n",
        up.addr
    )
}

/// 5 consecutive failures open the breaker: the next 100 requests get 503
/// circuit-open without waiting on the upstream (which by then never
/// answers) and the upstream sees none; after open_duration one probe goes
/// through and its success closes the breaker.
#[tokio::test]
async fn opens_fails_fast_probes_and_closes() {
    // Long enough that the 100 refusals fit in it on a loaded machine too
    // (the jitter may cut it to 90%).
    const OPEN: Duration = Duration::from_secs(3);
    let up = Upstream::start_with(Fault::Status(503)).await;
    let p =
        TestProxy::start(&cfg(&up, &format!("{{consecutive_failures: 5, open_duration: {}s}}", OPEN.as_secs()))).await;
    let cl = client();
    let mut tripped_after = Instant::now();
    for _ in 0..5 {
        tripped_after = Instant::now();
        let r = cl.get(&p.url("/")).await;
        assert_eq!(r.status, 503);
        assert_eq!(r.header("x-outrigger-error"), None, "the upstream's own 503");
    }
    assert_eq!(p.metric(r#"outrigger_circuit_state{scope="route",name="r"}"#).await, 1.0);
    // A request let through now would hang: a refusal that waits on the
    // upstream cannot pass for a fast one.
    let gate = Gate::new();
    up.set_default(Fault::Gated(gate.clone(), 503));
    let mut slowest = Duration::ZERO;
    for _ in 0..100 {
        let t = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(10), cl.get(&p.url("/")))
            .await
            .expect("a refused request waited on the upstream");
        slowest = slowest.max(t.elapsed());
        assert_eq!(r.status, 503);
        assert_eq!(r.header("x-outrigger-error"), Some("circuit-open"));
    }
    println!("circuit-open: slowest of 100 fast-fails {slowest:?}");
    assert_eq!(up.hits(), 5, "the upstream saw none of the refused requests");
    // Recover; ask until the open period is over: every ask before is
    // refused (and never reaches the upstream), the first after is the
    // probe, and its success closes.
    up.set_default(Fault::Status(200));
    gate.open();
    eventually(Duration::from_secs(15), "a probe goes through", || async {
        let r = cl.get(&p.url("/")).await;
        if r.status != 200 {
            assert_eq!(r.header("x-outrigger-error"), Some("circuit-open"), "{} before the probe", r.status);
        }
        r.status == 200
    })
    .await;
    assert!(tripped_after.elapsed() >= OPEN.mul_f64(0.9), "probed after {:?}", tripped_after.elapsed());
    assert_eq!(up.hits(), 6);
    assert_eq!(p.metric(r#"outrigger_circuit_state{scope="route",name="r"}"#).await, 0.0);
    for to in ["open", "half-open", "closed"] {
        let series = format!(r#"outrigger_circuit_transitions_total{{scope="route",name="r",to="{to}"}}"#);
        assert_eq!(p.metric(&series).await, 1.0, "{to}");
    }
    for _ in 0..10 {
        assert_eq!(cl.get(&p.url("/")).await.status, 200);
    }
}

/// A failed probe re-opens the breaker at once.
#[tokio::test]
async fn failed_probe_reopens() {
    let up = Upstream::start_with(Fault::Status(500)).await;
    // The re-opened period is twice this (less 10% jitter): the request
    // right after the probe must land in it, on a loaded machine too.
    let p = TestProxy::start(&cfg(&up, "{consecutive_failures: 2, open_duration: 1s}")).await;
    let cl = client();
    cl.get(&p.url("/")).await;
    cl.get(&p.url("/")).await;
    // Ask until one is let through: the probe, relayed from the upstream.
    eventually(Duration::from_secs(10), "the probe reaches the upstream", || async {
        let r = cl.get(&p.url("/")).await;
        match r.header("x-outrigger-error") {
            Some(e) => assert_eq!(e, "circuit-open"),
            None => assert_eq!(r.status, 500),
        }
        r.header("x-outrigger-error").is_none()
    })
    .await;
    assert_eq!(cl.get(&p.url("/")).await.header("x-outrigger-error"), Some("circuit-open"));
    assert_eq!(up.hits(), 3);
}

/// 4xx answers are successes: they never open the breaker.
#[tokio::test]
async fn client_errors_do_not_trip() {
    let up = Upstream::start_with(Fault::Status(404)).await;
    let p = TestProxy::start(&cfg(&up, "{consecutive_failures: 3}")).await;
    for _ in 0..20 {
        assert_eq!(client().get(&p.url("/")).await.status, 404);
    }
    assert_eq!(up.hits(), 20);
}

/// A cluster's breaker is shared: failures through one route open it for
/// another route to the same cluster. Connect failures count.
#[tokio::test]
async fn cluster_breaker_is_shared_by_routes() {
    let addr = refused_addr();
    let p = TestProxy::start(&format!(
        "listeners: [{{name: l, address: 127.0.0.1:0, routes: [{{name: a, match: {{path_prefix: /a}}, cluster: c}}, {{name: b, cluster: c}}]}}]\nclusters: [{{name: c, endpoints: [\"{addr}\"], circuit_breaker: {{consecutive_failures: 3, open_duration: 10s}}}}]\n"
    ))
    .await;
    let cl = client();
    for _ in 0..3 {
        assert_eq!(cl.get(&p.url("/a")).await.header("x-outrigger-error"), Some("upstream-connect-failure"));
    }
    assert_eq!(cl.get(&p.url("/b")).await.header("x-outrigger-error"), Some("circuit-open"));
    assert_eq!(p.metric(r#"outrigger_circuit_state{scope="cluster",name="c"}"#).await, 1.0);
    assert_eq!(p.metric(r#"outrigger_local_responses_total{route="b",reason="circuit-open"}"#).await, 1.0);
}

/// A route `a` with a breaker of its own (tripping after `route`
/// consecutive failures) in front of its cluster's (after `cluster`), to
/// an endpoint that refuses connections; `fail` requests already sent,
/// each answered as a connect failure.
async fn two_breakers(route: u32, cluster: u32, fail: u32) -> TestProxy {
    let addr = refused_addr();
    let p = TestProxy::start(&format!(
        "listeners: [{{name: l, address: 127.0.0.1:0, routes: [{{name: a, cluster: c, circuit_breaker: {{consecutive_failures: {route}, open_duration: 10s}}}}]}}]\nclusters: [{{name: c, endpoints: [\"{addr}\"], circuit_breaker: {{consecutive_failures: {cluster}, open_duration: 10s}}}}]\n"
    ))
    .await;
    for _ in 0..fail {
        assert_eq!(client().get(&p.url("/")).await.header("x-outrigger-error"), Some("upstream-connect-failure"));
    }
    p
}

/// A route with a breaker of its own in front of its cluster's: every
/// failure counts in both; once the cluster's opens, the route's refusals
/// are not failures to the route's own breaker, which stays closed.
#[tokio::test]
async fn route_and_cluster_breakers_both_hold() {
    let p = two_breakers(4, 3, 3).await;
    assert_eq!(p.metric(r#"outrigger_circuit_state{scope="cluster",name="c"}"#).await, 1.0);
    for _ in 0..5 {
        assert_eq!(client().get(&p.url("/")).await.header("x-outrigger-error"), Some("circuit-open"));
    }
    assert_eq!(p.metric(r#"outrigger_circuit_state{scope="route",name="a"}"#).await, 0.0);
    assert_eq!(p.metric(r#"outrigger_local_responses_total{route="a",reason="circuit-open"}"#).await, 5.0);
}

/// The route's own breaker, in front of a cluster breaker that would take
/// longer, hears every failure and opens first: it refuses on its own.
#[tokio::test]
async fn a_route_breaker_opens_before_its_cluster_s() {
    let p = two_breakers(2, 5, 2).await;
    assert_eq!(p.metric(r#"outrigger_circuit_state{scope="route",name="a"}"#).await, 1.0);
    assert_eq!(p.metric(r#"outrigger_circuit_state{scope="cluster",name="c"}"#).await, 0.0);
    assert_eq!(client().get(&p.url("/")).await.header("x-outrigger-error"), Some("circuit-open"));
}

/// The failure rate over the window trips the breaker once min_requests
/// calls have been seen.
#[tokio::test]
async fn failure_rate_trips() {
    let up = Upstream::start().await;
    up.plan((0..20).map(|i| Fault::Status(if i % 2 == 0 { 500 } else { 200 })));
    let p = TestProxy::start(&cfg(&up, "{failure_rate: {threshold: 0.5, window: 10s, min_requests: 10}}")).await;
    let cl = client();
    for _ in 0..9 {
        assert!(cl.get(&p.url("/")).await.header("x-outrigger-error").is_none());
    }
    cl.get(&p.url("/")).await; // the 10th call: 5 of 10 failed
    assert_eq!(cl.get(&p.url("/")).await.header("x-outrigger-error"), Some("circuit-open"));
}

/// Breaker state survives a config reload when its settings are unchanged,
/// and starts fresh when they change.
#[tokio::test]
async fn state_survives_unchanged_reload() {
    let up = Upstream::start_with(Fault::Status(503)).await;
    let yaml = cfg(&up, "{consecutive_failures: 2, open_duration: 30s}");
    let p = TestProxy::start(&yaml).await;
    let cl = client();
    cl.get(&p.url("/")).await;
    cl.get(&p.url("/")).await;
    assert_eq!(cl.get(&p.url("/")).await.header("x-outrigger-error"), Some("circuit-open"));
    let same = outrigger::config::parse(&format!("admin: {{address: 127.0.0.1:0}}\n{yaml}"), "t").unwrap();
    p.proxy.apply(same).await.unwrap();
    assert_eq!(cl.get(&p.url("/")).await.header("x-outrigger-error"), Some("circuit-open"), "still open");
    let changed = outrigger::config::parse(
        &format!("admin: {{address: 127.0.0.1:0}}\n{}", cfg(&up, "{consecutive_failures: 3, open_duration: 30s}")),
        "t",
    )
    .unwrap();
    p.proxy.apply(changed).await.unwrap();
    assert_eq!(cl.get(&p.url("/")).await.header("x-outrigger-error"), None, "a fresh breaker lets it through");
}

/// A hanging upstream behind a route with only `timeout` (no per-try
/// timeout) still trips the breaker: each 504 counts as a failure. (The
/// timeout leaves each request ample time to reach the upstream first, on a
/// loaded machine too.)
#[tokio::test]
async fn route_timeouts_count_as_failures() {
    let up = Upstream::start_with(Fault::Delay(Duration::from_secs(30), 200)).await;
    let p = TestProxy::start(&format!(
        "listeners: [{{name: l, address: 127.0.0.1:0, routes: [{{name: r, cluster: c, timeout: 1s, circuit_breaker: {{consecutive_failures: 2, open_duration: 30s}}}}]}}]\nclusters: [{{name: c, endpoints: [\"{}\"]}}]\n",
        up.addr
    ))
    .await;
    let cl = client();
    assert_eq!(cl.get(&p.url("/")).await.header("x-outrigger-error"), Some("timeout"));
    assert_eq!(cl.get(&p.url("/")).await.header("x-outrigger-error"), Some("timeout"));
    assert_eq!(cl.get(&p.url("/")).await.header("x-outrigger-error"), Some("circuit-open"));
    assert_eq!(up.hits(), 2);
}

/// A retried request whose second try hangs until the route timeout: that
/// try counts as a failure too, though it started well after the request
/// did (a try's own age said "client hang-up", and the breaker never saw
/// hanging upstreams behind retries). The route timeout leaves the first
/// try and the backoff ample room on a loaded machine: if they used it up,
/// no second try would be made.
#[tokio::test]
async fn a_retry_cut_off_by_the_route_timeout_counts_as_a_failure() {
    let up = Upstream::start().await;
    up.plan([Fault::Status(503), Fault::Delay(Duration::from_secs(30), 200)]);
    let p = TestProxy::start(&format!(
        "listeners: [{{name: l, address: 127.0.0.1:0, routes: [{{name: r, cluster: c, timeout: 2s, \
         retry: {{attempts: 2, on: [503], backoff: {{base: 150ms, max: 150ms}}}}, \
         circuit_breaker: {{consecutive_failures: 2, open_duration: 30s}}}}]}}]\n\
         clusters: [{{name: c, endpoints: [\"{}\"]}}]\n",
        up.addr
    ))
    .await;
    let cl = client();
    assert_eq!(cl.get(&p.url("/")).await.header("x-outrigger-error"), Some("timeout"));
    assert_eq!(up.hits(), 2, "the 503, then the try that hung");
    assert_eq!(cl.get(&p.url("/")).await.header("x-outrigger-error"), Some("circuit-open"));
}

/// A client that goes away halfway through its upload is not the
/// upstream's fault: it is told 400 bad-request and the breaker, which
/// opens on one failure, stays closed: on a retried route (the body is
/// buffered for replay), on a streamed one, and over HTTP/2 upstream.
#[tokio::test]
async fn a_client_abandoning_its_upload_does_not_trip() {
    let (up, up2) = (Upstream::start().await, Upstream::start_h2().await);
    let p = TestProxy::start(&format!(
        "listeners: [{{name: l, address: 127.0.0.1:0, routes: [\
         {{name: retried, match: {{path_prefix: /retried}}, cluster: c, retry: {{attempts: 3}}, circuit_breaker: {{consecutive_failures: 1}}}}, \
         {{name: h2, match: {{path_prefix: /h2}}, cluster: c2, circuit_breaker: {{consecutive_failures: 1}}}}, \
         {{name: streamed, cluster: c, circuit_breaker: {{consecutive_failures: 1}}}}]}}]\n\
         clusters: [{{name: c, endpoints: [\"{}\"]}}, {{name: c2, protocol: http2, endpoints: [\"{}\"]}}]\n",
        up.addr, up2.addr
    ))
    .await;
    for route in ["retried", "streamed", "h2"] {
        for _ in 0..3 {
            let reply = raw_half_closed(
                p.addr,
                format!("PUT /{route} HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789").as_bytes(),
            )
            .await;
            assert!(reply.starts_with("HTTP/1.1 400"), "{route}: {reply}");
            assert!(reply.contains("x-outrigger-error: bad-request"), "{route}: {reply}");
        }
        let r = client().get(&p.url(&format!("/{route}"))).await;
        assert_eq!(r.status, 200, "{route}: {:?}", r.header("x-outrigger-error"));
        assert_eq!(p.metric(&format!(r#"outrigger_circuit_state{{scope="route",name="{route}"}}"#)).await, 0.0);
        assert_eq!(
            p.metric(&format!(r#"outrigger_local_responses_total{{route="{route}",reason="bad-request"}}"#)).await,
            3.0
        );
    }
}
