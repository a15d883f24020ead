//! VMMDev's INTA# on KVM: a level-triggered GSI of the in-kernel IOAPIC.
//!
//! Where KVM has `KVM_CAP_IRQFD_RESAMPLE`, the line is an irqfd with a resample eventfd: writing the
//! trigger eventfd makes KVM assert the GSI (from a kernel worker, so the assertion lands a little
//! later), and KVM de-asserts it on its own and signals the resample eventfd. The device's lowering is
//! therefore never sent to KVM; the question is only when to assert again, and [`IrqfdLevel`] answers it:
//!
//! * at most one trigger is outstanding between two resamples, so the device's own assertion and a
//!   re-assertion after a resample can never both land (two triggers for one rising edge put a second,
//!   late assertion behind the guest's acknowledge: a spurious interrupt);
//! * after a resample, the line is asserted again at once only if the device lowered it since the last
//!   trigger and raised it again (the guest handled that interrupt, and new events came). If the device
//!   never lowered it, the guest has not yet acknowledged the interrupt it was given: KVM resampled
//!   before the guest's handler ran (PVM does, see below), or the guest ended the interrupt without
//!   acknowledging it. The line is then asserted again only if it is still up, unacknowledged, after
//!   [`RECHECK_DELAY`].
//!
//! On hardware KVM the resample comes at the guest's EOI (the IOAPIC's ack notifier), after the Linux
//! handler acknowledged the events, so the second rule never delays anything there. On this project's
//! PVM host the resample was measured arriving before the handler's first instruction ran (one resample
//! per delivery, none at the EOI); re-asserting at that point made the IOAPIC deliver the vector again
//! right after the guest's EOI, with no event pending.
//!
//! A device that lowers its line without the guest's handler running (INTx disabled, reset) costs at
//! most one spurious interrupt, which the shared handler answers with `IRQ_NONE`.
//!
//! Without resample support the line is driven directly with `KVM_IRQ_LINE`, both ways.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvm_ioctls::{Cap, VmFd};
use parking_lot::Mutex;
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};
use vmmdev_device::InterruptLine;

/// How long a line the guest was told about, and neither acknowledged nor saw lowered, stays up
/// before it is asserted again. Long enough for an emulated (PVM) guest to reach its acknowledge.
pub const RECHECK_DELAY: Duration = Duration::from_millis(100);

/// How the line reaches KVM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntxMode {
    /// irqfd + resample eventfd.
    Irqfd,
    /// `KVM_IRQ_LINE` ioctls.
    IrqLine,
}

