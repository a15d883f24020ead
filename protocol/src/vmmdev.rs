//! The VMMDev device: PCI identity, address spaces, the shared `VMMDevMemory` block, the request
//! header, request types and the bodies of every non-HGCM request.
//!
//! A guest talks to VMMDev by building a request in guest-physical memory (a 24-byte
//! [`RequestHeader`] followed by a type-specific body) and writing its address to the request
//! port ([`VMMDEV_PORT_OFF_REQUEST`] in BAR0). The host processes the request synchronously and
//! writes the status into `rc` and the outputs into the body. Host-to-guest notifications are
//! [`Events`] bits, signalled through the level-triggered INTx line and the `fHaveEvents` byte in
//! [`VmmDevMemory`] (BAR1).
//!
//! Every request struct here *includes* its header, so `size_of::<T>()` is the exact request size
//! VirtualBox checks for and all field offsets equal the offsets in the VMMDev reference. The HGCM
//! requests (types 60–65) live in [`crate::hgcm`].

use bitflags::bitflags;
use zerocopy::little_endian::{I32, U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::status::Status;

// ---------------------------------------------------------------------------------------------
// PCI identity
// ---------------------------------------------------------------------------------------------

/// PCI vendor ID (VirtualBox / InnoTek).
pub const PCI_VENDOR_ID: u16 = 0x80EE;
/// PCI device ID; the Linux driver matches exactly this vendor/device pair.
pub const PCI_DEVICE_ID: u16 = 0xCAFE;
/// Subsystem vendor ID. Must be 0: the Linux id table matches it literally.
pub const PCI_SUBSYSTEM_VENDOR_ID: u16 = 0;
/// Subsystem ID. Must be 0: the Linux id table matches it literally.
pub const PCI_SUBSYSTEM_ID: u16 = 0;
/// PCI base class: base system peripheral.
pub const PCI_CLASS_BASE: u8 = 0x08;
/// PCI sub-class: other system peripheral.
pub const PCI_CLASS_SUB: u8 = 0x80;
/// PCI programming interface.
pub const PCI_CLASS_PROG_IF: u8 = 0x00;
/// PCI revision ID.
pub const PCI_REVISION_ID: u8 = 0x00;
/// PCI interrupt pin: INTA# (legacy, level-triggered, shared).
pub const PCI_INTERRUPT_PIN: u8 = 0x01;

// ---------------------------------------------------------------------------------------------
// Address spaces
// ---------------------------------------------------------------------------------------------

/// Size of BAR0, the I/O port window.
pub const VMMDEV_IO_PORT_RANGE_SIZE: u32 = 0x20;
/// Offset in BAR0 (and BAR3) of the request port: a write of a request's guest-physical address.
pub const VMMDEV_PORT_OFF_REQUEST: u32 = 0;
/// Offset in BAR0 (and BAR3) of the fast IRQ acknowledge port: a 32-bit read acknowledges events
/// and returns them; a write is treated like a write to the request port.
pub const VMMDEV_PORT_OFF_REQUEST_FAST: u32 = 8;
/// Value a fast-acknowledge read returns when the guest has not reported a 1.04 interface.
pub const VMMDEV_FAST_ACK_NOT_READY: u32 = 0xFFFF_FFFF;
/// Size of BAR1, the "VMMDev RAM" holding [`VmmDevMemory`].
pub const VMMDEV_RAM_SIZE: u32 = 0x40_0000;
/// Size of BAR2, the optional heap used only by VirtualBox's real-mode emulation.
pub const VMMDEV_HEAP_SIZE: u32 = 0x4000;
/// Size of BAR3, the optional MMIO variant of the request and fast-acknowledge ports.
pub const VMMDEV_MMIO_SIZE: u32 = 0x1000;
/// Fixed ISA port for the backdoor log: byte writes, flushed to the host log at CR or LF.
pub const BACKDOOR_LOG_PORT: u16 = 0x504;
/// Longest backdoor log line VirtualBox buffers before flushing it without a line end.
pub const BACKDOOR_LOG_MAX_LINE: usize = 511;
/// Fixed ISA port for the time-sync backdoor (32-bit accesses only).
pub const BACKDOOR_TIME_PORT: u16 = 0x505;
/// Value written to [`BACKDOOR_TIME_PORT`] to select the high dword (a later read latches the time).
pub const BACKDOOR_TIME_SELECT_HIGH: u32 = 0;
/// Value written to [`BACKDOOR_TIME_PORT`] to select the low dword of the latched time.
pub const BACKDOOR_TIME_SELECT_LOW: u32 = 1;

// ---------------------------------------------------------------------------------------------
// Versions and limits
// ---------------------------------------------------------------------------------------------

/// Version every request header must carry; other versions are ignored without a write-back.
pub const REQUEST_HEADER_VERSION: u32 = 0x0001_0001;
/// VMMDev interface version current additions report in ReportGuestInfo (major 1, minor 4).
pub const VMMDEV_VERSION: u32 = 0x0001_0004;
/// Major part of [`VMMDEV_VERSION`].
pub const VMMDEV_VERSION_MAJOR: u16 = 1;
/// Minor part of [`VMMDEV_VERSION`].
pub const VMMDEV_VERSION_MINOR: u16 = 4;
/// The legacy 1.03 interface version (event delivery through `VmmDevMemory` words).
pub const VMMDEV_VERSION_1_03: u32 = 0x0001_0003;
/// Version of the [`VmmDevMemory`] structure; Linux refuses to bind to anything else.
pub const VMMDEV_MEMORY_VERSION: u32 = 1;
/// Largest request the host processes; larger ones get only the header back with
/// `VERR_NOT_SUPPORTED`.
pub const VMMDEV_MAX_VMMDEVREQ_SIZE: u32 = 0x10_0000;
/// Most parameters one HGCM call may carry.
pub const VMMDEV_MAX_HGCM_PARMS: u32 = 32;
/// Largest buffer one HGCM parameter may describe (128 MiB).
pub const VMMDEV_MAX_HGCM_DATA_SIZE: u32 = 0x800_0000;
/// Page size of every page list and balloon chunk, regardless of the guest's real page size.
pub const VMMDEV_PAGE_SIZE: u32 = 4096;
/// `log2(VMMDEV_PAGE_SIZE)`.
pub const VMMDEV_PAGE_SHIFT: u32 = 12;
/// Mask of the in-page offset bits of an address.
pub const VMMDEV_PAGE_OFFSET_MASK: u32 = 0xFFF;
/// Size of one balloon chunk (1 MiB).
pub const VMMDEV_MEMORY_BALLOON_CHUNK_SIZE: u32 = 0x10_0000;
/// Pages in one balloon chunk.
pub const VMMDEV_MEMORY_BALLOON_CHUNK_PAGES: usize = 256;
/// Largest share of guest RAM, in percent, the balloon may take.
pub const VMMDEV_MAX_MEMORY_BALLOON_PERCENT: u32 = 90;

// ---------------------------------------------------------------------------------------------
// VMMDev RAM (BAR1)
// ---------------------------------------------------------------------------------------------

/// Value the host writes into `VmmDevMemory::size`: the 16-byte header plus the legacy VBVA area.
/// Linux accepts any value from [`VMMDEV_MEMORY_MIN_SIZE`] up to the BAR size.
pub const VMMDEV_MEMORY_SIZE: u32 = 0x003F_FD28;
/// Smallest `VmmDevMemory::size` the Linux driver accepts.
pub const VMMDEV_MEMORY_MIN_SIZE: u32 = 32;
const _: () =
    assert!(VMMDEV_MEMORY_MIN_SIZE <= VMMDEV_MEMORY_SIZE && VMMDEV_MEMORY_SIZE <= VMMDEV_RAM_SIZE);
/// Offset in BAR1 of `VmmDevMemory::size`.
pub const VMMDEV_MEMORY_OFF_SIZE: u32 = 0x00;
/// Offset in BAR1 of `VmmDevMemory::version`.
pub const VMMDEV_MEMORY_OFF_VERSION: u32 = 0x04;
/// Offset in BAR1 of the `fHaveEvents` byte (interface 1.04).
pub const VMMDEV_MEMORY_OFF_HAVE_EVENTS: u32 = 0x08;
/// Offset in BAR1 of the legacy 1.03 host event word (overlays `fHaveEvents`).
pub const VMMDEV_MEMORY_OFF_LEGACY_HOST_EVENTS: u32 = 0x08;
/// Offset in BAR1 of the legacy 1.03 guest event mask word.
pub const VMMDEV_MEMORY_OFF_LEGACY_GUEST_EVENT_MASK: u32 = 0x0C;
/// Offset in BAR1 of the legacy VBVA area (`vbvaMemory`), used only by requests 70/71.
pub const VMMDEV_MEMORY_OFF_VBVA: u32 = 0x10;
/// Size of the legacy VBVA ring buffer; VideoAccelEnable must name exactly this size.
pub const VBVA_RING_BUFFER_SIZE: u32 = 0x3F_FC00;
/// Number of record slots in the legacy VBVA area.
pub const VBVA_MAX_RECORDS: u32 = 64;

/// The header of the shared "VMMDev RAM" block at the start of BAR1.
///
/// The host zeroes the whole BAR and writes `size` and `version` at construction and on every
/// reset. Bytes 8..16 are a union: interface 1.04 (all current guests) uses the
/// `have_events` byte; the legacy 1.03 interface uses two u32 words at the same place (see
/// [`VMMDEV_MEMORY_OFF_LEGACY_HOST_EVENTS`] and [`VMMDEV_MEMORY_OFF_LEGACY_GUEST_EVENT_MASK`]).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct VmmDevMemory {
    /// Size of the structure ([`VMMDEV_MEMORY_SIZE`]).
    pub size: U32,
    /// Structure version ([`VMMDEV_MEMORY_VERSION`]).
    pub version: U32,
    /// 1 while deliverable events are pending (the line is asserted), 0 after an acknowledge.
    /// The Linux ISR ignores the interrupt when this is 0.
    pub have_events: u8,
    /// Padding of the 1.04 layout.
    pub padding: [u8; 3],
    /// Legacy 1.03 guest event mask; unused by 1.04 guests.
    pub legacy_guest_event_mask: U32,
}

