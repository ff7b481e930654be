//! The patterns that keep one failing dependency from taking a system
//! down, each a tower layer in its own folder, composed per route in the
//! order of `proxy::route`: timeout, bulkhead, retry, circuit breaker,
//! per-try timeout.

pub mod bulkhead;
pub mod circuit_breaker;
pub mod retry;
pub mod timeout;
