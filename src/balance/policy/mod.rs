//! Load-balancing policies: pure selection over endpoint indices.
//!
//! A [`Picker`] is built from the endpoints' addresses and weights when the
//! set changes (the costly part: schedules, rings, tables) and then picks
//! in O(1) (round robin, random, P2C, maglev) or O(log n) (ring hash),
//! without allocating. It knows nothing of discovery, health or requests
//! in flight: the balancer tells it which indices are usable now
//! ([`Candidates`]) and, for P2C, what each one's load is.
//!
//! Unusable candidates are skipped by drawing again a few times
//! ([`TRIES`]), then by scanning; since panic mode keeps at least half the
//! set usable by default, a pick rarely draws twice.

pub mod ewma;
pub mod hash_key;
pub mod maglev;
pub mod p2c;
pub mod random;
pub mod ring_hash;
pub mod round_robin;

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;

use http::Request;

use super::settings::{HashOn, LbPolicy};
use maglev::Maglev;
use ring_hash::Ring;
use round_robin::Schedule;

/// Draws before falling back to a scan.
pub const TRIES: usize = 8;

/// Which endpoints (by index in the set) may take the request now.
pub trait Candidates {
    /// Endpoints in the set.
    fn len(&self) -> usize;
    /// Whether endpoint `i` may take the request.
    fn usable(&self, i: usize) -> bool;
    /// Whether the set is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The first usable index at or after `start`, wrapping around.
pub fn scan(n: usize, start: usize, c: &impl Candidates) -> Option<usize> {
    (0..n).map(|off| (start + off) % n).find(|i| c.usable(*i))
}

/// A policy with its precomputed state for one endpoint set.
#[derive(Debug, Clone, PartialEq)]
pub enum Picker {
    /// Smooth weighted round robin.
    RoundRobin(Schedule),
    /// Weighted random.
    Random(Schedule),
    /// P2C on in-flight requests.
    LeastRequest(Schedule),
    /// P2C on peak-EWMA latency x (in-flight + 1).
    PeakEwma(Schedule),
    /// Ring consistent hashing.
    RingHash(Ring, HashOn),
    /// Maglev consistent hashing.
    Maglev(Maglev, HashOn),
}

impl Picker {
    /// Precomputes `policy` for endpoints at `addrs` with `weights`.
    pub fn new(policy: &LbPolicy, addrs: &[SocketAddr], weights: &[u32]) -> Self {
        match policy {
            LbPolicy::RoundRobin => Picker::RoundRobin(Schedule::new(weights)),
            LbPolicy::Random => Picker::Random(Schedule::new(weights)),
            LbPolicy::LeastRequest => Picker::LeastRequest(Schedule::new(weights)),
            LbPolicy::PeakEwma => Picker::PeakEwma(Schedule::new(weights)),
            LbPolicy::RingHash(on) => Picker::RingHash(Ring::new(addrs, weights), on.clone()),
            LbPolicy::Maglev(on) => Picker::Maglev(Maglev::new(addrs, weights), on.clone()),
        }
    }

    /// Picks a usable endpoint index for `req`. `counter` is the round
    /// robin position (kept by the caller across set changes); `load` is
    /// consulted by the P2C policies.
    pub fn pick<B>(
        &self,
        req: &Request<B>,
        counter: &AtomicUsize,
        c: &impl Candidates,
        load: impl Fn(usize) -> f64,
    ) -> Option<usize> {
        match self {
            Picker::RoundRobin(s) => s.next(counter, c),
            Picker::Random(s) => random::pick(s, c),
            Picker::LeastRequest(s) | Picker::PeakEwma(s) => p2c::pick(s, c, load),
            Picker::RingHash(ring, on) => ring.pick(hash_key::of(req, on), c),
            Picker::Maglev(table, on) => table.pick(hash_key::of(req, on), c),
        }
    }
}

impl Default for Picker {
    fn default() -> Self {
        Picker::RoundRobin(Schedule::Uniform(0))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A candidate set where only some indices are usable.
    pub struct Usable {
        n: usize,
        ok: Vec<bool>,
    }

    impl Usable {
        pub fn all(n: usize) -> Self {
            Usable { n, ok: vec![true; n] }
        }
        pub fn only(n: usize, which: &[usize]) -> Self {
            Usable { n, ok: (0..n).map(|i| which.contains(&i)).collect() }
        }
    }

    impl Candidates for Usable {
        fn len(&self) -> usize {
            self.n
        }
        fn usable(&self, i: usize) -> bool {
            self.ok[i]
        }
    }

    /// `n` distinct loopback addresses.
    pub fn addrs(n: usize) -> Vec<SocketAddr> {
        (0..n).map(|i| SocketAddr::from(([127, 0, 0, 1], 20_000 + i as u16))).collect()
    }

    /// Over 1,000 keys: how many land elsewhere `after` than `before`, and
    /// how many of those were on `removed` before. Checks that `removed`
    /// owned its share of keys (a quarter of them, of 4 endpoints) and lost
    /// every one, so a hash that ignored the key cannot pass.
    pub fn moved_keys(
        before: impl Fn(u64) -> SocketAddr,
        after: impl Fn(u64) -> SocketAddr,
        removed: SocketAddr,
    ) -> (usize, usize) {
        let mut moved = 0;
        let mut on_removed = 0;
        let mut owned = 0;
        for k in 0..1000u64 {
            let h = xxhash_rust::xxh3::xxh3_64(format!("user-{k}").as_bytes());
            let (b, a) = (before(h), after(h));
            owned += usize::from(b == removed);
            assert!(!(b == removed && a == removed), "a key stayed on the removed endpoint");
            if a != b {
                moved += 1;
                if b == removed {
                    on_removed += 1;
                }
            }
        }
        assert!(owned > 150, "the removed endpoint owned only {owned} of 1000 keys");
        assert_eq!(on_removed, owned, "every key of the removed endpoint moved");
        (moved, on_removed)
    }

    /// The scan fallback finds the one usable index from any start.
    #[test]
    fn scan_wraps_around() {
        let c = Usable::only(5, &[1]);
        assert_eq!(scan(5, 3, &c), Some(1));
        assert_eq!(scan(5, 3, &Usable::only(5, &[])), None);
    }
}
