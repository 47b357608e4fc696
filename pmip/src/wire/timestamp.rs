//! The Timestamp option's value (RFC 5213 §8.8): seconds since 1970-01-01 00:00 UTC in 64-bit
//! fixed point, 48 bits of whole seconds and 16 bits of 1/65536 fractions.
//!
//! The wall-clock time is always passed in by the caller; nothing here reads a clock.

use core::time::Duration;

/// A wall-clock instant: time elapsed since the Unix epoch, as the caller's clock says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct WallClock(pub Duration);

impl WallClock {
    pub const fn from_unix(secs: u64, nanos: u32) -> Self {
        WallClock(Duration::new(secs, nanos))
    }

    pub fn since_epoch(self) -> Duration {
        self.0
    }
}

impl core::ops::Add<Duration> for WallClock {
    type Output = WallClock;
    fn add(self, d: Duration) -> WallClock {
        WallClock(self.0.saturating_add(d))
    }
}

/// RFC 5213 §8.8 timestamp, kept in its wire form so that what is echoed back in a PBA is
/// bit-for-bit what the PBU carried (§5.5 rule 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

const FRACTION_BITS: u32 = 16;
const MAX_SECONDS: u64 = (1 << 48) - 1;

impl Timestamp {
    /// The timestamp of a wall-clock instant, truncated to 1/65536 s. Instants past the
    /// 48-bit range saturate.
    pub fn from_wall_clock(t: WallClock) -> Self {
        let secs = t.0.as_secs().min(MAX_SECONDS);
        let frac = (u64::from(t.0.subsec_nanos()) << FRACTION_BITS) / 1_000_000_000;
        Timestamp((secs << FRACTION_BITS) | frac)
    }

    /// The wall-clock instant this timestamp names, rounded up to the nanosecond so that
    /// converting it back gives the same timestamp.
    pub fn to_wall_clock(self) -> WallClock {
        let secs = self.seconds();
        let nanos = (u64::from(self.fraction()) * 1_000_000_000).div_ceil(1 << FRACTION_BITS);
        WallClock(Duration::new(secs, nanos as u32))
    }

    /// Whole seconds since the epoch (48 bits).
    pub fn seconds(self) -> u64 {
        self.0 >> FRACTION_BITS
    }

    /// 1/65536 fractions of a second.
    pub fn fraction(self) -> u16 {
        (self.0 & 0xffff) as u16
    }

    /// |self - other|, for the TimestampValidityWindow check (RFC 5213 §5.5 rule 6).
    pub fn abs_diff(self, other: Timestamp) -> Duration {
        let units = self.0.abs_diff(other.0);
        let secs = units >> FRACTION_BITS;
        let nanos = ((units & 0xffff) * 1_000_000_000) >> FRACTION_BITS;
        Duration::new(secs, nanos as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fixed_point_layout() {
        let t = Timestamp::from_wall_clock(WallClock::from_unix(0x1234_5678, 500_000_000));
        assert_eq!(t.seconds(), 0x1234_5678);
        assert_eq!(t.fraction(), 0x8000);
        assert_eq!(t.0, 0x1234_5678_8000);
        assert_eq!(
            t.abs_diff(Timestamp::from_wall_clock(WallClock::from_unix(
                0x1234_5678,
                200_000_000
            ))),
            // 0.2 s is 13107.2 units and truncates to 13107: 19661 units apart.
            Duration::from_nanos(300_003_051)
        );
    }

    proptest! {
        #[test]
        fn wall_clock_round_trip_within_one_unit(secs in 0u64..(1 << 40), nanos in 0u32..1_000_000_000) {
            let w = WallClock::from_unix(secs, nanos);
            let back = Timestamp::from_wall_clock(w).to_wall_clock();
            prop_assert!(back <= w);
            prop_assert!(w.0 - back.0 < Duration::from_nanos(15_259));
            prop_assert_eq!(Timestamp::from_wall_clock(back), Timestamp::from_wall_clock(w));
        }
    }
}
