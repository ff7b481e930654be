use std::sync::Arc;
use std::time::Duration;

use super::service::{CircuitBreaker, CircuitBreakerService};

/// Puts a shared [`CircuitBreaker`] in front of a service.
#[derive(Clone)]
pub struct CircuitBreakerLayer {
    breaker: Arc<CircuitBreaker>,
    deadline: Option<Duration>,
}

impl CircuitBreakerLayer {
    /// Every service this layer wraps consults `breaker`; `deadline` is the
    /// route timeout (see [`CircuitBreakerService::new`]).
    pub fn new(breaker: Arc<CircuitBreaker>, deadline: Option<Duration>) -> Self {
        CircuitBreakerLayer { breaker, deadline }
    }
}

impl<S> tower::Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreakerService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService::new(inner, Arc::clone(&self.breaker), self.deadline)
    }
}
