//! The repr(C) plugin ABI, mirrored by `host/include/vmmdev_hgcm_plugin.h`.
//!
//! A plugin is a shared library that exports one symbol, [`LOAD_SYMBOL`], of type [`LoadEntry`].
//! The host calls it on the service's own thread with a [`HostApi`] table (host services for the
//! plugin) and a pre-filled [`PluginTable`] (the plugin's entry points, to be filled in).
//!
//! Versioning: both tables start with `size`, `abi_major`, `abi_minor` at fixed offsets, forever.
//! A different major version is incompatible. A newer minor version only appends fields, so each
//! side reads the other's table only up to the `size` it declares; fields beyond it count as absent.
//!
//! Memory ownership (also documented in the C header):
//! * [`HostApi`] is owned by the host and valid from the load call until `unload` has returned.
//! * The parameter array and every [`IoVec`] array given to `call` are owned by the host and stay
//!   valid until the plugin completes that call; the plugin may write values and `reported_len`
//!   in place, from any thread, until it calls `complete`. For `host_call` they are valid only
//!   during the callback.
//! * The memory the iovecs of a `call` point to (guest RAM, or host memory for embedded data) may
//!   be read or written only inside a guest access: after `begin_guest_access(call)` returned
//!   `VINF_SUCCESS` and before the matching `end_guest_access(call)`. Once the call is cancelled
//!   (by its caller, a disconnect, a reset or a service failure) `begin_guest_access` answers
//!   `VERR_CANCELLED`, and the host's cancel returns only after every access in flight has
//!   ended; from then on the guest may reuse those pages. Accesses must be short and must not
//!   wait for anything; `complete` must not be called inside one. `host_call` buffers need no
//!   access: they are valid during the callback.
//! * Buffer iovecs point straight into guest RAM (or host memory for host calls); other parties
//!   (the guest) may change guest RAM concurrently, so a plugin copies before it parses.
//! * `name` and `instance` in [`PluginTable`] are owned by the plugin and must stay valid until
//!   `unload` has returned; the host copies the name at load.
//! * Data passed to a [`StateWriter`] is copied by the host before `write` returns; data given to
//!   `load_state` / `load_client` is valid only during the callback.

use std::ffi::{c_char, c_void};

/// ABI major version: a plugin with another major is refused. Version 2 introduced guest
/// accesses (`begin_guest_access` / `end_guest_access`), which every plugin must use.
pub const ABI_MAJOR: u16 = 2;
/// ABI minor version: backwards-compatible additions.
pub const ABI_MINOR: u16 = 0;
/// The one symbol a plugin exports (without the trailing NUL: [`LOAD_SYMBOL_C`]).
pub const LOAD_SYMBOL: &str = "vmmdev_hgcm_plugin_load";
/// [`LOAD_SYMBOL`] as a NUL-terminated byte string for `dlsym`.
pub const LOAD_SYMBOL_C: &[u8] = b"vmmdev_hgcm_plugin_load\0";
/// Longest service name in bytes, excluding the NUL (the HGCM connect request holds 128 bytes).
pub const MAX_SERVICE_NAME_LEN: usize = 127;

/// Opaque handle of one guest call, valid from `call` until `complete`.
pub type CallHandle = u64;

/// `Parm::kind` of a 32-bit value.
pub const PARM_U32: u32 = 1;
/// `Parm::kind` of a 64-bit value.
pub const PARM_U64: u32 = 2;
/// `Parm::kind` of a buffer.
pub const PARM_BUFFER: u32 = 3;

/// Buffer direction: guest → host (the service reads).
pub const DIR_TO_HOST: u32 = 1;
/// Buffer direction: host → guest (the service writes).
pub const DIR_FROM_HOST: u32 = 2;
/// Buffer direction: both.
pub const DIR_BOTH: u32 = 3;

/// `call` flag: the call was resubmitted after a restore.
pub const CALL_FLAG_RESTORED: u32 = 0x1;

/// `HostApi::log` level: error.
pub const LOG_ERROR: u32 = 1;
/// `HostApi::log` level: warning.
pub const LOG_WARN: u32 = 2;
/// `HostApi::log` level: information.
pub const LOG_INFO: u32 = 3;
/// `HostApi::log` level: debug.
pub const LOG_DEBUG: u32 = 4;
/// `HostApi::log` level: trace.
pub const LOG_TRACE: u32 = 5;

