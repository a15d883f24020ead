//! Escape and abuse attempts against the service, each through the real HGCM path: `..`,
//! absolute paths, host symlinks leading out, magic links, symlinks swapped in while operations
//! run, rename and copy targets outside, read-only bypasses, malformed strings, forged handles,
//! resource exhaustion. Every attempt must fail *and* leave the outside untouched.

mod common;

use std::os::unix::fs::symlink;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use vmmdev_hgcm::Parm;
use vmmdev_protocol::services::shared_folders::{FsObjInfo, Function, SHFL_HANDLE_NIL};
use vmmdev_protocol::status::Status;
use zerocopy::FromZeros;
use zerocopy::little_endian::{I64, U32};

const SECRET: &[u8] = b"top secret";
const FILE_EXISTS: u32 = 3;

fn guest(tree: &Tree, options: &str) -> Guest {
    Guest::mount(&tree.share_entry("data", options), "data")
}

/// The outside is exactly as the tree created it.
fn assert_outside_untouched(tree: &Tree) {
    let mut names: Vec<String> = std::fs::read_dir(tree.outside())
        .expect("outside readable")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["secret"], "nothing appeared outside the share");
    assert_eq!(
        std::fs::read(tree.outside().join("secret")).expect("secret"),
        SECRET
    );
    let mut top: Vec<String> = std::fs::read_dir(tree.dir.path())
        .expect("tree readable")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(
        top,
        ["outside", "share"],
        "nothing appeared next to the share"
    );
}

/// The attempt gave no handle and no secret.
fn assert_no_handle(status: i32, handle: u64) {
    assert!(
        status < 0 || handle == SHFL_HANDLE_NIL,
        "status {status}, handle {handle:#x}"
    );
}

fn denied() -> i32 {
    st(Status::VERR_ACCESS_DENIED)
}

fn link_to_outside(tree: &Tree, name: &str) {
    symlink(tree.outside(), tree.host(name)).expect("symlink");
}

// ---------------------------------------------------------------------------------------------
// `..` and absolute paths
// ---------------------------------------------------------------------------------------------

#[test]
fn stat_of_dot_dot_at_the_root_is_refused() {
    let tree = Tree::new();
    assert_eq!(guest(&tree, "").stat("/..").0, denied());
}

#[test]
fn stat_through_dot_dot_to_the_outside_is_refused() {
    let tree = Tree::new();
    assert_eq!(guest(&tree, "").stat("/../outside/secret").0, denied());
}

#[test]
fn open_through_dot_dot_is_refused() {
    let tree = Tree::new();
    let (status, parms) =
        guest(&tree, "").create("/../outside/secret", cf::FAIL_IF_NEW | cf::READ, 0);
    assert_eq!(status, denied());
    assert_no_handle(status, parms.handle.get());
}

#[test]
fn open_through_dot_dot_below_a_subdirectory_is_refused() {
    let tree = Tree::new();
    std::fs::create_dir(tree.host("a")).expect("mkdir");
    let (status, _) =
        guest(&tree, "").create("/a/../../outside/secret", cf::FAIL_IF_NEW | cf::READ, 0);
    assert_eq!(status, denied());
}

#[test]
fn repeated_leading_delimiters_do_not_reach_the_host_root() {
    let tree = Tree::new();
    let (status, _) = guest(&tree, "").create("//../outside/secret", cf::FAIL_IF_NEW | cf::READ, 0);
    assert_eq!(status, denied());
}

#[test]
fn absolute_guest_paths_stay_inside_the_share() {
    let tree = Tree::new();
    let guest = guest(&tree, "");
    let (status, parms) = guest.create("/etc/passwd", cf::FAIL_IF_NEW | cf::READ, 0);
    assert_eq!((status, parms.handle.get()), (0, SHFL_HANDLE_NIL));
    assert_eq!(parms.result.get(), 1, "path not found inside the share");
}

#[test]
fn creating_a_file_through_dot_dot_is_refused() {
    let tree = Tree::new();
    let (status, _) = guest(&tree, "").create("/../outside/new", cf::CREAT, TYPE_FILE | 0o644);
    assert_eq!(status, denied());
    assert_outside_untouched(&tree);
}

#[test]
fn mkdir_through_dot_dot_is_refused() {
    let tree = Tree::new();
    let (status, _) = guest(&tree, "").mkdir("/../outside/newdir", 0o755);
    assert_eq!(status, denied());
    assert_outside_untouched(&tree);
}

#[test]
fn mkdir_next_to_the_share_is_refused() {
    let tree = Tree::new();
    let (status, _) = guest(&tree, "").mkdir("/../sibling", 0o755);
    assert_eq!(status, denied());
    assert_outside_untouched(&tree);
}

#[test]
fn removing_through_dot_dot_is_refused() {
    let tree = Tree::new();
    assert_eq!(guest(&tree, "").remove("/../outside/secret", 1), denied());
    assert_outside_untouched(&tree);
}

#[test]
fn renaming_out_of_the_share_is_refused() {
    let tree = Tree::new();
    std::fs::write(tree.host("f"), b"inside").expect("write");
    assert_eq!(guest(&tree, "").rename("/f", "/../outside/f", 5), denied());
    assert!(tree.host("f").exists());
    assert_outside_untouched(&tree);
}

#[test]
fn renaming_the_outside_into_the_share_is_refused() {
    let tree = Tree::new();
    assert_eq!(
        guest(&tree, "").rename("/../outside/secret", "/stolen", 5),
        denied()
    );
    assert!(!tree.host("stolen").exists());
    assert_outside_untouched(&tree);
}

