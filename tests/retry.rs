//! Retries through a real proxy to real upstreams: what is retried, what
//! is not, bodies replayed intact, the budget's cap, Retry-After.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::*;

/// One route `r` (timeout `timeout`) to cluster `c` over `endpoints`, with
/// `retry` as its retry block.
fn config(endpoints: &[String], timeout: &str, retry: &str) -> String {
    let endpoints = endpoints.iter().map(|e| format!("\"{e}\"")).collect::<Vec<_>>().join(", ");
    format!(
        "listeners: [{{name: l, address: 127.0.0.1:0, routes: [{{name: r, match: {{path_prefix: /}}, cluster: c, timeout: {timeout}, retry: {retry}}}]}}]\n\
         clusters: [{{name: c, endpoints: [{endpoints}], connect_timeout: 500ms, load_balancer: round_robin}}]\n"
    )
}

const ON_503: &str = "{attempts: 3, on: [503], backoff: {base: 1ms, max: 5ms}}";

/// A route timeout no request here comes near, even on a loaded machine.
async fn proxy_to(up: &Upstream, retry: &str) -> TestProxy {
    TestProxy::start(&config(&[up.addr.to_string()], "10s", retry)).await
}

fn request(method: &str, url: &str, body: Bytes) -> Request<Full<Bytes>> {
    Request::builder().method(method).uri(url).body(Full::new(body)).unwrap()
}

