//! Call parameters: 32/64-bit values and scatter-gather buffers.
//!
//! This is the one definition of [`Parm`] and [`Buffer`], shared by the framework (which builds
//! them from guest requests), the device (which writes results back) and services (through the
//! SDK). A [`Buffer`] is a view, not a copy: over host-owned bytes, over guest RAM (each segment
//! validated at construction, the mapping kept alive by an `Arc`), or, inside a plugin, over the
//! iovecs the host passed across the ABI. All access goes through volatile copies, because the
//! guest may change its memory at any time; services parse only what [`Buffer::copy_in`] returned.
//!
//! The buffers of a call share the call's [`AccessGate`] (see [`crate::gate`]): every read or
//! write of their memory happens inside an access ([`Buffer::guest_access`]), and once the call
//! is cancelled the gate refuses new accesses with [`BufferError::Cancelled`]. A buffer without a
//! gate (host calls, a request still being built) is always accessible.

use std::ptr::NonNull;
use std::sync::Arc;

use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, VolatileSlice};

use crate::ffi::{DIR_BOTH, DIR_FROM_HOST, DIR_TO_HOST, IoVec};
use crate::gate::AccessGate;

/// Errors of buffer construction and access.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum BufferError {
    /// A guest segment does not lie inside guest RAM.
    #[error("guest range {addr:#x}+{len:#x} is not inside guest RAM")]
    OutsideGuestMemory {
        /// Start of the segment.
        addr: u64,
        /// Length of the segment.
        len: usize,
    },
    /// The buffer would be longer than an HGCM buffer can be (u32 bytes).
    #[error("buffer of {0} bytes exceeds the 4 GiB HGCM limit")]
    TooLong(u64),
    /// An offset past the end of the buffer.
    #[error("offset {offset} is past the end of a {len}-byte buffer")]
    OutOfBounds {
        /// The requested offset.
        offset: usize,
        /// The buffer length.
        len: usize,
    },
    /// A write to a buffer that only carries data to the host.
    #[error("buffer is guest-to-host only and cannot be written")]
    ReadOnly,
    /// `copy_in` of a buffer longer than the caller's bound.
    #[error("buffer of {len} bytes exceeds the copy limit of {max}")]
    TooLarge {
        /// The buffer length.
        len: usize,
        /// The caller's bound.
        max: usize,
    },
    /// A reported length larger than the buffer.
    #[error("reported length {reported} exceeds the buffer length {len}")]
    ReportedTooLong {
        /// The requested reported length.
        reported: usize,
        /// The buffer length.
        len: usize,
    },
    /// The call was cancelled (or its client, the guest or the service went away): its memory
    /// must not be touched any more.
    #[error("the call was cancelled; its buffers may no longer be accessed")]
    Cancelled,
}

/// Which way a buffer's data flows. "To host" means guest → host: the service reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Guest → host only: the service may read but not write.
    ToHost,
    /// Host → guest only: the service fills it.
    FromHost,
    /// Both ways.
    Both,
}

impl Direction {
    /// The ABI code (`DIR_*`).
    pub fn code(self) -> u32 {
        match self {
            Self::ToHost => DIR_TO_HOST,
            Self::FromHost => DIR_FROM_HOST,
            Self::Both => DIR_BOTH,
        }
    }

    /// The direction with the given ABI code.
    pub fn from_code(code: u32) -> Option<Self> {
        match code {
            DIR_TO_HOST => Some(Self::ToHost),
            DIR_FROM_HOST => Some(Self::FromHost),
            DIR_BOTH => Some(Self::Both),
            _ => None,
        }
    }

    /// Whether the service may write into buffers of this direction.
    pub fn host_writes(self) -> bool {
        self != Self::ToHost
    }
}

/// What a buffer's bytes live in.
enum Backing {
    /// Bytes owned by the buffer: a leaked `Box<[u8]>`, reclaimed on drop. Accessed only through
    /// the raw pointer, so volatile writes through `&self` views never alias a Rust reference.
    Host(IoVec),
    /// Guest RAM, split into pieces that each lie in one memory region.
    Guest {
        /// Keeps the mapping alive for as long as the buffer exists.
        _mem: Arc<GuestMemoryMmap>,
        iov: Vec<IoVec>,
    },
    /// Memory owned by someone else (the host, seen from inside a plugin).
    Foreign { iov: *const IoVec, count: usize },
}

