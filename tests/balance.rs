//! Load balancing through the real proxy to real upstreams: policies,
//! consistent hashing, outlier ejection, health checks, panic mode and
//! endpoint updates under load.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::Request;
use http_body_util::Full;
use outrigger::discovery::EndpointSpec;
use support::*;

/// One listener routing everything to cluster `c` with `extra` cluster
/// lines (indented four spaces).
fn config(endpoints: &[&Upstream], extra: &str) -> String {
    let eps: Vec<String> = endpoints.iter().map(|u| format!("\"{}\"", u.addr)).collect();
    format!(
        "listeners:\n  - name: main\n    address: 127.0.0.1:0\n    routes:\n      - name: all\n        cluster: c\n\
         clusters:\n  - name: c\n    endpoints: [{}]\n{extra}",
        eps.join(", ")
    )
}

/// Starts the proxy and waits until discovery has filled its clusters
/// (building a maglev table takes a moment).
async fn start(yaml: &str) -> TestProxy {
    let proxy = TestProxy::start(yaml).await;
    eventually(Duration::from_secs(10), "the proxy to be ready", || async { proxy.admin_get("/ready").await.0 == 200 })
        .await;
    proxy
}

/// Sends `n` GETs at `concurrency`, returning the statuses.
async fn load(proxy: &TestProxy, n: usize, concurrency: usize) -> Vec<u16> {
    let c = client();
    futures_util::stream::iter(0..n)
        .map(|_| {
            let c = c.clone();
            let url = proxy.url("/work");
            async move { c.get(&url).await.status.as_u16() }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

/// The share of 500 requests (8 at a time) that the 1 ms endpoint gets
/// when the other takes `slow_ms`.
async fn share_to_fast(policy: &str, slow_ms: u64) -> f64 {
    let fast = Upstream::start_with(Fault::Delay(Duration::from_millis(1), 200)).await;
    let slow = Upstream::start_with(Fault::Delay(Duration::from_millis(slow_ms), 200)).await;
    let proxy = start(&config(&[&fast, &slow], &format!("    load_balancer: {policy}\n"))).await;
    let statuses = load(&proxy, 500, 8).await;
    assert!(statuses.iter().all(|s| *s == 200));
    assert_eq!(fast.hits() + slow.hits(), 500);
    fast.hits() as f64 / 500.0
}

/// How much slower the slow endpoint is for the latency-aware policies. On
/// a loaded machine the "fast" one is slowed by the proxy's own work, and
/// its share falls as its time nears the slow one's: 200 ms keeps them
/// apart (50 ms went from 95% to 85% under a heavy CPU load).
const SLOW_MS: u64 = 200;

/// least_request sends most traffic to the endpoint that finishes fast.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_favours_the_fast_endpoint() {
    let share = share_to_fast("least_request", SLOW_MS).await;
    println!("least_request: {:.0} of 500 to the fast endpoint", share * 500.0);
    assert!(share >= 0.75, "fast endpoint got {share}");
}

/// peak_ewma sends most traffic to the endpoint with the lower latency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peak_ewma_favours_the_fast_endpoint() {
    let share = share_to_fast("peak_ewma", SLOW_MS).await;
    println!("peak_ewma: {:.0} of 500 to the fast endpoint", share * 500.0);
    assert!(share >= 0.75, "fast endpoint got {share}");
}

/// round_robin ignores latency and splits evenly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_splits_evenly_whatever_the_latency() {
    // 50 ms: round robin waits on the slow endpoint for half the requests.
    let share = share_to_fast("round_robin", 50).await;
    println!("round_robin: {:.0} of 500 to the fast endpoint", share * 500.0);
    assert!((0.45..=0.55).contains(&share), "fast endpoint got {share}");
}

