//! Parameter access for services: typed getters and setters that answer type mismatches with
//! `VERR_INVALID_PARAMETER`, and mutable buffer access that cannot move a buffer out of the call
//! (the buffers point into memory that is only valid until the call completes).
//!
//! The buffers of a call are under the call's access gate: reads and writes fail with
//! [`BufferError::Cancelled`] once the call is cancelled, and an open
//! [`vmmdev_hgcm_abi::GuestAccess`] borrows the call, so it cannot be completed meanwhile.

use std::ops::Deref;
use std::sync::Arc;

use vmmdev_hgcm_abi::ffi::{PARM_BUFFER, PARM_U32, PARM_U64, RawParm};
use vmmdev_hgcm_abi::status::Status;
use vmmdev_hgcm_abi::{AccessGate, Buffer, BufferError, Direction, Parm};

/// The parameters of a call or host call.
#[derive(Debug)]
pub struct Params {
    parms: Vec<Parm>,
}

impl Params {
    /// Builds the view of a host-provided array.
    ///
    /// # Safety
    /// `raw` must point to `count` parameters whose buffers stay valid (from any thread) for as
    /// long as the returned value exists, or at least while the gate later attached with
    /// [`Params::attach_gate`] admits an access.
    pub(crate) unsafe fn from_raw(raw: *const RawParm, count: u32) -> Result<Params, i32> {
        if count > 0 && raw.is_null() {
            return Err(Status::VERR_INVALID_PARAMETER.raw());
        }
        let mut parms = Vec::with_capacity(count as usize);
        for i in 0..count as usize {
            // SAFETY: `i < count` elements are readable by the caller's promise; every union
            // member is plain old data, so reading the one `kind` names is defined.
            let parm = unsafe {
                let raw = &*raw.add(i);
                match raw.kind {
                    PARM_U32 => Parm::U32(raw.value.u32),
                    PARM_U64 => Parm::U64(raw.value.u64),
                    PARM_BUFFER => {
                        let b = raw.value.buffer;
                        let direction = Direction::from_code(b.direction)
                            .ok_or(Status::VERR_INVALID_PARAMETER.raw())?;
                        // The buffer never leaves `Params` by value (see `BufferMut`).
                        Parm::Buffer(Buffer::from_raw_parts(
                            b.iov,
                            b.iov_count as usize,
                            direction,
                            b.len,
                            b.reported_len,
                        ))
                    }
                    _ => return Err(Status::VERR_INVALID_PARAMETER.raw()),
                }
            };
            parms.push(parm);
        }
        Ok(Params { parms })
    }

    /// Stores values and reported lengths back into the host's array.
    ///
    /// # Safety
    /// `raw` must be the array these parameters were built from, still valid and writable.
    pub(crate) unsafe fn write_back(&self, raw: *mut RawParm) {
        for (i, parm) in self.parms.iter().enumerate() {
            // SAFETY: same array and length as in `from_raw`, by the caller's promise.
            unsafe {
                let raw = &mut *raw.add(i);
                match parm {
                    Parm::U32(v) => raw.value.u32 = *v,
                    Parm::U64(v) => raw.value.u64 = *v,
                    Parm::Buffer(b) => raw.value.buffer.reported_len = b.reported_len() as u32,
                }
            }
        }
    }

    /// Puts every buffer under the call's gate, made by `gate` only if there is a buffer.
    pub(crate) fn attach_gate(&mut self, gate: impl FnOnce() -> Arc<dyn AccessGate>) {
        let mut buffers = self
            .parms
            .iter_mut()
            .filter_map(Parm::as_buffer_mut)
            .peekable();
        if buffers.peek().is_none() {
            return;
        }
        let gate = gate();
        for buffer in buffers {
            buffer.attach_gate(gate.clone());
        }
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.parms.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.parms.is_empty()
    }

    /// `Err(VERR_INVALID_PARAMETER)` unless there are exactly `count` parameters.
    pub fn expect_count(&self, count: usize) -> Result<(), i32> {
        if self.parms.len() == count {
            Ok(())
        } else {
            Err(Status::VERR_INVALID_PARAMETER.raw())
        }
    }

    /// The parameter at `index`.
    pub fn get(&self, index: usize) -> Option<&Parm> {
        self.parms.get(index)
    }

    /// All parameters.
    pub fn iter(&self) -> impl Iterator<Item = &Parm> {
        self.parms.iter()
    }

    /// The 32-bit value at `index`.
    pub fn u32(&self, index: usize) -> Result<u32, i32> {
        self.get(index)
            .and_then(Parm::as_u32)
            .ok_or(Status::VERR_INVALID_PARAMETER.raw())
    }

    /// The 64-bit value at `index`.
    pub fn u64(&self, index: usize) -> Result<u64, i32> {
        self.get(index)
            .and_then(Parm::as_u64)
            .ok_or(Status::VERR_INVALID_PARAMETER.raw())
    }

