//! The table of HGCM requests the guest is waiting for, keyed by guest-physical address.
//!
//! One lock protects the table; submission, completion and cancellation all go through it, so
//! exactly one of "completed" and "cancelled" happens to each request (linux-guest H-4.8).
//! A completion takes its entry out of the table *before* it writes DONE, because the guest may
//! free and reuse the memory the moment it sees DONE; while it writes, the request is only in the
//! small "being written" set, where a cancel finds it and waits.
//! Every entry carries a token unique over the device's lifetime: a completion finds its entry
//! by address *and* token, so a completion of a request that was cancelled, or dropped by a
//! reset, can never write into a newer request at the same address.
//!
//! The table also enforces the per-VM limits: the number of pending requests and the host
//! memory they pin, per requestor category (kernel, root, user; hgcm.md §4.1). A flood of
//! pending calls runs into these limits instead of exhausting host memory.

use std::collections::{BTreeMap, HashMap};

/// Limits of the device's HGCM bookkeeping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingLimits {
    /// Pending requests per VM.
    pub max_pending: usize,
    /// Host bytes pending requests may hold, per requestor category (kernel, root, user).
    pub host_bytes: [u64; 3],
}

impl Default for PendingLimits {
    fn default() -> Self {
        PendingLimits {
            max_pending: 16 * 1024,
            host_bytes: [64 << 20; 3],
        }
    }
}

/// Why a request cannot become pending.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PendingError {
    /// Another pending request overlaps this one's bytes.
    #[error("request {gpa:#x} overlaps the pending request at {other:#x}")]
    Overlap {
        /// The new request.
        gpa: u64,
        /// The pending one.
        other: u64,
    },
    /// The per-VM pending request limit is reached.
    #[error("{0} requests already pending")]
    TooManyPending(usize),
    /// The memory budget of the requestor's category is exhausted.
    #[error("host memory budget of category {category} exhausted")]
    BudgetExhausted {
        /// Category index.
        category: usize,
    },
}

/// What kind of request is pending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PendingKind {
    /// HGCM connect.
    Connect,
    /// HGCM disconnect.
    Disconnect,
    /// HGCM call (32- or 64-bit parameters).
    Call,
}

/// Lifecycle of an entry.
enum EntryState<I> {
    /// Reserved; the framework has not returned its id yet.
    Submitting,
    /// Accepted by the framework.
    Submitted(I),
    /// A completion is writing into guest memory.
    Completing,
    /// Completed while the device was paused; the write-back runs at resume.
    Deferred(Box<dyn FnOnce() + Send>),
}

impl<I: std::fmt::Debug> std::fmt::Debug for EntryState<I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Submitting => f.write_str("Submitting"),
            Self::Submitted(id) => write!(f, "Submitted({id:?})"),
            Self::Completing => f.write_str("Completing"),
            Self::Deferred(_) => f.write_str("Deferred"),
        }
    }
}

#[derive(Debug)]
struct Entry<I> {
    token: u64,
    size: u32,
    kind: PendingKind,
    category: usize,
    charge: u64,
    state: EntryState<I>,
}

/// A pending request as saved in a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingRecord {
    /// Guest-physical address.
    pub gpa: u64,
    /// Request size.
    pub size: u32,
    /// Kind.
    pub kind: PendingKind,
}

/// What a cancel found at an address.
#[derive(Debug, PartialEq, Eq)]
pub enum CancelTarget<I> {
    /// Nothing pending there.
    NotFound,
    /// Pending, but in a transition (being submitted or completed): retry shortly.
    Busy,
    /// Pending with this framework id.
    Pending {
        /// Entry token.
        token: u64,
        /// Framework request id.
        id: I,
    },
}

/// What a completion may do.
pub enum CompletionGate {
    /// Write the outcome into guest memory now.
    Proceed,
    /// The device is paused: the job was parked and runs at resume.
    Deferred,
    /// The request is gone (cancelled or reset): write nothing.
    Gone,
}