impl VmmDevMemory {
    /// The contents the host writes at construction and reset.
    pub fn initial() -> Self {
        Self {
            size: U32::new(VMMDEV_MEMORY_SIZE),
            version: U32::new(VMMDEV_MEMORY_VERSION),
            have_events: 0,
            padding: [0; 3],
            legacy_guest_event_mask: U32::ZERO,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Request types
// ---------------------------------------------------------------------------------------------

protocol_codes! {
    /// The `requestType` of a VMMDev request (`VMMDevRequestType`).
    pub struct RequestType(u32);
    /// Never valid; answered with `VERR_NOT_IMPLEMENTED`.
    INVALID_REQUEST = 0;
    /// Mouse features and absolute position ([`MouseStatusRequest`]).
    GET_MOUSE_STATUS = 1;
    /// Sets the guest-controlled mouse feature bits ([`MouseStatusRequest`]).
    SET_MOUSE_STATUS = 2;
    /// Cursor shape and visibility ([`MousePointerRequest`] + shape data).
    SET_POINTER_SHAPE = 3;
    /// Host version and feature bits ([`HostVersionRequest`]); allowed before ReportGuestInfo.
    GET_HOST_VERSION = 4;
    /// Obsolete: halts the calling vCPU; `rc` is left untouched.
    IDLE = 5;
    /// Host UTC time ([`HostTimeRequest`]).
    GET_HOST_TIME = 10;
    /// Hypervisor area query ([`HypervisorInfoRequest`]).
    GET_HYPERVISOR_INFO = 20;
    /// Hypervisor area placement ([`HypervisorInfoRequest`]).
    SET_HYPERVISOR_INFO = 21;
    /// Legacy raw-mode patch memory registration ([`PatchMemoryRequest`]).
    REGISTER_PATCH_MEMORY = 22;
    /// Legacy raw-mode patch memory deregistration ([`PatchMemoryRequest`]).
    DEREGISTER_PATCH_MEMORY = 23;
    /// Pause, power off or save the VM ([`PowerStateRequest`]).
    SET_POWER_STATUS = 30;
    /// Acknowledges pending events ([`EventsRequest`]).
    ACKNOWLEDGE_EVENTS = 41;
    /// Changes the guest event filter ([`MaskRequest`]).
    CTL_GUEST_FILTER_MASK = 42;
    /// Interface version and OS type ([`GuestInfoRequest`]); unlocks all other requests.
    REPORT_GUEST_INFO = 50;
    /// Deprecated single-display mode hint ([`DisplayChangeRequest`]).
    GET_DISPLAY_CHANGE_REQ = 51;
    /// Asks whether a video mode is supported ([`VideoModeSupportedRequest`]).
    VIDEO_MODE_SUPPORTED = 52;
    /// Height reduction of the host window ([`HeightReductionRequest`]).
    GET_HEIGHT_REDUCTION = 53;
    /// Mode hint with display index ([`DisplayChangeRequest2`]).
    GET_DISPLAY_CHANGE_REQ2 = 54;
    /// Legacy capability report ([`GuestCapabilitiesRequest`]).
    REPORT_GUEST_CAPABILITIES = 55;
    /// OR/NOT update of the guest capabilities ([`MaskRequest`]).
    SET_GUEST_CAPABILITIES = 56;
    /// Per-display video mode query ([`VideoModeSupported2Request`]).
    VIDEO_MODE_SUPPORTED2 = 57;
    /// Additions version, features and name ([`GuestInfo2Request`]); allowed before ReportGuestInfo.
    REPORT_GUEST_INFO2 = 58;
    /// Facility status update ([`GuestStatusRequest`]).
    REPORT_GUEST_STATUS = 59;
    /// HGCM connect ([`crate::hgcm::HgcmConnectRequest`]).
    HGCM_CONNECT = 60;
    /// HGCM disconnect ([`crate::hgcm::HgcmDisconnectRequest`]).
    HGCM_DISCONNECT = 61;
    /// HGCM call with 12-byte parameters ([`crate::hgcm::HgcmCallRequest`]).
    HGCM_CALL32 = 62;
    /// HGCM call with 16-byte parameters ([`crate::hgcm::HgcmCallRequest`]).
    HGCM_CALL64 = 63;
    /// Legacy in-place cancel of an HGCM request ([`crate::hgcm::HgcmCancelRequest`]).
    HGCM_CANCEL = 64;
    /// Cancel of an HGCM request by address ([`crate::hgcm::HgcmCancel2Request32`] or
    /// [`crate::hgcm::HgcmCancel2Request64`]).
    HGCM_CANCEL2 = 65;
    /// Legacy VBVA enable/disable ([`VideoAccelEnableRequest`]).
    VIDEO_ACCEL_ENABLE = 70;
    /// Legacy VBVA flush (header only).
    VIDEO_ACCEL_FLUSH = 71;
    /// Seamless visible region ([`VideoSetVisibleRegionRequest`] + rectangles).
    VIDEO_SET_VISIBLE_REGION = 72;
    /// Current seamless mode ([`SeamlessChangeRequest`]).
    GET_SEAMLESS_CHANGE_REQ = 73;
    /// User login/logout state ([`GuestUserStateRequest`] + strings).
    REPORT_GUEST_USER_STATE = 74;
    /// Mode hint with origin and enable flag ([`DisplayChangeRequestEx`]).
    GET_DISPLAY_CHANGE_REQ_EX = 80;
    /// Hints for all displays ([`DisplayChangeRequestMulti`] + [`DisplayDef`]s).
    GET_DISPLAY_CHANGE_REQ_MULTI = 81;
    /// Auto-logon credentials ([`CredentialsRequest`]).
    QUERY_CREDENTIALS = 100;
    /// The guest's verdict on credentials ([`CredentialsRequest`]).
    REPORT_CREDENTIALS_JUDGEMENT = 101;
    /// Guest performance statistics ([`GuestStatisticsRequest`]).
    REPORT_GUEST_STATS = 110;
    /// Requested balloon size ([`MemBalloonInfoRequest`]).
    GET_MEM_BALLOON_CHANGE_REQ = 111;
    /// Requested statistics interval ([`StatisticsChangeRequest`]).
    GET_STATISTICS_CHANGE_REQ = 112;
    /// Inflate or deflate one balloon chunk ([`ChangeMemBalloonRequest`]).
    CHANGE_MEM_BALLOON = 113;
    /// Remote display state ([`VrdpChangeRequest`]).
    GET_VRDP_CHANGE_REQ = 150;
    /// Debug log string (header + NUL-terminated text).
    LOG_STRING = 200;
    /// Pending CPU hot-plug event ([`CpuHotPlugRequest`]).
    GET_CPU_HOTPLUG_REQ = 210;
    /// Enables or disables CPU hot-plug monitoring ([`CpuHotPlugStatusRequest`]).
    SET_CPU_HOTPLUG_STATUS = 211;
    /// Page-fusion module registration ([`RegisterSharedModuleRequest`] + regions).
    REGISTER_SHARED_MODULE = 212;
    /// Page-fusion module removal ([`UnregisterSharedModuleRequest`]).
    UNREGISTER_SHARED_MODULE = 213;
    /// Page-fusion check (header only).
    CHECK_SHARED_MODULES = 214;
    /// Whether page fusion is enabled ([`PageSharingStatusRequest`]).
    GET_PAGE_SHARING_STATUS = 215;
    /// Debug aid for page fusion ([`DebugIsPageSharedRequest`]).
    DEBUG_IS_PAGE_SHARED = 216;
    /// 64-bit session ID ([`SessionIdRequest`]).
    GET_SESSION_ID = 217;
    /// Writes a VM core dump ([`WriteCoreDumpRequest`]); allowed before ReportGuestInfo.
    WRITE_CORE_DUMP = 218;
    /// Heartbeat tick (header only).
    GUEST_HEARTBEAT = 219;
    /// Heartbeat enable/disable ([`HeartbeatRequest`]).
    HEARTBEAT_CONFIGURE = 220;
    /// Windows bug-check report ([`NtBugCheckRequest`], or header only).
    NT_BUG_CHECK = 221;
    /// Monitor positions ([`VideoUpdateMonitorPositionsRequest`] + points).
    VIDEO_UPDATE_MONITOR_POSITIONS = 222;
    /// Mouse status with wheel and buttons ([`MouseStatusExRequest`]).
    GET_MOUSE_STATUS_EX = 223;
}

impl RequestType {
    /// Returns true for the request types the host accepts before the guest reported a
    /// compatible interface version through ReportGuestInfo.
    pub const fn allowed_before_guest_info(self) -> bool {
        matches!(
            self,
            Self::REPORT_GUEST_INFO
                | Self::REPORT_GUEST_INFO2
                | Self::WRITE_CORE_DUMP
                | Self::GET_HOST_VERSION
        )
    }

    /// Returns true for the HGCM request types (60–65).
    pub const fn is_hgcm(self) -> bool {
        matches!(self.0, 60..=65)
    }
}

// ---------------------------------------------------------------------------------------------
// Request header and requestor
// ---------------------------------------------------------------------------------------------

/// The 24-byte header that starts every VMMDev request (`VMMDevRequestHeader`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct RequestHeader {
    /// Total request size in bytes, including this header.
    pub size: U32,
    /// Must be [`REQUEST_HEADER_VERSION`].
    pub version: U32,
    /// The [`RequestType`].
    pub request_type: U32,
    /// Status written by the host ([`Status`]).
    pub rc: I32,
    /// Documented as must-be-zero but never checked: user-space pass-through requests from Linux
    /// arrive with the request size here. Hosts must not reject a non-zero value.
    pub reserved1: U32,
    /// [`Requestor`] bits; meaningful only if the guest announced
    /// [`GuestInfo2Features::REQUESTOR_INFO`].
    pub requestor: U32,
}

impl RequestHeader {
    /// A header as guests initialise it: the given size and type, the current version, `rc`
    /// pre-set to `VERR_GENERAL_FAILURE` so an ignored request is detectable.
    pub fn new(size: u32, request_type: RequestType, requestor: Requestor) -> Self {
        Self {
            size: U32::new(size),
            version: U32::new(REQUEST_HEADER_VERSION),
            request_type: U32::new(request_type.raw()),
            rc: I32::new(Status::VERR_GENERAL_FAILURE.raw()),
            reserved1: U32::ZERO,
            requestor: U32::new(requestor.raw()),
        }
    }

    /// The request type.
    pub fn request_type(&self) -> RequestType {
        RequestType(self.request_type.get())
    }

    /// The status in `rc`.
    pub fn status(&self) -> Status {
        Status(self.rc.get())
    }

    /// Stores a status into `rc`.
    pub fn set_status(&mut self, status: Status) {
        self.rc = I32::new(status.raw());
    }

    /// The requestor bits as sent by the guest.
    pub fn requestor(&self) -> Requestor {
        Requestor(self.requestor.get())
    }
}

protocol_codes! {
    /// The user class in bits 0–2 of the [`Requestor`] (`VMMDEV_REQUESTOR_USR_*`).
    pub struct RequestorUserClass(u32);
    /// Not given.
    NOT_GIVEN = 0;
    /// The guest's core driver (`vboxguest`).
    DRV = 1;
    /// Another kernel driver (e.g. `vboxsf`).
    DRV_OTHER = 2;
    /// Root or an administrator.
    ROOT = 3;
    /// Windows LocalSystem.
    SYSTEM = 4;
    /// Reserved; treat as [`RequestorUserClass::USER`].
    RESERVED1 = 5;
    /// A regular user.
    USER = 6;
    /// A guest or otherwise restricted account.
    GUEST = 7;
}

/// Requestor information in [`RequestHeader::requestor`] (`VMMDEV_REQUESTOR_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct Requestor(pub u32);

impl Requestor {
    /// Mask of the user class bits ([`RequestorUserClass`]).
    pub const USR_MASK: u32 = 0x7;
    /// Set for user-mode callers; clear for kernel callers.
    pub const USERMODE: u32 = 0x8;
    /// Mask of the console association bits.
    pub const CON_MASK: u32 = 0x30;
    /// Console association not known.
    pub const CON_DONT_KNOW: u32 = 0x00;
    /// The caller is not on the physical console.
    pub const CON_NO: u32 = 0x10;
    /// The caller is on the physical console.
    pub const CON_YES: u32 = 0x20;
    /// The caller is a console user, but this is unverified.
    pub const CON_USER: u32 = 0x30;
    /// The caller is in the special VirtualBox group.
    pub const GRP_VBOX: u32 = 0x80;
    /// The caller is in the wheel / Administrators group.
    pub const GRP_WHEEL: u32 = 0x100;
    /// Mask of the trust level bits.
    pub const TRUST_MASK: u32 = 0x7000;
    /// Trust level not given (always the case for Linux guests).
    pub const TRUST_NOT_GIVEN: u32 = 0x0000;
    /// Untrusted.
    pub const TRUST_UNTRUSTED: u32 = 0x1000;
    /// Low integrity.
    pub const TRUST_LOW: u32 = 0x2000;
    /// Medium integrity.
    pub const TRUST_MEDIUM: u32 = 0x3000;
    /// Medium-plus integrity.
    pub const TRUST_MEDIUM_PLUS: u32 = 0x4000;
    /// High integrity.
    pub const TRUST_HIGH: u32 = 0x5000;
    /// System integrity.
    pub const TRUST_SYSTEM: u32 = 0x6000;
    /// Protected (or higher) integrity.
    pub const TRUST_PROTECTED: u32 = 0x7000;
    /// The caller used the less trusted user device node (`/dev/vboxuser`).
    pub const USER_DEVICE: u32 = 0x8000;
    /// There is no user device node.
    pub const NO_USER_DEVICE: u32 = 0x1_0000;

    /// Host-internal: the guest did not announce requestor information.
    pub const LEGACY: Self = Self(0xFFFF_FFFF);
    /// Host-internal: the least trusted combination (untrusted user on the user device, not on
    /// the console, user mode, guest class); returned by host getters on error.
    pub const LOWEST: Self = Self(0x0000_901F);
    /// What `vboxguest` sends for its own requests (kernel, core driver).
    pub const KERNEL_DRIVER: Self = Self(0x1);
    /// What `vboxsf` sends (kernel, other driver).
    pub const KERNEL_OTHER_DRIVER: Self = Self(0x2);

    /// The raw value.
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// Returns true for the host-internal [`Requestor::LEGACY`] value.
    pub const fn is_legacy(self) -> bool {
        self.0 == Self::LEGACY.0
    }

    /// The user class (bits 0–2).
    pub const fn user_class(self) -> RequestorUserClass {
        RequestorUserClass(self.0 & Self::USR_MASK)
    }

    /// Returns true if the caller runs in user mode.
    pub const fn is_user_mode(self) -> bool {
        self.0 & Self::USERMODE != 0
    }

    /// The console association bits (one of the `CON_*` values).
    pub const fn console(self) -> u32 {
        self.0 & Self::CON_MASK
    }

    /// Returns true if the caller is in the VirtualBox group.
    pub const fn is_in_vbox_group(self) -> bool {
        self.0 & Self::GRP_VBOX != 0
    }

    /// Returns true if the caller is in the wheel / Administrators group.
    pub const fn is_in_wheel_group(self) -> bool {
        self.0 & Self::GRP_WHEEL != 0
    }

    /// The trust level bits (one of the `TRUST_*` values).
    pub const fn trust_level(self) -> u32 {
        self.0 & Self::TRUST_MASK
    }

    /// Returns true if the caller used the user device node (`/dev/vboxuser`).
    pub const fn is_user_device(self) -> bool {
        self.0 & Self::USER_DEVICE != 0
    }

    /// Returns true if the guest has no user device node at all.
    pub const fn has_no_user_device(self) -> bool {
        self.0 & Self::NO_USER_DEVICE != 0
    }
}

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

bitflags! {
    /// Host-to-guest event bits (`VMMDEV_EVENT_*`), used in the filter mask, the acknowledge
    /// reply and the fast-acknowledge port.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct Events: u32 {
        /// The host-side mouse capability bits changed.
        const MOUSE_CAPABILITIES_CHANGED = 0x001;
        /// An HGCM request completed.
        const HGCM = 0x002;
        /// A display change (video mode hint) is pending.
        const DISPLAY_CHANGE_REQUEST = 0x004;
        /// Credentials for judgement were supplied.
        const JUDGE_CREDENTIALS = 0x008;
        /// The VM was restored from a saved state.
        const RESTORED = 0x010;
        /// Seamless mode was toggled.
        const SEAMLESS_MODE_CHANGE_REQUEST = 0x020;
        /// The requested balloon size changed.
        const BALLOON_CHANGE_REQUEST = 0x040;
        /// The statistics interval changed.
        const STATISTICS_INTERVAL_CHANGE_REQUEST = 0x080;
        /// Remote display state changed.
        const VRDP = 0x100;
        /// Absolute pointer position, wheel or buttons changed.
        const MOUSE_POSITION_CHANGED = 0x200;
        /// A CPU was hot-plugged or unplugged.
        const CPU_HOTPLUG = 0x400;
    }
}

/// Mask of every defined event bit.
pub const VMMDEV_EVENT_VALID_EVENT_MASK: u32 = 0x7FF;

// ---------------------------------------------------------------------------------------------
// Mouse (1, 2, 3, 223)
// ---------------------------------------------------------------------------------------------

bitflags! {
    /// Mouse feature bits (`VMMDEV_MOUSE_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct MouseFeatures: u32 {
        /// The guest can handle absolute coordinates.
        const GUEST_CAN_ABSOLUTE = 0x001;
        /// The host wants to send absolute coordinates.
        const HOST_WANTS_ABSOLUTE = 0x002;
        /// The guest cannot draw a software cursor and needs the host cursor.
        const GUEST_NEEDS_HOST_CURSOR = 0x004;
        /// The host cannot draw a hardware pointer.
        const HOST_CANNOT_HWPOINTER = 0x008;
        /// The guest reads positions through events (MOUSE_POSITION_CHANGED).
        const NEW_PROTOCOL = 0x010;
        /// The host re-checks GUEST_NEEDS_HOST_CURSOR when it changes.
        const HOST_RECHECKS_NEEDS_HOST_CURSOR = 0x020;
        /// The host provides an absolute pointing device.
        const HOST_HAS_ABS_DEV = 0x040;
        /// The guest uses the full-state protocol (GetMouseStatusEx).
        const GUEST_USES_FULL_STATE_PROTOCOL = 0x080;
        /// The host supports the full-state protocol.
        const HOST_SUPPORTS_FULL_STATE_PROTOCOL = 0x100;
    }
}

