//! The guest driver core: request submission, the probe and tear-down sequences of the Linux
//! `vboxguest` driver, and its interrupt handler.
//!
//! Requests are built the way Linux builds them (linux-guest §2.1): page-aligned contiguous
//! pages, filled with 0xAA, `rc` pre-set to `VERR_GENERAL_FAILURE`, requestor 0x1 for the
//! driver's own requests. The interrupt thread mirrors `vbg_core_isr`: it ignores the line
//! while `fHaveEvents` is 0, otherwise acknowledges through request 41 and wakes HGCM waiters
//! on the HGCM event.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use vmmdev_protocol::Status;
use vmmdev_protocol::vmmdev::{
    Events, EventsRequest, FacilityStatus, FacilityType, GuestInfo2Features, GuestInfo2Request,
    GuestInfoRequest, GuestStatusRequest, HeartbeatRequest, HostFeatures, HostVersionRequest,
    HypervisorInfoRequest, MaskRequest, MouseStatusRequest, RequestHeader, RequestType, Requestor,
    VBOXOSTYPE_LINUX26, VBOXOSTYPE_X64, VMMDEV_VERSION,
};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::irq::GuestInterrupt;
use crate::memory::{GuestRam, MemoryError, PAGE_SIZE};
use crate::transport::Transport;

/// Errors of the guest driver.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GuestError {
    /// Guest memory could not be allocated or accessed.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// The device answered a request with an error.
    #[error("request {request:?} failed with {status:?}")]
    Request {
        /// The request type.
        request: RequestType,
        /// The status in `rc`.
        status: Status,
    },
    /// GetHostVersion did not report page-list support (Linux refuses to load).
    #[error("host lacks HGCM page lists (features {0:#x})")]
    HostTooOld(u32),
    /// A wait ended by timeout.
    #[error("timed out")]
    TimedOut,
    /// A wait ended by an interruption (a signal, for a real guest).
    #[error("interrupted")]
    Interrupted,
    /// An answer could not be read back as the request's structure.
    #[error("malformed answer to {0:?}")]
    MalformedAnswer(RequestType),
    /// The interrupt thread could not be started.
    #[error("cannot start the interrupt thread: {0}")]
    InterruptThread(String),
}

/// The additions version the Linux 6.1 driver reports (vboxguest_version.h).
pub const LINUX_ADDITIONS_VERSION: (u16, u16, u32, u32) = (6, 0, 0, 127_566);
/// Event filter the Linux driver keeps fixed: HGCM and mouse position.
pub const LINUX_FIXED_EVENTS: u32 = Events::HGCM.bits() | Events::MOUSE_POSITION_CHANGED.bits();
/// Requestor of the core driver's own requests.
pub const DRIVER_REQUESTOR: Requestor = Requestor::KERNEL_DRIVER;

/// What the probe learnt from the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostInfo {
    /// major, minor, build, revision.
    pub version: (u16, u16, u32, u32),
    /// Feature bits.
    pub features: u32,
    /// Whether the heartbeat was enabled (the host should refuse it).
    pub heartbeat: bool,
}

pub(crate) struct Inner {
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) ram: GuestRam,
    pub(crate) irq: Arc<GuestInterrupt>,
    /// Generation counter bumped by the ISR on every HGCM event.
    pub(crate) hgcm_events: Mutex<u64>,
    pub(crate) hgcm_wake: Condvar,
    /// Non-HGCM events delivered by the ISR, for `wait_for_events`.
    pub(crate) events: Mutex<u32>,
    pub(crate) events_wake: Condvar,
    pub(crate) stop: AtomicBool,
    pub(crate) spurious: AtomicU64,
    pub(crate) handled: AtomicU64,
    /// The ISR's pre-allocated acknowledge request.
    ack_request: u64,
}

/// The in-process guest.
pub struct Guest {
    pub(crate) inner: Arc<Inner>,
    isr: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Guest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guest")
            .field("handled_interrupts", &self.handled_interrupts())
            .finish_non_exhaustive()
    }
}

