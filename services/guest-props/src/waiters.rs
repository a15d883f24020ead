//! Parked GET_NOTIFICATION calls, and the memory that makes the buffer-overflow retry lossless.
//!
//! A wait is parked when no suitable event is queued yet. Before parking, the client's existing
//! waits with the identical pattern string, and those its guest has cancelled, are taken out
//! (VirtualBox completes them with `VERR_INTERRUPTED`: a client that re-issues a wait has
//! abandoned the old one); then the per-client limit applies. When an event is queued, every
//! parked wait that accepts it is taken out, in parking order, and completed with it.
//!
//! The list is generic over the held call so that its rules are testable without a framework.
//!
//! # Lossless overflow retry
//!
//! When the event written to a waiter does not fit its buffer, the guest gets
//! `VERR_BUFFER_OVERFLOW` with the needed size and the event's timestamp, and retries with a
//! bigger buffer. VirtualBox's guest library retries with the *input* timestamp it used before;
//! if that was 0 ("only new events"), VirtualBox's service would wait for the next event and the
//! one that overflowed would be lost. [`OverflowMemory`] remembers, per client and pattern
//! string, the event that overflowed; the client's next GET_NOTIFICATION with the same patterns
//! and timestamp 0 (or the overflowed event's own timestamp, which a guest may pass by mistake)
//! gets that event again at once. Any other timestamp is served normally, which finds the same
//! event anyway.

use vmmdev_hgcm_sdk::{ClientId, Requestor};
use vmmdev_protocol::status::Status;

use crate::pattern::PatternList;

/// One parked wait.
#[derive(Debug)]
pub struct Waiter<C> {
    /// The calling client.
    pub client: ClientId,
    /// The requestor of the call (for the read policy).
    pub requestor: Requestor,
    /// Which names it waits for.
    pub patterns: PatternList,
    /// The status to complete it with on delivery (`VINF_SUCCESS`, or `VWRN_NOT_FOUND` if its
    /// timestamp was not in the queue).
    pub status: Status,
    /// The held call.
    pub call: C,
}

/// What parking a wait did.
#[derive(Debug)]
pub struct Parking<C> {
    /// The client's calls taken out because the new wait supersedes them or they were
    /// cancelled; to be completed with `VERR_INTERRUPTED`.
    pub superseded: Vec<C>,
    /// The new wait, given back because its client is at the limit.
    pub refused: Option<Waiter<C>>,
}

/// The parked waits, in parking order.
#[derive(Debug)]
pub struct Waiters<C> {
    parked: Vec<Waiter<C>>,
    per_client_limit: usize,
}

impl<C> Waiters<C> {
    /// An empty list allowing `per_client_limit` waits per client.
    pub fn new(per_client_limit: usize) -> Self {
        Waiters {
            parked: Vec::new(),
            per_client_limit,
        }
    }

    /// Number of parked waits.
    pub fn len(&self) -> usize {
        self.parked.len()
    }

    /// Takes out the client's waits that `waiter` supersedes (identical pattern string) or that
    /// were cancelled, then parks `waiter` unless the client is at its limit.
    pub fn park(&mut self, waiter: Waiter<C>, is_cancelled: impl Fn(&C) -> bool) -> Parking<C> {
        let superseded = self
            .take(|w| {
                w.client == waiter.client
                    && (w.patterns == waiter.patterns || is_cancelled(&w.call))
            })
            .into_iter()
            .map(|w| w.call)
            .collect();
        let held = self
            .parked
            .iter()
            .filter(|w| w.client == waiter.client)
            .count();
        if held >= self.per_client_limit {
            return Parking {
                superseded,
                refused: Some(waiter),
            };
        }
        self.parked.push(waiter);
        Parking {
            superseded,
            refused: None,
        }
    }

    /// Takes out every wait `pick` selects, keeping parking order in both lists.
    pub fn take(&mut self, pick: impl Fn(&Waiter<C>) -> bool) -> Vec<Waiter<C>> {
        let (taken, kept) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|w| pick(w));
        self.parked = kept;
        taken
    }

    /// Takes out every wait of `client`.
    pub fn take_client(&mut self, client: ClientId) -> Vec<Waiter<C>> {
        self.take(|w| w.client == client)
    }

    /// Takes out every wait.
    pub fn take_all(&mut self) -> Vec<Waiter<C>> {
        std::mem::take(&mut self.parked)
    }
}

