//! The retry budget: a token bucket over a sliding window.
//!
//! Each original request deposits `ratio` tokens; each retry withdraws one.
//! Deposits and withdrawals count for `window`, then expire, so the budget
//! follows recent traffic. A reserve of `min_per_second * window` tokens
//! lets a route with little traffic still retry now and then (the reserve
//! is never spent for good: a withdrawal against it expires like any other).
//! This is Finagle's `RetryBudget`, as in linkerd and tower's `TpsBudget`.
//!
//! Why not tower's `TpsBudget` itself: it turns the ratio into whole tokens
//! per retry (`1 / ratio` truncated), so a ratio of 0.4 allows 50% and 0.3
//! allows 33%; and it panics on a window outside 1..=60 s. Here tokens are
//! counted in thousandths, so any ratio is honoured to 0.1%, and any
//! positive window works.
//!
//! The window is a ring of [`SLOTS`] buckets; one short mutex guards it
//! (ten integers to add up, never held across an await). Every request
//! deposits, so a deposit made while the head bucket is current takes no
//! lock: it is added to `pending`, which the ring takes into the head
//! bucket the next time it is locked (by a retry, a read, or the first
//! deposit after the head bucket's time).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::settings::BudgetSettings;

/// Buckets in the window: a deposit expires between `window * 9/10` and
/// `window` after it was made.
pub const SLOTS: usize = 10;

/// One token, in the thousandths the ring counts in.
const TOKEN: i64 = 1000;

/// A route's retry budget, shared by every request on it (and kept across
/// reloads while its settings are unchanged).
#[derive(Debug)]
pub struct Budget {
    ring: Mutex<Ring>,
    /// Deposits made in the head bucket's time, not yet in its count.
    /// (One that races the ring moving on is counted in the next bucket:
    /// it expires up to one bucket late.)
    pending: AtomicI64,
    /// When the head bucket's time ends, in nanoseconds after `origin`:
    /// deposits before it go to `pending`.
    head_ends: AtomicU64,
    origin: Instant,
    /// Thousandths of a token each request deposits (`ratio * 1000`).
    deposit: i64,
    /// Thousandths of a token always available (`min_per_second * window`).
    reserve: i64,
    /// The time one bucket covers.
    slot: Duration,
}

#[derive(Debug)]
struct Ring {
    /// Net deposits (positive) and withdrawals (negative) per bucket.
    slots: [i64; SLOTS],
    /// The bucket now being written.
    head: usize,
    /// When the head bucket began.
    head_start: Instant,
}

impl Budget {
    /// A fresh budget: only the reserve in it.
    pub fn new(settings: &BudgetSettings) -> Self {
        let window = settings.window.max(Duration::from_millis(SLOTS as u64));
        let origin = Instant::now();
        Budget {
            ring: Mutex::new(Ring { slots: [0; SLOTS], head: 0, head_start: origin }),
            pending: AtomicI64::new(0),
            // The ring's first lock sets it.
            head_ends: AtomicU64::new(0),
            origin,
            deposit: (settings.ratio * TOKEN as f64).round() as i64,
            reserve: (f64::from(settings.min_per_second) * window.as_secs_f64() * TOKEN as f64).round() as i64,
            slot: window / SLOTS as u32,
        }
    }

    /// Counts one original request.
    pub fn deposit(&self) {
        if self.deposit == 0 {
            return;
        }
        if self.nanos(crate::clock::now()) < self.head_ends.load(Ordering::Acquire) {
            self.pending.fetch_add(self.deposit, Ordering::Relaxed);
            return;
        }
        let mut ring = self.ring();
        let head = ring.head;
        ring.slots[head] += self.deposit;
    }

    /// Takes one token for a retry; `false` when there is none.
    pub fn withdraw(&self) -> bool {
        let mut ring = self.ring();
        if self.reserve + ring.slots.iter().sum::<i64>() < TOKEN {
            return false;
        }
        let head = ring.head;
        ring.slots[head] -= TOKEN;
        true
    }

