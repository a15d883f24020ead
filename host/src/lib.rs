//! The HGCM host-service framework: clients, per-service threads, asynchronous calls,
//! cancellation, plugins, save/restore.

mod clients;
mod config;
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
pub use hgcm::{Hgcm, HostCallError, RestoreError, SaveError, ServiceInfo, ServiceName};
pub use loader::LoadError;
pub use notify::{MAX_NOTIFICATION_PAYLOAD, SUBSCRIBER_CAPACITY, ServiceNotification};
pub use request::{
    CallOutcome, CallRequest, CancelError, Completion, ConnectOutcome, DisconnectOutcome,
    RequestId, SubmitError,
};
pub use snapshot::{HgcmSnapshot, PendingKind, PendingRequest, SnapshotError};
pub use vmmdev_hgcm_abi::{
    Buffer, BufferError, ClientCategory, ClientId, Direction, LoadEntry, Parm, Requestor, VmEvent,
    status,
};
pub use worker::RegisterError;
