//! The VMMDev PCI device model (80EE:CAFE), embeddable in any rust-vmm monitor.

pub mod backdoor_log;
pub mod events;
pub mod guest_state;
pub mod pci;
pub mod ram;
mod ratelimit;
