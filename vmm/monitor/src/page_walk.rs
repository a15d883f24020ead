//! The guest's 4-level page tables walked the way the CPU walks them, for memory the monitor reads and
//! writes on the guest's behalf while completing an instruction ([`crate::xsave`]).
//!
//! `KVM_TRANSLATE` is not enough for that: it reports every mapping writable, so a write through it
//! would land in a read-only or copy-on-write page (a signal frame on a stack shared with a parent after
//! `fork`). This walk checks present, writable and user at every level (writes to read-only pages fault
//! in ring 0 too once CR0.WP is set, as Linux sets it), sets the accessed and dirty bits the CPU would,
//! and gives the page-fault error code where the access would fault.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Page-table entry bits.
const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const ACCESSED: u64 = 1 << 5;
const DIRTY: u64 = 1 << 6;
const LARGE: u64 = 1 << 7;
/// Physical-address bits of an entry and of CR3.
const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;
/// CR0.WP: supervisor writes honour read-only pages.
pub const CR0_WP: u64 = 1 << 16;
/// CR4.LA57: 5-level paging, which this walk does not do.
pub const CR4_LA57: u64 = 1 << 12;

/// Page-fault error code bits.
const FAULT_PRESENT: u32 = 1 << 0;
const FAULT_WRITE: u32 = 1 << 1;
const FAULT_USER: u32 = 1 << 2;

/// Why an access cannot be completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WalkError {
    /// The access would raise #PF with this error code (CR2 is the address).
    #[error("page fault, error code {error_code:#x}")]
    PageFault {
        /// The #PF error code.
        error_code: u32,
    },
    /// The address is not canonical: #GP.
    #[error("non-canonical address")]
    NonCanonical,
    /// A page table lies outside guest RAM, or the guest uses 5-level paging.
    #[error("page tables the monitor cannot walk")]
    Unwalkable,
}

/// The paging state an access is checked against.
#[derive(Clone, Copy, Debug)]
pub struct Paging {
    /// CR3.
    pub cr3: u64,
    /// CR0 (only WP is used).
    pub cr0: u64,
    /// CR4 (only LA57 is used).
    pub cr4: u64,
}

/// One access: a write or a read, from ring 3 or from the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// A write.
    pub write: bool,
    /// From CPL 3.
    pub user: bool,
}

