//! The Linux `/dev/vboxguest` and `/dev/vboxuser` ioctl ABI (`include/uapi/linux/vboxguest.h`).
//!
//! Every ioctl buffer starts with the 24-byte [`IoctlHeader`], deliberately shaped like the
//! VMMDev request header. The driver reads `size_in` bytes of input and writes back `size_out`
//! bytes; for each ioctl this module has an `...In` struct whose size is the exact `size_in` the
//! driver demands and, where the output differs, an `...Out` struct whose size is the exact
//! `size_out`. Both views are read from the same buffer, which must be as large as the bigger of
//! the two (the size encoded in the ioctl number).
//!
//! Ioctl numbers are computed with [`ioc`], the kernel's `_IOC` formula; the numbers that encode
//! a variable size are functions of that size and return `None` when it does not fit the 14-bit
//! size field.

use bitflags::bitflags;
use zerocopy::little_endian::{I32, U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::hgcm::HgcmServiceLocation;
use crate::status::Status;

// ---------------------------------------------------------------------------------------------
// Ioctl number encoding
// ---------------------------------------------------------------------------------------------

/// `_IOC_NONE`: no data transfer.
pub const IOC_NONE: u32 = 0;
/// `_IOC_WRITE`: user space writes data to the driver.
pub const IOC_WRITE: u32 = 1;
/// `_IOC_READ`: user space reads data from the driver.
pub const IOC_READ: u32 = 2;
/// Bit position of the command number.
pub const IOC_NRSHIFT: u32 = 0;
/// Bit position of the ioctl type (the "magic" character).
pub const IOC_TYPESHIFT: u32 = 8;
/// Bit position of the size.
pub const IOC_SIZESHIFT: u32 = 16;
/// Bit position of the direction.
pub const IOC_DIRSHIFT: u32 = 30;
/// Largest size the 14-bit size field holds.
pub const IOC_SIZE_MAX: u32 = (1 << 14) - 1;

/// The ioctl type of every vboxguest ioctl: `'V'`.
pub const VBG_IOCTL_TYPE: u32 = b'V' as u32;

/// Computes an ioctl number exactly as the kernel's `_IOC(dir, type, nr, size)` macro does.
///
/// Like the macro, this does not mask its arguments; callers pass sizes of at most
/// [`IOC_SIZE_MAX`] (the size-variable helpers below check that).
pub const fn ioc(dir: u32, ioctl_type: u32, nr: u32, size: u32) -> u32 {
    (dir << IOC_DIRSHIFT)
        | (ioctl_type << IOC_TYPESHIFT)
        | (nr << IOC_NRSHIFT)
        | (size << IOC_SIZESHIFT)
}

/// `_IOWR('V', nr, size)`.
const fn vbg_iowr(nr: u32, size: usize) -> u32 {
    ioc(IOC_READ | IOC_WRITE, VBG_IOCTL_TYPE, nr, size as u32)
}

/// `_IOC(_IOC_READ | _IOC_WRITE, 'V', nr, size)` for a caller-supplied size, or `None` if the
/// size does not fit the size field.
const fn vbg_iowr_sized(nr: u32, size: u32) -> Option<u32> {
    if size > IOC_SIZE_MAX {
        None
    } else {
        Some(ioc(IOC_READ | IOC_WRITE, VBG_IOCTL_TYPE, nr, size))
    }
}

/// Extracts the direction bits of an ioctl number (`_IOC_DIR`).
pub const fn ioc_dir(number: u32) -> u32 {
    number >> IOC_DIRSHIFT
}

/// Extracts the command number of an ioctl number (`_IOC_NR`).
pub const fn ioc_nr(number: u32) -> u32 {
    (number >> IOC_NRSHIFT) & 0xFF
}

/// Extracts the size of an ioctl number (`_IOC_SIZE`).
pub const fn ioc_size(number: u32) -> u32 {
    (number >> IOC_SIZESHIFT) & IOC_SIZE_MAX
}

/// `VBG_IOCTL_DRIVER_VERSION_INFO`.
pub const VBG_IOCTL_DRIVER_VERSION_INFO: u32 =
    vbg_iowr(0, core::mem::size_of::<DriverVersionInfoOut>());
/// `VBG_IOCTL_VMMDEV_REQUEST_BIG`: a VMMDev request of any size (`_IO('V', 3)`).
pub const VBG_IOCTL_VMMDEV_REQUEST_BIG: u32 = ioc(IOC_NONE, VBG_IOCTL_TYPE, 3, 0);
/// `VBG_IOCTL_VMMDEV_REQUEST_BIG_ALT`: the same with the read/write direction that older
/// VirtualBox headers used by mistake; the driver accepts both.
pub const VBG_IOCTL_VMMDEV_REQUEST_BIG_ALT: u32 = vbg_iowr(3, 0);
/// `VBG_IOCTL_HGCM_CONNECT`.
pub const VBG_IOCTL_HGCM_CONNECT: u32 = vbg_iowr(4, core::mem::size_of::<HgcmConnectIn>());
/// `VBG_IOCTL_HGCM_DISCONNECT`.
pub const VBG_IOCTL_HGCM_DISCONNECT: u32 = vbg_iowr(5, core::mem::size_of::<HgcmDisconnectIn>());
/// `VBG_IOCTL_LOG(s)`: the size is not encoded (`_IO('V', 9)`).
pub const VBG_IOCTL_LOG: u32 = ioc(IOC_NONE, VBG_IOCTL_TYPE, 9, 0);
/// `VBG_IOCTL_WAIT_FOR_EVENTS`.
pub const VBG_IOCTL_WAIT_FOR_EVENTS: u32 = vbg_iowr(10, core::mem::size_of::<WaitForEventsIn>());
/// `VBG_IOCTL_INTERRUPT_ALL_WAIT_FOR_EVENTS`.
pub const VBG_IOCTL_INTERRUPT_ALL_WAIT_FOR_EVENTS: u32 =
    vbg_iowr(11, core::mem::size_of::<IoctlHeader>());
/// `VBG_IOCTL_CHANGE_FILTER_MASK`.
pub const VBG_IOCTL_CHANGE_FILTER_MASK: u32 =
    vbg_iowr(12, core::mem::size_of::<ChangeFilterMaskIn>());
/// `VBG_IOCTL_ACQUIRE_GUEST_CAPABILITIES`.
pub const VBG_IOCTL_ACQUIRE_GUEST_CAPABILITIES: u32 =
    vbg_iowr(13, core::mem::size_of::<AcquireGuestCapabilitiesIn>());
/// `VBG_IOCTL_CHANGE_GUEST_CAPABILITIES`.
pub const VBG_IOCTL_CHANGE_GUEST_CAPABILITIES: u32 =
    vbg_iowr(14, core::mem::size_of::<ChangeGuestCapabilitiesIn>());
/// `VBG_IOCTL_CHECK_BALLOON`.
pub const VBG_IOCTL_CHECK_BALLOON: u32 = vbg_iowr(17, core::mem::size_of::<CheckBalloonOut>());
/// `VBG_IOCTL_WRITE_CORE_DUMP`.
pub const VBG_IOCTL_WRITE_CORE_DUMP: u32 = vbg_iowr(19, core::mem::size_of::<WriteCoreDumpIn>());

/// `VBG_IOCTL_VMMDEV_REQUEST(s)`: a VMMDev request of `size` bytes passed through to the host.
pub const fn vbg_ioctl_vmmdev_request(size: u32) -> Option<u32> {
    vbg_iowr_sized(2, size)
}

/// `VBG_IOCTL_HGCM_CALL_32(s)`: an HGCM call with 12-byte parameters, `size` bytes in total.
pub const fn vbg_ioctl_hgcm_call_32(size: u32) -> Option<u32> {
    vbg_iowr_sized(6, size)
}

/// `VBG_IOCTL_HGCM_CALL_64(s)`: an HGCM call with 16-byte parameters, `size` bytes in total.
pub const fn vbg_ioctl_hgcm_call_64(size: u32) -> Option<u32> {
    vbg_iowr_sized(7, size)
}

/// `VBG_IOCTL_LOG_ALT(s)`: the log ioctl as older VirtualBox headers encoded it (with a
/// direction and the size); the driver accepts it too.
pub const fn vbg_ioctl_log_alt(size: u32) -> Option<u32> {
    vbg_iowr_sized(9, size)
}

// ---------------------------------------------------------------------------------------------
// Header and limits
// ---------------------------------------------------------------------------------------------

/// Version every ioctl header must carry (`VBG_IOCTL_HDR_VERSION`).
pub const VBG_IOCTL_HDR_VERSION: u32 = 0x0001_0001;
/// Header type of every ioctl except the VMMDev request pass-through
/// (`VBG_IOCTL_HDR_TYPE_DEFAULT`).
pub const VBG_IOCTL_HDR_TYPE_DEFAULT: u32 = 0;
/// The driver's ioctl interface version (`VBG_IOC_VERSION`, major 1, minor 0).
pub const VBG_IOC_VERSION: u32 = 0x0001_0000;
/// Largest ioctl buffer the driver accepts (larger ones fail with `E2BIG`).
pub const VBG_IOCTL_MAX_SIZE: u32 = 16 << 20;
/// Largest user buffer of one HGCM call parameter; larger ones give `VERR_OUT_OF_RANGE`.
pub const VBG_MAX_HGCM_USER_PARM: u32 = 24 << 20;
/// Largest kernel buffer of one HGCM call parameter.
pub const VBG_MAX_HGCM_KERNEL_PARM: u32 = 16 << 20;
/// Most HGCM clients one open file (session) may hold.
pub const VBG_MAX_HGCM_CLIENTS_PER_SESSION: u32 = 64;
/// Timeout value meaning "wait forever" in WAIT_FOR_EVENTS and HGCM calls.
pub const VBG_TIMEOUT_INFINITE: u32 = 0xFFFF_FFFF;

/// The common 24-byte ioctl header (`struct vbg_ioctl_hdr`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct IoctlHeader {
    /// Input size including this header (and the output size if `size_out` is 0).
    pub size_in: U32,
    /// Must be [`VBG_IOCTL_HDR_VERSION`].
    pub version: U32,
    /// [`VBG_IOCTL_HDR_TYPE_DEFAULT`], or the VMMDev request type for the pass-through.
    pub header_type: U32,
    /// Status of the operation, written by the driver ([`Status`]).
    pub rc: I32,
    /// Output size including this header; 0 means the same as `size_in`.
    pub size_out: U32,
    /// Reserved, must be zero. On the VMMDev pass-through it reaches the host as the requestor.
    pub reserved: U32,
}

