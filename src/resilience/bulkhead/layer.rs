use std::sync::Arc;

use super::service::{Bulkhead, BulkheadService};

/// Puts a shared [`Bulkhead`] in front of a service.
#[derive(Clone)]
pub struct BulkheadLayer {
    bulkhead: Arc<Bulkhead>,
}

impl BulkheadLayer {
    /// Every service this layer wraps draws from `bulkhead`.
    pub fn new(bulkhead: Arc<Bulkhead>) -> Self {
        BulkheadLayer { bulkhead }
    }
}

impl<S> tower::Layer<S> for BulkheadLayer {
    type Service = BulkheadService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BulkheadService::new(inner, Arc::clone(&self.bulkhead))
    }
}
