//! The service driven through `vmmdev-hgcm` as the Linux 6.1 vboxsf driver drives it, over a
//! temporary directory: mount, stat, create, read/write, listing, removal, renames, attributes,
//! symlinks, volume information, read-only shares and the host's share management.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::Arc;

use common::*;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmmdev_hgcm::{Buffer, Direction, Parm};
use vmmdev_protocol::services::shared_folders::{
    CreateParms, FsObjInfo, Function, HostFunction, SHFL_HANDLE_NIL,
};
use vmmdev_protocol::status::Status;
use vmmdev_svc_shared_folders::{SERVICE_NAME, ShareConfig, SymlinkPolicy, host};
use zerocopy::FromZeros;
use zerocopy::little_endian::{I64, U32};

const FILE_NOT_FOUND: u32 = 2;
const PATH_NOT_FOUND: u32 = 1;
const FILE_EXISTS: u32 = 3;
const FILE_CREATED: u32 = 4;
const FILE_REPLACED: u32 = 5;

fn writable(tree: &Tree) -> Guest {
    Guest::mount(&tree.share_entry("data", ""), "data")
}

// ---------------------------------------------------------------------------------------------
// Mount
// ---------------------------------------------------------------------------------------------

#[test]
fn mount_maps_the_share_and_its_root_is_a_directory() {
    let tree = Tree::new();
    let guest = writable(&tree);
    let (status, result, info) = guest.stat("/");
    assert_eq!((status, result), (0, FILE_EXISTS));
    assert_eq!(info.attr.mode.get() & TYPE_MASK, TYPE_DIRECTORY);
}

#[test]
fn mapping_an_unknown_share_fails_with_file_not_found() {
    let tree = Tree::new();
    let guest = writable(&tree);
    assert_eq!(guest.map("nope").0, st(Status::VERR_FILE_NOT_FOUND));
}

#[test]
fn share_names_match_ignoring_case() {
    let tree = Tree::new();
    let guest = writable(&tree);
    assert_eq!(guest.map("DATA"), (0, guest.root));
}

#[test]
fn second_mount_of_a_share_survives_unmapping_the_first() {
    let tree = Tree::new();
    let guest = writable(&tree);
    assert_eq!(guest.map("data"), (0, guest.root));
    assert_eq!(guest.unmap(guest.root), 0);
    assert_eq!(guest.stat("/").1, FILE_EXISTS);
}

#[test]
fn unmapping_a_root_the_client_has_not_mapped_is_an_invalid_handle() {
    let tree = Tree::new();
    let guest = writable(&tree);
    assert_eq!(guest.unmap(guest.root), 0);
    assert_eq!(guest.unmap(guest.root), st(Status::VERR_INVALID_HANDLE));
}

#[test]
fn unmap_closes_the_clients_handles_under_that_root() {
    let tree = Tree::new();
    std::fs::write(tree.host("f"), b"x").expect("write");
    let guest = writable(&tree);
    let handle = guest.open("/f", cf::FAIL_IF_NEW | cf::READ);
    assert_eq!(guest.unmap(guest.root), 0);
    assert_eq!(guest.map("data").0, 0);
    assert_eq!(guest.read(handle, 0, 1).0, st(Status::VERR_INVALID_HANDLE));
}

#[test]
fn map_with_a_delimiter_other_than_slash_or_backslash_is_refused() {
    let tree = Tree::new();
    let guest = writable(&tree);
    let outcome = guest.call(
        Function::MAP_FOLDER,
        vec![
            both(&shfl("data")),
            Parm::U32(0),
            Parm::U32(u32::from(b':')),
            Parm::U32(1),
        ],
    );
    assert_eq!(outcome.status, st(Status::VERR_INVALID_PARAMETER));
}

// ---------------------------------------------------------------------------------------------
// Stat and CREATE
// ---------------------------------------------------------------------------------------------

#[test]
fn stat_of_a_missing_file_succeeds_with_file_not_found() {
    let tree = Tree::new();
    let guest = writable(&tree);
    let (status, result, _) = guest.stat("/missing");
    assert_eq!((status, result), (0, FILE_NOT_FOUND));
}

#[test]
fn stat_below_a_missing_directory_succeeds_with_path_not_found() {
    let tree = Tree::new();
    let guest = writable(&tree);
    let (status, result, _) = guest.stat("/missing/file");
    assert_eq!((status, result), (0, PATH_NOT_FOUND));
}

#[test]
fn stat_reports_size_type_and_permissions() {
    let tree = Tree::new();
    std::fs::write(tree.host("f"), b"12345").expect("write");
    std::fs::set_permissions(tree.host("f"), std::fs::Permissions::from_mode(0o640))
        .expect("chmod");
    let guest = writable(&tree);
    let (_, result, info) = guest.stat("/f");
    assert_eq!(result, FILE_EXISTS);
    assert_eq!(info.object_size.get(), 5);
    assert_eq!(info.attr.mode.get() & 0o170777, TYPE_FILE | 0o640);
}

#[test]
fn creat_creates_the_file_with_the_requested_permissions() {
    let tree = Tree::new();
    let guest = writable(&tree);
    let handle = guest.creat("/new", 0o600);
    assert_eq!(guest.close(handle), 0);
    let meta = std::fs::metadata(tree.host("new")).expect("created");
    assert_eq!(meta.mode() & 0o777, 0o600);
}

#[test]
fn creat_of_a_read_only_mode_still_returns_a_writable_handle() {
    let tree = Tree::new();
    let guest = writable(&tree);
    let handle = guest.creat("/ro", 0o444);
    assert_eq!(guest.write(handle, 0, b"data").0, 0);
    assert_eq!(guest.close(handle), 0);
    assert_eq!(std::fs::read(tree.host("ro")).expect("read"), b"data");
}

#[test]
fn exclusive_create_of_an_existing_file_reports_exists_without_a_handle() {
    let tree = Tree::new();
    std::fs::write(tree.host("f"), b"keep").expect("write");
    let guest = writable(&tree);
    let (status, parms) = guest.create("/f", cf::CREAT | cf::FAIL_IF_EXISTS, TYPE_FILE | 0o644);
    assert_eq!(status, 0);
    assert_eq!(parms.result.get(), FILE_EXISTS);
    assert_eq!(parms.handle.get(), SHFL_HANDLE_NIL);
    assert_eq!(parms.info.object_size.get(), 4);
}

#[test]
fn open_without_create_of_a_missing_file_reports_file_not_found() {
    let tree = Tree::new();
    let guest = writable(&tree);
    let (status, parms) = guest.create("/missing", cf::FAIL_IF_NEW | cf::READ, 0);
    assert_eq!((status, parms.result.get()), (0, FILE_NOT_FOUND));
    assert_eq!(parms.handle.get(), SHFL_HANDLE_NIL);
}

#[test]
fn open_with_o_creat_of_an_existing_file_opens_it() {
    let tree = Tree::new();
    std::fs::write(tree.host("f"), b"old").expect("write");
    let guest = writable(&tree);
    let (status, parms) = guest.create("/f", cf::READWRITE, TYPE_FILE | 0o644);
    assert_eq!((status, parms.result.get()), (0, FILE_EXISTS));
    assert_ne!(parms.handle.get(), SHFL_HANDLE_NIL);
    assert_eq!(std::fs::read(tree.host("f")).expect("read"), b"old");
}

