//! Bulkheads: bounded concurrency and a bounded, timed queue.
//!
//! Why: a slow dependency holds every request sent to it. Without a bound,
//! those requests pile up until they take every connection, buffer and
//! task the proxy has, and calls to healthy dependencies fail too. A
//! bulkhead caps what one route (its own pool) or one cluster (a pool
//! shared by every route to it) may hold; past the cap a few requests wait
//! briefly, and the rest are refused at once with 503 `bulkhead-full`, so
//! the damage stays in its compartment.
//!
//! A slot is held from admission until the response body has been sent
//! or dropped (it rides on the body as a guard), across every retry, and
//! is released on any early exit: error, timeout, client disconnect.
//!
//! With `adaptive: {min, max}`, the limit moves with observed latency
//! (`adaptive`, Gradient2 as in Netflix concurrency-limits): static limits
//! (all Envoy and Linkerd offer) are either too low for a healthy upstream
//! or too high for a struggling one.

mod adaptive;
mod layer;
mod service;
mod settings;
#[cfg(test)]
mod tests;

pub use adaptive::AdaptiveLimit;
pub use layer::BulkheadLayer;
pub use service::{Bulkhead, BulkheadService, BulkheadView, Slot};
pub use settings::BulkheadSettings;
