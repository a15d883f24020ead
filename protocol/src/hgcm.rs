//! HGCM (Host-Guest Communication Manager) requests: connect, disconnect, call and cancel, the
//! call parameters in their raw 32-bit and 64-bit forms and as a decoded [`HgcmParameter`], page
//! lists and embedded buffers.
//!
//! HGCM rides on VMMDev request types 60–65. Connect, disconnect and call start with the 32-byte
//! [`HgcmRequestHeader`]; the host accepts them by writing `VINF_HGCM_ASYNC_EXECUTE` into `rc`
//! and later completes them by writing the outputs and `result`, then setting
//! [`HgcmRequestFlags::DONE`], then raising the HGCM event. A call's parameter array starts at
//! offset 44 ([`HGCM_CALL_PARAMETERS_OFFSET`]); buffers are described either by guest-virtual
//! addresses (LinAddr types), by page-list descriptors ([`HgcmPageListHeader`]) or by data
//! embedded in the request, all located by offsets from the start of the request.
//!
//! This module describes the bytes only. Checking parameters against the request size and the
//! limits (`VMMDEV_MAX_HGCM_PARMS`, `VMMDEV_MAX_HGCM_DATA_SIZE`) is the device's job.

use bitflags::bitflags;
use zerocopy::little_endian::{I32, U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::status::Status;
use crate::vmmdev::{RequestHeader, RequestType};

// ---------------------------------------------------------------------------------------------
// Common header, client IDs
// ---------------------------------------------------------------------------------------------

bitflags! {
    /// `fu32Flags` of the HGCM request header (`VBOX_HGCM_REQ_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct HgcmRequestFlags: u32 {
        /// Set by the host once the request is complete and every output is in guest memory.
        const DONE = 0x1;
        /// Guest-side bookkeeping of a cancelled request; the host never reads or writes it.
        const CANCELLED = 0x2;
    }
}

/// The 32-byte header of HGCM connect, disconnect, call and legacy cancel requests
/// (`VMMDevHGCMRequestHeader`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct HgcmRequestHeader {
    /// The generic request header; `rc` says whether the device accepted the request.
    pub header: RequestHeader,
    /// [`HgcmRequestFlags`]; guests initialise it to 0.
    pub flags: U32,
    /// The service's status, valid once DONE is set ([`Status`]).
    pub result: I32,
}

impl HgcmRequestHeader {
    /// The request flags.
    pub fn flags(&self) -> HgcmRequestFlags {
        HgcmRequestFlags::from_bits_retain(self.flags.get())
    }

    /// The service status in `result`.
    pub fn result(&self) -> Status {
        Status(self.result.get())
    }

    /// Stores a service status into `result`.
    pub fn set_result(&mut self, status: Status) {
        self.result = I32::new(status.raw());
    }
}

/// An HGCM client ID.
///
/// IDs are global across services, assigned from 1 upwards, never 0; the range ends at
/// [`ClientId::MAX`] (larger values are used by VirtualBox for internal objects).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(transparent)]
pub struct ClientId(pub u32);

impl ClientId {
    /// Never a valid client.
    pub const INVALID: Self = Self(0);
    /// The first ID a host hands out.
    pub const FIRST: Self = Self(1);
    /// The largest ID a host hands out.
    pub const MAX: Self = Self(0x7FFF_FFFF);

    /// The raw value.
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// Returns true if the value is in the range a host assigns (1..=MAX).
    pub const fn is_valid(self) -> bool {
        self.0 != 0 && self.0 <= Self::MAX.0
    }
}

impl core::fmt::Display for ClientId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "client {}", self.0)
    }
}

// ---------------------------------------------------------------------------------------------
// Connect (60), disconnect (61)
// ---------------------------------------------------------------------------------------------

protocol_codes! {
    /// Where the service of a connect request lives (`HGCMServiceLocationType`).
    pub struct LocationType(u32);
    /// Invalid.
    INVALID = 0;
    /// A service on the host, loaded on demand.
    LOCAL_HOST = 1;
    /// A service on the host that is already loaded (what every current guest sends).
    LOCAL_HOST_EXISTING = 2;
}

/// Size of the service name field of a connect request.
pub const HGCM_SERVICE_NAME_SIZE: usize = 128;

/// The service location of a connect request, 132 bytes (`HGCMServiceLocation`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct HgcmServiceLocation {
    /// [`LocationType`]; VirtualBox ignores it and treats every connect as LOCAL_HOST_EXISTING.
    pub location_type: U32,
    /// Service name, NUL-terminated within the field; bytes after the NUL are arbitrary.
    pub service_name: [u8; HGCM_SERVICE_NAME_SIZE],
}

impl HgcmServiceLocation {
    /// Builds a location for `name`, which must leave room for the terminating NUL.
    pub fn new(location_type: LocationType, name: &[u8]) -> Option<Self> {
        let mut service_name = [0u8; HGCM_SERVICE_NAME_SIZE];
        service_name.get_mut(..name.len())?.copy_from_slice(name);
        if name.len() >= HGCM_SERVICE_NAME_SIZE || name.contains(&0) {
            return None;
        }
        Some(Self {
            location_type: U32::new(location_type.raw()),
            service_name,
        })
    }

