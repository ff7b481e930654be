//! Peak-EWMA latency, as tower's and Linkerd's `PeakEwma`.
//!
//! Why peak and not a plain average: a latency spike should push traffic
//! away at once (the estimate jumps to any sample above it), while a
//! recovery should win traffic back gradually (samples below it pull it
//! down exponentially, with time constant [`DECAY`]). An idle endpoint's
//! estimate decays toward zero, so a slow endpoint is tried again after a
//! while instead of being starved forever.
//!
//! Lock-free: the estimate (an `f64`'s bits) and the time of the last
//! sample are two atomics; concurrent samples may interleave, which only
//! blurs an estimate that is approximate by nature.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::balance::clock::nanos;

/// The estimate of an endpoint nothing is known about yet.
pub const DEFAULT_RTT: Duration = Duration::from_millis(30);
/// How fast old samples are forgotten (time constant).
pub const DECAY: Duration = Duration::from_secs(10);

/// One endpoint's peak-EWMA round-trip estimate.
#[derive(Debug)]
pub struct PeakEwma {
    /// Estimate in nanoseconds, as `f64` bits, as of `stamp`.
    rtt: AtomicU64,
    /// When `rtt` was last written (clock nanoseconds).
    stamp: AtomicU64,
}

impl PeakEwma {
    /// An estimate of [`DEFAULT_RTT`] as of `now`.
    pub fn new(now: u64) -> Self {
        PeakEwma { rtt: AtomicU64::new((nanos(DEFAULT_RTT) as f64).to_bits()), stamp: AtomicU64::new(now) }
    }

    /// The estimate at `now`, in nanoseconds: the last one, decayed over
    /// the time since. Reads only.
    pub fn estimate(&self, now: u64) -> f64 {
        let rtt = f64::from_bits(self.rtt.load(Ordering::Relaxed));
        rtt * decay_factor(now.saturating_sub(self.stamp.load(Ordering::Relaxed)))
    }

    /// Folds in a sample taken at `now`.
    pub fn observe(&self, now: u64, sample: Duration) {
        let sample = nanos(sample) as f64;
        let last = self.stamp.fetch_max(now, Ordering::Relaxed);
        let keep = decay_factor(now.saturating_sub(last));
        let _ = self.rtt.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
            Some(next_estimate(f64::from_bits(bits), keep, sample).to_bits())
        });
    }
}

/// The share of the old estimate that survives `elapsed` nanoseconds.
fn decay_factor(elapsed: u64) -> f64 {
    (-(elapsed as f64) / nanos(DECAY) as f64).exp()
}

/// A peak jumps straight up; anything lower is averaged in with weight
/// `1 - keep`.
fn next_estimate(old: f64, keep: f64, sample: f64) -> f64 {
    let decayed = old * keep;
    if sample > decayed {
        sample
    } else {
        decayed + sample * (1.0 - keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::clock::Clock;

    const MS: f64 = 1_000_000.0;

    /// A new endpoint is assumed to answer in 30 ms.
    #[test]
    fn starts_at_the_default_rtt() {
        let e = PeakEwma::new(1);
        assert!((e.estimate(1) - 30.0 * MS).abs() < 1.0);
    }

    /// A slow sample is taken at once; an idle endpoint's estimate decays
    /// by e^-1 per 10 s; a fast sample is only averaged in.
    #[tokio::test(start_paused = true)]
    async fn peaks_jump_and_decay_over_time() {
        let clock = Clock::new();
        let e = PeakEwma::new(clock.now());
        e.observe(clock.now(), Duration::from_millis(200));
        assert!((e.estimate(clock.now()) - 200.0 * MS).abs() < 1.0, "a peak is adopted at once");

        tokio::time::advance(Duration::from_secs(10)).await;
        let idle = e.estimate(clock.now());
        assert!((idle - 200.0 * MS / std::f64::consts::E).abs() < 0.01 * MS, "idle decay: {idle}");

        tokio::time::advance(Duration::from_secs(1)).await;
        let before = e.estimate(clock.now());
        e.observe(clock.now(), Duration::from_millis(1));
        let after = e.estimate(clock.now());
        assert!((after - before).abs() < MS, "a fast sample is averaged in, not adopted: {before} -> {after}");
    }

    /// Many fast samples over a minute bring the estimate near them.
    #[tokio::test(start_paused = true)]
    async fn converges_on_steady_samples() {
        let clock = Clock::new();
        let e = PeakEwma::new(clock.now());
        for _ in 0..600 {
            tokio::time::advance(Duration::from_millis(100)).await;
            e.observe(clock.now(), Duration::from_millis(2));
        }
        let est = e.estimate(clock.now());
        assert!((est - 2.0 * MS).abs() < 0.1 * MS, "estimate {est}");
    }
}
