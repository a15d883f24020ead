//! The `vfio_user` crate's server backend: region accesses, DMA and interrupts routed to the
//! VMMDev device.
//!
//! Region accesses go to the device exactly as a monitor's bus would send them: BAR0 to its port
//! handler (a 32-bit write of a request address at offset 0, the fast-acknowledge read at offset
//! 8), BAR1 to the VMMDev RAM, region 7 to the configuration space. DMA messages maintain the
//! [`DmaMemory`]; SET_IRQS configures the [`Intx`] line; a device reset resets the device.
//!
//! Every refusal is logged and its errno stored in a [`LastError`] cell: the crate turns backend
//! errors into error replies without an errno, and the relay puts the errno back.

use std::fs::File;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use vfio_user::{DmaMapFlags, DmaUnmapFlags, ServerBackend};
use vm_device::bus::{MmioAddress, PioAddress};
use vm_device::{DeviceMmio, DevicePio};
use vmmdev_device::VmmDev;

use crate::dma::{DmaError, DmaMemory};
use crate::intx::{Intx, IrqError};
use crate::layout::{REGION_BAR0, REGION_BAR1, REGION_CONFIG, region_size};

/// The port base BAR0 accesses are handed to the device with. The client, not the device, knows
/// where the guest placed the BAR; the device only uses the base to tell BAR0 from the backdoor
/// log port, and 0 can never be that port.
const BAR0_BASE: PioAddress = PioAddress(0);

/// Why a region access was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegionError {
    /// The region does not exist or has size 0.
    #[error("region {0} cannot be accessed")]
    NoSuchRegion(u32),
    /// The access does not lie inside the region.
    #[error("access of {len} bytes at {offset:#x} lies outside region {region} ({size} bytes)")]
    OutOfRange {
        /// Region index.
        region: u32,
        /// Offset of the access.
        offset: u64,
        /// Length of the access.
        len: usize,
        /// Size of the region.
        size: u64,
    },
}

