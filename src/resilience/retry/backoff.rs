//! Exponential backoff with full jitter.
//!
//! Retry `n` (1 for the first retry) waits a uniformly random time in
//! `[0, min(max, base * 2^(n-1))]`. The ceiling grows so a struggling
//! upstream gets room; the full jitter spreads the retries of many clients
//! that failed at the same moment, so they do not return as one wave
//! (AWS Architecture Blog, "Exponential Backoff And Jitter").

use std::time::Duration;

/// Backoff settings for one route; the per-retry delay is computed from
/// them, no state per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
}

impl Backoff {
    /// Ceilings start at `base` and double up to `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff { base, max: max.max(base) }
    }

    /// The largest wait before retry `retry` (1-based):
    /// `min(max, base * 2^(retry-1))`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(31);
        self.base.saturating_mul(1 << doublings).min(self.max)
    }

    /// The wait before retry `retry`: uniform in `[0, ceiling(retry)]`.
    pub fn delay(&self, retry: u32, rng: &mut fastrand::Rng) -> Duration {
        let ceiling = u64::try_from(self.ceiling(retry).as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.u64(0..=ceiling))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Ceilings double from base and stop at max, even for absurd retry
    /// numbers.
    #[test]
    fn ceilings_double_up_to_max() {
        let b = Backoff::new(25 * MS, 250 * MS);
        let got: Vec<_> = (1..=6).map(|n| b.ceiling(n)).collect();
        assert_eq!(got, [25 * MS, 50 * MS, 100 * MS, 200 * MS, 250 * MS, 250 * MS]);
        assert_eq!(b.ceiling(u32::MAX), 250 * MS);
        assert_eq!(b.ceiling(0), 25 * MS);
    }

    /// Over many seeds every delay lies in `[0, ceiling]`, and the delays
    /// really are spread over that range (full jitter, not a fixed wait).
    #[test]
    fn delays_are_within_bounds_and_spread() {
        let b = Backoff::new(10 * MS, 1000 * MS);
        for seed in 0..200u64 {
            let mut rng = fastrand::Rng::with_seed(seed);
            for n in 1..=10 {
                let d = b.delay(n, &mut rng);
                assert!(d <= b.ceiling(n), "seed {seed} retry {n}: {d:?} > {:?}", b.ceiling(n));
            }
        }
        let mut rng = fastrand::Rng::with_seed(7);
        let samples: Vec<Duration> = (0..1000).map(|_| b.delay(4, &mut rng)).collect();
        let ceiling = b.ceiling(4);
        assert!(samples.iter().any(|d| *d < ceiling / 10), "some waits near zero");
        assert!(samples.iter().any(|d| *d > ceiling * 9 / 10), "some waits near the ceiling");
        let mean = samples.iter().sum::<Duration>() / 1000;
        assert!(mean > ceiling * 2 / 5 && mean < ceiling * 3 / 5, "mean {mean:?} near half of {ceiling:?}");
    }

    /// A zero base means retrying at once.
    #[test]
    fn zero_base_never_waits() {
        let b = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(b.delay(3, &mut fastrand::Rng::with_seed(1)), Duration::ZERO);
    }
}
