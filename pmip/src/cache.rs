//! The LMA's binding cache (RFC 5213 §5.1): one entry per mobility session, found by MN-ID,
//! by home network prefix and by IPv4 home address (RFC 5844 §3.1.1) in O(1), with each
//! entry's deadline kept in a timer heap.
//!
//! Entries live in a slab addressed by [`SessionId`]; the two indexes are hash tables of slab
//! indices hashed by the entry's own MN-ID or prefix, so no key is stored twice. The hasher's
//! seed comes in from outside, as all randomness here does: the order in which the sessions of
//! one node are found then depends on the seed and the inputs alone, and a simulator run
//! reproduces.

use core::hash::BuildHasher;
use core::time::Duration;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{Ipv4Addr, Ipv6Addr};

use foldhash::fast::FixedState;
use hashbrown::HashTable;
use ipnet::Ipv6Net;
use serde::{Deserialize, Serialize};

use crate::ipv4_pool::Ipv4HomeAddress;
use crate::time::Instant;
use crate::types::LinkLayerAddress;
use crate::wire::{AccessTechnologyType, HandoffIndicator, SequenceNumber, Timestamp};

/// Index of a binding cache entry. Reused after the entry is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SessionId(pub u32);

/// The home network prefixes of a session; one, the usual case, without a heap allocation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Prefixes {
    One(Ipv6Net),
    Many(Box<[Ipv6Net]>),
}

impl Prefixes {
    pub fn from_slice(p: &[Ipv6Net]) -> Self {
        match p {
            [one] => Prefixes::One(*one),
            many => Prefixes::Many(many.into()),
        }
    }

    /// Collects prefixes; a single one without allocating.
    pub fn collect(mut it: impl Iterator<Item = Ipv6Net>) -> Self {
        let Some(first) = it.next() else {
            return Prefixes::Many(Box::new([]));
        };
        match it.next() {
            None => Prefixes::One(first),
            Some(second) => {
                let mut v = vec![first, second];
                v.extend(it);
                Prefixes::Many(v.into_boxed_slice())
            }
        }
    }

    pub fn as_slice(&self) -> &[Ipv6Net] {
        match self {
            Prefixes::One(p) => core::slice::from_ref(p),
            Prefixes::Many(v) => v,
        }
    }

    pub fn contains(&self, p: &Ipv6Net) -> bool {
        self.as_slice().contains(p)
    }

    /// Same prefixes, in any order (RFC 5213 §5.4.1.1 rule 4).
    pub fn same_set(&self, other: &[Ipv6Net]) -> bool {
        let mine = self.as_slice();
        mine.len() == other.len() && other.iter().all(|p| mine.contains(p))
    }
}

/// What the last accepted PBU was ordered by (RFC 5213 §5.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ordering {
    /// The Timestamp of the last accepted PBU; 0 when it carried none (the value 0, the
    /// epoch itself, is never a real timestamp).
    timestamp: u64,
    /// Its Sequence Number.
    pub sequence: SequenceNumber,
}

impl Ordering {
    pub fn new(timestamp: Option<Timestamp>, sequence: SequenceNumber) -> Self {
        Ordering {
            timestamp: timestamp.map_or(0, |t| t.0),
            sequence,
        }
    }

    pub fn timestamp(&self) -> Option<Timestamp> {
        (self.timestamp != 0).then_some(Timestamp(self.timestamp))
    }
}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingState {
    /// Registered; expires at the entry's `expires_at` unless refreshed.
    Active,
    /// De-registered at `updated_at`; deleted at `expires_at` (MinDelayBeforeBCEDelete,
    /// RFC 5213 §5.3.5) unless a new registration arrives first. Traffic to the node is
    /// dropped meanwhile.
    Deregistering,
}

const NO_GAP: u32 = u32::MAX;

/// A mobile node identifier (an NAI, RFC 4283) as a binding cache entry holds it: up to
/// [`MnId::INLINE`] bytes in the entry itself, a longer one on the heap. A `Box<str>` cost
/// 16 bytes in the entry and a heap block of 48 for a 25-byte NAI; this costs 32 and none.
#[derive(Clone)]
pub struct MnId(MnIdRepr);

#[derive(Clone)]
enum MnIdRepr {
    Inline { len: u8, bytes: [u8; MnId::INLINE] },
    Heap(Box<str>),
}

