//! The guest memory map, built from the client's DMA_MAP and DMA_UNMAP messages.
//!
//! Under vfio-user the device learns where guest RAM is only from the client: each DMA_MAP names
//! a guest-physical range and, for RAM the client can share, a file descriptor and offset. The
//! firmware and the kernel change the map many times during boot, so [`DmaMemory`] keeps a table
//! of the current mappings and, after every change, builds a new `GuestMemoryMmap` over the
//! mapped files and swaps it into the device's `GuestMemoryAtomic` in one step. A request that is
//! being processed, or a completion arriving from a service thread, holds the snapshot it
//! started with, so an unmap never pulls memory from under it: the old mapping lives until the
//! last snapshot holding it is dropped.
//!
//! Only ranges the device can both read and write enter the guest memory: mappings without a
//! file descriptor (ROM the client keeps private) and read-only mappings are recorded, so that
//! overlaps and unmaps stay exact, but the device sees no memory there. A mapping must lie inside
//! its file (a shorter file would fault on access), must not overlap another, and must be
//! page-aligned; the number of mappings is bounded. A client that shrinks a file after mapping
//! it can still make a device access fault: QEMU's `memory-backend-memfd` seals its memfd against
//! shrinking (the default `seal=on`), which closes that door for the intended client.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::sync::Arc;

use parking_lot::Mutex;
use vfio_user::{DmaMapFlags, DmaUnmapFlags};
use vm_memory::mmap::MmapRegionError;
use vm_memory::{
    FileOffset, GuestAddress, GuestMemoryAtomic, GuestMemoryMmap, GuestRegionMmap, MmapRegion,
};

/// Default bound on simultaneous mappings (a PC guest uses a handful).
pub const DEFAULT_MAX_MAPPINGS: usize = 1024;

/// Why a DMA map or unmap was refused. The map is unchanged after any error.
#[derive(Debug, thiserror::Error)]
pub enum DmaError {
    /// A zero-sized range.
    #[error("DMA range at {address:#x} has size 0")]
    ZeroSize {
        /// Guest-physical start.
        address: u64,
    },
    /// Start, size or file offset not aligned to the page size.
    #[error("DMA range {address:#x}+{size:#x} (file offset {offset:#x}) is not page aligned")]
    Misaligned {
        /// Guest-physical start.
        address: u64,
        /// Size in bytes.
        size: u64,
        /// Offset in the file.
        offset: u64,
    },
    /// The range or its file window wraps around 2^64 or does not fit the address space.
    #[error("DMA range {address:#x}+{size:#x} (file offset {offset:#x}) overflows")]
    Overflow {
        /// Guest-physical start.
        address: u64,
        /// Size in bytes.
        size: u64,
        /// Offset in the file.
        offset: u64,
    },
    /// Unknown flag bits.
    #[error("DMA flags {0:#x} include unknown bits")]
    UnknownFlags(u32),
    /// The range overlaps an existing mapping.
    #[error(
        "DMA range {address:#x}+{size:#x} overlaps the mapping {existing:#x}+{existing_size:#x}"
    )]
    Overlap {
        /// Guest-physical start.
        address: u64,
        /// Size in bytes.
        size: u64,
        /// Start of the existing mapping.
        existing: u64,
        /// Size of the existing mapping.
        existing_size: u64,
    },
    /// The table is full.
    #[error("too many DMA mappings (limit {0})")]
    TooManyMappings(usize),
    /// The file descriptor could not be inspected.
    #[error("cannot inspect the DMA file descriptor")]
    Inspect(#[source] io::Error),
    /// The file ends before the mapping does.
    #[error("DMA file of {file_size:#x} bytes ends before the mapping end {end:#x}")]
    FileTooSmall {
        /// Size of the file.
        file_size: u64,
        /// Offset in the file where the mapping ends.
        end: u64,
    },
    /// mmap failed.
    #[error("cannot map the DMA file")]
    Mmap(#[source] MmapRegionError),
    /// Building the memory map failed (cannot happen for a consistent table).
    #[error("cannot build the guest memory map: {0}")]
    Rebuild(String),
    /// An unmap named no mapping.
    #[error("no DMA mapping inside {address:#x}+{size:#x}")]
    NotMapped {
        /// Guest-physical start.
        address: u64,
        /// Size in bytes.
        size: u64,
    },
    /// An unmap would cut a mapping in two.
    #[error(
        "DMA unmap {address:#x}+{size:#x} covers only part of the mapping {existing:#x}+{existing_size:#x}"
    )]
    PartialUnmap {
        /// Guest-physical start.
        address: u64,
        /// Size in bytes.
        size: u64,
        /// Start of the mapping cut.
        existing: u64,
        /// Size of the mapping cut.
        existing_size: u64,
    },
    /// Dirty page tracking was asked for.
    #[error("dirty page tracking is not supported")]
    DirtyPagesUnsupported,
}

