//! How the guest reaches the device: the request port and the `fHaveEvents` byte.
//!
//! The Linux driver needs exactly two things from the hardware besides RAM: an `outl` of a
//! request's physical address to BAR0, and a byte read of the VMMDev RAM. [`Transport`] is
//! that interface, so the same driver core runs against the device in this process
//! ([`DeviceTransport`]) and could run against real port I/O in a guest.

use vm_device::DevicePio;
use vm_device::bus::PioAddress;
use vmmdev_device::VmmDev;
use vmmdev_protocol::vmmdev::{VMMDEV_MEMORY_OFF_HAVE_EVENTS, VMMDEV_PORT_OFF_REQUEST};

/// The guest's view of the VMMDev hardware.
pub trait Transport: Send + Sync {
    /// Writes a request's guest-physical address to the request port (a 32-bit `outl`). Returns
    /// once the device processed it.
    fn submit(&self, gpa: u32);
    /// Reads the `fHaveEvents` byte of the VMMDev RAM.
    fn have_events(&self) -> bool;
}

/// Port I/O straight into a [`VmmDev`] in this process.
#[derive(Debug, Clone)]
pub struct DeviceTransport {
    device: VmmDev,
    port_base: u16,
}

impl DeviceTransport {
    /// Talks to `device` whose BAR0 is at I/O port `port_base`.
    pub fn new(device: VmmDev, port_base: u16) -> Self {
        DeviceTransport { device, port_base }
    }
}

impl Transport for DeviceTransport {
    fn submit(&self, gpa: u32) {
        self.device.pio_write(
            PioAddress(self.port_base),
            VMMDEV_PORT_OFF_REQUEST as u16,
            &gpa.to_le_bytes(),
        );
    }

    fn have_events(&self) -> bool {
        let mut byte = [0u8];
        self.device
            .ram()
            .read(u64::from(VMMDEV_MEMORY_OFF_HAVE_EVENTS), &mut byte);
        byte[0] != 0
    }
}