    /// The buffer at `index`.
    pub fn buffer(&self, index: usize) -> Result<&Buffer, i32> {
        self.get(index)
            .and_then(Parm::as_buffer)
            .ok_or(Status::VERR_INVALID_PARAMETER.raw())
    }

    /// Write access to the buffer at `index`.
    pub fn buffer_mut(&mut self, index: usize) -> Result<BufferMut<'_>, i32> {
        self.parms
            .get_mut(index)
            .and_then(Parm::as_buffer_mut)
            .map(BufferMut)
            .ok_or(Status::VERR_INVALID_PARAMETER.raw())
    }

    /// Sets the 32-bit value at `index` (which must be a 32-bit parameter).
    pub fn set_u32(&mut self, index: usize, value: u32) -> Result<(), i32> {
        match self.parms.get_mut(index) {
            Some(Parm::U32(v)) => {
                *v = value;
                Ok(())
            }
            _ => Err(Status::VERR_INVALID_PARAMETER.raw()),
        }
    }

    /// Sets the 64-bit value at `index` (which must be a 64-bit parameter).
    pub fn set_u64(&mut self, index: usize, value: u64) -> Result<(), i32> {
        match self.parms.get_mut(index) {
            Some(Parm::U64(v)) => {
                *v = value;
                Ok(())
            }
            _ => Err(Status::VERR_INVALID_PARAMETER.raw()),
        }
    }
}

/// Write access to a call's buffer. Reading works through `Deref<Target = Buffer>`.
#[derive(Debug)]
pub struct BufferMut<'a>(&'a mut Buffer);

impl Deref for BufferMut<'_> {
    type Target = Buffer;

    fn deref(&self) -> &Buffer {
        self.0
    }
}

impl BufferMut<'_> {
    /// See [`Buffer::write_at`].
    pub fn write_at(&mut self, offset: usize, src: &[u8]) -> Result<usize, BufferError> {
        self.0.write_at(offset, src)
    }

    /// See [`Buffer::set_reported_len`].
    pub fn set_reported_len(&mut self, n: usize) -> Result<(), BufferError> {
        self.0.set_reported_len(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmmdev_hgcm_abi::ffi::{IoVec, RawBuffer, RawParmValue};

    #[test]
    fn typed_getters_reject_wrong_types() {
        let raw = [RawParm {
            kind: PARM_U32,
            reserved: 0,
            value: RawParmValue { u32: 5 },
        }];
        // SAFETY: one parameter without buffers.
        let params = unsafe { Params::from_raw(raw.as_ptr(), 1) }.expect("valid");
        assert_eq!(params.u32(0), Ok(5));
        assert_eq!(params.u64(0), Err(Status::VERR_INVALID_PARAMETER.raw()));
        assert_eq!(params.u32(1), Err(Status::VERR_INVALID_PARAMETER.raw()));
    }

    #[test]
    fn unknown_parameter_kind_is_refused() {
        let raw = [RawParm {
            kind: 9,
            reserved: 0,
            value: RawParmValue { u64: 0 },
        }];
        // SAFETY: one parameter without buffers.
        assert!(unsafe { Params::from_raw(raw.as_ptr(), 1) }.is_err());
    }

    #[test]
    fn outputs_are_written_back_to_the_host_array() {
        let mut bytes = [0u8; 4];
        let iov = [IoVec {
            base: bytes.as_mut_ptr(),
            len: 4,
        }];
        let buffer = RawBuffer {
            iov: iov.as_ptr(),
            iov_count: 1,
            direction: 2,
            len: 4,
            reported_len: 4,
        };
        let mut raw = [
            RawParm {
                kind: PARM_U64,
                reserved: 0,
                value: RawParmValue { u64: 1 },
            },
            RawParm {
                kind: PARM_BUFFER,
                reserved: 0,
                value: RawParmValue { buffer },
            },
        ];
        // SAFETY: `raw`, `iov` and `bytes` outlive `params`.
        let mut params = unsafe { Params::from_raw(raw.as_ptr(), 2) }.expect("valid");
        params.set_u64(0, 77).expect("u64");
        let mut out = params.buffer_mut(1).expect("buffer");
        assert_eq!(out.write_at(0, b"ab"), Ok(2));
        out.set_reported_len(2).expect("fits");
        // SAFETY: the array `params` was built from, still alive.
        unsafe { params.write_back(raw.as_mut_ptr()) };
        drop(params);
        // SAFETY: written by `write_back` as the matching members.
        unsafe {
            assert_eq!(raw[0].value.u64, 77);
            assert_eq!(raw[1].value.buffer.reported_len, 2);
        }
        assert_eq!(&bytes[..2], b"ab");
    }
}
