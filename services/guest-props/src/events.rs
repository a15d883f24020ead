//! The queue of recent changes that GET_NOTIFICATION serves from.
//!
//! Every successful change is appended as an [`Event`]; the queue keeps the newest `capacity`
//! events and drops the oldest. Event timestamps are strictly increasing inside the queue (an
//! event that would not be newer than its predecessor is dated one nanosecond after it), because
//! a guest names its place in the queue by the timestamp of the last event it saw.
//!
//! [`EventQueue::find_after`] implements the lookup of reference §7.2: the first matching event
//! after the guest's timestamp if that timestamp is in the queue, otherwise the first matching
//! event from the start of the queue, flagged as "you may have missed changes".

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use vmmdev_protocol::services::guest_props::PropertyFlags;

use crate::store::{Change, render_flags};

/// One change as waiters see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The property's name.
    pub name: String,
    /// The new value; `None` for a deletion.
    pub value: Option<String>,
    /// The new flags in text form (empty for a deletion).
    pub flags: String,
    /// The event's timestamp (unique in the queue).
    pub timestamp: u64,
}

impl Event {
    /// The event describing `change`.
    pub fn of(change: &Change) -> Self {
        match change {
            Change::Set(property) => Event {
                name: property.name.clone(),
                value: Some(property.value.clone()),
                flags: property.flags_text(),
                timestamp: property.timestamp,
            },
            Change::Delete { name, timestamp } => Event {
                name: name.clone(),
                value: None,
                flags: render_flags(PropertyFlags::NILFLAG),
                timestamp: *timestamp,
            },
        }
    }

    /// Whether this is a deletion.
    pub fn is_deletion(&self) -> bool {
        self.value.is_none()
    }
}

/// Where a looked-up event came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// The guest's timestamp was in the queue: nothing was missed.
    Known,
    /// The guest's timestamp was not in the queue (events were dropped, or it is garbage):
    /// the guest may have missed changes (`VWRN_NOT_FOUND`).
    Unknown,
}

/// The bounded FIFO of recent events.
#[derive(Clone, Debug)]
pub struct EventQueue {
    events: VecDeque<Event>,
    capacity: usize,
}

impl EventQueue {
    /// An empty queue keeping at most `capacity` events (at least one).
    pub fn new(capacity: usize) -> Self {
        EventQueue {
            events: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Appends `event`, dating it after the newest queued event if needed, and drops the oldest
    /// event beyond the capacity. Returns the event as queued.
    pub fn push(&mut self, mut event: Event) -> Event {
        if let Some(last) = self.events.back() {
            if event.timestamp <= last.timestamp {
                event.timestamp = last.timestamp.saturating_add(1);
            }
        }
        while self.events.len() >= self.capacity {
            self.events.pop_front();
        }
        self.events.push_back(event.clone());
        event
    }

    /// The queued event with this timestamp.
    pub fn get(&self, timestamp: u64) -> Option<&Event> {
        self.index_of(timestamp).and_then(|i| self.events.get(i))
    }

    fn index_of(&self, timestamp: u64) -> Option<usize> {
        self.events
            .binary_search_by_key(&timestamp, |e| e.timestamp)
            .ok()
    }

    /// The lookup for a GET_NOTIFICATION with a non-zero `timestamp`: the position status and,
    /// if one exists, the first event `wanted` accepts after the guest's place.
    pub fn find_after(
        &self,
        timestamp: u64,
        wanted: impl Fn(&Event) -> bool,
    ) -> (Position, Option<&Event>) {
        let (position, start) = match self.index_of(timestamp) {
            Some(index) => (Position::Known, index + 1),
            None => (Position::Unknown, 0),
        };
        let found = self.events.iter().skip(start).find(|e| wanted(e));
        (position, found)
    }

    /// The queued events, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Event> {
        self.events.iter()
    }

    /// Replaces the contents (after a restore), keeping the newest `capacity` events that are
    /// in strictly increasing timestamp order.
    pub fn replace(&mut self, events: Vec<Event>) {
        self.events.clear();
        for event in events {
            if self
                .events
                .back()
                .is_none_or(|last| last.timestamp < event.timestamp)
            {
                self.push(event);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, timestamp: u64) -> Event {
        Event {
            name: name.into(),
            value: Some("v".into()),
            flags: String::new(),
            timestamp,
        }
    }

    fn queue(events: &[(&str, u64)]) -> EventQueue {
        let mut q = EventQueue::new(256);
        for (name, ts) in events {
            q.push(event(name, *ts));
        }
        q
    }

    #[test]
    fn event_with_a_stale_timestamp_is_dated_after_the_previous_one() {
        let mut q = EventQueue::new(8);
        q.push(event("/a", 10));
        assert_eq!(q.push(event("/b", 10)).timestamp, 11);
        assert_eq!(q.push(event("/c", 5)).timestamp, 12);
    }

    #[test]
    fn oldest_events_are_dropped_beyond_capacity() {
        let mut q = EventQueue::new(2);
        for ts in 1..=3 {
            q.push(event("/a", ts));
        }
        let kept: Vec<u64> = q.iter().map(|e| e.timestamp).collect();
        assert_eq!(kept, [2, 3]);
    }

    #[test]
    fn known_timestamp_finds_the_next_matching_event() {
        let q = queue(&[("/a", 1), ("/b", 2), ("/a", 3)]);
        let (position, found) = q.find_after(1, |e| e.name == "/a");
        assert_eq!(position, Position::Known);
        assert_eq!(found.map(|e| e.timestamp), Some(3));
    }

    #[test]
    fn known_timestamp_without_newer_match_finds_nothing() {
        let q = queue(&[("/a", 1), ("/b", 2)]);
        let (position, found) = q.find_after(1, |e| e.name == "/a");
        assert_eq!(position, Position::Known);
        assert_eq!(found, None);
    }

    #[test]
    fn unknown_timestamp_searches_from_the_start() {
        let q = queue(&[("/a", 10), ("/b", 20)]);
        let (position, found) = q.find_after(15, |e| e.name == "/a");
        assert_eq!(position, Position::Unknown);
        assert_eq!(found.map(|e| e.timestamp), Some(10));
    }

    #[test]
    fn dropped_timestamp_is_unknown() {
        let mut q = EventQueue::new(2);
        for ts in 1..=3 {
            q.push(event("/a", ts));
        }
        let (position, found) = q.find_after(1, |_| true);
        assert_eq!(position, Position::Unknown);
        assert_eq!(found.map(|e| e.timestamp), Some(2));
    }

    #[test]
    fn deletion_event_has_no_value_and_no_flags() {
        let e = Event::of(&Change::Delete {
            name: "/a".into(),
            timestamp: 7,
        });
        assert!(e.is_deletion());
        assert_eq!(e.flags, "");
        assert_eq!(e.timestamp, 7);
    }

    #[test]
    fn replace_keeps_only_increasing_events_within_capacity() {
        let mut q = EventQueue::new(2);
        q.replace(vec![
            event("/a", 1),
            event("/b", 5),
            event("/c", 3),
            event("/d", 9),
        ]);
        let kept: Vec<&str> = q.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(kept, ["/b", "/d"]);
    }
}