/// Any refusal of the backend.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// A region access was refused.
    #[error(transparent)]
    Region(#[from] RegionError),
    /// A DMA map or unmap was refused.
    #[error(transparent)]
    Dma(#[from] DmaError),
    /// An interrupt configuration was refused.
    #[error(transparent)]
    Irq(#[from] IrqError),
}

impl BackendError {
    /// The errno reported to the client.
    pub fn errno(&self) -> i32 {
        match self {
            BackendError::Region(_) => libc::EINVAL,
            BackendError::Dma(error) => error.errno(),
            BackendError::Irq(error) => error.errno(),
        }
    }
}

/// The errno of the backend's most recent refusal, for the relay to report.
#[derive(Debug, Default)]
pub struct LastError(AtomicI32);

impl LastError {
    /// Forgets the previous refusal.
    pub fn clear(&self) {
        self.0.store(0, Ordering::Relaxed);
    }

    /// The errno of the refusal since the last [`LastError::clear`], or 0.
    pub fn take(&self) -> i32 {
        self.0.swap(0, Ordering::Relaxed)
    }

    fn set(&self, errno: i32) {
        self.0.store(errno, Ordering::Relaxed);
    }
}

/// Routes the crate's callbacks to the device.
#[derive(Debug)]
pub struct DeviceBackend {
    device: VmmDev,
    dma: Arc<DmaMemory>,
    intx: Arc<Intx>,
    last_error: Arc<LastError>,
}

impl DeviceBackend {
    /// A backend serving `device`, whose guest memory `dma` maintains and whose line is `intx`.
    pub fn new(
        device: VmmDev,
        dma: Arc<DmaMemory>,
        intx: Arc<Intx>,
        last_error: Arc<LastError>,
    ) -> Self {
        DeviceBackend {
            device,
            dma,
            intx,
            last_error,
        }
    }

    /// Logs a refusal, records its errno and converts it for the crate.
    fn refuse(&self, what: &str, error: BackendError) -> io::Error {
        let errno = error.errno();
        log::warn!("vfio-user {what} refused: {error}");
        self.last_error.set(errno);
        io::Error::from_raw_os_error(errno)
    }
}

/// Checks that `len` bytes at `offset` lie inside `region`; returns the offset.
fn checked_offset(region: u32, offset: u64, len: usize) -> Result<u64, RegionError> {
    let size = region_size(region);
    if size == 0 {
        return Err(RegionError::NoSuchRegion(region));
    }
    let inside = u64::try_from(len)
        .ok()
        .and_then(|len| offset.checked_add(len))
        .is_some_and(|end| end <= size);
    if inside {
        Ok(offset)
    } else {
        Err(RegionError::OutOfRange {
            region,
            offset,
            len,
            size,
        })
    }
}

impl ServerBackend for DeviceBackend {
    fn region_read(&mut self, region: u32, offset: u64, data: &mut [u8]) -> io::Result<()> {
        let offset = checked_offset(region, offset, data.len())
            .map_err(|e| self.refuse("region read", e.into()))?;
        match region {
            // The offset is below the 32-byte BAR size.
            REGION_BAR0 => self.device.pio_read(BAR0_BASE, offset as u16, data),
            REGION_BAR1 => self.device.mmio_read(MmioAddress(0), offset, data),
            REGION_CONFIG => self.device.pci_config_read(offset, data),
            _ => return Err(self.refuse("region read", RegionError::NoSuchRegion(region).into())),
        }
        Ok(())
    }

    fn region_write(&mut self, region: u32, offset: u64, data: &[u8]) -> io::Result<()> {
        let offset = checked_offset(region, offset, data.len())
            .map_err(|e| self.refuse("region write", e.into()))?;
        match region {
            REGION_BAR0 => self.device.pio_write(BAR0_BASE, offset as u16, data),
            REGION_BAR1 => self.device.mmio_write(MmioAddress(0), offset, data),
            REGION_CONFIG => {
                // The client places the BARs itself; the changes only matter to a monitor that
                // routes them.
                for change in self.device.pci_config_write(offset, data) {
                    log::debug!(
                        "BAR{} decode: {:?} -> {:?}",
                        change.index,
                        change.old,
                        change.new
                    );
                }
            }
            _ => {
                return Err(self.refuse("region write", RegionError::NoSuchRegion(region).into()));
            }
        }
        Ok(())
    }

    fn dma_map(
        &mut self,
        flags: DmaMapFlags,
        offset: u64,
        address: u64,
        size: u64,
        fd: Option<File>,
    ) -> io::Result<()> {
        let has_fd = fd.is_some();
        match self.dma.map(flags, offset, address, size, fd) {
            Ok(true) => {
                log::debug!("DMA map {address:#x}+{size:#x} (file offset {offset:#x})");
                Ok(())
            }
            Ok(false) => {
                log::debug!(
                    "DMA map {address:#x}+{size:#x} recorded, not accessible (fd: {has_fd}, flags {:#x})",
                    flags.bits()
                );
                Ok(())
            }
            Err(error) => Err(self.refuse("DMA map", error.into())),
        }
    }

    fn dma_unmap(&mut self, flags: DmaUnmapFlags, address: u64, size: u64) -> io::Result<()> {
        match self.dma.unmap(flags, address, size) {
            Ok(count) => {
                log::debug!("DMA unmap {address:#x}+{size:#x}: {count} mapping(s) removed");
                Ok(())
            }
            Err(error) => Err(self.refuse("DMA unmap", error.into())),
        }
    }

    fn reset(&mut self) -> io::Result<()> {
        log::info!("device reset requested by the client");
        self.device.reset();
        Ok(())
    }

    fn set_irqs(
        &mut self,
        index: u32,
        flags: u32,
        start: u32,
        count: u32,
        fds: Vec<File>,
    ) -> io::Result<()> {
        log::trace!("SET_IRQS index {index} flags {flags:#x} start {start} count {count}");
        self.intx
            .set_irqs(index, flags, start, count, fds)
            .map_err(|error| self.refuse("SET_IRQS", error.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accesses_inside_a_region_are_accepted() {
        assert_eq!(checked_offset(REGION_BAR0, 0, 4).unwrap(), 0);
        assert_eq!(checked_offset(REGION_BAR0, 28, 4).unwrap(), 28);
        assert_eq!(checked_offset(REGION_CONFIG, 0, 256).unwrap(), 0);
    }

    #[test]
    fn accesses_crossing_the_end_or_wrapping_are_refused() {
        for (region, offset, len) in [
            (REGION_BAR0, 29, 4),
            (REGION_BAR1, 4 << 20, 1),
            (REGION_CONFIG, u64::MAX, 2),
        ] {
            assert!(matches!(
                checked_offset(region, offset, len),
                Err(RegionError::OutOfRange { .. })
            ));
        }
    }

    #[test]
    fn absent_regions_are_refused() {
        for region in [2, 6, 8, 9, u32::MAX] {
            assert!(matches!(
                checked_offset(region, 0, 1),
                Err(RegionError::NoSuchRegion(_))
            ));
        }
    }

    #[test]
    fn last_error_is_taken_once() {
        let cell = LastError::default();
        cell.set(libc::EEXIST);
        assert_eq!(cell.take(), libc::EEXIST);
        assert_eq!(cell.take(), 0);
    }
}
