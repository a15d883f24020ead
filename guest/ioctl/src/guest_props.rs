//! A typed client of the guest-properties service (`VBoxGuestPropSvc`) over an [`HgcmClient`].
//!
//! Guest properties are the VM-wide key/value store the host and the guest share: the guest
//! publishes facts about itself, the host publishes its version and configuration, and either
//! side can wait for changes. [`GuestPropClient`] sends exactly what VirtualBox's guest library
//! sends (strings as `LINADDR_IN` buffers including their NUL, results into `LINADDR_OUT`
//! buffers, numbers as 32/64-bit values), and hides the two-step dances of the protocol:
//!
//! * a read or an enumeration whose result does not fit the buffer is repeated with the size the
//!   host asked for (the property may change in between, so up to [`MAX_TRIES`] times);
//! * a change notification that does not fit is fetched again with the *same* starting
//!   timestamp, so the host serves the same event again instead of the next one, and the caller
//!   loses nothing. The first buffer already holds the largest event VirtualBox's limits allow,
//!   so with a VirtualBox host the retry never happens at all.
//!
//! Waiting ([`GuestPropClient::wait`]) is an HGCM call the host completes later: the driver's
//! timeout or a signal cancels it ([`GuestPropError::TimedOut`], [`GuestPropError::Interrupted`])
//! and the client stays usable.
//!
//! ```no_run
//! use std::time::Duration;
//! use vmmdev_guest_ioctl::guest_props::{GuestPropClient, PropertyFlags};
//! use vmmdev_guest_ioctl::{Device, Node};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = Device::open(Node::User)?;
//! let props = GuestPropClient::connect(&device)?;
//! props.set("/Demo/Greeting", "hello", PropertyFlags::TRANSIENT)?;
//! if let Some(property) = props.get("/Demo/Greeting")? {
//!     println!("{} (set at {} ns)", property.value, property.timestamp);
//! }
//! let change = props.wait("/Demo/*", 0, Some(Duration::from_secs(10)))?;
//! println!("{} changed", change.name);
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use vmmdev_protocol::hgcm::ClientId;
use vmmdev_protocol::ioctl::VBG_MAX_HGCM_USER_PARM;
use vmmdev_protocol::services::guest_props::{
    Function, GUEST_PROP_MAX_FLAGS_LEN, GUEST_PROP_MAX_NAME_LEN, GUEST_PROP_MAX_VALUE_LEN,
    NOTIFICATION_DELETED, SERVICE_NAME,
};
use vmmdev_protocol::status::Status;

pub use vmmdev_protocol::services::guest_props::PropertyFlags;

use crate::deadline::Deadline;
use crate::device::Device;
use crate::error::Error;
use crate::hgcm::{CallOptions, HgcmClient, Param};
use crate::service::{ServiceClient, ServiceError};
use crate::transport::GuestTransport;

/// How often a read, enumeration or notification is attempted when the host keeps reporting
/// that the result does not fit (as VirtualBox's guest library does).
pub const MAX_TRIES: usize = 10;

/// The first GET_PROP buffer: the largest value and flags string with room to spare.
const GET_BUFFER: usize = (GUEST_PROP_MAX_VALUE_LEN + GUEST_PROP_MAX_FLAGS_LEN + 1024) as usize;
/// The first ENUM_PROPS buffer, and what is added to the size the host asks for on a retry.
const ENUM_BUFFER: usize = 4096;
/// The first GET_NOTIFICATION buffer: the largest event within VirtualBox's limits, with room
/// to spare.
const WAIT_BUFFER: usize =
    (GUEST_PROP_MAX_NAME_LEN + GUEST_PROP_MAX_VALUE_LEN + GUEST_PROP_MAX_FLAGS_LEN + 1024) as usize;
/// The largest buffer this client hands the driver (the Linux driver's limit for a user call).
const MAX_BUFFER: usize = VBG_MAX_HGCM_USER_PARM as usize;

/// One property as the service reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Property {
    /// The property name.
    pub name: String,
    /// The value (possibly empty).
    pub value: String,
    /// When the property was last set, in nanoseconds since the Unix epoch (host clock).
    pub timestamp: u64,
    /// The property's flags.
    pub flags: PropertyFlags,
}

/// A change of a property, as [`GuestPropClient::wait`] returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// The property that changed.
    pub name: String,
    /// The new value; empty for a deletion.
    pub value: String,
    /// The new flags; empty for a deletion.
    pub flags: PropertyFlags,
    /// The change's timestamp. Pass it to the next [`GuestPropClient::wait`] to get the change
    /// after this one.
    pub timestamp: u64,
    /// Whether the change deleted the property.
    pub deleted: bool,
    /// Whether changes may have been missed: the host no longer remembered the timestamp the
    /// wait started from (`VWRN_NOT_FOUND`), so this is the oldest matching change it still
    /// knows.
    pub missed_changes: bool,
}