    /// The location type.
    pub fn location_type(&self) -> LocationType {
        LocationType(self.location_type.get())
    }

    /// The service name without its NUL, or `None` if the field holds no NUL (which the host
    /// must reject).
    pub fn service_name(&self) -> Option<&[u8]> {
        let end = self.service_name.iter().position(|&byte| byte == 0)?;
        self.service_name.get(..end)
    }
}

/// HGCMConnect (60), 168 bytes (`VMMDevHGCMConnect`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct HgcmConnectRequest {
    /// HGCM header.
    pub header: HgcmRequestHeader,
    /// The service to connect to (in).
    pub location: HgcmServiceLocation,
    /// The assigned [`ClientId`] (out, written at completion).
    pub client_id: U32,
}

/// HGCMDisconnect (61), 36 bytes (`VMMDevHGCMDisconnect`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct HgcmDisconnectRequest {
    /// HGCM header.
    pub header: HgcmRequestHeader,
    /// The [`ClientId`] to disconnect (in).
    pub client_id: U32,
}

// ---------------------------------------------------------------------------------------------
// Call (62, 63)
// ---------------------------------------------------------------------------------------------

/// Offset of the parameter array in a call request.
pub const HGCM_CALL_PARAMETERS_OFFSET: usize = 44;

/// The fixed part of HGCMCall32 (62) / HGCMCall64 (63), 44 bytes (`VMMDevHGCMCall`).
///
/// The parameter array ([`HgcmParameter32`] or [`HgcmParameter64`], as given by [`Width`])
/// follows immediately; page-list descriptors and embedded buffers follow the array.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct HgcmCallRequest {
    /// HGCM header.
    pub header: HgcmRequestHeader,
    /// The [`ClientId`] (in).
    pub client_id: U32,
    /// Service-defined function number (in).
    pub function: U32,
    /// Number of parameters (in).
    pub parameter_count: U32,
}

impl HgcmCallRequest {
    /// The client ID.
    pub fn client_id(&self) -> ClientId {
        ClientId(self.client_id.get())
    }

    /// Offset of the first byte after a parameter array of `parameter_count` parameters: where
    /// the "extra" area of page lists and embedded buffers begins. Computed in `u64` so that no
    /// guest-supplied count can overflow it.
    pub const fn extra_offset(width: Width, parameter_count: u32) -> u64 {
        HGCM_CALL_PARAMETERS_OFFSET as u64 + parameter_count as u64 * width.parameter_size() as u64
    }
}

/// The parameter layout of a call: 12-byte parameters for HGCMCall32, 16-byte ones for
/// HGCMCall64. The two differ only in the width of the LinAddr address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Width {
    /// `HGCMFunctionParameter32`, 12 bytes.
    W32,
    /// `HGCMFunctionParameter64`, 16 bytes.
    W64,
}

impl Width {
    /// Size of one parameter in bytes.
    pub const fn parameter_size(self) -> usize {
        match self {
            Self::W32 => core::mem::size_of::<HgcmParameter32>(),
            Self::W64 => core::mem::size_of::<HgcmParameter64>(),
        }
    }

    /// The width a call request type implies, or `None` for other request types.
    pub const fn of_request_type(request_type: RequestType) -> Option<Self> {
        match request_type {
            RequestType::HGCM_CALL32 => Some(Self::W32),
            RequestType::HGCM_CALL64 => Some(Self::W64),
            _ => None,
        }
    }
}

protocol_codes! {
    /// The type of a guest call parameter (`HGCMFunctionParameterType`).
    pub struct ParameterType(u32);
    /// Invalid.
    INVALID = 0;
    /// 32-bit value at offset 4.
    BIT32 = 1;
    /// 64-bit value at offset 4 (only 4-byte aligned).
    BIT64 = 2;
    /// Deprecated physical address; rejected by hosts.
    PHYS_ADDR = 3;
    /// Guest-virtual buffer, both directions.
    LIN_ADDR = 4;
    /// Guest-virtual buffer, guest to host only.
    LIN_ADDR_IN = 5;
    /// Guest-virtual buffer, host to guest only.
    LIN_ADDR_OUT = 6;
    /// Guest-driver-internal kernel buffer, both directions (Linux `LINADDR_KERNEL`); rejected
    /// on the wire unless empty.
    LIN_ADDR_LOCKED = 7;
    /// Guest-driver-internal kernel buffer, guest to host (Linux `LINADDR_KERNEL_IN`).
    LIN_ADDR_LOCKED_IN = 8;
    /// Guest-driver-internal kernel buffer, host to guest (Linux `LINADDR_KERNEL_OUT`).
    LIN_ADDR_LOCKED_OUT = 9;
    /// Buffer described by a page-list descriptor in the request.
    PAGE_LIST = 10;
    /// Small buffer stored inside the request.
    EMBEDDED = 11;
    /// Page list with exactly one entry for physically contiguous memory.
    CONTIGUOUS_PAGE_LIST = 12;
    /// Page list the host may map directly instead of copying.
    NO_BOUNCE_PAGE_LIST = 13;
}

