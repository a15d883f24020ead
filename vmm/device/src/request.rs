//! Reading a request out of guest memory and writing the answer back.
//!
//! A request is copied out of guest RAM exactly once, into a host buffer bounded by the 1 MiB
//! protocol limit, and every handler parses that copy only: the guest may rewrite its memory
//! while we work without affecting what we decided. The header checks and the write-back rules
//! follow vmmdev.md §3.1: nothing at all is written for a short header or a wrong version, only
//! the header for an oversize or gated request, the whole copy otherwise.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmmdev_protocol::Status;
use vmmdev_protocol::vmmdev::{
    REQUEST_HEADER_VERSION, RequestHeader, RequestType, VMMDEV_MAX_VMMDEVREQ_SIZE,
};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

const REQUEST_HEADER_SIZE: usize = std::mem::size_of::<RequestHeader>();
const MAX_REQUEST_SIZE: usize = VMMDEV_MAX_VMMDEVREQ_SIZE as usize;

/// Why a request could not even be answered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    /// The request (or its header) is not inside guest RAM.
    #[error("request at {gpa:#x} (+{len:#x}) is not inside guest RAM")]
    OutsideGuestMemory {
        /// Request address.
        gpa: u64,
        /// Bytes that had to be read.
        len: u64,
    },
    /// `size` is below the 24-byte header: ignored, nothing written back.
    #[error("request at {gpa:#x} declares size {size}, below the header size")]
    Truncated {
        /// Request address.
        gpa: u64,
        /// Declared size.
        size: u32,
    },
    /// Unknown header version: ignored, nothing written back.
    #[error("request at {gpa:#x} has header version {version:#x}")]
    BadVersion {
        /// Request address.
        gpa: u64,
        /// Version found.
        version: u32,
    },
}

/// A request copied out of guest memory.
#[derive(Debug)]
pub struct RequestCopy {
    gpa: u64,
    bytes: Vec<u8>,
}

/// How a request is answered after its header was read.
#[derive(Debug)]
pub enum Intake {
    /// The request was copied whole; dispatch it.
    Copied(RequestCopy),
    /// The request is refused with `status`; only the header is written back.
    HeaderOnly {
        /// The header to write back (with `rc` set).
        header: RequestHeader,
        /// The request type, for the request log.
        request_type: RequestType,
        /// The refusal.
        status: Status,
    },
}

/// Reads the header at `gpa` and, unless it must be refused, copies the whole request.
/// `gate_open` is whether the additions reported their interface (vmmdev.md §3.1 step 5).
pub fn intake(mem: &GuestMemoryMmap, gpa: u64, gate_open: bool) -> Result<Intake, RequestError> {
    let header: RequestHeader = read_obj(mem, gpa, REQUEST_HEADER_SIZE as u64)?;
    let size = header.size.get();
    if (size as usize) < REQUEST_HEADER_SIZE {
        return Err(RequestError::Truncated { gpa, size });
    }
    if header.version.get() != REQUEST_HEADER_VERSION {
        return Err(RequestError::BadVersion {
            gpa,
            version: header.version.get(),
        });
    }
    let request_type = header.request_type();
    let too_large = size as usize > MAX_REQUEST_SIZE;
    let gated = !gate_open && !request_type.allowed_before_guest_info();
    if too_large || gated {
        let status = Status::VERR_NOT_SUPPORTED;
        let mut header = header;
        header.rc.set(status.raw());
        return Ok(Intake::HeaderOnly {
            header,
            request_type,
            status,
        });
    }
    let mut bytes = vec![0u8; size as usize];
    mem.read_slice(&mut bytes, GuestAddress(gpa)).map_err(|_| {
        RequestError::OutsideGuestMemory {
            gpa,
            len: u64::from(size),
        }
    })?;
    Ok(Intake::Copied(RequestCopy { gpa, bytes }))
}

/// Writes only the header back (oversize or gated requests).
pub fn write_header(mem: &GuestMemoryMmap, gpa: u64, header: &RequestHeader) {
    let _ = mem.write_slice(header.as_bytes(), GuestAddress(gpa));
}

fn read_obj<T: FromBytes>(mem: &GuestMemoryMmap, gpa: u64, len: u64) -> Result<T, RequestError> {
    let mut bytes = vec![0u8; len as usize];
    mem.read_slice(&mut bytes, GuestAddress(gpa))
        .map_err(|_| RequestError::OutsideGuestMemory { gpa, len })?;
    T::read_from_bytes(&bytes).map_err(|_| RequestError::OutsideGuestMemory { gpa, len })
}

impl RequestCopy {
    /// Builds a copy from bytes already read (restore path and tests).
    pub fn from_bytes(gpa: u64, bytes: Vec<u8>) -> Self {
        RequestCopy { gpa, bytes }
    }

