//! An in-process guest that drives the VMMDev device the way the Linux driver does, without
//! KVM.
//!
//! The guest owns a `GuestMemoryMmap` as its RAM, builds requests in it exactly as the Linux
//! `vboxguest` driver does (0xAA-filled pages, requestor 0x1, Call64 with page lists over
//! scattered bounce pages, empty buffers as zero-length LinAddr parameters), writes their
//! addresses to the request port through a [`Transport`], and runs an interrupt thread that
//! behaves like `vbg_core_isr`: it ignores the line while `fHaveEvents` is clear, otherwise
//! acknowledges and wakes HGCM waiters, which check their DONE bit. Timeouts and interruptions
//! cancel with Cancel2 and free the request at once.
//!
//! Tests and benchmarks use it to exercise the device end to end; the transport trait lets the
//! same core grow into a guest driver.
//!
//! ```
//! use vmmdev_guest_inproc::InProcessVm;
//! use vmmdev_hgcm::{Hgcm, HgcmConfig};
//!
//! let vm = InProcessVm::new(Hgcm::new(HgcmConfig::default())).unwrap();
//! let host = vm.guest.probe().unwrap();
//! assert_ne!(host.features & 1, 0, "page lists advertised");
//! assert!(!host.heartbeat, "the device refuses the heartbeat");
//! ```

mod driver;
mod hgcm;
mod irq;
mod memory;
mod transport;
mod vm;

pub use driver::{
    DRIVER_REQUESTOR, Guest, GuestError, HostInfo, LINUX_ADDITIONS_VERSION, LINUX_FIXED_EVENTS,
    new_request,
};
pub use hgcm::{BufferDirection, CallOptions, CallResult, GuestParm, PendingCall};
pub use irq::GuestInterrupt;
pub use memory::{GuestRam, MemoryError, PAGE_SIZE, PageAllocator};
pub use transport::{DeviceTransport, Transport};
pub use vm::{DEFAULT_RAM_SIZE, InProcessVm, REQUEST_PORT_BASE, VMMDEV_RAM_BASE, VmError};
