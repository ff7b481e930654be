use std::time::Duration;

use super::Timeout;

/// Wraps a service in a [`Timeout`]. The default has no deadline.
#[derive(Debug, Clone, Copy, Default)]
pub struct TimeoutLayer {
    timeout: Option<Duration>,
}

impl TimeoutLayer {
    /// Requests fail after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        TimeoutLayer { timeout: Some(timeout) }
    }
}

impl<S> tower::Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout::optional(inner, self.timeout)
    }
}
