//! The device: port and MMIO dispatch, request processing, events, reset and the embedder API.
//!
//! [`VmmDev`] is a cheap handle (an `Arc` inside) that is `Send + Sync`; every method takes
//! `&self` and synchronises internally, so vCPU threads (port writes, config accesses) and HGCM
//! service threads (completions) use it concurrently. Locks are short and never held while
//! calling into the HGCM framework; the interrupt line is driven with the event lock held so
//! that level changes reach the embedder in order.

use std::collections::VecDeque;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::{Condvar, Mutex, RwLock};
use vm_device::bus::{MmioAddress, MmioAddressOffset, PioAddress, PioAddressOffset};
use vm_device::{DeviceMmio, DevicePio};
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryBackend, GuestMemoryMmap};
use vmmdev_hgcm::{Hgcm, Subscription};
use vmmdev_protocol::Status;
use vmmdev_protocol::vmmdev::{
    BACKDOOR_LOG_PORT, Events, HostFeatures, RequestType, VMMDEV_FAST_ACK_NOT_READY,
    VMMDEV_PORT_OFF_REQUEST, VMMDEV_PORT_OFF_REQUEST_FAST,
};

use crate::backdoor_log::{BackdoorLog, DEFAULT_RING_LINES};
use crate::events::{EventState, InterruptLine};
use crate::guest_state::{GuestStateChange, GuestStateSnapshot, GuestStateTracker};
use crate::hgcm::pending::{PendingLimits, PendingTable};
use crate::pci::{BarChange, PciConfigSpace};
use crate::ram::{RamError, VmmDevRam};
use crate::ratelimit::RateLimiter;
use crate::request::{self, Intake, RequestCopy};
use crate::translate::GuestVirtualTranslator;

/// Errors creating the device.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The VMMDev RAM could not be created.
    #[error("cannot create the VMMDev RAM")]
    Ram(#[from] RamError),
}

/// The host version GetHostVersion reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostVersion {
    /// Major version.
    pub major: u16,
    /// Minor version.
    pub minor: u16,
    /// Build number.
    pub build: u32,
    /// Source revision.
    pub revision: u32,
}

impl Default for HostVersion {
    fn default() -> Self {
        HostVersion {
            major: 7,
            minor: 1,
            build: 6,
            revision: 0,
        }
    }
}

/// Device configuration.
#[derive(Clone, Debug)]
pub struct VmmDevConfig {
    /// Version reported to the guest.
    pub host_version: HostVersion,
    /// Limits of pending HGCM requests and the host memory they hold.
    pub hgcm_limits: PendingLimits,
    /// Largest sum of buffer sizes in one HGCM call (VirtualBox: 128 MiB).
    pub max_call_buffer_bytes: u64,
    /// Backdoor log lines kept for the embedder.
    pub backdoor_log_lines: usize,
    /// Request log entries kept for the embedder.
    pub request_log_entries: usize,
}

impl Default for VmmDevConfig {
    fn default() -> Self {
        VmmDevConfig {
            host_version: HostVersion::default(),
            hgcm_limits: PendingLimits::default(),
            max_call_buffer_bytes: 128 << 20,
            backdoor_log_lines: DEFAULT_RING_LINES,
            request_log_entries: 4096,
        }
    }
}

/// Host features the device implements and advertises.
pub const HOST_FEATURES: HostFeatures = HostFeatures::HGCM_PHYS_PAGE_LIST
    .union(HostFeatures::HGCM_EMBEDDED_BUFFERS)
    .union(HostFeatures::HGCM_CONTIGUOUS_PAGE_LIST)
    .union(HostFeatures::HGCM_NO_BOUNCE_PAGE_LIST)
    .union(HostFeatures::FAST_IRQ_ACK);

/// One processed request, as kept in the request log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// Guest-physical address.
    pub gpa: u64,
    /// Request type.
    pub request_type: u32,
    /// Declared size.
    pub size: u32,
    /// Requestor bits from the header.
    pub requestor: u32,
    /// The `rc` written back (2903 for accepted HGCM requests).
    pub status: i32,
}

/// Host-side pointer state the guest reads through GetMouseStatus(Ex).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PointerState {
    /// Absolute X, 0..=0xFFFF.
    pub x: i32,
    /// Absolute Y, 0..=0xFFFF.
    pub y: i32,
    /// Vertical wheel delta.
    pub dz: i32,
    /// Horizontal wheel delta.
    pub dw: i32,
    /// Button bits.
    pub buttons: u32,
}

