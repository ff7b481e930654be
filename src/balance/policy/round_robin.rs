//! Smooth weighted round robin, nginx style, precomputed.
//!
//! nginx's algorithm visits every peer on every pick (O(n)). The sequence
//! it produces depends only on the weights, so we run it once when the
//! endpoint set changes and store one cycle of it ([`Schedule`]); a pick
//! is then an atomic counter and an array read. With equal weights there
//! is no table at all: the counter modulo the set size.
//!
//! Building the cycle cheaply: peers of equal weight are always chosen
//! round robin among themselves, in order, so a step only compares one
//! candidate per distinct weight (O(cycle x distinct weights)). When even
//! that is too much work, the cycle is built in earliest-deadline-first
//! order (as Envoy does) with a heap, which interleaves just as smoothly.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{scan, Candidates, TRIES};

/// Longest cycle kept; larger weight sums are scaled down to fit.
const MAX_CYCLE: u64 = 1 << 17;
/// Most steps x weight classes spent on the exact nginx order.
const NGINX_BUDGET: u64 = 1 << 24;

/// One cycle of the weighted order, as endpoint indices.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// All weights equal: index = counter mod n.
    Uniform(usize),
    /// Each endpoint appears as often as its (reduced) weight.
    Table(Box<[u32]>),
}

impl Schedule {
    /// The schedule for endpoints of these weights (in set order).
    pub fn new(weights: &[u32]) -> Self {
        let n = weights.len();
        if n == 0 || weights.iter().all(|w| *w == weights[0]) {
            return Schedule::Uniform(n);
        }
        let weights = reduce(weights);
        let classes = distinct(&weights);
        let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
        let table = if total * classes as u64 <= NGINX_BUDGET { nginx(&weights) } else { edf(&weights) };
        Schedule::Table(table.into_boxed_slice())
    }

    /// Entries in one cycle (0 for an empty set).
    pub fn len(&self) -> usize {
        match self {
            Schedule::Uniform(n) => *n,
            Schedule::Table(t) => t.len(),
        }
    }

    /// Whether there is nothing to pick.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The endpoint at position `k` of the endless sequence.
    pub fn at(&self, k: usize) -> usize {
        match self {
            Schedule::Uniform(n) => k % n,
            Schedule::Table(t) => t[k % t.len()] as usize,
        }
    }

    /// The next usable endpoint in weighted order.
    pub fn next(&self, counter: &AtomicUsize, c: &impl Candidates) -> Option<usize> {
        if self.is_empty() {
            return None;
        }
        let mut i = 0;
        for _ in 0..TRIES {
            i = self.at(counter.fetch_add(1, Ordering::Relaxed));
            if c.usable(i) {
                return Some(i);
            }
        }
        scan(c.len(), i + 1, c)
    }
}

