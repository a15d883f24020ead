//! The VMMDev PCI device model (80EE:CAFE), embeddable in any rust-vmm monitor.

pub mod backdoor_log;
mod device;
pub mod events;
pub mod guest_state;
mod handlers;
mod hgcm;
pub mod pci;
pub mod ram;
mod ratelimit;
mod request;
mod snapshot;
pub mod translate;

pub use device::{
    DeviceError, HOST_FEATURES, HostVersion, PointerState, RequestRecord, VmmDev, VmmDevBuilder,
    VmmDevConfig,
};
pub use events::InterruptLine;
pub use hgcm::pending::PendingLimits;
pub use snapshot::{RestoreError, SNAPSHOT_VERSION, SaveError};
pub use translate::GuestVirtualTranslator;