/// Two 503s then a 200: the client sees only the 200, marked as the third
/// try, and both retries are counted.
#[tokio::test]
async fn retries_until_the_upstream_answers() {
    let up = Upstream::start().await;
    up.plan([Fault::Status(503), Fault::Status(503)]);
    let p = proxy_to(&up, ON_503).await;
    let r = client().get(&p.url("/x")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-outrigger-attempts"), Some("3"));
    assert_eq!(up.hits(), 3);
    assert_eq!(p.metric(r#"outrigger_retries_total{route="r",cluster="c"}"#).await, 2.0);
    assert_eq!(p.metric(r#"outrigger_requests_total{route="r",code="200"}"#).await, 1.0);
}

/// A POST on the same route is not retried: the client gets the 503 and
/// the upstream sees one request.
#[tokio::test]
async fn post_is_not_retried() {
    let up = Upstream::start().await;
    up.plan([Fault::Status(503), Fault::Status(503)]);
    let p = proxy_to(&up, ON_503).await;
    let r = client().send(request("POST", &p.url("/orders"), Bytes::from_static(b"{}"))).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-outrigger-attempts"), None);
    assert_eq!(up.hits(), 1);
    assert_eq!(p.metric(r#"outrigger_retries_total{route="r"}"#).await, 0.0);
}

/// A 1 KiB PUT is retried, and every try carries the same head (target,
/// every header line, a repeated header's values in order) and bytes.
#[tokio::test]
async fn small_put_is_replayed_intact() {
    let up = Upstream::start().await;
    up.plan([Fault::Status(503), Fault::Status(503)]);
    let p = proxy_to(&up, ON_503).await;
    let body: Bytes = (0..1024u32).map(|i| (i * 7 % 251) as u8).collect::<Vec<_>>().into();
    let mut req = request("PUT", &p.url("/doc?v=2"), body.clone());
    for (name, value) in [("x-tag", "first"), ("authorization", "Bearer t"), ("x-tag", "second")] {
        req.headers_mut().append(name, value.parse().unwrap());
    }
    let r = client().send(req).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.hits(), 3);
    assert_eq!(up.bodies(), vec![body.clone(), body.clone(), body]);
    let heads = up.heads();
    assert!(heads[0].starts_with("PUT /doc?v=2 HTTP/1.1\n"), "{}", heads[0]);
    assert!(heads[0].contains("x-tag: first\nx-tag: second\n"), "{}", heads[0]);
    assert!(heads[0].contains("authorization: Bearer t\n"), "{}", heads[0]);
    assert_eq!(heads[1], heads[0], "the first retry's head");
    assert_eq!(heads[2], heads[0], "the second retry's head");
}

/// A 70 KiB PUT is over the 64 KiB replay cap: sent once, whole, and its
/// 503 relayed.
#[tokio::test]
async fn large_put_is_not_retried() {
    let up = Upstream::start().await;
    up.plan([Fault::Status(503), Fault::Status(503)]);
    let p = proxy_to(&up, ON_503).await;
    let body = Bytes::from(vec![b'z'; 70 * 1024]);
    let r = client().send(request("PUT", &p.url("/doc"), body.clone())).await;
    assert_eq!(r.status, 503);
    assert_eq!(up.hits(), 1);
    assert_eq!(up.bodies(), vec![body]);
}

/// Against an upstream failing everything, `ratio: 0.2` holds retries to a
/// fifth of requests: 1,000 requests (3 tries each allowed) cost at most
/// 1,200 tries, and each refused retry is counted and marked.
#[tokio::test]
async fn budget_caps_retries_at_the_ratio() {
    let up = Upstream::start_with(Fault::Status(503)).await;
    let retry = "{attempts: 3, on: [503], backoff: {base: 1ms, max: 2ms}, budget: {ratio: 0.2, min_per_second: 0}}";
    let p = proxy_to(&up, retry).await;
    let (cl, url) = (client(), p.url("/x"));
    let mut marked = 0;
    for _ in 0..100 {
        let batch: Vec<_> = (0..10).map(|_| cl.get(&url)).collect();
        for r in futures_util::future::join_all(batch).await {
            assert_eq!(r.status, 503);
            if r.header("x-outrigger-error") == Some("retry-budget-exhausted") {
                marked += 1;
            }
        }
    }
    let tries = up.hits();
    println!("budget test: {tries} upstream tries for 1000 requests, {marked} refused a retry");
    assert!(tries <= 1200, "{tries} tries");
    assert!(tries >= 1150, "the budget should be used, not hoarded: {tries} tries");
    let retries = p.metric(r#"outrigger_retries_total{route="r",cluster="c"}"#).await;
    assert_eq!(retries, (tries - 1000) as f64);
    let exhausted = p.metric(r#"outrigger_retry_budget_exhausted_total{route="r",cluster="c"}"#).await;
    assert_eq!(exhausted, marked as f64);
    assert!(marked >= 800, "most requests were refused a retry: {marked}");
}

/// With no budget left and no response at all (connect refused), the
/// client gets 503 retry-budget-exhausted.
#[tokio::test]
async fn exhausted_budget_without_a_response_is_503() {
    let retry = "{attempts: 3, on: [connect-failure], budget: {ratio: 0, min_per_second: 0}}";
    let p = TestProxy::start(&config(&[refused_addr().to_string()], "3s", retry)).await;
    let r = client().get(&p.url("/x")).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-outrigger-error"), Some("retry-budget-exhausted"));
    assert_eq!(p.metric(r#"outrigger_retry_budget_exhausted_total{route="r"}"#).await, 1.0);
    assert_eq!(p.metric(r#"outrigger_local_responses_total{reason="retry-budget-exhausted"}"#).await, 1.0);
}

/// A connect failure on one endpoint is retried onto the other, so every
/// request succeeds although half the first tries fail.
#[tokio::test]
async fn connect_failure_is_retried_onto_another_endpoint() {
    let up = Upstream::start().await;
    let endpoints = [refused_addr().to_string(), up.addr.to_string()];
    let p = TestProxy::start(&config(&endpoints, "3s", "{attempts: 2, on: [connect-failure]}")).await;
    let mut retried = 0;
    for _ in 0..6 {
        let r = client().get(&p.url("/x")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-upstream"), Some(up.addr.to_string().as_str()));
        retried += usize::from(r.header("x-outrigger-attempts") == Some("2"));
    }
    assert!(retried >= 1, "some first tries went to the refused endpoint");
    assert_eq!(up.hits(), 6);
    assert_eq!(p.metric(r#"outrigger_retries_total{route="r"}"#).await, retried as f64);
}

/// A reset and a per-try timeout are each retried when named. (The slow
/// try answers only long after the route timeout: a 200 from a third try
/// proves it was cut, with no bound on how fast a loaded machine is; the
/// per-try timeout is far above what the healthy third try takes.)
#[tokio::test]
async fn resets_and_per_try_timeouts_are_retried() {
    let up = Upstream::start().await;
    up.plan([Fault::Reset, Fault::Delay(Duration::from_secs(60), 200)]);
    let retry = "{attempts: 3, on: [reset, timeout], per_try_timeout: 1s, backoff: {base: 1ms, max: 2ms}}";
    let p = proxy_to(&up, retry).await;
    let r = client().get(&p.url("/x")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-outrigger-attempts"), Some("3"));
    assert_eq!(up.hits(), 3);
}

/// `Retry-After: 1` on a 429 is waited out (instead of the 1 ms backoff)
/// before the retry.
#[tokio::test]
async fn retry_after_is_honoured() {
    let up = Upstream::start().await;
    up.plan([Fault::RetryAfter(429, 1)]);
    let p = proxy_to(&up, "{attempts: 2, on: [429], backoff: {base: 1ms, max: 1ms}}").await;
    let t = Instant::now();
    let r = client().get(&p.url("/x")).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.hits(), 2);
    assert!(t.elapsed() >= Duration::from_secs(1), "waited {:?}", t.elapsed());
}

/// A `Retry-After` that would pass the route timeout is not waited for:
/// the 503 is relayed at once, with its header (not held until the route
/// timeout: it arrives in under half of it, a bound a loaded machine meets
/// with seconds to spare).
#[tokio::test]
async fn retry_after_past_the_route_timeout_is_relayed() {
    let up = Upstream::start().await;
    up.plan([Fault::RetryAfter(503, 30)]);
    let p = TestProxy::start(&config(&[up.addr.to_string()], "10s", ON_503)).await;
    let t = Instant::now();
    let r = client().get(&p.url("/x")).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("30"));
    assert_eq!(r.header("x-outrigger-error"), None);
    assert_eq!(up.hits(), 1);
    assert!(t.elapsed() < Duration::from_secs(5), "relayed at once: {:?}", t.elapsed());
}