impl Guest {
    /// A guest over `ram`, reaching the device through `transport`, taking interrupts from
    /// `irq` (give the same line to the device). Starts the interrupt thread.
    pub fn new(
        transport: Arc<dyn Transport>,
        ram: GuestRam,
        irq: Arc<GuestInterrupt>,
    ) -> Result<Self, GuestError> {
        let ack_request = ram.pages().alloc_contiguous(1)?;
        let inner = Arc::new(Inner {
            transport,
            ram,
            irq,
            hgcm_events: Mutex::new(0),
            hgcm_wake: Condvar::new(),
            events: Mutex::new(0),
            events_wake: Condvar::new(),
            stop: AtomicBool::new(false),
            spurious: AtomicU64::new(0),
            handled: AtomicU64::new(0),
            ack_request,
        });
        let isr_inner = Arc::clone(&inner);
        let isr = std::thread::Builder::new()
            .name("guest-isr".into())
            .spawn(move || isr_inner.interrupt_thread())
            .map_err(|e| GuestError::InterruptThread(e.to_string()))?;
        Ok(Guest {
            inner,
            isr: Some(isr),
        })
    }

    /// Guest RAM.
    pub fn ram(&self) -> &GuestRam {
        &self.inner.ram
    }

    /// Interrupts the ISR handled (fHaveEvents set).
    pub fn handled_interrupts(&self) -> u64 {
        self.inner.handled.load(Ordering::Relaxed)
    }

    /// Interrupts the ISR found not to be its own (fHaveEvents clear).
    pub fn spurious_interrupts(&self) -> u64 {
        self.inner.spurious.load(Ordering::Relaxed)
    }

    /// Sends a request (any zerocopy request structure) and returns the status from `rc`;
    /// `req` is updated with the device's answer.
    pub fn perform<T>(&self, req: &mut T) -> Status
    where
        T: IntoBytes + FromBytes + KnownLayout + Immutable,
    {
        self.inner.perform(req)
    }

    /// The Linux probe sequence (linux-guest §2.2), in order, with the same values:
    /// 4, 58, 50, 42, 56, 2, 20, 220 (a second 220 only if the first succeeded), 59.
    pub fn probe(&self) -> Result<HostInfo, GuestError> {
        let inner = &self.inner;
        let mut version = new_request::<HostVersionRequest>(RequestType::GET_HOST_VERSION);
        inner.check(RequestType::GET_HOST_VERSION, inner.perform(&mut version))?;
        let features = version.features.get();
        if features & HostFeatures::HGCM_PHYS_PAGE_LIST.bits() == 0 {
            return Err(GuestError::HostTooOld(features));
        }
        inner.report_guest_info()?;
        inner.set_filter(LINUX_FIXED_EVENTS, !LINUX_FIXED_EVENTS)?;
        inner.set_capabilities(0, u32::MAX)?;
        inner.set_mouse_status(0)?;
        let mut hypervisor = new_request::<HypervisorInfoRequest>(RequestType::GET_HYPERVISOR_INFO);
        hypervisor.hypervisor_start.set(0);
        hypervisor.hypervisor_size.set(0);
        // Optional: failures are ignored, as in Linux.
        let _ = inner.perform(&mut hypervisor);
        let heartbeat = inner.heartbeat_configure(false).is_success()
            && inner.heartbeat_configure(true).is_success();
        let mut status = new_request::<GuestStatusRequest>(RequestType::REPORT_GUEST_STATUS);
        status.facility.set(FacilityType::VBOXGUEST_DRIVER.raw());
        status.status.set(FacilityStatus::ACTIVE.raw());
        status.flags.set(0);
        let _ = inner.perform(&mut status);
        Ok(HostInfo {
            version: (
                version.major.get(),
                version.minor.get(),
                version.build.get(),
                version.revision.get(),
            ),
            features,
            heartbeat,
        })
    }

