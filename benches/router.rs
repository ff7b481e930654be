//! Router match cost with 1,000 routes: the best case (first route), the
//! worst (no route matches), and a regex route at the end.

use criterion::{criterion_group, criterion_main, Criterion};
use http::Request;
use outrigger::proxy::router::{HostMatch, PathMatch, RouteMatch, Router};

fn routes(n: usize) -> Router<usize> {
    let mut v: Vec<(RouteMatch, usize)> = (0..n)
        .map(|i| {
            let m = RouteMatch {
                host: Some(HostMatch::parse(&format!("svc-{i}"))),
                path: PathMatch::Prefix(format!("/api/v{i}/")),
                methods: None,
                headers: vec![],
            };
            (m, i)
        })
        .collect();
    let re = regex::Regex::new("^(?:/items/[0-9]+)$").unwrap();
    v.push((RouteMatch { host: None, path: PathMatch::Regex(re), methods: None, headers: vec![] }, n));
    Router::new(v)
}

fn bench(c: &mut Criterion) {
    let router = routes(1000);
    let first = Request::get("/api/v0/x").header("host", "svc-0").body(()).unwrap();
    let last = Request::get("/api/v999/x").header("host", "svc-999:8080").body(()).unwrap();
    let regex = Request::get("/items/123").header("host", "other").body(()).unwrap();
    let none = Request::get("/nothing").header("host", "nobody").body(()).unwrap();
    let mut g = c.benchmark_group("router_1000_routes");
    g.bench_function("first", |b| b.iter(|| router.route(std::hint::black_box(&first))));
    g.bench_function("last_host_prefix", |b| b.iter(|| router.route(std::hint::black_box(&last))));
    g.bench_function("regex_after_1000", |b| b.iter(|| router.route(std::hint::black_box(&regex))));
    g.bench_function("no_match", |b| b.iter(|| router.route(std::hint::black_box(&none))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
