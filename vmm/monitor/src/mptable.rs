//! The Intel MultiProcessor Specification 1.4 tables: how Linux finds the CPUs, the IOAPIC and the
//! interrupt routing of the PCI device without ACPI (kvm-vmm.md §3.4).
//!
//! The table names one PCI bus (0) and one ISA bus (1), ISA interrupts 0–15 on IOAPIC pins 0–15 (the PIT
//! raises GSI 0, which KVM's default routing sends to pin 0), and the VMMDev function's INTA# on a pin of
//! its own above the ISA range. That PCI entry has flags 0, "conforms to the bus", which for a PCI bus
//! means level-triggered, active low: exactly what a shared VMMDev interrupt needs, and why no ISA entry
//! may name the same pin (Linux takes trigger mode and polarity from the first entry for a pin).

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::layout;

/// The most vCPUs the table describes (it must fit the KiB below 640 KiB, and APIC IDs must stay below
/// the IOAPIC's).
pub const MAX_CPUS: u8 = 32;

const PCI_BUS: u8 = 0;
const ISA_BUS: u8 = 1;
const FLOATING_POINTER_LEN: usize = 16;
const HEADER_LEN: usize = 44;
const PROCESSOR_LEN: usize = 20;
const ENTRY_LEN: usize = 8;

const ENTRY_PROCESSOR: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_IO_INTERRUPT: u8 = 3;
const ENTRY_LOCAL_INTERRUPT: u8 = 4;

const INTERRUPT_INT: u8 = 0;
const INTERRUPT_NMI: u8 = 1;
const INTERRUPT_EXTINT: u8 = 3;
/// Polarity and trigger mode "conform to the bus".
const FLAGS_CONFORMING: u16 = 0;

const CPU_ENABLED: u8 = 1;
const CPU_BOOTSTRAP: u8 = 2;
const LAPIC_VERSION: u8 = 0x14;
/// Family 6 signature, as the reference VMMs report.
const CPU_SIGNATURE: u32 = 0x600;
/// FPU and APIC present.
const CPU_FEATURES: u32 = 0x201;
const SPEC_REVISION: u8 = 4;

/// Errors of writing the table.
#[derive(Debug, thiserror::Error)]
pub enum MptableError {
    /// Too many or too few vCPUs for the table.
    #[error("the MP table describes 1 to {MAX_CPUS} vCPUs, not {0}")]
    CpuCount(u8),
    /// The table does not fit in guest memory at its address.
    #[error("cannot write the MP table into guest memory")]
    Write(#[source] vm_memory::GuestMemoryError),
}

/// What the table describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MpConfig {
    /// Number of vCPUs (APIC IDs 0..n; vCPU 0 boots).
    pub cpus: u8,
    /// PCI device number of the function whose INTA# is routed.
    pub pci_slot: u8,
    /// The IOAPIC pin of that INTA# (16–23).
    pub pci_pin: u8,
}