/// Divides by the common divisor, then scales down to fit [`MAX_CYCLE`]
/// (every endpoint keeps at least weight 1).
fn reduce(weights: &[u32]) -> Vec<u32> {
    let g = weights.iter().fold(0u32, |g, w| gcd(g, (*w).max(1)));
    let reduced: Vec<u32> = weights.iter().map(|w| (*w).max(1) / g).collect();
    let total: u64 = reduced.iter().map(|w| u64::from(*w)).sum();
    if total <= MAX_CYCLE {
        return reduced;
    }
    let scale = MAX_CYCLE as f64 / total as f64;
    reduced.iter().map(|w| ((f64::from(*w) * scale) as u32).max(1)).collect()
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn distinct(weights: &[u32]) -> usize {
    let mut w = weights.to_vec();
    w.sort_unstable();
    w.dedup();
    w.len()
}

/// nginx's order exactly. Each step adds every weight to its peer's
/// current value and picks the highest (first in set order on ties),
/// which then loses the total. Peers of one weight share a class whose
/// members take turns, so only one candidate per class is compared.
fn nginx(weights: &[u32]) -> Vec<u32> {
    struct Class {
        weight: i64,
        members: Vec<u32>,
        picks: i64,
    }
    let mut classes: Vec<Class> = Vec::new();
    for (i, w) in weights.iter().enumerate() {
        match classes.iter_mut().find(|c| c.weight == i64::from(*w)) {
            Some(c) => c.members.push(i as u32),
            None => classes.push(Class { weight: i64::from(*w), members: vec![i as u32], picks: 0 }),
        }
    }
    let total: i64 = weights.iter().map(|w| i64::from(*w)).sum();
    let mut out = Vec::with_capacity(total as usize);
    for step in 1..=total {
        // (current value, candidate index) of each class's next member.
        let best = classes
            .iter()
            .enumerate()
            .map(|(ci, c)| {
                let m = c.members.len() as i64;
                let value = step * c.weight - total * (c.picks / m);
                (value, Reverse(c.members[(c.picks % m) as usize]), ci)
            })
            .max()
            .expect("at least one class");
        let class = &mut classes[best.2];
        out.push((best.1).0);
        class.picks += 1;
    }
    out
}

/// Earliest deadline first: endpoint `i` is due every `1 / weight`; the
/// one due soonest goes next (ties by set order).
fn edf(weights: &[u32]) -> Vec<u32> {
    let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
    // Deadlines as fractions k / w compared exactly: k * total / w, in u128.
    let due = |k: u64, w: u32| u128::from(k) * u128::from(total) * 1_000_000 / u128::from(w);
    let mut heap: BinaryHeap<Reverse<(u128, u32, u64)>> =
        weights.iter().enumerate().map(|(i, w)| Reverse((due(1, *w), i as u32, 1))).collect();
    let mut out = Vec::with_capacity(total as usize);
    while (out.len() as u64) < total {
        let Reverse((_, i, k)) = heap.pop().expect("heap holds every endpoint");
        out.push(i);
        heap.push(Reverse((due(k + 1, weights[i as usize]), i, k + 1)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct All(usize);
    impl Candidates for All {
        fn len(&self) -> usize {
            self.0
        }
        fn usable(&self, _: usize) -> bool {
            true
        }
    }

    fn picks(s: &Schedule, n: usize, count: usize) -> Vec<usize> {
        let counter = AtomicUsize::new(0);
        (0..count).map(|_| s.next(&counter, &All(n)).unwrap()).collect()
    }

    /// Weights 5, 1, 1 give nginx's documented order a a b a c a a: the
    /// heavy endpoint's turns are spread out, not bunched.
    #[test]
    fn weighted_order_is_smooth_like_nginx() {
        let s = Schedule::new(&[5, 1, 1]);
        assert_eq!(picks(&s, 3, 14), [0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0]);
    }

    /// Over many picks each endpoint gets its weight's share exactly, and
    /// the heaviest never runs more than its fair streak.
    #[test]
    fn weighted_distribution_matches_weights() {
        let weights = [3, 1, 2, 4, 4];
        let s = Schedule::new(&weights);
        let got = picks(&s, weights.len(), 14 * 100);
        for (i, w) in weights.iter().enumerate() {
            assert_eq!(got.iter().filter(|x| **x == i).count(), *w as usize * 100, "endpoint {i}");
        }
        let longest = got.chunk_by(|a, b| a == b).map(|r| r.len()).max().unwrap();
        assert!(longest <= 2, "streak of {longest}");
    }

    /// The heap order, used for huge sets, gives the same shares.
    #[test]
    fn earliest_deadline_order_keeps_the_shares() {
        let weights = [5, 1, 1, 3];
        let order = edf(&weights);
        for (i, w) in weights.iter().enumerate() {
            assert_eq!(order.iter().filter(|x| **x as usize == i).count(), *w as usize);
        }
        assert_eq!(order[0], 0, "the heaviest is due first");
    }

    /// Equal weights need no table; huge weights are scaled into a bounded
    /// cycle that still favours the heavy endpoint.
    #[test]
    fn tables_stay_small() {
        assert_eq!(Schedule::new(&[7, 7, 7]), Schedule::Uniform(3));
        let s = Schedule::new(&[u32::MAX, 1]);
        assert!(s.len() as u64 <= MAX_CYCLE + 2);
        let ones = (0..s.len()).filter(|k| s.at(*k) == 1).count();
        assert_eq!(ones, 1);
    }

    /// An unusable endpoint is skipped and its turns go to the others.
    #[test]
    fn skips_unusable_endpoints() {
        struct NotOne;
        impl Candidates for NotOne {
            fn len(&self) -> usize {
                3
            }
            fn usable(&self, i: usize) -> bool {
                i != 1
            }
        }
        let s = Schedule::Uniform(3);
        let counter = AtomicUsize::new(0);
        let got: Vec<usize> = (0..6).map(|_| s.next(&counter, &NotOne).unwrap()).collect();
        assert!(!got.contains(&1));
        assert_eq!(got.iter().filter(|i| **i == 0).count(), 3);
    }
}
