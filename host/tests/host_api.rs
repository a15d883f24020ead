//! Host functions as a service uses them through the SDK: dropping one of its clients, and what
//! a service's handles do once the framework has shut down.

mod common;

use std::sync::Mutex;

use common::*;
use vmmdev_hgcm::{Hgcm, HgcmConfig, Parm, Status, SubmitError};
use vmmdev_hgcm_sdk::{Call, ClientId, Delivery, Host, Service};

const KICKER: &str = "Kicker";
/// Disconnects the client named in parameter 0 (u32) and answers with `disconnect_client`'s status.
const FN_KICK: u32 = 1;
/// Holds the call until the test takes it (see [`HELD`]).
const FN_HOLD: u32 = 2;

/// The service's `Host` handle and held calls, for the tests to use after shutdown. Each test
/// binary runs these tests in one process, so they share the statics under [`SERIAL`].
static SERIAL: Mutex<()> = Mutex::new(());
static HOST: Mutex<Option<Host>> = Mutex::new(None);
static HELD: Mutex<Vec<Call>> = Mutex::new(Vec::new());

struct Kicker {
    host: Host,
}

impl Service for Kicker {
    fn call(&mut self, call: Call) {
        match call.function() {
            FN_KICK => {
                let status = match call.params().u32(0) {
                    Ok(client) => self.host.disconnect_client(ClientId(client)),
                    Err(status) => status,
                };
                call.complete(status);
            }
            FN_HOLD => HELD.lock().expect("held").push(call),
            _ => {
                call.complete(Status::VERR_NOT_SUPPORTED.raw());
            }
        }
    }
}

fn new_kicker(host: Host, _config: &str) -> Result<Kicker, i32> {
    *HOST.lock().expect("host") = Some(host.clone());
    Ok(Kicker { host })
}

vmmdev_hgcm_sdk::service_entry!(fn kicker_entry, Kicker, "Kicker", new_kicker);

fn kicker() -> Hgcm {
    let hgcm = Hgcm::new(HgcmConfig::default());
    hgcm.register_builtin(kicker_entry, "").expect("registers");
    hgcm.register_builtin(vmmdev_svc_echo::echo_entry, "")
        .expect("echo registers");
    hgcm
}

fn kick(hgcm: &Hgcm, caller: ClientId, victim: ClientId) -> i32 {
    call(hgcm, caller, FN_KICK, vec![Parm::U32(victim.0)]).status
}

#[test]
fn disconnect_client_drops_the_client_and_cancels_its_pending_calls() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let hgcm = kicker();
    let caller = connect_ok(&hgcm, KICKER);
    let victim = connect_ok(&hgcm, KICKER);
    let (_, held) = submit(&hgcm, request(victim, FN_HOLD, vec![])).expect("accepted");
    eventually("the call to be held", || {
        !HELD.lock().expect("held").is_empty()
    });

    assert_eq!(kick(&hgcm, caller, victim), Status::VINF_SUCCESS.raw());

    assert_eq!(
        submit(&hgcm, request(victim, FN_HOLD, vec![])).map(|_| ()),
        Err(SubmitError::InvalidClient(victim))
    );
    let call = HELD.lock().expect("held").pop().expect("held call");
    assert!(call.is_cancelled());
    assert_eq!(
        call.complete(Status::VINF_SUCCESS.raw()),
        Delivery::Cancelled
    );
    assert_eq!(
        held.recv_timeout(DEADLINE).expect("completes").status,
        Status::VERR_CANCELLED.raw()
    );
    let clients = hgcm
        .services()
        .into_iter()
        .find(|s| s.name == KICKER)
        .expect("listed")
        .clients;
    assert_eq!(clients, 1);
}

#[test]
fn disconnect_client_refuses_clients_of_other_services_and_unknown_ids() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let hgcm = kicker();
    let caller = connect_ok(&hgcm, KICKER);
    let echo_client = connect_ok(&hgcm, vmmdev_svc_echo::SERVICE_NAME);
    assert_eq!(
        kick(&hgcm, caller, echo_client),
        Status::VERR_NOT_FOUND.raw()
    );
    assert_eq!(
        kick(&hgcm, caller, ClientId(0x7000_0000)),
        Status::VERR_NOT_FOUND.raw()
    );
    assert_eq!(
        call(&hgcm, echo_client, vmmdev_svc_echo::FN_NOOP, vec![]).status,
        Status::VINF_SUCCESS.raw()
    );
}

#[test]
fn host_handles_kept_past_shutdown_are_refused_harmlessly() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let hgcm = kicker();
    let client = connect_ok(&hgcm, KICKER);
    let (_, held) = submit(&hgcm, request(client, FN_HOLD, vec![])).expect("accepted");
    eventually("the call to be held", || {
        !HELD.lock().expect("held").is_empty()
    });
    let host = HOST.lock().expect("host").take().expect("host kept");

    hgcm.shutdown();

    assert_eq!(host.notify(1, b"late"), Status::VERR_INVALID_STATE.raw());
    assert_eq!(
        host.disconnect_client(client),
        Status::VERR_INVALID_STATE.raw()
    );
    let call = HELD.lock().expect("held").pop().expect("held call");
    assert!(call.is_cancelled());
    assert_eq!(
        call.complete(Status::VINF_SUCCESS.raw()),
        Delivery::Refused(Status::VERR_HGCM_INTERNAL.raw())
    );
    assert!(
        held.recv_timeout(QUIET).is_err(),
        "completion ran after shutdown"
    );
}
