//! Boots Debian's stock kernel under QEMU/TCG with the VMMDev device served by `vmmdev-vfio-user`.
//!
//! This is the acceptance test of the device, the transport, the HGCM framework and the guest tools
//! together: the kernel's own, unmodified `vboxguest` must probe the device, and every scripted check of
//! linux-guest.md §7 that the image carries (items 1–15: HGCM against the example echo service, and
//! guest properties against VBoxGuestPropSvc) must pass, and a host directory must mount with the
//! kernel's own vboxsf and pass the shared-folder checks of items 18–41 (steps/70-sf.sh) against
//! VBoxSharedFolders, including a read-only share and a symlink that points out of the share. The shared
//! clipboard (steps/80-clipboard.sh) must carry text, HTML and bitmaps both ways against
//! VBoxSharedClipboard, enforce every mode, and survive a guest program that never answers the host.
//! Port 0x504 is not part of the vfio-user device, so under QEMU the backdoor log is
//! captured by QEMU's own debug console on that port, and the test checks the guest's text arrived there.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use vmmdev_e2e::artifacts::device_test_or_skip;
use vmmdev_e2e::backend::{BootSpec, DeviceServer};
use vmmdev_e2e::expect::Expectations;
use vmmdev_e2e::host_agent::control_socket_path;
use vmmdev_e2e::host_side;
use vmmdev_e2e::qemu::QemuTcg;
use vmmdev_e2e::runner::{RunOptions, boot_with_agent};
use vmmdev_e2e::steps::DEVICE_STEPS;

/// The text the `backdoor-log` step writes through the LOG ioctl.
const BACKDOOR_TEXT: &str = "hello-0x504";

/// The steps beyond [`DEVICE_STEPS`] that this boot adds: guest properties, the share mount and the
/// shared-folder checks, each of which must pass.
const SERVICE_STEPS: &[&str] = &[
    "host-agent",
    "guestprop-set-get",
    "guestprop-from-host",
    "guestprop-enumerate",
    "guestprop-wait",
    "guestprop-wait-signal",
    "guestprop-wait-timeout",
    "guestprop-wait-kill",
    "guestprop-wait-many",
    "guestprop-host-wait",
    "guestprop-host-wait-cli",
    "guestprop-wait-host-set",
    "guestprop-rdonlyguest",
    "guestprop-user-policy",
    "guestprop-get-rtt",
    "demo-mount",
    "sf-mount-unknown",
    "sf-list",
    "sf-read",
    "sf-write-readback",
    "sf-append-overwrite",
    "sf-truncate",
    "sf-otrunc-mode",
    "sf-mkdir-rmdir",
    "sf-rename",
    "sf-unlink",
    "sf-chmod-utimes",
    "sf-symlink",
    "sf-statfs",
    "sf-big-copy",
    "sf-exec",
    "sf-mmap-write",
    "sf-unicode",
    "sf-read-only",
    "sf-second-mount",
    "sf-escape",
    "sf-symlink-outside",
    "sf-concurrent-reads",
    "sf-symlink-deny",
    "sf-irq-quiet",
    "sf-host-change",
    "sf-reprobe",
    "guestd-start",
    "guestd-guest-info",
    "guestd-info-update",
    "guestd-automount",
    "guestd-runtime-add",
    "guestd-runtime-remove",
    "guestd-stop",
    "clip-host-text",
    "clip-guest-text",
    "clip-html",
    "clip-bitmap",
    "clip-watch",
    "clip-modes",
    "clip-silent-guest",
    "clip-bridge-none",
];

/// The guest property the host sets before boot, as the `guestprop-from-host` step expects it.
const HOST_PROPERTY: &str = "/Test/FromHost=hello-from-host";

/// The guest-property policy `guestprop-user-policy` checks: a prefix hidden from users and one read-only
/// for them.
const PROPERTY_POLICY: &[&str] = &[
    "user:none:/Test/Policy/Hidden/",
    "user:ro:/Test/Policy/UserRo/",
];
/// The property the host sets before boot in each of the [`PROPERTY_POLICY`] prefixes.
const POLICY_PROPERTIES: &[&str] = &[
    "/Test/Policy/Hidden/Key=hidden",
    "/Test/Policy/UserRo/Key=user-ro",
];

/// The share the host offers and `demo-mount` mounts.
const SHARE: &str = "e2e";

/// The name the `sf-unicode` step creates in the share's `work-unicode` directory.
const UNICODE_NAME: &str = "héllo_ü_日本.txt";

