//! Circuit breaking: closed, open, half-open.

mod settings;

pub use settings::{CircuitBreakerSettings, RateRule, SlowCallRule};
