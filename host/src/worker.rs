//! The service thread: loads the plugin, then runs its entry points one message at a time, in
//! order. This is the only module that calls into plugin code (apart from the load entry, which
//! it also calls, on the same thread).

use std::ffi::{CString, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use vmmdev_hgcm_abi::ffi::{
    ABI_MAJOR, ABI_MINOR, CallFn, CancelledFn, ConnectFn, DisconnectFn, HostApi, HostCallFn,
    LoadClientFn, LoadStateFn, MAX_SERVICE_NAME_LEN, NotifyFn, PLUGIN_TABLE_MIN_SIZE, PluginTable,
    RawParm, SaveClientFn, SaveStateFn, StateWriter, UnloadFn,
};
use vmmdev_hgcm_abi::status::{Status, is_valid_service_status};
use vmmdev_hgcm_abi::{ClientCategory, ClientId, LoadEntry, Requestor, VmEvent};

use crate::clients::Client;
use crate::config::Limits;
use crate::host_api::host_api;
use crate::request::RequestId;
use crate::service::{ConnectFinish, Descriptor, ServiceCore};

/// Largest state blob (service-wide or per client) a service may save.
pub(crate) const MAX_STATE_BYTES: usize = 256 * 1024 * 1024;

/// Why a service could not be registered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegisterError {
    /// The plugin was built for an incompatible ABI.
    #[error(
        "plugin ABI version {plugin_major}.{plugin_minor} is incompatible with host ABI {ABI_MAJOR}.{ABI_MINOR}"
    )]
    AbiMismatch {
        /// The plugin's major version.
        plugin_major: u16,
        /// The plugin's minor version.
        plugin_minor: u16,
    },
    /// The plugin's table is smaller than this ABI major version requires.
    #[error(
        "plugin table of {size} bytes is smaller than the {required} bytes ABI {ABI_MAJOR}.0 requires"
    )]
    TableTooSmall {
        /// The size the plugin declared.
        size: u32,
        /// The least acceptable size.
        required: u32,
    },
    /// The plugin's table breaks the ABI rules.
    #[error("invalid plugin table: {0}")]
    InvalidTable(&'static str),
    /// The plugin's load entry returned a failure.
    #[error("plugin initialisation refused with status {0}")]
    InitRefused(i32),
    /// A service with that name is already registered.
    #[error("a service named {0:?} is already registered")]
    DuplicateName(String),
    /// No more service slots.
    #[error("too many services registered")]
    TooManyServices,
    /// The framework is shutting down.
    #[error("the HGCM framework is shut down")]
    ShutDown,
    /// The service thread could not be started or died while loading.
    #[error("service thread failure: {0}")]
    Thread(String),
}

/// A plugin parameter array pointer carried to the service thread. The submitter keeps the array
/// alive until the service has completed the call (calls) or replied (host calls).
pub(crate) struct RawParmsPtr(pub(crate) *mut RawParm);

// SAFETY: the pointer is only dereferenced by plugin code on the service thread, while the owner
// keeps the array alive as described above.
unsafe impl Send for RawParmsPtr {}

/// What the service saved.
pub(crate) struct SavedService {
    pub(crate) state: Vec<u8>,
    pub(crate) clients: Vec<(ClientId, Vec<u8>)>,
}

/// A service refused to save or restore: what it was doing and its status.
#[derive(Debug)]
pub(crate) struct StateRefusal {
    pub(crate) what: String,
    pub(crate) status: i32,
}

/// A client to restore.
pub(crate) struct RestoredClient {
    pub(crate) client: Arc<Client>,
    pub(crate) state: Vec<u8>,
}

