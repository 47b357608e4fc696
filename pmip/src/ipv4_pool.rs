//! IPv4 home address allocation from one or more pools (RFC 5844 §3.1.2.2).
//!
//! A pool is an IPv4 home subnet (a CIDR prefix) with its default router. Every node gets
//! one address of it, with the subnet's prefix length (the Prefix-len of the IPv4 Home
//! Address Reply, RFC 5844 §3.3.2) and the pool's default router (the IPv4 Default-Router
//! Address option, §3.3.3): the home subnet is shared by many nodes (§1.1).
//!
//! Like [`crate::prefix::PrefixAllocator`], each pool hands out never-used addresses first
//! and reuses released ones oldest-first, and the allocator does not know who holds what:
//! the binding cache and the policy store (pinned addresses) do, and the caller passes a check
//! that says whether a candidate is taken. What a node holds is an [`Ipv4HomeAddress`], a
//! plain value that goes into durable records as it is; [`Ipv4Allocator::claim`] marks it
//! taken again after a restart.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::config::Ipv4Pool;
use crate::free_list::Issued;

/// A node's IPv4 home address with what comes with it (RFC 5844 §3.1.1: the address, its
/// subnet mask, and the default router).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ipv4HomeAddress {
    pub address: Ipv4Addr,
    /// Length of the home subnet's prefix.
    pub prefix_len: u8,
    pub default_router: Ipv4Addr,
}

impl Ipv4HomeAddress {
    /// The address with its subnet's prefix length, e.g. `192.0.2.10/24`.
    pub fn with_prefix(&self) -> Ipv4Net {
        Ipv4Net::new(self.address, self.prefix_len).unwrap_or_else(|_| self.host())
    }

    /// The address as a host route (`/32`): what the LMA tunnels and the MAG routes onto
    /// the access link (RFC 5844 §3.1.2.2, §3.2.3.2).
    pub fn host(&self) -> Ipv4Net {
        Ipv4Net::from(self.address)
    }

    /// The subnet mask, for DHCP's Subnet Mask option.
    pub fn netmask(&self) -> Ipv4Addr {
        self.with_prefix().netmask()
    }
}

impl std::fmt::Display for Ipv4HomeAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} via {}",
            self.address, self.prefix_len, self.default_router
        )
    }
}

/// The default router of `pool`: the configured one, else the subnet's first address.
pub fn default_router_of(pool: &Ipv4Pool) -> Ipv4Addr {
    pool.default_router
        .unwrap_or_else(|| Ipv4Addr::from(u32::from(pool.prefix.network()).saturating_add(1)))
}

#[derive(Debug, Clone)]
struct Pool {
    net: Ipv4Net,
    router: Ipv4Addr,
    /// What was handed out: indices (offsets in the subnet) from 1.
    issued: Issued<u32>,
    /// Last index a node may have: the one before the broadcast address.
    last: u32,
    router_index: u32,
}

impl Pool {
    fn new(p: &Ipv4Pool) -> Self {
        let net = p.prefix.trunc();
        let size = 1u64 << (32 - u32::from(net.prefix_len()));
        let router = default_router_of(p);
        Pool {
            net,
            router,
            issued: Issued::starting_at(1),
            last: u32::try_from(size.saturating_sub(2)).unwrap_or(u32::MAX),
            router_index: u32::from(router).wrapping_sub(u32::from(net.network())),
        }
    }

