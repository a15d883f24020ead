//! The C interface of the library (`include/vmmdev_guest.h`), for guest programs not written in
//! Rust.
//!
//! A small, stable surface over the Rust API: a driver session (open/close), HGCM clients
//! (connect/disconnect/call) and the guest-properties operations (get/set/delete/wait). Every
//! function returns a [`ResultCode`] (0 on success, negative on failure) and records a message
//! describing a failure for the calling thread ([`vmmdev_guest_last_error`]).
//!
//! Ownership rules, as the header states them:
//! * a session comes from [`vmmdev_guest_open`] and goes back to [`vmmdev_guest_close`]; closing
//!   it makes the driver disconnect every client connected through it;
//! * client ids belong to the session they were connected on;
//! * strings the library returns (property values, names in a change) are the caller's and are
//!   freed with [`vmmdev_guest_string_free`], or all at once for a change with
//!   [`vmmdev_guest_prop_change_clear`];
//! * buffers passed to [`vmmdev_guest_hgcm_call`] stay the caller's; the library only accesses
//!   them during the call.
//!
//! A session may be used from several threads at once (one thread can wait while another sets
//! properties), as long as none of them closes it while the others use it.

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::Path;
use std::time::Duration;

use vmmdev_protocol::hgcm::ClientId;
use vmmdev_protocol::ioctl::VBG_TIMEOUT_INFINITE;

use crate::device::Device;
use crate::error::Error;
use crate::guest_props::{GuestPropClient, GuestPropError, PropertyFlags};
use crate::hgcm::{CallOptions, HgcmClient, Param};
use crate::linux::{LinuxTransport, Node};
use crate::transport::GuestTransport;

/// What a C function returns.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResultCode {
    /// Success.
    Ok = 0,
    /// A NULL pointer where one is required, a string that is not UTF-8, an unknown parameter
    /// type, or anything else the library refuses before asking the driver.
    InvalidArgument = -1,
    /// The vboxguest driver is not loaded (the device node is missing).
    NoDriver = -2,
    /// The driver refused the caller.
    PermissionDenied = -3,
    /// A signal interrupted the call, or the host ended the wait.
    Interrupted = -4,
    /// The timeout expired; the call was cancelled.
    TimedOut = -5,
    /// The host (service) answered with a failure status.
    Host = -6,
    /// The property does not exist.
    NotFound = -7,
    /// The property or namespace is read-only for the guest.
    AccessDenied = -8,
    /// A value or pattern is too long for the host, or the host's property limit is reached.
    TooLong = -9,
    /// The host has no such service.
    ServiceUnavailable = -10,
    /// Any other failure: an operating-system error, a driver speaking another interface
    /// version, a malformed reply.
    Failed = -11,
}

/// One parameter of [`vmmdev_guest_hgcm_call`] (`vmmdev_guest_hgcm_param`).
#[repr(C)]
#[derive(Debug)]
pub struct HgcmParamC {
    /// One of the `VMMDEV_GUEST_HGCM_PARAM_*` types.
    pub kind: u32,
    /// Buffers: the buffer's size in bytes; after the call, the bytes the host reported.
    pub size: u32,
    /// Values: the value, in and out.
    pub value: u64,
    /// Buffers: the caller's memory (may be NULL when `size` is 0).
    pub buffer: *mut c_void,
}

/// `VMMDEV_GUEST_HGCM_PARAM_U32`.
const PARAM_U32: u32 = 1;
/// `VMMDEV_GUEST_HGCM_PARAM_U64`.
const PARAM_U64: u32 = 2;
/// `VMMDEV_GUEST_HGCM_PARAM_IN`.
const PARAM_IN: u32 = 3;
/// `VMMDEV_GUEST_HGCM_PARAM_OUT`.
const PARAM_OUT: u32 = 4;
/// `VMMDEV_GUEST_HGCM_PARAM_INOUT`.
const PARAM_INOUT: u32 = 5;

/// A change reported by [`vmmdev_guest_prop_wait`] (`vmmdev_guest_prop_change`).
#[repr(C)]
#[derive(Debug)]
pub struct PropChangeC {
    /// The property name (owned by the caller after the call).
    pub name: *mut c_char,
    /// The new value, empty for a deletion (owned by the caller after the call).
    pub value: *mut c_char,
    /// The change's timestamp (ns since the Unix epoch); start the next wait from it.
    pub timestamp: u64,
    /// The new flags (`VMMDEV_GUEST_PROP_F_*`).
    pub flags: u32,
    /// 1 if the property was deleted.
    pub deleted: u8,
    /// 1 if changes may have been missed (the host forgot the starting timestamp).
    pub missed_changes: u8,
}

/// A driver session (`vmmdev_guest`), opaque to C.
#[derive(Debug)]
pub struct Session<T: GuestTransport = LinuxTransport> {
    device: Device<T>,
}

