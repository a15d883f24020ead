//! INTx over vfio-user: the device's level-triggered line emulated with an eventfd.
//!
//! vfio emulates a level-triggered interrupt with an edge (an eventfd write) plus a mask: when the
//! device asserts the line, the server signals the client's eventfd and masks the interrupt
//! ("automasked"); the client injects the interrupt and, once the guest has serviced it (its
//! EOI), sends SET_IRQS with ACTION_UNMASK. If the line is still asserted at that point, the
//! server signals again. [`Intx`] implements that contract as the device's [`InterruptLine`].
//!
//! Only the latest trigger eventfd is kept; SET_IRQS with DATA_NONE | ACTION_TRIGGER and count 0
//! disables the interrupt. Mask/unmask through eventfds (KVM resample irqfds) is not supported:
//! the client then falls back to unmask messages. Eventfds are made non-blocking and must really
//! be eventfds, so a hostile descriptor can never stall the thread raising the interrupt.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use vfio_bindings::bindings::vfio::{
    VFIO_IRQ_SET_ACTION_MASK, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_ACTION_TYPE_MASK,
    VFIO_IRQ_SET_ACTION_UNMASK, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE,
    VFIO_IRQ_SET_DATA_TYPE_MASK,
};
use vmmdev_device::InterruptLine;

use crate::layout::{IRQ_INTX, NUM_IRQS};

/// Why a SET_IRQS request was refused. Interrupt state is unchanged after any error.
#[derive(Debug, thiserror::Error)]
pub enum IrqError {
    /// The interrupt index does not exist.
    #[error("interrupt index {0} does not exist")]
    NoSuchIndex(u32),
    /// The index exists but has no vectors (MSI, MSI-X, error, request).
    #[error("interrupt index {0} has no vectors")]
    NoVectors(u32),
    /// Flags do not name exactly one data type and one action, or name unknown ones.
    #[error("invalid SET_IRQS flags {0:#x}")]
    InvalidFlags(u32),
    /// `start`/`count` outside the single INTx vector, or inconsistent with the flags.
    #[error("SET_IRQS start {start} count {count} is not valid for flags {flags:#x}")]
    InvalidRange {
        /// First vector.
        start: u32,
        /// Number of vectors.
        count: u32,
        /// Flags of the request.
        flags: u32,
    },
    /// The number of file descriptors does not match the request.
    #[error("SET_IRQS expects {expected} file descriptors, got {got}")]
    FdCount {
        /// Descriptors the flags and count call for.
        expected: usize,
        /// Descriptors received.
        got: usize,
    },
    /// The descriptor is not an eventfd.
    #[error("the INTx trigger descriptor is not an eventfd ({0})")]
    NotAnEventfd(String),
    /// The descriptor could not be made non-blocking.
    #[error("cannot configure the INTx eventfd")]
    Configure(#[source] io::Error),
    /// Masking or unmasking through an eventfd (resample irqfd).
    #[error("mask/unmask through an eventfd is not supported")]
    EventfdMaskUnsupported,
}

impl IrqError {
    /// The errno reported to the client.
    pub fn errno(&self) -> i32 {
        match self {
            IrqError::EventfdMaskUnsupported => libc::ENOTSUP,
            IrqError::Configure(error) => error.raw_os_error().unwrap_or(libc::EIO),
            _ => libc::EINVAL,
        }
    }
}

/// Counters of interrupt traffic, for the figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IntxCounts {
    /// Eventfd signals sent to the client.
    pub signals: u64,
    /// Unmask requests received.
    pub unmasks: u64,
}

#[derive(Debug, Default)]
struct State {
    trigger: Option<File>,
    masked: bool,
    asserted: bool,
}

/// The device's INTA# line, delivered through the client's eventfd.
#[derive(Debug, Default)]
pub struct Intx {
    state: Mutex<State>,
    signals: AtomicU64,
    unmasks: AtomicU64,
}

impl InterruptLine for Intx {
    fn set_level(&self, asserted: bool) {
        let mut state = self.state.lock();
        state.asserted = asserted;
        if asserted {
            self.deliver(&mut state);
        }
    }
}

