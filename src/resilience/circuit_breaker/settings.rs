//! What a breaker is built from: validated, plain data, no I/O.

use std::time::Duration;

/// A validated `circuit_breaker:` block.
#[derive(Debug, Clone, PartialEq)]
pub struct CircuitBreakerSettings {
    /// Open after this many failures in a row.
    pub consecutive_failures: Option<u32>,
    /// Open when the failure rate over a window passes a threshold.
    pub failure_rate: Option<RateRule>,
    /// Open when the rate of calls slower than `slow_call_duration` passes
    /// a threshold.
    pub slow_call: Option<SlowCallRule>,
    /// First open period.
    pub open_duration: Duration,
    /// Longest open period after repeated trips.
    pub max_open_duration: Duration,
    /// Probes admitted while half-open.
    pub half_open_max_requests: u32,
}

/// A rate over a sliding window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateRule {
    /// Fraction in (0, 1] that trips.
    pub threshold: f64,
    /// Window length.
    pub window: Duration,
    /// Calls in the window before the rule may trip.
    pub min_requests: u32,
}

/// A slow-call rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlowCallRule {
    /// A call slower than this is slow.
    pub duration: Duration,
    /// The rate of slow calls that trips.
    pub rate: RateRule,
}