/// Host state the guest reads (pointer, balloon, session).
#[derive(Debug, Default)]
pub(crate) struct HostState {
    pub(crate) session_id: u64,
    pub(crate) pointer: PointerState,
    pub(crate) balloon_target_mib: u32,
    pub(crate) balloon_last_read_mib: Option<u32>,
    pub(crate) balloon_inflated_chunks: u32,
}

/// Event state plus the level currently driven on the line.
#[derive(Debug, Default)]
pub(crate) struct IrqState {
    pub(crate) events: EventState,
    pub(crate) line: bool,
    pub(crate) intx_disabled: bool,
}

/// State shared by the device handle and its in-flight HGCM completions.
pub(crate) struct Shared {
    pub(crate) config: VmmDevConfig,
    pub(crate) mem: GuestMemoryAtomic<GuestMemoryMmap>,
    pub(crate) hgcm: Hgcm,
    pub(crate) line: Arc<dyn InterruptLine>,
    pub(crate) translator: Option<Arc<dyn GuestVirtualTranslator>>,
    pub(crate) ram: VmmDevRam,
    pub(crate) pci: Mutex<PciConfigSpace>,
    pub(crate) irq: Mutex<IrqState>,
    pub(crate) line_level: AtomicBool,
    /// Deliverable events pending (the PCI interrupt status, INTx disable notwithstanding).
    pub(crate) interrupt_pending: AtomicBool,
    pub(crate) guest: Mutex<GuestStateTracker>,
    pub(crate) host: Mutex<HostState>,
    pub(crate) pending: Mutex<PendingTable<vmmdev_hgcm::RequestId>>,
    pub(crate) pending_changed: Condvar,
    /// Held shared by completions while they write guest memory, exclusively by reset and
    /// restore while they drop pending requests.
    pub(crate) write_gate: RwLock<()>,
    pub(crate) backdoor: Mutex<BackdoorLog>,
    pub(crate) requests: Mutex<VecDeque<RequestRecord>>,
    pub(crate) diagnostics: Mutex<RateLimiter>,
}

/// The VMMDev device. Cheap to clone; clones share the device.
#[derive(Clone)]
pub struct VmmDev {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for VmmDev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VmmDev")
            .field("line", &self.interrupt_level())
            .field("pending_hgcm", &self.shared.pending.lock().len())
            .finish_non_exhaustive()
    }
}

/// Builder of a [`VmmDev`].
pub struct VmmDevBuilder {
    config: VmmDevConfig,
    mem: GuestMemoryAtomic<GuestMemoryMmap>,
    hgcm: Hgcm,
    line: Arc<dyn InterruptLine>,
    translator: Option<Arc<dyn GuestVirtualTranslator>>,
}

impl fmt::Debug for VmmDevBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VmmDevBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl VmmDevBuilder {
    /// Replaces the default configuration.
    pub fn config(mut self, config: VmmDevConfig) -> Self {
        self.config = config;
        self
    }

    /// Installs a guest-virtual translator for non-empty LinAddr HGCM parameters.
    pub fn translator(mut self, translator: Arc<dyn GuestVirtualTranslator>) -> Self {
        self.translator = Some(translator);
        self
    }

    /// Creates the device (and its VMMDev RAM).
    pub fn build(self) -> Result<VmmDev, DeviceError> {
        let ram = VmmDevRam::new()?;
        let host = HostState {
            session_id: random_u64(),
            ..HostState::default()
        };
        let shared = Shared {
            pending: Mutex::new(PendingTable::new(self.config.hgcm_limits.clone())),
            backdoor: Mutex::new(BackdoorLog::new(self.config.backdoor_log_lines)),
            requests: Mutex::new(VecDeque::new()),
            config: self.config,
            mem: self.mem,
            hgcm: self.hgcm,
            line: self.line,
            translator: self.translator,
            ram,
            pci: Mutex::new(PciConfigSpace::new()),
            irq: Mutex::new(IrqState::default()),
            line_level: AtomicBool::new(false),
            interrupt_pending: AtomicBool::new(false),
            guest: Mutex::new(GuestStateTracker::new()),
            host: Mutex::new(host),
            pending_changed: Condvar::new(),
            write_gate: RwLock::new(()),
            diagnostics: Mutex::new(RateLimiter::default()),
        };
        Ok(VmmDev {
            shared: Arc::new(shared),
        })
    }
}

impl VmmDev {
    /// Starts building a device over guest memory `mem`, submitting HGCM requests to `hgcm`
    /// and driving INTA# through `line`.
    pub fn builder(
        mem: GuestMemoryAtomic<GuestMemoryMmap>,
        hgcm: Hgcm,
        line: Arc<dyn InterruptLine>,
    ) -> VmmDevBuilder {
        VmmDevBuilder {
            config: VmmDevConfig::default(),
            mem,
            hgcm,
            line,
            translator: None,
        }
    }

