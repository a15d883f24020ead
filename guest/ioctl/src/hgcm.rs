//! HGCM through the driver: connecting to host services and calling their functions.
//!
//! User space describes buffers by address (LinAddr parameters); the driver copies them into kernel
//! bounce buffers, hands the host page lists, and copies output back into the caller's memory
//! before the ioctl returns. A [`Param`] borrows the caller's buffer for exactly that long.

use std::time::Duration;

use vmmdev_protocol::hgcm::{
    ClientId, HGCM_SERVICE_NAME_SIZE, HgcmParameter, HgcmParameter64, HgcmServiceLocation,
    LocationType, ParameterType, Width,
};
use vmmdev_protocol::ioctl::{self, IoctlHeader};
use vmmdev_protocol::status::Status;
use vmmdev_protocol::vmmdev::VMMDEV_MAX_HGCM_PARMS;
use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, IntoBytes};

use crate::device::{Device, header, host_status, timeout_ms};
use crate::error::{Error, Operation, Result};
use crate::transport::GuestTransport;

/// One parameter of an HGCM call.
///
/// After the call, value parameters hold what the host wrote back and output buffers know how many
/// bytes the host reported ([`Param::returned`]).
#[derive(Debug)]
pub enum Param<'a> {
    /// A 32-bit value (in and out).
    U32(u32),
    /// A 64-bit value (in and out).
    U64(u64),
    /// A buffer the host only reads (`LINADDR_IN`).
    In(&'a [u8]),
    /// A buffer the host only writes (`LINADDR_OUT`; the host starts from zeroes).
    Out {
        /// The caller's buffer.
        buffer: &'a mut [u8],
        /// Bytes the host reported after the call, at most `buffer.len()`.
        returned: usize,
    },
    /// A buffer the host reads and writes (`LINADDR`).
    InOut {
        /// The caller's buffer.
        buffer: &'a mut [u8],
        /// Bytes the host reported after the call, at most `buffer.len()`.
        returned: usize,
    },
}

impl<'a> Param<'a> {
    /// An output buffer.
    pub fn out(buffer: &'a mut [u8]) -> Self {
        Self::Out {
            buffer,
            returned: 0,
        }
    }

    /// An input/output buffer.
    pub fn in_out(buffer: &'a mut [u8]) -> Self {
        Self::InOut {
            buffer,
            returned: 0,
        }
    }

    /// The value of a [`Param::U32`].
    pub fn as_u32(&self) -> Option<u32> {
        match self {
            Self::U32(value) => Some(*value),
            _ => None,
        }
    }

    /// The value of a [`Param::U64`].
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Self::U64(value) => Some(*value),
            _ => None,
        }
    }

    /// The bytes of an output buffer the host reported as written.
    pub fn returned(&self) -> Option<&[u8]> {
        match self {
            Self::Out { buffer, returned } | Self::InOut { buffer, returned } => {
                buffer.get(..*returned)
            }
            _ => None,
        }
    }

    /// Describes the parameter for the ioctl, with the user address of its buffer; `Err` carries
    /// the length of a buffer too large for the 32-bit size field.
    fn encode(&mut self) -> std::result::Result<HgcmParameter, usize> {
        match self {
            Self::U32(value) => Ok(HgcmParameter::U32(*value)),
            Self::U64(value) => Ok(HgcmParameter::U64(*value)),
            Self::In(buffer) => linear(ParameterType::LIN_ADDR_IN, buffer.len(), buffer.as_ptr()),
            Self::Out { buffer, .. } => linear(
                ParameterType::LIN_ADDR_OUT,
                buffer.len(),
                buffer.as_mut_ptr().cast_const(),
            ),
            Self::InOut { buffer, .. } => linear(
                ParameterType::LIN_ADDR,
                buffer.len(),
                buffer.as_mut_ptr().cast_const(),
            ),
        }
    }

    /// Takes over what the driver copied back into the parameter: the whole value of a value
    /// parameter, the size the host reported for a buffer.
    fn update(&mut self, reply: HgcmParameter, function: u32) {
        match (self, reply) {
            (Self::U32(value), HgcmParameter::U32(returned)) => *value = returned,
            (Self::U64(value), HgcmParameter::U64(returned)) => *value = returned,
            (
                Self::Out { buffer, returned } | Self::InOut { buffer, returned },
                HgcmParameter::LinAddr { size, .. },
            ) => {
                let size = usize::try_from(size).unwrap_or(usize::MAX);
                if size > buffer.len() {
                    log::error!(
                        "HGCM function {function}: host reported {size} bytes for a {}-byte buffer",
                        buffer.len()
                    );
                }
                *returned = size.min(buffer.len());
            }
            (Self::In(_), _) => {}
            (param, reply) => log::warn!(
                "HGCM function {function}: host changed a {:?} parameter into {reply:?}",
                param.parameter_type()
            ),
        }
    }

    /// The wire type this parameter is sent as.
    fn parameter_type(&self) -> ParameterType {
        match self {
            Self::U32(_) => ParameterType::BIT32,
            Self::U64(_) => ParameterType::BIT64,
            Self::In(_) => ParameterType::LIN_ADDR_IN,
            Self::Out { .. } => ParameterType::LIN_ADDR_OUT,
            Self::InOut { .. } => ParameterType::LIN_ADDR,
        }
    }
}