impl MnId {
    /// The longest identifier kept without a heap allocation.
    pub const INLINE: usize = 30;

    pub fn new(id: &str) -> Self {
        let mut bytes = [0u8; MnId::INLINE];
        match bytes.get_mut(..id.len()) {
            Some(b) => {
                b.copy_from_slice(id.as_bytes());
                MnId(MnIdRepr::Inline {
                    len: id.len() as u8,
                    bytes,
                })
            }
            None => MnId(MnIdRepr::Heap(id.into())),
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Always whole UTF-8: the bytes were copied from a `str`.
            MnIdRepr::Inline { len, bytes } => bytes
                .get(..usize::from(*len))
                .and_then(|b| core::str::from_utf8(b).ok())
                .unwrap_or_default(),
            MnIdRepr::Heap(s) => s,
        }
    }

    /// Bytes it holds on the heap (none when inline).
    pub fn heap_bytes(&self) -> usize {
        match &self.0 {
            MnIdRepr::Inline { .. } => 0,
            MnIdRepr::Heap(s) => s.len(),
        }
    }
}

impl core::ops::Deref for MnId {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for MnId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for MnId {
    fn from(s: &str) -> Self {
        MnId::new(s)
    }
}

impl From<String> for MnId {
    fn from(s: String) -> Self {
        if s.len() <= MnId::INLINE {
            MnId::new(&s)
        } else {
            MnId(MnIdRepr::Heap(s.into_boxed_str()))
        }
    }
}

impl From<Box<str>> for MnId {
    fn from(s: Box<str>) -> Self {
        if s.len() <= MnId::INLINE {
            MnId::new(&s)
        } else {
            MnId(MnIdRepr::Heap(s))
        }
    }
}

impl PartialEq for MnId {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for MnId {}

impl PartialEq<str> for MnId {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

/// Hashes as its `str` does, so an index keyed by it is searched with a `&str`.
impl core::hash::Hash for MnId {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl core::fmt::Debug for MnId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl core::fmt::Display for MnId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A binding cache entry (RFC 5213 §5.1). Kept small: a million of them must fit in 256 MB
/// together with the indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingCacheEntry {
    pub mn_id: MnId,
    pub prefixes: Prefixes,
    pub proxy_coa: Ipv6Addr,
    pub access_technology_type: AccessTechnologyType,
    pub handoff_indicator: HandoffIndicator,
    pub mn_link_layer_id: Option<LinkLayerAddress>,
    pub link_local_address: Option<Ipv6Addr>,
    /// Lifetime granted in the last PBA, in seconds.
    pub lifetime_s: u32,
    pub registered_at: Instant,
    /// Last accepted PBU; for a de-registered entry, the de-registration.
    pub updated_at: Instant,
    /// Expiry; for a de-registered entry, the deletion.
    pub expires_at: Instant,
    pub ordering: Ordering,
    /// Read with [`BindingCacheEntry::state`]; changed through [`BindingCache::set_state`],
    /// which counts the entries in each state.
    state: BindingState,
    /// Handoffs to another MAG since the session was created.
    pub handover_count: u32,
    last_handover_gap_ms: u32,
    /// The IPv4 home address, its subnet and default router (RFC 5844 §3.1.1). Set it
    /// before [`BindingCache::insert`], or through [`BindingCache::set_ipv4`].
    pub ipv4: Option<Ipv4HomeAddress>,
}

impl BindingCacheEntry {
    /// A new active entry.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        mn_id: MnId,
        prefixes: Prefixes,
        proxy_coa: Ipv6Addr,
        access_technology_type: AccessTechnologyType,
        handoff_indicator: HandoffIndicator,
        mn_link_layer_id: Option<LinkLayerAddress>,
        link_local_address: Option<Ipv6Addr>,
        lifetime_s: u32,
        now: Instant,
        ordering: Ordering,
    ) -> Self {
        BindingCacheEntry {
            mn_id,
            prefixes,
            proxy_coa,
            access_technology_type,
            handoff_indicator,
            mn_link_layer_id,
            link_local_address,
            lifetime_s,
            registered_at: now,
            updated_at: now,
            expires_at: now + Duration::from_secs(u64::from(lifetime_s)),
            ordering,
            state: BindingState::Active,
            handover_count: 0,
            last_handover_gap_ms: NO_GAP,
            ipv4: None,
        }
    }