impl DmaError {
    /// The errno reported to the client.
    pub fn errno(&self) -> i32 {
        match self {
            DmaError::Overlap { .. } => libc::EEXIST,
            DmaError::TooManyMappings(_) => libc::ENOSPC,
            DmaError::Inspect(error) => error.raw_os_error().unwrap_or(libc::EIO),
            DmaError::Mmap(_) | DmaError::Rebuild(_) => libc::ENOMEM,
            DmaError::NotMapped { .. } => libc::ENOENT,
            DmaError::DirtyPagesUnsupported => libc::ENOTSUP,
            DmaError::ZeroSize { .. }
            | DmaError::Misaligned { .. }
            | DmaError::Overflow { .. }
            | DmaError::UnknownFlags(_)
            | DmaError::FileTooSmall { .. }
            | DmaError::PartialUnmap { .. } => libc::EINVAL,
        }
    }
}

/// One entry of the table, as reported by [`DmaMemory::mappings`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaMapping {
    /// Guest-physical start.
    pub address: u64,
    /// Size in bytes.
    pub size: u64,
    /// Whether the device can access it (it had a file descriptor and read-write access).
    pub accessible: bool,
}

struct Entry {
    size: u64,
    region: Option<Arc<GuestRegionMmap>>,
}

/// The DMA mapping table and the guest memory built from it.
#[derive(Debug)]
pub struct DmaMemory {
    memory: GuestMemoryAtomic<GuestMemoryMmap>,
    table: Mutex<Table>,
    max_mappings: usize,
    page_size: u64,
}

#[derive(Default)]
struct Table(BTreeMap<u64, Entry>);

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(
                self.0
                    .iter()
                    .map(|(a, e)| (a, (e.size, e.region.is_some()))),
            )
            .finish()
    }
}

impl DmaMemory {
    /// An empty map that publishes into `memory` (the device's guest memory), with at most
    /// `max_mappings` mappings.
    pub fn new(memory: GuestMemoryAtomic<GuestMemoryMmap>, max_mappings: usize) -> Self {
        DmaMemory {
            memory,
            table: Mutex::new(Table::default()),
            max_mappings,
            page_size: host_page_size(),
        }
    }

    /// Adds a mapping. Returns whether the device can access it (see the module docs).
    pub fn map(
        &self,
        flags: DmaMapFlags,
        offset: u64,
        address: u64,
        size: u64,
        file: Option<File>,
    ) -> Result<bool, DmaError> {
        let unknown = flags.bits() & !DmaMapFlags::READ_WRITE.bits();
        if unknown != 0 {
            return Err(DmaError::UnknownFlags(flags.bits()));
        }
        self.check_range(address, size, offset)?;
        let mut table = self.table.lock();
        if table.0.len() >= self.max_mappings {
            return Err(DmaError::TooManyMappings(self.max_mappings));
        }
        if let Some((&existing, entry)) = table.0.range(..address + size).next_back() {
            if existing + entry.size > address {
                return Err(DmaError::Overlap {
                    address,
                    size,
                    existing,
                    existing_size: entry.size,
                });
            }
        }
        let region = match file {
            Some(file) if flags.contains(DmaMapFlags::READ_WRITE) => {
                Some(Arc::new(map_file(file, offset, address, size)?))
            }
            _ => None,
        };
        let accessible = region.is_some();
        table.0.insert(address, Entry { size, region });
        if accessible {
            if let Err(error) = self.publish(&table) {
                table.0.remove(&address);
                return Err(error);
            }
        }
        Ok(accessible)
    }

