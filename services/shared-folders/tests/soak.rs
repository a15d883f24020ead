//! No leak under a long session: the same round of shared-folder work, repeated, must leave the live
//! heap where the first rounds left it (counted by `vmmdev_live_heap`, so this binary holds a single
//! test). The warm-up rounds let the bounded structures (handle tables, directory caches) reach
//! their size.

mod common;

use common::*;
use crossbeam_channel::bounded;
use vmmdev_live_heap::{CountingAllocator, growth_over_rounds};
use vmmdev_protocol::services::shared_folders::{FsObjInfo, Function};
use zerocopy::FromZeros;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Rounds run before the baseline is taken.
const WARM_UP_ROUNDS: usize = 5;
/// Rounds run after it.
const MEASURED_ROUNDS: usize = 40;
/// Growth allowed over the measured rounds: allocator-internal and thread-local noise, far below one
/// byte per call (each round makes several hundred calls).
const ALLOWED_GROWTH: isize = 1024;
/// Entries of the directory listed in every round.
const DIRECTORY_ENTRIES: usize = 600;

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

    let growth = growth_over_rounds(WARM_UP_ROUNDS, MEASURED_ROUNDS, |index| {
        round(&tree, &guest, index)
    });
    assert!(
        growth <= ALLOWED_GROWTH,
        "{MEASURED_ROUNDS} rounds after {WARM_UP_ROUNDS} warm-up rounds left {growth} more bytes \
         allocated (allowed: {ALLOWED_GROWTH})"
    );
}
