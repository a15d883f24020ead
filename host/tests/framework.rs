//! Behaviour of the framework through its public API, with the Echo service and small test
//! services built with the SDK.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use crossbeam_channel::bounded;
use vm_memory::{Bytes, GuestAddress};
use vmmdev_hgcm::{
    Buffer, CancelError, ClientId, Direction, Hgcm, HgcmConfig, HostCallError, Limits, Parm,
    RegisterError, Requestor, Status, SubmitError, VmEvent,
};
use vmmdev_hgcm_sdk::{Call, ClientId as SdkClientId, Host, Service};
use vmmdev_svc_echo::*;

#[test]
fn echo_copies_input_to_output_and_reports_the_length() {
    let hgcm = hgcm_with_echo("");
    let client = connect_ok(&hgcm, SERVICE_NAME);
    let outcome = call(
        &hgcm,
        client,
        FN_ECHO,
        vec![
            host_buffer(b"hello", Direction::ToHost),
            host_buffer(&[0; 8], Direction::FromHost),
        ],
    );
    assert_eq!(outcome.status, Status::VINF_SUCCESS.raw());
    let [_, Parm::Buffer(out)] = <[Parm; 2]>::try_from(outcome.params).expect("two params") else {
        panic!("second parameter is not a buffer");
    };
    assert_eq!(out.reported_len(), 5);
    assert_eq!(&out.into_host_bytes().expect("host bytes")[..5], b"hello");
}

#[test]
fn echo_reads_and_writes_guest_memory_in_place() {
    let hgcm = hgcm_with_echo("");
    let mem = guest_memory();
    mem.write_slice(b"guest", GuestAddress(0x1000))
        .expect("write");
    let input = Buffer::guest(
        mem.clone(),
        vec![(GuestAddress(0x1000), 5)],
        Direction::ToHost,
    )
    .expect("in RAM");
    let output = Buffer::guest(
        mem.clone(),
        vec![(GuestAddress(0x2FFE), 2), (GuestAddress(0x8000), 3)],
        Direction::FromHost,
    )
    .expect("in RAM");
    let client = connect_ok(&hgcm, SERVICE_NAME);
    let outcome = call(
        &hgcm,
        client,
        FN_ECHO,
        vec![Parm::Buffer(input), Parm::Buffer(output)],
    );
    assert_eq!(outcome.status, Status::VINF_SUCCESS.raw());
    let mut first = [0u8; 2];
    let mut rest = [0u8; 3];
    mem.read_slice(&mut first, GuestAddress(0x2FFE))
        .expect("read");
    mem.read_slice(&mut rest, GuestAddress(0x8000))
        .expect("read");
    assert_eq!((&first, &rest), (b"gu", b"est"));
}

#[test]
fn client_ids_are_non_zero_unique_and_increasing() {
    let hgcm = hgcm_with_echo("");
    let ids: Vec<u32> = (0..5).map(|_| connect_ok(&hgcm, SERVICE_NAME).0).collect();
    assert!(ids[0] > 0);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
}

#[test]
fn disconnected_client_id_is_not_reissued_immediately() {
    let hgcm = hgcm_with_echo("");
    let first = connect_ok(&hgcm, SERVICE_NAME);
    disconnect(&hgcm, first);
    assert_ne!(connect_ok(&hgcm, SERVICE_NAME), first);
}

#[test]
fn connect_to_unknown_service_is_service_not_found() {
    let hgcm = hgcm_with_echo("");
    let err = hgcm
        .connect("NoSuchService", KERNEL, Box::new(|_| {}))
        .expect_err("refused");
    assert_eq!(err.status(), Status::VERR_HGCM_SERVICE_NOT_FOUND.raw());
}

#[test]
fn call_of_unknown_client_is_invalid_client_id() {
    let hgcm = hgcm_with_echo("");
    let err = submit(&hgcm, request(ClientId(999), FN_NOOP, vec![])).expect_err("refused");
    assert_eq!(err.status(), Status::VERR_HGCM_INVALID_CLIENT_ID.raw());
}

