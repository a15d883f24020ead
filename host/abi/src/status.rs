//! Status codes at the plugin boundary.
//!
//! Services report results to the guest as VirtualBox status codes, so the plugin ABI carries them
//! as plain `i32`. The codes themselves are defined once, project-wide, by
//! [`vmmdev_protocol::Status`] (re-exported here); this module adds only what is specific to the
//! framework: which codes a service may report.

pub use vmmdev_protocol::status::Status;

/// Largest magnitude a plausible VirtualBox status code has (`VERR_*` codes end well before this).
const MAX_STATUS_MAGNITUDE: i32 = 99_999;

/// Whether `status` is something a service may legitimately report as a call or connect result.
///
/// Rejects values outside the range VirtualBox status codes occupy and the host-internal
/// informational codes that would confuse a guest (`VINF_HGCM_ASYNC_EXECUTE`, `VINF_HGCM_SAVE_STATE`).
pub fn is_valid_service_status(status: i32) -> bool {
    (-MAX_STATUS_MAGNITUDE..=MAX_STATUS_MAGNITUDE).contains(&status)
        && status != Status::VINF_HGCM_ASYNC_EXECUTE.raw()
        && status != Status::VINF_HGCM_SAVE_STATE.raw()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_statuses_are_valid_service_results() {
        assert!(is_valid_service_status(Status::VINF_SUCCESS.raw()));
        assert!(is_valid_service_status(Status::VERR_WRONG_TYPE.raw()));
        assert!(is_valid_service_status(Status::VERR_BUFFER_OVERFLOW.raw()));
    }

    #[test]
    fn host_internal_and_out_of_range_statuses_are_rejected() {
        assert!(!is_valid_service_status(
            Status::VINF_HGCM_ASYNC_EXECUTE.raw()
        ));
        assert!(!is_valid_service_status(Status::VINF_HGCM_SAVE_STATE.raw()));
        assert!(!is_valid_service_status(i32::MIN));
        assert!(!is_valid_service_status(1_000_000));
    }
}