/// A failure on its way to C: the code to return and the message to record.
#[derive(Debug)]
struct Failure {
    code: ResultCode,
    message: String,
}

impl Failure {
    fn invalid(message: impl Into<String>) -> Self {
        Self {
            code: ResultCode::InvalidArgument,
            message: message.into(),
        }
    }
}

/// The code for a driver error.
fn driver_code(error: &Error) -> ResultCode {
    match error {
        Error::DriverNotLoaded { .. } => ResultCode::NoDriver,
        Error::PermissionDenied { .. } => ResultCode::PermissionDenied,
        Error::Interrupted { .. } => ResultCode::Interrupted,
        Error::TimedOut { .. } => ResultCode::TimedOut,
        Error::Host { .. } => ResultCode::Host,
        Error::BadArgument { .. } => ResultCode::InvalidArgument,
        Error::VersionMismatch { .. } | Error::UnexpectedReply { .. } | Error::Os { .. } => {
            ResultCode::Failed
        }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Self {
            code: driver_code(&error),
            message: error.to_string(),
        }
    }
}

impl From<GuestPropError> for Failure {
    fn from(error: GuestPropError) -> Self {
        let code = match &error {
            GuestPropError::Driver(inner) => driver_code(inner),
            GuestPropError::InvalidArgument { .. } => ResultCode::InvalidArgument,
            GuestPropError::ServiceUnavailable => ResultCode::ServiceUnavailable,
            GuestPropError::NotFound { .. } => ResultCode::NotFound,
            GuestPropError::AccessDenied { .. } => ResultCode::AccessDenied,
            GuestPropError::TooLong { .. } => ResultCode::TooLong,
            GuestPropError::Interrupted { .. } => ResultCode::Interrupted,
            GuestPropError::TimedOut { .. } => ResultCode::TimedOut,
            GuestPropError::Refused { .. }
            | GuestPropError::BadFlags { .. }
            | GuestPropError::TooManyWaits { .. }
            | GuestPropError::Host { .. } => ResultCode::Host,
            GuestPropError::KeptGrowing { .. } | GuestPropError::MalformedReply { .. } => {
                ResultCode::Failed
            }
        };
        Self {
            code,
            message: error.to_string(),
        }
    }
}

thread_local! {
    /// The message of the calling thread's last failure.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records the outcome for the calling thread and turns it into the C return value.
fn report(outcome: Result<(), Failure>) -> c_int {
    match outcome {
        Ok(()) => ResultCode::Ok as c_int,
        Err(failure) => {
            log::debug!("C API call failed: {}", failure.message);
            let message = CString::new(failure.message.replace('\0', " ")).unwrap_or_default();
            LAST_ERROR.with(|last| *last.borrow_mut() = message);
            failure.code as c_int
        }
    }
}

/// Borrows a NUL-terminated UTF-8 string from C.
///
/// # Safety
///
/// A non-NULL `text` must point to a NUL-terminated string that lives for `'a`.
unsafe fn c_str<'a>(text: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if text.is_null() {
        return Err(Failure::invalid(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL, and the caller guarantees a NUL-terminated string living for 'a.
    unsafe { CStr::from_ptr(text) }
        .to_str()
        .map_err(|_| Failure::invalid(format!("{what} is not UTF-8")))
}

/// Borrows the session behind a C handle.
///
/// # Safety
///
/// A non-NULL `session` must come from [`vmmdev_guest_open`] (or be a live `Session<T>`) and not
/// be closed for `'a`.
unsafe fn session<'a, T: GuestTransport>(
    session: *const Session<T>,
) -> Result<&'a Session<T>, Failure> {
    // SAFETY: the caller guarantees that a non-NULL pointer is a live session.
    unsafe { session.as_ref() }.ok_or_else(|| Failure::invalid("session is NULL"))
}

/// Converts a C timeout in milliseconds; `VMMDEV_GUEST_TIMEOUT_INFINITE` waits forever.
fn timeout(timeout_ms: u32) -> Option<Duration> {
    (timeout_ms != VBG_TIMEOUT_INFINITE).then(|| Duration::from_millis(timeout_ms.into()))
}

/// Hands a Rust string to C; the caller frees it with [`vmmdev_guest_string_free`].
fn c_string(text: String, what: &str) -> Result<*mut c_char, Failure> {
    CString::new(text)
        .map(CString::into_raw)
        .map_err(|_| Failure {
            code: ResultCode::Failed,
            message: format!("{what} contains a NUL byte"),
        })
}

