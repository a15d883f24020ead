//! A guest property survives a crash of the VMM (issue #5 item 6, "property survives a monitor restart").
//!
//! Two short boots of the stock kernel under QEMU/TCG, each with its own `vmmdev-vfio-user` on one
//! `--property-store` file:
//!
//! 1. The guest writes a persistent property and a TRANSIENT one and sees both succeed
//!    (`guestprop-persist-set`), then asks the host to kill the server with SIGKILL
//!    (`guestprop-persist-kill`, verb `gp-kill-vmm`: the host finds the server as the peer of its control
//!    socket, kills it and sees it gone). The server gets no chance to save anything: only what it wrote
//!    through before completing the guest's call can be there afterwards. How QEMU takes the loss of its
//!    device is not checked (it may continue without it, or abort).
//! 2. A fresh server on the same store serves a new VM; the guest reads the persistent property back with
//!    the first boot's value and finds the TRANSIENT one gone (`guestprop-persist-check`).
//!
//! The value is fresh for every run (kernel parameter `vmmdev.gp_token`), so a store left by an earlier
//! run cannot make the check pass.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use vmmdev_e2e::artifacts::device_test_or_skip;
use vmmdev_e2e::backend::{BootSpec, DeviceServer};
use vmmdev_e2e::console::StepOutcome;
use vmmdev_e2e::expect::Expectations;
use vmmdev_e2e::host_agent::control_socket_path;
use vmmdev_e2e::host_side;
use vmmdev_e2e::qemu::QemuTcg;
use vmmdev_e2e::runner::{BootRun, RunOptions, boot_with_agent};

/// The steps of the first boot: write, then have the VMM killed.
const FIRST_BOOT_STEPS: &[&str] = &["guestprop-persist-set", "guestprop-persist-kill"];

/// The step of the second boot: read back.
const SECOND_BOOT_STEPS: &[&str] = &["guestprop-persist-check"];

/// The persistent property the guest writes, as `steps/60-guestprop.sh` names it.
const KEPT_PROPERTY: &str = "/Test/Persist/Kept";

/// A value no earlier run wrote.
fn fresh_token() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_nanos())
        .unwrap_or_default();
    format!("kept-{nanos:x}-{}", std::process::id())
}

/// Boots `steps` with a server on `store`, the host agent serving the run's control socket.
fn boot_on_store(
    qemu: &Path,
    server: &Path,
    artifacts: &vmmdev_e2e::artifacts::Artifacts,
    dir: &Path,
    store: &Path,
    token: &str,
    steps: &[&str],
) -> (BootRun, vmmdev_e2e::host_agent::Served, Expectations) {
    std::fs::create_dir_all(dir).unwrap();
    let control_socket = control_socket_path(dir);
    let mut device = DeviceServer::new(server);
    device.args.extend([
        "--control".into(),
        control_socket.clone().into(),
        "--property-store".into(),
        store.into(),
    ]);
    let expected = Expectations::new().pass(steps);
    let mut spec = BootSpec::test(&artifacts.kernel, &artifacts.initrd, &expected.step_names())
        .with_device(device);
    spec.cmdline.push_str(&format!(" vmmdev.gp_token={token}"));
    let (run, served) = boot_with_agent(
        host_side::agent(),
        &QemuTcg::new(qemu),
        &spec,
        dir,
        &RunOptions::default(),
    )
    .unwrap();
    (run, served, expected)
}

#[test]
fn a_property_the_guest_wrote_survives_a_sigkill_of_the_vmm() {
    let test = "a_property_the_guest_wrote_survives_a_sigkill_of_the_vmm";
    let Some(setup) = device_test_or_skip(test, Path::new(env!("CARGO_TARGET_TMPDIR"))) else {
        return;
    };
    let (artifacts, server, dir) = (setup.artifacts, setup.server, setup.dir);
    let store = dir.join("properties.store");
    let _ = std::fs::remove_file(&store);
    let token = fresh_token();

    let (first, served, expected) = boot_on_store(
        &artifacts.qemu,
        &server,
        &artifacts,
        &dir.join("first"),
        &store,
        &token,
        FIRST_BOOT_STEPS,
    );
    let kill = served
        .requests
        .iter()
        .find(|request| request.request == "gp-kill-vmm")
        .unwrap_or_else(|| panic!("the guest never asked for the kill\n{served}"));
    assert!(
        kill.outcome
            .as_ref()
            .is_ok_and(|answer| answer.starts_with("killed ")),
        "the kill failed: {:?}",
        kill.outcome
    );
    // What happens after the kill is QEMU's affair: it may go on without the device (the guest's calls
    // then fail and `guestprop-persist-kill` passes), or abort (QEMU 11.1.3 sometimes fails an assertion
    // in its error path when the server vanishes during a region write). Either way the write the guest
    // saw succeed must be in the store.
    let written = first.report.step("guestprop-persist-set");
    assert!(
        written.is_some_and(|step| step.outcome == StepOutcome::Pass),
        "the first boot's write did not succeed: {:?}\n{}",
        written.map(|step| &step.outcome),
        first
            .verify(&expected)
            .err()
            .map(|m| m.to_string())
            .unwrap_or_default()
    );
    match first.report.step("guestprop-persist-kill") {
        Some(step) => println!("after the kill: {:?} {:?}", step.outcome, step.notes),
        None => println!("after the kill: the VM ended with {:?}", first.end),
    }
    let stored = std::fs::read_to_string(&store).unwrap_or_default();
    assert!(
        stored.contains(&token),
        "the store does not hold {KEPT_PROPERTY}={token} after the kill: {stored:?}"
    );

    let (second, _, expected) = boot_on_store(
        &artifacts.qemu,
        &server,
        &artifacts,
        &dir.join("second"),
        &store,
        &token,
        SECOND_BOOT_STEPS,
    );
    if let Err(mismatch) = second.verify(&expected) {
        panic!("{mismatch}");
    }
    let read_back = format!("read {KEPT_PROPERTY}={token} after the restart");
    assert!(
        second
            .report
            .step("guestprop-persist-check")
            .is_some_and(|step| step.notes.contains(&read_back)),
        "the second boot did not report '{read_back}'"
    );
}
