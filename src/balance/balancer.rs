//! A cluster's balancer: the current endpoint set (swapped whole on each
//! discovery update), the policy's precomputed picker, and the health
//! rules that decide which endpoints a pick may choose.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::Request;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::census::{BalanceMetrics, Census};
use super::clock::Clock;
use super::endpoint::{Endpoint, EndpointView};
use super::outlier::may_eject;
use super::policy::ewma::DEFAULT_RTT;
use super::policy::{Candidates, Picker};
use super::settings::{BalancerSettings, LbPolicy, OutlierSettings};
use super::AvoidEndpoint;
use crate::discovery::EndpointSpec;
use crate::error::Outcome;
use crate::metrics::Metrics;

/// The endpoints of a cluster at one moment, with the policy's state for
/// exactly this set.
#[derive(Default)]
pub struct EndpointSet {
    /// In discovery order.
    pub endpoints: Vec<Arc<Endpoint>>,
    /// Weights as of this set (what the picker was built from).
    weights: Vec<u32>,
    picker: Picker,
}

impl std::fmt::Debug for EndpointSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointSet").field("endpoints", &self.endpoints.len()).finish_non_exhaustive()
    }
}

/// A cluster's balancer.
pub struct Balancer {
    cluster: String,
    settings: BalancerSettings,
    clock: Clock,
    set: ArcSwap<EndpointSet>,
    /// Round-robin position, kept across set changes.
    next: AtomicUsize,
    /// Whether picks ignore health (too few usable).
    panic: AtomicBool,
    /// Whether picks need the time (ejections or EWMA).
    timed: bool,
    metrics: BalanceMetrics,
    /// Serializes set updates (which may build a large ring or table).
    updating: Mutex<()>,
    /// Serializes ejection decisions and censuses; holds the last census.
    census: Mutex<Census>,
    /// Told when an ejection starts or the set changes (wakes the expiry task).
    changed: Arc<Notify>,
}

impl std::fmt::Debug for Balancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balancer").field("cluster", &self.cluster).field("settings", &self.settings).finish()
    }
}

impl Balancer {
    /// A balancer with no endpoints yet, its metrics exported nowhere
    /// (see [`Balancer::with_metrics`]). Takes an [`LbPolicy`] or whole
    /// [`BalancerSettings`].
    pub fn new(cluster: &str, settings: impl Into<BalancerSettings>) -> Self {
        let settings = settings.into();
        Balancer {
            cluster: cluster.to_owned(),
            timed: settings.outlier.is_some() || settings.policy == LbPolicy::PeakEwma,
            settings,
            clock: Clock::new(),
            set: ArcSwap::from_pointee(EndpointSet::default()),
            next: AtomicUsize::new(0),
            panic: AtomicBool::new(false),
            metrics: BalanceMetrics::detached(),
            updating: Mutex::new(()),
            census: Mutex::new(Census::default()),
            changed: Arc::new(Notify::new()),
        }
    }

    /// Exports the endpoint, ejection and panic metrics into `metrics`.
    pub fn with_metrics(mut self, metrics: &Metrics) -> Self {
        self.metrics = BalanceMetrics::new(metrics, &self.cluster);
        self.refresh();
        self
    }

    /// The cluster's name.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The policy.
    pub fn policy(&self) -> &LbPolicy {
        &self.settings.policy
    }

    /// The clock its times are kept on.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Told when an ejection starts or the set changes.
    pub fn changed(&self) -> Arc<Notify> {
        Arc::clone(&self.changed)
    }

    /// Replaces the endpoint set; endpoints that remain keep their state
    /// (a changed weight or metadata is taken in place). Duplicate
    /// addresses count once. The policy's ring or table is rebuilt only
    /// when addresses or weights changed.
    pub fn update(&self, specs: Vec<EndpointSpec>) {
        let _one_at_a_time = self.updating.lock().expect("balancer update lock");
        let old = self.set.load_full();
        let now = self.clock.now();
        let mut kept: HashMap<SocketAddr, &Arc<Endpoint>> = old.endpoints.iter().map(|e| (e.address, e)).collect();
        let mut seen = HashSet::with_capacity(specs.len());
        let mut weights = Vec::with_capacity(specs.len());
        let endpoints: Vec<Arc<Endpoint>> = specs
            .into_iter()
            .filter(|s| seen.insert(s.address))
            .map(|spec| {
                weights.push(spec.weight.max(1));
                match kept.remove(&spec.address) {
                    Some(e) => {
                        e.respec(spec);
                        Arc::clone(e)
                    }
                    None => Arc::new(Endpoint::new(spec, now)),
                }
            })
            .collect();
        let same = weights == old.weights && endpoints.iter().zip(&old.endpoints).all(|(a, b)| Arc::ptr_eq(a, b));
        if !same {
            let addrs: Vec<SocketAddr> = endpoints.iter().map(|e| e.address).collect();
            let picker = Picker::new(&self.settings.policy, &addrs, &weights);
            self.set.store(Arc::new(EndpointSet { endpoints, weights, picker }));
            self.refresh();
            self.changed.notify_one();
        }
    }

    /// The current set (for the admin view and health checks).
    pub fn snapshot(&self) -> Arc<EndpointSet> {
        self.set.load_full()
    }

