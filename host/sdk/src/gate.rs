//! The access gate of a call as a plugin sees it: each access is opened and closed through the
//! host API (`begin_guest_access` / `end_guest_access`), so the host's cancel can wait for it and
//! refuse new ones. Once the service is unloaded every access is refused.

use std::sync::Arc;

use vmmdev_hgcm_abi::AccessGate;
use vmmdev_hgcm_abi::ffi::CallHandle;
use vmmdev_hgcm_abi::status::Status;

use crate::link::HostLink;

/// The gate of one call, shared by its buffers.
pub(crate) struct HostGate {
    link: Arc<HostLink>,
    handle: CallHandle,
}

impl HostGate {
    pub(crate) fn new(link: Arc<HostLink>, handle: CallHandle) -> Self {
        HostGate { link, handle }
    }
}

impl AccessGate for HostGate {
    fn enter(&self) -> bool {
        // SAFETY: the host API contract: `ctx` and a handle of a call not yet completed (the
        // buffers that use this gate live inside that call), from any thread.
        self.link.with(false, |api| unsafe {
            (api.begin_guest_access)(api.ctx, self.handle) == Status::VINF_SUCCESS.raw()
        })
    }

    fn leave(&self) {
        // SAFETY: as in `enter`; this ends the access `enter` opened.
        let status = self.link.with(Status::VINF_SUCCESS.raw(), |api| unsafe {
            (api.end_guest_access)(api.ctx, self.handle)
        });
        if status != Status::VINF_SUCCESS.raw() {
            log::error!("the host refused to end a guest access with status {status}");
        }
    }
}