#[test]
fn open_with_o_trunc_truncates_and_reports_replaced() {
    let tree = Tree::new();
    std::fs::write(tree.host("f"), b"old contents").expect("write");
    let guest = writable(&tree);
    let (status, parms) = guest.create(
        "/f",
        cf::FAIL_IF_NEW | cf::OVERWRITE_IF_EXISTS | cf::WRITE,
        TYPE_FILE | 0o644,
    );
    assert_eq!((status, parms.result.get()), (0, FILE_REPLACED));
    assert_eq!(parms.info.object_size.get(), 0);
    assert_eq!(std::fs::metadata(tree.host("f")).expect("stat").len(), 0);
}

#[test]
fn replace_honours_the_requested_size() {
    let tree = Tree::new();
    std::fs::write(tree.host("f"), b"old").expect("write");
    let guest = writable(&tree);
    let mut request = parms(cf::REPLACE_IF_EXISTS | cf::READWRITE, TYPE_FILE | 0o644);
    request.info.object_size = I64::new(10);
    let (status, parms) = guest.create_parms("/f", request);
    assert_eq!((status, parms.result.get()), (0, FILE_REPLACED));
    assert_eq!(std::fs::metadata(tree.host("f")).expect("stat").len(), 10);
}

#[test]
fn opening_an_existing_directory_without_the_directory_flag_yields_a_directory_handle() {
    let tree = Tree::new();
    std::fs::create_dir(tree.host("d")).expect("mkdir");
    let guest = writable(&tree);
    let (status, parms) = guest.create("/d", cf::SETATTR, 0);
    assert_eq!((status, parms.result.get()), (0, FILE_EXISTS));
    assert_eq!(parms.info.attr.mode.get() & TYPE_MASK, TYPE_DIRECTORY);
    assert_ne!(parms.handle.get(), SHFL_HANDLE_NIL);
}

#[test]
fn mkdir_creates_a_directory_with_its_type_and_mode() {
    let tree = Tree::new();
    let guest = writable(&tree);
    let (status, parms) = guest.create("/d", cf::MKDIR, TYPE_DIRECTORY | 0o750);
    assert_eq!((status, parms.result.get()), (0, FILE_CREATED));
    assert_eq!(parms.info.attr.mode.get() & TYPE_MASK, TYPE_DIRECTORY);
    assert_eq!(guest.close(parms.handle.get()), 0);
    let meta = std::fs::metadata(tree.host("d")).expect("created");
    assert!(meta.is_dir());
    assert_eq!(meta.mode() & 0o777, 0o750);
}

#[test]
fn mkdir_of_an_existing_name_fails_with_already_exists() {
    let tree = Tree::new();
    std::fs::create_dir(tree.host("d")).expect("mkdir");
    let guest = writable(&tree);
    let (status, result) = guest.mkdir("/d", 0o755);
    assert_eq!(
        (status, result),
        (st(Status::VERR_ALREADY_EXISTS), FILE_EXISTS)
    );
}

#[test]
fn opendir_of_a_file_fails_with_not_a_directory() {
    let tree = Tree::new();
    std::fs::write(tree.host("f"), b"").expect("write");
    let guest = writable(&tree);
    let (status, _) = guest.create("/f", cf::OPENDIR, 0);
    assert_eq!(status, st(Status::VERR_NOT_A_DIRECTORY));
}

#[test]
fn create_parameters_of_the_wrong_size_are_refused() {
    let tree = Tree::new();
    let guest = writable(&tree);
    let outcome = guest.call(
        Function::CREATE,
        vec![Parm::U32(guest.root), both(&shfl("/x")), both(&[0; 100])],
    );
    assert_eq!(outcome.status, st(Status::VERR_INVALID_PARAMETER));
}

#[test]
fn handle_limit_per_client_is_enforced() {
    let tree = Tree::new();
    std::fs::write(tree.host("f"), b"").expect("write");
    let guest = Guest::mount(
        &format!("{} max_handles=2", tree.share_entry("data", "")),
        "data",
    );
    guest.open("/f", cf::FAIL_IF_NEW | cf::READ);
    guest.open("/f", cf::FAIL_IF_NEW | cf::READ);
    let (status, _) = guest.create("/f", cf::FAIL_IF_NEW | cf::READ, 0);
    assert_eq!(status, st(Status::VERR_TOO_MANY_OPEN_FILES));
}

#[test]
fn close_of_nil_or_zero_handles_fails_harmlessly() {
    let tree = Tree::new();
    let guest = writable(&tree);
    assert_eq!(
        guest.close(SHFL_HANDLE_NIL),
        st(Status::VERR_INVALID_HANDLE)
    );
    assert_eq!(guest.close(0), st(Status::VERR_INVALID_PARAMETER));
}

// ---------------------------------------------------------------------------------------------
// READ and WRITE
// ---------------------------------------------------------------------------------------------

#[test]
fn written_data_reads_back() {
    let tree = Tree::new();
    let guest = writable(&tree);
    let handle = guest.creat("/f", 0o644);
    assert_eq!(guest.write(handle, 0, b"hello world"), (0, 11, 11));
    assert_eq!(guest.read(handle, 6, 4096), (0, b"world".to_vec()));
    assert_eq!(guest.close(handle), 0);
}

#[test]
fn read_at_end_of_file_succeeds_with_zero_bytes() {
    let tree = Tree::new();
    std::fs::write(tree.host("f"), b"abc").expect("write");
    let guest = writable(&tree);
    let handle = guest.open("/f", cf::FAIL_IF_NEW | cf::READ);
    assert_eq!(guest.read(handle, 3, 4096), (0, Vec::new()));
    assert_eq!(guest.read(handle, 1 << 40, 4096), (0, Vec::new()));
}

#[test]
fn write_updates_size_and_modification_time_immediately() {
    let tree = Tree::new();
    std::fs::write(tree.host("f"), b"").expect("write");
    let guest = writable(&tree);
    let (_, _, before) = guest.stat("/f");
    std::thread::sleep(std::time::Duration::from_millis(20));
    let handle = guest.open("/f", cf::FAIL_IF_NEW | cf::WRITE);
    guest.write(handle, 0, &[7; 5000]);
    let (_, _, after) = guest.stat("/f");
    assert_eq!(after.object_size.get(), 5000);
    assert!(after.modification_time.get() > before.modification_time.get());
}

#[test]
fn append_handle_writes_at_the_end_and_reports_the_new_offset() {
    let tree = Tree::new();
    std::fs::write(tree.host("log"), b"first\n").expect("write");
    let guest = writable(&tree);
    let handle = guest.open("/log", cf::FAIL_IF_NEW | cf::WRITE | cf::APPEND);
    let (status, written, offset) = guest.write(handle, 0, b"second\n");
    assert_eq!((status, written, offset), (0, 7, 13));
    assert_eq!(
        std::fs::read(tree.host("log")).expect("read"),
        b"first\nsecond\n"
    );
}

#[test]
fn read_through_a_write_only_handle_is_refused() {
    let tree = Tree::new();
    std::fs::write(tree.host("f"), b"x").expect("write");
    let guest = writable(&tree);
    let handle = guest.open("/f", cf::FAIL_IF_NEW | cf::WRITE);
    assert_eq!(guest.read(handle, 0, 1).0, st(Status::VERR_INVALID_HANDLE));
}

#[test]
fn read_count_beyond_the_buffer_is_refused() {
    let tree = Tree::new();
    std::fs::write(tree.host("f"), b"x").expect("write");
    let guest = writable(&tree);
    let handle = guest.open("/f", cf::FAIL_IF_NEW | cf::READ);
    let outcome = guest.call(
        Function::READ,
        vec![
            Parm::U32(guest.root),
            Parm::U64(handle),
            Parm::U64(0),
            Parm::U32(100),
            from_host(10),
        ],
    );
    assert_eq!(outcome.status, st(Status::VERR_INVALID_PARAMETER));
    assert_eq!(u32_of(&outcome.params[3]), 0);
}

