//! VirtualBox status codes (`VINF_*`, `VWRN_*`, `VERR_*`).
//!
//! Every status that crosses the guest boundary (the `rc` of a VMMDev request, the `result` of an
//! HGCM request, the `rc` of an ioctl header, a service's call status) is a signed 32-bit IPRT
//! status: zero and positive values are successes (positive ones informational), negative values
//! are errors. [`Status`] carries such a value unchanged, so unknown codes survive a round trip,
//! and names every code the VMMDev, HGCM and service references use, with the numbers of
//! `include/iprt/err.h` / `include/VBox/err.h` (the subset Linux mirrors in
//! `include/uapi/linux/vbox_err.h` is included in full).
//!
//! Host code should use its own error types internally and convert to a [`Status`] only where
//! bytes are written back to the guest.

protocol_codes! {
    /// A VirtualBox status code as carried on the wire.
    pub struct Status(i32);
    /// Success.
    VINF_SUCCESS = 0;
    /// Success status returned for guest property writes while the store is read-only for the guest.
    VINF_PERMISSION_DENIED = 10;
    /// Success status meaning the output was truncated (shared-folder LIST, clipboard DATA_READ).
    VINF_BUFFER_OVERFLOW = 41;
    /// Success status asking the caller to retry (cancelled clipboard peek, restored mapping wait).
    VINF_TRY_AGAIN = 52;
    /// Success status meaning "found something, but not what was asked for" (guest-property notifications).
    VWRN_NOT_FOUND = 78;
    /// Host-internal: the Idle request halts the calling vCPU.
    VINF_EM_HALT = 1112;
    /// Defined by HGCM; not used on the wire.
    VINF_HGCM_CLIENT_REJECTED = 2901;
    /// Written into `rc` of an accepted HGCM request: completion follows asynchronously via the DONE flag.
    VINF_HGCM_ASYNC_EXECUTE = 2903;
    /// Host-internal: a completion reported while services save their state; the request stays pending.
    VINF_HGCM_SAVE_STATE = 2906;
    /// Generic failure; the initial `rc` guests put into every request.
    VERR_GENERAL_FAILURE = -1;
    /// Invalid parameter: bad size, field or HGCM parameter.
    VERR_INVALID_PARAMETER = -2;
    VERR_INVALID_MAGIC = -3;
    /// Invalid or stale handle.
    VERR_INVALID_HANDLE = -4;
    VERR_LOCK_FAILED = -5;
    /// Invalid pointer, e.g. a misaligned NoBounce page address.
    VERR_INVALID_POINTER = -6;
    VERR_IDT_FAILED = -7;
    /// Out of memory or over the HGCM memory budget.
    VERR_NO_MEMORY = -8;
    VERR_ALREADY_LOADED = -9;
    /// Permission denied (guest properties). Linux maps it to `EPROTO`; prefer `VERR_ACCESS_DENIED` for file permissions.
    VERR_PERMISSION_DENIED = -10;
    /// Incompatible interface version.
    VERR_VERSION_MISMATCH = -11;
    /// Unknown request type or function; guests fall back on exactly this code.
    VERR_NOT_IMPLEMENTED = -12;
    /// Invalid flags, e.g. bad HGCM direction flags.
    VERR_INVALID_FLAGS = -13;
    VERR_NOT_EQUAL = -18;
    VERR_NOT_SYMLINK = -19;
    VERR_NO_TMP_MEMORY = -20;
    VERR_INVALID_FMODE = -21;
    VERR_WRONG_ORDER = -22;
    VERR_NO_TLS_FOR_SELF = -23;
    VERR_FAILED_TO_SET_SELF_TLS = -24;
    VERR_NO_CONT_MEMORY = -26;
    VERR_NO_PAGE_MEMORY = -27;
    VERR_THREAD_IS_DEAD = -29;
    VERR_THREAD_NOT_WAITABLE = -30;
    VERR_PAGE_TABLE_NOT_PRESENT = -31;
    /// Operation not valid in this context.
    VERR_INVALID_CONTEXT = -32;
    VERR_TIMER_BUSY = -33;
    VERR_ADDRESS_CONFLICT = -34;
    VERR_UNRESOLVED_ERROR = -35;
    VERR_INVALID_FUNCTION = -36;
    /// Operation not supported (e.g. any request before the guest reported its info).
    VERR_NOT_SUPPORTED = -37;
    /// Access denied; Linux maps it to `EPERM`.
    VERR_ACCESS_DENIED = -38;
    /// Interrupted; also used for superseded waits.
    VERR_INTERRUPTED = -39;
    /// Timed out.
    VERR_TIMEOUT = -40;
    /// Output buffer too small.
    VERR_BUFFER_OVERFLOW = -41;
    /// Too much data for a limit.
    VERR_TOO_MUCH_DATA = -42;
    VERR_MAX_THRDS_REACHED = -43;
    VERR_MAX_PROCS_REACHED = -44;
    VERR_SIGNAL_REFUSED = -45;
    VERR_SIGNAL_PENDING = -46;
    VERR_SIGNAL_INVALID = -47;
    VERR_STATE_CHANGED = -48;
    VERR_INVALID_UUID_FORMAT = -49;
    VERR_PROCESS_NOT_FOUND = -50;
    VERR_PROCESS_RUNNING = -51;
    /// Nothing available now; try again.
    VERR_TRY_AGAIN = -52;
    /// Malformed input string (e.g. guest-property flags).
    VERR_PARSE_ERROR = -53;
    /// Value out of range.
    VERR_OUT_OF_RANGE = -54;
    VERR_NUMBER_TOO_BIG = -55;
    VERR_NO_DIGITS = -56;
    VERR_NEGATIVE_UNSIGNED = -57;
    /// Name not representable in the requested encoding.
    VERR_NO_TRANSLATION = -58;
    /// Operation cancelled; returned to a service completing a cancelled call.
    VERR_CANCELLED = -70;
    /// Not found (e.g. Cancel2 target). Linux maps it to `EPROTO`.
    VERR_NOT_FOUND = -78;
    /// Invalid state.
    VERR_INVALID_STATE = -79;
    /// A table or queue is full.
    VERR_OUT_OF_RESOURCES = -80;
    /// File not found; Linux maps it to `ENOENT`.
    VERR_FILE_NOT_FOUND = -102;
    /// A parent path component is missing; Linux maps it to `ENOTDIR`.
    VERR_PATH_NOT_FOUND = -103;
    /// Invalid file name; Linux maps it to `ENOENT`.
    VERR_INVALID_NAME = -104;
    /// Object already exists.
    VERR_ALREADY_EXISTS = -105;
    /// Too many open files.
    VERR_TOO_MANY_OPEN_FILES = -106;
    VERR_SEEK = -107;
    VERR_NEGATIVE_SEEK = -108;
    VERR_SEEK_ON_DEVICE = -109;
    VERR_EOF = -110;
    VERR_READ_ERROR = -111;
    VERR_WRITE_ERROR = -112;
    /// Write to a read-only object or share.
    VERR_WRITE_PROTECT = -113;
    VERR_SHARING_VIOLATION = -114;
    VERR_FILE_LOCK_FAILED = -115;
    VERR_FILE_LOCK_VIOLATION = -116;
    VERR_CANT_CREATE = -117;
    VERR_CANT_DELETE_DIRECTORY = -118;
    VERR_NOT_SAME_DEVICE = -119;
    VERR_FILENAME_TOO_LONG = -120;
    VERR_MEDIA_NOT_PRESENT = -121;
    VERR_MEDIA_NOT_RECOGNIZED = -122;
    VERR_FILE_NOT_LOCKED = -123;
    VERR_FILE_LOCK_LOST = -124;
    /// Directory not empty.
    VERR_DIR_NOT_EMPTY = -125;
    /// Not a directory.
    VERR_NOT_A_DIRECTORY = -126;
    /// Is a directory.
    VERR_IS_A_DIRECTORY = -127;
    VERR_FILE_TOO_BIG = -128;
    VERR_RESOURCE_BUSY = -138;
    VERR_DISK_FULL = -152;
    VERR_TOO_MANY_SYMLINKS = -156;
    /// End of a directory listing.
    VERR_NO_MORE_FILES = -201;
    /// Internal error; the initial `rc` of VirtualBox helpers and of the Linux ISR acknowledge.
    VERR_INTERNAL_ERROR = -225;
    VERR_INTERNAL_ERROR_2 = -226;
    VERR_INTERNAL_ERROR_3 = -227;
    VERR_INTERNAL_ERROR_4 = -228;
    VERR_DEV_IO_ERROR = -250;
    VERR_IO_BAD_LENGTH = -255;
    VERR_BROKEN_PIPE = -301;
    VERR_NO_DATA = -304;
    /// A mapping was opened too many times by one client.
    VERR_TOO_MANY_OPENS = -356;
    /// Host-internal: a completion arrived during an HGCM reset.
    VERR_ALREADY_RESET = -359;
    /// Semaphore destroyed; Linux treats it like `VERR_NOT_FOUND` on cancel.
    VERR_SEM_DESTROYED = -363;
    VERR_DEADLOCK = -365;
    VERR_NET_IO_ERROR = -400;
    VERR_NET_OUT_OF_RESOURCES = -401;
    VERR_NET_HOST_NOT_FOUND = -402;
    VERR_NET_PATH_NOT_FOUND = -403;
    VERR_NET_PRINT_ERROR = -404;
    VERR_NET_NO_NETWORK = -405;
    VERR_NET_NOT_UNIQUE_NAME = -406;
    VERR_NET_IN_PROGRESS = -436;
    VERR_NET_ALREADY_IN_PROGRESS = -437;
    VERR_NET_NOT_SOCKET = -438;
    VERR_NET_DEST_ADDRESS_REQUIRED = -439;
    VERR_NET_MSG_SIZE = -440;
    VERR_NET_PROTOCOL_TYPE = -441;
    VERR_NET_PROTOCOL_NOT_AVAILABLE = -442;
    VERR_NET_PROTOCOL_NOT_SUPPORTED = -443;
    VERR_NET_SOCKET_TYPE_NOT_SUPPORTED = -444;
    VERR_NET_OPERATION_NOT_SUPPORTED = -445;
    VERR_NET_PROTOCOL_FAMILY_NOT_SUPPORTED = -446;
    VERR_NET_ADDRESS_FAMILY_NOT_SUPPORTED = -447;
    VERR_NET_ADDRESS_IN_USE = -448;
    VERR_NET_ADDRESS_NOT_AVAILABLE = -449;
    VERR_NET_DOWN = -450;
    VERR_NET_UNREACHABLE = -451;
    VERR_NET_CONNECTION_RESET = -452;
    VERR_NET_CONNECTION_ABORTED = -453;
    VERR_NET_CONNECTION_RESET_BY_PEER = -454;
    VERR_NET_NO_BUFFER_SPACE = -455;
    VERR_NET_ALREADY_CONNECTED = -456;
    VERR_NET_NOT_CONNECTED = -457;
    VERR_NET_SHUTDOWN = -458;
    VERR_NET_TOO_MANY_REFERENCES = -459;
    VERR_NET_CONNECTION_TIMED_OUT = -460;
    VERR_NET_CONNECTION_REFUSED = -461;
    VERR_NET_HOST_DOWN = -464;
    VERR_NET_HOST_UNREACHABLE = -465;
    VERR_NET_PROTOCOL_ERROR = -466;
    VERR_NET_INCOMPLETE_TX_PACKET = -467;
    VERR_BAD_EXE_FORMAT = -608;
    /// The VM was restored since the caller last looked (clipboard peek).
    VERR_VM_RESTORED = -1025;
    /// HGCM connect to an unknown service.
    VERR_HGCM_SERVICE_NOT_FOUND = -2900;
    /// Defined by HGCM; not used by the device.
    VERR_HGCM_INVALID_CMD_ADDRESS = -2902;
    /// Defined by HGCM; not used by the device.
    VERR_HGCM_INTERNAL = -2904;
    /// Unknown or stale HGCM client ID.
    VERR_HGCM_INVALID_CLIENT_ID = -2905;
    /// Host-internal: a service with that name is already loaded.
    VERR_HGCM_SERVICE_EXISTS = -2907;
    /// Per-category HGCM client limit reached.
    VERR_HGCM_TOO_MANY_CLIENTS = -2908;
    /// Per-client pending-call limit reached.
    VERR_HGCM_TOO_MANY_CLIENT_CALLS = -2909;
    /// Host-internal: CPU hot-plug requested while the guest does not monitor it.
    VERR_VMMDEV_CPU_HOTPLUG_NOT_MONITORED_BY_GUEST = -4700;
    /// Shared clipboard: event IDs exhausted.
    VERR_SHCLPB_MAX_EVENTS_REACHED = -7106;
    /// Mismatch (e.g. clipboard MSG_GET for another message).
    VERR_MISMATCH = -22408;
    /// Wrong handle or object type.
    VERR_WRONG_TYPE = -22409;
    /// Wrong number of HGCM parameters.
    VERR_WRONG_PARAMETER_COUNT = -22415;
    /// Wrong HGCM parameter type.
    VERR_WRONG_PARAMETER_TYPE = -22416;
    /// Incompatible configuration (e.g. conflicting case sensitivity of a mapping).
    VERR_INCOMPATIBLE_CONFIG = -22420;
}

