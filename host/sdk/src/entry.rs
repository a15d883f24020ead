//! The C entry points behind a Rust [`Service`]: the load function the macros export and one
//! trampoline per table callback. Each trampoline catches panics; a panic marks the instance
//! poisoned and reports the failure to the host, so nothing unwinds into the host.

use std::any::Any;
use std::ffi::{CStr, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use vmmdev_hgcm_abi::ffi::{
    ABI_MAJOR, ABI_MINOR, CALL_FLAG_RESTORED, CallHandle, HOST_API_MIN_SIZE, HostApi, PluginTable,
    RawParm, StateWriter,
};
use vmmdev_hgcm_abi::status::Status;
use vmmdev_hgcm_abi::{ClientCategory, ClientId, Requestor, VmEvent};

use crate::call::{Call, CallInfo, refuse};
use crate::host::Host;
use crate::link::HostLink;
use crate::params::Params;
use crate::service::{ClientLimits, Service};

/// The service behind the opaque instance pointer.
struct Instance<S> {
    service: S,
    host: Host,
    poisoned: bool,
}

fn panic_text(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

impl<S: Service> Instance<S> {
    /// Runs `f` on the service unless it is poisoned; a panic poisons it.
    fn guard<T>(&mut self, fallback: T, f: impl FnOnce(&mut S) -> T) -> T {
        if self.poisoned {
            return fallback;
        }
        match catch_unwind(AssertUnwindSafe(|| f(&mut self.service))) {
            Ok(value) => value,
            Err(payload) => {
                self.poisoned = true;
                self.host.report_failure(&format!(
                    "service panicked: {}",
                    panic_text(payload.as_ref())
                ));
                fallback
            }
        }
    }
}

/// # Safety
/// `instance` must be the pointer `load::<S>` stored in the table, not yet unloaded; the host
/// calls entry points one at a time on the service thread, so the borrow is exclusive.
unsafe fn instance<'a, S>(instance: *mut c_void) -> &'a mut Instance<S> {
    // SAFETY: guaranteed by the caller.
    unsafe { &mut *instance.cast::<Instance<S>>() }
}

fn status_of(result: Result<(), i32>) -> i32 {
    match result {
        Ok(()) => Status::VINF_SUCCESS.raw(),
        // A "failure" that is not negative would read as success: make it a failure.
        Err(status) if Status(status).is_success() => Status::VERR_GENERAL_FAILURE.raw(),
        Err(status) => status,
    }
}

unsafe extern "C" fn unload<S: Service>(inst: *mut c_void) {
    // SAFETY: the host's contract: the instance pointer it got from `load`, last call.
    let mut boxed = unsafe { Box::from_raw(inst.cast::<Instance<S>>()) };
    boxed.guard((), |s| s.unload());
    boxed.host.link.close();
    // Drop the service, but never let a panicking destructor unwind into the host.
    if catch_unwind(AssertUnwindSafe(move || drop(boxed))).is_err() {
        log::error!("HGCM service destructor panicked");
    }
}

unsafe extern "C" fn connect<S: Service>(
    inst: *mut c_void,
    client: u32,
    requestor: u32,
    restoring: bool,
) -> i32 {
    // SAFETY: the host's contract (see `instance`).
    let inst = unsafe { instance::<S>(inst) };
    inst.guard(Status::VERR_HGCM_INTERNAL.raw(), |s| {
        status_of(s.connect(ClientId(client), Requestor(requestor), restoring))
    })
}

unsafe extern "C" fn disconnect<S: Service>(inst: *mut c_void, client: u32) -> i32 {
    // SAFETY: the host's contract (see `instance`).
    let inst = unsafe { instance::<S>(inst) };
    inst.guard(Status::VINF_SUCCESS.raw(), |s| {
        s.disconnect(ClientId(client));
        Status::VINF_SUCCESS.raw()
    })
}

#[allow(clippy::too_many_arguments)] // The ABI's signature.
unsafe extern "C" fn call<S: Service>(
    inst: *mut c_void,
    handle: CallHandle,
    client: u32,
    function: u32,
    requestor: u32,
    flags: u32,
    parms: *mut RawParm,
    count: u32,
) {
    // SAFETY: the host's contract (see `instance`).
    let inst = unsafe { instance::<S>(inst) };
    let info = CallInfo {
        handle,
        client: ClientId(client),
        function,
        requestor: Requestor(requestor),
        restored: flags & CALL_FLAG_RESTORED != 0,
    };
    // SAFETY: the host keeps the array valid until the call is completed.
    match unsafe { Call::new(inst.host.link.clone(), info, parms, count) } {
        // A poisoned instance drops the call, which completes it with an error.
        Ok(call) => inst.guard((), |s| s.call(call)),
        Err((link, handle)) => refuse(&link, handle, Status::VERR_INVALID_PARAMETER.raw()),
    }
}

unsafe extern "C" fn cancelled<S: Service>(inst: *mut c_void, client: u32) {
    // SAFETY: the host's contract (see `instance`).
    let inst = unsafe { instance::<S>(inst) };
    inst.guard((), |s| s.cancelled(ClientId(client)));
}

unsafe extern "C" fn host_call<S: Service>(
    inst: *mut c_void,
    function: u32,
    parms: *mut RawParm,
    count: u32,
) -> i32 {
    // SAFETY: the host's contract (see `instance`).
    let inst = unsafe { instance::<S>(inst) };
    // SAFETY: the host keeps the array valid during this callback; `params` is dropped in it.
    let mut params = match unsafe { Params::from_raw(parms, count) } {
        Ok(params) => params,
        Err(status) => return status,
    };
    let status = inst.guard(Status::VERR_HGCM_INTERNAL.raw(), |s| {
        s.host_call(function, &mut params)
    });
    // SAFETY: the same, still valid array.
    unsafe { params.write_back(parms) };
    status
}

/// Hands `data` to the host's writer.
///
/// # Safety
/// `writer` must be the host's valid writer for this save callback.
unsafe fn write_state(writer: *const StateWriter, data: &[u8]) -> i32 {
    if writer.is_null() {
        return Status::VERR_INVALID_PARAMETER.raw();
    }
    // SAFETY: guaranteed by the caller; the host copies `data` before `write` returns.
    unsafe { ((*writer).write)((*writer).ctx, data.as_ptr(), data.len()) }
}

unsafe extern "C" fn save_state<S: Service>(inst: *mut c_void, writer: *const StateWriter) -> i32 {
    // SAFETY: the host's contract (see `instance`).
    let inst = unsafe { instance::<S>(inst) };
    match inst.guard(None, |s| Some(s.save_state())) {
        // SAFETY: the host's writer for this callback.
        Some(data) => unsafe { write_state(writer, &data) },
        None => Status::VERR_HGCM_INTERNAL.raw(),
    }
}

unsafe extern "C" fn save_client<S: Service>(
    inst: *mut c_void,
    client: u32,
    writer: *const StateWriter,
) -> i32 {
    // SAFETY: the host's contract (see `instance`).
    let inst = unsafe { instance::<S>(inst) };
    match inst.guard(None, |s| Some(s.save_client(ClientId(client)))) {
        // SAFETY: the host's writer for this callback.
        Some(data) => unsafe { write_state(writer, &data) },
        None => Status::VERR_HGCM_INTERNAL.raw(),
    }
}

/// # Safety
/// A non-null `data` must be readable for `len` bytes during the callback.
unsafe fn state_bytes<'a>(data: *const u8, len: usize) -> Option<&'a [u8]> {
    match (data.is_null(), len) {
        (_, 0) => Some(&[]),
        (true, _) => None,
        // SAFETY: guaranteed by the caller.
        (false, _) => Some(unsafe { std::slice::from_raw_parts(data, len) }),
    }
}

/// Runs a state-loading callback on data the host passed.
///
/// # Safety
/// `inst` as for [`instance`]; a non-null `data` must be readable for `len` bytes during the
/// callback.
unsafe fn load_with<S: Service>(
    inst: *mut c_void,
    data: *const u8,
    len: usize,
    load: impl FnOnce(&mut S, &[u8]) -> Result<(), i32>,
) -> i32 {
    // SAFETY: the host's contract (see `instance`).
    let inst = unsafe { instance::<S>(inst) };
    // SAFETY: guaranteed by the caller.
    let Some(data) = (unsafe { state_bytes(data, len) }) else {
        return Status::VERR_INVALID_PARAMETER.raw();
    };
    inst.guard(Status::VERR_HGCM_INTERNAL.raw(), |s| {
        status_of(load(s, data))
    })
}

unsafe extern "C" fn load_state<S: Service>(
    inst: *mut c_void,
    version: u32,
    data: *const u8,
    len: usize,
) -> i32 {
    // SAFETY: the host's contract for this callback.
    unsafe { load_with::<S>(inst, data, len, |s, data| s.load_state(version, data)) }
}

unsafe extern "C" fn load_client<S: Service>(
    inst: *mut c_void,
    client: u32,
    version: u32,
    data: *const u8,
    len: usize,
) -> i32 {
    // SAFETY: the host's contract for this callback.
    unsafe {
        load_with::<S>(inst, data, len, |s, data| {
            s.load_client(ClientId(client), version, data)
        })
    }
}

unsafe extern "C" fn notify<S: Service>(inst: *mut c_void, event: u32) {
    // SAFETY: the host's contract (see `instance`).
    let inst = unsafe { instance::<S>(inst) };
    if let Some(event) = VmEvent::from_code(event) {
        inst.guard((), |s| s.notify(event));
    }
}

/// Builds a service and fills the plugin table; the body of the entry points the macros generate.
///
/// # Safety
/// `host` and `table` must be the host's valid tables and `config` null or a NUL-terminated
/// string, as the ABI's load entry specifies.
pub unsafe fn load<S: Service>(
    host: *const HostApi,
    config: *const c_char,
    table: *mut PluginTable,
    name: &'static CStr,
    constructor: fn(Host, &str) -> Result<S, i32>,
) -> i32 {
    if host.is_null() || table.is_null() {
        return Status::VERR_INVALID_PARAMETER.raw();
    }
    // SAFETY: both tables start with the fixed header (size, major, minor) in every ABI version,
    // so these fields can be read and written whatever the host's version.
    let (host_size, host_major, table_size) =
        unsafe { ((*host).size, (*host).abi_major, (*table).size) };
    if host_major != ABI_MAJOR
        || host_size < HOST_API_MIN_SIZE
        || (table_size as usize) < size_of::<PluginTable>()
    {
        // SAFETY: the header is always present (see above).
        unsafe {
            (*table).abi_major = ABI_MAJOR;
            (*table).abi_minor = ABI_MINOR;
        }
        return Status::VERR_VERSION_MISMATCH.raw();
    }
    // SAFETY: the host's table is at least as large as the layout of this major version
    // (checked above).
    let api = unsafe { std::ptr::read(host) };
    let config = if config.is_null() {
        ""
    } else {
        // SAFETY: the ABI passes a NUL-terminated string valid during the load call.
        match unsafe { CStr::from_ptr(config) }.to_str() {
            Ok(config) => config,
            Err(_) => return Status::VERR_INVALID_PARAMETER.raw(),
        }
    };
    let link = Arc::new(HostLink::new(api));
    let host = Host { link };
    let service = match catch_unwind(AssertUnwindSafe(|| constructor(host.clone(), config))) {
        Ok(Ok(service)) => service,
        Ok(Err(status)) => return status_of(Err(status)),
        Err(payload) => {
            log::error!(
                "HGCM service constructor panicked: {}",
                panic_text(payload.as_ref())
            );
            return Status::VERR_HGCM_INTERNAL.raw();
        }
    };
    // SAFETY: `table` is the host's, at least as large as our layout (checked above).
    let table = unsafe { &mut *table };
    let defaults = ClientLimits {
        max_clients: table.max_clients,
        max_calls_per_client: table.max_calls_per_client,
        legacy_category: ClientCategory::from_index(table.legacy_category)
            .unwrap_or(ClientCategory::Kernel),
    };
    let limits = match catch_unwind(AssertUnwindSafe(|| service.client_limits(defaults))) {
        Ok(limits) => limits,
        Err(_) => return Status::VERR_HGCM_INTERNAL.raw(),
    };
    let instance = Box::into_raw(Box::new(Instance {
        service,
        host,
        poisoned: false,
    }));
    *table = PluginTable {
        size: size_of::<PluginTable>() as u32,
        abi_major: ABI_MAJOR,
        abi_minor: ABI_MINOR,
        name: name.as_ptr(),
        max_clients: limits.max_clients,
        max_calls_per_client: limits.max_calls_per_client,
        legacy_category: limits.legacy_category as u32,
        state_version: S::STATE_VERSION,
        instance: instance.cast::<c_void>(),
        unload: Some(unload::<S>),
        connect: Some(connect::<S>),
        disconnect: Some(disconnect::<S>),
        call: Some(call::<S>),
        cancelled: Some(cancelled::<S>),
        host_call: Some(host_call::<S>),
        save_state: Some(save_state::<S>),
        load_state: Some(load_state::<S>),
        save_client: Some(save_client::<S>),
        load_client: Some(load_client::<S>),
        notify: Some(notify::<S>),
    };
    Status::VINF_SUCCESS.raw()
}
