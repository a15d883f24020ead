//! The service contract in safe Rust.

use vmmdev_hgcm_abi::status::Status;
use vmmdev_hgcm_abi::{ClientCategory, ClientId, Requestor, VmEvent};

use crate::call::Call;
use crate::params::Params;

/// Per-client limits of a service, pre-filled with the host's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientLimits {
    /// Maximum simultaneous clients per category (kernel, root, user).
    pub max_clients: [u32; 3],
    /// Maximum pending calls per client, by category.
    pub max_calls_per_client: [u32; 3],
    /// Category of clients whose requestor is LEGACY.
    pub legacy_category: ClientCategory,
}

/// An HGCM host service.
///
/// All methods run on the service's own thread, one at a time, in the order the host sent them.
/// A call may be completed inside [`Service::call`] or later from any thread. A panic in any
/// method is caught: the service is then marked failed and gets no further work.
pub trait Service: Send + 'static {
    /// Version of the state written by `save_state` / `save_client`.
    const STATE_VERSION: u32 = 1;

    /// Adjusts the per-client limits (called once, after construction).
    fn client_limits(&self, defaults: ClientLimits) -> ClientLimits {
        defaults
    }

    /// A client connects (`restoring`: re-created by a restore). `Err(status)` refuses it.
    fn connect(
        &mut self,
        client: ClientId,
        requestor: Requestor,
        restoring: bool,
    ) -> Result<(), i32> {
        let _ = (client, requestor, restoring);
        Ok(())
    }

    /// A client disconnected. Complete (or drop) any calls of it still held.
    fn disconnect(&mut self, client: ClientId) {
        let _ = client;
    }

    /// A guest call.
    fn call(&mut self, call: Call);

    /// Some request of `client` was cancelled; check [`Call::is_cancelled`] on its held calls.
    fn cancelled(&mut self, client: ClientId) {
        let _ = client;
    }

    /// A synchronous call from the embedder; returns a status.
    fn host_call(&mut self, function: u32, params: &mut Params) -> i32 {
        let _ = (function, params);
        Status::VERR_NOT_SUPPORTED.raw()
    }

    /// The service-wide state to save.
    fn save_state(&mut self) -> Vec<u8> {
        Vec::new()
    }

    /// Restores the service-wide state saved with `version`.
    fn load_state(&mut self, version: u32, data: &[u8]) -> Result<(), i32> {
        let _ = (version, data);
        Ok(())
    }

    /// The state of one client to save.
    fn save_client(&mut self, client: ClientId) -> Vec<u8> {
        let _ = client;
        Vec::new()
    }

    /// Restores one client's state (after its `connect` with `restoring`).
    fn load_client(&mut self, client: ClientId, version: u32, data: &[u8]) -> Result<(), i32> {
        let _ = (client, version, data);
        Ok(())
    }

    /// A VM lifecycle event.
    fn notify(&mut self, event: VmEvent) {
        let _ = event;
    }

    /// Last call before the service is dropped.
    fn unload(&mut self) {}
}
