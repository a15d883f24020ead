//! Byte layouts of the vboxguest ioctl argument buffers (Linux `include/uapi/linux/vboxguest.h`).
//!
//! Every structure is little-endian with alignment 1, so it can be read from and written to any
//! byte buffer. Where the kernel overlays input and output in a union, the two sides are separate
//! structures and the buffer is as long as the larger one.

use zerocopy::little_endian::{I32, U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `VBG_IOCTL_HDR_VERSION`.
pub const HDR_VERSION: u32 = 0x0001_0001;
/// `VBG_IOC_VERSION`: the interface version this library speaks (major 1, minor 0).
pub const IOC_VERSION: u32 = 0x0001_0000;
/// Largest buffer the driver accepts for any ioctl (`SZ_16M`).
pub const MAX_IOCTL_SIZE: usize = 16 << 20;
/// Largest VMMDev request the pass-through accepts (`VMMDEV_MAX_VMMDEVREQ_SIZE`).
pub const MAX_VMMDEV_REQUEST_SIZE: usize = 1 << 20;
/// Most parameters one HGCM call may carry (`VMMDEV_HGCM_MAX_PARMS`).
pub const MAX_HGCM_PARMS: usize = 32;
/// Size of the service-name field of an HGCM connect, terminating NUL included.
pub const SERVICE_NAME_SIZE: usize = 128;
/// HGCM service location type "existing local service" (`VMMDEV_HGCM_LOC_LOCALHOST_EXISTING`).
pub const HGCM_LOC_LOCALHOST_EXISTING: u32 = 2;
/// HGCM parameter type: 32-bit value.
pub const PARM_TYPE_32BIT: u32 = 1;
/// HGCM parameter type: 64-bit value.
pub const PARM_TYPE_64BIT: u32 = 2;
/// HGCM parameter type: user buffer read and written by the host.
pub const PARM_TYPE_LINADDR: u32 = 4;
/// HGCM parameter type: user buffer read by the host.
pub const PARM_TYPE_LINADDR_IN: u32 = 5;
/// HGCM parameter type: user buffer written by the host.
pub const PARM_TYPE_LINADDR_OUT: u32 = 6;
/// `VBGL_IOC_AGC_FLAGS_CONFIG_ACQUIRE_MODE`: only configure acquire mode, do not acquire.
pub const AGC_FLAGS_CONFIG_ACQUIRE_MODE: u32 = 1;
/// Timeout value meaning "wait forever".
pub const TIMEOUT_INFINITE: u32 = u32::MAX;

const IOC_READ_WRITE: u32 = 3;
const IOC_TYPE_V: u32 = b'V' as u32;

/// The kernel's `_IOC(dir, 'V', nr, size)`; `size` must fit the 14-bit size field.
const fn ioc(direction: u32, nr: u32, size: u32) -> u32 {
    (direction << 30) | (size << 16) | (IOC_TYPE_V << 8) | nr
}

/// Largest size encodable in an ioctl number (`_IOC_SIZEBITS` = 14).
pub const MAX_ENCODED_SIZE: usize = (1 << 14) - 1;

/// `VBG_IOCTL_DRIVER_VERSION_INFO`.
pub const IOCTL_DRIVER_VERSION_INFO: u32 = ioc(IOC_READ_WRITE, 0, 44);
/// `VBG_IOCTL_VMMDEV_REQUEST(size)`; `size` must not exceed [`MAX_ENCODED_SIZE`].
pub const fn ioctl_vmmdev_request(size: u32) -> u32 {
    ioc(IOC_READ_WRITE, 2, size)
}
/// `VBG_IOCTL_VMMDEV_REQUEST_BIG`: the pass-through for requests whose size does not fit the number.
pub const IOCTL_VMMDEV_REQUEST_BIG: u32 = ioc(0, 3, 0);
/// `VBG_IOCTL_HGCM_CONNECT`.
pub const IOCTL_HGCM_CONNECT: u32 = ioc(IOC_READ_WRITE, 4, 156);
/// `VBG_IOCTL_HGCM_DISCONNECT`.
pub const IOCTL_HGCM_DISCONNECT: u32 = ioc(IOC_READ_WRITE, 5, 28);
/// `VBG_IOCTL_HGCM_CALL_64(size)`; `size` must not exceed [`MAX_ENCODED_SIZE`].
pub const fn ioctl_hgcm_call_64(size: u32) -> u32 {
    ioc(IOC_READ_WRITE, 7, size)
}
/// `VBG_IOCTL_LOG(size)`: the size is deliberately not encoded.
pub const IOCTL_LOG: u32 = ioc(0, 9, 0);
/// `VBG_IOCTL_WAIT_FOR_EVENTS`.
pub const IOCTL_WAIT_FOR_EVENTS: u32 = ioc(IOC_READ_WRITE, 10, 32);
/// `VBG_IOCTL_INTERRUPT_ALL_WAIT_FOR_EVENTS`.
pub const IOCTL_INTERRUPT_ALL_WAIT_FOR_EVENTS: u32 = ioc(IOC_READ_WRITE, 11, 24);
/// `VBG_IOCTL_CHANGE_FILTER_MASK`.
pub const IOCTL_CHANGE_FILTER_MASK: u32 = ioc(IOC_READ_WRITE, 12, 32);
/// `VBG_IOCTL_ACQUIRE_GUEST_CAPABILITIES`.
pub const IOCTL_ACQUIRE_GUEST_CAPABILITIES: u32 = ioc(IOC_READ_WRITE, 13, 36);
/// `VBG_IOCTL_CHANGE_GUEST_CAPABILITIES`.
pub const IOCTL_CHANGE_GUEST_CAPABILITIES: u32 = ioc(IOC_READ_WRITE, 14, 32);
/// `VBG_IOCTL_CHECK_BALLOON`.
pub const IOCTL_CHECK_BALLOON: u32 = ioc(IOC_READ_WRITE, 17, 32);
/// `VBG_IOCTL_WRITE_CORE_DUMP`.
pub const IOCTL_WRITE_CORE_DUMP: u32 = ioc(IOC_READ_WRITE, 19, 28);

/// `struct vbg_ioctl_hdr`: the header every ioctl buffer starts with.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct IoctlHeader {
    /// Bytes of input, this header included.
    pub size_in: U32,
    /// [`HDR_VERSION`].
    pub version: U32,
    /// 0, or the VMMDev request type for the pass-through.
    pub request_type: U32,
    /// VirtualBox status of the operation (output).
    pub rc: I32,
    /// Bytes of output, this header included.
    pub size_out: U32,
    /// Must be zero (becomes the requestor of a passed-through request).
    pub reserved: U32,
}

