//! The end of a wait that may take several HGCM calls (a retry with a larger buffer, a message
//! taken by another thread): each call is given the time that is left.

use std::time::{Duration, Instant};

use crate::hgcm::CallOptions;

/// When a wait of at most some timeout, or of no limit, ends.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadline {
    timeout: Option<Duration>,
    at: Option<Instant>,
}

impl Deadline {
    /// A wait of at most `timeout` from now; `None` waits without a limit.
    pub(crate) fn after(timeout: Option<Duration>) -> Self {
        Self {
            timeout,
            at: timeout.and_then(|timeout| Instant::now().checked_add(timeout)),
        }
    }

    /// The options of the next call: the time left as its timeout; `None` once the time is up.
    /// A timeout too far off for the clock is given whole to every call.
    pub(crate) fn call_options(&self) -> Option<CallOptions> {
        let timeout = match (self.timeout, self.at) {
            (None, _) => None,
            (Some(timeout), None) => Some(timeout),
            (Some(_), Some(at)) => Some(at.checked_duration_since(Instant::now())?),
        };
        Some(CallOptions {
            timeout,
            ..CallOptions::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_timeout_every_call_waits_without_a_limit() {
        let options = Deadline::after(None).call_options();
        assert_eq!(options.map(|options| options.timeout), Some(None));
    }

    #[test]
    fn a_call_gets_at_most_the_time_left() {
        let timeout = Duration::from_secs(60);
        let options = Deadline::after(Some(timeout)).call_options();
        let left = options.and_then(|options| options.timeout);
        assert!(left.is_some_and(|left| left <= timeout && left > Duration::from_secs(30)));
    }

    #[test]
    fn a_passed_deadline_gives_no_further_call() {
        let deadline = Deadline::after(Some(Duration::from_nanos(1)));
        std::thread::sleep(Duration::from_millis(1));
        assert!(deadline.call_options().is_none());
    }

    #[test]
    fn a_timeout_beyond_the_clock_is_given_whole() {
        let options = Deadline::after(Some(Duration::MAX)).call_options();
        assert_eq!(
            options.and_then(|options| options.timeout),
            Some(Duration::MAX)
        );
    }
}
