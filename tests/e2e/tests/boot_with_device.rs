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

use std::path::Path;

use vmmdev_e2e::artifacts::device_test_or_skip;
use vmmdev_e2e::full_session::{BACKDOOR_TEXT, FullSession};
use vmmdev_e2e::qemu::QemuTcg;
use vmmdev_e2e::runner::RunOptions;

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
    let session = FullSession::prepare(&dir).unwrap();
    let spec = session.boot_spec(&artifacts.kernel, &artifacts.initrd, &server);

    session
        .run(&backend, &spec, &RunOptions::default())
        .unwrap();
    let backdoor = std::fs::read_to_string(&debugcon).unwrap_or_default();
    assert!(
        backdoor.contains(BACKDOOR_TEXT),
        "the guest's LOG text never reached port 0x504; captured: {backdoor:?}"
    );
}