    /// The VMMDev RAM (BAR1) to map into the guest.
    pub fn ram(&self) -> &VmmDevRam {
        &self.shared.ram
    }

    /// Whether the device currently asserts INTA#.
    pub fn interrupt_level(&self) -> bool {
        self.shared.line_level.load(Ordering::Acquire)
    }

    /// Reads the PCI configuration space (any offset, any width).
    pub fn pci_config_read(&self, offset: u64, data: &mut [u8]) {
        let mut pci = self.shared.pci.lock();
        pci.set_interrupt_status(self.shared.interrupt_pending.load(Ordering::Acquire));
        pci.read(offset, data);
    }

    /// Writes the PCI configuration space; returns BAR decode changes the embedder must apply.
    pub fn pci_config_write(&self, offset: u64, data: &[u8]) -> Vec<BarChange> {
        let (changes, intx_disabled) = {
            let mut pci = self.shared.pci.lock();
            let changes = pci.write(offset, data);
            (changes, pci.intx_disabled())
        };
        let mut irq = self.shared.irq.lock();
        if irq.intx_disabled != intx_disabled {
            irq.intx_disabled = intx_disabled;
            self.shared.update_line(&mut irq);
        }
        changes
    }

    /// Pre-configures the configuration space like firmware (BAR addresses, command,
    /// interrupt line) before the guest runs.
    pub fn with_pci_config<R>(&self, f: impl FnOnce(&mut PciConfigSpace) -> R) -> R {
        let (result, intx_disabled) = {
            let mut pci = self.shared.pci.lock();
            let result = f(&mut pci);
            (result, pci.intx_disabled())
        };
        let mut irq = self.shared.irq.lock();
        irq.intx_disabled = intx_disabled;
        self.shared.update_line(&mut irq);
        result
    }

    /// Processes a request at guest-physical `gpa`, exactly as a write of `gpa` to the request
    /// port does. Returns when every output and `rc` are in guest memory (H-2.1).
    pub fn submit_request(&self, gpa: u64) {
        self.shared.process(gpa);
    }

    /// The fast-acknowledge read of BAR0+8: acknowledges and returns the deliverable events,
    /// or `0xFFFFFFFF` before the additions reported.
    pub fn fast_acknowledge(&self) -> u32 {
        let mut irq = self.shared.irq.lock();
        if !irq.events.additions_ok() {
            return VMMDEV_FAST_ACK_NOT_READY;
        }
        let events = irq.events.acknowledge();
        self.shared.update_line(&mut irq);
        events
    }

    /// Raises host events (bits outside 0x7FF are ignored). Events are latched until the
    /// guest acknowledges them, also while the VM is paused.
    pub fn raise_events(&self, events: Events) {
        self.shared.raise(events.bits());
    }

    /// Sets the absolute pointer state; raises MOUSE_POSITION_CHANGED if anything changed
    /// (a non-zero wheel delta always counts).
    pub fn set_pointer(&self, pointer: PointerState) {
        let changed = {
            let mut host = self.shared.host.lock();
            let changed = host.pointer != pointer || pointer.dz != 0 || pointer.dw != 0;
            host.pointer = pointer;
            changed
        };
        if changed {
            self.shared.raise(Events::MOUSE_POSITION_CHANGED.bits());
        }
    }

    /// Sets the host-controlled mouse capability bits; raises MOUSE_CAPABILITIES_CHANGED
    /// when they change.
    pub fn set_host_mouse_features(&self, features: u32) {
        if self.shared.guest.lock().set_host_mouse_features(features) {
            self.shared.raise(Events::MOUSE_CAPABILITIES_CHANGED.bits());
        }
    }

    /// Asks the guest to set its memory balloon to `mib` MiB; raises BALLOON_CHANGE_REQUEST
    /// unless the guest already read that value.
    pub fn set_balloon_target(&self, mib: u32) {
        let raise = {
            let mut host = self.shared.host.lock();
            host.balloon_target_mib = mib;
            host.balloon_last_read_mib != Some(mib)
        };
        if raise {
            self.shared.raise(Events::BALLOON_CHANGE_REQUEST.bits());
        }
    }

    /// Current session ID (changes on reset and restore).
    pub fn session_id(&self) -> u64 {
        self.shared.host.lock().session_id
    }

