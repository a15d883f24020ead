//! The shared-clipboard service, `VBoxSharedClipboard`
//! (`include/VBox/HostServices/VBoxClipboardSvc.h`, `include/VBox/GuestHost/SharedClipboard.h`).
//!
//! Two protocol generations share the function numbers: the legacy one (a blocking
//! [`Function::MSG_OLD_GET_WAIT`] and two-parameter messages) and the message protocol of
//! additions 6.1+ (feature negotiation, peek/get/cancel and 64-bit context IDs). Each side
//! announces [`Formats`]; the other requests data in one format when something is pasted.
//! File transfers (functions 11–25, messages 50–66) are listed but not described further.
//! The `convert` submodule (feature `alloc`) converts the formats' wire encodings.

use bitflags::bitflags;

use super::ParameterCount;

#[cfg(feature = "alloc")]
pub mod convert;

/// The HGCM service name.
pub const SERVICE_NAME: &str = "VBoxSharedClipboard";

protocol_codes! {
    /// A guest function number (`VBOX_SHCL_GUEST_FN_*`).
    pub struct Function(u32);
    /// Legacy blocking wait for a host message: message ID (out), format (out).
    MSG_OLD_GET_WAIT = 1;
    /// Announce the guest clipboard's formats.
    REPORT_FORMATS = 2;
    /// Read host clipboard data in one format.
    DATA_READ = 3;
    /// Answer a host data request.
    DATA_WRITE = 4;
    /// Only in 6.1 betas; always `VERR_NOT_IMPLEMENTED`.
    CONNECT = 5;
    /// Exchange feature words.
    REPORT_FEATURES = 6;
    /// Query the host feature words.
    QUERY_FEATURES = 7;
    /// Peek at the next host message without waiting.
    MSG_PEEK_NOWAIT = 8;
    /// Peek at the next host message, waiting for one.
    MSG_PEEK_WAIT = 9;
    /// Fetch the parameters of the next host message.
    MSG_GET = 10;
    /// Transfer: reply.
    REPLY = 11;
    /// Transfer: read the root list header.
    ROOT_LIST_HDR_READ = 12;
    /// Transfer: write the root list header.
    ROOT_LIST_HDR_WRITE = 13;
    /// Transfer: read a root list entry.
    ROOT_LIST_ENTRY_READ = 14;
    /// Transfer: write a root list entry.
    ROOT_LIST_ENTRY_WRITE = 15;
    /// Transfer: open a list.
    LIST_OPEN = 16;
    /// Transfer: close a list.
    LIST_CLOSE = 17;
    /// Transfer: read a list header.
    LIST_HDR_READ = 18;
    /// Transfer: write a list header.
    LIST_HDR_WRITE = 19;
    /// Transfer: read a list entry.
    LIST_ENTRY_READ = 20;
    /// Transfer: write a list entry.
    LIST_ENTRY_WRITE = 21;
    /// Transfer: open an object.
    OBJ_OPEN = 22;
    /// Transfer: close an object.
    OBJ_CLOSE = 23;
    /// Transfer: read object data.
    OBJ_READ = 24;
    /// Transfer: write object data.
    OBJ_WRITE = 25;
    /// Cancel the client's parked wait.
    MSG_CANCEL = 26;
    /// Report that the guest could not handle a message: context ID, status.
    ERROR = 27;
    /// Negotiate the transfer chunk size.
    NEGOTIATE_CHUNK_SIZE = 28;
}

/// The highest guest function number (`VBOX_SHCL_GUEST_FN_LAST`).
pub const VBOX_SHCL_GUEST_FN_LAST: u32 = 28;