#[test]
fn opendir_of_the_parent_is_refused() {
    let tree = Tree::new();
    assert_eq!(guest(&tree, "").create("/..", cf::OPENDIR, 0).0, denied());
}

#[test]
fn listing_the_root_describes_dot_dot_as_the_root_itself() {
    let tree = Tree::new();
    let guest = guest(&tree, "");
    let root_inode = guest.stat("/").2.attr.unix.inode_id.get();
    let entries = guest.list_dir("/");
    let parent = entries.iter().find(|e| e.name == "..").expect("listed");
    assert_eq!(parent.info.attr.unix.inode_id.get(), root_inode);
}

#[test]
fn list_filter_naming_the_parent_is_refused() {
    let tree = Tree::new();
    let guest = guest(&tree, "");
    let (_, parms) = guest.create("/", cf::OPENDIR, 0);
    let outcome = guest.call(
        Function::LIST,
        vec![
            Parm::U32(guest.root),
            Parm::U64(parms.handle.get()),
            Parm::U32(0),
            Parm::U32(16384),
            to_host(&shfl("/../outside/*")),
            from_host(16384),
            Parm::U32(0),
            Parm::U32(0),
        ],
    );
    assert_eq!(outcome.status, denied());
}

#[test]
fn copy_from_outside_is_refused() {
    let tree = Tree::new();
    let guest = guest(&tree, "");
    let outcome = guest.call(
        Function::COPY_FILE,
        vec![
            Parm::U32(guest.root),
            to_host(&shfl("/../outside/secret")),
            Parm::U32(guest.root),
            to_host(&shfl("/copy")),
            Parm::U32(0),
        ],
    );
    assert_eq!(outcome.status, denied());
    assert!(!tree.host("copy").exists());
}

#[test]
fn copy_to_outside_is_refused() {
    let tree = Tree::new();
    std::fs::write(tree.host("f"), b"x").expect("write");
    let guest = guest(&tree, "");
    let outcome = guest.call(
        Function::COPY_FILE,
        vec![
            Parm::U32(guest.root),
            to_host(&shfl("/f")),
            Parm::U32(guest.root),
            to_host(&shfl("/../outside/copy")),
            Parm::U32(0),
        ],
    );
    assert_eq!(outcome.status, denied());
    assert_outside_untouched(&tree);
}

#[test]
fn backslash_clients_cannot_climb_out_either() {
    let tree = Tree::new();
    let guest = guest(&tree, "");
    let backslash = guest.call(
        Function::MAP_FOLDER,
        vec![
            both(&shfl("data")),
            Parm::U32(0),
            Parm::U32(u32::from(b'\\')),
            Parm::U32(1),
        ],
    );
    // The delimiter is fixed per client by its first map.
    assert_eq!(backslash.status, st(Status::VERR_INVALID_PARAMETER));
    let client = connect(&guest.hgcm);
    call_on(&guest.hgcm, client, Function::SET_UTF8, vec![]);
    let outcome = call_on(
        &guest.hgcm,
        client,
        Function::MAP_FOLDER,
        vec![
            both(&shfl("data")),
            Parm::U32(0),
            Parm::U32(u32::from(b'\\')),
            Parm::U32(1),
        ],
    );
    let windows = Guest {
        hgcm: guest.hgcm.clone(),
        client,
        root: u32_of(&outcome.params[1]),
    };
    assert_eq!(windows.stat("\\..\\outside\\secret").0, denied());
    let (status, _, _) = windows.stat("\\a/..\\..\\outside");
    assert_eq!(status, st(Status::VERR_INVALID_NAME));
}

// ---------------------------------------------------------------------------------------------
// Host symlinks and magic links
// ---------------------------------------------------------------------------------------------

#[test]
fn absolute_host_symlink_to_the_outside_is_not_followed() {
    let tree = Tree::new();
    symlink(tree.outside().join("secret"), tree.host("abs")).expect("symlink");
    let (status, parms) =
        guest(&tree, ":symlinks=allow").create("/abs", cf::FAIL_IF_NEW | cf::READ, 0);
    assert_eq!(status, denied());
    assert_no_handle(status, parms.handle.get());
}

#[test]
fn relative_host_symlink_climbing_out_is_not_followed() {
    let tree = Tree::new();
    symlink("../outside", tree.host("rel")).expect("symlink");
    let (status, _) =
        guest(&tree, ":symlinks=allow").create("/rel/secret", cf::FAIL_IF_NEW | cf::READ, 0);
    assert_eq!(status, denied());
}

#[test]
fn chained_symlinks_climbing_out_are_not_followed() {
    let tree = Tree::new();
    symlink("b", tree.host("a")).expect("symlink");
    symlink("../outside", tree.host("b")).expect("symlink");
    let (status, _) =
        guest(&tree, ":symlinks=inside").create("/a/secret", cf::FAIL_IF_NEW | cf::READ, 0);
    assert_eq!(status, denied());
}

#[test]
fn symlink_into_proc_is_not_followed() {
    let tree = Tree::new();
    symlink("/proc/self/root", tree.host("proc")).expect("symlink");
    let (status, _) =
        guest(&tree, ":symlinks=allow").create("/proc/etc/passwd", cf::FAIL_IF_NEW | cf::READ, 0);
    assert_eq!(status, denied());
}

#[test]
fn opendir_through_an_escaping_directory_link_is_refused() {
    let tree = Tree::new();
    link_to_outside(&tree, "out");
    assert_eq!(
        guest(&tree, ":symlinks=allow")
            .create("/out", cf::OPENDIR, 0)
            .0,
        denied()
    );
}