/// Opens a driver session: `path` is the device node, NULL for `/dev/vboxuser`.
///
/// # Safety
///
/// `path` is NULL or a NUL-terminated string; `session` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vmmdev_guest_open(
    path: *const c_char,
    session: *mut *mut Session,
) -> c_int {
    report((|| {
        if session.is_null() {
            return Err(Failure::invalid("session is NULL"));
        }
        let device = if path.is_null() {
            Device::open(Node::User)?
        } else {
            // SAFETY: non-NULL, and the caller guarantees a NUL-terminated string.
            let path = unsafe { c_str(path, "path") }?;
            Device::open_path(Path::new(path))?
        };
        let opened = Box::into_raw(Box::new(Session { device }));
        // SAFETY: non-NULL, and the caller guarantees it is valid for a write.
        unsafe { session.write(opened) };
        Ok(())
    })())
}

/// Closes a session (NULL is ignored); the driver disconnects its clients.
///
/// # Safety
///
/// `session` is NULL or comes from [`vmmdev_guest_open`], and is not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vmmdev_guest_close(session: *mut Session) {
    if !session.is_null() {
        // SAFETY: the caller hands back a session from `vmmdev_guest_open` and never uses it
        // again, so the box is reclaimed exactly once.
        drop(unsafe { Box::from_raw(session) });
    }
}

/// Connects to the HGCM service `service`.
///
/// # Safety
///
/// `session` is a live session; `service` a NUL-terminated string; `client_id` valid for a
/// write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vmmdev_guest_hgcm_connect(
    session: *const Session,
    service: *const c_char,
    client_id: *mut u32,
) -> c_int {
    // SAFETY: forwarded from this function's contract.
    report(unsafe { hgcm_connect(session, service, client_id) })
}

/// # Safety
///
/// As [`vmmdev_guest_hgcm_connect`].
unsafe fn hgcm_connect<T: GuestTransport>(
    session: *const Session<T>,
    service: *const c_char,
    client_id: *mut u32,
) -> Result<(), Failure> {
    // SAFETY: forwarded from the caller.
    let session = unsafe { self::session(session) }?;
    // SAFETY: forwarded from the caller.
    let service = unsafe { c_str(service, "service") }?;
    if client_id.is_null() {
        return Err(Failure::invalid("client_id is NULL"));
    }
    let id = session.device.connect(service)?.into_id();
    // SAFETY: non-NULL, and the caller guarantees it is valid for a write.
    unsafe { client_id.write(id.raw()) };
    Ok(())
}

/// Disconnects an HGCM client of the session.
///
/// # Safety
///
/// `session` is a live session.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vmmdev_guest_hgcm_disconnect(
    session: *const Session,
    client_id: u32,
) -> c_int {
    // SAFETY: forwarded from this function's contract.
    report(unsafe { hgcm_disconnect(session, client_id) })
}

/// # Safety
///
/// As [`vmmdev_guest_hgcm_disconnect`].
unsafe fn hgcm_disconnect<T: GuestTransport>(
    session: *const Session<T>,
    client_id: u32,
) -> Result<(), Failure> {
    // SAFETY: forwarded from the caller.
    let session = unsafe { self::session(session) }?;
    Ok(HgcmClient::borrowed(&session.device, ClientId(client_id)).disconnect()?)
}

/// Calls function `function` of an HGCM client with `count` parameters.
///
/// # Safety
///
/// `session` is a live session; `params` points to `count` parameters (or is NULL when `count`
/// is 0) whose buffers are valid for their sizes (for writes, for OUT and INOUT) and do not
/// overlap an OUT or INOUT buffer; `host_status` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vmmdev_guest_hgcm_call(
    session: *const Session,
    client_id: u32,
    function: u32,
    params: *mut HgcmParamC,
    count: u32,
    timeout_ms: u32,
    host_status: *mut i32,
) -> c_int {
    // SAFETY: forwarded from this function's contract.
    report(unsafe {
        hgcm_call(
            session,
            client_id,
            function,
            params,
            count,
            timeout_ms,
            host_status,
        )
    })
}

/// # Safety
///
/// As [`vmmdev_guest_hgcm_call`].
unsafe fn hgcm_call<T: GuestTransport>(
    session: *const Session<T>,
    client_id: u32,
    function: u32,
    params: *mut HgcmParamC,
    count: u32,
    timeout_ms: u32,
    host_status: *mut i32,
) -> Result<(), Failure> {
    // SAFETY: forwarded from the caller.
    let session = unsafe { self::session(session) }?;
    let count = usize::try_from(count).map_err(|_| Failure::invalid("count too large"))?;
    let c_params: &mut [HgcmParamC] = if count == 0 {
        &mut []
    } else if params.is_null() {
        return Err(Failure::invalid("params is NULL"));
    } else {
        // SAFETY: the caller guarantees `count` parameters at `params`, exclusively ours for
        // the call.
        unsafe { std::slice::from_raw_parts_mut(params, count) }
    };
    let mut rust_params = Vec::with_capacity(c_params.len());
    for (index, param) in c_params.iter().enumerate() {
        // SAFETY: the caller guarantees the buffers are valid and do not overlap writable ones.
        rust_params.push(unsafe { to_param(param, index) }?);
    }
    let client = HgcmClient::borrowed(&session.device, ClientId(client_id));
    let options = CallOptions {
        timeout: timeout(timeout_ms),
        interruptible: true,
    };
    let outcome = client.call(function, &mut rust_params, options);
    let status = match &outcome {
        Ok(status) => Some(*status),
        Err(error) => error.host_status(),
    };
    if let Some(status) = status {
        for (c_param, param) in c_params.iter_mut().zip(&rust_params) {
            from_param(c_param, param);
        }
        if !host_status.is_null() {
            // SAFETY: non-NULL, and the caller guarantees it is valid for a write.
            unsafe { host_status.write(status.raw()) };
        }
    }
    outcome.map(drop).map_err(Failure::from)
}

