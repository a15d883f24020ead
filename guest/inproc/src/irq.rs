//! The guest's interrupt controller input for INTA#: a level with a condition variable.
//!
//! [`GuestInterrupt`] implements the device's [`InterruptLine`]; the guest's interrupt thread
//! sleeps until the level is high, like a CPU waiting for a level-triggered IOAPIC pin. It also
//! records every level change so tests can check the line rises and falls exactly as the
//! protocol requires.

use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use vmmdev_device::InterruptLine;

#[derive(Debug, Default)]
struct LineState {
    level: bool,
    changes: Vec<bool>,
    raises: u64,
}

/// A level-triggered interrupt input.
#[derive(Debug, Default)]
pub struct GuestInterrupt {
    state: Mutex<LineState>,
    changed: Condvar,
}

/// Most level changes kept for inspection.
const MAX_RECORDED_CHANGES: usize = 4096;

impl GuestInterrupt {
    /// A line that starts low.
    pub fn new() -> Self {
        Self::default()
    }

    /// Current level.
    pub fn level(&self) -> bool {
        self.state.lock().level
    }

    /// How many times the line went high.
    pub fn raises(&self) -> u64 {
        self.state.lock().raises
    }

    /// Takes the recorded level changes (oldest first).
    pub fn take_changes(&self) -> Vec<bool> {
        std::mem::take(&mut self.state.lock().changes)
    }

    /// Waits until the line is high or `timeout` passes; returns the level.
    pub fn wait_high(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock();
        while !state.level {
            if self.changed.wait_until(&mut state, deadline).timed_out() {
                break;
            }
        }
        state.level
    }

    /// Wakes waiters without a level change (shutdown).
    pub fn kick(&self) {
        self.changed.notify_all();
    }
}

impl InterruptLine for GuestInterrupt {
    fn set_level(&self, asserted: bool) {
        let mut state = self.state.lock();
        if state.level != asserted {
            state.level = asserted;
            if asserted {
                state.raises += 1;
            }
            if state.changes.len() < MAX_RECORDED_CHANGES {
                state.changes.push(asserted);
            }
        }
        drop(state);
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn only_level_changes_are_recorded() {
        let line = GuestInterrupt::new();
        line.set_level(true);
        line.set_level(true);
        line.set_level(false);
        line.set_level(false);
        assert_eq!(line.take_changes(), [true, false]);
        assert_eq!(line.raises(), 1);
    }

    #[test]
    fn waiter_wakes_when_the_line_rises() {
        let line = Arc::new(GuestInterrupt::new());
        let raiser = std::thread::spawn({
            let line = line.clone();
            move || {
                std::thread::sleep(Duration::from_millis(10));
                line.set_level(true);
            }
        });
        assert!(line.wait_high(Duration::from_secs(5)));
        raiser.join().unwrap();
    }

    #[test]
    fn wait_times_out_on_a_low_line() {
        let line = GuestInterrupt::new();
        assert!(!line.wait_high(Duration::from_millis(5)));
    }
}