impl Function {
    /// The parameter counts the host accepts, or `None` for unknown functions and for the
    /// transfer functions, whose forms changed between releases. The deprecated 6.1-beta forms
    /// of REPORT_FORMATS (3), DATA_READ (5) and DATA_WRITE (5) are included; which DATA_WRITE
    /// form applies depends on whether the client negotiated context IDs.
    pub const fn parameter_count(self) -> Option<ParameterCount> {
        match self {
            Self::MSG_OLD_GET_WAIT
            | Self::REPORT_FEATURES
            | Self::QUERY_FEATURES
            | Self::ERROR
            | Self::NEGOTIATE_CHUNK_SIZE => Some(ParameterCount::Exactly(2)),
            Self::REPORT_FORMATS => Some(ParameterCount::OneOf(&[1, 3])),
            Self::DATA_READ => Some(ParameterCount::OneOf(&[3, 5])),
            Self::DATA_WRITE => Some(ParameterCount::OneOf(&[2, 3, 5])),
            Self::MSG_PEEK_NOWAIT | Self::MSG_PEEK_WAIT => Some(ParameterCount::AtLeast(2)),
            Self::MSG_GET => Some(ParameterCount::AtLeast(1)),
            Self::MSG_CANCEL => Some(ParameterCount::Exactly(0)),
            _ => None,
        }
    }
}

protocol_codes! {
    /// A host-to-guest message ID (`VBOX_SHCL_HOST_MSG_*`).
    pub struct HostMessage(u32);
    /// The client is being torn down while a wait is pending.
    QUIT = 1;
    /// The host wants guest data (legacy clients): message ID, format.
    READ_DATA = 2;
    /// The host clipboard's formats: message ID, format mask (may be 0).
    FORMATS_REPORT = 3;
    /// A parked wait was cancelled by MSG_CANCEL.
    CANCELED = 4;
    /// The host wants guest data (context-ID clients): context ID, format.
    READ_DATA_CID = 5;
    /// Transfer: status.
    TRANSFER_STATUS = 50;
    /// Transfer: read the root list header.
    TRANSFER_ROOT_LIST_HDR_READ = 51;
    /// Transfer: write the root list header.
    TRANSFER_ROOT_LIST_HDR_WRITE = 52;
    /// Transfer: read a root list entry.
    TRANSFER_ROOT_LIST_ENTRY_READ = 53;
    /// Transfer: write a root list entry.
    TRANSFER_ROOT_LIST_ENTRY_WRITE = 54;
    /// Transfer: open a list.
    TRANSFER_LIST_OPEN = 55;
    /// Transfer: close a list.
    TRANSFER_LIST_CLOSE = 56;
    /// Transfer: read a list header.
    TRANSFER_LIST_HDR_READ = 57;
    /// Transfer: write a list header.
    TRANSFER_LIST_HDR_WRITE = 58;
    /// Transfer: read a list entry.
    TRANSFER_LIST_ENTRY_READ = 59;
    /// Transfer: write a list entry.
    TRANSFER_LIST_ENTRY_WRITE = 60;
    /// Transfer: open an object.
    TRANSFER_OBJ_OPEN = 61;
    /// Transfer: close an object.
    TRANSFER_OBJ_CLOSE = 62;
    /// Transfer: read object data.
    TRANSFER_OBJ_READ = 63;
    /// Transfer: write object data.
    TRANSFER_OBJ_WRITE = 64;
    /// Transfer: cancel.
    TRANSFER_CANCEL = 65;
    /// Transfer: error.
    TRANSFER_ERROR = 66;
}

impl HostMessage {
    /// The number of parameters MSG_GET must carry for this message, or `None` for messages
    /// that are only delivered as a peek result (QUIT, CANCELED) and for transfer messages.
    pub const fn parameter_count(self) -> Option<u32> {
        match self {
            Self::READ_DATA | Self::FORMATS_REPORT | Self::READ_DATA_CID => Some(2),
            _ => None,
        }
    }
}

protocol_codes! {
    /// A host (VMM-side) function number of 6.1/7.0 (`VBOX_SHCL_HOST_FN_*`); a private
    /// VirtualBox interface that was renumbered across releases.
    pub struct HostFunction(u32);
    /// Set the clipboard [`Mode`].
    SET_MODE = 1;
    /// Set the [`TransferMode`] flags.
    SET_TRANSFER_MODE = 2;
    /// Do not touch the host's real clipboard.
    SET_HEADLESS = 3;
    /// Defined, not implemented.
    CANCEL = 4;
    /// Defined, not implemented.
    ERROR = 5;
}

