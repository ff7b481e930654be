//! `dns` discovery against a real dnsmasq whose records change mid-test.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::dnsmasq::Dnsmasq;
use support::*;

/// How long a change may take to reach traffic: the proxy re-resolves every
/// 100 ms here, but dnsmasq must notice the file and a loaded machine may
/// stall any of the three processes.
const FOLLOW: Duration = Duration::from_secs(10);

async fn proxy_resolving(dns: &Dnsmasq, lookup: &str) -> TestProxy {
    TestProxy::start(&format!(
        "listeners: [{{name: l, address: 127.0.0.1:0, routes: [{{name: r, cluster: c}}]}}]\n\
         clusters: [{{name: c, discovery: {{dns: {{{lookup}, servers: [\"{}\"], min_ttl: 100ms, max_ttl: 1s}}}}}}]\n",
        dns.addr
    ))
    .await
}

/// Two upstreams on one port at two loopback IPs.
async fn two_ips() -> (Upstream, Upstream) {
    loop {
        let a = Upstream::start_at("127.0.0.2:0".parse().unwrap()).await.unwrap();
        if let Ok(b) = Upstream::start_at(SocketAddr::new([127, 0, 0, 3].into(), a.addr.port())).await {
            return (a, b);
        }
    }
}

/// A/AAAA: when the name's address changes, traffic moves to the new
/// address at the configured port; when the name stops resolving, the
/// failure is counted and the last addresses keep serving.
#[tokio::test]
async fn traffic_follows_a_records() {
    let (a, b) = two_ips().await;
    let dns = Dnsmasq::start("127.0.0.2 orders.test\n", &[]).await;
    let p = proxy_resolving(&dns, &format!("name: orders.test, port: {}", a.addr.port())).await;
    traffic_moves_to(&p, a.addr, FOLLOW).await;

    dns.set_hosts("127.0.0.3 orders.test\n");
    traffic_moves_to(&p, b.addr, FOLLOW).await;

    dns.set_hosts("127.0.0.3 other.test\n");
    let errors = "outrigger_discovery_updates_total{cluster=\"c\",result=\"error\"}";
    eventually(FOLLOW, "the failed lookup is counted", || async { p.metric(errors).await >= 1.0 }).await;
    assert_eq!(served_by(&p).await, Ok(b.addr.to_string()), "a failed lookup dropped the endpoints");
    assert_eq!(p.admin_get("/ready").await.0, 200);
}

/// SRV: each record's target is resolved and its port and weight used;
/// a target that stops resolving leaves the others serving.
#[tokio::test]
async fn srv_records_give_targets_ports_and_weights() {
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let srv =
        |target: &str, port: u16, weight: u16| format!("--srv-host=_http._tcp.orders.test,{target},{port},0,{weight}");
    let dns = Dnsmasq::start(
        "127.0.0.1 a.orders.test\n",
        &[srv("a.orders.test", a.addr.port(), 1), srv("b.orders.test", b.addr.port(), 3)],
    )
    .await;
    let p = proxy_resolving(&dns, "srv: _http._tcp.orders.test").await;
    traffic_moves_to(&p, a.addr, FOLLOW).await;

    // Remove a before adding b: one lookup resolves the targets one by
    // one, so a swap in one step could be read half before and half after
    // ({a, b}, a fair answer that still sends traffic to a). With a gone
    // first, no target resolves (an error; a keeps serving) until b does.
    let errors = "outrigger_discovery_updates_total{cluster=\"c\",result=\"error\"}";
    let before = p.metric(errors).await;
    dns.set_hosts("");
    eventually(FOLLOW, "a lookup with no target resolving", || async { p.metric(errors).await > before }).await;
    dns.set_hosts("127.0.0.1 b.orders.test\n");
    traffic_moves_to(&p, b.addr, FOLLOW).await;
    let (_, clusters) = p.admin_get("/clusters").await;
    let clusters: serde_json::Value = serde_json::from_str(&clusters).unwrap();
    let endpoints = clusters["clusters"][0]["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 1, "{endpoints:?}");
    assert_eq!(endpoints[0]["weight"], 3, "{endpoints:?}");
}
