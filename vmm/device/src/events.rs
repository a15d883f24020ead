//! Event bookkeeping and the level of the INTA# line.
//!
//! VMMDev tells the guest about host-side changes (HGCM completions, mouse moves, balloon
//! requests, ...) by latching event bits and asserting a shared, level-triggered interrupt.
//! This module holds the pure state machine of vmmdev.md §5 and linux-guest §3.2:
//!
//! * `pending`: raised and not yet acknowledged events; events are latched, never dropped
//!   (also while the VM is paused, unlike VirtualBox);
//! * `filter`: the events the guest wants interrupts for; a change requested while
//!   deliverable events are pending is deferred to the next acknowledge;
//! * the line is asserted exactly while the guest's additions have reported and
//!   `pending & filter != 0` (H-3.1..H-3.4).
//!
//! The device applies [`EventState::line_level`] to the `fHaveEvents` byte and the embedder's
//! [`InterruptLine`] after every change, byte first when rising, so the two never disagree in
//! the direction the Linux ISR cares about.

use vmmdev_protocol::vmmdev::{Events, VMMDEV_EVENT_VALID_EVENT_MASK};

const HGCM: u32 = Events::HGCM.bits();

/// The device's INTA# output, implemented by the embedder.
///
/// `set_level(true)` asserts the level-triggered line, `set_level(false)` de-asserts it. The
/// device calls it only on transitions, from whichever thread caused the change (a vCPU in a
/// port write, a service thread completing an HGCM call), with an internal lock held so that
/// calls arrive in the order of the transitions. Implementations must not call back into the
/// device.
///
/// With KVM this maps to `KVM_IRQ_LINE`, or to an irqfd with a resample fd (re-trigger when
/// the resample fires while [`crate::VmmDev::interrupt_level`] is still true). Under
/// vfio-user, assertion signals the INTx eventfd.
pub trait InterruptLine: Send + Sync {
    /// Drives the line to `asserted`.
    fn set_level(&self, asserted: bool);
}

/// Event and filter state of the device.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventState {
    pending: u32,
    filter: u32,
    deferred_filter: Option<u32>,
    additions_ok: bool,
    hgcm_auto_enabled: bool,
}

/// Saved form of [`EventState`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventSnapshot {
    /// Pending events.
    pub pending: u32,
    /// Current filter.
    pub filter: u32,
    /// Deferred filter, if one is waiting for the next acknowledge.
    pub deferred_filter: Option<u32>,
    /// Whether the additions reported a compatible interface.
    pub additions_ok: bool,
    /// Whether the HGCM event was already enabled automatically since the last reset.
    pub hgcm_auto_enabled: bool,
}

impl EventState {
    /// Whether the line must be asserted (and `fHaveEvents` set).
    pub fn line_level(&self) -> bool {
        self.additions_ok && self.pending & self.filter != 0
    }

    /// Latches `events` (bits outside the valid mask are ignored).
    pub fn raise(&mut self, events: u32) {
        self.pending |= events & VMMDEV_EVENT_VALID_EVENT_MASK;
    }

    /// AcknowledgeEvents / fast-ack read: applies a deferred filter, returns and clears the
    /// deliverable events. Events outside the filter stay pending.
    pub fn acknowledge(&mut self) -> u32 {
        if let Some(filter) = self.deferred_filter.take() {
            self.filter = filter;
        }
        let delivered = self.pending & self.filter;
        self.pending &= !self.filter;
        delivered
    }

    /// CtlGuestFilterMask: `filter = (filter | or) & !not`, with the HGCM bit never removable.
    /// Deferred while deliverable events are pending.
    pub fn change_filter(&mut self, or_mask: u32, not_mask: u32) {
        let not_mask = not_mask & !HGCM;
        if self.pending & self.filter != 0 {
            let base = self.deferred_filter.unwrap_or(self.filter);
            self.deferred_filter = Some((base | or_mask) & !not_mask);
        } else {
            self.filter = (self.filter | or_mask) & !not_mask;
        }
    }

    /// Enables the HGCM event the first time the guest submits an HGCM request after a reset.
    pub fn auto_enable_hgcm(&mut self) {
        if !self.hgcm_auto_enabled {
            self.hgcm_auto_enabled = true;
            self.change_filter(HGCM, 0);
        }
    }

    /// Records whether ReportGuestInfo reported a compatible interface (the request gate).
    pub fn set_additions_ok(&mut self, ok: bool) {
        self.additions_ok = ok;
    }

    /// Whether the additions reported a compatible interface version.
    pub fn additions_ok(&self) -> bool {
        self.additions_ok
    }

    /// Pending events.
    pub fn pending(&self) -> u32 {
        self.pending
    }

    /// Current filter.
    pub fn filter(&self) -> u32 {
        self.filter
    }

