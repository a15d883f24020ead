//! The embedder-facing API: one [`Hgcm`] instance per VM.
//!
//! Transports (the VMMDev device, control endpoints) submit connects, disconnects and calls and
//! get their results through completions; the embedder registers services, broadcasts VM events,
//! resets, saves and restores. See the crate documentation for the threading model.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use parking_lot::{Mutex, RwLock};
use vmmdev_hgcm_abi::ffi::CALL_FLAG_RESTORED;
use vmmdev_hgcm_abi::{CallGate, ClientCategory, ClientId, LoadEntry, Parm, Requestor, VmEvent};

use crate::clients::Registry;
use crate::config::HgcmConfig;
use crate::fanout::{Fanout, Subscription};
use crate::loader::{self, LoadError};
use crate::marshal::RawParams;
use crate::notify::{SUBSCRIBER_CAPACITY, ServiceNotification};
use crate::request::{
    CallOutcome, CallRequest, CancelError, Completion, ConnectOutcome, DisconnectOutcome,
    RequestId, SubmitError,
};
use crate::service::{CallCtx, Fate, Op, Pending, ServiceCore};
use crate::snapshot::{ClientSnapshot, HgcmSnapshot, ServiceSnapshot};
use crate::worker::{self, KeepAlive, Msg, RawParmsPtr, RegisterError, RestoredClient};

/// Name of a registered service.
pub type ServiceName = String;

/// Bits of a [`RequestId`] holding the per-instance sequence number; the service slot is above.
const SEQUENCE_BITS: u32 = 48;
const SEQUENCE_MASK: u64 = (1 << SEQUENCE_BITS) - 1;

/// A registered service as the embedder sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceInfo {
    /// The service name.
    pub name: String,
    /// Whether the service has failed (it takes no new work).
    pub failed: bool,
    /// Clients connected or connecting.
    pub clients: u32,
}

/// Why a host call did not reach the service.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HostCallError {
    /// No service of that name.
    #[error("service {0:?} is not loaded")]
    ServiceNotFound(String),
    /// The service has failed.
    #[error("service {0:?} has failed")]
    ServiceFailed(String),
    /// Called from the service's own thread, where waiting for the answer would deadlock.
    #[error("host call issued from the service's own thread")]
    Reentrant,
    /// The framework is shutting down.
    #[error("the HGCM framework is shut down")]
    ShutDown,
}

/// Why a save failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SaveError {
    /// A failed service cannot be saved.
    #[error("service {0:?} has failed and cannot be saved")]
    ServiceFailed(String),
    /// The service refused.
    #[error("service {service:?} refused {what} with status {status}")]
    Refused {
        /// The service.
        service: String,
        /// The step that failed.
        what: String,
        /// The service's status.
        status: i32,
    },
    /// Called from a service thread, where waiting would deadlock.
    #[error("save issued from a service thread")]
    Reentrant,
    /// The framework is shutting down.
    #[error("the HGCM framework is shut down")]
    ShutDown,
}

/// Why a restore failed. After a failure the instance has no clients; reset or restore again.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RestoreError {
    /// The snapshot names a service that is not registered.
    #[error("the snapshot needs service {0:?}, which is not registered")]
    ServiceMissing(String),
    /// The service has failed.
    #[error("service {0:?} has failed")]
    ServiceFailed(String),
    /// The snapshot contains an id twice (or an invalid one).
    #[error("the snapshot reuses or misuses {0}")]
    ClientIdInUse(ClientId),
    /// The service refused its state.
    #[error("service {service:?} refused {what} with status {status}")]
    Refused {
        /// The service.
        service: String,
        /// The step that failed.
        what: String,
        /// The service's status.
        status: i32,
    },
    /// Called from a service thread, where waiting would deadlock.
    #[error("restore issued from a service thread")]
    Reentrant,
    /// The framework is shutting down.
    #[error("the HGCM framework is shut down")]
    ShutDown,
}

