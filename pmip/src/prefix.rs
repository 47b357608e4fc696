//! Home network prefix allocation from one or more pools (RFC 5213 §5.3.2 rules 1-3).
//!
//! Each pool hands out never-used prefixes first and reuses released ones oldest-first, so a
//! released prefix goes back into service as late as possible. The allocator does not know
//! who holds what: the binding cache and the policy store (pinned prefixes) do, and the caller
//! passes a check that says whether a candidate is taken.

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

use crate::config::PrefixPool;
use crate::free_list::Issued;

#[derive(Debug, Clone)]
struct Pool {
    base: u128,
    pool_len: u8,
    prefix_len: u8,
    /// Number of prefixes in the pool (saturating at u64::MAX).
    capacity: u64,
    /// What was handed out: from index 0.
    issued: Issued<u64>,
}

impl Pool {
    fn new(p: &PrefixPool) -> Self {
        let bits = u32::from(p.prefix_length - p.prefix.prefix_len());
        let capacity = if bits >= 64 { u64::MAX } else { 1u64 << bits };
        Pool {
            base: u128::from(p.prefix.network()),
            pool_len: p.prefix.prefix_len(),
            prefix_len: p.prefix_length,
            capacity,
            issued: Issued::starting_at(0),
        }
    }

    fn prefix_at(&self, i: u64) -> Ipv6Net {
        let shift = 128 - u32::from(self.prefix_len);
        let addr = self.base | (u128::from(i) << shift);
        Ipv6Net::new(Ipv6Addr::from(addr), self.prefix_len).unwrap_or_default()
    }

    fn index_of(&self, p: &Ipv6Net) -> Option<u64> {
        if p.prefix_len() != self.prefix_len || p.network() != p.addr() {
            return None;
        }
        let pool_net = Ipv6Net::new(Ipv6Addr::from(self.base), self.pool_len).ok()?;
        if !pool_net.contains(p) {
            return None;
        }
        let shift = 128 - u32::from(self.prefix_len);
        let i = (u128::from(p.network()) - self.base) >> shift;
        u64::try_from(i).ok()
    }

    fn allocate(&mut self, taken: &mut impl FnMut(&Ipv6Net) -> bool) -> Option<Ipv6Net> {
        while self.issued.next < self.capacity {
            let i = self.issued.next;
            self.issued.next += 1;
            if self.issued.claimed_ahead.remove(&i) {
                continue;
            }
            let p = self.prefix_at(i);
            if taken(&p) {
                // Pinned to a node, or held by a binding restored out of order: skip it
                // for good; it comes back through `release` if it is ever freed.
                continue;
            }
            return Some(p);
        }
        let n = self.issued.free.len();
        for _ in 0..n {
            let i = self.issued.free.pop_oldest()?;
            let p = self.prefix_at(i);
            if taken(&p) {
                continue;
            }
            return Some(p);
        }
        None
    }

    fn available(&self) -> u64 {
        let i = &self.issued;
        (self.capacity - i.next).saturating_sub(i.claimed_ahead.len() as u64) + i.free.len() as u64
    }
}

/// Allocation state of every pool.
#[derive(Debug, Clone)]
pub struct PrefixAllocator {
    pools: Vec<Pool>,
}

impl PrefixAllocator {
    pub fn new(pools: &[PrefixPool]) -> Self {
        PrefixAllocator {
            pools: pools.iter().map(Pool::new).collect(),
        }
    }

    /// A free prefix from the first pool that has one; `taken` says whether a candidate is in
    /// use elsewhere (pinned to a node, or held by a binding).
    pub fn allocate(&mut self, mut taken: impl FnMut(&Ipv6Net) -> bool) -> Option<Ipv6Net> {
        self.pools.iter_mut().find_map(|p| p.allocate(&mut taken))
    }

    /// True when `p` is one of the prefixes the pools hand out (right length, inside a pool).
    pub fn owns(&self, p: &Ipv6Net) -> bool {
        self.pools.iter().any(|pool| pool.index_of(p).is_some())
    }

    /// Marks `p` as in use (a binding restored from a snapshot, or a prefix a MAG asks for by
    /// value). No effect for a prefix outside the pools.
    pub fn claim(&mut self, p: &Ipv6Net) {
        for pool in &mut self.pools {
            if let Some(i) = pool.index_of(p) {
                pool.issued.claim(i);
            }
        }
    }

    /// [`PrefixAllocator::claim`] of every prefix of `prefixes`, in bulk: each pool's claims
    /// are sorted first, so that those that follow each other only move the pool's next
    /// never-used prefix (the state is the same as after claims one by one, in any order).
    pub fn claim_all(&mut self, prefixes: impl IntoIterator<Item = Ipv6Net>) {
        let mut by_pool: Vec<Vec<u64>> = vec![Vec::new(); self.pools.len()];
        for p in prefixes {
            for (pool, claims) in self.pools.iter().zip(&mut by_pool) {
                if let Some(i) = pool.index_of(&p) {
                    claims.push(i);
                }
            }
        }
        for (pool, mut claims) in self.pools.iter_mut().zip(by_pool) {
            claims.sort_unstable();
            claims.dedup();
            for i in claims {
                pool.issued.claim(i);
            }
        }
    }

    /// Returns `p` to its pool.
    pub fn release(&mut self, p: &Ipv6Net) {
        for pool in &mut self.pools {
            if let Some(i) = pool.index_of(p) {
                pool.issued.release(i);
            }
        }
    }

