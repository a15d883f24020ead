//! Converting parameters to the ABI form and reading the service's outputs back.
//!
//! The ABI array and the iovec arrays are built once per call on the submitting thread and then
//! left untouched by the host until the service completes the call: the service may write values,
//! `reported_len` and buffer contents in place. Buffer iovecs point at the bytes the [`Parm`]s
//! already reference (guest RAM or host memory), so no data is copied.

use vmmdev_hgcm_abi::Parm;
use vmmdev_hgcm_abi::ffi::{
    IoVec, PARM_BUFFER, PARM_U32, PARM_U64, RawBuffer, RawParm, RawParmValue,
};

/// The ABI form of a parameter list. The pointers inside refer to the heap of the iovec array
/// and to the memory of the `Parm`s it was built from, so it must not outlive them.
///
/// One pointer wide (nothing for an empty list): it lives in every pending call's table entry,
/// which the submitting and the completing thread both touch.
pub(crate) struct RawParams(Option<Box<Arrays>>);

struct Arrays {
    raw: Vec<RawParm>,
    /// Kept only so the `RawBuffer::iov` pointers into its heap stay valid.
    _iov: Vec<IoVec>,
}

// SAFETY: the arrays hold raw pointers to memory that is valid from any thread (guest RAM kept
// mapped by the `Parm`s, host buffers owned by them); the struct itself is plain data.
unsafe impl Send for RawParams {}

impl RawParams {
    pub(crate) fn build(params: &[Parm]) -> RawParams {
        if params.is_empty() {
            return RawParams(None);
        }
        let iov_count: usize = params
            .iter()
            .filter_map(Parm::as_buffer)
            .map(|b| b.iovecs().len())
            .sum();
        let mut iov: Vec<IoVec> = Vec::with_capacity(iov_count);
        for buffer in params.iter().filter_map(Parm::as_buffer) {
            iov.extend_from_slice(buffer.iovecs());
        }
        let mut next_iov = 0usize;
        let raw = params
            .iter()
            .map(|parm| match parm {
                Parm::U32(v) => RawParm {
                    kind: PARM_U32,
                    reserved: 0,
                    value: RawParmValue { u32: *v },
                },
                Parm::U64(v) => RawParm {
                    kind: PARM_U64,
                    reserved: 0,
                    value: RawParmValue { u64: *v },
                },
                Parm::Buffer(buffer) => {
                    let count = buffer.iovecs().len();
                    let pieces = iov.get(next_iov..next_iov + count).unwrap_or(&[]);
                    next_iov += count;
                    let buffer = RawBuffer {
                        iov: if pieces.is_empty() {
                            std::ptr::null()
                        } else {
                            pieces.as_ptr()
                        },
                        iov_count: u32::try_from(pieces.len()).unwrap_or(0),
                        direction: buffer.direction().code(),
                        len: buffer.len() as u32,
                        reported_len: buffer.reported_len() as u32,
                    };
                    RawParm {
                        kind: PARM_BUFFER,
                        reserved: 0,
                        value: RawParmValue { buffer },
                    }
                }
            })
            .collect();
        RawParams(Some(Box::new(Arrays { raw, _iov: iov })))
    }

    /// The array handed to the service (null for an empty list).
    pub(crate) fn as_mut_ptr(&mut self) -> *mut RawParm {
        self.0
            .as_mut()
            .map_or(std::ptr::null_mut(), |arrays| arrays.raw.as_mut_ptr())
    }

    pub(crate) fn count(&self) -> u32 {
        self.0.as_ref().map_or(0, |arrays| arrays.raw.len() as u32)
    }

    /// Copies the service's outputs into `params` (which must be the list this was built from):
    /// 32/64-bit values, and reported lengths clamped to the buffer length. The type of each
    /// parameter is the host's; whatever the service wrote into `kind` is ignored.
    pub(crate) fn write_back(&self, params: &mut [Parm]) {
        let raw_params = self.0.as_ref().map_or(&[][..], |arrays| &arrays.raw[..]);
        for (parm, raw) in params.iter_mut().zip(raw_params) {
            // SAFETY: every member of the union is plain old data and was initialised as a whole
            // by `build`, so reading any member is defined whatever the service wrote.
            unsafe {
                match parm {
                    Parm::U32(v) => *v = raw.value.u32,
                    Parm::U64(v) => *v = raw.value.u64,
                    Parm::Buffer(buffer) => {
                        let reported = (raw.value.buffer.reported_len as usize).min(buffer.len());
                        // Cannot fail: clamped to the length above.
                        let _ = buffer.set_reported_len(reported);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmmdev_hgcm_abi::{Buffer, Direction};

    #[test]
    fn outputs_written_by_the_service_reach_the_params() {
        let mut params = vec![
            Parm::U32(1),
            Parm::U64(2),
            Parm::Buffer(Buffer::host(vec![0; 8], Direction::FromHost)),
        ];
        let mut raw = RawParams::build(&params);
        // SAFETY: index 0..3 exist; the test plays the service and writes the matching members.
        unsafe {
            let p = raw.as_mut_ptr();
            (*p).value.u32 = 10;
            (*p.add(1)).value.u64 = 20;
            (*p.add(2)).value.buffer.reported_len = 5;
        }
        raw.write_back(&mut params);
        assert_eq!(params[0].as_u32(), Some(10));
        assert_eq!(params[1].as_u64(), Some(20));
        assert_eq!(params[2].as_buffer().map(Buffer::reported_len), Some(5));
    }

    #[test]
    fn oversized_reported_len_is_clamped_to_the_buffer() {
        let mut params = vec![Parm::Buffer(Buffer::host(vec![0; 4], Direction::FromHost))];
        let mut raw = RawParams::build(&params);
        // SAFETY: one buffer parameter exists.
        unsafe { (*raw.as_mut_ptr()).value.buffer.reported_len = 1000 };
        raw.write_back(&mut params);
        assert_eq!(params[0].as_buffer().map(Buffer::reported_len), Some(4));
    }

    #[test]
    fn buffer_iovecs_point_at_the_parameter_bytes() {
        let params = vec![
            Parm::U32(0),
            Parm::Buffer(Buffer::host(b"abc".to_vec(), Direction::ToHost)),
        ];
        let mut raw = RawParams::build(&params);
        // SAFETY: parameter 1 is a buffer with one iovec over three bytes owned by `params`.
        let bytes = unsafe {
            let buffer = (*raw.as_mut_ptr().add(1)).value.buffer;
            assert_eq!(buffer.iov_count, 1);
            std::slice::from_raw_parts((*buffer.iov).base, (*buffer.iov).len).to_vec()
        };
        assert_eq!(bytes, b"abc");
    }
}
