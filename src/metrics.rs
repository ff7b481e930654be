//! Every metric family of the contract, registered once into a registry
//! that the caller owns (tests get their own; nothing is global).
//!
//! Layers do not look labels up per request: they take handles resolved
//! when the stack is built ([`RouteMetrics`] and friends).

use std::sync::OnceLock;

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::error::Refusal;

/// Latency buckets in seconds, finer at the low end where a sidecar lives.
const DURATION_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The families, each named as in CONTRACT.md.
#[derive(Clone)]
pub struct Metrics {
    /// `outrigger_requests_total{listener,route,cluster,code}`
    pub requests: IntCounterVec,
    /// `outrigger_request_duration_seconds{listener,route,cluster}`
    pub request_duration: HistogramVec,
    /// `outrigger_upstream_attempts_total{cluster,result}`
    pub upstream_attempts: IntCounterVec,
    /// `outrigger_upstream_connections_opened_total{cluster}` (extension:
    /// TCP connections made to endpoints; steady traffic should open few)
    pub upstream_connections_opened: IntCounterVec,
    /// `outrigger_retries_total{route,cluster}`
    pub retries: IntCounterVec,
    /// `outrigger_retry_budget_exhausted_total{route,cluster}`
    pub retry_budget_exhausted: IntCounterVec,
    /// `outrigger_local_responses_total{route,reason}`
    pub local_responses: IntCounterVec,
    /// `outrigger_circuit_state{scope,name}`
    pub circuit_state: IntGaugeVec,
    /// `outrigger_circuit_transitions_total{scope,name,to}`
    pub circuit_transitions: IntCounterVec,
    /// `outrigger_bulkhead_in_flight{scope,name}`
    pub bulkhead_in_flight: IntGaugeVec,
    /// `outrigger_bulkhead_queued{scope,name}`
    pub bulkhead_queued: IntGaugeVec,
    /// `outrigger_bulkhead_rejected_total{scope,name}`
    pub bulkhead_rejected: IntCounterVec,
    /// `outrigger_bulkhead_limit{scope,name}` (extension: the adaptive limit now)
    pub bulkhead_limit: IntGaugeVec,
    /// `outrigger_endpoints{cluster,state}`
    pub endpoints: IntGaugeVec,
    /// `outrigger_outlier_ejections_total{cluster}`
    pub outlier_ejections: IntCounterVec,
    /// `outrigger_panic_mode{cluster}` (extension: 1 while balancing over all endpoints)
    pub panic_mode: IntGaugeVec,
    /// `outrigger_discovery_updates_total{cluster,result}`
    pub discovery_updates: IntCounterVec,
    /// `outrigger_config_reloads_total{result}`
    pub config_reloads: IntCounterVec,
}