    /// Removes the mappings inside `address..address + size`, or all of them with
    /// `UNMAP_ALL`. Returns how many were removed.
    pub fn unmap(&self, flags: DmaUnmapFlags, address: u64, size: u64) -> Result<usize, DmaError> {
        if flags.contains(DmaUnmapFlags::GET_DIRTY_PAGE_INFO) {
            return Err(DmaError::DirtyPagesUnsupported);
        }
        if flags.bits() & !DmaUnmapFlags::UNMAP_ALL.bits() != 0 {
            return Err(DmaError::UnknownFlags(flags.bits()));
        }
        if flags.contains(DmaUnmapFlags::UNMAP_ALL) {
            return Ok(self.clear());
        }
        if size == 0 {
            return Err(DmaError::ZeroSize { address });
        }
        let end = address.checked_add(size).ok_or(DmaError::Overflow {
            address,
            size,
            offset: 0,
        })?;
        let mut table = self.table.lock();
        let mut doomed = Vec::new();
        let first = table
            .0
            .range(..=address)
            .next_back()
            .map_or(address, |(&start, _)| start);
        for (&start, entry) in table.0.range(first..end) {
            let entry_end = start + entry.size;
            if entry_end <= address {
                continue;
            }
            if start < address || entry_end > end {
                return Err(DmaError::PartialUnmap {
                    address,
                    size,
                    existing: start,
                    existing_size: entry.size,
                });
            }
            doomed.push(start);
        }
        if doomed.is_empty() {
            return Err(DmaError::NotMapped { address, size });
        }
        let removed: Vec<Entry> = doomed
            .iter()
            .filter_map(|start| table.0.remove(start))
            .collect();
        if removed.iter().any(|entry| entry.region.is_some()) {
            // Removing regions from a consistent table always yields a consistent table.
            if let Err(error) = self.publish(&table) {
                log::error!("guest memory map not updated after an unmap: {error}");
            }
        }
        Ok(removed.len())
    }

    /// Removes every mapping (client gone, UNMAP_ALL). Returns how many there were.
    pub fn clear(&self) -> usize {
        let mut table = self.table.lock();
        let count = table.0.len();
        table.0.clear();
        if let Err(error) = self.publish(&table) {
            log::error!("guest memory map not cleared: {error}");
        }
        count
    }

    /// The current mappings, by address.
    pub fn mappings(&self) -> Vec<DmaMapping> {
        self.table
            .lock()
            .0
            .iter()
            .map(|(&address, entry)| DmaMapping {
                address,
                size: entry.size,
                accessible: entry.region.is_some(),
            })
            .collect()
    }

    fn check_range(&self, address: u64, size: u64, offset: u64) -> Result<(), DmaError> {
        if size == 0 {
            return Err(DmaError::ZeroSize { address });
        }
        let mask = self.page_size - 1;
        if (address | size | offset) & mask != 0 {
            return Err(DmaError::Misaligned {
                address,
                size,
                offset,
            });
        }
        let fits = address.checked_add(size).is_some()
            && offset.checked_add(size).is_some()
            && usize::try_from(size).is_ok()
            && i64::try_from(offset).is_ok();
        if !fits {
            return Err(DmaError::Overflow {
                address,
                size,
                offset,
            });
        }
        Ok(())
    }

    /// Builds the guest memory from the accessible entries and swaps it in.
    fn publish(&self, table: &Table) -> Result<(), DmaError> {
        let regions: Vec<Arc<GuestRegionMmap>> =
            table.0.values().filter_map(|e| e.region.clone()).collect();
        let map = if regions.is_empty() {
            GuestMemoryMmap::new()
        } else {
            GuestMemoryMmap::from_arc_regions(regions)
                .map_err(|error| DmaError::Rebuild(error.to_string()))?
        };
        let guard = self
            .memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.replace(map);
        Ok(())
    }
}

/// Maps `size` bytes of `file` from `offset`, shared and read-write, at guest address `address`.
fn map_file(file: File, offset: u64, address: u64, size: u64) -> Result<GuestRegionMmap, DmaError> {
    let file_size = file.metadata().map_err(DmaError::Inspect)?.len();
    let end = offset + size;
    if file_size < end {
        return Err(DmaError::FileTooSmall { file_size, end });
    }
    let overflow = DmaError::Overflow {
        address,
        size,
        offset,
    };
    let len = usize::try_from(size).map_err(|_| DmaError::Overflow {
        address,
        size,
        offset,
    })?;
    let mapping = MmapRegion::build(
        Some(FileOffset::new(file, offset)),
        len,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_SHARED | libc::MAP_NORESERVE,
    )
    .map_err(DmaError::Mmap)?;
    GuestRegionMmap::new(mapping, GuestAddress(address)).ok_or(overflow)
}