#[test]
fn read_and_write_use_wrong_parameter_codes_for_malformed_calls() {
    let tree = Tree::new();
    let guest = writable(&tree);
    let outcome = guest.call(Function::READ, vec![Parm::U32(guest.root)]);
    assert_eq!(outcome.status, st(Status::VERR_WRONG_PARAMETER_COUNT));
    let outcome = guest.call(
        Function::WRITE,
        vec![
            Parm::U32(0),
            Parm::U32(0),
            Parm::U64(0),
            Parm::U32(0),
            to_host(b""),
        ],
    );
    assert_eq!(outcome.status, st(Status::VERR_WRONG_PARAMETER_TYPE));
}

/// Guest RAM with page-list style, non-contiguous pages.
fn guest_pages(pages: usize) -> (Arc<GuestMemoryMmap>, Vec<(GuestAddress, usize)>) {
    let mem = Arc::new(
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), (pages * 2 + 2) * 4096)])
            .expect("guest memory"),
    );
    // Every other page, in reverse order, like a fragmented page list.
    let segments = (0..pages)
        .rev()
        .map(|i| (GuestAddress((i as u64 * 2 + 1) * 4096), 4096))
        .collect();
    (mem, segments)
}

#[test]
fn one_mib_read_lands_directly_in_scattered_guest_pages() {
    let tree = Tree::new();
    let data: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(tree.host("big"), &data).expect("write");
    let guest = writable(&tree);
    let handle = guest.open("/big", cf::FAIL_IF_NEW | cf::READ);
    let (mem, segments) = guest_pages(256);
    let buffer = Buffer::guest(mem.clone(), segments.clone(), Direction::FromHost).expect("RAM");
    let outcome = guest.call(
        Function::READ,
        vec![
            Parm::U32(guest.root),
            Parm::U64(handle),
            Parm::U64(0),
            Parm::U32(1 << 20),
            Parm::Buffer(buffer),
        ],
    );
    assert_eq!(outcome.status, 0);
    assert_eq!(u32_of(&outcome.params[3]), 1 << 20);
    for (index, (address, len)) in segments.iter().enumerate() {
        let mut page = vec![0u8; *len];
        mem.read_slice(&mut page, *address).expect("read guest");
        assert_eq!(page, data[index * 4096..(index + 1) * 4096], "page {index}");
    }
}

#[test]
fn write_from_scattered_guest_pages_reaches_the_file_in_order() {
    let tree = Tree::new();
    let guest = writable(&tree);
    let handle = guest.creat("/out", 0o644);
    let (mem, segments) = guest_pages(4);
    for (index, (address, len)) in segments.iter().enumerate() {
        mem.write_slice(&vec![index as u8 + 1; *len], *address)
            .expect("write guest");
    }
    let buffer = Buffer::guest(mem, segments, Direction::ToHost).expect("RAM");
    let outcome = guest.call(
        Function::WRITE,
        vec![
            Parm::U32(guest.root),
            Parm::U64(handle),
            Parm::U64(0),
            Parm::U32(4 * 4096),
            Parm::Buffer(buffer),
        ],
    );
    assert_eq!(outcome.status, 0);
    let file = std::fs::read(tree.host("out")).expect("read");
    assert_eq!(file.len(), 4 * 4096);
    assert!(file[..4096].iter().all(|&b| b == 1));
    assert!(file[3 * 4096..].iter().all(|&b| b == 4));
}

// ---------------------------------------------------------------------------------------------
// LIST
// ---------------------------------------------------------------------------------------------

#[test]
fn empty_directory_lists_dot_entries_then_no_more_files() {
    let tree = Tree::new();
    std::fs::create_dir(tree.host("empty")).expect("mkdir");
    let guest = writable(&tree);
    assert_eq!(guest.names("/empty"), [".", ".."]);
}

#[test]
fn six_hundred_entries_are_listed_once_each_across_calls() {
    let tree = Tree::new();
    std::fs::create_dir(tree.host("many")).expect("mkdir");
    for i in 0..600 {
        std::fs::write(
            tree.host(&format!("many/file-with-a-longish-name-{i:04}")),
            b"",
        )
        .expect("write");
    }
    let guest = writable(&tree);
    let names = guest.names("/many");
    assert_eq!(names.len(), 602);
    let mut unique = names.clone();
    unique.dedup();
    assert_eq!(unique, names);
    assert!(names.contains(&"file-with-a-longish-name-0599".to_owned()));
}

#[test]
fn listing_keeps_returning_no_more_files_after_the_end() {
    let tree = Tree::new();
    let guest = writable(&tree);
    let (_, parms) = guest.create("/", cf::OPENDIR, 0);
    let handle = parms.handle.get();
    let (status, entries, resume) = guest.list_once(handle, 0, 16384);
    assert_eq!((status, entries.len(), resume), (0, 2, 0));
    for _ in 0..2 {
        assert_eq!(
            guest.list_once(handle, 0, 16384).0,
            st(Status::VERR_NO_MORE_FILES)
        );
    }
}

#[test]
fn list_restart_rewinds_the_enumeration() {
    let tree = Tree::new();
    std::fs::write(tree.host("a"), b"").expect("write");
    let guest = writable(&tree);
    let (_, parms) = guest.create("/", cf::OPENDIR, 0);
    let handle = parms.handle.get();
    assert_eq!(guest.list_once(handle, 0, 16384).1.len(), 3);
    assert_eq!(guest.list_once(handle, 2, 16384).1.len(), 3);
}

#[test]
fn list_return_one_returns_a_single_entry_and_more_to_come() {
    let tree = Tree::new();
    let guest = writable(&tree);
    let (_, parms) = guest.create("/", cf::OPENDIR, 0);
    let (status, entries, resume) = guest.list_once(parms.handle.get(), 1, 16384);
    assert_eq!((status, entries.len(), resume), (0, 1, 1));
}

#[test]
fn list_with_a_filter_matches_wildcards_ignoring_case() {
    let tree = Tree::new();
    for name in ["a.txt", "B.TXT", "c.dat"] {
        std::fs::write(tree.host(name), b"").expect("write");
    }
    let guest = writable(&tree);
    let (_, parms) = guest.create("/", cf::OPENDIR, 0);
    let outcome = guest.call(
        Function::LIST,
        vec![
            Parm::U32(guest.root),
            Parm::U64(parms.handle.get()),
            Parm::U32(0),
            Parm::U32(16384),
            to_host(&shfl("/*.txt")),
            from_host(16384),
            Parm::U32(0),
            Parm::U32(0),
        ],
    );
    assert_eq!(outcome.status, 0);
    let bytes = u32_of(&outcome.params[3]) as usize;
    let entries = parse_records(
        &buffer_bytes(&outcome.params[5])[..bytes],
        u32_of(&outcome.params[7]),
    );
    let mut names: Vec<_> = entries.into_iter().map(|e| e.name).collect();
    names.sort();
    assert_eq!(names, ["B.TXT", "a.txt"]);
}

#[test]
fn list_buffer_below_the_minimum_is_refused() {
    let tree = Tree::new();
    let guest = writable(&tree);
    let (_, parms) = guest.create("/", cf::OPENDIR, 0);
    assert_eq!(
        guest.list_once(parms.handle.get(), 0, 127).0,
        st(Status::VERR_INVALID_PARAMETER)
    );
}