impl MouseFeatures {
    /// The bits the guest may change with SetMouseStatus.
    pub const GUEST_MASK: Self = Self::from_bits_retain(0x095);
    /// The bits only the host changes.
    pub const HOST_MASK: Self = Self::from_bits_retain(0x16A);
}

/// Smallest absolute pointer coordinate.
pub const VMMDEV_MOUSE_RANGE_MIN: i32 = 0;
/// Largest absolute pointer coordinate.
pub const VMMDEV_MOUSE_RANGE_MAX: i32 = 0xFFFF;

/// GetMouseStatus (1) / SetMouseStatus (2), 36 bytes (`VMMDevReqMouseStatus`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct MouseStatusRequest {
    /// Request header.
    pub header: RequestHeader,
    /// [`MouseFeatures`] bits: in for 2, out for 1.
    pub mouse_features: U32,
    /// Absolute X position, 0..=0xFFFF (out for 1; ignored by 2).
    pub pointer_x: I32,
    /// Absolute Y position, 0..=0xFFFF (out for 1; ignored by 2).
    pub pointer_y: I32,
}

bitflags! {
    /// Mouse button bits of GetMouseStatusEx.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct MouseButtons: u32 {
        /// Left button.
        const LEFT = 0x01;
        /// Right button.
        const RIGHT = 0x02;
        /// Middle button.
        const MIDDLE = 0x04;
        /// First extra button.
        const X1 = 0x08;
        /// Second extra button.
        const X2 = 0x10;
    }
}

