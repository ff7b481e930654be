//! Circuit breaking: closed, open, half-open.
//!
//! Why: when an upstream is failing, sending it more requests only adds
//! load where there is no capacity, and makes every caller wait for the
//! failure. A breaker notices (failures in a row, a failure rate, or a
//! slow-call rate over a sliding window), stops sending for a while and
//! answers at once with 503 `circuit-open`, then lets a few probes through
//! to see whether the upstream has recovered. Each repeated trip doubles the
//! open period (capped, with jitter) so a fleet of sidecars does not probe a
//! sick service in lockstep.
//!
//! `state` is the pure machine (time passed in, no I/O), tested exhaustively;
//! `service` shares one machine between every stack of a scope (a route's
//! own breaker, or a cluster's shared one) behind a short lock never held
//! across an await. It sits inside the retry layer, so every try is seen,
//! and an open breaker makes a retry fail fast.

mod layer;
mod service;
mod settings;
pub mod state;
#[cfg(test)]
mod state_tests;
mod window;

pub use layer::CircuitBreakerLayer;
pub use service::{CircuitBreaker, CircuitBreakerService, ResponseFuture};
pub use settings::{CircuitBreakerSettings, RateRule, SlowCallRule};
pub use state::State;
