//! A typed client of the shared-clipboard service (`VBoxSharedClipboard`) over an
//! [`HgcmClient`](crate::HgcmClient).
//!
//! The clipboard is lazy in both directions: a side that owns new content only *announces* its
//! formats, and the other side asks for the data in one format when something is pasted. HGCM
//! cannot push, so a guest that wants to hear about the host keeps one waiting call parked in the
//! service ([`ClipboardClient::next_event`]); the host completes it when it has a message:
//!
//! * [`HostEvent::Formats`]: the host clipboard changed and now offers these formats; read them
//!   with [`ClipboardClient::read`];
//! * [`HostEvent::DataRequest`]: the host wants the guest's data in one format (after the guest
//!   announced it with [`ClipboardClient::report_formats`]); answer with
//!   [`ClipboardClient::write`];
//! * [`HostEvent::Quit`]: the service is closing this client.
//!
//! The client speaks the message protocol of VirtualBox 6.1 and later (feature negotiation,
//! peek / get / cancel, 64-bit context IDs on data requests), as current Guest Additions do, and
//! falls back to the legacy protocol (one blocking "get message" call, requests matched by format)
//! when the host does not offer context IDs. Like current Guest Additions it starts with the HGCM
//! connect and REPORT_FEATURES; the service function CONNECT of the 6.1 betas is never called
//! (released hosts answer it with `VERR_NOT_IMPLEMENTED`). It hides the protocol's two-step dances:
//!
//! * a host read that does not fit the buffer is repeated with the size the host reported (the
//!   host clipboard may change in between, so up to [`MAX_TRIES`] times);
//! * a wait ended by a signal or a timeout is followed by `MSG_CANCEL`, so the service does not
//!   keep a parked wait that would make the next one fail as busy;
//! * a message this client does not know is fetched and discarded (and reported to the host with
//!   `ERROR`), where VirtualBox's own guest would peek at it again forever.
//!
//! The data is passed as the wire carries it; [`encoding`] converts text, HTML and bitmaps.
//!
//! ```no_run
//! use vmmdev_guest_ioctl::clipboard::{ClipboardClient, Format, encoding};
//! use vmmdev_guest_ioctl::{Device, Node};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = Device::open(Node::User)?;
//! let clipboard = ClipboardClient::connect(&device)?;
//! if let Some(wire) = clipboard.read(Format::UnicodeText)? {
//!     println!("{}", encoding::text_from_wire(&wire)?);
//! }
//! # Ok(())
//! # }
//! ```

pub mod encoding;

use std::time::Duration;

use vmmdev_protocol::hgcm::ClientId;
use vmmdev_protocol::ioctl::VBG_MAX_HGCM_USER_PARM;
use vmmdev_protocol::services::clipboard::{
    Function, GuestFeatures0, GuestFeatures1, HostFeatures0, HostMessage, PEEK_SIZE_U32,
    PEEK_SIZE_U64, SERVICE_NAME,
};
use vmmdev_protocol::status::Status;

pub use vmmdev_protocol::services::clipboard::Formats;

use crate::deadline::Deadline;
use crate::device::Device;
use crate::error::Error;
use crate::hgcm::{CallOptions, Param};
use crate::service::{ServiceClient, ServiceError};
use crate::transport::GuestTransport;

/// How often a read is attempted when the host keeps reporting more data than fits.
pub const MAX_TRIES: usize = 10;
/// The first buffer of a read: typical clipboard contents fit, so one call suffices.
pub const FIRST_READ_BUFFER: usize = 64 << 10;
/// The largest buffer this client hands the driver (the Linux driver's limit for a user call),
/// and so the largest clipboard content it reads or writes.
pub const MAX_DATA: usize = VBG_MAX_HGCM_USER_PARM as usize;
/// How many parameter sizes a peek asks for: enough to fetch (and discard) any message with up
/// to this many parameters.
const PEEK_SIZE_SLOTS: usize = 6;
/// The largest buffer parameter of an unknown message this client fetches in order to discard
/// it.
const MAX_DISCARDED_BUFFER: u32 = 64 << 10;

/// One clipboard format, as a read or a data request names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// Text: UTF-16LE with CRLF line ends and a terminating NUL on the wire.
    UnicodeText,
    /// A Windows DIB without file header.
    Bitmap,
    /// UTF-8 HTML.
    Html,
}

impl Format {
    /// Every format, in the order the host asks for them when several are offered.
    pub const ALL: [Self; 3] = [Self::UnicodeText, Self::Bitmap, Self::Html];

    /// The format's bit.
    pub fn flag(self) -> Formats {
        match self {
            Self::UnicodeText => Formats::UNICODETEXT,
            Self::Bitmap => Formats::BITMAP,
            Self::Html => Formats::HTML,
        }
    }

    /// The first of [`Format::ALL`] in `formats`; `None` when it holds none of them.
    pub fn first_in(formats: Formats) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|format| formats.contains(format.flag()))
    }
}

/// Which protocol generation the client and the host agreed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// VirtualBox 6.1 and later: peek / get / cancel and context IDs.
    Message,
    /// Hosts before 6.1: one blocking "get message" call; requests are matched by format.
    Legacy,
}

/// A request of the host for the guest's clipboard data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataRequest {
    /// The context ID the answer must carry; `None` with the legacy protocol.
    pub context: Option<u64>,
    /// The requested format bits as the host sent them (exactly one in VirtualBox 7.0; older
    /// hosts sometimes set several).
    pub formats: Formats,
}

impl DataRequest {
    /// The format to answer in: the first known one the request names.
    pub fn format(&self) -> Option<Format> {
        Format::first_in(self.formats)
    }
}

