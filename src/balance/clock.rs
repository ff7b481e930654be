//! Time as nanoseconds since the balancer was made.
//!
//! Per-endpoint times (ejection ends, EWMA stamps) live in `AtomicU64`s so
//! the request path never locks; a `u64` of nanoseconds since a fixed
//! epoch is what fits in one. tokio's clock, so tests can pause it.

use std::time::Duration;

use tokio::time::Instant;

/// A balancer's clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    /// A clock whose zero is now.
    pub fn new() -> Self {
        Clock { epoch: Instant::now() }
    }

    /// Nanoseconds since the epoch (at least 1, so 0 can mean "never").
    pub fn now(&self) -> u64 {
        self.at(Instant::now())
    }

    /// Nanoseconds from the epoch to `t`, a time already read (one clock
    /// read per request is enough).
    pub fn at(&self, t: Instant) -> u64 {
        nanos(t.saturating_duration_since(self.epoch)).max(1)
    }

    /// The instant `ns` nanoseconds after the epoch.
    pub fn instant(&self, ns: u64) -> Instant {
        self.epoch + Duration::from_nanos(ns)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// A duration in nanoseconds, saturating at `u64::MAX` (584 years).
pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