#[test]
fn list_entries_carry_type_and_size() {
    let tree = Tree::new();
    std::fs::write(tree.host("f"), b"1234").expect("write");
    std::fs::create_dir(tree.host("d")).expect("mkdir");
    let guest = writable(&tree);
    let entries = guest.list_dir("/");
    let f = entries.iter().find(|e| e.name == "f").expect("f listed");
    assert_eq!(f.info.object_size.get(), 4);
    assert_eq!(f.info.attr.mode.get() & TYPE_MASK, TYPE_FILE);
    let d = entries.iter().find(|e| e.name == "d").expect("d listed");
    assert_eq!(d.info.attr.mode.get() & TYPE_MASK, TYPE_DIRECTORY);
}

#[test]
fn utf16_clients_get_utf16_names() {
    let tree = Tree::new();
    std::fs::write(tree.host("ä"), b"").expect("write");
    let hgcm = hgcm_with(&tree.share_entry("data", ""));
    let client = connect(&hgcm);
    let outcome = call_on(
        &hgcm,
        client,
        Function::MAP_FOLDER,
        vec![
            both(&shfl16("data")),
            Parm::U32(0),
            Parm::U32(u32::from(b'/')),
            Parm::U32(1),
        ],
    );
    assert_eq!(outcome.status, 0);
    let root = u32_of(&outcome.params[1]);
    let mut request = parms(cf::OPENDIR, 0);
    request.result = U32::new(0);
    let outcome = call_on(
        &hgcm,
        client,
        Function::CREATE,
        vec![
            Parm::U32(root),
            both(&shfl16("/")),
            both(zerocopy::IntoBytes::as_bytes(&request)),
        ],
    );
    let parms =
        <CreateParms as zerocopy::FromBytes>::read_from_bytes(&buffer_bytes(&outcome.params[2]))
            .expect("parms");
    let outcome = call_on(
        &hgcm,
        client,
        Function::LIST,
        vec![
            Parm::U32(root),
            Parm::U64(parms.handle.get()),
            Parm::U32(0),
            Parm::U32(16384),
            no_filter(),
            from_host(16384),
            Parm::U32(0),
            Parm::U32(0),
        ],
    );
    let bytes = buffer_bytes(&outcome.params[5]);
    let wanted: Vec<u8> = "ä".encode_utf16().flat_map(u16::to_le_bytes).collect();
    assert!(bytes.windows(wanted.len()).any(|w| w == wanted));
}

// ---------------------------------------------------------------------------------------------
// REMOVE and RENAME
// ---------------------------------------------------------------------------------------------

#[test]
fn unlink_removes_a_file() {
    let tree = Tree::new();
    std::fs::write(tree.host("f"), b"").expect("write");
    let guest = writable(&tree);
    assert_eq!(guest.remove("/f", 1), 0);
    assert!(!tree.host("f").exists());
    assert_eq!(guest.remove("/f", 1), st(Status::VERR_FILE_NOT_FOUND));
}

#[test]
fn rmdir_of_a_non_empty_directory_fails_with_dir_not_empty() {
    let tree = Tree::new();
    std::fs::create_dir(tree.host("d")).expect("mkdir");
    std::fs::write(tree.host("d/f"), b"").expect("write");
    let guest = writable(&tree);
    assert_eq!(guest.remove("/d", 2), st(Status::VERR_DIR_NOT_EMPTY));
    assert_eq!(guest.remove("/d/f", 1), 0);
    assert_eq!(guest.remove("/d", 2), 0);
    assert!(!tree.host("d").exists());
}

#[test]
fn unlink_of_a_directory_fails_with_is_a_directory() {
    let tree = Tree::new();
    std::fs::create_dir(tree.host("d")).expect("mkdir");
    let guest = writable(&tree);
    assert_eq!(guest.remove("/d", 1), st(Status::VERR_IS_A_DIRECTORY));
}

#[test]
fn rename_moves_a_file_within_a_directory() {
    let tree = Tree::new();
    std::fs::write(tree.host("a"), b"content").expect("write");
    let guest = writable(&tree);
    assert_eq!(guest.rename("/a", "/b", 5), 0);
    assert_eq!(std::fs::read(tree.host("b")).expect("read"), b"content");
    assert!(!tree.host("a").exists());
}

#[test]
fn rename_moves_a_file_across_directories() {
    let tree = Tree::new();
    std::fs::create_dir(tree.host("x")).expect("mkdir");
    std::fs::create_dir(tree.host("y")).expect("mkdir");
    std::fs::write(tree.host("x/f"), b"1").expect("write");
    let guest = writable(&tree);
    assert_eq!(guest.rename("/x/f", "/y/g", 5), 0);
    assert!(tree.host("y/g").exists());
}

#[test]
fn rename_with_replace_overwrites_an_existing_file() {
    let tree = Tree::new();
    std::fs::write(tree.host("a"), b"new").expect("write");
    std::fs::write(tree.host("b"), b"old").expect("write");
    let guest = writable(&tree);
    assert_eq!(guest.rename("/a", "/b", 5), 0);
    assert_eq!(std::fs::read(tree.host("b")).expect("read"), b"new");
}

#[test]
fn rename_without_replace_refuses_an_existing_destination() {
    let tree = Tree::new();
    std::fs::write(tree.host("a"), b"").expect("write");
    std::fs::write(tree.host("b"), b"").expect("write");
    let guest = writable(&tree);
    assert_eq!(guest.rename("/a", "/b", 1), st(Status::VERR_ALREADY_EXISTS));
}

#[test]
fn rename_of_a_directory_moves_it_and_refuses_an_existing_target() {
    let tree = Tree::new();
    std::fs::create_dir(tree.host("d")).expect("mkdir");
    std::fs::write(tree.host("d/f"), b"").expect("write");
    std::fs::create_dir(tree.host("taken")).expect("mkdir");
    let guest = writable(&tree);
    assert_eq!(
        guest.rename("/d", "/taken", 0),
        st(Status::VERR_ALREADY_EXISTS)
    );
    assert_eq!(guest.rename("/d", "/e", 0), 0);
    assert!(tree.host("e/f").exists());
}

#[test]
fn rename_of_a_directory_as_a_file_is_refused() {
    let tree = Tree::new();
    std::fs::create_dir(tree.host("d")).expect("mkdir");
    let guest = writable(&tree);
    assert_eq!(guest.rename("/d", "/e", 5), st(Status::VERR_IS_A_DIRECTORY));
}

// ---------------------------------------------------------------------------------------------
// INFORMATION
// ---------------------------------------------------------------------------------------------

fn setattr_handle(guest: &Guest, path: &str) -> u64 {
    let (status, parms) = guest.create(path, cf::SETATTR, 0);
    assert_eq!((status, parms.result.get()), (0, FILE_EXISTS));
    parms.handle.get()
}

#[test]
fn chmod_through_information_set_applies_the_permission_bits() {
    let tree = Tree::new();
    std::fs::write(tree.host("f"), b"").expect("write");
    let guest = writable(&tree);
    let handle = setattr_handle(&guest, "/f");
    let mut info = FsObjInfo::new_zeroed();
    info.attr.mode = U32::new(TYPE_FILE | 0o751);
    let (status, size, result) = guest.information(handle, 0x9, &info);
    assert_eq!((status, size), (0, 92));
    assert_eq!(result.attr.mode.get() & 0o777, 0o751);
    let mode = std::fs::metadata(tree.host("f")).expect("stat").mode();
    assert_eq!(mode & 0o7777, 0o751);
}