    /// Tokens available now (may be fractional).
    pub fn balance(&self) -> f64 {
        let ring = self.ring();
        (self.reserve + ring.slots.iter().sum::<i64>()) as f64 / TOKEN as f64
    }

    /// The ring, with the pending deposits in its head bucket and buckets
    /// older than the window cleared.
    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let head = ring.head;
        ring.slots[head] += self.pending.swap(0, Ordering::Relaxed);
        ring.advance(crate::clock::now(), self.slot);
        self.head_ends.store(self.nanos(ring.head_start + self.slot), Ordering::Release);
        ring
    }

    /// `at` in nanoseconds after `origin` (saturating: ~584 years).
    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }
}

impl Ring {
    /// Moves the head forward to the bucket covering `now`, clearing each
    /// bucket it enters (those deposits are a window old).
    fn advance(&mut self, now: Instant, slot: Duration) {
        let elapsed = now.saturating_duration_since(self.head_start);
        if elapsed < slot {
            return;
        }
        let steps = elapsed.as_nanos() / slot.as_nanos().max(1);
        if steps >= SLOTS as u128 {
            self.slots = [0; SLOTS];
            self.head_start = now;
            return;
        }
        for _ in 0..steps {
            self.head = (self.head + 1) % SLOTS;
            self.slots[self.head] = 0;
        }
        self.head_start += slot * steps as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::advance;

    fn budget(ratio: f64, min_per_second: u32, window_secs: u64) -> Budget {
        Budget::new(&BudgetSettings { ratio, min_per_second, window: Duration::from_secs(window_secs) })
    }

    fn withdraw_all(b: &Budget) -> u32 {
        let mut n = 0;
        while b.withdraw() {
            n += 1;
        }
        n
    }

    /// With no reserve, retries are exactly `ratio` of requests, for ratios
    /// tower's integer withdrawal would round (0.3, 0.4).
    #[tokio::test(start_paused = true)]
    async fn retries_are_the_ratio_of_requests() {
        for (ratio, requests, retries) in [(0.2, 1000, 200), (0.4, 1000, 400), (0.3, 100, 30), (1.5, 10, 15)] {
            let b = budget(ratio, 0, 10);
            for _ in 0..requests {
                b.deposit();
            }
            assert_eq!(withdraw_all(&b), retries, "ratio {ratio}");
        }
    }

    /// An empty budget refuses; the reserve allows `min_per_second * window`
    /// retries, and refills as those withdrawals expire.
    #[tokio::test(start_paused = true)]
    async fn reserve_allows_min_per_second_over_the_window() {
        assert!(!budget(0.2, 0, 10).withdraw());
        let b = budget(0.0, 3, 2);
        assert_eq!(withdraw_all(&b), 6);
        advance(Duration::from_millis(1900)).await;
        assert!(!b.withdraw(), "withdrawals still inside the window");
        advance(Duration::from_millis(200)).await;
        assert_eq!(withdraw_all(&b), 6);
    }

    /// Deposits expire after the window: a burst long ago buys no retries
    /// now, and deposits still inside the window do.
    #[tokio::test(start_paused = true)]
    async fn deposits_expire_after_the_window() {
        let b = budget(0.5, 0, 10);
        for _ in 0..10 {
            b.deposit();
        }
        advance(Duration::from_secs(11)).await;
        assert_eq!(b.balance(), 0.0);
        assert!(!b.withdraw());

        for _ in 0..4 {
            b.deposit();
        }
        advance(Duration::from_secs(5)).await;
        for _ in 0..4 {
            b.deposit();
        }
        advance(Duration::from_secs(6)).await;
        // The first four are older than the window, the last four are not.
        assert_eq!(b.balance(), 2.0);
        assert_eq!(withdraw_all(&b), 2);
    }

    /// A long idle gap clears every bucket at once, not one per call.
    #[tokio::test(start_paused = true)]
    async fn long_idle_clears_everything() {
        let b = budget(1.0, 0, 1);
        b.deposit();
        advance(Duration::from_secs(3600)).await;
        assert!(!b.withdraw());
        b.deposit();
        assert!(b.withdraw());
    }
}
