//! What can go wrong when talking to the vboxguest driver, as one typed error.
//!
//! Every error names the [`Operation`] that failed. The ioctl errno values the vboxguest driver
//! produces for a reason (a missing node, a signal, a timeout, a refused argument, a denied request)
//! get their own variants; anything else keeps its raw errno. A VirtualBox status code appears only in
//! [`Error::Host`], where the driver or the host reported one in the ioctl header.

use std::fmt;
use std::path::PathBuf;

use vmmdev_protocol::status::Status;
use vmmdev_protocol::vmmdev::RequestType;

use crate::transport::Errno;

/// The operation an [`Error`] belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Opening a device node.
    Open {
        /// The node that was opened.
        path: PathBuf,
    },
    /// `VBG_IOCTL_DRIVER_VERSION_INFO`.
    DriverVersionInfo,
    /// `VBG_IOCTL_VMMDEV_REQUEST` / `VBG_IOCTL_VMMDEV_REQUEST_BIG` with a VMMDev request type.
    VmmdevRequest {
        /// The VMMDev request type that was passed through.
        request_type: RequestType,
    },
    /// `VBG_IOCTL_HGCM_CONNECT`.
    HgcmConnect,
    /// `VBG_IOCTL_HGCM_DISCONNECT`.
    HgcmDisconnect,
    /// `VBG_IOCTL_HGCM_CALL_64` of a service function.
    HgcmCall {
        /// The service function number.
        function: u32,
    },
    /// `VBG_IOCTL_LOG`.
    Log,
    /// `VBG_IOCTL_WAIT_FOR_EVENTS`.
    WaitForEvents,
    /// `VBG_IOCTL_INTERRUPT_ALL_WAIT_FOR_EVENTS`.
    InterruptAllWaitForEvents,
    /// `VBG_IOCTL_CHANGE_FILTER_MASK`.
    ChangeFilterMask,
    /// `VBG_IOCTL_ACQUIRE_GUEST_CAPABILITIES`.
    AcquireGuestCapabilities,
    /// `VBG_IOCTL_CHANGE_GUEST_CAPABILITIES`.
    ChangeGuestCapabilities,
    /// `VBG_IOCTL_CHECK_BALLOON`.
    CheckBalloon,
    /// `VBG_IOCTL_WRITE_CORE_DUMP`.
    WriteCoreDump,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open { path } => write!(f, "open {}", path.display()),
            Self::DriverVersionInfo => f.write_str("DRIVER_VERSION_INFO"),
            Self::VmmdevRequest { request_type } => {
                write!(f, "VMMDEV_REQUEST of {request_type}")
            }
            Self::HgcmConnect => f.write_str("HGCM_CONNECT"),
            Self::HgcmDisconnect => f.write_str("HGCM_DISCONNECT"),
            Self::HgcmCall { function } => write!(f, "HGCM_CALL (function {function})"),
            Self::Log => f.write_str("LOG"),
            Self::WaitForEvents => f.write_str("WAIT_FOR_EVENTS"),
            Self::InterruptAllWaitForEvents => f.write_str("INTERRUPT_ALL_WAIT_FOR_EVENTS"),
            Self::ChangeFilterMask => f.write_str("CHANGE_FILTER_MASK"),
            Self::AcquireGuestCapabilities => f.write_str("ACQUIRE_GUEST_CAPABILITIES"),
            Self::ChangeGuestCapabilities => f.write_str("CHANGE_GUEST_CAPABILITIES"),
            Self::CheckBalloon => f.write_str("CHECK_BALLOON"),
            Self::WriteCoreDump => f.write_str("WRITE_CORE_DUMP"),
        }
    }
}