#[test]
fn creating_a_file_through_an_escaping_link_is_refused() {
    let tree = Tree::new();
    link_to_outside(&tree, "out");
    let (status, _) =
        guest(&tree, ":symlinks=allow").create("/out/planted", cf::CREAT, TYPE_FILE | 0o644);
    assert_eq!(status, denied());
    assert_outside_untouched(&tree);
}

#[test]
fn creating_through_a_dangling_link_pointing_outside_is_refused() {
    let tree = Tree::new();
    symlink(tree.outside().join("planted"), tree.host("dangling")).expect("symlink");
    let (status, _) =
        guest(&tree, ":symlinks=allow").create("/dangling", cf::CREAT, TYPE_FILE | 0o644);
    assert_eq!(status, denied());
    assert_outside_untouched(&tree);
}

#[test]
fn chmod_through_an_escaping_link_is_refused() {
    let tree = Tree::new();
    symlink("../outside/secret", tree.host("l")).expect("symlink");
    let guest = guest(&tree, ":symlinks=allow");
    let (status, parms) = guest.create("/l", cf::SETATTR, 0);
    assert_eq!(status, denied());
    assert_no_handle(status, parms.handle.get());
}

#[test]
fn stat_of_an_escaping_link_never_reports_the_target() {
    let tree = Tree::new();
    symlink("../outside/secret", tree.host("l")).expect("symlink");
    let hgcm = hgcm_with(&tree.share_entry("data", ":symlinks=allow"));
    let client = connect(&hgcm);
    call_on(&hgcm, client, Function::SET_UTF8, vec![]);
    let mut follower = Guest {
        hgcm,
        client,
        root: 0,
    };
    follower.root = follower.map("data").1;
    let (status, result, info) = follower.stat("/l");
    assert_eq!((status, result), (0, FILE_EXISTS));
    assert_eq!(info.attr.mode.get() & TYPE_MASK, TYPE_SYMLINK);
    assert_eq!(info.object_size.get(), "../outside/secret".len() as i64);
}

#[test]
fn listing_never_describes_an_escaping_links_target() {
    let tree = Tree::new();
    symlink("../outside/secret", tree.host("l")).expect("symlink");
    let hgcm = hgcm_with(&tree.share_entry("data", ":symlinks=allow"));
    let client = connect(&hgcm);
    call_on(&hgcm, client, Function::SET_UTF8, vec![]);
    let mut follower = Guest {
        hgcm,
        client,
        root: 0,
    };
    follower.root = follower.map("data").1;
    let entries = follower.list_dir("/");
    let l = entries.iter().find(|e| e.name == "l").expect("listed");
    assert_eq!(l.info.attr.mode.get() & TYPE_MASK, TYPE_SYMLINK);
}

#[test]
fn readlink_below_an_escaping_link_is_refused() {
    let tree = Tree::new();
    symlink("secret", tree.outside().join("inner")).expect("symlink");
    link_to_outside(&tree, "out");
    let (status, target) = guest(&tree, ":symlinks=allow").readlink("/out/inner");
    assert_eq!(status, denied());
    assert!(target.is_empty());
    std::fs::remove_file(tree.outside().join("inner")).expect("cleanup");
}

#[test]
fn deny_policy_follows_no_link_at_all() {
    let tree = Tree::new();
    std::fs::create_dir(tree.host("real")).expect("mkdir");
    std::fs::write(tree.host("real/f"), b"").expect("write");
    symlink("real", tree.host("alias")).expect("symlink");
    let (status, _) =
        guest(&tree, ":symlinks=deny").create("/alias/f", cf::FAIL_IF_NEW | cf::READ, 0);
    assert_eq!(status, st(Status::VERR_TOO_MANY_SYMLINKS));
}

#[test]
fn renaming_into_an_escaping_link_is_refused() {
    let tree = Tree::new();
    std::fs::write(tree.host("f"), b"inside").expect("write");
    link_to_outside(&tree, "out");
    assert_eq!(
        guest(&tree, ":symlinks=allow").rename("/f", "/out/f", 5),
        denied()
    );
    assert!(tree.host("f").exists());
    assert_outside_untouched(&tree);
}

#[test]
fn removing_through_an_escaping_link_is_refused() {
    let tree = Tree::new();
    link_to_outside(&tree, "out");
    assert_eq!(
        guest(&tree, ":symlinks=allow").remove("/out/secret", 1),
        denied()
    );
    assert_outside_untouched(&tree);
}

// ---------------------------------------------------------------------------------------------
// Guest-created symlinks
// ---------------------------------------------------------------------------------------------

#[test]
fn inside_policy_refuses_targets_climbing_out_of_a_subdirectory() {
    let tree = Tree::new();
    std::fs::create_dir(tree.host("d")).expect("mkdir");
    let guest = guest(&tree, ":symlinks=inside");
    assert_eq!(guest.symlink("/d/l", "../../outside/secret").0, denied());
    assert!(std::fs::symlink_metadata(tree.host("d/l")).is_err());
}

#[test]
fn inside_policy_measures_depth_physically_not_from_the_guest_path() {
    let tree = Tree::new();
    std::fs::create_dir(tree.host("deep")).expect("mkdir");
    symlink("..", tree.host("deep/up")).expect("symlink");
    let guest = guest(&tree, ":symlinks=inside");
    // "/deep/up" is the share root, so "../outside" would climb out.
    assert_eq!(guest.symlink("/deep/up/l", "../outside/secret").0, denied());
    assert_eq!(guest.symlink("/deep/../l", "../outside/secret").0, denied());
    assert!(std::fs::symlink_metadata(tree.host("l")).is_err());
}

