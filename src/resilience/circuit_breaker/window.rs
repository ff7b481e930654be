//! A sliding time window of counts, in buckets: O(1) per record, no
//! allocation after construction.

use std::time::Duration;

const BUCKETS: usize = 10;

/// Calls and "hits" (failures, or slow calls) over the last `window`.
#[derive(Debug, Clone)]
pub struct Window {
    width: Duration,
    /// Per bucket: (bucket index since the epoch, calls, hits).
    buckets: [(u64, u32, u32); BUCKETS],
}

impl Window {
    /// A window of `length`, in ten buckets.
    pub fn new(length: Duration) -> Self {
        let width = (length / BUCKETS as u32).max(Duration::from_millis(1));
        Window { width, buckets: [(u64::MAX, 0, 0); BUCKETS] }
    }

    fn index(&self, since_epoch: Duration) -> u64 {
        (since_epoch.as_nanos() / self.width.as_nanos()) as u64
    }

    /// Counts one call at `at` (time since the breaker's epoch).
    pub fn record(&mut self, at: Duration, hit: bool) {
        let i = self.index(at);
        let b = &mut self.buckets[(i % BUCKETS as u64) as usize];
        if b.0 != i {
            *b = (i, 0, 0);
        }
        b.1 += 1;
        b.2 += u32::from(hit);
    }

    /// (calls, hits) in the window ending at `at`.
    pub fn totals(&self, at: Duration) -> (u32, u32) {
        let now = self.index(at);
        self.buckets
            .iter()
            .filter(|(i, _, _)| *i != u64::MAX && *i + BUCKETS as u64 > now && *i <= now)
            .fold((0, 0), |(c, h), (_, bc, bh)| (c + bc, h + bh))
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.buckets = [(u64::MAX, 0, 0); BUCKETS];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts inside the window add up; counts older than the window drop
    /// out bucket by bucket.
    #[test]
    fn slides() {
        let mut w = Window::new(Duration::from_secs(10));
        for s in 0..10 {
            w.record(Duration::from_secs(s), s % 2 == 0);
        }
        assert_eq!(w.totals(Duration::from_secs(9)), (10, 5));
        assert_eq!(w.totals(Duration::from_millis(10_500)), (9, 4));
        assert_eq!(w.totals(Duration::from_millis(18_500)), (1, 0));
        assert_eq!(w.totals(Duration::from_secs(30)), (0, 0));
        w.record(Duration::from_secs(30), true);
        assert_eq!(w.totals(Duration::from_secs(30)), (1, 1));
    }
}
