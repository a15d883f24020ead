//! Boots Debian's stock kernel under QEMU/TCG with the VMMDev device served by `vmmdev-vfio-user`.
//!
//! This is the acceptance test of the device, the transport, the HGCM framework and the guest tools
//! together: the kernel's own, unmodified `vboxguest` must probe the device, and every scripted check of
//! linux-guest.md §7 that the image carries (items 1–15: HGCM against the example echo service, and
//! guest properties against VBoxGuestPropSvc) must pass, and a host directory must mount with the
//! kernel's own vboxsf. Port 0x504 is not part of the vfio-user device, so under QEMU the backdoor log is
//! captured by QEMU's own debug console on that port, and the test checks the guest's text arrived there.

use std::path::{Path, PathBuf};

use vmmdev_e2e::artifacts::{artifacts_or_skip, run_dir};
use vmmdev_e2e::backend::{BootSpec, DeviceServer};
use vmmdev_e2e::expect::Expectations;
use vmmdev_e2e::qemu::QemuTcg;
use vmmdev_e2e::runner::{RunOptions, boot};

/// The text the `backdoor-log` step writes through the LOG ioctl.
const BACKDOOR_TEXT: &str = "hello-0x504";

/// Every step of the image, each of which must pass with the device present.
const STEPS: &[&str] = &[
    "init",
    "proc-mounted",
    "sys-mounted",
    "devtmpfs",
    "static-hello",
    "modules-match-kernel",
    "pci-identity",
    "pci-resources",
    "vboxguest-load",
    "vboxguest-probe",
    "vboxguest-nodes",
    "vboxguest-irq",
    "heartbeat-quiet",
    "vboxsf-load",
    "backdoor-log",
    "driver-version",
    "balloon",
    "vmmreq-hostver",
    "vmmreq-denied",
    "coredump",
    "wait-event-timeout",
    "wait-interrupt",
    "caps",
    "hgcm-connect",
    "hgcm-connect-unknown",
    "hgcm-echo",
    "hgcm-wait-alarm",
    "hgcm-wait-timeout",
    "hgcm-wait-kill",
    "hgcm-null-calls",
    "guestprop-set-get",
    "guestprop-from-host",
    "guestprop-enumerate",
    "guestprop-wait",
    "guestprop-wait-signal",
    "guestprop-wait-timeout",
    "guestprop-wait-kill",
    "guestprop-wait-many",
    "demo-mount",
];

/// The guest property the host sets before boot, as the `guestprop-from-host` step expects it.
const HOST_PROPERTY: &str = "/Test/FromHost=hello-from-host";

/// The share the host offers and `demo-mount` mounts.
const SHARE: &str = "e2e";

fn test_dir(test: &str) -> PathBuf {
    run_dir(Path::new(env!("CARGO_TARGET_TMPDIR")), test)
}

#[test]
fn stock_vboxguest_passes_every_check_against_the_vfio_user_device() {
    let test = "stock_vboxguest_passes_every_check_against_the_vfio_user_device";
    let Some(artifacts) = artifacts_or_skip(test) else {
        return;
    };
    let Some(server) = &artifacts.vfio_user_server else {
        panic!(
            "VMMDEV_VFIO_USER_SERVER is not set: tests/run-all.sh builds the server and sets it"
        );
    };
    let dir = test_dir(test);
    std::fs::create_dir_all(&dir).unwrap();
    let debugcon = dir.join("port-0x504.log");
    let _ = std::fs::remove_file(&debugcon);
    let backend = QemuTcg::new(&artifacts.qemu).with_extra_args([
        "-chardev".to_owned(),
        format!("file,id=backdoor,path={}", debugcon.display()),
        "-device".to_owned(),
        "isa-debugcon,iobase=0x504,chardev=backdoor".to_owned(),
    ]);
    let share_dir = dir.join("share");
    std::fs::create_dir_all(&share_dir).unwrap();
    std::fs::write(share_dir.join("from-host.txt"), "hello from the host\n").unwrap();
    let mut device = DeviceServer::new(server);
    device.args.extend([
        "--guest-property".into(),
        HOST_PROPERTY.into(),
        "--share".into(),
        format!("{SHARE}={}", share_dir.display()).into(),
    ]);
    let expected = Expectations::new().pass(STEPS);
    let mut spec = BootSpec::test(&artifacts.kernel, &artifacts.initrd, &expected.step_names())
        .with_device(device);
    spec.cmdline.push_str(&format!(" vmmdev.mount={SHARE}"));

    let run = boot(&backend, &spec, &dir, &RunOptions::default()).unwrap();

    println!("{}", run.summary());
    if let Err(mismatch) = run.verify(&expected) {
        panic!("{mismatch}");
    }
    let backdoor = std::fs::read_to_string(&debugcon).unwrap_or_default();
    assert!(
        backdoor.contains(BACKDOOR_TEXT),
        "the guest's LOG text never reached port 0x504; captured: {backdoor:?}"
    );
}