impl ParameterType {
    /// Returns true for the LinAddr family (4–9), whose payload is a size and an address.
    pub const fn is_lin_addr(self) -> bool {
        matches!(self.0, 4..=9)
    }

    /// Returns true for the page-list family (10, 12, 13), whose payload is a size and the offset
    /// of an [`HgcmPageListHeader`].
    pub const fn is_page_list(self) -> bool {
        matches!(self.0, 10 | 12 | 13)
    }

    /// The direction a LinAddr type implies, or `None` for other types.
    pub const fn lin_addr_direction(self) -> Option<ParameterDirection> {
        match self {
            Self::LIN_ADDR | Self::LIN_ADDR_LOCKED => Some(ParameterDirection::BOTH),
            Self::LIN_ADDR_IN | Self::LIN_ADDR_LOCKED_IN => Some(ParameterDirection::TO_HOST),
            Self::LIN_ADDR_OUT | Self::LIN_ADDR_LOCKED_OUT => Some(ParameterDirection::FROM_HOST),
            _ => None,
        }
    }

    /// The form in which a service sees a parameter of this guest type, or `None` for types the
    /// host rejects on the wire (0, 3, 7–9 and unknown ones).
    pub const fn service_type(self) -> Option<ServiceParameterType> {
        match self {
            Self::BIT32 => Some(ServiceParameterType::BIT32),
            Self::BIT64 => Some(ServiceParameterType::BIT64),
            Self::LIN_ADDR
            | Self::LIN_ADDR_IN
            | Self::LIN_ADDR_OUT
            | Self::PAGE_LIST
            | Self::EMBEDDED
            | Self::CONTIGUOUS_PAGE_LIST => Some(ServiceParameterType::PTR),
            Self::NO_BOUNCE_PAGE_LIST => Some(ServiceParameterType::PAGES),
            _ => None,
        }
    }
}

protocol_codes! {
    /// The type of a parameter as a host service sees it (`VBOX_HGCM_SVC_PARM_*`).
    pub struct ServiceParameterType(u32);
    /// Invalid.
    INVALID = 0;
    /// 32-bit value.
    BIT32 = 1;
    /// 64-bit value.
    BIT64 = 2;
    /// Host bounce buffer (LinAddr, PageList, Embedded, ContiguousPageList).
    PTR = 3;
    /// Directly mapped guest pages (NoBouncePageList).
    PAGES = 4;
}

bitflags! {
    /// Direction flags of page lists and embedded buffers (`VBOX_HGCM_F_PARM_DIRECTION_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct ParameterDirection: u32 {
        /// The host reads the buffer at submission.
        const TO_HOST = 0x1;
        /// The host writes the buffer at completion.
        const FROM_HOST = 0x2;
        /// Both directions (also the mask of valid bits).
        const BOTH = 0x3;
    }
}

impl ParameterDirection {
    /// No direction; invalid for page lists and embedded buffers.
    pub const NONE: Self = Self::empty();

    /// The host's validity rule (`VBOX_HGCM_F_PARM_ARE_VALID`): non-zero and no bits outside
    /// [`ParameterDirection::BOTH`].
    pub const fn are_valid(raw: u32) -> bool {
        raw != 0 && raw & !Self::BOTH.bits() == 0
    }
}

/// Offset inside a parameter of its type.
pub const PARAMETER_OFF_TYPE: usize = 0;
/// Offset inside a parameter of a 32-bit or 64-bit value (the host writes outputs here).
pub const PARAMETER_OFF_VALUE: usize = 4;
/// Offset inside a parameter of the buffer size of LinAddr and page-list types (the host
/// reports a shortened size here for ContiguousPageList and NoBouncePageList).
pub const PARAMETER_OFF_SIZE: usize = 4;
/// Offset inside a parameter of a LinAddr address or a page-list descriptor offset.
pub const PARAMETER_OFF_ADDRESS: usize = 8;
/// Offset inside a parameter of an Embedded parameter's flags (bits 0–7) and data offset
/// (bits 8–31).
pub const PARAMETER_OFF_EMBEDDED_FLAGS_OFFSET: usize = 4;
/// Offset inside a parameter of an Embedded parameter's data size (the host reports the
/// produced size here).
pub const PARAMETER_OFF_EMBEDDED_SIZE: usize = 8;

/// Mask of an Embedded parameter's direction flags in its packed word.
pub const EMBEDDED_FLAGS_MASK: u32 = 0xFF;
/// Shift of an Embedded parameter's data offset in its packed word.
pub const EMBEDDED_OFFSET_SHIFT: u32 = 8;
/// Largest data offset an Embedded parameter can express.
pub const EMBEDDED_MAX_OFFSET: u32 = 0x00FF_FFFF;

/// A parameter of an HGCMCall32 request, 12 bytes (`HGCMFunctionParameter32`).
///
/// The payload is a union whose meaning depends on the type; [`HgcmParameter`] decodes it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct HgcmParameter32 {
    /// [`ParameterType`].
    pub parameter_type: U32,
    /// The payload words at offsets 4 and 8.
    pub payload: [U32; 2],
}

