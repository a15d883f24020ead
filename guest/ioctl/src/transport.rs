//! The seam between the typed API and whatever executes the ioctls.
//!
//! [`crate::Device`] builds every ioctl argument buffer itself and hands it to a [`GuestTransport`]
//! together with the ioctl number. The Linux implementation ([`crate::LinuxTransport`]) passes both
//! straight to `ioctl(2)` on an open `/dev/vboxguest` or `/dev/vboxuser`; an in-process guest can
//! implement the same trait by interpreting the buffer the way the vboxguest driver does, so one API
//! serves real guests and tests alike.

use std::fmt;

/// An operating-system error number (`errno`) returned by an ioctl.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    /// The raw `errno` value.
    pub fn raw(self) -> i32 {
        self.0
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Prints the system's description followed by "(os error N)".
        write!(f, "{}", std::io::Error::from_raw_os_error(self.0))
    }
}

/// Executes vboxguest ioctls for one session (one open device file).
///
/// A session is shared by all threads using a [`crate::Device`]: one thread may be blocked in an ioctl
/// (waiting for events or for an HGCM call) while another issues the ioctl that interrupts it, so
/// implementations must accept concurrent calls through `&self`.
pub trait GuestTransport: Send + Sync {
    /// Issues the ioctl `request` with `buffer` as its in/out argument, exactly as `ioctl(fd,
    /// request, buffer.as_mut_ptr())` would, and returns `Ok(())` when the driver returned 0.
    ///
    /// `buffer` starts with the 24-byte vboxguest ioctl header whose `size_in`/`size_out` fields never
    /// exceed `buffer.len()`; the driver's output, including the header's `rc`, is written back into
    /// it.
    ///
    /// # Safety
    ///
    /// An HGCM call buffer carries the user-space addresses of its LinAddr parameters, and the driver
    /// reads or writes that memory. The caller must guarantee that every such address points to
    /// memory that is valid for reads (LinAddr and LinAddr-in parameters) or writes (LinAddr and
    /// LinAddr-out parameters) of the parameter's size, and stays so until this call returns. Buffers
    /// of every other ioctl carry no addresses.
    unsafe fn ioctl(&self, request: u32, buffer: &mut [u8]) -> Result<(), Errno>;
}