#[test]
fn inside_policy_refuses_absolute_targets() {
    let tree = Tree::new();
    let guest = guest(&tree, ":symlinks=inside");
    assert_eq!(
        guest
            .symlink("/l", &tree.outside().join("secret").to_string_lossy())
            .0,
        denied()
    );
}

#[test]
fn symlink_placed_outside_through_dot_dot_is_refused() {
    let tree = Tree::new();
    let guest = guest(&tree, ":symlinks=allow");
    assert_eq!(guest.symlink("/../outside/l", "secret").0, denied());
    assert_outside_untouched(&tree);
}

#[test]
fn link_created_under_allow_is_still_not_followed_out_by_the_host() {
    let tree = Tree::new();
    let guest = guest(&tree, ":symlinks=allow");
    assert_eq!(guest.symlink("/escape", "../outside").0, 0);
    let (status, _) = guest.create("/escape/secret", cf::FAIL_IF_NEW | cf::READ, 0);
    assert_eq!(status, denied());
    let (status, _) = guest.create("/escape/new", cf::CREAT, TYPE_FILE | 0o644);
    assert_eq!(status, denied());
    assert_outside_untouched(&tree);
}

#[test]
fn symlink_target_with_an_embedded_nul_is_refused() {
    let tree = Tree::new();
    let guest = guest(&tree, ":symlinks=allow");
    let outcome = guest.call(
        Function::SYMLINK,
        vec![
            Parm::U32(guest.root),
            to_host(&shfl("/l")),
            to_host(&shfl_bytes(b"inside\0/../../outside")),
            from_host(92),
        ],
    );
    assert_eq!(outcome.status, st(Status::VERR_INVALID_PARAMETER));
    assert!(std::fs::symlink_metadata(tree.host("l")).is_err());
}

// ---------------------------------------------------------------------------------------------
// Races: symlinks swapped in while operations run
// ---------------------------------------------------------------------------------------------