#[test]
fn call_after_disconnect_is_invalid_client_id() {
    let hgcm = hgcm_with_echo("");
    let client = connect_ok(&hgcm, SERVICE_NAME);
    assert_eq!(disconnect(&hgcm, client).status, Status::VINF_SUCCESS.raw());
    let err = submit(&hgcm, request(client, FN_NOOP, vec![])).expect_err("refused");
    assert_eq!(err, SubmitError::InvalidClient(client));
}

#[test]
fn disconnect_of_unknown_client_is_refused() {
    let hgcm = hgcm_with_echo("");
    let err = hgcm
        .disconnect(ClientId(4242), Box::new(|_| {}))
        .expect_err("refused");
    assert_eq!(err.status(), Status::VERR_HGCM_INVALID_CLIENT_ID.raw());
}

#[test]
fn too_many_parameters_are_refused_as_invalid_parameter() {
    let hgcm = hgcm_with_echo("");
    let client = connect_ok(&hgcm, SERVICE_NAME);
    let params = (0..33).map(Parm::U32).collect();
    let err = submit(&hgcm, request(client, FN_NOOP, params)).expect_err("refused");
    assert_eq!(err.status(), Status::VERR_INVALID_PARAMETER.raw());
}

#[test]
fn buffers_over_the_per_call_limit_are_refused_as_no_memory() {
    let limits = Limits {
        max_buffer_bytes_per_call: 16,
        ..Limits::default()
    };
    let hgcm = echo_with_limits(limits);
    let client = connect_ok(&hgcm, SERVICE_NAME);
    let params = vec![
        host_buffer(&[0; 10], Direction::ToHost),
        host_buffer(&[0; 10], Direction::FromHost),
    ];
    let err = submit(&hgcm, request(client, FN_ECHO, params)).expect_err("refused");
    assert_eq!(err.status(), Status::VERR_NO_MEMORY.raw());
}

#[test]
fn client_limit_applies_per_category() {
    let limits = Limits {
        max_clients: [1, 1, 1],
        ..Limits::default()
    };
    let hgcm = echo_with_limits(limits);
    connect_ok(&hgcm, SERVICE_NAME);
    let err = hgcm
        .connect(SERVICE_NAME, KERNEL, Box::new(|_| {}))
        .expect_err("second kernel client");
    assert_eq!(err.status(), Status::VERR_HGCM_TOO_MANY_CLIENTS.raw());
    assert_eq!(
        connect(&hgcm, SERVICE_NAME, USER).status,
        Status::VINF_SUCCESS.raw()
    );
}

#[test]
fn legacy_requestor_counts_as_kernel_by_default() {
    let limits = Limits {
        max_clients: [1, 5, 5],
        ..Limits::default()
    };
    let hgcm = echo_with_limits(limits);
    assert_eq!(
        connect(&hgcm, SERVICE_NAME, Requestor::LEGACY).status,
        Status::VINF_SUCCESS.raw()
    );
    let err = hgcm
        .connect(SERVICE_NAME, KERNEL, Box::new(|_| {}))
        .expect_err("kernel quota used");
    assert_eq!(err.status(), Status::VERR_HGCM_TOO_MANY_CLIENTS.raw());
}

#[test]
fn pending_call_limit_per_client_is_enforced_and_released_on_completion() {
    let limits = Limits {
        max_calls_per_client: [2, 2, 2],
        ..Limits::default()
    };
    let hgcm = echo_with_limits(limits);
    let client = connect_ok(&hgcm, SERVICE_NAME);
    let wait = || request(client, FN_WAIT, vec![Parm::U32(0), Parm::U32(0)]);
    let first = submit(&hgcm, wait()).expect("first");
    let _second = submit(&hgcm, wait()).expect("second");
    let err = submit(&hgcm, wait()).expect_err("third refused");
    assert_eq!(err.status(), Status::VERR_HGCM_TOO_MANY_CLIENT_CALLS.raw());
    host_count(&hgcm, HOST_FN_WAKE_ALL);
    first.1.recv_timeout(DEADLINE).expect("woken");
    eventually("a call slot to free up", || submit(&hgcm, wait()).is_ok());
}