/// GetMouseStatusEx (223), 48 bytes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct MouseStatusExRequest {
    /// The [`MouseStatusRequest`] part.
    pub core: MouseStatusRequest,
    /// Vertical wheel delta (out).
    pub dz: I32,
    /// Horizontal wheel delta (out).
    pub dw: I32,
    /// [`MouseButtons`] (out).
    pub buttons: U32,
}

bitflags! {
    /// Flags of SetPointerShape (`VBOX_MOUSE_POINTER_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct PointerFlags: u32 {
        /// The pointer is visible.
        const VISIBLE = 0x1;
        /// The shape has an alpha channel.
        const ALPHA = 0x2;
        /// A shape follows the fixed part.
        const SHAPE = 0x4;
    }
}

/// Largest pointer width or height SetPointerShape accepts.
pub const MOUSE_POINTER_MAX_DIMENSION: u32 = 8192;
/// Smallest SetPointerShape request; a request of exactly this size is a visibility update only.
pub const MOUSE_POINTER_MIN_REQUEST_SIZE: u32 = 48;

/// The fixed part of SetPointerShape (3), `VMMDevReqMousePointer` without its shape data.
///
/// The shape follows at offset 44: an AND mask of `((width + 7) / 8) * height` bytes padded to a
/// multiple of 4, then `width * height` 32-bit BGRA pixels.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct MousePointerRequest {
    /// Request header.
    pub header: RequestHeader,
    /// [`PointerFlags`].
    pub flags: U32,
    /// Hot spot X.
    pub x_hot: U32,
    /// Hot spot Y.
    pub y_hot: U32,
    /// Width in pixels (at most [`MOUSE_POINTER_MAX_DIMENSION`]).
    pub width: U32,
    /// Height in pixels (at most [`MOUSE_POINTER_MAX_DIMENSION`]).
    pub height: U32,
}

// ---------------------------------------------------------------------------------------------
// Host version (4), host time (10), hypervisor (20, 21), patch memory (22, 23), power (30)
// ---------------------------------------------------------------------------------------------

bitflags! {
    /// Host feature bits returned by GetHostVersion (`VMMDEV_HVF_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct HostFeatures: u32 {
        /// HGCM accepts PageList parameters. Linux refuses to load without it.
        const HGCM_PHYS_PAGE_LIST = 0x0000_0001;
        /// HGCM accepts Embedded parameters.
        const HGCM_EMBEDDED_BUFFERS = 0x0000_0002;
        /// HGCM accepts ContiguousPageList parameters.
        const HGCM_CONTIGUOUS_PAGE_LIST = 0x0000_0004;
        /// HGCM accepts NoBouncePageList parameters.
        const HGCM_NO_BOUNCE_PAGE_LIST = 0x0000_0008;
        /// The fast IRQ acknowledge port read is supported.
        const FAST_IRQ_ACK = 0x8000_0000;
    }
}

/// GetHostVersion (4), 40 bytes (`VMMDevReqHostVersion`). All body fields are out.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct HostVersionRequest {
    /// Request header.
    pub header: RequestHeader,
    /// Major version.
    pub major: U16,
    /// Minor version.
    pub minor: U16,
    /// Build number.
    pub build: U32,
    /// Source revision.
    pub revision: U32,
    /// [`HostFeatures`].
    pub features: U32,
}

/// GetHostTime (10), 32 bytes (`VMMDevReqHostTime`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct HostTimeRequest {
    /// Request header.
    pub header: RequestHeader,
    /// Host UTC time in milliseconds since 1970-01-01 (out).
    pub time_ms: U64,
}

/// GetHypervisorInfo (20) / SetHypervisorInfo (21), 32 bytes (`VMMDevReqHypervisorInfo`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct HypervisorInfoRequest {
    /// Request header.
    pub header: RequestHeader,
    /// Guest-virtual start of the area (21: in).
    pub hypervisor_start: U32,
    /// Size of the area (20: out, answer 0; 21: in).
    pub hypervisor_size: U32,
}

/// RegisterPatchMemory (22) / DeregisterPatchMemory (23), 36 bytes (`VMMDevReqPatchMemory`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct PatchMemoryRequest {
    /// Request header.
    pub header: RequestHeader,
    /// Guest-virtual address of the patch memory.
    pub patch_mem: U64,
    /// Size of the patch memory.
    pub patch_mem_size: U32,
}

protocol_codes! {
    /// The power action of SetPowerStatus (`VMMDevPowerState`).
    pub struct PowerState(u32);
    /// Invalid.
    INVALID = 0;
    /// Pause the VM.
    PAUSE = 1;
    /// Power the VM off.
    POWER_OFF = 2;
    /// Save the VM state and power off.
    SAVE_STATE = 3;
}

/// SetPowerStatus (30), 28 bytes (`VMMDevPowerStateRequest`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct PowerStateRequest {
    /// Request header.
    pub header: RequestHeader,
    /// [`PowerState`].
    pub power_state: U32,
}

// ---------------------------------------------------------------------------------------------
// Events (41) and masks (42, 56)
// ---------------------------------------------------------------------------------------------

/// AcknowledgeEvents (41), 28 bytes (`VMMDevEvents`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct EventsRequest {
    /// Request header.
    pub header: RequestHeader,
    /// The acknowledged [`Events`] (out).
    pub events: U32,
}

/// CtlGuestFilterMask (42) and SetGuestCapabilities (56), 32 bytes
/// (`VMMDevCtlGuestFilterMask`, `VMMDevReqGuestCapabilities2`): the new mask is
/// `(old | or_mask) & !not_mask`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct MaskRequest {
    /// Request header.
    pub header: RequestHeader,
    /// Bits to set.
    pub or_mask: U32,
    /// Bits to clear.
    pub not_mask: U32,
}

// ---------------------------------------------------------------------------------------------
// Guest info (50, 58), status (59), user state (74)
// ---------------------------------------------------------------------------------------------

/// OS type value Linux 2.6+ reports in ReportGuestInfo (`VBOXOSTYPE_Linux26`).
pub const VBOXOSTYPE_LINUX26: u32 = 0x5_3000;
/// Flag OR-ed into the OS type by 64-bit guests (`VBOXOSTYPE_x64`).
pub const VBOXOSTYPE_X64: u32 = 0x100;

/// ReportGuestInfo (50), 32 bytes (`VMMDevReportGuestInfo`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct GuestInfoRequest {
    /// Request header.
    pub header: RequestHeader,
    /// Interface version the additions speak ([`VMMDEV_VERSION`]); compatible when the major part
    /// is 1 and the minor part at most 4.
    pub interface_version: U32,
    /// `VBOXOSTYPE` of the guest.
    pub os_type: U32,
}

bitflags! {
    /// Additions feature bits of ReportGuestInfo2 (`VBOXGSTINFO2_F_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct GuestInfo2Features: u32 {
        /// The guest fills in [`RequestHeader::requestor`]; the host honours it for HGCM.
        const REQUESTOR_INFO = 0x1;
    }
}

/// Size of the additions name field of ReportGuestInfo2.
pub const GUEST_INFO2_NAME_SIZE: usize = 128;

/// ReportGuestInfo2 (58), 168 bytes (`VMMDevReportGuestInfo2`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct GuestInfo2Request {
    /// Request header.
    pub header: RequestHeader,
    /// Additions major version.
    pub additions_major: U16,
    /// Additions minor version.
    pub additions_minor: U16,
    /// Additions build number.
    pub additions_build: U32,
    /// Additions source revision.
    pub additions_revision: U32,
    /// [`GuestInfo2Features`].
    pub additions_features: U32,
    /// NUL-terminated name starting with "major.minor.build".
    pub name: [u8; GUEST_INFO2_NAME_SIZE],
}

protocol_codes! {
    /// A guest facility (`VBoxGuestFacilityType`).
    pub struct FacilityType(u32);
    /// Unknown.
    UNKNOWN = 0;
    /// The guest kernel driver.
    VBOXGUEST_DRIVER = 20;
    /// Auto-logon components (VBoxGINA, VBoxCredProv, pam_vbox).
    AUTO_LOGON = 90;
    /// VBoxService.
    VBOX_SERVICE = 100;
    /// VBoxTray (Windows) / VBoxClient (Linux, Unix).
    VBOX_TRAY_CLIENT = 101;
    /// Seamless mode.
    SEAMLESS = 1000;
    /// Graphics.
    GRAPHICS = 1100;
    /// Monitor attach.
    MONITOR_ATTACH = 1101;
    /// All facilities at once.
    ALL = 0x7FFF_FFFE;
}

protocol_codes! {
    /// The status of a guest facility (`VBoxGuestFacilityStatus`).
    pub struct FacilityStatus(u32);
    /// Inactive.
    INACTIVE = 0;
    /// Paused.
    PAUSED = 1;
    /// Pre-initialising.
    PRE_INIT = 20;
    /// Initialising.
    INIT = 30;
    /// Active.
    ACTIVE = 50;
    /// Terminating.
    TERMINATING = 100;
    /// Terminated.
    TERMINATED = 101;
    /// Failed.
    FAILED = 800;
    /// Unknown.
    UNKNOWN = 999;
}