/// What the host told a waiting guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostEvent {
    /// The host clipboard now offers these formats (none: the host clipboard is empty).
    Formats(Formats),
    /// The host wants the guest's clipboard data.
    DataRequest(DataRequest),
    /// The service is closing this client (it is being disconnected, or the VM is going away).
    Quit,
    /// The wait was cancelled with [`ClipboardClient::cancel_wait`].
    Canceled,
}

/// A failed clipboard operation.
#[derive(Debug, thiserror::Error)]
pub enum ClipboardError {
    /// The host has no shared-clipboard service.
    #[error("the host has no shared clipboard service")]
    ServiceUnavailable,
    /// The clipboard mode forbids this direction (`VERR_ACCESS_DENIED`): reading the host
    /// clipboard needs host-to-guest or bidirectional, announcing or writing guest data needs
    /// guest-to-host or bidirectional.
    #[error("{function}: the clipboard mode forbids this direction")]
    AccessDenied {
        /// The function that was refused.
        function: Function,
    },
    /// Another wait is already parked on this client (`VERR_RESOURCE_BUSY`).
    #[error("{function}: another wait is pending on this client")]
    Busy {
        /// The function that was refused.
        function: Function,
    },
    /// The host knows no pending request this answer could belong to (`VERR_INVALID_CONTEXT`).
    #[error("{function}: the host has no pending request for this answer")]
    NoSuchRequest {
        /// The function that was refused.
        function: Function,
    },
    /// The data is larger than this client hands the driver ([`MAX_DATA`]).
    #[error("{function}: {size} bytes is more than the {MAX_DATA}-byte limit")]
    TooLarge {
        /// The function that was not attempted or not completed.
        function: Function,
        /// The size of the data.
        size: u64,
    },
    /// The host's data grew between reporting its size and the retry, [`MAX_TRIES`] times in a
    /// row.
    #[error("{function}: the data kept growing; gave up after {MAX_TRIES} tries")]
    KeptGrowing {
        /// The function that failed.
        function: Function,
    },
    /// A signal ended the call, or the host did (`VERR_INTERRUPTED`). The client is still usable.
    #[error("{function}: interrupted")]
    Interrupted {
        /// The function that was interrupted.
        function: Function,
    },
    /// The timeout expired and the driver cancelled the call. The client is still usable.
    #[error("{function}: timed out")]
    TimedOut {
        /// The function that timed out.
        function: Function,
    },
    /// The host sent a message this client cannot fetch (more parameters, or larger ones, than
    /// it discards); it stays queued in the service.
    #[error("host message {message} cannot be fetched ({parameters} parameters)")]
    UnfetchableMessage {
        /// The message ID.
        message: HostMessage,
        /// Its parameter count.
        parameters: u32,
    },
    /// Any other failure status from the host.
    #[error("{function}: host status {status}")]
    Host {
        /// The function that failed.
        function: Function,
        /// The status.
        status: Status,
    },
    /// The host answered with data that contradicts the protocol.
    #[error("{function}: malformed reply: {reason}")]
    MalformedReply {
        /// The function whose reply was malformed.
        function: Function,
        /// What was wrong.
        reason: String,
    },
    /// The driver failed (missing, denied, or any other error of the device session).
    #[error(transparent)]
    Driver(#[from] Error),
}

impl ServiceError for ClipboardError {
    type Function = Function;

    fn service_unavailable() -> Self {
        Self::ServiceUnavailable
    }

    fn from_status(function: Function, status: Status) -> Self {
        match status {
            Status::VERR_ACCESS_DENIED => Self::AccessDenied { function },
            Status::VERR_RESOURCE_BUSY => Self::Busy { function },
            Status::VERR_INVALID_CONTEXT => Self::NoSuchRequest { function },
            Status::VERR_INTERRUPTED => Self::Interrupted { function },
            Status::VERR_TIMEOUT => Self::TimedOut { function },
            status => Self::Host { function, status },
        }
    }

    fn interrupted(function: Function) -> Self {
        Self::Interrupted { function }
    }