impl Intx {
    /// A line with no eventfd yet (interrupts are latched in the device until one arrives).
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies a SET_IRQS request.
    pub fn set_irqs(
        &self,
        index: u32,
        flags: u32,
        start: u32,
        count: u32,
        fds: Vec<File>,
    ) -> Result<(), IrqError> {
        if index as usize >= NUM_IRQS {
            return Err(IrqError::NoSuchIndex(index));
        }
        let data = flags & VFIO_IRQ_SET_DATA_TYPE_MASK;
        let action = flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
        let known = VFIO_IRQ_SET_DATA_TYPE_MASK | VFIO_IRQ_SET_ACTION_TYPE_MASK;
        if flags & !known != 0 || data.count_ones() != 1 || action.count_ones() != 1 {
            return Err(IrqError::InvalidFlags(flags));
        }
        let expected_fds = if data == VFIO_IRQ_SET_DATA_EVENTFD {
            count as usize
        } else {
            0
        };
        if fds.len() != expected_fds {
            return Err(IrqError::FdCount {
                expected: expected_fds,
                got: fds.len(),
            });
        }
        let range_error = IrqError::InvalidRange {
            start,
            count,
            flags,
        };
        if index != IRQ_INTX {
            // Nothing to configure; only "disable everything" is meaningful.
            return if action == VFIO_IRQ_SET_ACTION_TRIGGER && count == 0 {
                Ok(())
            } else {
                Err(IrqError::NoVectors(index))
            };
        }
        if start != 0 || count > 1 {
            return Err(range_error);
        }
        match (action, data, count) {
            (VFIO_IRQ_SET_ACTION_TRIGGER, _, 0) => {
                self.disable();
                Ok(())
            }
            (VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_EVENTFD, 1) => {
                let file = fds.into_iter().next().ok_or(range_error)?;
                self.install(file)
            }
            (VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_NONE, 1) => {
                let mut state = self.state.lock();
                self.deliver(&mut state);
                Ok(())
            }
            (VFIO_IRQ_SET_ACTION_UNMASK, VFIO_IRQ_SET_DATA_NONE, 1) => {
                self.unmasks.fetch_add(1, Ordering::Relaxed);
                let mut state = self.state.lock();
                state.masked = false;
                if state.asserted {
                    self.deliver(&mut state);
                }
                Ok(())
            }
            (VFIO_IRQ_SET_ACTION_MASK, VFIO_IRQ_SET_DATA_NONE, 1) => {
                self.state.lock().masked = true;
                Ok(())
            }
            (
                VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_ACTION_UNMASK,
                VFIO_IRQ_SET_DATA_EVENTFD,
                _,
            ) => Err(IrqError::EventfdMaskUnsupported),
            _ => Err(range_error),
        }
    }

    /// Drops the eventfd and the mask (client gone or interrupt disabled). The level the
    /// device drives is kept: a later eventfd receives it.
    pub fn disable(&self) {
        let mut state = self.state.lock();
        state.trigger = None;
        state.masked = false;
    }

    /// Whether the interrupt is currently masked.
    pub fn is_masked(&self) -> bool {
        self.state.lock().masked
    }

    /// Interrupt traffic so far.
    pub fn counts(&self) -> IntxCounts {
        IntxCounts {
            signals: self.signals.load(Ordering::Relaxed),
            unmasks: self.unmasks.load(Ordering::Relaxed),
        }
    }

    fn install(&self, file: File) -> Result<(), IrqError> {
        check_eventfd(&file)?;
        set_nonblocking(&file).map_err(IrqError::Configure)?;
        let mut state = self.state.lock();
        state.trigger = Some(file);
        state.masked = false;
        if state.asserted {
            self.deliver(&mut state);
        }
        Ok(())
    }

