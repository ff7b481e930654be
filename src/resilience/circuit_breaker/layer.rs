use std::sync::Arc;

use super::service::{CircuitBreaker, CircuitBreakerService};

/// Puts a shared [`CircuitBreaker`] in front of a service. The default has
/// none: its services pass every request straight through.
#[derive(Clone, Default)]
pub struct CircuitBreakerLayer {
    breaker: Option<Arc<CircuitBreaker>>,
}

impl CircuitBreakerLayer {
    /// Every service this layer wraps consults `breaker`.
    pub fn new(breaker: Arc<CircuitBreaker>) -> Self {
        CircuitBreakerLayer { breaker: Some(breaker) }
    }
}

impl<S> tower::Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreakerService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService::optional(inner, self.breaker.clone())
    }
}