    pub fn state(&self) -> BindingState {
        self.state
    }

    /// The entry in `state`, before [`BindingCache::insert`] (a restored one, say).
    pub fn with_state(mut self, state: BindingState) -> Self {
        self.state = state;
        self
    }

    /// The instant the entry's timer must fire: expiry, or the end of the de-registration wait.
    pub fn deadline(&self) -> Instant {
        self.expires_at
    }

    pub fn lifetime(&self) -> Duration {
        Duration::from_secs(u64::from(self.lifetime_s))
    }

    /// Signalling gap of the last handoff: from the old MAG's de-registration to the new
    /// MAG's registration, when the old MAG de-registered first.
    pub fn last_handover_gap(&self) -> Option<Duration> {
        (self.last_handover_gap_ms != NO_GAP)
            .then(|| Duration::from_millis(u64::from(self.last_handover_gap_ms)))
    }

    pub fn set_last_handover_gap(&mut self, gap: Option<Duration>) {
        self.last_handover_gap_ms = gap.map_or(NO_GAP, |g| {
            u32::try_from(g.as_millis())
                .unwrap_or(NO_GAP - 1)
                .min(NO_GAP - 1)
        });
    }
}

struct Slot {
    entry: Option<BindingCacheEntry>,
    /// Bumped whenever the slot's deadline changes or the slot is reused, so stale heap
    /// entries are recognised.
    generation: u32,
}

/// The binding cache.
pub struct BindingCache {
    slots: Vec<Slot>,
    free: Vec<u32>,
    len: usize,
    /// Entries in [`BindingState::Deregistering`].
    deregistering: usize,
    by_mn_id: HashTable<u32>,
    /// Slot indices, hashed by the entry's first prefix: nearly every session has one prefix,
    /// and a 4-byte value instead of 8 saves 8 bytes per binding at a million.
    by_prefix: HashTable<u32>,
    /// The other prefixes of multi-prefix sessions: slot index in the low 32 bits, position
    /// of the prefix in the entry above.
    by_other_prefix: HashTable<u64>,
    /// Slot indices of the entries with an IPv4 home address, hashed by it.
    by_ipv4: HashTable<u32>,
    hasher: FixedState,
    timers: BinaryHeap<Reverse<(Instant, u32, u32)>>,
}

impl core::fmt::Debug for BindingCache {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BindingCache")
            .field("len", &self.len)
            .finish()
    }
}

impl Default for BindingCache {
    fn default() -> Self {
        Self::new()
    }
}

impl BindingCache {
    /// A cache hashing with seed 0; see [`BindingCache::with_seed`].
    pub fn new() -> Self {
        Self::with_seed(0)
    }

    /// A cache whose indexes hash with `seed`. A daemon passes a random one, so that nobody
    /// who picks MN-IDs can aim them at one bucket.
    pub fn with_seed(seed: u64) -> Self {
        BindingCache {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
            deregistering: 0,
            by_mn_id: HashTable::new(),
            by_prefix: HashTable::new(),
            by_other_prefix: HashTable::new(),
            by_ipv4: HashTable::new(),
            hasher: FixedState::with_seed(seed),
            timers: BinaryHeap::new(),
        }
    }