/// Swaps `share/x` (a directory) and `share/y` (a link to the outside) back and forth with
/// `RENAME_EXCHANGE` until dropped.
struct Swapper {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Swapper {
    fn start(tree: &Tree) -> Swapper {
        std::fs::create_dir(tree.host("x")).expect("mkdir");
        std::fs::write(tree.host("x/secret"), b"harmless").expect("write");
        link_to_outside(tree, "y");
        let dir = std::fs::File::open(tree.share()).expect("open share");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            while !flag.load(Ordering::Relaxed) {
                // SAFETY: both names are NUL-terminated literals and `dir` is an open directory.
                unsafe {
                    libc::syscall(
                        libc::SYS_renameat2,
                        dir.as_raw_fd(),
                        c"x".as_ptr(),
                        dir.as_raw_fd(),
                        c"y".as_ptr(),
                        libc::RENAME_EXCHANGE,
                    );
                }
            }
        });
        Swapper {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Swapper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

const RACE_TIME: Duration = Duration::from_millis(400);

#[test]
fn reads_racing_a_symlink_swap_never_see_the_outside() {
    let tree = Tree::new();
    let guest = guest(&tree, ":symlinks=allow");
    let swapper = Swapper::start(&tree);
    let start = Instant::now();
    let mut opened = 0;
    while start.elapsed() < RACE_TIME {
        let (status, parms) = guest.create("/x/secret", cf::FAIL_IF_NEW | cf::READ, 0);
        if status == 0 && parms.handle.get() != SHFL_HANDLE_NIL {
            opened += 1;
            let (_, data) = guest.read(parms.handle.get(), 0, 64);
            assert_ne!(data, SECRET, "read the outside through a swapped link");
            guest.close(parms.handle.get());
        }
    }
    drop(swapper);
    assert!(opened > 0, "the race never let a legitimate open through");
}

#[test]
fn creates_racing_a_symlink_swap_never_land_outside() {
    let tree = Tree::new();
    let guest = guest(&tree, ":symlinks=allow");
    let swapper = Swapper::start(&tree);
    let start = Instant::now();
    let mut i = 0;
    while start.elapsed() < RACE_TIME {
        let (_, parms) = guest.create(&format!("/x/planted{i}"), cf::CREAT, TYPE_FILE | 0o644);
        if parms.handle.get() != SHFL_HANDLE_NIL {
            guest.close(parms.handle.get());
        }
        guest.mkdir(&format!("/x/dir{i}"), 0o755);
        i += 1;
    }
    drop(swapper);
    assert_outside_untouched(&tree);
}

#[test]
fn renames_racing_a_symlink_swap_never_land_outside() {
    let tree = Tree::new();
    let guest = guest(&tree, ":symlinks=allow");
    let swapper = Swapper::start(&tree);
    let start = Instant::now();
    let mut i = 0;
    while start.elapsed() < RACE_TIME {
        let name = format!("/f{i}");
        guest.put(&name, b"moving");
        guest.rename(&name, &format!("/x/f{i}"), 5);
        i += 1;
    }
    drop(swapper);
    assert_outside_untouched(&tree);
}

// ---------------------------------------------------------------------------------------------
// Cached parent directories (the share's directory cache) moved, replaced or swapped
// ---------------------------------------------------------------------------------------------

/// `share/d/f` ("inside") and `outside/d/f` (the secret), with `/d/f` looked up once so `d` is
/// in the directory cache.
fn cached_directory(tree: &Tree, guest: &Guest) {
    std::fs::create_dir(tree.host("d")).expect("mkdir");
    std::fs::write(tree.host("d/f"), b"inside").expect("write");
    std::fs::create_dir(tree.outside().join("d")).expect("mkdir");
    std::fs::write(tree.outside().join("d/f"), SECRET).expect("write");
    let (status, result, info) = guest.stat("/d/f");
    assert_eq!(
        (status, result, info.object_size.get()),
        (0, FILE_EXISTS, 6)
    );
}

/// `/d/f` is absent to the guest, and creating below `/d` puts nothing anywhere.
fn assert_d_is_gone(tree: &Tree, guest: &Guest) {
    let (status, result, _) = guest.stat("/d/f");
    assert!(status != 0 || result != FILE_EXISTS, "stat saw {result}");
    let (_, parms) = guest.create("/d/planted", cf::CREAT, TYPE_FILE | 0o644);
    assert_eq!(
        parms.handle.get(),
        SHFL_HANDLE_NIL,
        "created below a vanished /d"
    );
    guest.mkdir("/d/planted-dir", 0o755);
    for dir in [tree.outside().join("d"), tree.dir.path().join("moved")] {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let names: Vec<_> = entries.map(|e| e.expect("entry").file_name()).collect();
            assert_eq!(names, ["f"], "{} changed", dir.display());
        }
    }
}

#[test]
fn a_cached_directory_moved_out_of_the_share_is_no_longer_reachable() {
    let tree = Tree::new();
    let guest = guest(&tree, "");
    cached_directory(&tree, &guest);
    std::fs::rename(tree.host("d"), tree.dir.path().join("moved")).expect("mv");
    assert_d_is_gone(&tree, &guest);
}

#[test]
fn a_cached_directory_exchanged_with_an_outside_one_shows_the_new_inside_one() {
    let tree = Tree::new();
    let guest = guest(&tree, "");
    cached_directory(&tree, &guest);
    std::fs::remove_file(tree.outside().join("d/f")).expect("rm");
    std::fs::write(tree.outside().join("d/f"), b"swapped in").expect("write");
    exchange(&tree.host("d"), &tree.outside().join("d"));
    let (status, result, info) = guest.stat("/d/f");
    assert_eq!(
        (status, result, info.object_size.get()),
        (0, FILE_EXISTS, 10)
    );
    guest.put("/d/new", b"x");
    assert!(tree.host("d/new").exists());
    assert!(
        !tree.outside().join("d/new").exists(),
        "wrote into the old, now outside, d"
    );
}

#[test]
fn a_cached_directory_replaced_by_a_link_to_the_outside_is_not_followed() {
    let tree = Tree::new();
    let guest = guest(&tree, "");
    cached_directory(&tree, &guest);
    std::fs::remove_dir_all(tree.host("d")).expect("rm -r");
    symlink(tree.outside().join("d"), tree.host("d")).expect("symlink");
    assert_d_is_gone(&tree, &guest);
}

#[test]
fn a_cached_directory_the_guest_renames_is_found_under_its_new_name_only() {
    let tree = Tree::new();
    let guest = guest(&tree, "");
    cached_directory(&tree, &guest);
    assert_eq!(guest.rename("/d", "/e", 2), 0);
    assert_eq!(guest.stat("/e/f").1, FILE_EXISTS);
    let (status, result, _) = guest.stat("/d/f");
    assert!(status != 0 || result != FILE_EXISTS);
}

/// `renameat2(a, b, RENAME_EXCHANGE)` on absolute host paths.
fn exchange(a: &std::path::Path, b: &std::path::Path) {
    use std::os::unix::ffi::OsStrExt;
    let a = std::ffi::CString::new(a.as_os_str().as_bytes()).expect("path");
    let b = std::ffi::CString::new(b.as_os_str().as_bytes()).expect("path");
    // SAFETY: both paths are NUL-terminated C strings that outlive the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    assert_eq!(ret, 0, "RENAME_EXCHANGE");
}

#[test]
fn lookups_racing_directory_swaps_end_on_the_directory_that_is_inside() {
    let tree = Tree::new();
    let guest = guest(&tree, "");
    cached_directory(&tree, &guest);
    let (inside, outside) = (tree.host("d"), tree.outside().join("d"));
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = {
        let (stop, inside, outside) = (stop.clone(), inside.clone(), outside.clone());
        std::thread::spawn(move || {
            let mut count = 0u64;
            while !stop.load(Ordering::Relaxed) {
                exchange(&inside, &outside);
                count += 1;
            }
            count
        })
    };
    let start = Instant::now();
    let mut lookups = 0;
    while start.elapsed() < RACE_TIME {
        guest.stat("/d/f");
        guest.stat(&format!("/d/missing{lookups}"));
        lookups += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swaps.join().expect("swapper");
    assert!(swaps > 0 && lookups > 0);
    // Whatever the cache went through, it now answers for the directory that is inside.
    let expected =
        i64::try_from(std::fs::metadata(inside.join("f")).expect("stat").len()).expect("size");
    for _ in 0..20 {
        let (status, result, info) = guest.stat("/d/f");
        assert_eq!(
            (status, result, info.object_size.get()),
            (0, FILE_EXISTS, expected)
        );
    }
    guest.put("/d/after-race", b"x");
    assert!(inside.join("after-race").exists());
    assert!(
        !outside.join("after-race").exists(),
        "wrote into the directory now outside"
    );
}

// ---------------------------------------------------------------------------------------------
// Read-only shares
// ---------------------------------------------------------------------------------------------

#[test]
fn read_only_share_refuses_symlink_even_with_allow() {
    let tree = Tree::new();
    let guest = guest(&tree, ":ro:symlinks=allow");
    assert_eq!(guest.symlink("/l", "x").0, st(Status::VERR_WRITE_PROTECT));
    assert!(std::fs::symlink_metadata(tree.host("l")).is_err());
}

#[test]
fn read_only_share_refuses_copy_file_into_it() {
    let tree = Tree::new();
    let other = TempDir::new();
    std::fs::write(other.path().join("src"), b"x").expect("write");
    let config = format!(
        "{} share=rw:{}",
        tree.share_entry("ro", ":ro"),
        other.path().display()
    );
    let guest = Guest::mount(&config, "ro");
    let (_, rw_root) = guest.map("rw");
    let outcome = guest.call(
        Function::COPY_FILE,
        vec![
            Parm::U32(rw_root),
            to_host(&shfl("/src")),
            Parm::U32(guest.root),
            to_host(&shfl("/copy")),
            Parm::U32(0),
        ],
    );
    assert_eq!(outcome.status, st(Status::VERR_WRITE_PROTECT));
    assert!(!tree.host("copy").exists());
}

#[test]
fn read_only_share_refuses_truncation_through_a_read_handle() {
    let tree = Tree::new();
    std::fs::write(tree.host("f"), b"keep").expect("write");
    let guest = guest(&tree, ":ro");
    let handle = guest.open("/f", cf::FAIL_IF_NEW | cf::READ);
    let mut info = FsObjInfo::new_zeroed();
    info.object_size = I64::new(0);
    assert_eq!(
        guest.information(handle, 0x5, &info).0,
        st(Status::VERR_WRITE_PROTECT)
    );
    let outcome = guest.call(
        Function::SET_FILE_SIZE,
        vec![Parm::U32(guest.root), Parm::U64(handle), Parm::U64(0)],
    );
    assert_eq!(outcome.status, st(Status::VERR_WRITE_PROTECT));
    assert_eq!(std::fs::read(tree.host("f")).expect("read"), b"keep");
}

#[test]
fn read_only_share_refuses_close_and_remove_and_flush() {
    let tree = Tree::new();
    std::fs::write(tree.host("f"), b"keep").expect("write");
    let guest = guest(&tree, ":ro");
    let handle = guest.open("/f", cf::FAIL_IF_NEW | cf::READ);
    let flush = guest.call(
        Function::FLUSH,
        vec![Parm::U32(guest.root), Parm::U64(handle)],
    );
    assert_eq!(flush.status, st(Status::VERR_WRITE_PROTECT));
    let outcome = guest.call(
        Function::CLOSE_AND_REMOVE,
        vec![
            Parm::U32(guest.root),
            to_host(&shfl("/f")),
            Parm::U32(1),
            Parm::U64(handle),
        ],
    );
    assert_eq!(outcome.status, st(Status::VERR_WRITE_PROTECT));
    assert!(tree.host("f").exists());
}

#[test]
fn read_only_share_refuses_a_write_only_open() {
    let tree = Tree::new();
    std::fs::write(tree.host("f"), b"keep").expect("write");
    let (status, parms) = guest(&tree, ":ro").create("/f", cf::FAIL_IF_NEW | cf::WRITE, 0);
    assert_eq!(status, st(Status::VERR_WRITE_PROTECT));
    assert_no_handle(status, parms.handle.get());
}

// ---------------------------------------------------------------------------------------------
// Malformed strings
// ---------------------------------------------------------------------------------------------

fn create_raw(guest: &Guest, path: Vec<u8>) -> i32 {
    let request = parms(cf::CREAT, TYPE_FILE | 0o644);
    guest
        .call(
            Function::CREATE,
            vec![
                Parm::U32(guest.root),
                both(&path),
                both(zerocopy::IntoBytes::as_bytes(&request)),
            ],
        )
        .status
}

fn share_is_empty(tree: &Tree) -> bool {
    std::fs::read_dir(tree.share())
        .expect("share")
        .next()
        .is_none()
}

#[test]
fn path_with_an_embedded_nul_is_refused() {
    let tree = Tree::new();
    let guest = guest(&tree, "");
    assert_eq!(
        create_raw(&guest, shfl_bytes(b"/a\0/../../outside")),
        st(Status::VERR_INVALID_PARAMETER)
    );
    assert!(share_is_empty(&tree));
}

#[test]
fn path_whose_size_exceeds_the_buffer_is_refused() {
    let tree = Tree::new();
    let guest = guest(&tree, "");
    let mut path = shfl("/a");
    path[0..2].copy_from_slice(&1000u16.to_le_bytes());
    assert_eq!(create_raw(&guest, path), st(Status::VERR_INVALID_PARAMETER));
}

#[test]
fn path_without_a_terminator_is_refused() {
    let tree = Tree::new();
    let guest = guest(&tree, "");
    let mut path = shfl("/abc");
    let last = path.len() - 1;
    path[last] = b'x';
    assert_eq!(create_raw(&guest, path), st(Status::VERR_INVALID_PARAMETER));
    assert!(share_is_empty(&tree));
}

#[test]
fn path_with_invalid_utf8_is_refused() {
    let tree = Tree::new();
    let guest = guest(&tree, "");
    assert_eq!(
        create_raw(&guest, shfl_bytes(b"/\xc0\xaf..")),
        st(Status::VERR_INVALID_PARAMETER)
    );
    assert!(share_is_empty(&tree));
}

#[test]
fn header_only_and_empty_string_buffers_are_refused() {
    let tree = Tree::new();
    let guest = guest(&tree, "");
    assert_eq!(
        create_raw(&guest, vec![0, 0, 0, 0]),
        st(Status::VERR_INVALID_PARAMETER)
    );
    assert_eq!(
        create_raw(&guest, Vec::new()),
        st(Status::VERR_INVALID_PARAMETER)
    );
}

#[test]
fn overlong_names_and_paths_are_refused_without_effect() {
    let tree = Tree::new();
    let guest = guest(&tree, "");
    let long_name = format!("/{}", "n".repeat(300));
    let (status, _) = guest.create(&long_name, cf::CREAT, TYPE_FILE | 0o644);
    assert_eq!(status, st(Status::VERR_FILENAME_TOO_LONG));
    let long_path = "/d".repeat(3000);
    let (status, parms) = guest.create(&long_path, cf::CREAT, TYPE_FILE | 0o644);
    assert!(status == st(Status::VERR_FILENAME_TOO_LONG) || parms.result.get() == 1);
    assert!(share_is_empty(&tree));
}

#[test]
fn create_with_a_guest_to_host_only_result_buffer_has_no_side_effect() {
    let tree = Tree::new();
    let guest = guest(&tree, "");
    let request = parms(cf::CREAT, TYPE_FILE | 0o644);
    let outcome = guest.call(
        Function::CREATE,
        vec![
            Parm::U32(guest.root),
            both(&shfl("/planted")),
            to_host(zerocopy::IntoBytes::as_bytes(&request)),
        ],
    );
    assert_eq!(outcome.status, st(Status::VERR_INVALID_PARAMETER));
    assert!(share_is_empty(&tree));
}

#[test]
fn dot_names_cannot_be_removed_or_renamed() {
    let tree = Tree::new();
    std::fs::create_dir(tree.host("d")).expect("mkdir");
    let guest = guest(&tree, "");
    assert_eq!(guest.remove("/d/..", 2), st(Status::VERR_INVALID_NAME));
    assert_eq!(guest.remove("/d/.", 2), st(Status::VERR_INVALID_NAME));
    assert_eq!(
        guest.rename("/d/..", "/x", 0),
        st(Status::VERR_INVALID_NAME)
    );
    assert!(tree.host("d").exists());
    assert_outside_untouched(&tree);
}

#[test]
fn the_share_root_itself_cannot_be_removed_or_renamed() {
    let tree = Tree::new();
    let guest = guest(&tree, "");
    assert_eq!(guest.remove("/", 2), denied());
    assert_eq!(guest.rename("/", "/x", 0), denied());
    assert!(tree.share().exists());
}

#[test]
fn remove_with_the_symlink_flag_does_not_delete_a_regular_file() {
    let tree = Tree::new();
    std::fs::write(tree.host("f"), b"").expect("write");
    let guest = guest(&tree, "");
    assert_eq!(guest.remove("/f", 5), st(Status::VERR_INVALID_PARAMETER));
    assert!(tree.host("f").exists());
}

// ---------------------------------------------------------------------------------------------
// Handles and roots
// ---------------------------------------------------------------------------------------------

#[test]
fn a_handle_of_one_client_is_useless_to_another() {
    let tree = Tree::new();
    std::fs::write(tree.host("f"), b"private").expect("write");
    let owner = guest(&tree, "");
    let handle = owner.open("/f", cf::FAIL_IF_NEW | cf::READ);
    let client = connect(&owner.hgcm);
    call_on(&owner.hgcm, client, Function::SET_UTF8, vec![]);
    let mut thief = Guest {
        hgcm: owner.hgcm.clone(),
        client,
        root: 0,
    };
    thief.root = thief.map("data").1;
    assert_eq!(thief.read(handle, 0, 64).0, st(Status::VERR_INVALID_HANDLE));
    assert_eq!(thief.close(handle), st(Status::VERR_INVALID_HANDLE));
    assert_eq!(owner.read(handle, 0, 64), (0, b"private".to_vec()));
}

#[test]
fn a_handle_used_under_another_root_is_invalid() {
    let tree = Tree::new();
    let other = TempDir::new();
    std::fs::write(tree.host("f"), b"").expect("write");
    let config = format!(
        "{} share=two:{}",
        tree.share_entry("data", ""),
        other.path().display()
    );
    let guest = Guest::mount(&config, "data");
    let handle = guest.open("/f", cf::FAIL_IF_NEW | cf::READ);
    let (_, two) = guest.map("two");
    let outcome = guest.call(
        Function::READ,
        vec![
            Parm::U32(two),
            Parm::U64(handle),
            Parm::U64(0),
            Parm::U32(1),
            from_host(1),
        ],
    );
    assert_eq!(outcome.status, st(Status::VERR_INVALID_HANDLE));
}

#[test]
fn forged_handle_values_are_refused() {
    let tree = Tree::new();
    let guest = guest(&tree, "");
    for handle in [0x1_0000_0001, 0xDEAD_BEEF, 0x7FFF_FFFF_FFFF_FFFF, 1, 2] {
        assert_eq!(
            guest.read(handle, 0, 1).0,
            st(Status::VERR_INVALID_HANDLE),
            "{handle:#x}"
        );
    }
    assert_eq!(guest.read(0, 0, 1).0, st(Status::VERR_INVALID_PARAMETER));
}

#[test]
fn roots_the_client_did_not_map_or_that_do_not_exist_are_refused() {
    let tree = Tree::new();
    let other = TempDir::new();
    let config = format!(
        "{} share=two:{}",
        tree.share_entry("data", ""),
        other.path().display()
    );
    let guest = Guest::mount(&config, "data");
    for root in [1, 63, 64, u32::MAX] {
        let outcome = guest.call(
            Function::CREATE,
            vec![
                Parm::U32(root),
                both(&shfl("/")),
                both(zerocopy::IntoBytes::as_bytes(&parms(cf::STAT, 0))),
            ],
        );
        assert_eq!(
            outcome.status,
            st(Status::VERR_INVALID_PARAMETER),
            "root {root}"
        );
    }
}

#[test]
fn one_client_exhausting_its_handles_does_not_starve_another() {
    let tree = Tree::new();
    std::fs::write(tree.host("f"), b"").expect("write");
    let config = format!("{} max_handles=8", tree.share_entry("data", ""));
    let greedy = Guest::mount(&config, "data");
    for _ in 0..8 {
        greedy.open("/f", cf::FAIL_IF_NEW | cf::READ);
    }
    assert_eq!(
        greedy.create("/f", cf::FAIL_IF_NEW | cf::READ, 0).0,
        st(Status::VERR_TOO_MANY_OPEN_FILES)
    );
    let client = connect(&greedy.hgcm);
    call_on(&greedy.hgcm, client, Function::SET_UTF8, vec![]);
    let mut other = Guest {
        hgcm: greedy.hgcm.clone(),
        client,
        root: 0,
    };
    other.root = other.map("data").1;
    other.open("/f", cf::FAIL_IF_NEW | cf::READ);
}

#[test]
fn list_on_a_file_handle_is_refused() {
    let tree = Tree::new();
    std::fs::write(tree.host("f"), b"").expect("write");
    let guest = guest(&tree, "");
    let handle = guest.open("/f", cf::FAIL_IF_NEW | cf::READ);
    assert_eq!(
        guest.list_once(handle, 0, 16384).0,
        st(Status::VERR_INVALID_HANDLE)
    );
}

#[test]
fn information_size_beyond_the_buffer_is_refused() {
    let tree = Tree::new();
    let guest = guest(&tree, "");
    let outcome = guest.call(
        Function::INFORMATION,
        vec![
            Parm::U32(guest.root),
            Parm::U64(0),
            Parm::U32(0x10),
            Parm::U32(400),
            both(&[0; 40]),
        ],
    );
    assert_eq!(outcome.status, st(Status::VERR_INVALID_PARAMETER));
}

#[test]
fn overlong_list_filter_pattern_is_refused() {
    let tree = Tree::new();
    let guest = guest(&tree, "");
    let (_, parms) = guest.create("/", cf::OPENDIR, 0);
    let outcome = guest.call(
        Function::LIST,
        vec![
            Parm::U32(guest.root),
            Parm::U64(parms.handle.get()),
            Parm::U32(0),
            Parm::U32(16384),
            to_host(&shfl(&format!("/{}", "*?".repeat(200)))),
            from_host(16384),
            Parm::U32(0),
            Parm::U32(0),
        ],
    );
    assert_eq!(outcome.status, st(Status::VERR_INVALID_PARAMETER));
}

// ---------------------------------------------------------------------------------------------
// Objects that could stall or drive the host
// ---------------------------------------------------------------------------------------------

#[test]
fn opening_a_fifo_neither_hangs_nor_hands_out_a_handle() {
    let tree = Tree::new();
    let fifo =
        std::ffi::CString::new(tree.host("fifo").to_string_lossy().as_bytes()).expect("path");
    // SAFETY: `fifo` is a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let guest = guest(&tree, "");
    let (status, parms) = guest.create("/fifo", cf::FAIL_IF_NEW | cf::READ, 0);
    assert_eq!(status, denied());
    assert_no_handle(status, parms.handle.get());
    // Stat still works: the guest sees it exists.
    assert_eq!(guest.stat("/fifo").1, FILE_EXISTS);
}

#[test]
fn sixty_five_parked_waits_are_bounded() {
    let tree = Tree::new();
    let guest = guest(&tree, "");
    let version = u32_of(
        &guest
            .call(Function::WAIT_FOR_MAPPINGS_CHANGES, vec![Parm::U32(0)])
            .params[0],
    );
    let mut pending = Vec::new();
    for _ in 0..64 {
        pending.push(submit(
            &guest.hgcm,
            guest.client,
            Function::WAIT_FOR_MAPPINGS_CHANGES,
            vec![Parm::U32(version)],
        ));
    }
    let refused = guest.call(
        Function::WAIT_FOR_MAPPINGS_CHANGES,
        vec![Parm::U32(version)],
    );
    assert_eq!(refused.status, st(Status::VERR_OUT_OF_RESOURCES));
    assert_eq!(
        guest
            .call(Function::CANCEL_MAPPINGS_CHANGES_WAITS, vec![])
            .status,
        0
    );
    for (_, rx) in pending {
        assert_eq!(
            rx.recv_timeout(DEADLINE).expect("completed").status,
            st(Status::VERR_CANCELLED)
        );
    }
}

#[test]
fn setattr_mode_bits_cannot_plant_setuid_binaries() {
    let tree = Tree::new();
    std::fs::write(tree.host("tool"), b"#!/bin/sh").expect("write");
    let guest = guest(&tree, "");
    let (_, parms) = guest.create("/tool", cf::SETATTR, 0);
    let mut info = FsObjInfo::new_zeroed();
    info.attr.mode = U32::new(TYPE_FILE | 0o6755);
    assert_eq!(guest.information(parms.handle.get(), 0x9, &info).0, 0);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(tree.host("tool"))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o7000, 0);
}
