//! Property timestamps: nanoseconds since the Unix epoch from the host's wall clock, made strictly
//! increasing.
//!
//! Guests see timestamps on GET_PROP, ENUM_PROPS and GET_NOTIFICATION, and the notification
//! protocol finds its place in the event queue by timestamp, so two changes must never share
//! one. VirtualBox nudges a timestamp that did not advance to `previous + 1`; this clock always
//! does, so the sequence it hands out is strictly increasing even across a backwards step of the
//! wall clock (it then advances by one nanosecond per change until the wall clock catches up).

use std::time::{SystemTime, UNIX_EPOCH};

/// The wall clock as nanoseconds since the epoch (0 if the clock is before it).
pub fn wall_clock_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Hands out strictly increasing timestamps.
#[derive(Debug)]
pub struct Clock {
    source: fn() -> u64,
    last: u64,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new(wall_clock_ns)
    }
}

impl Clock {
    /// A clock reading `source` (nanoseconds since the epoch).
    pub fn new(source: fn() -> u64) -> Self {
        Clock { source, last: 0 }
    }

    /// The next timestamp: the source's time, or one more than the previous timestamp if the
    /// source has not moved past it.
    pub fn now(&mut self) -> u64 {
        let now = (self.source)().max(self.last.saturating_add(1));
        self.last = now;
        now
    }

    /// Makes every later timestamp larger than `timestamp` (after a restore).
    pub fn advance_past(&mut self, timestamp: u64) {
        self.last = self.last.max(timestamp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frozen() -> u64 {
        1_000
    }

    #[test]
    fn wall_clock_is_after_2020() {
        assert!(wall_clock_ns() > 1_577_836_800_000_000_000);
    }

    #[test]
    fn timestamps_follow_the_source() {
        let mut clock = Clock::default();
        let before = wall_clock_ns();
        let stamp = clock.now();
        assert!(stamp >= before && stamp <= wall_clock_ns());
    }

    #[test]
    fn frozen_source_still_gives_distinct_increasing_timestamps() {
        let mut clock = Clock::new(frozen);
        assert_eq!(clock.now(), 1_000);
        assert_eq!(clock.now(), 1_001);
        assert_eq!(clock.now(), 1_002);
    }

    #[test]
    fn advance_past_keeps_later_timestamps_above_it() {
        let mut clock = Clock::new(frozen);
        clock.advance_past(5_000);
        assert_eq!(clock.now(), 5_001);
    }

    #[test]
    fn advance_past_an_older_timestamp_changes_nothing() {
        let mut clock = Clock::new(frozen);
        clock.now();
        clock.advance_past(10);
        assert_eq!(clock.now(), 1_001);
    }
}
