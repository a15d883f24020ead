//! [`Device`]: a session with the vboxguest driver and its driver-local and VMMDev ioctls.
//!
//! HGCM lives in [`crate::hgcm`]; everything else the ioctl interface offers is here: the version
//! handshake (done on open), the driver log, event waiting and filtering, guest capabilities, the
//! balloon query, the core-dump request and the raw VMMDev request pass-through.

use std::path::Path;
use std::time::Duration;

use vmmdev_protocol::ioctl::{self, IoctlHeader};
use vmmdev_protocol::status::Status;
use vmmdev_protocol::vmmdev::{Events, GuestCapabilities, RequestType, VMMDEV_MAX_VMMDEVREQ_SIZE};
use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::error::{Error, Operation, Result};
use crate::linux::{LinuxTransport, Node};
use crate::transport::GuestTransport;

/// Size of the ioctl header.
pub(crate) const HEADER_SIZE: usize = size_of::<IoctlHeader>();

/// The versions exchanged by the `DRIVER_VERSION_INFO` handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DriverVersion {
    /// The interface version the driver granted this session.
    pub session_version: u32,
    /// The driver's own interface version.
    pub driver_version: u32,
    /// The driver's revision (0 for the Linux in-tree driver).
    pub driver_revision: u32,
}

/// Guest capability masks after `CHANGE_GUEST_CAPABILITIES`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapabilityState {
    /// The capabilities this session has set.
    pub session: GuestCapabilities,
    /// The capabilities reported to the host on behalf of all sessions.
    pub global: GuestCapabilities,
}

/// What `ACQUIRE_GUEST_CAPABILITIES` should do with the given capabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcquireMode {
    /// Acquire (or release) the capabilities exclusively for this session.
    Acquire,
    /// Only switch the capabilities to acquire mode, without acquiring them.
    ConfigureOnly,
}

/// The memory balloon as the driver reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BalloonInfo {
    /// Current balloon size in 1 MiB chunks.
    pub chunks: u32,
    /// Whether user space would have to inflate the balloon itself (never on Linux).
    pub handled_by_user_space: bool,
}

/// A session with the vboxguest driver.
///
/// Every method takes `&self` and the type is `Sync` when its transport is, so one thread can wait
/// (for events or an HGCM call) while another uses or interrupts the same session.
#[derive(Debug)]
pub struct Device<T: GuestTransport = LinuxTransport> {
    transport: T,
    version: DriverVersion,
}

impl Device<LinuxTransport> {
    /// Opens one of the driver's device nodes and performs the version handshake.
    pub fn open(node: Node) -> Result<Self> {
        Self::open_path(node.path())
    }

    /// Opens the device node at `path` and performs the version handshake.
    pub fn open_path(path: impl AsRef<Path>) -> Result<Self> {
        Self::with_transport(LinuxTransport::open(path)?)
    }
}

impl<T: GuestTransport> Device<T> {
    /// Starts a session over `transport` with the version handshake.
    ///
    /// Fails with [`Error::VersionMismatch`] if the driver does not grant interface version 1.
    pub fn with_transport(transport: T) -> Result<Self> {
        let version = query_driver_version(&transport)?;
        Ok(Self { transport, version })
    }

    /// The transport the session runs over.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// The versions agreed on when the session was opened.
    pub fn driver_version(&self) -> DriverVersion {
        self.version
    }

    /// Repeats the version handshake and returns the driver's answer.
    pub fn query_driver_version(&self) -> Result<DriverVersion> {
        query_driver_version(&self.transport)
    }

    /// Writes `message` to the guest kernel log; the driver also sends it to the host's backdoor log
    /// port. The driver forwards at most 127 characters per message to the host.
    pub fn log(&self, message: &str) -> Result<()> {
        let op = Operation::Log;
        let size_in = HEADER_SIZE
            .checked_add(message.len())
            .and_then(|size| u32::try_from(size).ok())
            .filter(|&size| size <= ioctl::VBG_IOCTL_MAX_SIZE)
            .ok_or_else(|| Error::bad_argument(op.clone(), "log message longer than 16 MiB"))?;
        let mut buffer = Vec::with_capacity(HEADER_SIZE + message.len());
        buffer.extend_from_slice(IoctlHeader::new(size_in, size32::<IoctlHeader>()).as_bytes());
        buffer.extend_from_slice(message.as_bytes());
        self.issue(&op, ioctl::VBG_IOCTL_LOG, &mut buffer)?;
        host_status(op, &buffer).map(drop)
    }

