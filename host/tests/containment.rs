//! Containment of plugins that break the ABI contract, written directly against the raw ABI.

mod common;

use std::ffi::{c_char, c_void};
use std::sync::Mutex;

use common::*;
use vmmdev_hgcm::{Hgcm, HgcmConfig, RegisterError, Status};
use vmmdev_hgcm_abi::ffi::{HostApi, PluginTable, RawParm};

const FN_COMPLETE_TWICE: u32 = 1;
const FN_BAD_STATUS: u32 = 2;
const FN_HOLD: u32 = 3;
const FN_COMPLETE_INSIDE_ACCESS: u32 = 4;
/// Holds the call and publishes it in [`HELD`] (one test only: handles repeat across instances).
const FN_HOLD_AND_PUBLISH: u32 = 5;

/// The host API (as the rogue's instance pointer) and handle of the published call.
static HELD: Mutex<Option<(usize, u64)>> = Mutex::new(None);

/// Completes according to the function number, breaking the rules on purpose.
unsafe extern "C" fn rogue_call(
    instance: *mut c_void,
    handle: u64,
    _client: u32,
    function: u32,
    _requestor: u32,
    _flags: u32,
    _parms: *mut RawParm,
    _count: u32,
) {
    // SAFETY: `instance` is the boxed copy of the host API made in `rogue_entry`.
    let api = unsafe { &*instance.cast::<HostApi>() };
    // SAFETY: the host API is called with its own context, as the ABI requires.
    unsafe {
        match function {
            FN_COMPLETE_TWICE => {
                (api.complete)(api.ctx, handle, Status::VINF_SUCCESS.raw());
                (api.complete)(api.ctx, handle, Status::VINF_SUCCESS.raw());
            }
            FN_BAD_STATUS => {
                (api.complete)(api.ctx, handle, Status::VINF_HGCM_ASYNC_EXECUTE.raw());
            }
            FN_COMPLETE_INSIDE_ACCESS => {
                (api.begin_guest_access)(api.ctx, handle);
                (api.complete)(api.ctx, handle, Status::VINF_SUCCESS.raw());
                (api.end_guest_access)(api.ctx, handle);
            }
            FN_HOLD_AND_PUBLISH => {
                *HELD.lock().expect("held") = Some((instance as usize, handle));
            }
            _ => {}
        }
    }
}

extern "C" fn rogue_entry(
    host: *const HostApi,
    _config: *const c_char,
    table: *mut PluginTable,
) -> i32 {
    // SAFETY: the framework passes its valid tables.
    unsafe {
        let table = &mut *table;
        table.name = c"Rogue".as_ptr();
        table.instance = Box::into_raw(Box::new(*host)).cast();
        table.call = Some(rogue_call);
    }
    Status::VINF_SUCCESS.raw()
}

extern "C" fn no_call_entry(
    _host: *const HostApi,
    _config: *const c_char,
    table: *mut PluginTable,
) -> i32 {
    // SAFETY: the framework passes its valid table.
    unsafe { (*table).name = c"NoCall".as_ptr() };
    Status::VINF_SUCCESS.raw()
}

fn rogue() -> Hgcm {
    let hgcm = hgcm_with_echo("");
    hgcm.register_builtin(rogue_entry, "").expect("registers");
    hgcm
}

fn rogue_failed(hgcm: &Hgcm) -> bool {
    hgcm.services()
        .iter()
        .any(|s| s.name == "Rogue" && s.failed)
}

#[test]
fn completing_a_call_twice_fails_the_service_but_not_the_host() {
    let hgcm = rogue();
    let client = connect_ok(&hgcm, "Rogue");
    assert_eq!(
        call(&hgcm, client, FN_COMPLETE_TWICE, vec![]).status,
        Status::VINF_SUCCESS.raw()
    );
    assert!(rogue_failed(&hgcm));
    let echo = connect_ok(&hgcm, vmmdev_svc_echo::SERVICE_NAME);
    assert_eq!(
        call(&hgcm, echo, vmmdev_svc_echo::FN_NOOP, vec![]).status,
        Status::VINF_SUCCESS.raw()
    );
}

#[test]
fn invalid_completion_status_fails_the_call_and_the_service() {
    let hgcm = rogue();
    let client = connect_ok(&hgcm, "Rogue");
    let (_, held) = submit(&hgcm, request(client, FN_HOLD, vec![])).expect("accepted");
    assert_eq!(
        call(&hgcm, client, FN_BAD_STATUS, vec![]).status,
        Status::VERR_HGCM_INTERNAL.raw()
    );
    assert_eq!(
        held.recv_timeout(DEADLINE).expect("failed").status,
        Status::VERR_HGCM_INTERNAL.raw()
    );
    assert!(rogue_failed(&hgcm));
    let err = submit(&hgcm, request(client, FN_HOLD, vec![])).expect_err("failed service");
    assert_eq!(err.status(), Status::VERR_HGCM_INTERNAL.raw());
}

#[test]
fn table_without_a_call_entry_is_refused() {
    let hgcm = Hgcm::new(HgcmConfig::default());
    let err = hgcm
        .register_builtin(no_call_entry, "")
        .expect_err("refused");
    assert!(matches!(err, RegisterError::InvalidTable(_)), "{err}");
    assert!(hgcm.services().is_empty());
}

fn one_buffer() -> Vec<vmmdev_hgcm::Parm> {
    vec![host_buffer(&[0; 8], vmmdev_hgcm::Direction::FromHost)]
}

#[test]
fn completing_inside_a_guest_access_fails_the_call_and_the_service() {
    let hgcm = rogue();
    let client = connect_ok(&hgcm, "Rogue");
    assert_eq!(
        call(&hgcm, client, FN_COMPLETE_INSIDE_ACCESS, one_buffer()).status,
        Status::VERR_HGCM_INTERNAL.raw()
    );
    assert!(rogue_failed(&hgcm));
}

#[test]
fn raw_guest_access_is_refused_after_the_call_was_cancelled() {
    let hgcm = rogue();
    let client = connect_ok(&hgcm, "Rogue");
    let (id, _rx) =
        submit(&hgcm, request(client, FN_HOLD_AND_PUBLISH, one_buffer())).expect("accepted");
    let (instance, handle) = {
        let mut held = None;
        eventually("the call to be held", || {
            held = *HELD.lock().expect("held");
            held.is_some_and(|(_, h)| h == id.raw())
        });
        held.expect("held")
    };
    // SAFETY: the rogue's instance is its boxed copy of the host API, alive until unload.
    let api = unsafe { &*(instance as *const HostApi) };
    // SAFETY: the host API is called with its own context and a pending handle.
    unsafe {
        assert_eq!(
            (api.begin_guest_access)(api.ctx, handle),
            Status::VINF_SUCCESS.raw()
        );
        assert_eq!(
            (api.end_guest_access)(api.ctx, handle),
            Status::VINF_SUCCESS.raw()
        );
        assert_eq!(
            (api.end_guest_access)(api.ctx, handle),
            Status::VERR_INVALID_STATE.raw()
        );
    }
    assert_eq!(hgcm.cancel(id), Ok(()));
    // SAFETY: as above; the cancelled call stays known until the plugin completes it.
    unsafe {
        assert_eq!(
            (api.begin_guest_access)(api.ctx, handle),
            Status::VERR_CANCELLED.raw()
        );
        assert_eq!(
            (api.complete)(api.ctx, handle, Status::VINF_SUCCESS.raw()),
            Status::VERR_CANCELLED.raw()
        );
        assert_eq!(
            (api.begin_guest_access)(api.ctx, handle),
            Status::VERR_NOT_FOUND.raw()
        );
    }
}