impl IoctlHeader {
    /// A header for an ioctl with the given input and output sizes and the default type.
    pub fn new(size_in: u32, size_out: u32) -> Self {
        Self {
            size_in: U32::new(size_in),
            version: U32::new(VBG_IOCTL_HDR_VERSION),
            header_type: U32::new(VBG_IOCTL_HDR_TYPE_DEFAULT),
            rc: I32::new(Status::VERR_INTERNAL_ERROR.raw()),
            size_out: U32::new(size_out),
            reserved: U32::ZERO,
        }
    }

    /// The status the driver stored.
    pub fn status(&self) -> Status {
        Status(self.rc.get())
    }
}

// ---------------------------------------------------------------------------------------------
// Per-ioctl structures
// ---------------------------------------------------------------------------------------------

/// DRIVER_VERSION_INFO input, 40 bytes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct DriverVersionInfoIn {
    /// Ioctl header.
    pub header: IoctlHeader,
    /// Requested interface version ([`VBG_IOC_VERSION`]).
    pub req_version: U32,
    /// Minimum acceptable interface version.
    pub min_version: U32,
    /// Reserved, must be zero.
    pub reserved1: U32,
    /// Reserved, must be zero.
    pub reserved2: U32,
}

/// DRIVER_VERSION_INFO output, 44 bytes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct DriverVersionInfoOut {
    /// Ioctl header.
    pub header: IoctlHeader,
    /// Interface version of this session (0xFFFFFFFF on a mismatch).
    pub session_version: U32,
    /// Interface version of the driver.
    pub driver_version: U32,
    /// Source revision of the driver, or 0.
    pub driver_revision: U32,
    /// Reserved.
    pub reserved1: U32,
    /// Reserved.
    pub reserved2: U32,
}