/// A parameter of an HGCMCall64 request, 16 bytes (`HGCMFunctionParameter64`).
///
/// The payload is a union whose meaning depends on the type; [`HgcmParameter`] decodes it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct HgcmParameter64 {
    /// [`ParameterType`].
    pub parameter_type: U32,
    /// The payload words at offsets 4, 8 and 12.
    pub payload: [U32; 3],
}

/// The descriptor a page-list parameter points to, 8 bytes (`HGCMPageListInfo` without its
/// array), followed by `page_count` 64-bit guest-physical page addresses ([`U64`] each).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct HgcmPageListHeader {
    /// [`ParameterDirection`] bits.
    pub flags: U32,
    /// Offset of the data in the first page (below 4096).
    pub offset_first_page: U16,
    /// Number of page entries that follow.
    pub page_count: U16,
}

impl HgcmPageListHeader {
    /// Size of a descriptor with `page_count` entries.
    pub const fn size_with_pages(page_count: u16) -> usize {
        core::mem::size_of::<Self>() + page_count as usize * HGCM_PAGE_LIST_ENTRY_SIZE
    }
}

/// Size of one page entry of a page list.
pub const HGCM_PAGE_LIST_ENTRY_SIZE: usize = 8;
/// Smallest valid page-list descriptor (the header and one entry).
pub const HGCM_PAGE_LIST_MIN_SIZE: usize = 16;

// ---------------------------------------------------------------------------------------------
// Decoded parameters
// ---------------------------------------------------------------------------------------------

/// A call parameter decoded from either wire width.
///
/// Decoding never fails on a complete parameter and never checks values: offsets, sizes and
/// flags are reported exactly as the guest wrote them, for the device to validate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HgcmParameter {
    /// Type 1: a 32-bit value.
    U32(u32),
    /// Type 2: a 64-bit value.
    U64(u64),
    /// Types 4–9: a guest-virtual buffer.
    LinAddr {
        /// The LinAddr type, which implies the direction.
        kind: ParameterType,
        /// Buffer size in bytes.
        size: u32,
        /// Guest-virtual address (32 bits wide in the W32 form).
        addr: u64,
    },
    /// Types 10, 12, 13: a buffer described by a page list inside the request.
    PageList {
        /// The page-list type.
        kind: ParameterType,
        /// Buffer size in bytes.
        size: u32,
        /// Offset of the [`HgcmPageListHeader`] from the start of the request.
        offset: u32,
    },
    /// Type 11: a buffer stored inside the request.
    Embedded {
        /// [`ParameterDirection`] bits.
        flags: u8,
        /// Offset of the data from the start of the request (24 bits).
        offset: u32,
        /// Data size in bytes.
        size: u32,
    },
    /// Any other type (0, 3 and unknown ones), which hosts reject.
    Other(ParameterType),
}

/// Why a parameter could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than one parameter of the requested width.
    Truncated {
        /// Bytes one parameter needs.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Truncated { needed, available } => write!(
                f,
                "HGCM parameter truncated: {available} of {needed} bytes available"
            ),
        }
    }
}

impl core::error::Error for DecodeError {}

/// Why a parameter could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The output buffer is shorter than one parameter of the requested width.
    BufferTooSmall {
        /// Bytes one parameter needs.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// A LinAddr address does not fit the 32-bit form.
    AddressTooWide(u64),
    /// An Embedded data offset does not fit in 24 bits.
    EmbeddedOffsetTooLarge(u32),
    /// The `kind` of a LinAddr or PageList, or the type of `Other`, belongs to another variant.
    KindMismatch(ParameterType),
}

impl core::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BufferTooSmall { needed, available } => write!(
                f,
                "buffer too small for an HGCM parameter: {available} of {needed} bytes"
            ),
            Self::AddressTooWide(addr) => {
                write!(
                    f,
                    "linear address {addr:#x} does not fit a 32-bit parameter"
                )
            }
            Self::EmbeddedOffsetTooLarge(offset) => {
                write!(f, "embedded data offset {offset:#x} exceeds 24 bits")
            }
            Self::KindMismatch(kind) => {
                write!(
                    f,
                    "parameter type {} does not match the variant",
                    kind.raw()
                )
            }
        }
    }
}

impl core::error::Error for EncodeError {}

impl HgcmParameter {
    /// Decodes the parameter at the start of `bytes` in the given width.
    pub fn decode(bytes: &[u8], width: Width) -> Result<Self, DecodeError> {
        let truncated = DecodeError::Truncated {
            needed: width.parameter_size(),
            available: bytes.len(),
        };
        match width {
            Width::W32 => HgcmParameter32::ref_from_prefix(bytes)
                .map(|(parameter, _)| Self::from(parameter))
                .map_err(|_| truncated),
            Width::W64 => HgcmParameter64::ref_from_prefix(bytes)
                .map(|(parameter, _)| Self::from(parameter))
                .map_err(|_| truncated),
        }
    }