    /// Guest-physical address of the request.
    pub fn gpa(&self) -> u64 {
        self.gpa
    }

    /// The request bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Declared size (= the copy's length).
    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    /// The header.
    pub fn header(&self) -> RequestHeader {
        // The copy is at least a header long (checked at intake).
        RequestHeader::read_from_prefix(&self.bytes)
            .map(|(h, _)| h)
            .unwrap_or_else(|_| RequestHeader::new_zeroed())
    }

    /// The request type.
    pub fn request_type(&self) -> RequestType {
        self.header().request_type()
    }

    /// The requestor bits the guest put in the header.
    pub fn requestor(&self) -> u32 {
        self.header().requestor.get()
    }

    /// Sets `rc` in the copy.
    pub fn set_status(&mut self, status: Status) {
        if let Ok((header, _)) = RequestHeader::mut_from_prefix(&mut self.bytes) {
            header.rc.set(status.raw());
        }
    }

    /// Writes only `rc` to guest memory.
    pub fn write_status(&self, mem: &GuestMemoryMmap, status: Status) {
        let rc = std::mem::offset_of!(RequestHeader, rc) as u64;
        let _ = mem.write_obj(status.raw().to_le(), GuestAddress(self.gpa + rc));
    }

    /// Writes the whole copy back to guest memory.
    pub fn write_back(&self, mem: &GuestMemoryMmap) {
        let _ = mem.write_slice(&self.bytes, GuestAddress(self.gpa));
    }

    /// Interprets the copy as `T` if its size is exactly `size_of::<T>()`.
    pub fn exact<T: FromBytes + IntoBytes + zerocopy::KnownLayout + zerocopy::Immutable>(
        &mut self,
    ) -> Option<&mut T> {
        T::mut_from_bytes(&mut self.bytes).ok()
    }

    /// Interprets the first `size_of::<T>()` bytes as `T` (for requests with a minimum size).
    pub fn prefix<T: FromBytes + IntoBytes + zerocopy::KnownLayout + zerocopy::Immutable>(
        &mut self,
    ) -> Option<&mut T> {
        T::mut_from_prefix(&mut self.bytes).ok().map(|(t, _)| t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap()
    }

    fn put_header(mem: &GuestMemoryMmap, gpa: u64, size: u32, request_type: u32) {
        let mut bytes = vec![0xAAu8; size.max(24) as usize];
        bytes[0..4].copy_from_slice(&size.to_le_bytes());
        bytes[4..8].copy_from_slice(&REQUEST_HEADER_VERSION.to_le_bytes());
        bytes[8..12].copy_from_slice(&request_type.to_le_bytes());
        mem.write_slice(&bytes, GuestAddress(gpa)).unwrap();
    }

    #[test]
    fn whole_request_is_copied_once() {
        let mem = memory();
        put_header(&mem, 0x100, 40, 4);
        let Ok(Intake::Copied(copy)) = intake(&mem, 0x100, false) else {
            panic!("expected a copy");
        };
        assert_eq!(copy.size(), 40);
        assert_eq!(copy.request_type(), RequestType::GET_HOST_VERSION);
        mem.write_slice(&[0u8; 40], GuestAddress(0x100)).unwrap();
        assert_eq!(
            copy.bytes()[24],
            0xAA,
            "later guest writes do not reach the copy"
        );
    }

    #[test]
    fn gated_types_are_refused_with_header_only() {
        let mem = memory();
        put_header(&mem, 0x100, 32, 42);
        assert!(matches!(
            intake(&mem, 0x100, false),
            Ok(Intake::HeaderOnly {
                status: Status::VERR_NOT_SUPPORTED,
                ..
            })
        ));
        assert!(matches!(intake(&mem, 0x100, true), Ok(Intake::Copied(_))));
    }

    #[test]
    fn short_and_unversioned_headers_are_errors() {
        let mem = memory();
        put_header(&mem, 0x100, 20, 4);
        assert_eq!(
            intake(&mem, 0x100, true).map(|_| ()),
            Err(RequestError::Truncated {
                gpa: 0x100,
                size: 20
            })
        );
        put_header(&mem, 0x200, 40, 4);
        mem.write_slice(&7u32.to_le_bytes(), GuestAddress(0x204))
            .unwrap();
        assert!(matches!(
            intake(&mem, 0x200, true),
            Err(RequestError::BadVersion { version: 7, .. })
        ));
    }

    #[test]
    fn request_running_off_guest_ram_is_an_error() {
        let mem = memory();
        put_header(&mem, 0xFFE0, 24, 4);
        mem.write_slice(&64u32.to_le_bytes(), GuestAddress(0xFFE0))
            .unwrap();
        assert!(matches!(
            intake(&mem, 0xFFE0, true),
            Err(RequestError::OutsideGuestMemory { len: 64, .. })
        ));
    }
}