bitflags! {
    /// Clipboard formats (`VBOX_SHCL_FMT_*`); no bit means an empty clipboard.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct Formats: u32 {
        /// UTF-16LE text with CRLF line ends, the terminating NUL included in the size.
        const UNICODETEXT = 0x1;
        /// A Windows DIB without the 14-byte file header.
        const BITMAP = 0x2;
        /// UTF-8 HTML, normally NUL-terminated.
        const HTML = 0x4;
        /// A file transfer (only with transfers enabled).
        const URI_LIST = 0x8;
    }
}

impl Formats {
    /// Empty clipboard (`VBOX_SHCL_FMT_NONE`).
    pub const NONE: Self = Self::empty();
}

protocol_codes! {
    /// The global clipboard mode (`VBOX_SHCL_MODE_*`).
    pub struct Mode(u32);
    /// No clipboard sharing.
    OFF = 0;
    /// Host to guest only.
    HOST_TO_GUEST = 1;
    /// Guest to host only.
    GUEST_TO_HOST = 2;
    /// Both directions.
    BIDIRECTIONAL = 3;
}

bitflags! {
    /// Flags of SET_TRANSFER_MODE (`VBOX_SHCL_TRANSFER_MODE_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct TransferMode: u32 {
        /// File transfers are enabled.
        const ENABLED = 0x1;
    }
}

bitflags! {
    /// Guest feature word 0 of REPORT_FEATURES (`VBOX_SHCL_GF_0_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct GuestFeatures0: u64 {
        /// The guest understands context IDs (READ_DATA_CID, 3-parameter DATA_WRITE).
        const CONTEXT_ID = 1 << 0;
        /// The guest supports file transfers.
        const TRANSFERS = 1 << 1;
        /// The guest handles transfers in its frontend (Windows guests).
        const TRANSFERS_FRONTEND = 1 << 2;
    }
}

bitflags! {
    /// Guest feature word 1 of REPORT_FEATURES (`VBOX_SHCL_GF_1_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct GuestFeatures1: u64 {
        /// Must be set by the guest; a host returning it set is an old host.
        const MUST_BE_ONE = 1 << 63;
    }
}

bitflags! {
    /// Host feature word 0 returned by REPORT_FEATURES / QUERY_FEATURES (`VBOX_SHCL_HF_0_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct HostFeatures0: u64 {
        /// The host uses context IDs.
        const CONTEXT_ID = 1 << 0;
        /// The host supports file transfers.
        const TRANSFERS = 1 << 1;
    }
}

/// Size marker a peek reports for a u32 message parameter (`~4`).
pub const PEEK_SIZE_U32: u32 = !4;
/// Size marker a peek reports for a u64 message parameter (`~8`).
pub const PEEK_SIZE_U64: u32 = !8;
/// Message ID a MSG_GET caller passes when it does not care which message comes.
pub const MSG_GET_ANY: u32 = u32::MAX;
/// Largest transfer chunk (`VBOX_SHCL_MAX_CHUNK_SIZE`).
pub const VBOX_SHCL_MAX_CHUNK_SIZE: u32 = (128 << 20) - 4096;
/// Default transfer chunk.
pub const VBOX_SHCL_DEFAULT_CHUNK_SIZE: u32 = 64 << 10;
/// Messages one client may have queued.
pub const VBOX_SHCL_MAX_QUEUED_MESSAGES: u32 = 4096;
/// Outstanding legacy context IDs per client.
pub const VBOX_SHCL_MAX_LEGACY_CONTEXTS: u32 = 4096;
/// Clients per requestor category the service admits (kernel, root, user): one kernel client.
pub const VBOX_SHCL_MAX_CLIENTS: [u32; 3] = [1, 128, 128];
/// Pending calls per client.
pub const VBOX_SHCL_MAX_CALLS_PER_CLIENT: u32 = 16;

/// Builds a context ID (`VBOX_SHCL_CONTEXTID_MAKE`): session in bits 48–63, event source in bits
/// 32–47, event in bits 0–31. VirtualBox 7.0 uses session and source 0.
pub const fn context_id(session: u16, source: u16, event: u32) -> u64 {
    ((session as u64) << 48) | ((source as u64) << 32) | event as u64
}

/// The session part of a context ID.
pub const fn context_id_session(context: u64) -> u16 {
    (context >> 48) as u16
}