/// HGCM_CONNECT input, 156 bytes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct HgcmConnectIn {
    /// Ioctl header.
    pub header: IoctlHeader,
    /// The service to connect to, passed to the host verbatim.
    pub location: HgcmServiceLocation,
}

/// HGCM_CONNECT output, 28 bytes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct HgcmConnectOut {
    /// Ioctl header; `rc` is the connect status.
    pub header: IoctlHeader,
    /// The new client ID (0 on failure).
    pub client_id: U32,
}

/// HGCM_DISCONNECT input, 28 bytes (the output is the header alone).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct HgcmDisconnectIn {
    /// Ioctl header.
    pub header: IoctlHeader,
    /// Client ID to disconnect; must belong to this session.
    pub client_id: U32,
}

/// The fixed part of HGCM_CALL_32 / HGCM_CALL_64, 40 bytes (`struct vbg_ioctl_hgcm_call`),
/// followed by `parameter_count` [`crate::hgcm::HgcmParameter32`] or
/// [`crate::hgcm::HgcmParameter64`]. Input and output have the same size.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct HgcmCallHeader {
    /// Ioctl header; on return `rc` is the HGCM result.
    pub header: IoctlHeader,
    /// Client ID; must belong to this session.
    pub client_id: U32,
    /// Service function number.
    pub function: U32,
    /// Milliseconds to wait before cancelling, or [`VBG_TIMEOUT_INFINITE`].
    pub timeout_ms: U32,
    /// Interruptible flag; ignored for user-space calls.
    pub interruptible: u8,
    /// Reserved, must be zero.
    pub reserved: u8,
    /// Number of parameters that follow (at most 32).
    pub parameter_count: U16,
}

