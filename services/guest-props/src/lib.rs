//! The guest properties HGCM service (`VBoxGuestPropSvc`), wire-compatible with VirtualBox's.
//!
//! A per-VM key/value store that the guest's tools (VBoxService, VBoxControl, PAM and greeter
//! modules) and the host share: the guest publishes its OS, network and user information, the
//! host publishes its version and configuration, and either side can wait for changes. The crate
//! `vmmdev-svc-guest-props-plugin` (`services/guest-props/plugin`) exports it as a plugin
//! (`libvmmdev_guest_props.so`); this library's [`guest_props_entry`] can be
//! registered with `Hgcm::register_builtin(vmmdev_svc_guest_props::guest_props_entry, config)`.
//!
//! # Guest functions
//!
//! | No. | Name | Parameters | Result |
//! |---|---|---|---|
//! | 1 | GET_PROP | name, out buffer, out u64 timestamp, out u32 size | `value\0flags\0`; `VERR_BUFFER_OVERFLOW` with the size needed, `VERR_NOT_FOUND` |
//! | 2, 3 | SET_PROP, SET_PROP_VALUE | name, value, optional flags string | create or replace; without flags the flags are cleared |
//! | 4 | DEL_PROP | name | delete; a missing property is a success |
//! | 5 | ENUM_PROPS | patterns, out buffer, out u32 size | `name\0value\0timestamp\0flags\0`… then four NULs |
//! | 6 | GET_NOTIFICATION | patterns, in/out u64 timestamp, out buffer, out u32 size | the next matching change `name\0value\0flags\0D\0`, or waits for one |
//!
//! Statuses, limits, flag rules and the notification protocol are VirtualBox's (see
//! `shared/reference/guest-properties.md`): `VERR_INVALID_PARAMETER` for malformed parameters
//! and names, `VERR_TOO_MUCH_DATA` for oversized values and patterns and the 257th property,
//! `VERR_PARSE_ERROR` for bad flags, `VERR_PERMISSION_DENIED` for read-only properties and the
//! host-reserved namespaces, `VINF_PERMISSION_DENIED` for guest writes while the global
//! RDONLYGUEST flag is set, `VWRN_NOT_FOUND` for a notification after an unknown timestamp,
//! `VERR_INTERRUPTED` for superseded, cancelled and disconnected waits,
//! `VERR_OUT_OF_RESOURCES` beyond 16 waits per client, `VERR_NOT_IMPLEMENTED` for other
//! functions.
//!
//! Timeouts of GET_NOTIFICATION are the guest driver's, as in VirtualBox: the driver cancels the
//! call when its timeout expires, and the service lets go of the wait at once. Deviations from
//! VirtualBox, all in the guest's favour: a notification that overflowed the guest's buffer is
//! served again to the retry even when the retry passes timestamp 0; the event queue is part of
//! the saved state, so restored waits neither miss nor repeat events; timestamps are strictly
//! increasing even across wall-clock steps.
//!
//! # Host functions (`Hgcm::host_call`)
//!
//! | No. | Name | Parameters |
//! |---|---|---|
//! | 1 | SET_PROPS | bulk load, no rules, no count limit, no events: four buffers — names and values as `a\0b\0…`, timestamps as little-endian u64s, flags strings as `f\0g\0…` — of equal count. All flags are checked first. |
//! | 2 | GET_PROP | as the guest function |
//! | 3, 4 | SET_PROP, SET_PROP_VALUE | as the guest functions, with the host's rules (RDONLYHOST refuses; reserved names gain RDONLYGUEST) |
//! | 5 | DEL_PROP | as the guest function, with the host's rules |
//! | 6 | ENUM_PROPS | as the guest function |
//! | 7 | SET_GLOBAL_FLAGS | u32 flags; only RDONLYGUEST (4) has an effect |
//!
//! Function 8 (GET_DBGF_INFO) was removed in VirtualBox 7.0 and, like every other number,
//! answers `VERR_NOT_SUPPORTED`.
//!
//! # Host information, lifecycle, persistence, notifications
//!
//! At start the service publishes `/VirtualBox/HostInfo/VBoxVer`, `VBoxVerExt`, `VBoxRev` and
//! `GUI/LanguageID` (values from the configuration, see [`config`]) and creates
//! `/VirtualBox/VMInfo/ResetCounter`, `ResumeCounter`, `/VirtualBox/HostGuest/SysprepExec` and
//! `SysprepArgs`, all `TRANSIENT, RDONLYGUEST`. [`VmEvent`](vmmdev_hgcm_sdk::VmEvent)s:
//! `PowerOn` publishes again (creating what is missing); `Resume` re-publishes the versions and
//! counts `ResumeCounter`; `Reset` ends every wait, deletes the TRANSRESET properties that are
//! not RDONLYHOST (with events) and counts `ResetCounter`; `PowerOff` ends every wait and drops
//! every TRANSIENT and TRANSRESET property (without events: the VM is gone).
//!
//! With `store=<path>` the non-transient properties live in a file, written through on every
//! change before the change becomes visible ([`persist`]). Every change is also sent to the
//! embedder as a notification ([`host_notify`]).

mod clock;
pub mod config;
mod events;
pub mod host_notify;
mod pattern;
pub mod persist;
pub mod policy;
mod service;
mod state;
mod store;
#[cfg(test)]
mod test_support;
mod waiters;
mod wire;

pub use config::{Config, ConfigError, HostInfo, Limits};
pub use host_notify::{NOTIFY_PROPERTY_CHANGED, PropertyChange};
pub use service::GuestProps;
pub use vmmdev_protocol::services::guest_props::{
    Function, HostFunction, PropertyFlags, SERVICE_NAME,
};

vmmdev_hgcm_sdk::service_entry!(
    pub fn guest_props_entry,
    GuestProps,
    "VBoxGuestPropSvc",
    GuestProps::new
);