#[test]
fn chmod_never_sets_setuid_and_keeps_owner_read() {
    let tree = Tree::new();
    std::fs::write(tree.host("f"), b"").expect("write");
    let guest = writable(&tree);
    let handle = setattr_handle(&guest, "/f");
    let mut info = FsObjInfo::new_zeroed();
    info.attr.mode = U32::new(TYPE_FILE | 0o4000 | 0o077);
    assert_eq!(guest.information(handle, 0x9, &info).0, 0);
    let mode = std::fs::metadata(tree.host("f")).expect("stat").mode();
    assert_eq!(mode & 0o7777, 0o477);
}

#[test]
fn utimes_through_information_set_applies_the_times() {
    let tree = Tree::new();
    std::fs::write(tree.host("f"), b"").expect("write");
    let guest = writable(&tree);
    let handle = setattr_handle(&guest, "/f");
    let mut info = FsObjInfo::new_zeroed();
    info.access_time = I64::new(1_000_000_000_123);
    info.modification_time = I64::new(2_000_000_000_456);
    assert_eq!(guest.information(handle, 0x9, &info).0, 0);
    let meta = std::fs::metadata(tree.host("f")).expect("stat");
    assert_eq!((meta.atime(), meta.atime_nsec()), (1000, 123));
    assert_eq!((meta.mtime(), meta.mtime_nsec()), (2000, 456));
}

#[test]
fn zero_mode_and_times_leave_attributes_unchanged() {
    let tree = Tree::new();
    std::fs::write(tree.host("f"), b"").expect("write");
    std::fs::set_permissions(tree.host("f"), std::fs::Permissions::from_mode(0o640))
        .expect("chmod");
    let before = std::fs::metadata(tree.host("f")).expect("stat");
    let guest = writable(&tree);
    let handle = setattr_handle(&guest, "/f");
    assert_eq!(
        guest.information(handle, 0x9, &FsObjInfo::new_zeroed()).0,
        0
    );
    let after = std::fs::metadata(tree.host("f")).expect("stat");
    assert_eq!(after.mode(), before.mode());
    assert_eq!(after.mtime_nsec(), before.mtime_nsec());
    assert_eq!(after.mtime(), before.mtime());
}

