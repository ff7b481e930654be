//! Weighted random choice in O(1).
//!
//! The round-robin [`Schedule`] already lists each endpoint as often as
//! its weight, so a uniformly random position in it is a weighted random
//! endpoint: no alias table or cumulative search needed.

use super::round_robin::Schedule;
use super::{scan, Candidates, TRIES};

/// A random usable endpoint, weighted; `None` when none is usable.
pub fn pick(schedule: &Schedule, c: &impl Candidates) -> Option<usize> {
    pick_other(schedule, c, usize::MAX)
}

/// Like [`pick`], but never `not` (for the second of two choices).
pub fn pick_other(schedule: &Schedule, c: &impl Candidates, not: usize) -> Option<usize> {
    if schedule.is_empty() {
        return None;
    }
    for _ in 0..TRIES {
        let i = schedule.at(fastrand::usize(..schedule.len()));
        if i != not && c.usable(i) {
            return Some(i);
        }
    }
    let n = c.len();
    scan(n, fastrand::usize(..n), &Except { c, not })
}

struct Except<'a, C> {
    c: &'a C,
    not: usize,
}

impl<C: Candidates> Candidates for Except<'_, C> {
    fn len(&self) -> usize {
        self.c.len()
    }
    fn usable(&self, i: usize) -> bool {
        i != self.not && self.c.usable(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::policy::tests::Usable;

    /// Weights 3:1 give about a 3:1 split.
    #[test]
    fn follows_weights() {
        let s = Schedule::new(&[3, 1]);
        let c = Usable::all(2);
        let heavy = (0..8000).filter(|_| pick(&s, &c) == Some(0)).count();
        assert!((5600..6400).contains(&heavy), "heavy got {heavy} of 8000");
    }

    /// Unusable endpoints are never chosen, even when most are unusable.
    #[test]
    fn never_picks_unusable() {
        let s = Schedule::Uniform(100);
        let c = Usable::only(100, &[42]);
        for _ in 0..200 {
            assert_eq!(pick(&s, &c), Some(42));
        }
        assert_eq!(pick_other(&s, &c, 42), None);
        assert_eq!(pick(&s, &Usable::only(100, &[])), None);
    }
}
