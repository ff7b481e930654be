//! The admin server as a dashboard or probe sees it.

mod support;

use support::*;

/// /live, /ready, /config, /clusters and /metrics answer per the contract.
#[tokio::test]
async fn admin_endpoints() {
    let up = Upstream::start().await;
    let p = TestProxy::start(&format!(
        "listeners: [{{name: l, address: 127.0.0.1:0, routes: [{{name: r, cluster: c}}]}}]\nclusters: [{{name: c, endpoints: [\"{}\"]}}]\n",
        up.addr
    ))
    .await;
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
