//! Wire formats of the VirtualBox guest-integration stack: the VMMDev PCI device, HGCM, the Linux
//! `/dev/vboxguest` ioctl ABI and the HGCM services (shared folders, guest properties, shared
//! clipboard).
//!
//! This crate is plain data: `#[repr(C)]` structures built only from byte-aligned little-endian
//! fields (`zerocopy::little_endian`), so each one has exactly the layout VirtualBox produces with
//! its 4-byte packing, can be read from or written to any byte buffer without copying or
//! alignment concerns, and is the same on every host. It performs no I/O and is `no_std`; only the
//! shared clipboard's format conversions allocate, behind the `alloc` feature (off by default).
//!
//! Integer fields whose values come from an open set (request types, status codes, parameter
//! types, facility types, ...) are transparent newtypes with named constants, so a value the
//! guest made up is carried, logged and rejected rather than being undefined behaviour.
//!
//! | Module | Content |
//! |---|---|
//! | [`status`] | VirtualBox status codes. |
//! | [`vmmdev`] | PCI identity, BARs and ports, the shared `VMMDevMemory`, the request header, request types and bodies, events, requestor bits. |
//! | [`hgcm`] | HGCM requests, call parameters (raw and decoded), page lists, cancellation. |
//! | [`ioctl`] | The Linux `vboxguest` ioctl numbers and structures. |
//! | [`services`] | Function numbers, limits and structures of the HGCM services. |
//!
//! Reading a request from a byte buffer:
//!
//! ```
//! use vmmdev_protocol::vmmdev::{RequestHeader, RequestType, REQUEST_HEADER_VERSION};
//! use zerocopy::FromBytes;
//!
//! let mut bytes = [0u8; 24];
//! bytes[0..4].copy_from_slice(&24u32.to_le_bytes());
//! bytes[4..8].copy_from_slice(&REQUEST_HEADER_VERSION.to_le_bytes());
//! bytes[8..12].copy_from_slice(&4u32.to_le_bytes());
//! let (header, _body) = RequestHeader::read_from_prefix(&bytes).unwrap();
//! assert_eq!(header.request_type(), RequestType::GET_HOST_VERSION);
//! assert_eq!(header.size.get(), 24);
//! ```
#![cfg_attr(not(test), no_std)]

#[cfg(feature = "alloc")]
extern crate alloc;

#[macro_use]
mod macros;

pub mod hgcm;
pub mod ioctl;
pub mod services;
pub mod status;
pub mod vmmdev;

pub use status::Status;