impl Status {
    /// Returns true for `VINF_SUCCESS` and every informational (positive) status.
    pub const fn is_success(self) -> bool {
        self.0 >= 0
    }

    /// Returns true for every error (negative) status.
    pub const fn is_failure(self) -> bool {
        self.0 < 0
    }

    /// Returns true for informational statuses (positive values): successes that carry a remark.
    pub const fn is_informational(self) -> bool {
        self.0 > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;

    #[test]
    fn success_and_informational_codes_count_as_success() {
        assert!(Status::VINF_SUCCESS.is_success());
        assert!(Status::VINF_HGCM_ASYNC_EXECUTE.is_success());
        assert!(Status::VWRN_NOT_FOUND.is_success());
        assert!(!Status::VINF_BUFFER_OVERFLOW.is_failure());
    }

    #[test]
    fn negative_codes_count_as_failure() {
        assert!(Status::VERR_GENERAL_FAILURE.is_failure());
        assert!(Status::VERR_HGCM_TOO_MANY_CLIENT_CALLS.is_failure());
        assert!(!Status::VERR_NO_MORE_FILES.is_success());
    }

    #[test]
    fn only_positive_codes_are_informational() {
        assert!(!Status::VINF_SUCCESS.is_informational());
        assert!(Status::VINF_TRY_AGAIN.is_informational());
        assert!(!Status::VERR_TRY_AGAIN.is_informational());
    }

    #[test]
    fn codes_have_the_reference_numbers() {
        let expected = [
            (Status::VINF_SUCCESS, 0),
            (Status::VINF_HGCM_ASYNC_EXECUTE, 2903),
            (Status::VINF_HGCM_CLIENT_REJECTED, 2901),
            (Status::VINF_HGCM_SAVE_STATE, 2906),
            (Status::VINF_EM_HALT, 1112),
            (Status::VINF_BUFFER_OVERFLOW, 41),
            (Status::VINF_TRY_AGAIN, 52),
            (Status::VINF_PERMISSION_DENIED, 10),
            (Status::VWRN_NOT_FOUND, 78),
            (Status::VERR_GENERAL_FAILURE, -1),
            (Status::VERR_INVALID_PARAMETER, -2),
            (Status::VERR_INVALID_HANDLE, -4),
            (Status::VERR_INVALID_POINTER, -6),
            (Status::VERR_NO_MEMORY, -8),
            (Status::VERR_PERMISSION_DENIED, -10),
            (Status::VERR_VERSION_MISMATCH, -11),
            (Status::VERR_NOT_IMPLEMENTED, -12),
            (Status::VERR_INVALID_FLAGS, -13),
            (Status::VERR_NOT_SYMLINK, -19),
            (Status::VERR_INVALID_CONTEXT, -32),
            (Status::VERR_INVALID_FUNCTION, -36),
            (Status::VERR_NOT_SUPPORTED, -37),
            (Status::VERR_ACCESS_DENIED, -38),
            (Status::VERR_INTERRUPTED, -39),
            (Status::VERR_TIMEOUT, -40),
            (Status::VERR_BUFFER_OVERFLOW, -41),
            (Status::VERR_TOO_MUCH_DATA, -42),
            (Status::VERR_PROCESS_NOT_FOUND, -50),
            (Status::VERR_TRY_AGAIN, -52),
            (Status::VERR_PARSE_ERROR, -53),
            (Status::VERR_OUT_OF_RANGE, -54),
            (Status::VERR_NO_TRANSLATION, -58),
            (Status::VERR_CANCELLED, -70),
            (Status::VERR_NOT_FOUND, -78),
            (Status::VERR_INVALID_STATE, -79),
            (Status::VERR_OUT_OF_RESOURCES, -80),
            (Status::VERR_FILE_NOT_FOUND, -102),
            (Status::VERR_PATH_NOT_FOUND, -103),
            (Status::VERR_INVALID_NAME, -104),
            (Status::VERR_ALREADY_EXISTS, -105),
            (Status::VERR_TOO_MANY_OPEN_FILES, -106),
            (Status::VERR_NEGATIVE_SEEK, -108),
            (Status::VERR_SEEK_ON_DEVICE, -109),
            (Status::VERR_EOF, -110),
            (Status::VERR_READ_ERROR, -111),
            (Status::VERR_WRITE_ERROR, -112),
            (Status::VERR_WRITE_PROTECT, -113),
            (Status::VERR_SHARING_VIOLATION, -114),
            (Status::VERR_FILE_LOCK_FAILED, -115),
            (Status::VERR_CANT_CREATE, -117),
            (Status::VERR_NOT_SAME_DEVICE, -119),
            (Status::VERR_FILENAME_TOO_LONG, -120),
            (Status::VERR_MEDIA_NOT_PRESENT, -121),
            (Status::VERR_MEDIA_NOT_RECOGNIZED, -122),
            (Status::VERR_DIR_NOT_EMPTY, -125),
            (Status::VERR_NOT_A_DIRECTORY, -126),
            (Status::VERR_IS_A_DIRECTORY, -127),
            (Status::VERR_FILE_TOO_BIG, -128),
            (Status::VERR_RESOURCE_BUSY, -138),
            (Status::VERR_DISK_FULL, -152),
            (Status::VERR_TOO_MANY_SYMLINKS, -156),
            (Status::VERR_NO_MORE_FILES, -201),
            (Status::VERR_INTERNAL_ERROR, -225),
            (Status::VERR_DEV_IO_ERROR, -250),
            (Status::VERR_BROKEN_PIPE, -301),
            (Status::VERR_NO_DATA, -304),
            (Status::VERR_TOO_MANY_OPENS, -356),
            (Status::VERR_ALREADY_RESET, -359),
            (Status::VERR_SEM_DESTROYED, -363),
            (Status::VERR_DEADLOCK, -365),
            (Status::VERR_BAD_EXE_FORMAT, -608),
            (Status::VERR_VM_RESTORED, -1025),
            (Status::VERR_HGCM_SERVICE_NOT_FOUND, -2900),
            (Status::VERR_HGCM_INVALID_CMD_ADDRESS, -2902),
            (Status::VERR_HGCM_INTERNAL, -2904),
            (Status::VERR_HGCM_INVALID_CLIENT_ID, -2905),
            (Status::VERR_HGCM_SERVICE_EXISTS, -2907),
            (Status::VERR_HGCM_TOO_MANY_CLIENTS, -2908),
            (Status::VERR_HGCM_TOO_MANY_CLIENT_CALLS, -2909),
            (
                Status::VERR_VMMDEV_CPU_HOTPLUG_NOT_MONITORED_BY_GUEST,
                -4700,
            ),
            (Status::VERR_SHCLPB_MAX_EVENTS_REACHED, -7106),
            (Status::VERR_MISMATCH, -22408),
            (Status::VERR_WRONG_TYPE, -22409),
            (Status::VERR_WRONG_PARAMETER_COUNT, -22415),
            (Status::VERR_WRONG_PARAMETER_TYPE, -22416),
            (Status::VERR_INCOMPATIBLE_CONFIG, -22420),
        ];
        for (status, value) in expected {
            assert_eq!(status.raw(), value, "{status:?}");
        }
    }

    #[test]
    fn every_named_code_reports_its_own_name() {
        for status in Status::KNOWN {
            let name = status.name().expect("named constant has a name");
            assert!(
                name.starts_with("VINF_") || name.starts_with("VWRN_") || name.starts_with("VERR_")
            );
            assert_eq!(Status::from(status.raw()), *status);
        }
    }

    #[test]
    fn display_shows_name_and_number() {
        assert_eq!(
            format!("{}", Status::VERR_FILE_NOT_FOUND),
            "VERR_FILE_NOT_FOUND (-102)"
        );
    }

    #[test]
    fn unknown_code_survives_and_displays_its_number() {
        let status = Status::from(-31337);
        assert_eq!(status.name(), None);
        assert_eq!(i32::from(status), -31337);
        assert_eq!(format!("{status}"), "unknown Status -31337");
    }
}