/// A failed guest-property operation.
#[derive(Debug, thiserror::Error)]
pub enum GuestPropError {
    /// A name, value, flags string or pattern this client cannot send.
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// What was refused.
        what: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// The host has no guest-properties service.
    #[error("the host has no guest property service")]
    ServiceUnavailable,
    /// The host reported that something does not exist (`VERR_NOT_FOUND`).
    #[error("{function}: not found")]
    NotFound {
        /// The function that failed.
        function: Function,
    },
    /// The property is read-only for the guest, its name is in a namespace only the host may
    /// write, or the host's policy denies the caller (`VERR_PERMISSION_DENIED`); or the whole
    /// store is read-only for the guest and the write was ignored (`VINF_PERMISSION_DENIED`,
    /// which VirtualBox reports as a success).
    #[error("{function}: access denied{}", if *store_read_only { " (the store is read-only for the guest)" } else { "" })]
    AccessDenied {
        /// The function that failed.
        function: Function,
        /// True when the whole store is read-only for the guest.
        store_read_only: bool,
    },
    /// The host found a value or pattern too long, or a new property would exceed its property
    /// limit (`VERR_TOO_MUCH_DATA`; VirtualBox uses one status for both).
    #[error("{function}: too long, or too many properties (VERR_TOO_MUCH_DATA)")]
    TooLong {
        /// The function that failed.
        function: Function,
    },
    /// The host refused the name or a parameter (`VERR_INVALID_PARAMETER`): an empty name or
    /// one with `*`, `?` or `|`, or a name longer than the host accepts.
    #[error("{function}: the host refused the name or a parameter (VERR_INVALID_PARAMETER)")]
    Refused {
        /// The function that failed.
        function: Function,
    },
    /// The host could not parse the flags string (`VERR_PARSE_ERROR`).
    #[error("{function}: the host does not accept these flags (VERR_PARSE_ERROR)")]
    BadFlags {
        /// The function that failed.
        function: Function,
    },
    /// This client already has as many waits pending as the host allows
    /// (`VERR_OUT_OF_RESOURCES`).
    #[error("{function}: too many waits pending on this client")]
    TooManyWaits {
        /// The function that failed.
        function: Function,
    },
    /// The result grew between the host reporting its size and the retry, [`MAX_TRIES`] times
    /// in a row.
    #[error("{function}: the result kept growing; gave up after {MAX_TRIES} tries")]
    KeptGrowing {
        /// The function that failed.
        function: Function,
    },
    /// A signal ended the wait, or the host ended it (a newer wait with the same patterns on
    /// this client, a VM reset or power-off: `VERR_INTERRUPTED`). The client is still usable.
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

impl GuestPropError {
    /// The VirtualBox status the host (or the driver on its behalf) answered with, as VBoxControl
    /// reports it; `None` for a failure found on the guest's side or by errno alone.
    pub fn host_status(&self) -> Option<Status> {
        match self {
            Self::ServiceUnavailable => Some(Status::VERR_HGCM_SERVICE_NOT_FOUND),
            Self::NotFound { .. } => Some(Status::VERR_NOT_FOUND),
            Self::AccessDenied {
                store_read_only: false,
                ..
            } => Some(Status::VERR_PERMISSION_DENIED),
            Self::AccessDenied {
                store_read_only: true,
                ..
            } => Some(Status::VINF_PERMISSION_DENIED),
            Self::TooLong { .. } => Some(Status::VERR_TOO_MUCH_DATA),
            Self::Refused { .. } => Some(Status::VERR_INVALID_PARAMETER),
            Self::BadFlags { .. } => Some(Status::VERR_PARSE_ERROR),
            Self::TooManyWaits { .. } => Some(Status::VERR_OUT_OF_RESOURCES),
            Self::Host { status, .. } => Some(*status),
            Self::Driver(error) => error.host_status(),
            Self::InvalidArgument { .. }
            | Self::KeptGrowing { .. }
            | Self::Interrupted { .. }
            | Self::TimedOut { .. }
            | Self::MalformedReply { .. } => None,
        }
    }

    fn malformed(function: Function, reason: impl Into<String>) -> Self {
        Self::MalformedReply {
            function,
            reason: reason.into(),
        }
    }
}

impl ServiceError for GuestPropError {
    type Function = Function;

    fn service_unavailable() -> Self {
        Self::ServiceUnavailable
    }