    /// Prefixes that can still be handed out (an upper bound: pinned ones are counted).
    pub fn available(&self) -> u64 {
        self.pools
            .iter()
            .fold(0u64, |acc, p| acc.saturating_add(p.available()))
    }

    /// Each pool (its prefix, as configured) and the prefixes it can still hand out.
    pub fn available_by_pool(&self) -> impl Iterator<Item = (Ipv6Net, u64)> + '_ {
        self.pools.iter().map(|p| {
            let net = Ipv6Net::new(Ipv6Addr::from(p.base), p.pool_len).unwrap_or_default();
            (net, p.available())
        })
    }

    /// Heap bytes used by the allocator's own bookkeeping.
    pub fn heap_bytes(&self) -> usize {
        self.pools.iter().map(|p| p.issued.heap_bytes()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(s: &str, len: u8) -> PrefixPool {
        PrefixPool {
            prefix: s.parse().unwrap(),
            prefix_length: len,
        }
    }

    #[test]
    fn hands_out_fresh_prefixes_then_reuses_oldest_released() {
        let mut a = PrefixAllocator::new(&[pool("2001:db8:100::/62", 64)]);
        let none = |_: &Ipv6Net| false;
        let got: Vec<_> = (0..4).map(|_| a.allocate(none).unwrap()).collect();
        assert_eq!(got[0].to_string(), "2001:db8:100::/64");
        assert_eq!(got[3].to_string(), "2001:db8:100:3::/64");
        assert!(a.allocate(none).is_none(), "pool exhausted");
        a.release(&got[2]);
        a.release(&got[0]);
        assert_eq!(a.allocate(none), Some(got[2]));
        assert_eq!(a.allocate(none), Some(got[0]));
        assert_eq!(a.available(), 0);
    }

    #[test]
    fn skips_taken_and_claimed_prefixes_and_falls_through_pools() {
        let mut a =
            PrefixAllocator::new(&[pool("2001:db8:100::/63", 64), pool("2001:db8:200::/48", 56)]);
        let pinned: Ipv6Net = "2001:db8:100::/64".parse().unwrap();
        a.claim(&"2001:db8:100:1::/64".parse().unwrap());
        let p = a.allocate(|c| *c == pinned).unwrap();
        assert_eq!(p.to_string(), "2001:db8:200::/56");
        assert!(a.owns(&"2001:db8:200:ff00::/56".parse().unwrap()));
        assert!(
            !a.owns(&"2001:db8:200::/64".parse().unwrap()),
            "wrong length"
        );
        assert!(!a.owns(&"2001:db8:300::/56".parse().unwrap()));
        let by_pool: Vec<(String, u64)> = (a.available_by_pool())
            .map(|(p, n)| (p.to_string(), n))
            .collect();
        assert_eq!(
            by_pool,
            [
                ("2001:db8:100::/63".to_owned(), 0),
                ("2001:db8:200::/48".to_owned(), 255)
            ]
        );
        assert_eq!(a.available(), 255);
    }

    /// Claims in bulk leave the pools as claims one by one do, in any order; the run of
    /// claims from the pool's start is taken as handed out, so a released one is reused last
    /// (as a prefix handed out and released is) rather than handed out next.
    #[test]
    fn claims_in_bulk_are_claims_one_by_one_and_a_released_one_is_reused_last() {
        let pools = [pool("2001:db8:100::/56", 64), pool("2001:db8:200::/56", 64)];
        let prefix = |pool: u32, i: u32| -> Ipv6Net {
            format!("2001:db8:{pool}00:{i:x}::/64").parse().unwrap()
        };
        let claims: Vec<Ipv6Net> = [3, 0, 1, 7, 2, 5, 2]
            .into_iter()
            .map(|i| prefix(1, i))
            .chain([prefix(2, 4), "2001:db8:300::/64".parse().unwrap()])
            .collect();
        let mut bulk = PrefixAllocator::new(&pools);
        bulk.claim_all(claims.iter().copied());
        for order in [claims.clone(), claims.iter().rev().copied().collect()] {
            let mut one = PrefixAllocator::new(&pools);
            for p in &order {
                one.claim(p);
            }
            assert_eq!(format!("{one:?}"), format!("{bulk:?}"));
        }
        assert_eq!(
            bulk.pools[0].issued.next, 4,
            "0..=3 claimed: as if handed out"
        );
        assert_eq!(bulk.pools[0].issued.claimed_ahead, [5, 7].into());
        assert_eq!(bulk.available(), 256 - 6 + 256 - 1);
        let none = |_: &Ipv6Net| false;
        bulk.release(&prefix(1, 0));
        assert_eq!(bulk.allocate(none), Some(prefix(1, 4)), "never used first");
        assert_eq!(bulk.allocate(none), Some(prefix(1, 6)));
    }

    #[test]
    fn a_claimed_prefix_is_not_handed_out_until_released() {
        let mut a = PrefixAllocator::new(&[pool("2001:db8:100::/62", 64)]);
        let none = |_: &Ipv6Net| false;
        let first = a.allocate(none).unwrap();
        a.release(&first);
        a.claim(&first);
        let rest: Vec<_> = std::iter::from_fn(|| a.allocate(none)).collect();
        assert_eq!(rest.len(), 3);
        assert!(!rest.contains(&first));
    }
}