/// The guest-physical address of `address` for `access`, updating accessed (and, for writes, dirty)
/// bits as the CPU does.
pub fn translate(
    mem: &GuestMemoryMmap,
    paging: Paging,
    address: u64,
    access: Access,
) -> Result<u64, WalkError> {
    if paging.cr4 & CR4_LA57 != 0 {
        return Err(WalkError::Unwalkable);
    }
    let upper = (address as i64) >> 47;
    if upper != 0 && upper != -1 {
        return Err(WalkError::NonCanonical);
    }
    let code = |present: bool| {
        let mut code = 0;
        if present {
            code |= FAULT_PRESENT;
        }
        if access.write {
            code |= FAULT_WRITE;
        }
        if access.user {
            code |= FAULT_USER;
        }
        WalkError::PageFault { error_code: code }
    };
    let mut table = paging.cr3 & ADDRESS_MASK;
    let mut writable = true;
    let mut user = true;
    for shift in [39u32, 30, 21, 12] {
        let slot = GuestAddress(table + ((address >> shift) & 0x1ff) * 8);
        let entry: u64 = mem.read_obj(slot).map_err(|_| WalkError::Unwalkable)?;
        if entry & PRESENT == 0 {
            return Err(code(false));
        }
        writable &= entry & WRITABLE != 0;
        user &= entry & USER != 0;
        let leaf = shift == 12 || (shift != 39 && entry & LARGE != 0);
        let denied = (access.user && !user)
            || (access.write && !writable && (access.user || paging.cr0 & CR0_WP != 0));
        if leaf && denied {
            return Err(code(true));
        }
        let mut updated = entry | ACCESSED;
        if leaf && access.write {
            updated |= DIRTY;
        }
        if updated != entry {
            mem.write_obj(updated, slot)
                .map_err(|_| WalkError::Unwalkable)?;
        }
        if leaf {
            let page_mask = (1u64 << shift) - 1;
            return Ok((entry & ADDRESS_MASK & !page_mask) | (address & page_mask));
        }
        table = entry & ADDRESS_MASK;
    }
    Err(WalkError::Unwalkable)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PML4: u64 = 0x1000;
    const PDPT: u64 = 0x2000;
    const PD: u64 = 0x3000;
    const PT: u64 = 0x4000;

    /// Maps 0x40_0000 (4 KiB, through PT) with `leaf_flags` and 0x20_0000 as a 2 MiB page.
    fn memory(leaf_flags: u64) -> GuestMemoryMmap {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x80_0000)]).unwrap();
        let all = PRESENT | WRITABLE | USER;
        mem.write_obj(PDPT | all, GuestAddress(PML4)).unwrap();
        mem.write_obj(PD | all, GuestAddress(PDPT)).unwrap();
        mem.write_obj(PT | all, GuestAddress(PD + 2 * 8)).unwrap();
        mem.write_obj(0x60_0000 | PRESENT | WRITABLE | LARGE, GuestAddress(PD + 8))
            .unwrap();
        mem.write_obj(0x7000 | leaf_flags, GuestAddress(PT))
            .unwrap();
        mem
    }

    fn paging() -> Paging {
        Paging {
            cr3: PML4,
            cr0: CR0_WP,
            cr4: 0,
        }
    }

    const KERNEL_WRITE: Access = Access {
        write: true,
        user: false,
    };

    #[test]
    fn small_and_large_pages_translate_and_get_accessed_and_dirty_bits() {
        let mem = memory(PRESENT | WRITABLE | USER);
        assert_eq!(
            translate(&mem, paging(), 0x40_0123, KERNEL_WRITE),
            Ok(0x7123)
        );
        let pte: u64 = mem.read_obj(GuestAddress(PT)).unwrap();
        assert_eq!(pte & (ACCESSED | DIRTY), ACCESSED | DIRTY);
        let read = Access {
            write: false,
            user: false,
        };
        assert_eq!(translate(&mem, paging(), 0x21_0000, read), Ok(0x61_0000));
        let pde: u64 = mem.read_obj(GuestAddress(PD + 8)).unwrap();
        assert_eq!(pde & (ACCESSED | DIRTY), ACCESSED);
    }

    #[test]
    fn writes_to_read_only_pages_fault_in_ring_0_under_cr0_wp() {
        let mem = memory(PRESENT | USER);
        assert_eq!(
            translate(&mem, paging(), 0x40_0000, KERNEL_WRITE),
            Err(WalkError::PageFault { error_code: 0b011 })
        );
        let no_wp = Paging { cr0: 0, ..paging() };
        assert_eq!(translate(&mem, no_wp, 0x40_0000, KERNEL_WRITE), Ok(0x7000));
    }

    #[test]
    fn missing_pages_and_kernel_pages_from_user_mode_fault() {
        let mem = memory(0);
        assert_eq!(
            translate(&mem, paging(), 0x40_0000, KERNEL_WRITE),
            Err(WalkError::PageFault { error_code: 0b010 })
        );
        let user_read = Access {
            write: false,
            user: true,
        };
        assert_eq!(
            translate(&mem, paging(), 0x20_0000, user_read),
            Err(WalkError::PageFault { error_code: 0b101 })
        );
    }

    #[test]
    fn non_canonical_and_five_level_addresses_are_refused() {
        let mem = memory(PRESENT);
        assert_eq!(
            translate(&mem, paging(), 0x0000_8000_0000_0000, KERNEL_WRITE),
            Err(WalkError::NonCanonical)
        );
        let la57 = Paging {
            cr4: CR4_LA57,
            ..paging()
        };
        assert_eq!(
            translate(&mem, la57, 0x40_0000, KERNEL_WRITE),
            Err(WalkError::Unwalkable)
        );
    }
}
