//! The service's error type and its translation into VirtualBox status codes.
//!
//! Operations fail with [`FsError`]; only [`FsError::status`] turns one into the `VERR_*` the
//! guest receives. The translation is chosen for what the Linux guest makes of each status
//! (`vbg_status_code_to_errno`): every host `errno` is mapped deliberately to a status that
//! round-trips to the same (or the nearest) errno, never to one the guest would report as
//! `EPROTO`.

use std::io;

use vmmdev_protocol::status::Status;

use crate::path::PathError;
use crate::string::StringError;

/// Why a shared-folders operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// A host system call failed.
    #[error("{op} failed")]
    Io {
        /// What the service was doing.
        op: &'static str,
        /// The host error.
        #[source]
        source: io::Error,
    },
    /// Path resolution tried to leave the share (the kernel refused it with `EXDEV`).
    #[error("the path leads outside the share")]
    OutsideShare,
    /// A malformed call parameter (wrong kind, size or value).
    #[error("invalid parameter: {0}")]
    InvalidParameter(&'static str),
    /// The call has the wrong number of parameters (functions that say so, like VirtualBox).
    #[error("wrong parameter count")]
    WrongParameterCount,
    /// A parameter has the wrong kind (functions that say so, like VirtualBox).
    #[error("wrong parameter type")]
    WrongParameterType,
    /// Unknown bits in a flags parameter.
    #[error("invalid flags {0:#x}")]
    InvalidFlags(u32),
    /// A malformed `SHFLSTRING`.
    #[error("malformed string")]
    String(#[from] StringError),
    /// A guest path the host cannot use.
    #[error("invalid path")]
    Path(#[from] PathError),
    /// A root ID that names no mapping.
    #[error("root {0} is not a mapping")]
    UnknownRoot(u32),
    /// The mapping exists but its host directory is gone or was removed by the host.
    #[error("the share is not available")]
    ShareUnavailable,
    /// No share with the requested name.
    #[error("no share with that name")]
    ShareNotFound,
    /// The client has not mapped this root.
    #[error("root {0} is not mapped by this client")]
    NotMapped(u32),
    /// The share is already mapped with a different case-sensitivity setting.
    #[error("the share is mapped with a different case sensitivity")]
    IncompatibleCaseSensitivity,
    /// The client mapped one root too many times.
    #[error("too many maps of one root")]
    TooManyMaps,
    /// A path delimiter other than `/` or `\`, or a different one than the client's first.
    #[error("invalid or inconsistent path delimiter {0:#x}")]
    Delimiter(u32),
    /// The share is read-only.
    #[error("the share is read-only")]
    ReadOnly,
    /// The share's symlink policy does not allow creating links.
    #[error("symlink creation is disabled for this share")]
    SymlinkCreationDisabled,
    /// The symlink target leaves the share, which the share's policy forbids.
    #[error("the symlink target leaves the share")]
    SymlinkTargetOutside,
    /// UTF-16 clients cannot create symlinks (as with VirtualBox).
    #[error("symlinks need a UTF-8 client")]
    SymlinkNeedsUtf8,
    /// A handle that is unknown, of the wrong kind, of another root or without the access.
    #[error("invalid handle")]
    InvalidHandle,
    /// The client has reached its handle limit.
    #[error("too many open handles")]
    TooManyHandles,
    /// The share root itself cannot be removed or renamed.
    #[error("the share root cannot be changed")]
    ShareRoot,
    /// The object is neither a regular file nor a directory (FIFOs and device nodes are never
    /// opened: they could block the service or have side effects on the host).
    #[error("unsupported object type")]
    UnsupportedObject,
    /// REMOVE with the SYMLINK flag of something that is not a symlink.
    #[error("not a symlink")]
    NotSymlink,
    /// The source of a file rename is a directory.
    #[error("is a directory")]
    IsDirectory,
    /// The source of a directory rename is not a directory.
    #[error("not a directory")]
    NotDirectory,
    /// An output buffer is too small for the result.
    #[error("output buffer too small")]
    BufferOverflow,
    /// A value the service does not implement (e.g. Windows error style).
    #[error("not supported: {0}")]
    NotSupported(&'static str),
    /// Too many mapping-change waits are pending.
    #[error("too many pending mapping-change waits")]
    TooManyWaits,
    /// The guest cancelled the call while the service worked on it.
    #[error("the call was cancelled")]
    Cancelled,
}

impl FsError {
    /// Wraps a host error of the operation `op`.
    pub(crate) fn io(op: &'static str) -> impl FnOnce(io::Error) -> FsError {
        move |source| FsError::Io { op, source }
    }

    /// The host `errno` behind this error, if it is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            FsError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// The VirtualBox status the guest receives for this error.
    pub fn status(&self) -> i32 {
        let status = match self {
            FsError::Io { source, .. } => return errno_status(source),
            FsError::OutsideShare => Status::VERR_ACCESS_DENIED,
            FsError::InvalidParameter(_) | FsError::Delimiter(_) => Status::VERR_INVALID_PARAMETER,
            FsError::WrongParameterCount => Status::VERR_WRONG_PARAMETER_COUNT,
            FsError::WrongParameterType => Status::VERR_WRONG_PARAMETER_TYPE,
            FsError::InvalidFlags(_) => Status::VERR_INVALID_FLAGS,
            FsError::String(_) => Status::VERR_INVALID_PARAMETER,
            FsError::Path(error) => return error.status(),
            FsError::UnknownRoot(_) => Status::VERR_INVALID_PARAMETER,
            FsError::ShareUnavailable => Status::VERR_ACCESS_DENIED,
            FsError::ShareNotFound => Status::VERR_FILE_NOT_FOUND,
            FsError::NotMapped(_) => Status::VERR_INVALID_HANDLE,
            FsError::IncompatibleCaseSensitivity => Status::VERR_INCOMPATIBLE_CONFIG,
            FsError::TooManyMaps => Status::VERR_TOO_MANY_OPENS,
            FsError::ReadOnly | FsError::SymlinkCreationDisabled => Status::VERR_WRITE_PROTECT,
            FsError::SymlinkTargetOutside => Status::VERR_ACCESS_DENIED,
            FsError::SymlinkNeedsUtf8 => Status::VERR_NOT_IMPLEMENTED,
            FsError::InvalidHandle => Status::VERR_INVALID_HANDLE,
            FsError::TooManyHandles => Status::VERR_TOO_MANY_OPEN_FILES,
            FsError::ShareRoot | FsError::UnsupportedObject => Status::VERR_ACCESS_DENIED,
            // EINVAL, what the host's own readlink/unlink semantics would give.
            FsError::NotSymlink => Status::VERR_INVALID_PARAMETER,
            FsError::IsDirectory => Status::VERR_IS_A_DIRECTORY,
            FsError::NotDirectory => Status::VERR_NOT_A_DIRECTORY,
            FsError::BufferOverflow => Status::VERR_BUFFER_OVERFLOW,
            FsError::NotSupported(_) => Status::VERR_NOT_SUPPORTED,
            FsError::TooManyWaits => Status::VERR_OUT_OF_RESOURCES,
            FsError::Cancelled => Status::VERR_CANCELLED,
        };
        status.raw()
    }
}

/// The status for a host error: each `errno` the file-system calls can produce maps to the
/// status whose Linux errno is the same (or, for the few without one, the nearest).
pub fn errno_status(error: &io::Error) -> i32 {
    let status = match error.raw_os_error() {
        Some(libc::ENOENT) => Status::VERR_FILE_NOT_FOUND,
        Some(libc::ENOTDIR) => Status::VERR_NOT_A_DIRECTORY,
        Some(libc::EACCES | libc::EPERM) => Status::VERR_ACCESS_DENIED,
        Some(libc::EEXIST) => Status::VERR_ALREADY_EXISTS,
        Some(libc::ENOTEMPTY) => Status::VERR_DIR_NOT_EMPTY,
        Some(libc::EISDIR) => Status::VERR_IS_A_DIRECTORY,
        Some(libc::EROFS) => Status::VERR_WRITE_PROTECT,
        Some(libc::ENOSPC | libc::EDQUOT) => Status::VERR_DISK_FULL,
        Some(libc::ENAMETOOLONG) => Status::VERR_FILENAME_TOO_LONG,
        Some(libc::EXDEV) => Status::VERR_NOT_SAME_DEVICE,
        Some(libc::EMFILE | libc::ENFILE) => Status::VERR_TOO_MANY_OPEN_FILES,
        Some(libc::ELOOP) => Status::VERR_TOO_MANY_SYMLINKS,
        Some(libc::EFBIG) => Status::VERR_FILE_TOO_BIG,
        Some(libc::EBUSY) => Status::VERR_RESOURCE_BUSY,
        Some(libc::ETXTBSY) => Status::VERR_SHARING_VIOLATION,
        Some(libc::EBADF) => Status::VERR_INVALID_HANDLE,
        Some(libc::EINVAL) => Status::VERR_INVALID_PARAMETER,
        Some(libc::ENOMEM) => Status::VERR_NO_MEMORY,
        Some(libc::EAGAIN) => Status::VERR_TRY_AGAIN,
        Some(libc::ENOSYS | libc::EOPNOTSUPP) => Status::VERR_NOT_SUPPORTED,
        Some(libc::EILSEQ) => Status::VERR_NO_TRANSLATION,
        Some(libc::EINTR) => Status::VERR_INTERRUPTED,
        Some(libc::ETIMEDOUT) => Status::VERR_TIMEOUT,
        Some(libc::E2BIG) => Status::VERR_TOO_MUCH_DATA,
        Some(libc::ENOLCK) => Status::VERR_FILE_LOCK_FAILED,
        Some(libc::ESPIPE) => Status::VERR_SEEK_ON_DEVICE,
        Some(libc::EPIPE) => Status::VERR_BROKEN_PIPE,
        Some(libc::EDEADLK) => Status::VERR_DEADLOCK,
        Some(libc::EFAULT) => Status::VERR_INVALID_POINTER,
        Some(libc::ENOMEDIUM) => Status::VERR_MEDIA_NOT_PRESENT,
        Some(libc::EMEDIUMTYPE) => Status::VERR_MEDIA_NOT_RECOGNIZED,
        Some(libc::ENODATA) => Status::VERR_NO_DATA,
        // EIO, ESTALE, EOVERFLOW, EMLINK and everything else: an I/O failure (EIO in Linux).
        _ => Status::VERR_DEV_IO_ERROR,
    };
    status.raw()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The errno Linux's `vbg_status_code_to_errno` produces for a status (the subset the
    /// service answers with); `EPROTO` for anything it does not list.
    fn linux_errno(status: i32) -> i32 {
        match Status(status) {
            Status::VERR_ACCESS_DENIED => libc::EPERM,
            Status::VERR_FILE_NOT_FOUND | Status::VERR_INVALID_NAME => libc::ENOENT,
            Status::VERR_INTERRUPTED => libc::EINTR,
            Status::VERR_DEV_IO_ERROR => libc::EIO,
            Status::VERR_TOO_MUCH_DATA => libc::E2BIG,
            Status::VERR_INVALID_HANDLE => libc::EBADF,
            Status::VERR_TRY_AGAIN => libc::EAGAIN,
            Status::VERR_NO_MEMORY => libc::ENOMEM,
            Status::VERR_INVALID_POINTER => libc::EFAULT,
            Status::VERR_RESOURCE_BUSY => libc::EBUSY,
            Status::VERR_ALREADY_EXISTS => libc::EEXIST,
            Status::VERR_NOT_SAME_DEVICE => libc::EXDEV,
            Status::VERR_NOT_A_DIRECTORY | Status::VERR_PATH_NOT_FOUND => libc::ENOTDIR,
            Status::VERR_IS_A_DIRECTORY => libc::EISDIR,
            Status::VERR_INVALID_PARAMETER => libc::EINVAL,
            Status::VERR_TOO_MANY_OPEN_FILES => libc::ENFILE,
            Status::VERR_SHARING_VIOLATION => libc::ETXTBSY,
            Status::VERR_FILE_TOO_BIG => libc::EFBIG,
            Status::VERR_DISK_FULL => libc::ENOSPC,
            Status::VERR_SEEK_ON_DEVICE => libc::ESPIPE,
            Status::VERR_WRITE_PROTECT => libc::EROFS,
            Status::VERR_BROKEN_PIPE => libc::EPIPE,
            Status::VERR_DEADLOCK => libc::EDEADLK,
            Status::VERR_FILENAME_TOO_LONG => libc::ENAMETOOLONG,
            Status::VERR_FILE_LOCK_FAILED => libc::ENOLCK,
            Status::VERR_NOT_IMPLEMENTED | Status::VERR_NOT_SUPPORTED => libc::ENOSYS,
            Status::VERR_DIR_NOT_EMPTY => libc::ENOTEMPTY,
            Status::VERR_TOO_MANY_SYMLINKS => libc::ELOOP,
            Status::VERR_NO_MORE_FILES | Status::VERR_NO_DATA => libc::ENODATA,
            Status::VERR_NO_TRANSLATION => libc::EILSEQ,
            Status::VERR_TIMEOUT => libc::ETIMEDOUT,
            Status::VERR_MEDIA_NOT_PRESENT => libc::ENOMEDIUM,
            Status::VERR_MEDIA_NOT_RECOGNIZED => libc::EMEDIUMTYPE,
            _ => libc::EPROTO,
        }
    }

    #[test]
    fn every_host_errno_reaches_the_guest_as_the_same_errno() {
        let same = [
            libc::ENOENT,
            libc::ENOTDIR,
            libc::EEXIST,
            libc::ENOTEMPTY,
            libc::EISDIR,
            libc::EROFS,
            libc::ENOSPC,
            libc::ENAMETOOLONG,
            libc::EXDEV,
            libc::ELOOP,
            libc::EFBIG,
            libc::EBUSY,
            libc::ETXTBSY,
            libc::EBADF,
            libc::EINVAL,
            libc::ENOMEM,
            libc::EAGAIN,
            libc::ENOSYS,
            libc::EILSEQ,
            libc::EINTR,
            libc::ETIMEDOUT,
            libc::E2BIG,
            libc::ENOLCK,
            libc::ESPIPE,
            libc::EPIPE,
            libc::EDEADLK,
            libc::EFAULT,
            libc::EIO,
            libc::ENODATA,
        ];
        for errno in same {
            let status = errno_status(&io::Error::from_raw_os_error(errno));
            assert_eq!(
                linux_errno(status),
                errno,
                "errno {errno} became status {status}"
            );
        }
    }

    #[test]
    fn permission_errors_become_eperm_never_eproto() {
        for errno in [libc::EACCES, libc::EPERM] {
            let status = errno_status(&io::Error::from_raw_os_error(errno));
            assert_eq!(linux_errno(status), libc::EPERM);
        }
    }

    #[test]
    fn unusual_host_errors_become_eio_never_eproto() {
        for errno in [
            libc::ESTALE,
            libc::EOVERFLOW,
            libc::EMLINK,
            libc::ENXIO,
            4095,
        ] {
            let status = errno_status(&io::Error::from_raw_os_error(errno));
            assert_eq!(linux_errno(status), libc::EIO, "errno {errno}");
        }
    }

    #[test]
    fn quota_and_descriptor_exhaustion_map_to_their_nearest_errno() {
        let quota = errno_status(&io::Error::from_raw_os_error(libc::EDQUOT));
        assert_eq!(linux_errno(quota), libc::ENOSPC);
        let fds = errno_status(&io::Error::from_raw_os_error(libc::EMFILE));
        assert_eq!(linux_errno(fds), libc::ENFILE);
    }

    #[test]
    fn escape_attempts_and_policy_refusals_are_permission_errors() {
        assert_eq!(linux_errno(FsError::OutsideShare.status()), libc::EPERM);
        assert_eq!(
            linux_errno(FsError::SymlinkTargetOutside.status()),
            libc::EPERM
        );
        assert_eq!(linux_errno(FsError::ShareRoot.status()), libc::EPERM);
        assert_eq!(linux_errno(FsError::ReadOnly.status()), libc::EROFS);
        assert_eq!(
            linux_errno(FsError::SymlinkCreationDisabled.status()),
            libc::EROFS
        );
    }
}
