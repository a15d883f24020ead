//! A whole "VM" in one process: guest RAM, the device, the interrupt line and the guest.

use std::sync::Arc;

use vm_memory::GuestMemoryAtomic;
use vmmdev_device::pci::{
    BAR_REQUEST_PORTS, BAR_VMMDEV_RAM, COMMAND_IO_SPACE, COMMAND_MEMORY_SPACE,
};
use vmmdev_device::{DeviceError, VmmDev, VmmDevConfig};
use vmmdev_hgcm::Hgcm;

use crate::driver::{Guest, GuestError};
use crate::irq::GuestInterrupt;
use crate::memory::{GuestRam, MemoryError};
use crate::transport::DeviceTransport;

/// I/O port the in-process VM places BAR0 at (like firmware would).
pub const REQUEST_PORT_BASE: u16 = 0xD000;
/// Address the in-process VM places BAR1 at.
pub const VMMDEV_RAM_BASE: u32 = 0xE000_0000;
/// Default guest RAM size.
pub const DEFAULT_RAM_SIZE: usize = 64 << 20;

/// Errors assembling an in-process VM.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// Guest RAM could not be created.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// The device could not be created.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The guest could not start.
    #[error(transparent)]
    Guest(#[from] GuestError),
}

/// Guest, device and interrupt line wired together, no KVM.
#[derive(Debug)]
pub struct InProcessVm {
    /// The device.
    pub device: VmmDev,
    /// The guest driver (owns the interrupt thread).
    pub guest: Guest,
    /// INTA#, shared by both.
    pub irq: Arc<GuestInterrupt>,
}

impl InProcessVm {
    /// A VM with default configuration and 64 MiB of RAM, submitting HGCM to `hgcm`.
    pub fn new(hgcm: Hgcm) -> Result<Self, VmError> {
        Self::with_config(hgcm, VmmDevConfig::default(), DEFAULT_RAM_SIZE)
    }

    /// A VM with a custom device configuration and RAM size.
    pub fn with_config(hgcm: Hgcm, config: VmmDevConfig, ram_size: usize) -> Result<Self, VmError> {
        let ram = GuestRam::new(ram_size)?;
        let irq = Arc::new(GuestInterrupt::new());
        let device = VmmDev::builder(
            GuestMemoryAtomic::from(Arc::clone(ram.memory())),
            hgcm,
            irq.clone(),
        )
        .config(config)
        .build()?;
        device.with_pci_config(|pci| {
            pci.set_bar_address(BAR_REQUEST_PORTS, u32::from(REQUEST_PORT_BASE));
            pci.set_bar_address(BAR_VMMDEV_RAM, VMMDEV_RAM_BASE);
            pci.set_command(COMMAND_IO_SPACE | COMMAND_MEMORY_SPACE);
            pci.set_interrupt_line(11);
        });
        let transport = Arc::new(DeviceTransport::new(device.clone(), REQUEST_PORT_BASE));
        let guest = Guest::new(transport, ram, irq.clone())?;
        Ok(InProcessVm { device, guest, irq })
    }
}