    /// Waits until one of `events` is pending for this session and returns the pending ones,
    /// consuming them. `None` waits without a time limit.
    ///
    /// Events only arrive if they are in the session's filter ([`Device::change_filter_mask`]).
    /// Fails with [`Error::TimedOut`] when the timeout expires and with [`Error::Interrupted`] on a
    /// signal or once [`Device::interrupt_all_waiters`] has been called on this session.
    pub fn wait_for_events(&self, events: Events, timeout: Option<Duration>) -> Result<Events> {
        let input = ioctl::WaitForEventsIn {
            header: header::<ioctl::WaitForEventsIn, ioctl::WaitForEventsOut>(),
            timeout_ms: U32::new(timeout_ms(timeout)),
            events: U32::new(events.bits()),
        };
        let output: ioctl::WaitForEventsOut = self.exchange(
            Operation::WaitForEvents,
            ioctl::VBG_IOCTL_WAIT_FOR_EVENTS,
            &input,
        )?;
        Ok(Events::from_bits_retain(output.events.get()))
    }

    /// Makes every current and future [`Device::wait_for_events`] of this session fail with
    /// [`Error::Interrupted`]; the driver keeps that state until the session is closed.
    pub fn interrupt_all_waiters(&self) -> Result<()> {
        let input = header::<IoctlHeader, IoctlHeader>();
        self.exchange::<_, IoctlHeader>(
            Operation::InterruptAllWaitForEvents,
            ioctl::VBG_IOCTL_INTERRUPT_ALL_WAIT_FOR_EVENTS,
            &input,
        )
        .map(drop)
    }

    /// Adds `or_mask` to and then removes `not_mask` from this session's event filter. The driver
    /// tells the host whenever the union over all sessions changes.
    pub fn change_filter_mask(&self, or_mask: Events, not_mask: Events) -> Result<()> {
        let input = ioctl::ChangeFilterMaskIn {
            header: header::<ioctl::ChangeFilterMaskIn, IoctlHeader>(),
            or_mask: U32::new(or_mask.bits()),
            not_mask: U32::new(not_mask.bits()),
        };
        self.exchange::<_, IoctlHeader>(
            Operation::ChangeFilterMask,
            ioctl::VBG_IOCTL_CHANGE_FILTER_MASK,
            &input,
        )
        .map(drop)
    }

    /// Sets `or_mask` and clears `not_mask` in this session's guest capabilities (shared mode) and
    /// returns the resulting session and global masks.
    pub fn change_guest_capabilities(
        &self,
        or_mask: GuestCapabilities,
        not_mask: GuestCapabilities,
    ) -> Result<CapabilityState> {
        let input = ioctl::ChangeGuestCapabilitiesIn {
            header: header::<ioctl::ChangeGuestCapabilitiesIn, ioctl::ChangeGuestCapabilitiesOut>(),
            or_mask: U32::new(or_mask.bits()),
            not_mask: U32::new(not_mask.bits()),
        };
        let output: ioctl::ChangeGuestCapabilitiesOut = self.exchange(
            Operation::ChangeGuestCapabilities,
            ioctl::VBG_IOCTL_CHANGE_GUEST_CAPABILITIES,
            &input,
        )?;
        Ok(CapabilityState {
            session: GuestCapabilities::from_bits_retain(output.session_caps.get()),
            global: GuestCapabilities::from_bits_retain(output.global_caps.get()),
        })
    }

