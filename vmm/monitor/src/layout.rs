//! Every guest-physical address, port and interrupt the monitor gives the guest, in one place.
//!
//! The map follows the Rust VMMs on KVM (Firecracker, cloud-hypervisor; kvm-vmm.md §2): boot structures in
//! the first megabyte, RAM from 0 with the legacy hole at 640 KiB–1 MiB, a 32-bit PCI hole from 3 GiB, the
//! in-kernel IOAPIC and LAPIC, KVM's TSS and identity-map pages just below 4 GiB, and RAM beyond 3 GiB
//! continuing above 4 GiB.

/// Boot GDT (four 8-byte descriptors).
pub const BOOT_GDT: u64 = 0x500;
/// Boot IDT (empty; Linux installs its own at once).
pub const BOOT_IDT: u64 = 0x520;
/// The zero page (`struct boot_params`).
pub const ZERO_PAGE: u64 = 0x7000;
/// Initial stack pointer of the boot CPU.
pub const BOOT_STACK: u64 = 0x8ff0;
/// Boot page tables: PML4, PDPT and one page directory of 2 MiB pages (identity map of the first GiB).
pub const BOOT_PML4: u64 = 0x9000;
/// Boot PDPT.
pub const BOOT_PDPT: u64 = 0xa000;
/// Boot page directory.
pub const BOOT_PD: u64 = 0xb000;
/// The kernel command line.
pub const CMDLINE: u64 = 0x20000;
/// Room for the command line, terminator included.
pub const CMDLINE_MAX: usize = 2048;
/// The MP floating pointer and configuration table: the top KiB of base memory, where Linux looks.
pub const MPTABLE: u64 = 0x9fc00;
/// End of base memory (RAM below the legacy hole).
pub const BASE_RAM_END: u64 = 0xa0000;
/// Start of extended memory, and where a bzImage's protected-mode kernel is loaded.
pub const HIGH_MEMORY: u64 = 0x10_0000;

/// Start of the 32-bit PCI hole: RAM stops here and continues at [`RAM_ABOVE_4G`].
pub const PCI_HOLE_START: u64 = 0xC000_0000;
/// RAM beyond the hole.
pub const RAM_ABOVE_4G: u64 = 1 << 32;
/// The in-kernel IOAPIC.
pub const IOAPIC: u64 = 0xFEC0_0000;
/// The local APICs.
pub const LAPIC: u64 = 0xFEE0_0000;
/// KVM's identity-map page (one page; Intel real-mode emulation).
pub const KVM_IDENTITY_MAP: u64 = 0xFFFB_C000;
/// KVM's TSS (three pages).
pub const KVM_TSS: u64 = 0xFFFB_D000;

/// VMMDev's PCI device number on bus 0 (VirtualBox uses 4).
pub const VMMDEV_PCI_SLOT: u8 = 4;
/// Where firmware would put the VMMDev I/O BAR (32 ports).
pub const VMMDEV_IO_BAR: u16 = 0xD000;
/// Where firmware would put the VMMDev RAM BAR (4 MiB, naturally aligned).
pub const VMMDEV_RAM_BAR: u32 = 0xE000_0000;
/// The IOAPIC pin (and GSI) of VMMDev's INTA#: above the ISA range, so no ISA entry shares it and KVM's
/// default routing sends it to the IOAPIC only (kvm-vmm.md §3.2).
pub const VMMDEV_GSI: u32 = 16;
/// What firmware leaves in VMMDev's Interrupt Line register: the legacy (8259) IRQ that SeaBIOS reports
/// under QEMU too. Linux without ACPI ignores a line of 16 or more, so `irq` in sysfs would read 0 until a
/// driver enables the device; with 10 it reads 10, and `pci_enable_device` then takes the IOAPIC pin
/// ([`VMMDEV_GSI`]) from the MP table, as on an MP-table PC. The 8259 is not wired to VMMDev: guests that
/// run with `noapic` get no interrupt from it (kvm-vmm.md §3.2).
pub const VMMDEV_INTERRUPT_LINE: u8 = 10;

/// The first serial port (COM1).
pub const SERIAL_PORT: u16 = 0x3f8;
/// Number of ports of a 16550 UART.
pub const SERIAL_PORTS: u16 = 8;
/// COM1's ISA interrupt.
pub const SERIAL_GSI: u32 = 4;
/// The i8042 command port; writing 0xFE resets the machine.
pub const I8042_COMMAND_PORT: u16 = 0x64;
/// The i8042 "pulse reset line" command.
pub const I8042_RESET_COMMAND: u8 = 0xFE;
/// What a read of the i8042 status port returns: output buffer full, input buffer empty. The reboot path
/// waits for an empty input buffer and so goes on at once; the i8042 driver's flush finds a buffer that
/// never empties and gives up on the controller without waiting.
pub const I8042_STATUS_NO_CONTROLLER: u8 = 0x01;

/// Number of IOAPIC pins KVM's in-kernel IOAPIC has.
pub const IOAPIC_PINS: u8 = 24;
/// ISA interrupts routed one-to-one to IOAPIC pins 0–15.
pub const ISA_IRQS: u8 = 16;
/// KVM's IOAPIC version register value.
pub const IOAPIC_VERSION: u8 = 0x11;
