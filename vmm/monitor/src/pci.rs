//! PCI configuration mechanism #1 (ports 0xCF8–0xCFF) for bus 0: a host bridge at 00:00.0 and the VMMDev
//! function in its slot (kvm-vmm.md §3.1, §4).
//!
//! The address register is a latch that takes byte, word and dword writes at any of its four ports and
//! reads back what was written: Linux's `pci_check_type1` writes a byte to 0xCFB and requires the dword at
//! 0xCF8 to read back 0x8000_0000. The data ports select a byte lane of the addressed dword. Absent
//! functions read all-ones (vendor 0xFFFF) and ignore writes; the host bridge is read-only apart from that.

use vmmdev_device::VmmDev;
use vmmdev_device::pci::BarChange;

/// The configuration address port.
pub const CONFIG_ADDRESS: u16 = 0xcf8;
/// The configuration data port (four byte lanes from here).
pub const CONFIG_DATA: u16 = 0xcfc;

const ENABLE: u32 = 1 << 31;
/// Host bridge identity: 8086:0D57, as Firecracker and cloud-hypervisor use (unknown to Linux's MMCONFIG
/// probes, so nothing else is looked for).
const HOST_BRIDGE_ID: u32 = 0x0d57_8086;
/// Class 06 (bridge), subclass 00 (host), revision 0.
const HOST_BRIDGE_CLASS: u32 = 0x0600_0000;

/// Bus 0 with its two functions.
#[derive(Debug)]
pub struct PciBus {
    address: u32,
    device: VmmDev,
    device_slot: u8,
}

/// The function an address selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Function {
    HostBridge,
    VmmDev,
    Absent,
}

impl PciBus {
    /// Bus 0 with `device` at `slot` (function 0).
    pub fn new(device: VmmDev, slot: u8) -> Self {
        Self {
            address: 0,
            device,
            device_slot: slot,
        }
    }

    /// Reads the address latch (`offset` 0–3 within 0xCF8).
    pub fn read_address(&self, offset: u16, data: &mut [u8]) {
        let bytes = self.address.to_le_bytes();
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = bytes.get(usize::from(offset) + i).copied().unwrap_or(0xff);
        }
    }

    /// Writes into the address latch.
    pub fn write_address(&mut self, offset: u16, data: &[u8]) {
        let mut bytes = self.address.to_le_bytes();
        for (i, byte) in data.iter().enumerate() {
            if let Some(slot) = bytes.get_mut(usize::from(offset) + i) {
                *slot = *byte;
            }
        }
        self.address = u32::from_le_bytes(bytes);
    }

    /// Reads the configuration data (`offset` 0–3 within 0xCFC).
    pub fn read_data(&self, offset: u16, data: &mut [u8]) {
        let register = self.register() + u64::from(offset);
        match self.function() {
            Function::HostBridge => {
                let dword = host_bridge_dword(register & !3).to_le_bytes();
                for (i, byte) in data.iter_mut().enumerate() {
                    *byte = dword.get((register & 3) as usize + i).copied().unwrap_or(0);
                }
            }
            Function::VmmDev => self.device.pci_config_read(register, data),
            Function::Absent => data.fill(0xff),
        }
    }

    /// Writes the configuration data; returns the BAR changes the monitor must apply.
    pub fn write_data(&mut self, offset: u16, data: &[u8]) -> Vec<BarChange> {
        match self.function() {
            Function::VmmDev => self
                .device
                .pci_config_write(self.register() + u64::from(offset), data),
            Function::HostBridge | Function::Absent => Vec::new(),
        }
    }

    fn register(&self) -> u64 {
        u64::from(self.address & 0xfc)
    }

    fn function(&self) -> Function {
        if self.address & ENABLE == 0 {
            return Function::Absent;
        }
        let bus = (self.address >> 16) & 0xff;
        let device = ((self.address >> 11) & 0x1f) as u8;
        let function = (self.address >> 8) & 0x7;
        match (bus, device, function) {
            (0, 0, 0) => Function::HostBridge,
            (0, slot, 0) if slot == self.device_slot => Function::VmmDev,
            _ => Function::Absent,
        }
    }
}

fn host_bridge_dword(register: u64) -> u32 {
    match register {
        0x00 => HOST_BRIDGE_ID,
        0x08 => HOST_BRIDGE_CLASS,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use vm_memory::{GuestAddress, GuestMemoryAtomic, GuestMemoryMmap};
    use vmmdev_device::InterruptLine;
    use vmmdev_hgcm::{Hgcm, HgcmConfig};

    struct NoLine;
    impl InterruptLine for NoLine {
        fn set_level(&self, _asserted: bool) {}
    }

    fn bus() -> PciBus {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let device = VmmDev::builder(
            GuestMemoryAtomic::new(mem),
            Hgcm::new(HgcmConfig::default()),
            Arc::new(NoLine),
        )
        .build()
        .unwrap();
        PciBus::new(device, 4)
    }

    fn select(bus: &mut PciBus, device: u32, register: u32) {
        bus.write_address(0, &(ENABLE | (device << 11) | register).to_le_bytes());
    }

    fn read_u32(bus: &PciBus) -> u32 {
        let mut data = [0u8; 4];
        bus.read_data(0, &mut data);
        u32::from_le_bytes(data)
    }

    #[test]
    fn address_latch_passes_linux_type1_check() {
        let mut bus = bus();
        bus.write_address(3, &[0x01]);
        bus.write_address(0, &0x8000_0000u32.to_le_bytes());
        let mut data = [0u8; 4];
        bus.read_address(0, &mut data);
        assert_eq!(u32::from_le_bytes(data), 0x8000_0000);
    }

    #[test]
    fn host_bridge_is_an_intel_host_bridge_at_slot_zero() {
        let mut bus = bus();
        select(&mut bus, 0, 0);
        assert_eq!(read_u32(&bus), 0x0d57_8086);
        select(&mut bus, 0, 8);
        assert_eq!(read_u32(&bus) >> 8, 0x06_0000);
    }

    #[test]
    fn vmmdev_answers_in_its_slot() {
        let mut bus = bus();
        select(&mut bus, 4, 0);
        assert_eq!(read_u32(&bus), 0xcafe_80ee);
    }

    #[test]
    fn byte_lanes_of_the_data_port_select_bytes() {
        let mut bus = bus();
        select(&mut bus, 4, 0);
        let mut high = [0u8; 2];
        bus.read_data(2, &mut high);
        assert_eq!(u16::from_le_bytes(high), 0xcafe);
    }

    #[test]
    fn absent_slots_and_disabled_cycles_read_all_ones() {
        let mut bus = bus();
        select(&mut bus, 5, 0);
        assert_eq!(read_u32(&bus), u32::MAX);
        bus.write_address(0, &(4u32 << 11).to_le_bytes());
        assert_eq!(read_u32(&bus), u32::MAX);
    }

    #[test]
    fn other_functions_of_the_device_are_absent() {
        let mut bus = bus();
        bus.write_address(0, &(ENABLE | (4 << 11) | (1 << 8)).to_le_bytes());
        assert_eq!(read_u32(&bus), u32::MAX);
    }

    #[test]
    fn bar_sizing_through_the_data_port_reports_the_size() {
        let mut bus = bus();
        select(&mut bus, 4, 0x14);
        bus.write_data(0, &u32::MAX.to_le_bytes());
        assert_eq!(read_u32(&bus), 0xffc0_0000);
    }
}