/// WAIT_FOR_EVENTS input, 32 bytes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct WaitForEventsIn {
    /// Ioctl header.
    pub header: IoctlHeader,
    /// Timeout in milliseconds, or [`VBG_TIMEOUT_INFINITE`].
    pub timeout_ms: U32,
    /// [`crate::vmmdev::Events`] to wait for.
    pub events: U32,
}

/// WAIT_FOR_EVENTS output, 28 bytes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct WaitForEventsOut {
    /// Ioctl header.
    pub header: IoctlHeader,
    /// The [`crate::vmmdev::Events`] that occurred.
    pub events: U32,
}

/// CHANGE_FILTER_MASK input, 32 bytes (the output is the header alone).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct ChangeFilterMaskIn {
    /// Ioctl header.
    pub header: IoctlHeader,
    /// Events to add to this session's filter.
    pub or_mask: U32,
    /// Events to remove from this session's filter.
    pub not_mask: U32,
}

bitflags! {
    /// Flags of ACQUIRE_GUEST_CAPABILITIES (`VBGL_IOC_AGC_FLAGS_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct AcquireGuestCapabilitiesFlags: u32 {
        /// Only configure the capabilities for acquire mode; do not acquire them.
        const CONFIG_ACQUIRE_MODE = 0x1;
    }
}

/// ACQUIRE_GUEST_CAPABILITIES input, 36 bytes (the output is the header alone).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct AcquireGuestCapabilitiesIn {
    /// Ioctl header.
    pub header: IoctlHeader,
    /// [`AcquireGuestCapabilitiesFlags`].
    pub flags: U32,
    /// [`crate::vmmdev::GuestCapabilities`] to acquire.
    pub or_mask: U32,
    /// [`crate::vmmdev::GuestCapabilities`] to release.
    pub not_mask: U32,
}

/// CHANGE_GUEST_CAPABILITIES input, 32 bytes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct ChangeGuestCapabilitiesIn {
    /// Ioctl header.
    pub header: IoctlHeader,
    /// [`crate::vmmdev::GuestCapabilities`] to set for this session.
    pub or_mask: U32,
    /// [`crate::vmmdev::GuestCapabilities`] to drop for this session.
    pub not_mask: U32,
}

/// CHANGE_GUEST_CAPABILITIES output, 32 bytes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct ChangeGuestCapabilitiesOut {
    /// Ioctl header.
    pub header: IoctlHeader,
    /// Capabilities this session holds after the call.
    pub session_caps: U32,
    /// Capabilities of all sessions after the call.
    pub global_caps: U32,
}

/// CHECK_BALLOON output, 32 bytes (the input is the header alone).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct CheckBalloonOut {
    /// Ioctl header.
    pub header: IoctlHeader,
    /// Balloon size in 1 MiB chunks.
    pub balloon_chunks: U32,
    /// Whether user space must allocate the balloon (always 0 on Linux).
    pub handle_in_r3: u8,
    /// Padding.
    pub padding: [u8; 3],
}