/// Work for the service thread.
pub(crate) enum Msg {
    Connect {
        id: RequestId,
        client: Arc<Client>,
    },
    Disconnect {
        id: RequestId,
        client: ClientId,
    },
    Call {
        id: RequestId,
        client: Arc<Client>,
        function: u32,
        requestor: u32,
        flags: u32,
        parms: RawParmsPtr,
        count: u32,
    },
    Cancelled {
        client: ClientId,
    },
    HostCall {
        function: u32,
        parms: RawParmsPtr,
        count: u32,
        reply: Sender<Option<i32>>,
    },
    Save {
        clients: Vec<ClientId>,
        reply: Sender<Result<SavedService, StateRefusal>>,
    },
    Restore {
        version: u32,
        state: Vec<u8>,
        clients: Vec<RestoredClient>,
        reply: Sender<Result<(), StateRefusal>>,
    },
    Notify(VmEvent),
    Reset {
        clients: Vec<ClientId>,
        notify: bool,
        reply: Sender<()>,
    },
    Unload,
}

/// The plugin's entry points, copied out of its validated table.
struct Plugin {
    instance: *mut c_void,
    unload: Option<UnloadFn>,
    connect: Option<ConnectFn>,
    disconnect: Option<DisconnectFn>,
    call: CallFn,
    cancelled: Option<CancelledFn>,
    host_call: Option<HostCallFn>,
    save_state: Option<SaveStateFn>,
    load_state: Option<LoadStateFn>,
    save_client: Option<SaveClientFn>,
    load_client: Option<LoadClientFn>,
    notify: Option<NotifyFn>,
}

// Every `unsafe` call below relies on the plugin contract (ffi module docs): the entry points and
// `instance` come from a table the plugin filled in at load, its library stays loaded until after
// `unload`, and the pointers we pass are valid for as long as the ABI promises.
impl Plugin {
    fn connect(&self, client: ClientId, requestor: Requestor, restoring: bool) -> i32 {
        match self.connect {
            // SAFETY: plugin contract (see above).
            Some(f) => unsafe { f(self.instance, client.0, requestor.0, restoring) },
            None => Status::VINF_SUCCESS.raw(),
        }
    }

    fn disconnect(&self, client: ClientId) -> i32 {
        match self.disconnect {
            // SAFETY: plugin contract (see above).
            Some(f) => unsafe { f(self.instance, client.0) },
            None => Status::VINF_SUCCESS.raw(),
        }
    }

    /// # Safety
    /// `parms` must point to `count` parameters that stay valid until the call is completed.
    #[allow(clippy::too_many_arguments)] // Mirrors the ABI's `call` signature.
    unsafe fn call(
        &self,
        id: RequestId,
        client: ClientId,
        function: u32,
        requestor: u32,
        flags: u32,
        parms: *mut RawParm,
        count: u32,
    ) {
        // SAFETY: plugin contract; the array validity is the caller's promise.
        unsafe {
            (self.call)(
                self.instance,
                id.raw(),
                client.0,
                function,
                requestor,
                flags,
                parms,
                count,
            )
        }
    }

    fn cancelled(&self, client: ClientId) {
        if let Some(f) = self.cancelled {
            // SAFETY: plugin contract (see above).
            unsafe { f(self.instance, client.0) }
        }
    }

    /// # Safety
    /// `parms` must point to `count` parameters valid until this returns.
    unsafe fn host_call(&self, function: u32, parms: *mut RawParm, count: u32) -> i32 {
        match self.host_call {
            // SAFETY: plugin contract; the array validity is the caller's promise.
            Some(f) => unsafe { f(self.instance, function, parms, count) },
            None => Status::VERR_NOT_SUPPORTED.raw(),
        }
    }

    fn save_state(&self) -> Result<Vec<u8>, i32> {
        let Some(f) = self.save_state else {
            return Ok(Vec::new());
        };
        // SAFETY: plugin contract; `writer` and its sink live until `f` returns.
        collect_state(|writer| unsafe { f(self.instance, writer) })
    }

    fn save_client(&self, client: ClientId) -> Result<Vec<u8>, i32> {
        let Some(f) = self.save_client else {
            return Ok(Vec::new());
        };
        // SAFETY: plugin contract; `writer` and its sink live until `f` returns.
        collect_state(|writer| unsafe { f(self.instance, client.0, writer) })
    }

