//! The console: a 16550 UART (vm-superio) on COM1 whose output goes to a writer (standard output) and
//! whose input comes from the monitor's standard input.
//!
//! Its interrupt is ISA IRQ 4 through an irqfd (edge semantics: each trigger is one pulse). Input bytes are
//! queued only as far as the UART's FIFO has room; the rest waits in the input thread until the guest
//! has read, so nothing typed is lost.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use parking_lot::Mutex;
use vm_superio::serial::NoEvents;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

/// How long the input thread waits for FIFO room before it retries.
const INPUT_RETRY: Duration = Duration::from_millis(5);

/// The UART's interrupt: an eventfd registered as an irqfd.
#[derive(Debug)]
pub struct EventFdTrigger(pub EventFd);

impl Trigger for EventFdTrigger {
    type E = io::Error;

    fn trigger(&self) -> io::Result<()> {
        self.0.write(1)
    }
}

/// The UART with its output.
pub type Uart = Serial<EventFdTrigger, NoEvents, Box<dyn Write + Send>>;

/// The console device shared by the vCPUs and the input thread.
#[derive(Clone)]
pub struct Console {
    uart: Arc<Mutex<Uart>>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").finish_non_exhaustive()
    }
}

impl Console {
    /// A UART raising `interrupt` and writing to `output`.
    pub fn new(interrupt: EventFd, output: Box<dyn Write + Send>) -> Self {
        Self {
            uart: Arc::new(Mutex::new(Serial::new(EventFdTrigger(interrupt), output))),
        }
    }

    /// A guest read of register `offset` (0–7).
    pub fn read(&self, offset: u8) -> u8 {
        self.uart.lock().read(offset)
    }

    /// A guest write of register `offset` (0–7).
    pub fn write(&self, offset: u8, value: u8) {
        if let Err(error) = self.uart.lock().write(offset, value) {
            log::warn!("serial output failed: {error:?}");
        }
    }

    /// Feeds `input` (the monitor's standard input) to the guest until it ends; returns on end of input.
    pub fn spawn_input(&self, mut input: impl Read + Send + 'static) -> io::Result<()> {
        let uart = Arc::clone(&self.uart);
        thread::Builder::new()
            .name("serial-input".into())
            .spawn(move || {
                let mut buffer = [0u8; 64];
                loop {
                    let count = match input.read(&mut buffer) {
                        Ok(0) => return,
                        Ok(count) => count,
                        Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                        Err(error) => {
                            log::warn!("serial input ended: {error}");
                            return;
                        }
                    };
                    let mut pending = buffer.get(..count).unwrap_or_default();
                    while !pending.is_empty() {
                        let queued = {
                            let mut uart = uart.lock();
                            let room = uart.fifo_capacity().min(pending.len());
                            if room == 0 {
                                0
                            } else {
                                uart.enqueue_raw_bytes(&pending[..room]).unwrap_or(0)
                            }
                        };
                        pending = &pending[queued..];
                        if !pending.is_empty() {
                            thread::sleep(INPUT_RETRY);
                        }
                    }
                }
            })
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A writer that forwards what the UART transmits.
    struct Channel(mpsc::Sender<u8>);
    impl Write for Channel {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            for &b in buf {
                let _ = self.0.send(b);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn bytes_written_to_the_data_register_reach_the_output() {
        let (sender, receiver) = mpsc::channel();
        let console = Console::new(EventFd::new(0).unwrap(), Box::new(Channel(sender)));
        console.write(0, b'h');
        console.write(0, b'i');
        assert_eq!(receiver.try_iter().collect::<Vec<_>>(), b"hi");
    }

    #[test]
    fn input_arrives_in_the_receive_buffer() {
        let (sender, _receiver) = mpsc::channel();
        let console = Console::new(EventFd::new(0).unwrap(), Box::new(Channel(sender)));
        console.spawn_input(io::Cursor::new(b"x".to_vec())).unwrap();
        let mut byte = 0;
        for _ in 0..200 {
            // Line status register bit 0: data ready.
            if console.read(5) & 1 != 0 {
                byte = console.read(0);
                break;
            }
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(byte, b'x');
    }
}
