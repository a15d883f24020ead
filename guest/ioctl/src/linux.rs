//! The real transport: `ioctl(2)` on the Linux vboxguest character devices.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::transport::{Errno, GuestTransport};

/// The two device nodes the vboxguest driver registers.
///
/// Both accept the same ioctls. Sessions on [`Node::User`] are marked as coming from the user device
/// in every request they cause and may not pass through the "trusted" VMMDev request types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Node {
    /// `/dev/vboxguest`, meant for the guest's system services.
    Guest,
    /// `/dev/vboxuser`, meant for unprivileged user programs.
    User,
}

impl Node {
    /// The node's path.
    pub fn path(self) -> &'static Path {
        match self {
            Self::Guest => Path::new("/dev/vboxguest"),
            Self::User => Path::new("/dev/vboxuser"),
        }
    }
}

/// One session with the vboxguest driver: an open `/dev/vboxguest` or `/dev/vboxuser`.
///
/// Closing it (dropping) makes the driver release everything the session held: its event filter
/// bits, its guest capabilities, and its HGCM clients (which are disconnected).
#[derive(Debug)]
pub struct LinuxTransport {
    file: File,
    path: PathBuf,
}

impl LinuxTransport {
    /// Opens the device node at `path` for reading and writing.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => Ok(Self { file, path }),
            Err(err) => {
                let errno = Errno(err.raw_os_error().unwrap_or(libc::EIO));
                Err(Error::from_open_errno(path, errno))
            }
        }
    }

    /// The path the session was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl GuestTransport for LinuxTransport {
    unsafe fn ioctl(&self, request: u32, buffer: &mut [u8]) -> std::result::Result<(), Errno> {
        // SAFETY: the descriptor is open for the lifetime of `self`. The driver accesses at most
        // `max(size_in, size_out)` bytes of `buffer`, which the trait contract keeps within
        // `buffer.len()`, and any user addresses embedded in the buffer are valid per this
        // function's own safety contract.
        let ret = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                libc::Ioctl::from(request),
                buffer.as_mut_ptr(),
            )
        };
        if ret == 0 {
            Ok(())
        } else {
            let err = std::io::Error::last_os_error();
            Err(Errno(err.raw_os_error().unwrap_or(libc::EIO)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_the_driver_device_paths() {
        assert_eq!(Node::Guest.path(), Path::new("/dev/vboxguest"));
        assert_eq!(Node::User.path(), Path::new("/dev/vboxuser"));
    }

    #[test]
    fn missing_node_means_driver_not_loaded() {
        let err = LinuxTransport::open("/dev/vboxguest-does-not-exist").unwrap_err();
        assert!(
            matches!(err, Error::DriverNotLoaded { ref path } if path == Path::new("/dev/vboxguest-does-not-exist")),
            "{err:?}"
        );
        assert!(err.to_string().contains("vboxguest driver not loaded"));
    }

    #[test]
    fn ioctl_on_a_non_vboxguest_file_reports_the_errno() {
        let transport = LinuxTransport::open("/dev/null").unwrap();
        let mut buffer = [0u8; 24];
        // SAFETY: the buffer carries no addresses.
        let err = unsafe { transport.ioctl(0xC018_560B, &mut buffer) }.unwrap_err();
        assert_eq!(err, Errno(libc::ENOTTY));
    }
}
