use std::sync::Arc;

use super::budget::Budget;
use super::policy::Policy;
use super::service::{Retry, Shared};
use super::settings::RetrySettings;
use crate::metrics::Metrics;
use crate::proxy::state::{Scope, StateStore};

/// Wraps a (route, cluster) stack in [`Retry`].
#[derive(Clone)]
pub struct RetryLayer {
    shared: Arc<Shared>,
}

impl RetryLayer {
    /// The layer for one route's stack to `cluster`, or `None` when the
    /// route does not retry (no `retry:` block, or one try in all), so a
    /// route without retries pays nothing.
    ///
    /// The budget is the route's, kept in `state` so it survives a reload
    /// while its settings are unchanged; metric handles are bound here.
    pub fn for_route(
        route: &str,
        cluster: &str,
        settings: Option<&RetrySettings>,
        metrics: &Metrics,
        state: &StateStore,
    ) -> Option<RetryLayer> {
        let settings = settings.filter(|s| s.attempts > 1)?;
        let budget = settings
            .budget
            .as_ref()
            .map(|b| state.get_or_make("retry_budget", Scope::Route, route, b, || Budget::new(b)));
        Some(RetryLayer::new(route, cluster, settings, budget, metrics))
    }

    /// A layer from settings, a budget (`None`: unlimited) and the metric
    /// families.
    pub fn new(
        route: &str,
        cluster: &str,
        settings: &RetrySettings,
        budget: Option<Arc<Budget>>,
        metrics: &Metrics,
    ) -> RetryLayer {
        RetryLayer {
            shared: Arc::new(Shared {
                policy: Policy::new(settings),
                budget,
                route_timeout: settings.route_timeout,
                retries: metrics.retries.with_label_values(&[route, cluster]),
                exhausted: metrics.retry_budget_exhausted.with_label_values(&[route, cluster]),
                route: route.to_owned(),
            }),
        }
    }
}

impl<S> tower::Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Retry<S> {
        Retry::new(inner, Arc::clone(&self.shared))
    }
}
