//! The VMMDev PCI device model (80EE:CAFE), embeddable in any rust-vmm monitor.
//!
//! VMMDev is VirtualBox's guest-communication device: the in-tree Linux `vboxguest` driver
//! binds to it and, through it, talks HGCM to host services (shared folders, guest
//! properties, clipboard). This crate implements the device independently of KVM: a
//! configuration space ([`pci`]), the 4 MiB VMMDev RAM behind BAR1 ([`ram`]), the request
//! and fast-acknowledge ports of BAR0, the backdoor log port 0x504 ([`backdoor_log`]), the
//! event and interrupt state machine ([`events`]), every request the Linux driver sends, and
//! HGCM on top of the `vmmdev-hgcm` framework. The same code is served in-process by a KVM
//! monitor and over vfio-user; only the transport differs.
//!
//! # Embedding
//!
//! The embedder provides guest memory (a `GuestMemoryAtomic<GuestMemoryMmap>`, so a vfio-user
//! server can swap maps on DMA map/unmap), the HGCM framework, and the INTA# line as an
//! [`InterruptLine`]. It routes port I/O and configuration accesses to the device through the
//! `vm-device` traits and maps [`VmmDev::ram`] as plain guest memory at the BAR1 address.
//!
//! ```
//! use std::sync::Arc;
//!
//! use vm_device::DevicePio;
//! use vm_device::bus::PioAddress;
//! use vm_memory::{GuestAddress, GuestMemoryAtomic, GuestMemoryMmap};
//! use vmmdev_device::pci::{COMMAND_IO_SPACE, COMMAND_MEMORY_SPACE};
//! use vmmdev_device::{InterruptLine, VmmDev};
//! use vmmdev_hgcm::{Hgcm, HgcmConfig};
//!
//! /// The monitor's level-triggered GSI (with KVM: `KVM_IRQ_LINE`, or an irqfd with resample).
//! struct Gsi(u32);
//!
//! impl InterruptLine for Gsi {
//!     fn set_level(&self, asserted: bool) {
//!         // vm_fd.set_irq_line(self.0, asserted)
//!         let _ = (self.0, asserted);
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ram = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 64 << 20)])?;
//! let hgcm = Hgcm::new(HgcmConfig::default());
//! let device = VmmDev::builder(GuestMemoryAtomic::new(ram), hgcm, Arc::new(Gsi(16))).build()?;
//!
//! // Place the BARs like firmware; a guest that moves them is reported by pci_config_write.
//! device.with_pci_config(|pci| {
//!     pci.set_bar_address(0, 0xD000);
//!     pci.set_bar_address(1, 0xE000_0000);
//!     pci.set_command(COMMAND_IO_SPACE | COMMAND_MEMORY_SPACE);
//!     pci.set_interrupt_line(16);
//! });
//! // Map the VMMDev RAM at 0xE000_0000 (a KVM memory slot, or the vfio-user `mmap_fd`).
//! let _bar1_fd = device.ram().file();
//!
//! // vCPU exits: ports 0xD000..0xD020 and 0x504, PCI configuration cycles.
//! device.pio_write(PioAddress(0x504), 0, b"h"); // backdoor log byte
//! let mut vendor = [0u8; 2];
//! device.pci_config_read(0, &mut vendor);
//! assert_eq!(u16::from_le_bytes(vendor), 0x80EE);
//! # Ok(())
//! # }
//! ```
//!
//! # Concurrency
//!
//! [`VmmDev`] is a cheap `Clone + Send + Sync` handle; every method takes `&self`. vCPU
//! threads call the port and configuration methods concurrently (the Linux ISR acknowledges on
//! one CPU while another submits HGCM calls); HGCM services complete calls from their own
//! threads. A request written to the request port is processed completely inside that call:
//! outputs and `rc` are in guest memory when it returns.
//!
//! # Lifecycle
//!
//! * [`VmmDev::reset`] on guest reset: pending HGCM requests are dropped without touching
//!   guest memory, the framework's clients are reset, RAM, gate, filters and events are
//!   re-initialised and the line is lowered.
//! * [`VmmDev::pause`] / [`VmmDev::save`] / [`VmmDev::resume`] and [`VmmDev::restore`]: the
//!   device's own versioned snapshot, including the HGCM requests the guest waits for, which
//!   are re-parsed from guest memory and resubmitted as restored.
//! * [`VmmDev::subscribe`] delivers what the guest reports about itself (additions version,
//!   facilities, capabilities, mouse, user, balloon) as it changes.
//!
//! # Hostile guests
//!
//! Guest memory is treated as hostile input: each request is copied out once (at most 1 MiB)
//! and parsed from the copy; every offset, count and size is bounded; requests, parameter
//! counts, page lists, buffer bytes per call and host memory per VM are limited
//! ([`PendingLimits`]); failures become VirtualBox statuses with a rate-limited log line.
//! Nothing a guest writes can make the device panic, hang, allocate without bound or touch
//! memory outside guest RAM.

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
