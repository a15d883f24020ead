//! One virtual machine: KVM set-up, the devices, the vCPU threads and how the run ends.
//!
//! [`Vm::new`] creates the VM in the order KVM requires (TSS and identity-map addresses, in-kernel irqchip
//! and PIT, memory slots, then vCPUs), loads the guest, writes the MP table, builds the VMMDev device with
//! its INTx line and maps its RAM BAR as a memory slot. [`Vm::run`] starts one thread per vCPU and returns
//! when the guest resets or shuts down, when a vCPU hits something the monitor cannot handle, or when
//! [`StopHandle::stop`] is called; every vCPU thread has ended by then.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use kvm_bindings::{
    KVM_PIT_SPEAKER_DUMMY, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN, kvm_pit_config,
};
use kvm_ioctls::{Cap, Kvm, VcpuExit, VcpuFd, VmFd};
use parking_lot::{Condvar, Mutex, RwLock};
use vm_device::DevicePio;
use vm_device::bus::PioAddress;
use vm_memory::mmap::MmapRegion;
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;
use vmmdev_device::VmmDev;
use vmmdev_device::pci::{
    BAR_REQUEST_PORTS, BAR_VMMDEV_RAM, BarChange, BarRegion, COMMAND_IO_SPACE, COMMAND_MEMORY_SPACE,
};
use vmmdev_hgcm::Hgcm;
use vmmdev_protocol::vmmdev::{
    BACKDOOR_LOG_PORT, RequestHeader, RequestType, VMMDEV_PORT_OFF_REQUEST_FAST,
};

use crate::audit::{AuditReport, CancelAudit};
use crate::emulation::{self, InternalError, Workaround};
use crate::exits::{ExitCounters, ExitKind, RequestKind};
use crate::intx::{self, IntxMode, ResampleThread};
use crate::loader::{self, BootEntry, BootSource};
use crate::memory;
use crate::mptable::{self, MpConfig};
use crate::pci::{CONFIG_ADDRESS, CONFIG_DATA, PciBus};
use crate::serial::Console;
use crate::{cpu, layout};

/// KVM's API version.
const KVM_API_VERSION: i32 = 12;
/// How often a stopping VM signals vCPU threads still inside `KVM_RUN`.
const KICK_INTERVAL: Duration = Duration::from_millis(10);
/// Offset of `requestType` in every VMMDev request.
const REQUEST_TYPE_OFFSET: u64 = std::mem::offset_of!(RequestHeader, request_type) as u64;
/// Emulation workarounds of one kind logged at info level before the rest go to debug.
const WORKAROUNDS_LOGGED: u64 = 3;

/// What the monitor needs to create a VM.
pub struct VmConfig {
    /// Guest RAM in MiB.
    pub memory_mib: u64,
    /// Number of vCPUs.
    pub vcpus: u8,
    /// Kernel, initramfs and command line.
    pub boot: BootSource,
    /// How VMMDev's interrupt reaches KVM.
    pub intx: IntxMode,
    /// Where the guest's serial console goes.
    pub console_output: Box<dyn Write + Send>,
    /// Where the guest's serial input comes from, if anywhere.
    pub console_input: Option<Box<dyn Read + Send>>,
}

impl std::fmt::Debug for VmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmConfig")
            .field("memory_mib", &self.memory_mib)
            .field("vcpus", &self.vcpus)
            .field("boot", &self.boot)
            .field("intx", &self.intx)
            .finish_non_exhaustive()
    }
}

