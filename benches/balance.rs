//! Nanoseconds per pick for each policy at 10, 1,000 and 10,000 endpoints,
//! and the cost of a set update (where rings and tables are built).
//!
//!     cargo bench --bench balance

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::{HeaderName, Request};
use outrigger::balance::settings::{HashOn, LbPolicy};
use outrigger::balance::Balancer;
use outrigger::body::Body;
use outrigger::discovery::EndpointSpec;

const SIZES: [usize; 3] = [10, 1_000, 10_000];

fn policies() -> Vec<(&'static str, LbPolicy, bool)> {
    let on = || HashOn::Header(HeaderName::from_static("x-user"));
    vec![
        ("round_robin", LbPolicy::RoundRobin, false),
        ("round_robin_weighted", LbPolicy::RoundRobin, true),
        ("random", LbPolicy::Random, false),
        ("random_weighted", LbPolicy::Random, true),
        ("least_request", LbPolicy::LeastRequest, false),
        ("peak_ewma", LbPolicy::PeakEwma, false),
        ("ring_hash", LbPolicy::RingHash(on()), false),
        ("maglev", LbPolicy::Maglev(on()), false),
    ]
}

/// `n` endpoints (addresses only; nothing is dialled), weights 1-4 if asked.
fn endpoints(n: usize, weighted: bool) -> Vec<EndpointSpec> {
    (0..n)
        .map(|i| {
            let addr = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 8080));
            let mut spec = EndpointSpec::new(addr);
            if weighted {
                spec.weight = 1 + (i % 4) as u32;
            }
            spec
        })
        .collect()
}

/// Requests carrying 1,024 different hash keys, cycled through.
fn requests() -> Vec<Request<Body>> {
    (0..1024).map(|i| Request::get("/").header("x-user", format!("user-{i}")).body(Body::empty()).unwrap()).collect()
}

fn picks(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let _clock = runtime.enter();
    let reqs = requests();
    let mut group = c.benchmark_group("pick");
    for (name, policy, weighted) in policies() {
        for n in SIZES {
            let balancer = Balancer::new("bench", policy.clone());
            balancer.update(endpoints(n, weighted));
            let mut k = 0usize;
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| {
                    k = (k + 1) & 1023;
                    black_box(balancer.pick(black_box(&reqs[k])))
                })
            });
        }
    }
    group.finish();
}

fn updates(c: &mut Criterion) {
    let mut group = c.benchmark_group("update_10000");
    group.sample_size(10);
    for (name, policy, weighted) in policies() {
        let sets = [endpoints(10_000, weighted), endpoints(9_999, weighted)];
        let balancer = Balancer::new("bench", policy);
        let mut i = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                i += 1;
                balancer.update(sets[i % 2].clone())
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    targets = picks, updates
}
criterion_main!(benches);
