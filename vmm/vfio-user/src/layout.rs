//! What the VMMDev function looks like to a vfio-user client: its regions and interrupts.
//!
//! The client (QEMU's `vfio-user-pci`, Cloud Hypervisor's `--user-device`) sees a vfio PCI
//! device with the standard region numbering:
//!
//! | Region | Index | Size | Access |
//! |---|---|---|---|
//! | BAR0 (I/O ports: request at 0, fast acknowledge at 8) | 0 | 32 | messages |
//! | BAR1 (VMMDev RAM) | 1 | 4 MiB | mmap of the device's memfd (one sparse area covering it), messages also work |
//! | BAR2–BAR5, expansion ROM, VGA | 2–6, 8 | 0 | none |
//! | PCI configuration space | 7 | 256 | messages |
//!
//! and one interrupt, INTx (index 0), eventfd-based, maskable and automasked. MSI, MSI-X, error
//! and request indices exist with count 0: the client requires the indices up to MSI-X and the
//! device has none of them.

use std::os::fd::RawFd;

use vfio_bindings::bindings::vfio::{
    VFIO_IRQ_INFO_AUTOMASKED, VFIO_IRQ_INFO_EVENTFD, VFIO_IRQ_INFO_MASKABLE,
    VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_BAR1_REGION_INDEX, VFIO_PCI_CONFIG_REGION_INDEX,
    VFIO_PCI_INTX_IRQ_INDEX, VFIO_REGION_INFO_FLAG_MMAP, VFIO_REGION_INFO_FLAG_READ,
    VFIO_REGION_INFO_FLAG_WRITE, vfio_region_info, vfio_region_sparse_mmap_area,
};
use vfio_user::{IrqInfo, ServerRegion, SparseArea};
use vmmdev_device::pci::CONFIG_SPACE_SIZE;
use vmmdev_protocol::vmmdev::{VMMDEV_IO_PORT_RANGE_SIZE, VMMDEV_RAM_SIZE};

/// Number of regions of a vfio PCI device (six BARs, ROM, config space, VGA).
pub const NUM_REGIONS: usize = 9;
/// Number of interrupt indices (INTx, MSI, MSI-X, error, request).
pub const NUM_IRQS: usize = 5;

/// Region index of BAR0, the request ports.
pub const REGION_BAR0: u32 = VFIO_PCI_BAR0_REGION_INDEX;
/// Region index of BAR1, the VMMDev RAM.
pub const REGION_BAR1: u32 = VFIO_PCI_BAR1_REGION_INDEX;
/// Region index of the PCI configuration space.
pub const REGION_CONFIG: u32 = VFIO_PCI_CONFIG_REGION_INDEX;
/// Interrupt index of INTx.
pub const IRQ_INTX: u32 = VFIO_PCI_INTX_IRQ_INDEX;

/// Size of region `index` in bytes (0 for absent regions and unknown indices).
pub fn region_size(index: u32) -> u64 {
    match index {
        REGION_BAR0 => u64::from(VMMDEV_IO_PORT_RANGE_SIZE),
        REGION_BAR1 => u64::from(VMMDEV_RAM_SIZE),
        REGION_CONFIG => CONFIG_SPACE_SIZE as u64,
        _ => 0,
    }
}

/// Short name of region `index`, for logs and summaries.
pub fn region_name(index: usize) -> &'static str {
    const NAMES: [&str; NUM_REGIONS] = [
        "bar0", "bar1", "bar2", "bar3", "bar4", "bar5", "rom", "config", "vga",
    ];
    NAMES.get(index).copied().unwrap_or("unknown")
}

/// The region table handed to the `vfio_user` server. `ram_fd` is the VMMDev RAM memfd, which
/// must stay open while the table is in use.
pub fn server_regions(ram_fd: RawFd) -> Vec<ServerRegion> {
    (0..NUM_REGIONS as u32)
        .map(|index| {
            let size = region_size(index);
            let mut flags = 0;
            if size > 0 {
                flags |= VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
            }
            let mut sparse_areas = Vec::new();
            let mut mmap_fd = None;
            if index == REGION_BAR1 {
                flags |= VFIO_REGION_INFO_FLAG_MMAP;
                sparse_areas.push(SparseArea {
                    area: vfio_region_sparse_mmap_area { offset: 0, size },
                });
                mmap_fd = Some(ram_fd);
            }
            ServerRegion {
                region_info: vfio_region_info {
                    argsz: std::mem::size_of::<vfio_region_info>() as u32,
                    flags,
                    index,
                    cap_offset: 0,
                    size,
                    offset: 0,
                },
                sparse_areas,
                mmap_fd,
            }
        })
        .collect()
}

/// The interrupt table handed to the `vfio_user` server.
pub fn irq_infos() -> Vec<IrqInfo> {
    (0..NUM_IRQS as u32)
        .map(|index| {
            if index == IRQ_INTX {
                IrqInfo {
                    index,
                    flags: VFIO_IRQ_INFO_EVENTFD
                        | VFIO_IRQ_INFO_MASKABLE
                        | VFIO_IRQ_INFO_AUTOMASKED,
                    count: 1,
                }
            } else {
                IrqInfo {
                    index,
                    flags: 0,
                    count: 0,
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_every_vfio_pci_region_in_index_order() {
        let regions = server_regions(-1);
        assert_eq!(regions.len(), NUM_REGIONS);
        for (i, region) in regions.iter().enumerate() {
            assert_eq!(region.region_info.index as usize, i);
        }
    }

    #[test]
    fn only_bar1_is_mappable_and_its_sparse_area_covers_it() {
        let regions = server_regions(42);
        for region in &regions {
            let mappable = region.region_info.flags & VFIO_REGION_INFO_FLAG_MMAP != 0;
            assert_eq!(mappable, region.region_info.index == REGION_BAR1);
        }
        let bar1 = &regions[REGION_BAR1 as usize];
        assert_eq!(bar1.mmap_fd, Some(42));
        assert_eq!(bar1.sparse_areas.len(), 1);
        assert_eq!(bar1.sparse_areas[0].area.offset, 0);
        assert_eq!(bar1.sparse_areas[0].area.size, 4 << 20);
    }

    #[test]
    fn bars_and_config_space_have_the_device_sizes() {
        assert_eq!(region_size(REGION_BAR0), 32);
        assert_eq!(region_size(REGION_BAR1), 4 << 20);
        assert_eq!(region_size(REGION_CONFIG), 256);
        assert_eq!(region_size(2), 0);
        assert_eq!(region_size(u32::MAX), 0);
    }

    #[test]
    fn intx_is_the_only_interrupt_and_is_automasked() {
        let irqs = irq_infos();
        assert_eq!(irqs.len(), NUM_IRQS);
        assert_eq!(irqs[0].count, 1);
        assert_eq!(
            irqs[0].flags,
            VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED
        );
        assert!(irqs[1..].iter().all(|irq| irq.count == 0));
    }
}