struct Inner {
    config: HgcmConfig,
    services: RwLock<Vec<Arc<ServiceCore>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Serialises registrations (slot numbers, duplicate names).
    registering: Mutex<()>,
    registry: Arc<Registry>,
    notifier: Arc<Fanout<ServiceNotification>>,
    next_seq: AtomicU64,
    shut_down: AtomicBool,
}

/// The HGCM framework. Cheap to clone (all clones share one instance); `Send + Sync`.
#[derive(Clone)]
pub struct Hgcm {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Hgcm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hgcm")
            .field("services", &self.services())
            .finish_non_exhaustive()
    }
}

impl Hgcm {
    /// Creates an instance with no services.
    pub fn new(config: HgcmConfig) -> Self {
        Hgcm {
            inner: Arc::new(Inner {
                config,
                services: RwLock::new(Vec::new()),
                threads: Mutex::new(Vec::new()),
                registering: Mutex::new(()),
                registry: Arc::new(Registry::default()),
                notifier: Arc::new(Fanout::new(SUBSCRIBER_CAPACITY)),
                next_seq: AtomicU64::new(1),
                shut_down: AtomicBool::new(false),
            }),
        }
    }

    /// Registers a built-in service from its load entry point (the same entry a plugin exports;
    /// the SDK generates it). The entry runs on the new service's thread.
    pub fn register_builtin(
        &self,
        entry: LoadEntry,
        config: &str,
    ) -> Result<ServiceName, RegisterError> {
        self.register(entry, config, None)
    }

    /// Loads a plugin by file path (anything containing `/`) or by name on the search path
    /// (`lib<name>.so`, then `<name>.so`), and registers the service it exports.
    pub fn load_plugin(&self, name_or_path: &str, config: &str) -> Result<ServiceName, LoadError> {
        let path = loader::resolve(name_or_path, &self.inner.config.plugin_search_path)?;
        let (library, entry) = loader::open(&path)?;
        self.register(entry, config, Some(Box::new(library)))
            .map_err(|source| LoadError::Register { path, source })
    }

    fn register(
        &self,
        entry: LoadEntry,
        config: &str,
        keep_alive: Option<KeepAlive>,
    ) -> Result<ServiceName, RegisterError> {
        let inner = &self.inner;
        let _registering = inner.registering.lock();
        if inner.shut_down.load(Ordering::Acquire) {
            return Err(RegisterError::ShutDown);
        }
        let slot = u16::try_from(inner.services.read().len())
            .map_err(|_| RegisterError::TooManyServices)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let core = Arc::new(ServiceCore::new(
            slot,
            tx,
            Arc::downgrade(&inner.registry),
            inner.notifier.clone(),
        ));
        let thread = worker::start(
            core.clone(),
            rx,
            entry,
            config,
            inner.config.limits.clone(),
            keep_alive,
        )?;
        let name = core.name().to_owned();
        if inner.services.read().iter().any(|s| s.name() == name) {
            core.post(Msg::Unload);
            let _ = thread.join();
            return Err(RegisterError::DuplicateName(name));
        }
        log::info!("HGCM service {name:?} registered");
        inner.services.write().push(core);
        inner.threads.lock().push(thread);
        Ok(name)
    }

    /// The registered services, in registration order.
    pub fn services(&self) -> Vec<ServiceInfo> {
        self.inner
            .services
            .read()
            .iter()
            .map(|s| ServiceInfo {
                name: s.name().to_owned(),
                failed: s.is_failed(),
                clients: s.client_count(),
            })
            .collect()
    }

    /// Subscribes to notifications services send to the embedder. Each subscriber has a bounded
    /// queue; when it is full, further notifications are dropped for it (see
    /// [`Self::dropped_notifications`]), never blocking a service. Dropping the subscription
    /// unsubscribes.
    pub fn subscribe(&self) -> Subscription<ServiceNotification> {
        self.inner.notifier.subscribe()
    }

    /// How many notifications were dropped because a subscriber's queue was full.
    pub fn dropped_notifications(&self) -> u64 {
        self.inner.notifier.dropped()
    }

