//! One endpoint and the state kept about it while it stays in the set.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use http::uri::Authority;
use serde::Serialize;

use super::clock::Clock;
use super::health_check::HealthState;
use super::outlier::OutlierState;
use super::policy::ewma::PeakEwma;
use crate::discovery::EndpointSpec;
use crate::upstream::pool::Pool;

/// An endpoint with its running counters. Shared (`Arc`) between the
/// endpoint set, in-flight requests and the admin view; the same object
/// stays in the set, state and all, for as long as its address does (a
/// new weight or metadata is swapped in place).
#[derive(Debug)]
pub struct Endpoint {
    /// Where to connect.
    pub address: SocketAddr,
    /// The URI authority for requests to it, made once.
    pub authority: Authority,
    /// What discovery said about it last.
    spec: ArcSwap<EndpointSpec>,
    /// Requests sent and not yet finished.
    pub in_flight: AtomicU32,
    /// Requests sent.
    pub requests: AtomicU64,
    /// Failures (connect, reset, timeout, 5xx).
    pub failures: AtomicU64,
    /// Latency estimate (peak EWMA).
    pub ewma: PeakEwma,
    /// Passive health: failures in a row, ejection.
    pub outlier: OutlierState,
    /// Active health: the health checker's verdict.
    pub health: HealthState,
    /// Its connections, made at the first request.
    pub pool: OnceLock<Arc<Pool>>,
}

/// Where an endpoint stands, as the `state` label of `outrigger_endpoints`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointState {
    /// Takes traffic.
    Healthy,
    /// Ejected by outlier detection until its ejection ends.
    Ejected,
    /// Failed its active health checks.
    Unhealthy,
}

impl EndpointState {
    /// The metric label / admin text.
    pub fn label(self) -> &'static str {
        match self {
            EndpointState::Healthy => "healthy",
            EndpointState::Ejected => "ejected",
            EndpointState::Unhealthy => "unhealthy",
        }
    }
}

impl Endpoint {
    /// A fresh endpoint, healthy, first seen at `now` (clock nanoseconds).
    pub fn new(spec: EndpointSpec, now: u64) -> Self {
        let authority = Authority::try_from(spec.address.to_string().as_str()).expect("socket address is an authority");
        Endpoint {
            address: spec.address,
            authority,
            spec: ArcSwap::from_pointee(spec),
            in_flight: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            ewma: PeakEwma::new(now),
            outlier: OutlierState::default(),
            health: HealthState::default(),
            pool: OnceLock::new(),
        }
    }

    /// What discovery said about it last.
    pub fn spec(&self) -> Arc<EndpointSpec> {
        self.spec.load_full()
    }

    /// Takes discovery's newer description (same address).
    pub fn respec(&self, spec: EndpointSpec) {
        if **self.spec.load() != spec {
            self.spec.store(Arc::new(spec));
        }
    }

    /// Requests in flight now.
    pub fn load(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Its state at `now`: failing health checks trumps ejection.
    pub fn state(&self, now: u64) -> EndpointState {
        if !self.health.is_healthy() {
            EndpointState::Unhealthy
        } else if self.outlier.is_ejected(now) {
            EndpointState::Ejected
        } else {
            EndpointState::Healthy
        }
    }

    /// Whether it may take traffic at `now` (outside panic mode).
    pub fn is_usable(&self, now: u64) -> bool {
        self.health.is_healthy() && !self.outlier.is_ejected(now)
    }

    /// Everything about it, for `/clusters`.
    pub fn view(&self, clock: &Clock) -> EndpointView {
        let now = clock.now();
        let spec = self.spec();
        let remaining = self.outlier.ejected_until().filter(|u| *u > now).map(|u| Duration::from_nanos(u - now));
        EndpointView {
            address: self.address.to_string(),
            weight: spec.weight,
            metadata: spec.metadata.clone(),
            state: self.state(now).label(),
            in_flight: self.load(),
            ewma_ms: (self.ewma.estimate(now) / 1e4).round() / 100.0,
            requests: self.requests.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            times_ejected: self.outlier.times_ejected(),
            idle_connections: self.pool.get().map_or(0, |p| p.idle_count()),
            ejected_until: remaining.map(|r| humantime::format_rfc3339_millis(SystemTime::now() + r).to_string()),
            ejection_remaining_ms: remaining.map(|r| r.as_millis() as u64),
        }
    }
}

/// One endpoint as `/clusters` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointView {
    /// `IP:PORT`.
    pub address: String,
    /// Relative weight.
    pub weight: u32,
    /// Discovery's labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// `healthy`, `ejected` or `unhealthy`.
    pub state: &'static str,
    /// Requests in flight.
    pub in_flight: u32,
    /// Peak-EWMA latency estimate, milliseconds.
    pub ewma_ms: f64,
    /// Requests sent.
    pub requests: u64,
    /// Failed requests.
    pub failures: u64,
    /// Ejections so far.
    pub times_ejected: u32,
    /// HTTP/1 connections kept open for the next request.
    pub idle_connections: usize,
    /// When the current ejection ends (RFC 3339), if ejected.
    pub ejected_until: Option<String>,
    /// Milliseconds until the current ejection ends, if ejected.
    pub ejection_remaining_ms: Option<u64>,
}