/// Pending HGCM requests of one device; `I` is the framework's request id.
#[derive(Debug)]
pub struct PendingTable<I> {
    entries: BTreeMap<u64, Entry<I>>,
    next_token: u64,
    limits: PendingLimits,
    charged: [u64; 3],
    paused: bool,
    /// Requests whose completion is being written into guest memory: address → token.
    writing: HashMap<u64, u64>,
}

impl<I: Copy> Default for PendingTable<I> {
    fn default() -> Self {
        Self::new(PendingLimits::default())
    }
}

impl<I: Copy> PendingTable<I> {
    /// An empty table with the given limits.
    pub fn new(limits: PendingLimits) -> Self {
        PendingTable {
            entries: BTreeMap::new(),
            next_token: 0,
            limits,
            charged: [0; 3],
            paused: false,
            writing: HashMap::new(),
        }
    }

    /// Number of pending requests (a completion being written no longer counts: its entry
    /// left the table before DONE became visible).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Host bytes charged to each category.
    pub fn charged(&self) -> [u64; 3] {
        self.charged
    }

    /// Reserves an entry for a request about to be submitted. Returns its token.
    pub fn reserve(
        &mut self,
        gpa: u64,
        size: u32,
        kind: PendingKind,
        category: usize,
        charge: u64,
    ) -> Result<u64, PendingError> {
        let end = gpa.saturating_add(u64::from(size));
        if let Some((&other, entry)) = self.entries.range(..end).next_back() {
            if other.saturating_add(u64::from(entry.size)) > gpa {
                return Err(PendingError::Overlap { gpa, other });
            }
        }
        if self.entries.len() >= self.limits.max_pending {
            return Err(PendingError::TooManyPending(self.entries.len()));
        }
        let category = category.min(2);
        let budget = self.limits.host_bytes[category];
        if self.charged[category].saturating_add(charge) > budget {
            return Err(PendingError::BudgetExhausted { category });
        }
        self.charged[category] += charge;
        self.next_token += 1;
        let token = self.next_token;
        self.entries.insert(
            gpa,
            Entry {
                token,
                size,
                kind,
                category,
                charge,
                state: EntryState::Submitting,
            },
        );
        Ok(token)
    }

    /// Records the framework id of an accepted request (unless it already completed).
    pub fn submitted(&mut self, gpa: u64, token: u64, id: I) {
        if let Some(entry) = self.entry_mut(gpa, token) {
            if matches!(entry.state, EntryState::Submitting) {
                entry.state = EntryState::Submitted(id);
            }
        }
    }

    /// Removes an entry (refused submission, finished completion, successful cancel).
    pub fn remove(&mut self, gpa: u64, token: u64) -> bool {
        if self.entry_mut(gpa, token).is_none() {
            return false;
        }
        if let Some(entry) = self.entries.remove(&gpa) {
            self.charged[entry.category] =
                self.charged[entry.category].saturating_sub(entry.charge);
        }
        true
    }

    /// Called by a completion before it touches guest memory.
    pub fn begin_completion(
        &mut self,
        gpa: u64,
        token: u64,
        job: Box<dyn FnOnce() + Send>,
    ) -> (CompletionGate, Option<Box<dyn FnOnce() + Send>>) {
        let paused = self.paused;
        let Some(entry) = self.entry_mut(gpa, token) else {
            return (CompletionGate::Gone, None);
        };
        if paused {
            entry.state = EntryState::Deferred(job);
            (CompletionGate::Deferred, None)
        } else {
            entry.state = EntryState::Completing;
            (CompletionGate::Proceed, Some(job))
        }
    }