/// Builds the floating pointer followed by the configuration table, for the address `base`.
pub fn build(config: &MpConfig) -> Result<Vec<u8>, MptableError> {
    if config.cpus == 0 || config.cpus > MAX_CPUS {
        return Err(MptableError::CpuCount(config.cpus));
    }
    let ioapic_id = config.cpus;
    let interrupts = 2 + 1 + usize::from(layout::ISA_IRQS) + 1 + 2;
    let mut entries =
        Vec::with_capacity(usize::from(config.cpus) * PROCESSOR_LEN + interrupts * ENTRY_LEN);
    let mut count: u16 = 0;
    for cpu in 0..config.cpus {
        let flags = if cpu == 0 {
            CPU_ENABLED | CPU_BOOTSTRAP
        } else {
            CPU_ENABLED
        };
        entries.extend_from_slice(&[ENTRY_PROCESSOR, cpu, LAPIC_VERSION, flags]);
        entries.extend_from_slice(&CPU_SIGNATURE.to_le_bytes());
        entries.extend_from_slice(&CPU_FEATURES.to_le_bytes());
        entries.extend_from_slice(&[0; 8]);
        count += 1;
    }
    for (id, name) in [(PCI_BUS, b"PCI   "), (ISA_BUS, b"ISA   ")] {
        entries.extend_from_slice(&[ENTRY_BUS, id]);
        entries.extend_from_slice(name);
        count += 1;
    }
    entries.extend_from_slice(&[ENTRY_IOAPIC, ioapic_id, layout::IOAPIC_VERSION, 1]);
    entries.extend_from_slice(&(layout::IOAPIC as u32).to_le_bytes());
    count += 1;
    let mut interrupt = |kind: u8, bus: u8, source: u8, apic: u8, pin: u8| {
        entries.extend_from_slice(&[kind, INTERRUPT_INT]);
        entries.extend_from_slice(&FLAGS_CONFORMING.to_le_bytes());
        entries.extend_from_slice(&[bus, source, apic, pin]);
        count += 1;
    };
    for irq in 0..layout::ISA_IRQS {
        interrupt(ENTRY_IO_INTERRUPT, ISA_BUS, irq, ioapic_id, irq);
    }
    interrupt(
        ENTRY_IO_INTERRUPT,
        PCI_BUS,
        config.pci_slot << 2,
        ioapic_id,
        config.pci_pin,
    );
    for (kind, destination, lint) in [(INTERRUPT_EXTINT, 0u8, 0u8), (INTERRUPT_NMI, 0xFF, 1)] {
        entries.extend_from_slice(&[ENTRY_LOCAL_INTERRUPT, kind]);
        entries.extend_from_slice(&FLAGS_CONFORMING.to_le_bytes());
        entries.extend_from_slice(&[ISA_BUS, 0, destination, lint]);
        count += 1;
    }

    let table_address = layout::MPTABLE + FLOATING_POINTER_LEN as u64;
    let table_len = HEADER_LEN + entries.len();
    let mut table = Vec::with_capacity(FLOATING_POINTER_LEN + table_len);
    table.extend_from_slice(b"_MP_");
    table.extend_from_slice(&(table_address as u32).to_le_bytes());
    table.extend_from_slice(&[1, SPEC_REVISION, 0, 0, 0, 0, 0, 0]);
    let pointer_checksum = checksum(&table);
    table[10] = pointer_checksum;

    let header_start = table.len();
    table.extend_from_slice(b"PCMP");
    table.extend_from_slice(&(table_len as u16).to_le_bytes());
    table.extend_from_slice(&[SPEC_REVISION, 0]);
    table.extend_from_slice(b"VMMDEVRS");
    table.extend_from_slice(b"KVM MONITOR ");
    table.extend_from_slice(&0u32.to_le_bytes());
    table.extend_from_slice(&0u16.to_le_bytes());
    table.extend_from_slice(&count.to_le_bytes());
    table.extend_from_slice(&(layout::LAPIC as u32).to_le_bytes());
    table.extend_from_slice(&[0, 0, 0, 0]);
    table.extend_from_slice(&entries);
    let table_checksum = checksum(&table[header_start..]);
    table[header_start + 7] = table_checksum;
    Ok(table)
}

/// Writes the tables at [`layout::MPTABLE`].
pub fn write(mem: &GuestMemoryMmap, config: &MpConfig) -> Result<(), MptableError> {
    let table = build(config)?;
    mem.write_slice(&table, GuestAddress(layout::MPTABLE))
        .map_err(MptableError::Write)
}

