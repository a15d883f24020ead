//! Guest-side library for the Linux vboxguest ioctl interface (`/dev/vboxguest`, `/dev/vboxuser`).
//!
//! A guest program opens a [`Device`] (one driver session; the version handshake happens on open)
//! and uses it to log to the host, wait for VMMDev events, manage its event filter and guest
//! capabilities, query the balloon, request a core dump, pass raw VMMDev requests through, and talk
//! to HGCM host services through [`HgcmClient`]s.
//!
//! The library builds every ioctl buffer itself, byte for byte as the driver's uapi header defines
//! it (the layouts come from [`vmmdev_protocol::ioctl`]), and hands it to a [`GuestTransport`].
//! [`LinuxTransport`] issues real `ioctl(2)`s; another transport (an in-process guest, a test
//! double) can serve the same API.
//!
//! ```no_run
//! use std::time::Duration;
//! use vmmdev_guest_ioctl::{CallOptions, Device, Node, Param};
//!
//! # fn main() -> Result<(), vmmdev_guest_ioctl::Error> {
//! let device = Device::open(Node::User)?;
//! device.log("hello from the guest")?;
//!
//! // Function 1 of the project's example "Echo" service copies an input buffer to an output one.
//! let client = device.connect("Echo")?;
//! let mut reply = [0u8; 64];
//! let mut params = [Param::In(b"ping"), Param::out(&mut reply)];
//! client.call(1, &mut params, CallOptions::with_timeout(Duration::from_secs(5)))?;
//! assert_eq!(params[1].returned(), Some(&b"ping"[..]));
//! client.disconnect()?;
//! # Ok(())
//! # }
//! ```
//!
//! Errors are one [`Error`] type: a missing driver, a denied operation, an interrupted or timed-out
//! wait and a host failure status each have their own variant.
//!
//! On top of the HGCM client, [`guest_props`] is a typed client of the guest-properties service
//! (read, write, delete, enumerate, wait for changes), and [`clipboard`] one of the
//! shared-clipboard service (announce, read, answer host requests, wait for host messages).
//! [`capi`] offers the session, HGCM and guest-property operations to C programs: the crate also
//! builds as a shared and a static library, with the header `include/vmmdev_guest.h`.

pub mod capi;
pub mod clipboard;
mod deadline;
mod device;
mod error;
#[cfg(test)]
mod fake;
pub mod guest_props;
mod hgcm;
mod linux;
mod service;
mod transport;

pub use device::{AcquireMode, BalloonInfo, CapabilityState, Device, DriverVersion};
pub use error::{Error, Operation, Result};
pub use hgcm::{CallOptions, HgcmClient, Param};
pub use linux::{LinuxTransport, Node};
pub use transport::{Errno, GuestTransport};
pub use vmmdev_protocol::Status;
pub use vmmdev_protocol::hgcm::ClientId;
pub use vmmdev_protocol::vmmdev::{Events, GuestCapabilities, RequestType};