#[test]
fn wait_is_completed_by_a_host_call() {
    let hgcm = hgcm_with_echo("");
    let client = connect_ok(&hgcm, SERVICE_NAME);
    let (_, rx) = park_wait(&hgcm, client);
    assert_eq!(host_count(&hgcm, HOST_FN_WAKE_ALL), 1);
    let outcome = rx.recv_timeout(DEADLINE).expect("woken");
    assert_eq!(outcome.status, Status::VINF_SUCCESS.raw());
    assert_eq!(outcome.params[1].as_u32(), Some(WAKE_REASON_HOST));
}

#[test]
fn wait_times_out_with_verr_timeout() {
    let hgcm = hgcm_with_echo("");
    let client = connect_ok(&hgcm, SERVICE_NAME);
    let outcome = call(&hgcm, client, FN_WAIT, vec![Parm::U32(20), Parm::U32(0)]);
    assert_eq!(outcome.status, Status::VERR_TIMEOUT.raw());
    assert_eq!(outcome.params[1].as_u32(), Some(WAKE_REASON_TIMEOUT));
}

#[test]
fn cancelled_call_never_completes_and_the_service_lets_go_of_it() {
    let hgcm = hgcm_with_echo("");
    let client = connect_ok(&hgcm, SERVICE_NAME);
    let (id, rx) = park_wait(&hgcm, client);
    assert_eq!(hgcm.cancel(id), Ok(()));
    eventually("the service to see the cancel", || {
        host_count(&hgcm, HOST_FN_WAITER_COUNT) == 0
    });
    assert!(
        rx.recv_timeout(QUIET).is_err(),
        "a cancelled call's completion ran"
    );
}

#[test]
fn cancel_of_unknown_request_returns_not_found() {
    let hgcm = hgcm_with_echo("");
    let client = connect_ok(&hgcm, SERVICE_NAME);
    let (id, rx) = submit(&hgcm, request(client, FN_NOOP, vec![])).expect("accepted");
    rx.recv_timeout(DEADLINE).expect("completes");
    assert_eq!(hgcm.cancel(id), Err(CancelError::NotFound(id)));
}

#[test]
fn second_cancel_of_the_same_request_returns_not_found() {
    let hgcm = hgcm_with_echo("");
    let client = connect_ok(&hgcm, SERVICE_NAME);
    let (id, _rx) = submit(&hgcm, wait_forever(client)).expect("accepted");
    assert_eq!(hgcm.cancel(id), Ok(()));
    assert_eq!(hgcm.cancel(id), Err(CancelError::NotFound(id)));
}

#[test]
fn disconnect_cancels_pending_calls_with_verr_cancelled() {
    let hgcm = hgcm_with_echo("");
    let client = connect_ok(&hgcm, SERVICE_NAME);
    let (_, rx) = park_wait(&hgcm, client);
    assert_eq!(disconnect(&hgcm, client).status, Status::VINF_SUCCESS.raw());
    assert_eq!(
        rx.recv_timeout(DEADLINE).expect("completes").status,
        Status::VERR_CANCELLED.raw()
    );
    assert_eq!(host_count(&hgcm, HOST_FN_WAITER_COUNT), 0);
}

