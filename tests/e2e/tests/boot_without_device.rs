//! Boots Debian's stock kernel under QEMU/TCG without the VMMDev device.
//!
//! This proves the harness end to end (provisioned QEMU, stock kernel and modules, the image with a static
//! Rust program, /init and its report, the runner's parsing, timings and clean-up) before any device exists,
//! and it pins down how the device checks report a machine without the device: the identity check fails,
//! everything that needs the device is skipped with that reason, and the modules still load.

use std::path::{Path, PathBuf};
use std::time::Duration;

use vmmdev_e2e::artifacts::{artifacts_or_skip, run_dir};
use vmmdev_e2e::backend::{BootSpec, DeviceServer};
use vmmdev_e2e::expect::Expectations;
use vmmdev_e2e::qemu::QemuTcg;
use vmmdev_e2e::runner::{RunEnd, RunOptions, boot};

/// Why the device checks cannot pass here.
const NO_DEVICE: &str = "no PCI function 80ee:cafe";

fn test_dir(test: &str) -> PathBuf {
    run_dir(Path::new(env!("CARGO_TARGET_TMPDIR")), test)
}

/// Every step the guest image has, in its order, with the outcome a machine without the device must give.
fn expectations_without_device() -> Expectations {
    Expectations::new()
        .pass(&[
            "init",
            "proc-mounted",
            "sys-mounted",
            "devtmpfs",
            "static-hello",
            "modules-match-kernel",
        ])
        .fail("pci-identity", NO_DEVICE)
        .skip(&["pci-resources"], NO_DEVICE)
        .pass(&["vboxguest-load"])
        .skip(
            &[
                "vboxguest-probe",
                "vboxguest-nodes",
                "vboxguest-irq",
                "heartbeat-quiet",
            ],
            NO_DEVICE,
        )
        .pass(&["vboxsf-load"])
        .skip(
            &[
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
            ],
            NO_DEVICE,
        )
}

#[test]
fn stock_kernel_boots_and_reports_the_device_absent() {
    let test = "stock_kernel_boots_and_reports_the_device_absent";
    let Some(artifacts) = artifacts_or_skip(test) else {
        return;
    };
    let expected = expectations_without_device();
    let spec = BootSpec::test(&artifacts.kernel, &artifacts.initrd, &expected.step_names());
    let backend = QemuTcg::new(&artifacts.qemu);

    let run = boot(&backend, &spec, &test_dir(test), &RunOptions::default()).unwrap();

    println!("{}", run.summary());
    if let Err(mismatch) = run.verify(&expected) {
        panic!("{mismatch}");
    }
    let init = run.report.init.as_ref().unwrap();
    assert_eq!(init.mode, "test");
    assert!(
        init.kernel.starts_with("6.1.0-"),
        "unexpected guest kernel {}",
        init.kernel
    );
}

#[test]
fn run_past_its_time_limit_is_killed_and_reported_as_timed_out() {
    let test = "run_past_its_time_limit_is_killed_and_reported_as_timed_out";
    let Some(artifacts) = artifacts_or_skip(test) else {
        return;
    };
    let spec = BootSpec::test(&artifacts.kernel, &artifacts.initrd, &["init"]);
    let options = RunOptions {
        timeout: Duration::from_millis(500),
        ..RunOptions::default()
    };

    let run = boot(
        &QemuTcg::new(&artifacts.qemu),
        &spec,
        &test_dir(test),
        &options,
    )
    .unwrap();

    assert_eq!(run.end, RunEnd::TimedOut(options.timeout));
    assert!(run.report.done.is_none());
    assert!(
        !Path::new(&format!("/proc/{}", run.vm_pid)).exists(),
        "QEMU (pid {}) outlived its run",
        run.vm_pid
    );
    let mismatch = run
        .verify(&Expectations::new().pass(&["init"]))
        .unwrap_err();
    assert!(
        mismatch.diagnostics.contains("timed out after 500ms"),
        "{mismatch}"
    );
}

#[test]
fn bzimage_boots_through_its_decompressor_to_init() {
    let test = "bzimage_boots_through_its_decompressor_to_init";
    let Some(artifacts) = artifacts_or_skip(test) else {
        return;
    };
    let Some(bzimage) = &artifacts.bzimage else {
        println!("SKIPPED: {test}: VMMDEV_BZIMAGE is not set");
        return;
    };
    let expected = Expectations::new().pass(&["init", "static-hello"]);
    let spec = BootSpec::test(bzimage, &artifacts.initrd, &expected.step_names());

    let run = boot(
        &QemuTcg::new(&artifacts.qemu),
        &spec,
        &test_dir(test),
        &RunOptions::default(),
    )
    .unwrap();

    println!("{}", run.summary());
    if let Err(mismatch) = run.verify(&expected) {
        panic!("{mismatch}");
    }
}

#[test]
fn device_server_that_hangs_up_fails_the_run_with_qemus_reason() {
    let test = "device_server_that_hangs_up_fails_the_run_with_qemus_reason";
    let Some(artifacts) = artifacts_or_skip(test) else {
        return;
    };
    let server = DeviceServer::new(Path::new(env!("CARGO_BIN_EXE_e2e-fake-device-server")));
    let spec = BootSpec::test(&artifacts.kernel, &artifacts.initrd, &["init"]).with_device(server);

    let run = boot(
        &QemuTcg::new(&artifacts.qemu),
        &spec,
        &test_dir(test),
        &RunOptions::default(),
    )
    .unwrap();

    assert!(
        matches!(run.end, RunEnd::Exited(status) if !status.success()),
        "{:?}",
        run.end
    );
    assert!(run.report.init.is_none());
    let mismatch = run
        .verify(&Expectations::new().pass(&["init"]))
        .unwrap_err();
    assert!(mismatch.diagnostics.contains("vfio-user-pci"), "{mismatch}");
    assert!(
        mismatch
            .diagnostics
            .contains("client connected; hanging up"),
        "{mismatch}"
    );
}