    /// Decodes consecutive parameters from `bytes`, which should hold exactly the parameter
    /// array; a trailing partial parameter is ignored.
    pub fn decode_all(bytes: &[u8], width: Width) -> impl Iterator<Item = Self> + '_ {
        bytes
            .chunks_exact(width.parameter_size())
            .filter_map(move |chunk| Self::decode(chunk, width).ok())
    }

    /// The wire type of this parameter.
    pub const fn parameter_type(&self) -> ParameterType {
        match self {
            Self::U32(_) => ParameterType::BIT32,
            Self::U64(_) => ParameterType::BIT64,
            Self::LinAddr { kind, .. } | Self::PageList { kind, .. } => *kind,
            Self::Embedded { .. } => ParameterType::EMBEDDED,
            Self::Other(kind) => *kind,
        }
    }

    /// Encodes the parameter into the start of `out` in the given width and returns the number
    /// of bytes written.
    pub fn encode(&self, width: Width, out: &mut [u8]) -> Result<usize, EncodeError> {
        let needed = width.parameter_size();
        let too_small = EncodeError::BufferTooSmall {
            needed,
            available: out.len(),
        };
        match width {
            Width::W32 => self
                .to_wire32()?
                .write_to_prefix(out)
                .map_err(|_| too_small)?,
            Width::W64 => self
                .to_wire64()?
                .write_to_prefix(out)
                .map_err(|_| too_small)?,
        }
        Ok(needed)
    }

    /// The 12-byte wire form.
    pub fn to_wire32(&self) -> Result<HgcmParameter32, EncodeError> {
        let [word1, word2, _] = self.payload_words()?;
        if let Self::LinAddr { addr, .. } = *self {
            if u32::try_from(addr).is_err() {
                return Err(EncodeError::AddressTooWide(addr));
            }
        }
        Ok(HgcmParameter32 {
            parameter_type: U32::new(self.parameter_type().raw()),
            payload: [U32::new(word1), U32::new(word2)],
        })
    }

    /// The 16-byte wire form.
    pub fn to_wire64(&self) -> Result<HgcmParameter64, EncodeError> {
        let [word1, word2, word3] = self.payload_words()?;
        Ok(HgcmParameter64 {
            parameter_type: U32::new(self.parameter_type().raw()),
            payload: [U32::new(word1), U32::new(word2), U32::new(word3)],
        })
    }

    /// The payload words at offsets 4, 8 and 12 of the 64-bit form; the 32-bit form uses the
    /// first two (its LinAddr address is the low half).
    fn payload_words(&self) -> Result<[u32; 3], EncodeError> {
        let split = |value: u64| (value as u32, (value >> 32) as u32);
        match *self {
            Self::U32(value) => Ok([value, 0, 0]),
            Self::U64(value) => {
                let (low, high) = split(value);
                Ok([low, high, 0])
            }
            Self::LinAddr { kind, size, addr } => {
                if !kind.is_lin_addr() {
                    return Err(EncodeError::KindMismatch(kind));
                }
                let (low, high) = split(addr);
                Ok([size, low, high])
            }
            Self::PageList { kind, size, offset } => {
                if !kind.is_page_list() {
                    return Err(EncodeError::KindMismatch(kind));
                }
                Ok([size, offset, 0])
            }
            Self::Embedded {
                flags,
                offset,
                size,
            } => {
                if offset > EMBEDDED_MAX_OFFSET {
                    return Err(EncodeError::EmbeddedOffsetTooLarge(offset));
                }
                Ok([
                    u32::from(flags) | (offset << EMBEDDED_OFFSET_SHIFT),
                    size,
                    0,
                ])
            }
            Self::Other(kind) => {
                if Self::from_words(kind, [0, 0, 0]) != Self::Other(kind) {
                    return Err(EncodeError::KindMismatch(kind));
                }
                Ok([0, 0, 0])
            }
        }
    }

    /// Interprets the payload words of the 64-bit layout for `kind`.
    fn from_words(kind: ParameterType, [word1, word2, word3]: [u32; 3]) -> Self {
        let join = |low: u32, high: u32| u64::from(low) | (u64::from(high) << 32);
        match kind {
            ParameterType::BIT32 => Self::U32(word1),
            ParameterType::BIT64 => Self::U64(join(word1, word2)),
            ParameterType::EMBEDDED => Self::Embedded {
                flags: (word1 & EMBEDDED_FLAGS_MASK) as u8,
                offset: word1 >> EMBEDDED_OFFSET_SHIFT,
                size: word2,
            },
            kind if kind.is_lin_addr() => Self::LinAddr {
                kind,
                size: word1,
                addr: join(word2, word3),
            },
            kind if kind.is_page_list() => Self::PageList {
                kind,
                size: word1,
                offset: word2,
            },
            kind => Self::Other(kind),
        }
    }
}

impl From<&HgcmParameter32> for HgcmParameter {
    fn from(parameter: &HgcmParameter32) -> Self {
        let [word1, word2] = parameter.payload;
        // The 32-bit form has no high address word: its LinAddr address is 32 bits wide.
        Self::from_words(
            ParameterType(parameter.parameter_type.get()),
            [word1.get(), word2.get(), 0],
        )
    }
}

