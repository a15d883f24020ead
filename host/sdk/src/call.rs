//! A guest call as a service holds it: completed exactly once (`complete` consumes it), from any
//! thread; dropping it completes it with an error so the guest never hangs.

use std::sync::Arc;

use vmmdev_hgcm_abi::ffi::{CallHandle, RawParm};
use vmmdev_hgcm_abi::status::Status;
use vmmdev_hgcm_abi::{ClientId, Requestor};

use crate::gate::HostGate;
use crate::link::HostLink;
use crate::params::Params;

/// Status a dropped, uncompleted call is completed with.
pub const DROPPED_CALL_STATUS: i32 = Status::VERR_HGCM_INTERNAL.raw();

/// What became of a completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The result reached the caller.
    Delivered,
    /// The caller had cancelled the call; the result was discarded (keep or requeue the data).
    Cancelled,
    /// A guest reset had dropped the call; the result was discarded.
    Reset,
    /// The host refused the completion with this status (or the service was already unloaded).
    Refused(i32),
}

impl Delivery {
    fn from_status(status: i32) -> Self {
        match Status(status) {
            Status::VINF_SUCCESS => Self::Delivered,
            Status::VERR_CANCELLED => Self::Cancelled,
            Status::VERR_ALREADY_RESET => Self::Reset,
            _ => Self::Refused(status),
        }
    }
}

/// One pending guest call.
#[derive(Debug)]
pub struct Call {
    link: Arc<HostLink>,
    handle: CallHandle,
    client: ClientId,
    function: u32,
    requestor: Requestor,
    restored: bool,
    raw: *mut RawParm,
    params: Params,
    completed: bool,
}

impl std::fmt::Debug for HostLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HostLink")
    }
}

// SAFETY: the host allows completing a call, and accessing its parameter array and buffers, from
// any thread until the call is completed; `Call` is the only holder of those pointers.
unsafe impl Send for Call {}

/// What the host told the service about a new call.
pub(crate) struct CallInfo {
    pub(crate) handle: CallHandle,
    pub(crate) client: ClientId,
    pub(crate) function: u32,
    pub(crate) requestor: Requestor,
    pub(crate) restored: bool,
}

impl Call {
    /// # Safety
    /// `raw` must be the host's array of `count` parameters for this call, valid until the call
    /// is completed through the host API.
    pub(crate) unsafe fn new(
        link: Arc<HostLink>,
        info: CallInfo,
        raw: *mut RawParm,
        count: u32,
    ) -> Result<Call, (Arc<HostLink>, CallHandle)> {
        // SAFETY: forwarded from the caller; the host keeps the buffers valid until completion
        // and the gate attached below confines access to the time before a cancel.
        let mut params = match unsafe { Params::from_raw(raw, count) } {
            Ok(params) => params,
            Err(_) => return Err((link, info.handle)),
        };
        // Only calls with buffers need a gate (and its allocation).
        params.attach_gate(|| Arc::new(HostGate::new(link.clone(), info.handle)));
        Ok(Call {
            link,
            handle: info.handle,
            client: info.client,
            function: info.function,
            requestor: info.requestor,
            restored: info.restored,
            raw,
            params,
            completed: false,
        })
    }

    /// The calling client.
    pub fn client(&self) -> ClientId {
        self.client
    }

    /// The service-defined function number.
    pub fn function(&self) -> u32 {
        self.function
    }

    /// The requestor bits the guest sent with this call.
    pub fn requestor(&self) -> Requestor {
        self.requestor
    }

    /// Whether the call was resubmitted after a restore.
    pub fn is_restored(&self) -> bool {
        self.restored
    }

    /// Whether the caller cancelled the call (or its client disconnected, or the guest reset).
    /// A cancelled call should be completed soon; its result is discarded.
    pub fn is_cancelled(&self) -> bool {
        // SAFETY: the host API contract: `ctx` and a live handle, from any thread.
        self.link.with(true, |api| unsafe {
            (api.is_cancelled)(api.ctx, self.handle)
        })
    }

    /// The parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The parameters, for writing results.
    pub fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }

    /// Completes the call with `status` and the parameters' current values.
    pub fn complete(mut self, status: i32) -> Delivery {
        self.finish(status)
    }

    fn finish(&mut self, status: i32) -> Delivery {
        self.completed = true;
        let handle = self.handle;
        let delivered = self.link.with(None, |api| {
            // SAFETY: the array is valid until `complete` below, which is the first and only
            // completion of this call (`completed` guards against a second one).
            unsafe { self.params.write_back(self.raw) };
            // SAFETY: the host API contract: `ctx` and a live handle, from any thread.
            Some(unsafe { (api.complete)(api.ctx, handle, status) })
        });
        delivered.map_or(
            Delivery::Refused(Status::VERR_HGCM_INTERNAL.raw()),
            Delivery::from_status,
        )
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.completed {
            log::warn!(
                "HGCM call {} of {} dropped without completion",
                self.function,
                self.client
            );
            self.finish(DROPPED_CALL_STATUS);
        }
    }
}

/// Completes a call whose parameters could not even be read (a host bug).
pub(crate) fn refuse(link: &HostLink, handle: CallHandle, status: i32) {
    link.with((), |api| {
        // SAFETY: the host API contract: `ctx` and a live handle, from any thread.
        unsafe { (api.complete)(api.ctx, handle, status) };
    });
}
