//! The admin server as a dashboard or probe sees it.

mod support;

use support::*;

/// /live, /ready, /config, /clusters and /metrics answer per the contract.
#[tokio::test]
async fn admin_endpoints() {
    let up = Upstream::start().await;
    let p = TestProxy::start(&one_route(up.addr)).await;
    assert_eq!(p.admin_get("/live").await.0, 200);
    // Static discovery answers at once, but on another task.
    let mut ready = 0;
    for _ in 0..100 {
        ready = p.admin_get("/ready").await.0.as_u16();
        if ready == 200 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(ready, 200);
    let (s, cfg) = p.admin_get("/config").await;
    assert_eq!(s, 200);
    let cfg: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    assert_eq!(cfg["clusters"][0]["name"], "c");
    client().get(&p.url("/x")).await;
    let (s, cl) = p.admin_get("/clusters").await;
    assert_eq!(s, 200);
    let cl: serde_json::Value = serde_json::from_str(&cl).unwrap();
    let c = &cl["clusters"][0];
    assert_eq!(c["name"], "c");
    assert_eq!(c["discovery"]["source"], "static");
    assert_eq!(c["endpoints"][0]["address"], up.addr.to_string());
    assert_eq!(c["endpoints"][0]["requests"], 1);
    let (s, m) = p.admin_get("/metrics").await;
    assert_eq!(s, 200);
    assert!(m.contains("outrigger_request_duration_seconds_bucket"), "{m}");
    assert_eq!(metric_value(&m, r#"outrigger_requests_total{listener="l",route="r",cluster="c",code="200"}"#), 1.0);
    assert_eq!(p.admin_get("/nope").await.0, 404);
}

/// /clusters shows each breaker's state and each bulkhead's counts, for
/// clusters and for routes.
#[tokio::test]
async fn clusters_view_shows_resilience_state() {
    let up = Upstream::start_with(Fault::Status(503)).await;
    let p = TestProxy::start(&format!(
        "listeners: [{{name: l, address: 127.0.0.1:0, routes: [{{name: r, cluster: c, bulkhead: {{max_concurrent: 7}}}}]}}]\nclusters: [{{name: c, endpoints: [\"{}\"], circuit_breaker: {{consecutive_failures: 1, open_duration: 30s}}, bulkhead: {{max_concurrent: 9, max_queued: 2}}}}]\n",
        up.addr
    ))
    .await;
    client().get(&p.url("/")).await;
    let (_, text) = p.admin_get("/clusters").await;
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let c = &v["clusters"][0];
    assert_eq!(c["circuit_breaker"]["state"], "open", "{text}");
    assert_eq!(c["bulkhead"]["limit"], 9);
    assert_eq!(c["bulkhead"]["in_flight"], 0);
    let r = &v["routes"][0];
    assert_eq!(r["name"], "r");
    assert_eq!(r["bulkhead"]["limit"], 7);
    assert!(r["circuit_breaker"].is_null());
}

/// A reload that removes a cluster and a route stops exporting their
/// gauges (endpoints, breaker state, bulkhead), so dashboards do not show
/// the last state of things that are gone; what remains keeps its series.
#[tokio::test]
async fn removed_clusters_and_routes_leave_metrics() {
    let up = Upstream::start().await;
    let both = format!(
        "listeners: [{{name: l, address: 127.0.0.1:0, routes: [\
         {{name: gone, match: {{path_prefix: /gone}}, cluster: old, circuit_breaker: {{consecutive_failures: 5}}, bulkhead: {{max_concurrent: 5}}}}, \
         {{name: kept, cluster: new, circuit_breaker: {{consecutive_failures: 5}}}}]}}]\n\
         clusters: [{{name: old, endpoints: [\"{a}\"]}}, {{name: new, endpoints: [\"{a}\"]}}]\n",
        a = up.addr
    );
    let p = TestProxy::start(&both).await;
    let (_, before) = p.admin_get("/metrics").await;
    for series in [
        "outrigger_endpoints{cluster=\"old\"",
        "outrigger_circuit_state{name=\"gone\"",
        "outrigger_bulkhead_in_flight{name=\"gone\"",
        "outrigger_endpoints{cluster=\"new\"",
        "outrigger_circuit_state{name=\"kept\"",
    ] {
        assert!(before.contains(series), "{series} before the reload");
    }
    let one = format!(
        "admin: {{address: 127.0.0.1:0}}\nlisteners: [{{name: l, address: 127.0.0.1:0, routes: [\
         {{name: kept, cluster: new, circuit_breaker: {{consecutive_failures: 5}}}}]}}]\n\
         clusters: [{{name: new, endpoints: [\"{a}\"]}}]\n",
        a = up.addr
    );
    p.proxy.apply(outrigger::config::parse(&one, "t").unwrap()).await.unwrap();
    let (_, after) = p.admin_get("/metrics").await;
    for gone in [
        "outrigger_endpoints{cluster=\"old\"",
        "outrigger_circuit_state{name=\"gone\"",
        "outrigger_bulkhead_in_flight{name=\"gone\"",
    ] {
        assert!(!after.contains(gone), "{gone} after the reload");
    }
    for kept in ["outrigger_endpoints{cluster=\"new\"", "outrigger_circuit_state{name=\"kept\""] {
        assert!(after.contains(kept), "{kept} after the reload");
    }
}

/// The request duration a dashboard sees is the time the request took:
/// an upstream that answers after 150 ms is recorded at 150 ms or more,
/// and not past a second (the time is read once per poll of the client's
/// connection, at the start and the end of the request).
#[tokio::test]
async fn request_duration_is_the_time_taken() {
    let up = Upstream::start_with(Fault::Delay(std::time::Duration::from_millis(150), 200)).await;
    let p = TestProxy::start(&one_route(up.addr)).await;
    assert_eq!(client().get(&p.url("/slow")).await.status, 200);
    let (_, m) = p.admin_get("/metrics").await;
    let labels = r#"listener="l",route="r",cluster="c""#;
    let sum = metric_value(&m, &format!("outrigger_request_duration_seconds_sum{{{labels}}}"));
    assert!((0.15..1.0).contains(&sum), "recorded {sum} s\n{m}");
    let under = metric_value(&m, &format!(r#"outrigger_request_duration_seconds_bucket{{{labels},le="0.1"}}"#));
    assert_eq!(under, 0.0, "{m}");
}