/// Encodes a LinAddr parameter; `Err` carries a length that does not fit the 32-bit size field.
/// An empty buffer is sent with address 0, as the driver passes it on to the host.
fn linear(
    kind: ParameterType,
    len: usize,
    address: *const u8,
) -> std::result::Result<HgcmParameter, usize> {
    let size = u32::try_from(len).map_err(|_| len)?;
    let addr = if len == 0 {
        0
    } else {
        address.expose_provenance() as u64
    };
    Ok(HgcmParameter::LinAddr { kind, size, addr })
}

/// How a call waits for the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallOptions {
    /// How long the driver waits before cancelling the call with [`Error::TimedOut`]; `None` waits
    /// without a limit.
    pub timeout: Option<Duration>,
    /// Whether a signal may end the wait with [`Error::Interrupted`]. The Linux driver ignores the
    /// flag and lets signals interrupt every user-space call.
    pub interruptible: bool,
}

impl Default for CallOptions {
    /// No timeout, interruptible.
    fn default() -> Self {
        Self {
            timeout: None,
            interruptible: true,
        }
    }
}

impl CallOptions {
    /// Options with a timeout.
    pub fn with_timeout(timeout: Duration) -> Self {
        Self {
            timeout: Some(timeout),
            ..Self::default()
        }
    }
}

/// A connection to an HGCM service, disconnected on drop.
///
/// The driver also disconnects every client of a session when the session is closed.
#[derive(Debug)]
pub struct HgcmClient<'d, T: GuestTransport> {
    device: &'d Device<T>,
    id: ClientId,
    connected: bool,
}

impl<'d, T: GuestTransport> HgcmClient<'d, T> {
    /// A handle for client `id`, connected earlier on `device`, that does not own the
    /// connection: dropping it leaves the client connected.
    pub(crate) fn borrowed(device: &'d Device<T>, id: ClientId) -> Self {
        Self {
            device,
            id,
            connected: false,
        }
    }

    /// Gives up the connection without disconnecting; the client stays connected until it is
    /// disconnected by id or the session is closed.
    pub(crate) fn into_id(mut self) -> ClientId {
        self.connected = false;
        self.id
    }

    /// The id the host assigned.
    pub fn id(&self) -> ClientId {
        self.id
    }

    /// Calls service function `function` with `params`.
    ///
    /// Returns the service's success status. A failure status is [`Error::Host`]; the parameters
    /// are updated with what the host wrote back in both cases. A timeout or a signal cancels the
    /// call ([`Error::TimedOut`], [`Error::Interrupted`]) and leaves the parameters untouched.
    pub fn call(
        &self,
        function: u32,
        params: &mut [Param<'_>],
        options: CallOptions,
    ) -> Result<Status> {
        self.device.hgcm_call(self.id, function, params, options)
    }

    /// Disconnects explicitly, reporting the host's answer.
    pub fn disconnect(mut self) -> Result<()> {
        self.connected = false;
        self.device.hgcm_disconnect(self.id)
    }
}

impl<T: GuestTransport> Drop for HgcmClient<'_, T> {
    fn drop(&mut self) {
        if self.connected {
            if let Err(err) = self.device.hgcm_disconnect(self.id) {
                log::warn!("disconnecting HGCM client {}: {err}", self.id);
            }
        }
    }
}

