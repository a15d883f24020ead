//! A token bucket for log lines the guest can trigger.
//!
//! Every diagnostic the device emits because of guest input (a malformed request, backdoor
//! output) goes through a limiter, so a hostile guest cannot flood the host log. Suppressed
//! lines are counted and the count is reported with the next permitted line.

use std::time::{Duration, Instant};

/// Lines allowed in a burst.
const DEFAULT_BURST: u32 = 20;
/// Time for one token to come back.
const DEFAULT_REFILL: Duration = Duration::from_millis(100);

/// Token-bucket rate limiter.
#[derive(Debug)]
pub struct RateLimiter {
    burst: u32,
    refill: Duration,
    tokens: u32,
    last_refill: Instant,
    suppressed: u64,
}

impl RateLimiter {
    /// A limiter allowing `burst` lines at once and one more every `refill`.
    pub fn new(burst: u32, refill: Duration) -> Self {
        RateLimiter {
            burst,
            refill,
            tokens: burst,
            last_refill: Instant::now(),
            suppressed: 0,
        }
    }

    /// Takes a token. `Some(n)` = log now, after mentioning `n` suppressed lines;
    /// `None` = suppress this line.
    pub fn permit(&mut self) -> Option<u64> {
        let now = Instant::now();
        if !self.refill.is_zero() {
            let elapsed = now.saturating_duration_since(self.last_refill);
            let earned = elapsed.as_nanos() / self.refill.as_nanos();
            if earned > 0 {
                let earned = u32::try_from(earned).unwrap_or(u32::MAX);
                self.tokens = self.tokens.saturating_add(earned).min(self.burst);
                self.last_refill = now;
            }
        }
        if self.tokens == 0 {
            self.suppressed += 1;
            return None;
        }
        self.tokens -= 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new(DEFAULT_BURST, DEFAULT_REFILL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_is_permitted_then_lines_are_suppressed() {
        let mut limiter = RateLimiter::new(2, Duration::from_secs(3600));
        assert_eq!(limiter.permit(), Some(0));
        assert_eq!(limiter.permit(), Some(0));
        assert_eq!(limiter.permit(), None);
        assert_eq!(limiter.permit(), None);
    }

    #[test]
    fn suppressed_count_is_reported_once_tokens_return() {
        let mut limiter = RateLimiter::new(1, Duration::from_nanos(1));
        limiter.tokens = 0;
        limiter.suppressed = 5;
        std::thread::sleep(Duration::from_millis(1));
        assert_eq!(limiter.permit(), Some(5));
    }
}