impl From<&HgcmParameter64> for HgcmParameter {
    fn from(parameter: &HgcmParameter64) -> Self {
        let [word1, word2, word3] = parameter.payload;
        Self::from_words(
            ParameterType(parameter.parameter_type.get()),
            [word1.get(), word2.get(), word3.get()],
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Cancel (64), Cancel2 (65)
// ---------------------------------------------------------------------------------------------

/// HGCMCancel (64), at least 32 bytes (`VMMDevHGCMCancel`): the pending request itself,
/// resubmitted at the same address with its type changed to 64. The target is identified by the
/// address of this request.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct HgcmCancelRequest {
    /// HGCM header.
    pub header: HgcmRequestHeader,
}

/// HGCMCancel2 (65) in its original form, exactly 28 bytes (`VMMDevHGCMCancel2`); what Linux
/// sends. Note the generic 24-byte header, not the HGCM header.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct HgcmCancel2Request32 {
    /// Request header.
    pub header: RequestHeader,
    /// Guest-physical address of the request to cancel.
    pub phys_req_to_cancel: U32,
}

/// HGCMCancel2 (65) in its 64-bit-address form (VirtualBox 7.1+), at least 32 bytes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct HgcmCancel2Request64 {
    /// Request header.
    pub header: RequestHeader,
    /// Guest-physical address of the request to cancel.
    pub phys_req_to_cancel: U64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmmdev::VMMDEV_PAGE_SIZE;
    use zerocopy::FromZeros;