impl<T: GuestTransport> Device<T> {
    /// Connects to the host service `service` (a name of at most 127 bytes without NUL).
    ///
    /// A host that does not know the service answers with a failure status: [`Error::Host`].
    pub fn connect(&self, service: &str) -> Result<HgcmClient<'_, T>> {
        let op = Operation::HgcmConnect;
        let Some(location) =
            HgcmServiceLocation::new(LocationType::LOCAL_HOST_EXISTING, service.as_bytes())
        else {
            return Err(Error::bad_argument(
                op,
                format!(
                    "service name must be at most {} bytes without NUL, got {service:?}",
                    HGCM_SERVICE_NAME_SIZE - 1
                ),
            ));
        };
        let input = ioctl::HgcmConnectIn {
            header: header::<ioctl::HgcmConnectIn, ioctl::HgcmConnectOut>(),
            location,
        };
        let mut buffer = input.as_bytes().to_vec();
        self.issue(&op, ioctl::VBG_IOCTL_HGCM_CONNECT, &mut buffer)?;
        host_status(op.clone(), &buffer)?;
        let id = ioctl::HgcmConnectOut::read_from_prefix(&buffer)
            .map(|(output, _)| ClientId(output.client_id.get()))
            .unwrap_or(ClientId::INVALID);
        if id == ClientId::INVALID || id.raw() == u32::MAX {
            return Err(Error::UnexpectedReply {
                op,
                reason: format!("connect succeeded with client id {:#x}", id.raw()),
            });
        }
        log::debug!("connected to HGCM service {service:?} as {id}");
        Ok(HgcmClient {
            device: self,
            id,
            connected: true,
        })
    }

    fn hgcm_disconnect(&self, client: ClientId) -> Result<()> {
        let op = Operation::HgcmDisconnect;
        let input = ioctl::HgcmDisconnectIn {
            header: header::<ioctl::HgcmDisconnectIn, IoctlHeader>(),
            client_id: U32::new(client.raw()),
        };
        let mut buffer = input.as_bytes().to_vec();
        self.issue(&op, ioctl::VBG_IOCTL_HGCM_DISCONNECT, &mut buffer)?;
        host_status(op, &buffer).map(drop)
    }

    fn hgcm_call(
        &self,
        client: ClientId,
        function: u32,
        params: &mut [Param<'_>],
        options: CallOptions,
    ) -> Result<Status> {
        let op = Operation::HgcmCall { function };
        let count = u16::try_from(params.len())
            .ok()
            .filter(|&count| u32::from(count) <= VMMDEV_MAX_HGCM_PARMS)
            .ok_or_else(|| {
                Error::bad_argument(
                    op.clone(),
                    format!(
                        "{} parameters, at most {VMMDEV_MAX_HGCM_PARMS} allowed",
                        params.len()
                    ),
                )
            })?;
        let size = size_of::<ioctl::HgcmCallHeader>() + params.len() * size_of::<HgcmParameter64>();
        // At most 40 + 32 * 16 bytes: the size fits both u32 and the ioctl number's size field.
        let size32 = u32::try_from(size).unwrap_or(u32::MAX);
        let call = ioctl::HgcmCallHeader {
            header: IoctlHeader::new(size32, size32),
            client_id: U32::new(client.raw()),
            function: U32::new(function),
            timeout_ms: U32::new(timeout_ms(options.timeout)),
            interruptible: u8::from(options.interruptible),
            reserved: 0,
            parameter_count: U16::new(count),
        };
        let number = ioctl::vbg_ioctl_hgcm_call_64(size32).ok_or_else(|| {
            Error::bad_argument(
                op.clone(),
                format!("{size}-byte call does not fit the ioctl"),
            )
        })?;
        let mut buffer = Vec::with_capacity(size);
        buffer.extend_from_slice(call.as_bytes());
        for (index, param) in params.iter_mut().enumerate() {
            let encoded = param
                .encode()
                .map_err(|len| {
                    Error::bad_argument(
                        op.clone(),
                        format!("parameter {index}: {len}-byte buffer exceeds 4 GiB"),
                    )
                })?
                .to_wire64()
                .map_err(|err| {
                    Error::bad_argument(op.clone(), format!("parameter {index}: {err}"))
                })?;
            buffer.extend_from_slice(encoded.as_bytes());
        }
        // SAFETY: the LinAddr addresses in `buffer` come from the slices borrowed by `params`, with
        // their exact lengths; `params` stays mutably borrowed, so those slices remain valid and
        // untouched by anyone else until the ioctl returns. Output buffers were borrowed mutably
        // and input buffers are only read by the driver.
        unsafe { self.transport().ioctl(number, &mut buffer) }
            .map_err(|errno| Error::from_errno(op.clone(), errno))?;
        let replies = buffer
            .get(size_of::<ioctl::HgcmCallHeader>()..)
            .unwrap_or_default();
        for (param, reply) in params
            .iter_mut()
            .zip(HgcmParameter::decode_all(replies, Width::W64))
        {
            param.update(reply, function);
        }
        host_status(op, &buffer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakeTransport, get_u32, get_u64, put_i32, put_u32};

    const VERR_HGCM_SERVICE_NOT_FOUND: i32 = -2900;
    const VERR_BUFFER_OVERFLOW: i32 = -41;
    const CLIENT: u32 = 7;

    /// A fake whose next answer connects client [`CLIENT`].
    fn connecting() -> FakeTransport {
        FakeTransport::new().then(|buffer| {
            put_u32(buffer, 24, CLIENT);
            Ok(())
        })
    }

    #[test]
    fn connect_sends_an_existing_service_location_with_a_nul_terminated_name() {
        let device = Device::with_transport(connecting()).unwrap();
        let client = device.connect("VBoxGuestPropSvc").unwrap();
        assert_eq!(client.id(), ClientId(CLIENT));
        let connect = &device.transport().recorded()[1];
        assert_eq!(connect.request, 0xC09C_5604);
        assert_eq!(connect.buffer.len(), 156);
        assert_eq!(get_u32(&connect.buffer, 0), 156, "size_in");
        assert_eq!(get_u32(&connect.buffer, 16), 28, "size_out");
        assert_eq!(get_u32(&connect.buffer, 24), 2, "location type");
        assert_eq!(&connect.buffer[28..44], b"VBoxGuestPropSvc");
        assert!(connect.buffer[44..].iter().all(|&b| b == 0), "NUL padded");
    }

    #[test]
    fn connect_to_an_unknown_service_is_a_host_error() {
        let fake = FakeTransport::new().then(|buffer| {
            put_i32(buffer, 12, VERR_HGCM_SERVICE_NOT_FOUND);
            Ok(())
        });
        let device = Device::with_transport(fake).unwrap();
        let err = device.connect("NoSuchSvc").unwrap_err();
        assert!(
            matches!(err, Error::Host { op: Operation::HgcmConnect, status } if status.raw() == VERR_HGCM_SERVICE_NOT_FOUND),
            "{err:?}"
        );
    }

    #[test]
    fn connect_success_without_a_client_id_is_an_unexpected_reply() {
        let fake = FakeTransport::new().then(|buffer| {
            put_u32(buffer, 24, 0);
            Ok(())
        });
        let device = Device::with_transport(fake).unwrap();
        let err = device.connect("Echo").unwrap_err();
        assert!(matches!(err, Error::UnexpectedReply { .. }), "{err:?}");
    }

    #[test]
    fn connect_refuses_a_name_without_room_for_the_nul() {
        let device = Device::with_transport(FakeTransport::new()).unwrap();
        let err = device.connect(&"x".repeat(128)).unwrap_err();
        assert!(matches!(err, Error::BadArgument { .. }), "{err:?}");
        assert_eq!(device.transport().recorded().len(), 1, "only the handshake");
    }

    #[test]
    fn connect_accepts_the_longest_name_that_fits() {
        let device = Device::with_transport(connecting()).unwrap();
        device.connect(&"x".repeat(127)).unwrap();
        let connect = &device.transport().recorded()[1];
        assert_eq!(connect.buffer[28 + 127], 0);
    }

    #[test]
    fn dropping_a_client_disconnects_it() {
        let device = Device::with_transport(connecting()).unwrap();
        drop(device.connect("Echo").unwrap());
        let disconnect = device.transport().last();
        assert_eq!(disconnect.request, 0xC01C_5605);
        assert_eq!(disconnect.buffer.len(), 28);
        assert_eq!(get_u32(&disconnect.buffer, 0), 28, "size_in");
        assert_eq!(get_u32(&disconnect.buffer, 16), 24, "size_out");
        assert_eq!(get_u32(&disconnect.buffer, 24), CLIENT);
    }

    #[test]
    fn explicit_disconnect_reports_the_host_status_and_does_not_repeat_on_drop() {
        let fake = connecting().then(|buffer| {
            put_i32(buffer, 12, -78);
            Ok(())
        });
        let device = Device::with_transport(fake).unwrap();
        let client = device.connect("Echo").unwrap();
        let err = client.disconnect().unwrap_err();
        assert_eq!(err.host_status().map(Status::raw), Some(-78));
        assert_eq!(device.transport().recorded().len(), 3);
    }

    #[test]
    fn call_encodes_header_and_linaddr_parameters_with_the_caller_addresses() {
        let device = Device::with_transport(connecting()).unwrap();
        let client = device.connect("Echo").unwrap();
        let input = b"ping".to_vec();
        let mut output = [0u8; 32];
        let output_address = output.as_ptr() as u64;
        let mut params = [Param::In(&input), Param::out(&mut output)];
        client
            .call(
                1,
                &mut params,
                CallOptions::with_timeout(Duration::from_secs(2)),
            )
            .unwrap();
        let call = device.transport().last();
        assert_eq!(call.request, 0xC048_5607);
        assert_eq!(call.buffer.len(), 72);
        assert_eq!(get_u32(&call.buffer, 0), 72, "size_in");
        assert_eq!(get_u32(&call.buffer, 16), 72, "size_out");
        assert_eq!(get_u32(&call.buffer, 24), CLIENT, "client_id");
        assert_eq!(get_u32(&call.buffer, 28), 1, "function");
        assert_eq!(get_u32(&call.buffer, 32), 2000, "timeout_ms");
        assert_eq!(call.buffer[36], 1, "interruptible");
        assert_eq!(call.buffer[37], 0, "reserved");
        assert_eq!(u16::from_le_bytes([call.buffer[38], call.buffer[39]]), 2);
        assert_eq!(get_u32(&call.buffer, 40), 5, "LINADDR_IN");
        assert_eq!(get_u32(&call.buffer, 44), 4, "in size");
        assert_eq!(get_u64(&call.buffer, 48), input.as_ptr() as u64);
        assert_eq!(get_u32(&call.buffer, 56), 6, "LINADDR_OUT");
        assert_eq!(get_u32(&call.buffer, 60), 32, "out size");
        assert_eq!(get_u64(&call.buffer, 64), output_address);
    }

    #[test]
    fn call_encodes_values_and_in_out_buffers() {
        let device = Device::with_transport(connecting()).unwrap();
        let client = device.connect("Echo").unwrap();
        let mut both = [0u8; 8];
        let mut params = [
            Param::U32(0xdead_beef),
            Param::U64(0x0102_0304_0506_0708),
            Param::in_out(&mut both),
            Param::U32(0),
        ];
        client
            .call(
                9,
                &mut params,
                CallOptions {
                    timeout: None,
                    interruptible: false,
                },
            )
            .unwrap();
        let call = device.transport().last();
        assert_eq!(call.request, 0xC068_5607);
        assert_eq!(get_u32(&call.buffer, 32), u32::MAX, "no timeout");
        assert_eq!(call.buffer[36], 0, "not interruptible");
        assert_eq!(get_u32(&call.buffer, 40), 1);
        assert_eq!(get_u32(&call.buffer, 44), 0xdead_beef);
        assert_eq!(get_u32(&call.buffer, 56), 2);
        assert_eq!(get_u64(&call.buffer, 60), 0x0102_0304_0506_0708);
        assert_eq!(get_u32(&call.buffer, 72), 4, "LINADDR");
        assert_eq!(get_u32(&call.buffer, 76), 8);
    }

    #[test]
    fn empty_buffers_are_sent_with_address_zero() {
        let device = Device::with_transport(connecting()).unwrap();
        let client = device.connect("Echo").unwrap();
        let mut params = [Param::In(&[])];
        client.call(1, &mut params, CallOptions::default()).unwrap();
        let call = device.transport().last();
        assert_eq!(get_u32(&call.buffer, 44), 0);
        assert_eq!(get_u64(&call.buffer, 48), 0);
    }

    #[test]
    fn call_takes_over_returned_values_and_sizes() {
        let fake = connecting().then(|buffer| {
            put_u32(buffer, 44, 42);
            buffer[60..68].copy_from_slice(&0x1_0000_0002u64.to_le_bytes());
            put_u32(buffer, 76, 3);
            Ok(())
        });
        let device = Device::with_transport(fake).unwrap();
        let client = device.connect("Echo").unwrap();
        let mut output = *b"abcdefgh";
        let mut params = [Param::U32(0), Param::U64(0), Param::out(&mut output)];
        client.call(1, &mut params, CallOptions::default()).unwrap();
        assert_eq!(params[0].as_u32(), Some(42));
        assert_eq!(params[1].as_u64(), Some(0x1_0000_0002));
        assert_eq!(params[2].returned(), Some(&b"abc"[..]));
    }

    #[test]
    fn returned_size_beyond_the_buffer_is_clamped() {
        let fake = connecting().then(|buffer| {
            put_u32(buffer, 44, 4096);
            Ok(())
        });
        let device = Device::with_transport(fake).unwrap();
        let client = device.connect("Echo").unwrap();
        let mut output = [0u8; 16];
        let mut params = [Param::out(&mut output)];
        client.call(1, &mut params, CallOptions::default()).unwrap();
        assert_eq!(params[0].returned().map(<[u8]>::len), Some(16));
    }

    #[test]
    fn host_failure_status_still_updates_the_parameters() {
        let fake = connecting().then(|buffer| {
            put_i32(buffer, 12, VERR_BUFFER_OVERFLOW);
            put_u32(buffer, 44, 100);
            Ok(())
        });
        let device = Device::with_transport(fake).unwrap();
        let client = device.connect("Echo").unwrap();
        let mut params = [Param::U32(0)];
        let err = client
            .call(2, &mut params, CallOptions::default())
            .unwrap_err();
        assert_eq!(
            err.host_status().map(Status::raw),
            Some(VERR_BUFFER_OVERFLOW)
        );
        assert!(matches!(
            err.operation(),
            Some(Operation::HgcmCall { function: 2 })
        ));
        assert_eq!(params[0].as_u32(), Some(100), "needed size reported");
    }

    #[test]
    fn interrupted_call_leaves_the_parameters_untouched() {
        let fake = connecting().then(|buffer| {
            put_u32(buffer, 44, 100);
            Err(crate::Errno(libc::EINTR))
        });
        let device = Device::with_transport(fake).unwrap();
        let client = device.connect("Echo").unwrap();
        let mut params = [Param::U32(5)];
        let err = client
            .call(3, &mut params, CallOptions::default())
            .unwrap_err();
        assert!(matches!(err, Error::Interrupted { .. }), "{err:?}");
        assert_eq!(params[0].as_u32(), Some(5));
    }

    #[test]
    fn timed_out_call_is_timed_out() {
        let device = Device::with_transport(connecting().then_fail(libc::ETIMEDOUT)).unwrap();
        let client = device.connect("Echo").unwrap();
        let err = client
            .call(
                3,
                &mut [],
                CallOptions::with_timeout(Duration::from_millis(500)),
            )
            .unwrap_err();
        assert!(matches!(err, Error::TimedOut { .. }), "{err:?}");
    }

    #[test]
    fn call_with_more_than_32_parameters_is_refused_without_an_ioctl() {
        let device = Device::with_transport(connecting()).unwrap();
        let client = device.connect("Echo").unwrap();
        let mut params: Vec<Param<'_>> = (0..33).map(Param::U32).collect();
        let err = client
            .call(1, &mut params, CallOptions::default())
            .unwrap_err();
        assert!(matches!(err, Error::BadArgument { .. }), "{err:?}");
        assert_eq!(
            device.transport().recorded().len(),
            2,
            "handshake and connect"
        );
    }
}