    fn address_at(&self, i: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.net.network()).wrapping_add(i))
    }

    /// The index of a host address a node may have: inside the subnet, not its network or
    /// broadcast address, not the default router.
    fn index_of(&self, a: Ipv4Addr) -> Option<u32> {
        if !self.net.contains(&a) {
            return None;
        }
        let i = u32::from(a) - u32::from(self.net.network());
        (1..=self.last)
            .contains(&i)
            .then_some(i)
            .filter(|i| *i != self.router_index)
    }

    fn lease(&self, a: Ipv4Addr) -> Ipv4HomeAddress {
        Ipv4HomeAddress {
            address: a,
            prefix_len: self.net.prefix_len(),
            default_router: self.router,
        }
    }

    fn allocate(&mut self, taken: &mut impl FnMut(Ipv4Addr) -> bool) -> Option<Ipv4HomeAddress> {
        while self.issued.next <= self.last {
            let i = self.issued.next;
            self.issued.next += 1;
            if i == self.router_index || self.issued.claimed_ahead.remove(&i) {
                continue;
            }
            let a = self.address_at(i);
            if taken(a) {
                // Pinned to a node, or held by a binding restored out of order: skipped for
                // good; it comes back through `release` if it is ever freed.
                continue;
            }
            return Some(self.lease(a));
        }
        for _ in 0..self.issued.free.len() {
            let i = self.issued.free.pop_oldest()?;
            let a = self.address_at(i);
            if taken(a) {
                continue;
            }
            return Some(self.lease(a));
        }
        None
    }

    fn available(&self) -> u64 {
        let i = &self.issued;
        let ahead = u64::from(self.last + 1).saturating_sub(u64::from(i.next));
        let router_ahead = u64::from(self.router_index >= i.next && self.router_index <= self.last);
        (ahead - router_ahead).saturating_sub(i.claimed_ahead.len() as u64) + i.free.len() as u64
    }
}

/// Allocation state of every IPv4 pool.
#[derive(Debug, Clone)]
pub struct Ipv4Allocator {
    pools: Vec<Pool>,
}

impl Ipv4Allocator {
    pub fn new(pools: &[Ipv4Pool]) -> Self {
        Ipv4Allocator {
            pools: pools.iter().map(Pool::new).collect(),
        }
    }

    /// Whether any pool is configured: without one the LMA offers no IPv4 home address
    /// mobility (RFC 5844 §3.1.2.1: "IPv4 routing is not enabled in the home network").
    pub fn is_enabled(&self) -> bool {
        !self.pools.is_empty()
    }

    /// A free address from the first pool that has one; `taken` says whether a candidate is
    /// in use elsewhere (pinned to a node, or held by a binding).
    pub fn allocate(&mut self, mut taken: impl FnMut(Ipv4Addr) -> bool) -> Option<Ipv4HomeAddress> {
        self.pools.iter_mut().find_map(|p| p.allocate(&mut taken))
    }

    /// `a` as a home address with its subnet and router, if a pool can give it to a node
    /// (RFC 5844 §3.1.2.2: "topologically anchored on the local mobility anchor"): inside a
    /// pool, and neither the pool's network, broadcast nor default-router address.
    pub fn lease_for(&self, a: Ipv4Addr) -> Option<Ipv4HomeAddress> {
        self.pools
            .iter()
            .find(|p| p.index_of(a).is_some())
            .map(|p| p.lease(a))
    }

    /// Marks `a` as in use (a binding restored from the durable store, a pinned or
    /// requested address). No effect for an address no pool gives out.
    pub fn claim(&mut self, a: Ipv4Addr) {
        for pool in &mut self.pools {
            if let Some(i) = pool.index_of(a) {
                pool.issued.claim(i);
            }
        }
    }

    /// Returns `a` to its pool.
    pub fn release(&mut self, a: Ipv4Addr) {
        for pool in &mut self.pools {
            if let Some(i) = pool.index_of(a) {
                pool.issued.release(i);
            }
        }
    }

    /// Addresses that can still be handed out (an upper bound: pinned ones are counted).
    pub fn available(&self) -> u64 {
        self.pools
            .iter()
            .fold(0u64, |acc, p| acc.saturating_add(p.available()))
    }

