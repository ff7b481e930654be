//! Retries with exponential backoff, full jitter and a budget.

mod settings;

pub use settings::{BudgetSettings, RetryOn, RetrySettings};