/// Endpoint weights from the config shape round robin: 3:1.
#[tokio::test]
async fn weights_shape_round_robin() {
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let yaml = format!(
        "listeners:\n  - name: main\n    address: 127.0.0.1:0\n    routes:\n      - name: all\n        cluster: c\n\
         clusters:\n  - name: c\n    endpoints: [{{address: \"{}\", weight: 3}}, \"{}\"]\n",
        a.addr, b.addr
    );
    let proxy = start(&yaml).await;
    load(&proxy, 40, 1).await;
    assert_eq!((a.hits(), b.hits()), (30, 10));
}

/// Which upstream each of `keys` lands on (by `x-user`).
async fn placement(proxy: &TestProxy, keys: &[String]) -> HashMap<String, String> {
    let c = client();
    futures_util::stream::iter(keys.iter().cloned())
        .map(|k| {
            let c = c.clone();
            let req = Request::get(proxy.url("/k")).header("x-user", &k).body(Full::<Bytes>::default()).unwrap();
            async move {
                let r = c.send(req).await;
                let to = r.header("x-upstream").unwrap_or_else(|| panic!("not relayed: {} {}", r.status, r.text()));
                (k, to.to_owned())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await
}

/// Over 1,000 keys on 4 endpoints: (keys that moved when the last endpoint
/// left, of which were on it, keys on it before).
async fn keys_moved_by_removal(policy: &str) -> (usize, usize, usize) {
    let ups = [Upstream::start().await, Upstream::start().await, Upstream::start().await, Upstream::start().await];
    let refs: Vec<&Upstream> = ups.iter().collect();
    let lb = format!("    load_balancer: {{{policy}: {{hash_on: {{header: x-user}}}}}}\n");
    let proxy = start(&config(&refs, &lb)).await;
    let keys: Vec<String> = (0..1000).map(|i| format!("user-{i}")).collect();

    let before = placement(&proxy, &keys).await;
    assert_eq!(placement(&proxy, &keys).await, before, "the same key always lands on the same endpoint");
    let used: std::collections::HashSet<&String> = before.values().collect();
    assert_eq!(used.len(), 4, "keys spread over every endpoint");

    let cluster = proxy.proxy.clusters()["c"].clone();
    cluster.balancer.update(ups[..3].iter().map(|u| EndpointSpec::new(u.addr)).collect());
    let after = placement(&proxy, &keys).await;
    let removed = ups[3].addr.to_string();
    let moved: Vec<&String> = keys.iter().filter(|k| before[*k] != after[*k]).collect();
    let from_removed = moved.iter().filter(|k| before[**k] == removed).count();
    let on_removed = before.values().filter(|v| **v == removed).count();
    (moved.len(), from_removed, on_removed)
}

/// ring_hash: a key sticks to its endpoint; removing one endpoint moves
/// exactly the keys it held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_hash_moves_only_the_removed_endpoints_keys() {
    let (moved, from_removed, on_removed) = keys_moved_by_removal("ring_hash").await;
    println!("ring_hash: {moved} of 1000 keys moved, all from the removed endpoint");
    assert_eq!(moved, from_removed, "keys of remaining endpoints stayed");
    assert_eq!(from_removed, on_removed, "every key of the removed endpoint moved");
    assert!(moved <= 350, "{moved} of 1000 keys moved");
}

/// maglev: a key sticks to its endpoint; removing one endpoint moves its
/// keys and few others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maglev_moves_few_keys_when_an_endpoint_leaves() {
    let (moved, from_removed, on_removed) = keys_moved_by_removal("maglev").await;
    println!("maglev: {moved} of 1000 keys moved");
    assert_eq!(from_removed, on_removed, "every key of the removed endpoint moved");
    assert!(moved <= 350, "{moved} of 1000 keys moved");
}

/// Requests without the hash key are spread, not piled on one endpoint.
#[tokio::test]
async fn requests_without_the_key_are_spread() {
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let proxy = start(&config(&[&a, &b], "    load_balancer: {ring_hash: {hash_on: {cookie: sid}}}\n")).await;
    load(&proxy, 60, 4).await;
    assert!(a.hits() > 5 && b.hits() > 5, "split {} / {}", a.hits(), b.hits());
}

const EJECTED: &str = "outrigger_endpoints{cluster=\"c\",state=\"ejected\"}";

/// An endpoint that starts answering 500 is ejected after 3 failures in a
/// row, gets nothing while ejected, and takes traffic again afterwards.
/// (The ejection must outlast the ~35 exchanges made while it runs, on a
/// loaded machine too: 4 s.)
#[tokio::test]
async fn failing_endpoint_is_ejected_until_its_time_is_up() {
    let (good1, good2) = (Upstream::start().await, Upstream::start().await);
    let bad = Upstream::start_with(Fault::Status(500)).await;
    let od = "    outlier_detection: {consecutive_failures: 3, base_ejection: 4s, max_ejected_percent: 50}\n";
    let proxy = start(&config(&[&good1, &bad, &good2], od)).await;

    load(&proxy, 9, 1).await;
    assert_eq!(bad.hits(), 3);
    assert_eq!(proxy.metric("outrigger_outlier_ejections_total{cluster=\"c\"}").await, 1.0);
    assert_eq!(proxy.metric(EJECTED).await, 1.0);
    let (_, view) = proxy.admin_get("/clusters").await;
    let view: serde_json::Value = serde_json::from_str(&view).unwrap();
    let ep = &view["clusters"][0]["endpoints"][1];
    assert_eq!((ep["state"].as_str(), ep["times_ejected"].as_u64()), (Some("ejected"), Some(1)));
    assert!(ep["ejected_until"].is_string(), "{ep}");

    let statuses = load(&proxy, 30, 1).await;
    assert!(statuses.iter().all(|s| *s == 200));
    assert_eq!(bad.hits(), 3, "no request reached the ejected endpoint");

    bad.set_default(Fault::Status(200));
    eventually(Duration::from_secs(15), "the ejection to end", || async { proxy.metric(EJECTED).await == 0.0 }).await;
    load(&proxy, 9, 1).await;
    assert!(bad.hits() > 3, "back in rotation");
}

/// With two of three endpoints failing and at most 50% ejected, only one
/// is ejected; the other failing endpoint keeps getting requests.
#[tokio::test]
async fn never_ejects_more_than_max_ejected_percent() {
    let good = Upstream::start().await;
    let (bad1, bad2) = (Upstream::start_with(Fault::Status(500)).await, Upstream::start_with(Fault::Status(500)).await);
    let od = "    outlier_detection: {consecutive_failures: 2, base_ejection: 30s, max_ejected_percent: 50}\n";
    let proxy = start(&config(&[&bad1, &bad2, &good], od)).await;
    load(&proxy, 30, 1).await;
    assert_eq!(proxy.metric("outrigger_outlier_ejections_total{cluster=\"c\"}").await, 1.0);
    assert_eq!(proxy.metric(EJECTED).await, 1.0);
    assert_eq!(bad1.hits(), 2, "the first to fail twice was ejected");
    assert!(bad2.hits() >= 10, "the second stayed in rotation: {}", bad2.hits());
}

/// When every endpoint is ejected, panic mode spreads requests over all of
/// them (the upstreams' own answers come back); with panic mode off the
/// client gets 503 no-endpoints.
#[tokio::test]
async fn panic_mode_balances_over_ejected_endpoints() {
    let (a, b) = (Upstream::start_with(Fault::Status(500)).await, Upstream::start_with(Fault::Status(500)).await);
    let od = "    outlier_detection: {consecutive_failures: 2, base_ejection: 30s, max_ejected_percent: 100}\n";
    let proxy = start(&config(&[&a, &b], od)).await;
    load(&proxy, 4, 1).await;
    assert_eq!(proxy.metric(EJECTED).await, 2.0);
    assert_eq!(proxy.metric("outrigger_panic_mode{cluster=\"c\"}").await, 1.0);
    let statuses = load(&proxy, 10, 1).await;
    assert!(statuses.iter().all(|s| *s == 500), "relayed, not refused: {statuses:?}");
    assert_eq!(a.hits() + b.hits(), 14);

    let off = start(&config(&[&a, &b], &format!("{od}    panic_threshold: 0\n"))).await;
    load(&off, 4, 1).await;
    let r = client().get(&off.url("/x")).await;
    assert_eq!((r.status.as_u16(), r.header("x-outrigger-error")), (503, Some("no-endpoints")));
}

/// Three endpoints, one of which never answers in time, with outlier
/// detection (2 in a row) and `route` as the route's extra lines.
async fn with_a_hanging_endpoint(route: &str) -> (TestProxy, Upstream) {
    let (good1, good2) = (Upstream::start().await, Upstream::start().await);
    let hang = Upstream::start_with(Fault::Delay(Duration::from_secs(30), 200)).await;
    let yaml = format!(
        "listeners:\n  - name: main\n    address: 127.0.0.1:0\n    routes:\n      - name: all\n        cluster: c\n{route}\
         clusters:\n  - name: c\n    endpoints: [\"{}\", \"{}\", \"{}\"]\n\
         \x20   outlier_detection: {{consecutive_failures: 2, base_ejection: 30s, max_ejected_percent: 50}}\n",
        good1.addr, hang.addr, good2.addr
    );
    (start(&yaml).await, hang)
}

/// An endpoint that hangs is the endpoint's failure when the per-try
/// timeout cuts it off: the retry goes elsewhere (every request answered),
/// and after 2 timeouts in a row it is ejected and gets nothing more. (The
/// timeout is 1 s, far above what a healthy endpoint takes even on a loaded
/// machine: one cut off by it would be a failure this test does not expect.)
#[tokio::test]
async fn an_endpoint_that_hangs_is_ejected_by_per_try_timeouts() {
    let retry = "        retry: {attempts: 2, on: [timeout], per_try_timeout: 1s, backoff: {base: 1ms, max: 2ms}}\n";
    let (proxy, hang) = with_a_hanging_endpoint(retry).await;
    let statuses = load(&proxy, 15, 1).await;
    assert!(statuses.iter().all(|s| *s == 200), "a retry went back to the hanging endpoint: {statuses:?}");
    assert_eq!(hang.hits(), 2, "tries after the ejection");
    assert_eq!(proxy.metric("outrigger_outlier_ejections_total{cluster=\"c\"}").await, 1.0);
    assert_eq!(proxy.metric(EJECTED).await, 1.0);
}

/// The same through the route timeout alone: the two requests it cuts off
/// get 504 and count against the endpoint, which is then ejected.
#[tokio::test]
async fn an_endpoint_that_hangs_past_the_route_timeout_is_ejected() {
    let (proxy, hang) = with_a_hanging_endpoint("        timeout: 1s\n").await;
    let statuses = load(&proxy, 15, 1).await;
    assert_eq!(statuses.iter().filter(|s| **s == 504).count(), 2, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 13, "{statuses:?}");
    assert_eq!(hang.hits(), 2);
    assert_eq!(proxy.metric(EJECTED).await, 1.0);
}

const UNHEALTHY: &str = "outrigger_endpoints{cluster=\"c\",state=\"unhealthy\"}";

/// An endpoint failing its health checks gets no traffic; it rejoins after
/// passing healthy_threshold checks.
#[tokio::test]
async fn endpoint_failing_health_checks_is_skipped_until_it_passes() {
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    a.set_health("/healthz", 200);
    b.set_health("/healthz", 503);
    // A probe timeout far above a healthy answer's time: two timed-out
    // probes in a row would mark a healthy endpoint down on a loaded machine.
    let hc = "    health_check: {path: /healthz, interval: 50ms, timeout: 3s, healthy_threshold: 2, unhealthy_threshold: 2}\n";
    let proxy = start(&config(&[&a, &b], hc)).await;

    eventually(Duration::from_secs(10), "b to be marked unhealthy", || async { proxy.metric(UNHEALTHY).await == 1.0 })
        .await;
    let before = b.hits();
    load(&proxy, 20, 2).await;
    assert_eq!(b.hits(), before, "no traffic to the unhealthy endpoint");
    assert!(b.probes() >= 2);

    b.set_health("/healthz", 200);
    eventually(Duration::from_secs(10), "b to rejoin", || async { proxy.metric(UNHEALTHY).await == 0.0 }).await;
    load(&proxy, 20, 1).await;
    assert_eq!(b.hits() - before, 10, "round robin includes it again");
}

/// 1,000 endpoint-set updates (alternating sets that always keep one
/// endpoint) while 2,000 requests run: every request succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_under_load_fail_no_request() {
    let ups = [Upstream::start().await, Upstream::start().await, Upstream::start().await];
    let proxy = start(&config(&[&ups[0], &ups[1], &ups[2]], "    load_balancer: least_request\n")).await;
    let balancer = proxy.proxy.clusters()["c"].balancer.clone();
    let sets: [Vec<EndpointSpec>; 2] = [
        vec![EndpointSpec::new(ups[0].addr), EndpointSpec::new(ups[1].addr)],
        vec![EndpointSpec::new(ups[2].addr), EndpointSpec::new(ups[0].addr)],
    ];
    // Paced by the load (update i after 2i requests), so the updates are
    // spread over the requests however the two tasks are scheduled.
    let served = ups.clone();
    let updater = tokio::spawn(async move {
        for i in 0..1000 {
            while served.iter().map(|u| u.hits()).sum::<usize>() < 2 * i {
                tokio::task::yield_now().await;
            }
            balancer.update(sets[i % 2].clone());
        }
    });
    let statuses = load(&proxy, 2000, 16).await;
    updater.await.unwrap();
    let failed = statuses.iter().filter(|s| **s != 200).count();
    assert_eq!(failed, 0, "{failed} requests failed");
    assert_eq!(ups.iter().map(|u| u.hits()).sum::<usize>(), 2000);
    assert!(ups.iter().all(|u| u.hits() > 0), "every endpoint served while present");
}