    /// Deterministic xorshift generator for the hostile-input tests.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn round_trip(parameter: HgcmParameter, width: Width) -> HgcmParameter {
        let mut bytes = [0xAAu8; 16];
        let written = parameter.encode(width, &mut bytes).expect("encodable");
        assert_eq!(written, width.parameter_size());
        HgcmParameter::decode(&bytes, width).expect("decodable")
    }

    fn samples() -> [HgcmParameter; 9] {
        [
            HgcmParameter::U32(0xDEAD_BEEF),
            HgcmParameter::U64(0x0123_4567_89AB_CDEF),
            HgcmParameter::LinAddr {
                kind: ParameterType::LIN_ADDR_IN,
                size: 0,
                addr: 0,
            },
            HgcmParameter::LinAddr {
                kind: ParameterType::LIN_ADDR,
                size: 77,
                addr: 0xFFFF_F000,
            },
            HgcmParameter::PageList {
                kind: ParameterType::PAGE_LIST,
                size: 4096,
                offset: 124,
            },
            HgcmParameter::PageList {
                kind: ParameterType::NO_BOUNCE_PAGE_LIST,
                size: 1,
                offset: 0xFFFF_FFFF,
            },
            HgcmParameter::Embedded {
                flags: 3,
                offset: 0x00FF_FFFF,
                size: 12,
            },
            HgcmParameter::Other(ParameterType::PHYS_ADDR),
            HgcmParameter::Other(ParameterType(14)),
        ]
    }

    #[test]
    fn hgcm_headers_have_reference_layout() {
        assert_layout!(HgcmRequestHeader, size = 32, { header: 0, flags: 24, result: 28 });
        assert_layout!(HgcmServiceLocation, size = 132, { location_type: 0, service_name: 4 });
        assert_layout!(HgcmConnectRequest, size = 168, { header: 0, location: 32, client_id: 164 });
        assert_layout!(HgcmDisconnectRequest, size = 36, { header: 0, client_id: 32 });
        assert_layout!(HgcmCallRequest, size = 44, {
            header: 0, client_id: 32, function: 36, parameter_count: 40,
        });
        assert_eq!(
            core::mem::size_of::<HgcmCallRequest>(),
            HGCM_CALL_PARAMETERS_OFFSET
        );
    }

    #[test]
    fn parameters_and_page_lists_have_reference_layout() {
        assert_layout!(HgcmParameter32, size = 12, { parameter_type: 0, payload: 4 });
        assert_layout!(HgcmParameter64, size = 16, { parameter_type: 0, payload: 4 });
        assert_layout!(HgcmPageListHeader, size = 8, {
            flags: 0, offset_first_page: 4, page_count: 6,
        });
        assert_eq!(
            HgcmPageListHeader::size_with_pages(1),
            HGCM_PAGE_LIST_MIN_SIZE
        );
        assert_eq!(HgcmPageListHeader::size_with_pages(4), 40);
    }

    #[test]
    fn cancel_requests_have_reference_layout() {
        assert_layout!(HgcmCancelRequest, size = 32, { header: 0 });
        assert_layout!(HgcmCancel2Request32, size = 28, { header: 0, phys_req_to_cancel: 24 });
        assert_layout!(HgcmCancel2Request64, size = 32, { header: 0, phys_req_to_cancel: 24 });
    }

    #[test]
    fn request_flags_have_reference_values() {
        assert_eq!(HgcmRequestFlags::DONE.bits(), 1);
        assert_eq!(HgcmRequestFlags::CANCELLED.bits(), 2);
    }

    #[test]
    fn header_result_round_trips() {
        let mut header = HgcmRequestHeader::new_zeroed();
        header.set_result(Status::VERR_HGCM_SERVICE_NOT_FOUND);
        assert_eq!(header.result(), Status::VERR_HGCM_SERVICE_NOT_FOUND);
        assert_eq!(header.as_bytes()[28..32], (-2900i32).to_le_bytes());
    }

    #[test]
    fn parameter_types_have_reference_numbers() {
        let names: std::vec::Vec<(u32, &str)> = ParameterType::KNOWN
            .iter()
            .map(|t| (t.raw(), t.name().unwrap_or("")))
            .collect();
        assert_eq!(names.len(), 14);
        for (index, (value, _)) in names.iter().enumerate() {
            assert_eq!(*value as usize, index);
        }
        assert_eq!(ParameterType::PAGE_LIST.raw(), 10);
        assert_eq!(ParameterType::NO_BOUNCE_PAGE_LIST.raw(), 13);
    }

    #[test]
    fn service_types_follow_the_host_conversion() {
        use ServiceParameterType as S;
        let expected = [
            None,
            Some(S::BIT32),
            Some(S::BIT64),
            None,
            Some(S::PTR),
            Some(S::PTR),
            Some(S::PTR),
            None,
            None,
            None,
            Some(S::PTR),
            Some(S::PTR),
            Some(S::PTR),
            Some(S::PAGES),
            None,
        ];
        for (value, service_type) in expected.iter().enumerate() {
            assert_eq!(
                ParameterType(value as u32).service_type(),
                *service_type,
                "type {value}"
            );
        }
    }

    #[test]
    fn lin_addr_types_imply_their_direction() {
        assert_eq!(
            ParameterType::LIN_ADDR_IN.lin_addr_direction(),
            Some(ParameterDirection::TO_HOST)
        );
        assert_eq!(
            ParameterType::LIN_ADDR_LOCKED_OUT.lin_addr_direction(),
            Some(ParameterDirection::FROM_HOST)
        );
        assert_eq!(
            ParameterType::LIN_ADDR.lin_addr_direction(),
            Some(ParameterDirection::BOTH)
        );
        assert_eq!(ParameterType::PAGE_LIST.lin_addr_direction(), None);
    }

    #[test]
    fn direction_flags_are_valid_only_when_non_zero_and_within_mask() {
        assert!(!ParameterDirection::are_valid(0));
        assert!(ParameterDirection::are_valid(1));
        assert!(ParameterDirection::are_valid(2));
        assert!(ParameterDirection::are_valid(3));
        assert!(!ParameterDirection::are_valid(4));
        assert!(!ParameterDirection::are_valid(0x8000_0001));
    }

    #[test]
    fn width_follows_the_call_request_type() {
        assert_eq!(
            Width::of_request_type(RequestType::HGCM_CALL32),
            Some(Width::W32)
        );
        assert_eq!(
            Width::of_request_type(RequestType::HGCM_CALL64),
            Some(Width::W64)
        );
        assert_eq!(Width::of_request_type(RequestType::HGCM_CONNECT), None);
    }

    #[test]
    fn extra_offset_matches_the_linux_read_request() {
        // vboxsf READ: 5 parameters of 16 bytes; the page list starts at 124.
        assert_eq!(HgcmCallRequest::extra_offset(Width::W64, 5), 124);
        assert_eq!(HgcmCallRequest::extra_offset(Width::W32, 2), 68);
        assert_eq!(
            HgcmCallRequest::extra_offset(Width::W64, u32::MAX),
            44 + 16 * u64::from(u32::MAX)
        );
    }

    #[test]
    fn every_sample_round_trips_in_both_widths() {
        for parameter in samples() {
            assert_eq!(round_trip(parameter, Width::W64), parameter);
            assert_eq!(round_trip(parameter, Width::W32), parameter);
        }
    }

    #[test]
    fn wide_linear_address_round_trips_only_in_64_bit_form() {
        let parameter = HgcmParameter::LinAddr {
            kind: ParameterType::LIN_ADDR_OUT,
            size: 16,
            addr: 0x7FFF_1234_5000,
        };
        assert_eq!(round_trip(parameter, Width::W64), parameter);
        assert_eq!(
            parameter.encode(Width::W32, &mut [0u8; 12]),
            Err(EncodeError::AddressTooWide(0x7FFF_1234_5000))
        );
    }

    #[test]
    fn value64_occupies_offsets_4_to_12_in_both_widths() {
        let parameter = HgcmParameter::U64(0x1122_3344_5566_7788);
        let mut bytes = [0u8; 16];
        parameter.encode(Width::W32, &mut bytes).expect("fits");
        assert_eq!(bytes[0..4], 2u32.to_le_bytes());
        assert_eq!(bytes[4..12], 0x1122_3344_5566_7788u64.to_le_bytes());
    }

    #[test]
    fn page_list_parameter_matches_linux_wire_bytes() {
        let mut bytes = [0u8; 16];
        bytes[0..4].copy_from_slice(&10u32.to_le_bytes());
        bytes[4..8].copy_from_slice(&VMMDEV_PAGE_SIZE.to_le_bytes());
        bytes[8..12].copy_from_slice(&124u32.to_le_bytes());
        assert_eq!(
            HgcmParameter::decode(&bytes, Width::W64),
            Ok(HgcmParameter::PageList {
                kind: ParameterType::PAGE_LIST,
                size: 4096,
                offset: 124
            })
        );
    }

    #[test]
    fn embedded_parameter_packs_flags_and_offset_into_one_word() {
        let parameter = HgcmParameter::Embedded {
            flags: 2,
            offset: 0x0001_0203,
            size: 9,
        };
        let mut bytes = [0u8; 12];
        parameter.encode(Width::W32, &mut bytes).expect("fits");
        assert_eq!(bytes[4..8], 0x0102_0302u32.to_le_bytes());
        assert_eq!(bytes[8..12], 9u32.to_le_bytes());
    }

    #[test]
    fn embedded_offset_beyond_24_bits_is_not_encodable() {
        let parameter = HgcmParameter::Embedded {
            flags: 1,
            offset: 0x0100_0000,
            size: 0,
        };
        assert_eq!(
            parameter.to_wire64(),
            Err(EncodeError::EmbeddedOffsetTooLarge(0x0100_0000))
        );
    }

    #[test]
    fn kind_of_another_variant_is_not_encodable() {
        let lin_addr = HgcmParameter::LinAddr {
            kind: ParameterType::PAGE_LIST,
            size: 1,
            addr: 0,
        };
        assert_eq!(
            lin_addr.to_wire64(),
            Err(EncodeError::KindMismatch(ParameterType::PAGE_LIST))
        );
        let page_list = HgcmParameter::PageList {
            kind: ParameterType::EMBEDDED,
            size: 1,
            offset: 0,
        };
        assert_eq!(
            page_list.to_wire32(),
            Err(EncodeError::KindMismatch(ParameterType::EMBEDDED))
        );
        let other = HgcmParameter::Other(ParameterType::BIT32);
        assert_eq!(
            other.to_wire64(),
            Err(EncodeError::KindMismatch(ParameterType::BIT32))
        );
    }

    #[test]
    fn encode_into_short_buffer_fails() {
        let mut bytes = [0u8; 15];
        assert_eq!(
            HgcmParameter::U32(1).encode(Width::W64, &mut bytes),
            Err(EncodeError::BufferTooSmall {
                needed: 16,
                available: 15
            })
        );
    }

    #[test]
    fn decode_of_short_input_reports_truncation() {
        assert_eq!(
            HgcmParameter::decode(&[1, 0, 0, 0, 5], Width::W32),
            Err(DecodeError::Truncated {
                needed: 12,
                available: 5
            })
        );
    }

    #[test]
    fn decode_all_walks_the_parameter_array() {
        let mut bytes = [0u8; 2 * 16 + 3];
        HgcmParameter::U32(7)
            .encode(Width::W64, &mut bytes[..16])
            .expect("fits");
        HgcmParameter::U64(8)
            .encode(Width::W64, &mut bytes[16..32])
            .expect("fits");
        let decoded: std::vec::Vec<_> = HgcmParameter::decode_all(&bytes, Width::W64).collect();
        assert_eq!(decoded, [HgcmParameter::U32(7), HgcmParameter::U64(8)]);
    }

    #[test]
    fn decode_never_panics_and_reencodes_to_the_same_value() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for _ in 0..20_000 {
            let mut bytes = [0u8; 20];
            for byte in bytes.iter_mut() {
                *byte = rng.next() as u8;
            }
            // Bias the type word towards the defined range so every variant is exercised.
            if rng.next() % 4 != 0 {
                bytes[0..4].copy_from_slice(&((rng.next() % 16) as u32).to_le_bytes());
            }
            let len = (rng.next() % 21) as usize;
            for width in [Width::W32, Width::W64] {
                if let Ok(parameter) = HgcmParameter::decode(&bytes[..len], width) {
                    assert_eq!(round_trip(parameter, width), parameter);
                }
            }
        }
    }

    #[test]
    fn service_location_name_stops_at_the_nul() {
        let location =
            HgcmServiceLocation::new(LocationType::LOCAL_HOST_EXISTING, b"VBoxSharedFolders")
                .expect("short name");
        assert_eq!(location.service_name(), Some(&b"VBoxSharedFolders"[..]));
        assert_eq!(location.location_type(), LocationType::LOCAL_HOST_EXISTING);
    }

    #[test]
    fn service_location_without_nul_has_no_name() {
        let location = HgcmServiceLocation {
            location_type: U32::new(2),
            service_name: [b'x'; HGCM_SERVICE_NAME_SIZE],
        };
        assert_eq!(location.service_name(), None);
    }

    #[test]
    fn service_location_rejects_names_without_room_for_the_nul() {
        assert!(HgcmServiceLocation::new(LocationType::LOCAL_HOST, &[b'a'; 128]).is_none());
        assert!(HgcmServiceLocation::new(LocationType::LOCAL_HOST, &[b'a'; 127]).is_some());
        assert!(HgcmServiceLocation::new(LocationType::LOCAL_HOST, b"a\0b").is_none());
    }

    #[test]
    fn client_ids_are_valid_from_one_to_max() {
        assert!(!ClientId::INVALID.is_valid());
        assert!(ClientId::FIRST.is_valid());
        assert!(ClientId::MAX.is_valid());
        assert!(!ClientId(0x8000_0000).is_valid());
    }
}