    fn load_state(&self, version: u32, data: &[u8]) -> i32 {
        match self.load_state {
            // SAFETY: plugin contract; `data` outlives the call.
            Some(f) => unsafe { f(self.instance, version, data.as_ptr(), data.len()) },
            None => Status::VINF_SUCCESS.raw(),
        }
    }

    fn load_client(&self, client: ClientId, version: u32, data: &[u8]) -> i32 {
        match self.load_client {
            // SAFETY: plugin contract; `data` outlives the call.
            Some(f) => unsafe { f(self.instance, client.0, version, data.as_ptr(), data.len()) },
            None => Status::VINF_SUCCESS.raw(),
        }
    }

    fn notify(&self, event: VmEvent) {
        if let Some(f) = self.notify {
            // SAFETY: plugin contract (see above).
            unsafe { f(self.instance, event.code()) }
        }
    }

    fn unload(&self) {
        if let Some(f) = self.unload {
            // SAFETY: plugin contract; this is the last call into the plugin.
            unsafe { f(self.instance) }
        }
    }
}

struct Sink {
    data: Vec<u8>,
    overflow: bool,
}

unsafe extern "C" fn sink_write(ctx: *mut c_void, data: *const u8, len: usize) -> i32 {
    if ctx.is_null() || (data.is_null() && len > 0) {
        return Status::VERR_INVALID_PARAMETER.raw();
    }
    // SAFETY: `ctx` is the `Sink` that `collect_state` owns for the duration of the save call.
    let sink = unsafe { &mut *ctx.cast::<Sink>() };
    if sink.overflow || sink.data.len().saturating_add(len) > MAX_STATE_BYTES {
        sink.overflow = true;
        return Status::VERR_TOO_MUCH_DATA.raw();
    }
    if len > 0 {
        // SAFETY: the ABI requires `data` to be readable for `len` bytes during this call.
        sink.data
            .extend_from_slice(unsafe { std::slice::from_raw_parts(data, len) });
    }
    Status::VINF_SUCCESS.raw()
}

fn collect_state(save: impl FnOnce(*const StateWriter) -> i32) -> Result<Vec<u8>, i32> {
    let mut sink = Sink {
        data: Vec::new(),
        overflow: false,
    };
    let writer = StateWriter {
        ctx: (&raw mut sink).cast::<c_void>(),
        write: sink_write,
    };
    let status = save(&writer);
    if sink.overflow {
        return Err(Status::VERR_TOO_MUCH_DATA.raw());
    }
    if !Status(status).is_success() {
        return Err(status);
    }
    Ok(sink.data)
}

/// Reads the plugin's NUL-terminated name, never more than the maximum plus one byte.
///
/// # Safety
/// `name` must be null or point to a NUL-terminated string (or at least
/// `MAX_SERVICE_NAME_LEN + 1` readable bytes).
unsafe fn read_name(name: *const c_char) -> Result<String, RegisterError> {
    if name.is_null() {
        return Err(RegisterError::InvalidTable("the service name is missing"));
    }
    let mut bytes = Vec::new();
    for i in 0..=MAX_SERVICE_NAME_LEN {
        // SAFETY: by the caller's promise the string is readable up to its NUL, and we stop there.
        let byte = unsafe { name.add(i).cast::<u8>().read() };
        if byte == 0 {
            if bytes.is_empty() {
                return Err(RegisterError::InvalidTable("the service name is empty"));
            }
            return String::from_utf8(bytes)
                .map_err(|_| RegisterError::InvalidTable("the service name is not UTF-8"));
        }
        bytes.push(byte);
    }
    Err(RegisterError::InvalidTable(
        "the service name is longer than 127 bytes",
    ))
}

