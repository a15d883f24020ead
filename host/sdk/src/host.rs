//! What a service can ask of the host outside a call: notifications to the embedder, dropping a
//! client, logging.

use std::sync::Arc;

use vmmdev_hgcm_abi::ClientId;
use vmmdev_hgcm_abi::status::Status;

use crate::link::HostLink;

/// A handle to the host, given to the service's constructor. Cheap to clone, usable from any
/// thread; after the service is unloaded every method does nothing (and returns
/// `VERR_INVALID_STATE` where it returns a status).
#[derive(Clone)]
pub struct Host {
    pub(crate) link: Arc<HostLink>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Host")
    }
}

impl Host {
    /// Sends `code` and `payload` to the embedder's subscribers. Never blocks.
    pub fn notify(&self, code: u32, payload: &[u8]) -> i32 {
        // SAFETY: the host API contract; `payload` is valid for the duration of the call.
        self.link
            .with(Status::VERR_INVALID_STATE.raw(), |api| unsafe {
                (api.notify_host)(api.ctx, code, payload.as_ptr(), payload.len())
            })
    }

    /// Disconnects one of this service's clients (no `disconnect` callback follows); its pending
    /// calls turn cancelled.
    pub fn disconnect_client(&self, client: ClientId) -> i32 {
        // SAFETY: the host API contract.
        self.link
            .with(Status::VERR_INVALID_STATE.raw(), |api| unsafe {
                (api.disconnect_client)(api.ctx, client.0)
            })
    }

    /// Logs through the host's logger.
    pub fn log(&self, level: log::Level, message: &str) {
        let level = level as u32;
        // SAFETY: the host API contract; `message` is valid for the duration of the call. The
        // `log` crate's levels 1 (error) to 5 (trace) equal the ABI's `LOG_*` values.
        self.link.with((), |api| unsafe {
            (api.log)(api.ctx, level, message.as_ptr(), message.len())
        });
    }

    pub(crate) fn report_failure(&self, reason: &str) {
        // SAFETY: the host API contract; `reason` is valid for the duration of the call.
        self.link.with((), |api| unsafe {
            (api.report_failure)(api.ctx, reason.as_ptr(), reason.len())
        });
    }
}