#[test]
fn chmod_of_a_directory_works_through_its_setattr_handle() {
    let tree = Tree::new();
    std::fs::create_dir(tree.host("d")).expect("mkdir");
    let guest = writable(&tree);
    let handle = setattr_handle(&guest, "/d");
    let mut info = FsObjInfo::new_zeroed();
    info.attr.mode = U32::new(TYPE_DIRECTORY | 0o700);
    assert_eq!(guest.information(handle, 0x9, &info).0, 0);
    let mode = std::fs::metadata(tree.host("d")).expect("stat").mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn truncate_through_information_set_size() {
    let tree = Tree::new();
    std::fs::write(tree.host("f"), b"0123456789").expect("write");
    let guest = writable(&tree);
    let (status, parms) = guest.create("/f", cf::SETATTR | cf::WRITE, 0);
    assert_eq!(status, 0);
    let mut info = FsObjInfo::new_zeroed();
    info.object_size = I64::new(3);
    let (status, _, result) = guest.information(parms.handle.get(), 0x5, &info);
    assert_eq!((status, result.object_size.get()), (0, 3));
    assert_eq!(std::fs::read(tree.host("f")).expect("read"), b"012");
}

#[test]
fn information_get_file_reports_the_open_object() {
    let tree = Tree::new();
    std::fs::write(tree.host("f"), b"abc").expect("write");
    let guest = writable(&tree);
    let handle = guest.open("/f", cf::FAIL_IF_NEW | cf::READ);
    let (status, size, info) = guest.information(handle, 0x8, &FsObjInfo::new_zeroed());
    assert_eq!((status, size, info.object_size.get()), (0, 92, 3));
}

#[test]
fn statfs_reports_a_non_zero_allocation_unit_and_sizes() {
    let tree = Tree::new();
    let guest = writable(&tree);
    let (status, info) = guest.statfs();
    assert_eq!(status, 0);
    assert_ne!(info.bytes_per_allocation_unit.get(), 0);
    assert!(info.total_allocation_bytes.get() > 0);
    assert_eq!(info.properties.read_only, 0);
}

// ---------------------------------------------------------------------------------------------
// Symlinks
// ---------------------------------------------------------------------------------------------

fn with_policy(tree: &Tree, policy: &str) -> Guest {
    Guest::mount(
        &tree.share_entry("data", &format!(":symlinks={policy}")),
        "data",
    )
}

#[test]
fn symlink_creation_is_refused_under_deny_with_write_protect() {
    let tree = Tree::new();
    let guest = with_policy(&tree, "deny");
    assert_eq!(
        guest.symlink("/l", "target").0,
        st(Status::VERR_WRITE_PROTECT)
    );
    assert!(std::fs::symlink_metadata(tree.host("l")).is_err());
}

#[test]
fn symlink_under_inside_creates_inside_targets_and_fills_the_info() {
    let tree = Tree::new();
    std::fs::create_dir(tree.host("d")).expect("mkdir");
    let guest = with_policy(&tree, "inside");
    let (status, info) = guest.symlink("/d/l", "../target");
    assert_eq!(status, 0);
    assert_eq!(info.attr.mode.get() & TYPE_MASK, TYPE_SYMLINK);
    assert_eq!(
        std::fs::read_link(tree.host("d/l")).expect("link"),
        std::path::Path::new("../target")
    );
}

#[test]
fn symlink_under_inside_refuses_targets_leaving_the_share() {
    let tree = Tree::new();
    let guest = with_policy(&tree, "inside");
    assert_eq!(
        guest.symlink("/l", "../outside/secret").0,
        st(Status::VERR_ACCESS_DENIED)
    );
    assert_eq!(
        guest.symlink("/l", "/etc/passwd").0,
        st(Status::VERR_ACCESS_DENIED)
    );
}

#[test]
fn symlink_under_allow_stores_any_target_but_the_host_never_follows_it_out() {
    let tree = Tree::new();
    let guest = with_policy(&tree, "allow");
    let target = tree.outside().join("secret");
    let (status, _) = guest.symlink("/l", &target.to_string_lossy());
    assert_eq!(status, 0);
    let (status, parms) = guest.create("/l", cf::FAIL_IF_NEW | cf::READ, 0);
    assert_eq!(status, st(Status::VERR_ACCESS_DENIED));
    assert_eq!(parms.handle.get(), SHFL_HANDLE_NIL);
}

#[test]
fn readlink_returns_the_target_verbatim() {
    let tree = Tree::new();
    std::os::unix::fs::symlink("some/where", tree.host("l")).expect("symlink");
    let guest = writable(&tree);
    assert_eq!(guest.readlink("/l"), (0, b"some/where".to_vec()));
}

#[test]
fn readlink_of_a_regular_file_fails_with_invalid_parameter() {
    let tree = Tree::new();
    std::fs::write(tree.host("f"), b"").expect("write");
    let guest = writable(&tree);
    assert_eq!(guest.readlink("/f").0, st(Status::VERR_INVALID_PARAMETER));
}

#[test]
fn stat_and_list_report_symlinks_themselves_after_set_symlinks() {
    let tree = Tree::new();
    std::fs::write(tree.host("target"), b"").expect("write");
    std::os::unix::fs::symlink("target", tree.host("l")).expect("symlink");
    let guest = with_policy(&tree, "inside");
    assert_eq!(guest.stat("/l").2.attr.mode.get() & TYPE_MASK, TYPE_SYMLINK);
    let entries = guest.list_dir("/");
    let l = entries.iter().find(|e| e.name == "l").expect("listed");
    assert_eq!(l.info.attr.mode.get() & TYPE_MASK, TYPE_SYMLINK);
}

#[test]
fn clients_without_set_symlinks_see_inside_links_followed() {
    let tree = Tree::new();
    std::fs::write(tree.host("target"), b"12345").expect("write");
    std::os::unix::fs::symlink("target", tree.host("l")).expect("symlink");
    let hgcm = hgcm_with(&tree.share_entry("data", ":symlinks=inside"));
    let client = connect(&hgcm);
    let mut guest = Guest {
        hgcm,
        client,
        root: 0,
    };
    assert_eq!(guest.call(Function::SET_UTF8, vec![]).status, 0);
    guest.root = guest.map("data").1;
    let (_, result, info) = guest.stat("/l");
    assert_eq!(result, FILE_EXISTS);
    assert_eq!(info.attr.mode.get() & TYPE_MASK, TYPE_FILE);
    assert_eq!(info.object_size.get(), 5);
}

#[test]
fn removing_a_symlink_removes_the_link_not_its_target() {
    let tree = Tree::new();
    std::fs::write(tree.host("target"), b"").expect("write");
    std::os::unix::fs::symlink("target", tree.host("l")).expect("symlink");
    let guest = writable(&tree);
    assert_eq!(guest.remove("/l", 5), 0);
    assert!(tree.host("target").exists());
    assert!(std::fs::symlink_metadata(tree.host("l")).is_err());
}

#[test]
fn symlinks_of_utf16_clients_are_not_implemented() {
    let tree = Tree::new();
    let hgcm = hgcm_with(&tree.share_entry("data", ":symlinks=allow"));
    let client = connect(&hgcm);
    let outcome = call_on(
        &hgcm,
        client,
        Function::MAP_FOLDER,
        vec![
            both(&shfl16("data")),
            Parm::U32(0),
            Parm::U32(u32::from(b'/')),
            Parm::U32(1),
        ],
    );
    let root = u32_of(&outcome.params[1]);
    let outcome = call_on(
        &hgcm,
        client,
        Function::SYMLINK,
        vec![
            Parm::U32(root),
            to_host(&shfl16("/l")),
            to_host(&shfl16("t")),
            from_host(92),
        ],
    );
    assert_eq!(outcome.status, st(Status::VERR_NOT_IMPLEMENTED));
}

// ---------------------------------------------------------------------------------------------
// Unicode names
// ---------------------------------------------------------------------------------------------

#[test]
fn unicode_names_round_trip_through_create_list_and_stat() {
    let tree = Tree::new();
    let guest = writable(&tree);
    let names = ["日本語.txt", "Ünïcödé", "emoji-😀", "ελληνικά"];
    for name in names {
        let handle = guest.creat(&format!("/{name}"), 0o644);
        assert_eq!(guest.close(handle), 0);
        assert!(tree.host(name).exists(), "{name} on the host");
        assert_eq!(guest.stat(&format!("/{name}")).1, FILE_EXISTS);
    }
    let listed = guest.names("/");
    for name in names {
        assert!(listed.contains(&name.to_owned()), "{name} listed");
    }
}

#[test]
fn host_names_that_are_not_utf8_are_skipped_in_listings() {
    use std::os::unix::ffi::OsStrExt;
    let tree = Tree::new();
    let bad = std::ffi::OsStr::from_bytes(b"bad-\xff");
    std::fs::write(tree.share().join(bad), b"").expect("write");
    std::fs::write(tree.host("good"), b"").expect("write");
    let guest = writable(&tree);
    assert_eq!(guest.names("/"), [".", "..", "good"]);
}

// ---------------------------------------------------------------------------------------------
// Read-only shares
// ---------------------------------------------------------------------------------------------

fn read_only(tree: &Tree) -> Guest {
    Guest::mount(&tree.share_entry("ro", ":ro:symlinks=allow"), "ro")
}

#[test]
fn read_only_share_serves_reads_and_degrades_read_write_opens() {
    let tree = Tree::new();
    std::fs::write(tree.host("f"), b"readable").expect("write");
    let guest = read_only(&tree);
    let handle = guest.open("/f", cf::FAIL_IF_NEW | cf::READWRITE);
    assert_eq!(guest.read(handle, 0, 100), (0, b"readable".to_vec()));
    assert_eq!(
        guest.write(handle, 0, b"x").0,
        st(Status::VERR_WRITE_PROTECT)
    );
    let (status, info) = guest.statfs();
    assert_eq!((status, info.properties.read_only), (0, 1));
}

#[test]
fn read_only_share_refuses_every_modification_with_write_protect() {
    let tree = Tree::new();
    std::fs::write(tree.host("f"), b"keep").expect("write");
    std::fs::create_dir(tree.host("d")).expect("mkdir");
    let guest = read_only(&tree);
    let protect = st(Status::VERR_WRITE_PROTECT);
    assert_eq!(
        guest.create("/new", cf::CREAT, TYPE_FILE | 0o644).0,
        protect
    );
    assert_eq!(
        guest.create("/f", cf::FAIL_IF_NEW | cf::WRITE, 0).0,
        protect
    );
    assert_eq!(
        guest
            .create(
                "/f",
                cf::FAIL_IF_NEW | cf::OVERWRITE_IF_EXISTS | cf::READ,
                0
            )
            .0,
        protect
    );
    assert_eq!(guest.mkdir("/nd", 0o755).0, protect);
    assert_eq!(guest.remove("/f", 1), protect);
    assert_eq!(guest.remove("/d", 2), protect);
    assert_eq!(guest.rename("/f", "/g", 5), protect);
    assert_eq!(guest.symlink("/l", "f").0, protect);
    let handle = setattr_handle(&guest, "/f");
    let mut info = FsObjInfo::new_zeroed();
    info.attr.mode = U32::new(TYPE_FILE | 0o777);
    assert_eq!(guest.information(handle, 0x9, &info).0, protect);
    assert_eq!(std::fs::read(tree.host("f")).expect("read"), b"keep");
    assert!(tree.host("d").exists());
}

// ---------------------------------------------------------------------------------------------
// Other functions
// ---------------------------------------------------------------------------------------------

#[test]
fn copy_file_copies_contents_and_refuses_an_existing_destination() {
    let tree = Tree::new();
    std::fs::write(tree.host("src"), b"payload").expect("write");
    let guest = writable(&tree);
    let copy = |to: &str| {
        guest
            .call(
                Function::COPY_FILE,
                vec![
                    Parm::U32(guest.root),
                    to_host(&shfl("/src")),
                    Parm::U32(guest.root),
                    to_host(&shfl(to)),
                    Parm::U32(0),
                ],
            )
            .status
    };
    assert_eq!(copy("/dst"), 0);
    assert_eq!(std::fs::read(tree.host("dst")).expect("read"), b"payload");
    assert_eq!(copy("/dst"), st(Status::VERR_ALREADY_EXISTS));
}

#[test]
fn set_file_size_extends_a_file() {
    let tree = Tree::new();
    std::fs::write(tree.host("f"), b"").expect("write");
    let guest = writable(&tree);
    let handle = guest.open("/f", cf::FAIL_IF_NEW | cf::WRITE);
    let outcome = guest.call(
        Function::SET_FILE_SIZE,
        vec![Parm::U32(guest.root), Parm::U64(handle), Parm::U64(4096)],
    );
    assert_eq!(outcome.status, 0);
    assert_eq!(std::fs::metadata(tree.host("f")).expect("stat").len(), 4096);
}

#[test]
fn lock_succeeds_without_locking_and_refuses_whole_file_locks() {
    let tree = Tree::new();
    std::fs::write(tree.host("f"), b"").expect("write");
    let guest = writable(&tree);
    let handle = guest.open("/f", cf::FAIL_IF_NEW | cf::READ);
    let lock = |flags| {
        guest
            .call(
                Function::LOCK,
                vec![
                    Parm::U32(guest.root),
                    Parm::U64(handle),
                    Parm::U64(0),
                    Parm::U64(10),
                    Parm::U32(flags),
                ],
            )
            .status
    };
    assert_eq!(lock(2), 0);
    assert_eq!(lock(0), 0);
    assert_eq!(lock(8 | 2), st(Status::VERR_INVALID_PARAMETER));
}

#[test]
fn flush_syncs_a_writable_handle() {
    let tree = Tree::new();
    let guest = writable(&tree);
    let handle = guest.creat("/f", 0o644);
    let outcome = guest.call(
        Function::FLUSH,
        vec![Parm::U32(guest.root), Parm::U64(handle)],
    );
    assert_eq!(outcome.status, 0);
}

#[test]
fn query_features_reports_write_offset_updates_and_the_last_function() {
    let tree = Tree::new();
    let guest = writable(&tree);
    let outcome = guest.call(Function::QUERY_FEATURES, vec![Parm::U64(0), Parm::U32(0)]);
    assert_eq!(outcome.status, 0);
    assert_eq!(
        (u64_of(&outcome.params[0]), u32_of(&outcome.params[1])),
        (1, 29)
    );
}

#[test]
fn unknown_function_numbers_are_not_implemented() {
    let tree = Tree::new();
    let guest = writable(&tree);
    assert_eq!(
        guest.call(Function(10), vec![]).status,
        st(Status::VERR_NOT_IMPLEMENTED)
    );
    assert_eq!(
        guest.call(Function(99), vec![]).status,
        st(Status::VERR_NOT_IMPLEMENTED)
    );
}

#[test]
fn query_mappings_name_and_info_describe_the_shares() {
    let tree = Tree::new();
    let config = format!(
        "{} {}",
        tree.share_entry("one", ":auto:mount=/mnt/one"),
        tree.share_entry("two", ":ro")
    );
    let guest = Guest::mount(&config, "one");
    let outcome = guest.call(
        Function::QUERY_MAPPINGS,
        vec![Parm::U32(0x11), Parm::U32(4), from_host(32)],
    );
    assert_eq!(outcome.status, 0);
    assert_eq!(u32_of(&outcome.params[1]), 1, "only the auto-mount share");
    let outcome = guest.call(
        Function::QUERY_MAPPINGS,
        vec![Parm::U32(0x1), Parm::U32(1), from_host(8)],
    );
    assert_eq!(outcome.status, st(Status::VINF_BUFFER_OVERFLOW));
    assert_eq!(u32_of(&outcome.params[1]), 2);

    let mut name_buffer = vec![0u8; 4 + 64];
    name_buffer[..2].copy_from_slice(&64u16.to_le_bytes());
    let outcome = guest.call(
        Function::QUERY_MAP_NAME,
        vec![Parm::U32(1), both(&name_buffer)],
    );
    assert_eq!(outcome.status, 0);
    let bytes = buffer_bytes(&outcome.params[1]);
    assert_eq!(&bytes[2..4], &3u16.to_le_bytes());
    assert_eq!(&bytes[4..8], b"two\0");

    let outcome = guest.call(
        Function::QUERY_MAP_INFO,
        vec![
            Parm::U32(0),
            both(&name_buffer),
            both(&name_buffer),
            Parm::U64(0),
            Parm::U32(0),
        ],
    );
    assert_eq!(outcome.status, 0);
    assert_eq!(&buffer_bytes(&outcome.params[2])[4..14], b"/mnt/one\0\0");
    let flags = u64_of(&outcome.params[3]);
    assert_eq!(flags & 0x3, 0x3, "writable and auto-mount");
}

#[test]
fn wait_for_mappings_changes_wakes_when_the_host_adds_a_share() {
    let tree = Tree::new();
    let guest = writable(&tree);
    let (_, rx) = submit(
        &guest.hgcm,
        guest.client,
        Function::WAIT_FOR_MAPPINGS_CHANGES,
        vec![Parm::U32(0)],
    );
    let first = rx
        .recv_timeout(DEADLINE)
        .expect("differing version returns at once");
    let version = u32_of(&first.params[0]);
    let (_, rx) = submit(
        &guest.hgcm,
        guest.client,
        Function::WAIT_FOR_MAPPINGS_CHANGES,
        vec![Parm::U32(version)],
    );
    assert!(
        rx.recv_timeout(std::time::Duration::from_millis(100))
            .is_err(),
        "parked"
    );
    let other = TempDir::new();
    let mut params =
        host::add_mapping_params(&ShareConfig::new("late", other.path()), false).expect("params");
    let status = guest
        .hgcm
        .host_call(SERVICE_NAME, HostFunction::ADD_MAPPING.raw(), &mut params)
        .expect("host call");
    assert_eq!(status, 0);
    let woken = rx.recv_timeout(DEADLINE).expect("woken");
    assert_eq!(woken.status, 0);
    assert_ne!(u32_of(&woken.params[0]), version);
    assert_eq!(guest.map("late").0, 0);
}

#[test]
fn cancel_mappings_changes_waits_completes_the_wait_with_cancelled() {
    let tree = Tree::new();
    let guest = writable(&tree);
    let first = guest.call(Function::WAIT_FOR_MAPPINGS_CHANGES, vec![Parm::U32(0)]);
    let version = u32_of(&first.params[0]);
    let (_, rx) = submit(
        &guest.hgcm,
        guest.client,
        Function::WAIT_FOR_MAPPINGS_CHANGES,
        vec![Parm::U32(version)],
    );
    assert!(
        rx.recv_timeout(std::time::Duration::from_millis(100))
            .is_err(),
        "parked"
    );
    assert_eq!(
        guest
            .call(Function::CANCEL_MAPPINGS_CHANGES_WAITS, vec![])
            .status,
        0
    );
    let cancelled = rx.recv_timeout(DEADLINE).expect("completed");
    assert_eq!(cancelled.status, st(Status::VERR_CANCELLED));
}

#[test]
fn a_cancel_that_races_ahead_of_its_wait_ends_that_wait() {
    let tree = Tree::new();
    let guest = writable(&tree);
    let version = u32_of(
        &guest
            .call(Function::WAIT_FOR_MAPPINGS_CHANGES, vec![Parm::U32(0)])
            .params[0],
    );
    assert_eq!(
        guest
            .call(Function::CANCEL_MAPPINGS_CHANGES_WAITS, vec![])
            .status,
        0
    );
    let outcome = guest.call(
        Function::WAIT_FOR_MAPPINGS_CHANGES,
        vec![Parm::U32(version)],
    );
    assert_eq!(outcome.status, st(Status::VERR_CANCELLED));
}

#[test]
fn hgcm_cancel_of_a_parked_wait_lets_it_go() {
    let tree = Tree::new();
    let guest = writable(&tree);
    let version = u32_of(
        &guest
            .call(Function::WAIT_FOR_MAPPINGS_CHANGES, vec![Parm::U32(0)])
            .params[0],
    );
    let (id, rx) = submit(
        &guest.hgcm,
        guest.client,
        Function::WAIT_FOR_MAPPINGS_CHANGES,
        vec![Parm::U32(version)],
    );
    guest.hgcm.cancel(id).expect("pending");
    assert!(
        rx.recv_timeout(std::time::Duration::from_millis(100))
            .is_err()
    );
    // The service still answers (the cancelled wait no longer counts against the limit).
    assert_eq!(guest.stat("/").1, FILE_EXISTS);
}

#[test]
fn host_removal_of_a_mapped_share_leaves_a_failing_placeholder() {
    let tree = Tree::new();
    std::fs::write(tree.host("f"), b"").expect("write");
    let guest = writable(&tree);
    let handle = guest.open("/f", cf::FAIL_IF_NEW | cf::READ);
    let mut params = host::remove_mapping_params("data").expect("params");
    let status = guest
        .hgcm
        .host_call(
            SERVICE_NAME,
            HostFunction::REMOVE_MAPPING.raw(),
            &mut params,
        )
        .expect("host call");
    assert_eq!(status, st(Status::VINF_PERMISSION_DENIED));
    assert_eq!(guest.stat("/f").0, st(Status::VERR_ACCESS_DENIED));
    assert_eq!(guest.read(handle, 0, 1).0, st(Status::VERR_ACCESS_DENIED));
    assert_eq!(guest.map("data").0, st(Status::VERR_FILE_NOT_FOUND));
    assert_eq!(guest.unmap(guest.root), 0);
}

#[test]
fn host_can_list_add_and_remove_shares() {
    let tree = Tree::new();
    let hgcm = hgcm_with(&tree.share_entry("data", ":ro"));
    let other = TempDir::new();
    let mut share = ShareConfig::new("extra", other.path());
    share.symlinks = SymlinkPolicy::Inside;
    let mut params = host::add_mapping_params(&share, false).expect("params");
    assert_eq!(
        hgcm.host_call(SERVICE_NAME, HostFunction::ADD_MAPPING.raw(), &mut params),
        Ok(0)
    );
    let mut params = host::add_mapping_params(&share, false).expect("params");
    assert_eq!(
        hgcm.host_call(SERVICE_NAME, HostFunction::ADD_MAPPING.raw(), &mut params),
        Ok(st(Status::VERR_ALREADY_EXISTS))
    );
    let mut params = host::list_shares_params(4096);
    assert_eq!(
        hgcm.host_call(SERVICE_NAME, host::HOST_FN_LIST_SHARES, &mut params),
        Ok(0)
    );
    let listing = host::listed_shares(&params).expect("text");
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].starts_with("0\tshare=data:") && lines[0].contains(":ro:"));
    assert!(
        lines[1].starts_with("1\tshare=extra:") && lines[1].ends_with("symlinks=inside\tok\t0")
    );
    let mut params = host::remove_mapping_params("EXTRA").expect("params");
    assert_eq!(
        hgcm.host_call(
            SERVICE_NAME,
            HostFunction::REMOVE_MAPPING.raw(),
            &mut params
        ),
        Ok(0)
    );
    let mut params = host::remove_mapping_params("extra").expect("params");
    assert_eq!(
        hgcm.host_call(
            SERVICE_NAME,
            HostFunction::REMOVE_MAPPING.raw(),
            &mut params
        ),
        Ok(st(Status::VERR_FILE_NOT_FOUND))
    );
}

