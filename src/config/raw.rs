//! The config file as written: serde structs, `deny_unknown_fields`
//! everywhere, every field documented. Nothing here is checked beyond its
//! type; `validate` turns these into settings.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::duration::Dur;

/// The whole file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// The admin server (metrics, health, config, reload).
    #[serde(default)]
    pub admin: RawAdmin,
    /// How long in-flight requests may finish after SIGTERM. Default 10s.
    #[serde(default)]
    pub drain_timeout: Option<Dur>,
    /// Runtime worker threads. Default 1: a sidecar shares its pod's CPU.
    #[serde(default)]
    pub worker_threads: Option<usize>,
    /// Where traffic comes in.
    #[serde(default)]
    pub listeners: Vec<RawListener>,
    /// Where traffic goes.
    #[serde(default)]
    pub clusters: Vec<RawCluster>,
    /// This app's own entry in a registry, kept while the proxy is ready.
    #[serde(default)]
    pub registration: Option<RawRegistration>,
}

/// `admin:`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Default 127.0.0.1:9901; never 0.0.0.0 unless written.
    #[serde(default = "default_admin")]
    pub address: String,
}

fn default_admin() -> String {
    "127.0.0.1:9901".to_owned()
}

impl Default for RawAdmin {
    fn default() -> Self {
        RawAdmin { address: default_admin() }
    }
}

/// One entry of `listeners:`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    /// Unique name (a metric label).
    pub name: String,
    /// `IP:PORT` to bind.
    pub address: String,
    /// Routes, first match wins.
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    /// Redirected traffic (iptables): read the original destination with
    /// SO_ORIGINAL_DST, for logs and for routes without a Host header.
    #[serde(default)]
    pub transparent: bool,
    /// A client must send a request's whole header block within this.
    /// Default 10s (slowloris protection).
    #[serde(default)]
    pub header_read_timeout: Option<Dur>,
    /// Largest header block accepted; larger gets 431. Default 64 KiB.
    #[serde(default)]
    pub max_header_bytes: Option<usize>,
}

/// One entry of `routes:`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Unique name within the file (a metric label).
    pub name: String,
    /// What the request must look like; absent matches everything.
    #[serde(default, rename = "match")]
    pub matcher: RawMatch,
    /// The one cluster to send to.
    #[serde(default)]
    pub cluster: Option<String>,
    /// Or a weighted split over several.
    #[serde(default)]
    pub clusters: Option<Vec<RawWeightedCluster>>,
    /// Whole request, retries included, until response headers. Default 15s.
    #[serde(default)]
    pub timeout: Option<Dur>,
    /// Retry policy (absent: no retries).
    #[serde(default)]
    pub retry: Option<RawRetry>,
    /// The route's own bulkhead.
    #[serde(default)]
    pub bulkhead: Option<RawBulkhead>,
    /// The route's own circuit breaker.
    #[serde(default)]
    pub circuit_breaker: Option<RawCircuitBreaker>,
}

/// `match:`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    /// Exact host, or `*.suffix`; the port is ignored.
    #[serde(default)]
    pub host: Option<String>,
    /// Exact path.
    #[serde(default)]
    pub path: Option<String>,
    /// Path prefix.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Regular expression the whole path must match.
    #[serde(default)]
    pub path_regex: Option<String>,
    /// Allowed methods.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Headers that must be present with exactly these values.
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
}

/// One leg of a weighted split.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawWeightedCluster {
    /// Cluster name.
    pub name: String,
    /// Relative weight.
    pub weight: u32,
}

/// `retry:`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    /// Tries in all, the first included. Default 2.
    #[serde(default)]
    pub attempts: Option<u32>,
    /// Conditions: connect-failure, reset, timeout, 5xx, gateway-error, 429,
    /// or status codes. Default: connect-failure, reset, gateway-error.
    #[serde(default)]
    pub on: Option<Vec<RawRetryOn>>,
    /// Time limit for each try.
    #[serde(default)]
    pub per_try_timeout: Option<Dur>,
    /// Exponential backoff with full jitter. Default 25ms..250ms.
    #[serde(default)]
    pub backoff: Option<RawBackoff>,
    /// Retry budget; on by default (ratio 0.2, min 10/s).
    #[serde(default)]
    pub budget: Option<RawBudget>,
    /// Methods that may be retried. Default GET HEAD OPTIONS PUT DELETE TRACE.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Largest request body kept for replay. Default 64 KiB.
    #[serde(default)]
    pub max_body_bytes: Option<usize>,
}

