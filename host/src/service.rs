//! The shared state of one service: its descriptor, quota counters, failure flag and the table of
//! its pending requests.
//!
//! The pending table is the single point where a request's fate is decided: completion, cancel,
//! client disconnect, reset and service failure all take the entry out of (or mark it in) this
//! table under one lock, so exactly one of them wins and a completion runs at most once.
//! Completions always run after the lock is released.
//!
//! Every call with buffers has a [`CallGate`]: whatever ends the call's life for its submitter
//! (cancel, disconnect, reset, failure) shuts the gate under the pending lock and, once the lock
//! is released, waits until the service's accesses to the call's memory in flight have ended, so
//! nothing touches that memory afterwards.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::ThreadId;

use crossbeam_channel::Sender;
use parking_lot::Mutex;
use vmmdev_hgcm_abi::status::{Status, is_valid_service_status};
use vmmdev_hgcm_abi::{AccessGate, CallGate, ClientCategory, ClientId, Parm, Requestor};

use crate::clients::{Client, Registry};
use crate::fanout::Fanout;
use crate::id_hash::IdMap;
use crate::marshal::RawParams;
use crate::notify::ServiceNotification;
use crate::request::{CallOutcome, Completion, ConnectOutcome, DisconnectOutcome, RequestId};
use crate::snapshot::{PendingKind, PendingRequest};
use crate::worker::Msg;

/// What the plugin declared about itself at load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Descriptor {
    pub(crate) name: String,
    pub(crate) max_clients: [u32; 3],
    pub(crate) max_calls_per_client: [u32; 3],
    pub(crate) legacy_category: ClientCategory,
    pub(crate) state_version: u32,
}

/// A call on its way through the service: everything the host must keep until completion.
pub(crate) struct CallCtx {
    pub(crate) client: Arc<Client>,
    pub(crate) requestor: Requestor,
    pub(crate) restored: bool,
    pub(crate) function: u32,
    pub(crate) params: Vec<Parm>,
    pub(crate) raw: RawParams,
    /// Admission to the memory of the buffers; `None` for calls without buffers.
    pub(crate) gate: Option<Arc<CallGate>>,
}

impl CallCtx {
    /// Shuts the call's gate (if it has one) and hands it to `closing`.
    fn shut_gate(&self, closing: &mut ClosingGates) {
        if let Some(gate) = &self.gate {
            gate.shut();
            closing.0.push(gate.clone());
        }
    }
}

/// Gates shut under the pending lock; [`ClosingGates::wait`] once the lock is released.
#[must_use = "a shut gate must be waited for before the call's memory counts as released"]
#[derive(Default)]
pub(crate) struct ClosingGates(Vec<Arc<CallGate>>);

impl ClosingGates {
    /// Waits until no access to the memory of these calls is in flight.
    pub(crate) fn wait(self) {
        for gate in self.0 {
            gate.wait_idle();
        }
    }
}

/// The operation a pending request stands for.
pub(crate) enum Op {
    Connect {
        client: Arc<Client>,
        done: Option<Completion<ConnectOutcome>>,
    },
    Disconnect {
        client: ClientId,
        done: Option<Completion<DisconnectOutcome>>,
    },
    Call {
        /// Inline: the parameter arrays the plugin sees live on the heap of `ctx.raw`, so the
        /// context may move with the table entry.
        ctx: CallCtx,
        done: Option<Completion<CallOutcome>>,
    },
}

/// Whether the submitter still wants the result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Deliver the result.
    Live,
    /// The submitter cancelled: never deliver.
    Cancelled,
    /// The client disconnected: deliver `VERR_CANCELLED` without outputs.
    ClientGone,
    /// A reset dropped it: never deliver.
    Reset,
}

pub(crate) struct Pending {
    pub(crate) fate: Fate,
    pub(crate) op: Op,
}

#[derive(Default)]
struct PendingTable {
    map: IdMap<u64, Pending>,
    /// Calls of a failed service, by handle: kept so a misbehaving plugin that still writes
    /// through their pointers writes into memory we own, and so accesses in flight can still
    /// end, until the service is torn down.
    graveyard: Vec<(u64, CallCtx)>,
}

