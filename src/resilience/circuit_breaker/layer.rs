use std::sync::Arc;

use super::service::{CircuitBreaker, CircuitBreakerService};

/// Puts shared [`CircuitBreaker`]s (up to two, consulted in order) in
/// front of a service. The default has none: its services pass every
/// request straight through.
#[derive(Clone, Default)]
pub struct CircuitBreakerLayer {
    breakers: [Option<Arc<CircuitBreaker>>; 2],
}

impl CircuitBreakerLayer {
    /// Consults `first` (if any), then `then` (if any): a route's own
    /// breaker and its cluster's, in one layer.
    pub fn pair(first: Option<Arc<CircuitBreaker>>, then: Option<Arc<CircuitBreaker>>) -> Self {
        CircuitBreakerLayer { breakers: [first, then] }
    }
}

impl<S> tower::Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreakerService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService::optional(inner, self.breakers.clone())
    }
}