/// ReportGuestStatus (59), 36 bytes (`VMMDevReportGuestStatus`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct GuestStatusRequest {
    /// Request header.
    pub header: RequestHeader,
    /// [`FacilityType`].
    pub facility: U32,
    /// [`FacilityStatus`] (must fit in 16 bits).
    pub status: U32,
    /// Flags; stored but unused.
    pub flags: U32,
}

/// Largest ReportGuestUserState request.
pub const GUEST_USER_STATE_MAX_REQUEST_SIZE: u32 = 2048;
/// Largest user name part (including the NUL).
pub const GUEST_USER_STATE_MAX_USER_SIZE: u32 = 256;
/// Largest domain part (including the NUL).
pub const GUEST_USER_STATE_MAX_DOMAIN_SIZE: u32 = 256;
/// Largest details part.
pub const GUEST_USER_STATE_MAX_DETAILS_SIZE: u32 = 1024;

/// The fixed part of ReportGuestUserState (74), followed at offset 40 by the user name, the
/// domain and the details (`cbUser`, `cbDomain`, `cbDetails` bytes).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct GuestUserStateRequest {
    /// Request header.
    pub header: RequestHeader,
    /// The reported user state.
    pub state: U32,
    /// Size of the user name including its NUL (1..=256).
    pub user_size: U32,
    /// Size of the domain including its NUL (0..=256).
    pub domain_size: U32,
    /// Size of the details (0..=1024).
    pub details_size: U32,
}

// ---------------------------------------------------------------------------------------------
// Display (51, 52, 53, 54, 57, 80, 81, 222), capabilities (55), video acceleration (70, 72)
// ---------------------------------------------------------------------------------------------

/// GetDisplayChangeRequest (51), 40 bytes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct DisplayChangeRequest {
    /// Request header.
    pub header: RequestHeader,
    /// Horizontal resolution (out).
    pub xres: U32,
    /// Vertical resolution (out).
    pub yres: U32,
    /// Bits per pixel (out).
    pub bpp: U32,
    /// [`Events::DISPLAY_CHANGE_REQUEST`] to mark the hint as read (in).
    pub event_ack: U32,
}

/// GetDisplayChangeRequest2 (54), 44 bytes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct DisplayChangeRequest2 {
    /// Request header.
    pub header: RequestHeader,
    /// Horizontal resolution (out).
    pub xres: U32,
    /// Vertical resolution (out).
    pub yres: U32,
    /// Bits per pixel (out).
    pub bpp: U32,
    /// [`Events::DISPLAY_CHANGE_REQUEST`] to mark the hint as read (in).
    pub event_ack: U32,
    /// Display index (out).
    pub display: U32,
}

/// GetDisplayChangeRequestEx (80), 56 bytes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct DisplayChangeRequestEx {
    /// Request header.
    pub header: RequestHeader,
    /// Horizontal resolution (out).
    pub xres: U32,
    /// Vertical resolution (out).
    pub yres: U32,
    /// Bits per pixel (out).
    pub bpp: U32,
    /// [`Events::DISPLAY_CHANGE_REQUEST`] to mark the hint as read (in).
    pub event_ack: U32,
    /// Display index (out).
    pub display: U32,
    /// Origin X (out).
    pub origin_x: U32,
    /// Origin Y (out).
    pub origin_y: U32,
    /// Whether the origin changed (bool, out).
    pub change_origin: u8,
    /// Whether the display is enabled (bool, out).
    pub enabled: u8,
    /// Padding.
    pub padding: [u8; 2],
}

/// Largest display count GetDisplayChangeRequestMulti accepts.
pub const DISPLAY_CHANGE_MULTI_MAX_DISPLAYS: u32 = 64;

/// The fixed part of GetDisplayChangeRequestMulti (81), followed by `display_count`
/// [`DisplayDef`]s.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct DisplayChangeRequestMulti {
    /// Request header.
    pub header: RequestHeader,
    /// [`Events::DISPLAY_CHANGE_REQUEST`] to mark the hints as read (in).
    pub event_ack: U32,
    /// In: capacity of the array (1..=64). Out (when acknowledging): pending displays.
    pub display_count: U32,
}

bitflags! {
    /// Flags of a [`DisplayDef`] (`VMMDEV_DISPLAY_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct DisplayFlags: u32 {
        /// The primary display.
        const PRIMARY = 0x01;
        /// The display is disabled.
        const DISABLED = 0x02;
        /// The origin fields are valid.
        const ORIGIN = 0x04;
        /// The width is valid.
        const CX = 0x08;
        /// The height is valid.
        const CY = 0x10;
        /// The colour depth is valid.
        const BPP = 0x20;
    }
}

/// One display definition of GetDisplayChangeRequestMulti, 28 bytes (`VMMDevDisplayDef`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct DisplayDef {
    /// [`DisplayFlags`].
    pub flags: U32,
    /// Display index.
    pub display_id: U32,
    /// Origin X.
    pub origin_x: I32,
    /// Origin Y.
    pub origin_y: I32,
    /// Width.
    pub cx: U32,
    /// Height.
    pub cy: U32,
    /// Bits per pixel.
    pub bits_per_pixel: U32,
}

/// VideoModeSupported (52), 40 bytes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct VideoModeSupportedRequest {
    /// Request header.
    pub header: RequestHeader,
    /// Width (in).
    pub width: U32,
    /// Height (in).
    pub height: U32,
    /// Bits per pixel (in).
    pub bpp: U32,
    /// Whether the mode is supported (bool, out).
    pub supported: u8,
    /// Padding.
    pub padding: [u8; 3],
}

/// VideoModeSupported2 (57), 44 bytes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct VideoModeSupported2Request {
    /// Request header.
    pub header: RequestHeader,
    /// Display index (in).
    pub display: U32,
    /// Width (in).
    pub width: U32,
    /// Height (in).
    pub height: U32,
    /// Bits per pixel (in).
    pub bpp: U32,
    /// Whether the mode is supported (bool, out).
    pub supported: u8,
    /// Padding.
    pub padding: [u8; 3],
}

/// GetHeightReduction (53), 28 bytes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct HeightReductionRequest {
    /// Request header.
    pub header: RequestHeader,
    /// Height reduction in pixels (out).
    pub height_reduction: U32,
}

bitflags! {
    /// Guest capability bits (`VMMDEV_GUEST_SUPPORTS_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct GuestCapabilities: u32 {
        /// Seamless display rendering.
        const SEAMLESS = 0x1;
        /// Guest-to-host window mapping.
        const GUEST_HOST_WINDOW_MAPPING = 0x2;
        /// The graphical additions are active.
        const GRAPHICS = 0x4;
    }
}

/// ReportGuestCapabilities (55), 28 bytes (legacy; the host always adds GRAPHICS).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct GuestCapabilitiesRequest {
    /// Request header.
    pub header: RequestHeader,
    /// [`GuestCapabilities`].
    pub caps: U32,
}

bitflags! {
    /// Status bits of VideoAccelEnable (`VBVA_F_STATUS_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct VideoAccelStatus: u32 {
        /// The request was accepted.
        const ACCEPTED = 0x1;
        /// Acceleration is enabled.
        const ENABLED = 0x2;
    }
}

/// VideoAccelEnable (70), 36 bytes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct VideoAccelEnableRequest {
    /// Request header.
    pub header: RequestHeader,
    /// Non-zero to enable.
    pub enable: U32,
    /// Ring buffer size; must be [`VBVA_RING_BUFFER_SIZE`].
    pub ring_buffer_size: U32,
    /// [`VideoAccelStatus`] (out).
    pub status: U32,
}

/// Largest element count of VideoSetVisibleRegion and VideoUpdateMonitorPositions.
pub const VIDEO_MAX_ELEMENTS: u32 = 1 << 20;

/// The fixed part of VideoSetVisibleRegion (72), followed by `rect_count` [`Rect`]s; the size must
/// be exactly `28 + 16 * rect_count`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct VideoSetVisibleRegionRequest {
    /// Request header.
    pub header: RequestHeader,
    /// Number of rectangles.
    pub rect_count: U32,
}

/// A rectangle of VideoSetVisibleRegion, 16 bytes (`RTRECT`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct Rect {
    /// Left edge.
    pub left: I32,
    /// Top edge.
    pub top: I32,
    /// Right edge.
    pub right: I32,
    /// Bottom edge.
    pub bottom: I32,
}

/// The fixed part of VideoUpdateMonitorPositions (222), followed by `position_count` [`Point`]s;
/// the size must be exactly `28 + 8 * position_count`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct VideoUpdateMonitorPositionsRequest {
    /// Request header.
    pub header: RequestHeader,
    /// Number of positions.
    pub position_count: U32,
}

/// A monitor position of VideoUpdateMonitorPositions, 8 bytes (`RTPOINT`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct Point {
    /// X.
    pub x: I32,
    /// Y.
    pub y: I32,
}

protocol_codes! {
    /// Seamless mode (`VMMDevSeamlessMode`).
    pub struct SeamlessMode(u32);
    /// Seamless mode off.
    DISABLED = 0;
    /// Visible-region seamless mode.
    VISIBLE_REGION = 1;
}

/// GetSeamlessChangeRequest (73), 32 bytes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct SeamlessChangeRequest {
    /// Request header.
    pub header: RequestHeader,
    /// [`SeamlessMode`] (out).
    pub mode: U32,
    /// [`Events::SEAMLESS_MODE_CHANGE_REQUEST`] to mark the mode as read (in).
    pub event_ack: U32,
}