/// Errors of creating or running a VM.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// `/dev/kvm` could not be opened.
    #[error("cannot open /dev/kvm")]
    Open(#[source] kvm_ioctls::Error),
    /// KVM speaks another API version.
    #[error("KVM API version {0}, expected 12")]
    ApiVersion(i32),
    /// KVM lacks a capability the monitor needs.
    #[error("KVM lacks {0}")]
    Capability(&'static str),
    /// A VM-level KVM call failed.
    #[error("KVM: {what}")]
    Kvm {
        /// What was attempted.
        what: &'static str,
        /// Why.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// The vCPU count is outside what the MP table describes.
    #[error("{0} vCPUs requested; the monitor supports 1 to {max}", max = mptable::MAX_CPUS)]
    VcpuCount(u8),
    /// Guest RAM.
    #[error(transparent)]
    Memory(#[from] memory::MemoryError),
    /// Loading the guest.
    #[error(transparent)]
    Load(#[from] loader::LoadError),
    /// The MP table.
    #[error(transparent)]
    Mptable(#[from] mptable::MptableError),
    /// A vCPU's boot state.
    #[error(transparent)]
    Cpu(#[from] cpu::CpuError),
    /// VMMDev's interrupt line.
    #[error(transparent)]
    Intx(#[from] intx::IntxError),
    /// The VMMDev device.
    #[error("cannot create the VMMDev device")]
    Device(#[from] vmmdev_device::DeviceError),
    /// An eventfd or mapping for a device.
    #[error("cannot set up {what}")]
    Io {
        /// What.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A vCPU thread could not start.
    #[error("cannot start vCPU thread {0}")]
    Thread(u8, #[source] std::io::Error),
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmExit {
    /// The guest reset the machine (i8042 reset line or a KVM reset event): `reboot`.
    Reset,
    /// The guest asked for power-off through KVM.
    Shutdown,
    /// A vCPU triple-faulted.
    TripleFault,
    /// A vCPU stopped on something the monitor cannot handle; the reason is logged.
    Crashed(String),
    /// [`StopHandle::stop`] was called.
    Stopped,
}

/// When the run's milestones happened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunTimes {
    /// From [`Vm::run`] to the first `KVM_RUN` of the boot vCPU.
    pub to_first_entry: Option<Duration>,
}

/// Ends a running VM from another thread (signals, tests).
#[derive(Clone, Debug)]
pub struct StopHandle {
    machine: Arc<Machine>,
}

impl StopHandle {
    /// Ends the run with [`VmExit::Stopped`] (unless it already ended otherwise).
    pub fn stop(&self) {
        self.machine.finish(VmExit::Stopped);
    }
}

/// State shared by the vCPU threads: the buses and the run's outcome.
struct Machine {
    vm: Arc<VmFd>,
    mem: GuestMemoryMmap,
    device: VmmDev,
    pci: Mutex<PciBus>,
    io_bar: RwLock<Option<BarRegion>>,
    ram_bar: Mutex<Option<u64>>,
    ram_mapping: MmapRegion<()>,
    ram_slot: u32,
    console: Console,
    counters: Arc<ExitCounters>,
    audit: CancelAudit,
    workarounds: [AtomicU64; 3],
    outcome: Mutex<Option<VmExit>>,
    ended: Condvar,
    stopping: AtomicBool,
}

impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine").finish_non_exhaustive()
    }
}

/// A created VM, ready to run.
pub struct Vm {
    kvm: Kvm,
    machine: Arc<Machine>,
    vcpus: Vec<VcpuFd>,
    entry: BootEntry,
    resample: Option<ResampleThread>,
    _serial_interrupt: EventFd,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm")
            .field("vcpus", &self.vcpus.len())
            .field("entry", &self.entry)
            .finish_non_exhaustive()
    }
}

impl Vm {
    /// Creates the VM described by `config`, with HGCM services from `hgcm`.
    pub fn new(config: VmConfig, hgcm: Hgcm) -> Result<Self, VmError> {
        if config.vcpus == 0 || config.vcpus > mptable::MAX_CPUS {
            return Err(VmError::VcpuCount(config.vcpus));
        }
        let kvm = Kvm::new().map_err(VmError::Open)?;
        let version = kvm.get_api_version();
        if version != KVM_API_VERSION {
            return Err(VmError::ApiVersion(version));
        }
        for (cap, name) in [
            (Cap::Irqchip, "the in-kernel irqchip (KVM_CAP_IRQCHIP)"),
            (Cap::Pit2, "the in-kernel PIT (KVM_CAP_PIT2)"),
            (Cap::Irqfd, "irqfd (KVM_CAP_IRQFD)"),
            (Cap::UserMemory, "user memory (KVM_CAP_USER_MEMORY)"),
            (Cap::SetTssAddr, "KVM_CAP_SET_TSS_ADDR"),
            (
                Cap::IoapicPolarityIgnored,
                "KVM_CAP_IOAPIC_POLARITY_IGNORED",
            ),
        ] {
            if !kvm.check_extension(cap) {
                return Err(VmError::Capability(name));
            }
        }
        let kvm_error = |what| move |source| VmError::Kvm { what, source };
        let vm = Arc::new(kvm.create_vm().map_err(kvm_error("create the VM"))?);
        vm.set_tss_address(layout::KVM_TSS as usize)
            .map_err(kvm_error("set the TSS address"))?;
        vm.set_identity_map_address(layout::KVM_IDENTITY_MAP)
            .map_err(kvm_error("set the identity map address"))?;
        vm.create_irq_chip()
            .map_err(kvm_error("create the irqchip"))?;
        vm.create_pit2(kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..kvm_pit_config::default()
        })
        .map_err(kvm_error("create the PIT"))?;

        let mem = memory::create_ram(config.memory_mib)?;
        let ram_slot = memory::register_ram(&vm, &mem)?;
        let entry = loader::load(&mem, &config.boot)?;
        mptable::write(
            &mem,
            &MpConfig {
                cpus: config.vcpus,
                pci_slot: layout::VMMDEV_PCI_SLOT,
                pci_pin: layout::VMMDEV_GSI as u8,
            },
        )?;
        cpu::write_boot_tables(&mem)?;

        let io_error = |what| move |source| VmError::Io { what, source };
        let serial_interrupt = EventFd::new(0).map_err(io_error("the serial interrupt"))?;
        vm.register_irqfd(&serial_interrupt, layout::SERIAL_GSI)
            .map_err(kvm_error("register the serial irqfd"))?;
        let console = Console::new(
            serial_interrupt
                .try_clone()
                .map_err(io_error("the serial interrupt"))?,
            config.console_output,
        );
        if let Some(input) = config.console_input {
            console
                .spawn_input(input)
                .map_err(io_error("the serial input thread"))?;
        }

        let pending_intx = intx::create(&vm, layout::VMMDEV_GSI, config.intx)?;
        log::info!(
            "VMMDev INTx on GSI {} through {:?}",
            layout::VMMDEV_GSI,
            pending_intx.mode()
        );
        let device = VmmDev::builder(
            GuestMemoryAtomic::new(mem.clone()),
            hgcm,
            Arc::clone(&pending_intx.line) as Arc<dyn vmmdev_device::InterruptLine>,
        )
        .build()?;
        let resample = pending_intx.start(device.clone())?;
        let ram_file = Arc::clone(device.ram().file());
        let ram_mapping =
            MmapRegion::from_file(FileOffset::from_arc(ram_file, 0), device.ram().len()).map_err(
                |error| VmError::Io {
                    what: "the VMMDev RAM mapping",
                    source: std::io::Error::other(error.to_string()),
                },
            )?;

        let counters = Arc::new(ExitCounters::default());
        let machine = Arc::new(Machine {
            vm: Arc::clone(&vm),
            mem,
            pci: Mutex::new(PciBus::new(device.clone(), layout::VMMDEV_PCI_SLOT)),
            device,
            io_bar: RwLock::new(None),
            ram_bar: Mutex::new(None),
            ram_mapping,
            ram_slot,
            console,
            counters,
            audit: CancelAudit::default(),
            workarounds: Default::default(),
            outcome: Mutex::new(None),
            ended: Condvar::new(),
            stopping: AtomicBool::new(false),
        });
        machine.assign_bars_like_firmware();

        let mut vcpus = Vec::with_capacity(usize::from(config.vcpus));
        for id in 0..config.vcpus {
            let vcpu = vm
                .create_vcpu(u64::from(id))
                .map_err(kvm_error("create a vCPU"))?;
            cpu::configure(&kvm, &vcpu, id, config.vcpus, entry.rip, entry.zero_page)?;
            vcpus.push(vcpu);
        }
        Ok(Self {
            kvm,
            machine,
            vcpus,
            entry,
            resample,
            _serial_interrupt: serial_interrupt,
        })
    }

    /// The VMMDev device (request log, guest state, HGCM).
    pub fn device(&self) -> &VmmDev {
        &self.machine.device
    }

    /// The exit counters, readable while the VM runs.
    pub fn counters(&self) -> Arc<ExitCounters> {
        Arc::clone(&self.machine.counters)
    }

    /// Guest RAM.
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.machine.mem
    }

    /// What the cancel audit saw so far (every watch is checked now).
    pub fn cancel_audit(&self) -> AuditReport {
        self.machine.audit.finish(&self.machine.mem)
    }

    /// A handle that ends the run from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            machine: Arc::clone(&self.machine),
        }
    }

    /// Where the kernel was entered.
    pub fn entry(&self) -> BootEntry {
        self.entry
    }

    /// Runs the guest until it resets, shuts down or fails, or until [`StopHandle::stop`]; every vCPU
    /// thread has ended when this returns.
    pub fn run(&mut self) -> Result<(VmExit, RunTimes), VmError> {
        install_kick_handler()?;
        let started = Instant::now();
        let first_entry: Arc<Mutex<Option<Duration>>> = Arc::new(Mutex::new(None));
        let mut threads: Vec<JoinHandle<()>> = Vec::new();
        for (index, vcpu) in self.vcpus.drain(..).enumerate() {
            let id = index as u8;
            let machine = Arc::clone(&self.machine);
            let first_entry = (id == 0).then(|| Arc::clone(&first_entry));
            let spawned = thread::Builder::new()
                .name(format!("vcpu{id}"))
                .spawn(move || run_vcpu(vcpu, id, &machine, first_entry, started));
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(error) => {
                    self.machine
                        .finish(VmExit::Crashed("a vCPU thread did not start".into()));
                    stop_threads(&threads);
                    return Err(VmError::Thread(id, error));
                }
            }
        }
        let exit = {
            let mut outcome = self.machine.outcome.lock();
            while outcome.is_none() {
                self.machine.ended.wait(&mut outcome);
            }
            outcome.clone().unwrap_or(VmExit::Stopped)
        };
        stop_threads(&threads);
        for thread in threads {
            let _ = thread.join();
        }
        let _ = &self.kvm;
        drop(self.resample.take());
        let times = RunTimes {
            to_first_entry: *first_entry.lock(),
        };
        Ok((exit, times))
    }
}

/// The signal that interrupts `KVM_RUN` of a vCPU thread when the VM stops.
fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN()
}

extern "C" fn ignore_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

fn install_kick_handler() -> Result<(), VmError> {
    vmm_sys_util::signal::register_signal_handler(kick_signal(), ignore_kick).map_err(|error| {
        VmError::Io {
            what: "the vCPU kick signal",
            source: std::io::Error::from_raw_os_error(error.errno()),
        }
    })
}

/// Signals every vCPU thread until all have left their loop (a signal that arrives just before a thread
/// enters `KVM_RUN` is lost, so it is repeated).
fn stop_threads(threads: &[JoinHandle<()>]) {
    use std::os::unix::thread::JoinHandleExt;
    loop {
        let mut running = 0;
        for thread in threads.iter().filter(|t| !t.is_finished()) {
            running += 1;
            // SAFETY: the pthread_t belongs to a thread that has not been joined (we hold its handle), and
            // the kick signal has a handler that does nothing.
            unsafe {
                libc::pthread_kill(thread.as_pthread_t(), kick_signal());
            }
        }
        if running == 0 {
            return;
        }
        thread::sleep(KICK_INTERVAL);
    }
}

impl Machine {
    /// Records how the run ended (the first outcome wins) and wakes [`Vm::run`].
    fn finish(&self, exit: VmExit) {
        self.stopping.store(true, Ordering::Release);
        let mut outcome = self.outcome.lock();
        if outcome.is_none() {
            log::info!("the VM ends: {exit:?}");
            *outcome = Some(exit);
            self.ended.notify_all();
        }
    }

    /// Places the BARs as firmware would, enables decoding and routes INTA#.
    fn assign_bars_like_firmware(&self) {
        self.device.with_pci_config(|pci| {
            pci.set_bar_address(BAR_REQUEST_PORTS, u32::from(layout::VMMDEV_IO_BAR));
            pci.set_bar_address(BAR_VMMDEV_RAM, layout::VMMDEV_RAM_BAR);
            pci.set_command(COMMAND_IO_SPACE | COMMAND_MEMORY_SPACE);
            pci.set_interrupt_line(layout::VMMDEV_GSI as u8);
        });
        let regions: Vec<BarChange> = [BAR_REQUEST_PORTS, BAR_VMMDEV_RAM]
            .into_iter()
            .map(|index| BarChange {
                index,
                old: None,
                new: self.current_bar(index),
            })
            .collect();
        self.apply_bar_changes(&regions);
    }

    fn current_bar(&self, index: usize) -> Option<BarRegion> {
        self.device.with_pci_config(|pci| pci.bar_region(index))
    }

    /// Moves the I/O window and (un)maps the VMMDev RAM slot as the guest programs the BARs.
    fn apply_bar_changes(&self, changes: &[BarChange]) {
        for change in changes {
            match change.index {
                BAR_REQUEST_PORTS => {
                    *self.io_bar.write() = change.new;
                    log::debug!("VMMDev I/O BAR now {:?}", change.new);
                }
                BAR_VMMDEV_RAM => {
                    let mut mapped = self.ram_bar.lock();
                    if mapped.take().is_some() {
                        self.set_ram_slot(0, 0);
                    }
                    if let Some(region) = change.new {
                        if self.set_ram_slot(region.base, self.ram_mapping.size() as u64) {
                            *mapped = Some(region.base);
                        }
                    }
                    log::debug!("VMMDev RAM BAR now {:?}", *mapped);
                }
                _ => {}
            }
        }
    }

    /// Maps (size > 0) or removes (size 0) the VMMDev RAM slot.
    fn set_ram_slot(&self, guest_address: u64, size: u64) -> bool {
        let region = kvm_bindings::kvm_userspace_memory_region {
            slot: self.ram_slot,
            flags: 0,
            guest_phys_addr: guest_address,
            memory_size: size,
            userspace_addr: self.ram_mapping.as_ptr() as u64,
        };
        // SAFETY: the mapping is owned by this machine, which outlives the VM's vCPUs, and is `size`
        // bytes long when a slot is created; a size of 0 removes the slot.
        match unsafe { self.vm.set_user_memory_region(region) } {
            Ok(()) => true,
            Err(error) => {
                log::error!("cannot map the VMMDev RAM at {guest_address:#x}: {error}");
                false
            }
        }
    }

    fn pio_read(&self, port: u16, data: &mut [u8]) {
        if let Some(offset) = port
            .checked_sub(layout::SERIAL_PORT)
            .filter(|&o| o < layout::SERIAL_PORTS)
        {
            self.counters.count(ExitKind::Serial);
            for (i, byte) in data.iter_mut().enumerate() {
                *byte = self.console.read(offset as u8 + i as u8);
            }
            return;
        }
        if let Some(offset) = port.checked_sub(CONFIG_ADDRESS).filter(|&o| o < 4) {
            self.counters.count(ExitKind::PciConfig);
            self.pci.lock().read_address(offset, data);
            return;
        }
        if let Some(offset) = port.checked_sub(CONFIG_DATA).filter(|&o| o < 4) {
            self.counters.count(ExitKind::PciConfig);
            self.pci.lock().read_data(offset, data);
            return;
        }
        if let Some(offset) = self.io_bar_offset(port) {
            let kind = if u32::from(offset) == VMMDEV_PORT_OFF_REQUEST_FAST {
                ExitKind::VmmDevFastAck
            } else {
                ExitKind::VmmDevOther
            };
            self.counters.count(kind);
            self.device
                .pio_read(PioAddress(port - offset), offset, data);
            return;
        }
        self.counters.count(ExitKind::OtherPort);
        if port == layout::I8042_COMMAND_PORT {
            data.fill(layout::I8042_STATUS_NO_CONTROLLER);
        } else {
            data.fill(0xff);
        }
    }

    /// A port write; `Some` when it ends the run.
    fn pio_write(&self, port: u16, data: &[u8]) -> Option<VmExit> {
        if let Some(offset) = port
            .checked_sub(layout::SERIAL_PORT)
            .filter(|&o| o < layout::SERIAL_PORTS)
        {
            self.counters.count(ExitKind::Serial);
            for (i, byte) in data.iter().enumerate() {
                self.console.write(offset as u8 + i as u8, *byte);
            }
            return None;
        }
        if let Some(offset) = port.checked_sub(CONFIG_ADDRESS).filter(|&o| o < 4) {
            self.counters.count(ExitKind::PciConfig);
            self.pci.lock().write_address(offset, data);
            return None;
        }
        if let Some(offset) = port.checked_sub(CONFIG_DATA).filter(|&o| o < 4) {
            self.counters.count(ExitKind::PciConfig);
            let changes = self.pci.lock().write_data(offset, data);
            self.apply_bar_changes(&changes);
            return None;
        }
        if let Some(offset) = self.io_bar_offset(port) {
            let base = PioAddress(port - offset);
            let &[a, b, c, d] = data else {
                self.counters.count(ExitKind::VmmDevOther);
                self.device.pio_write(base, offset, data);
                return None;
            };
            let gpa = u64::from(u32::from_le_bytes([a, b, c, d]));
            self.counters.count_request(self.request_kind(gpa));
            let cancelled = self.audit.before_request(&self.mem, gpa);
            self.device.pio_write(base, offset, data);
            if let Some(target) = cancelled {
                self.audit.after_cancel(&self.mem, gpa, target);
            }
            return None;
        }
        if port == BACKDOOR_LOG_PORT {
            self.counters.count(ExitKind::VmmDevOther);
            self.device.pio_write(PioAddress(port), 0, data);
            return None;
        }
        self.counters.count(ExitKind::OtherPort);
        if port == layout::I8042_COMMAND_PORT && data.first() == Some(&layout::I8042_RESET_COMMAND)
        {
            return Some(VmExit::Reset);
        }
        None
    }

    /// The offset of `port` in the VMMDev I/O BAR, if the BAR decodes it.
    fn io_bar_offset(&self, port: u16) -> Option<u16> {
        let region = (*self.io_bar.read())?;
        let offset = u64::from(port).checked_sub(region.base)?;
        (offset < region.size).then_some(offset as u16)
    }

    fn request_kind(&self, gpa: u64) -> RequestKind {
        let raw = self
            .mem
            .read_obj::<u32>(GuestAddress(gpa.wrapping_add(REQUEST_TYPE_OFFSET)))
            .map(u32::from_le)
            .unwrap_or(0);
        match RequestType::from(raw) {
            RequestType::HGCM_CALL32 | RequestType::HGCM_CALL64 => RequestKind::HgcmCall,
            RequestType::ACKNOWLEDGE_EVENTS => RequestKind::AcknowledgeEvents,
            _ => RequestKind::Other,
        }
    }

    /// Completes or reports an instruction KVM could not emulate; `Err` ends the run.
    fn handle_internal_error(&self, vcpu: &mut VcpuFd, id: u8) -> Result<(), VmExit> {
        self.counters.count(ExitKind::EmulationFailure);
        let error = {
            let run = vcpu.get_kvm_run();
            // SAFETY: the exit reason was KVM_EXIT_INTERNAL_ERROR, for which the kernel fills the
            // `internal` member of the union; it is plain data.
            let internal = unsafe { run.__bindgen_anon_1.internal };
            InternalError::from_exit(internal.suberror, internal.ndata, &internal.data)
        };
        let crashed = |reason: String| {
            log::error!("vCPU {id}: {reason}");
            VmExit::Crashed(reason)
        };
        let mut regs = vcpu.get_regs().map_err(|e| {
            crashed(format!(
                "internal error {error:?}; registers unreadable: {e}"
            ))
        })?;
        if error.suberror != emulation::SUBERROR_EMULATION {
            return Err(crashed(format!(
                "KVM internal error, suberror {} at RIP {:#x}, data {:x?}",
                error.suberror, regs.rip, error.data
            )));
        }
        let bytes = match &error.instruction {
            Some(bytes) => bytes.clone(),
            None => self.read_instruction(vcpu, regs.rip),
        };
        let workaround = emulation::workaround(&bytes);
        let rip = regs.rip;
        let describe = |what: &str| format!("{what} at RIP {rip:#x} ({})", emulation::hex(&bytes));
        match workaround {
            Workaround::Breakpoint => {
                self.note_workaround(0, &describe("int3: injecting #BP"));
                regs.rip += 1;
                vcpu.set_regs(&regs)
                    .map_err(|e| crashed(format!("set_regs: {e}")))?;
                let mut events = vcpu
                    .get_vcpu_events()
                    .map_err(|e| crashed(format!("get_vcpu_events: {e}")))?;
                events.exception.injected = 1;
                events.exception.nr = emulation::BREAKPOINT_VECTOR;
                events.exception.has_error_code = 0;
                events.exception.error_code = 0;
                vcpu.set_vcpu_events(&events)
                    .map_err(|e| crashed(format!("set_vcpu_events: {e}")))?;
            }
            Workaround::Skip { len } => {
                self.note_workaround(1, &describe("fwait: skipped"));
                regs.rip += len;
                vcpu.set_regs(&regs)
                    .map_err(|e| crashed(format!("set_regs: {e}")))?;
            }
            Workaround::LoadMxcsr { len, operand } => {
                let sregs = vcpu
                    .get_sregs()
                    .map_err(|e| crashed(format!("get_sregs: {e}")))?;
                let address = operand.address(
                    &emulation::register_file(&regs),
                    regs.rip + len,
                    sregs.fs.base,
                    sregs.gs.base,
                );
                let value = self
                    .read_virtual(vcpu, address, 4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .ok_or_else(|| {
                        crashed(describe(&format!(
                            "ldmxcsr: operand {address:#x} unreadable"
                        )))
                    })?;
                let mut fpu = vcpu
                    .get_fpu()
                    .map_err(|e| crashed(format!("get_fpu: {e}")))?;
                fpu.mxcsr = value;
                vcpu.set_fpu(&fpu)
                    .map_err(|e| crashed(format!("set_fpu: {e}")))?;
                regs.rip += len;
                vcpu.set_regs(&regs)
                    .map_err(|e| crashed(format!("set_regs: {e}")))?;
                self.note_workaround(2, &describe(&format!("ldmxcsr: MXCSR = {value:#x}")));
            }
            Workaround::Unsupported { hint } => {
                let mut reason = describe("KVM cannot emulate the instruction");
                if let Some(hint) = hint {
                    reason.push_str("; ");
                    reason.push_str(hint);
                }
                return Err(crashed(reason));
            }
        }
        Ok(())
    }

    fn note_workaround(&self, kind: usize, message: &str) {
        let seen = self.workarounds[kind].fetch_add(1, Ordering::Relaxed);
        if seen < WORKAROUNDS_LOGGED {
            log::info!("{message}");
        } else {
            log::debug!("{message}");
        }
    }

    /// The instruction bytes at `rip`, read through the guest's page tables (at most 15).
    fn read_instruction(&self, vcpu: &VcpuFd, rip: u64) -> Vec<u8> {
        (0..emulation::MAX_INSTRUCTION_LEN as u64)
            .map_while(|i| {
                self.read_virtual(vcpu, rip.wrapping_add(i), 1)
                    .and_then(|b| b.first().copied())
            })
            .collect()
    }

    /// Reads `len` bytes at guest-virtual `address`, page by page.
    fn read_virtual(&self, vcpu: &VcpuFd, address: u64, len: usize) -> Option<Vec<u8>> {
        let mut bytes = Vec::with_capacity(len);
        for i in 0..len as u64 {
            let virt = address.wrapping_add(i);
            let translation = vcpu.translate_gva(virt).ok()?;
            if translation.valid == 0 {
                return None;
            }
            let byte: u8 = self
                .mem
                .read_obj(GuestAddress(translation.physical_address))
                .ok()?;
            bytes.push(byte);
        }
        Some(bytes)
    }
}

/// One vCPU's loop: run, handle the exit, repeat until the machine stops.
fn run_vcpu(
    mut vcpu: VcpuFd,
    id: u8,
    machine: &Machine,
    first_entry: Option<Arc<Mutex<Option<Duration>>>>,
    started: Instant,
) {
    if let Some(first) = first_entry {
        *first.lock() = Some(started.elapsed());
    }
    while !machine.stopping.load(Ordering::Acquire) {
        let exit = match vcpu.run() {
            Ok(VcpuExit::IoIn(port, data)) => {
                if data.len() <= 4 {
                    machine.pio_read(port, data);
                } else {
                    for byte in data.chunks_mut(1) {
                        machine.pio_read(port, byte);
                    }
                }
                None
            }
            Ok(VcpuExit::IoOut(port, data)) => {
                if data.len() <= 4 {
                    machine.pio_write(port, data)
                } else {
                    data.chunks(1)
                        .find_map(|byte| machine.pio_write(port, byte))
                }
            }
            Ok(VcpuExit::MmioRead(_, data)) => {
                machine.counters.count(ExitKind::Mmio);
                data.fill(0xff);
                None
            }
            Ok(VcpuExit::MmioWrite(..)) => {
                machine.counters.count(ExitKind::Mmio);
                None
            }
            Ok(VcpuExit::Shutdown) => Some(VmExit::TripleFault),
            Ok(VcpuExit::SystemEvent(kind, _)) => Some(match kind {
                KVM_SYSTEM_EVENT_RESET => VmExit::Reset,
                KVM_SYSTEM_EVENT_SHUTDOWN => VmExit::Shutdown,
                other => VmExit::Crashed(format!("vCPU {id}: system event {other}")),
            }),
            Ok(VcpuExit::InternalError) => machine.handle_internal_error(&mut vcpu, id).err(),
            Ok(VcpuExit::FailEntry(reason, cpu)) => Some(VmExit::Crashed(format!(
                "vCPU {id}: entry failed, hardware reason {reason:#x} on CPU {cpu}"
            ))),
            Ok(VcpuExit::Hlt) => {
                machine.counters.count(ExitKind::Other);
                None
            }
            Ok(other) => {
                machine.counters.count(ExitKind::Other);
                log::warn!("vCPU {id}: unexpected exit {other:?}");
                None
            }
            Err(error) if error.errno() == libc::EINTR || error.errno() == libc::EAGAIN => {
                machine.counters.count(ExitKind::Other);
                None
            }
            Err(error) => Some(VmExit::Crashed(format!(
                "vCPU {id}: KVM_RUN failed: {error}"
            ))),
        };
        if let Some(exit) = exit {
            machine.finish(exit);
        }
    }
}