    fn from_status(function: Function, status: Status) -> Self {
        match status {
            Status::VERR_NOT_FOUND => Self::NotFound { function },
            Status::VERR_PERMISSION_DENIED => Self::AccessDenied {
                function,
                store_read_only: false,
            },
            Status::VERR_TOO_MUCH_DATA => Self::TooLong { function },
            Status::VERR_INVALID_PARAMETER => Self::Refused { function },
            Status::VERR_PARSE_ERROR => Self::BadFlags { function },
            Status::VERR_OUT_OF_RESOURCES => Self::TooManyWaits { function },
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

/// Result type of this module.
pub type Result<T> = std::result::Result<T, GuestPropError>;

/// A connection to the guest-properties service, disconnected on drop.
#[derive(Debug)]
pub struct GuestPropClient<'d, T: GuestTransport> {
    client: ServiceClient<'d, T, GuestPropError>,
}

impl<'d, T: GuestTransport> GuestPropClient<'d, T> {
    /// Connects to the service.
    pub fn connect(device: &'d Device<T>) -> Result<Self> {
        let client = ServiceClient::connect(device, SERVICE_NAME)?;
        Ok(Self { client })
    }

    /// Uses an existing connection to the service.
    pub fn from_client(client: HgcmClient<'d, T>) -> Self {
        Self {
            client: ServiceClient::new(client),
        }
    }

    /// The client id the host assigned.
    pub fn id(&self) -> ClientId {
        self.client.id()
    }

    /// Reads a property; `None` if it does not exist.
    pub fn get(&self, name: &str) -> Result<Option<Property>> {
        let function = Function::GET_PROP;
        let name_z = nul_terminated("name", name)?;
        let mut size = GET_BUFFER;
        for _ in 0..MAX_TRIES {
            let mut buffer = vec![0u8; size];
            let mut params = [
                Param::In(&name_z),
                Param::out(&mut buffer),
                Param::U64(0),
                Param::U32(0),
            ];
            let outcome = self
                .client
                .call(function, &mut params, CallOptions::default());
            let [_, _, timestamp, needed] = &params;
            let timestamp = timestamp.as_u64().unwrap_or(0);
            let needed = needed.as_u32().unwrap_or(0);
            match outcome {
                Ok(_) => {
                    let mut fields = Fields::new(&buffer, function);
                    let value = fields.string("value")?;
                    let flags = fields.flags()?;
                    return Ok(Some(Property {
                        name: name.to_owned(),
                        value,
                        timestamp,
                        flags,
                    }));
                }
                Err(GuestPropError::NotFound { .. }) => return Ok(None),
                Err(GuestPropError::Host {
                    status: Status::VERR_BUFFER_OVERFLOW,
                    ..
                }) => size = grown(function, size, needed, 0)?,
                Err(other) => return Err(other),
            }
        }
        Err(GuestPropError::KeptGrowing { function })
    }

    /// Creates or replaces a property with `value` and `flags` (SET_PROP_VALUE with three
    /// parameters, as VirtualBox's guest library writes a property with flags).
    pub fn set(&self, name: &str, value: &str, flags: PropertyFlags) -> Result<()> {
        let rendered = flags.render().ok_or(GuestPropError::InvalidArgument {
            what: "flags",
            reason: "unknown flag bits",
        })?;
        let flags_z = nul_terminated("flags", &rendered.to_string())?;
        self.write(name, value, Some(&flags_z))
    }

    /// Creates or replaces a property with `value` and no flags (SET_PROP_VALUE with two
    /// parameters; existing flags are cleared, as in VirtualBox).
    pub fn set_value(&self, name: &str, value: &str) -> Result<()> {
        self.write(name, value, None)
    }

    /// Deletes a property; deleting one that does not exist succeeds.
    pub fn delete(&self, name: &str) -> Result<()> {
        let function = Function::DEL_PROP;
        let name_z = nul_terminated("name", name)?;
        let mut params = [Param::In(&name_z)];
        let status = self
            .client
            .call(function, &mut params, CallOptions::default())?;
        refuse_ignored_write(function, status)
    }

    /// Lists the properties whose names match any of `patterns` (`*` any sequence, `?` one
    /// byte; each pattern may itself be a `|`-separated list); no patterns lists all. The order
    /// is the host's.
    pub fn enumerate(&self, patterns: &[&str]) -> Result<Vec<Property>> {
        let function = Function::ENUM_PROPS;
        // The guest library's form: every pattern NUL-terminated, then one more NUL.
        let mut patterns_zz = Vec::new();
        for pattern in patterns {
            patterns_zz.extend_from_slice(&nul_terminated("pattern", pattern)?);
        }
        patterns_zz.push(0);
        let mut size = ENUM_BUFFER;
        for _ in 0..MAX_TRIES {
            let mut buffer = vec![0u8; size];
            let mut params = [
                Param::In(&patterns_zz),
                Param::out(&mut buffer),
                Param::U32(0),
            ];
            let outcome = self
                .client
                .call(function, &mut params, CallOptions::default());
            let needed = params[2].as_u32().unwrap_or(0);
            match outcome {
                Ok(_) => return parse_enumeration(&buffer, function),
                Err(GuestPropError::Host {
                    status: Status::VERR_BUFFER_OVERFLOW,
                    ..
                }) => size = grown(function, size, needed, ENUM_BUFFER)?,
                Err(other) => return Err(other),
            }
        }
        Err(GuestPropError::KeptGrowing { function })
    }

    /// Waits for the next change of a property whose name matches `patterns` (`|`-separated
    /// alternatives; empty matches every name) after the change with timestamp `after` (0: the
    /// next change from now on). `None` waits without a time limit.
    ///
    /// A change the host remembers that is newer than `after` is returned at once; pass the
    /// returned [`Notification::timestamp`] to the next call to see every change exactly once.
    /// Concurrent waits on one client need different patterns: the host ends a wait when the
    /// same client starts another with the same patterns ([`GuestPropError::Interrupted`]).
    pub fn wait(
        &self,
        patterns: &str,
        after: u64,
        timeout: Option<Duration>,
    ) -> Result<Notification> {
        let function = Function::GET_NOTIFICATION;
        let patterns_z = nul_terminated("patterns", patterns)?;
        let deadline = Deadline::after(timeout);
        let mut size = WAIT_BUFFER;
        for _ in 0..MAX_TRIES {
            let options = deadline
                .call_options()
                .ok_or(GuestPropError::TimedOut { function })?;
            let mut buffer = vec![0u8; size];
            let mut params = [
                Param::In(&patterns_z),
                Param::U64(after),
                Param::out(&mut buffer),
                Param::U32(0),
            ];
            let outcome = self.client.call(function, &mut params, options);
            let [_, timestamp, _, needed] = &params;
            let timestamp = timestamp.as_u64().unwrap_or(0);
            let needed = needed.as_u32().unwrap_or(0);
            match outcome {
                Ok(status) => {
                    let mut fields = Fields::new(&buffer, function);
                    let name = fields.string("name")?;
                    let value = fields.string("value")?;
                    let flags = fields.flags()?;
                    // Hosts older than VirtualBox 6 send no deletion field.
                    let deleted = fields.optional_string("deletion flag")?.as_deref()
                        == Some(NOTIFICATION_DELETED);
                    return Ok(Notification {
                        name,
                        value,
                        flags,
                        timestamp,
                        deleted,
                        missed_changes: status == Status::VWRN_NOT_FOUND,
                    });
                }
                // The event stays queued: asking again from the same timestamp returns it.
                Err(GuestPropError::Host {
                    status: Status::VERR_BUFFER_OVERFLOW,
                    ..
                }) => size = grown(function, size, needed, 0)?,
                Err(other) => return Err(other),
            }
        }
        Err(GuestPropError::KeptGrowing { function })
    }

    /// Disconnects explicitly, reporting the host's answer.
    pub fn disconnect(self) -> Result<()> {
        self.client.disconnect()
    }

    fn write(&self, name: &str, value: &str, flags_z: Option<&[u8]>) -> Result<()> {
        let function = Function::SET_PROP_VALUE;
        let name_z = nul_terminated("name", name)?;
        let value_z = nul_terminated("value", value)?;
        let mut params = Vec::with_capacity(3);
        params.push(Param::In(&name_z));
        params.push(Param::In(&value_z));
        params.extend(flags_z.map(Param::In));
        let status = self
            .client
            .call(function, &mut params, CallOptions::default())?;
        refuse_ignored_write(function, status)
    }
}

/// A write the host accepted but ignored because the store is read-only for the guest.
fn refuse_ignored_write(function: Function, status: Status) -> Result<()> {
    if status == Status::VINF_PERMISSION_DENIED {
        return Err(GuestPropError::AccessDenied {
            function,
            store_read_only: true,
        });
    }
    Ok(())
}

/// The bytes of `text` followed by a NUL; text with a NUL inside cannot be sent.
fn nul_terminated(what: &'static str, text: &str) -> Result<Vec<u8>> {
    if text.as_bytes().contains(&0) {
        return Err(GuestPropError::InvalidArgument {
            what,
            reason: "contains a NUL byte",
        });
    }
    let mut bytes = Vec::with_capacity(text.len() + 1);
    bytes.extend_from_slice(text.as_bytes());
    bytes.push(0);
    Ok(bytes)
}

/// The buffer size for the retry after an overflow: what the host asked for plus `slack`, at
/// least one byte more than the buffer that overflowed, at most the driver's limit.
fn grown(function: Function, current: usize, needed: u32, slack: usize) -> Result<usize> {
    let needed = usize::try_from(needed).unwrap_or(usize::MAX);
    let next = needed.saturating_add(slack).max(current.saturating_add(1));
    if next > MAX_BUFFER {
        return Err(GuestPropError::malformed(
            function,
            format!("the host asks for a {needed}-byte buffer"),
        ));
    }
    Ok(next)
}

/// Reads the records `name\0value\0timestamp\0flags\0` up to the empty name that starts the
/// terminator.
fn parse_enumeration(buffer: &[u8], function: Function) -> Result<Vec<Property>> {
    let mut fields = Fields::new(buffer, function);
    let mut properties = Vec::new();
    loop {
        let name = fields.string("name")?;
        if name.is_empty() {
            return Ok(properties);
        }
        let value = fields.string("value")?;
        let timestamp = fields.string("timestamp")?;
        let timestamp = parse_timestamp(&timestamp).ok_or_else(|| {
            GuestPropError::malformed(function, format!("timestamp {timestamp:?} of {name:?}"))
        })?;
        let flags = fields.flags()?;
        properties.push(Property {
            name,
            value,
            timestamp,
            flags,
        });
    }
}

/// Parses an enumeration timestamp: decimal as VirtualBox writes it, or `0x`-prefixed
/// hexadecimal, which VirtualBox's guest library also accepts.
fn parse_timestamp(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// Consecutive NUL-terminated UTF-8 strings of a reply buffer.
struct Fields<'a> {
    rest: &'a [u8],
    function: Function,
}

impl<'a> Fields<'a> {
    fn new(buffer: &'a [u8], function: Function) -> Self {
        Self {
            rest: buffer,
            function,
        }
    }

    /// The next string; a missing terminator or invalid UTF-8 is a malformed reply.
    fn string(&mut self, what: &str) -> Result<String> {
        self.optional_string(what)?.ok_or_else(|| {
            GuestPropError::malformed(self.function, format!("{what} is not NUL-terminated"))
        })
    }

    /// The next string, or `None` when the buffer holds no further terminated string.
    fn optional_string(&mut self, what: &str) -> Result<Option<String>> {
        let Some(end) = self.rest.iter().position(|&byte| byte == 0) else {
            return Ok(None);
        };
        let (text, rest) = self.rest.split_at(end);
        self.rest = rest.get(1..).unwrap_or_default();
        let text = std::str::from_utf8(text).map_err(|_| {
            GuestPropError::malformed(self.function, format!("{what} is not UTF-8"))
        })?;
        Ok(Some(text.to_owned()))
    }

    /// The next string, parsed as a flags string.
    fn flags(&mut self) -> Result<PropertyFlags> {
        let text = self.string("flags")?;
        PropertyFlags::parse(&text)
            .map_err(|_| GuestPropError::malformed(self.function, format!("flags {text:?}")))
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

    const CLIENT: u32 = 3;

    /// A fake driver that connects the client, then answers as scripted.
    fn connected() -> FakeTransport {
        FakeTransport::new().then(|buffer| {
            put_u32(buffer, 24, CLIENT);
            Ok(())
        })
    }

    fn with_client<R>(
        fake: FakeTransport,
        test: impl FnOnce(&GuestPropClient<'_, FakeTransport>) -> R,
    ) -> (R, Vec<crate::fake::Recorded>) {
        let device = Device::with_transport(fake).unwrap();
        let client = GuestPropClient::connect(&device).unwrap();
        let result = test(&client);
        drop(client);
        (result, device.transport().recorded())
    }

    #[test]
    fn connect_names_the_guest_property_service() {
        let (_, recorded) = with_client(connected(), |_| ());
        assert_eq!(&recorded[1].buffer[28..45], b"VBoxGuestPropSvc\0");
    }

    #[test]
    fn connect_without_the_service_is_service_unavailable() {
        let fake = FakeTransport::new().then(|buffer| {
            set_status(buffer, Status::VERR_HGCM_SERVICE_NOT_FOUND.raw());
            Ok(())
        });
        let device = Device::with_transport(fake).unwrap();
        let err = GuestPropClient::connect(&device).unwrap_err();
        assert!(matches!(err, GuestPropError::ServiceUnavailable), "{err:?}");
    }

    #[test]
    fn get_sends_the_name_an_output_buffer_a_timestamp_and_a_size() {
        let fake = connected().then(|buffer| {
            assert_eq!(function_of(buffer), 1);
            assert_eq!(parameter_count(buffer), 4);
            assert_eq!(param_type(buffer, 0), LINADDR_IN);
            assert_eq!(user_bytes(buffer, 0), b"/Test/Foo\0");
            assert_eq!(param_type(buffer, 1), LINADDR_OUT);
            assert_eq!(param_u32(buffer, 1) as usize, GET_BUFFER);
            assert_eq!(param_type(buffer, 2), BIT64);
            assert_eq!(param_u64(buffer, 2), 0);
            assert_eq!(param_type(buffer, 3), BIT32);
            assert_eq!(param_u32(buffer, 3), 0);
            write_user(buffer, 1, b"bar\0\0");
            Ok(())
        });
        let (_, recorded) = with_client(fake, |client| client.get("/Test/Foo").unwrap());
        assert_eq!(recorded[2].request, 0xC068_5607);
    }

    #[test]
    fn get_returns_value_flags_and_timestamp() {
        let fake = connected().then(|buffer| {
            write_user(buffer, 1, b"bar\0TRANSIENT, RDONLYGUEST\0");
            set_param_u64(buffer, 2, 1_700_000_000_123_456_789);
            set_param_u32(buffer, 3, 27);
            Ok(())
        });
        let (property, _) = with_client(fake, |client| client.get("/Test/Foo").unwrap());
        assert_eq!(
            property,
            Some(Property {
                name: "/Test/Foo".to_owned(),
                value: "bar".to_owned(),
                timestamp: 1_700_000_000_123_456_789,
                flags: PropertyFlags::TRANSIENT | PropertyFlags::RDONLYGUEST,
            })
        );
    }

    #[test]
    fn get_of_a_missing_property_is_none() {
        let fake = connected().then(|buffer| {
            set_status(buffer, Status::VERR_NOT_FOUND.raw());
            Ok(())
        });
        let (property, _) = with_client(fake, |client| client.get("/Test/None").unwrap());
        assert_eq!(property, None);
    }

    #[test]
    fn get_retries_with_the_size_the_host_needs() {
        let needed = GET_BUFFER as u32 + 5000;
        let fake = connected()
            .then(move |buffer| {
                set_status(buffer, Status::VERR_BUFFER_OVERFLOW.raw());
                set_param_u32(buffer, 3, needed);
                Ok(())
            })
            .then(move |buffer| {
                assert_eq!(param_u32(buffer, 1), needed);
                write_user(buffer, 1, b"big\0\0");
                Ok(())
            });
        let (property, _) = with_client(fake, |client| client.get("/Test/Big").unwrap());
        assert_eq!(property.map(|p| p.value), Some("big".to_owned()));
    }

    #[test]
    fn get_gives_up_when_the_property_keeps_growing() {
        let mut fake = connected();
        for _ in 0..MAX_TRIES {
            fake = fake.then(|buffer| {
                set_status(buffer, Status::VERR_BUFFER_OVERFLOW.raw());
                set_param_u32(buffer, 3, param_u32(buffer, 1) + 1);
                Ok(())
            });
        }
        let (result, recorded) = with_client(fake, |client| client.get("/Test/Grows"));
        let err = result.unwrap_err();
        assert!(matches!(err, GuestPropError::KeptGrowing { .. }), "{err:?}");
        assert_eq!(
            recorded.len(),
            2 + MAX_TRIES + 1,
            "handshake, connect, tries, disconnect"
        );
    }

    #[test]
    fn a_needed_size_beyond_the_driver_limit_is_a_malformed_reply() {
        let fake = connected().then(|buffer| {
            set_status(buffer, Status::VERR_BUFFER_OVERFLOW.raw());
            set_param_u32(buffer, 3, u32::MAX);
            Ok(())
        });
        let (result, _) = with_client(fake, |client| client.get("/Test/Huge"));
        let err = result.unwrap_err();
        assert!(
            matches!(err, GuestPropError::MalformedReply { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn get_reply_without_terminator_is_a_malformed_reply() {
        let fake = connected().then(|buffer| {
            let size = param_u32(buffer, 1) as usize;
            write_user(buffer, 1, &vec![b'x'; size]);
            Ok(())
        });
        let (result, _) = with_client(fake, |client| client.get("/Test/Foo"));
        let err = result.unwrap_err();
        assert!(
            matches!(err, GuestPropError::MalformedReply { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn set_sends_name_value_and_rendered_flags_to_set_prop_value() {
        let fake = connected().then(|buffer| {
            assert_eq!(function_of(buffer), 3);
            assert_eq!(parameter_count(buffer), 3);
            for index in 0..3 {
                assert_eq!(param_type(buffer, index), LINADDR_IN);
            }
            assert_eq!(user_bytes(buffer, 0), b"/Test/Foo\0");
            assert_eq!(user_bytes(buffer, 1), b"bar\0");
            assert_eq!(user_bytes(buffer, 2), b"TRANSIENT, RDONLYHOST\0");
            Ok(())
        });
        let (result, recorded) = with_client(fake, |client| {
            client.set(
                "/Test/Foo",
                "bar",
                PropertyFlags::TRANSIENT | PropertyFlags::RDONLYHOST,
            )
        });
        result.unwrap();
        assert_eq!(recorded[2].request, 0xC058_5607);
    }

    #[test]
    fn set_without_flags_sends_an_empty_flags_string() {
        let fake = connected().then(|buffer| {
            assert_eq!(user_bytes(buffer, 2), b"\0");
            Ok(())
        });
        let (result, _) = with_client(fake, |client| {
            client.set("/Test/Foo", "bar", PropertyFlags::NILFLAG)
        });
        result.unwrap();
    }

    #[test]
    fn set_value_sends_two_parameters() {
        let fake = connected().then(|buffer| {
            assert_eq!(function_of(buffer), 3);
            assert_eq!(parameter_count(buffer), 2);
            assert_eq!(user_bytes(buffer, 0), b"/Test/Foo\0");
            assert_eq!(user_bytes(buffer, 1), b"\0");
            Ok(())
        });
        let (result, recorded) = with_client(fake, |client| client.set_value("/Test/Foo", ""));
        result.unwrap();
        assert_eq!(recorded[2].request, 0xC048_5607);
    }

    #[test]
    fn set_of_a_read_only_property_is_access_denied() {
        let fake = connected().then(|buffer| {
            set_status(buffer, Status::VERR_PERMISSION_DENIED.raw());
            Ok(())
        });
        let (result, _) = with_client(fake, |client| client.set_value("/Test/Ro", "x"));
        let err = result.unwrap_err();
        assert!(
            matches!(
                err,
                GuestPropError::AccessDenied {
                    store_read_only: false,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn write_ignored_by_a_read_only_store_is_access_denied() {
        let fake = connected().then(|buffer| {
            set_status(buffer, Status::VINF_PERMISSION_DENIED.raw());
            Ok(())
        });
        let (result, _) = with_client(fake, |client| client.delete("/Test/Foo"));
        let err = result.unwrap_err();
        assert!(
            matches!(
                err,
                GuestPropError::AccessDenied {
                    store_read_only: true,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn host_statuses_become_typed_errors() {
        let cases = [
            (Status::VERR_TOO_MUCH_DATA, "TooLong"),
            (Status::VERR_INVALID_PARAMETER, "Refused"),
            (Status::VERR_PARSE_ERROR, "BadFlags"),
            (Status::VERR_NOT_FOUND, "NotFound"),
            (Status::VERR_NO_MEMORY, "Host"),
        ];
        for (status, variant) in cases {
            let fake = connected().then(move |buffer| {
                set_status(buffer, status.raw());
                Ok(())
            });
            let (result, _) = with_client(fake, |client| client.set_value("/Test/Foo", "x"));
            let err = result.unwrap_err();
            assert!(format!("{err:?}").starts_with(variant), "{status}: {err:?}");
        }
    }

    #[test]
    fn a_refusal_keeps_the_status_the_host_answered() {
        for status in [
            Status::VERR_PERMISSION_DENIED,
            Status::VINF_PERMISSION_DENIED,
            Status::VERR_TOO_MUCH_DATA,
            Status::VERR_NO_MEMORY,
        ] {
            let fake = connected().then(move |buffer| {
                set_status(buffer, status.raw());
                Ok(())
            });
            let (result, _) = with_client(fake, |client| client.set_value("/Test/Foo", "x"));
            assert_eq!(result.unwrap_err().host_status(), Some(status));
        }
    }

    #[test]
    fn a_failure_found_by_the_guest_has_no_host_status() {
        let (result, _) = with_client(connected(), |client| client.set_value("/Test/\0", "x"));
        assert_eq!(result.unwrap_err().host_status(), None);
    }

    #[test]
    fn delete_sends_the_name_alone() {
        let fake = connected().then(|buffer| {
            assert_eq!(function_of(buffer), 4);
            assert_eq!(parameter_count(buffer), 1);
            assert_eq!(param_type(buffer, 0), LINADDR_IN);
            assert_eq!(user_bytes(buffer, 0), b"/Test/Foo\0");
            Ok(())
        });
        let (result, _) = with_client(fake, |client| client.delete("/Test/Foo"));
        result.unwrap();
    }

    #[test]
    fn strings_with_a_nul_are_refused_without_a_call() {
        let (result, recorded) =
            with_client(connected(), |client| client.set_value("/Test/\0Foo", "x"));
        let err = result.unwrap_err();
        assert!(
            matches!(err, GuestPropError::InvalidArgument { what: "name", .. }),
            "{err:?}"
        );
        assert_eq!(recorded.len(), 3, "handshake, connect, disconnect");
    }

    #[test]
    fn unknown_flag_bits_are_refused_without_a_call() {
        let (result, _) = with_client(connected(), |client| {
            client.set("/Test/Foo", "x", PropertyFlags::from_bits_retain(0x100))
        });
        let err = result.unwrap_err();
        assert!(
            matches!(err, GuestPropError::InvalidArgument { what: "flags", .. }),
            "{err:?}"
        );
    }

    #[test]
    fn enumerate_sends_the_patterns_nul_separated_and_parses_every_record() {
        let fake = connected().then(|buffer| {
            assert_eq!(function_of(buffer), 5);
            assert_eq!(parameter_count(buffer), 3);
            assert_eq!(param_type(buffer, 0), LINADDR_IN);
            assert_eq!(user_bytes(buffer, 0), b"/A/*\0/B|/C\0\0");
            assert_eq!(param_type(buffer, 1), LINADDR_OUT);
            assert_eq!(param_u32(buffer, 1) as usize, ENUM_BUFFER);
            assert_eq!(param_type(buffer, 2), BIT32);
            let reply = b"/A/x\0one\x0012\0\0/B\0\x000x10\0READONLY\0\0\0\0\0";
            write_user(buffer, 1, reply);
            set_param_u32(buffer, 2, reply.len() as u32);
            Ok(())
        });
        let (result, _) = with_client(fake, |client| client.enumerate(&["/A/*", "/B|/C"]));
        assert_eq!(
            result.unwrap(),
            [
                Property {
                    name: "/A/x".to_owned(),
                    value: "one".to_owned(),
                    timestamp: 12,
                    flags: PropertyFlags::NILFLAG,
                },
                Property {
                    name: "/B".to_owned(),
                    value: String::new(),
                    timestamp: 16,
                    flags: PropertyFlags::READONLY,
                },
            ]
        );
    }

    #[test]
    fn enumerate_without_patterns_sends_a_single_nul() {
        let fake = connected().then(|buffer| {
            assert_eq!(user_bytes(buffer, 0), b"\0");
            write_user(buffer, 1, b"\0\0\0\0");
            Ok(())
        });
        let (result, _) = with_client(fake, |client| client.enumerate(&[]));
        assert_eq!(result.unwrap(), []);
    }

    #[test]
    fn enumerate_retries_with_the_needed_size_and_room_to_spare() {
        let fake = connected()
            .then(|buffer| {
                set_status(buffer, Status::VERR_BUFFER_OVERFLOW.raw());
                set_param_u32(buffer, 2, 10_000);
                Ok(())
            })
            .then(|buffer| {
                assert_eq!(param_u32(buffer, 1) as usize, 10_000 + ENUM_BUFFER);
                write_user(buffer, 1, b"/A\0a\x001\0\0\0\0\0\0");
                Ok(())
            });
        let (result, _) = with_client(fake, |client| client.enumerate(&[]));
        assert_eq!(result.unwrap().len(), 1);
    }

    #[test]
    fn enumerate_reply_with_a_bad_timestamp_is_a_malformed_reply() {
        let fake = connected().then(|buffer| {
            write_user(buffer, 1, b"/A\0a\0soon\0\0\0\0\0\0");
            Ok(())
        });
        let (result, _) = with_client(fake, |client| client.enumerate(&[]));
        let err = result.unwrap_err();
        assert!(
            matches!(err, GuestPropError::MalformedReply { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn wait_sends_patterns_timestamp_buffer_size_and_the_timeout() {
        let fake = connected().then(|buffer| {
            assert_eq!(function_of(buffer), 6);
            assert_eq!(parameter_count(buffer), 4);
            assert_eq!(get_u32(buffer, 32), 1500, "timeout_ms");
            assert_eq!(buffer[36], 1, "interruptible");
            assert_eq!(param_type(buffer, 0), LINADDR_IN);
            assert_eq!(user_bytes(buffer, 0), b"/Test/*|/Other\0");
            assert_eq!(param_type(buffer, 1), BIT64);
            assert_eq!(param_u64(buffer, 1), 77);
            assert_eq!(param_type(buffer, 2), LINADDR_OUT);
            assert_eq!(param_u32(buffer, 2) as usize, WAIT_BUFFER);
            assert_eq!(param_type(buffer, 3), BIT32);
            write_user(buffer, 2, b"/Test/Bar\x001\0\x000\0");
            set_param_u64(buffer, 1, 78);
            Ok(())
        });
        let (result, recorded) = with_client(fake, |client| {
            client.wait("/Test/*|/Other", 77, Some(Duration::from_millis(1500)))
        });
        assert_eq!(
            result.unwrap(),
            Notification {
                name: "/Test/Bar".to_owned(),
                value: "1".to_owned(),
                flags: PropertyFlags::NILFLAG,
                timestamp: 78,
                deleted: false,
                missed_changes: false,
            }
        );
        assert_eq!(recorded[2].request, 0xC068_5607);
    }

    #[test]
    fn wait_without_timeout_waits_forever() {
        let fake = connected().then(|buffer| {
            assert_eq!(get_u32(buffer, 32), u32::MAX);
            write_user(buffer, 2, b"/A\0\0\0\x000\0");
            Ok(())
        });
        let (result, _) = with_client(fake, |client| client.wait("", 0, None));
        result.unwrap();
    }

    #[test]
    fn wait_reports_a_deletion() {
        let fake = connected().then(|buffer| {
            write_user(buffer, 2, b"/Test/Gone\0\0\x001\0");
            Ok(())
        });
        let (result, _) = with_client(fake, |client| client.wait("", 0, None));
        let change = result.unwrap();
        assert!(change.deleted);
        assert_eq!(change.name, "/Test/Gone");
    }

    #[test]
    fn wait_accepts_a_notification_without_the_deletion_field() {
        let fake = connected().then(|buffer| {
            write_user(buffer, 2, b"/Old\0v\0TRANSIENT\0");
            Ok(())
        });
        let (result, _) = with_client(fake, |client| client.wait("", 0, None));
        let change = result.unwrap();
        assert!(!change.deleted);
        assert_eq!(change.flags, PropertyFlags::TRANSIENT);
    }

    #[test]
    fn wait_from_a_forgotten_timestamp_reports_missed_changes() {
        let fake = connected().then(|buffer| {
            set_status(buffer, Status::VWRN_NOT_FOUND.raw());
            write_user(buffer, 2, b"/A\0a\0\x000\0");
            Ok(())
        });
        let (result, _) = with_client(fake, |client| client.wait("", 5, None));
        assert!(result.unwrap().missed_changes);
    }

    #[test]
    fn wait_overflow_asks_again_from_the_same_timestamp_with_the_needed_size() {
        let needed = WAIT_BUFFER as u32 + 100;
        let fake = connected()
            .then(move |buffer| {
                set_status(buffer, Status::VERR_BUFFER_OVERFLOW.raw());
                set_param_u64(buffer, 1, 901);
                set_param_u32(buffer, 3, needed);
                Ok(())
            })
            .then(move |buffer| {
                assert_eq!(param_u64(buffer, 1), 900, "the starting timestamp again");
                assert_eq!(param_u32(buffer, 2), needed);
                write_user(buffer, 2, b"/Big\0v\0\x000\0");
                set_param_u64(buffer, 1, 901);
                Ok(())
            });
        let (result, _) = with_client(fake, |client| client.wait("", 900, None));
        let change = result.unwrap();
        assert_eq!((change.name.as_str(), change.timestamp), ("/Big", 901));
    }

    #[test]
    fn wait_cancelled_by_the_driver_timeout_is_timed_out() {
        let fake = connected().then_fail(libc::ETIMEDOUT);
        let (result, _) = with_client(fake, |client| {
            client.wait("", 0, Some(Duration::from_millis(10)))
        });
        let err = result.unwrap_err();
        assert!(matches!(err, GuestPropError::TimedOut { .. }), "{err:?}");
    }

    #[test]
    fn wait_ended_by_a_signal_is_interrupted() {
        let fake = connected().then_fail(libc::EINTR);
        let (result, _) = with_client(fake, |client| client.wait("", 0, None));
        let err = result.unwrap_err();
        assert!(matches!(err, GuestPropError::Interrupted { .. }), "{err:?}");
    }

    #[test]
    fn wait_ended_by_the_host_is_interrupted() {
        let fake = connected().then(|buffer| {
            set_status(buffer, Status::VERR_INTERRUPTED.raw());
            Ok(())
        });
        let (result, _) = with_client(fake, |client| client.wait("", 0, None));
        let err = result.unwrap_err();
        assert!(matches!(err, GuestPropError::Interrupted { .. }), "{err:?}");
    }

    #[test]
    fn driver_errors_are_kept() {
        let fake = connected().then_fail(libc::EIO);
        let (result, _) = with_client(fake, |client| client.delete("/A"));
        let err = result.unwrap_err();
        assert!(
            matches!(err, GuestPropError::Driver(Error::Os { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn timestamps_parse_in_decimal_and_hexadecimal() {
        assert_eq!(parse_timestamp("1234"), Some(1234));
        assert_eq!(parse_timestamp("0x1f"), Some(31));
        assert_eq!(parse_timestamp(""), None);
        assert_eq!(parse_timestamp("-1"), None);
    }
}