/// WRITE_CORE_DUMP input, 28 bytes (the output is the header alone).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct WriteCoreDumpIn {
    /// Ioctl header.
    pub header: IoctlHeader,
    /// Flags, must be zero.
    pub flags: U32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;
    use zerocopy::FromZeros;

    /// The kernel's `_IOC` written out independently: dir in bits 30–31, size in 16–29, type in
    /// 8–15, number in 0–7.
    fn kernel_ioc(dir: u32, nr: u32, size: u32) -> u32 {
        dir * 0x4000_0000 + size * 0x1_0000 + u32::from(b'V') * 0x100 + nr
    }

    const RW: u32 = 3;

    #[test]
    fn ioctl_header_has_reference_layout() {
        assert_layout!(IoctlHeader, size = 24, {
            size_in: 0, version: 4, header_type: 8, rc: 12, size_out: 16, reserved: 20,
        });
    }

    #[test]
    fn ioctl_structures_have_reference_layout() {
        assert_layout!(DriverVersionInfoIn, size = 40, {
            header: 0, req_version: 24, min_version: 28, reserved1: 32, reserved2: 36,
        });
        assert_layout!(DriverVersionInfoOut, size = 44, {
            header: 0, session_version: 24, driver_version: 28, driver_revision: 32,
            reserved1: 36, reserved2: 40,
        });
        assert_layout!(HgcmConnectIn, size = 156, { header: 0, location: 24 });
        assert_layout!(HgcmConnectOut, size = 28, { header: 0, client_id: 24 });
        assert_layout!(HgcmDisconnectIn, size = 28, { header: 0, client_id: 24 });
        assert_layout!(HgcmCallHeader, size = 40, {
            header: 0, client_id: 24, function: 28, timeout_ms: 32, interruptible: 36,
            reserved: 37, parameter_count: 38,
        });
        assert_layout!(WaitForEventsIn, size = 32, { header: 0, timeout_ms: 24, events: 28 });
        assert_layout!(WaitForEventsOut, size = 28, { header: 0, events: 24 });
        assert_layout!(ChangeFilterMaskIn, size = 32, { header: 0, or_mask: 24, not_mask: 28 });
        assert_layout!(AcquireGuestCapabilitiesIn, size = 36, {
            header: 0, flags: 24, or_mask: 28, not_mask: 32,
        });
        assert_layout!(ChangeGuestCapabilitiesIn, size = 32, { header: 0, or_mask: 24, not_mask: 28 });
        assert_layout!(ChangeGuestCapabilitiesOut, size = 32, {
            header: 0, session_caps: 24, global_caps: 28,
        });
        assert_layout!(CheckBalloonOut, size = 32, {
            header: 0, balloon_chunks: 24, handle_in_r3: 28, padding: 29,
        });
        assert_layout!(WriteCoreDumpIn, size = 28, { header: 0, flags: 24 });
    }

    #[test]
    fn fixed_ioctl_numbers_match_the_kernel_formula() {
        let expected = [
            (VBG_IOCTL_DRIVER_VERSION_INFO, kernel_ioc(RW, 0, 44)),
            (VBG_IOCTL_VMMDEV_REQUEST_BIG, kernel_ioc(0, 3, 0)),
            (VBG_IOCTL_VMMDEV_REQUEST_BIG_ALT, kernel_ioc(RW, 3, 0)),
            (VBG_IOCTL_HGCM_CONNECT, kernel_ioc(RW, 4, 156)),
            (VBG_IOCTL_HGCM_DISCONNECT, kernel_ioc(RW, 5, 28)),
            (VBG_IOCTL_LOG, kernel_ioc(0, 9, 0)),
            (VBG_IOCTL_WAIT_FOR_EVENTS, kernel_ioc(RW, 10, 32)),
            (
                VBG_IOCTL_INTERRUPT_ALL_WAIT_FOR_EVENTS,
                kernel_ioc(RW, 11, 24),
            ),
            (VBG_IOCTL_CHANGE_FILTER_MASK, kernel_ioc(RW, 12, 32)),
            (VBG_IOCTL_ACQUIRE_GUEST_CAPABILITIES, kernel_ioc(RW, 13, 36)),
            (VBG_IOCTL_CHANGE_GUEST_CAPABILITIES, kernel_ioc(RW, 14, 32)),
            (VBG_IOCTL_CHECK_BALLOON, kernel_ioc(RW, 17, 32)),
            (VBG_IOCTL_WRITE_CORE_DUMP, kernel_ioc(RW, 19, 28)),
        ];
        for (index, (number, formula)) in expected.iter().enumerate() {
            assert_eq!(number, formula, "entry {index}");
        }
    }

    #[test]
    fn fixed_ioctl_numbers_match_the_reference_literals() {
        assert_eq!(VBG_IOCTL_DRIVER_VERSION_INFO, 0xC02C_5600);
        assert_eq!(VBG_IOCTL_VMMDEV_REQUEST_BIG, 0x0000_5603);
        assert_eq!(VBG_IOCTL_VMMDEV_REQUEST_BIG_ALT, 0xC000_5603);
        assert_eq!(VBG_IOCTL_HGCM_CONNECT, 0xC09C_5604);
        assert_eq!(VBG_IOCTL_HGCM_DISCONNECT, 0xC01C_5605);
        assert_eq!(VBG_IOCTL_LOG, 0x0000_5609);
        assert_eq!(VBG_IOCTL_WAIT_FOR_EVENTS, 0xC020_560A);
        assert_eq!(VBG_IOCTL_INTERRUPT_ALL_WAIT_FOR_EVENTS, 0xC018_560B);
        assert_eq!(VBG_IOCTL_CHANGE_FILTER_MASK, 0xC020_560C);
        assert_eq!(VBG_IOCTL_ACQUIRE_GUEST_CAPABILITIES, 0xC024_560D);
        assert_eq!(VBG_IOCTL_CHANGE_GUEST_CAPABILITIES, 0xC020_560E);
        assert_eq!(VBG_IOCTL_CHECK_BALLOON, 0xC020_5611);
        assert_eq!(VBG_IOCTL_WRITE_CORE_DUMP, 0xC01C_5613);
    }

    #[test]
    fn sized_ioctl_numbers_match_the_kernel_formula() {
        for size in [0, 24, 40, 72, 1000, IOC_SIZE_MAX] {
            assert_eq!(
                vbg_ioctl_vmmdev_request(size),
                Some(kernel_ioc(RW, 2, size))
            );
            assert_eq!(vbg_ioctl_hgcm_call_32(size), Some(kernel_ioc(RW, 6, size)));
            assert_eq!(vbg_ioctl_hgcm_call_64(size), Some(kernel_ioc(RW, 7, size)));
            assert_eq!(vbg_ioctl_log_alt(size), Some(kernel_ioc(RW, 9, size)));
        }
    }

    #[test]
    fn sized_ioctl_numbers_match_the_reference_literals() {
        // A 40-byte GET_HOST_VERSION pass-through and guest-property calls from the checklist.
        assert_eq!(vbg_ioctl_vmmdev_request(40), Some(0xC028_5602));
        assert_eq!(vbg_ioctl_hgcm_call_64(40 + 2 * 16), Some(0xC048_5607));
        assert_eq!(vbg_ioctl_hgcm_call_64(40 + 4 * 16), Some(0xC068_5607));
    }

    #[test]
    fn sizes_beyond_the_size_field_have_no_ioctl_number() {
        assert_eq!(vbg_ioctl_vmmdev_request(IOC_SIZE_MAX + 1), None);
        assert_eq!(vbg_ioctl_hgcm_call_64(u32::MAX), None);
    }

    #[test]
    fn number_fields_can_be_extracted_again() {
        let number = VBG_IOCTL_HGCM_CONNECT;
        assert_eq!(ioc_dir(number), IOC_READ | IOC_WRITE);
        assert_eq!(ioc_nr(number), 4);
        assert_eq!(ioc_size(number) as usize, size_of::<HgcmConnectIn>());
    }

    #[test]
    fn new_header_uses_the_current_version_and_default_type() {
        let header = IoctlHeader::new(32, 28);
        let bytes = header.as_bytes();
        assert_eq!(bytes[0..4], 32u32.to_le_bytes());
        assert_eq!(bytes[4..8], 0x0001_0001u32.to_le_bytes());
        assert_eq!(bytes[8..12], 0u32.to_le_bytes());
        assert_eq!(bytes[16..20], 28u32.to_le_bytes());
    }

    #[test]
    fn header_status_reads_rc() {
        let mut header = IoctlHeader::new_zeroed();
        header.rc = I32::new(-11);
        assert_eq!(header.status(), Status::VERR_VERSION_MISMATCH);
    }
}
