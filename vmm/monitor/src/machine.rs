//! The machine the vCPUs see: its port map, the VMMDev BARs as the guest programs them, and the
//! run's outcome.
//!
//! Ports: the UART at 0x3F8, PCI configuration mechanism #1 at 0xCF8/0xCFC, VMMDev's I/O BAR wherever the
//! guest put it (request port, fast acknowledge), the backdoor log port 0x504 and the i8042 command port
//! (0xFE there resets the machine, which ends the run). Every other port reads all-ones and ignores writes.
//! VMMDev's RAM BAR is a KVM memory slot that follows the BAR: removed while memory decoding is off or
//! the BAR moves, mapped again at the new address.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use kvm_ioctls::VmFd;
use parking_lot::{Condvar, Mutex, RwLock};
use vm_device::DevicePio;
use vm_device::bus::PioAddress;
use vm_memory::mmap::MmapRegion;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmmdev_device::VmmDev;
use vmmdev_device::pci::{
    BAR_REQUEST_PORTS, BAR_VMMDEV_RAM, BarChange, BarRegion, COMMAND_IO_SPACE, COMMAND_MEMORY_SPACE,
};
use vmmdev_protocol::vmmdev::{
    BACKDOOR_LOG_PORT, RequestHeader, RequestType, VMMDEV_PORT_OFF_REQUEST_FAST,
};

use crate::audit::CancelAudit;
use crate::exits::{ExitCounters, ExitKind, RequestKind};
use crate::layout;
use crate::pci::{CONFIG_ADDRESS, CONFIG_DATA, PciBus};
use crate::serial::Console;
use crate::syscall_bridge::Bridge;
use crate::vm::VmExit;
use crate::xsave;

/// Offset of `requestType` in every VMMDev request.
const REQUEST_TYPE_OFFSET: u64 = std::mem::offset_of!(RequestHeader, request_type) as u64;

/// State shared by the vCPU threads: the buses and the run's outcome.
pub(crate) struct Machine {
    pub(crate) vm: Arc<VmFd>,
    pub(crate) mem: GuestMemoryMmap,
    pub(crate) device: VmmDev,
    pub(crate) pci: Mutex<PciBus>,
    pub(crate) io_bar: RwLock<Option<BarRegion>>,
    pub(crate) ram_bar: Mutex<Option<u64>>,
    pub(crate) ram_mapping: MmapRegion<()>,
    pub(crate) ram_slot: u32,
    pub(crate) console: Console,
    pub(crate) counters: Arc<ExitCounters>,
    pub(crate) audit: CancelAudit,
    /// Emulation workarounds applied, by kind (for the log's rate limit).
    pub(crate) workarounds: [AtomicU64; 5],
    /// Where the host's XSAVE components live, for the XSAVE/XRSTOR the monitor completes.
    pub(crate) xsave_layout: xsave::Layout,
    /// Ring-3 system calls completed by the monitor (PVM hosts only).
    pub(crate) syscall_bridge: Option<Bridge>,
    pub(crate) outcome: Mutex<Option<VmExit>>,
    pub(crate) ended: Condvar,
    pub(crate) stopping: AtomicBool,
}

impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine").finish_non_exhaustive()
    }
}

impl Machine {
    /// Records how the run ended (the first outcome wins) and wakes [`Vm::run`].
    pub(crate) fn finish(&self, exit: VmExit) {
        self.stopping.store(true, Ordering::Release);
        let mut outcome = self.outcome.lock();
        if outcome.is_none() {
            log::info!("the VM ends: {exit:?}");
            *outcome = Some(exit);
            self.ended.notify_all();
        }
    }

    /// Places the BARs as firmware would, enables decoding and routes INTA#.
    pub(crate) fn assign_bars_like_firmware(&self) {
        self.device.with_pci_config(|pci| {
            pci.set_bar_address(BAR_REQUEST_PORTS, u32::from(layout::VMMDEV_IO_BAR));
            pci.set_bar_address(BAR_VMMDEV_RAM, layout::VMMDEV_RAM_BAR);
            pci.set_command(COMMAND_IO_SPACE | COMMAND_MEMORY_SPACE);
            pci.set_interrupt_line(layout::VMMDEV_INTERRUPT_LINE);
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

    pub(crate) fn pio_read(&self, port: u16, data: &mut [u8]) {
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
    pub(crate) fn pio_write(&self, port: u16, data: &[u8]) -> Option<VmExit> {
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
}