/// One contiguous piece of a buffer in host virtual memory (layout of `struct iovec`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoVec {
    /// Start of the piece.
    pub base: *mut u8,
    /// Length of the piece in bytes.
    pub len: usize,
}

/// A buffer parameter: a scatter-gather list.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RawBuffer {
    /// `iov_count` pieces, in order; owned by the host.
    pub iov: *const IoVec,
    /// Number of pieces.
    pub iov_count: u32,
    /// One of `DIR_*`.
    pub direction: u32,
    /// Total length (the sum of the piece lengths).
    pub len: u32,
    /// In: `len`. Out: how many bytes the service produced; must not exceed `len`.
    pub reported_len: u32,
}

/// The value of a [`RawParm`]; which member is valid depends on `RawParm::kind`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union RawParmValue {
    /// For `PARM_U32`.
    pub u32: u32,
    /// For `PARM_U64`.
    pub u64: u64,
    /// For `PARM_BUFFER`.
    pub buffer: RawBuffer,
}

impl std::fmt::Debug for RawParmValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawParmValue { .. }")
    }
}

/// One call parameter as it crosses the ABI.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RawParm {
    /// One of `PARM_*`.
    pub kind: u32,
    /// Zero.
    pub reserved: u32,
    /// The value.
    pub value: RawParmValue,
}

impl std::fmt::Debug for RawParm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = f.debug_struct("RawParm");
        out.field("kind", &self.kind);
        // SAFETY: the union member read matches `kind`; every member is plain old data, so reading
        // any of them is defined even if `kind` lies.
        unsafe {
            match self.kind {
                PARM_U32 => out.field("u32", &self.value.u32),
                PARM_U64 => out.field("u64", &self.value.u64),
                _ => out.field("buffer", &self.value.buffer),
            };
        }
        out.finish()
    }
}

/// Sink for saved state: the host copies `len` bytes from `data` before `write` returns.
#[repr(C)]
#[derive(Debug)]
pub struct StateWriter {
    /// Host context for `write`.
    pub ctx: *mut c_void,
    /// Appends bytes; returns `VINF_SUCCESS` or `VERR_NO_MEMORY` / `VERR_TOO_MUCH_DATA`.
    pub write: unsafe extern "C" fn(ctx: *mut c_void, data: *const u8, len: usize) -> i32,
}

/// Services the host offers a plugin. Pass `ctx` as the first argument of every function.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct HostApi {
    /// Size of this structure as the host knows it.
    pub size: u32,
    /// Host ABI major version.
    pub abi_major: u16,
    /// Host ABI minor version.
    pub abi_minor: u16,
    /// Per-service host context.
    pub ctx: *mut c_void,
    /// Completes a guest call exactly once, from any thread. Returns `VINF_SUCCESS` if the result
    /// was delivered, `VERR_CANCELLED` if the caller cancelled it (results discarded),
    /// `VERR_ALREADY_RESET` if a reset dropped it, `VERR_WRONG_TYPE` for an unknown handle (a
    /// contract violation that fails the service).
    pub complete: unsafe extern "C" fn(ctx: *mut c_void, call: CallHandle, status: i32) -> i32,
    /// Whether the call was cancelled (by the caller, a disconnect or a reset).
    pub is_cancelled: unsafe extern "C" fn(ctx: *mut c_void, call: CallHandle) -> bool,
    /// Opens a guest access for the call: its buffers' memory may be touched until the matching
    /// `end_guest_access`. Returns `VINF_SUCCESS`, `VERR_CANCELLED` if the call was cancelled
    /// (touch nothing, complete the call), or `VERR_NOT_FOUND` for an unknown or completed
    /// handle. Accesses nest and may end on another thread; keep them short.
    pub begin_guest_access: unsafe extern "C" fn(ctx: *mut c_void, call: CallHandle) -> i32,
    /// Ends one access opened by `begin_guest_access`. Returns `VINF_SUCCESS`, or
    /// `VERR_INVALID_STATE` if the call has no access open (`VERR_NOT_FOUND`: unknown handle).
    pub end_guest_access: unsafe extern "C" fn(ctx: *mut c_void, call: CallHandle) -> i32,
    /// Whether the call was resubmitted after a restore.
    pub is_restored: unsafe extern "C" fn(ctx: *mut c_void, call: CallHandle) -> bool,
    /// The call's requestor bits (`0x901F`, the least trusted value, for an unknown handle).
    pub requestor: unsafe extern "C" fn(ctx: *mut c_void, call: CallHandle) -> u32,
    /// Sends a notification to the embedder; the host copies the payload. Never blocks.
    /// Returns `VINF_SUCCESS`, or `VERR_TOO_MUCH_DATA` for an oversized payload.
    pub notify_host:
        unsafe extern "C" fn(ctx: *mut c_void, code: u32, payload: *const u8, len: usize) -> i32,
    /// Disconnects a client of this service without a `disconnect` callback; its pending calls
    /// are cancelled. `VERR_NOT_FOUND` if the client is not a client of this service.
    pub disconnect_client: unsafe extern "C" fn(ctx: *mut c_void, client: u32) -> i32,
    /// Logs a UTF-8 message (`len` bytes, no NUL needed) at one of the `LOG_*` levels.
    pub log: unsafe extern "C" fn(ctx: *mut c_void, level: u32, msg: *const u8, len: usize),
    /// Declares the service broken (e.g. it caught a panic): the host fails its pending calls and
    /// refuses new work for it. `reason` is UTF-8, `len` bytes.
    pub report_failure: unsafe extern "C" fn(ctx: *mut c_void, reason: *const u8, len: usize),
}