/// Size of [`IoctlHeader`].
pub const HEADER_SIZE: usize = size_of::<IoctlHeader>();

impl IoctlHeader {
    /// A header for a buffer with `size_in` input and `size_out` output bytes (header included).
    pub fn new(request_type: u32, size_in: usize, size_out: usize) -> Self {
        Self {
            size_in: U32::new(to_u32(size_in)),
            version: U32::new(HDR_VERSION),
            request_type: U32::new(request_type),
            rc: I32::ZERO,
            size_out: U32::new(to_u32(size_out)),
            reserved: U32::ZERO,
        }
    }
}

/// Converts a buffer size that the caller has already bounded by [`MAX_IOCTL_SIZE`].
fn to_u32(size: usize) -> u32 {
    u32::try_from(size).unwrap_or(u32::MAX)
}

/// Input of `DRIVER_VERSION_INFO`.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct DriverVersionInfoIn {
    /// Header.
    pub hdr: IoctlHeader,
    /// The version the caller would like.
    pub req_version: U32,
    /// The oldest version the caller accepts.
    pub min_version: U32,
    /// Must be zero.
    pub reserved1: U32,
    /// Must be zero.
    pub reserved2: U32,
}

/// Output of `DRIVER_VERSION_INFO`.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct DriverVersionInfoOut {
    /// Header.
    pub hdr: IoctlHeader,
    /// The version granted to this session.
    pub session_version: U32,
    /// The driver's interface version.
    pub driver_version: U32,
    /// The driver's revision, or 0.
    pub driver_revision: U32,
    /// Zero.
    pub reserved1: U32,
    /// Zero.
    pub reserved2: U32,
}