#[test]
fn notification_from_a_service_reaches_subscribers() {
    let hgcm = hgcm_with_echo("");
    let notes = hgcm.subscribe();
    let client = connect_ok(&hgcm, SERVICE_NAME);
    let outcome = call(
        &hgcm,
        client,
        FN_NOTIFY,
        vec![Parm::U32(77), host_buffer(b"ping", Direction::ToHost)],
    );
    assert_eq!(outcome.status, Status::VINF_SUCCESS.raw());
    let note = notes.recv_timeout(DEADLINE).expect("notified");
    assert_eq!(
        (note.service.as_str(), note.code, note.payload.as_slice()),
        (SERVICE_NAME, 77, &b"ping"[..])
    );
}

#[test]
fn call_carries_its_own_requestor_to_the_service() {
    let hgcm = hgcm_with_echo("");
    let client = connect_ok(&hgcm, SERVICE_NAME);
    let mut req = request(
        client,
        FN_INFO,
        vec![Parm::U32(0), Parm::U32(0), Parm::U32(0)],
    );
    req.requestor = USER;
    let (_, rx) = submit(&hgcm, req).expect("accepted");
    let outcome = rx.recv_timeout(DEADLINE).expect("completes");
    assert_eq!(outcome.params[0].as_u32(), Some(USER.0));
    assert_eq!(outcome.params[1].as_u32(), Some(client.0));
    assert_eq!(outcome.params[2].as_u32(), Some(0));
}

#[test]
fn host_call_to_unknown_service_is_refused() {
    let hgcm = hgcm_with_echo("");
    assert_eq!(
        hgcm.host_call("Nope", 1, &mut []),
        Err(HostCallError::ServiceNotFound("Nope".into()))
    );
}

#[test]
fn unknown_host_function_returns_the_service_status() {
    let hgcm = hgcm_with_echo("");
    assert_eq!(
        hgcm.host_call(SERVICE_NAME, 99, &mut []),
        Ok(Status::VERR_NOT_SUPPORTED.raw())
    );
}

#[test]
fn second_service_with_the_same_name_is_refused() {
    let hgcm = hgcm_with_echo("");
    let err = hgcm
        .register_builtin(echo_entry, "")
        .expect_err("duplicate");
    assert_eq!(err, RegisterError::DuplicateName(SERVICE_NAME.into()));
    assert_eq!(hgcm.services().len(), 1);
}

#[test]
fn builtin_whose_constructor_refuses_reports_init_refused() {
    let hgcm = Hgcm::new(HgcmConfig::default());
    let err = hgcm
        .register_builtin(echo_entry, "bogus_flag")
        .expect_err("refused");
    assert_eq!(
        err,
        RegisterError::InitRefused(Status::VERR_INVALID_PARAMETER.raw())
    );
}