/// A retry condition: a name or a status code.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum RawRetryOn {
    /// A status code such as 503.
    Code(u16),
    /// A named condition.
    Name(String),
}

/// `backoff:`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackoff {
    /// First backoff ceiling.
    pub base: Dur,
    /// Largest backoff ceiling.
    pub max: Dur,
}

/// `budget:`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudget {
    /// Retries may add at most this fraction of recent requests.
    #[serde(default)]
    pub ratio: Option<f64>,
    /// Plus this many retries per second regardless.
    #[serde(default)]
    pub min_per_second: Option<u32>,
    /// How long a deposit counts. Default 10s.
    #[serde(default)]
    pub window: Option<Dur>,
    /// `true` turns the budget off: retries are then limited only by
    /// `attempts`. An explicit opt-out, never a default.
    #[serde(default)]
    pub disabled: bool,
}

/// `bulkhead:`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawBulkhead {
    /// Requests in flight at once (the starting limit in adaptive mode).
    pub max_concurrent: usize,
    /// Requests that may wait for a slot. Default 0.
    #[serde(default)]
    pub max_queued: Option<usize>,
    /// Longest wait in the queue. Default 1s.
    #[serde(default)]
    pub queue_timeout: Option<Dur>,
    /// Move the limit with observed latency between these bounds.
    #[serde(default)]
    pub adaptive: Option<RawAdaptive>,
}

/// `adaptive:`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdaptive {
    /// Lowest limit.
    pub min: usize,
    /// Highest limit.
    pub max: usize,
}

/// `circuit_breaker:`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawCircuitBreaker {
    /// Open after this many failures in a row.
    #[serde(default)]
    pub consecutive_failures: Option<u32>,
    /// Open when the failure rate over a window passes a threshold.
    #[serde(default)]
    pub failure_rate: Option<RawFailureRate>,
    /// Open when too many calls are slower than `duration`.
    #[serde(default)]
    pub slow_call: Option<RawSlowCall>,
    /// How long to stay open before probing. Default 10s.
    #[serde(default)]
    pub open_duration: Option<Dur>,
    /// Longest open time after repeated trips. Default 10 x open_duration.
    #[serde(default)]
    pub max_open_duration: Option<Dur>,
    /// Probes let through while half-open. Default 1.
    #[serde(default)]
    pub half_open_max_requests: Option<u32>,
}

/// `failure_rate:`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawFailureRate {
    /// Fraction of failures (0..1] that opens the breaker.
    pub threshold: f64,
    /// Sliding window. Default 10s.
    #[serde(default)]
    pub window: Option<Dur>,
    /// Calls in the window before the rate may trip. Default 20.
    #[serde(default)]
    pub min_requests: Option<u32>,
}

/// `slow_call:`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawSlowCall {
    /// A call slower than this is slow.
    pub duration: Dur,
    /// Fraction of slow calls (0..1] that opens the breaker.
    pub rate_threshold: f64,
    /// Sliding window. Default: failure_rate's, else 10s.
    #[serde(default)]
    pub window: Option<Dur>,
    /// Calls in the window before it may trip. Default 20.
    #[serde(default)]
    pub min_requests: Option<u32>,
}

/// One entry of `clusters:`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// Unique name.
    pub name: String,
    /// Static endpoints (shorthand for `discovery: {static: ...}`).
    #[serde(default)]
    pub endpoints: Option<Vec<RawEndpoint>>,
    /// Where endpoints come from.
    #[serde(default)]
    pub discovery: Option<RawDiscovery>,
    /// How a request picks an endpoint. Default round_robin.
    #[serde(default)]
    pub load_balancer: Option<RawLoadBalancer>,
    /// Default 1s.
    #[serde(default)]
    pub connect_timeout: Option<Dur>,
    /// `http1` (default) or `http2` (prior knowledge).
    #[serde(default)]
    pub protocol: Option<RawProtocol>,
    /// An upstream connection unused this long is closed. Default 90s.
    #[serde(default)]
    pub idle_timeout: Option<Dur>,
    /// At most this many idle HTTP/1 connections kept per endpoint.
    /// Default: no cap (each is closed after `idle_timeout` unused).
    #[serde(default)]
    pub max_idle_connections: Option<usize>,
    /// One breaker shared by every route to this cluster.
    #[serde(default)]
    pub circuit_breaker: Option<RawCircuitBreaker>,
    /// One pool shared by every route to this cluster.
    #[serde(default)]
    pub bulkhead: Option<RawBulkhead>,
    /// Passive health: eject endpoints that fail.
    #[serde(default)]
    pub outlier_detection: Option<RawOutlierDetection>,
    /// Active health: probe endpoints.
    #[serde(default)]
    pub health_check: Option<RawHealthCheck>,
    /// Below this fraction of usable endpoints, balance over all of them.
    /// Default 0.5; 0 turns panic mode off.
    #[serde(default)]
    pub panic_threshold: Option<f64>,
}