/// The share with the default symlink policy (deny) the `sf-symlink-deny` step mounts.
const NO_LINKS_SHARE: &str = "e2e-nolinks";

/// The modification time of `fixtures/lines.txt`, as `sf-list` expects it.
const FIXTURE_MTIME: u64 = 1_000_000_000;

/// The permission bits of `fixtures/lines.txt`, as `sf-list` expects them.
const FIXTURE_MODE: u32 = 0o640;

/// The modification time `sf-chmod-utimes` sets: 2001-02-03 04:05:06 UTC (the guest has no time zone).
const GUEST_MTIME: u64 = 981_173_106;

/// The read-only share the `sf-read-only` step mounts.
const READ_ONLY_SHARE: &str = "e2e-ro";

/// Fills the shares' host directories with what the shared-folder steps (steps/70-sf.sh) expect: files the
/// guest reads, an empty and a 600-entry directory, and an absolute symlink to a host directory outside
/// the share whose file the guest must not reach. Returns the read-write, the read-only and the
/// no-symlinks directory.
fn prepare_shares(dir: &Path) -> std::io::Result<(PathBuf, PathBuf, PathBuf)> {
    use std::os::unix::fs::PermissionsExt;

    let share_dir = dir.join("share");
    let read_only_dir = dir.join("share-ro");
    let no_links_dir = dir.join("share-nolinks");
    let outside_dir = dir.join("outside");
    for stale in [&share_dir, &read_only_dir, &no_links_dir, &outside_dir] {
        if stale.exists() {
            std::fs::remove_dir_all(stale)?;
        }
    }
    let fixtures = share_dir.join("fixtures");
    std::fs::create_dir_all(fixtures.join("empty"))?;
    std::fs::create_dir_all(fixtures.join("many"))?;
    std::fs::create_dir_all(&read_only_dir)?;
    std::fs::create_dir_all(&no_links_dir)?;
    std::fs::create_dir_all(&outside_dir)?;
    std::fs::write(share_dir.join("from-host.txt"), "hello from the host\n")?;
    let lines: String = (1..=20_000).map(|n| format!("line {n}\n")).collect();
    std::fs::write(fixtures.join("lines.txt"), lines)?;
    let fixture = std::fs::File::options()
        .write(true)
        .open(fixtures.join("lines.txt"))?;
    fixture.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(FIXTURE_MTIME))?;
    fixture.set_permissions(std::fs::Permissions::from_mode(FIXTURE_MODE))?;
    for n in 0..600 {
        std::fs::write(fixtures.join("many").join(format!("many-{n}")), "")?;
    }
    std::fs::write(outside_dir.join("secret.txt"), "HOST-SECRET\n")?;
    std::os::unix::fs::symlink(&outside_dir, share_dir.join("escape"))?;
    std::os::unix::fs::symlink("fixtures/lines.txt", share_dir.join("host-link"))?;
    std::fs::write(read_only_dir.join("ro.txt"), "read-only share\n")?;
    std::fs::write(share_dir.join("hv.txt"), "before\n")?;
    Ok((share_dir, read_only_dir, no_links_dir))
}

