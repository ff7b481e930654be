//! What a retry layer is built from: validated, plain data, no I/O.

use std::time::Duration;

use http::Method;

/// A validated `retry:` block.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySettings {
    /// Tries in all, the first included (>= 1).
    pub attempts: u32,
    /// What makes a try worth retrying.
    pub on: RetryOn,
    /// Time limit for each try.
    pub per_try_timeout: Option<Duration>,
    /// Backoff ceiling for the first retry (full jitter below it).
    pub backoff_base: Duration,
    /// Largest backoff ceiling.
    pub backoff_max: Duration,
    /// The budget; `None` only when explicitly disabled.
    pub budget: Option<BudgetSettings>,
    /// Methods that may be retried.
    pub methods: Vec<Method>,
    /// Largest request body buffered for replay.
    pub max_body_bytes: usize,
    /// The route timeout: no retry starts (or waits) past it.
    pub route_timeout: Option<Duration>,
}

/// Retry conditions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryOn {
    /// The try could not connect.
    pub connect_failure: bool,
    /// The connection was reset or closed before a response.
    pub reset: bool,
    /// The per-try timeout passed.
    pub timeout: bool,
    /// Any 5xx response.
    pub any_5xx: bool,
    /// 502, 503 or 504 (and connect failures).
    pub gateway_error: bool,
    /// These status codes.
    pub codes: Vec<u16>,
}

impl RetryOn {
    /// Whether a response with `status` is retried.
    pub fn status(&self, status: u16) -> bool {
        (self.any_5xx && (500..600).contains(&status))
            || (self.gateway_error && matches!(status, 502..=504))
            || self.codes.contains(&status)
    }
}

/// Retry budget: retries may add at most `ratio` of recent requests, plus
/// `min_per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetSettings {
    /// Fraction of requests that may be retried.
    pub ratio: f64,
    /// Retries allowed per second regardless of traffic.
    pub min_per_second: u32,
    /// How long a request counts toward the budget.
    pub window: Duration,
}

impl Default for BudgetSettings {
    fn default() -> Self {
        BudgetSettings { ratio: 0.2, min_per_second: 10, window: Duration::from_secs(10) }
    }
}