/// An endpoint: `"IP:PORT"` or `{address, weight, metadata}`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum RawEndpoint {
    /// `"IP:PORT"`.
    Address(String),
    /// With a weight or metadata.
    Detailed(RawEndpointDetail),
}

/// `{address, weight, metadata}`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawEndpointDetail {
    /// `IP:PORT`.
    pub address: String,
    /// Relative weight. Default 1.
    #[serde(default)]
    pub weight: Option<u32>,
    /// Free-form labels, shown in /clusters.
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
}

/// `protocol:`
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum RawProtocol {
    /// HTTP/1.1 with keep-alive.
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge.
    Http2,
}

/// `discovery:` exactly one source.
#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawDiscovery {
    /// A fixed list.
    #[serde(default, rename = "static")]
    pub static_: Option<Vec<RawEndpoint>>,
    /// A watched YAML/JSON file.
    #[serde(default)]
    pub file: Option<RawFileDiscovery>,
    /// DNS A/AAAA or SRV.
    #[serde(default)]
    pub dns: Option<RawDnsDiscovery>,
    /// Kubernetes EndpointSlices.
    #[serde(default)]
    pub kubernetes: Option<RawKubernetesDiscovery>,
    /// etcd keys under a prefix.
    #[serde(default)]
    pub etcd: Option<RawEtcdDiscovery>,
}

/// `file:`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawFileDiscovery {
    /// The endpoints file (relative to the config file's folder).
    pub path: String,
}

/// `dns:`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawDnsDiscovery {
    /// A/AAAA name (with `port`).
    #[serde(default)]
    pub name: Option<String>,
    /// Port for A/AAAA answers.
    #[serde(default)]
    pub port: Option<u16>,
    /// SRV name, e.g. `_http._tcp.orders.prod.svc.cluster.local`.
    #[serde(default)]
    pub srv: Option<String>,
    /// Name servers (`IP:PORT`); default: the system's.
    #[serde(default)]
    pub servers: Option<Vec<String>>,
    /// Re-resolve no sooner than this. Default 1s.
    #[serde(default)]
    pub min_ttl: Option<Dur>,
    /// Re-resolve no later than this. Default 60s.
    #[serde(default)]
    pub max_ttl: Option<Dur>,
}

/// `kubernetes:`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawKubernetesDiscovery {
    /// Service name (label `kubernetes.io/service-name`).
    pub service: String,
    /// Namespace. Default `default`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Port name or number.
    pub port: RawPortRef,
    /// Also use endpoints that are terminating but still serving.
    #[serde(default)]
    pub include_terminating: bool,
    /// The API server's URL (e.g. `http://127.0.0.1:8001` behind
    /// `kubectl proxy`). Default: in-cluster service account, else kubeconfig.
    #[serde(default)]
    pub api_server: Option<String>,
}

/// A port by name or number.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum RawPortRef {
    /// By number.
    Number(u16),
    /// By name.
    Name(String),
}

/// `etcd:`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawEtcdDiscovery {
    /// etcd client URLs.
    pub endpoints: Vec<String>,
    /// Key prefix; every key under it is one endpoint.
    pub prefix: String,
}

/// `load_balancer:` a name, or a map naming a hashing policy.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum RawLoadBalancer {
    /// Smooth weighted round robin.
    RoundRobin,
    /// Uniform random (weighted).
    Random,
    /// Power of two choices on in-flight requests.
    LeastRequest,
    /// P2C on peak-EWMA latency x in-flight.
    PeakEwma,
    /// Consistent hashing on a ring.
    RingHash(RawHashPolicy),
    /// Maglev consistent hashing.
    Maglev(RawHashPolicy),
}