impl Metrics {
    /// Registers every family into `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec, prometheus::Error> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            r.register(Box::new(c.clone()))?;
            Ok(c)
        }
        fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> Result<IntGaugeVec, prometheus::Error> {
            let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
            r.register(Box::new(g.clone()))?;
            Ok(g)
        }
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "outrigger_request_duration_seconds",
                "Time from request received to response headers sent, by route.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["listener", "route", "cluster"],
        )?;
        registry.register(Box::new(request_duration.clone()))?;
        let r = registry;
        Ok(Metrics {
            requests: counter(
                r,
                "outrigger_requests_total",
                "Requests answered, by route and status code.",
                &["listener", "route", "cluster", "code"],
            )?,
            request_duration,
            upstream_attempts: counter(
                r,
                "outrigger_upstream_attempts_total",
                "Tries sent to an upstream, by result.",
                &["cluster", "result"],
            )?,
            upstream_connections_opened: counter(
                r,
                "outrigger_upstream_connections_opened_total",
                "Connections opened to a cluster's endpoints.",
                &["cluster"],
            )?,
            retries: counter(
                r,
                "outrigger_retries_total",
                "Retries sent (tries after the first).",
                &["route", "cluster"],
            )?,
            retry_budget_exhausted: counter(
                r,
                "outrigger_retry_budget_exhausted_total",
                "Retries refused by the retry budget.",
                &["route", "cluster"],
            )?,
            local_responses: counter(
                r,
                "outrigger_local_responses_total",
                "Responses made by Outrigger itself, by x-outrigger-error token.",
                &["route", "reason"],
            )?,
            circuit_state: gauge(
                r,
                "outrigger_circuit_state",
                "Circuit breaker state: 0 closed, 1 open, 2 half-open.",
                &["scope", "name"],
            )?,
            circuit_transitions: counter(
                r,
                "outrigger_circuit_transitions_total",
                "Circuit breaker state changes, by new state.",
                &["scope", "name", "to"],
            )?,
            bulkhead_in_flight: gauge(
                r,
                "outrigger_bulkhead_in_flight",
                "Requests holding a bulkhead slot.",
                &["scope", "name"],
            )?,
            bulkhead_queued: gauge(
                r,
                "outrigger_bulkhead_queued",
                "Requests waiting for a bulkhead slot.",
                &["scope", "name"],
            )?,
            bulkhead_rejected: counter(
                r,
                "outrigger_bulkhead_rejected_total",
                "Requests refused by a bulkhead.",
                &["scope", "name"],
            )?,
            bulkhead_limit: gauge(
                r,
                "outrigger_bulkhead_limit",
                "A bulkhead's concurrency limit now (moves in adaptive mode).",
                &["scope", "name"],
            )?,
            endpoints: gauge(r, "outrigger_endpoints", "Endpoints of a cluster, by state.", &["cluster", "state"])?,
            outlier_ejections: counter(
                r,
                "outrigger_outlier_ejections_total",
                "Endpoints ejected by outlier detection.",
                &["cluster"],
            )?,
            panic_mode: gauge(
                r,
                "outrigger_panic_mode",
                "1 while a cluster balances over all endpoints because too few are usable.",
                &["cluster"],
            )?,
            discovery_updates: counter(
                r,
                "outrigger_discovery_updates_total",
                "Endpoint-set updates from discovery, by result.",
                &["cluster", "result"],
            )?,
            config_reloads: counter(r, "outrigger_config_reloads_total", "Config reloads, by result.", &["result"])?,
        })
    }

    /// A throwaway set on its own registry (tests, benches).
    pub fn unregistered() -> Self {
        Metrics::new(&Registry::new()).expect("fresh registry")
    }

    /// Stops exporting the gauges of a breaker or bulkhead that no route or
    /// cluster has any more (a reload removed it), so /metrics does not
    /// keep reporting its last state. Counters stay, as Prometheus expects.
    pub fn forget_state(&self, kind: &str, scope: &str, name: &str) {
        let labels = [scope, name];
        match kind {
            crate::proxy::state::BREAKER => {
                let _ = self.circuit_state.remove_label_values(&labels);
            }
            crate::proxy::state::BULKHEAD => {
                for g in [&self.bulkhead_in_flight, &self.bulkhead_queued, &self.bulkhead_limit] {
                    let _ = g.remove_label_values(&labels);
                }
            }
            _ => {}
        }
    }

    /// Stops exporting the gauges of a cluster a reload removed.
    pub fn forget_cluster(&self, cluster: &str) {
        use crate::balance::EndpointState;
        for state in [EndpointState::Healthy, EndpointState::Ejected, EndpointState::Unhealthy] {
            let _ = self.endpoints.remove_label_values(&[cluster, state.label()]);
        }
        let _ = self.panic_mode.remove_label_values(&[cluster]);
    }
}

/// Status codes whose counters a route keeps at hand; others are looked
/// up when they occur.
const COMMON_CODES: [u16; 24] = [
    200, 201, 202, 204, 206, 301, 302, 304, 307, 308, 400, 401, 403, 404, 405, 408, 409, 413, 429, 431, 500, 502, 503,
    504,
];

/// The per-request handles of one (listener, route, cluster), bound when
/// the route is built so the request path only increments.
pub struct RouteMetrics {
    listener: String,
    route: String,
    cluster: String,
    requests: IntCounterVec,
    local: IntCounterVec,
    duration: prometheus::Histogram,
    codes: [OnceLock<IntCounter>; COMMON_CODES.len()],
    reasons: [OnceLock<IntCounter>; Refusal::ALL.len()],
}

impl RouteMetrics {
    /// Binds the labels.
    pub fn new(m: &Metrics, listener: &str, route: &str, cluster: &str) -> Self {
        RouteMetrics {
            listener: listener.to_owned(),
            route: route.to_owned(),
            cluster: cluster.to_owned(),
            requests: m.requests.clone(),
            local: m.local_responses.clone(),
            duration: m.request_duration.with_label_values(&[listener, route, cluster]),
            codes: Default::default(),
            reasons: Default::default(),
        }
    }

    /// Counts one answered request.
    pub fn record(&self, status: http::StatusCode, elapsed: std::time::Duration, refusal: Option<Refusal>) {
        self.duration.observe(elapsed.as_secs_f64());
        let code = status.as_u16();
        match COMMON_CODES.iter().position(|c| *c == code) {
            Some(i) => self.codes[i].get_or_init(|| self.code_counter(status)).inc(),
            None => self.code_counter(status).inc(),
        }
        if let Some(r) = refusal {
            let i = Refusal::ALL.iter().position(|x| *x == r).unwrap_or(0);
            self.reasons[i].get_or_init(|| self.local.with_label_values(&[&self.route, r.token()])).inc();
        }
    }

    fn code_counter(&self, status: http::StatusCode) -> IntCounter {
        self.requests.with_label_values(&[&self.listener, &self.route, &self.cluster, status.as_str()])
    }
}