/// Loads a plugin: validate `host`, read `config` (NUL-terminated UTF-8), fill `table`, return
/// `VINF_SUCCESS` or a failure status (`VERR_VERSION_MISMATCH` for an incompatible host).
pub type LoadEntry =
    extern "C" fn(host: *const HostApi, config: *const c_char, table: *mut PluginTable) -> i32;

/// `unload(instance)`: last call; release everything.
pub type UnloadFn = unsafe extern "C" fn(instance: *mut c_void);
/// `connect(instance, client, requestor, restoring)`: a new client; non-success refuses it.
pub type ConnectFn = unsafe extern "C" fn(
    instance: *mut c_void,
    client: u32,
    requestor: u32,
    restoring: bool,
) -> i32;
/// `disconnect(instance, client)`: the client is gone; the status goes to the disconnecting caller.
pub type DisconnectFn = unsafe extern "C" fn(instance: *mut c_void, client: u32) -> i32;
/// `call(instance, handle, client, function, requestor, flags, parms, count)`: a guest call;
/// complete it through `HostApi::complete`, now or later, from any thread.
pub type CallFn = unsafe extern "C" fn(
    instance: *mut c_void,
    call: CallHandle,
    client: u32,
    function: u32,
    requestor: u32,
    flags: u32,
    parms: *mut RawParm,
    count: u32,
);
/// `cancelled(instance, client)`: some request of the client was cancelled; check
/// `HostApi::is_cancelled` for the client's pending calls.
pub type CancelledFn = unsafe extern "C" fn(instance: *mut c_void, client: u32);
/// `host_call(instance, function, parms, count)`: a synchronous call from the embedder.
pub type HostCallFn = unsafe extern "C" fn(
    instance: *mut c_void,
    function: u32,
    parms: *mut RawParm,
    count: u32,
) -> i32;
/// `save_state(instance, writer)`: write the service-wide state.
pub type SaveStateFn =
    unsafe extern "C" fn(instance: *mut c_void, writer: *const StateWriter) -> i32;
/// `load_state(instance, version, data, len)`: restore the service-wide state.
pub type LoadStateFn =
    unsafe extern "C" fn(instance: *mut c_void, version: u32, data: *const u8, len: usize) -> i32;
/// `save_client(instance, client, writer)`: write one client's state.
pub type SaveClientFn =
    unsafe extern "C" fn(instance: *mut c_void, client: u32, writer: *const StateWriter) -> i32;
/// `load_client(instance, client, version, data, len)`: restore one client's state (after its
/// `connect` with `restoring`).
pub type LoadClientFn = unsafe extern "C" fn(
    instance: *mut c_void,
    client: u32,
    version: u32,
    data: *const u8,
    len: usize,
) -> i32;
/// `notify(instance, event)`: one of the `VmEvent` codes.
pub type NotifyFn = unsafe extern "C" fn(instance: *mut c_void, event: u32);