    /// Moves a completing request out of the table into the "being written" set, refunding
    /// its budget; `false` if it is gone (cancelled, reset). Its address is free again as soon
    /// as the guest sees DONE.
    pub fn take_for_write(&mut self, gpa: u64, token: u64) -> bool {
        if !self.remove(gpa, token) {
            return false;
        }
        self.writing.insert(gpa, token);
        true
    }

    /// The write-back of a request taken with [`Self::take_for_write`] is complete.
    pub fn finish_write(&mut self, gpa: u64, token: u64) {
        if self.writing.get(&gpa) == Some(&token) {
            self.writing.remove(&gpa);
        }
    }

    /// Looks up the target of a cancel.
    pub fn cancel_target(&self, gpa: u64) -> CancelTarget<I> {
        match self.entries.get(&gpa) {
            None if self.writing.contains_key(&gpa) => CancelTarget::Busy,
            None => CancelTarget::NotFound,
            Some(entry) => match &entry.state {
                EntryState::Submitted(id) => CancelTarget::Pending {
                    token: entry.token,
                    id: *id,
                },
                EntryState::Submitting | EntryState::Completing => CancelTarget::Busy,
                // Completed during a pause: the guest sees DONE at resume.
                EntryState::Deferred(_) => CancelTarget::NotFound,
            },
        }
    }

    /// Whether the request with this token is still pending or being written.
    pub fn contains(&self, gpa: u64, token: u64) -> bool {
        self.entries.get(&gpa).is_some_and(|e| e.token == token)
            || self.writing.get(&gpa) == Some(&token)
    }

    /// Stops completions from writing guest memory (they are parked until [`Self::resume`]).
    pub fn pause(&mut self) {
        self.paused = true;
    }

    /// Whether completions are parked.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Lets completions write again and hands back the parked write-backs, marking their
    /// entries as completing.
    pub fn resume(&mut self) -> Vec<Box<dyn FnOnce() + Send>> {
        self.paused = false;
        let mut jobs = Vec::new();
        for entry in self.entries.values_mut() {
            if matches!(entry.state, EntryState::Deferred(_)) {
                if let EntryState::Deferred(job) =
                    std::mem::replace(&mut entry.state, EntryState::Completing)
                {
                    jobs.push(job);
                }
            }
        }
        jobs
    }

    /// The pending requests, for a snapshot.
    pub fn records(&self) -> Vec<PendingRecord> {
        self.entries
            .iter()
            .map(|(&gpa, e)| PendingRecord {
                gpa,
                size: e.size,
                kind: e.kind,
            })
            .collect()
    }