/// A scatter-gather view over host or guest memory; see the module documentation.
pub struct Buffer {
    backing: Backing,
    direction: Direction,
    len: u32,
    reported_len: u32,
    /// The gate of the call this buffer belongs to, if any.
    gate: Option<Arc<dyn AccessGate>>,
}

// SAFETY: host and guest backings are plain memory reachable from any thread (the guest mapping is
// kept alive by the Arc); the constructor of a foreign backing promises the same for its iovecs.
unsafe impl Send for Buffer {}
// SAFETY: shared access only reads (through volatile copies) or hands out `VolatileSlice`s, which
// are designed for memory that other threads access concurrently.
unsafe impl Sync for Buffer {}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.backing {
            Backing::Host(_) => "host",
            Backing::Guest { .. } => "guest",
            Backing::Foreign { .. } => "foreign",
        };
        f.debug_struct("Buffer")
            .field("backing", &kind)
            .field("direction", &self.direction)
            .field("len", &self.len)
            .field("reported_len", &self.reported_len)
            .field("gated", &self.gate.is_some())
            .finish()
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if let Backing::Host(iov) = self.backing {
            // SAFETY: `iov` came from `Box::into_raw` of a `[u8]` of exactly `iov.len` bytes in
            // `Buffer::host` and is reclaimed only here, once.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(iov.base, iov.len)) });
        }
    }
}

fn checked_len(len: u64) -> Result<u32, BufferError> {
    u32::try_from(len).map_err(|_| BufferError::TooLong(len))
}

impl Buffer {
    /// A buffer over host-owned bytes (host calls, data embedded in a request).
    ///
    /// # Panics
    /// Never; data longer than 4 GiB is truncated to the HGCM maximum (callers building guest
    /// requests have bounded the size long before).
    pub fn host(data: Vec<u8>, direction: Direction) -> Buffer {
        let mut data = data;
        data.truncate(u32::MAX as usize);
        let len = data.len() as u32;
        let raw = Box::into_raw(data.into_boxed_slice());
        let base = raw.cast::<u8>();
        Buffer {
            backing: Backing::Host(IoVec {
                base,
                len: len as usize,
            }),
            direction,
            len,
            reported_len: len,
            gate: None,
        }
    }

    /// A buffer over guest RAM made of `segments` (guest-physical start, length), in order.
    ///
    /// Every segment must lie inside guest RAM; segments crossing a region boundary are split.
    /// Holding `mem` keeps the mapping alive until the buffer is dropped.
    pub fn guest(
        mem: Arc<GuestMemoryMmap>,
        segments: Vec<(GuestAddress, usize)>,
        direction: Direction,
    ) -> Result<Buffer, BufferError> {
        let mut iov = Vec::with_capacity(segments.len());
        let mut total: u64 = 0;
        for (addr, len) in segments {
            total = total.saturating_add(len as u64);
            checked_len(total)?;
            let outside = BufferError::OutsideGuestMemory { addr: addr.0, len };
            if addr.0.checked_add(len as u64).is_none() {
                return Err(outside);
            }
            let mut covered = 0usize;
            for slice in mem.get_slices(addr, len) {
                let slice = slice.map_err(|_| outside.clone())?;
                covered += slice.len();
                iov.push(IoVec {
                    base: slice.ptr_guard_mut().as_ptr(),
                    len: slice.len(),
                });
            }
            if covered != len {
                return Err(outside);
            }
        }
        let len = checked_len(total)?;
        Ok(Buffer {
            backing: Backing::Guest { _mem: mem, iov },
            direction,
            len,
            reported_len: len,
            gate: None,
        })
    }

