//! Type-0 PCI configuration space of the VMMDev function.
//!
//! The space is kept apart from the rest of the device so that the same code serves the
//! monitor's PCI bus (configuration mechanism #1 through ports 0xCF8/0xCFC) and the config
//! region of a vfio-user server. It models exactly what the Linux `vboxguest` driver and the
//! PCI core touch: identity (80EE:CAFE, subsystem 0000:0000, class 0x088000), the command
//! register, two BARs with the standard sizing protocol (BAR0: 32 I/O ports, BAR1: 4 MiB of
//! 32-bit non-prefetchable memory), the interrupt line/pin pair and the PCI 2.3 interrupt
//! status and INTx-disable bits. Every other byte reads as zero and ignores writes.
//!
//! Accesses of any width at any offset are accepted and never panic: reads outside the
//! 256-byte header return zeros, writes there are ignored.

use vmmdev_protocol::vmmdev::{
    PCI_CLASS_BASE, PCI_CLASS_PROG_IF, PCI_CLASS_SUB, PCI_DEVICE_ID, PCI_INTERRUPT_PIN,
    PCI_REVISION_ID, PCI_SUBSYSTEM_ID, PCI_SUBSYSTEM_VENDOR_ID, PCI_VENDOR_ID,
    VMMDEV_IO_PORT_RANGE_SIZE, VMMDEV_RAM_SIZE,
};

/// Size of the conventional configuration space.
pub const CONFIG_SPACE_SIZE: usize = 256;

const OFF_VENDOR_ID: usize = 0x00;
const OFF_COMMAND: usize = 0x04;
const OFF_CLASS_REVISION: usize = 0x08;
const OFF_CACHE_LINE_SIZE: usize = 0x0C;
const OFF_LATENCY_TIMER: usize = 0x0D;
const OFF_BAR0: usize = 0x10;
const OFF_SUBSYSTEM: usize = 0x2C;
const BAR_COUNT: usize = 6;
const OFF_INTERRUPT_LINE: usize = 0x3C;

/// Command register: I/O space enable.
pub const COMMAND_IO_SPACE: u16 = 1 << 0;
/// Command register: memory space enable.
pub const COMMAND_MEMORY_SPACE: u16 = 1 << 1;
/// Command register: bus master enable (stored, never enforced: see linux-guest H-1.2).
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
/// Command register: parity error response.
const COMMAND_PARITY_ERROR_RESPONSE: u16 = 1 << 6;
/// Command register: SERR# enable.
const COMMAND_SERR: u16 = 1 << 8;
/// Command register: INTx emulation disable (PCI 2.3).
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
const COMMAND_WRITABLE: u16 = COMMAND_IO_SPACE
    | COMMAND_MEMORY_SPACE
    | COMMAND_BUS_MASTER
    | COMMAND_PARITY_ERROR_RESPONSE
    | COMMAND_SERR
    | COMMAND_INTX_DISABLE;
/// Status register: interrupt status (PCI 2.3), read-only image of the device's INTx level.
pub const STATUS_INTERRUPT: u16 = 1 << 3;

/// Index of the I/O BAR holding the request and fast-acknowledge ports.
pub const BAR_REQUEST_PORTS: usize = 0;
/// Index of the memory BAR holding the VMMDev RAM.
pub const BAR_VMMDEV_RAM: usize = 1;

/// What a base address register decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    /// I/O ports.
    Io,
    /// 32-bit, non-prefetchable memory.
    Memory32,
}

/// A region the guest has placed and enabled: where the embedder must route accesses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarRegion {
    /// BAR index (0 or 1).
    pub index: usize,
    /// I/O or memory.
    pub kind: BarKind,
    /// Base address the guest programmed (port number for I/O).
    pub base: u64,
    /// Size in bytes (ports for I/O).
    pub size: u64,
}

/// A change of what the device decodes, reported by a configuration write so that the
/// embedder can move or (un)register the BAR's port or memory range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarChange {
    /// BAR index.
    pub index: usize,
    /// The region decoded before the write, if any.
    pub old: Option<BarRegion>,
    /// The region decoded after the write, if any.
    pub new: Option<BarRegion>,
}

#[derive(Clone, Copy, Debug)]
struct Bar {
    kind: BarKind,
    size: u32,
    /// Address bits only (type bits are composed on read).
    address: u32,
}

impl Bar {
    fn type_bits(&self) -> u32 {
        match self.kind {
            BarKind::Io => 0x1,
            BarKind::Memory32 => 0x0,
        }
    }

    fn address_mask(&self) -> u32 {
        !(self.size - 1)
    }

    fn register(&self) -> u32 {
        (self.address & self.address_mask()) | self.type_bits()
    }
}