    fn running(&self) -> Result<(), SubmitError> {
        if self.inner.shut_down.load(Ordering::Acquire) {
            Err(SubmitError::ShutDown)
        } else {
            Ok(())
        }
    }

    fn find(&self, name: &str) -> Option<Arc<ServiceCore>> {
        self.inner
            .services
            .read()
            .iter()
            .find(|s| s.name() == name)
            .cloned()
    }

    fn next_request_id(&self, core: &ServiceCore) -> RequestId {
        let seq = self.inner.next_seq.fetch_add(1, Ordering::Relaxed) & SEQUENCE_MASK;
        RequestId((u64::from(core.slot) << SEQUENCE_BITS) | seq)
    }

    /// Connects a new client of `service`. `Ok` means accepted: `done` runs once the service has
    /// answered (with its status), unless the request is cancelled or reset first.
    pub fn connect(
        &self,
        service: &str,
        requestor: Requestor,
        done: Completion<ConnectOutcome>,
    ) -> Result<RequestId, SubmitError> {
        self.running()?;
        let core = self
            .find(service)
            .ok_or_else(|| SubmitError::ServiceNotFound(service.to_owned()))?;
        let descriptor = match core.descriptor() {
            Some(d) if !core.is_failed() => d,
            _ => return Err(SubmitError::ServiceFailed(service.to_owned())),
        };
        let category = ClientCategory::of(requestor, descriptor.legacy_category);
        core.take_client_slot(category)
            .map_err(|limit| SubmitError::TooManyClients {
                service: service.to_owned(),
                limit,
            })?;
        let Some(client) = self
            .inner
            .registry
            .reserve(core.clone(), requestor, category)
        else {
            core.release_client_slot(category);
            return Err(SubmitError::TooManyClients {
                service: service.to_owned(),
                limit: 0,
            });
        };
        let id = self.next_request_id(&core);
        core.insert(
            id,
            Pending {
                fate: Fate::Live,
                op: Op::Connect {
                    client: client.clone(),
                    done: Some(done),
                },
            },
        );
        if !core.post(Msg::Connect {
            id,
            client: client.clone(),
        }) {
            core.withdraw(id);
            self.inner.registry.remove(client.id);
            return Err(SubmitError::ShutDown);
        }
        Ok(id)
    }

    /// Disconnects a client. The client stops accepting calls at once; its pending calls are
    /// cancelled (the service is told, and their completions run with `VERR_CANCELLED` once the
    /// service lets go of them). `done` runs after the service's disconnect callback.
    pub fn disconnect(
        &self,
        client: ClientId,
        done: Completion<DisconnectOutcome>,
    ) -> Result<RequestId, SubmitError> {
        self.running()?;
        let removed = self
            .inner
            .registry
            .remove_live(client)
            .ok_or(SubmitError::InvalidClient(client))?;
        let core = removed.service.clone();
        let id = self.next_request_id(&core);
        core.insert(
            id,
            Pending {
                fate: Fate::Live,
                op: Op::Disconnect {
                    client,
                    done: Some(done),
                },
            },
        );
        let (had_calls, closing) = core.mark_client_gone(client);
        if had_calls {
            core.post(Msg::Cancelled { client });
        }
        let posted = core.post(Msg::Disconnect { id, client });
        closing.wait();
        if !posted {
            core.withdraw(id);
            return Err(SubmitError::ShutDown);
        }
        Ok(id)
    }

