//! A deadline on a request: the route timeout (outermost, covering every
//! retry) and the per-try timeout (innermost, one try). Past it the
//! request fails with [`Refusal::Timeout`](crate::error::Refusal), which
//! the edge answers as 504 `timeout`.
//!
//! The deadline covers the wait for response headers; a response body that
//! has started streaming is not cut off (a 100 MB download must not fail
//! because it takes longer than a typical API call).

mod layer;
mod service;

pub use layer::TimeoutLayer;
pub use service::{cutting_off, wake_at_or, Carrier, Timeout, TimeoutFuture};
