//! Calls parked by `WAIT`, with a timer thread that completes them at their deadline.
//!
//! The service thread never blocks: a waiting call is stored here and completed later by a host
//! call (wake), by the timer thread (timeout), or by cancellation or disconnect.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vmmdev_hgcm_sdk::{Call, ClientId, Status};

use crate::{WAKE_REASON_HOST, WAKE_REASON_TIMEOUT};

struct Waiter {
    call: Call,
    deadline: Option<Instant>,
}

#[derive(Default)]
struct State {
    waiters: Vec<Waiter>,
    stopping: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves only a list of calls behind: keep going.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Parked `WAIT` calls and their timer.
pub(crate) struct Waiters {
    shared: Arc<Shared>,
    timer: Option<JoinHandle<()>>,
}

/// Completes `call` with `status`, reporting why it woke in its second parameter.
fn finish(mut call: Call, status: i32, reason: u32) {
    // The reason parameter was type-checked when the call was parked.
    let _ = call.params_mut().set_u32(1, reason);
    call.complete(status);
}

impl Waiters {
    pub(crate) fn start() -> std::io::Result<Waiters> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let timer_shared = shared.clone();
        let timer = std::thread::Builder::new()
            .name("echo-wait-timer".into())
            .spawn(move || run_timer(&timer_shared))?;
        Ok(Waiters {
            shared,
            timer: Some(timer),
        })
    }

    /// Parks `call` until woken, `timeout` (if any) passes, or it is cancelled.
    pub(crate) fn park(&self, call: Call, timeout: Option<Duration>) {
        let deadline = timeout.map(|t| Instant::now() + t);
        self.shared.lock().waiters.push(Waiter { call, deadline });
        self.shared.changed.notify_all();
    }

    pub(crate) fn count(&self) -> usize {
        self.shared.lock().waiters.len()
    }

    /// Completes every waiter successfully; returns how many there were.
    pub(crate) fn wake_all(&self) -> usize {
        let woken = std::mem::take(&mut self.shared.lock().waiters);
        let count = woken.len();
        for waiter in woken {
            finish(waiter.call, Status::VINF_SUCCESS.raw(), WAKE_REASON_HOST);
        }
        count
    }

    /// Completes the waiters matching `pick` with `VERR_CANCELLED`.
    fn cancel_where(&self, pick: impl Fn(&Call) -> bool) {
        let picked: Vec<Waiter> = {
            let mut state = self.shared.lock();
            let (picked, kept) = std::mem::take(&mut state.waiters)
                .into_iter()
                .partition(|w| pick(&w.call));
            state.waiters = kept;
            picked
        };
        for waiter in picked {
            waiter.call.complete(Status::VERR_CANCELLED.raw());
        }
    }

    /// Lets go of the waiters whose callers cancelled them.
    pub(crate) fn drop_cancelled(&self) {
        self.cancel_where(Call::is_cancelled);
    }

    /// Lets go of the waiters of a client that went away.
    pub(crate) fn drop_client(&self, client: ClientId) {
        self.cancel_where(|call| call.client() == client);
    }
}

impl Drop for Waiters {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.changed.notify_all();
        if let Some(timer) = self.timer.take() {
            let _ = timer.join();
        }
        self.cancel_where(|_| true);
    }
}

fn run_timer(shared: &Shared) {
    let mut state = shared.lock();
    loop {
        if state.stopping {
            return;
        }
        let now = Instant::now();
        let (expired, kept): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(&mut state.waiters)
            .into_iter()
            .partition(|w| w.deadline.is_some_and(|d| d <= now));
        state.waiters = kept;
        if !expired.is_empty() {
            drop(state);
            for waiter in expired {
                finish(waiter.call, Status::VERR_TIMEOUT.raw(), WAKE_REASON_TIMEOUT);
            }
            state = shared.lock();
            continue;
        }
        let next = state.waiters.iter().filter_map(|w| w.deadline).min();
        state = match next {
            Some(deadline) => {
                let wait = deadline.saturating_duration_since(now);
                shared
                    .changed
                    .wait_timeout(state, wait)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
            None => shared
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner),
        };
    }
}
