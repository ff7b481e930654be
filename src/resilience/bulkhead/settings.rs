//! What a bulkhead is built from: validated, plain data, no I/O.

use std::time::Duration;

/// A validated `bulkhead:` block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkheadSettings {
    /// Requests in flight at once (the starting limit when adaptive).
    pub max_concurrent: usize,
    /// Requests that may wait for a slot.
    pub max_queued: usize,
    /// Longest wait in the queue.
    pub queue_timeout: Duration,
    /// Adaptive limit bounds `(min, max)`.
    pub adaptive: Option<(usize, usize)>,
}