    /// A buffer over memory described by `count` iovecs at `iov`, owned by someone else.
    ///
    /// `len` is clamped to the sum of the piece lengths and `reported_len` to `len`.
    ///
    /// # Safety
    /// `iov` must point to `count` readable [`IoVec`]s, and every piece must be valid for volatile
    /// reads and writes, from any thread, for as long as the returned buffer exists. The caller
    /// must make sure the buffer does not outlive that memory (e.g. by never handing it out by
    /// value).
    pub unsafe fn from_raw_parts(
        iov: *const IoVec,
        count: usize,
        direction: Direction,
        len: u32,
        reported_len: u32,
    ) -> Buffer {
        let mut buffer = Buffer {
            backing: Backing::Foreign { iov, count },
            direction,
            len: 0,
            reported_len: 0,
            gate: None,
        };
        let available: u64 = buffer.iovecs().iter().map(|piece| piece.len as u64).sum();
        buffer.len = len.min(u32::try_from(available).unwrap_or(u32::MAX));
        buffer.reported_len = reported_len.min(buffer.len);
        buffer
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the buffer has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Which way the data flows.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// How many bytes the service reports as produced (initially `len`).
    pub fn reported_len(&self) -> usize {
        self.reported_len as usize
    }

    /// Sets how many bytes the service produced; at most `len`.
    pub fn set_reported_len(&mut self, n: usize) -> Result<(), BufferError> {
        if n > self.len() {
            return Err(BufferError::ReportedTooLong {
                reported: n,
                len: self.len(),
            });
        }
        self.reported_len = n as u32;
        Ok(())
    }

    /// The addresses of the buffer's pieces in host virtual memory, in order (what crosses the
    /// plugin ABI). Reading the addresses is harmless; the memory behind them may only be
    /// accessed inside an open access ([`Buffer::guest_access`]), which `unsafe` code that
    /// dereferences them must honour.
    pub fn iovecs(&self) -> &[IoVec] {
        match &self.backing {
            Backing::Host(iov) => std::slice::from_ref(iov),
            Backing::Guest { iov, .. } => iov,
            Backing::Foreign { iov, count } => {
                if *count == 0 || iov.is_null() {
                    return &[];
                }
                // SAFETY: `from_raw_parts` requires `iov` to point to `count` readable IoVecs for
                // the lifetime of the buffer, which bounds the returned borrow.
                unsafe { std::slice::from_raw_parts(*iov, *count) }
            }
        }
    }

    /// The guest memory a guest buffer keeps mapped.
    pub fn guest_memory(&self) -> Option<&Arc<GuestMemoryMmap>> {
        match &self.backing {
            Backing::Guest { _mem, .. } => Some(_mem),
            _ => None,
        }
    }

    /// Puts the buffer under `gate`, the gate of the call it belongs to (replacing any other).
    /// The framework does this for every buffer of a submitted call, the SDK for every buffer a
    /// plugin receives.
    pub fn attach_gate(&mut self, gate: Arc<dyn AccessGate>) {
        self.gate = Some(gate);
    }

    /// Opens an access to the buffer's memory, for as long as the returned guard lives.
    ///
    /// `Err(Cancelled)` once the call's gate is closed. The guard borrows the buffer, so a call
    /// that owns the buffer cannot be completed (or dropped) while the guard is alive; closing
    /// the gate waits for guards that are alive on other threads, so keep accesses short.
    pub fn guest_access(&self) -> Result<GuestAccess<'_>, BufferError> {
        match &self.gate {
            Some(gate) if !gate.enter() => Err(BufferError::Cancelled),
            _ => Ok(GuestAccess { buffer: self }),
        }
    }

    /// Copies bytes starting at `offset` into `dst`; returns how many were copied (fewer than
    /// `dst.len()` at the end of the buffer). One access (see [`Buffer::guest_access`]).
    pub fn read_at(&self, offset: usize, dst: &mut [u8]) -> Result<usize, BufferError> {
        self.guest_access()?.read_at(offset, dst)
    }

    /// Copies `src` into the buffer starting at `offset`; returns how many bytes fit.
    /// Fails for guest-to-host-only buffers. One access (see [`Buffer::guest_access`]).
    pub fn write_at(&mut self, offset: usize, src: &[u8]) -> Result<usize, BufferError> {
        self.guest_access()?.write_at(offset, src)
    }