// ---------------------------------------------------------------------------------------------
// Credentials (100, 101), statistics (110, 112), balloon (111, 113), VRDP (150)
// ---------------------------------------------------------------------------------------------

bitflags! {
    /// Flags of QueryCredentials / ReportCredentialsJudgement (`VMMDEV_CREDENTIALS_*`,
    /// `VMMDEV_SETCREDENTIALS_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct CredentialsFlags: u32 {
        /// Query whether credentials are present.
        const QUERY_PRESENCE = 0x0002;
        /// Read the credentials.
        const READ = 0x0004;
        /// Clear the credentials.
        const CLEAR = 0x0008;
        /// Read the credentials kept for judgement.
        const READ_JUDGE = 0x0100;
        /// Clear the judgement copy.
        const CLEAR_JUDGE = 0x0200;
        /// Verdict: credentials OK.
        const JUDGE_OK = 0x0400;
        /// Verdict: deny.
        const JUDGE_DENY = 0x0800;
        /// Verdict: no judgement possible.
        const JUDGE_NOJUDGEMENT = 0x1000;
        /// Host reply: credentials are present.
        const PRESENT = 0x1_0000;
        /// Host reply: the guest must not log on locally.
        const NO_LOCAL_LOGON = 0x2_0000;
    }
}

/// Size of each string field of the credentials requests.
pub const CREDENTIALS_STRING_SIZE: usize = 128;

/// QueryCredentials (100) / ReportCredentialsJudgement (101), 412 bytes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct CredentialsRequest {
    /// Request header.
    pub header: RequestHeader,
    /// [`CredentialsFlags`] (in/out).
    pub flags: U32,
    /// NUL-terminated user name.
    pub user_name: [u8; CREDENTIALS_STRING_SIZE],
    /// NUL-terminated password.
    pub password: [u8; CREDENTIALS_STRING_SIZE],
    /// NUL-terminated domain.
    pub domain: [u8; CREDENTIALS_STRING_SIZE],
}

/// ReportGuestStats (110), 100 bytes (`VMMDevReportGuestStats`). Memory counts are in 4 KiB
/// pages.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct GuestStatisticsRequest {
    /// Request header.
    pub header: RequestHeader,
    /// CPU the statistics refer to.
    pub cpu_id: U32,
    /// Mask of the valid fields.
    pub stat_caps: U32,
    /// Idle CPU load (percent).
    pub cpu_load_idle: U32,
    /// Kernel CPU load (percent).
    pub cpu_load_kernel: U32,
    /// User CPU load (percent).
    pub cpu_load_user: U32,
    /// Number of threads.
    pub threads: U32,
    /// Number of processes.
    pub processes: U32,
    /// Number of handles.
    pub handles: U32,
    /// Memory load (percent).
    pub memory_load: U32,
    /// Guest page size.
    pub page_size: U32,
    /// Total physical memory.
    pub phys_mem_total: U32,
    /// Available physical memory.
    pub phys_mem_avail: U32,
    /// Memory in the balloon.
    pub phys_mem_balloon: U32,
    /// Committed memory.
    pub mem_commit_total: U32,
    /// Kernel memory.
    pub mem_kernel_total: U32,
    /// Paged kernel memory.
    pub mem_kernel_paged: U32,
    /// Non-paged kernel memory.
    pub mem_kernel_nonpaged: U32,
    /// System cache.
    pub mem_system_cache: U32,
    /// Page file size.
    pub page_file_size: U32,
}

/// GetMemBalloonChangeRequest (111), 36 bytes (`VMMDevGetMemBalloonChangeRequest`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct MemBalloonInfoRequest {
    /// Request header.
    pub header: RequestHeader,
    /// Requested balloon size in 1 MiB chunks (out).
    pub balloon_chunks: U32,
    /// Guest RAM size in MiB (out).
    pub phys_mem_chunks: U32,
    /// [`Events::BALLOON_CHANGE_REQUEST`] to mark the request as read (in).
    pub event_ack: U32,
}

/// ChangeMemBalloon (113), 2080 bytes (`VMMDevChangeMemBalloon`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct ChangeMemBalloonRequest {
    /// Request header.
    pub header: RequestHeader,
    /// Number of pages; must be [`VMMDEV_MEMORY_BALLOON_CHUNK_PAGES`].
    pub page_count: U32,
    /// Non-zero to inflate (pages go to the host), zero to deflate.
    pub inflate: U32,
    /// Page-aligned guest-physical page addresses.
    pub pages: [U64; VMMDEV_MEMORY_BALLOON_CHUNK_PAGES],
}

/// GetStatisticsChangeRequest (112), 32 bytes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct StatisticsChangeRequest {
    /// Request header.
    pub header: RequestHeader,
    /// Requested statistics interval in seconds (out).
    pub stat_interval: U32,
    /// [`Events::STATISTICS_INTERVAL_CHANGE_REQUEST`] to mark the interval as read (in).
    pub event_ack: U32,
}

/// GetVRDPChangeRequest (150), 32 bytes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct VrdpChangeRequest {
    /// Request header.
    pub header: RequestHeader,
    /// Whether remote display is active (out).
    pub vrdp_active: u8,
    /// Padding.
    pub padding: [u8; 3],
    /// Experience level 0..=4 (out).
    pub experience_level: U32,
}

// ---------------------------------------------------------------------------------------------
// CPU hot-plug (210, 211)
// ---------------------------------------------------------------------------------------------

protocol_codes! {
    /// CPU hot-plug event type (`VMMDevCpuEventType`).
    pub struct CpuEventType(u32);
    /// Invalid.
    INVALID = 0;
    /// No event pending.
    NONE = 1;
    /// A CPU was plugged.
    PLUG = 2;
    /// A CPU is to be unplugged.
    UNPLUG = 3;
}

/// GetCpuHotPlugRequest (210), 36 bytes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct CpuHotPlugRequest {
    /// Request header.
    pub header: RequestHeader,
    /// [`CpuEventType`] (out).
    pub event_type: U32,
    /// Core ID (out).
    pub core_id: U32,
    /// Package ID (out).
    pub package_id: U32,
}

protocol_codes! {
    /// CPU hot-plug monitoring status (`VMMDevCpuStatusType`).
    pub struct CpuStatusType(u32);
    /// Invalid.
    INVALID = 0;
    /// Disable monitoring.
    DISABLE = 1;
    /// Enable monitoring.
    ENABLE = 2;
}

/// SetCpuHotPlugStatus (211), 28 bytes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct CpuHotPlugStatusRequest {
    /// Request header.
    pub header: RequestHeader,
    /// [`CpuStatusType`].
    pub status_type: U32,
}

// ---------------------------------------------------------------------------------------------
// Page sharing (212–216)
// ---------------------------------------------------------------------------------------------

/// Size of a shared module's name field.
pub const SHARED_MODULE_NAME_SIZE: usize = 128;
/// Size of a shared module's version field.
pub const SHARED_MODULE_VERSION_SIZE: usize = 16;

/// The fixed part of RegisterSharedModule (212), followed by `region_count`
/// [`SharedRegionDescriptor`]s; the size must be exactly `192 + 16 * region_count`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct RegisterSharedModuleRequest {
    /// Request header.
    pub header: RequestHeader,
    /// Module size.
    pub module_size: U32,
    /// Number of regions.
    pub region_count: U32,
    /// Guest base address of the module.
    pub base_address: U64,
    /// `VBOXOSFAMILY` of the guest.
    pub guest_os: U32,
    /// Alignment padding.
    pub alignment: U32,
    /// NUL-terminated module name.
    pub name: [u8; SHARED_MODULE_NAME_SIZE],
    /// NUL-terminated module version.
    pub version: [u8; SHARED_MODULE_VERSION_SIZE],
}

/// A region of RegisterSharedModule, 16 bytes (`VMMDEVSHAREDREGIONDESC`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct SharedRegionDescriptor {
    /// Guest address of the region.
    pub address: U64,
    /// Size of the region.
    pub size: U32,
    /// Alignment padding.
    pub alignment: U32,
}

/// UnregisterSharedModule (213), 184 bytes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct UnregisterSharedModuleRequest {
    /// Request header.
    pub header: RequestHeader,
    /// Module size.
    pub module_size: U32,
    /// Alignment padding.
    pub alignment: U32,
    /// Guest base address of the module.
    pub base_address: U64,
    /// NUL-terminated module name.
    pub name: [u8; SHARED_MODULE_NAME_SIZE],
    /// NUL-terminated module version.
    pub version: [u8; SHARED_MODULE_VERSION_SIZE],
}

/// GetPageSharingStatus (215), 28 bytes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct PageSharingStatusRequest {
    /// Request header.
    pub header: RequestHeader,
    /// Whether page fusion is enabled (bool, out).
    pub enabled: u8,
    /// Padding.
    pub padding: [u8; 3],
}

/// DebugIsPageShared (216), 44 bytes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct DebugIsPageSharedRequest {
    /// Request header.
    pub header: RequestHeader,
    /// Guest page address (in).
    pub page_address: U64,
    /// Page flags (out).
    pub flags: U64,
    /// Whether the page is shared (bool, out).
    pub shared: u8,
    /// Padding.
    pub padding: [u8; 3],
}

// ---------------------------------------------------------------------------------------------
// Session (217), core dump (218), heartbeat (220), bug check (221)
// ---------------------------------------------------------------------------------------------

/// GetSessionId (217), 32 bytes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct SessionIdRequest {
    /// Request header.
    pub header: RequestHeader,
    /// Session ID, new after every reset and restore (out).
    pub session_id: U64,
}

/// WriteCoreDump (218), 28 bytes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct WriteCoreDumpRequest {
    /// Request header.
    pub header: RequestHeader,
    /// Flags; must be zero (not checked).
    pub flags: U32,
}