/// Input of `HGCM_CONNECT`.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct HgcmConnectIn {
    /// Header.
    pub hdr: IoctlHeader,
    /// Service location type.
    pub location_type: U32,
    /// NUL-terminated service name.
    pub service_name: [u8; SERVICE_NAME_SIZE],
}

/// Output of `HGCM_CONNECT`.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct HgcmConnectOut {
    /// Header.
    pub hdr: IoctlHeader,
    /// The new client's id, 0 on failure.
    pub client_id: U32,
}

/// Input of `HGCM_DISCONNECT`.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct HgcmDisconnectIn {
    /// Header.
    pub hdr: IoctlHeader,
    /// The client to disconnect.
    pub client_id: U32,
}

/// Fixed part of `HGCM_CALL`; the parameters follow.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct HgcmCallHeader {
    /// Header.
    pub hdr: IoctlHeader,
    /// The calling client.
    pub client_id: U32,
    /// The service function.
    pub function: U32,
    /// Milliseconds to wait before cancelling, [`TIMEOUT_INFINITE`] for no limit.
    pub timeout_ms: U32,
    /// Whether a signal may end the wait (Linux always allows it for user callers).
    pub interruptible: u8,
    /// Must be zero.
    pub reserved: u8,
    /// Number of parameters that follow.
    pub parm_count: U16,
}

/// `struct vmmdev_hgcm_function_parameter64` as user space sends it: a type and 12 payload bytes
/// holding a 32-bit value, a 64-bit value, or a buffer's size and user address.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
#[repr(C)]
pub struct HgcmParameter64 {
    /// Parameter type.
    pub parm_type: U32,
    /// Type-dependent payload.
    pub payload: [u8; 12],
}

impl HgcmParameter64 {
    /// A 32-bit value parameter.
    pub fn value32(value: u32) -> Self {
        let [a, b, c, d] = value.to_le_bytes();
        Self {
            parm_type: U32::new(PARM_TYPE_32BIT),
            payload: [a, b, c, d, 0, 0, 0, 0, 0, 0, 0, 0],
        }
    }

    /// A 64-bit value parameter.
    pub fn value64(value: u64) -> Self {
        let [a, b, c, d, e, f, g, h] = value.to_le_bytes();
        Self {
            parm_type: U32::new(PARM_TYPE_64BIT),
            payload: [a, b, c, d, e, f, g, h, 0, 0, 0, 0],
        }
    }

    /// A LinAddr parameter of type `parm_type` describing `size` bytes at user address `address`.
    pub fn linear(parm_type: u32, size: u32, address: u64) -> Self {
        let [a, b, c, d] = size.to_le_bytes();
        let [e, f, g, h, i, j, k, l] = address.to_le_bytes();
        Self {
            parm_type: U32::new(parm_type),
            payload: [a, b, c, d, e, f, g, h, i, j, k, l],
        }
    }

    /// The 32-bit value, which is also the buffer size of a LinAddr parameter.
    pub fn get_value32(&self) -> u32 {
        let [a, b, c, d, ..] = self.payload;
        u32::from_le_bytes([a, b, c, d])
    }

    /// The 64-bit value.
    pub fn get_value64(&self) -> u64 {
        let [a, b, c, d, e, f, g, h, ..] = self.payload;
        u64::from_le_bytes([a, b, c, d, e, f, g, h])
    }

    /// The user address of a LinAddr parameter.
    pub fn get_address(&self) -> u64 {
        let [_, _, _, _, e, f, g, h, i, j, k, l] = self.payload;
        u64::from_le_bytes([e, f, g, h, i, j, k, l])
    }
}