    /// Acquires `or_mask` and releases `not_mask` exclusively for this session (acquire mode), or
    /// with [`AcquireMode::ConfigureOnly`] only marks them as acquire-mode capabilities. A
    /// capability another session holds makes the driver fail with `EBUSY`.
    pub fn acquire_guest_capabilities(
        &self,
        or_mask: GuestCapabilities,
        not_mask: GuestCapabilities,
        mode: AcquireMode,
    ) -> Result<()> {
        let flags = match mode {
            AcquireMode::Acquire => ioctl::AcquireGuestCapabilitiesFlags::empty(),
            AcquireMode::ConfigureOnly => ioctl::AcquireGuestCapabilitiesFlags::CONFIG_ACQUIRE_MODE,
        };
        let input = ioctl::AcquireGuestCapabilitiesIn {
            header: header::<ioctl::AcquireGuestCapabilitiesIn, IoctlHeader>(),
            flags: U32::new(flags.bits()),
            or_mask: U32::new(or_mask.bits()),
            not_mask: U32::new(not_mask.bits()),
        };
        self.exchange::<_, IoctlHeader>(
            Operation::AcquireGuestCapabilities,
            ioctl::VBG_IOCTL_ACQUIRE_GUEST_CAPABILITIES,
            &input,
        )
        .map(drop)
    }

    /// Asks the driver for the current memory balloon size (answered without host traffic).
    pub fn check_balloon(&self) -> Result<BalloonInfo> {
        let input = header::<IoctlHeader, ioctl::CheckBalloonOut>();
        let output: ioctl::CheckBalloonOut = self.exchange(
            Operation::CheckBalloon,
            ioctl::VBG_IOCTL_CHECK_BALLOON,
            &input,
        )?;
        Ok(BalloonInfo {
            chunks: output.balloon_chunks.get(),
            handled_by_user_space: output.handle_in_r3 != 0,
        })
    }

    /// Asks the host to write a core dump of the VM (`VMMDevReq_WriteCoreDump`) and returns the
    /// host's status; a failure status is [`Error::Host`].
    pub fn write_core_dump(&self) -> Result<Status> {
        let op = Operation::WriteCoreDump;
        let input = ioctl::WriteCoreDumpIn {
            header: header::<ioctl::WriteCoreDumpIn, IoctlHeader>(),
            flags: U32::ZERO,
        };
        let mut buffer = input.as_bytes().to_vec();
        self.issue(&op, ioctl::VBG_IOCTL_WRITE_CORE_DUMP, &mut buffer)?;
        host_status(op, &buffer)
    }

    /// Passes a complete VMMDev request of type `request_type` to the host and returns the host's
    /// status; a failure status is [`Error::Host`].
    ///
    /// `request` is the whole request, the 24-byte request header included: this method fills the
    /// header (size, version, type; `rc` and the requestor field zero) and sends the body as given.
    /// The host's answer is written back over `request`. The driver only lets some request types
    /// through, and fewer on [`Node::User`]; a refused type is [`Error::PermissionDenied`].
    pub fn vmmdev_request(&self, request_type: RequestType, request: &mut [u8]) -> Result<Status> {
        let op = Operation::VmmdevRequest { request_type };
        if request_type == RequestType::INVALID_REQUEST {
            return Err(Error::bad_argument(
                op,
                "request type 0 is not a VMMDev request",
            ));
        }
        let Some(size) = u32::try_from(request.len())
            .ok()
            .filter(|&size| size >= size32::<IoctlHeader>() && size <= VMMDEV_MAX_VMMDEVREQ_SIZE)
        else {
            return Err(Error::bad_argument(
                op,
                format!(
                    "request is {} bytes, expected {HEADER_SIZE} to {VMMDEV_MAX_VMMDEVREQ_SIZE}",
                    request.len()
                ),
            ));
        };
        let mut header = IoctlHeader::new(size, size);
        header.header_type = U32::new(request_type.raw());
        header
            .write_to_prefix(request)
            .map_err(|_| Error::bad_argument(op.clone(), "request shorter than its header"))?;
        let number =
            ioctl::vbg_ioctl_vmmdev_request(size).unwrap_or(ioctl::VBG_IOCTL_VMMDEV_REQUEST_BIG);
        self.issue(&op, number, request)?;
        host_status(op, request)
    }

    /// Issues an ioctl whose buffer carries no user addresses.
    pub(crate) fn issue(&self, op: &Operation, request: u32, buffer: &mut [u8]) -> Result<()> {
        issue(&self.transport, op, request, buffer)
    }

