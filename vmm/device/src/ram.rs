//! The VMMDev RAM behind BAR1: 4 MiB shared between the device and the guest.
//!
//! The memory is a memfd mapped shared into this process. The embedder maps the same file as
//! plain guest memory at the BAR1 address (a KVM memory slot, or the `mmap_fd` of a vfio-user
//! region), so the guest's reads of the `VMMDevMemory` structure (the `fHaveEvents` byte read
//! by every interrupt handler) cost no exit. The device only writes the header fields and the
//! `fHaveEvents` byte; everything else belongs to the guest.
//!
//! The guest can write anything into this memory at any time, so the device never reads
//! anything back from it that it relies on.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use vm_memory::mmap::MmapRegion;
use vm_memory::{Bytes, FileOffset, VolatileMemory};
use vmmdev_protocol::vmmdev::{VMMDEV_MEMORY_OFF_HAVE_EVENTS, VMMDEV_RAM_SIZE, VmmDevMemory};
use zerocopy::IntoBytes;

const HAVE_EVENTS: usize = VMMDEV_MEMORY_OFF_HAVE_EVENTS as usize;

/// Errors creating or accessing the VMMDev RAM.
#[derive(Debug, thiserror::Error)]
pub enum RamError {
    /// memfd_create failed.
    #[error("cannot create the VMMDev RAM memfd")]
    Create(#[source] io::Error),
    /// Sizing the memfd failed.
    #[error("cannot size the VMMDev RAM memfd")]
    Resize(#[source] io::Error),
    /// Mapping the memfd failed.
    #[error("cannot map the VMMDev RAM")]
    Map(#[source] vm_memory::mmap::MmapRegionError),
    /// An access fell outside the 4 MiB.
    #[error("access outside the VMMDev RAM")]
    OutOfRange(#[source] vm_memory::volatile_memory::Error),
}

/// The 4 MiB VMMDev RAM (BAR1).
#[derive(Debug)]
pub struct VmmDevRam {
    file: Arc<File>,
    mapping: MmapRegion<()>,
}

impl VmmDevRam {
    /// Creates the memfd, maps it and writes the initial structure header.
    pub fn new() -> Result<Self, RamError> {
        let name: &CStr = c"vmmdev-ram";
        // SAFETY: `name` is a valid NUL-terminated string and the flags are valid; the call
        // has no memory-safety preconditions beyond that.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(RamError::Create(io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just returned by memfd_create and is owned by nothing else.
        let file = unsafe { File::from_raw_fd(fd) };
        file.set_len(u64::from(VMMDEV_RAM_SIZE))
            .map_err(RamError::Resize)?;
        let file = Arc::new(file);
        let mapping = MmapRegion::from_file(
            FileOffset::from_arc(Arc::clone(&file), 0),
            VMMDEV_RAM_SIZE as usize,
        )
        .map_err(RamError::Map)?;
        let ram = VmmDevRam { file, mapping };
        ram.init()?;
        Ok(ram)
    }

    /// The memfd backing the RAM, for the embedder to map as guest memory.
    pub fn file(&self) -> &Arc<File> {
        &self.file
    }

    /// Size of the mapping in bytes (the BAR1 size).
    pub fn len(&self) -> usize {
        self.mapping.size()
    }

    /// Always false: the RAM has a fixed, non-zero size.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Zeroes the whole RAM and writes `u32Size` and `u32Version` (construction and reset).
    pub fn init(&self) -> Result<(), RamError> {
        self.zero();
        self.mapping
            .as_volatile_slice()
            .write_slice(VmmDevMemory::initial().as_bytes(), 0)
            .map_err(RamError::OutOfRange)
    }

    /// Sets or clears `fHaveEvents`. Setting uses release ordering so that the byte is visible
    /// before the interrupt the caller raises next.
    pub fn set_have_events(&self, pending: bool) {
        let slice = self.mapping.as_volatile_slice();
        // The offset is a constant inside the mapping: the store cannot fail.
        let _ = slice.store(u8::from(pending), HAVE_EVENTS, Ordering::Release);
    }

    /// Reads the `fHaveEvents` byte as the guest sees it.
    pub fn have_events(&self) -> bool {
        let slice = self.mapping.as_volatile_slice();
        slice
            .load::<u8>(HAVE_EVENTS, Ordering::Acquire)
            .is_ok_and(|b| b != 0)
    }

    /// Reads from the RAM at `offset` (for embedders that trap BAR1 instead of mapping it).
    /// Bytes beyond the end read as all-ones.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        data.fill(0xFF);
        let Ok(offset) = usize::try_from(offset) else {
            return;
        };
        let len = self.len().saturating_sub(offset).min(data.len());
        if len > 0 {
            let _ = self
                .mapping
                .as_volatile_slice()
                .read_slice(&mut data[..len], offset);
        }
    }

    /// Writes to the RAM at `offset` (for trapping embedders). Bytes beyond the end are
    /// dropped.
    pub fn write(&self, offset: u64, data: &[u8]) {
        let Ok(offset) = usize::try_from(offset) else {
            return;
        };
        let len = self.len().saturating_sub(offset).min(data.len());
        if len > 0 {
            let _ = self
                .mapping
                .as_volatile_slice()
                .write_slice(&data[..len], offset);
        }
    }

    fn zero(&self) {
        // Punching a hole frees the pages and makes them read as zero without a window where
        // a concurrent guest access could fault (unlike truncating the file).
        let len = libc::off_t::from(VMMDEV_RAM_SIZE);
        // SAFETY: the fd is a valid memfd owned by `self.file`; fallocate does not touch
        // process memory.
        let rc = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                0,
                len,
            )
        };
        if rc != 0 {
            log::debug!(
                "punching the VMMDev RAM failed ({}); zero-filling instead",
                io::Error::last_os_error()
            );
            let zeros = vec![0u8; 64 * 1024];
            let slice = self.mapping.as_volatile_slice();
            let mut offset = 0;
            while offset < self.len() {
                let _ = slice.write_slice(&zeros, offset);
                offset += zeros.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_u32(ram: &VmmDevRam, offset: u64) -> u32 {
        let mut data = [0u8; 4];
        ram.read(offset, &mut data);
        u32::from_le_bytes(data)
    }

    #[test]
    fn new_ram_carries_size_and_version_linux_accepts() {
        let ram = VmmDevRam::new().unwrap();
        assert_eq!(ram.len(), 4 << 20);
        let size = read_u32(&ram, 0);
        assert!((32..=4 << 20).contains(&size));
        assert_eq!(size, 0x003F_FD28);
        assert_eq!(read_u32(&ram, 4), 1);
        assert!(!ram.have_events());
    }

    #[test]
    fn have_events_byte_follows_the_device() {
        let ram = VmmDevRam::new().unwrap();
        ram.set_have_events(true);
        let mut byte = [0];
        ram.read(8, &mut byte);
        assert_eq!(byte[0], 1);
        ram.set_have_events(false);
        ram.read(8, &mut byte);
        assert_eq!(byte[0], 0);
    }

    #[test]
    fn init_wipes_guest_writes() {
        let ram = VmmDevRam::new().unwrap();
        ram.write(0x100, &[0x55; 16]);
        ram.write(0, &[0; 8]);
        ram.set_have_events(true);
        ram.init().unwrap();
        let mut data = [0xEE; 16];
        ram.read(0x100, &mut data);
        assert_eq!(data, [0; 16]);
        assert_eq!(read_u32(&ram, 4), 1);
        assert!(!ram.have_events());
    }

    #[test]
    fn the_memfd_shares_the_same_bytes() {
        use std::os::unix::fs::FileExt;
        let ram = VmmDevRam::new().unwrap();
        ram.set_have_events(true);
        let mut byte = [0];
        ram.file().read_exact_at(&mut byte, 8).unwrap();
        assert_eq!(byte[0], 1);
    }

    #[test]
    fn accesses_past_the_end_are_clipped() {
        let ram = VmmDevRam::new().unwrap();
        let mut data = [0u8; 8];
        ram.read((4 << 20) - 4, &mut data);
        assert_eq!(&data[4..], &[0xFF; 4]);
        ram.read(u64::MAX, &mut data);
        assert_eq!(data, [0xFF; 8]);
        ram.write(u64::MAX - 1, &data);
        ram.write((4 << 20) - 2, &[1, 2, 3, 4]);
    }
}