impl PendingTable {
    /// The gate of a call that is pending or in the graveyard: `None` if the handle is unknown,
    /// `Some(None)` for a call without buffers.
    fn gate_of(&self, handle: u64) -> Option<Option<&Arc<CallGate>>> {
        match self.map.get(&handle) {
            Some(Pending {
                op: Op::Call { ctx, .. },
                ..
            }) => Some(ctx.gate.as_ref()),
            Some(_) => None,
            None => self
                .graveyard
                .iter()
                .find(|(id, _)| *id == handle)
                .map(|(_, ctx)| ctx.gate.as_ref()),
        }
    }
}

/// Runs a completion, containing a panic in the embedder's closure.
pub(crate) fn run<T>(done: Option<Completion<T>>, value: T) {
    if let Some(done) = done {
        if catch_unwind(AssertUnwindSafe(move || done(value))).is_err() {
            log::error!("an HGCM completion callback panicked; the panic was contained");
        }
    }
}

/// What the worker must do after the plugin answered a connect.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ConnectFinish {
    /// Nothing more.
    Done,
    /// The plugin accepted a client nobody wants any more: disconnect it at the plugin.
    Undo,
}

/// A value alone on its cache lines (128 bytes: x86 fetches lines in adjacent pairs), so writes
/// to it do not evict unrelated data from other CPUs' caches.
#[repr(align(128))]
struct CacheAligned<T>(T);

impl<T> std::ops::Deref for CacheAligned<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// The shared state of one service.
pub(crate) struct ServiceCore {
    pub(crate) slot: u16,
    descriptor: OnceLock<Descriptor>,
    tx: Sender<Msg>,
    failed: AtomicBool,
    thread: OnceLock<ThreadId>,
    /// On its own cache lines: both the submitting and the completing thread lock it for every
    /// call, while the other fields are read-mostly and can stay cached on every CPU.
    pending: CacheAligned<Mutex<PendingTable>>,
    client_counts: [AtomicU32; 3],
    registry: Weak<Registry>,
    pub(crate) notifier: Arc<Fanout<ServiceNotification>>,
}

impl std::fmt::Debug for ServiceCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceCore")
            .field("slot", &self.slot)
            .field("name", &self.name())
            .field("failed", &self.is_failed())
            .finish_non_exhaustive()
    }
}

impl ServiceCore {
    pub(crate) fn new(
        slot: u16,
        tx: Sender<Msg>,
        registry: Weak<Registry>,
        notifier: Arc<Fanout<ServiceNotification>>,
    ) -> Self {
        ServiceCore {
            slot,
            descriptor: OnceLock::new(),
            tx,
            failed: AtomicBool::new(false),
            thread: OnceLock::new(),
            pending: CacheAligned(Mutex::new(PendingTable::default())),
            client_counts: Default::default(),
            registry,
            notifier,
        }
    }

    pub(crate) fn set_descriptor(&self, descriptor: Descriptor) {
        // Set once, by the worker, right after a successful load.
        let _ = self.descriptor.set(descriptor);
    }

    pub(crate) fn descriptor(&self) -> Option<&Descriptor> {
        self.descriptor.get()
    }

    /// The service name ("<loading>" before the plugin told it).
    pub(crate) fn name(&self) -> &str {
        self.descriptor
            .get()
            .map_or("<loading>", |d| d.name.as_str())
    }

    pub(crate) fn set_thread(&self, id: ThreadId) {
        let _ = self.thread.set(id);
    }

    /// Whether the caller is this service's own thread (blocking on it there would deadlock).
    pub(crate) fn on_own_thread(&self) -> bool {
        self.thread.get() == Some(&std::thread::current().id())
    }

    pub(crate) fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    pub(crate) fn post(&self, msg: Msg) -> bool {
        self.tx.send(msg).is_ok()
    }

    pub(crate) fn registry(&self) -> Option<Arc<Registry>> {
        self.registry.upgrade()
    }