    /// Pre-sizes the cache for `n` sessions.
    pub fn reserve(&mut self, n: usize) {
        self.slots.reserve(n);
        let (slots, h) = (&self.slots, &self.hasher);
        self.by_mn_id.reserve(n, |i| {
            entry_of(slots, *i).map_or(0, |e| h.hash_one(&*e.mn_id))
        });
        self.by_prefix
            .reserve(n, |i| rehash_prefix(slots, h, pack(*i, 0)));
        self.timers.reserve(n);
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sessions in [`BindingState::Active`], counted as states change, not by a walk.
    pub fn active(&self) -> usize {
        self.len - self.deregistering
    }

    /// Home network prefixes the sessions hold, all of them, from the prefix index's size.
    pub fn prefix_count(&self) -> usize {
        self.by_prefix.len() + self.by_other_prefix.len()
    }

    /// Changes a session's state, keeping [`BindingCache::active`] right. Re-arm its timer
    /// with [`BindingCache::reschedule`] when its deadline changes with it.
    pub fn set_state(&mut self, id: SessionId, state: BindingState) {
        let Some(e) = self
            .slots
            .get_mut(id.0 as usize)
            .and_then(|s| s.entry.as_mut())
        else {
            return;
        };
        match (e.state, state) {
            (BindingState::Active, BindingState::Deregistering) => self.deregistering += 1,
            (BindingState::Deregistering, BindingState::Active) => self.deregistering -= 1,
            _ => {}
        }
        e.state = state;
    }

    pub fn get(&self, id: SessionId) -> Option<&BindingCacheEntry> {
        entry_of(&self.slots, id.0)
    }

    /// Mutable access for fields that no index or timer depends on. Change prefixes or
    /// MN-ID through [`BindingCache::set_prefixes`], the IPv4 home address through
    /// [`BindingCache::set_ipv4`], deadlines through [`BindingCache::reschedule`].
    pub fn get_mut(&mut self, id: SessionId) -> Option<&mut BindingCacheEntry> {
        self.slots.get_mut(id.0 as usize)?.entry.as_mut()
    }

    /// Every session of a mobile node (more than one when it is multihomed).
    pub fn sessions_of<'a>(&'a self, mn_id: &'a str) -> impl Iterator<Item = SessionId> + 'a {
        let h = self.hasher.hash_one(mn_id);
        self.by_mn_id
            .iter_hash(h)
            .copied()
            .filter(move |i| entry_of(&self.slots, *i).is_some_and(|e| &*e.mn_id == mn_id))
            .map(SessionId)
    }

    /// The session holding `prefix`.
    pub fn by_prefix(&self, prefix: &Ipv6Net) -> Option<SessionId> {
        let h = self.hasher.hash_one(prefix);
        let first = self
            .by_prefix
            .find(h, |i| prefix_at(&self.slots, pack(*i, 0)) == Some(prefix))
            .copied();
        first
            .or_else(|| {
                (self.by_other_prefix)
                    .find(h, |v| prefix_at(&self.slots, *v) == Some(prefix))
                    .map(|v| *v as u32)
            })
            .map(SessionId)
    }

    /// The session holding IPv4 home address `addr` (RFC 5844 §3.1.2.7).
    pub fn by_ipv4(&self, addr: &Ipv4Addr) -> Option<SessionId> {
        let h = self.hasher.hash_one(addr);
        self.by_ipv4
            .find(h, |i| ipv4_at(&self.slots, *i) == Some(addr))
            .map(|i| SessionId(*i))
    }

    /// Sets (or clears) a session's IPv4 home address, keeping its index right. The address
    /// must not be held by another session.
    pub fn set_ipv4(&mut self, id: SessionId, ipv4: Option<Ipv4HomeAddress>) {
        let idx = id.0;
        let Some(old) = self
            .slots
            .get_mut(idx as usize)
            .and_then(|s| s.entry.as_mut())
            .map(|e| core::mem::replace(&mut e.ipv4, ipv4))
        else {
            return;
        };
        if let Some(old) = old {
            let h = self.hasher.hash_one(old.address);
            if let Ok(e) = self.by_ipv4.find_entry(h, |i| *i == idx) {
                e.remove();
            }
        }
        self.index_ipv4(idx);
    }

    fn index_ipv4(&mut self, idx: u32) {
        let Some(a) = ipv4_at(&self.slots, idx).copied() else {
            return;
        };
        let h = self.hasher.hash_one(a);
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.by_ipv4.insert_unique(h, idx, |i| {
            ipv4_at(slots, *i).map_or(0, |a| hasher.hash_one(a))
        });
    }

    /// The session whose home network prefix covers `addr` (a mobile node's address).
    pub fn by_address(&self, addr: &Ipv6Addr, prefix_len: u8) -> Option<SessionId> {
        let net = Ipv6Net::new(*addr, prefix_len).ok()?.trunc();
        self.by_prefix(&net)
    }

    /// Inserts a new session. Its prefixes must not be held by another session.
    pub fn insert(&mut self, entry: BindingCacheEntry) -> SessionId {
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    entry: None,
                    generation: 0,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let mn_hash = self.hasher.hash_one(&*entry.mn_id);
        let deadline = entry.deadline();
        self.deregistering += usize::from(entry.state == BindingState::Deregistering);
        let slot = &mut self.slots[idx as usize];
        slot.generation = slot.generation.wrapping_add(1);
        let generation = slot.generation;
        slot.entry = Some(entry);
        let (slots, h) = (&self.slots, &self.hasher);
        self.by_mn_id.insert_unique(mn_hash, idx, |i| {
            entry_of(slots, *i).map_or(0, |e| h.hash_one(&*e.mn_id))
        });
        self.index_prefixes(idx);
        self.index_ipv4(idx);
        self.timers.push(Reverse((deadline, idx, generation)));
        self.len += 1;
        SessionId(idx)
    }

    /// Removes a session and returns its entry.
    pub fn remove(&mut self, id: SessionId) -> Option<BindingCacheEntry> {
        let idx = id.0;
        let entry = self.slots.get_mut(idx as usize)?.entry.take()?;
        self.deregistering -= usize::from(entry.state == BindingState::Deregistering);
        let h = self.hasher.hash_one(&*entry.mn_id);
        if let Ok(e) = self.by_mn_id.find_entry(h, |i| *i == idx) {
            e.remove();
        }
        self.unindex_prefixes(idx, &entry.prefixes);
        if let Some(v4) = entry.ipv4 {
            let h = self.hasher.hash_one(v4.address);
            if let Ok(e) = self.by_ipv4.find_entry(h, |i| *i == idx) {
                e.remove();
            }
        }
        let slot = &mut self.slots[idx as usize];
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(idx);
        self.len -= 1;
        self.compact_timers();
        Some(entry)
    }

    /// Replaces a session's prefixes, keeping the prefix index right.
    pub fn set_prefixes(&mut self, id: SessionId, prefixes: Prefixes) {
        let idx = id.0;
        let Some(old) = self
            .slots
            .get_mut(idx as usize)
            .and_then(|s| s.entry.as_mut())
            .map(|e| core::mem::replace(&mut e.prefixes, prefixes))
        else {
            return;
        };
        self.unindex_prefixes(idx, &old);
        self.index_prefixes(idx);
    }

    /// Indexes the prefixes of the entry in slot `idx`.
    fn index_prefixes(&mut self, idx: u32) {
        let (slots, h) = (&self.slots, &self.hasher);
        let prefixes = entry_of(slots, idx).map_or(&[][..], |e| e.prefixes.as_slice());
        for (pos, p) in prefixes.iter().enumerate() {
            let ph = h.hash_one(p);
            if pos == 0 {
                (self.by_prefix).insert_unique(ph, idx, |i| rehash_prefix(slots, h, pack(*i, 0)));
            } else {
                (self.by_other_prefix)
                    .insert_unique(ph, pack(idx, pos), |v| rehash_prefix(slots, h, *v));
            }
        }
    }

    /// Removes the index entries of `prefixes`, which slot `idx` held.
    fn unindex_prefixes(&mut self, idx: u32, prefixes: &Prefixes) {
        for (pos, p) in prefixes.as_slice().iter().enumerate() {
            let h = self.hasher.hash_one(p);
            if pos == 0 {
                if let Ok(e) = self.by_prefix.find_entry(h, |i| *i == idx) {
                    e.remove();
                }
            } else if let Ok(e) = (self.by_other_prefix).find_entry(h, |v| *v == pack(idx, pos)) {
                e.remove();
            }
        }
    }

    /// Re-arms the session's timer after its `expires_at` or `state` changed.
    pub fn reschedule(&mut self, id: SessionId) {
        let Some(slot) = self.slots.get_mut(id.0 as usize) else {
            return;
        };
        let Some(deadline) = slot.entry.as_ref().map(BindingCacheEntry::deadline) else {
            return;
        };
        slot.generation = slot.generation.wrapping_add(1);
        self.timers.push(Reverse((deadline, id.0, slot.generation)));
        self.compact_timers();
    }

    /// The earliest pending deadline.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        self.drop_stale_timers();
        self.timers.peek().map(|Reverse((t, _, _))| *t)
    }

