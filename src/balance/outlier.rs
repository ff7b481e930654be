//! Passive outlier detection: an endpoint that fails `consecutive_failures`
//! times in a row is ejected (gets no traffic) for a while.
//!
//! Why eject and not just let the breaker open: a breaker guards a whole
//! cluster, while one bad replica among healthy ones should only lose its
//! own share. The ejection time grows with each ejection
//! (`base_ejection` x times ejected, capped at `max_ejection`) so a flapping
//! endpoint stays out longer, and the multiplier decays back by one for
//! every `base_ejection` spent healthy. Never more than
//! `max_ejected_percent` of the cluster is ejected, except that one
//! endpoint always may be (Envoy's fix for small clusters, where any one
//! endpoint is over the limit).
//!
//! Everything is lazy and lock-free on the request path: a pick compares
//! `ejected_until` with now; the ejection decision itself (rare) takes the
//! balancer's lock to count the ejected. [`expire`] wakes when an ejection
//! ends to bring the gauges and panic mode up to date.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use super::clock::nanos;
use super::settings::OutlierSettings;
use super::Balancer;
use crate::error::Outcome;

/// One endpoint's outlier bookkeeping.
#[derive(Debug, Default)]
pub struct OutlierState {
    /// Failures in a row.
    consecutive: AtomicU32,
    /// The ejection-time multiplier of the last ejection (before decay).
    multiplier: AtomicU32,
    /// Ejections so far.
    times_ejected: AtomicU32,
    /// When the last ejection ends (clock nanoseconds); 0 = never ejected.
    ejected_until: AtomicU64,
}

impl OutlierState {
    /// Whether an ejection is running at `now`.
    pub fn is_ejected(&self, now: u64) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now
    }

    /// When the last ejection ends or ended, if there was one.
    pub fn ejected_until(&self) -> Option<u64> {
        Some(self.ejected_until.load(Ordering::Relaxed)).filter(|u| *u > 0)
    }

    /// Ejections so far.
    pub fn times_ejected(&self) -> u32 {
        self.times_ejected.load(Ordering::Relaxed)
    }

    /// Counts one outcome; true each time the failures in a row reach a
    /// multiple of `threshold` (the caller then tries to eject; when the
    /// cluster is at its ejection limit the next try waits for as many
    /// failures again, so a failing endpoint does not contend per request).
    pub fn count(&self, outcome: Outcome, threshold: u32) -> bool {
        match outcome {
            Outcome::Success => {
                self.consecutive.store(0, Ordering::Relaxed);
                false
            }
            Outcome::Failure => (self.consecutive.fetch_add(1, Ordering::Relaxed) + 1) % threshold.max(1) == 0,
            Outcome::Ignored => false,
        }
    }

    /// Ejects from `now` and returns for how long. The caller holds the
    /// balancer's ejection lock and has checked [`may_eject`].
    pub fn eject(&self, now: u64, s: &OutlierSettings) -> Duration {
        let last_end = self.ejected_until.load(Ordering::Relaxed);
        let healthy_for = Duration::from_nanos(now.saturating_sub(last_end));
        let (multiplier, time) = ejection_time(s, self.multiplier.load(Ordering::Relaxed), healthy_for);
        self.multiplier.store(multiplier, Ordering::Relaxed);
        self.times_ejected.fetch_add(1, Ordering::Relaxed);
        self.consecutive.store(0, Ordering::Relaxed);
        self.ejected_until.store(now.saturating_add(nanos(time)), Ordering::Relaxed);
        time
    }
}

/// The next ejection's multiplier and length, given the last multiplier
/// and how long the endpoint has been back since: one step of decay per
/// `base_ejection` healthy, then one up for this ejection.
pub fn ejection_time(s: &OutlierSettings, last_multiplier: u32, healthy_for: Duration) -> (u32, Duration) {
    let steps = (healthy_for.as_nanos() / s.base_ejection.as_nanos().max(1)).min(u128::from(u32::MAX)) as u32;
    let multiplier = last_multiplier.saturating_sub(steps).saturating_add(1);
    (multiplier, s.base_ejection.saturating_mul(multiplier).min(s.max_ejection))
}

/// Whether one more endpoint may be ejected when `ejected` of `total` are.
/// `max_percent` 0 turns ejection off; otherwise the first one always may.
pub fn may_eject(ejected: usize, total: usize, max_percent: u32) -> bool {
    max_percent > 0 && (ejected == 0 || (ejected + 1) * 100 <= total * max_percent as usize)
}

/// Runs while the balancer lives: sleeps until the next ejection ends (or
/// a new one starts), then refreshes the balancer's gauges and panic mode.
pub async fn expire(balancer: Weak<Balancer>, changed: Arc<Notify>) {
    loop {
        let next = match balancer.upgrade() {
            Some(b) => b.next_ejection_end(),
            None => return,
        };
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = changed.notified() => {}
                }
            }
            None => changed.notified().await,
        }
        match balancer.upgrade() {
            Some(b) => b.refresh(),
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> OutlierSettings {
        OutlierSettings {
            consecutive_failures: 3,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(25),
            max_ejected_percent: 50,
        }
    }

    /// Only failures in a row count: a success starts over, a local
    /// refusal changes nothing.
    #[test]
    fn counts_failures_in_a_row() {
        let o = OutlierState::default();
        assert!(!o.count(Outcome::Failure, 3));
        assert!(!o.count(Outcome::Failure, 3));
        assert!(!o.count(Outcome::Success, 3));
        assert!(!o.count(Outcome::Failure, 3));
        assert!(!o.count(Outcome::Ignored, 3));
        assert!(!o.count(Outcome::Failure, 3));
        assert!(o.count(Outcome::Failure, 3));
        assert!(!o.count(Outcome::Failure, 3));
        assert!(!o.count(Outcome::Failure, 3));
        assert!(o.count(Outcome::Failure, 3), "refused ejections are tried again every threshold failures");
    }

    /// Each ejection in a row lasts longer, up to the cap; time spent
    /// healthy brings the multiplier back down.
    #[test]
    fn ejection_time_grows_caps_and_decays() {
        let s = settings();
        assert_eq!(ejection_time(&s, 0, Duration::ZERO), (1, Duration::from_secs(10)));
        assert_eq!(ejection_time(&s, 1, Duration::from_secs(3)), (2, Duration::from_secs(20)));
        assert_eq!(ejection_time(&s, 2, Duration::from_secs(1)), (3, Duration::from_secs(25)));
        assert_eq!(ejection_time(&s, 3, Duration::from_secs(25)), (2, Duration::from_secs(20)));
        assert_eq!(ejection_time(&s, 3, Duration::from_secs(600)), (1, Duration::from_secs(10)));
    }

    /// At most the percentage, but one always may go; 0% never ejects.
    #[test]
    fn max_ejected_percent_with_one_always_allowed() {
        assert!(may_eject(0, 3, 50));
        assert!(!may_eject(1, 3, 50));
        assert!(may_eject(1, 4, 50));
        assert!(!may_eject(2, 4, 50));
        assert!(may_eject(0, 1, 10), "a lone endpoint may still be ejected");
        assert!(!may_eject(0, 5, 0));
    }
}
