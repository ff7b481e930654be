//! The validated config: typed, checked, ready to build a table from.
//! Settings are data; nothing here does I/O.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::balance::settings::{HealthCheckSettings, LbPolicy, OutlierSettings};
use crate::discovery::DiscoverySettings;
use crate::proxy::router::RouteMatch;
use crate::resilience::bulkhead::BulkheadSettings;
use crate::resilience::circuit_breaker::CircuitBreakerSettings;
use crate::resilience::retry::RetrySettings;

use super::raw::RawConfig;

/// A whole validated config.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The file it came from (for reloads and messages).
    pub path: Option<PathBuf>,
    /// Admin server address.
    pub admin: SocketAddr,
    /// Drain time after SIGTERM.
    pub drain_timeout: Duration,
    /// Runtime worker threads.
    pub worker_threads: usize,
    /// Listeners.
    pub listeners: Vec<ListenerSettings>,
    /// Clusters.
    pub clusters: Vec<ClusterSettings>,
    /// Self-registration.
    pub registration: Option<RegistrationSettings>,
    /// The file as read, for `/config`.
    pub raw: RawConfig,
}

/// One listener.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerSettings {
    /// Name (metric label).
    pub name: String,
    /// Bind address.
    pub address: SocketAddr,
    /// Read SO_ORIGINAL_DST.
    pub transparent: bool,
    /// Slowloris limit.
    pub header_read_timeout: Duration,
    /// Header block limit.
    pub max_header_bytes: usize,
    /// Routes in match order.
    pub routes: Vec<RouteSettings>,
}

impl ListenerSettings {
    /// `header_read_timeout` when unset.
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
    /// `max_header_bytes` when unset.
    pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
}

/// One route.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteSettings {
    /// Name (metric label).
    pub name: String,
    /// Match rules.
    pub matcher: RouteMatch,
    /// `(cluster, weight)`; one entry for a plain route.
    pub targets: Vec<(String, u32)>,
    /// Whole-request timeout.
    pub timeout: Option<Duration>,
    /// Retry policy.
    pub retry: Option<RetrySettings>,
    /// The route's own bulkhead.
    pub bulkhead: Option<BulkheadSettings>,
    /// The route's own breaker.
    pub circuit_breaker: Option<CircuitBreakerSettings>,
}

impl RouteSettings {
    /// The per-try timeout (`retry.per_try_timeout`), if any.
    pub fn per_try_timeout(&self) -> Option<Duration> {
        self.retry.as_ref().and_then(|r| r.per_try_timeout)
    }
}

/// Upstream protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2 prior knowledge.
    Http2,
}

impl Protocol {
    /// The version requests to the cluster are sent with.
    pub fn version(self) -> http::Version {
        match self {
            Protocol::Http1 => http::Version::HTTP_11,
            Protocol::Http2 => http::Version::HTTP_2,
        }
    }
}

/// One cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSettings {
    /// Name.
    pub name: String,
    /// Where endpoints come from.
    pub discovery: DiscoverySettings,
    /// Balancing policy.
    pub load_balancer: LbPolicy,
    /// TCP connect limit.
    pub connect_timeout: Duration,
    /// Upstream protocol.
    pub protocol: Protocol,
    /// An upstream connection unused this long is closed.
    pub idle_timeout: Duration,
    /// Idle HTTP/1 connections kept per endpoint; `None`: no cap.
    pub max_idle_connections: Option<usize>,
    /// Shared breaker.
    pub circuit_breaker: Option<CircuitBreakerSettings>,
    /// Shared bulkhead.
    pub bulkhead: Option<BulkheadSettings>,
    /// Passive health.
    pub outlier_detection: Option<OutlierSettings>,
    /// Active health.
    pub health_check: Option<HealthCheckSettings>,
    /// Panic threshold (fraction usable below which all are used).
    pub panic_threshold: f64,
}

/// Self-registration in etcd.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistrationSettings {
    /// etcd URLs.
    pub endpoints: Vec<String>,
    /// Key.
    pub key: String,
    /// Published address.
    pub address: String,
    /// Lease TTL.
    pub ttl: Duration,
}