    /// Takes one client slot of `category`; `Err(limit)` if the limit is reached.
    pub(crate) fn take_client_slot(&self, category: ClientCategory) -> Result<(), u32> {
        let limit = self
            .descriptor()
            .map_or(0, |d| d.max_clients[category.index()]);
        self.client_counts[category.index()]
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .map(drop)
            .map_err(|_| limit)
    }

    /// Takes a client slot regardless of the limit (restore).
    pub(crate) fn force_client_slot(&self, category: ClientCategory) {
        self.client_counts[category.index()].fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn release_client_slot(&self, category: ClientCategory) {
        let _ = self.client_counts[category.index()].fetch_update(
            Ordering::AcqRel,
            Ordering::Acquire,
            |n| n.checked_sub(1),
        );
    }

    pub(crate) fn client_count(&self) -> u32 {
        self.client_counts
            .iter()
            .map(|c| c.load(Ordering::Acquire))
            .sum()
    }

    pub(crate) fn insert(&self, id: RequestId, pending: Pending) {
        self.pending.lock().map.insert(id.0, pending);
    }

    /// Removes a request that could not be posted; gives back its operation.
    pub(crate) fn withdraw(&self, id: RequestId) -> Option<Op> {
        self.pending.lock().map.remove(&id.0).map(|p| p.op)
    }

    /// Cancels a live request: its completion is dropped and the gate of a call is shut.
    /// Returns the client to tell the service and the gate to wait for.
    pub(crate) fn cancel(&self, id: RequestId) -> Option<(ClientId, ClosingGates)> {
        let mut closing = ClosingGates::default();
        let (client, dropped_done) = {
            let mut table = self.pending.lock();
            let pending = table.map.get_mut(&id.0).filter(|p| p.fate == Fate::Live)?;
            pending.fate = Fate::Cancelled;
            match &mut pending.op {
                Op::Connect { client, done } => (client.id, take_done(done)),
                Op::Disconnect { client, done } => (*client, take_done(done)),
                Op::Call { ctx, done } => {
                    ctx.shut_gate(&mut closing);
                    (ctx.client.id, take_done(done))
                }
            }
        };
        drop(dropped_done);
        Some((client, closing))
    }

    /// Marks the live calls of a disconnected client and shuts their gates; the flag tells
    /// whether there were any.
    pub(crate) fn mark_client_gone(&self, client: ClientId) -> (bool, ClosingGates) {
        let mut closing = ClosingGates::default();
        let mut any = false;
        for pending in self.pending.lock().map.values_mut() {
            if let Op::Call { ctx, .. } = &pending.op {
                if ctx.client.id == client && pending.fate == Fate::Live {
                    pending.fate = Fate::ClientGone;
                    ctx.shut_gate(&mut closing);
                    any = true;
                }
            }
        }
        (any, closing)
    }

    /// `HostApi::begin_guest_access`: opens an access to a call's buffers.
    pub(crate) fn begin_guest_access(&self, handle: u64) -> i32 {
        let table = self.pending.lock();
        match (table.gate_of(handle), table.map.get(&handle)) {
            (Some(Some(gate)), _) if gate.enter() => Status::VINF_SUCCESS.raw(),
            (Some(None), Some(pending)) if pending.fate == Fate::Live => Status::VINF_SUCCESS.raw(),
            (Some(_), _) => Status::VERR_CANCELLED.raw(),
            (None, _) => Status::VERR_NOT_FOUND.raw(),
        }
    }

    /// `HostApi::end_guest_access`: ends an access opened by `begin_guest_access`.
    pub(crate) fn end_guest_access(&self, handle: u64) -> i32 {
        match self.pending.lock().gate_of(handle) {
            Some(Some(gate)) if gate.try_leave() => Status::VINF_SUCCESS.raw(),
            Some(Some(_)) => Status::VERR_INVALID_STATE.raw(),
            // A call without buffers has nothing to guard.
            Some(None) => Status::VINF_SUCCESS.raw(),
            None => Status::VERR_NOT_FOUND.raw(),
        }
    }

    /// Guest reset, for this service: removes every client and drops every pending request
    /// silently. Returns the clients that were live (the service must see their disconnect).
    pub(crate) fn reset(&self, registry: &Registry) -> Vec<Arc<Client>> {
        let mut dropped = Vec::new();
        let mut closing = ClosingGates::default();
        let live = {
            let mut table = self.pending.lock();
            // Under the pending lock, so a concurrent connect either went live before (and is in
            // the returned list) or finds its request reset (and undoes itself).
            let live = registry.remove_all_of(self.slot);
            for pending in table.map.values_mut() {
                pending.fate = Fate::Reset;
                dropped.push(match &mut pending.op {
                    Op::Connect { done, .. } => take_done(done),
                    Op::Disconnect { done, .. } => take_done(done),
                    Op::Call { ctx, done } => {
                        ctx.shut_gate(&mut closing);
                        take_done(done)
                    }
                });
            }
            live
        };
        drop(dropped);
        closing.wait();
        live
    }

    /// Whether a connect is still wanted (checked by the worker before calling the plugin).
    pub(crate) fn connect_wanted(&self, id: RequestId) -> bool {
        self.pending
            .lock()
            .map
            .get(&id.0)
            .is_some_and(|p| p.fate == Fate::Live)
    }

    /// The plugin answered a connect with `status`.
    pub(crate) fn finish_connect(
        &self,
        id: RequestId,
        client: &Arc<Client>,
        status: i32,
    ) -> ConnectFinish {
        let accepted = Status(status).is_success();
        let decision = {
            let mut table = self.pending.lock();
            match table.map.remove(&id.0) {
                Some(Pending {
                    fate: Fate::Live,
                    op: Op::Connect { done, .. },
                }) => {
                    // Going live under the pending lock orders this against a reset.
                    if !accepted {
                        ConnectDecision::Refused(done)
                    } else if client.go_live() {
                        ConnectDecision::Deliver(done)
                    } else {
                        ConnectDecision::Unwanted
                    }
                }
                // Cancelled, reset, or drained by a service failure.
                _ => ConnectDecision::Unwanted,
            }
        };
        match decision {
            ConnectDecision::Deliver(done) => run(
                done,
                ConnectOutcome {
                    status,
                    client: client.id,
                },
            ),
            ConnectDecision::Refused(done) => {
                self.forget_client(client.id);
                run(
                    done,
                    ConnectOutcome {
                        status,
                        client: ClientId(0),
                    },
                );
            }
            ConnectDecision::Unwanted => {
                self.forget_client(client.id);
                if accepted {
                    return ConnectFinish::Undo;
                }
            }
        }
        ConnectFinish::Done
    }

    fn forget_client(&self, client: ClientId) {
        if let Some(registry) = self.registry() {
            registry.remove(client);
        }
    }

    /// The plugin answered a disconnect with `status`.
    pub(crate) fn finish_disconnect(&self, id: RequestId, status: i32) {
        let entry = self.pending.lock().map.remove(&id.0);
        if let Some(Pending {
            fate: Fate::Live,
            op: Op::Disconnect { done, .. },
        }) = entry
        {
            run(done, DisconnectOutcome { status });
        }
    }

    /// Completes a call on the host's initiative (client gone before dispatch, service failed).
    pub(crate) fn finish_call_internally(&self, id: RequestId, status: i32) {
        let entry = self.pending.lock().map.remove(&id.0);
        if let Some(Pending {
            fate,
            op: Op::Call { ctx, done },
        }) = entry
        {
            ctx.client.call_finished();
            if fate == Fate::Live || fate == Fate::ClientGone {
                run(
                    done,
                    CallOutcome {
                        status,
                        params: ctx.params,
                    },
                );
            }
        }
    }

    /// `HostApi::complete`: the service completes a call.
    pub(crate) fn complete_call(&self, handle: u64, status: i32) -> i32 {
        let (fate, ctx, done) = {
            let mut table = self.pending.lock();
            match table.map.remove(&handle) {
                Some(Pending {
                    fate,
                    op: Op::Call { ctx, done },
                }) => (fate, ctx, done),
                Some(other) => {
                    table.map.insert(handle, other);
                    drop(table);
                    self.fail("completed a handle that is not a guest call");
                    return Status::VERR_WRONG_TYPE.raw();
                }
                None => {
                    drop(table);
                    if self.is_failed() {
                        return Status::VERR_INVALID_STATE.raw();
                    }
                    self.fail("completed an unknown or already completed call handle");
                    return Status::VERR_WRONG_TYPE.raw();
                }
            }
        };
        let CallCtx {
            client,
            params,
            raw,
            gate,
            ..
        } = ctx;
        let answer = self.deliver_completion(fate, done, status, params, &raw, gate.as_deref());
        // After the delivery, off the path to the waiting submitter; a resubmission racing it at
        // the exact pending-call limit may be refused, as if it had come a moment earlier.
        client.call_finished();
        answer
    }

    /// The part of [`ServiceCore::complete_call`] after the call left the table: checks the
    /// service's answer and runs the submitter's completion if it still wants it.
    fn deliver_completion(
        &self,
        fate: Fate,
        done: Option<Completion<CallOutcome>>,
        status: i32,
        mut params: Vec<Parm>,
        raw: &RawParams,
        gate: Option<&CallGate>,
    ) -> i32 {
        // Out of the table, the handle admits no new access; one still open breaks the contract
        // (the transport is about to hand the memory back to the guest).
        let violation = if gate.is_some_and(CallGate::is_busy) {
            Some((
                "completed a call while a guest access to its buffers was open".to_owned(),
                Status::VERR_INVALID_STATE,
            ))
        } else if !is_valid_service_status(status) {
            Some((
                format!("completed a call with the invalid status {status}"),
                Status::VERR_INVALID_PARAMETER,
            ))
        } else {
            None
        };
        if let Some((reason, answer)) = violation {
            if fate == Fate::Live || fate == Fate::ClientGone {
                run(
                    done,
                    CallOutcome {
                        status: Status::VERR_HGCM_INTERNAL.raw(),
                        params,
                    },
                );
            }
            self.fail(&reason);
            return answer.raw();
        }
        match fate {
            Fate::Live => {
                raw.write_back(&mut params);
                run(done, CallOutcome { status, params });
                Status::VINF_SUCCESS.raw()
            }
            Fate::ClientGone => {
                run(
                    done,
                    CallOutcome {
                        status: Status::VERR_CANCELLED.raw(),
                        params,
                    },
                );
                Status::VERR_CANCELLED.raw()
            }
            Fate::Cancelled => Status::VERR_CANCELLED.raw(),
            Fate::Reset => Status::VERR_ALREADY_RESET.raw(),
        }
    }

    /// Looks at a pending call of this service.
    pub(crate) fn with_call<T>(
        &self,
        handle: u64,
        f: impl FnOnce(Fate, &CallCtx) -> T,
    ) -> Option<T> {
        match self.pending.lock().map.get(&handle) {
            Some(Pending {
                fate,
                op: Op::Call { ctx, .. },
            }) => Some(f(*fate, ctx)),
            _ => None,
        }
    }

    /// Containment: marks the service failed, fails its pending requests with
    /// `VERR_HGCM_INTERNAL` and keeps their memory until teardown. Idempotent.
    pub(crate) fn fail(&self, reason: &str) {
        if self.failed.swap(true, Ordering::AcqRel) {
            return;
        }
        log::error!(
            "HGCM service {:?} failed: {reason}; failing its pending requests",
            self.name()
        );
        // Under the lock: take every request out, shut the gates of the calls and move their
        // contexts to the graveyard (where accesses in flight can still find them to end).
        let mut closing = ClosingGates::default();
        let mut outcomes = Vec::new();
        {
            let mut table = self.pending.lock();
            let drained: Vec<(u64, Pending)> = table.map.drain().collect();
            for (id, Pending { fate, op }) in drained {
                let wanted = fate == Fate::Live || fate == Fate::ClientGone;
                match op {
                    Op::Call { ctx, done } => {
                        ctx.client.call_finished();
                        ctx.shut_gate(&mut closing);
                        if wanted {
                            let params = ctx.params.iter().filter_map(Parm::try_clone).collect();
                            outcomes.push(FailedRequest::Call(done, params));
                        }
                        table.graveyard.push((id, ctx));
                    }
                    Op::Connect { client, done } => {
                        outcomes.push(FailedRequest::Connect(client, wanted.then_some(done)));
                    }
                    Op::Disconnect { done, .. } if wanted => {
                        outcomes.push(FailedRequest::Disconnect(done));
                    }
                    Op::Disconnect { .. } => {}
                }
            }
        }
        // The submitters learn of the failure only once nothing touches their memory any more.
        closing.wait();
        for outcome in outcomes {
            match outcome {
                FailedRequest::Call(done, params) => run(
                    done,
                    CallOutcome {
                        status: Status::VERR_HGCM_INTERNAL.raw(),
                        params,
                    },
                ),
                FailedRequest::Connect(client, done) => {
                    self.forget_client(client.id);
                    if let Some(done) = done {
                        run(
                            done,
                            ConnectOutcome {
                                status: Status::VERR_HGCM_INTERNAL.raw(),
                                client: ClientId(0),
                            },
                        );
                    }
                }
                // The client is already gone from the table; the disconnect itself succeeded.
                FailedRequest::Disconnect(done) => run(
                    done,
                    DisconnectOutcome {
                        status: Status::VINF_SUCCESS.raw(),
                    },
                ),
            }
        }
    }

    /// Identities of the requests whose submitters still wait for them.
    pub(crate) fn pending_requests(&self) -> Vec<PendingRequest> {
        let table = self.pending.lock();
        let mut out: Vec<PendingRequest> = table
            .map
            .iter()
            .filter(|(_, p)| p.fate == Fate::Live)
            .map(|(id, p)| {
                let (kind, client, function) = match &p.op {
                    Op::Connect { client, .. } => (PendingKind::Connect, client.id, 0),
                    Op::Disconnect { client, .. } => (PendingKind::Disconnect, *client, 0),
                    Op::Call { ctx, .. } => (PendingKind::Call, ctx.client.id, ctx.function),
                };
                PendingRequest {
                    id: RequestId(*id),
                    kind,
                    service: self.name().to_owned(),
                    client,
                    function,
                }
            })
            .collect();
        out.sort_by_key(|p| p.id);
        out
    }

    /// Drops every pending request silently (shutdown, after the service thread has ended).
    pub(crate) fn drop_pending(&self) {
        let drained: Vec<Pending> = self.pending.lock().map.drain().map(|(_, p)| p).collect();
        let mut closing = ClosingGates::default();
        for pending in &drained {
            if let Op::Call { ctx, .. } = &pending.op {
                ctx.client.call_finished();
                ctx.shut_gate(&mut closing);
            }
        }
        // No access can be in flight any more: the plugin is unloaded and its host link closed.
        drop(closing);
        drop(drained);
    }

    /// Frees the memory kept for a failed service's calls (after its thread has ended).
    pub(crate) fn release_graveyard(&self) {
        let graveyard = std::mem::take(&mut self.pending.lock().graveyard);
        drop(graveyard);
    }
}

/// What a failure owes the submitter of a request it drained.
enum FailedRequest {
    Call(Option<Completion<CallOutcome>>, Vec<Parm>),
    Connect(Arc<Client>, Option<Option<Completion<ConnectOutcome>>>),
    Disconnect(Option<Completion<DisconnectOutcome>>),
}

enum ConnectDecision {
    Deliver(Option<Completion<ConnectOutcome>>),
    Refused(Option<Completion<ConnectOutcome>>),
    Unwanted,
}

/// A completion taken out of the table, dropped only after the lock is released (its captured
/// state may run arbitrary drop code, even code that calls back into the framework).
type Dropped = Box<dyn Send>;

fn take_done<T: 'static>(done: &mut Option<Completion<T>>) -> Dropped {
    Box::new(done.take())
}