/// A failed vboxguest operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The device node does not exist (or has no driver behind it).
    #[error("vboxguest driver not loaded: {} is missing", path.display())]
    DriverNotLoaded {
        /// The node that was opened.
        path: PathBuf,
    },
    /// The caller may not open the node or issue the request (`EACCES`/`EPERM`).
    #[error("{op}: permission denied")]
    PermissionDenied {
        /// What was denied.
        op: Operation,
    },
    /// A signal, or `INTERRUPT_ALL_WAIT_FOR_EVENTS` on the session, ended the wait (`EINTR`).
    #[error("{op}: interrupted")]
    Interrupted {
        /// What was interrupted.
        op: Operation,
    },
    /// The operation's timeout expired (`ETIMEDOUT`); a pending HGCM call has been cancelled.
    #[error("{op}: timed out")]
    TimedOut {
        /// What timed out.
        op: Operation,
    },
    /// The ioctl itself succeeded but the host (or the driver on its behalf) reported a failure.
    #[error("{op}: host status {status}")]
    Host {
        /// What failed.
        op: Operation,
        /// The VirtualBox status code from the ioctl header.
        status: Status,
    },
    /// An argument was refused, by this library before issuing the ioctl or by the driver (`EINVAL`).
    #[error("{op}: bad argument: {reason}")]
    BadArgument {
        /// What was refused.
        op: Operation,
        /// Why.
        reason: String,
    },
    /// The driver does not speak version 1 of the ioctl interface.
    #[error(
        "driver interface version mismatch: session version {session_version:#010x}, driver version {driver_version:#010x}"
    )]
    VersionMismatch {
        /// The session version the driver granted (`0xffffffff` when it refused).
        session_version: u32,
        /// The driver's own interface version.
        driver_version: u32,
    },
    /// The driver answered with output that contradicts its ABI.
    #[error("{op}: unexpected reply from the driver: {reason}")]
    UnexpectedReply {
        /// The operation whose reply was malformed.
        op: Operation,
        /// What was wrong with it.
        reason: String,
    },
    /// Any other operating-system error.
    #[error("{op}: {errno}")]
    Os {
        /// What failed.
        op: Operation,
        /// The raw error number.
        errno: Errno,
    },
}

impl Error {
    /// Classifies the errno of a failed open of `path`.
    pub(crate) fn from_open_errno(path: PathBuf, errno: Errno) -> Self {
        match errno.raw() {
            libc::ENOENT | libc::ENXIO | libc::ENODEV => Self::DriverNotLoaded { path },
            _ => Self::from_errno(Operation::Open { path }, errno),
        }
    }

    /// Classifies the errno of a failed operation.
    pub(crate) fn from_errno(op: Operation, errno: Errno) -> Self {
        match errno.raw() {
            libc::EACCES | libc::EPERM => Self::PermissionDenied { op },
            libc::EINTR => Self::Interrupted { op },
            libc::ETIMEDOUT => Self::TimedOut { op },
            libc::EINVAL => Self::BadArgument {
                op,
                reason: "rejected by the driver (EINVAL)".to_owned(),
            },
            _ => Self::Os { op, errno },
        }
    }

    /// Builds a [`Error::BadArgument`] for an argument this library refuses itself.
    pub(crate) fn bad_argument(op: Operation, reason: impl Into<String>) -> Self {
        Self::BadArgument {
            op,
            reason: reason.into(),
        }
    }

    /// The operation that failed, if the error belongs to one (every variant except
    /// [`Error::DriverNotLoaded`] and [`Error::VersionMismatch`]).
    pub fn operation(&self) -> Option<&Operation> {
        match self {
            Self::DriverNotLoaded { .. } | Self::VersionMismatch { .. } => None,
            Self::PermissionDenied { op }
            | Self::Interrupted { op }
            | Self::TimedOut { op }
            | Self::Host { op, .. }
            | Self::BadArgument { op, .. }
            | Self::UnexpectedReply { op, .. }
            | Self::Os { op, .. } => Some(op),
        }
    }

    /// The VirtualBox status code, for [`Error::Host`].
    pub fn host_status(&self) -> Option<Status> {
        match self {
            Self::Host { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_node_on_open_means_driver_not_loaded() {
        let err = Error::from_open_errno(PathBuf::from("/dev/vboxuser"), Errno(libc::ENOENT));
        assert_eq!(
            err.to_string(),
            "vboxguest driver not loaded: /dev/vboxuser is missing"
        );
    }

    #[test]
    fn access_refused_on_open_is_permission_denied() {
        let err = Error::from_open_errno(PathBuf::from("/dev/vboxguest"), Errno(libc::EACCES));
        assert_eq!(err.to_string(), "open /dev/vboxguest: permission denied");
    }

    #[test]
    fn driver_einval_is_a_bad_argument() {
        let err = Error::from_errno(Operation::ChangeFilterMask, Errno(libc::EINVAL));
        assert!(matches!(err, Error::BadArgument { .. }), "{err:?}");
    }

    #[test]
    fn other_errno_values_are_kept() {
        let err = Error::from_errno(Operation::HgcmConnect, Errno(libc::EMFILE));
        assert!(
            matches!(
                err,
                Error::Os {
                    errno: Errno(libc::EMFILE),
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn host_error_names_the_operation_and_the_status() {
        let err = Error::Host {
            op: Operation::HgcmConnect,
            status: Status::VERR_HGCM_SERVICE_NOT_FOUND,
        };
        assert_eq!(
            err.to_string(),
            "HGCM_CONNECT: host status VERR_HGCM_SERVICE_NOT_FOUND (-2900)"
        );
    }
}
