//! The adaptive limit: Gradient2 (Netflix concurrency-limits) with an AIMD
//! backoff on drops.
//!
//! Why gradient and not only AIMD: AIMD reacts only to failures, by which
//! time the upstream is already overloaded. The gradient compares the
//! latency now (short-term) with the latency the upstream usually has
//! (long-term average): when requests start queueing upstream, latency
//! rises before anything fails, the gradient falls below 1 and so does the
//! limit. With steady latency and the limit in use, the limit grows by
//! about sqrt(limit) per sample (smoothed) up to `max`. Drops (timeouts,
//! 5xx, resets) cut it by 10% at once.
//!
//! Pure: samples in, limit out; no clock, no I/O.

use std::time::Duration;

/// The algorithm's state.
#[derive(Debug, Clone)]
pub struct AdaptiveLimit {
    min: f64,
    max: f64,
    limit: f64,
    long_rtt: Option<f64>,
}

/// How much slower than usual the upstream may get before the limit falls.
const TOLERANCE: f64 = 1.5;
/// Weight of a new estimate against the current limit.
const SMOOTHING: f64 = 0.2;
/// Long-term average over about this many samples.
const LONG_WINDOW: f64 = 600.0;
/// Cut on a drop.
const BACKOFF: f64 = 0.9;

impl AdaptiveLimit {
    /// Starts at `initial`, kept within `[min, max]`.
    pub fn new(initial: usize, min: usize, max: usize) -> Self {
        let (min, max) = (min.max(1) as f64, max.max(min.max(1)) as f64);
        AdaptiveLimit { min, max, limit: (initial as f64).clamp(min, max), long_rtt: None }
    }

    /// The limit now.
    pub fn limit(&self) -> usize {
        self.limit as usize
    }

    /// Learns from one finished request: its latency, how many were in
    /// flight when it finished, and whether it was dropped.
    pub fn sample(&mut self, rtt: Duration, in_flight: usize, dropped: bool) -> usize {
        if dropped {
            self.limit = (self.limit * BACKOFF).max(self.min);
            return self.limit();
        }
        let short = rtt.as_secs_f64().max(1e-6);
        let long = match self.long_rtt {
            None => short,
            Some(l) => l + (short - l) / LONG_WINDOW,
        };
        // Recover quickly once latency drops well below the old average.
        let long = if long / short > 2.0 { long * 0.95 } else { long };
        self.long_rtt = Some(long);
        // App-limited: too few requests to say anything about capacity.
        if (in_flight as f64) < self.limit / 2.0 {
            return self.limit();
        }
        let gradient = (TOLERANCE * long / short).clamp(0.5, 1.0);
        let estimate = self.limit * gradient + self.limit.sqrt();
        self.limit = (self.limit * (1.0 - SMOOTHING) + estimate * SMOOTHING).clamp(self.min, self.max);
        self.limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Steady latency with the limit in use: the limit grows to max.
    #[test]
    fn grows_to_max_while_latency_is_steady() {
        let mut a = AdaptiveLimit::new(10, 5, 100);
        for _ in 0..500 {
            let l = a.limit();
            a.sample(MS * 10, l, false);
        }
        assert_eq!(a.limit(), 100);
    }

    /// Latency rising well past its usual level brings the limit down, but
    /// never below min.
    #[test]
    fn latency_rise_lowers_the_limit() {
        let mut a = AdaptiveLimit::new(50, 5, 100);
        for _ in 0..200 {
            a.sample(MS * 10, 50, false);
        }
        let before = a.limit();
        for _ in 0..50 {
            let l = a.limit();
            a.sample(MS * 100, l, false);
        }
        assert!(a.limit() < before / 2, "{before} -> {}", a.limit());
        // Many drops: down to min and no further.
        for _ in 0..100 {
            a.sample(MS * 1000, 100, true);
        }
        assert_eq!(a.limit(), 5);
    }

    /// Drops cut the limit by 10% each; an idle upstream (few in flight)
    /// does not grow it.
    #[test]
    fn drops_cut_and_idle_holds() {
        let mut a = AdaptiveLimit::new(100, 5, 200);
        a.sample(MS, 100, true);
        assert_eq!(a.limit(), 90);
        for _ in 0..100 {
            a.sample(MS, 1, false);
        }
        assert_eq!(a.limit(), 90);
    }
}