/// An event that overflowed a client's buffer, kept for the retry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overflowed {
    /// The event's timestamp.
    pub timestamp: u64,
    /// The status the wait would have completed with.
    pub status: Status,
}

#[derive(Debug)]
struct Memo {
    client: ClientId,
    patterns: PatternList,
    overflowed: Overflowed,
}

/// The events that overflowed, per client and pattern string (see the module documentation).
#[derive(Debug)]
pub struct OverflowMemory {
    memos: Vec<Memo>,
    per_client_limit: usize,
}

impl OverflowMemory {
    /// An empty memory keeping at most `per_client_limit` entries per client.
    pub fn new(per_client_limit: usize) -> Self {
        OverflowMemory {
            memos: Vec::new(),
            per_client_limit: per_client_limit.max(1),
        }
    }

    /// Remembers that `overflowed` did not fit a wait of `client` for `patterns`.
    pub fn remember(&mut self, client: ClientId, patterns: &PatternList, overflowed: Overflowed) {
        self.memos
            .retain(|m| !(m.client == client && m.patterns == *patterns));
        let held = self.memos.iter().filter(|m| m.client == client).count();
        if held >= self.per_client_limit {
            if let Some(oldest) = self.memos.iter().position(|m| m.client == client) {
                self.memos.remove(oldest);
            }
        }
        self.memos.push(Memo {
            client,
            patterns: patterns.clone(),
            overflowed,
        });
    }

    /// Takes the entry for a new GET_NOTIFICATION of `client` with `patterns` and `timestamp`:
    /// the remembered event if the call is a retry of it. Any entry for these patterns is
    /// forgotten either way (the client has moved on).
    pub fn take_retry(
        &mut self,
        client: ClientId,
        patterns: &PatternList,
        timestamp: u64,
    ) -> Option<Overflowed> {
        let index = self
            .memos
            .iter()
            .position(|m| m.client == client && m.patterns == *patterns)?;
        let memo = self.memos.remove(index);
        (timestamp == 0 || timestamp == memo.overflowed.timestamp).then_some(memo.overflowed)
    }