/// Borrows a C parameter as a [`Param`].
///
/// # Safety
///
/// The parameter's buffer is valid for `size` bytes (for writes, for OUT and INOUT) for `'a`,
/// and a writable buffer overlaps no other buffer.
unsafe fn to_param<'a>(param: &HgcmParamC, index: usize) -> Result<Param<'a>, Failure> {
    let size = usize::try_from(param.size).map_err(|_| Failure::invalid("size too large"))?;
    let buffer = param.buffer.cast::<u8>();
    if buffer.is_null() && size != 0 {
        return Err(Failure::invalid(format!(
            "parameter {index}: NULL buffer of {size} bytes"
        )));
    }
    Ok(match param.kind {
        PARAM_U32 => Param::U32(u32::try_from(param.value).map_err(|_| {
            Failure::invalid(format!("parameter {index}: 32-bit value out of range"))
        })?),
        PARAM_U64 => Param::U64(param.value),
        PARAM_IN if size == 0 => Param::In(&[]),
        PARAM_OUT | PARAM_INOUT if size == 0 => Param::out(&mut []),
        // SAFETY: non-NULL and valid for reads of `size` bytes for 'a (the caller's contract).
        PARAM_IN => Param::In(unsafe { std::slice::from_raw_parts(buffer, size) }),
        PARAM_OUT => {
            // SAFETY: non-NULL, valid for writes of `size` bytes for 'a and not overlapping any
            // other buffer (the caller's contract).
            Param::out(unsafe { std::slice::from_raw_parts_mut(buffer, size) })
        }
        PARAM_INOUT => {
            // SAFETY: as for PARAM_OUT.
            Param::in_out(unsafe { std::slice::from_raw_parts_mut(buffer, size) })
        }
        other => {
            return Err(Failure::invalid(format!(
                "parameter {index}: unknown type {other}"
            )));
        }
    })
}

/// Copies what the host returned into the C parameter.
fn from_param(c_param: &mut HgcmParamC, param: &Param<'_>) {
    match param {
        Param::U32(value) => c_param.value = u64::from(*value),
        Param::U64(value) => c_param.value = *value,
        Param::In(_) => {}
        Param::Out { returned, .. } | Param::InOut { returned, .. } => {
            c_param.size = u32::try_from(*returned).unwrap_or(c_param.size);
        }
    }
}

/// Reads a guest property through a connected guest-properties client. On success `*value`
/// receives the value (free it with [`vmmdev_guest_string_free`]); `timestamp` and `flags` are
/// optional.
///
/// # Safety
///
/// `session` is a live session; `name` a NUL-terminated string; `value` valid for a write;
/// `timestamp` and `flags` NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vmmdev_guest_prop_get(
    session: *const Session,
    client_id: u32,
    name: *const c_char,
    value: *mut *mut c_char,
    timestamp: *mut u64,
    flags: *mut u32,
) -> c_int {
    // SAFETY: forwarded from this function's contract.
    report(unsafe { prop_get(session, client_id, name, value, timestamp, flags) })
}

/// # Safety
///
/// As [`vmmdev_guest_prop_get`].
unsafe fn prop_get<T: GuestTransport>(
    session: *const Session<T>,
    client_id: u32,
    name: *const c_char,
    value: *mut *mut c_char,
    timestamp: *mut u64,
    flags: *mut u32,
) -> Result<(), Failure> {
    // SAFETY: forwarded from the caller.
    let session = unsafe { self::session(session) }?;
    // SAFETY: forwarded from the caller.
    let name = unsafe { c_str(name, "name") }?;
    if value.is_null() {
        return Err(Failure::invalid("value is NULL"));
    }
    let client = props(session, client_id);
    let property = client.get(name)?.ok_or_else(|| Failure {
        code: ResultCode::NotFound,
        message: format!("guest property {name} does not exist"),
    })?;
    let text = c_string(property.value, "the value")?;
    // SAFETY: non-NULL, and the caller guarantees it is valid for a write.
    unsafe { value.write(text) };
    if !timestamp.is_null() {
        // SAFETY: non-NULL, and the caller guarantees it is valid for a write.
        unsafe { timestamp.write(property.timestamp) };
    }
    if !flags.is_null() {
        // SAFETY: non-NULL, and the caller guarantees it is valid for a write.
        unsafe { flags.write(property.flags.bits()) };
    }
    Ok(())
}

