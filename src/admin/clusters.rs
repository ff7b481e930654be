//! The `/clusters` view: per cluster, its endpoints and their state, its
//! breaker and bulkhead, and what discovery last said.

use serde_json::{json, Value};

use crate::proxy::state::{Scope, BREAKER, BULKHEAD};
use crate::resilience::bulkhead::Bulkhead;
use crate::resilience::circuit_breaker::CircuitBreaker;
use crate::runtime::Proxy;

fn breaker_json(b: &CircuitBreaker) -> Value {
    let open_for_ms =
        b.open_until().map(|u| u.saturating_duration_since(tokio::time::Instant::now()).as_millis() as u64);
    json!({ "state": b.state().name(), "open_for_ms": open_for_ms })
}

/// The breaker and bulkhead of `(scope, name)`, as JSON (null when none).
fn resilience(proxy: &Proxy, scope: Scope, name: &str) -> (Value, Value) {
    let breaker = proxy
        .state
        .all::<CircuitBreaker>(BREAKER)
        .into_iter()
        .find(|(s, n, _)| *s == scope && n == name)
        .map_or(Value::Null, |(_, _, b)| breaker_json(&b));
    let bulkhead = proxy
        .state
        .all::<Bulkhead>(BULKHEAD)
        .into_iter()
        .find(|(s, n, _)| *s == scope && n == name)
        .map_or(Value::Null, |(_, _, b)| json!(b.view()));
    (breaker, bulkhead)
}

/// Builds the JSON document.
pub fn view(proxy: &Proxy) -> Value {
    let clusters = proxy.clusters();
    let mut names: Vec<&String> = clusters.keys().collect();
    names.sort();
    let out: Vec<Value> = names
        .into_iter()
        .map(|name| {
            let c = &clusters[name];
            let endpoints = c.balancer.endpoint_views();
            let (breaker, bulkhead) = resilience(proxy, Scope::Cluster, name);
            json!({
                "name": name,
                "ready": c.is_ready(),
                "circuit_breaker": breaker,
                "bulkhead": bulkhead,
                "load_balancer": format!("{:?}", c.balancer.policy()),
                "discovery": *c.discovery_status(),
                "endpoints": endpoints,
            })
        })
        .collect();
    let settings = proxy.settings();
    let routes: Vec<Value> = settings
        .listeners
        .iter()
        .flat_map(|l| l.routes.iter().map(move |r| (l, r)))
        .map(|(l, r)| {
            let (breaker, bulkhead) = resilience(proxy, Scope::Route, &r.name);
            json!({"listener": l.name, "name": r.name, "circuit_breaker": breaker, "bulkhead": bulkhead})
        })
        .collect();
    json!({ "clusters": out, "routes": routes })
}