    /// Forgets everything about `client`.
    pub fn forget_client(&mut self, client: ClientId) {
        self.memos.retain(|m| m.client != client);
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.memos.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ClientId = ClientId(1);
    const B: ClientId = ClientId(2);

    /// A stand-in for a held call: an id and whether it was cancelled.
    #[derive(Debug, PartialEq, Eq)]
    struct FakeCall {
        id: u32,
        cancelled: bool,
    }

    fn waiter(client: ClientId, patterns: &str, id: u32) -> Waiter<FakeCall> {
        Waiter {
            client,
            requestor: Requestor(1),
            patterns: PatternList::new(patterns),
            status: Status::VINF_SUCCESS,
            call: FakeCall {
                id,
                cancelled: false,
            },
        }
    }

    fn cancelled(call: &FakeCall) -> bool {
        call.cancelled
    }

    #[test]
    fn wait_with_the_same_patterns_supersedes_the_old_one() {
        let mut waiters = Waiters::new(16);
        let first = waiters.park(waiter(A, "/a*", 1), cancelled);
        assert!(first.superseded.is_empty() && first.refused.is_none());
        let second = waiters.park(waiter(A, "/a*", 2), cancelled);
        assert!(second.refused.is_none());
        let ids: Vec<u32> = second.superseded.iter().map(|c| c.id).collect();
        assert_eq!(ids, [1]);
        assert_eq!(waiters.len(), 1);
    }

    #[test]
    fn same_patterns_of_another_client_are_not_superseded() {
        let mut waiters = Waiters::new(16);
        let _ = waiters.park(waiter(A, "/a*", 1), cancelled);
        let other = waiters.park(waiter(B, "/a*", 2), cancelled);
        assert!(other.superseded.is_empty());
        assert_eq!(waiters.len(), 2);
    }

    #[test]
    fn cancelled_waits_of_the_client_are_taken_out_when_parking() {
        let mut waiters = Waiters::new(16);
        let mut old = waiter(A, "/x", 1);
        old.call.cancelled = true;
        let _ = waiters.park(old, cancelled);
        let parking = waiters.park(waiter(A, "/y", 2), cancelled);
        let ids: Vec<u32> = parking.superseded.iter().map(|c| c.id).collect();
        assert_eq!(ids, [1]);
    }

    #[test]
    fn client_at_its_limit_gets_the_waiter_back() {
        let mut waiters = Waiters::new(2);
        let _ = waiters.park(waiter(A, "/1", 1), cancelled);
        let _ = waiters.park(waiter(A, "/2", 2), cancelled);
        let third = waiters.park(waiter(A, "/3", 3), cancelled);
        assert_eq!(third.refused.map(|w| w.call.id), Some(3));
        let other_client = waiters.park(waiter(B, "/3", 4), cancelled);
        assert!(other_client.refused.is_none());
    }

    #[test]
    fn superseding_frees_a_slot_before_the_limit_applies() {
        let mut waiters = Waiters::new(1);
        let _ = waiters.park(waiter(A, "/1", 1), cancelled);
        let again = waiters.park(waiter(A, "/1", 2), cancelled);
        assert_eq!(again.superseded.len(), 1);
        assert!(again.refused.is_none());
    }

    #[test]
    fn take_keeps_parking_order() {
        let mut waiters = Waiters::new(16);
        for (client, id) in [(A, 1), (B, 2), (A, 3)] {
            let _ = waiters.park(waiter(client, &format!("/{id}"), id), cancelled);
        }
        let taken: Vec<u32> = waiters
            .take_client(A)
            .into_iter()
            .map(|w| w.call.id)
            .collect();
        assert_eq!(taken, [1, 3]);
        assert_eq!(waiters.len(), 1);
    }

    fn overflowed(timestamp: u64) -> Overflowed {
        Overflowed {
            timestamp,
            status: Status::VINF_SUCCESS,
        }
    }

    #[test]
    fn retry_with_timestamp_zero_gets_the_overflowed_event() {
        let mut memory = OverflowMemory::new(16);
        let patterns = PatternList::new("/a*");
        memory.remember(A, &patterns, overflowed(50));
        assert_eq!(memory.take_retry(A, &patterns, 0), Some(overflowed(50)));
        assert_eq!(memory.take_retry(A, &patterns, 0), None);
    }

    #[test]
    fn retry_with_the_events_own_timestamp_gets_it_again() {
        let mut memory = OverflowMemory::new(16);
        let patterns = PatternList::new("/a*");
        memory.remember(A, &patterns, overflowed(50));
        assert_eq!(memory.take_retry(A, &patterns, 50), Some(overflowed(50)));
    }

    #[test]
    fn other_timestamp_or_patterns_or_client_is_no_retry() {
        let mut memory = OverflowMemory::new(16);
        let patterns = PatternList::new("/a*");
        memory.remember(A, &patterns, overflowed(50));
        assert_eq!(memory.take_retry(B, &patterns, 0), None);
        assert_eq!(memory.take_retry(A, &PatternList::new("/b*"), 0), None);
        assert_eq!(memory.take_retry(A, &patterns, 40), None);
        // The mismatching timestamp also forgot the entry.
        assert_eq!(memory.take_retry(A, &patterns, 0), None);
    }

    #[test]
    fn memory_per_client_is_bounded() {
        let mut memory = OverflowMemory::new(2);
        for (i, p) in ["/1", "/2", "/3"].iter().enumerate() {
            memory.remember(A, &PatternList::new(*p), overflowed(i as u64 + 1));
        }
        assert_eq!(memory.take_retry(A, &PatternList::new("/1"), 0), None);
        assert!(memory.take_retry(A, &PatternList::new("/3"), 0).is_some());
    }

    #[test]
    fn forgetting_a_client_drops_its_entries() {
        let mut memory = OverflowMemory::new(16);
        let patterns = PatternList::new("");
        memory.remember(A, &patterns, overflowed(1));
        memory.forget_client(A);
        assert_eq!(memory.take_retry(A, &patterns, 0), None);
    }
}
