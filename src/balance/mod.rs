//! Balancing a cluster's requests over its endpoints.
//!
//! The endpoint set arrives from discovery as whole updates and is swapped
//! atomically ([`Balancer::update`]); per-endpoint state survives for
//! endpoints that remain. Selection reads the current set without locks.

pub mod endpoint;
mod served_by;
pub mod service;
pub mod settings;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::Request;

use crate::body::Body;
use crate::discovery::EndpointSpec;
use crate::error::Outcome;
pub use endpoint::Endpoint;
pub use served_by::{served_by, EndpointError};
use settings::LbPolicy;

/// A request extension the retry layer sets on a retried request: the
/// endpoint the previous try failed on, which the balancer avoids when
/// another endpoint is usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AvoidEndpoint(pub SocketAddr);

/// The endpoints of a cluster at one moment.
#[derive(Debug, Default)]
pub struct EndpointSet {
    /// In discovery order.
    pub endpoints: Vec<Arc<Endpoint>>,
}

/// A cluster's balancer: the current endpoint set and the policy.
#[derive(Debug)]
pub struct Balancer {
    cluster: String,
    policy: LbPolicy,
    set: ArcSwap<EndpointSet>,
    next: AtomicUsize,
}

impl Balancer {
    /// A balancer with no endpoints yet.
    pub fn new(cluster: &str, policy: LbPolicy) -> Self {
        Balancer {
            cluster: cluster.to_owned(),
            policy,
            set: ArcSwap::from_pointee(EndpointSet::default()),
            next: AtomicUsize::new(0),
        }
    }

    /// The cluster's name.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The policy.
    pub fn policy(&self) -> &LbPolicy {
        &self.policy
    }

    /// Replaces the endpoint set; endpoints that remain keep their state.
    pub fn update(&self, specs: Vec<EndpointSpec>) {
        let old = self.set.load();
        let mut by_addr: HashMap<SocketAddr, &Arc<Endpoint>> = old.endpoints.iter().map(|e| (e.address, e)).collect();
        let endpoints = specs
            .into_iter()
            .map(|spec| match by_addr.remove(&spec.address) {
                Some(e) if e.spec == spec => Arc::clone(e),
                _ => Arc::new(Endpoint::new(spec)),
            })
            .collect();
        self.set.store(Arc::new(EndpointSet { endpoints }));
    }

    /// The current set (for the admin view).
    pub fn snapshot(&self) -> Arc<EndpointSet> {
        self.set.load_full()
    }

    /// Picks an endpoint for `req`, or `None` when none is usable.
    pub fn pick(&self, _req: &Request<Body>) -> Option<Arc<Endpoint>> {
        let set = self.set.load();
        let n = set.endpoints.len();
        if n == 0 {
            return None;
        }
        let i = match self.policy {
            LbPolicy::Random => fastrand::usize(..n),
            _ => self.next.fetch_add(1, Ordering::Relaxed) % n,
        };
        Some(Arc::clone(&set.endpoints[i]))
    }

    /// Learns from one exchange with `endpoint`.
    pub fn record(&self, endpoint: &Endpoint, outcome: Outcome, _latency: std::time::Duration) {
        if outcome == Outcome::Failure {
            endpoint.failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}
