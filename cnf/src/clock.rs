//! The OS clocks, mapped onto the protocol's: a monotonic [`pmip::Instant`] counted from the
//! daemon's start, and the wall clock the Timestamp option needs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pmip::Instant;
use pmip::wire::WallClock;

/// The daemon's clocks.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: std::time::Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    pub fn new() -> Self {
        Clock {
            origin: std::time::Instant::now(),
        }
    }

    /// Monotonic time since the daemon started (plus one second, so that zero never occurs).
    pub fn now(&self) -> Instant {
        Instant::from_duration(self.origin.elapsed() + Duration::from_secs(1))
    }

    /// The wall clock.
    pub fn wall(&self) -> WallClock {
        WallClock(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        )
    }

    /// The OS instant of a protocol instant, for timers.
    pub fn to_std(&self, t: Instant) -> std::time::Instant {
        let since = Duration::from_nanos(t.as_nanos()).saturating_sub(Duration::from_secs(1));
        self.origin + since
    }

    /// Sleeps until the protocol instant `t`, or forever without one: a state machine's
    /// `poll_timeout()` as a future.
    pub fn sleep_until(&self, t: Option<Instant>) -> impl std::future::Future<Output = ()> + use<> {
        let at = t.map(|t| self.to_std(t));
        async move {
            match at {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        }
    }
}

/// The (monotonic, wall) pair a daemon writes the times of its bindings with (registered,
/// updated, expires): the monotonic time rounded up to the millisecond (so that every past
/// instant is converted the same way), and the wall clock as the offset
/// between the two clocks, kept from one call to the next, plus that. A binding's times then
/// read the same at every call: two clocks read one after the other, or NTP slewing one of
/// them, would move them by a millisecond now and then. The offset is read again when the
/// wall clock was stepped (a second or more away from it).
#[derive(Debug, Default)]
pub struct ShownTime {
    /// Wall-clock milliseconds at monotonic zero; `None` until the first call.
    offset_ms: std::cell::Cell<Option<i128>>,
}

/// How far the wall clock may drift from the kept offset before it is read again.
const STEP_MS: i128 = 1000;

impl ShownTime {
    pub fn new() -> Self {
        Self::default()
    }

    /// The pair to use for `now` and `wall` read from the OS a moment ago.
    pub fn at(&self, now: Instant, wall: WallClock) -> (Instant, WallClock) {
        let now_ms = now.as_nanos().div_ceil(1_000_000);
        let wall_ms = wall.since_epoch().as_millis() as i128;
        let offset = wall_ms - i128::from(now_ms);
        let kept = match self.offset_ms.get() {
            Some(k) if (offset - k).abs() < STEP_MS => k,
            _ => {
                self.offset_ms.set(Some(offset));
                offset
            }
        };
        let shown = u64::try_from(kept + i128::from(now_ms)).unwrap_or(0);
        (
            Instant::from_nanos(now_ms * 1_000_000),
            WallClock(Duration::from_millis(shown)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_times_do_not_wobble_and_follow_a_step() {
        let s = ShownTime::new();
        let wall = |ms: u64| WallClock(Duration::from_millis(1_700_000_000_000 + ms));
        let at = |ns: u64| Instant::from_nanos(ns);
        // The wall clock read 0.7 ms after the monotonic one, then 0.2 ms before.
        let (n1, w1) = s.at(at(5_000_400_000), wall(5_001));
        let (n2, w2) = s.at(at(9_000_900_000), wall(9_000));
        // (Both offsets are within a second of each other: the first is kept.)
        assert_eq!(n1, at(5_001_000_000));
        assert_eq!(n2, at(9_001_000_000));
        // The same offset both times: a time worked out from either pair is the same.
        assert_eq!(w2.since_epoch() - w1.since_epoch(), Duration::from_secs(4));
        // A step of the wall clock by a minute is followed.
        let (_, w3) = s.at(at(10_000_000_000), wall(70_000));
        assert_eq!(
            w3.since_epoch(),
            Duration::from_millis(1_700_000_000_000 + 70_000)
        );
    }

    #[test]
    fn round_trips_through_the_os_clock() {
        let c = Clock::new();
        let t = c.now();
        let back = c.to_std(t);
        let again = Instant::from_duration(back - c.origin + Duration::from_secs(1));
        assert_eq!(t, again);
        assert!(c.wall().since_epoch() > Duration::from_secs(1_700_000_000));
    }
}
