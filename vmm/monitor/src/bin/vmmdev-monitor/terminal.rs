//! The terminal as the guest's console: raw mode while the VM runs (so keys such as Ctrl-C reach the
//! guest's shell), restored afterwards, and the escape Ctrl-A x that ends the monitor from the keyboard.

use std::io::{self, Read};
use std::os::fd::AsRawFd;

/// The escape prefix (Ctrl-A) and the key that quits after it.
const ESCAPE: u8 = 0x01;
const QUIT: u8 = b'x';

/// Raw mode on standard input; the previous mode comes back when this is dropped.
pub struct RawTerminal {
    saved: libc::termios,
}

impl RawTerminal {
    /// Switches standard input to raw mode if it is a terminal.
    pub fn enter_if_tty() -> Option<Self> {
        let fd = io::stdin().as_raw_fd();
        // SAFETY: isatty only inspects the descriptor.
        if unsafe { libc::isatty(fd) } != 1 {
            return None;
        }
        let mut saved = std::mem::MaybeUninit::<libc::termios>::zeroed();
        // SAFETY: tcgetattr fills the termios structure it is given for a valid descriptor.
        if unsafe { libc::tcgetattr(fd, saved.as_mut_ptr()) } != 0 {
            return None;
        }
        // SAFETY: tcgetattr succeeded, so the structure is initialised.
        let saved = unsafe { saved.assume_init() };
        let mut raw = saved;
        // SAFETY: cfmakeraw only modifies the structure it is given.
        unsafe { libc::cfmakeraw(&mut raw) };
        // SAFETY: `raw` is a valid termios for this descriptor.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) } != 0 {
            return None;
        }
        Some(Self { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        // SAFETY: `saved` came from tcgetattr on the same descriptor.
        unsafe {
            libc::tcsetattr(io::stdin().as_raw_fd(), libc::TCSANOW, &self.saved);
        }
    }
}

/// Passes input through, except that Ctrl-A x calls `on_quit` (and Ctrl-A Ctrl-A sends one Ctrl-A).
pub struct EscapeReader<R, F> {
    inner: R,
    on_quit: F,
    escaped: bool,
}

impl<R: Read, F: FnMut()> EscapeReader<R, F> {
    /// Wraps `inner`.
    pub fn new(inner: R, on_quit: F) -> Self {
        Self {
            inner,
            on_quit,
            escaped: false,
        }
    }
}

impl<R: Read, F: FnMut()> Read for EscapeReader<R, F> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        loop {
            let count = self.inner.read(buffer)?;
            if count == 0 {
                return Ok(0);
            }
            let mut kept = 0;
            for index in 0..count {
                let byte = buffer[index];
                if self.escaped {
                    self.escaped = false;
                    if byte == QUIT {
                        (self.on_quit)();
                        continue;
                    }
                    if byte != ESCAPE {
                        continue;
                    }
                } else if byte == ESCAPE {
                    self.escaped = true;
                    continue;
                }
                buffer[kept] = byte;
                kept += 1;
            }
            if kept > 0 {
                return Ok(kept);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filtered(input: &[u8]) -> (Vec<u8>, u32) {
        let mut quits = 0;
        let mut out = Vec::new();
        EscapeReader::new(input, || quits += 1)
            .read_to_end(&mut out)
            .unwrap();
        (out, quits)
    }

    #[test]
    fn ordinary_input_passes_through() {
        assert_eq!(filtered(b"ls -l\r"), (b"ls -l\r".to_vec(), 0));
    }

    #[test]
    fn ctrl_a_x_quits_and_is_not_forwarded() {
        assert_eq!(filtered(b"a\x01xb"), (b"ab".to_vec(), 1));
    }

    #[test]
    fn double_ctrl_a_sends_one() {
        assert_eq!(filtered(b"\x01\x01"), (vec![0x01], 0));
    }
}