/// The byte that makes `bytes` (with that byte still 0) sum to zero.
fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |sum, &b| sum.wrapping_add(b))
        .wrapping_neg()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: MpConfig = MpConfig {
        cpus: 2,
        pci_slot: 4,
        pci_pin: 16,
    };

    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b))
    }

    /// The 8-byte entries of a given type, after the processor entries.
    fn entries_of(table: &[u8], kind: u8) -> Vec<[u8; 8]> {
        let body = &table[FLOATING_POINTER_LEN + HEADER_LEN..];
        let mut offset = 0;
        let mut found = Vec::new();
        while offset < body.len() {
            let len = if body[offset] == ENTRY_PROCESSOR {
                PROCESSOR_LEN
            } else {
                ENTRY_LEN
            };
            if body[offset] == kind && len == ENTRY_LEN {
                found.push(body[offset..offset + 8].try_into().unwrap());
            }
            offset += len;
        }
        found
    }

    #[test]
    fn floating_pointer_and_table_checksums_are_zero() {
        let table = build(&CONFIG).unwrap();
        assert_eq!(&table[..4], b"_MP_");
        assert_eq!(sum(&table[..16]), 0);
        assert_eq!(&table[16..20], b"PCMP");
        let len = u16::from_le_bytes([table[20], table[21]]) as usize;
        assert_eq!(len, table.len() - 16);
        assert_eq!(sum(&table[16..]), 0);
    }

    #[test]
    fn floating_pointer_names_the_table_right_after_it() {
        let table = build(&CONFIG).unwrap();
        let pointer = u32::from_le_bytes(table[4..8].try_into().unwrap());
        assert_eq!(u64::from(pointer), layout::MPTABLE + 16);
    }

    #[test]
    fn one_processor_entry_per_vcpu_and_only_the_first_boots() {
        let table = build(&CONFIG).unwrap();
        let body = &table[FLOATING_POINTER_LEN + HEADER_LEN..];
        assert_eq!(body[0..4], [ENTRY_PROCESSOR, 0, LAPIC_VERSION, 3]);
        assert_eq!(body[20..24], [ENTRY_PROCESSOR, 1, LAPIC_VERSION, 1]);
        assert_eq!(body[40], ENTRY_BUS);
    }

    #[test]
    fn pci_inta_is_routed_to_its_own_pin_with_bus_conforming_flags() {
        let table = build(&CONFIG).unwrap();
        let to_pin: Vec<_> = entries_of(&table, ENTRY_IO_INTERRUPT)
            .into_iter()
            .filter(|e| e[7] == 16)
            .collect();
        assert_eq!(
            to_pin,
            [[
                ENTRY_IO_INTERRUPT,
                INTERRUPT_INT,
                0,
                0,
                PCI_BUS,
                4 << 2,
                2,
                16
            ]]
        );
    }

    #[test]
    fn isa_interrupts_map_one_to_one_on_the_low_pins() {
        let table = build(&CONFIG).unwrap();
        let isa: Vec<_> = entries_of(&table, ENTRY_IO_INTERRUPT)
            .into_iter()
            .filter(|e| e[4] == ISA_BUS)
            .map(|e| (e[5], e[7]))
            .collect();
        assert_eq!(isa, (0..16).map(|i| (i, i)).collect::<Vec<_>>());
    }

    #[test]
    fn ioapic_id_follows_the_cpu_ids() {
        let table = build(&CONFIG).unwrap();
        let ioapic = entries_of(&table, ENTRY_IOAPIC);
        assert_eq!(ioapic.len(), 1);
        assert_eq!(ioapic[0][1], 2);
        assert_eq!(
            u32::from_le_bytes(ioapic[0][4..8].try_into().unwrap()),
            0xFEC0_0000
        );
    }

    #[test]
    fn largest_table_fits_below_the_legacy_hole() {
        let table = build(&MpConfig {
            cpus: MAX_CPUS,
            ..CONFIG
        })
        .unwrap();
        assert!(layout::MPTABLE + table.len() as u64 <= layout::BASE_RAM_END);
    }

    #[test]
    fn zero_or_too_many_cpus_are_refused() {
        assert!(build(&MpConfig { cpus: 0, ..CONFIG }).is_err());
        assert!(
            build(&MpConfig {
                cpus: MAX_CPUS + 1,
                ..CONFIG
            })
            .is_err()
        );
    }
}
