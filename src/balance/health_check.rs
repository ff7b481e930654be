//! Active health checks: one task per cluster probes every endpoint with
//! `GET path` each `interval` (jittered by +-15% so many proxies do not
//! probe in step). `unhealthy_threshold` failed probes in a row take an
//! endpoint out of rotation; `healthy_threshold` passes in a row bring it
//! back. A probe passes on a 2xx within `timeout`.
//!
//! New endpoints start healthy: discovery already vouches for them, and
//! starting unhealthy would leave a freshly scaled-up cluster with no
//! traffic until the first probes pass. Outlier detection covers the gap
//! for an endpoint that is dead on arrival.
//!
//! The task holds only a weak reference to the balancer, so it ends when
//! the cluster is dropped (the cluster also aborts it).

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use http::{Request, Uri, Version};
use http_body_util::BodyExt;

use super::endpoint::Endpoint;
use super::settings::HealthCheckSettings;
use super::Balancer;
use crate::body::Body;
use crate::upstream::HttpClient;

/// Share of the interval added or taken at random.
const JITTER: f64 = 0.15;
/// Probes in flight at once per cluster.
const CONCURRENT_PROBES: usize = 64;

/// One endpoint's health-check verdict and streaks. Written only by its
/// cluster's checker; read by every pick.
#[derive(Debug)]
pub struct HealthState {
    healthy: AtomicBool,
    passes: AtomicU32,
    failures: AtomicU32,
}

impl Default for HealthState {
    fn default() -> Self {
        HealthState { healthy: AtomicBool::new(true), passes: AtomicU32::new(0), failures: AtomicU32::new(0) }
    }
}

impl HealthState {
    /// The current verdict.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Counts one probe; `Some(verdict)` when the verdict flips.
    pub fn observe(&self, passed: bool, s: &HealthCheckSettings) -> Option<bool> {
        let (streak, other, threshold) = if passed {
            (&self.passes, &self.failures, s.healthy_threshold)
        } else {
            (&self.failures, &self.passes, s.unhealthy_threshold)
        };
        other.store(0, Ordering::Relaxed);
        let n = streak.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if n >= threshold && self.is_healthy() != passed {
            self.healthy.store(passed, Ordering::Relaxed);
            return Some(passed);
        }
        None
    }
}

/// Probes one endpoint; true when it passed.
pub type Probe = Arc<dyn Fn(Arc<Endpoint>) -> BoxFuture<'static, bool> + Send + Sync>;

/// The HTTP probe: `GET http://ENDPOINT{path}` through `client`; 2xx passes.
pub fn http_probe(client: HttpClient, path: String, version: Version) -> Probe {
    Arc::new(move |endpoint: Arc<Endpoint>| {
        let client = client.clone();
        let uri = format!("http://{}{}", endpoint.authority, path).parse::<Uri>();
        Box::pin(async move {
            let Ok(uri) = uri else { return false };
            let mut req = Request::get(uri).body(Body::empty()).expect("GET with a parsed URI is valid");
            *req.version_mut() = version;
            req.headers_mut()
                .insert(http::header::USER_AGENT, http::HeaderValue::from_static("outrigger-health-check"));
            match client.request(req).await {
                Ok(resp) => {
                    let passed = resp.status().is_success();
                    // Read the body so the connection can be reused.
                    passed && resp.into_body().collect().await.is_ok()
                }
                Err(_) => false,
            }
        })
    })
}

/// Probes every endpoint each interval (jittered) until the balancer is
/// dropped.
pub async fn run(balancer: Weak<Balancer>, settings: HealthCheckSettings, probe: Probe) {
    run_with_jitter(balancer, settings, probe, JITTER).await
}

async fn run_with_jitter(balancer: Weak<Balancer>, settings: HealthCheckSettings, probe: Probe, jitter: f64) {
    while let Some(b) = balancer.upgrade() {
        round(&b, &settings, &probe).await;
        drop(b);
        let spread = 1.0 + jitter * (2.0 * fastrand::f64() - 1.0);
        tokio::time::sleep(settings.interval.mul_f64(spread)).await;
    }
}