    /// The Linux tear-down sequence (linux-guest §2.4): 220(0), 42(0/~0), 56(0/~0), 2(0).
    pub fn teardown(&self) -> Result<(), GuestError> {
        let inner = &self.inner;
        let _ = inner.heartbeat_configure(false);
        inner.set_filter(0, u32::MAX)?;
        inner.set_capabilities(0, u32::MAX)?;
        inner.set_mouse_status(0)
    }

    /// Changes the event filter like the CHANGE_FILTER_MASK ioctl would.
    pub fn set_filter(&self, or_mask: u32, not_mask: u32) -> Result<(), GuestError> {
        self.inner.set_filter(or_mask, not_mask)
    }

    /// Waits for any of `mask` to be delivered by the ISR; returns and clears them.
    pub fn wait_for_events(&self, mask: u32, timeout: Duration) -> Result<u32, GuestError> {
        let deadline = Instant::now() + timeout;
        let mut events = self.inner.events.lock();
        loop {
            let got = *events & mask;
            if got != 0 {
                *events &= !got;
                return Ok(got);
            }
            if self
                .inner
                .events_wake
                .wait_until(&mut events, deadline)
                .timed_out()
            {
                return Err(GuestError::TimedOut);
            }
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Release);
        self.inner.irq.kick();
        if let Some(isr) = self.isr.take() {
            let _ = isr.join();
        }
    }
}

/// A request as Linux initialises it: every byte 0xAA, then the header.
pub fn new_request<T>(request_type: RequestType) -> T
where
    T: IntoBytes + FromBytes + KnownLayout + Immutable,
{
    let mut req = T::new_zeroed();
    req.as_mut_bytes().fill(0xAA);
    let header = RequestHeader::new(
        std::mem::size_of::<T>() as u32,
        request_type,
        DRIVER_REQUESTOR,
    );
    let bytes = req.as_mut_bytes();
    let n = std::mem::size_of::<RequestHeader>().min(bytes.len());
    bytes[..n].copy_from_slice(&header.as_bytes()[..n]);
    req
}

impl Inner {
    pub(crate) fn perform<T>(&self, req: &mut T) -> Status
    where
        T: IntoBytes + FromBytes + KnownLayout + Immutable,
    {
        let size = std::mem::size_of_val(req);
        let pages = size.div_ceil(PAGE_SIZE as usize);
        let Ok(gpa) = self.ram.pages().alloc_contiguous(pages) else {
            return Status::VERR_NO_MEMORY;
        };
        let status = self.perform_at(gpa, req.as_mut_bytes());
        self.ram.pages().free_contiguous(gpa, pages);
        status
    }

    /// Writes `bytes` at `gpa`, submits, reads the answer back into `bytes`.
    pub(crate) fn perform_at(&self, gpa: u64, bytes: &mut [u8]) -> Status {
        if self.ram.write(gpa, bytes).is_err() {
            return Status::VERR_NO_MEMORY;
        }
        self.transport.submit(gpa as u32);
        let _ = self.ram.read(gpa, bytes);
        RequestHeader::read_from_prefix(bytes)
            .map(|(h, _)| h.status())
            .unwrap_or(Status::VERR_GENERAL_FAILURE)
    }

    fn check(&self, request: RequestType, status: Status) -> Result<(), GuestError> {
        if status.is_success() {
            Ok(())
        } else {
            Err(GuestError::Request { request, status })
        }
    }