/// The event source part of a context ID (the transfer ID for transfer messages).
pub const fn context_id_source(context: u64) -> u16 {
    (context >> 32) as u16
}

/// The event part of a context ID.
pub const fn context_id_event(context: u64) -> u32 {
    context as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_have_reference_numbers() {
        let numbers: std::vec::Vec<u32> = Function::KNOWN.iter().map(|f| f.raw()).collect();
        let expected: std::vec::Vec<u32> = (1..=VBOX_SHCL_GUEST_FN_LAST).collect();
        assert_eq!(numbers, expected);
        assert_eq!(Function::MSG_PEEK_WAIT.raw(), 9);
        assert_eq!(Function::MSG_CANCEL.raw(), 26);
        assert_eq!(Function::ERROR.raw(), 27);
    }

    #[test]
    fn functions_have_reference_parameter_counts() {
        assert!(
            Function::MSG_OLD_GET_WAIT
                .parameter_count()
                .is_some_and(|c| c.accepts(2))
        );
        assert!(
            Function::REPORT_FORMATS
                .parameter_count()
                .is_some_and(|c| c.accepts(1))
        );
        assert!(
            Function::DATA_READ
                .parameter_count()
                .is_some_and(|c| c.accepts(3))
        );
        let data_write = Function::DATA_WRITE.parameter_count().expect("known");
        assert!(data_write.accepts(2) && data_write.accepts(3) && !data_write.accepts(4));
        assert!(
            Function::MSG_PEEK_WAIT
                .parameter_count()
                .is_some_and(|c| c.accepts(2) && !c.accepts(1))
        );
        assert_eq!(
            Function::MSG_CANCEL.parameter_count(),
            Some(ParameterCount::Exactly(0))
        );
        assert_eq!(Function::CONNECT.parameter_count(), None);
        assert_eq!(Function::OBJ_READ.parameter_count(), None);
    }

    #[test]
    fn host_messages_have_reference_numbers() {
        assert_eq!(HostMessage::QUIT.raw(), 1);
        assert_eq!(HostMessage::READ_DATA.raw(), 2);
        assert_eq!(HostMessage::FORMATS_REPORT.raw(), 3);
        assert_eq!(HostMessage::CANCELED.raw(), 4);
        assert_eq!(HostMessage::READ_DATA_CID.raw(), 5);
        assert_eq!(HostMessage::TRANSFER_STATUS.raw(), 50);
        assert_eq!(HostMessage::TRANSFER_ERROR.raw(), 66);
        assert_eq!(HostMessage::READ_DATA_CID.parameter_count(), Some(2));
        assert_eq!(HostMessage::QUIT.parameter_count(), None);
    }

    #[test]
    fn formats_modes_and_features_have_reference_values() {
        assert_eq!(Formats::all().bits(), 0xF);
        assert_eq!(Formats::NONE.bits(), 0);
        assert_eq!(Mode::BIDIRECTIONAL.raw(), 3);
        assert_eq!(HostFunction::SET_HEADLESS.raw(), 3);
        assert_eq!(GuestFeatures1::MUST_BE_ONE.bits(), 0x8000_0000_0000_0000);
        assert_eq!(HostFeatures0::CONTEXT_ID.bits(), 1);
        assert_eq!(GuestFeatures0::TRANSFERS_FRONTEND.bits(), 4);
    }

    #[test]
    fn peek_size_markers_are_complemented_sizes() {
        assert_eq!(PEEK_SIZE_U32, 0xFFFF_FFFB);
        assert_eq!(PEEK_SIZE_U64, 0xFFFF_FFF7);
    }

    #[test]
    fn context_id_parts_round_trip() {
        let context = context_id(0x1234, 0x5678, 0x9ABC_DEF0);
        assert_eq!(context, 0x1234_5678_9ABC_DEF0);
        assert_eq!(context_id_session(context), 0x1234);
        assert_eq!(context_id_source(context), 0x5678);
        assert_eq!(context_id_event(context), 0x9ABC_DEF0);
    }

    #[test]
    fn chunk_size_limit_is_128_mib_less_one_page() {
        assert_eq!(VBOX_SHCL_MAX_CHUNK_SIZE, 0x07FF_F000);
    }
}