/// Creates or replaces a guest property with `value` and `flags` (`VMMDEV_GUEST_PROP_F_*`).
///
/// # Safety
///
/// `session` is a live session; `name` and `value` NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vmmdev_guest_prop_set(
    session: *const Session,
    client_id: u32,
    name: *const c_char,
    value: *const c_char,
    flags: u32,
) -> c_int {
    // SAFETY: forwarded from this function's contract.
    report(unsafe { prop_set(session, client_id, name, value, flags) })
}

/// # Safety
///
/// As [`vmmdev_guest_prop_set`].
unsafe fn prop_set<T: GuestTransport>(
    session: *const Session<T>,
    client_id: u32,
    name: *const c_char,
    value: *const c_char,
    flags: u32,
) -> Result<(), Failure> {
    // SAFETY: forwarded from the caller.
    let session = unsafe { self::session(session) }?;
    // SAFETY: forwarded from the caller.
    let name = unsafe { c_str(name, "name") }?;
    // SAFETY: forwarded from the caller.
    let value = unsafe { c_str(value, "value") }?;
    let flags = PropertyFlags::from_bits(flags)
        .ok_or_else(|| Failure::invalid(format!("unknown flag bits in {flags:#x}")))?;
    Ok(props(session, client_id).set(name, value, flags)?)
}

/// Deletes a guest property; deleting one that does not exist succeeds.
///
/// # Safety
///
/// `session` is a live session; `name` a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vmmdev_guest_prop_delete(
    session: *const Session,
    client_id: u32,
    name: *const c_char,
) -> c_int {
    // SAFETY: forwarded from this function's contract.
    report(unsafe { prop_delete(session, client_id, name) })
}

/// # Safety
///
/// As [`vmmdev_guest_prop_delete`].
unsafe fn prop_delete<T: GuestTransport>(
    session: *const Session<T>,
    client_id: u32,
    name: *const c_char,
) -> Result<(), Failure> {
    // SAFETY: forwarded from the caller.
    let session = unsafe { self::session(session) }?;
    // SAFETY: forwarded from the caller.
    let name = unsafe { c_str(name, "name") }?;
    Ok(props(session, client_id).delete(name)?)
}

/// Waits for the next change of a property matching `patterns` after the change with timestamp
/// `after` (0: from now on), at most `timeout_ms` (`VMMDEV_GUEST_TIMEOUT_INFINITE`: forever).
/// On success `*change` is filled; release its strings with
/// [`vmmdev_guest_prop_change_clear`].
///
/// # Safety
///
/// `session` is a live session; `patterns` a NUL-terminated string; `change` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vmmdev_guest_prop_wait(
    session: *const Session,
    client_id: u32,
    patterns: *const c_char,
    after: u64,
    timeout_ms: u32,
    change: *mut PropChangeC,
) -> c_int {
    // SAFETY: forwarded from this function's contract.
    report(unsafe { prop_wait(session, client_id, patterns, after, timeout_ms, change) })
}

/// # Safety
///
/// As [`vmmdev_guest_prop_wait`].
unsafe fn prop_wait<T: GuestTransport>(
    session: *const Session<T>,
    client_id: u32,
    patterns: *const c_char,
    after: u64,
    timeout_ms: u32,
    change: *mut PropChangeC,
) -> Result<(), Failure> {
    // SAFETY: forwarded from the caller.
    let session = unsafe { self::session(session) }?;
    // SAFETY: forwarded from the caller.
    let patterns = unsafe { c_str(patterns, "patterns") }?;
    if change.is_null() {
        return Err(Failure::invalid("change is NULL"));
    }
    let notification = props(session, client_id).wait(patterns, after, timeout(timeout_ms))?;
    let name = c_string(notification.name, "the name")?;
    let value = match c_string(notification.value, "the value") {
        Ok(value) => value,
        Err(failure) => {
            // SAFETY: `name` was just made by `CString::into_raw` and is not handed out.
            drop(unsafe { CString::from_raw(name) });
            return Err(failure);
        }
    };
    let filled = PropChangeC {
        name,
        value,
        timestamp: notification.timestamp,
        flags: notification.flags.bits(),
        deleted: u8::from(notification.deleted),
        missed_changes: u8::from(notification.missed_changes),
    };
    // SAFETY: non-NULL, and the caller guarantees it is valid for a write.
    unsafe { change.write(filled) };
    Ok(())
}

/// The guest-properties client `client_id` of the session, without taking ownership of it.
fn props<T: GuestTransport>(session: &Session<T>, client_id: u32) -> GuestPropClient<'_, T> {
    GuestPropClient::from_client(HgcmClient::borrowed(&session.device, ClientId(client_id)))
}