/// What the shared-folder steps left on the host: the bytes and attributes the guest wrote, the guest's
/// UTF-8 name as the same bytes, and the directory outside the share untouched.
fn check_host_side_of_the_shares(share_dir: &Path, outside_dir: &Path) {
    use std::os::unix::fs::PermissionsExt;

    let read = |path: &str| std::fs::read_to_string(share_dir.join(path)).unwrap_or_default();
    assert_eq!(
        read("work-write/w.txt"),
        "hello\n",
        "sf-write-readback on the host"
    );
    assert_eq!(
        read("work-append/w.txt"),
        "hXYlo\nmore\n",
        "sf-append-overwrite on the host"
    );
    assert_eq!(read("work-rename/db/r2"), "1\n", "sf-rename on the host");
    let mapped: String = (0..8192)
        .step_by(16)
        .map(|offset| format!("{offset:015}\n"))
        .collect();
    assert!(
        read("work-mmap/m.bin") == mapped,
        "sf-mmap-write: the host file lacks the pattern written through the mapping"
    );
    let chmodded = std::fs::metadata(share_dir.join("work-chmod/w.txt")).unwrap();
    assert_eq!(
        chmodded.permissions().mode() & 0o777,
        0o644,
        "sf-chmod-utimes: mode on the host"
    );
    let mtime = chmodded
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    assert_eq!(
        mtime.as_secs(),
        GUEST_MTIME,
        "sf-chmod-utimes: mtime on the host"
    );
    let unicode_name = share_dir.join("work-unicode").join(UNICODE_NAME);
    assert!(
        unicode_name.is_file(),
        "the guest's UTF-8 file name did not arrive as the same bytes: no {}",
        unicode_name.display()
    );
    let outside: Vec<_> = std::fs::read_dir(outside_dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(
        outside,
        ["secret.txt"],
        "the guest changed the directory outside the share"
    );
}

/// The host's side of `sf-host-change`: until `stop` is set, waits for the guest's `hv-request` in the
/// share, then rewrites `hv.txt` with a newer modification time and answers with `hv-done`.
fn rewrite_on_request(share_dir: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if share_dir.join("hv-request").exists() {
                let rewrite = || -> std::io::Result<()> {
                    let file = std::fs::File::create(share_dir.join("hv.txt"))?;
                    std::io::Write::write_all(&mut &file, b"after\n")?;
                    file.set_modified(SystemTime::now() + Duration::from_secs(10))?;
                    std::fs::write(share_dir.join("hv-done"), "")
                };
                if let Err(error) = rewrite() {
                    eprintln!("sf-host-change: rewriting hv.txt failed: {error}");
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
}

#[test]
fn stock_vboxguest_passes_every_check_against_the_vfio_user_device() {
    let test = "stock_vboxguest_passes_every_check_against_the_vfio_user_device";
    let Some(setup) = device_test_or_skip(test, Path::new(env!("CARGO_TARGET_TMPDIR"))) else {
        return;
    };
    let (artifacts, server, dir) = (setup.artifacts, setup.server, setup.dir);
    let debugcon = dir.join("port-0x504.log");
    let _ = std::fs::remove_file(&debugcon);
    let backend = QemuTcg::new(&artifacts.qemu).with_extra_args([
        "-chardev".to_owned(),
        format!("file,id=backdoor,path={}", debugcon.display()),
        "-device".to_owned(),
        "isa-debugcon,iobase=0x504,chardev=backdoor".to_owned(),
    ]);
    let (share_dir, read_only_dir, no_links_dir) = prepare_shares(&dir).unwrap();
    let auto_share_dir = host_side::guestd::prepare_auto_share(&dir).unwrap();
    let control_socket = control_socket_path(&dir);
    let mut device = DeviceServer::new(&server);
    device.args.extend([
        "--control".into(),
        control_socket.clone().into(),
        "--guest-property".into(),
        HOST_PROPERTY.into(),
        "--share".into(),
        format!("{SHARE}={},symlinks=inside", share_dir.display()).into(),
        "--share".into(),
        format!("{READ_ONLY_SHARE}={},ro", read_only_dir.display()).into(),
        "--share".into(),
        format!("{NO_LINKS_SHARE}={}", no_links_dir.display()).into(),
    ]);
    for rule in PROPERTY_POLICY {
        device
            .args
            .extend(["--guest-property-policy".into(), rule.into()]);
    }
    for property in POLICY_PROPERTIES {
        device
            .args
            .extend(["--guest-property".into(), property.into()]);
    }
    device.args.extend([
        "--share".into(),
        host_side::guestd::auto_share_argument(&auto_share_dir).into(),
    ]);
    let expected = Expectations::new().pass(DEVICE_STEPS).pass(SERVICE_STEPS);
    let mut spec = BootSpec::test(&artifacts.kernel, &artifacts.initrd, &expected.step_names())
        .with_device(device);
    spec.cmdline.push_str(&format!(" vmmdev.mount={SHARE}"));

    let stop_rewriter = Arc::new(AtomicBool::new(false));
    let rewriter = rewrite_on_request(share_dir.clone(), Arc::clone(&stop_rewriter));
    let run = boot_with_agent(
        host_side::agent(),
        &backend,
        &spec,
        &dir,
        &RunOptions::default(),
    );
    stop_rewriter.store(true, Ordering::Relaxed);
    rewriter.join().unwrap();
    let (run, _) = run.unwrap();

    if let Err(mismatch) = run.verify(&expected) {
        panic!("{mismatch}");
    }
    check_host_side_of_the_shares(&share_dir, &dir.join("outside"));
    let backdoor = std::fs::read_to_string(&debugcon).unwrap_or_default();
    assert!(
        backdoor.contains(BACKDOOR_TEXT),
        "the guest's LOG text never reached port 0x504; captured: {backdoor:?}"
    );
}
