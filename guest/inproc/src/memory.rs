//! Guest RAM and a page allocator for requests and buffers.
//!
//! The Linux driver allocates every request with `__get_free_pages(GFP_DMA32)`: page aligned,
//! physically contiguous, below 4 GiB, and fills it with 0xAA before setting the fields it
//! cares about. Bounce buffers come from `kvmalloc` and may be scattered over unrelated pages.
//! This allocator reproduces both: [`PageAllocator::alloc_contiguous`] for requests and
//! [`PageAllocator::alloc_scattered`] for buffers (pages deliberately not adjacent).

use std::sync::Arc;

use parking_lot::Mutex;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Size of a guest page.
pub const PAGE_SIZE: u64 = 4096;

/// Errors of guest memory management.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MemoryError {
    /// Not enough free pages.
    #[error("out of guest pages ({0} requested)")]
    OutOfPages(usize),
    /// Creating the guest memory failed.
    #[error("cannot create guest memory: {0}")]
    Create(String),
    /// An access outside guest RAM.
    #[error("guest memory access at {0:#x} failed")]
    Access(u64),
}

/// Free-page bookkeeping over one guest RAM region starting at GPA 0.
#[derive(Debug)]
pub struct PageAllocator {
    free: Mutex<Vec<bool>>,
}

impl PageAllocator {
    /// Manages `pages` pages; page 0 is never handed out (GPA 0 means "none" on the wire).
    pub fn new(pages: usize) -> Self {
        let mut free = vec![true; pages];
        if let Some(first) = free.first_mut() {
            *first = false;
        }
        PageAllocator {
            free: Mutex::new(free),
        }
    }

    /// `count` physically contiguous pages; returns the first page's GPA.
    pub fn alloc_contiguous(&self, count: usize) -> Result<u64, MemoryError> {
        let mut free = self.free.lock();
        let count = count.max(1);
        let mut run = 0;
        for index in 0..free.len() {
            run = if free[index] { run + 1 } else { 0 };
            if run == count {
                let start = index + 1 - count;
                free[start..=index].iter_mut().for_each(|f| *f = false);
                return Ok(start as u64 * PAGE_SIZE);
            }
        }
        Err(MemoryError::OutOfPages(count))
    }

    /// `count` pages that are not adjacent to each other (every other free page, from the top
    /// of memory down), like a vmalloc'ed buffer.
    pub fn alloc_scattered(&self, count: usize) -> Result<Vec<u64>, MemoryError> {
        let mut free = self.free.lock();
        let mut pages = Vec::with_capacity(count);
        let mut index = free.len();
        while pages.len() < count && index >= 2 {
            index -= 2;
            if free[index] && index > 0 {
                free[index] = false;
                pages.push(index as u64 * PAGE_SIZE);
            }
        }
        if pages.len() < count {
            for &page in &pages {
                free[(page / PAGE_SIZE) as usize] = true;
            }
            return Err(MemoryError::OutOfPages(count));
        }
        Ok(pages)
    }

    /// Returns pages.
    pub fn free(&self, pages: impl IntoIterator<Item = u64>) {
        let mut free = self.free.lock();
        for page in pages {
            if let Some(slot) = free.get_mut((page / PAGE_SIZE) as usize) {
                *slot = true;
            }
        }
    }

    /// Returns `count` contiguous pages starting at `start`.
    pub fn free_contiguous(&self, start: u64, count: usize) {
        self.free((0..count.max(1) as u64).map(|i| start + i * PAGE_SIZE));
    }
}

/// Guest RAM of the in-process guest.
#[derive(Debug, Clone)]
pub struct GuestRam {
    mem: Arc<GuestMemoryMmap>,
    pages: Arc<PageAllocator>,
}

impl GuestRam {
    /// `size` bytes of anonymous guest RAM at GPA 0.
    pub fn new(size: usize) -> Result<Self, MemoryError> {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), size)])
            .map_err(|e| MemoryError::Create(e.to_string()))?;
        Ok(GuestRam {
            mem: Arc::new(mem),
            pages: Arc::new(PageAllocator::new(size / PAGE_SIZE as usize)),
        })
    }

    /// The memory, for the device side.
    pub fn memory(&self) -> &Arc<GuestMemoryMmap> {
        &self.mem
    }

    /// The page allocator.
    pub fn pages(&self) -> &PageAllocator {
        &self.pages
    }

    /// Writes bytes at `gpa`.
    pub fn write(&self, gpa: u64, data: &[u8]) -> Result<(), MemoryError> {
        self.mem
            .write_slice(data, GuestAddress(gpa))
            .map_err(|_| MemoryError::Access(gpa))
    }

    /// Reads bytes at `gpa`.
    pub fn read(&self, gpa: u64, data: &mut [u8]) -> Result<(), MemoryError> {
        self.mem
            .read_slice(data, GuestAddress(gpa))
            .map_err(|_| MemoryError::Access(gpa))
    }

    /// Reads a little-endian u32 at `gpa` (0 if unreadable).
    pub fn read_u32(&self, gpa: u64) -> u32 {
        let mut b = [0u8; 4];
        let _ = self.read(gpa, &mut b);
        u32::from_le_bytes(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_zero_is_never_allocated() {
        let pages = PageAllocator::new(4);
        assert_eq!(pages.alloc_contiguous(3), Ok(PAGE_SIZE));
        assert_eq!(pages.alloc_contiguous(1), Err(MemoryError::OutOfPages(1)));
    }

    #[test]
    fn scattered_pages_are_not_adjacent() {
        let pages = PageAllocator::new(64);
        let got = pages.alloc_scattered(4).unwrap();
        for pair in got.windows(2) {
            assert!(pair[0].abs_diff(pair[1]) > PAGE_SIZE);
        }
        pages.free(got.clone());
        assert_eq!(pages.alloc_scattered(4).unwrap(), got);
    }
}