/// The key a hashing balancer hashes on.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct RawHashPolicy {
    /// `{header: NAME}`, `{cookie: NAME}` or `path`. Default: path.
    #[serde(default)]
    pub hash_on: Option<RawHashOn>,
}

/// `hash_on:`
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum RawHashOn {
    /// A request header's value.
    Header(String),
    /// A cookie's value.
    Cookie(String),
    /// The request path.
    Path,
}

impl<'de> Deserialize<'de> for RawLoadBalancer {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        const NAMES: &[&str] = &["round_robin", "random", "least_request", "peak_ewma", "ring_hash", "maglev"];
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawLoadBalancer;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a load balancer name, or {ring_hash: {hash_on: ...}} / {maglev: {hash_on: ...}}")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(match s {
                    "round_robin" => RawLoadBalancer::RoundRobin,
                    "random" => RawLoadBalancer::Random,
                    "least_request" => RawLoadBalancer::LeastRequest,
                    "peak_ewma" => RawLoadBalancer::PeakEwma,
                    "ring_hash" => RawLoadBalancer::RingHash(RawHashPolicy::default()),
                    "maglev" => RawLoadBalancer::Maglev(RawHashPolicy::default()),
                    other => return Err(E::unknown_variant(other, NAMES)),
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                use serde::de::Error;
                let key: String = map.next_key()?.ok_or_else(|| A::Error::custom("empty load_balancer map"))?;
                let lb = match key.as_str() {
                    "ring_hash" => RawLoadBalancer::RingHash(map.next_value()?),
                    "maglev" => RawLoadBalancer::Maglev(map.next_value()?),
                    other => {
                        return Err(A::Error::custom(format!(
                            "load_balancer {other:?} takes no settings; write it as a plain name (only ring_hash and maglev take a map)"
                        )))
                    }
                };
                if map.next_key::<String>()?.is_some() {
                    return Err(A::Error::custom("load_balancer names one policy"));
                }
                Ok(lb)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RawHashOn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawHashOn;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`path`, {header: NAME} or {cookie: NAME}")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
                match s {
                    "path" => Ok(RawHashOn::Path),
                    other => Err(E::unknown_variant(other, &["path", "header", "cookie"])),
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                use serde::de::Error;
                let key: String = map.next_key()?.ok_or_else(|| A::Error::custom("empty hash_on"))?;
                let v = match key.as_str() {
                    "header" => RawHashOn::Header(map.next_value()?),
                    "cookie" => RawHashOn::Cookie(map.next_value()?),
                    other => return Err(A::Error::unknown_field(other, &["header", "cookie"])),
                };
                Ok(v)
            }
        }
        d.deserialize_any(V)
    }
}

/// `outlier_detection:`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawOutlierDetection {
    /// Eject after this many failures in a row. Default 5.
    #[serde(default)]
    pub consecutive_failures: Option<u32>,
    /// First ejection time; multiplied by the times ejected. Default 30s.
    #[serde(default)]
    pub base_ejection: Option<Dur>,
    /// Longest ejection. Default 300s.
    #[serde(default)]
    pub max_ejection: Option<Dur>,
    /// Never eject more than this percent (at least one may be). Default 50.
    #[serde(default)]
    pub max_ejected_percent: Option<u32>,
}

/// `health_check:`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    /// Path probed with GET.
    pub path: String,
    /// Between probes (with jitter). Default 5s.
    #[serde(default)]
    pub interval: Option<Dur>,
    /// Probe timeout. Default 1s.
    #[serde(default)]
    pub timeout: Option<Dur>,
    /// Passes in a row to become healthy. Default 2.
    #[serde(default)]
    pub healthy_threshold: Option<u32>,
    /// Failures in a row to become unhealthy. Default 3.
    #[serde(default)]
    pub unhealthy_threshold: Option<u32>,
}

/// `registration:`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawRegistration {
    /// Register in etcd under a lease.
    pub etcd: RawEtcdRegistration,
}

/// `registration: {etcd: ...}`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawEtcdRegistration {
    /// etcd client URLs.
    pub endpoints: Vec<String>,
    /// This instance's key.
    pub key: String,
    /// The address to publish (`IP:PORT`).
    pub address: String,
    /// Lease time to live. Default 10s.
    #[serde(default)]
    pub ttl: Option<Dur>,
}