    /// Pops one session whose deadline is at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<SessionId> {
        self.drop_stale_timers();
        match self.timers.peek() {
            Some(Reverse((t, idx, _))) if *t <= now => {
                let idx = *idx;
                self.timers.pop();
                // The slot stays armed only through a new `reschedule`.
                if let Some(slot) = self.slots.get_mut(idx as usize) {
                    slot.generation = slot.generation.wrapping_add(1);
                }
                Some(SessionId(idx))
            }
            _ => None,
        }
    }

    fn drop_stale_timers(&mut self) {
        while let Some(Reverse((_, idx, generation))) = self.timers.peek() {
            let live = self
                .slots
                .get(*idx as usize)
                .is_some_and(|s| s.entry.is_some() && s.generation == *generation);
            if live {
                break;
            }
            self.timers.pop();
        }
    }

    /// Rebuilds the heap without stale entries when they outnumber live ones.
    fn compact_timers(&mut self) {
        if self.timers.len() <= 2 * self.len + 1024 {
            return;
        }
        let slots = &self.slots;
        self.timers.retain(|Reverse((_, idx, generation))| {
            slots
                .get(*idx as usize)
                .is_some_and(|s| s.entry.is_some() && s.generation == *generation)
        });
    }

    pub fn iter(&self) -> impl Iterator<Item = (SessionId, &BindingCacheEntry)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.entry.as_ref().map(|e| (SessionId(i as u32), e)))
    }

    /// Bytes of heap and inline storage the cache holds (capacity, not just length).
    pub fn memory_bytes(&self) -> usize {
        let slots = self.slots.capacity() * core::mem::size_of::<Slot>();
        let strings: usize = self.iter().map(|(_, e)| e.mn_id.heap_bytes()).sum();
        let many: usize = self
            .iter()
            .map(|(_, e)| match &e.prefixes {
                Prefixes::One(_) => 0,
                Prefixes::Many(v) => v.len() * core::mem::size_of::<Ipv6Net>(),
            })
            .sum();
        let tables = self.by_mn_id.allocation_size()
            + self.by_prefix.allocation_size()
            + self.by_other_prefix.allocation_size()
            + self.by_ipv4.allocation_size();
        let heap = self.timers.capacity() * core::mem::size_of::<Reverse<(Instant, u32, u32)>>();
        slots + strings + many + tables + heap + self.free.capacity() * 4
    }
}