#[test]
fn host_add_of_a_missing_directory_needs_the_missing_flag() {
    let tree = Tree::new();
    let hgcm = hgcm_with(&tree.share_entry("data", ""));
    let share = ShareConfig::new("gone", "/nonexistent/vmmdev-sf-test");
    let mut params = host::add_mapping_params(&share, false).expect("params");
    assert_eq!(
        hgcm.host_call(SERVICE_NAME, HostFunction::ADD_MAPPING.raw(), &mut params),
        Ok(st(Status::VERR_FILE_NOT_FOUND))
    );
    let mut params = host::add_mapping_params(&share, true).expect("params");
    assert_eq!(
        hgcm.host_call(SERVICE_NAME, HostFunction::ADD_MAPPING.raw(), &mut params),
        Ok(0)
    );
    let client = connect(&hgcm);
    let guest = Guest {
        hgcm,
        client,
        root: 0,
    };
    assert_eq!(guest.call(Function::SET_UTF8, vec![]).status, 0);
    let (status, root) = guest.map("gone");
    assert_eq!(status, 0);
    let guest = Guest { root, ..guest };
    assert_eq!(guest.stat("/").0, st(Status::VERR_ACCESS_DENIED));
}

#[test]
fn save_and_restore_keep_the_clients_mount() {
    let tree = Tree::new();
    std::fs::write(tree.host("f"), b"after restore").expect("write");
    let config = tree.share_entry("data", "");
    let guest = Guest::mount(&config, "data");
    let snapshot = guest.hgcm.save().expect("saves");
    guest.hgcm.shutdown();
    let hgcm = hgcm_with(&config);
    hgcm.restore(&snapshot).expect("restores");
    let restored = Guest {
        hgcm,
        client: guest.client,
        root: guest.root,
    };
    // Still UTF-8, still mapped: the guest reads on without remounting.
    assert_eq!(restored.get("/f"), b"after restore");
    assert_eq!(restored.unmap(restored.root), 0);
}