    /// Picks an endpoint for `req`, or `None` when none is usable. Honours
    /// [`AvoidEndpoint`] when another endpoint is usable. No locks, no
    /// allocation.
    pub fn pick<B>(&self, req: &Request<B>) -> Option<Arc<Endpoint>> {
        let set = self.set.load();
        if set.endpoints.is_empty() {
            return None;
        }
        let now = if self.timed { self.clock.now() } else { 0 };
        let mut filter = Filter {
            endpoints: &set.endpoints,
            now,
            panic: self.panic.load(Ordering::Relaxed),
            avoid: req.extensions().get::<AvoidEndpoint>().map(|a| a.0),
        };
        let load = |i: usize| self.load_of(&set.endpoints[i], now);
        let mut i = set.picker.pick(req, &self.next, &filter, load);
        if i.is_none() && filter.avoid.is_some() {
            filter.avoid = None;
            i = set.picker.pick(req, &self.next, &filter, load);
        }
        Some(Arc::clone(&set.endpoints[i?]))
    }

    /// The P2C cost of `e`: requests in flight plus one, times the latency
    /// estimate for `peak_ewma`. Weights are not in the cost: they already
    /// shaped which two endpoints were drawn.
    fn load_of(&self, e: &Endpoint, now: u64) -> f64 {
        let pending = f64::from(e.load()) + 1.0;
        match self.settings.policy {
            LbPolicy::PeakEwma => e.ewma.estimate(now) * pending,
            _ => pending,
        }
    }

    /// Learns from one exchange with `endpoint`: latency (failures count as
    /// at least the default RTT, so failing fast never looks attractive),
    /// failure counts, and outlier ejection.
    pub fn record(&self, endpoint: &Endpoint, outcome: Outcome, latency: Duration) {
        self.record_at(endpoint, outcome, latency, Instant::now());
    }

    /// [`Balancer::record`] for an exchange that ended at `end`.
    pub fn record_at(&self, endpoint: &Endpoint, outcome: Outcome, latency: Duration, end: Instant) {
        let sample = match outcome {
            Outcome::Ignored => return,
            Outcome::Success => latency,
            Outcome::Failure => {
                endpoint.failures.fetch_add(1, Ordering::Relaxed);
                latency.max(DEFAULT_RTT)
            }
        };
        let now = self.clock.at(end);
        endpoint.ewma.observe(now, sample);
        if let Some(o) = &self.settings.outlier {
            if endpoint.outlier.count(outcome, o.consecutive_failures) {
                self.try_eject(endpoint, now, o);
            }
        }
    }

    /// Ejects `endpoint` unless it already is, it left the set, or the
    /// cluster is at its ejection limit.
    fn try_eject(&self, endpoint: &Endpoint, now: u64, o: &OutlierSettings) {
        let mut census = self.census.lock().expect("balancer census lock");
        let set = self.set.load();
        if endpoint.outlier.is_ejected(now) || !set.endpoints.iter().any(|e| std::ptr::eq(&**e, endpoint)) {
            return;
        }
        let ejected = set.endpoints.iter().filter(|e| e.outlier.is_ejected(now)).count();
        if !may_eject(ejected, set.endpoints.len(), o.max_ejected_percent) {
            tracing::debug!(cluster = %self.cluster, endpoint = %endpoint.address, ejected, "not ejecting: at max_ejected_percent");
            return;
        }
        let time = endpoint.outlier.eject(now, o);
        self.metrics.ejections.inc();
        tracing::warn!(
            cluster = %self.cluster,
            endpoint = %endpoint.address,
            ejection_ms = time.as_millis() as u64,
            times = endpoint.outlier.times_ejected(),
            "endpoint ejected after consecutive failures"
        );
        *census = self.publish(&set, now);
        drop(census);
        self.changed.notify_one();
    }

    /// Recounts the endpoints' states; updates gauges and panic mode.
    pub fn refresh(&self) {
        let mut census = self.census.lock().expect("balancer census lock");
        *census = self.publish(&self.set.load(), self.clock.now());
    }

    fn publish(&self, set: &EndpointSet, now: u64) -> Census {
        let census = Census::take(&set.endpoints, now);
        let panic = census.panics(self.settings.panic_threshold);
        if self.panic.swap(panic, Ordering::Relaxed) != panic {
            let (healthy, total) = (census.healthy, census.total());
            if panic {
                tracing::warn!(cluster = %self.cluster, healthy, total, "panic mode: too few usable endpoints; balancing over all");
            } else {
                tracing::info!(cluster = %self.cluster, healthy, total, "panic mode over");
            }
        }
        self.metrics.show(&census, panic);
        census
    }

    /// Endpoints by state, as of the last change.
    pub fn census(&self) -> Census {
        *self.census.lock().expect("balancer census lock")
    }

    /// Whether picks currently ignore health.
    pub fn in_panic(&self) -> bool {
        self.panic.load(Ordering::Relaxed)
    }

    /// When the earliest running ejection ends.
    pub fn next_ejection_end(&self) -> Option<tokio::time::Instant> {
        let now = self.clock.now();
        let set = self.set.load();
        let next = set.endpoints.iter().filter_map(|e| e.outlier.ejected_until()).filter(|u| *u > now).min()?;
        Some(self.clock.instant(next))
    }

    /// Every endpoint as `/clusters` shows it.
    pub fn endpoint_views(&self) -> Vec<EndpointView> {
        self.set.load().endpoints.iter().map(|e| e.view(&self.clock)).collect()
    }
}

/// Which endpoints a pick may choose now.
struct Filter<'a> {
    endpoints: &'a [Arc<Endpoint>],
    now: u64,
    panic: bool,
    avoid: Option<SocketAddr>,
}

impl Candidates for Filter<'_> {
    fn len(&self) -> usize {
        self.endpoints.len()
    }

    fn usable(&self, i: usize) -> bool {
        let e = &self.endpoints[i];
        (self.panic || e.is_usable(self.now)) && Some(e.address) != self.avoid
    }
}