fn validate(table: &PluginTable) -> Result<(Descriptor, Plugin), RegisterError> {
    if table.abi_major != ABI_MAJOR {
        return Err(RegisterError::AbiMismatch {
            plugin_major: table.abi_major,
            plugin_minor: table.abi_minor,
        });
    }
    if table.size < PLUGIN_TABLE_MIN_SIZE {
        return Err(RegisterError::TableTooSmall {
            size: table.size,
            required: PLUGIN_TABLE_MIN_SIZE,
        });
    }
    let call = table.call.ok_or(RegisterError::InvalidTable(
        "the call entry point is missing",
    ))?;
    let legacy_category = ClientCategory::from_index(table.legacy_category).ok_or(
        RegisterError::InvalidTable("the legacy client category is not 0, 1 or 2"),
    )?;
    // SAFETY: the ABI requires `name` to be a NUL-terminated string owned by the plugin.
    let name = unsafe { read_name(table.name) }?;
    let descriptor = Descriptor {
        name,
        max_clients: table.max_clients,
        max_calls_per_client: table.max_calls_per_client,
        legacy_category,
        state_version: table.state_version,
    };
    let plugin = Plugin {
        instance: table.instance,
        unload: table.unload,
        connect: table.connect,
        disconnect: table.disconnect,
        call,
        cancelled: table.cancelled,
        host_call: table.host_call,
        save_state: table.save_state,
        load_state: table.load_state,
        save_client: table.save_client,
        load_client: table.load_client,
        notify: table.notify,
    };
    Ok((descriptor, plugin))
}

fn prefilled_table(defaults: &Limits) -> PluginTable {
    PluginTable {
        size: size_of::<PluginTable>() as u32,
        abi_major: ABI_MAJOR,
        abi_minor: ABI_MINOR,
        name: std::ptr::null(),
        max_clients: defaults.max_clients,
        max_calls_per_client: defaults.max_calls_per_client,
        legacy_category: ClientCategory::Kernel as u32,
        state_version: 1,
        instance: std::ptr::null_mut(),
        unload: None,
        connect: None,
        disconnect: None,
        call: None,
        cancelled: None,
        host_call: None,
        save_state: None,
        load_state: None,
        save_client: None,
        load_client: None,
        notify: None,
    }
}

/// Runs the load entry and validates the table, on the service thread.
fn load(
    core: &Arc<ServiceCore>,
    api: &HostApi,
    entry: LoadEntry,
    config: &CString,
    defaults: &Limits,
) -> Result<Plugin, RegisterError> {
    let mut table = prefilled_table(defaults);
    let status = entry(api, config.as_ptr(), &mut table);
    if status == Status::VERR_VERSION_MISMATCH.raw() {
        return Err(RegisterError::AbiMismatch {
            plugin_major: table.abi_major,
            plugin_minor: table.abi_minor,
        });
    }
    if !Status(status).is_success() {
        return Err(RegisterError::InitRefused(status));
    }
    match validate(&table) {
        Ok((descriptor, plugin)) => {
            core.set_descriptor(descriptor);
            Ok(plugin)
        }
        Err(err) => {
            // With a compatible layout we can still let the plugin clean up.
            if table.abi_major == ABI_MAJOR && table.size >= PLUGIN_TABLE_MIN_SIZE {
                if let Some(unload) = table.unload {
                    // SAFETY: plugin contract: the plugin filled `unload` and `instance` itself.
                    unsafe { unload(table.instance) };
                }
            }
            Err(err)
        }
    }
}

/// Something the library handle must outlive: dropped on the service thread after `unload`.
pub(crate) type KeepAlive = Box<dyn Send>;

