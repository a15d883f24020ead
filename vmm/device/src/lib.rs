//! The VMMDev PCI device model (80EE:CAFE), embeddable in any rust-vmm monitor.
