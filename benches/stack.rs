//! The per-request cost of the route stack: a bare route (timeout only)
//! against every resilience layer on (route + cluster bulkheads, retry
//! with budget and body replay buffer, route + cluster breakers, per-try
//! timeout), over an in-memory upstream that answers at once. The
//! difference is what the layers cost per request. (The proxy's per-try
//! timeout is the balancer's; here a timeout layer over the upstream
//! stands in for it, so its timer is still counted.)

use std::convert::Infallible;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response};
use outrigger::body::Body;
use outrigger::error::BoxError;
use outrigger::metrics::Metrics;
use outrigger::proxy::route::{stack_over, HttpService};
use outrigger::proxy::state::StateStore;
use outrigger::resilience::timeout::TimeoutLayer;
use tower::Layer;

const CONFIG: &str = r#"
listeners:
  - name: l
    address: 127.0.0.1:0
    routes:
      - {name: bare, match: {path: /bare}, cluster: c}
      - name: layered
        cluster: c
        timeout: 5s
        retry: {attempts: 2, on: [connect-failure, reset, 503], per_try_timeout: 2s}
        bulkhead: {max_concurrent: 1000, max_queued: 100, queue_timeout: 1s}
        circuit_breaker: {consecutive_failures: 50, failure_rate: {threshold: 0.5, min_requests: 20}}
clusters:
  - name: c
    endpoints: [127.0.0.1:1]
    circuit_breaker: {consecutive_failures: 50}
    bulkhead: {max_concurrent: 1000}
"#;

fn stacks() -> (HttpService, HttpService) {
    let settings = outrigger::config::parse(CONFIG, "bench.yaml").expect("valid");
    let metrics = Metrics::unregistered();
    let state = StateStore::default();
    let upstream =
        tower::service_fn(|_req: Request<Body>| async { Ok::<_, BoxError>(Response::new(Body::from("ok"))) });
    let routes = &settings.listeners[0].routes;
    let cluster = &settings.clusters[0];
    let bare = stack_over(&routes[0], cluster, upstream, &metrics, &state);
    let per_try = TimeoutLayer::new(Duration::from_secs(2)).layer(upstream);
    let layered = stack_over(&routes[1], cluster, per_try, &metrics, &state);
    (bare, layered)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (bare, layered) = rt.block_on(async { stacks() });
    let mut g = c.benchmark_group("route_stack");
    for (name, svc) in [("bare_route", bare), ("all_layers", layered)] {
        g.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                let req = Request::get("http://x/").body(Body::empty()).unwrap();
                let fut = svc.call(req);
                async move {
                    let resp = fut.await.unwrap();
                    drop(resp);
                    Ok::<_, Infallible>(())
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
