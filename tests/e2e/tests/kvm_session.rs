//! The scripted guest session on the project's KVM monitor, with the VMMDev device in-process: one boot
//! that runs the whole session QEMU's `boot_with_device` runs (every device and service step, with the
//! same host side, [`FullSession`]), then the host's own checks of what the device saw: the driver's
//! probe in its order, no guest memory written into a request after its cancel, and the backdoor log.
//!
//! Every step that passes under QEMU passes here too. On hosts whose KVM emulates guest kernel code
//! (kvm-vmm.md §0) `tests/run-all.sh` hands over the lean kernel and a matching image, and the backend
//! adds the kernel parameters and the monitor's system-call bridge such hosts need; elsewhere the stock
//! kernel. Without `/dev/kvm` (or without run-all.sh) the test prints `SKIPPED:` and returns.

use std::path::{Path, PathBuf};
use std::time::Duration;

use vmmdev_e2e::artifacts::run_dir;
use vmmdev_e2e::full_session::{BACKDOOR_TEXT, FullSession};
use vmmdev_e2e::kvm::{
    KvmMonitor, REQUEST_LOG, cancel_audit, contains_in_order, kvm_artifacts_or_skip, request_types,
};
use vmmdev_e2e::runner::RunOptions;

/// The driver's probe (linux-guest.md §2.2): GET_HOST_VERSION, REPORT_GUEST_INFO2, REPORT_GUEST_INFO,
/// CTL_GUEST_FILTER_MASK, SET_GUEST_CAPABILITIES, SET_MOUSE_STATUS, GET_HYPERVISOR_INFO,
/// HEARTBEAT_CONFIGURE, REPORT_GUEST_STATUS.
const PROBE_SEQUENCE: &[u32] = &[4, 58, 50, 42, 56, 2, 20, 220, 59];

/// The whole run: where guest kernel code is emulated, boot to `/init` takes a minute on a quiet machine
/// and the session many more.
const RUN_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// The guest runs on two vCPUs, as the monitor must support (the kernel brings the second up with
/// INIT/SIPI through its real-mode trampoline).
const VCPUS: u8 = 2;

fn test_dir(test: &str) -> PathBuf {
    run_dir(Path::new(env!("CARGO_TARGET_TMPDIR")), test)
}

#[test]
fn kvm_monitor_runs_the_scripted_session_and_checks_probe_order_and_cancels() {
    let test = "kvm_monitor_runs_the_scripted_session_and_checks_probe_order_and_cancels";
    let Some(artifacts) = kvm_artifacts_or_skip(test) else {
        return;
    };
    let dir = test_dir(test);
    let session = FullSession::prepare(&dir).unwrap();
    let spec = session.boot_spec(&artifacts.kernel, &artifacts.initrd, &artifacts.monitor);
    let backend = KvmMonitor::new(&artifacts.monitor).with_vcpus(VCPUS);
    let options = RunOptions {
        timeout: RUN_TIMEOUT,
        exit_grace: Duration::from_secs(120),
    };

    let run = session.run(&backend, &spec, &options).unwrap();

    let server_log = std::fs::read_to_string(run.dir.server_log()).unwrap_or_default();
    assert!(
        server_log.contains(BACKDOOR_TEXT),
        "the guest's LOG text never reached the monitor's log through port 0x504"
    );
    let log_path = run.dir.path().join(REQUEST_LOG);
    let log = std::fs::read_to_string(&log_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", log_path.display()));
    let types = request_types(&log);
    assert!(
        contains_in_order(&types, PROBE_SEQUENCE),
        "the request log lacks the probe sequence {PROBE_SEQUENCE:?} in order; types seen: {types:?}"
    );
    let (cancels, violations) = cancel_audit(&log)
        .unwrap_or_else(|| panic!("no cancel-audit line in {}", log_path.display()));
    assert_eq!(
        violations, 0,
        "the monitor saw guest memory written after a cancel"
    );
    assert!(
        cancels >= 1,
        "the session cancels HGCM calls (wait-alarm, wait-timeout, wait-kill), the audit saw none"
    );
}
