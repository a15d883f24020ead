//! Helpers shared by the integration tests: blocking wrappers around the asynchronous API,
//! guest memory, and locating the Echo plugin library.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, bounded};
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmmdev_hgcm::{
    Buffer, CallOutcome, CallRequest, ClientId, ConnectOutcome, Direction, DisconnectOutcome, Hgcm,
    HgcmConfig, Limits, Parm, RequestId, Requestor, SubmitError,
};

/// How long a test waits for a completion that must come.
pub const DEADLINE: Duration = Duration::from_secs(10);
/// How long a test waits to be confident a completion does not come.
pub const QUIET: Duration = Duration::from_millis(200);

/// The requestor of the Linux core driver (kernel category).
pub const KERNEL: Requestor = Requestor(0x1);
/// A regular user process.
pub const USER: Requestor = Requestor(0x8 | 0x6);

pub fn hgcm_with_echo(config: &str) -> Hgcm {
    let hgcm = Hgcm::new(HgcmConfig::default());
    hgcm.register_builtin(vmmdev_svc_echo::echo_entry, config)
        .expect("echo registers");
    hgcm
}

/// An instance with the given limits and the Echo service.
pub fn echo_with_limits(limits: Limits) -> Hgcm {
    let hgcm = Hgcm::new(HgcmConfig {
        limits,
        ..HgcmConfig::default()
    });
    hgcm.register_builtin(vmmdev_svc_echo::echo_entry, "")
        .expect("echo registers");
    hgcm
}

pub fn connect(hgcm: &Hgcm, service: &str, requestor: Requestor) -> ConnectOutcome {
    let (tx, rx) = bounded(1);
    hgcm.connect(
        service,
        requestor,
        Box::new(move |o| {
            let _ = tx.send(o);
        }),
    )
    .expect("connect accepted");
    rx.recv_timeout(DEADLINE).expect("connect completes")
}

pub fn connect_ok(hgcm: &Hgcm, service: &str) -> ClientId {
    let outcome = connect(hgcm, service, KERNEL);
    assert_eq!(outcome.status, 0, "connect status");
    outcome.client
}

pub fn disconnect(hgcm: &Hgcm, client: ClientId) -> DisconnectOutcome {
    let (tx, rx) = bounded(1);
    hgcm.disconnect(
        client,
        Box::new(move |o| {
            let _ = tx.send(o);
        }),
    )
    .expect("disconnect accepted");
    rx.recv_timeout(DEADLINE).expect("disconnect completes")
}

pub fn request(client: ClientId, function: u32, params: Vec<Parm>) -> CallRequest {
    CallRequest {
        client,
        function,
        params,
        requestor: KERNEL,
        restored: false,
    }
}

/// An Echo `FN_WAIT` without timeout: pending until woken, cancelled or disconnected.
pub fn wait_forever(client: ClientId) -> CallRequest {
    request(
        client,
        vmmdev_svc_echo::FN_WAIT,
        vec![Parm::U32(0), Parm::U32(0)],
    )
}

/// Submits [`wait_forever`] and returns once the Echo service has parked it (the only waiter).
pub fn park_wait(hgcm: &Hgcm, client: ClientId) -> (RequestId, Receiver<CallOutcome>) {
    let submitted = submit(hgcm, wait_forever(client)).expect("wait accepted");
    eventually("the wait to be parked", || {
        host_count(hgcm, vmmdev_svc_echo::HOST_FN_WAITER_COUNT) == 1
    });
    submitted
}

/// Submits a call; the receiver gets its outcome.
pub fn submit(
    hgcm: &Hgcm,
    call: CallRequest,
) -> Result<(RequestId, Receiver<CallOutcome>), SubmitError> {
    let (tx, rx) = bounded(1);
    let id = hgcm.call(
        call,
        Box::new(move |o| {
            let _ = tx.send(o);
        }),
    )?;
    Ok((id, rx))
}

pub fn call(hgcm: &Hgcm, client: ClientId, function: u32, params: Vec<Parm>) -> CallOutcome {
    let (_, rx) = submit(hgcm, request(client, function, params)).expect("call accepted");
    rx.recv_timeout(DEADLINE).expect("call completes")
}

pub fn host_buffer(data: &[u8], direction: Direction) -> Parm {
    Parm::Buffer(Buffer::host(data.to_vec(), direction))
}

pub fn guest_memory() -> Arc<GuestMemoryMmap> {
    Arc::new(GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).expect("guest memory"))
}

/// Host-call helper returning the first u32 output.
pub fn host_count(hgcm: &Hgcm, function: u32) -> u32 {
    let mut params = [Parm::U32(0)];
    let status = hgcm
        .host_call(vmmdev_svc_echo::SERVICE_NAME, function, &mut params)
        .expect("host call");
    assert_eq!(status, 0);
    params[0].as_u32().expect("u32")
}

/// Waits until `cond` holds (polling), or panics.
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The directory with the Echo plugin library, building it if needed.
pub fn echo_plugin_dir() -> PathBuf {
    // Test binaries live in <target>/<profile>/deps/.
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("deps dir").to_path_buf();
    let profile_dir = deps.parent().expect("profile dir").to_path_buf();
    for dir in [&profile_dir, &deps] {
        if dir.join("libvmmdev_echo.so").is_file() {
            return dir.clone();
        }
    }
    let target_dir = profile_dir.parent().expect("target dir");
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "-p", "vmmdev-svc-echo-plugin"])
        .env("CARGO_TARGET_DIR", target_dir)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the echo plugin failed");
    assert!(
        profile_dir.join("libvmmdev_echo.so").is_file(),
        "echo plugin not found after build"
    );
    profile_dir
}