    /// Submits a guest call. `Ok` means accepted: `done` runs exactly once with the service's
    /// status and the parameters (outputs written), unless the call is cancelled or reset first.
    pub fn call(
        &self,
        mut call: CallRequest,
        done: Completion<CallOutcome>,
    ) -> Result<RequestId, SubmitError> {
        self.running()?;
        let client = self
            .inner
            .registry
            .live(call.client)
            .ok_or(SubmitError::InvalidClient(call.client))?;
        let core = client.service.clone();
        let descriptor = match core.descriptor() {
            Some(d) if !core.is_failed() => d,
            _ => return Err(SubmitError::ServiceFailed(core.name().to_owned())),
        };
        let limits = &self.inner.config.limits;
        if call.params.len() > limits.max_params_per_call as usize {
            return Err(SubmitError::TooManyParams {
                count: call.params.len(),
                limit: limits.max_params_per_call,
            });
        }
        let bytes: u64 = call
            .params
            .iter()
            .filter_map(Parm::as_buffer)
            .map(|b| b.len() as u64)
            .sum();
        if bytes > limits.max_buffer_bytes_per_call {
            return Err(SubmitError::BuffersTooLarge {
                bytes,
                limit: limits.max_buffer_bytes_per_call,
            });
        }
        let max_calls = descriptor.max_calls_per_client[client.category.index()];
        if !client.try_add_call(max_calls) {
            return Err(SubmitError::TooManyCalls {
                client: call.client,
                limit: max_calls,
            });
        }
        let gate = gate_buffers(&mut call.params);
        let mut raw = RawParams::build(&call.params);
        let parms = RawParmsPtr(raw.as_mut_ptr());
        let count = raw.count();
        let id = self.next_request_id(&core);
        let ctx = CallCtx {
            client: client.clone(),
            requestor: call.requestor,
            restored: call.restored,
            function: call.function,
            params: call.params,
            raw,
            gate,
        };
        core.insert(
            id,
            Pending {
                fate: Fate::Live,
                op: Op::Call {
                    ctx,
                    done: Some(done),
                },
            },
        );
        let flags = if call.restored { CALL_FLAG_RESTORED } else { 0 };
        let msg = Msg::Call {
            id,
            client,
            function: call.function,
            requestor: call.requestor.0,
            flags,
            parms,
            count,
        };
        if !core.post(msg) {
            if let Some(Op::Call { ctx, .. }) = core.withdraw(id) {
                ctx.client.call_finished();
            }
            return Err(SubmitError::ShutDown);
        }
        Ok(id)
    }

    /// Cancels a pending request. On `Ok` its completion will never run; the service is told
    /// (`cancelled(client)`, and `is_cancelled` turns true) and a later completion by the
    /// service is discarded. `Err(NotFound)` if the request is unknown, completed or cancelled.
    ///
    /// When this returns `Ok`, nothing touches the call's buffers any more: no access to their
    /// memory can start, and accesses the service had in flight have ended. Waiting for those
    /// may block briefly (for the length of a copy), so the caller must not hold a lock that
    /// the completion of any request needs (see the crate documentation).
    pub fn cancel(&self, id: RequestId) -> Result<(), CancelError> {
        let slot = usize::try_from(id.0 >> SEQUENCE_BITS).map_err(|_| CancelError::NotFound(id))?;
        let core = self
            .inner
            .services
            .read()
            .get(slot)
            .cloned()
            .ok_or(CancelError::NotFound(id))?;
        let (client, closing) = core.cancel(id).ok_or(CancelError::NotFound(id))?;
        core.post(Msg::Cancelled { client });
        closing.wait();
        Ok(())
    }

    /// Calls a service's host entry point and waits for its status. `params` are host memory;
    /// the service's outputs are written back into them.
    pub fn host_call(
        &self,
        service: &str,
        function: u32,
        params: &mut [Parm],
    ) -> Result<i32, HostCallError> {
        if self.inner.shut_down.load(Ordering::Acquire) {
            return Err(HostCallError::ShutDown);
        }
        let core = self
            .find(service)
            .ok_or_else(|| HostCallError::ServiceNotFound(service.to_owned()))?;
        if core.is_failed() {
            return Err(HostCallError::ServiceFailed(service.to_owned()));
        }
        if core.on_own_thread() {
            return Err(HostCallError::Reentrant);
        }
        let mut raw = RawParams::build(params);
        let (reply, answer) = crossbeam_channel::bounded(1);
        let msg = Msg::HostCall {
            function,
            parms: RawParmsPtr(raw.as_mut_ptr()),
            count: raw.count(),
            reply,
        };
        if !core.post(msg) {
            return Err(HostCallError::ShutDown);
        }
        // The array (and the buffers it points into) stays alive until the service thread has
        // answered or dropped the message.
        match answer.recv() {
            Ok(Some(status)) => {
                raw.write_back(params);
                Ok(status)
            }
            Ok(None) => Err(HostCallError::ServiceFailed(service.to_owned())),
            Err(_) => Err(HostCallError::ShutDown),
        }
    }

