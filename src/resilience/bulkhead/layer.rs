use std::sync::Arc;

use super::service::{Bulkhead, BulkheadService};

/// Puts shared [`Bulkhead`]s (up to two, taken in order) in front of a
/// service. The default has none: its services pass every request
/// straight through.
#[derive(Clone, Default)]
pub struct BulkheadLayer {
    bulkheads: [Option<Arc<Bulkhead>>; 2],
}

impl BulkheadLayer {
    /// Takes a slot of `first` (if any), then of `then` (if any): a
    /// route's own bulkhead and its cluster's, in one layer.
    pub fn pair(first: Option<Arc<Bulkhead>>, then: Option<Arc<Bulkhead>>) -> Self {
        BulkheadLayer { bulkheads: [first, then] }
    }
}

impl<S> tower::Layer<S> for BulkheadLayer {
    type Service = BulkheadService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BulkheadService::optional(inner, self.bulkheads.clone())
    }
}
