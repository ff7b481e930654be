//! `kubernetes` discovery against an in-process API server that speaks
//! the list + watch wire format (tests/support/kube_api.rs).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::kube_api::{slice, KubeApi};
use support::*;

/// How long a change may take to reach traffic (watch events are normally
/// there in milliseconds; a relist after 410 takes a round of backoff).
const FOLLOW: Duration = Duration::from_secs(10);

async fn proxy_watching(api: &KubeApi, port: &str, include_terminating: bool) -> TestProxy {
    TestProxy::start(&format!(
        "listeners: [{{name: l, address: 127.0.0.1:0, routes: [{{name: r, cluster: c}}]}}]\n\
         clusters: [{{name: c, discovery: {{kubernetes: {{service: orders, namespace: prod, port: {port}, \
         include_terminating: {include_terminating}, api_server: \"{}\"}}}}}}]\n",
        api.url
    ))
    .await
}

/// Upstreams on one port at loopback IPs 127.0.0.2.., like pods.
async fn pods(n: u8) -> Vec<Upstream> {
    'again: loop {
        let first = Upstream::start_at("127.0.0.2:0".parse().unwrap()).await.unwrap();
        let mut ups = vec![first];
        for i in 1..n {
            match Upstream::start_at(SocketAddr::new([127, 0, 0, 2 + i].into(), ups[0].addr.port())).await {
                Ok(u) => ups.push(u),
                Err(_) => continue 'again,
            }
        }
        return ups;
    }
}

fn ip(u: &Upstream) -> String {
    u.addr.ip().to_string()
}

/// Slices are aggregated: pods in two slices of the Service all get
/// traffic, a slice of another Service is ignored, a pod turning not-ready
/// leaves, a deleted slice's pods leave, the port is found by its name.
#[tokio::test]
async fn traffic_follows_endpoint_slices() {
    let api = KubeApi::start().await;
    let p3 = pods(3).await;
    let port = ("http", p3[0].addr.port());
    let (a, b, c) = (ip(&p3[0]), ip(&p3[1]), ip(&p3[2]));
    api.apply("prod", slice("orders-1", "orders", port, &[(&a, true, true, false)]));
    api.apply("prod", slice("other-1", "other", port, &[(&c, true, true, false)]));
    let p = proxy_watching(&api, "http", false).await;
    traffic_moves_to(&p, p3[0].addr, FOLLOW).await;

    api.apply("prod", slice("orders-2", "orders", port, &[(&b, true, true, false)]));
    eventually(FOLLOW, "both slices' pods get traffic", || async {
        let (_, text) = p.admin_get("/clusters").await;
        text.contains(&p3[0].addr.to_string()) && text.contains(&p3[1].addr.to_string())
    })
    .await;
    assert!(!p.admin_get("/clusters").await.1.contains(&p3[2].addr.to_string()), "another Service's pod is used");

    api.apply("prod", slice("orders-1", "orders", port, &[(&a, false, false, false)]));
    traffic_moves_to(&p, p3[1].addr, FOLLOW).await;

    // Delete before apply: the proxy may act between the two, and {a, b}
    // would be a fair answer that still sends traffic to b.
    api.delete("prod", "orders-2");
    api.apply("prod", slice("orders-1", "orders", port, &[(&a, true, true, false)]));
    traffic_moves_to(&p, p3[0].addr, FOLLOW).await;
    assert_eq!(p.admin_get("/ready").await.0, 200);
}

/// A terminating pod that still serves is used only with
/// include_terminating; a port given by number is used as is.
#[tokio::test]
async fn terminating_but_serving_endpoints_when_asked() {
    let api = KubeApi::start().await;
    let p2 = pods(2).await;
    let port = ("web", p2[0].addr.port());
    let (a, b) = (ip(&p2[0]), ip(&p2[1]));
    api.apply("prod", slice("orders-1", "orders", port, &[(&a, false, true, true), (&b, false, false, true)]));
    let with = proxy_watching(&api, &p2[0].addr.port().to_string(), true).await;
    traffic_moves_to(&with, p2[0].addr, FOLLOW).await;
    let without = proxy_watching(&api, "web", false).await;
    eventually(FOLLOW, "ready with an empty set", || async { without.admin_get("/ready").await.0 == 200 }).await;
    assert_eq!(served_by(&without).await, Err(503), "a terminating pod got traffic");
}

/// When the watch is refused with 410 Gone (history compacted), the source
/// relists and picks up the change it could not have watched.
#[tokio::test]
async fn a_410_gone_watch_relists() {
    let api = KubeApi::start().await;
    let p2 = pods(2).await;
    let port = ("http", p2[0].addr.port());
    api.apply("prod", slice("orders-1", "orders", port, &[(&ip(&p2[0]), true, true, false)]));
    let p = proxy_watching(&api, "http", false).await;
    traffic_moves_to(&p, p2[0].addr, FOLLOW).await;
    let lists = api.lists();

    api.change_behind_watches("prod", slice("orders-1", "orders", port, &[(&ip(&p2[1]), true, true, false)]));
    traffic_moves_to(&p, p2[1].addr, FOLLOW).await;
    assert!(api.lists() > lists, "followed without relisting?");
    let errors = "outrigger_discovery_updates_total{cluster=\"c\",result=\"error\"}";
    assert_eq!(p.metric(errors).await, 0.0, "a routine 410 was counted as a failure");
}

/// An API server that cannot be reached at start keeps /ready 503.
#[tokio::test]
async fn unreachable_api_server_keeps_ready_503() {
    let p = TestProxy::start(&format!(
        "listeners: [{{name: l, address: 127.0.0.1:0, routes: [{{name: r, cluster: c}}]}}]\n\
         clusters: [{{name: c, discovery: {{kubernetes: {{service: orders, port: 80, api_server: \"http://{}\"}}}}}}]\n",
        refused_addr()
    ))
    .await;
    let errors = "outrigger_discovery_updates_total{cluster=\"c\",result=\"error\"}";
    eventually(Duration::from_secs(10), "the failure is counted", || async { p.metric(errors).await >= 1.0 }).await;
    assert_eq!(p.admin_get("/ready").await.0, 503);
}