/// Registers of the configuration space the guest can change; saved and restored with the
/// device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PciConfigState {
    /// Command register.
    pub command: u16,
    /// BAR0 and BAR1 addresses.
    pub bar_addresses: [u32; 2],
    /// Interrupt line register (routing information written by firmware/OS).
    pub interrupt_line: u8,
    /// Cache line size register.
    pub cache_line_size: u8,
    /// Latency timer register.
    pub latency_timer: u8,
}

/// The VMMDev function's configuration space.
#[derive(Debug)]
pub struct PciConfigSpace {
    command: u16,
    bars: [Bar; 2],
    interrupt_line: u8,
    cache_line_size: u8,
    latency_timer: u8,
    interrupt_status: bool,
}

impl Default for PciConfigSpace {
    fn default() -> Self {
        Self::new()
    }
}

impl PciConfigSpace {
    /// A function in its power-on state: decoding disabled, BARs at address 0.
    pub fn new() -> Self {
        PciConfigSpace {
            command: 0,
            bars: [
                Bar {
                    kind: BarKind::Io,
                    size: VMMDEV_IO_PORT_RANGE_SIZE,
                    address: 0,
                },
                Bar {
                    kind: BarKind::Memory32,
                    size: VMMDEV_RAM_SIZE,
                    address: 0,
                },
            ],
            interrupt_line: 0,
            cache_line_size: 0,
            latency_timer: 0,
            interrupt_status: false,
        }
    }

    /// Pre-assigns a BAR like firmware would (the embedder's address map), without enabling
    /// decoding. Address bits below the BAR size are dropped.
    pub fn set_bar_address(&mut self, index: usize, address: u32) {
        if let Some(bar) = self.bars.get_mut(index) {
            bar.address = address & bar.address_mask();
        }
    }

    /// Sets the command register as firmware would (e.g. to enable decoding up front).
    pub fn set_command(&mut self, command: u16) {
        self.command = command & COMMAND_WRITABLE;
    }

    /// Sets the interrupt line register (the IRQ number the embedder routed INTA# to).
    pub fn set_interrupt_line(&mut self, line: u8) {
        self.interrupt_line = line;
    }

    /// Current command register.
    pub fn command(&self) -> u16 {
        self.command
    }

    /// Whether the guest disabled INTx emulation; the device must then keep its line low.
    pub fn intx_disabled(&self) -> bool {
        self.command & COMMAND_INTX_DISABLE != 0
    }

    /// Mirrors the device's internal interrupt level into the status register.
    pub fn set_interrupt_status(&mut self, asserted: bool) {
        self.interrupt_status = asserted;
    }

    /// The region BAR `index` decodes right now (its enable bit set and an address assigned).
    pub fn bar_region(&self, index: usize) -> Option<BarRegion> {
        let bar = self.bars.get(index)?;
        let enabled = match bar.kind {
            BarKind::Io => self.command & COMMAND_IO_SPACE != 0,
            BarKind::Memory32 => self.command & COMMAND_MEMORY_SPACE != 0,
        };
        let base = bar.address & bar.address_mask();
        (enabled && base != 0).then_some(BarRegion {
            index,
            kind: bar.kind,
            base: u64::from(base),
            size: u64::from(bar.size),
        })
    }