    fn timed_out(function: Function) -> Self {
        Self::TimedOut { function }
    }
}

impl ClipboardError {
    /// The host's status, for the failures that carry one.
    fn status(&self) -> Option<Status> {
        match self {
            Self::Host { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Result type of this module.
pub type Result<T> = std::result::Result<T, ClipboardError>;

/// A connection to the shared-clipboard service, disconnected on drop.
///
/// Every method takes `&self`, so one thread can wait in [`ClipboardClient::next_event`] while
/// another announces formats or reads (the service allows one parked wait per client).
#[derive(Debug)]
pub struct ClipboardClient<'d, T: GuestTransport> {
    client: ServiceClient<'d, T, ClipboardError>,
    protocol: Protocol,
    host_features: HostFeatures0,
}

impl<'d, T: GuestTransport> ClipboardClient<'d, T> {
    /// Connects to the service and negotiates the protocol: the client reports that it
    /// understands context IDs, and uses the message protocol when the host does too.
    pub fn connect(device: &'d Device<T>) -> Result<Self> {
        let client: ServiceClient<T, ClipboardError> =
            ServiceClient::connect(device, SERVICE_NAME)?;
        let function = Function::REPORT_FEATURES;
        let mut params = [
            Param::U64(GuestFeatures0::CONTEXT_ID.bits()),
            Param::U64(GuestFeatures1::MUST_BE_ONE.bits()),
        ];
        let outcome = client.call(function, &mut params, CallOptions::default());
        let host_features = match outcome {
            // A host that leaves bit 63 of word 1 set did not understand the call.
            Ok(_) if params[1].as_u64().unwrap_or(0) & GuestFeatures1::MUST_BE_ONE.bits() != 0 => {
                HostFeatures0::empty()
            }
            Ok(_) => HostFeatures0::from_bits_retain(params[0].as_u64().unwrap_or(0)),
            Err(error)
                if matches!(
                    error.status(),
                    Some(Status::VERR_NOT_SUPPORTED | Status::VERR_NOT_IMPLEMENTED)
                ) =>
            {
                HostFeatures0::empty()
            }
            Err(error) => return Err(error),
        };
        let protocol = if host_features.contains(HostFeatures0::CONTEXT_ID) {
            Protocol::Message
        } else {
            Protocol::Legacy
        };
        log::debug!(
            "clipboard client {}: host features {host_features:?}, {protocol:?} protocol",
            client.id()
        );
        Ok(Self {
            client,
            protocol,
            host_features,
        })
    }

    /// The client id the host assigned.
    pub fn id(&self) -> ClientId {
        self.client.id()
    }

    /// The protocol generation in use.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The feature bits the host reported.
    pub fn host_features(&self) -> HostFeatures0 {
        self.host_features
    }

    /// Announces that the guest clipboard now holds data in `formats` (none: it is empty). The
    /// host will ask for the data with a [`HostEvent::DataRequest`] when it needs it.
    pub fn report_formats(&self, formats: Formats) -> Result<()> {
        let mut params = [Param::U32(formats.bits())];
        self.client
            .call(
                Function::REPORT_FORMATS,
                &mut params,
                CallOptions::default(),
            )
            .map(drop)
    }

    /// Reads the host clipboard in `format`, as the wire carries it; `None` when the host has
    /// no data in that format.
    pub fn read(&self, format: Format) -> Result<Option<Vec<u8>>> {
        let function = Function::DATA_READ;
        let mut size = FIRST_READ_BUFFER;
        for _ in 0..MAX_TRIES {
            let mut buffer = vec![0u8; size];
            let mut params = [
                Param::U32(format.flag().bits()),
                Param::out(&mut buffer),
                Param::U32(0),
            ];
            // Success or VINF_BUFFER_OVERFLOW; the reported size tells which applies, whichever
            // way the host decides an exactly fitting buffer.
            self.client
                .call(function, &mut params, CallOptions::default())?;
            let available = params[2].as_u32().unwrap_or(0);
            let available = usize::try_from(available).unwrap_or(usize::MAX);
            if available == 0 {
                return Ok(None);
            }
            if available <= buffer.len() {
                buffer.truncate(available);
                return Ok(Some(buffer));
            }
            if available > MAX_DATA {
                return Err(ClipboardError::TooLarge {
                    function,
                    size: available as u64,
                });
            }
            size = available;
        }
        Err(ClipboardError::KeptGrowing { function })
    }

    /// Answers a host [`DataRequest`] with `data` in the wire encoding of the request's format;
    /// empty data tells the host that the guest has nothing in that format.
    pub fn write(&self, request: &DataRequest, data: &[u8]) -> Result<()> {
        let function = Function::DATA_WRITE;
        if data.len() > MAX_DATA {
            return Err(ClipboardError::TooLarge {
                function,
                size: data.len() as u64,
            });
        }
        let format = request
            .format()
            .map_or(request.formats.bits(), |format| format.flag().bits());
        let mut params = match (self.protocol, request.context) {
            (Protocol::Message, Some(context)) => {
                vec![Param::U64(context), Param::U32(format), Param::In(data)]
            }
            (Protocol::Legacy, _) => vec![Param::U32(format), Param::In(data)],
            (Protocol::Message, None) => {
                return Err(ClipboardError::NoSuchRequest { function });
            }
        };
        self.client
            .call(function, &mut params, CallOptions::default())
            .map(drop)
    }

    /// Waits for the next message of the host, for at most `timeout` (`None`: without a limit).
    ///
    /// A timeout or a signal ends the wait with [`ClipboardError::TimedOut`] or
    /// [`ClipboardError::Interrupted`]; the parked call is cancelled in the service, so the
    /// client can wait again at once.
    pub fn next_event(&self, timeout: Option<Duration>) -> Result<HostEvent> {
        let deadline = Deadline::after(timeout);
        loop {
            let options = deadline.call_options().ok_or(ClipboardError::TimedOut {
                function: self.wait_function(),
            })?;
            let outcome = match self.protocol {
                Protocol::Message => self.peek_and_get(Function::MSG_PEEK_WAIT, options),
                Protocol::Legacy => self.legacy_wait(options).map(Some),
            };
            match outcome {
                Ok(Some(event)) => return Ok(event),
                // The message was taken meanwhile (by another thread of this client), or one
                // the client does not know was discarded: wait for the next.
                Ok(None) => continue,
                Err(
                    error @ (ClipboardError::Interrupted { .. } | ClipboardError::TimedOut { .. }),
                ) => {
                    if let Err(cancel) = self.cancel_wait() {
                        log::warn!("cancelling the clipboard wait after {error}: {cancel}");
                    }
                    return Err(error);
                }
                Err(other) => return Err(other),
            }
        }
    }

    /// Returns the next message of the host if one is queued, without waiting. (The legacy
    /// protocol has no way to look without waiting; with it this always returns `None`.)
    pub fn poll_event(&self) -> Result<Option<HostEvent>> {
        if self.protocol == Protocol::Legacy {
            return Ok(None);
        }
        loop {
            match self.peek_and_get(Function::MSG_PEEK_NOWAIT, CallOptions::default()) {
                Ok(Some(event)) => return Ok(Some(event)),
                Ok(None) => continue,
                Err(error) if error.status() == Some(Status::VERR_TRY_AGAIN) => return Ok(None),
                Err(error) => return Err(error),
            }
        }
    }

    /// Ends a wait parked in the service by another thread of this client with
    /// [`HostEvent::Canceled`]. Returns whether a wait was parked. (Only the message protocol
    /// can cancel; with the legacy one this returns `false`.)
    pub fn cancel_wait(&self) -> Result<bool> {
        if self.protocol == Protocol::Legacy {
            return Ok(false);
        }
        let status = self
            .client
            .call(Function::MSG_CANCEL, &mut [], CallOptions::default())?;
        Ok(status != Status::VWRN_NOT_FOUND)
    }

    /// Tells the host that the guest could not handle a message (`ERROR`); the host only logs
    /// it.
    pub fn report_error(&self, context: u64, status: Status) -> Result<()> {
        let mut params = [Param::U64(context), Param::U32(status.raw() as u32)];
        match self
            .client
            .call(Function::ERROR, &mut params, CallOptions::default())
        {
            Ok(_) => Ok(()),
            // VirtualBox's guests ignore this answer of hosts without the function.
            Err(error) if error.status() == Some(Status::VERR_NOT_SUPPORTED) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Disconnects explicitly, reporting the host's answer.
    pub fn disconnect(self) -> Result<()> {
        self.client.disconnect()
    }

    /// The function a wait of this client's protocol calls.
    fn wait_function(&self) -> Function {
        match self.protocol {
            Protocol::Message => Function::MSG_PEEK_WAIT,
            Protocol::Legacy => Function::MSG_OLD_GET_WAIT,
        }
    }

    /// One peek (`function`: MSG_PEEK_WAIT or MSG_PEEK_NOWAIT) and the MSG_GET of the message
    /// it reports; `None` when there is nothing to return yet.
    fn peek_and_get(&self, function: Function, options: CallOptions) -> Result<Option<HostEvent>> {
        let mut params = Vec::with_capacity(2 + PEEK_SIZE_SLOTS);
        params.push(Param::U64(0));
        params.push(Param::U32(0));
        params.extend((0..PEEK_SIZE_SLOTS).map(|_| Param::U32(0)));
        let status = self.client.call(function, &mut params, options)?;
        let message = params
            .first()
            .and_then(|param| param.as_u64().or_else(|| param.as_u32().map(u64::from)))
            .and_then(|id| u32::try_from(id).ok())
            .map(HostMessage)
            .ok_or_else(|| malformed(function, "no 32-bit message ID"))?;
        if status == Status::VINF_TRY_AGAIN || message == HostMessage::CANCELED {
            return Ok(Some(HostEvent::Canceled));
        }
        let parameters = params.get(1).and_then(Param::as_u32).unwrap_or(0);
        match message {
            HostMessage::QUIT => Ok(Some(HostEvent::Quit)),
            HostMessage::FORMATS_REPORT | HostMessage::READ_DATA => {
                let mut get = [Param::U32(message.raw()), Param::U32(0)];
                if !self.get_message(&mut get)? {
                    return Ok(None);
                }
                let formats = Formats::from_bits_retain(get[1].as_u32().unwrap_or(0));
                Ok(Some(if message == HostMessage::FORMATS_REPORT {
                    HostEvent::Formats(formats)
                } else {
                    HostEvent::DataRequest(DataRequest {
                        context: None,
                        formats,
                    })
                }))
            }
            HostMessage::READ_DATA_CID => {
                let mut get = [Param::U64(message.raw().into()), Param::U32(0)];
                if !self.get_message(&mut get)? {
                    return Ok(None);
                }
                Ok(Some(HostEvent::DataRequest(DataRequest {
                    context: get[0].as_u64(),
                    formats: Formats::from_bits_retain(get[1].as_u32().unwrap_or(0)),
                })))
            }
            other => {
                let sizes: Vec<u32> = params
                    .iter()
                    .skip(2)
                    .map(|param| param.as_u32().unwrap_or(0))
                    .collect();
                self.discard(other, parameters, &sizes)?;
                Ok(None)
            }
        }
    }

    /// Fetches the message the last peek reported into `params`; `false` when it is no longer
    /// there (another thread of this client took it, or the host replaced it).
    fn get_message(&self, params: &mut [Param<'_>]) -> Result<bool> {
        match self
            .client
            .call(Function::MSG_GET, params, CallOptions::default())
        {
            Ok(_) => Ok(true),
            Err(error)
                if matches!(
                    error.status(),
                    Some(Status::VERR_TRY_AGAIN | Status::VERR_MISMATCH)
                ) =>
            {
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }

    /// Fetches an unknown message with parameters of the sizes the peek reported, drops it and
    /// tells the host that the guest does not support it.
    fn discard(&self, message: HostMessage, parameters: u32, sizes: &[u32]) -> Result<()> {
        log::warn!("clipboard: discarding host message {message} ({parameters} parameters)");
        let unfetchable = ClipboardError::UnfetchableMessage {
            message,
            parameters,
        };
        let count = usize::try_from(parameters).unwrap_or(usize::MAX);
        let Some(sizes) = sizes.get(..count) else {
            return Err(unfetchable);
        };
        if sizes.iter().any(|&size| {
            size > MAX_DISCARDED_BUFFER && size != PEEK_SIZE_U32 && size != PEEK_SIZE_U64
        }) {
            return Err(unfetchable);
        }
        let mut buffers: Vec<Vec<u8>> = sizes
            .iter()
            .filter(|&&size| size != PEEK_SIZE_U32 && size != PEEK_SIZE_U64)
            .map(|&size| vec![0; size as usize])
            .collect();
        let mut buffers = buffers.iter_mut();
        let mut params = Vec::with_capacity(sizes.len());
        for (index, &size) in sizes.iter().enumerate() {
            let expected = if index == 0 { message.raw() } else { 0 };
            params.push(match size {
                PEEK_SIZE_U32 => Param::U32(expected),
                PEEK_SIZE_U64 => Param::U64(expected.into()),
                _ => match buffers.next() {
                    Some(buffer) => Param::out(buffer),
                    None => return Err(unfetchable),
                },
            });
        }
        self.get_message(&mut params)?;
        self.report_error(0, Status::VERR_NOT_SUPPORTED)
    }

    /// One legacy MSG_OLD_GET_WAIT.
    fn legacy_wait(&self, options: CallOptions) -> Result<HostEvent> {
        let function = Function::MSG_OLD_GET_WAIT;
        let mut params = [Param::U32(0), Param::U32(0)];
        self.client.call(function, &mut params, options)?;
        let message = HostMessage(params[0].as_u32().unwrap_or(0));
        let formats = Formats::from_bits_retain(params[1].as_u32().unwrap_or(0));
        match message {
            HostMessage::QUIT => Ok(HostEvent::Quit),
            HostMessage::FORMATS_REPORT => Ok(HostEvent::Formats(formats)),
            HostMessage::READ_DATA => Ok(HostEvent::DataRequest(DataRequest {
                context: None,
                formats,
            })),
            HostMessage::CANCELED => Ok(HostEvent::Canceled),
            other => Err(malformed(
                function,
                format!("message {other} is not a legacy message"),
            )),
        }
    }
}

fn malformed(function: Function, reason: impl Into<String>) -> ClipboardError {
    ClipboardError::MalformedReply {
        function,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{
        BIT32, BIT64, FakeTransport, LINADDR_IN, LINADDR_OUT, function_of, get_u32, param_type,
        param_u32, param_u64, parameter_count, put_u32, set_param_u32, set_param_u64, set_status,
        user_bytes, write_user,
    };

    const CLIENT: u32 = 7;

    /// A driver that connects the client and answers REPORT_FEATURES with `host_features`
    /// (word 1 cleared, as a host that understood the call does).
    fn negotiated(host_features: u64) -> FakeTransport {
        FakeTransport::new()
            .then(|buffer| {
                put_u32(buffer, 24, CLIENT);
                Ok(())
            })
            .then(move |buffer| {
                set_param_u64(buffer, 0, host_features);
                set_param_u64(buffer, 1, 0);
                Ok(())
            })
    }

    /// A driver whose host speaks the message protocol.
    fn message_host() -> FakeTransport {
        negotiated(HostFeatures0::CONTEXT_ID.bits())
    }

    fn with_client<R>(
        fake: FakeTransport,
        test: impl FnOnce(&ClipboardClient<'_, FakeTransport>) -> R,
    ) -> (R, Vec<crate::fake::Recorded>) {
        let device = Device::with_transport(fake).unwrap();
        let client = ClipboardClient::connect(&device).unwrap();
        let result = test(&client);
        drop(client);
        (result, device.transport().recorded())
    }

    /// Answers a peek with `message`, its parameter count and the given parameter sizes.
    fn peeked(
        message: HostMessage,
        sizes: &'static [u32],
    ) -> impl FnOnce(&mut [u8]) -> std::result::Result<(), crate::Errno> {
        move |buffer| {
            assert_eq!(function_of(buffer), Function::MSG_PEEK_WAIT.raw());
            set_param_u64(buffer, 0, message.raw().into());
            set_param_u32(buffer, 1, sizes.len() as u32);
            for (index, &size) in sizes.iter().enumerate() {
                set_param_u32(buffer, 2 + index, size);
            }
            Ok(())
        }
    }

    #[test]
    fn connect_names_the_service_and_reports_context_ids_with_bit_63() {
        let (client, recorded) = with_client(message_host(), |client| client.protocol());
        assert_eq!(&recorded[1].buffer[28..48], b"VBoxSharedClipboard\0");
        let features = &recorded[2].buffer;
        assert_eq!(function_of(features), Function::REPORT_FEATURES.raw());
        assert_eq!(parameter_count(features), 2);
        assert_eq!(param_type(features, 0), BIT64);
        assert_eq!(param_u64(features, 0), 1);
        assert_eq!(param_type(features, 1), BIT64);
        assert_eq!(param_u64(features, 1), 1 << 63);
        assert_eq!(client, Protocol::Message);
    }

    #[test]
    fn a_host_without_context_ids_gets_the_legacy_protocol() {
        let (protocol, _) = with_client(negotiated(0), |client| client.protocol());
        assert_eq!(protocol, Protocol::Legacy);
    }

    #[test]
    fn a_host_that_leaves_bit_63_set_is_an_old_host() {
        let fake = FakeTransport::new().then(|buffer| {
            put_u32(buffer, 24, CLIENT);
            Ok(())
        });
        let (protocol, _) = with_client(fake, |client| client.protocol());
        assert_eq!(protocol, Protocol::Legacy);
    }

    #[test]
    fn a_host_without_report_features_gets_the_legacy_protocol() {
        let fake = FakeTransport::new()
            .then(|buffer| {
                put_u32(buffer, 24, CLIENT);
                Ok(())
            })
            .then(|buffer| {
                set_status(buffer, Status::VERR_NOT_IMPLEMENTED.raw());
                Ok(())
            });
        let (protocol, _) = with_client(fake, |client| client.protocol());
        assert_eq!(protocol, Protocol::Legacy);
    }

    #[test]
    fn connect_without_the_service_is_service_unavailable() {
        let fake = FakeTransport::new().then(|buffer| {
            set_status(buffer, Status::VERR_HGCM_SERVICE_NOT_FOUND.raw());
            Ok(())
        });
        let device = Device::with_transport(fake).unwrap();
        let err = ClipboardClient::connect(&device).unwrap_err();
        assert!(matches!(err, ClipboardError::ServiceUnavailable), "{err:?}");
    }

    #[test]
    fn read_sends_the_format_an_output_buffer_and_a_size() {
        let fake = message_host().then(|buffer| {
            assert_eq!(function_of(buffer), Function::DATA_READ.raw());
            assert_eq!(parameter_count(buffer), 3);
            assert_eq!(param_type(buffer, 0), BIT32);
            assert_eq!(param_u32(buffer, 0), Formats::HTML.bits());
            assert_eq!(param_type(buffer, 1), LINADDR_OUT);
            assert_eq!(param_u32(buffer, 1) as usize, FIRST_READ_BUFFER);
            assert_eq!(param_type(buffer, 2), BIT32);
            write_user(buffer, 1, b"<b>\0");
            set_param_u32(buffer, 2, 4);
            Ok(())
        });
        let (data, _) = with_client(fake, |client| client.read(Format::Html).unwrap());
        assert_eq!(data.as_deref(), Some(&b"<b>\0"[..]));
    }

    #[test]
    fn read_of_a_format_the_host_lacks_is_none() {
        let fake = message_host().then(|buffer| {
            set_param_u32(buffer, 2, 0);
            Ok(())
        });
        let (data, _) = with_client(fake, |client| client.read(Format::Bitmap).unwrap());
        assert_eq!(data, None);
    }

    #[test]
    fn read_retries_with_the_size_the_host_reports() {
        let needed = FIRST_READ_BUFFER as u32 + 10;
        let fake = message_host()
            .then(move |buffer| {
                set_status(buffer, Status::VINF_BUFFER_OVERFLOW.raw());
                set_param_u32(buffer, 2, needed);
                Ok(())
            })
            .then(move |buffer| {
                assert_eq!(param_u32(buffer, 1), needed);
                write_user(buffer, 1, &vec![b'x'; needed as usize]);
                set_param_u32(buffer, 2, needed);
                Ok(())
            });
        let (data, _) = with_client(fake, |client| client.read(Format::UnicodeText).unwrap());
        assert_eq!(data.map(|data| data.len()), Some(needed as usize));
    }

    #[test]
    fn an_exactly_full_buffer_reported_as_overflow_is_complete() {
        let fake = message_host().then(|buffer| {
            set_status(buffer, Status::VINF_BUFFER_OVERFLOW.raw());
            write_user(buffer, 1, &vec![b'y'; FIRST_READ_BUFFER]);
            set_param_u32(buffer, 2, FIRST_READ_BUFFER as u32);
            Ok(())
        });
        let (data, recorded) =
            with_client(fake, |client| client.read(Format::UnicodeText).unwrap());
        assert_eq!(data.map(|data| data.len()), Some(FIRST_READ_BUFFER));
        assert_eq!(
            recorded.len(),
            5,
            "handshake, connect, features, one read, disconnect"
        );
    }

    #[test]
    fn read_gives_up_when_the_data_keeps_growing() {
        let mut fake = message_host();
        for _ in 0..MAX_TRIES {
            fake = fake.then(|buffer| {
                set_status(buffer, Status::VINF_BUFFER_OVERFLOW.raw());
                set_param_u32(buffer, 2, param_u32(buffer, 1) + 1);
                Ok(())
            });
        }
        let (result, _) = with_client(fake, |client| client.read(Format::UnicodeText));
        let err = result.unwrap_err();
        assert!(matches!(err, ClipboardError::KeptGrowing { .. }), "{err:?}");
    }

    #[test]
    fn a_reported_size_beyond_the_driver_limit_is_too_large() {
        let fake = message_host().then(|buffer| {
            set_status(buffer, Status::VINF_BUFFER_OVERFLOW.raw());
            set_param_u32(buffer, 2, u32::MAX);
            Ok(())
        });
        let (result, recorded) = with_client(fake, |client| client.read(Format::UnicodeText));
        let err = result.unwrap_err();
        assert!(
            matches!(err, ClipboardError::TooLarge { size, .. } if size == u64::from(u32::MAX)),
            "{err:?}"
        );
        assert_eq!(recorded.len(), 5, "no second read");
    }

    #[test]
    fn a_direction_the_mode_forbids_is_access_denied() {
        let fake = message_host().then(|buffer| {
            set_status(buffer, Status::VERR_ACCESS_DENIED.raw());
            Ok(())
        });
        let (result, _) = with_client(fake, |client| client.read(Format::UnicodeText));
        let err = result.unwrap_err();
        assert!(
            matches!(
                err,
                ClipboardError::AccessDenied {
                    function: Function::DATA_READ
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn report_formats_sends_the_mask() {
        let fake = message_host().then(|buffer| {
            assert_eq!(function_of(buffer), Function::REPORT_FORMATS.raw());
            assert_eq!(parameter_count(buffer), 1);
            assert_eq!(param_type(buffer, 0), BIT32);
            assert_eq!(param_u32(buffer, 0), 0x5);
            Ok(())
        });
        let (result, _) = with_client(fake, |client| {
            client.report_formats(Formats::UNICODETEXT | Formats::HTML)
        });
        result.unwrap();
    }

    #[test]
    fn write_answers_with_the_context_the_format_and_the_data() {
        let fake = message_host().then(|buffer| {
            assert_eq!(function_of(buffer), Function::DATA_WRITE.raw());
            assert_eq!(parameter_count(buffer), 3);
            assert_eq!(param_type(buffer, 0), BIT64);
            assert_eq!(param_u64(buffer, 0), 0x0001_2345_6789);
            assert_eq!(param_type(buffer, 1), BIT32);
            assert_eq!(param_u32(buffer, 1), Formats::UNICODETEXT.bits());
            assert_eq!(param_type(buffer, 2), LINADDR_IN);
            assert_eq!(user_bytes(buffer, 2), b"h\0i\0\0\0");
            Ok(())
        });
        let request = DataRequest {
            context: Some(0x0001_2345_6789),
            formats: Formats::UNICODETEXT | Formats::HTML,
        };
        let (result, _) = with_client(fake, |client| client.write(&request, b"h\0i\0\0\0"));
        result.unwrap();
    }

    #[test]
    fn legacy_write_sends_the_format_and_the_data_only() {
        let fake = negotiated(0).then(|buffer| {
            assert_eq!(function_of(buffer), Function::DATA_WRITE.raw());
            assert_eq!(parameter_count(buffer), 2);
            assert_eq!(param_u32(buffer, 0), Formats::BITMAP.bits());
            assert_eq!(user_bytes(buffer, 1), b"dib");
            Ok(())
        });
        let request = DataRequest {
            context: None,
            formats: Formats::BITMAP,
        };
        let (result, _) = with_client(fake, |client| client.write(&request, b"dib"));
        result.unwrap();
    }

    #[test]
    fn an_empty_answer_is_sent_as_an_empty_buffer() {
        let fake = message_host().then(|buffer| {
            assert_eq!(param_type(buffer, 2), LINADDR_IN);
            assert_eq!(param_u32(buffer, 2), 0);
            Ok(())
        });
        let request = DataRequest {
            context: Some(1),
            formats: Formats::HTML,
        };
        let (result, _) = with_client(fake, |client| client.write(&request, &[]));
        result.unwrap();
    }

    #[test]
    fn a_wait_peeks_then_gets_a_format_report() {
        let fake = message_host()
            .then(move |buffer| {
                assert_eq!(parameter_count(buffer) as usize, 2 + PEEK_SIZE_SLOTS);
                assert_eq!(param_type(buffer, 0), BIT64);
                assert_eq!(param_u64(buffer, 0), 0, "no restore check");
                assert_eq!(get_u32(buffer, 32), 2500, "timeout_ms");
                peeked(HostMessage::FORMATS_REPORT, &[PEEK_SIZE_U32, PEEK_SIZE_U32])(buffer)
            })
            .then(|buffer| {
                assert_eq!(function_of(buffer), Function::MSG_GET.raw());
                assert_eq!(parameter_count(buffer), 2);
                assert_eq!(param_type(buffer, 0), BIT32);
                assert_eq!(param_u32(buffer, 0), 3);
                assert_eq!(param_type(buffer, 1), BIT32);
                set_param_u32(buffer, 1, 0x3);
                Ok(())
            });
        let (event, _) = with_client(fake, |client| {
            client
                .next_event(Some(Duration::from_millis(2500)))
                .unwrap()
        });
        assert_eq!(
            event,
            HostEvent::Formats(Formats::UNICODETEXT | Formats::BITMAP)
        );
    }

    #[test]
    fn a_wait_returns_a_data_request_with_its_context() {
        let fake = message_host()
            .then(peeked(
                HostMessage::READ_DATA_CID,
                &[PEEK_SIZE_U64, PEEK_SIZE_U32],
            ))
            .then(|buffer| {
                assert_eq!(param_type(buffer, 0), BIT64);
                assert_eq!(param_u64(buffer, 0), 5);
                set_param_u64(buffer, 0, 0xABCD);
                set_param_u32(buffer, 1, Formats::HTML.bits());
                Ok(())
            });
        let (event, _) = with_client(fake, |client| client.next_event(None).unwrap());
        assert_eq!(
            event,
            HostEvent::DataRequest(DataRequest {
                context: Some(0xABCD),
                formats: Formats::HTML,
            })
        );
    }

    #[test]
    fn quit_is_returned_without_fetching() {
        let fake = message_host().then(peeked(HostMessage::QUIT, &[]));
        let (event, recorded) = with_client(fake, |client| client.next_event(None).unwrap());
        assert_eq!(event, HostEvent::Quit);
        assert_eq!(
            recorded.len(),
            5,
            "handshake, connect, features, peek, disconnect"
        );
    }

    #[test]
    fn a_cancelled_peek_is_canceled() {
        let fake = message_host().then(|buffer| {
            set_status(buffer, Status::VINF_TRY_AGAIN.raw());
            set_param_u64(buffer, 0, HostMessage::CANCELED.raw().into());
            Ok(())
        });
        let (event, _) = with_client(fake, |client| client.next_event(None).unwrap());
        assert_eq!(event, HostEvent::Canceled);
    }

    #[test]
    fn an_interrupted_wait_is_cancelled_in_the_service() {
        let fake = message_host().then_fail(libc::EINTR).then(|buffer| {
            assert_eq!(function_of(buffer), Function::MSG_CANCEL.raw());
            assert_eq!(parameter_count(buffer), 0);
            Ok(())
        });
        let (result, recorded) = with_client(fake, |client| client.next_event(None));
        let err = result.unwrap_err();
        assert!(matches!(err, ClipboardError::Interrupted { .. }), "{err:?}");
        assert_eq!(function_of(&recorded[4].buffer), Function::MSG_CANCEL.raw());
    }

    #[test]
    fn a_timed_out_wait_is_cancelled_in_the_service() {
        let fake = message_host().then_fail(libc::ETIMEDOUT).then(|buffer| {
            set_status(buffer, Status::VWRN_NOT_FOUND.raw());
            Ok(())
        });
        let (result, recorded) = with_client(fake, |client| {
            client.next_event(Some(Duration::from_millis(10)))
        });
        let err = result.unwrap_err();
        assert!(matches!(err, ClipboardError::TimedOut { .. }), "{err:?}");
        assert_eq!(function_of(&recorded[4].buffer), Function::MSG_CANCEL.raw());
    }

    #[test]
    fn a_second_wait_on_the_client_is_busy() {
        let fake = message_host().then(|buffer| {
            set_status(buffer, Status::VERR_RESOURCE_BUSY.raw());
            Ok(())
        });
        let (result, _) = with_client(fake, |client| client.next_event(None));
        let err = result.unwrap_err();
        assert!(matches!(err, ClipboardError::Busy { .. }), "{err:?}");
    }

    #[test]
    fn an_unknown_message_is_fetched_reported_and_skipped() {
        let fake = message_host()
            .then(peeked(
                HostMessage::TRANSFER_STATUS,
                &[PEEK_SIZE_U64, PEEK_SIZE_U32, 16],
            ))
            .then(|buffer| {
                assert_eq!(function_of(buffer), Function::MSG_GET.raw());
                assert_eq!(parameter_count(buffer), 3);
                assert_eq!(param_type(buffer, 0), BIT64);
                assert_eq!(param_u64(buffer, 0), 50);
                assert_eq!(param_type(buffer, 1), BIT32);
                assert_eq!(param_type(buffer, 2), LINADDR_OUT);
                assert_eq!(param_u32(buffer, 2), 16);
                Ok(())
            })
            .then(|buffer| {
                assert_eq!(function_of(buffer), Function::ERROR.raw());
                assert_eq!(param_u64(buffer, 0), 0);
                assert_eq!(
                    param_u32(buffer, 1) as i32,
                    Status::VERR_NOT_SUPPORTED.raw()
                );
                set_status(buffer, Status::VERR_NOT_SUPPORTED.raw());
                Ok(())
            })
            .then(peeked(HostMessage::QUIT, &[]));
        let (event, _) = with_client(fake, |client| client.next_event(None).unwrap());
        assert_eq!(event, HostEvent::Quit);
    }

    #[test]
    fn an_unknown_message_with_a_huge_buffer_is_unfetchable() {
        let fake = message_host().then(peeked(HostMessage(99), &[PEEK_SIZE_U32, 1 << 30]));
        let (result, _) = with_client(fake, |client| client.next_event(None));
        let err = result.unwrap_err();
        assert!(
            matches!(
                err,
                ClipboardError::UnfetchableMessage { parameters: 2, .. }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn a_message_taken_before_the_get_is_waited_past() {
        let fake = message_host()
            .then(peeked(
                HostMessage::FORMATS_REPORT,
                &[PEEK_SIZE_U32, PEEK_SIZE_U32],
            ))
            .then(|buffer| {
                set_status(buffer, Status::VERR_TRY_AGAIN.raw());
                Ok(())
            })
            .then(peeked(HostMessage::QUIT, &[]));
        let (event, _) = with_client(fake, |client| client.next_event(None).unwrap());
        assert_eq!(event, HostEvent::Quit);
    }

    #[test]
    fn a_legacy_wait_maps_the_old_messages() {
        let fake = negotiated(0).then(|buffer| {
            assert_eq!(function_of(buffer), Function::MSG_OLD_GET_WAIT.raw());
            assert_eq!(parameter_count(buffer), 2);
            set_param_u32(buffer, 0, HostMessage::READ_DATA.raw());
            set_param_u32(buffer, 1, Formats::UNICODETEXT.bits());
            Ok(())
        });
        let (event, _) = with_client(fake, |client| client.next_event(None).unwrap());
        assert_eq!(
            event,
            HostEvent::DataRequest(DataRequest {
                context: None,
                formats: Formats::UNICODETEXT,
            })
        );
    }

    #[test]
    fn poll_peeks_without_waiting_and_gets_the_message() {
        let fake = message_host()
            .then(|buffer| {
                assert_eq!(function_of(buffer), Function::MSG_PEEK_NOWAIT.raw());
                set_param_u64(buffer, 0, HostMessage::FORMATS_REPORT.raw().into());
                Ok(())
            })
            .then(|buffer| {
                assert_eq!(function_of(buffer), Function::MSG_GET.raw());
                set_param_u32(buffer, 1, 0);
                Ok(())
            });
        let (event, _) = with_client(fake, |client| client.poll_event().unwrap());
        assert_eq!(event, Some(HostEvent::Formats(Formats::NONE)));
    }

    #[test]
    fn poll_of_an_empty_queue_is_none() {
        let fake = message_host().then(|buffer| {
            set_status(buffer, Status::VERR_TRY_AGAIN.raw());
            Ok(())
        });
        let (event, _) = with_client(fake, |client| client.poll_event().unwrap());
        assert_eq!(event, None);
    }

    #[test]
    fn cancel_wait_with_nothing_parked_is_false() {
        let fake = message_host().then(|buffer| {
            set_status(buffer, Status::VWRN_NOT_FOUND.raw());
            Ok(())
        });
        let (cancelled, _) = with_client(fake, |client| client.cancel_wait().unwrap());
        assert!(!cancelled);
    }

    #[test]
    fn a_request_names_the_first_known_format_in_host_priority() {
        let request = DataRequest {
            context: None,
            formats: Formats::HTML | Formats::BITMAP | Formats::URI_LIST,
        };
        assert_eq!(request.format(), Some(Format::Bitmap));
        let unknown = DataRequest {
            context: None,
            formats: Formats::URI_LIST,
        };
        assert_eq!(unknown.format(), None);
    }
}
