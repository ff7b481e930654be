use std::sync::Arc;

use super::service::{Bulkhead, BulkheadService};

/// Puts a shared [`Bulkhead`] in front of a service. The default has none:
/// its services pass every request straight through.
#[derive(Clone, Default)]
pub struct BulkheadLayer {
    bulkhead: Option<Arc<Bulkhead>>,
}

impl BulkheadLayer {
    /// Every service this layer wraps draws from `bulkhead`.
    pub fn new(bulkhead: Arc<Bulkhead>) -> Self {
        BulkheadLayer { bulkhead: Some(bulkhead) }
    }
}

impl<S> tower::Layer<S> for BulkheadLayer {
    type Service = BulkheadService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BulkheadService::optional(inner, self.bulkhead.clone())
    }
}
