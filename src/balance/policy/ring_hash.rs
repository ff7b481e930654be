//! Consistent hashing on a ring (Karger et al., as Envoy's `RING_HASH`).
//!
//! Each endpoint owns many points ("virtual nodes", in proportion to its
//! weight) hashed from its address; a key goes to the owner of the first
//! point at or after the key's hash. When an endpoint leaves, only the
//! keys that landed on its points move. The ring is built when the set
//! changes (sorted once); a pick is a binary search, narrowed first by an
//! index on the hash's top bits so a large ring costs few cache misses.
//!
//! An unusable owner (ejected, unhealthy, or the endpoint a retry avoids)
//! is passed over by walking on to the next point, so its keys spill to
//! their next owner on the ring while every other key stays put.

use std::net::SocketAddr;

use super::hash_key::of_address;
use super::{scan, Candidates, TRIES};

/// Points per unit of weight, as long as the ring stays under [`MAX_POINTS`].
pub const POINTS_PER_WEIGHT: f64 = 128.0;
/// Largest ring (8 MiB of points plus 4 MiB of owners).
pub const MAX_POINTS: f64 = (1 << 20) as f64;
/// How far a pick walks past unusable owners before scanning the set.
const WALK: usize = 64;

/// The ring: sorted point hashes and the endpoint owning each.
#[derive(Debug, Clone, PartialEq)]
pub struct Ring {
    points: Box<[u64]>,
    owners: Box<[u32]>,
    /// `index[b]`: the first point whose top `bits` bits are >= b.
    index: Box<[u32]>,
    bits: u32,
}

impl Ring {
    /// The ring for endpoints at `addrs` with `weights` (same order).
    pub fn new(addrs: &[SocketAddr], weights: &[u32]) -> Self {
        let total: f64 = weights.iter().map(|w| f64::from((*w).max(1))).sum();
        let per_weight = POINTS_PER_WEIGHT.min(MAX_POINTS / total.max(1.0));
        let mut ring: Vec<(u64, u32)> = Vec::new();
        for (i, (addr, w)) in addrs.iter().zip(weights).enumerate() {
            let points = (f64::from((*w).max(1)) * per_weight).round().max(1.0) as u64;
            ring.extend((0..points).map(|p| (of_address(*addr, p), i as u32)));
        }
        ring.sort_unstable();
        let (points, owners): (Vec<u64>, Vec<u32>) = ring.into_iter().unzip();
        // About one bucket per point, at most 2^16 (256 KiB).
        let bits = points.len().max(1).ilog2().min(16);
        let index = (0..=1u64 << bits)
            .map(|b| if b >> bits == 1 { points.len() } else { points.partition_point(|p| top(*p, bits) < b) })
            .map(|i| i as u32)
            .collect();
        Ring { points: points.into(), owners: owners.into(), index, bits }
    }

    /// The position of the first point at or after `hash` (may be `len`).
    fn position(&self, hash: u64) -> usize {
        let b = top(hash, self.bits) as usize;
        let (from, to) = (self.index[b] as usize, self.index[b + 1] as usize);
        from + self.points[from..to].partition_point(|p| *p < hash)
    }

    /// Points on the ring.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether the ring is empty.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The endpoint for a key hash, or a weighted random one without a key.
    pub fn pick(&self, key: Option<u64>, c: &impl Candidates) -> Option<usize> {
        if self.is_empty() {
            return None;
        }
        let Some(hash) = key else { return self.random(c) };
        let start = self.position(hash);
        for step in 0..WALK.min(self.len()) {
            let owner = self.owners[(start + step) % self.len()] as usize;
            if c.usable(owner) {
                return Some(owner);
            }
        }
        scan(c.len(), (hash % c.len() as u64) as usize, c)
    }

    fn random(&self, c: &impl Candidates) -> Option<usize> {
        for _ in 0..TRIES {
            let owner = self.owners[fastrand::usize(..self.len())] as usize;
            if c.usable(owner) {
                return Some(owner);
            }
        }
        scan(c.len(), fastrand::usize(..c.len()), c)
    }
}

/// The top `bits` bits of `hash`.
fn top(hash: u64, bits: u32) -> u64 {
    if bits == 0 {
        0
    } else {
        hash >> (64 - bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::policy::tests::{addrs, moved_keys, Usable};

    /// The same key always lands on the same endpoint, and 1,000 keys
    /// spread over 4 endpoints roughly evenly.
    #[test]
    fn keys_stick_and_spread() {
        let a = addrs(4);
        let ring = Ring::new(&a, &[1; 4]);
        let c = Usable::all(4);
        let mut per = [0usize; 4];
        for k in 0..1000u64 {
            let h = xxhash_rust::xxh3::xxh3_64(&k.to_le_bytes());
            let first = ring.pick(Some(h), &c).unwrap();
            assert_eq!(ring.pick(Some(h), &c), Some(first));
            per[first] += 1;
        }
        assert!(per.iter().all(|n| (150..350).contains(n)), "spread {per:?}");
    }

    /// Removing one of four endpoints moves exactly the keys it held.
    #[test]
    fn removing_an_endpoint_moves_only_its_keys() {
        let a = addrs(4);
        let before = Ring::new(&a, &[1; 4]);
        let after = Ring::new(&a[..3], &[1; 3]);
        let (moved, on_removed) = moved_keys(
            |h| a[before.pick(Some(h), &Usable::all(4)).unwrap()],
            |h| a[after.pick(Some(h), &Usable::all(3)).unwrap()],
            a[3],
        );
        assert_eq!(moved, on_removed, "only the removed endpoint's keys move");
        assert!(moved <= 350, "{moved} of 1000 moved");
    }

    /// An unusable endpoint's keys go to their next owner; others stay.
    #[test]
    fn unusable_owner_spills_to_the_next() {
        let a = addrs(4);
        let ring = Ring::new(&a, &[1; 4]);
        let (moved, on_removed) = moved_keys(
            |h| a[ring.pick(Some(h), &Usable::all(4)).unwrap()],
            |h| a[ring.pick(Some(h), &Usable::only(4, &[0, 1, 2])).unwrap()],
            a[3],
        );
        assert_eq!(moved, on_removed);
    }

    /// The indexed search finds the same point as a plain binary search.
    #[test]
    fn index_narrows_the_search_correctly() {
        for n in [1, 3, 50] {
            let ring = Ring::new(&addrs(n), &vec![1; n]);
            for k in 0..2000u64 {
                let h = xxhash_rust::xxh3::xxh3_64(&k.to_le_bytes());
                assert_eq!(ring.position(h), ring.points.partition_point(|p| *p < h));
            }
            assert_eq!(ring.position(u64::MAX), ring.points.partition_point(|p| *p < u64::MAX));
            assert_eq!(ring.position(0), 0);
        }
    }

    /// Weight 3 gets about three times the keys of weight 1.
    #[test]
    fn weights_shape_the_ring() {
        let a = addrs(2);
        let ring = Ring::new(&a, &[3, 1]);
        assert_eq!(ring.len(), 4 * 128);
        let c = Usable::all(2);
        let heavy = (0..4000u64)
            .filter(|k| ring.pick(Some(xxhash_rust::xxh3::xxh3_64(&k.to_le_bytes())), &c) == Some(0))
            .count();
        assert!((2600..3400).contains(&heavy), "heavy got {heavy} of 4000");
    }
}
