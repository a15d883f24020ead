//! The device driven end to end by the in-process guest: the Linux probe, events and the
//! interrupt line, HGCM against the Echo service, cancellation, reset, save/restore.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use vm_device::DevicePio;
use vm_device::bus::PioAddress;
use vmmdev_device::PointerState;
use vmmdev_guest_inproc::{
    BufferDirection, CallOptions, GuestError, GuestParm, InProcessVm, new_request,
};
use vmmdev_hgcm::{Hgcm, HgcmConfig, Parm};
use vmmdev_protocol::Status;
use vmmdev_protocol::vmmdev::{Events, MouseStatusRequest, RequestType};
use vmmdev_svc_echo::{
    FN_ECHO, FN_INFO, FN_NOOP, FN_WAIT, HOST_FN_WAITER_COUNT, HOST_FN_WAKE_ALL, SERVICE_NAME,
    WAKE_REASON_HOST,
};

fn echo_hgcm() -> Hgcm {
    let hgcm = Hgcm::new(HgcmConfig::default());
    hgcm.register_builtin(vmmdev_svc_echo::echo_entry, "")
        .expect("register Echo");
    hgcm
}

fn vm() -> InProcessVm {
    InProcessVm::new(echo_hgcm()).expect("in-process VM")
}

fn probed_vm() -> InProcessVm {
    let vm = vm();
    vm.guest.probe().expect("probe");
    vm
}

fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn waiters(hgcm: &Hgcm) -> u32 {
    let mut params = [Parm::U32(0)];
    hgcm.host_call(SERVICE_NAME, HOST_FN_WAITER_COUNT, &mut params)
        .expect("host call");
    params[0].as_u32().unwrap_or(0)
}

#[test]
fn linux_probe_sequence_succeeds_and_is_logged_in_order() {
    let vm = vm();
    let host = vm.guest.probe().unwrap();
    assert_ne!(host.features & 1, 0);
    let log = vm.device.request_log();
    let types: Vec<u32> = log.iter().map(|r| r.request_type).collect();
    // The heartbeat is refused (H-2.7), so Linux sends HEARTBEAT_CONFIGURE only once.
    assert_eq!(types, [4, 58, 50, 42, 56, 2, 20, 220, 59]);
    assert!(log.iter().all(|r| r.requestor == 1));
    for record in &log {
        let expected_ok = record.request_type != 220;
        assert_eq!(record.status >= 0, expected_ok, "{record:?}");
    }
    assert_eq!(log[7].status, Status::VERR_NOT_IMPLEMENTED.raw());
}

#[test]
fn probe_reports_the_additions_to_the_embedder() {
    let vm = vm();
    let changes = vm.device.subscribe();
    vm.guest.probe().unwrap();
    let state = vm.device.guest_state();
    assert_eq!(state.info.map(|i| i.interface_version), Some(0x0001_0004));
    assert_eq!(state.additions.map(|a| a.name), Some("6.0.0".to_string()));
    let driver = state.facilities.iter().find(|f| f.facility == 20).unwrap();
    assert_eq!(driver.status, 50);
    assert!(changes.try_iter().count() >= 4);
}

#[test]
fn requests_before_guest_info_are_refused_except_the_whitelist() {
    let vm = vm();
    let mut mouse = new_request::<MouseStatusRequest>(RequestType::SET_MOUSE_STATUS);
    mouse.mouse_features.set(0);
    assert_eq!(vm.guest.perform(&mut mouse), Status::VERR_NOT_SUPPORTED);
    assert_eq!(
        vm.device.request_log().last().map(|r| r.status),
        Some(Status::VERR_NOT_SUPPORTED.raw())
    );
    vm.guest.probe().unwrap();
    assert_eq!(vm.guest.perform(&mut mouse), Status::VINF_SUCCESS);
}

#[test]
fn backdoor_port_bytes_become_log_lines() {
    let vm = vm();
    for byte in b"vboxguest: host-version: 7.1.6r0 0x8000000f\n" {
        vm.device.pio_write(PioAddress(0x504), 0, &[*byte]);
    }
    assert_eq!(
        vm.device.backdoor_log(),
        ["vboxguest: host-version: 7.1.6r0 0x8000000f"]
    );
}