#[test]
fn many_clients_on_many_threads_all_get_exactly_one_completion() {
    let hgcm = hgcm_with_echo("");
    let completions = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let hgcm = hgcm.clone();
            let completions = completions.clone();
            std::thread::spawn(move || {
                let client = connect_ok(&hgcm, SERVICE_NAME);
                for i in 0..200u32 {
                    let payload = format!("{t}:{i}").into_bytes();
                    let outcome = call(
                        &hgcm,
                        client,
                        FN_ECHO,
                        vec![
                            host_buffer(&payload, Direction::ToHost),
                            host_buffer(&[0; 16], Direction::FromHost),
                        ],
                    );
                    assert_eq!(outcome.status, Status::VINF_SUCCESS.raw());
                    let out = outcome.params[1].as_buffer().expect("buffer");
                    assert_eq!(out.copy_in(16).expect("copy")[..payload.len()], payload[..]);
                    completions.fetch_add(1, Ordering::Relaxed);
                }
                disconnect(&hgcm, client);
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("worker thread");
    }
    assert_eq!(completions.load(Ordering::Relaxed), 8 * 200);
}

#[test]
fn completions_from_other_threads_are_delivered() {
    let hgcm = hgcm_with_echo("");
    let client = connect_ok(&hgcm, SERVICE_NAME);
    let receivers: Vec<_> = (0..50)
        .map(|_| submit(&hgcm, wait_forever(client)).expect("accepted").1)
        .collect();
    eventually("all calls to be parked", || {
        host_count(&hgcm, HOST_FN_WAITER_COUNT) == 50
    });
    // The wake runs on a host thread different from the service thread.
    let waker = {
        let hgcm = hgcm.clone();
        std::thread::spawn(move || host_count(&hgcm, HOST_FN_WAKE_ALL))
    };
    assert_eq!(waker.join().expect("waker"), 50);
    for rx in receivers {
        assert_eq!(
            rx.recv_timeout(DEADLINE).expect("woken").status,
            Status::VINF_SUCCESS.raw()
        );
    }
}

#[test]
fn cancel_racing_completion_yields_exactly_one_of_them() {
    let hgcm = hgcm_with_echo("");
    let client = connect_ok(&hgcm, SERVICE_NAME);
    let mut cancelled = 0;
    let mut completed = 0;
    for _ in 0..300 {
        let (id, rx) = submit(
            &hgcm,
            request(client, FN_WAIT, vec![Parm::U32(1), Parm::U32(0)]),
        )
        .expect("accepted");
        let cancel_won = hgcm.cancel(id).is_ok();
        match rx.recv_timeout(if cancel_won {
            std::time::Duration::from_millis(20)
        } else {
            DEADLINE
        }) {
            Ok(_) => {
                assert!(!cancel_won, "a cancelled call's completion ran");
                completed += 1;
            }
            Err(_) => {
                assert!(cancel_won, "a call that was not cancelled never completed");
                cancelled += 1;
            }
        }
    }
    assert_eq!(cancelled + completed, 300);
    eventually("the service to let go of every call", || {
        host_count(&hgcm, HOST_FN_WAITER_COUNT) == 0
    });
}

#[test]
fn panic_in_a_service_fails_its_calls_and_marks_it_failed() {
    let hgcm = hgcm_with_echo("allow_panic");
    hgcm.register_builtin(recorder_entry, "")
        .expect("recorder registers");
    let client = connect_ok(&hgcm, SERVICE_NAME);
    let (_, waiting) = submit(&hgcm, wait_forever(client)).expect("accepted");
    let outcome = call(&hgcm, client, FN_PANIC, vec![]);
    assert_eq!(outcome.status, vmmdev_hgcm_sdk::DROPPED_CALL_STATUS);
    assert_eq!(
        waiting.recv_timeout(DEADLINE).expect("failed").status,
        Status::VERR_HGCM_INTERNAL.raw()
    );
    let echo = hgcm
        .services()
        .into_iter()
        .find(|s| s.name == SERVICE_NAME)
        .expect("listed");
    assert!(echo.failed);
    let err = hgcm
        .connect(SERVICE_NAME, KERNEL, Box::new(|_| {}))
        .expect_err("failed service");
    assert_eq!(err.status(), Status::VERR_HGCM_INTERNAL.raw());
    // Other services and the host carry on.
    let other = connect_ok(&hgcm, RECORDER);
    assert_eq!(
        call(&hgcm, other, 1, vec![]).status,
        Status::VINF_SUCCESS.raw()
    );
}

#[test]
fn reset_disconnects_clients_drops_pending_calls_and_notifies() {
    let hgcm = Hgcm::new(HgcmConfig::default());
    hgcm.register_builtin(recorder_entry, "")
        .expect("registers");
    let client = connect_ok(&hgcm, RECORDER);
    let (id, held) = submit(&hgcm, request(client, RECORDER_FN_HOLD, vec![])).expect("accepted");
    eventually("the call to be held", || {
        recorded().contains(&format!("call {} {RECORDER_FN_HOLD}", client.0))
    });
    hgcm.reset();
    let events = recorded();
    let disconnect_at = events
        .iter()
        .position(|e| *e == format!("disconnect {}", client.0))
        .expect("disconnect seen");
    let reset_at = events
        .iter()
        .position(|e| e == "notify Reset")
        .expect("reset seen");
    assert!(disconnect_at < reset_at, "{events:?}");
    assert!(
        held.recv_timeout(QUIET).is_err(),
        "a reset call's completion ran"
    );
    assert_eq!(hgcm.cancel(id), Err(CancelError::NotFound(id)));
    assert!(submit(&hgcm, request(client, 1, vec![])).is_err());
    assert_eq!(hgcm.services()[0].clients, 0);
}

#[test]
fn vm_events_reach_every_service() {
    let hgcm = Hgcm::new(HgcmConfig::default());
    hgcm.register_builtin(recorder_entry, "")
        .expect("registers");
    hgcm.notify(VmEvent::Suspend);
    eventually("the event to arrive", || {
        recorded().iter().any(|e| e == "notify Suspend")
    });
}

#[test]
fn call_queued_behind_a_busy_service_for_a_disconnected_client_gets_invalid_client_id() {
    let hgcm = Hgcm::new(HgcmConfig::default());
    hgcm.register_builtin(recorder_entry, "")
        .expect("registers");
    let client = connect_ok(&hgcm, RECORDER);
    let (release, gate) = bounded::<()>(0);
    *GATE.lock().expect("gate") = Some(gate);
    let (_, blocked) = submit(&hgcm, request(client, RECORDER_FN_BLOCK, vec![])).expect("accepted");
    eventually("the service to block", || {
        recorded().iter().any(|e| e == "blocking")
    });
    let (_, queued) = submit(&hgcm, request(client, 1, vec![])).expect("accepted");
    hgcm.disconnect(client, Box::new(|_| {}))
        .expect("disconnect accepted");
    release.send(()).expect("unblock");
    assert_eq!(
        blocked.recv_timeout(DEADLINE).expect("completes").status,
        Status::VERR_CANCELLED.raw()
    );
    assert_eq!(
        queued.recv_timeout(DEADLINE).expect("completes").status,
        Status::VERR_HGCM_INVALID_CLIENT_ID.raw()
    );
}

// --- A small recording service used by several tests -------------------------------------------

const RECORDER: &str = "Recorder";
const RECORDER_FN_HOLD: u32 = 2;
const RECORDER_FN_BLOCK: u32 = 3;

static EVENTS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static GATE: Mutex<Option<crossbeam_channel::Receiver<()>>> = Mutex::new(None);

fn record(event: String) {
    EVENTS.lock().expect("events").push(event);
}

fn recorded() -> Vec<String> {
    EVENTS.lock().expect("events").clone()
}

/// Records what it sees; function 1 completes at once, 2 holds the call, 3 blocks the service
/// thread until the test opens the gate.
struct Recorder {
    held: Vec<Call>,
}

impl Service for Recorder {
    fn connect(
        &mut self,
        client: SdkClientId,
        _requestor: Requestor,
        restoring: bool,
    ) -> Result<(), i32> {
        record(format!("connect {} {restoring}", client.0));
        Ok(())
    }

    fn disconnect(&mut self, client: SdkClientId) {
        record(format!("disconnect {}", client.0));
        self.held.retain(|c| c.client() != client);
    }

    fn call(&mut self, call: Call) {
        record(format!("call {} {}", call.client().0, call.function()));
        match call.function() {
            RECORDER_FN_HOLD => self.held.push(call),
            RECORDER_FN_BLOCK => {
                record("blocking".into());
                let gate = GATE.lock().expect("gate").take();
                if let Some(gate) = gate {
                    let _ = gate.recv();
                }
                call.complete(Status::VINF_SUCCESS.raw());
            }
            _ => {
                call.complete(Status::VINF_SUCCESS.raw());
            }
        }
    }

    fn notify(&mut self, event: VmEvent) {
        record(format!("notify {event:?}"));
    }
}

vmmdev_hgcm_sdk::service_entry!(fn recorder_entry, Recorder, "Recorder", |_: Host, _: &str| Ok(Recorder {
    held: Vec::new()
}));