    /// INFO2 then INFO, with Linux's fallback order on NOT_SUPPORTED/NOT_IMPLEMENTED.
    fn report_guest_info(&self) -> Result<(), GuestError> {
        let (major, minor, build, revision) = LINUX_ADDITIONS_VERSION;
        let mut info2 = new_request::<GuestInfo2Request>(RequestType::REPORT_GUEST_INFO2);
        info2.additions_major.set(major);
        info2.additions_minor.set(minor);
        info2.additions_build.set(build);
        info2.additions_revision.set(revision);
        info2
            .additions_features
            .set(GuestInfo2Features::REQUESTOR_INFO.bits());
        let name = b"6.0.0\0";
        info2.name[..name.len()].copy_from_slice(name);
        let mut info = new_request::<GuestInfoRequest>(RequestType::REPORT_GUEST_INFO);
        info.interface_version.set(VMMDEV_VERSION);
        info.os_type.set(VBOXOSTYPE_LINUX26 | VBOXOSTYPE_X64);
        let first = self.perform(&mut info2.clone());
        if first.is_success() {
            return self.check(RequestType::REPORT_GUEST_INFO, self.perform(&mut info));
        }
        if first == Status::VERR_NOT_SUPPORTED || first == Status::VERR_NOT_IMPLEMENTED {
            self.check(RequestType::REPORT_GUEST_INFO, self.perform(&mut info))?;
            let second = self.perform(&mut info2);
            if second.is_success() || second == Status::VERR_NOT_IMPLEMENTED {
                return Ok(());
            }
            return self.check(RequestType::REPORT_GUEST_INFO2, second);
        }
        self.check(RequestType::REPORT_GUEST_INFO2, first)
    }

    fn set_filter(&self, or_mask: u32, not_mask: u32) -> Result<(), GuestError> {
        let mut req = new_request::<MaskRequest>(RequestType::CTL_GUEST_FILTER_MASK);
        req.or_mask.set(or_mask);
        req.not_mask.set(not_mask);
        self.check(RequestType::CTL_GUEST_FILTER_MASK, self.perform(&mut req))
    }

    fn set_capabilities(&self, or_mask: u32, not_mask: u32) -> Result<(), GuestError> {
        let mut req = new_request::<MaskRequest>(RequestType::SET_GUEST_CAPABILITIES);
        req.or_mask.set(or_mask);
        req.not_mask.set(not_mask);
        self.check(RequestType::SET_GUEST_CAPABILITIES, self.perform(&mut req))
    }

    fn set_mouse_status(&self, features: u32) -> Result<(), GuestError> {
        let mut req = new_request::<MouseStatusRequest>(RequestType::SET_MOUSE_STATUS);
        req.mouse_features.set(features);
        req.pointer_x.set(0);
        req.pointer_y.set(0);
        self.check(RequestType::SET_MOUSE_STATUS, self.perform(&mut req))
    }

    fn heartbeat_configure(&self, enabled: bool) -> Status {
        let mut req = new_request::<HeartbeatRequest>(RequestType::HEARTBEAT_CONFIGURE);
        req.interval_ns.set(0);
        req.enabled = u8::from(enabled);
        self.perform(&mut req)
    }

    /// `vbg_core_isr` on a thread: wait for the level, check fHaveEvents, acknowledge.
    fn interrupt_thread(&self) {
        while !self.stop.load(Ordering::Acquire) {
            if !self.irq.wait_high(Duration::from_millis(50)) {
                continue;
            }
            if self.stop.load(Ordering::Acquire) {
                break;
            }
            if !self.transport.have_events() {
                // Not ours (shared line). A well-behaved device never leaves the line high
                // with the byte clear; back off instead of spinning.
                self.spurious.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            let mut ack = new_request::<EventsRequest>(RequestType::ACKNOWLEDGE_EVENTS);
            ack.header.set_status(Status::VERR_INTERNAL_ERROR);
            ack.events.set(0);
            let status = self.perform_at(self.ack_request, ack.as_mut_bytes());
            if !status.is_success() {
                log::warn!("guest ISR: acknowledge failed with {status:?}");
                continue;
            }
            self.handled.fetch_add(1, Ordering::Relaxed);
            let events = ack.events.get();
            if events & Events::HGCM.bits() != 0 {
                *self.hgcm_events.lock() += 1;
                self.hgcm_wake.notify_all();
            }
            let others = events & !Events::HGCM.bits();
            if others != 0 {
                *self.events.lock() |= others;
                self.events_wake.notify_all();
            }
        }
    }
}
