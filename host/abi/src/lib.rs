//! The contract between the HGCM framework and its services.
//!
//! * [`ffi`]: the versioned, repr(C) plugin ABI (mirrored by `host/include/vmmdev_hgcm_plugin.h`):
//!   the load entry point, the host API table, the plugin table and the parameter layout.
//! * [`params`]: the Rust form of call parameters ([`Parm`], [`Buffer`]), shared by the framework,
//!   the VMMDev device and the SDK, so there is exactly one definition.
//! * [`gate`]: the per-call access gate that keeps anyone from touching a call's buffers after
//!   the call was cancelled.
//! * [`types`]: client categories and VM events; client ids and requestor bits re-exported from
//!   `vmmdev-protocol`, their single definition.
//! * [`status`]: [`Status`] (re-exported from `vmmdev-protocol`) and which codes a service may
//!   report.
//!
//! Nothing here does I/O or spawns threads; the framework lives in `vmmdev-hgcm`, the safe service
//! API in `vmmdev-hgcm-sdk`.

pub mod ffi;
pub mod gate;
pub mod params;
pub mod status;
pub mod types;

pub use ffi::LoadEntry;
pub use gate::{AccessGate, CallGate};
pub use params::{Buffer, BufferError, Direction, GuestAccess, Parm, ParmError, ParmsExt};
pub use status::Status;
pub use types::{ClientCategory, ClientId, Requestor, RequestorUserClass, VmEvent};