    /// Signals the eventfd and masks, unless masked or without an eventfd.
    fn deliver(&self, state: &mut State) {
        if state.masked {
            return;
        }
        let Some(trigger) = state.trigger.as_mut() else {
            return;
        };
        match trigger.write_all(&1u64.to_ne_bytes()) {
            Ok(()) => {
                state.masked = true;
                self.signals.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => log::warn!("cannot signal the INTx eventfd: {error}"),
        }
    }
}

/// Refuses descriptors that are not eventfds (where the kernel says so).
fn check_eventfd(file: &File) -> Result<(), IrqError> {
    let link = format!("/proc/self/fd/{}", file.as_raw_fd());
    match std::fs::read_link(&link) {
        Ok(target) if target.as_os_str() == "anon_inode:[eventfd]" => Ok(()),
        Ok(target) => Err(IrqError::NotAnEventfd(target.display().to_string())),
        Err(error) => {
            log::debug!("cannot identify the INTx descriptor ({error}); accepting it");
            Ok(())
        }
    }
}

fn set_nonblocking(file: &File) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own, with integer arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::FromRawFd;

    const TRIGGER_EVENTFD: u32 = VFIO_IRQ_SET_ACTION_TRIGGER | VFIO_IRQ_SET_DATA_EVENTFD;
    const TRIGGER_NONE: u32 = VFIO_IRQ_SET_ACTION_TRIGGER | VFIO_IRQ_SET_DATA_NONE;
    const UNMASK: u32 = VFIO_IRQ_SET_ACTION_UNMASK | VFIO_IRQ_SET_DATA_NONE;
    const MASK: u32 = VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_DATA_NONE;

    fn eventfd() -> (File, File) {
        // SAFETY: plain eventfd creation.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        assert!(fd >= 0);
        // SAFETY: fresh descriptor owned by nothing else.
        let file = unsafe { File::from_raw_fd(fd) };
        let copy = file.try_clone().unwrap();
        (file, copy)
    }

    /// Reads and resets the eventfd counter (0 if it was never signalled).
    fn take_signals(file: &mut File) -> u64 {
        let mut buf = [0u8; 8];
        match file.read(&mut buf) {
            Ok(8) => u64::from_ne_bytes(buf),
            _ => 0,
        }
    }

    fn enabled() -> (Intx, File) {
        let intx = Intx::new();
        let (theirs, ours) = eventfd();
        intx.set_irqs(0, TRIGGER_EVENTFD, 0, 1, vec![theirs])
            .unwrap();
        (intx, ours)
    }

    #[test]
    fn assertion_signals_the_eventfd_once_and_automasks() {
        let (intx, mut fd) = enabled();
        intx.set_level(true);
        intx.set_level(false);
        intx.set_level(true);
        assert_eq!(take_signals(&mut fd), 1);
        assert!(intx.is_masked());
    }

    #[test]
    fn unmask_with_the_line_still_asserted_signals_again() {
        let (intx, mut fd) = enabled();
        intx.set_level(true);
        take_signals(&mut fd);

        intx.set_irqs(0, UNMASK, 0, 1, vec![]).unwrap();

        assert_eq!(take_signals(&mut fd), 1);
        assert!(intx.is_masked());
    }

    #[test]
    fn unmask_with_the_line_low_only_unmasks() {
        let (intx, mut fd) = enabled();
        intx.set_level(true);
        intx.set_level(false);
        take_signals(&mut fd);

        intx.set_irqs(0, UNMASK, 0, 1, vec![]).unwrap();

        assert_eq!(take_signals(&mut fd), 0);
        assert!(!intx.is_masked());
        intx.set_level(true);
        assert_eq!(take_signals(&mut fd), 1, "the next assertion is delivered");
    }

    #[test]
    fn masked_line_is_not_signalled() {
        let (intx, mut fd) = enabled();
        intx.set_irqs(0, MASK, 0, 1, vec![]).unwrap();
        intx.set_level(true);
        assert_eq!(take_signals(&mut fd), 0);
    }

    #[test]
    fn only_the_latest_eventfd_is_signalled() {
        let (intx, mut first) = enabled();
        let (theirs, mut second) = eventfd();
        intx.set_irqs(0, TRIGGER_EVENTFD, 0, 1, vec![theirs])
            .unwrap();

        intx.set_level(true);

        assert_eq!(take_signals(&mut first), 0);
        assert_eq!(take_signals(&mut second), 1);
    }

