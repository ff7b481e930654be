//! Maglev consistent hashing (Eisenbud et al., NSDI 2016; weighted as in
//! Envoy).
//!
//! A lookup table of prime size (65,537, or 655,373 past 655 endpoints so
//! each endpoint keeps ~100 slots) is filled when the set changes: each
//! endpoint walks its own permutation of the slots, taking free ones in
//! turns (heavier endpoints take more turns). A pick is one array read,
//! and the table spreads keys more evenly than a ring. When an endpoint
//! leaves, its slots are refilled and a few others shift: keys move
//! slightly more than on a ring, far less than with modulo hashing.
//!
//! An unusable endpoint is passed over by rehashing the key (a handful of
//! tries), so its keys spread over the others while theirs stay put.

use std::net::SocketAddr;

use super::hash_key::{of_address, rehash};
use super::{scan, Candidates, TRIES};

/// The table size for up to 655 endpoints.
pub const SMALL_TABLE: usize = 65_537;
/// The table size beyond that.
pub const LARGE_TABLE: usize = 655_373;

/// The filled lookup table: slot -> endpoint index.
#[derive(Debug, Clone, PartialEq)]
pub struct Maglev {
    table: Box<[u32]>,
}

impl Maglev {
    /// The table for endpoints at `addrs` with `weights` (same order).
    pub fn new(addrs: &[SocketAddr], weights: &[u32]) -> Self {
        if addrs.is_empty() {
            return Maglev { table: Box::new([]) };
        }
        let m = if addrs.len() * 100 <= SMALL_TABLE { SMALL_TABLE } else { LARGE_TABLE };
        Maglev { table: fill(m, addrs, weights).into() }
    }

    /// Slots in the table.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The endpoint for a key hash, or a weighted random one without a key.
    pub fn pick(&self, key: Option<u64>, c: &impl Candidates) -> Option<usize> {
        if self.is_empty() {
            return None;
        }
        let m = self.len() as u64;
        let hash = key.unwrap_or_else(|| fastrand::u64(..));
        for attempt in 0..TRIES as u64 {
            let h = if attempt == 0 { hash } else { rehash(hash, attempt) };
            let i = self.table[(h % m) as usize] as usize;
            if c.usable(i) {
                return Some(i);
            }
        }
        scan(c.len(), (hash % c.len() as u64) as usize, c)
    }
}

/// Fills `m` slots. In each round every endpoint whose weight allows it
/// takes the next free slot of its permutation `offset + j * skip (mod m)`.
fn fill(m: usize, addrs: &[SocketAddr], weights: &[u32]) -> Vec<u32> {
    struct Walker {
        offset: u64,
        skip: u64,
        next: u64,
        weight: u64,
        target: u64,
    }
    const EMPTY: u32 = u32::MAX;
    let m64 = m as u64;
    let max_weight = weights.iter().map(|w| u64::from((*w).max(1))).max().unwrap_or(1);
    let mut walkers: Vec<Walker> = addrs
        .iter()
        .zip(weights)
        .map(|(a, w)| Walker {
            offset: of_address(*a, 0x6d61_676c) % m64,
            skip: of_address(*a, 0x736b_6970) % (m64 - 1) + 1,
            next: 0,
            weight: u64::from((*w).max(1)),
            target: 0,
        })
        .collect();
    let mut table = vec![EMPTY; m];
    let mut filled = 0;
    let mut round: u64 = 0;
    while filled < m {
        round += 1;
        for (i, w) in walkers.iter_mut().enumerate() {
            if filled == m {
                break;
            }
            // An endpoint of weight max/k takes a turn about every k rounds.
            if round * w.weight < w.target {
                continue;
            }
            w.target += max_weight;
            let mut slot = ((w.offset + w.next * w.skip) % m64) as usize;
            while table[slot] != EMPTY {
                w.next += 1;
                slot = ((w.offset + w.next * w.skip) % m64) as usize;
            }
            table[slot] = i as u32;
            w.next += 1;
            filled += 1;
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::policy::tests::{addrs, moved_keys, Usable};

    /// Slots are shared evenly by equal weights and 3:1 by weights 3 and 1.
    #[test]
    fn slots_follow_weights() {
        let m = Maglev::new(&addrs(4), &[1; 4]);
        assert_eq!(m.len(), SMALL_TABLE);
        for i in 0..4u32 {
            let n = m.table.iter().filter(|x| **x == i).count();
            assert!(n.abs_diff(SMALL_TABLE / 4) <= 1, "endpoint {i} has {n} slots");
        }
        let w = Maglev::new(&addrs(2), &[3, 1]);
        let heavy = w.table.iter().filter(|x| **x == 0).count() as f64 / SMALL_TABLE as f64;
        assert!((0.74..0.76).contains(&heavy), "heavy share {heavy}");
    }

    /// Removing one of four endpoints moves its keys and few others.
    #[test]
    fn removing_an_endpoint_moves_few_other_keys() {
        let a = addrs(4);
        let before = Maglev::new(&a, &[1; 4]);
        let after = Maglev::new(&a[..3], &[1; 3]);
        let (moved, on_removed) = moved_keys(
            |h| a[before.pick(Some(h), &Usable::all(4)).unwrap()],
            |h| a[after.pick(Some(h), &Usable::all(3)).unwrap()],
            a[3],
        );
        assert!(moved >= on_removed);
        assert!(moved - on_removed <= 60, "{} keys of remaining endpoints moved", moved - on_removed);
        assert!(moved <= 350, "{moved} of 1000 moved");
    }

    /// An unusable endpoint's keys go elsewhere; the others' stay.
    #[test]
    fn unusable_endpoint_keys_are_rehashed() {
        let a = addrs(4);
        let m = Maglev::new(&a, &[1; 4]);
        let (moved, on_removed) = moved_keys(
            |h| a[m.pick(Some(h), &Usable::all(4)).unwrap()],
            |h| a[m.pick(Some(h), &Usable::only(4, &[0, 1, 2])).unwrap()],
            a[3],
        );
        assert_eq!(moved, on_removed);
    }
}