/// HeartbeatConfigure (220), 36 bytes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct HeartbeatRequest {
    /// Request header.
    pub header: RequestHeader,
    /// Heartbeat interval in nanoseconds (out).
    pub interval_ns: U64,
    /// Non-zero to enable heartbeat checking (in).
    pub enabled: u8,
    /// Padding.
    pub padding: [u8; 3],
}

/// NtBugCheck (221), 64 bytes (a header-only form is also accepted).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct NtBugCheckRequest {
    /// Request header.
    pub header: RequestHeader,
    /// Bug-check code.
    pub bug_check: U64,
    /// Bug-check parameters.
    pub parameters: [U64; 4],
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;
    use zerocopy::FromZeros;

    #[test]
    fn request_header_has_reference_layout() {
        assert_layout!(RequestHeader, size = 24, {
            size: 0, version: 4, request_type: 8, rc: 12, reserved1: 16, requestor: 20,
        });
    }

    #[test]
    fn vmmdev_memory_has_reference_layout() {
        assert_layout!(VmmDevMemory, size = 16, {
            size: 0, version: 4, have_events: 8, padding: 9, legacy_guest_event_mask: 12,
        });
        assert_eq!(
            VMMDEV_MEMORY_OFF_HAVE_EVENTS as usize,
            core::mem::offset_of!(VmmDevMemory, have_events)
        );
        assert_eq!(
            VMMDEV_MEMORY_OFF_LEGACY_GUEST_EVENT_MASK as usize,
            core::mem::offset_of!(VmmDevMemory, legacy_guest_event_mask)
        );
    }

    #[test]
    fn vmmdev_memory_size_covers_header_and_vbva_area() {
        // 16-byte header, 12 bytes of VBVA counters, the ring, 64 record words, 3 trailing words.
        let vbva = 12 + VBVA_RING_BUFFER_SIZE + 4 * VBVA_MAX_RECORDS + 12;
        assert_eq!(VMMDEV_MEMORY_OFF_VBVA + vbva, VMMDEV_MEMORY_SIZE);
    }

    #[test]
    fn initial_vmmdev_memory_reports_size_and_version_without_events() {
        let memory = VmmDevMemory::initial();
        let bytes = memory.as_bytes();
        assert_eq!(&bytes[0..4], &0x003F_FD28u32.to_le_bytes());
        assert_eq!(&bytes[4..8], &1u32.to_le_bytes());
        assert_eq!(bytes[8], 0);
    }

    #[test]
    fn new_header_is_initialised_like_a_guest_does() {
        let header =
            RequestHeader::new(40, RequestType::GET_HOST_VERSION, Requestor::KERNEL_DRIVER);
        let bytes = header.as_bytes();
        assert_eq!(&bytes[0..4], &40u32.to_le_bytes());
        assert_eq!(&bytes[4..8], &0x0001_0001u32.to_le_bytes());
        assert_eq!(&bytes[8..12], &4u32.to_le_bytes());
        assert_eq!(&bytes[12..16], &(-1i32).to_le_bytes());
        assert_eq!(&bytes[20..24], &1u32.to_le_bytes());
    }

    #[test]
    fn header_status_round_trips_through_rc() {
        let mut header = RequestHeader::new_zeroed();
        header.set_status(Status::VINF_HGCM_ASYNC_EXECUTE);
        assert_eq!(header.status(), Status::VINF_HGCM_ASYNC_EXECUTE);
        assert_eq!(header.rc.get(), 2903);
    }

    #[test]
    fn header_decodes_from_little_endian_bytes() {
        let mut bytes = [0u8; 24];
        bytes[8..12].copy_from_slice(&63u32.to_le_bytes());
        bytes[20..24].copy_from_slice(&0x808Bu32.to_le_bytes());
        let header = RequestHeader::read_from_bytes(&bytes).expect("24 bytes");
        assert_eq!(header.request_type(), RequestType::HGCM_CALL64);
        assert_eq!(header.requestor(), Requestor(0x808B));
    }

    #[test]
    fn request_types_have_the_reference_numbers() {
        let expected: &[(RequestType, u32)] = &[
            (RequestType::INVALID_REQUEST, 0),
            (RequestType::GET_MOUSE_STATUS, 1),
            (RequestType::SET_MOUSE_STATUS, 2),
            (RequestType::SET_POINTER_SHAPE, 3),
            (RequestType::GET_HOST_VERSION, 4),
            (RequestType::IDLE, 5),
            (RequestType::GET_HOST_TIME, 10),
            (RequestType::GET_HYPERVISOR_INFO, 20),
            (RequestType::SET_HYPERVISOR_INFO, 21),
            (RequestType::REGISTER_PATCH_MEMORY, 22),
            (RequestType::DEREGISTER_PATCH_MEMORY, 23),
            (RequestType::SET_POWER_STATUS, 30),
            (RequestType::ACKNOWLEDGE_EVENTS, 41),
            (RequestType::CTL_GUEST_FILTER_MASK, 42),
            (RequestType::REPORT_GUEST_INFO, 50),
            (RequestType::GET_DISPLAY_CHANGE_REQ, 51),
            (RequestType::VIDEO_MODE_SUPPORTED, 52),
            (RequestType::GET_HEIGHT_REDUCTION, 53),
            (RequestType::GET_DISPLAY_CHANGE_REQ2, 54),
            (RequestType::REPORT_GUEST_CAPABILITIES, 55),
            (RequestType::SET_GUEST_CAPABILITIES, 56),
            (RequestType::VIDEO_MODE_SUPPORTED2, 57),
            (RequestType::REPORT_GUEST_INFO2, 58),
            (RequestType::REPORT_GUEST_STATUS, 59),
            (RequestType::HGCM_CONNECT, 60),
            (RequestType::HGCM_DISCONNECT, 61),
            (RequestType::HGCM_CALL32, 62),
            (RequestType::HGCM_CALL64, 63),
            (RequestType::HGCM_CANCEL, 64),
            (RequestType::HGCM_CANCEL2, 65),
            (RequestType::VIDEO_ACCEL_ENABLE, 70),
            (RequestType::VIDEO_ACCEL_FLUSH, 71),
            (RequestType::VIDEO_SET_VISIBLE_REGION, 72),
            (RequestType::GET_SEAMLESS_CHANGE_REQ, 73),
            (RequestType::REPORT_GUEST_USER_STATE, 74),
            (RequestType::GET_DISPLAY_CHANGE_REQ_EX, 80),
            (RequestType::GET_DISPLAY_CHANGE_REQ_MULTI, 81),
            (RequestType::QUERY_CREDENTIALS, 100),
            (RequestType::REPORT_CREDENTIALS_JUDGEMENT, 101),
            (RequestType::REPORT_GUEST_STATS, 110),
            (RequestType::GET_MEM_BALLOON_CHANGE_REQ, 111),
            (RequestType::GET_STATISTICS_CHANGE_REQ, 112),
            (RequestType::CHANGE_MEM_BALLOON, 113),
            (RequestType::GET_VRDP_CHANGE_REQ, 150),
            (RequestType::LOG_STRING, 200),
            (RequestType::GET_CPU_HOTPLUG_REQ, 210),
            (RequestType::SET_CPU_HOTPLUG_STATUS, 211),
            (RequestType::REGISTER_SHARED_MODULE, 212),
            (RequestType::UNREGISTER_SHARED_MODULE, 213),
            (RequestType::CHECK_SHARED_MODULES, 214),
            (RequestType::GET_PAGE_SHARING_STATUS, 215),
            (RequestType::DEBUG_IS_PAGE_SHARED, 216),
            (RequestType::GET_SESSION_ID, 217),
            (RequestType::WRITE_CORE_DUMP, 218),
            (RequestType::GUEST_HEARTBEAT, 219),
            (RequestType::HEARTBEAT_CONFIGURE, 220),
            (RequestType::NT_BUG_CHECK, 221),
            (RequestType::VIDEO_UPDATE_MONITOR_POSITIONS, 222),
            (RequestType::GET_MOUSE_STATUS_EX, 223),
        ];
        assert_eq!(expected.len(), RequestType::KNOWN.len());
        for (request_type, value) in expected {
            assert_eq!(request_type.raw(), *value, "{request_type:?}");
        }
    }

    #[test]
    fn only_four_request_types_pass_the_guest_info_gate() {
        let allowed: std::vec::Vec<u32> = RequestType::KNOWN
            .iter()
            .filter(|t| t.allowed_before_guest_info())
            .map(|t| t.raw())
            .collect();
        assert_eq!(allowed, [4, 50, 58, 218]);
    }

    #[test]
    fn hgcm_request_types_are_60_to_65() {
        assert!(RequestType::HGCM_CONNECT.is_hgcm());
        assert!(RequestType::HGCM_CANCEL2.is_hgcm());
        assert!(!RequestType::REPORT_GUEST_STATUS.is_hgcm());
        assert!(!RequestType::VIDEO_ACCEL_ENABLE.is_hgcm());
    }

    #[test]
    fn unknown_request_type_has_no_name() {
        assert_eq!(RequestType(6).name(), None);
        assert_eq!(RequestType::GET_SESSION_ID.name(), Some("GET_SESSION_ID"));
    }

    #[test]
    fn requestor_accessors_split_the_linux_user_session_value() {
        // root through /dev/vboxuser, in the device's group.
        let requestor = Requestor(0x0000_808B);
        assert_eq!(requestor.user_class(), RequestorUserClass::ROOT);
        assert!(requestor.is_user_mode());
        assert!(requestor.is_in_vbox_group());
        assert!(requestor.is_user_device());
        assert!(!requestor.is_in_wheel_group());
        assert!(!requestor.has_no_user_device());
        assert_eq!(requestor.console(), Requestor::CON_DONT_KNOW);
        assert_eq!(requestor.trust_level(), Requestor::TRUST_NOT_GIVEN);
        assert!(!requestor.is_legacy());
    }

    #[test]
    fn lowest_requestor_is_the_documented_combination() {
        let parts = Requestor::TRUST_UNTRUSTED
            | Requestor::USER_DEVICE
            | Requestor::CON_NO
            | Requestor::USERMODE
            | RequestorUserClass::GUEST.raw();
        assert_eq!(Requestor::LOWEST.raw(), parts);
        assert!(Requestor::LEGACY.is_legacy());
        assert_eq!(
            Requestor::KERNEL_DRIVER.user_class(),
            RequestorUserClass::DRV
        );
        assert_eq!(
            Requestor::KERNEL_OTHER_DRIVER.user_class(),
            RequestorUserClass::DRV_OTHER
        );
    }

    #[test]
    fn event_bits_match_the_valid_mask() {
        assert_eq!(Events::all().bits(), VMMDEV_EVENT_VALID_EVENT_MASK);
        assert_eq!(Events::HGCM.bits(), 0x2);
        assert_eq!(Events::MOUSE_POSITION_CHANGED.bits(), 0x200);
        assert_eq!(Events::CPU_HOTPLUG.bits(), 0x400);
    }

    #[test]
    fn mouse_guest_and_host_masks_partition_the_features() {
        assert!(!MouseFeatures::GUEST_MASK.intersects(MouseFeatures::HOST_MASK));
        assert_eq!(
            MouseFeatures::GUEST_MASK | MouseFeatures::HOST_MASK,
            MouseFeatures::all()
        );
    }

    #[test]
    fn host_features_of_virtualbox_7_1_are_all_five_bits() {
        assert_eq!(HostFeatures::all().bits(), 0x8000_000F);
    }

    #[test]
    fn mouse_requests_have_reference_layout() {
        assert_layout!(MouseStatusRequest, size = 36, {
            header: 0, mouse_features: 24, pointer_x: 28, pointer_y: 32,
        });
        assert_layout!(MouseStatusExRequest, size = 48, { core: 0, dz: 36, dw: 40, buttons: 44 });
        assert_layout!(MousePointerRequest, size = 44, {
            header: 0, flags: 24, x_hot: 28, y_hot: 32, width: 36, height: 40,
        });
    }

    #[test]
    fn host_and_hypervisor_requests_have_reference_layout() {
        assert_layout!(HostVersionRequest, size = 40, {
            header: 0, major: 24, minor: 26, build: 28, revision: 32, features: 36,
        });
        assert_layout!(HostTimeRequest, size = 32, { header: 0, time_ms: 24 });
        assert_layout!(HypervisorInfoRequest, size = 32, {
            header: 0, hypervisor_start: 24, hypervisor_size: 28,
        });
        assert_layout!(PatchMemoryRequest, size = 36, { header: 0, patch_mem: 24, patch_mem_size: 32 });
        assert_layout!(PowerStateRequest, size = 28, { header: 0, power_state: 24 });
    }

    #[test]
    fn event_and_mask_requests_have_reference_layout() {
        assert_layout!(EventsRequest, size = 28, { header: 0, events: 24 });
        assert_layout!(MaskRequest, size = 32, { header: 0, or_mask: 24, not_mask: 28 });
    }

    #[test]
    fn guest_info_requests_have_reference_layout() {
        assert_layout!(GuestInfoRequest, size = 32, { header: 0, interface_version: 24, os_type: 28 });
        assert_layout!(GuestInfo2Request, size = 168, {
            header: 0, additions_major: 24, additions_minor: 26, additions_build: 28,
            additions_revision: 32, additions_features: 36, name: 40,
        });
        assert_layout!(GuestStatusRequest, size = 36, { header: 0, facility: 24, status: 28, flags: 32 });
        assert_layout!(GuestUserStateRequest, size = 40, {
            header: 0, state: 24, user_size: 28, domain_size: 32, details_size: 36,
        });
    }

    #[test]
    fn display_requests_have_reference_layout() {
        assert_layout!(DisplayChangeRequest, size = 40, {
            header: 0, xres: 24, yres: 28, bpp: 32, event_ack: 36,
        });
        assert_layout!(DisplayChangeRequest2, size = 44, {
            header: 0, xres: 24, yres: 28, bpp: 32, event_ack: 36, display: 40,
        });
        assert_layout!(DisplayChangeRequestEx, size = 56, {
            header: 0, xres: 24, yres: 28, bpp: 32, event_ack: 36, display: 40, origin_x: 44,
            origin_y: 48, change_origin: 52, enabled: 53, padding: 54,
        });
        assert_layout!(DisplayChangeRequestMulti, size = 32, { header: 0, event_ack: 24, display_count: 28 });
        assert_layout!(DisplayDef, size = 28, {
            flags: 0, display_id: 4, origin_x: 8, origin_y: 12, cx: 16, cy: 20, bits_per_pixel: 24,
        });
        assert_layout!(VideoModeSupportedRequest, size = 40, {
            header: 0, width: 24, height: 28, bpp: 32, supported: 36,
        });
        assert_layout!(VideoModeSupported2Request, size = 44, {
            header: 0, display: 24, width: 28, height: 32, bpp: 36, supported: 40,
        });
        assert_layout!(HeightReductionRequest, size = 28, { header: 0, height_reduction: 24 });
        assert_layout!(GuestCapabilitiesRequest, size = 28, { header: 0, caps: 24 });
        assert_layout!(VideoAccelEnableRequest, size = 36, {
            header: 0, enable: 24, ring_buffer_size: 28, status: 32,
        });
        assert_layout!(VideoSetVisibleRegionRequest, size = 28, { header: 0, rect_count: 24 });
        assert_layout!(Rect, size = 16, { left: 0, top: 4, right: 8, bottom: 12 });
        assert_layout!(VideoUpdateMonitorPositionsRequest, size = 28, { header: 0, position_count: 24 });
        assert_layout!(Point, size = 8, { x: 0, y: 4 });
        assert_layout!(SeamlessChangeRequest, size = 32, { header: 0, mode: 24, event_ack: 28 });
    }

    #[test]
    fn credential_statistics_and_balloon_requests_have_reference_layout() {
        assert_layout!(CredentialsRequest, size = 412, {
            header: 0, flags: 24, user_name: 28, password: 156, domain: 284,
        });
        assert_layout!(GuestStatisticsRequest, size = 100, {
            header: 0, cpu_id: 24, stat_caps: 28, cpu_load_idle: 32, cpu_load_kernel: 36,
            cpu_load_user: 40, threads: 44, processes: 48, handles: 52, memory_load: 56,
            page_size: 60, phys_mem_total: 64, phys_mem_avail: 68, phys_mem_balloon: 72,
            mem_commit_total: 76, mem_kernel_total: 80, mem_kernel_paged: 84,
            mem_kernel_nonpaged: 88, mem_system_cache: 92, page_file_size: 96,
        });
        assert_layout!(MemBalloonInfoRequest, size = 36, {
            header: 0, balloon_chunks: 24, phys_mem_chunks: 28, event_ack: 32,
        });
        assert_layout!(ChangeMemBalloonRequest, size = 2080, {
            header: 0, page_count: 24, inflate: 28, pages: 32,
        });
        assert_layout!(StatisticsChangeRequest, size = 32, { header: 0, stat_interval: 24, event_ack: 28 });
        assert_layout!(VrdpChangeRequest, size = 32, { header: 0, vrdp_active: 24, experience_level: 28 });
    }

    #[test]
    fn cpu_sharing_and_misc_requests_have_reference_layout() {
        assert_layout!(CpuHotPlugRequest, size = 36, {
            header: 0, event_type: 24, core_id: 28, package_id: 32,
        });
        assert_layout!(CpuHotPlugStatusRequest, size = 28, { header: 0, status_type: 24 });
        assert_layout!(RegisterSharedModuleRequest, size = 192, {
            header: 0, module_size: 24, region_count: 28, base_address: 32, guest_os: 40,
            alignment: 44, name: 48, version: 176,
        });
        assert_layout!(SharedRegionDescriptor, size = 16, { address: 0, size: 8, alignment: 12 });
        assert_layout!(UnregisterSharedModuleRequest, size = 184, {
            header: 0, module_size: 24, alignment: 28, base_address: 32, name: 40, version: 168,
        });
        assert_layout!(PageSharingStatusRequest, size = 28, { header: 0, enabled: 24 });
        assert_layout!(DebugIsPageSharedRequest, size = 44, {
            header: 0, page_address: 24, flags: 32, shared: 40,
        });
        assert_layout!(SessionIdRequest, size = 32, { header: 0, session_id: 24 });
        assert_layout!(WriteCoreDumpRequest, size = 28, { header: 0, flags: 24 });
        assert_layout!(HeartbeatRequest, size = 36, {
            header: 0, interval_ns: 24, enabled: 32, padding: 33,
        });
        assert_layout!(NtBugCheckRequest, size = 64, { header: 0, bug_check: 24, parameters: 32 });
    }

    #[test]
    fn change_balloon_request_carries_one_chunk_of_pages() {
        let chunk_pages = (VMMDEV_MEMORY_BALLOON_CHUNK_SIZE / VMMDEV_PAGE_SIZE) as usize;
        assert_eq!(chunk_pages, VMMDEV_MEMORY_BALLOON_CHUNK_PAGES);
        assert_eq!(size_of::<ChangeMemBalloonRequest>(), 32 + 8 * chunk_pages);
    }

    #[test]
    fn page_constants_are_consistent() {
        assert_eq!(1u32 << VMMDEV_PAGE_SHIFT, VMMDEV_PAGE_SIZE);
        assert_eq!(VMMDEV_PAGE_OFFSET_MASK, VMMDEV_PAGE_SIZE - 1);
        assert_eq!(
            VMMDEV_VERSION,
            (u32::from(VMMDEV_VERSION_MAJOR) << 16) | u32::from(VMMDEV_VERSION_MINOR)
        );
    }
}
