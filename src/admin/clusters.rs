//! The `/clusters` view: per cluster, its endpoints and their state, its
//! breaker and bulkhead, and what discovery last said.

use serde_json::{json, Value};

use crate::runtime::Proxy;

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
            json!({
                "name": name,
                "ready": c.is_ready(),
                "load_balancer": format!("{:?}", c.balancer.policy()),
                "discovery": *c.discovery_status(),
                "endpoints": endpoints,
            })
        })
        .collect();
    json!({ "clusters": out })
}
