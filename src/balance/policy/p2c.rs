//! Power of two choices: draw two endpoints at random, send to the less
//! loaded. Nearly as good as scanning for the least loaded, in O(1), and
//! it avoids the herd that "always the least loaded" makes when many
//! proxies share stale load figures.
//!
//! The load is the caller's: in-flight requests (`least_request`) or
//! peak-EWMA latency x (in-flight + 1) (`peak_ewma`). Weights shape the
//! draws, not the loads: on a tie the first (weighted) draw wins, so idle
//! endpoints share sequential traffic by weight.

use super::random;
use super::round_robin::Schedule;
use super::Candidates;

/// The less loaded of two random usable endpoints (weighted draws).
pub fn pick(schedule: &Schedule, c: &impl Candidates, load: impl Fn(usize) -> f64) -> Option<usize> {
    if c.len() == 1 {
        // No second choice to draw (nor load to compare).
        return c.usable(0).then_some(0);
    }
    let a = random::pick(schedule, c)?;
    let Some(b) = random::pick_other(schedule, c, a) else { return Some(a) };
    if load(b) < load(a) {
        Some(b)
    } else {
        Some(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::policy::tests::Usable;

    /// With two endpoints both are always drawn, so the less loaded wins
    /// every time.
    #[test]
    fn prefers_the_less_loaded() {
        let s = Schedule::Uniform(2);
        let c = Usable::all(2);
        for _ in 0..100 {
            assert_eq!(pick(&s, &c, |i| if i == 0 { 5.0 } else { 1.0 }), Some(1));
        }
    }

    /// The most loaded of many endpoints is never chosen (it loses every
    /// comparison), and a lone usable endpoint is chosen alone.
    #[test]
    fn never_picks_the_worst_when_others_exist() {
        let s = Schedule::Uniform(10);
        let c = Usable::all(10);
        for _ in 0..500 {
            assert_ne!(pick(&s, &c, |i| if i == 7 { 100.0 } else { i as f64 }), Some(7));
        }
        assert_eq!(pick(&s, &Usable::only(10, &[3]), |_| 0.0), Some(3));
    }
}