#[test]
fn interrupt_rises_for_an_event_and_falls_at_the_acknowledge() {
    let vm = probed_vm();
    vm.irq.take_changes();
    vm.device.set_pointer(PointerState {
        x: 100,
        y: 200,
        ..PointerState::default()
    });
    let events = vm
        .guest
        .wait_for_events(
            Events::MOUSE_POSITION_CHANGED.bits(),
            Duration::from_secs(5),
        )
        .unwrap();
    assert_eq!(events, Events::MOUSE_POSITION_CHANGED.bits());
    eventually("line low", || !vm.irq.level());
    assert_eq!(vm.irq.take_changes(), [true, false]);
    assert!(!vm.device.ram().have_events());
    assert_eq!(vm.guest.spurious_interrupts(), 0);
}

#[test]
fn filtered_out_event_waits_without_interrupt_until_enabled() {
    let vm = probed_vm();
    vm.irq.take_changes();
    vm.device.set_balloon_target(16);
    std::thread::sleep(Duration::from_millis(20));
    assert!(!vm.irq.level());
    assert!(vm.irq.take_changes().is_empty());
    let balloon = Events::BALLOON_CHANGE_REQUEST.bits();
    vm.guest
        .set_filter(balloon, 0)
        .expect("enable balloon events");
    assert_eq!(
        vm.guest.wait_for_events(balloon, Duration::from_secs(5)),
        Ok(balloon)
    );
}

#[test]
fn connect_echo_call_and_disconnect() {
    let vm = probed_vm();
    let client = vm.guest.hgcm_connect(SERVICE_NAME).unwrap();
    assert_ne!(client, 0);
    let mut params = [
        GuestParm::Buffer {
            data: b"hello".to_vec(),
            direction: BufferDirection::In,
        },
        GuestParm::Buffer {
            data: vec![0; 16],
            direction: BufferDirection::Out,
        },
    ];
    let result = vm
        .guest
        .hgcm_call(client, FN_ECHO, &mut params, &CallOptions::default())
        .unwrap();
    assert_eq!(result.rc, Status::VINF_HGCM_ASYNC_EXECUTE);
    assert_eq!(result.result, Status::VINF_SUCCESS);
    let GuestParm::Buffer { data, .. } = &params[1] else {
        panic!("buffer expected");
    };
    assert_eq!(&data[..5], b"hello");
    vm.guest.hgcm_disconnect(client).unwrap();
    assert_eq!(vm.device.pending_hgcm_requests(), 0);
}

#[test]
fn page_list_buffers_spanning_scattered_pages_round_trip() {
    let vm = probed_vm();
    let client = vm.guest.hgcm_connect(SERVICE_NAME).unwrap();
    let input: Vec<u8> = (0..3 * 4096 + 100).map(|i| (i * 7 % 251) as u8).collect();
    let mut params = [
        GuestParm::Buffer {
            data: input.clone(),
            direction: BufferDirection::In,
        },
        GuestParm::Buffer {
            data: vec![0; input.len()],
            direction: BufferDirection::Both,
        },
    ];
    let result = vm
        .guest
        .hgcm_call(client, FN_ECHO, &mut params, &CallOptions::default())
        .unwrap();
    assert_eq!(result.result, Status::VINF_SUCCESS);
    assert_eq!(
        params[1],
        GuestParm::Buffer {
            data: input,
            direction: BufferDirection::Both
        }
    );
}

#[test]
fn zero_length_lin_addr_buffers_are_accepted() {
    let vm = probed_vm();
    let client = vm.guest.hgcm_connect(SERVICE_NAME).unwrap();
    let mut params = [
        GuestParm::Buffer {
            data: Vec::new(),
            direction: BufferDirection::In,
        },
        GuestParm::Buffer {
            data: Vec::new(),
            direction: BufferDirection::Out,
        },
    ];
    let result = vm
        .guest
        .hgcm_call(client, FN_ECHO, &mut params, &CallOptions::default())
        .unwrap();
    assert_eq!(result.result, Status::VINF_SUCCESS);
}

#[test]
fn connect_to_unknown_service_fails_synchronously() {
    let vm = probed_vm();
    assert_eq!(
        vm.guest.hgcm_connect("NoSuchSvc"),
        Err(GuestError::Request {
            request: RequestType::HGCM_CONNECT,
            status: Status::VERR_HGCM_SERVICE_NOT_FOUND,
        })
    );
    assert_eq!(vm.device.pending_hgcm_requests(), 0);
}

