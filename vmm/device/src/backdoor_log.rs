//! The backdoor log port (I/O port 0x504, outside any BAR).
//!
//! The Linux driver writes every message it prints byte by byte to this port, during every
//! probe (linux-guest H-1.4). The device collects the bytes into lines (flushed on CR/LF or
//! after 511 characters, like VirtualBox), logs each line through `log` at a rate the guest
//! cannot turn into a flood, and keeps the most recent lines in a bounded ring the embedder can
//! read as a test oracle. Other access widths are ignored; nothing here is ever fatal.

use std::collections::VecDeque;

use crate::ratelimit::RateLimiter;

use vmmdev_protocol::vmmdev::BACKDOOR_LOG_MAX_LINE as MAX_LINE_LEN;

/// Default number of lines kept for the embedder.
pub const DEFAULT_RING_LINES: usize = 1024;

/// Line assembler and ring buffer of guest backdoor output.
#[derive(Debug)]
pub struct BackdoorLog {
    partial: Vec<u8>,
    lines: VecDeque<String>,
    capacity: usize,
    dropped_lines: u64,
    limiter: RateLimiter,
}

impl BackdoorLog {
    /// A log keeping at most `capacity` complete lines (older ones are dropped first).
    pub fn new(capacity: usize) -> Self {
        BackdoorLog {
            partial: Vec::with_capacity(MAX_LINE_LEN),
            lines: VecDeque::with_capacity(capacity.min(DEFAULT_RING_LINES)),
            capacity: capacity.max(1),
            dropped_lines: 0,
            limiter: RateLimiter::default(),
        }
    }

    /// Handles one port write. Only single-byte writes carry log data.
    pub fn write(&mut self, data: &[u8]) {
        let [byte] = data else {
            return;
        };
        match byte {
            b'\n' | b'\r' => self.flush(),
            _ => {
                self.partial.push(*byte);
                if self.partial.len() >= MAX_LINE_LEN {
                    self.flush();
                }
            }
        }
    }

    /// Lines collected so far, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.lines.iter().cloned().collect()
    }

    /// Removes and returns the collected lines.
    pub fn take_lines(&mut self) -> Vec<String> {
        self.lines.drain(..).collect()
    }

    /// Number of lines pushed out of the ring because it was full.
    pub fn dropped_lines(&self) -> u64 {
        self.dropped_lines
    }

    /// Forgets any partial line (device reset).
    pub fn reset(&mut self) {
        self.partial.clear();
    }

    fn flush(&mut self) {
        if self.partial.is_empty() {
            return;
        }
        let line = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        if let Some(suppressed) = self.limiter.permit() {
            if suppressed > 0 {
                log::info!(target: "vmmdev::guest_log", "({suppressed} guest log lines suppressed)");
            }
            log::info!(target: "vmmdev::guest_log", "{}", line.escape_debug());
        }
        if self.lines.len() == self.capacity {
            self.lines.pop_front();
            self.dropped_lines += 1;
        }
        self.lines.push_back(line);
    }
}

impl Default for BackdoorLog {
    fn default() -> Self {
        Self::new(DEFAULT_RING_LINES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(log: &mut BackdoorLog, text: &[u8]) {
        for &b in text {
            log.write(&[b]);
        }
    }

    #[test]
    fn bytes_become_lines_at_newline() {
        let mut log = BackdoorLog::default();
        feed(
            &mut log,
            b"vboxguest: host-version: 7.1.6r0 0x8000000f\nsecond\r\n",
        );
        assert_eq!(
            log.lines(),
            vec!["vboxguest: host-version: 7.1.6r0 0x8000000f", "second"]
        );
    }

    #[test]
    fn partial_line_stays_pending() {
        let mut log = BackdoorLog::default();
        feed(&mut log, b"no newline yet");
        assert!(log.lines().is_empty());
    }

    #[test]
    fn long_lines_are_split_at_the_limit() {
        let mut log = BackdoorLog::default();
        feed(&mut log, &[b'x'; MAX_LINE_LEN + 3]);
        feed(&mut log, b"\n");
        let lines = log.lines();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), MAX_LINE_LEN);
        assert_eq!(lines[1], "xxx");
    }

    #[test]
    fn wider_writes_are_ignored() {
        let mut log = BackdoorLog::default();
        log.write(b"a\n");
        log.write(&[]);
        log.write(&0x0A0A_0A0Au32.to_le_bytes());
        assert!(log.lines().is_empty());
    }

    #[test]
    fn ring_keeps_only_the_newest_lines() {
        let mut log = BackdoorLog::new(2);
        feed(&mut log, b"1\n2\n3\n");
        assert_eq!(log.lines(), vec!["2", "3"]);
        assert_eq!(log.dropped_lines(), 1);
    }

    #[test]
    fn invalid_utf8_is_kept_lossily() {
        let mut log = BackdoorLog::default();
        feed(&mut log, b"\xff\xfeok\n");
        assert_eq!(log.take_lines(), vec!["\u{FFFD}\u{FFFD}ok"]);
        assert!(log.lines().is_empty());
    }
}