/// Starts the service thread, loads the plugin on it, and returns once the load succeeded or
/// failed. On success the thread keeps serving `rx` until [`Msg::Unload`].
pub(crate) fn start(
    core: Arc<ServiceCore>,
    rx: Receiver<Msg>,
    entry: LoadEntry,
    config: &str,
    defaults: Limits,
    keep_alive: Option<KeepAlive>,
) -> Result<JoinHandle<()>, RegisterError> {
    let config = CString::new(config)
        .map_err(|_| RegisterError::InvalidTable("the configuration contains a NUL byte"))?;
    let (loaded_tx, loaded_rx) = crossbeam_channel::bounded(1);
    let thread = std::thread::Builder::new()
        .name(format!("hgcm-svc-{}", core.slot))
        .spawn(move || {
            core.set_thread(std::thread::current().id());
            let api = Box::new(host_api(&core));
            let plugin = match load(&core, &api, entry, &config, &defaults) {
                Ok(plugin) => plugin,
                Err(err) => {
                    let _ = loaded_tx.send(Err(err));
                    drop(keep_alive);
                    return;
                }
            };
            let _ = loaded_tx.send(Ok(()));
            serve(&core, &plugin, &rx);
            plugin.unload();
            drop(keep_alive);
            // `api` is freed last: nothing may call it after `unload` has returned.
            drop(api);
        })
        .map_err(|e| RegisterError::Thread(e.to_string()))?;
    match loaded_rx.recv() {
        Ok(Ok(())) => Ok(thread),
        Ok(Err(err)) => {
            let _ = thread.join();
            Err(err)
        }
        Err(_) => {
            let _ = thread.join();
            Err(RegisterError::Thread(
                "the service thread ended while loading".into(),
            ))
        }
    }
}

fn serve(core: &Arc<ServiceCore>, plugin: &Plugin, rx: &Receiver<Msg>) {
    while let Some(msg) = next_message(rx) {
        if matches!(msg, Msg::Unload) {
            return;
        }
        if catch_unwind(AssertUnwindSafe(|| handle(core, plugin, msg))).is_err() {
            log::error!("HGCM service thread of {:?} contained a panic", core.name());
        }
    }
}

/// How long the service thread keeps polling its queue after a message before it blocks.
const POLL_BEFORE_BLOCKING: Duration = Duration::from_micros(5);
/// Polls between two looks at the clock while polling.
const POLLS_PER_CLOCK_CHECK: u32 = 32;

/// The next message; `None` once every sender is gone.
///
/// Guest calls come in bursts (a request often follows the previous completion within a
/// microsecond), so the thread first polls the queue at a steady pace for a few microseconds, as
/// long as a blocking receive would spin anyway, but without its exponential back-off, which
/// would notice a message up to several hundred nanoseconds late. Then it blocks.
fn next_message(rx: &Receiver<Msg>) -> Option<Msg> {
    let start = Instant::now();
    loop {
        for _ in 0..POLLS_PER_CLOCK_CHECK {
            match rx.try_recv() {
                Ok(msg) => return Some(msg),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => std::hint::spin_loop(),
            }
        }
        if start.elapsed() >= POLL_BEFORE_BLOCKING {
            return rx.recv().ok();
        }
    }
}

/// Checks a status the plugin returned; an implausible one fails the service.
fn checked(core: &ServiceCore, status: i32, what: &str) -> i32 {
    if is_valid_service_status(status) {
        return status;
    }
    core.fail(&format!("{what} returned the invalid status {status}"));
    Status::VERR_HGCM_INTERNAL.raw()
}