    /// Broadcasts a VM event to every service (asynchronously, in order with other messages).
    pub fn notify(&self, event: VmEvent) {
        for core in self.inner.services.read().iter() {
            core.post(Msg::Notify(event));
        }
    }

    /// Guest reset: every client of every service is disconnected (services see `disconnect`),
    /// every pending request is dropped silently (its completion never runs; a later completion
    /// by the service gets `VERR_ALREADY_RESET`), then every service is notified with
    /// [`VmEvent::Reset`]. Returns when all services have processed it.
    pub fn reset(&self) {
        self.disconnect_everything(true);
    }

    fn disconnect_everything(&self, notify_reset: bool) {
        let services = self.inner.services.read().clone();
        let mut answers = Vec::new();
        for core in &services {
            let live: Vec<ClientId> = core
                .reset(&self.inner.registry)
                .iter()
                .map(|c| c.id)
                .collect();
            let (reply, answer) = crossbeam_channel::bounded(1);
            let msg = Msg::Reset {
                clients: live,
                notify: notify_reset,
                reply,
            };
            if core.post(msg) && !core.on_own_thread() {
                answers.push(answer);
            }
        }
        for answer in answers {
            let _ = answer.recv();
        }
    }

    fn on_any_service_thread(&self) -> bool {
        self.inner.services.read().iter().any(|s| s.on_own_thread())
    }

    /// Saves clients, service state and the identities of pending requests. Call it with the
    /// guest paused; it waits for every service to write its state.
    pub fn save(&self) -> Result<HgcmSnapshot, SaveError> {
        if self.inner.shut_down.load(Ordering::Acquire) {
            return Err(SaveError::ShutDown);
        }
        if self.on_any_service_thread() {
            return Err(SaveError::Reentrant);
        }
        let services = self.inner.services.read().clone();
        let mut saved = Vec::with_capacity(services.len());
        let mut pending = Vec::new();
        for core in &services {
            let name = core.name().to_owned();
            let Some(descriptor) = core.descriptor().filter(|_| !core.is_failed()) else {
                return Err(SaveError::ServiceFailed(name));
            };
            let clients = self.inner.registry.live_of(core.slot);
            let (reply, answer) = crossbeam_channel::bounded(1);
            if !core.post(Msg::Save {
                clients: clients.iter().map(|c| c.id).collect(),
                reply,
            }) {
                return Err(SaveError::ShutDown);
            }
            let state = match answer.recv() {
                Ok(Ok(state)) => state,
                Ok(Err(refusal)) => {
                    return Err(SaveError::Refused {
                        service: name,
                        what: refusal.what,
                        status: refusal.status,
                    });
                }
                Err(_) => return Err(SaveError::ShutDown),
            };
            let clients = clients
                .iter()
                .zip(state.clients)
                .map(|(client, (_, data))| ClientSnapshot {
                    id: client.id,
                    requestor: client.requestor,
                    state: data,
                })
                .collect();
            saved.push(ServiceSnapshot {
                name,
                state_version: descriptor.state_version,
                state: state.state,
                clients,
            });
            pending.extend(core.pending_requests());
        }
        Ok(HgcmSnapshot {
            next_client_id: self.inner.registry.next_id(),
            next_request_seq: self.inner.next_seq.load(Ordering::Acquire),
            services: saved,
            pending,
        })
    }

