//! Retries with exponential backoff, full jitter and a budget.
//!
//! A try that fails in a way the route names (`on:`) is sent again, up to
//! `attempts` tries in all, after a backoff (or the upstream's
//! `Retry-After`), never past the route timeout. Only the route's
//! `methods` are retried, and only bodies small enough to keep
//! ([`replay`]). The breaker sits inside this layer, so every try is seen
//! by it, and a breaker refusal is never retried.
//!
//! # Why budgets and not only max attempts?
//!
//! `attempts: 3` alone means that when an upstream is failing, every
//! request becomes three: the load on the struggling service triples at
//! the moment it can least take it, and with retries at several hops of a
//! call chain the factors multiply (3 x 3 x 3 = 27 tries at the bottom).
//! That retry storm turns a partial outage into a total one.
//!
//! A budget caps retries as a fraction of recent traffic instead: with
//! `ratio: 0.2`, retries add at most 20% to what the upstream sees, however
//! many requests fail. When failures are rare (the case retries are for)
//! the budget is never the limit and each request still gets its
//! `attempts`; when everything fails it is, and the extra load stays
//! bounded. `min_per_second` keeps a quiet route able to retry at all.
//! When the budget forbids a retry the client gets the upstream's own
//! response marked `x-outrigger-error: retry-budget-exhausted` (or a 503
//! with that token when there was no response), and
//! `outrigger_retry_budget_exhausted_total` counts it. See Finagle's
//! `RetryBudget`, linkerd's retry budgets and tower's `retry::budget`.
//!
//! # Layout
//!
//! - `settings`: the validated `retry:` block ([`RetrySettings`]).
//! - [`policy`]: what is retryable and how long to wait (pure).
//! - [`backoff`]: exponential backoff with full jitter.
//! - [`budget`]: the per-route token bucket over a sliding window.
//! - [`replay`]: keeping a request body to send it again.
//! - `layer`, `service`, `future`: the tower layer, its service, its future.

pub mod backoff;
pub mod budget;
mod future;
mod head;
mod layer;
pub mod policy;
pub mod replay;
mod service;
mod settings;

pub use budget::Budget;
pub use future::ResponseFuture;
pub use layer::RetryLayer;
pub use service::Retry;
pub use settings::{BudgetSettings, RetryOn, RetrySettings};

/// Settings for unit tests: 3 tries on gateway errors and connect
/// failures, idempotent methods, 10 ms base backoff, default budget.
#[cfg(test)]
pub(crate) fn test_settings() -> RetrySettings {
    use std::time::Duration;
    RetrySettings {
        attempts: 3,
        on: RetryOn { connect_failure: true, gateway_error: true, ..Default::default() },
        per_try_timeout: None,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(100),
        budget: Some(BudgetSettings::default()),
        methods: vec![http::Method::GET, http::Method::HEAD, http::Method::PUT, http::Method::DELETE],
        max_body_bytes: 64 * 1024,
        route_timeout: Some(Duration::from_secs(10)),
    }
}

#[cfg(test)]
mod tests;
