//! The balancer as a whole: health rules around the pure policies, with
//! tokio's clock paused for anything timed.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use tokio::time::{advance, sleep};

use super::census::Census;
use super::settings::{LbPolicy, OutlierSettings};
use super::{outlier, AvoidEndpoint, Balancer, BalancerSettings};
use crate::body::Body;
use crate::discovery::EndpointSpec;
use crate::error::Outcome;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn specs(ports: &[u16]) -> Vec<EndpointSpec> {
    ports.iter().map(|p| EndpointSpec::new(addr(*p))).collect()
}

fn with_outlier(max_ejected_percent: u32, panic_threshold: f64) -> Balancer {
    Balancer::new(
        "c",
        BalancerSettings {
            policy: LbPolicy::RoundRobin,
            outlier: Some(OutlierSettings {
                consecutive_failures: 3,
                base_ejection: Duration::from_secs(10),
                max_ejection: Duration::from_secs(25),
                max_ejected_percent,
            }),
            panic_threshold,
        },
    )
}

fn fail(b: &Balancer, port: u16, times: usize) {
    let set = b.snapshot();
    let e = set.endpoints.iter().find(|e| e.address == addr(port)).unwrap();
    for _ in 0..times {
        b.record(e, Outcome::Failure, Duration::from_millis(1));
    }
}

fn picked(b: &Balancer, n: usize) -> Vec<u16> {
    let req = Request::new(Body::empty());
    (0..n).map(|_| b.pick(&req).map(|e| e.address.port()).unwrap_or(0)).collect()
}

/// Three failures in a row eject an endpoint for 10 s; it returns exactly
/// then. A second ejection lasts 20 s; the gauges follow via the expiry
/// task.
#[tokio::test(start_paused = true)]
async fn ejection_lasts_base_times_ejections() {
    let b = Arc::new(with_outlier(50, 0.5));
    tokio::spawn(outlier::expire(Arc::downgrade(&b), b.changed()));
    b.update(specs(&[1, 2]));
    fail(&b, 1, 3);
    assert!(picked(&b, 10).iter().all(|p| *p == 2), "ejected endpoint gets nothing");
    assert_eq!(b.census(), Census { healthy: 1, ejected: 1, unhealthy: 0 });

    sleep(Duration::from_millis(9_990)).await;
    assert!(!picked(&b, 10).contains(&1));
    sleep(Duration::from_millis(20)).await;
    assert!(picked(&b, 10).contains(&1), "back after 10 s");
    assert_eq!(b.census().ejected, 0, "the expiry task refreshed the census");

    fail(&b, 1, 3);
    sleep(Duration::from_millis(19_990)).await;
    assert!(!picked(&b, 10).contains(&1), "second ejection lasts 20 s");
    sleep(Duration::from_millis(20)).await;
    assert!(picked(&b, 10).contains(&1));
    let view = &b.endpoint_views()[0];
    assert_eq!(view.times_ejected, 2);
}

/// With two of three endpoints failing and at most 50% ejected, only the
/// first to fail is ejected; the other keeps its traffic.
#[tokio::test(start_paused = true)]
async fn at_most_max_ejected_percent() {
    let b = with_outlier(50, 0.5);
    b.update(specs(&[1, 2, 3]));
    fail(&b, 1, 3);
    fail(&b, 2, 9);
    assert_eq!(b.census(), Census { healthy: 2, ejected: 1, unhealthy: 0 });
    let got = picked(&b, 30);
    assert!(!got.contains(&1) && got.contains(&2) && got.contains(&3));
}

/// When too few endpoints are usable, picks spread over all of them; with
/// panic mode off, a cluster with none usable has no endpoint to give.
#[tokio::test(start_paused = true)]
async fn panic_mode_uses_every_endpoint() {
    let b = with_outlier(100, 0.5);
    b.update(specs(&[1, 2]));
    fail(&b, 1, 3);
    assert!(!b.in_panic(), "one of two usable is at the threshold, not below");
    fail(&b, 2, 3);
    assert!(b.in_panic());
    let got = picked(&b, 10);
    assert!(got.contains(&1) && got.contains(&2));

    let off = with_outlier(100, 0.0);
    off.update(specs(&[1, 2]));
    fail(&off, 1, 3);
    fail(&off, 2, 3);
    assert_eq!(picked(&off, 1), [0], "no usable endpoint");
}

/// A retried request avoids the endpoint its last try failed on, unless
/// that is the only usable one.
#[test]
fn avoids_the_endpoint_a_retry_names() {
    let b = Balancer::new("c", LbPolicy::RoundRobin);
    b.update(specs(&[1, 2, 3]));
    let mut req = Request::new(Body::empty());
    req.extensions_mut().insert(AvoidEndpoint(addr(2)));
    for _ in 0..20 {
        assert_ne!(b.pick(&req).unwrap().address, addr(2));
    }
    b.update(specs(&[2]));
    assert_eq!(b.pick(&req).unwrap().address, addr(2), "the only endpoint is still used");
}

/// An update keeps the state of endpoints that remain (in flight,
/// ejection, counters), takes a new weight in place, and starts new
/// endpoints fresh and healthy.
#[tokio::test(start_paused = true)]
async fn updates_keep_remaining_endpoints_state() {
    let b = with_outlier(50, 0.5);
    b.update(specs(&[1, 2, 3]));
    let first = b.snapshot().endpoints[0].clone();
    first.in_flight.fetch_add(2, Ordering::Relaxed);
    fail(&b, 1, 3);

    let mut next = specs(&[4, 1]);
    next[1].weight = 5;
    b.update(next);
    let set = b.snapshot();
    assert!(Arc::ptr_eq(&set.endpoints[1], &first), "same endpoint object");
    assert_eq!(first.load(), 2);
    assert_eq!(first.spec().weight, 5);
    assert!(picked(&b, 10).iter().all(|p| *p == 4), "still ejected after the update");
    assert_eq!(set.endpoints[0].requests.load(Ordering::Relaxed), 0);
    assert_eq!(b.census(), Census { healthy: 1, ejected: 1, unhealthy: 0 });
}

/// Least request sends to the endpoint with fewer requests in flight.
#[test]
fn least_request_prefers_idle_endpoints() {
    let b = Balancer::new("c", LbPolicy::LeastRequest);
    b.update(specs(&[1, 2]));
    b.snapshot().endpoints[0].in_flight.store(3, Ordering::Relaxed);
    assert!(picked(&b, 20).iter().all(|p| *p == 2));
}

/// Peak EWMA prefers the endpoint that answered faster.
#[tokio::test(start_paused = true)]
async fn peak_ewma_prefers_fast_endpoints() {
    let b = Balancer::new("c", LbPolicy::PeakEwma);
    b.update(specs(&[1, 2]));
    advance(Duration::from_millis(100)).await;
    let set = b.snapshot();
    b.record(&set.endpoints[0], Outcome::Success, Duration::from_millis(80));
    b.record(&set.endpoints[1], Outcome::Success, Duration::from_millis(2));
    assert!(picked(&b, 20).iter().all(|p| *p == 2));
}

/// With nothing in flight, least request shares traffic by weight (the
/// weighted first draw wins ties).
#[test]
fn least_request_splits_idle_traffic_by_weight() {
    let b = Balancer::new("c", LbPolicy::LeastRequest);
    let mut s = specs(&[1, 2]);
    s[0].weight = 3;
    b.update(s);
    let heavy = picked(&b, 4000).iter().filter(|p| **p == 1).count();
    assert!((2800..3200).contains(&heavy), "heavy got {heavy} of 4000");
}
