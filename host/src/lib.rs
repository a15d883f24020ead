//! The HGCM host-service framework: clients, per-service threads, asynchronous calls,
//! cancellation, plugins, save/restore.
//!
//! Threading model: every service runs on its own thread; its entry points (connect, disconnect,
//! call, cancelled, host call, save/load, notify, unload) run there one at a time, in submission
//! order. A transport submits with [`Hgcm::connect`], [`Hgcm::disconnect`] and [`Hgcm::call`]
//! from any thread; `Ok` means accepted and the completion runs exactly once, on whichever thread
//! completes the request, unless the request was cancelled or dropped by a reset. Each request's
//! fate is decided under one per-service lock, so a cancel and a completion cannot both win.
//! Services are plugins or built-ins behind the same C ABI (`vmmdev_hgcm_abi::ffi`); a service
//! that panics or breaks the ABI contract is marked failed, its pending requests fail with
//! `VERR_HGCM_INTERNAL`, and everything else goes on. Blocking calls ([`Hgcm::host_call`],
//! [`Hgcm::save`], [`Hgcm::restore`], [`Hgcm::reset`]) must not be made from a service thread.
//!
//! Guest memory after a cancel: the buffers of a call share one access gate
//! ([`vmmdev_hgcm_abi::gate`]). Services touch buffer memory only inside short accesses
//! ([`Buffer::guest_access`] in Rust, `begin_guest_access` / `end_guest_access` in the C ABI).
//! [`Hgcm::cancel`], [`Hgcm::disconnect`], [`Hgcm::reset`] and a service failure shut the gates
//! of the calls they end and return only once the accesses in flight have finished, so after
//! they return no byte of those calls' guest memory is read or written again.
//!
//! Deadlock rule for transports: because of that wait, `cancel`, `disconnect` and `reset` may
//! block briefly. Never call them while holding a lock that a completion callback takes (the
//! VMMDev device releases its request-table lock before it cancels); a completion never waits
//! for a gate, so the reverse order is safe.

mod clients;
mod config;
mod fanout;
mod hgcm;
mod host_api;
mod id_hash;
mod loader;
mod marshal;
mod notify;
mod request;
mod service;
mod snapshot;
mod worker;

pub use config::{HgcmConfig, Limits};
pub use fanout::{Events, Fanout, Subscription};
pub use hgcm::{Hgcm, HostCallError, RestoreError, SaveError, ServiceInfo, ServiceName};
pub use loader::LoadError;
pub use notify::{MAX_NOTIFICATION_PAYLOAD, SUBSCRIBER_CAPACITY, ServiceNotification};
pub use request::{
    CallOutcome, CallRequest, CancelError, Completion, ConnectOutcome, DisconnectOutcome,
    RequestId, SubmitError,
};
pub use snapshot::{HgcmSnapshot, PendingKind, PendingRequest, SnapshotError};
pub use vmmdev_hgcm_abi::{
    Buffer, BufferError, ClientCategory, ClientId, Direction, GuestAccess, LoadEntry, Parm,
    Requestor, Status, VmEvent, status,
};
pub use worker::RegisterError;