    /// Issues a fixed-size ioctl and reads its output; a failure status in the reply header
    /// becomes [`Error::Host`].
    fn exchange<In, Out>(&self, op: Operation, request: u32, input: &In) -> Result<Out>
    where
        In: IntoBytes + Immutable,
        Out: FromBytes,
    {
        let (status, output) = transact(&self.transport, &op, request, input)?;
        if status.is_failure() {
            return Err(Error::Host { op, status });
        }
        Ok(output)
    }
}

/// Issues an ioctl whose buffer carries no user addresses.
fn issue(
    transport: &impl GuestTransport,
    op: &Operation,
    request: u32,
    buffer: &mut [u8],
) -> Result<()> {
    // SAFETY: every caller passes a buffer built from the fixed ioctl layouts (or the caller's
    // VMMDev request), none of which contains a user address.
    unsafe { transport.ioctl(request, buffer) }
        .map_err(|errno| Error::from_errno(op.clone(), errno))
}

/// Issues a fixed-size ioctl: `input` goes into a buffer large enough for either layout, and the
/// reply header's status and the output layout are read back.
fn transact<In, Out>(
    transport: &impl GuestTransport,
    op: &Operation,
    request: u32,
    input: &In,
) -> Result<(Status, Out)>
where
    In: IntoBytes + Immutable,
    Out: FromBytes,
{
    let unexpected = |reason: &str| Error::UnexpectedReply {
        op: op.clone(),
        reason: reason.to_owned(),
    };
    let mut buffer = vec![0u8; size_of::<In>().max(size_of::<Out>())];
    input
        .write_to_prefix(&mut buffer)
        .map_err(|_| Error::bad_argument(op.clone(), "input larger than its buffer"))?;
    issue(transport, op, request, &mut buffer)?;
    let (header, _) = IoctlHeader::read_from_prefix(&buffer)
        .map_err(|_| unexpected("reply shorter than the ioctl header"))?;
    let (output, _) =
        Out::read_from_prefix(&buffer).map_err(|_| unexpected("reply shorter than its layout"))?;
    Ok((header.status(), output))
}

/// The handshake: asks for interface version 1.0 and accepts any 1.x session.
fn query_driver_version(transport: &impl GuestTransport) -> Result<DriverVersion> {
    let input = ioctl::DriverVersionInfoIn {
        header: header::<ioctl::DriverVersionInfoIn, ioctl::DriverVersionInfoOut>(),
        req_version: U32::new(ioctl::VBG_IOC_VERSION),
        min_version: U32::new(ioctl::VBG_IOC_VERSION),
        reserved1: U32::ZERO,
        reserved2: U32::ZERO,
    };
    let (status, output): (Status, ioctl::DriverVersionInfoOut) = transact(
        transport,
        &Operation::DriverVersionInfo,
        ioctl::VBG_IOCTL_DRIVER_VERSION_INFO,
        &input,
    )?;
    let version = DriverVersion {
        session_version: output.session_version.get(),
        driver_version: output.driver_version.get(),
        driver_revision: output.driver_revision.get(),
    };
    if status.is_failure() || version.session_version >> 16 != ioctl::VBG_IOC_VERSION >> 16 {
        return Err(Error::VersionMismatch {
            session_version: version.session_version,
            driver_version: version.driver_version,
        });
    }
    log::debug!(
        "vboxguest session version {:#010x}",
        version.session_version
    );
    Ok(version)
}

/// The header for an ioctl whose input and output layouts are `In` and `Out`.
pub(crate) fn header<In, Out>() -> IoctlHeader {
    IoctlHeader::new(size32::<In>(), size32::<Out>())
}

/// The size of an ioctl layout (all of them are far below 4 GiB).
pub(crate) fn size32<T>() -> u32 {
    u32::try_from(size_of::<T>()).unwrap_or(u32::MAX)
}

/// Converts a timeout into the driver's milliseconds, rounding up; `None` is "forever".
pub(crate) fn timeout_ms(timeout: Option<Duration>) -> u32 {
    match timeout {
        None => ioctl::VBG_TIMEOUT_INFINITE,
        Some(duration) => {
            let millis = duration.as_nanos().div_ceil(1_000_000);
            u32::try_from(millis)
                .unwrap_or(u32::MAX)
                .min(ioctl::VBG_TIMEOUT_INFINITE - 1)
        }
    }
}