/// The plugin's description and entry points.
///
/// The host zeroes it, sets `size`/`abi_major`/`abi_minor` to its own values and pre-fills the
/// limits with its defaults before calling the load entry. The plugin then sets `size` and the
/// version to the values it was built with (never writing beyond the `size` the host gave), its
/// name, instance and callbacks, and may lower or raise the limits. Required: `name`, `call`.
/// Absent optional callbacks get defaults (connect accepts, disconnect succeeds, host calls
/// answer `VERR_NOT_SUPPORTED`, state is empty).
#[repr(C)]
#[derive(Debug)]
pub struct PluginTable {
    /// Size of the table (host: what it allocated; plugin: what it was built with).
    pub size: u32,
    /// ABI major version.
    pub abi_major: u16,
    /// ABI minor version.
    pub abi_minor: u16,
    /// NUL-terminated UTF-8 service name, at most [`MAX_SERVICE_NAME_LEN`] bytes.
    pub name: *const c_char,
    /// Maximum simultaneous clients per category (kernel, root, user).
    pub max_clients: [u32; 3],
    /// Maximum pending calls per client, by the client's category.
    pub max_calls_per_client: [u32; 3],
    /// Category (0 kernel, 1 root, 2 user) of clients whose requestor is LEGACY.
    pub legacy_category: u32,
    /// Version of the plugin's saved-state format, given back to `load_state`/`load_client`.
    pub state_version: u32,
    /// Opaque instance pointer passed to every callback.
    pub instance: *mut c_void,
    /// See [`UnloadFn`].
    pub unload: Option<UnloadFn>,
    /// See [`ConnectFn`].
    pub connect: Option<ConnectFn>,
    /// See [`DisconnectFn`].
    pub disconnect: Option<DisconnectFn>,
    /// See [`CallFn`] (required).
    pub call: Option<CallFn>,
    /// See [`CancelledFn`].
    pub cancelled: Option<CancelledFn>,
    /// See [`HostCallFn`].
    pub host_call: Option<HostCallFn>,
    /// See [`SaveStateFn`].
    pub save_state: Option<SaveStateFn>,
    /// See [`LoadStateFn`].
    pub load_state: Option<LoadStateFn>,
    /// See [`SaveClientFn`].
    pub save_client: Option<SaveClientFn>,
    /// See [`LoadClientFn`].
    pub load_client: Option<LoadClientFn>,
    /// See [`NotifyFn`].
    pub notify: Option<NotifyFn>,
}

/// Size of the plugin table of minor version 0: the least a plugin of this major may declare.
pub const PLUGIN_TABLE_MIN_SIZE: u32 = size_of::<PluginTable>() as u32;
/// Size of the host API table of minor version 0: the least a host of this major provides.
pub const HOST_API_MIN_SIZE: u32 = size_of::<HostApi>() as u32;

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    #[test]
    fn parameter_layout_matches_the_c_header_on_64_bit_hosts() {
        assert_eq!(size_of::<IoVec>(), 16);
        assert_eq!(size_of::<RawBuffer>(), 24);
        assert_eq!(size_of::<RawParm>(), 32);
        assert_eq!(offset_of!(RawParm, value), 8);
        assert_eq!(offset_of!(RawBuffer, reported_len), 20);
    }

    #[test]
    fn table_headers_have_fixed_offsets() {
        assert_eq!(offset_of!(PluginTable, size), 0);
        assert_eq!(offset_of!(PluginTable, abi_major), 4);
        assert_eq!(offset_of!(PluginTable, abi_minor), 6);
        assert_eq!(offset_of!(HostApi, size), 0);
        assert_eq!(offset_of!(HostApi, abi_major), 4);
        assert_eq!(offset_of!(HostApi, abi_minor), 6);
    }

    #[test]
    fn load_symbol_constants_agree() {
        assert_eq!(&LOAD_SYMBOL_C[..LOAD_SYMBOL.len()], LOAD_SYMBOL.as_bytes());
        assert_eq!(LOAD_SYMBOL_C.last(), Some(&0));
    }
}
