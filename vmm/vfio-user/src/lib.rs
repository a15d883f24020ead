//! The VMMDev device served over vfio-user, for QEMU and Cloud Hypervisor.
//!
//! A vfio-user client (QEMU's `vfio-user-pci`, Cloud Hypervisor's `--user-device`) runs the
//! guest and forwards the device's PCI accesses over a Unix socket; this crate answers them with
//! the [`vmmdev_device::VmmDev`] model, so an unmodified guest's `vboxguest` driver talks to the
//! project's device and HGCM services without any monitor of our own.
//!
//! One message's path, hop by hop:
//!
//! 1. the relay (inside [`VfioUserServer`]) reads the message from the client, bounded, checks
//!    it completely, counts it ([`MessageCounts`]) and forwards it to the `vfio_user` crate's
//!    server over a private socket pair (the crate trusts its client; the relay does not);
//! 2. the `vfio_user` crate decodes it and calls the backend;
//! 3. the backend routes it: region accesses to the device (BAR0 ports, BAR1 RAM, configuration
//!    space, per [`layout`]), DMA maps to the [`dma::DmaMemory`] that publishes guest memory to
//!    the device, SET_IRQS to the [`intx::Intx`] line, resets to the device.
//!
//! The device raises its interrupt through [`intx::Intx`], which signals the client's eventfd
//! with vfio's automask/unmask semantics. BAR1 is exported with the device's memfd, so the guest
//! reads the VMMDev RAM (the ISR's `fHaveEvents` byte) without any message.
//!
//! ```no_run
//! use std::path::Path;
//! use vmmdev_hgcm::{Hgcm, HgcmConfig};
//! use vmmdev_vfio_user::VfioUserServer;
//!
//! let hgcm = Hgcm::new(HgcmConfig::default());
//! let server = VfioUserServer::new(Path::new("/run/vmmdev.sock"), hgcm, Default::default())?;
//! server.run()?; // one VM after the other, until a StopHandle stops it
//! # Ok::<(), vmmdev_vfio_user::ServerError>(())
//! ```

mod backend;
pub mod counters;
pub mod dma;
pub mod intx;
pub mod layout;
mod relay;
mod scm;
mod server;
pub mod wire;

pub use counters::MessageCounts;
pub use relay::{MAX_DATA_TRANSFER, RelayError};
pub use server::{ServerError, SessionReport, StopHandle, VfioUserServer, error_chain};