    /// Restores a snapshot: existing clients are disconnected and pending requests dropped (as by
    /// a reset, without the Reset event), then every saved client is re-created with its old id
    /// (the service sees `connect` with `restoring`) and the service state is loaded. The
    /// transport then resubmits its pending calls with `restored: true`.
    pub fn restore(&self, snapshot: &HgcmSnapshot) -> Result<(), RestoreError> {
        if self.inner.shut_down.load(Ordering::Acquire) {
            return Err(RestoreError::ShutDown);
        }
        if self.on_any_service_thread() {
            return Err(RestoreError::Reentrant);
        }
        let mut targets = Vec::with_capacity(snapshot.services.len());
        for saved in &snapshot.services {
            let core = self
                .find(&saved.name)
                .ok_or_else(|| RestoreError::ServiceMissing(saved.name.clone()))?;
            if core.is_failed() {
                return Err(RestoreError::ServiceFailed(saved.name.clone()));
            }
            targets.push((core, saved));
        }
        self.disconnect_everything(false);
        self.inner.registry.raise_next_id(snapshot.next_client_id);
        self.inner
            .next_seq
            .fetch_max(snapshot.next_request_seq, Ordering::AcqRel);
        for (core, saved) in targets {
            let result = self.restore_service(&core, saved);
            if result.is_err() {
                self.disconnect_everything(false);
            }
            result?;
        }
        Ok(())
    }

    fn restore_service(
        &self,
        core: &Arc<ServiceCore>,
        saved: &ServiceSnapshot,
    ) -> Result<(), RestoreError> {
        let legacy = core
            .descriptor()
            .map_or(ClientCategory::Kernel, |d| d.legacy_category);
        let mut clients = Vec::with_capacity(saved.clients.len());
        for client in &saved.clients {
            let category = ClientCategory::of(client.requestor, legacy);
            let restored = self
                .inner
                .registry
                .reserve_restored(client.id, core.clone(), client.requestor, category)
                .ok_or(RestoreError::ClientIdInUse(client.id))?;
            core.force_client_slot(category);
            clients.push(RestoredClient {
                client: restored,
                state: client.state.clone(),
            });
        }
        let live: Vec<_> = clients.iter().map(|c| c.client.clone()).collect();
        let (reply, answer) = crossbeam_channel::bounded(1);
        let msg = Msg::Restore {
            version: saved.state_version,
            state: saved.state.clone(),
            clients,
            reply,
        };
        if !core.post(msg) {
            return Err(RestoreError::ShutDown);
        }
        match answer.recv() {
            Ok(Ok(())) => {
                for client in live {
                    client.go_live();
                }
                Ok(())
            }
            Ok(Err(refusal)) => Err(RestoreError::Refused {
                service: saved.name.clone(),
                what: refusal.what,
                status: refusal.status,
            }),
            Err(_) => Err(RestoreError::ShutDown),
        }
    }

    /// Unloads every service (on its thread, after the messages already queued) and joins the
    /// threads. Pending requests are dropped without completion. Other clones of this handle
    /// see `ShutDown` errors afterwards. A service must not use the host API after its unload:
    /// SDK services get `VERR_INVALID_STATE` from handles kept past it, C plugins must stop
    /// their own threads in `unload` (see the C header).
    pub fn shutdown(self) {
        self.inner.shutdown();
    }
}

/// Puts every buffer of a call under one new gate; `None` if the call has no buffers.
fn gate_buffers(params: &mut [Parm]) -> Option<Arc<CallGate>> {
    let mut gate = None;
    for buffer in params.iter_mut().filter_map(Parm::as_buffer_mut) {
        let gate = gate.get_or_insert_with(|| Arc::new(CallGate::new()));
        buffer.attach_gate(gate.clone());
    }
    gate
}

impl Inner {
    fn shutdown(&self) {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return;
        }
        let services = self.services.read().clone();
        for core in &services {
            core.post(Msg::Unload);
        }
        let current = std::thread::current().id();
        for thread in self.threads.lock().drain(..) {
            if thread.thread().id() != current {
                let _ = thread.join();
            }
        }
        for core in &services {
            core.drop_pending();
            core.release_graveyard();
        }
        self.registry.clear();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown();
    }
}
