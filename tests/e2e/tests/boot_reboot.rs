//! The guest reboots with the VMMDev device attached (linux-guest.md §7 item 43).
//!
//! QEMU runs without `-no-reboot` (`-action reboot=reset`), so the guest's `reboot -f` resets the machine,
//! and with it the `vfio-user-pci` function: the same `vmmdev-vfio-user` server must take the reset and serve
//! the second boot. The step list runs twice in one QEMU process: on the second boot the stock `vboxguest`
//! probes the device again (item 2), the share mounts again (item 18), and a file written before the reboot
//! reads back while a new one is written and read back after dropping the page cache (item 24). The second
//! boot's `sf-reboot` step asks `/init` to power off, which ends the run.

use std::path::Path;
use std::time::Duration;

use vmmdev_e2e::artifacts::device_test_or_skip;
use vmmdev_e2e::backend::{BootSpec, DeviceServer};
use vmmdev_e2e::console::StepOutcome;
use vmmdev_e2e::qemu::QemuTcg;
use vmmdev_e2e::runner::{RunEnd, RunOptions, boot};

/// The steps of each boot: the device and its probe, the drivers, one HGCM round trip, the share's mount
/// and a write read back, then the reboot step that decides how the boot ends.
const STEPS: &[&str] = &[
    "init",
    "pci-identity",
    "pci-resources",
    "vboxguest-load",
    "vboxguest-probe",
    "vboxguest-nodes",
    "vboxguest-irq",
    "vboxsf-load",
    "hgcm-connect",
    "hgcm-echo",
    "demo-mount",
    "sf-write-readback",
    "sf-reboot",
];

/// The share `sf-reboot` and `demo-mount` use (the name steps/70-sf.sh expects).
const SHARE: &str = "e2e";

/// How many lines of the serial log start with `marker`.
fn count_lines(serial: &str, marker: &str) -> usize {
    serial
        .lines()
        .filter(|line| line.trim_start_matches('\r').starts_with(marker))
        .count()
}

#[test]
fn the_guest_reboots_and_the_device_serves_the_second_boot() {
    let test = "the_guest_reboots_and_the_device_serves_the_second_boot";
    let Some(setup) = device_test_or_skip(test, Path::new(env!("CARGO_TARGET_TMPDIR"))) else {
        return;
    };
    let (artifacts, server, dir) = (setup.artifacts, setup.server, setup.dir);
    let share_dir = dir.join("share");
    let _ = std::fs::remove_dir_all(&share_dir);
    std::fs::create_dir_all(&share_dir).unwrap();

    // A later `-action` overrides the backend's `-no-reboot` (which is `-action reboot=shutdown`).
    let backend = QemuTcg::new(&artifacts.qemu).with_extra_args(["-action", "reboot=reset"]);
    let mut device = DeviceServer::new(&server);
    device.args.extend([
        "--share".into(),
        format!("{SHARE}={},symlinks=inside", share_dir.display()).into(),
    ]);
    let mut spec = BootSpec::test(&artifacts.kernel, &artifacts.initrd, STEPS).with_device(device);
    spec.cmdline.push_str(&format!(
        " vmmdev.mount={SHARE} vmmdev.exit=reboot vmmdev.sf_reboot=1"
    ));
    // The first @@DONE arms the runner's exit deadline; the second boot has to fit in it.
    let options = RunOptions {
        timeout: Duration::from_secs(300),
        exit_grace: Duration::from_secs(150),
    };
    let run = boot(&backend, &spec, &dir, &options).unwrap();
    println!("{}", run.summary());

    let serial = std::fs::read_to_string(run.dir.serial_log()).unwrap_or_default();
    let context = format!("run files: {}", run.dir.path().display());
    assert_eq!(
        (
            count_lines(&serial, "@@INIT"),
            count_lines(&serial, "@@DONE")
        ),
        (2, 2),
        "expected two boots, each to @@DONE; {context}"
    );
    assert!(
        matches!(run.end, RunEnd::Exited(status) if status.success()),
        "the second boot did not power the machine off: {:?}; {context}",
        run.end
    );
    let names: Vec<&str> = run.report.steps.iter().map(|s| s.name.as_str()).collect();
    let twice: Vec<&str> = STEPS.iter().chain(STEPS).copied().collect();
    assert_eq!(names, twice, "each boot runs the step list once; {context}");
    for (index, step) in run.report.steps.iter().enumerate() {
        let boot = index / STEPS.len() + 1;
        assert_eq!(
            step.outcome,
            StepOutcome::Pass,
            "boot {boot}: step {} did not pass (notes: {:?}); {context}",
            step.name,
            step.notes
        );
    }
    let read = |name: &str| std::fs::read_to_string(share_dir.join(name)).unwrap_or_default();
    assert_eq!(read("work-reboot/boot-1"), "written before the reboot\n");
    assert_eq!(read("work-reboot/boot-2"), "written after the reboot\n");
    let server_log = std::fs::read_to_string(run.dir.server_log()).unwrap_or_default();
    let resets = server_log.matches("device reset requested").count();
    assert!(
        resets >= 2,
        "the server saw {resets} device resets, expected one per boot; {context}"
    );
}
