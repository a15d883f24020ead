//! WAIT_FOR_MAPPINGS_CHANGES: guest calls parked until the share table changes.
//!
//! Parked calls are completed with the new table version when the host adds or removes a share,
//! with `VERR_CANCELLED` when their client asks (CANCEL_MAPPINGS_CHANGES_WAITS), cancels the
//! request or disconnects. A cancel that finds no parked call is remembered, so the wait it
//! raced with returns at once. At most [`MAX_WAITS`] calls are parked service-wide (counted as
//! currently parked, not over the service's lifetime).

use std::collections::HashSet;

use vmmdev_hgcm_sdk::{Call, ClientId};
use vmmdev_protocol::services::shared_folders::SHFL_MAX_MAPPING_CHANGE_WAITS;
use vmmdev_protocol::status::Status;

/// Most calls parked at once, service-wide.
pub const MAX_WAITS: usize = SHFL_MAX_MAPPING_CHANGE_WAITS as usize;

/// Parked mapping-change waits.
#[derive(Debug, Default)]
pub struct MappingWaits {
    parked: Vec<Call>,
    cancel_next: HashSet<ClientId>,
}

/// Completes `call` with `status`, reporting `version` in its only parameter.
fn finish(mut call: Call, status: Status, version: u32) {
    // The parameter was type-checked before the call was parked or answered.
    let _ = call.params_mut().set_u32(0, version);
    call.complete(status.raw());
}

impl MappingWaits {
    /// Handles a new wait of a guest that last saw `seen`, the table being at `current`.
    pub fn wait(&mut self, call: Call, seen: u32, current: u32) {
        if call.is_restored() {
            // Re-submitted after a restore: the guest must re-read the table.
            let version = if seen == current {
                seen ^ 0x5555_5555
            } else {
                current
            };
            return finish(call, Status::VINF_TRY_AGAIN, version);
        }
        if self.cancel_next.remove(&call.client()) {
            return finish(call, Status::VERR_CANCELLED, current);
        }
        if seen != current {
            return finish(call, Status::VINF_SUCCESS, current);
        }
        if self.parked.len() >= MAX_WAITS {
            return finish(call, Status::VERR_OUT_OF_RESOURCES, current);
        }
        self.parked.push(call);
    }

    /// The table changed: every parked call returns the new version.
    pub fn changed(&mut self, current: u32) {
        for call in std::mem::take(&mut self.parked) {
            finish(call, Status::VINF_SUCCESS, current);
        }
    }

    /// CANCEL_MAPPINGS_CHANGES_WAITS from `client`.
    pub fn cancel_client(&mut self, client: ClientId, current: u32) {
        let (mine, others): (Vec<Call>, Vec<Call>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|call| call.client() == client);
        self.parked = others;
        if mine.is_empty() {
            self.cancel_next.insert(client);
        }
        for call in mine {
            finish(call, Status::VERR_CANCELLED, current);
        }
    }

    /// Lets go of calls the transport cancelled.
    pub fn drop_cancelled(&mut self) {
        let (cancelled, kept): (Vec<Call>, Vec<Call>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(Call::is_cancelled);
        self.parked = kept;
        for call in cancelled {
            call.complete(Status::VERR_CANCELLED.raw());
        }
    }

    /// Forgets a client that disconnected (its calls are already cancelled by the host).
    pub fn drop_client(&mut self, client: ClientId) {
        self.cancel_next.remove(&client);
        let (gone, kept): (Vec<Call>, Vec<Call>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|call| call.client() == client);
        self.parked = kept;
        for call in gone {
            call.complete(Status::VERR_CANCELLED.raw());
        }
    }
}
