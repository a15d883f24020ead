//! A scripted [`GuestTransport`] for unit tests: records every ioctl and plays back answers.

use std::collections::VecDeque;
use std::sync::Mutex;

use vmmdev_protocol::hgcm::ParameterType;

use crate::transport::{Errno, GuestTransport};

/// Parameter type numbers as a call buffer carries them.
pub(crate) const BIT32: u32 = ParameterType::BIT32.raw();
pub(crate) const BIT64: u32 = ParameterType::BIT64.raw();
pub(crate) const LINADDR_IN: u32 = ParameterType::LIN_ADDR_IN.raw();
pub(crate) const LINADDR_OUT: u32 = ParameterType::LIN_ADDR_OUT.raw();

/// What the fake driver does with one ioctl buffer.
type Answer = Box<dyn FnOnce(&mut [u8]) -> Result<(), Errno> + Send>;

/// An ioctl as the driver received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Recorded {
    pub(crate) request: u32,
    pub(crate) buffer: Vec<u8>,
}

/// Answers ioctls in order from a script; once the script is exhausted every ioctl succeeds and
/// leaves the buffer as sent. Like the driver, it clears the header's `rc` before answering. The
/// first answer is always a successful version handshake.
pub(crate) struct FakeTransport {
    recorded: Mutex<Vec<Recorded>>,
    answers: Mutex<VecDeque<Answer>>,
}

impl FakeTransport {
    /// A driver that grants interface version 1.0.
    pub(crate) fn new() -> Self {
        Self::without_handshake().then(|buffer| {
            put_u32(buffer, 24, 0x0001_0000);
            put_u32(buffer, 28, 0x0001_0000);
            Ok(())
        })
    }

    /// A driver whose first answer is the next one scripted.
    pub(crate) fn without_handshake() -> Self {
        Self {
            recorded: Mutex::new(Vec::new()),
            answers: Mutex::new(VecDeque::new()),
        }
    }

    /// Scripts the answer to the next unanswered ioctl.
    pub(crate) fn then(
        self,
        answer: impl FnOnce(&mut [u8]) -> Result<(), Errno> + Send + 'static,
    ) -> Self {
        self.answers.lock().unwrap().push_back(Box::new(answer));
        self
    }

    /// Scripts the next ioctl to fail with `errno`.
    pub(crate) fn then_fail(self, errno: i32) -> Self {
        self.then(move |_| Err(Errno(errno)))
    }

    /// Every ioctl received so far, the handshake included.
    pub(crate) fn recorded(&self) -> Vec<Recorded> {
        self.recorded.lock().unwrap().clone()
    }

    /// The last ioctl received.
    pub(crate) fn last(&self) -> Recorded {
        self.recorded().pop().expect("no ioctl was issued")
    }
}

impl std::fmt::Debug for FakeTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeTransport")
            .field("recorded", &self.recorded.lock().unwrap().len())
            .field("answers", &self.answers.lock().unwrap().len())
            .finish()
    }
}

impl GuestTransport for FakeTransport {
    unsafe fn ioctl(&self, request: u32, buffer: &mut [u8]) -> Result<(), Errno> {
        self.recorded.lock().unwrap().push(Recorded {
            request,
            buffer: buffer.to_vec(),
        });
        put_i32(buffer, 12, 0);
        let answer = self.answers.lock().unwrap().pop_front();
        match answer {
            Some(answer) => answer(buffer),
            None => Ok(()),
        }
    }
}

/// Writes a little-endian u32 at `offset`.
pub(crate) fn put_u32(buffer: &mut [u8], offset: usize, value: u32) {
    buffer[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

/// Writes a little-endian i32 at `offset`.
pub(crate) fn put_i32(buffer: &mut [u8], offset: usize, value: i32) {
    buffer[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

/// Reads a little-endian u32 at `offset`.
pub(crate) fn get_u32(buffer: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(buffer[offset..offset + 4].try_into().unwrap())
}

/// Reads a little-endian u64 at `offset`.
pub(crate) fn get_u64(buffer: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(buffer[offset..offset + 8].try_into().unwrap())
}

/// The function number of an HGCM call buffer.
pub(crate) fn function_of(buffer: &[u8]) -> u32 {
    get_u32(buffer, 28)
}

/// The parameter count of an HGCM call buffer.
pub(crate) fn parameter_count(buffer: &[u8]) -> u16 {
    u16::from_le_bytes([buffer[38], buffer[39]])
}

/// Offset of HGCM call parameter `index` in a 64-bit call buffer.
fn param_offset(index: usize) -> usize {
    40 + 16 * index
}

/// Sets the host status in the ioctl header.
pub(crate) fn set_status(buffer: &mut [u8], status: i32) {
    put_i32(buffer, 12, status);
}

/// Reads the type of HGCM call parameter `index`.
pub(crate) fn param_type(buffer: &[u8], index: usize) -> u32 {
    get_u32(buffer, param_offset(index))
}

/// Reads the 32-bit value (or the buffer size) of HGCM call parameter `index`.
pub(crate) fn param_u32(buffer: &[u8], index: usize) -> u32 {
    get_u32(buffer, param_offset(index) + 4)
}

/// Reads the 64-bit value of HGCM call parameter `index`.
pub(crate) fn param_u64(buffer: &[u8], index: usize) -> u64 {
    get_u64(buffer, param_offset(index) + 4)
}

/// Writes the 32-bit value of HGCM call parameter `index`.
pub(crate) fn set_param_u32(buffer: &mut [u8], index: usize, value: u32) {
    put_u32(buffer, param_offset(index) + 4, value);
}

/// Writes the 64-bit value of HGCM call parameter `index`.
pub(crate) fn set_param_u64(buffer: &mut [u8], index: usize, value: u64) {
    let offset = param_offset(index) + 4;
    buffer[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
}

/// The bytes of the caller's LinAddr buffer of parameter `index`, read while the ioctl runs.
pub(crate) fn user_bytes(buffer: &[u8], index: usize) -> Vec<u8> {
    let size = param_u32(buffer, index) as usize;
    let address = get_u64(buffer, param_offset(index) + 8) as usize;
    if size == 0 {
        return Vec::new();
    }
    // SAFETY: the transport contract guarantees that a LinAddr parameter points to memory valid
    // for reads of its size until the ioctl returns, and this runs inside the ioctl.
    unsafe { std::slice::from_raw_parts(std::ptr::with_exposed_provenance::<u8>(address), size) }
        .to_vec()
}

/// Writes `bytes` into the caller's LinAddr buffer of parameter `index`, as the driver copies
/// the host's output back, and reports their length as the parameter size.
pub(crate) fn write_user(buffer: &mut [u8], index: usize, bytes: &[u8]) {
    let size = param_u32(buffer, index) as usize;
    let address = get_u64(buffer, param_offset(index) + 8) as usize;
    assert!(
        bytes.len() <= size,
        "{} bytes for a {size}-byte buffer",
        bytes.len()
    );
    // SAFETY: the transport contract guarantees that an output LinAddr parameter points to
    // memory valid for writes of its size until the ioctl returns, and this runs inside the
    // ioctl; `bytes` fits that size.
    unsafe {
        std::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            std::ptr::with_exposed_provenance_mut::<u8>(address),
            bytes.len(),
        );
    }
    set_param_u32(buffer, index, bytes.len() as u32);
}
