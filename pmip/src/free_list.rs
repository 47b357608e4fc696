//! What an address pool (the prefix and IPv4 home address allocators) has handed out: a
//! cursor below which every index was, the indices claimed ahead of it, and the released ones,
//! oldest first, with membership in constant time.
//!
//! A queue alone made every release and every claim a scan of it: a million bindings ending
//! at once (their MAG revoked, every lifetime run out while the LMA was down) took the queue's
//! length times a million steps. Here a set says what is free; the queue keeps the order, and
//! an index claimed out of it stays there, stale, until it reaches the front.

use core::hash::Hash;
use core::ops::Add;
use std::collections::{BTreeSet, VecDeque};

use foldhash::fast::FixedState;
use hashbrown::HashMap;

#[derive(Debug, Clone)]
pub(crate) struct FreeList<T> {
    /// Released indices in the order they were released, each with the number of its
    /// release; an entry whose number is not the index's in `free` is stale (claimed since,
    /// perhaps released again further back).
    order: VecDeque<(T, u64)>,
    /// The indices that are free, with the number of the release that freed them.
    free: HashMap<T, u64, FixedState>,
    releases: u64,
}

impl<T: Copy + Eq + Hash> Default for FreeList<T> {
    fn default() -> Self {
        FreeList {
            order: VecDeque::new(),
            free: HashMap::with_hasher(FixedState::with_seed(0)),
            releases: 0,
        }
    }
}

impl<T: Copy + Eq + Hash> FreeList<T> {
    /// How many indices are free.
    pub(crate) fn len(&self) -> usize {
        self.free.len()
    }

    /// `i` is free again (released); freeing a free index changes nothing.
    pub(crate) fn push(&mut self, i: T) {
        if let hashbrown::hash_map::Entry::Vacant(v) = self.free.entry(i) {
            self.releases += 1;
            v.insert(self.releases);
            self.order.push_back((i, self.releases));
        }
    }

    /// `i` is in use again (claimed); not free anyway changes nothing.
    pub(crate) fn remove(&mut self, i: &T) {
        if self.free.remove(i).is_some() && self.order.len() > 2 * self.free.len() + 64 {
            // More stale entries than live ones: drop them (amortized over the claims).
            let free = &self.free;
            self.order.retain(|(i, n)| free.get(i) == Some(n));
        }
    }

    /// The free index released longest ago, now in use.
    pub(crate) fn pop_oldest(&mut self) -> Option<T> {
        while let Some((i, n)) = self.order.pop_front() {
            if self.free.get(&i) == Some(&n) {
                self.free.remove(&i);
                return Some(i);
            }
        }
        None
    }

    /// Heap bytes it holds.
    pub(crate) fn heap_bytes(&self) -> usize {
        let entry = core::mem::size_of::<(T, u64)>();
        self.order.capacity() * entry + self.free.capacity() * (entry + 1)
    }
}

/// The indices of a pool in use: those below `next` (handed out in order) but the `free`
/// ones, and the ones `claimed_ahead` of it (restored bindings, requested addresses).
#[derive(Debug, Clone)]
pub(crate) struct Issued<T> {
    /// The next never-handed-out index.
    pub(crate) next: T,
    /// Indices at or above `next` that are in use.
    pub(crate) claimed_ahead: BTreeSet<T>,
    /// Released indices below `next`.
    pub(crate) free: FreeList<T>,
}

impl<T: Copy + Ord + Hash + Add<Output = T> + From<u8>> Issued<T> {
    pub(crate) fn starting_at(next: T) -> Self {
        Issued {
            next,
            claimed_ahead: BTreeSet::new(),
            free: FreeList::default(),
        }
    }

    /// `i` is in use. A claim at `next` moves `next` past it and past the claims ahead that
    /// follow it: they are in use as if handed out, and a million restored bindings leave no
    /// set of a million claims behind for the next allocation to walk through.
    pub(crate) fn claim(&mut self, i: T) {
        let one = T::from(1);
        if i == self.next {
            self.next = self.next + one;
            while self.claimed_ahead.first() == Some(&self.next) {
                self.claimed_ahead.pop_first();
                self.next = self.next + one;
            }
        } else if i > self.next {
            self.claimed_ahead.insert(i);
        } else {
            self.free.remove(&i);
        }
    }

    /// `i` is free again; one at or above `next` was never handed out and will be when
    /// `next` reaches it.
    pub(crate) fn release(&mut self, i: T) {
        if i >= self.next {
            self.claimed_ahead.remove(&i);
        } else {
            self.free.push(i);
        }
    }

    /// Heap bytes it holds.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.free.heap_bytes() + self.claimed_ahead.len() * 24
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_first_once_each_and_claimed_ones_skipped() {
        let mut f = FreeList::default();
        for i in [5u32, 3, 9, 3, 7] {
            f.push(i);
        }
        assert_eq!(f.len(), 4);
        f.remove(&9);
        f.remove(&42);
        assert_eq!(f.len(), 3);
        // 9 released again after its claim: it goes behind the others.
        f.push(9);
        let got: Vec<u32> = std::iter::from_fn(|| f.pop_oldest()).collect();
        assert_eq!(got, [5, 3, 7, 9]);
        assert_eq!(f.len(), 0);
    }

    #[test]
    fn a_million_releases_and_claims_take_linear_time() {
        // What a scan per release made quadratic: here well under a second in a debug build.
        let mut f = FreeList::default();
        let n = 1_000_000u64;
        for i in 0..n {
            f.push(i);
        }
        for i in (0..n).step_by(2) {
            f.remove(&i);
        }
        assert_eq!(f.len(), (n / 2) as usize);
        assert_eq!(f.pop_oldest(), Some(1));
        assert!(f.order.len() <= 2 * f.len() + 64 + 1);
    }

    proptest::proptest! {
        /// The same as a plain queue with a scan, whatever the operations.
        #[test]
        fn behaves_as_a_queue_without_duplicates(ops in proptest::collection::vec((0u8..3, 0u16..64), 0..400)) {
            let mut f = FreeList::default();
            let mut model: VecDeque<u16> = VecDeque::new();
            for (op, i) in ops {
                match op {
                    0 => {
                        f.push(i);
                        if !model.contains(&i) {
                            model.push_back(i);
                        }
                    }
                    1 => {
                        f.remove(&i);
                        model.retain(|x| *x != i);
                    }
                    _ => proptest::prop_assert_eq!(f.pop_oldest(), model.pop_front()),
                }
                proptest::prop_assert_eq!(f.len(), model.len());
            }
        }
    }
}