/// Input of `WAIT_FOR_EVENTS`.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct WaitForEventsIn {
    /// Header.
    pub hdr: IoctlHeader,
    /// Milliseconds to wait, [`TIMEOUT_INFINITE`] for no limit.
    pub timeout_ms: U32,
    /// Events to wait for.
    pub events: U32,
}

/// Output of `WAIT_FOR_EVENTS`.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct WaitForEventsOut {
    /// Header.
    pub hdr: IoctlHeader,
    /// The events that ended the wait.
    pub events: U32,
}

/// Input of `CHANGE_FILTER_MASK` and of `CHANGE_GUEST_CAPABILITIES`.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct MaskChangeIn {
    /// Header.
    pub hdr: IoctlHeader,
    /// Bits to set.
    pub or_mask: U32,
    /// Bits to clear.
    pub not_mask: U32,
}

/// Input of `ACQUIRE_GUEST_CAPABILITIES`.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct AcquireGuestCapsIn {
    /// Header.
    pub hdr: IoctlHeader,
    /// `VBGL_IOC_AGC_FLAGS_*`.
    pub flags: U32,
    /// Capabilities to acquire.
    pub or_mask: U32,
    /// Capabilities to release.
    pub not_mask: U32,
}

/// Output of `CHANGE_GUEST_CAPABILITIES`.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct SetGuestCapsOut {
    /// Header.
    pub hdr: IoctlHeader,
    /// Capabilities this session has set.
    pub session_caps: U32,
    /// Capabilities reported to the host for all sessions.
    pub global_caps: U32,
}

/// Output of `CHECK_BALLOON`.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct CheckBalloonOut {
    /// Header.
    pub hdr: IoctlHeader,
    /// Balloon size in 1 MiB chunks.
    pub balloon_chunks: U32,
    /// Non-zero if user space must inflate the balloon itself (never on Linux).
    pub handle_in_r3: u8,
    /// Padding.
    pub padding: [u8; 3],
}

