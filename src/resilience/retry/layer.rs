//! Settings -> layer: the policy, the route's budget from the state store,
//! metric handles bound once per (route, cluster).

use std::sync::Arc;

use super::budget::Budget;
use super::policy::Policy;
use super::service::{Retry, Shared};
use super::settings::RetrySettings;
use crate::metrics::Metrics;
use crate::proxy::state::{Scope, StateStore};

/// Wraps a (route, cluster) stack in [`Retry`]. The default retries
/// nothing: its services pass every request straight through.
#[derive(Clone, Default)]
pub struct RetryLayer {
    shared: Option<Arc<Shared>>,
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
            shared: Some(Arc::new(Shared {
                policy: Policy::new(settings),
                budget,
                route_timeout: settings.route_timeout,
                retries: metrics.retries.with_label_values(&[route, cluster]),
                exhausted: metrics.retry_budget_exhausted.with_label_values(&[route, cluster]),
                route: route.to_owned(),
            })),
        }
    }
}

impl<S: Clone> tower::Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Retry<S> {
        Retry::new(inner, self.shared.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resilience::retry::{test_settings, BudgetSettings};

    fn budget_of(layer: &RetryLayer) -> Arc<Budget> {
        Arc::clone(layer.shared.as_ref().and_then(|s| s.budget.as_ref()).expect("a budget"))
    }

    /// A route's budget outlives a rebuild (a reload) while its settings
    /// hold, is shared by the route's clusters, and starts afresh when they
    /// change. One try in all means no layer.
    #[test]
    fn budget_is_the_routes_and_survives_rebuilds() {
        let (metrics, state) = (Metrics::unregistered(), StateStore::default());
        let settings = test_settings();
        let build = |cluster: &str, s: &RetrySettings| RetryLayer::for_route("r", cluster, Some(s), &metrics, &state);
        let first = build("a", &settings).unwrap();
        let rebuilt = build("a", &settings).unwrap();
        let other_cluster = build("b", &settings).unwrap();
        assert!(Arc::ptr_eq(&budget_of(&first), &budget_of(&rebuilt)));
        assert!(Arc::ptr_eq(&budget_of(&first), &budget_of(&other_cluster)));

        let mut changed = settings.clone();
        changed.budget = Some(BudgetSettings { ratio: 0.5, ..Default::default() });
        assert!(!Arc::ptr_eq(&budget_of(&first), &budget_of(&build("a", &changed).unwrap())));

        changed.budget = None;
        assert!(build("a", &changed).unwrap().shared.unwrap().budget.is_none());
        assert!(build("a", &RetrySettings { attempts: 1, ..settings }).is_none());
        assert!(RetryLayer::for_route("r", "a", None, &metrics, &state).is_none());
    }
}