    /// Forgets every request without touching guest memory (reset, restore). Late
    /// completions find nothing and write nothing.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.writing.clear();
        self.charged = [0; 3];
    }

    fn entry_mut(&mut self, gpa: u64, token: u64) -> Option<&mut Entry<I>> {
        self.entries.get_mut(&gpa).filter(|e| e.token == token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop() -> Box<dyn FnOnce() + Send> {
        Box::new(|| {})
    }

    #[test]
    fn overlapping_requests_are_refused() {
        let mut table = PendingTable::<u64>::default();
        table
            .reserve(0x1000, 0x100, PendingKind::Call, 0, 10)
            .unwrap();
        assert!(matches!(
            table.reserve(0x10F0, 0x20, PendingKind::Call, 0, 10),
            Err(PendingError::Overlap { other: 0x1000, .. })
        ));
        assert!(matches!(
            table.reserve(0xF80, 0x100, PendingKind::Call, 0, 10),
            Err(PendingError::Overlap { .. })
        ));
        table
            .reserve(0x1100, 0x20, PendingKind::Call, 0, 10)
            .unwrap();
    }

    #[test]
    fn pending_count_is_limited() {
        let mut table = PendingTable::<u64>::new(PendingLimits {
            max_pending: 2,
            ..PendingLimits::default()
        });
        table.reserve(0, 64, PendingKind::Call, 0, 1).unwrap();
        table.reserve(64, 64, PendingKind::Call, 0, 1).unwrap();
        assert_eq!(
            table.reserve(128, 64, PendingKind::Call, 0, 1),
            Err(PendingError::TooManyPending(2))
        );
    }

    #[test]
    fn budget_is_per_category_and_refunded() {
        let mut table = PendingTable::<u64>::new(PendingLimits {
            max_pending: 100,
            host_bytes: [100, 100, 100],
        });
        let token = table.reserve(0, 64, PendingKind::Call, 2, 80).unwrap();
        assert_eq!(
            table.reserve(64, 64, PendingKind::Call, 2, 30),
            Err(PendingError::BudgetExhausted { category: 2 })
        );
        table.reserve(64, 64, PendingKind::Call, 0, 30).unwrap();
        assert!(table.remove(0, token));
        table.reserve(128, 64, PendingKind::Call, 2, 30).unwrap();
        assert_eq!(table.charged(), [30, 0, 30]);
    }

    #[test]
    fn completion_with_a_stale_token_writes_nothing() {
        let mut table = PendingTable::<u64>::default();
        let old = table.reserve(0x2000, 64, PendingKind::Call, 0, 1).unwrap();
        table.remove(0x2000, old);
        let new = table.reserve(0x2000, 64, PendingKind::Call, 0, 1).unwrap();
        assert!(matches!(
            table.begin_completion(0x2000, old, noop()).0,
            CompletionGate::Gone
        ));
        assert!(table.contains(0x2000, new));
    }

    #[test]
    fn cancel_sees_busy_during_transitions() {
        let mut table = PendingTable::<u64>::default();
        let token = table.reserve(0x3000, 64, PendingKind::Call, 0, 1).unwrap();
        assert_eq!(table.cancel_target(0x3000), CancelTarget::Busy);
        table.submitted(0x3000, token, 7);
        assert!(matches!(
            table.cancel_target(0x3000),
            CancelTarget::Pending { token: t, .. } if t == token
        ));
        let _ = table.begin_completion(0x3000, token, noop());
        assert_eq!(table.cancel_target(0x3000), CancelTarget::Busy);
        table.remove(0x3000, token);
        assert_eq!(table.cancel_target(0x3000), CancelTarget::NotFound);
    }

    #[test]
    fn paused_completions_are_parked_until_resume() {
        let mut table = PendingTable::<u64>::default();
        let token = table.reserve(0x4000, 64, PendingKind::Call, 0, 1).unwrap();
        table.pause();
        assert!(matches!(
            table.begin_completion(0x4000, token, noop()).0,
            CompletionGate::Deferred
        ));
        assert_eq!(table.records().len(), 1, "still saved as pending");
        assert_eq!(table.resume().len(), 1);
        assert!(table.resume().is_empty());
    }

    #[test]
    fn address_is_free_again_while_the_completion_is_written() {
        let mut table = PendingTable::<u64>::default();
        let token = table.reserve(0x6000, 64, PendingKind::Call, 0, 8).unwrap();
        let _ = table.begin_completion(0x6000, token, noop());
        assert!(table.take_for_write(0x6000, token));
        assert_eq!(table.charged(), [0; 3]);
        assert_eq!(table.cancel_target(0x6000), CancelTarget::Busy);
        let next = table.reserve(0x6000, 64, PendingKind::Call, 0, 8).unwrap();
        table.finish_write(0x6000, token);
        assert!(table.contains(0x6000, next), "the new request is untouched");
        assert!(
            !table.take_for_write(0x6000, token),
            "a token is taken once"
        );
    }

    #[test]
    fn clear_forgets_everything() {
        let mut table = PendingTable::<u64>::default();
        let token = table
            .reserve(0x5000, 64, PendingKind::Connect, 1, 5)
            .unwrap();
        table.clear();
        assert_eq!(table.len(), 0);
        assert_eq!(table.charged(), [0; 3]);
        assert!(!table.remove(0x5000, token));
    }
}
