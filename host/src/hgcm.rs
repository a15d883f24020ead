//! The embedder-facing API.

use std::sync::Arc;

use vmmdev_hgcm_abi::{ClientId, LoadEntry, Parm, Requestor, VmEvent};

use crate::config::HgcmConfig;
use crate::notify::ServiceNotification;
use crate::request::{
    CallOutcome, CallRequest, CancelError, Completion, ConnectOutcome, DisconnectOutcome,
    RequestId, SubmitError,
};
use crate::snapshot::HgcmSnapshot;

/// Name of a registered service.
pub type ServiceName = String;

/// A registered service as the embedder sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceInfo {
    /// The service name.
    pub name: String,
    /// Whether the service has failed.
    pub failed: bool,
    /// Connected clients.
    pub clients: u32,
}

/// Why a service could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// Placeholder.
    #[error("not yet implemented")]
    Unimplemented,
}

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Placeholder.
    #[error("not yet implemented")]
    Unimplemented,
}

/// Why a host call failed before reaching the service.
#[derive(Debug, thiserror::Error)]
pub enum HostCallError {
    /// Placeholder.
    #[error("not yet implemented")]
    Unimplemented,
}

/// Why a save failed.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// Placeholder.
    #[error("not yet implemented")]
    Unimplemented,
}

/// Why a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Placeholder.
    #[error("not yet implemented")]
    Unimplemented,
}

struct Inner;

/// The HGCM framework. Cheap to clone; all clones share one instance.
#[derive(Clone)]
pub struct Hgcm {
    #[allow(dead_code)]
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Hgcm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hgcm").finish_non_exhaustive()
    }
}

#[allow(unused_variables)]
impl Hgcm {
    /// Creates an instance with no services.
    pub fn new(config: HgcmConfig) -> Self {
        todo!()
    }
    /// Registers a built-in service from its load entry point.
    pub fn register_builtin(&self, entry: LoadEntry, config: &str) -> Result<ServiceName, RegisterError> {
        todo!()
    }
    /// Loads a plugin by file path or by name on the search path.
    pub fn load_plugin(&self, name_or_path: &str, config: &str) -> Result<ServiceName, LoadError> {
        todo!()
    }
    /// The registered services.
    pub fn services(&self) -> Vec<ServiceInfo> {
        todo!()
    }
    /// Connects a new client.
    pub fn connect(&self, service: &str, requestor: Requestor, done: Completion<ConnectOutcome>) -> Result<RequestId, SubmitError> {
        todo!()
    }
    /// Disconnects a client.
    pub fn disconnect(&self, client: ClientId, done: Completion<DisconnectOutcome>) -> Result<RequestId, SubmitError> {
        todo!()
    }
    /// Submits a call.
    pub fn call(&self, call: CallRequest, done: Completion<CallOutcome>) -> Result<RequestId, SubmitError> {
        todo!()
    }
    /// Cancels a pending request.
    pub fn cancel(&self, id: RequestId) -> Result<(), CancelError> {
        todo!()
    }
    /// Calls a service's host entry point synchronously.
    pub fn host_call(&self, service: &str, function: u32, params: &mut [Parm]) -> Result<i32, HostCallError> {
        todo!()
    }
    /// Subscribes to service notifications.
    pub fn subscribe(&self) -> crossbeam_channel::Receiver<ServiceNotification> {
        todo!()
    }
    /// Broadcasts a VM event to every service.
    pub fn notify(&self, event: VmEvent) {
        todo!()
    }
    /// Guest reset.
    pub fn reset(&self) {
        todo!()
    }
    /// Saves the state.
    pub fn save(&self) -> Result<HgcmSnapshot, SaveError> {
        todo!()
    }
    /// Restores a saved state.
    pub fn restore(&self, snapshot: &HgcmSnapshot) -> Result<(), RestoreError> {
        todo!()
    }
    /// Unloads every service and joins their threads.
    pub fn shutdown(self) {
        todo!()
    }
}