/// Two bursts of 300 requests held at the upstream at once: the second
/// finds the first's 300 connections idle and opens none (a cap on idle
/// connections below the burst would close some and reconnect them); once
/// unused for `idle_timeout` they are closed without any traffic to
/// trigger it.
#[tokio::test]
async fn bursts_reuse_upstream_connections_and_idle_ones_close() {
    const BURST: usize = 300;
    let up = Upstream::start().await;
    let proxy = start(&config(&[&up], "    idle_timeout: 2s\n")).await;
    let c = client();
    for round in 1..=2 {
        let gate = Gate::new();
        up.plan(vec![Fault::Gated(gate.clone(), 200); BURST]);
        let sent: Vec<_> = (0..BURST).map(|_| tokio::spawn(c.clone().get_owned(proxy.url("/burst")))).collect();
        eventually(Duration::from_secs(10), "the whole burst to reach the upstream", || async {
            up.hits() == round * BURST
        })
        .await;
        gate.open();
        for s in sent {
            assert_eq!(s.await.unwrap().status, 200);
        }
    }
    assert_eq!(up.accepted(), BURST, "connections opened over two bursts");
    assert_eq!(proxy.metric("outrigger_upstream_connections_opened_total{cluster=\"c\"}").await, BURST as f64);
    assert_eq!(idle_connections(&proxy).await, BURST as u64);
    eventually(Duration::from_secs(10), "idle upstream connections to close", || async { up.open_connections() == 0 })
        .await;
    assert_eq!(idle_connections(&proxy).await, 0);
    // And the next request simply opens a new one.
    assert_eq!(client().get(&proxy.url("/after")).await.status, 200);
    assert_eq!(up.accepted(), BURST + 1);
}

/// `/clusters`' idle connections to the first endpoint of the first cluster.
async fn idle_connections(proxy: &TestProxy) -> u64 {
    let (_, view) = proxy.admin_get("/clusters").await;
    let view: serde_json::Value = serde_json::from_str(&view).unwrap();
    view["clusters"][0]["endpoints"][0]["idle_connections"].as_u64().unwrap()
}