    /// Everything the guest reported about itself.
    pub fn guest_state(&self) -> GuestStateSnapshot {
        self.shared.guest.lock().snapshot()
    }

    /// A subscription receiving every later change of guest-reported state; dropping it
    /// unsubscribes.
    pub fn subscribe(&self) -> Subscription<GuestStateChange> {
        self.shared.guest.lock().subscribe()
    }

    /// Backdoor log lines collected so far (port 0x504), oldest first.
    pub fn backdoor_log(&self) -> Vec<String> {
        self.shared.backdoor.lock().lines()
    }

    /// The most recent processed requests, oldest first.
    pub fn request_log(&self) -> Vec<RequestRecord> {
        self.shared.requests.lock().iter().copied().collect()
    }

    /// Number of HGCM requests the guest is waiting for whose completion has not started.
    pub fn pending_hgcm_requests(&self) -> usize {
        self.shared.pending.lock().len()
    }

    /// Host bytes pinned by pending HGCM requests, per requestor category (kernel, root,
    /// user); bounded by [`PendingLimits::host_bytes`].
    pub fn pending_hgcm_host_bytes(&self) -> [u64; 3] {
        self.shared.pending.lock().charged()
    }

    /// The HGCM framework this device submits to.
    pub fn hgcm(&self) -> &Hgcm {
        &self.shared.hgcm
    }

    /// Guest reset (vmmdev.md §8): drops pending HGCM requests without touching guest memory,
    /// resets the framework's clients, re-initialises the VMMDev RAM, the request gate, the
    /// filters and events (only a pending display change survives), lowers the line and picks
    /// a new session ID.
    pub fn reset(&self) {
        let shared = &self.shared;
        {
            let _no_writes = shared.write_gate.write();
            let mut pending = shared.pending.lock();
            pending.clear();
            shared.pending_changed.notify_all();
        }
        shared.hgcm.reset();
        {
            let mut irq = shared.irq.lock();
            irq.events.reset(Events::DISPLAY_CHANGE_REQUEST.bits());
            if let Err(error) = shared.ram.init() {
                log::error!("VMMDev RAM re-initialisation failed: {error}");
            }
            shared.update_line(&mut irq);
        }
        shared.guest.lock().reset();
        {
            let mut host = shared.host.lock();
            host.session_id = random_u64();
            host.balloon_last_read_mib = None;
        }
        shared.backdoor.lock().reset();
    }

    /// Stops HGCM completions from writing guest memory (they are parked) so that guest
    /// memory and [`VmmDev::save`] form a consistent snapshot. Events still latch.
    pub fn pause(&self) {
        self.shared.pending.lock().pause();
        // Wait for write-backs already in flight.
        drop(self.shared.write_gate.write());
    }

    /// Lets completions write again and delivers the ones parked by [`VmmDev::pause`].
    pub fn resume(&self) {
        let jobs = self.shared.pending.lock().resume();
        for job in jobs {
            job();
        }
    }
}

impl Shared {
    /// Logs a guest-triggered diagnostic, rate-limited.
    pub(crate) fn diagnose(&self, args: fmt::Arguments<'_>) {
        if let Some(suppressed) = self.diagnostics.lock().permit() {
            if suppressed > 0 {
                log::warn!("vmmdev: {suppressed} similar messages suppressed");
            }
            log::warn!("vmmdev: {args}");
        }
    }

    /// Applies the event state to `fHaveEvents` and the line (byte first when rising).
    pub(crate) fn update_line(&self, irq: &mut IrqState) {
        let pending = irq.events.line_level();
        self.interrupt_pending.store(pending, Ordering::Release);
        if pending {
            self.ram.set_have_events(true);
        }
        let level = pending && !irq.intx_disabled;
        if !pending {
            self.ram.set_have_events(false);
        }
        if level != irq.line {
            irq.line = level;
            self.line_level.store(level, Ordering::Release);
            self.line.set_level(level);
        }
    }

    /// Latches events and updates the line.
    pub(crate) fn raise(&self, events: u32) {
        let mut irq = self.irq.lock();
        irq.events.raise(events);
        self.update_line(&mut irq);
    }

    /// A snapshot of guest memory to keep for the duration of a request.
    pub(crate) fn memory(&self) -> Arc<GuestMemoryMmap> {
        self.mem.memory().into_inner()
    }

    /// Guest RAM size in MiB (balloon reporting).
    pub(crate) fn guest_ram_mib(&self) -> u32 {
        let mem = self.memory();
        let bytes: u64 = mem.iter().map(vm_memory::GuestMemoryRegion::len).sum();
        u32::try_from(bytes >> 20).unwrap_or(u32::MAX)
    }

