//! VirtualBox status codes used by the HGCM framework and its services.
//!
//! Services report results to the guest as VirtualBox status codes (`VINF_*` ≥ 0, `VERR_*` < 0), so
//! the plugin ABI carries them as plain `i32`. Only the codes the framework and the SDK need are
//! defined here, with VirtualBox's exact numbers; everything else stays a typed Rust error until it
//! crosses to the guest. This module is the single place to switch once the protocol crate becomes
//! the project-wide source of these numbers.

/// Success.
pub const VINF_SUCCESS: i32 = 0;
/// The request was accepted and will complete asynchronously (VMMDev header `rc`).
pub const VINF_HGCM_ASYNC_EXECUTE: i32 = 2903;
/// Host-internal: completion reported while state is being saved.
pub const VINF_HGCM_SAVE_STATE: i32 = 2906;
/// Generic failure.
pub const VERR_GENERAL_FAILURE: i32 = -1;
/// A parameter was invalid (wrong type, count or size).
pub const VERR_INVALID_PARAMETER: i32 = -2;
/// Out of memory or over a memory budget.
pub const VERR_NO_MEMORY: i32 = -8;
/// Incompatible interface version.
pub const VERR_VERSION_MISMATCH: i32 = -11;
/// Invalid or unsupported flags.
pub const VERR_INVALID_FLAGS: i32 = -13;
/// The operation is not supported.
pub const VERR_NOT_SUPPORTED: i32 = -37;
/// Access denied.
pub const VERR_ACCESS_DENIED: i32 = -38;
/// The operation was interrupted.
pub const VERR_INTERRUPTED: i32 = -39;
/// The operation timed out.
pub const VERR_TIMEOUT: i32 = -40;
/// A buffer was too small for the result.
pub const VERR_BUFFER_OVERFLOW: i32 = -41;
/// Too much data.
pub const VERR_TOO_MUCH_DATA: i32 = -42;
/// The request was cancelled; returned to a service completing a cancelled call.
pub const VERR_CANCELLED: i32 = -70;
/// Not found.
pub const VERR_NOT_FOUND: i32 = -78;
/// The object is in a state that does not allow the operation.
pub const VERR_INVALID_STATE: i32 = -79;
/// Host-internal: completion of a call that a reset already dropped.
pub const VERR_ALREADY_RESET: i32 = -359;
/// The handle does not name a guest call.
pub const VERR_WRONG_TYPE: i32 = -22409;
/// Connect to a service that is not loaded.
pub const VERR_HGCM_SERVICE_NOT_FOUND: i32 = -2900;
/// Internal error of the HGCM framework (also: the service has failed).
pub const VERR_HGCM_INTERNAL: i32 = -2904;
/// Unknown or stale client id.
pub const VERR_HGCM_INVALID_CLIENT_ID: i32 = -2905;
/// A service with that name is already loaded.
pub const VERR_HGCM_SERVICE_EXISTS: i32 = -2907;
/// The per-category client limit of the service is reached.
pub const VERR_HGCM_TOO_MANY_CLIENTS: i32 = -2908;
/// The per-client pending call limit is reached.
pub const VERR_HGCM_TOO_MANY_CLIENT_CALLS: i32 = -2909;

/// Largest magnitude a plausible VirtualBox status code has (`VERR_*` codes end well before this).
const MAX_STATUS_MAGNITUDE: i32 = 99_999;

/// Whether `status` is something a service may legitimately report as a call or connect result.
///
/// Rejects values outside the range VirtualBox status codes occupy and the host-internal
/// informational codes that would confuse a guest (`VINF_HGCM_ASYNC_EXECUTE`, `VINF_HGCM_SAVE_STATE`).
pub fn is_valid_service_status(status: i32) -> bool {
    (-MAX_STATUS_MAGNITUDE..=MAX_STATUS_MAGNITUDE).contains(&status)
        && status != VINF_HGCM_ASYNC_EXECUTE
        && status != VINF_HGCM_SAVE_STATE
}

/// Whether `status` denotes success (any informational status counts as success, as in VirtualBox).
pub fn is_success(status: i32) -> bool {
    status >= 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_statuses_are_valid_service_results() {
        assert!(is_valid_service_status(VINF_SUCCESS));
        assert!(is_valid_service_status(VERR_WRONG_TYPE));
        assert!(is_valid_service_status(VERR_BUFFER_OVERFLOW));
    }

    #[test]
    fn host_internal_and_out_of_range_statuses_are_rejected() {
        assert!(!is_valid_service_status(VINF_HGCM_ASYNC_EXECUTE));
        assert!(!is_valid_service_status(VINF_HGCM_SAVE_STATE));
        assert!(!is_valid_service_status(i32::MIN));
        assert!(!is_valid_service_status(1_000_000));
    }
}
