//! Sequence numbers of Binding Updates and their acknowledgements: 16-bit counters compared
//! modulo 2^16 (RFC 6275 §9.5.1). A number is "newer" than another when it lies within the
//! following 32768 values; the window, not a plain `>`, is what keeps a wrapped counter from
//! being taken as a replay (the MAD-PMIPv6 bug listed in CONSTANTS.md §9).

use core::cmp::Ordering;

/// A 16-bit sequence number with RFC 6275 §9.5.1 ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SequenceNumber(pub u16);

impl SequenceNumber {
    /// True when `self` is newer than `other`: it lies within the 32767 values after it.
    pub fn is_newer_than(self, other: SequenceNumber) -> bool {
        let d = self.0.wrapping_sub(other.0);
        d != 0 && d < 0x8000
    }

    pub fn next(self) -> SequenceNumber {
        SequenceNumber(self.0.wrapping_add(1))
    }
}

impl PartialOrd for SequenceNumber {
    /// Modulo-2^16 order. Numbers exactly 32768 apart are not comparable.
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        if self.0 == other.0 {
            Some(Ordering::Equal)
        } else if self.is_newer_than(*other) {
            Some(Ordering::Greater)
        } else if other.is_newer_than(*self) {
            Some(Ordering::Less)
        } else {
            None
        }
    }
}

impl From<u16> for SequenceNumber {
    fn from(v: u16) -> Self {
        SequenceNumber(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc_example() {
        // RFC 6275 §9.5.1: with 15 last received, 0..=15 and 32783..=65535 are not newer.
        let last = SequenceNumber(15);
        for v in (0..=15u16).chain(32783..=65535) {
            assert!(!SequenceNumber(v).is_newer_than(last), "{v}");
        }
        for v in 16..32783u16 {
            assert!(SequenceNumber(v).is_newer_than(last), "{v}");
        }
    }

    #[test]
    fn wraps() {
        assert!(SequenceNumber(0).is_newer_than(SequenceNumber(65535)));
        assert!(SequenceNumber(65535).next() == SequenceNumber(0));
        assert!(SequenceNumber(3) > SequenceNumber(65000));
    }

    proptest! {
        #[test]
        fn newer_is_antisymmetric(a: u16, b: u16) {
            let (a, b) = (SequenceNumber(a), SequenceNumber(b));
            prop_assert!(!(a.is_newer_than(b) && b.is_newer_than(a)));
        }

        #[test]
        fn successor_is_newer(a: u16, k in 1u16..0x8000) {
            let a = SequenceNumber(a);
            prop_assert!(SequenceNumber(a.0.wrapping_add(k)).is_newer_than(a));
        }
    }
}
