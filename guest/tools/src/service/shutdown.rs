//! Stopping the daemon: one flag, set once by the thread that receives SIGTERM, that the
//! subservices check between rounds and sleep on, so a stop never waits for a whole interval.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The daemon-wide stop request.
#[derive(Debug, Default)]
pub struct Shutdown {
    requested: Mutex<bool>,
    wake: Condvar,
}

impl Shutdown {
    /// A shutdown that has not been requested.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every subservice to stop and wakes those that sleep.
    pub fn request(&self) {
        *self
            .requested
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        self.wake.notify_all();
    }

    /// Whether a stop was requested.
    pub fn is_requested(&self) -> bool {
        *self
            .requested
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Sleeps for `duration`, or less if a stop is requested meanwhile; returns whether a stop
    /// was requested.
    pub fn sleep(&self, duration: Duration) -> bool {
        let deadline = Instant::now().checked_add(duration);
        let mut requested = self
            .requested
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while !*requested {
            let remaining = match deadline {
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(remaining) if !remaining.is_zero() => remaining,
                    _ => break,
                },
                // Too far in the future to represent: sleep in long steps.
                None => Duration::from_secs(3600),
            };
            requested = self
                .wake
                .wait_timeout(requested, remaining)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *requested
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_without_a_request_lasts_the_duration_and_reports_no_stop() {
        let shutdown = Shutdown::new();
        let started = Instant::now();
        assert!(!shutdown.sleep(Duration::from_millis(20)));
        assert!(started.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn request_from_another_thread_ends_a_long_sleep() {
        let shutdown = Shutdown::new();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(20));
                shutdown.request();
            });
            assert!(shutdown.sleep(Duration::from_secs(600)));
        });
        assert!(shutdown.is_requested());
    }

    #[test]
    fn sleep_after_a_request_returns_at_once() {
        let shutdown = Shutdown::new();
        shutdown.request();
        assert!(shutdown.sleep(Duration::from_secs(600)));
    }
}