    #[test]
    fn new_eventfd_receives_a_line_asserted_before_it() {
        let intx = Intx::new();
        intx.set_level(true);
        let (theirs, mut ours) = eventfd();
        intx.set_irqs(0, TRIGGER_EVENTFD, 0, 1, vec![theirs])
            .unwrap();
        assert_eq!(take_signals(&mut ours), 1);
    }

    #[test]
    fn trigger_with_count_zero_disables() {
        let (intx, mut fd) = enabled();
        intx.set_irqs(0, TRIGGER_NONE, 0, 0, vec![]).unwrap();
        intx.set_level(true);
        assert_eq!(take_signals(&mut fd), 0);
    }

    #[test]
    fn software_trigger_signals_when_unmasked() {
        let (intx, mut fd) = enabled();
        intx.set_irqs(0, TRIGGER_NONE, 0, 1, vec![]).unwrap();
        assert_eq!(take_signals(&mut fd), 1);
    }

    #[test]
    fn counts_report_signals_and_unmasks() {
        let (intx, _fd) = enabled();
        intx.set_level(true);
        intx.set_irqs(0, UNMASK, 0, 1, vec![]).unwrap();
        assert_eq!(
            intx.counts(),
            IntxCounts {
                signals: 2,
                unmasks: 1
            }
        );
    }

    #[test]
    fn a_non_eventfd_descriptor_is_refused() {
        let intx = Intx::new();
        let file = File::open("/dev/null").unwrap();
        let error = intx
            .set_irqs(0, TRIGGER_EVENTFD, 0, 1, vec![file])
            .unwrap_err();
        assert!(matches!(error, IrqError::NotAnEventfd(_)));
        assert_eq!(error.errno(), libc::EINVAL);
    }

    #[test]
    fn missing_or_extra_descriptors_are_refused() {
        let intx = Intx::new();
        let error = intx.set_irqs(0, TRIGGER_EVENTFD, 0, 1, vec![]).unwrap_err();
        assert!(matches!(
            error,
            IrqError::FdCount {
                expected: 1,
                got: 0
            }
        ));
        let (extra, _) = eventfd();
        let error = intx.set_irqs(0, UNMASK, 0, 1, vec![extra]).unwrap_err();
        assert!(matches!(
            error,
            IrqError::FdCount {
                expected: 0,
                got: 1
            }
        ));
    }

    #[test]
    fn malformed_flags_and_ranges_are_refused() {
        let intx = Intx::new();
        for (flags, start, count) in [
            (VFIO_IRQ_SET_ACTION_TRIGGER, 0, 1),
            (TRIGGER_NONE | VFIO_IRQ_SET_ACTION_MASK, 0, 1),
            (TRIGGER_NONE | 0x100, 0, 1),
            (TRIGGER_NONE, 1, 1),
            (TRIGGER_NONE, 0, 2),
            (UNMASK, 0, 0),
        ] {
            assert!(
                intx.set_irqs(0, flags, start, count, vec![]).is_err(),
                "{flags:#x} {start} {count}"
            );
        }
    }

    #[test]
    fn resample_eventfd_unmask_is_unsupported() {
        let intx = Intx::new();
        let (fd, _) = eventfd();
        let flags = VFIO_IRQ_SET_ACTION_UNMASK | VFIO_IRQ_SET_DATA_EVENTFD;
        let error = intx.set_irqs(0, flags, 0, 1, vec![fd]).unwrap_err();
        assert_eq!(error.errno(), libc::ENOTSUP);
    }

    #[test]
    fn other_indices_accept_only_disabling() {
        let intx = Intx::new();
        intx.set_irqs(1, TRIGGER_NONE, 0, 0, vec![]).unwrap();
        assert!(matches!(
            intx.set_irqs(2, TRIGGER_NONE, 0, 1, vec![]),
            Err(IrqError::NoVectors(2))
        ));
        assert!(matches!(
            intx.set_irqs(5, TRIGGER_NONE, 0, 0, vec![]),
            Err(IrqError::NoSuchIndex(5))
        ));
    }
}