    pub(crate) fn record(&self, record: RequestRecord) {
        log::trace!(
            "request {} ({} bytes, requestor {:#x}) at {:#x}: {:?}",
            RequestType(record.request_type),
            record.size,
            record.requestor,
            record.gpa,
            Status(record.status)
        );
        let mut log = self.requests.lock();
        if log.len() >= self.config.request_log_entries.max(1) {
            log.pop_front();
        }
        log.push_back(record);
    }

    fn process(self: &Arc<Self>, gpa: u64) {
        let mem = self.memory();
        let gate_open = self.irq.lock().events.additions_ok();
        match request::intake(&mem, gpa, gate_open) {
            Err(error) => self.diagnose(format_args!("request ignored: {error}")),
            Ok(Intake::HeaderOnly {
                header,
                request_type,
                status,
            }) => {
                request::write_header(&mem, gpa, &header);
                self.record(RequestRecord {
                    gpa,
                    request_type: request_type.raw(),
                    size: header.size.get(),
                    requestor: header.requestor.get(),
                    status: status.raw(),
                });
            }
            Ok(Intake::Copied(copy)) => self.dispatch(copy, mem),
        }
    }

    fn dispatch(self: &Arc<Self>, mut copy: RequestCopy, mem: Arc<GuestMemoryMmap>) {
        let header = copy.header();
        let mut record = RequestRecord {
            gpa: copy.gpa(),
            request_type: header.request_type.get(),
            size: header.size.get(),
            requestor: header.requestor.get(),
            status: 0,
        };
        let status = if header.request_type().is_hgcm() {
            match self.handle_hgcm(&mut copy, &mem) {
                Some(status) => status,
                None => {
                    // Accepted: the guest waits for DONE; nothing more is written now.
                    record.status = Status::VINF_HGCM_ASYNC_EXECUTE.raw();
                    self.record(record);
                    return;
                }
            }
        } else {
            self.handle_request(&mut copy)
        };
        if header.request_type() == RequestType::HGCM_CANCEL {
            // The in-place cancel shares its memory with the call it cancels, whose
            // completion may have raced in since the copy was taken: write only `rc`.
            copy.write_status(&mem, status);
        } else {
            copy.set_status(status);
            copy.write_back(&mem);
        }
        record.status = status.raw();
        self.record(record);
    }

    /// The backdoor port and BAR0 accesses.
    fn port_write(self: &Arc<Self>, offset: u32, data: &[u8]) {
        if offset != VMMDEV_PORT_OFF_REQUEST && offset != VMMDEV_PORT_OFF_REQUEST_FAST {
            return;
        }
        let mut raw = [0u8; 4];
        let n = data.len().min(4);
        raw[..n].copy_from_slice(&data[..n]);
        self.process(u64::from(u32::from_le_bytes(raw)));
    }
}

impl DevicePio for VmmDev {
    /// Reads BAR0 (offset 8: fast acknowledge, 32-bit only). Unassigned offsets, other widths
    /// and the write-only backdoor port read as all-ones.
    fn pio_read(&self, base: PioAddress, offset: PioAddressOffset, data: &mut [u8]) {
        data.fill(0xFF);
        if base.0 == BACKDOOR_LOG_PORT {
            return;
        }
        if u32::from(offset) == VMMDEV_PORT_OFF_REQUEST_FAST && data.len() == 4 {
            data.copy_from_slice(&self.fast_acknowledge().to_le_bytes());
        }
    }

    /// Writes BAR0 (offsets 0 and 8: request GPA) or the backdoor log port.
    fn pio_write(&self, base: PioAddress, offset: PioAddressOffset, data: &[u8]) {
        if base.0 == BACKDOOR_LOG_PORT {
            if offset == 0 {
                self.shared.backdoor.lock().write(data);
            }
            return;
        }
        self.shared.port_write(u32::from(offset), data);
    }
}

impl DeviceMmio for VmmDev {
    /// Reads BAR1 for embedders that trap it instead of mapping [`VmmDev::ram`].
    fn mmio_read(&self, _base: MmioAddress, offset: MmioAddressOffset, data: &mut [u8]) {
        self.shared.ram.read(offset, data);
    }

    /// Writes BAR1 for trapping embedders.
    fn mmio_write(&self, _base: MmioAddress, offset: MmioAddressOffset, data: &[u8]) {
        self.shared.ram.write(offset, data);
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn host_time_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

/// A random 64-bit value (session IDs), seeded by the standard library's per-process keys.
pub(crate) fn random_u64() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_nanos(),
    );
    hasher.finish()
}