/// Frees the strings of a change filled by [`vmmdev_guest_prop_wait`] and sets them to NULL.
///
/// # Safety
///
/// `change` is NULL or points to a change whose strings are NULL or came from
/// [`vmmdev_guest_prop_wait`] and were not freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vmmdev_guest_prop_change_clear(change: *mut PropChangeC) {
    // SAFETY: the caller guarantees a NULL or valid pointer.
    if let Some(change) = unsafe { change.as_mut() } {
        // SAFETY: the strings came from this library and are freed once, then set to NULL.
        unsafe {
            vmmdev_guest_string_free(change.name);
            vmmdev_guest_string_free(change.value);
        }
        change.name = std::ptr::null_mut();
        change.value = std::ptr::null_mut();
    }
}

/// Frees a string the library returned (NULL is ignored).
///
/// # Safety
///
/// `text` is NULL or a string this library returned that was not freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vmmdev_guest_string_free(text: *mut c_char) {
    if !text.is_null() {
        // SAFETY: the library made the string with `CString::into_raw` and the caller hands it
        // back once.
        drop(unsafe { CString::from_raw(text) });
    }
}

/// Copies the message of the calling thread's last failure into `buffer` (NUL-terminated,
/// truncated to `size`) and returns the message's full length without the NUL.
///
/// # Safety
///
/// `buffer` is NULL (then `size` must be 0) or valid for writes of `size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vmmdev_guest_last_error(buffer: *mut c_char, size: usize) -> usize {
    LAST_ERROR.with(|last| {
        let last = last.borrow();
        let message = last.as_bytes();
        if !buffer.is_null() && size > 0 {
            let copied = message.len().min(size - 1);
            // SAFETY: the caller guarantees `buffer` is valid for `size` bytes; `copied + 1`
            // does not exceed it, and the message cannot overlap the caller's buffer.
            unsafe {
                std::ptr::copy_nonoverlapping(message.as_ptr(), buffer.cast::<u8>(), copied);
                buffer.add(copied).write(0);
            }
        }
        message.len()
    })
}

#[cfg(test)]
mod tests {
    use std::mem::offset_of;
    use std::ptr;

    use super::*;
    use crate::fake::{
        FakeTransport, param_u32, param_u64, put_u32, set_param_u32, set_param_u64, set_status,
        user_bytes, write_user,
    };
    use vmmdev_protocol::status::Status;

    /// A session over a fake driver, released on drop.
    struct FakeSession(*mut Session<FakeTransport>);

    impl FakeSession {
        fn new(fake: FakeTransport) -> Self {
            let device = Device::with_transport(fake).unwrap();
            Self(Box::into_raw(Box::new(Session { device })))
        }

        fn recorded(&self) -> Vec<crate::fake::Recorded> {
            // SAFETY: the session is live until drop.
            unsafe { &*self.0 }.device.transport().recorded()
        }
    }

    impl Drop for FakeSession {
        fn drop(&mut self) {
            // SAFETY: made by Box::into_raw in `new` and released only here.
            drop(unsafe { Box::from_raw(self.0) });
        }
    }

