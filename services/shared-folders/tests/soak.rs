//! No leak under a long session: the same round of shared-folder work, repeated, must leave the live
//! heap where the first rounds left it.
//!
//! A VMM serves one guest for months, so memory that a call, a handle or a client leaves behind is a
//! defect even when each loss is small. This binary counts the bytes the process has allocated and not
//! freed (a counting global allocator, so it holds a single test), runs warm-up rounds until the
//! bounded structures (handle tables, caches) have reached their size, then many more rounds, and
//! compares. Resident size is not used: the C allocator keeps freed memory, which says nothing about
//! leaks.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use common::*;
use crossbeam_channel::bounded;
use vmmdev_protocol::services::shared_folders::{FsObjInfo, Function};
use zerocopy::FromZeros;

/// The system allocator, counting the bytes currently allocated.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so `System`'s
// guarantees hold; the counter has no effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as received; the caller upholds `alloc`'s contract.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        pointer
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as received; the caller upholds `alloc_zeroed`'s contract.
        let pointer = unsafe { System.alloc_zeroed(layout) };
        if !pointer.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: forwarded as received; `pointer` came from this allocator with `layout`.
        unsafe { System.dealloc(pointer, layout) };
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as received; the caller upholds `realloc`'s contract.
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            LIVE_BYTES.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Rounds run before the baseline is taken.
const WARM_UP_ROUNDS: usize = 5;
/// Rounds run after it.
const MEASURED_ROUNDS: usize = 40;
/// Growth allowed over the measured rounds: allocator-internal and thread-local noise, far below one
/// byte per call (each round makes several hundred calls).
const ALLOWED_GROWTH: isize = 1024;
/// Entries of the directory listed in every round.
const DIRECTORY_ENTRIES: usize = 600;

fn live_bytes() -> isize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

/// One round of what a vboxsf guest does all day: lookups, reads and writes, a large listing,
/// create/rename/unlink, metadata, symlinks, volume information, and a client of its own that
/// leaves handles open and disconnects (the service must free what the client held).
fn round(tree: &Tree, guest: &Guest, index: usize) {
    let payload = vec![index as u8; 64 * 1024];
    for i in 0..20 {
        let (status, _, _) = guest.stat(&format!("/big/entry-{i:04}"));
        assert_eq!(status, 0, "stat");
        let (status, _, _) = guest.stat("/missing/nothing");
        assert_eq!(
            status, 0,
            "stat of a missing path is a result, not a failure"
        );
    }

    let handle = guest.creat("/work.bin", 0o644);
    let (status, written, _) = guest.write(handle, 0, &payload);
    assert_eq!((status, written as usize), (0, payload.len()), "write");
    for offset in (0..payload.len()).step_by(4096) {
        let (status, bytes) = guest.read(handle, offset as u64, 4096);
        assert_eq!((status, bytes.len()), (0, 4096), "read");
    }
    let (status, size, _) = guest.information(handle, 0x8, &FsObjInfo::new_zeroed());
    assert_eq!(status, 0, "information");
    assert_ne!(size, 0, "information returns the object's information");
    assert_eq!(guest.close(handle), 0, "close");

    assert_eq!(
        guest.list_dir("/big").len(),
        DIRECTORY_ENTRIES + 2,
        "listing"
    );

    let (status, _) = guest.mkdir("/scratch", 0o755);
    assert_eq!(status, 0, "mkdir");
    assert_eq!(
        guest.rename("/work.bin", "/scratch/moved.bin", 1),
        0,
        "rename"
    );
    let (status, _) = guest.symlink("/scratch/link", "moved.bin");
    assert_eq!(status, 0, "symlink");
    let (status, target) = guest.readlink("/scratch/link");
    assert_eq!((status, target.as_slice()), (0, b"moved.bin".as_slice()));
    assert_eq!(guest.remove("/scratch/link", 0x5), 0, "remove the link");
    assert_eq!(guest.remove("/scratch/moved.bin", 0x1), 0, "unlink");
    assert_eq!(guest.remove("/scratch", 0x2), 0, "rmdir");
    let (status, _) = guest.statfs();
    assert_eq!(status, 0, "statfs");

    // A second client that maps the share, opens files and disconnects without closing them.
    let client = connect(&guest.hgcm);
    let other = Guest {
        hgcm: guest.hgcm.clone(),
        client,
        root: 0,
    };
    assert_eq!(other.call(Function::SET_UTF8, vec![]).status, 0, "SET_UTF8");
    let (status, root) = other.map("data");
    assert_eq!(status, 0, "map");
    let other = Guest { root, ..other };
    for i in 0..8 {
        let _left_open = other.open(&format!("/big/entry-{i:04}"), cf::READ | cf::FAIL_IF_NEW);
    }
    let (done, finished) = bounded(1);
    other
        .hgcm
        .disconnect(
            other.client,
            Box::new(move |outcome| {
                let _ = done.send(outcome);
            }),
        )
        .expect("disconnect accepted");
    finished
        .recv_timeout(DEADLINE)
        .expect("disconnect completes");

    // The host changes the tree behind the guest's back (the service's directory cache follows).
    std::fs::write(tree.host("host-side.txt"), b"x").expect("host write");
    std::fs::remove_file(tree.host("host-side.txt")).expect("host unlink");
}

#[test]
fn repeated_rounds_of_guest_work_leave_the_live_heap_unchanged() {
    let tree = Tree::new();
    std::fs::create_dir(tree.host("big")).expect("mkdir big");
    for i in 0..DIRECTORY_ENTRIES {
        std::fs::write(tree.host(&format!("big/entry-{i:04}")), b"entry").expect("write entry");
    }
    let guest = Guest::mount(&tree.share_entry("data", ":symlinks=inside"), "data");

    for index in 0..WARM_UP_ROUNDS {
        round(&tree, &guest, index);
    }
    let baseline = live_bytes();
    for index in 0..MEASURED_ROUNDS {
        round(&tree, &guest, WARM_UP_ROUNDS + index);
    }
    let growth = live_bytes() - baseline;
    assert!(
        growth <= ALLOWED_GROWTH,
        "{MEASURED_ROUNDS} rounds left {growth} more bytes allocated than the {WARM_UP_ROUNDS} \
         warm-up rounds (allowed: {ALLOWED_GROWTH}); baseline {baseline}"
    );
}
