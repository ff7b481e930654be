use std::time::Duration;

use super::Timeout;

/// Wraps a service in a [`Timeout`]. The default has no deadline.
#[derive(Debug, Clone, Copy, Default)]
pub struct TimeoutLayer {
    timeout: Option<Duration>,
    carries: bool,
}

impl TimeoutLayer {
    /// Requests fail after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        TimeoutLayer { timeout: Some(timeout), carries: false }
    }

    /// See [`Timeout::carrying`].
    pub fn carrying(mut self, carries: bool) -> Self {
        self.carries = carries;
        self
    }
}

impl<S> tower::Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout::optional(inner, self.timeout).carrying(self.carries)
    }
}