fn host_page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size)
        .ok()
        .filter(|s| s.is_power_of_two())
        .unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::FromRawFd;
    use vm_memory::{Bytes, GuestAddressSpace, GuestMemoryBackend};

    const PAGE: u64 = 4096;

    fn memfd(size: u64) -> File {
        let name = std::ffi::CString::new("dma-test").unwrap();
        // SAFETY: a valid name and flags.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: fresh descriptor owned by nothing else.
        let file = unsafe { File::from_raw_fd(fd) };
        file.set_len(size).unwrap();
        file
    }

    fn dma() -> (DmaMemory, GuestMemoryAtomic<GuestMemoryMmap>) {
        let memory = GuestMemoryAtomic::new(GuestMemoryMmap::new());
        (DmaMemory::new(memory.clone(), 8), memory)
    }

    fn rw() -> DmaMapFlags {
        DmaMapFlags::READ_WRITE
    }

    #[test]
    fn mapped_file_becomes_guest_memory_at_its_address() {
        let (dma, memory) = dma();
        let file = memfd(4 * PAGE);
        use std::os::unix::fs::FileExt;
        file.write_all_at(b"from the client", PAGE).unwrap();

        assert!(
            dma.map(rw(), PAGE, 0x10_0000, 2 * PAGE, Some(file))
                .unwrap()
        );

        let mut buf = [0u8; 15];
        memory
            .memory()
            .read_slice(&mut buf, GuestAddress(0x10_0000))
            .unwrap();
        assert_eq!(&buf, b"from the client");
    }

    #[test]
    fn map_without_fd_is_recorded_but_not_accessible() {
        let (dma, memory) = dma();
        assert!(!dma.map(DmaMapFlags::READ, 0, 0xC0000, PAGE, None).unwrap());
        assert_eq!(memory.memory().num_regions(), 0);
        assert_eq!(
            dma.mappings(),
            [DmaMapping {
                address: 0xC0000,
                size: PAGE,
                accessible: false
            }]
        );
    }

    #[test]
    fn read_only_map_with_fd_is_not_accessible() {
        let (dma, memory) = dma();
        assert!(
            !dma.map(DmaMapFlags::READ, 0, 0, PAGE, Some(memfd(PAGE)))
                .unwrap()
        );
        assert_eq!(memory.memory().num_regions(), 0);
    }

    #[test]
    fn overlapping_map_is_refused_and_leaves_the_map_unchanged() {
        let (dma, memory) = dma();
        dma.map(rw(), 0, 0x1000, 2 * PAGE, Some(memfd(2 * PAGE)))
            .unwrap();

        let error = dma
            .map(rw(), 0, 0x2000, PAGE, Some(memfd(PAGE)))
            .unwrap_err();

        assert!(matches!(
            error,
            DmaError::Overlap {
                existing: 0x1000,
                ..
            }
        ));
        assert_eq!(error.errno(), libc::EEXIST);
        assert_eq!(dma.mappings().len(), 1);
        assert_eq!(memory.memory().num_regions(), 1);
    }

    #[test]
    fn map_overlapping_an_fd_less_mapping_is_refused() {
        let (dma, _) = dma();
        dma.map(DmaMapFlags::READ, 0, 0, 4 * PAGE, None).unwrap();
        let error = dma
            .map(rw(), 0, 3 * PAGE, PAGE, Some(memfd(PAGE)))
            .unwrap_err();
        assert!(matches!(error, DmaError::Overlap { .. }));
    }

    #[test]
    fn adjacent_maps_are_both_accepted() {
        let (dma, memory) = dma();
        dma.map(rw(), 0, 0, PAGE, Some(memfd(PAGE))).unwrap();
        dma.map(rw(), 0, PAGE, PAGE, Some(memfd(PAGE))).unwrap();
        assert_eq!(memory.memory().num_regions(), 2);
    }

    #[test]
    fn map_beyond_the_end_of_its_file_is_refused() {
        let (dma, _) = dma();
        let error = dma
            .map(rw(), PAGE, 0, 2 * PAGE, Some(memfd(2 * PAGE)))
            .unwrap_err();
        assert!(matches!(error, DmaError::FileTooSmall { .. }));
        assert!(dma.mappings().is_empty());
    }

    #[test]
    fn misaligned_zero_and_wrapping_ranges_are_refused() {
        let (dma, _) = dma();
        for (offset, address, size) in [
            (0, 0x800, PAGE),
            (0x10, 0, PAGE),
            (0, 0, 100),
            (0, 0, 0),
            (0, u64::MAX - PAGE + 1, 2 * PAGE),
            (u64::MAX - PAGE + 1, 0, 2 * PAGE),
        ] {
            let error = dma
                .map(rw(), offset, address, size, Some(memfd(PAGE)))
                .unwrap_err();
            assert_eq!(error.errno(), libc::EINVAL, "{error}");
        }
        assert!(dma.mappings().is_empty());
    }

    #[test]
    fn unknown_map_flags_are_refused() {
        let (dma, _) = dma();
        let error = dma
            .map(DmaMapFlags::from_bits_retain(0x8), 0, 0, PAGE, None)
            .unwrap_err();
        assert!(matches!(error, DmaError::UnknownFlags(8)));
    }

    #[test]
    fn the_number_of_mappings_is_bounded() {
        let (dma, _) = dma();
        for i in 0..8 {
            dma.map(DmaMapFlags::READ, 0, i * PAGE, PAGE, None).unwrap();
        }
        let error = dma
            .map(DmaMapFlags::READ, 0, 8 * PAGE, PAGE, None)
            .unwrap_err();
        assert!(matches!(error, DmaError::TooManyMappings(8)));
    }

    #[test]
    fn unmap_removes_the_memory_but_an_old_snapshot_stays_usable() {
        let (dma, memory) = dma();
        dma.map(rw(), 0, 0, PAGE, Some(memfd(PAGE))).unwrap();
        let snapshot = memory.memory().into_inner();

        assert_eq!(dma.unmap(DmaUnmapFlags::empty(), 0, PAGE).unwrap(), 1);

        assert_eq!(memory.memory().num_regions(), 0);
        snapshot.write_obj(0xABCDu32, GuestAddress(0x10)).unwrap();
        assert_eq!(
            snapshot.read_obj::<u32>(GuestAddress(0x10)).unwrap(),
            0xABCD
        );
    }

    #[test]
    fn unmap_of_a_covering_range_removes_every_mapping_inside() {
        let (dma, _) = dma();
        dma.map(DmaMapFlags::READ, 0, 0, PAGE, None).unwrap();
        dma.map(rw(), 0, 2 * PAGE, PAGE, Some(memfd(PAGE))).unwrap();
        dma.map(rw(), 0, 8 * PAGE, PAGE, Some(memfd(PAGE))).unwrap();

        assert_eq!(dma.unmap(DmaUnmapFlags::empty(), 0, 4 * PAGE).unwrap(), 2);

        assert_eq!(dma.mappings().len(), 1);
    }

    #[test]
    fn unmap_of_part_of_a_mapping_is_refused() {
        let (dma, _) = dma();
        dma.map(rw(), 0, 0, 4 * PAGE, Some(memfd(4 * PAGE)))
            .unwrap();
        let error = dma.unmap(DmaUnmapFlags::empty(), PAGE, PAGE).unwrap_err();
        assert!(matches!(error, DmaError::PartialUnmap { .. }));
        assert_eq!(dma.mappings().len(), 1);
    }

    #[test]
    fn unmap_of_nothing_is_not_found() {
        let (dma, _) = dma();
        let error = dma.unmap(DmaUnmapFlags::empty(), 0, PAGE).unwrap_err();
        assert_eq!(error.errno(), libc::ENOENT);
    }

    #[test]
    fn unmap_all_empties_the_table() {
        let (dma, memory) = dma();
        dma.map(rw(), 0, 0, PAGE, Some(memfd(PAGE))).unwrap();
        dma.map(DmaMapFlags::READ, 0, PAGE, PAGE, None).unwrap();
        assert_eq!(dma.unmap(DmaUnmapFlags::UNMAP_ALL, 0, 0).unwrap(), 2);
        assert!(dma.mappings().is_empty());
        assert_eq!(memory.memory().num_regions(), 0);
    }

    #[test]
    fn dirty_page_unmap_is_unsupported() {
        let (dma, _) = dma();
        let error = dma
            .unmap(DmaUnmapFlags::GET_DIRTY_PAGE_INFO, 0, PAGE)
            .unwrap_err();
        assert_eq!(error.errno(), libc::ENOTSUP);
    }
}
