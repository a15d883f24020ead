//! The bytes a process has allocated and not freed, for tests that a long session leaks nothing.
//!
//! A VMM serves one guest for months, so memory that a call, a client or a wait leaves behind is a
//! defect even when each loss is small. Resident size cannot show it: the C allocator keeps freed
//! memory, and how much depends on its thresholds and threads. A no-leak test installs
//! [`CountingAllocator`] as its binary's global allocator, repeats a round of work until bounded
//! structures have reached their size, and then checks that many more rounds leave [`live_bytes`]
//! where it was. The count is process-wide, so such a binary holds a single test.
//!
//! ```
//! use vmmdev_live_heap::{CountingAllocator, live_bytes};
//!
//! #[global_allocator]
//! static ALLOCATOR: CountingAllocator = CountingAllocator;
//!
//! fn main() {
//!     let before = live_bytes();
//!     let kept = vec![0u8; 4096];
//!     assert!(live_bytes() - before >= 4096);
//!     drop(kept);
//!     assert_eq!(live_bytes(), before);
//! }
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

/// The system allocator, counting the bytes currently allocated through it.
#[derive(Clone, Copy, Debug, Default)]
pub struct CountingAllocator;

/// Bytes allocated through [`CountingAllocator`] and not yet freed (0 where it is not installed).
pub fn live_bytes() -> isize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

/// Runs `round` `warm_up` times, then `measured` times more, and returns how many bytes the measured
/// rounds left allocated (negative if they freed more than they kept).
pub fn growth_over_rounds(warm_up: usize, measured: usize, mut round: impl FnMut(usize)) -> isize {
    for index in 0..warm_up {
        round(index);
    }
    let baseline = live_bytes();
    for index in warm_up..warm_up + measured {
        round(index);
    }
    live_bytes() - baseline
}

fn count(bytes: usize) -> isize {
    isize::try_from(bytes).unwrap_or(isize::MAX)
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so `System`'s
// guarantees hold; the counter has no effect on the memory handed out.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as received; the caller upholds `alloc`'s contract.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            LIVE_BYTES.fetch_add(count(layout.size()), Ordering::Relaxed);
        }
        pointer
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as received; the caller upholds `alloc_zeroed`'s contract.
        let pointer = unsafe { System.alloc_zeroed(layout) };
        if !pointer.is_null() {
            LIVE_BYTES.fetch_add(count(layout.size()), Ordering::Relaxed);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: forwarded as received; `pointer` came from this allocator with `layout`.
        unsafe { System.dealloc(pointer, layout) };
        LIVE_BYTES.fetch_sub(count(layout.size()), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as received; the caller upholds `realloc`'s contract.
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            LIVE_BYTES.fetch_add(count(new_size) - count(layout.size()), Ordering::Relaxed);
        }
        moved
    }
}
