//! The access gate of one call: the memory behind a call's buffers is touched only inside an
//! *access*, and an access can start only while the gate is open.
//!
//! Why: as soon as a call is cancelled (by its caller, a client disconnect, a guest reset or a
//! service failure) the guest may free and reuse the pages behind its buffers; Linux frees the
//! bounce pages of a cancelled call at once. A service that wrote them afterwards would corrupt
//! guest kernel memory. So whoever ends the call's life *closes* its gate: from that moment no
//! access can start, and the close returns only after the accesses already in flight have ended.
//! After that, nothing touches the call's memory again.
//!
//! [`AccessGate`] is the contract a [`crate::Buffer`] relies on; [`CallGate`] is the framework's
//! implementation. Inside a plugin the SDK implements [`AccessGate`] on top of the host API's
//! `begin_guest_access` / `end_guest_access`, which forward to the call's [`CallGate`].
//!
//! Accesses are meant to be short (a copy in or out); closing waits for them, so an access must
//! never wait for anything that a cancel, disconnect or reset could be holding.

use std::thread::ThreadId;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// How long a close waits before it logs that an access is taking unusually long.
const SLOW_ACCESS_WARNING: Duration = Duration::from_secs(1);

/// Admission to the memory of one call's buffers.
pub trait AccessGate: Send + Sync {
    /// Starts one access; `false` if the gate is closed, in which case nothing may be touched.
    fn enter(&self) -> bool;
    /// Ends one access that [`AccessGate::enter`] started.
    fn leave(&self);
}

/// The framework's gate of one call. See the module documentation.
#[derive(Debug, Default)]
pub struct CallGate {
    state: Mutex<GateState>,
    idle: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    closed: bool,
    /// One entry per access in flight: the thread that started it.
    holders: Vec<ThreadId>,
}

impl GateState {
    fn held_by_others(&self, me: ThreadId) -> bool {
        self.holders.iter().any(|holder| *holder != me)
    }
}

impl CallGate {
    /// An open gate with no access in flight.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the gate has been shut.
    pub fn is_closed(&self) -> bool {
        self.state.lock().closed
    }

    /// Whether any access is in flight.
    pub fn is_busy(&self) -> bool {
        !self.state.lock().holders.is_empty()
    }

    /// Ends one access; `false` if none was in flight (a caller that broke the begin/end pairing).
    pub fn try_leave(&self) -> bool {
        let me = std::thread::current().id();
        let mut state = self.state.lock();
        // An access may end on another thread than the one that began it (plugins are free to
        // do so); the thread list only serves the self-deadlock check in `wait_idle`.
        let index = state
            .holders
            .iter()
            .rposition(|holder| *holder == me)
            .or_else(|| state.holders.len().checked_sub(1));
        let Some(index) = index else {
            return false;
        };
        state.holders.swap_remove(index);
        if state.closed && !state.held_by_others(me) {
            self.idle.notify_all();
        }
        true
    }

    /// Refuses every access from now on, without waiting. Returns `true` for the caller that
    /// actually shut it. Cheap and non-blocking, so it can be done under other locks; follow it
    /// with [`CallGate::wait_idle`] once those are released.
    pub fn shut(&self) -> bool {
        let mut state = self.state.lock();
        !std::mem::replace(&mut state.closed, true)
    }

    /// Waits until no other thread has an access in flight.
    ///
    /// An access held by the calling thread itself is not waited for (that would never end); it
    /// means the caller closed the gate from inside an access, which breaks the contract, and it
    /// is logged.
    pub fn wait_idle(&self) {
        let me = std::thread::current().id();
        let mut state = self.state.lock();
        while state.held_by_others(me) {
            if self
                .idle
                .wait_for(&mut state, SLOW_ACCESS_WARNING)
                .timed_out()
            {
                log::warn!(
                    "closing a call's guest-memory gate still waits for {} access(es) in flight",
                    state.holders.len()
                );
            }
        }
        if !state.holders.is_empty() {
            log::error!(
                "a call's guest-memory gate was closed from inside one of its own accesses; \
                 that access may still touch memory"
            );
        }
    }

    /// [`CallGate::shut`] then [`CallGate::wait_idle`]: when this returns, no access to the
    /// call's memory is in flight (on other threads) and none can start.
    pub fn close(&self) {
        self.shut();
        self.wait_idle();
    }
}

impl AccessGate for CallGate {
    fn enter(&self) -> bool {
        let mut state = self.state.lock();
        if state.closed {
            return false;
        }
        state.holders.push(std::thread::current().id());
        true
    }

    fn leave(&self) {
        if !self.try_leave() {
            log::error!("a guest-memory access ended that had not begun");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn open_gate_admits_accesses() {
        let gate = CallGate::new();
        assert!(gate.enter());
        assert!(gate.enter());
        assert!(gate.is_busy());
        gate.leave();
        gate.leave();
        assert!(!gate.is_busy());
    }

    #[test]
    fn closed_gate_refuses_new_accesses() {
        let gate = CallGate::new();
        gate.close();
        assert!(gate.is_closed());
        assert!(!gate.enter());
        assert!(!gate.is_busy());
    }

    #[test]
    fn leave_without_enter_is_reported() {
        let gate = CallGate::new();
        assert!(!gate.try_leave());
    }

    #[test]
    fn only_the_first_shut_reports_it_shut_the_gate() {
        let gate = CallGate::new();
        assert!(gate.shut());
        assert!(!gate.shut());
    }

    #[test]
    fn close_waits_for_an_access_in_flight_on_another_thread() {
        let gate = Arc::new(CallGate::new());
        let (entered_tx, entered_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let left = Arc::new(AtomicBool::new(false));
        let holder = {
            let (gate, left) = (gate.clone(), left.clone());
            std::thread::spawn(move || {
                assert!(gate.enter());
                entered_tx.send(()).expect("test alive");
                release_rx.recv().expect("test alive");
                left.store(true, Ordering::SeqCst);
                gate.leave();
            })
        };
        entered_rx.recv().expect("holder entered");
        let closer = {
            let gate = gate.clone();
            std::thread::spawn(move || gate.close())
        };
        // The closer cannot finish while the access is in flight; new accesses are refused.
        while !gate.is_closed() {
            std::thread::yield_now();
        }
        assert!(!gate.enter());
        assert!(!closer.is_finished());
        release_tx.send(()).expect("holder alive");
        closer.join().expect("closer");
        assert!(
            left.load(Ordering::SeqCst),
            "close returned before the access ended"
        );
        holder.join().expect("holder");
    }

    #[test]
    fn close_from_inside_an_own_access_does_not_deadlock() {
        let gate = CallGate::new();
        assert!(gate.enter());
        gate.close();
        assert!(gate.is_closed());
        gate.leave();
    }

    #[test]
    fn access_may_end_on_another_thread_than_it_began() {
        let gate = Arc::new(CallGate::new());
        assert!(gate.enter());
        let other = gate.clone();
        std::thread::spawn(move || other.leave())
            .join()
            .expect("leaver");
        assert!(!gate.is_busy());
        gate.close();
    }
}