    /// Copies the whole buffer into host memory, exactly once: the safe basis for parsing.
    /// Fails if the buffer is longer than `max`.
    pub fn copy_in(&self, max: usize) -> Result<Vec<u8>, BufferError> {
        if self.len() > max {
            return Err(BufferError::TooLarge {
                len: self.len(),
                max,
            });
        }
        let mut data = vec![0; self.len()];
        let n = self.read_at(0, &mut data)?;
        data.truncate(n);
        Ok(data)
    }

    /// The bytes of a host-owned buffer (all `len` of them); `None` for other backings.
    pub fn into_host_bytes(mut self) -> Option<Vec<u8>> {
        let Backing::Host(iov) = self.backing else {
            return None;
        };
        // Only the bytes change hands: the gate is released as in a normal drop.
        drop(self.gate.take());
        std::mem::forget(self);
        // SAFETY: as in `Drop`: the pointer came from `Box::into_raw` of `iov.len` bytes, and
        // forgetting `self` above keeps `Drop` from reclaiming it a second time.
        let data = unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(iov.base, iov.len)) };
        Some(data.into_vec())
    }

    /// A second buffer over the same bytes, under the same gate: host bytes are copied, guest
    /// views share the mapping. `None` for foreign buffers, which must not outlive their owner's
    /// call, and for host buffers whose gate is closed.
    pub fn try_clone(&self) -> Option<Buffer> {
        let backing = match &self.backing {
            Backing::Host(_) => {
                let mut data = vec![0; self.len()];
                self.read_at(0, &mut data).ok()?;
                let mut copy = Buffer::host(data, self.direction);
                copy.reported_len = self.reported_len;
                copy.gate = self.gate.clone();
                return Some(copy);
            }
            Backing::Guest { _mem, iov } => Backing::Guest {
                _mem: _mem.clone(),
                iov: iov.clone(),
            },
            Backing::Foreign { .. } => return None,
        };
        Some(Buffer {
            backing,
            direction: self.direction,
            len: self.len,
            reported_len: self.reported_len,
            gate: self.gate.clone(),
        })
    }
}

/// An open access to a buffer's memory; see [`Buffer::guest_access`]. Ends when dropped.
pub struct GuestAccess<'a> {
    buffer: &'a Buffer,
}

impl std::fmt::Debug for GuestAccess<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestAccess")
            .field("buffer", self.buffer)
            .finish()
    }
}

impl Drop for GuestAccess<'_> {
    fn drop(&mut self) {
        if let Some(gate) = &self.buffer.gate {
            gate.leave();
        }
    }
}

impl GuestAccess<'_> {
    fn out_of_bounds(&self, offset: usize) -> BufferError {
        BufferError::OutOfBounds {
            offset,
            len: self.buffer.len(),
        }
    }

    /// Zero-copy access for `readv`/`writev`-style I/O: the pieces as volatile slices, covering
    /// exactly `len` bytes, valid while this access is open. Writing through them is allowed
    /// only if the buffer's direction lets the host write ([`Direction::host_writes`]).
    pub fn volatile_slices(&self) -> impl Iterator<Item = VolatileSlice<'_>> + '_ {
        let mut remaining = self.buffer.len();
        self.buffer.iovecs().iter().filter_map(move |piece| {
            let len = piece.len.min(remaining);
            remaining -= len;
            NonNull::new(piece.base).filter(|_| len > 0).map(|base| {
                // SAFETY: every backing guarantees its pieces are valid for volatile access for
                // the buffer's lifetime (owned bytes, Arc-held guest mapping, or the
                // `from_raw_parts` contract), and the open access keeps the call's gate from
                // closing; the slice borrows this access, so it cannot outlive either.
                unsafe { VolatileSlice::new(base.as_ptr(), len) }
            })
        })
    }

    /// The pieces that hold bytes `offset..` of the buffer, the first one trimmed.
    fn slices_from(
        &self,
        offset: usize,
    ) -> Result<impl Iterator<Item = VolatileSlice<'_>> + '_, BufferError> {
        if offset > self.buffer.len() {
            return Err(self.out_of_bounds(offset));
        }
        let mut skip = offset;
        Ok(self.volatile_slices().filter_map(move |slice| {
            if skip >= slice.len() {
                skip -= slice.len();
                return None;
            }
            // Cannot fail: `skip` is inside the slice.
            let piece = slice.offset(skip).ok();
            skip = 0;
            piece
        }))
    }

    /// See [`Buffer::read_at`].
    pub fn read_at(&self, offset: usize, dst: &mut [u8]) -> Result<usize, BufferError> {
        let mut done = 0;
        for piece in self.slices_from(offset)? {
            if done == dst.len() {
                break;
            }
            done += piece.copy_to(&mut dst[done..]);
        }
        Ok(done)
    }

    /// See [`Buffer::write_at`].
    pub fn write_at(&self, offset: usize, src: &[u8]) -> Result<usize, BufferError> {
        if !self.buffer.direction.host_writes() {
            return Err(BufferError::ReadOnly);
        }
        let mut done = 0;
        for piece in self.slices_from(offset)? {
            if done == src.len() {
                break;
            }
            let n = piece.len().min(src.len() - done);
            piece.copy_from(&src[done..done + n]);
            done += n;
        }
        Ok(done)
    }
}

