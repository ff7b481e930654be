//! The routing table: each listener's router and the clusters behind it.
//! Immutable once built; a reload builds a new one and swaps it in.

use std::collections::HashMap;
use std::sync::Arc;

use super::cluster::Cluster;
use super::route::Route;
use super::router::Router;
use super::state::StateStore;
use crate::config::settings::{ListenerSettings, Settings};
use crate::error::BoxError;
use crate::metrics::{Metrics, RouteMetrics};

/// What one listener serves: its routes, in order.
pub struct ListenerRoutes {
    /// The listener's name.
    pub name: String,
    /// Routes in match order.
    pub router: Router<Route>,
    /// Handles for requests no route matched.
    pub no_route: RouteMetrics,
    /// Largest header block accepted.
    pub max_header_bytes: usize,
    /// Read each connection's original destination (SO_ORIGINAL_DST).
    pub transparent: bool,
}

/// Clusters by name.
pub type Clusters = HashMap<String, Arc<Cluster>>;

/// Builds the clusters of `settings`, keeping each old cluster (and so its
/// endpoint health, pool and discovery) whose settings did not change.
pub fn build_clusters(settings: &Settings, old: &Clusters, metrics: &Metrics) -> Result<Clusters, BoxError> {
    let base = settings.path.as_deref().and_then(|p| p.parent());
    let mut out = HashMap::new();
    for c in &settings.clusters {
        let cluster = match old.get(&c.name) {
            Some(prev) if prev.settings == *c => Arc::clone(prev),
            _ => Cluster::start(c.clone(), metrics, base).map_err(|e| format!("cluster {:?}: {e}", c.name))?,
        };
        out.insert(c.name.clone(), cluster);
    }
    Ok(out)
}

/// Builds one listener's routes.
pub fn build_listener(
    l: &ListenerSettings,
    clusters: &Clusters,
    metrics: &Metrics,
    state: &StateStore,
) -> ListenerRoutes {
    let routes = l
        .routes
        .iter()
        .map(|r| (r.matcher.clone(), Route::build(&l.name, r.clone(), clusters, metrics, state)))
        .collect();
    ListenerRoutes {
        name: l.name.clone(),
        router: Router::new(routes),
        no_route: RouteMetrics::new(metrics, &l.name, "", ""),
        max_header_bytes: l.max_header_bytes,
        transparent: l.transparent,
    }
}
