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

#[cfg(test)]
mod tests {
    use super::*;

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