fn entry_of(slots: &[Slot], i: u32) -> Option<&BindingCacheEntry> {
    slots.get(i as usize)?.entry.as_ref()
}

fn ipv4_at(slots: &[Slot], i: u32) -> Option<&Ipv4Addr> {
    entry_of(slots, i)?.ipv4.as_ref().map(|v| &v.address)
}

fn pack(idx: u32, pos: usize) -> u64 {
    u64::from(idx) | ((pos as u64) << 32)
}

/// The prefix a prefix-table value stands for.
fn prefix_at(slots: &[Slot], v: u64) -> Option<&Ipv6Net> {
    entry_of(slots, v as u32)?
        .prefixes
        .as_slice()
        .get((v >> 32) as usize)
}

fn rehash_prefix(slots: &[Slot], h: &FixedState, v: u64) -> u64 {
    prefix_at(slots, v).map_or(0, |p| h.hash_one(p))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;

    fn net(n: u32) -> Ipv6Net {
        let a = Ipv6Addr::new(0x2001, 0xdb8, (n >> 16) as u16, n as u16, 0, 0, 0, 0);
        Ipv6Net::new(a, 64).unwrap()
    }

    fn entry(mn_id: &str, prefixes: &[Ipv6Net]) -> BindingCacheEntry {
        BindingCacheEntry::new(
            mn_id.into(),
            Prefixes::from_slice(prefixes),
            Ipv6Addr::LOCALHOST,
            AccessTechnologyType::Ieee8023,
            HandoffIndicator::AttachmentOverNewInterface,
            None,
            None,
            3600,
            Instant::ZERO,
            Ordering::new(None, SequenceNumber(0)),
        )
    }

    #[test]
    fn an_mn_id_is_kept_inline_up_to_its_limit_and_reads_back_the_same() {
        let short = "a".repeat(MnId::INLINE);
        let long = "b".repeat(MnId::INLINE + 1);
        for (s, heap) in [("", 0), (short.as_str(), 0), (long.as_str(), long.len())] {
            for id in [
                MnId::from(s),
                MnId::from(s.to_owned()),
                MnId::from(Box::from(s)),
            ] {
                assert_eq!(id.as_str(), s);
                assert_eq!(id.heap_bytes(), heap);
                assert_eq!(id, MnId::new(s));
                let h = FixedState::with_seed(7);
                assert_eq!(h.hash_one(&id), h.hash_one(s), "hashes as its str");
            }
        }
        let nai = "node0000000@bench.example";
        assert_eq!(MnId::from(nai).heap_bytes(), 0);
        assert_eq!(MnId::from("ü@example.org").to_string(), "ü@example.org");
        assert_ne!(MnId::from("a@x"), MnId::from("b@x"));
        assert_eq!(core::mem::size_of::<MnId>(), 32);
    }

    /// Sessions of one, two and three prefixes, enough of them for the indexes to grow
    /// (and rehash) several times: every prefix finds its session, before and after some are
    /// removed and some renumbered.
    #[test]
    fn every_prefix_finds_its_session_through_growth_removal_and_renumbering() {
        let mut c = BindingCache::with_seed(3);
        let mut next = 0u32;
        let mut sessions = Vec::new();
        for i in 0..3000u32 {
            let n = 1 + (i % 3);
            let ps: Vec<Ipv6Net> = (0..n).map(|k| net(next + k)).collect();
            next += n;
            let id = c.insert(entry(&format!("mn{i}@example.org"), &ps));
            sessions.push((id, ps));
        }
        let check = |c: &BindingCache, sessions: &[(SessionId, Vec<Ipv6Net>)]| {
            for (id, ps) in sessions {
                for p in ps {
                    assert_eq!(c.by_prefix(p), Some(*id), "{p}");
                }
            }
        };
        check(&c, &sessions);
        let removed: Vec<_> = sessions.drain(..1000).collect();
        for (id, ps) in &removed {
            assert!(c.remove(*id).is_some());
            for p in ps {
                assert_eq!(c.by_prefix(p), None);
            }
        }
        for (id, ps) in sessions.iter_mut().step_by(7) {
            let old = core::mem::take(ps);
            *ps = (0..3).map(|k| net(next + k)).collect();
            next += 3;
            c.set_prefixes(*id, Prefixes::from_slice(ps));
            for p in &old {
                assert_eq!(c.by_prefix(p), None);
            }
        }
        check(&c, &sessions);
        assert_eq!(c.len(), 2000);
        assert_eq!(c.sessions_of("mn2999@example.org").count(), 1);
    }
    proptest::proptest! {
        /// The counts the Stats RPC reads stay what a walk of the cache finds, whatever
        /// sessions come, change state or prefixes, and go.
        #[test]
        fn counts_match_a_walk(ops in proptest::collection::vec((0u8..4, 0u32..40, 0usize..4), 0..200)) {
            let mut c = BindingCache::new();
            let mut ids: Vec<SessionId> = Vec::new();
            let mut next = 0u32;
            for (op, pick, n) in ops {
                let at = (pick as usize) % ids.len().max(1);
                match op {
                    0 => {
                        let ps: Vec<Ipv6Net> = (0..n as u32).map(|k| net(next * 8 + k)).collect();
                        let e = entry(&format!("mn{next}"), &ps);
                        let e = if pick % 2 == 0 { e } else { e.with_state(BindingState::Deregistering) };
                        ids.push(c.insert(e));
                        next += 1;
                    }
                    1 if !ids.is_empty() => {
                        c.remove(ids.swap_remove(at));
                    }
                    2 if !ids.is_empty() => {
                        let s = if n % 2 == 0 { BindingState::Active } else { BindingState::Deregistering };
                        c.set_state(ids[at], s);
                    }
                    3 if !ids.is_empty() => {
                        let ps: Vec<Ipv6Net> = (0..n as u32).map(|k| net(next * 8 + k)).collect();
                        next += 1;
                        c.set_prefixes(ids[at], Prefixes::from_slice(&ps));
                    }
                    _ => {}
                }
                let active = c.iter().filter(|(_, e)| e.state() == BindingState::Active).count();
                let prefixes: usize = c.iter().map(|(_, e)| e.prefixes.as_slice().len()).sum();
                proptest::prop_assert_eq!(c.active(), active);
                proptest::prop_assert_eq!(c.prefix_count(), prefixes);
                proptest::prop_assert_eq!(c.len(), ids.len());
            }
        }
    }
}