/// Errors of typed parameter access.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParmError {
    /// No parameter at that index.
    #[error("parameter {index} does not exist (the call has {count})")]
    Missing {
        /// The index asked for.
        index: usize,
        /// How many parameters there are.
        count: usize,
    },
    /// The parameter has another type.
    #[error("parameter {index} is a {found}, not a {expected}")]
    WrongType {
        /// The index asked for.
        index: usize,
        /// The type asked for.
        expected: &'static str,
        /// The type found.
        found: &'static str,
    },
}

/// One call parameter.
#[derive(Debug)]
pub enum Parm {
    /// A 32-bit value (in/out).
    U32(u32),
    /// A 64-bit value (in/out).
    U64(u64),
    /// A buffer.
    Buffer(Buffer),
}

impl Parm {
    /// Human-readable type name for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::U32(_) => "u32",
            Self::U64(_) => "u64",
            Self::Buffer(_) => "buffer",
        }
    }

    /// The value of a `U32`.
    pub fn as_u32(&self) -> Option<u32> {
        match self {
            Self::U32(v) => Some(*v),
            _ => None,
        }
    }

    /// The value of a `U64`.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Self::U64(v) => Some(*v),
            _ => None,
        }
    }

    /// The buffer of a `Buffer`.
    pub fn as_buffer(&self) -> Option<&Buffer> {
        match self {
            Self::Buffer(b) => Some(b),
            _ => None,
        }
    }

    /// The buffer of a `Buffer`, mutably.
    pub fn as_buffer_mut(&mut self) -> Option<&mut Buffer> {
        match self {
            Self::Buffer(b) => Some(b),
            _ => None,
        }
    }

    /// Duplicates the parameter (see [`Buffer::try_clone`]); `None` for foreign buffers.
    pub fn try_clone(&self) -> Option<Parm> {
        Some(match self {
            Self::U32(v) => Self::U32(*v),
            Self::U64(v) => Self::U64(*v),
            Self::Buffer(b) => Self::Buffer(b.try_clone()?),
        })
    }
}

/// Typed access to a parameter list.
pub trait ParmsExt {
    /// The `U32` at `index`.
    fn u32_at(&self, index: usize) -> Result<u32, ParmError>;
    /// The `U64` at `index`.
    fn u64_at(&self, index: usize) -> Result<u64, ParmError>;
    /// The buffer at `index`.
    fn buffer_at(&self, index: usize) -> Result<&Buffer, ParmError>;
}

fn typed<'a, T>(
    parms: &'a [Parm],
    index: usize,
    expected: &'static str,
    pick: impl FnOnce(&'a Parm) -> Option<T>,
) -> Result<T, ParmError> {
    let parm = parms.get(index).ok_or(ParmError::Missing {
        index,
        count: parms.len(),
    })?;
    pick(parm).ok_or(ParmError::WrongType {
        index,
        expected,
        found: parm.type_name(),
    })
}

impl ParmsExt for [Parm] {
    fn u32_at(&self, index: usize) -> Result<u32, ParmError> {
        typed(self, index, "u32", Parm::as_u32)
    }

    fn u64_at(&self, index: usize) -> Result<u64, ParmError> {
        typed(self, index, "u64", Parm::as_u64)
    }