    /// Heap bytes used by the allocator's own bookkeeping.
    pub fn heap_bytes(&self) -> usize {
        self.pools.iter().map(|p| p.issued.heap_bytes()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(s: &str, router: Option<&str>) -> Ipv4Pool {
        Ipv4Pool {
            prefix: s.parse().unwrap(),
            default_router: router.map(|r| r.parse().unwrap()),
        }
    }

    fn a(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn hands_out_host_addresses_with_the_subnet_and_router_then_reuses_oldest_released() {
        // A /29: .0 network, .7 broadcast, .1 the router; .2 to .6 for nodes.
        let mut p = Ipv4Allocator::new(&[pool("192.0.2.0/29", None)]);
        assert_eq!(p.available(), 5);
        let none = |_: Ipv4Addr| false;
        let got: Vec<_> = std::iter::from_fn(|| p.allocate(none)).collect();
        let addrs: Vec<String> = got.iter().map(|l| l.address.to_string()).collect();
        assert_eq!(
            addrs,
            [
                "192.0.2.2",
                "192.0.2.3",
                "192.0.2.4",
                "192.0.2.5",
                "192.0.2.6"
            ]
        );
        assert_eq!(got[0].prefix_len, 29);
        assert_eq!(got[0].default_router, a("192.0.2.1"));
        assert_eq!(got[0].netmask(), a("255.255.255.248"));
        assert_eq!(got[0].to_string(), "192.0.2.2/29 via 192.0.2.1");
        assert_eq!(got[0].host().to_string(), "192.0.2.2/32");
        assert_eq!(p.available(), 0);
        p.release(got[3].address);
        p.release(got[1].address);
        assert_eq!(p.allocate(none), Some(got[3]));
        assert_eq!(p.allocate(none), Some(got[1]));
        assert_eq!(p.allocate(none), None, "exhausted");
    }

    #[test]
    fn a_router_inside_the_range_is_skipped_and_never_leased() {
        let mut p = Ipv4Allocator::new(&[pool("198.51.100.0/30", Some("198.51.100.2"))]);
        assert_eq!(p.available(), 1);
        assert_eq!(p.allocate(|_| false).unwrap().address, a("198.51.100.1"));
        assert!(p.allocate(|_| false).is_none());
        for not_a_host in [
            "198.51.100.0",
            "198.51.100.2",
            "198.51.100.3",
            "203.0.113.1",
        ] {
            assert_eq!(p.lease_for(a(not_a_host)), None, "{not_a_host}");
        }
        assert_eq!(
            p.lease_for(a("198.51.100.1")).unwrap().default_router,
            a("198.51.100.2")
        );
    }

    #[test]
    fn taken_and_claimed_addresses_are_skipped_and_pools_fall_through() {
        let mut p = Ipv4Allocator::new(&[
            pool("192.0.2.0/30", None),
            pool("203.0.113.0/24", Some("203.0.113.254")),
        ]);
        // The /30 has one node address (.2); it is pinned elsewhere.
        let l = p.allocate(|c| c == a("192.0.2.2")).unwrap();
        assert_eq!(l.address, a("203.0.113.1"));
        assert_eq!(l.default_router, a("203.0.113.254"));
        assert_eq!(l.prefix_len, 24);
        p.claim(a("203.0.113.2"));
        assert_eq!(p.allocate(|_| false).unwrap().address, a("203.0.113.3"));
        // Claimed and released below `next`: back in the free list, then claimed again.
        p.release(a("203.0.113.1"));
        p.claim(a("203.0.113.1"));
        assert_ne!(p.allocate(|_| false).unwrap().address, a("203.0.113.1"));
        assert!(p.is_enabled());
        assert!(!Ipv4Allocator::new(&[]).is_enabled());
        assert!(Ipv4Allocator::new(&[]).allocate(|_| false).is_none());
    }

    #[test]
    fn home_address_round_trips_through_serde() {
        let l = Ipv4HomeAddress {
            address: a("192.0.2.10"),
            prefix_len: 24,
            default_router: a("192.0.2.1"),
        };
        let j = serde_json::to_string(&l).unwrap();
        assert_eq!(
            j,
            r#"{"address":"192.0.2.10","prefix_len":24,"default_router":"192.0.2.1"}"#
        );
        assert_eq!(serde_json::from_str::<Ipv4HomeAddress>(&j).unwrap(), l);
    }
}