/// Errors of setting up the line.
#[derive(Debug, thiserror::Error)]
pub enum IntxError {
    /// An eventfd could not be created.
    #[error("cannot create an eventfd for INTx")]
    EventFd(#[source] io::Error),
    /// KVM refused the irqfd.
    #[error("KVM refused the INTx irqfd for GSI {gsi}")]
    Irqfd {
        /// The GSI.
        gsi: u32,
        /// Why.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// The resample thread could not start.
    #[error("cannot start the INTx resample thread")]
    Thread(#[source] io::Error),
}

/// When to write the irqfd's trigger: the device's transitions and KVM's resamples in, trigger
/// decisions out. Pure state; [`IrqfdLine`] applies it under one lock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IrqfdLevel {
    /// The device's INTA# as of its last transition.
    device_level: bool,
    /// A trigger was written and KVM has not resampled since.
    kvm_asserted: bool,
    /// The device lowered its line after the last trigger: the guest acknowledged that interrupt.
    lowered_since_trigger: bool,
}

impl IrqfdLevel {
    /// The device drove its line to `level`; returns whether to write the trigger.
    pub fn device_changed(&mut self, level: bool) -> bool {
        self.device_level = level;
        if !level {
            self.lowered_since_trigger = true;
            return false;
        }
        self.assert_unless_outstanding()
    }

    /// KVM de-asserted the GSI and signalled the resample eventfd; returns whether to write the trigger
    /// now. A line still up without an acknowledge since the last trigger waits for [`Self::recheck`].
    pub fn resampled(&mut self) -> bool {
        self.kvm_asserted = false;
        if self.device_level && self.lowered_since_trigger {
            return self.assert_unless_outstanding();
        }
        false
    }

    /// Whether a resample left the line up without an acknowledge (a recheck is due).
    pub fn awaits_acknowledge(&self) -> bool {
        self.device_level && !self.kvm_asserted && !self.lowered_since_trigger
    }

    /// [`RECHECK_DELAY`] after such a resample: returns whether to write the trigger (the line is still
    /// up, still unacknowledged and not asserted in KVM).
    pub fn recheck(&mut self) -> bool {
        if self.awaits_acknowledge() {
            return self.assert_unless_outstanding();
        }
        false
    }

    fn assert_unless_outstanding(&mut self) -> bool {
        if self.kvm_asserted {
            return false;
        }
        self.kvm_asserted = true;
        self.lowered_since_trigger = false;
        true
    }
}

/// An irqfd with resample: the trigger eventfd and the level state deciding when to write it.
#[derive(Debug)]
pub struct IrqfdLine {
    trigger: EventFd,
    level: Mutex<IrqfdLevel>,
}

impl IrqfdLine {
    /// Applies `decide` to the state and writes the trigger if it says so, under the state's lock so
    /// that the trigger order is the decision order.
    /// Returns whether it wrote the trigger and the state after the decision.
    fn apply(&self, decide: impl FnOnce(&mut IrqfdLevel) -> bool) -> (bool, IrqfdLevel) {
        let mut level = self.level.lock();
        let trigger = decide(&mut level);
        if trigger {
            if let Err(error) = self.trigger.write(1) {
                log::error!("cannot trigger the INTx irqfd: {error}");
            }
        }
        (trigger, *level)
    }
}

/// The line as the device sees it.
#[derive(Debug)]
pub enum KvmIntx {
    /// Assertions write the trigger eventfd; KVM de-asserts and resamples.
    Irqfd(Arc<IrqfdLine>),
    /// Both directions are `KVM_IRQ_LINE` calls.
    IrqLine {
        /// The VM.
        vm: Arc<VmFd>,
        /// The GSI.
        gsi: u32,
    },
}

impl InterruptLine for KvmIntx {
    fn set_level(&self, asserted: bool) {
        match self {
            KvmIntx::Irqfd(line) => {
                line.apply(|level| level.device_changed(asserted));
            }
            KvmIntx::IrqLine { vm, gsi } => {
                if let Err(error) = vm.set_irq_line(*gsi, asserted) {
                    log::error!("KVM_IRQ_LINE {gsi} {asserted}: {error}");
                }
            }
        }
    }
}

/// The line and, in irqfd mode, the thread that answers KVM's resamples.
#[derive(Debug)]
pub struct Intx {
    /// The line to give the device.
    pub line: Arc<KvmIntx>,
    /// The resample thread (irqfd mode only); dropping it stops the thread.
    pub resample: Option<ResampleThread>,
}

/// The running resample thread; dropping it stops the thread.
#[derive(Debug)]
pub struct ResampleThread {
    stop: EventFd,
    thread: Option<JoinHandle<()>>,
}

impl Drop for ResampleThread {
    fn drop(&mut self) {
        let _ = self.stop.write(1);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Creates the line for `gsi` in `mode` (irqfd falls back to `KVM_IRQ_LINE` without resample support).
pub fn create(vm: &Arc<VmFd>, gsi: u32, mode: IntxMode) -> Result<Intx, IntxError> {
    let resample_supported = vm.check_extension(Cap::IrqfdResample);
    if mode == IntxMode::IrqLine || !resample_supported {
        if mode == IntxMode::Irqfd {
            log::info!("KVM has no irqfd resample; INTx uses KVM_IRQ_LINE");
        }
        return Ok(Intx {
            line: Arc::new(KvmIntx::IrqLine {
                vm: Arc::clone(vm),
                gsi,
            }),
            resample: None,
        });
    }
    let trigger = EventFd::new(EFD_NONBLOCK).map_err(IntxError::EventFd)?;
    let resample = EventFd::new(EFD_NONBLOCK).map_err(IntxError::EventFd)?;
    let stop = EventFd::new(EFD_NONBLOCK).map_err(IntxError::EventFd)?;
    vm.register_irqfd_with_resample(&trigger, &resample, gsi)
        .map_err(|source| IntxError::Irqfd { gsi, source })?;
    let irqfd = Arc::new(IrqfdLine {
        trigger,
        level: Mutex::new(IrqfdLevel::default()),
    });
    let thread_stop = stop.try_clone().map_err(IntxError::EventFd)?;
    let thread_line = Arc::clone(&irqfd);
    let thread = std::thread::Builder::new()
        .name("intx-resample".into())
        .spawn(move || resample_loop(&resample, &thread_stop, &thread_line))
        .map_err(IntxError::Thread)?;
    Ok(Intx {
        line: Arc::new(KvmIntx::Irqfd(irqfd)),
        resample: Some(ResampleThread {
            stop,
            thread: Some(thread),
        }),
    })
}

impl Intx {
    /// How the line reaches KVM.
    pub fn mode(&self) -> IntxMode {
        match *self.line {
            KvmIntx::Irqfd(_) => IntxMode::Irqfd,
            KvmIntx::IrqLine { .. } => IntxMode::IrqLine,
        }
    }
}

/// Waits for resamples (and, while a line waits for its acknowledge, for its recheck time).
fn resample_loop(resample: &EventFd, stop: &EventFd, line: &IrqfdLine) {
    let mut fds = [
        libc::pollfd {
            fd: resample.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: stop.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let mut recheck_at: Option<Instant> = None;
    loop {
        let timeout_ms = recheck_at.map_or(-1, |at| {
            let left = at.saturating_duration_since(Instant::now());
            // Rounded up so that the recheck never runs early.
            i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
        });
        // SAFETY: `fds` is a valid array of two pollfd structures for the duration of the call; the
        // eventfds outlive the loop.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if ready < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            log::error!("INTx resample thread: poll failed: {error}");
            return;
        }
        if fds[1].revents != 0 {
            return;
        }
        if fds[0].revents & libc::POLLIN != 0 {
            // A non-blocking read that finds nothing only means another resample was already consumed.
            let _ = resample.read();
            let (_, state) = line.apply(IrqfdLevel::resampled);
            if state.awaits_acknowledge() {
                log::trace!("INTx resampled before the guest acknowledged; recheck scheduled");
                recheck_at = Some(Instant::now() + RECHECK_DELAY);
            } else {
                recheck_at = None;
            }
        } else if recheck_at.is_some_and(|at| Instant::now() >= at) {
            recheck_at = None;
            let (asserted, _) = line.apply(IrqfdLevel::recheck);
            if asserted {
                log::debug!(
                    "INTx still up and unacknowledged after {RECHECK_DELAY:?}: asserted again"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line that the device raised once; its trigger was written.
    fn raised() -> IrqfdLevel {
        let mut level = IrqfdLevel::default();
        assert!(level.device_changed(true));
        level
    }

    #[test]
    fn first_assertion_writes_the_trigger() {
        let mut level = IrqfdLevel::default();
        assert!(level.device_changed(true));
    }

    #[test]
    fn lowering_never_writes_the_trigger() {
        let mut level = raised();
        assert!(!level.device_changed(false));
    }

    #[test]
    fn raise_while_kvm_still_holds_the_line_waits_for_the_resample() {
        let mut level = raised();
        level.device_changed(false);
        assert!(
            !level.device_changed(true),
            "one trigger outstanding at most"
        );
        assert!(level.resampled(), "the resample asserts the new events");
    }

    #[test]
    fn resample_before_the_acknowledge_does_not_assert_again() {
        let mut level = raised();
        assert!(!level.resampled());
        assert!(level.awaits_acknowledge());
    }

    #[test]
    fn acknowledge_after_an_early_resample_cancels_the_recheck() {
        let mut level = raised();
        level.resampled();
        level.device_changed(false);
        assert!(!level.awaits_acknowledge());
        assert!(!level.recheck());
    }

    #[test]
    fn new_events_after_an_early_resample_and_acknowledge_assert_at_once() {
        let mut level = raised();
        level.resampled();
        level.device_changed(false);
        assert!(level.device_changed(true));
    }

    #[test]
    fn line_left_up_without_acknowledge_is_asserted_again_at_the_recheck() {
        let mut level = raised();
        level.resampled();
        assert!(level.recheck());
        assert!(!level.recheck(), "asserted once, until the next resample");
    }

    #[test]
    fn resample_with_the_line_down_does_nothing() {
        let mut level = raised();
        level.device_changed(false);
        assert!(!level.resampled());
        assert!(!level.awaits_acknowledge());
    }

    #[test]
    fn raise_after_the_resample_writes_the_trigger() {
        let mut level = raised();
        level.device_changed(false);
        level.resampled();
        assert!(level.device_changed(true));
    }
}