#[test]
fn disconnect_of_unknown_client_fails() {
    let vm = probed_vm();
    let result = vm.guest.hgcm_disconnect(0xFFFF_FFFF);
    assert!(
        matches!(result, Err(GuestError::Request { .. })),
        "{result:?}"
    );
}

#[test]
fn timed_out_call_is_cancelled_with_cancel2_and_never_completed() {
    let vm = probed_vm();
    let client = vm.guest.hgcm_connect(SERVICE_NAME).unwrap();
    let mut params = [GuestParm::U32(0), GuestParm::U32(0)];
    let options = CallOptions {
        timeout: Some(Duration::from_millis(50)),
        interrupt: None,
    };
    assert_eq!(
        vm.guest.hgcm_call(client, FN_WAIT, &mut params, &options),
        Err(GuestError::TimedOut)
    );
    let cancel = vm
        .device
        .request_log()
        .into_iter()
        .rev()
        .find(|r| r.request_type == 65);
    assert_eq!(cancel.map(|r| r.status), Some(0), "Cancel2 succeeded");
    assert_eq!(vm.device.pending_hgcm_requests(), 0);
    eventually("the service dropped its waiter", || {
        waiters(vm.device.hgcm()) == 0
    });
    let mut noop: [GuestParm; 0] = [];
    let result = vm
        .guest
        .hgcm_call(client, FN_NOOP, &mut noop, &CallOptions::default())
        .unwrap();
    assert_eq!(result.result, Status::VINF_SUCCESS);
}

#[test]
fn interrupted_call_is_cancelled() {
    let vm = probed_vm();
    let client = vm.guest.hgcm_connect(SERVICE_NAME).unwrap();
    let signal = Arc::new(AtomicBool::new(false));
    let options = CallOptions {
        timeout: None,
        interrupt: Some(signal.clone()),
    };
    let sender = std::thread::spawn({
        let signal = signal.clone();
        move || {
            std::thread::sleep(Duration::from_millis(30));
            signal.store(true, Ordering::Release);
        }
    });
    let mut params = [GuestParm::U32(0), GuestParm::U32(0)];
    assert_eq!(
        vm.guest.hgcm_call(client, FN_WAIT, &mut params, &options),
        Err(GuestError::Interrupted)
    );
    sender.join().unwrap();
    assert_eq!(vm.device.pending_hgcm_requests(), 0);
}

#[test]
fn blocking_call_completes_when_the_host_wakes_it() {
    let vm = Arc::new(probed_vm());
    let client = vm.guest.hgcm_connect(SERVICE_NAME).unwrap();
    let raises_before = vm.irq.raises();
    let caller = std::thread::spawn({
        let vm = vm.clone();
        move || {
            let mut params = [GuestParm::U32(0), GuestParm::U32(0)];
            let result = vm
                .guest
                .hgcm_call(client, FN_WAIT, &mut params, &CallOptions::default())
                .unwrap();
            (result, params)
        }
    });
    eventually("the call to park", || waiters(vm.device.hgcm()) == 1);
    let mut wake = [Parm::U32(0)];
    vm.device
        .hgcm()
        .host_call(SERVICE_NAME, HOST_FN_WAKE_ALL, &mut wake)
        .unwrap();
    let (result, params) = caller.join().unwrap();
    assert_eq!(result.result, Status::VINF_SUCCESS);
    assert_eq!(params[1], GuestParm::U32(WAKE_REASON_HOST));
    assert!(
        vm.irq.raises() > raises_before,
        "completion raised the line"
    );
    eventually("line low", || !vm.irq.level());
}