    /// Reads `data.len()` bytes at `offset`. Any offset and width is accepted; bytes outside
    /// the header read as zero.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = offset
                .checked_add(i as u64)
                .and_then(|o| usize::try_from(o).ok())
                .map_or(0, |o| self.read_byte(o));
        }
    }

    /// Writes `data` at `offset`, honouring read-only fields. Returns the BAR decode changes
    /// the write caused (at most one per BAR).
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Vec<BarChange> {
        let before = [self.bar_region(0), self.bar_region(1)];
        for (i, &byte) in data.iter().enumerate() {
            if let Some(o) = offset
                .checked_add(i as u64)
                .and_then(|o| usize::try_from(o).ok())
            {
                self.write_byte(o, byte);
            }
        }
        (0..2)
            .filter_map(|index| {
                let new = self.bar_region(index);
                (before[index] != new).then_some(BarChange {
                    index,
                    old: before[index],
                    new,
                })
            })
            .collect()
    }

    /// Guest-changeable registers, for the device snapshot.
    pub fn state(&self) -> PciConfigState {
        PciConfigState {
            command: self.command,
            bar_addresses: [self.bars[0].address, self.bars[1].address],
            interrupt_line: self.interrupt_line,
            cache_line_size: self.cache_line_size,
            latency_timer: self.latency_timer,
        }
    }

    /// Restores registers saved by [`PciConfigSpace::state`].
    pub fn restore(&mut self, state: &PciConfigState) {
        self.set_command(state.command);
        for (index, address) in state.bar_addresses.iter().enumerate() {
            self.set_bar_address(index, *address);
        }
        self.interrupt_line = state.interrupt_line;
        self.cache_line_size = state.cache_line_size;
        self.latency_timer = state.latency_timer;
    }

    fn status(&self) -> u16 {
        if self.interrupt_status {
            STATUS_INTERRUPT
        } else {
            0
        }
    }

    fn read_byte(&self, offset: usize) -> u8 {
        let dword = offset & !3;
        let shift = (offset & 3) * 8;
        let value: u32 = match dword {
            OFF_VENDOR_ID => u32::from(PCI_VENDOR_ID) | (u32::from(PCI_DEVICE_ID) << 16),
            OFF_COMMAND => u32::from(self.command) | (u32::from(self.status()) << 16),
            OFF_CLASS_REVISION => u32::from_le_bytes([
                PCI_REVISION_ID,
                PCI_CLASS_PROG_IF,
                PCI_CLASS_SUB,
                PCI_CLASS_BASE,
            ]),
            OFF_SUBSYSTEM => {
                u32::from(PCI_SUBSYSTEM_VENDOR_ID) | (u32::from(PCI_SUBSYSTEM_ID) << 16)
            }
            OFF_CACHE_LINE_SIZE => {
                u32::from(self.cache_line_size) | (u32::from(self.latency_timer) << 8)
            }
            OFF_INTERRUPT_LINE => {
                u32::from(self.interrupt_line) | (u32::from(PCI_INTERRUPT_PIN) << 8)
            }
            o if (OFF_BAR0..OFF_BAR0 + 4 * BAR_COUNT).contains(&o) => {
                self.bars.get((o - OFF_BAR0) / 4).map_or(0, Bar::register)
            }
            _ => 0,
        };
        (value >> shift) as u8
    }

    fn write_byte(&mut self, offset: usize, byte: u8) {
        match offset {
            o if o == OFF_COMMAND || o == OFF_COMMAND + 1 => {
                let shift = (o - OFF_COMMAND) * 8;
                let merged = (self.command & !(0xFF << shift)) | (u16::from(byte) << shift);
                self.command = merged & COMMAND_WRITABLE;
            }
            OFF_CACHE_LINE_SIZE => self.cache_line_size = byte,
            OFF_LATENCY_TIMER => self.latency_timer = byte,
            OFF_INTERRUPT_LINE => self.interrupt_line = byte,
            o if (OFF_BAR0..OFF_BAR0 + 4 * self.bars.len()).contains(&o) => {
                let index = (o - OFF_BAR0) / 4;
                let shift = (o & 3) * 8;
                if let Some(bar) = self.bars.get_mut(index) {
                    let merged = (bar.address & !(0xFF << shift)) | (u32::from(byte) << shift);
                    bar.address = merged & bar.address_mask();
                }
            }
            // Identity, status (no RW1C bits are ever set), class, header type, unused BARs,
            // subsystem IDs, expansion ROM, capability pointer, interrupt pin and everything
            // beyond the header are read-only.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read32(space: &PciConfigSpace, offset: u64) -> u32 {
        let mut data = [0u8; 4];
        space.read(offset, &mut data);
        u32::from_le_bytes(data)
    }

    fn write32(space: &mut PciConfigSpace, offset: u64, value: u32) -> Vec<BarChange> {
        space.write(offset, &value.to_le_bytes())
    }

    #[test]
    fn identity_matches_the_linux_id_table() {
        let space = PciConfigSpace::new();
        assert_eq!(read32(&space, 0x00), 0xCAFE_80EE);
        assert_eq!(
            read32(&space, 0x2C),
            0,
            "subsystem vendor/device must be 0 (H-1.1)"
        );
        assert_eq!(
            read32(&space, 0x08),
            0x0880_0000,
            "class 0x088000, revision 0"
        );
        let mut header_type = [0xFF];
        space.read(0x0E, &mut header_type);
        assert_eq!(header_type[0], 0);
    }

    #[test]
    fn interrupt_pin_is_inta_and_read_only() {
        let mut space = PciConfigSpace::new();
        space.write(0x3D, &[4]);
        let mut pin = [0];
        space.read(0x3D, &mut pin);
        assert_eq!(pin[0], 1);
    }

    #[test]
    fn interrupt_line_is_writable() {
        let mut space = PciConfigSpace::new();
        space.write(0x3C, &[11]);
        let mut line = [0];
        space.read(0x3C, &mut line);
        assert_eq!(line[0], 11);
    }

    #[test]
    fn identity_fields_ignore_writes() {
        let mut space = PciConfigSpace::new();
        write32(&mut space, 0x00, 0x1234_5678);
        write32(&mut space, 0x08, 0xFFFF_FFFF);
        write32(&mut space, 0x2C, 0xFFFF_FFFF);
        assert_eq!(read32(&space, 0x00), 0xCAFE_80EE);
        assert_eq!(read32(&space, 0x08), 0x0880_0000);
        assert_eq!(read32(&space, 0x2C), 0);
    }

    #[test]
    fn io_bar_sizing_reports_32_ports() {
        let mut space = PciConfigSpace::new();
        write32(&mut space, 0x10, 0xFFFF_FFFF);
        assert_eq!(read32(&space, 0x10), 0xFFFF_FFE1);
    }

    #[test]
    fn memory_bar_sizing_reports_4_mib_non_prefetchable() {
        let mut space = PciConfigSpace::new();
        write32(&mut space, 0x14, 0xFFFF_FFFF);
        assert_eq!(read32(&space, 0x14), 0xFFC0_0000);
    }

    #[test]
    fn unused_bars_read_zero_after_sizing() {
        let mut space = PciConfigSpace::new();
        for offset in [0x18, 0x1C, 0x20, 0x24, 0x30] {
            write32(&mut space, offset, 0xFFFF_FFFF);
            assert_eq!(read32(&space, offset), 0, "offset {offset:#x}");
        }
    }

    #[test]
    fn command_register_keeps_only_writable_bits() {
        let mut space = PciConfigSpace::new();
        space.write(0x04, &0xFFFFu16.to_le_bytes());
        assert_eq!(space.command(), COMMAND_WRITABLE);
    }

    #[test]
    fn bar_decodes_only_when_enabled_and_reports_the_change() {
        let mut space = PciConfigSpace::new();
        assert!(
            write32(&mut space, 0x10, 0xC000).is_empty(),
            "decoding still off"
        );
        let changes = space.write(0x04, &COMMAND_IO_SPACE.to_le_bytes());
        assert_eq!(
            changes,
            vec![BarChange {
                index: 0,
                old: None,
                new: Some(BarRegion {
                    index: 0,
                    kind: BarKind::Io,
                    base: 0xC000,
                    size: 32
                }),
            }]
        );
    }

    #[test]
    fn moving_an_enabled_bar_reports_old_and_new_regions() {
        let mut space = PciConfigSpace::new();
        space.set_bar_address(1, 0xE000_0000);
        space.set_command(COMMAND_MEMORY_SPACE);
        let changes = write32(&mut space, 0x14, 0xE040_0000);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].old.map(|r| r.base), Some(0xE000_0000));
        assert_eq!(changes[0].new.map(|r| r.base), Some(0xE040_0000));
    }

    #[test]
    fn partial_bar_writes_merge_bytes() {
        let mut space = PciConfigSpace::new();
        space.write(0x11, &[0xC0]);
        assert_eq!(read32(&space, 0x10), 0xC001);
    }

    #[test]
    fn interrupt_status_bit_mirrors_the_line() {
        let mut space = PciConfigSpace::new();
        space.set_interrupt_status(true);
        assert_eq!(read32(&space, 0x04) >> 16, u32::from(STATUS_INTERRUPT));
        space.set_interrupt_status(false);
        assert_eq!(read32(&space, 0x04) >> 16, 0);
    }

    #[test]
    fn any_offset_and_width_is_harmless() {
        let mut space = PciConfigSpace::new();
        let mut big = vec![0xEEu8; 300];
        space.read(u64::MAX - 2, &mut big);
        assert!(big.iter().all(|&b| b == 0));
        space.read(250, &mut big);
        assert!(big[6..].iter().all(|&b| b == 0));
        assert!(space.write(u64::MAX, &[0xFF; 9]).is_empty());
        assert!(space.write(0x1000, &[0xFF; 4]).is_empty());
        let mut odd = [0u8; 3];
        space.read(1, &mut odd);
        assert_eq!(odd, [0x80, 0xFE, 0xCA]);
    }

    #[test]
    fn state_round_trips() {
        let mut space = PciConfigSpace::new();
        space.set_bar_address(0, 0xD000);
        space.set_bar_address(1, 0xF000_0000);
        space.set_command(COMMAND_IO_SPACE | COMMAND_MEMORY_SPACE);
        space.write(0x3C, &[10]);
        let state = space.state();
        let mut restored = PciConfigSpace::new();
        restored.restore(&state);
        assert_eq!(restored.state(), state);
        assert_eq!(restored.bar_region(1), space.bar_region(1));
    }
}
