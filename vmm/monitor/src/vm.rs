//! One virtual machine: KVM set-up, the devices, the vCPU threads and how the run ends.
//!
//! [`Vm::new`] creates the VM in the order KVM requires (TSS and identity-map addresses, in-kernel irqchip
//! and PIT, memory slots, then vCPUs), loads the guest, writes the MP table, builds the VMMDev device with
//! its INTx line and maps its RAM BAR as a memory slot. [`Vm::run`] starts one thread per vCPU and returns
//! when the guest resets or shuts down, when a vCPU hits something the monitor cannot handle, or when
//! [`StopHandle::stop`] is called; every vCPU thread has ended by then.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use kvm_bindings::{KVM_PIT_SPEAKER_DUMMY, kvm_pit_config};
use kvm_ioctls::{Cap, Kvm, VcpuFd};
use parking_lot::{Condvar, Mutex, RwLock};
use vm_memory::mmap::MmapRegion;
use vm_memory::{FileOffset, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;
use vmmdev_device::VmmDev;
use vmmdev_hgcm::Hgcm;

use crate::audit::{AuditReport, CancelAudit};
use crate::cpu::{self, BootCpu};
use crate::exits::ExitCounters;
use crate::host::HostKvm;
use crate::intx::{self, IntxMode, ResampleThread};
use crate::layout;
use crate::loader::{self, BootEntry, BootSource};
use crate::machine::Machine;
use crate::memory;
use crate::mptable::{self, MpConfig};
use crate::pci::PciBus;
use crate::serial::Console;
use crate::syscall_bridge::Bridge;
use crate::vcpu::run_vcpu;
use crate::xsave;

/// KVM's API version.
const KVM_API_VERSION: i32 = 12;
/// How often a stopping VM signals vCPU threads still inside `KVM_RUN`.
const KICK_INTERVAL: Duration = Duration::from_millis(10);

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
    /// On a PVM host, complete the ring-3 system calls its SYSCALL leaves in ring 3
    /// ([`crate::syscall_bridge`]; every guest page fault then exits). Ignored on hardware KVM.
    pub syscall_bridge: bool,
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
            .field("syscall_bridge", &self.syscall_bridge)
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

        let intx = intx::create(&vm, layout::VMMDEV_GSI, config.intx)?;
        log::info!(
            "VMMDev INTx on GSI {} through {:?}",
            layout::VMMDEV_GSI,
            intx.mode()
        );
        let device = VmmDev::builder(
            GuestMemoryAtomic::new(mem.clone()),
            hgcm,
            Arc::clone(&intx.line) as Arc<dyn vmmdev_device::InterruptLine>,
        )
        .build()?;
        let resample = intx.resample;
        let ram_file = Arc::clone(device.ram().file());
        let ram_mapping =
            MmapRegion::from_file(FileOffset::from_arc(ram_file, 0), device.ram().len()).map_err(
                |error| VmError::Io {
                    what: "the VMMDev RAM mapping",
                    source: std::io::Error::other(error.to_string()),
                },
            )?;

        let host = HostKvm::detect();
        if !host.hypercalls_work() {
            log::info!(
                "host KVM is PVM: KVM hypercalls do not complete there, so the paravirtual features that \
                 need one (PV IPI, PV sched-yield, PV unhalt) are hidden from the guest; ring-3 system \
                 calls {}",
                if config.syscall_bridge {
                    "go through the monitor (syscall bridge)"
                } else {
                    "fault there (no --syscall-bridge)"
                }
            );
        }
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
            xsave_layout: xsave::Layout::host(),
            syscall_bridge: (host == HostKvm::Pvm && config.syscall_bridge).then(Bridge::default),
            outcome: Mutex::new(None),
            ended: Condvar::new(),
            stopping: AtomicBool::new(false),
        });
        machine.assign_bars_like_firmware();

        let boot_cpu = BootCpu {
            rip: entry.rip,
            zero_page: entry.zero_page,
            host,
        };
        let mut vcpus = Vec::with_capacity(usize::from(config.vcpus));
        for id in 0..config.vcpus {
            let vcpu = vm
                .create_vcpu(u64::from(id))
                .map_err(kvm_error("create a vCPU"))?;
            cpu::configure(&kvm, &vcpu, id, config.vcpus, boot_cpu)?;
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