#[test]
fn concurrent_callers_all_complete() {
    let vm = Arc::new(probed_vm());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let vm = vm.clone();
            std::thread::spawn(move || {
                let client = vm.guest.hgcm_connect(SERVICE_NAME).unwrap();
                for i in 0..25u32 {
                    let payload = format!("thread {t} call {i}").into_bytes();
                    let mut params = [
                        GuestParm::Buffer {
                            data: payload.clone(),
                            direction: BufferDirection::In,
                        },
                        GuestParm::Buffer {
                            data: vec![0; payload.len()],
                            direction: BufferDirection::Out,
                        },
                    ];
                    let result = vm
                        .guest
                        .hgcm_call(client, FN_ECHO, &mut params, &CallOptions::default())
                        .unwrap();
                    assert_eq!(result.result, Status::VINF_SUCCESS);
                    assert_eq!(
                        params[1],
                        GuestParm::Buffer {
                            data: payload,
                            direction: BufferDirection::Out
                        }
                    );
                }
                vm.guest.hgcm_disconnect(client).unwrap();
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(vm.device.pending_hgcm_requests(), 0);
    eventually("line low", || !vm.irq.level());
}

#[test]
fn reset_drops_pending_calls_without_touching_guest_memory() {
    let vm = probed_vm();
    let client = vm.guest.hgcm_connect(SERVICE_NAME).unwrap();
    let params = [GuestParm::U32(0), GuestParm::U32(0)];
    let call = vm.guest.start_call(client, FN_WAIT, &params).unwrap();
    assert_eq!(call.rc(), Status::VINF_HGCM_ASYNC_EXECUTE);
    eventually("the call to park", || waiters(vm.device.hgcm()) == 1);
    let session = vm.device.session_id();
    vm.device.reset();
    assert_eq!(vm.device.pending_hgcm_requests(), 0);
    assert_ne!(vm.device.session_id(), session);
    assert!(!vm.irq.level());
    let mut wake = [Parm::U32(0)];
    let _ = vm
        .device
        .hgcm()
        .host_call(SERVICE_NAME, HOST_FN_WAKE_ALL, &mut wake);
    std::thread::sleep(Duration::from_millis(20));
    let flags = vm.guest.ram().read_u32(call.gpa() + 24);
    assert_eq!(flags & 1, 0, "DONE never set after reset");
    assert_eq!(
        vm.guest.ram().read_u32(call.gpa() + 12) as i32,
        Status::VINF_HGCM_ASYNC_EXECUTE.raw()
    );
    // The next boot probes again and its clients are new.
    vm.guest.probe().unwrap();
    let mut noop: [GuestParm; 0] = [];
    let stale = vm
        .guest
        .hgcm_call(client, FN_NOOP, &mut noop, &CallOptions::default());
    assert_eq!(
        stale.map(|r| r.rc),
        Ok(Status::VERR_HGCM_INVALID_CLIENT_ID),
        "clients do not survive a reset"
    );
    let fresh = vm.guest.hgcm_connect(SERVICE_NAME).unwrap();
    assert_ne!(fresh, 0);
}

#[test]
fn teardown_then_probe_again_works() {
    let vm = probed_vm();
    vm.guest.teardown().unwrap();
    let tail: Vec<u32> = vm
        .device
        .request_log()
        .iter()
        .rev()
        .take(4)
        .map(|r| r.request_type)
        .collect();
    assert_eq!(tail, [2, 56, 42, 220]);
    vm.guest.probe().unwrap();
    let client = vm.guest.hgcm_connect(SERVICE_NAME).unwrap();
    assert_ne!(client, 0);
}

#[test]
fn save_and_restore_resubmit_a_pending_call_as_restored() {
    let vm = Arc::new(probed_vm());
    let client = vm.guest.hgcm_connect(SERVICE_NAME).unwrap();
    vm.device.pause();
    let caller = std::thread::spawn({
        let vm = vm.clone();
        move || {
            let mut params = [GuestParm::U32(0), GuestParm::U32(0), GuestParm::U32(0)];
            let result = vm
                .guest
                .hgcm_call(client, FN_INFO, &mut params, &CallOptions::default())
                .unwrap();
            (result, params)
        }
    });
    eventually("the call to be pending", || {
        vm.device.pending_hgcm_requests() == 1
    });
    // Give the service time to complete it: the completion is parked while paused.
    std::thread::sleep(Duration::from_millis(20));
    let hgcm = vm.device.hgcm();
    let hgcm_state = hgcm.save().unwrap();
    let device_state = vm.device.save().unwrap();
    let session = vm.device.session_id();

    hgcm.reset();
    hgcm.restore(&hgcm_state).unwrap();
    vm.device.restore(&device_state).unwrap();

    let (result, params) = caller.join().unwrap();
    assert_eq!(result.result, Status::VINF_SUCCESS);
    assert_eq!(
        params[1],
        GuestParm::U32(client),
        "same client after restore"
    );
    assert_eq!(params[2], GuestParm::U32(1), "resubmitted as restored");
    assert_ne!(vm.device.session_id(), session);
    assert_eq!(vm.device.pending_hgcm_requests(), 0);
}

#[test]
fn save_requires_a_paused_device() {
    let vm = probed_vm();
    assert!(vm.device.save().is_err());
    vm.device.pause();
    assert!(vm.device.save().is_ok());
    vm.device.resume();
}
