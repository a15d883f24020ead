//! VMMDev's INTA# on KVM: a level-triggered GSI of the in-kernel IOAPIC.
//!
//! Where KVM has `KVM_CAP_IRQFD_RESAMPLE`, the line is an irqfd with a resample eventfd (crosvm's
//! `IrqLevelEvent` contract): raising writes the trigger eventfd and KVM asserts the GSI without a
//! system call into the VM; KVM de-asserts it at the guest's EOI and signals the resample eventfd, and a
//! small thread then asks the device whether its line is still up and, if so, triggers again. The device's
//! lowering is therefore applied at the next EOI; the Linux driver acknowledges inside its handler, before
//! that EOI, so the guest never sees the difference. A device that lowers its line without the guest's
//! handler running (INTx disabled, reset) costs at most one spurious interrupt, which the shared handler
//! answers with `IRQ_NONE`.
//!
//! Without resample support the line is driven directly with `KVM_IRQ_LINE`, both ways.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread::JoinHandle;

use kvm_ioctls::{Cap, VmFd};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};
use vmmdev_device::{InterruptLine, VmmDev};

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

/// The line as the device sees it.
#[derive(Debug)]
pub enum KvmIntx {
    /// Assertions write the trigger eventfd; KVM de-asserts at EOI.
    Irqfd {
        /// The trigger eventfd registered with KVM.
        trigger: EventFd,
    },
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
            KvmIntx::Irqfd { trigger } => {
                if asserted {
                    if let Err(error) = trigger.write(1) {
                        log::error!("cannot trigger the INTx irqfd: {error}");
                    }
                }
            }
            KvmIntx::IrqLine { vm, gsi } => {
                if let Err(error) = vm.set_irq_line(*gsi, asserted) {
                    log::error!("KVM_IRQ_LINE {gsi} {asserted}: {error}");
                }
            }
        }
    }
}

/// The line before the device exists: for irqfd mode, the resample eventfd still waits for its thread.
#[derive(Debug)]
pub struct PendingIntx {
    /// The line to give the device.
    pub line: Arc<KvmIntx>,
    resample: Option<(EventFd, EventFd)>,
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
pub fn create(vm: &Arc<VmFd>, gsi: u32, mode: IntxMode) -> Result<PendingIntx, IntxError> {
    let resample_supported = vm.check_extension(Cap::IrqfdResample);
    if mode == IntxMode::IrqLine || !resample_supported {
        if mode == IntxMode::Irqfd {
            log::info!("KVM has no irqfd resample; INTx uses KVM_IRQ_LINE");
        }
        return Ok(PendingIntx {
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
    Ok(PendingIntx {
        line: Arc::new(KvmIntx::Irqfd { trigger }),
        resample: Some((resample, stop)),
    })
}

impl PendingIntx {
    /// How the line reaches KVM.
    pub fn mode(&self) -> IntxMode {
        match *self.line {
            KvmIntx::Irqfd { .. } => IntxMode::Irqfd,
            KvmIntx::IrqLine { .. } => IntxMode::IrqLine,
        }
    }

    /// Starts the resample thread for `device` (irqfd mode only).
    pub fn start(self, device: VmmDev) -> Result<Option<ResampleThread>, IntxError> {
        let Some((resample, stop)) = self.resample else {
            return Ok(None);
        };
        let thread_stop = stop.try_clone().map_err(IntxError::EventFd)?;
        let line = Arc::clone(&self.line);
        let thread = std::thread::Builder::new()
            .name("intx-resample".into())
            .spawn(move || resample_loop(&resample, &thread_stop, &device, &line))
            .map_err(IntxError::Thread)?;
        Ok(Some(ResampleThread {
            stop,
            thread: Some(thread),
        }))
    }
}

/// Waits for EOIs; re-triggers while the device still asserts its line.
fn resample_loop(resample: &EventFd, stop: &EventFd, device: &VmmDev, line: &KvmIntx) {
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
    loop {
        // SAFETY: `fds` is a valid array of two pollfd structures for the duration of the call; the
        // eventfds outlive the loop.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
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
            // A non-blocking read that finds nothing only means another EOI was already consumed.
            let _ = resample.read();
            if device.interrupt_level() {
                line.set_level(true);
            }
        }
    }
}