fn handle(core: &Arc<ServiceCore>, plugin: &Plugin, msg: Msg) {
    let failed = core.is_failed();
    match msg {
        Msg::Connect { id, client } => {
            if failed {
                core.finish_connect(id, &client, Status::VERR_HGCM_INTERNAL.raw());
                return;
            }
            if !core.connect_wanted(id) {
                core.finish_connect(id, &client, Status::VERR_HGCM_INTERNAL.raw());
                return;
            }
            let status = checked(
                core,
                plugin.connect(client.id, client.requestor, false),
                "connect",
            );
            if core.finish_connect(id, &client, status) == ConnectFinish::Undo {
                plugin.disconnect(client.id);
            }
        }
        Msg::Disconnect { id, client } => {
            let status = if failed {
                Status::VINF_SUCCESS.raw()
            } else {
                checked(core, plugin.disconnect(client), "disconnect")
            };
            core.finish_disconnect(id, status);
        }
        Msg::Call {
            id,
            client,
            function,
            requestor,
            flags,
            parms,
            count,
        } => {
            if failed {
                core.finish_call_internally(id, Status::VERR_HGCM_INTERNAL.raw());
            } else if !client.is_live() {
                core.finish_call_internally(id, Status::VERR_HGCM_INVALID_CLIENT_ID.raw());
            } else {
                // SAFETY: the array is owned by the call's pending entry, which only the
                // service's completion (or a failure, which keeps it) can release.
                unsafe { plugin.call(id, client.id, function, requestor, flags, parms.0, count) };
            }
        }
        Msg::Cancelled { client } => {
            if !failed {
                plugin.cancelled(client);
            }
        }
        Msg::HostCall {
            function,
            parms,
            count,
            reply,
        } => {
            let status = if failed {
                None
            } else {
                // SAFETY: the caller blocks on `reply` and keeps the array alive until then.
                let status = unsafe { plugin.host_call(function, parms.0, count) };
                Some(checked(core, status, "host call"))
            };
            let _ = reply.send(status);
        }
        Msg::Save { clients, reply } => {
            let _ = reply.send(save(plugin, &clients, failed));
        }
        Msg::Restore {
            version,
            state,
            clients,
            reply,
        } => {
            let _ = reply.send(restore(core, plugin, version, &state, &clients, failed));
        }
        Msg::Notify(event) => {
            if !failed {
                plugin.notify(event);
            }
        }
        Msg::Reset {
            clients,
            notify,
            reply,
        } => {
            if !failed {
                for client in clients {
                    plugin.disconnect(client);
                }
                if notify {
                    plugin.notify(VmEvent::Reset);
                }
            }
            let _ = reply.send(());
        }
        Msg::Unload => {}
    }
}

fn save(plugin: &Plugin, clients: &[ClientId], failed: bool) -> Result<SavedService, StateRefusal> {
    if failed {
        return Err(StateRefusal {
            what: "save (the service has failed)".into(),
            status: Status::VERR_HGCM_INTERNAL.raw(),
        });
    }
    let state = plugin.save_state().map_err(|status| StateRefusal {
        what: "save_state".into(),
        status,
    })?;
    let mut saved = Vec::with_capacity(clients.len());
    for &client in clients {
        let data = plugin.save_client(client).map_err(|status| StateRefusal {
            what: format!("save_client({})", client.0),
            status,
        })?;
        saved.push((client, data));
    }
    Ok(SavedService {
        state,
        clients: saved,
    })
}

fn restore(
    core: &ServiceCore,
    plugin: &Plugin,
    version: u32,
    state: &[u8],
    clients: &[RestoredClient],
    failed: bool,
) -> Result<(), StateRefusal> {
    if failed {
        return Err(StateRefusal {
            what: "restore (the service has failed)".into(),
            status: Status::VERR_HGCM_INTERNAL.raw(),
        });
    }
    let status = checked(core, plugin.load_state(version, state), "load_state");
    if !Status(status).is_success() {
        return Err(StateRefusal {
            what: "load_state".into(),
            status,
        });
    }
    for restored in clients {
        let id = restored.client.id;
        let status = checked(
            core,
            plugin.connect(id, restored.client.requestor, true),
            "connect",
        );
        if !Status(status).is_success() {
            return Err(StateRefusal {
                what: format!("connect({}, restoring)", id.0),
                status,
            });
        }
        let status = checked(
            core,
            plugin.load_client(id, version, &restored.state),
            "load_client",
        );
        if !Status(status).is_success() {
            return Err(StateRefusal {
                what: format!("load_client({})", id.0),
                status,
            });
        }
    }
    Ok(())
}