    fn last_error() -> String {
        let mut buffer = [0 as c_char; 256];
        // SAFETY: the buffer is valid for its size.
        unsafe { vmmdev_guest_last_error(buffer.as_mut_ptr(), buffer.len()) };
        // SAFETY: the function NUL-terminates within the buffer.
        unsafe { CStr::from_ptr(buffer.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    }

    fn code(outcome: Result<(), Failure>) -> c_int {
        report(outcome)
    }

    #[test]
    fn layouts_match_the_header() {
        assert_eq!(size_of::<HgcmParamC>(), 24);
        assert_eq!(offset_of!(HgcmParamC, size), 4);
        assert_eq!(offset_of!(HgcmParamC, value), 8);
        assert_eq!(offset_of!(HgcmParamC, buffer), 16);
        assert_eq!(size_of::<PropChangeC>(), 32);
        assert_eq!(offset_of!(PropChangeC, timestamp), 16);
        assert_eq!(offset_of!(PropChangeC, flags), 24);
        assert_eq!(offset_of!(PropChangeC, deleted), 28);
        assert_eq!(offset_of!(PropChangeC, missed_changes), 29);
    }

    #[test]
    fn null_session_is_an_invalid_argument_with_a_message() {
        let name = c"/Test/Foo";
        // SAFETY: NULL session is part of the tested contract; the name is a C string.
        let rc = unsafe { vmmdev_guest_prop_delete(ptr::null(), 1, name.as_ptr()) };
        assert_eq!(rc, ResultCode::InvalidArgument as c_int);
        assert_eq!(last_error(), "session is NULL");
    }

    #[test]
    fn last_error_is_truncated_to_the_buffer_and_reports_the_full_length() {
        code(Err(Failure::invalid("0123456789")));
        let mut buffer = [0x55 as c_char; 4];
        // SAFETY: the buffer is valid for its size.
        let length = unsafe { vmmdev_guest_last_error(buffer.as_mut_ptr(), buffer.len()) };
        assert_eq!(length, 10);
        assert_eq!(buffer.map(|byte| byte as u8), *b"012\0");
        // SAFETY: NULL with size 0 only queries the length.
        assert_eq!(unsafe { vmmdev_guest_last_error(ptr::null_mut(), 0) }, 10);
    }

    #[test]
    fn open_of_a_missing_node_is_no_driver() {
        let mut session = ptr::null_mut();
        let path = c"/dev/vboxguest-does-not-exist";
        // SAFETY: valid C string and out-pointer.
        let rc = unsafe { vmmdev_guest_open(path.as_ptr(), &mut session) };
        assert_eq!(rc, ResultCode::NoDriver as c_int);
        assert!(session.is_null());
        assert!(last_error().contains("not loaded"), "{}", last_error());
    }

    #[test]
    fn connect_returns_the_client_id() {
        let session = FakeSession::new(FakeTransport::new().then(|buffer| {
            put_u32(buffer, 24, 9);
            Ok(())
        }));
        let mut client = 0;
        // SAFETY: live session, C string, valid out-pointer.
        let rc = unsafe { hgcm_connect(session.0, c"Echo".as_ptr(), &mut client) };
        assert_eq!(code(rc), 0);
        assert_eq!(client, 9);
        assert_eq!(
            session.recorded().len(),
            2,
            "the client is not disconnected"
        );
    }

    #[test]
    fn call_converts_parameters_and_copies_back_values_sizes_and_status() {
        let session = FakeSession::new(FakeTransport::new().then(|buffer| {
            assert_eq!(param_u32(buffer, 0), 7);
            assert_eq!(param_u64(buffer, 1), 1 << 40);
            assert_eq!(user_bytes(buffer, 2), b"in");
            set_param_u32(buffer, 0, 8);
            set_param_u64(buffer, 1, 5);
            write_user(buffer, 3, b"out");
            set_status(buffer, Status::VWRN_NOT_FOUND.raw());
            Ok(())
        }));
        let mut input = *b"in";
        let mut output = [0u8; 16];
        let mut params = [
            HgcmParamC {
                kind: PARAM_U32,
                size: 0,
                value: 7,
                buffer: ptr::null_mut(),
            },
            HgcmParamC {
                kind: PARAM_U64,
                size: 0,
                value: 1 << 40,
                buffer: ptr::null_mut(),
            },
            HgcmParamC {
                kind: PARAM_IN,
                size: 2,
                value: 0,
                buffer: input.as_mut_ptr().cast(),
            },
            HgcmParamC {
                kind: PARAM_OUT,
                size: 16,
                value: 0,
                buffer: output.as_mut_ptr().cast(),
            },
        ];
        let mut status = 0;
        // SAFETY: live session; the parameters describe live, non-overlapping buffers.
        let rc = unsafe {
            hgcm_call(
                session.0,
                1,
                2,
                params.as_mut_ptr(),
                4,
                VBG_TIMEOUT_INFINITE,
                &mut status,
            )
        };
        assert_eq!(code(rc), 0);
        assert_eq!(status, Status::VWRN_NOT_FOUND.raw());
        assert_eq!(
            (params[0].value, params[1].value, params[3].size),
            (8, 5, 3)
        );
        assert_eq!(&output[..3], b"out");
    }

    #[test]
    fn call_with_a_host_failure_reports_host_and_its_status() {
        let session = FakeSession::new(FakeTransport::new().then(|buffer| {
            set_status(buffer, Status::VERR_NOT_IMPLEMENTED.raw());
            Ok(())
        }));
        let mut status = 0;
        // SAFETY: live session, no parameters.
        let rc = unsafe { hgcm_call(session.0, 1, 99, ptr::null_mut(), 0, 100, &mut status) };
        assert_eq!(code(rc), ResultCode::Host as c_int);
        assert_eq!(status, Status::VERR_NOT_IMPLEMENTED.raw());
    }

    #[test]
    fn call_refuses_bad_parameters_without_an_ioctl() {
        let session = FakeSession::new(FakeTransport::new());
        let bad = [
            HgcmParamC {
                kind: 42,
                size: 0,
                value: 0,
                buffer: ptr::null_mut(),
            },
            HgcmParamC {
                kind: PARAM_U32,
                size: 0,
                value: 1 << 32,
                buffer: ptr::null_mut(),
            },
            HgcmParamC {
                kind: PARAM_OUT,
                size: 8,
                value: 0,
                buffer: ptr::null_mut(),
            },
        ];
        for mut param in bad {
            // SAFETY: live session; the parameter carries no valid buffer, which is refused.
            let rc = unsafe { hgcm_call(session.0, 1, 1, &mut param, 1, 0, ptr::null_mut()) };
            assert_eq!(code(rc), ResultCode::InvalidArgument as c_int, "{param:?}");
        }
        assert_eq!(session.recorded().len(), 1, "only the handshake");
    }

    #[test]
    fn prop_get_returns_an_owned_value_timestamp_and_flags() {
        let session = FakeSession::new(FakeTransport::new().then(|buffer| {
            write_user(buffer, 1, b"bar\0TRANSIENT\0");
            set_param_u64(buffer, 2, 1234);
            Ok(())
        }));
        let mut value = ptr::null_mut();
        let (mut timestamp, mut flags) = (0, 0);
        // SAFETY: live session, C string, valid out-pointers.
        let rc = unsafe {
            prop_get(
                session.0,
                1,
                c"/Test/Foo".as_ptr(),
                &mut value,
                &mut timestamp,
                &mut flags,
            )
        };
        assert_eq!(code(rc), 0);
        // SAFETY: the library returned a C string.
        assert_eq!(unsafe { CStr::from_ptr(value) }, c"bar");
        assert_eq!((timestamp, flags), (1234, PropertyFlags::TRANSIENT.bits()));
        // SAFETY: the string came from the library and is freed once.
        unsafe { vmmdev_guest_string_free(value) };
    }

    #[test]
    fn prop_get_of_a_missing_property_is_not_found() {
        let session = FakeSession::new(FakeTransport::new().then(|buffer| {
            set_status(buffer, Status::VERR_NOT_FOUND.raw());
            Ok(())
        }));
        let mut value = ptr::null_mut();
        // SAFETY: live session, C string, valid out-pointer.
        let rc = unsafe {
            prop_get(
                session.0,
                1,
                c"/Nope".as_ptr(),
                &mut value,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        assert_eq!(code(rc), ResultCode::NotFound as c_int);
        assert!(value.is_null());
    }

    #[test]
    fn prop_set_sends_the_flags_and_refuses_unknown_bits() {
        let session = FakeSession::new(FakeTransport::new().then(|buffer| {
            assert_eq!(user_bytes(buffer, 2), b"READONLY\0");
            Ok(())
        }));
        // SAFETY: live session and C strings.
        let rc = unsafe { prop_set(session.0, 1, c"/A".as_ptr(), c"v".as_ptr(), 0x0C) };
        assert_eq!(code(rc), 0);
        // SAFETY: live session and C strings.
        let rc = unsafe { prop_set(session.0, 1, c"/A".as_ptr(), c"v".as_ptr(), 0x1) };
        assert_eq!(code(rc), ResultCode::InvalidArgument as c_int);
        assert_eq!(session.recorded().len(), 2, "handshake and one set");
    }

    #[test]
    fn prop_wait_fills_the_change_and_clear_releases_it() {
        let session = FakeSession::new(FakeTransport::new().then(|buffer| {
            assert_eq!(get_timeout(buffer), 250);
            write_user(buffer, 2, b"/Test/Gone\0\0\x001\0");
            set_param_u64(buffer, 1, 77);
            Ok(())
        }));
        let mut change = PropChangeC {
            name: ptr::null_mut(),
            value: ptr::null_mut(),
            timestamp: 0,
            flags: 0,
            deleted: 0,
            missed_changes: 0,
        };
        // SAFETY: live session, C string, valid out-pointer.
        let rc = unsafe { prop_wait(session.0, 1, c"/Test/*".as_ptr(), 5, 250, &mut change) };
        assert_eq!(code(rc), 0);
        // SAFETY: the library returned C strings.
        assert_eq!(unsafe { CStr::from_ptr(change.name) }, c"/Test/Gone");
        // SAFETY: as above.
        assert_eq!(unsafe { CStr::from_ptr(change.value) }, c"");
        assert_eq!(
            (change.timestamp, change.deleted, change.missed_changes),
            (77, 1, 0)
        );
        // SAFETY: the change was filled by the library.
        unsafe { vmmdev_guest_prop_change_clear(&mut change) };
        assert!(change.name.is_null() && change.value.is_null());
    }

    #[test]
    fn prop_wait_timeout_is_timed_out() {
        let session = FakeSession::new(FakeTransport::new().then_fail(libc::ETIMEDOUT));
        let mut change = PropChangeC {
            name: ptr::null_mut(),
            value: ptr::null_mut(),
            timestamp: 0,
            flags: 0,
            deleted: 0,
            missed_changes: 0,
        };
        // SAFETY: live session, C string, valid out-pointer.
        let rc = unsafe { prop_wait(session.0, 1, c"".as_ptr(), 0, 10, &mut change) };
        assert_eq!(code(rc), ResultCode::TimedOut as c_int);
        assert!(change.name.is_null());
    }

    /// The timeout field of an HGCM call header.
    fn get_timeout(buffer: &[u8]) -> u32 {
        crate::fake::get_u32(buffer, 32)
    }
}