#[test]
fn cancelled_read_never_writes_guest_memory_after_the_cancel_returns() {
    let tree = Tree::new();
    std::fs::write(tree.host("big"), vec![0xAB; 1 << 20]).expect("write");
    let guest = writable(&tree);
    let handle = guest.open("/big", cf::FAIL_IF_NEW | cf::READ);
    for _ in 0..50 {
        let (mem, segments) = guest_pages(256);
        let buffer =
            Buffer::guest(mem.clone(), segments.clone(), Direction::FromHost).expect("RAM");
        let (id, rx) = submit(
            &guest.hgcm,
            guest.client,
            Function::READ,
            vec![
                Parm::U32(guest.root),
                Parm::U64(handle),
                Parm::U64(0),
                Parm::U32(1 << 20),
                Parm::Buffer(buffer),
            ],
        );
        if guest.hgcm.cancel(id).is_err() {
            // Completed before the cancel: the data is there legitimately.
            assert_eq!(rx.recv_timeout(DEADLINE).expect("completed").status, 0);
            continue;
        }
        let snapshot: Vec<Vec<u8>> = segments
            .iter()
            .map(|(address, len)| {
                let mut page = vec![0u8; *len];
                mem.read_slice(&mut page, *address).expect("read");
                page
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(5));
        for ((address, len), before) in segments.iter().zip(&snapshot) {
            let mut page = vec![0u8; *len];
            mem.read_slice(&mut page, *address).expect("read");
            assert_eq!(
                &page, before,
                "guest memory changed after the cancel returned"
            );
        }
        assert!(rx.try_recv().is_err(), "a cancelled call must not complete");
    }
    // The service is still healthy.
    assert_eq!(guest.read(handle, 0, 4).1, vec![0xAB; 4]);
}

#[test]
fn invalid_configuration_refuses_the_load() {
    let hgcm = vmmdev_hgcm::Hgcm::new(vmmdev_hgcm::HgcmConfig::default());
    for config in [
        "share=x",
        "share=a:/nonexistent/vmmdev-sf",
        "bogus=1",
        "share=a:relative",
    ] {
        assert!(
            hgcm.register_builtin(vmmdev_svc_shared_folders::shared_folders_entry, config)
                .is_err(),
            "{config:?} must be refused"
        );
    }
}
