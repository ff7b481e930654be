//! How many endpoints are in each state, the gauges that show it, and
//! panic mode.
//!
//! Why panic mode: if health checks or outlier detection take out most of
//! a cluster, the few endpoints left would get all the traffic and likely
//! fall over too. Below `panic_threshold` (a fraction of the set) usable,
//! Envoy-style, the balancer stops trusting health and spreads requests
//! over every endpoint; `outrigger_panic_mode{cluster}` is 1 meanwhile.
//!
//! A census is taken (O(n)) only when something changes: a set update, an
//! ejection or its end, a health verdict. Picks read one flag.

use std::sync::Arc;

use prometheus::{IntCounter, IntGauge};

use super::endpoint::{Endpoint, EndpointState};
use crate::metrics::Metrics;

/// Endpoints by state at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Census {
    /// Taking traffic.
    pub healthy: usize,
    /// Ejected by outlier detection.
    pub ejected: usize,
    /// Failing active health checks.
    pub unhealthy: usize,
}

impl Census {
    /// Counts `endpoints` at `now`.
    pub fn take(endpoints: &[Arc<Endpoint>], now: u64) -> Census {
        let mut c = Census::default();
        for e in endpoints {
            match e.state(now) {
                EndpointState::Healthy => c.healthy += 1,
                EndpointState::Ejected => c.ejected += 1,
                EndpointState::Unhealthy => c.unhealthy += 1,
            }
        }
        c
    }

    /// Endpoints in all.
    pub fn total(&self) -> usize {
        self.healthy + self.ejected + self.unhealthy
    }

    /// Whether too few are usable: fewer than `threshold` of the set (0
    /// turns panic mode off).
    pub fn panics(&self, threshold: f64) -> bool {
        threshold > 0.0 && self.total() > 0 && (self.healthy as f64) < threshold * self.total() as f64
    }
}

/// A cluster's balancing metrics, labels bound once.
#[derive(Debug, Clone)]
pub struct BalanceMetrics {
    healthy: IntGauge,
    ejected: IntGauge,
    unhealthy: IntGauge,
    /// `outrigger_outlier_ejections_total{cluster}`
    pub ejections: IntCounter,
    panic: IntGauge,
}

impl BalanceMetrics {
    /// Handles into the proxy's families for `cluster`.
    pub fn new(m: &Metrics, cluster: &str) -> Self {
        BalanceMetrics {
            healthy: m.endpoints.with_label_values(&[cluster, EndpointState::Healthy.label()]),
            ejected: m.endpoints.with_label_values(&[cluster, EndpointState::Ejected.label()]),
            unhealthy: m.endpoints.with_label_values(&[cluster, EndpointState::Unhealthy.label()]),
            ejections: m.outlier_ejections.with_label_values(&[cluster]),
            panic: m.panic_mode.with_label_values(&[cluster]),
        }
    }

    /// Handles registered nowhere (a balancer used on its own).
    pub fn detached() -> Self {
        let gauge = || IntGauge::new("detached", "not exported").expect("valid name");
        BalanceMetrics {
            healthy: gauge(),
            ejected: gauge(),
            unhealthy: gauge(),
            ejections: IntCounter::new("detached", "not exported").expect("valid name"),
            panic: gauge(),
        }
    }

    /// Shows `census` and the panic flag.
    pub fn show(&self, census: &Census, panic: bool) {
        self.healthy.set(census.healthy as i64);
        self.ejected.set(census.ejected as i64);
        self.unhealthy.set(census.unhealthy as i64);
        self.panic.set(i64::from(panic));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Below the threshold fraction usable is panic; exactly at it is not;
    /// 0 never panics, not even with nothing usable.
    #[test]
    fn panic_below_the_threshold() {
        let c = |healthy, ejected| Census { healthy, ejected, unhealthy: 0 };
        assert!(!c(1, 1).panics(0.5));
        assert!(c(1, 2).panics(0.5));
        assert!(c(0, 3).panics(0.5));
        assert!(!c(0, 3).panics(0.0));
        assert!(!c(0, 0).panics(0.5), "an empty set is not a panic, just empty");
    }
}
