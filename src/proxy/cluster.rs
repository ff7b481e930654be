//! A cluster at run time: its balancer, pooled client, discovery status
//! and shared resilience state.

use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use futures_util::StreamExt;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::AbortHandle;

use crate::balance::background::Background;
use crate::balance::service::{AttemptMetrics, Balance};
use crate::balance::{Balancer, BalancerSettings};
use crate::config::settings::ClusterSettings;
use crate::discovery::{self, Discover};
use crate::error::BoxError;
use crate::metrics::Metrics;
use crate::upstream::pool::PoolSettings;

/// What discovery last said, for /ready and /clusters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DiscoveryStatus {
    /// The source kind.
    pub source: &'static str,
    /// When the last good update arrived (RFC 3339).
    pub last_update: Option<String>,
    /// The last error, if the last answer was an error.
    pub last_error: Option<String>,
    /// Good updates so far.
    pub updates: u64,
}

/// One cluster, shared by every route that sends to it.
pub struct Cluster {
    /// Its settings (compared on reload to keep state).
    pub settings: ClusterSettings,
    /// Endpoint selection.
    pub balancer: Arc<Balancer>,
    pool: Arc<PoolSettings>,
    attempts: Arc<AttemptMetrics>,
    /// Flips to true at discovery's first good answer.
    ready: watch::Receiver<bool>,
    status: Arc<ArcSwap<DiscoveryStatus>>,
    discovery_task: AbortHandle,
    /// Ejection expiry and health checks; stopped when the cluster drops.
    _balance_tasks: Background,
}

impl Cluster {
    /// Builds the cluster and starts its discovery.
    pub fn start(
        settings: ClusterSettings,
        metrics: &Metrics,
        base_dir: Option<&std::path::Path>,
    ) -> Result<Arc<Self>, BoxError> {
        let source = discovery::source(&settings.discovery, base_dir)?;
        let balancer = Arc::new(Balancer::new(&settings.name, BalancerSettings::from(&settings)).with_metrics(metrics));
        let balance_tasks = Background::start(&balancer, &settings);
        let (ready_tx, ready) = watch::channel(false);
        let status = Arc::new(ArcSwap::from_pointee(DiscoveryStatus {
            source: settings.discovery.kind(),
            ..Default::default()
        }));
        let task = tokio::spawn(drive(source, Arc::clone(&balancer), ready_tx, Arc::clone(&status), metrics.clone()));
        Ok(Arc::new(Cluster {
            attempts: Arc::new(AttemptMetrics::new(metrics, &settings.name)),
            pool: Arc::new(PoolSettings::for_cluster(&settings, metrics)),
            settings,
            balancer,
            ready,
            status,
            discovery_task: task.abort_handle(),
            _balance_tasks: balance_tasks,
        }))
    }

    /// The service that sends a request to one of this cluster's endpoints.
    pub fn endpoint_service(&self) -> Balance {
        Balance::new(Arc::clone(&self.balancer), Arc::clone(&self.pool), Arc::clone(&self.attempts))
    }

    /// Whether discovery has answered at least once.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits for discovery's first good answer (at once if it came).
    pub async fn first_answer(&self) {
        let mut ready = self.ready.clone();
        // An error means the driver ended without a good answer: never ready.
        if ready.wait_for(|r| *r).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// What discovery last said.
    pub fn discovery_status(&self) -> Arc<DiscoveryStatus> {
        self.status.load_full()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.discovery_task.abort();
    }
}

/// Feeds a source's updates into the balancer. Errors keep the last good
/// set; only a good answer makes the cluster ready.
async fn drive(
    source: Box<dyn Discover>,
    balancer: Arc<Balancer>,
    ready: watch::Sender<bool>,
    status: Arc<ArcSwap<DiscoveryStatus>>,
    metrics: Metrics,
) {
    let cluster = balancer.cluster().to_owned();
    let ok = metrics.discovery_updates.with_label_values(&[&cluster, "success"]);
    let failed = metrics.discovery_updates.with_label_values(&[&cluster, "error"]);
    let mut updates = source.updates();
    while let Some(update) = updates.next().await {
        let mut s = DiscoveryStatus::clone(&status.load());
        match update {
            Ok(endpoints) => {
                tracing::info!(cluster = %cluster, endpoints = endpoints.len(), "discovery update");
                balancer.update(endpoints);
                ok.inc();
                s.last_update = Some(humantime::format_rfc3339_millis(SystemTime::now()).to_string());
                s.last_error = None;
                s.updates += 1;
                ready.send_replace(true);
            }
            Err(e) => {
                tracing::warn!(cluster = %cluster, error = %e, "discovery failed; keeping the last endpoints");
                failed.inc();
                s.last_error = Some(e.to_string());
            }
        }
        status.store(Arc::new(s));
    }
}