/// Probes each endpoint of the current set once.
async fn round(balancer: &Balancer, settings: &HealthCheckSettings, probe: &Probe) {
    let set = balancer.snapshot();
    let flips = AtomicUsize::new(0);
    futures_util::stream::iter(set.endpoints.iter().cloned())
        .for_each_concurrent(CONCURRENT_PROBES, |e| {
            let flips = &flips;
            let check = timed(settings.timeout, probe(Arc::clone(&e)));
            async move {
                let passed = check.await;
                if let Some(healthy) = e.health.observe(passed, settings) {
                    let state = if healthy { super::EndpointState::Healthy } else { super::EndpointState::Unhealthy }.label();
                    tracing::info!(cluster = %balancer.cluster(), endpoint = %e.address, state, "health check verdict changed");
                    flips.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .await;
    if flips.load(Ordering::Relaxed) > 0 {
        balancer.refresh();
    }
}

async fn timed(limit: Duration, probe: impl Future<Output = bool>) -> bool {
    tokio::time::timeout(limit, probe).await.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::{BalancerSettings, EndpointState};
    use crate::discovery::EndpointSpec;
    use std::collections::HashSet;
    use std::net::SocketAddr;
    use std::sync::Mutex;

    fn settings() -> HealthCheckSettings {
        HealthCheckSettings {
            path: "/healthz".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(100),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        }
    }

    /// A probe that fails for the addresses in the shared set.
    fn scripted(failing: Arc<Mutex<HashSet<SocketAddr>>>) -> Probe {
        Arc::new(move |e: Arc<Endpoint>| {
            let fails = failing.lock().unwrap().contains(&e.address);
            Box::pin(async move { !fails })
        })
    }

    /// A streak resets on the opposite result; the verdict flips only at
    /// the threshold.
    #[test]
    fn verdict_flips_at_thresholds() {
        let s = settings();
        let h = HealthState::default();
        assert_eq!(h.observe(false, &s), None);
        assert_eq!(h.observe(false, &s), None);
        assert_eq!(h.observe(true, &s), None);
        assert_eq!(h.observe(false, &s), None);
        assert_eq!(h.observe(false, &s), None);
        assert_eq!(h.observe(false, &s), Some(false));
        assert_eq!(h.observe(false, &s), None);
        assert_eq!(h.observe(true, &s), None);
        assert_eq!(h.observe(true, &s), Some(true));
    }

    /// An endpoint failing its probes leaves rotation after three
    /// intervals and rejoins two intervals after it recovers; the task
    /// ends once the balancer is gone.
    #[tokio::test(start_paused = true)]
    async fn failing_endpoint_leaves_and_rejoins_rotation() {
        let a = SocketAddr::from(([127, 0, 0, 1], 1));
        let b = SocketAddr::from(([127, 0, 0, 1], 2));
        let balancer = Arc::new(Balancer::new("c", BalancerSettings::default()));
        balancer.update(vec![EndpointSpec::new(a), EndpointSpec::new(b)]);
        let failing = Arc::new(Mutex::new(HashSet::from([b])));
        let task = tokio::spawn(run_with_jitter(Arc::downgrade(&balancer), settings(), scripted(failing.clone()), 0.0));
        let state_of_b = |bal: &Balancer| bal.snapshot().endpoints[1].state(bal.clock().now());
        let req = Request::new(Body::empty());

        // Probes at t = 0, 1, 2 s.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(state_of_b(&balancer), EndpointState::Healthy, "two failures are not enough");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(state_of_b(&balancer), EndpointState::Unhealthy);
        assert!((0..20).all(|_| balancer.pick(&req).unwrap().address == a), "unhealthy gets no traffic");
        assert_eq!(balancer.census().unhealthy, 1);

        failing.lock().unwrap().clear();
        tokio::time::sleep(Duration::from_secs(1)).await; // probe at t = 3 s
        assert_eq!(state_of_b(&balancer), EndpointState::Unhealthy, "one pass is not enough");
        tokio::time::sleep(Duration::from_secs(1)).await; // t = 4 s
        assert_eq!(state_of_b(&balancer), EndpointState::Healthy);
        assert_eq!(balancer.census().healthy, 2);

        drop(balancer);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(task.is_finished(), "the checker stops with its balancer");
    }
}
