//! What a cluster's balancer is built from: validated, plain data.

use std::time::Duration;

/// Which endpoint a request goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LbPolicy {
    /// Smooth weighted round robin.
    RoundRobin,
    /// Weighted random.
    Random,
    /// Power of two choices on in-flight requests.
    LeastRequest,
    /// P2C on peak-EWMA latency x in-flight.
    PeakEwma,
    /// Consistent hashing on a ring.
    RingHash(HashOn),
    /// Maglev consistent hashing.
    Maglev(HashOn),
}

/// The key a hashing balancer hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    /// A header's value (lower-case name).
    Header(http::HeaderName),
    /// A cookie's value.
    Cookie(String),
    /// The path.
    Path,
}

/// Passive outlier detection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutlierSettings {
    /// Failures in a row that eject.
    pub consecutive_failures: u32,
    /// Ejection time x times ejected.
    pub base_ejection: Duration,
    /// Longest ejection.
    pub max_ejection: Duration,
    /// Most of the cluster that may be ejected (at least one endpoint may).
    pub max_ejected_percent: u32,
}

/// Active health checking.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheckSettings {
    /// Path probed with GET.
    pub path: String,
    /// Between probes (jittered).
    pub interval: Duration,
    /// Probe timeout.
    pub timeout: Duration,
    /// Passes in a row to become healthy.
    pub healthy_threshold: u32,
    /// Failures in a row to become unhealthy.
    pub unhealthy_threshold: u32,
}

/// Everything a [`Balancer`](super::Balancer) is built from.
#[derive(Debug, Clone, PartialEq)]
pub struct BalancerSettings {
    /// The policy.
    pub policy: LbPolicy,
    /// Passive outlier detection, if on.
    pub outlier: Option<OutlierSettings>,
    /// Below this fraction of usable endpoints, balance over all (0 = off).
    pub panic_threshold: f64,
}

impl Default for BalancerSettings {
    fn default() -> Self {
        BalancerSettings { policy: LbPolicy::RoundRobin, outlier: None, panic_threshold: 0.5 }
    }
}

impl From<LbPolicy> for BalancerSettings {
    fn from(policy: LbPolicy) -> Self {
        BalancerSettings { policy, ..Default::default() }
    }
}

impl From<&crate::config::settings::ClusterSettings> for BalancerSettings {
    fn from(c: &crate::config::settings::ClusterSettings) -> Self {
        BalancerSettings {
            policy: c.load_balancer.clone(),
            outlier: c.outlier_detection,
            panic_threshold: c.panic_threshold,
        }
    }
}