    /// Device reset: only a pending display change survives; filters and gate cleared.
    pub fn reset(&mut self, surviving: u32) {
        *self = EventState {
            pending: self.pending & surviving,
            ..EventState::default()
        };
    }

    /// Snapshot for save/restore.
    pub fn snapshot(&self) -> EventSnapshot {
        EventSnapshot {
            pending: self.pending,
            filter: self.filter,
            deferred_filter: self.deferred_filter,
            additions_ok: self.additions_ok,
            hgcm_auto_enabled: self.hgcm_auto_enabled,
        }
    }

    /// Restores a snapshot (bits outside the valid mask are dropped).
    pub fn restore(snapshot: &EventSnapshot) -> Self {
        EventState {
            pending: snapshot.pending & VMMDEV_EVENT_VALID_EVENT_MASK,
            filter: snapshot.filter,
            deferred_filter: snapshot.deferred_filter,
            additions_ok: snapshot.additions_ok,
            hgcm_auto_enabled: snapshot.hgcm_auto_enabled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUSE: u32 = 0x200;
    const BALLOON: u32 = 0x40;

    fn reported() -> EventState {
        let mut state = EventState::default();
        state.set_additions_ok(true);
        state
    }

    #[test]
    fn events_before_guest_info_are_latched_without_interrupt() {
        let mut state = EventState::default();
        state.change_filter(HGCM, 0);
        state.raise(HGCM);
        assert!(!state.line_level());
        state.set_additions_ok(true);
        assert!(state.line_level(), "delivered once the additions reported");
    }

    #[test]
    fn filtered_out_events_stay_pending_without_interrupt() {
        let mut state = reported();
        state.raise(BALLOON);
        assert!(!state.line_level());
        state.change_filter(BALLOON, 0);
        assert!(state.line_level(), "H-3.4: delivered once enabled");
    }

    #[test]
    fn acknowledge_returns_deliverable_events_and_lowers_the_line() {
        let mut state = reported();
        state.change_filter(HGCM | MOUSE, !(HGCM | MOUSE));
        state.raise(HGCM | BALLOON);
        assert!(state.line_level());
        assert_eq!(state.acknowledge(), HGCM);
        assert!(!state.line_level());
        assert_eq!(state.pending(), BALLOON, "filtered-out events stay pending");
    }

    #[test]
    fn event_after_acknowledge_raises_again() {
        let mut state = reported();
        state.change_filter(HGCM, 0);
        state.raise(HGCM);
        state.acknowledge();
        state.raise(HGCM);
        assert!(state.line_level(), "H-3.3");
    }

    #[test]
    fn filter_change_while_deliverable_is_deferred_to_acknowledge() {
        let mut state = reported();
        state.change_filter(HGCM | MOUSE, 0);
        state.raise(MOUSE);
        state.change_filter(0, MOUSE);
        assert_eq!(state.filter(), HGCM | MOUSE, "still the old filter");
        assert!(state.line_level());
        state.raise(MOUSE);
        assert_eq!(state.acknowledge(), 0, "the deferred filter applies first");
        assert_eq!(state.filter(), HGCM);
        assert_eq!(state.pending(), MOUSE);
    }

    #[test]
    fn hgcm_bit_cannot_be_removed_from_the_filter() {
        let mut state = reported();
        state.change_filter(HGCM, 0);
        state.change_filter(0, u32::MAX);
        assert_eq!(state.filter(), HGCM);
    }

    #[test]
    fn hgcm_is_auto_enabled_once_per_reset() {
        let mut state = reported();
        state.auto_enable_hgcm();
        assert_eq!(state.filter(), HGCM);
        state.reset(0);
        assert_eq!(state.filter(), 0);
        state.auto_enable_hgcm();
        assert_eq!(state.filter(), HGCM);
    }

    #[test]
    fn invalid_event_bits_are_never_raised() {
        let mut state = reported();
        state.change_filter(u32::MAX, 0);
        state.raise(0xFFFF_F800);
        assert_eq!(state.pending(), 0);
        assert!(!state.line_level());
    }

    #[test]
    fn reset_keeps_only_surviving_events_and_clears_gate_and_filters() {
        let mut state = reported();
        state.change_filter(HGCM | 0x4, 0);
        state.raise(HGCM | 0x4);
        state.reset(0x4);
        assert_eq!(state.pending(), 0x4);
        assert_eq!(state.filter(), 0);
        assert!(!state.additions_ok());
        assert!(!state.line_level());
    }

    #[test]
    fn snapshot_round_trips() {
        let mut state = reported();
        state.change_filter(HGCM | MOUSE, 0);
        state.raise(MOUSE);
        state.change_filter(0, MOUSE);
        assert_eq!(EventState::restore(&state.snapshot()), state);
    }
}