/// Input of `WRITE_CORE_DUMP`.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct WriteCoreDumpIn {
    /// Header.
    pub hdr: IoctlHeader,
    /// Must be zero.
    pub flags: U32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_size_ioctl_numbers_match_the_kernel() {
        assert_eq!(IOCTL_DRIVER_VERSION_INFO, 0xC02C_5600);
        assert_eq!(IOCTL_HGCM_CONNECT, 0xC09C_5604);
        assert_eq!(IOCTL_HGCM_DISCONNECT, 0xC01C_5605);
        assert_eq!(IOCTL_WAIT_FOR_EVENTS, 0xC020_560A);
        assert_eq!(IOCTL_INTERRUPT_ALL_WAIT_FOR_EVENTS, 0xC018_560B);
        assert_eq!(IOCTL_CHANGE_FILTER_MASK, 0xC020_560C);
        assert_eq!(IOCTL_ACQUIRE_GUEST_CAPABILITIES, 0xC024_560D);
        assert_eq!(IOCTL_CHANGE_GUEST_CAPABILITIES, 0xC020_560E);
        assert_eq!(IOCTL_CHECK_BALLOON, 0xC020_5611);
        assert_eq!(IOCTL_WRITE_CORE_DUMP, 0xC01C_5613);
    }

    #[test]
    fn log_and_big_request_numbers_carry_no_size_or_direction() {
        assert_eq!(IOCTL_LOG, 0x5609);
        assert_eq!(IOCTL_VMMDEV_REQUEST_BIG, 0x5603);
    }

    #[test]
    fn variable_size_ioctl_numbers_encode_the_buffer_size() {
        assert_eq!(ioctl_vmmdev_request(40), 0xC028_5602);
        assert_eq!(ioctl_hgcm_call_64(40 + 2 * 16), 0xC048_5607);
        assert_eq!(ioctl_hgcm_call_64(40 + 4 * 16), 0xC068_5607);
        assert_eq!(
            ioctl_vmmdev_request(MAX_ENCODED_SIZE as u32),
            0xFFFF_5602,
            "the size field is 14 bits wide"
        );
    }

    #[test]
    fn structure_sizes_match_the_uapi_header() {
        assert_eq!(size_of::<IoctlHeader>(), 24);
        assert_eq!(size_of::<DriverVersionInfoIn>(), 40);
        assert_eq!(size_of::<DriverVersionInfoOut>(), 44);
        assert_eq!(size_of::<HgcmConnectIn>(), 156);
        assert_eq!(size_of::<HgcmConnectOut>(), 28);
        assert_eq!(size_of::<HgcmDisconnectIn>(), 28);
        assert_eq!(size_of::<HgcmCallHeader>(), 40);
        assert_eq!(size_of::<HgcmParameter64>(), 16);
        assert_eq!(size_of::<WaitForEventsIn>(), 32);
        assert_eq!(size_of::<WaitForEventsOut>(), 28);
        assert_eq!(size_of::<MaskChangeIn>(), 32);
        assert_eq!(size_of::<AcquireGuestCapsIn>(), 36);
        assert_eq!(size_of::<SetGuestCapsOut>(), 32);
        assert_eq!(size_of::<CheckBalloonOut>(), 32);
        assert_eq!(size_of::<WriteCoreDumpIn>(), 28);
    }

    #[test]
    fn header_fields_sit_at_the_kernel_offsets() {
        assert_eq!(core::mem::offset_of!(IoctlHeader, size_in), 0);
        assert_eq!(core::mem::offset_of!(IoctlHeader, version), 4);
        assert_eq!(core::mem::offset_of!(IoctlHeader, request_type), 8);
        assert_eq!(core::mem::offset_of!(IoctlHeader, rc), 12);
        assert_eq!(core::mem::offset_of!(IoctlHeader, size_out), 16);
        assert_eq!(core::mem::offset_of!(IoctlHeader, reserved), 20);
    }

    #[test]
    fn call_header_fields_sit_at_the_kernel_offsets() {
        assert_eq!(core::mem::offset_of!(HgcmCallHeader, client_id), 24);
        assert_eq!(core::mem::offset_of!(HgcmCallHeader, function), 28);
        assert_eq!(core::mem::offset_of!(HgcmCallHeader, timeout_ms), 32);
        assert_eq!(core::mem::offset_of!(HgcmCallHeader, interruptible), 36);
        assert_eq!(core::mem::offset_of!(HgcmCallHeader, reserved), 37);
        assert_eq!(core::mem::offset_of!(HgcmCallHeader, parm_count), 38);
    }

    #[test]
    fn value32_parameter_is_type_1_with_the_value_at_offset_4() {
        let bytes = HgcmParameter64::value32(0x1122_3344).as_bytes().to_vec();
        assert_eq!(
            bytes,
            [1, 0, 0, 0, 0x44, 0x33, 0x22, 0x11, 0, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn value64_parameter_is_type_2_with_the_value_unaligned_at_offset_4() {
        let parameter = HgcmParameter64::value64(0x0102_0304_0506_0708);
        assert_eq!(
            parameter.as_bytes(),
            [2, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0, 0, 0]
        );
        assert_eq!(parameter.get_value64(), 0x0102_0304_0506_0708);
    }

    #[test]
    fn linear_parameter_has_size_at_offset_4_and_address_at_offset_8() {
        let parameter = HgcmParameter64::linear(PARM_TYPE_LINADDR_OUT, 0x100, 0x7fff_1234_5678);
        assert_eq!(
            parameter.as_bytes(),
            [
                6, 0, 0, 0, 0, 1, 0, 0, 0x78, 0x56, 0x34, 0x12, 0xff, 0x7f, 0, 0
            ]
        );
        assert_eq!(parameter.get_value32(), 0x100);
        assert_eq!(parameter.get_address(), 0x7fff_1234_5678);
    }

    #[test]
    fn new_header_sets_version_sizes_and_zero_rc_and_reserved() {
        let header = IoctlHeader::new(4, 40, 44);
        assert_eq!(
            header.as_bytes(),
            [
                40, 0, 0, 0, 1, 0, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 44, 0, 0, 0, 0, 0, 0, 0
            ]
        );
    }
}