/// Reads the status from a reply header: success codes are returned, failures are
/// [`Error::Host`].
pub(crate) fn host_status(op: Operation, reply: &[u8]) -> Result<Status> {
    let (header, _) = IoctlHeader::read_from_prefix(reply).map_err(|_| Error::UnexpectedReply {
        op: op.clone(),
        reason: "reply shorter than the ioctl header".to_owned(),
    })?;
    let status = header.status();
    if status.is_failure() {
        Err(Error::Host { op, status })
    } else {
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakeTransport, get_u32, put_i32, put_u32};

    const VERR_NOT_IMPLEMENTED: i32 = -12;
    const VERR_VERSION_MISMATCH: i32 = -11;

    fn device(fake: FakeTransport) -> Device<FakeTransport> {
        Device::with_transport(fake).unwrap()
    }

    /// Asserts the ioctl header of `buffer`.
    fn assert_header(buffer: &[u8], size_in: u32, size_out: u32) {
        assert_eq!(get_u32(buffer, 0), size_in, "size_in");
        assert_eq!(get_u32(buffer, 4), 0x0001_0001, "version");
        assert_eq!(get_u32(buffer, 8), 0, "type");
        assert_eq!(get_u32(buffer, 16), size_out, "size_out");
        assert_eq!(get_u32(buffer, 20), 0, "reserved");
    }

    #[test]
    fn open_performs_the_version_handshake() {
        let device = device(FakeTransport::new());
        let handshake = device.transport().last();
        assert_eq!(handshake.request, 0xC02C_5600);
        assert_eq!(handshake.buffer.len(), 44);
        assert_header(&handshake.buffer, 40, 44);
        assert_eq!(get_u32(&handshake.buffer, 24), 0x0001_0000, "req_version");
        assert_eq!(get_u32(&handshake.buffer, 28), 0x0001_0000, "min_version");
        assert_eq!(device.driver_version().session_version, 0x0001_0000);
    }

    #[test]
    fn open_rejects_a_driver_that_refuses_interface_version_1() {
        let fake = FakeTransport::without_handshake().then(|buffer| {
            put_i32(buffer, 12, VERR_VERSION_MISMATCH);
            put_u32(buffer, 24, u32::MAX);
            put_u32(buffer, 28, 0x0002_0000);
            Ok(())
        });
        let err = Device::with_transport(fake).unwrap_err();
        assert!(
            matches!(
                err,
                Error::VersionMismatch {
                    session_version: u32::MAX,
                    driver_version: 0x0002_0000
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn open_accepts_a_newer_minor_version() {
        let fake = FakeTransport::without_handshake().then(|buffer| {
            put_u32(buffer, 24, 0x0001_0002);
            put_u32(buffer, 28, 0x0001_0002);
            Ok(())
        });
        let device = device(fake);
        assert_eq!(device.driver_version().driver_version, 0x0001_0002);
    }

    #[test]
    fn log_sends_the_message_after_the_header_with_a_bare_output_size() {
        let device = device(FakeTransport::new());
        device.log("hello-0x504").unwrap();
        let log = device.transport().last();
        assert_eq!(log.request, 0x5609);
        assert_header(&log.buffer, 24 + 11, 24);
        assert_eq!(&log.buffer[24..], b"hello-0x504");
    }

    #[test]
    fn wait_for_events_sends_timeout_and_mask_and_returns_the_events() {
        let fake = FakeTransport::new().then(|buffer| {
            put_u32(buffer, 24, 0x4);
            Ok(())
        });
        let device = device(fake);
        let events = device
            .wait_for_events(
                Events::DISPLAY_CHANGE_REQUEST,
                Some(Duration::from_millis(200)),
            )
            .unwrap();
        assert_eq!(events, Events::DISPLAY_CHANGE_REQUEST);
        let wait = device.transport().last();
        assert_eq!(wait.request, 0xC020_560A);
        assert_eq!(wait.buffer.len(), 32);
        assert_header(&wait.buffer, 32, 28);
        assert_eq!(get_u32(&wait.buffer, 24), 200, "timeout_ms");
        assert_eq!(get_u32(&wait.buffer, 28), 0x4, "events");
    }

    #[test]
    fn wait_for_events_without_timeout_waits_forever() {
        let device = device(FakeTransport::new());
        device.wait_for_events(Events::RESTORED, None).unwrap();
        assert_eq!(get_u32(&device.transport().last().buffer, 24), u32::MAX);
    }

    #[test]
    fn expired_wait_is_timed_out() {
        let device = device(FakeTransport::new().then_fail(libc::ETIMEDOUT));
        let err = device
            .wait_for_events(
                Events::DISPLAY_CHANGE_REQUEST,
                Some(Duration::from_millis(1)),
            )
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::TimedOut {
                    op: Operation::WaitForEvents
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn wait_ended_by_a_signal_is_interrupted() {
        let device = device(FakeTransport::new().then_fail(libc::EINTR));
        let err = device
            .wait_for_events(Events::DISPLAY_CHANGE_REQUEST, None)
            .unwrap_err();
        assert!(matches!(err, Error::Interrupted { .. }), "{err:?}");
    }

    #[test]
    fn interrupt_all_waiters_sends_a_bare_header() {
        let device = device(FakeTransport::new());
        device.interrupt_all_waiters().unwrap();
        let interrupt = device.transport().last();
        assert_eq!(interrupt.request, 0xC018_560B);
        assert_eq!(interrupt.buffer.len(), 24);
        assert_header(&interrupt.buffer, 24, 24);
    }

    #[test]
    fn change_filter_mask_sends_both_masks() {
        let device = device(FakeTransport::new());
        device
            .change_filter_mask(
                Events::DISPLAY_CHANGE_REQUEST,
                Events::BALLOON_CHANGE_REQUEST,
            )
            .unwrap();
        let change = device.transport().last();
        assert_eq!(change.request, 0xC020_560C);
        assert_header(&change.buffer, 32, 24);
        assert_eq!(get_u32(&change.buffer, 24), 0x4);
        assert_eq!(get_u32(&change.buffer, 28), 0x40);
    }

    #[test]
    fn change_guest_capabilities_returns_session_and_global_masks() {
        let fake = FakeTransport::new().then(|buffer| {
            put_u32(buffer, 24, 0x4);
            put_u32(buffer, 28, 0x5);
            Ok(())
        });
        let device = device(fake);
        let caps = device
            .change_guest_capabilities(GuestCapabilities::GRAPHICS, GuestCapabilities::empty())
            .unwrap();
        assert_eq!(
            caps,
            CapabilityState {
                session: GuestCapabilities::GRAPHICS,
                global: GuestCapabilities::GRAPHICS | GuestCapabilities::SEAMLESS
            }
        );
        let change = device.transport().last();
        assert_eq!(change.request, 0xC020_560E);
        assert_header(&change.buffer, 32, 32);
        assert_eq!(get_u32(&change.buffer, 24), 0x4, "or_mask");
        assert_eq!(get_u32(&change.buffer, 28), 0, "not_mask");
    }

    #[test]
    fn acquire_in_configure_only_mode_sets_the_config_flag() {
        let device = device(FakeTransport::new());
        device
            .acquire_guest_capabilities(
                GuestCapabilities::SEAMLESS,
                GuestCapabilities::GUEST_HOST_WINDOW_MAPPING,
                AcquireMode::ConfigureOnly,
            )
            .unwrap();
        let acquire = device.transport().last();
        assert_eq!(acquire.request, 0xC024_560D);
        assert_header(&acquire.buffer, 36, 24);
        assert_eq!(get_u32(&acquire.buffer, 24), 1, "flags");
        assert_eq!(get_u32(&acquire.buffer, 28), 0x1, "or_mask");
        assert_eq!(get_u32(&acquire.buffer, 32), 0x2, "not_mask");
    }

    #[test]
    fn busy_capability_reports_the_errno() {
        let device = device(FakeTransport::new().then_fail(libc::EBUSY));
        let err = device
            .acquire_guest_capabilities(
                GuestCapabilities::SEAMLESS,
                GuestCapabilities::empty(),
                AcquireMode::Acquire,
            )
            .unwrap_err();
        assert!(
            matches!(err, Error::Os { errno, .. } if errno.raw() == libc::EBUSY),
            "{err:?}"
        );
    }

    #[test]
    fn check_balloon_returns_the_chunk_count() {
        let fake = FakeTransport::new().then(|buffer| {
            put_u32(buffer, 24, 12);
            Ok(())
        });
        let device = device(fake);
        let balloon = device.check_balloon().unwrap();
        assert_eq!(
            balloon,
            BalloonInfo {
                chunks: 12,
                handled_by_user_space: false
            }
        );
        let check = device.transport().last();
        assert_eq!(check.request, 0xC020_5611);
        assert_eq!(check.buffer.len(), 32);
        assert_header(&check.buffer, 24, 32);
    }

    #[test]
    fn write_core_dump_reports_the_host_failure_status() {
        let fake = FakeTransport::new().then(|buffer| {
            put_i32(buffer, 12, VERR_NOT_IMPLEMENTED);
            Ok(())
        });
        let device = device(fake);
        let err = device.write_core_dump().unwrap_err();
        assert_eq!(err.host_status(), Some(Status::VERR_NOT_IMPLEMENTED));
        let dump = device.transport().last();
        assert_eq!(dump.request, 0xC01C_5613);
        assert_header(&dump.buffer, 28, 24);
        assert_eq!(get_u32(&dump.buffer, 24), 0, "flags");
    }

    #[test]
    fn vmmdev_request_fills_the_header_and_encodes_its_size_in_the_number() {
        let fake = FakeTransport::new().then(|buffer| {
            put_u32(buffer, 24, 0x0007_0001);
            Ok(())
        });
        let device = device(fake);
        let mut request = [0xAAu8; 40];
        let status = device
            .vmmdev_request(RequestType::GET_HOST_VERSION, &mut request)
            .unwrap();
        assert_eq!(status, Status::VINF_SUCCESS);
        let sent = device.transport().last();
        assert_eq!(sent.request, 0xC028_5602);
        assert_eq!(get_u32(&sent.buffer, 0), 40, "size_in");
        assert_eq!(get_u32(&sent.buffer, 4), 0x0001_0001, "version");
        assert_eq!(get_u32(&sent.buffer, 8), 4, "type");
        assert_eq!(get_u32(&sent.buffer, 16), 40, "size_out");
        assert_eq!(get_u32(&sent.buffer, 20), 0, "reserved (requestor)");
        assert_eq!(&sent.buffer[24..], [0xAA; 16], "body sent as given");
        assert_eq!(get_u32(&request, 24), 0x0007_0001, "answer written back");
    }

    #[test]
    fn vmmdev_request_too_large_for_the_size_field_uses_the_big_ioctl() {
        let device = device(FakeTransport::new());
        let mut request = vec![0u8; 20_000];
        device
            .vmmdev_request(RequestType::GET_HOST_TIME, &mut request)
            .unwrap();
        let sent = device.transport().last();
        assert_eq!(sent.request, 0x5603);
        assert_eq!(get_u32(&sent.buffer, 0), 20_000);
    }

    #[test]
    fn vmmdev_request_refused_by_the_driver_is_permission_denied() {
        let device = device(FakeTransport::new().then_fail(libc::EPERM));
        let mut request = [0u8; 28];
        let err = device
            .vmmdev_request(RequestType::WRITE_CORE_DUMP, &mut request)
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::PermissionDenied {
                    op: Operation::VmmdevRequest {
                        request_type: RequestType::WRITE_CORE_DUMP
                    }
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn vmmdev_request_shorter_than_its_header_is_refused_without_an_ioctl() {
        let device = device(FakeTransport::new());
        let mut request = [0u8; 23];
        let err = device
            .vmmdev_request(RequestType::GET_HOST_VERSION, &mut request)
            .unwrap_err();
        assert!(matches!(err, Error::BadArgument { .. }), "{err:?}");
        assert_eq!(device.transport().recorded().len(), 1, "only the handshake");
    }

    #[test]
    fn timeouts_round_up_to_whole_milliseconds() {
        assert_eq!(timeout_ms(Some(Duration::from_micros(1500))), 2);
        assert_eq!(timeout_ms(Some(Duration::ZERO)), 0);
    }

    #[test]
    fn huge_timeouts_stay_finite() {
        assert_eq!(
            timeout_ms(Some(Duration::from_secs(u64::MAX))),
            u32::MAX - 1
        );
        assert_eq!(timeout_ms(None), u32::MAX);
    }
}
