//! Guest RAM: the host mappings, their KVM memory slots and the e820 map the guest is told about.
//!
//! RAM starts at guest-physical 0. Up to 3 GiB it is one region; beyond that the 32-bit PCI hole
//! ([`layout::PCI_HOLE_START`] to 4 GiB) is skipped and the rest continues at 4 GiB. The device model gets
//! the same mappings (a `GuestMemoryMmap`), so everything it reads and writes is this RAM and nothing else.

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::layout;

/// Smallest guest RAM the monitor accepts: the kernel is placed at 16 MiB and needs room above it.
pub const MIN_RAM_MIB: u64 = 128;
/// Largest guest RAM the monitor accepts.
pub const MAX_RAM_MIB: u64 = 1 << 20;

/// Errors of creating and registering guest RAM.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The requested size is outside what the monitor supports.
    #[error("guest memory must be {MIN_RAM_MIB} MiB to {MAX_RAM_MIB} MiB, not {0} MiB")]
    Size(u64),
    /// The host could not map the memory.
    #[error("cannot map guest memory")]
    Map(#[source] vm_memory::mmap::FromRangesError),
    /// KVM refused a memory slot.
    #[error("KVM refused memory slot {slot} at {guest_address:#x}")]
    Slot {
        /// The slot number.
        slot: u32,
        /// Where it starts.
        guest_address: u64,
        /// Why.
        #[source]
        source: kvm_ioctls::Error,
    },
}

/// One e820 entry: usable RAM or reserved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    /// Start.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// `E820_RAM` (1) or `E820_RESERVED` (2).
    pub kind: u32,
}

/// e820 type of usable RAM.
pub const E820_RAM: u32 = 1;
/// e820 type of reserved memory.
pub const E820_RESERVED: u32 = 2;

/// The guest-physical ranges of `bytes` of RAM: below the PCI hole, then above 4 GiB.
pub fn ram_ranges(bytes: u64) -> Vec<(GuestAddress, usize)> {
    let low = bytes.min(layout::PCI_HOLE_START);
    let mut ranges = vec![(GuestAddress(0), low as usize)];
    if bytes > low {
        ranges.push((GuestAddress(layout::RAM_ABOVE_4G), (bytes - low) as usize));
    }
    ranges
}

/// The e820 map for `bytes` of RAM: base memory up to the MP table, extended memory from 1 MiB, and RAM
/// above 4 GiB. The MP table, the legacy hole and the PCI hole are not RAM.
pub fn e820_map(bytes: u64) -> Vec<E820Entry> {
    let low_end = bytes.min(layout::PCI_HOLE_START);
    let mut map = vec![
        E820Entry {
            addr: 0,
            size: layout::MPTABLE,
            kind: E820_RAM,
        },
        E820Entry {
            addr: layout::MPTABLE,
            size: layout::HIGH_MEMORY - layout::MPTABLE,
            kind: E820_RESERVED,
        },
        E820Entry {
            addr: layout::HIGH_MEMORY,
            size: low_end - layout::HIGH_MEMORY,
            kind: E820_RAM,
        },
    ];
    if bytes > low_end {
        map.push(E820Entry {
            addr: layout::RAM_ABOVE_4G,
            size: bytes - low_end,
            kind: E820_RAM,
        });
    }
    map
}

/// Creates guest RAM of `mib` MiB (anonymous, private mappings).
pub fn create_ram(mib: u64) -> Result<GuestMemoryMmap, MemoryError> {
    if !(MIN_RAM_MIB..=MAX_RAM_MIB).contains(&mib) {
        return Err(MemoryError::Size(mib));
    }
    GuestMemoryMmap::from_ranges(&ram_ranges(mib << 20)).map_err(MemoryError::Map)
}

/// Registers every region of `ram` with KVM, as slots `0..n`; returns the next free slot.
pub fn register_ram(vm: &VmFd, ram: &GuestMemoryMmap) -> Result<u32, MemoryError> {
    let mut slot = 0;
    for region in ram.iter() {
        let guest_address = region.start_addr().0;
        let userspace_addr = region.as_ptr() as u64;
        // SAFETY: the mapping belongs to `ram`, which the monitor keeps alive for as long as the VM
        // exists (the VM owns a clone of it), and it is `len()` bytes long. KVM may write to it at any
        // time; the monitor and the device access it only through vm-memory's volatile accessors.
        unsafe {
            vm.set_user_memory_region(kvm_userspace_memory_region {
                slot,
                flags: 0,
                guest_phys_addr: guest_address,
                memory_size: region.len(),
                userspace_addr,
            })
        }
        .map_err(|source| MemoryError::Slot {
            slot,
            guest_address,
            source,
        })?;
        slot += 1;
    }
    Ok(slot)
}

/// Bytes of `ram` resident in host memory right now (for the monitor's own-RSS figure).
pub fn resident_bytes(ram: &GuestMemoryMmap) -> u64 {
    // SAFETY: sysconf has no memory effects.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let mut resident = 0u64;
    for region in ram.iter() {
        let pages = usize::try_from(region.len().div_ceil(page)).unwrap_or(0);
        let mut vector = vec![0u8; pages];
        // SAFETY: the range is a live mapping owned by `ram` and `vector` has one byte per page of it,
        // as mincore requires; mincore only writes into `vector`.
        let rc = unsafe {
            libc::mincore(
                region.as_ptr().cast(),
                region.len() as usize,
                vector.as_mut_ptr(),
            )
        };
        if rc == 0 {
            resident += vector.iter().filter(|&&b| b & 1 != 0).count() as u64 * page;
        }
    }
    resident
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_ram_is_one_range_from_zero() {
        assert_eq!(ram_ranges(512 << 20), [(GuestAddress(0), 512 << 20)]);
    }

    #[test]
    fn ram_beyond_three_gib_continues_above_four_gib() {
        let ranges = ram_ranges(4 << 30);
        assert_eq!(
            ranges,
            [(GuestAddress(0), 3 << 30), (GuestAddress(1 << 32), 1 << 30)]
        );
    }

    #[test]
    fn e820_excludes_the_mptable_and_the_legacy_hole() {
        let map = e820_map(256 << 20);
        assert_eq!(
            map[0],
            E820Entry {
                addr: 0,
                size: 0x9fc00,
                kind: E820_RAM
            }
        );
        assert_eq!(map[1].kind, E820_RESERVED);
        assert_eq!(map[2].addr, 1 << 20);
        assert_eq!(map[2].addr + map[2].size, 256 << 20);
        assert_eq!(map.len(), 3);
    }

    #[test]
    fn e820_lists_ram_above_four_gib() {
        let map = e820_map(5 << 30);
        assert_eq!(
            map.last().map(|e| (e.addr, e.size)),
            Some((1 << 32, 2 << 30))
        );
    }

    #[test]
    fn too_little_memory_is_refused() {
        assert!(matches!(create_ram(16), Err(MemoryError::Size(16))));
    }
}