    fn buffer_at(&self, index: usize) -> Result<&Buffer, ParmError> {
        typed(self, index, "buffer", Parm::as_buffer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::CallGate;
    use vm_memory::Bytes;

    fn guest_ram() -> Arc<GuestMemoryMmap> {
        let ranges = [(GuestAddress(0), 0x4000), (GuestAddress(0x4000), 0x4000)];
        Arc::new(GuestMemoryMmap::from_ranges(&ranges).expect("test guest memory"))
    }

    #[test]
    fn host_buffer_reads_back_its_bytes() {
        let buffer = Buffer::host(b"hello".to_vec(), Direction::ToHost);
        let mut out = [0u8; 8];
        assert_eq!(buffer.read_at(1, &mut out), Ok(4));
        assert_eq!(&out[..4], b"ello");
    }

    #[test]
    fn write_to_to_host_buffer_is_refused() {
        let mut buffer = Buffer::host(vec![0; 4], Direction::ToHost);
        assert_eq!(buffer.write_at(0, b"x"), Err(BufferError::ReadOnly));
    }

    #[test]
    fn write_past_end_stops_at_the_end() {
        let mut buffer = Buffer::host(vec![0; 4], Direction::FromHost);
        assert_eq!(buffer.write_at(2, b"abcd"), Ok(2));
        assert_eq!(buffer.into_host_bytes(), Some(vec![0, 0, b'a', b'b']));
    }

    #[test]
    fn offset_past_end_is_an_error() {
        let buffer = Buffer::host(vec![0; 4], Direction::Both);
        assert_eq!(
            buffer.read_at(5, &mut [0; 1]),
            Err(BufferError::OutOfBounds { offset: 5, len: 4 })
        );
    }

    #[test]
    fn guest_buffer_spanning_two_regions_reads_and_writes_across_the_boundary() {
        let mem = guest_ram();
        let mut buffer = Buffer::guest(
            mem.clone(),
            vec![(GuestAddress(0x3FFE), 4)],
            Direction::Both,
        )
        .expect("in RAM");
        assert_eq!(buffer.iovecs().len(), 2);
        assert_eq!(buffer.write_at(0, b"wxyz"), Ok(4));
        let mut out = [0u8; 4];
        assert_eq!(buffer.read_at(0, &mut out), Ok(4));
        assert_eq!(&out, b"wxyz");
    }

    #[test]
    fn guest_buffer_outside_ram_is_refused() {
        let result = Buffer::guest(
            guest_ram(),
            vec![(GuestAddress(0x7FF0), 0x20)],
            Direction::ToHost,
        );
        assert_eq!(
            result.err(),
            Some(BufferError::OutsideGuestMemory {
                addr: 0x7FF0,
                len: 0x20
            })
        );
    }

    #[test]
    fn guest_buffer_with_wrapping_address_is_refused() {
        let result = Buffer::guest(
            guest_ram(),
            vec![(GuestAddress(u64::MAX - 1), 4)],
            Direction::ToHost,
        );
        assert!(matches!(
            result,
            Err(BufferError::OutsideGuestMemory { .. })
        ));
    }

    #[test]
    fn guest_buffer_segments_are_concatenated_in_order() {
        let mem = guest_ram();
        let mut buffer = Buffer::guest(
            mem,
            vec![(GuestAddress(0x100), 2), (GuestAddress(0x5000), 3)],
            Direction::Both,
        )
        .expect("in RAM");
        buffer.write_at(0, b"abcde").expect("writable");
        assert_eq!(buffer.copy_in(16), Ok(b"abcde".to_vec()));
    }

    #[test]
    fn copy_in_refuses_buffers_over_the_bound() {
        let buffer = Buffer::host(vec![0; 10], Direction::ToHost);
        assert_eq!(
            buffer.copy_in(9),
            Err(BufferError::TooLarge { len: 10, max: 9 })
        );
    }

    #[test]
    fn reported_len_cannot_exceed_len() {
        let mut buffer = Buffer::host(vec![0; 4], Direction::FromHost);
        assert!(buffer.set_reported_len(5).is_err());
        assert_eq!(buffer.set_reported_len(3), Ok(()));
        assert_eq!(buffer.reported_len(), 3);
    }

    #[test]
    fn foreign_buffer_len_is_clamped_to_its_pieces() {
        let mut bytes = [1u8, 2, 3];
        let iov = [IoVec {
            base: bytes.as_mut_ptr(),
            len: bytes.len(),
        }];
        // SAFETY: `bytes` and `iov` outlive the buffer, which is dropped at the end of the test.
        let buffer = unsafe { Buffer::from_raw_parts(iov.as_ptr(), 1, Direction::ToHost, 10, 10) };
        assert_eq!(buffer.len(), 3);
        assert_eq!(buffer.copy_in(3), Ok(vec![1, 2, 3]));
        assert!(buffer.try_clone().is_none());
    }

    #[test]
    fn typed_access_reports_wrong_type_and_missing_index() {
        let parms = [Parm::U32(7), Parm::U64(9)];
        assert_eq!(parms.u32_at(0), Ok(7));
        assert_eq!(
            parms.u32_at(1),
            Err(ParmError::WrongType {
                index: 1,
                expected: "u32",
                found: "u64"
            })
        );
        assert_eq!(
            parms.u64_at(2),
            Err(ParmError::Missing { index: 2, count: 2 })
        );
    }

    #[test]
    fn volatile_slices_cover_exactly_len_bytes() {
        let buffer = Buffer::host(vec![5; 6], Direction::Both);
        let access = buffer.guest_access().expect("no gate");
        let total: usize = access.volatile_slices().map(|s| s.len()).sum();
        assert_eq!(total, 6);
    }

    fn gated_guest_buffer(mem: &Arc<GuestMemoryMmap>, gate: &Arc<CallGate>) -> Buffer {
        let mut buffer =
            Buffer::guest(mem.clone(), vec![(GuestAddress(0x100), 4)], Direction::Both)
                .expect("in RAM");
        buffer.attach_gate(gate.clone());
        buffer
    }

    #[test]
    fn write_after_the_gate_closed_is_refused_and_leaves_guest_memory_alone() {
        let mem = guest_ram();
        let gate = Arc::new(CallGate::new());
        let mut buffer = gated_guest_buffer(&mem, &gate);
        gate.close();
        assert_eq!(buffer.write_at(0, b"late"), Err(BufferError::Cancelled));
        let mut bytes = [0u8; 4];
        mem.read_slice(&mut bytes, GuestAddress(0x100))
            .expect("read");
        assert_eq!(bytes, [0; 4]);
    }

    #[test]
    fn reads_after_the_gate_closed_are_refused() {
        let mem = guest_ram();
        let gate = Arc::new(CallGate::new());
        let buffer = gated_guest_buffer(&mem, &gate);
        gate.close();
        assert_eq!(buffer.copy_in(4), Err(BufferError::Cancelled));
        assert!(buffer.guest_access().is_err());
    }

    #[test]
    fn access_guard_keeps_the_gate_busy_until_dropped() {
        let mem = guest_ram();
        let gate = Arc::new(CallGate::new());
        let buffer = gated_guest_buffer(&mem, &gate);
        let access = buffer.guest_access().expect("open");
        assert!(gate.is_busy());
        drop(access);
        assert!(!gate.is_busy());
    }

    #[test]
    fn clones_share_the_gate() {
        let mem = guest_ram();
        let gate = Arc::new(CallGate::new());
        let buffer = gated_guest_buffer(&mem, &gate);
        let copy = buffer.try_clone().expect("guest views clone");
        gate.close();
        assert_eq!(copy.copy_in(4), Err(BufferError::Cancelled));
    }

    #[test]
    fn into_host_bytes_releases_the_gate() {
        let gate = Arc::new(CallGate::default());
        let mut buffer = Buffer::host(vec![7; 16], Direction::Both);
        buffer.attach_gate(gate.clone());
        assert_eq!(Arc::strong_count(&gate), 2);

        let bytes = buffer.into_host_bytes();

        assert_eq!(bytes, Some(vec![7; 16]));
        assert_eq!(
            Arc::strong_count(&gate),
            1,
            "the buffer's reference to the gate leaked"
        );
    }
}
