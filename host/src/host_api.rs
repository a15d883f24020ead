//! The host API table a plugin receives: `extern "C"` functions that forward to the service's
//! [`ServiceCore`]. Every function contains panics (nothing unwinds into plugin code) and treats
//! its pointer arguments as untrusted: null pointers and oversized lengths are refused.

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use vmmdev_hgcm_abi::ffi::{
    ABI_MAJOR, ABI_MINOR, CallHandle, HostApi, LOG_DEBUG, LOG_ERROR, LOG_INFO, LOG_TRACE, LOG_WARN,
};
use vmmdev_hgcm_abi::status::Status;
use vmmdev_hgcm_abi::{ClientId, Requestor};

use crate::notify::{MAX_NOTIFICATION_PAYLOAD, ServiceNotification};
use crate::service::{Fate, ServiceCore};

/// Longest log message or failure reason taken from a plugin.
const MAX_MESSAGE_LEN: usize = 4096;

/// Builds the table for `core`. The table's `ctx` borrows `core`: the caller keeps the `Arc`
/// alive for as long as the plugin may call (until after `unload`, and in practice until the
/// framework is dropped).
pub(crate) fn host_api(core: &Arc<ServiceCore>) -> HostApi {
    HostApi {
        size: size_of::<HostApi>() as u32,
        abi_major: ABI_MAJOR,
        abi_minor: ABI_MINOR,
        ctx: Arc::as_ptr(core).cast_mut().cast::<c_void>(),
        complete,
        is_cancelled,
        begin_guest_access,
        end_guest_access,
        is_restored,
        requestor,
        notify_host,
        disconnect_client,
        log,
        report_failure,
    }
}

/// Runs `f` on the service behind `ctx`, or returns `fallback` if `ctx` is null or `f` panics.
fn with_core<T>(ctx: *mut c_void, fallback: T, f: impl FnOnce(&ServiceCore) -> T) -> T {
    if ctx.is_null() {
        return fallback;
    }
    // SAFETY: a non-null `ctx` is the pointer `host_api` stored, to a `ServiceCore` kept alive by
    // the framework while the plugin may call in (the ABI forbids calls after `unload`).
    let core = unsafe { &*ctx.cast_const().cast::<ServiceCore>() };
    catch_unwind(AssertUnwindSafe(|| f(core))).unwrap_or_else(|_| {
        log::error!(
            "HGCM host API panicked serving service {:?}; contained",
            core.name()
        );
        fallback
    })
}

/// Borrows `len` bytes at `ptr` from the plugin; `None` for null with a non-zero length.
///
/// # Safety
/// A non-null `ptr` must be readable for `len` bytes for the returned lifetime.
unsafe fn plugin_bytes<'a>(ptr: *const u8, len: usize) -> Option<&'a [u8]> {
    match (ptr.is_null(), len) {
        (_, 0) => Some(&[]),
        (true, _) => None,
        // SAFETY: guaranteed by the caller.
        (false, _) => Some(unsafe { std::slice::from_raw_parts(ptr, len) }),
    }
}

unsafe extern "C" fn complete(ctx: *mut c_void, call: CallHandle, status: i32) -> i32 {
    with_core(ctx, Status::VERR_HGCM_INTERNAL.raw(), |core| {
        core.complete_call(call, status)
    })
}

unsafe extern "C" fn is_cancelled(ctx: *mut c_void, call: CallHandle) -> bool {
    // An unknown handle counts as cancelled: nobody waits for it.
    with_core(ctx, true, |core| {
        core.with_call(call, |fate, _| fate != Fate::Live)
            .unwrap_or(true)
    })
}

unsafe extern "C" fn begin_guest_access(ctx: *mut c_void, call: CallHandle) -> i32 {
    with_core(ctx, Status::VERR_HGCM_INTERNAL.raw(), |core| {
        core.begin_guest_access(call)
    })
}

unsafe extern "C" fn end_guest_access(ctx: *mut c_void, call: CallHandle) -> i32 {
    with_core(ctx, Status::VERR_HGCM_INTERNAL.raw(), |core| {
        core.end_guest_access(call)
    })
}

unsafe extern "C" fn is_restored(ctx: *mut c_void, call: CallHandle) -> bool {
    with_core(ctx, false, |core| {
        core.with_call(call, |_, c| c.restored).unwrap_or(false)
    })
}

unsafe extern "C" fn requestor(ctx: *mut c_void, call: CallHandle) -> u32 {
    with_core(ctx, Requestor::LOWEST.0, |core| {
        core.with_call(call, |_, c| c.requestor.0)
            .unwrap_or(Requestor::LOWEST.0)
    })
}

unsafe extern "C" fn notify_host(
    ctx: *mut c_void,
    code: u32,
    payload: *const u8,
    len: usize,
) -> i32 {
    if len > MAX_NOTIFICATION_PAYLOAD {
        return Status::VERR_TOO_MUCH_DATA.raw();
    }
    // SAFETY: the ABI requires `payload` to be readable for `len` bytes during the call.
    let Some(payload) = (unsafe { plugin_bytes(payload, len) }) else {
        return Status::VERR_INVALID_PARAMETER.raw();
    };
    with_core(ctx, Status::VERR_HGCM_INTERNAL.raw(), |core| {
        core.notifier.publish(ServiceNotification {
            service: core.name().to_owned(),
            code,
            payload: payload.to_vec(),
        });
        Status::VINF_SUCCESS.raw()
    })
}

unsafe extern "C" fn disconnect_client(ctx: *mut c_void, client: u32) -> i32 {
    with_core(ctx, Status::VERR_HGCM_INTERNAL.raw(), |core| {
        let id = ClientId(client);
        let Some(registry) = core.registry() else {
            return Status::VERR_NOT_FOUND.raw();
        };
        if registry
            .live(id)
            .is_none_or(|c| c.service.slot != core.slot)
        {
            return Status::VERR_NOT_FOUND.raw();
        }
        if registry.remove_live(id).is_none() {
            return Status::VERR_NOT_FOUND.raw();
        }
        let (_, closing) = core.mark_client_gone(id);
        closing.wait();
        log::debug!("HGCM service {:?} disconnected {id}", core.name());
        Status::VINF_SUCCESS.raw()
    })
}

fn plugin_text(ptr: *const u8, len: usize) -> String {
    let len = len.min(MAX_MESSAGE_LEN);
    // SAFETY: the ABI requires `ptr` to be readable for the given length during the call; we read
    // at most that many bytes.
    match unsafe { plugin_bytes(ptr, len) } {
        Some(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        None => String::from("<null message>"),
    }
}

unsafe extern "C" fn log(ctx: *mut c_void, level: u32, msg: *const u8, len: usize) {
    let level = match level {
        LOG_ERROR => log::Level::Error,
        LOG_WARN => log::Level::Warn,
        LOG_INFO => log::Level::Info,
        LOG_DEBUG => log::Level::Debug,
        LOG_TRACE => log::Level::Trace,
        _ => log::Level::Info,
    };
    if !log::log_enabled!(level) {
        return;
    }
    let text = plugin_text(msg, len);
    with_core(ctx, (), |core| log::log!(level, "[{}] {text}", core.name()));
}

unsafe extern "C" fn report_failure(ctx: *mut c_void, reason: *const u8, len: usize) {
    let reason = plugin_text(reason, len);
    with_core(ctx, (), |core| {
        core.fail(&format!("the service reported: {reason}"))
    });
}
