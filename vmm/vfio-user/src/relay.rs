//! The message guard between the client and the `vfio_user` crate's server.
//!
//! The crate's `Server::run` trusts the client's framing: it allocates whatever size a message
//! header announces, unwraps the version string, reads fixed-size bodies whatever the announced
//! size, and answers `NO_REPLY` commands with error replies the client does not expect. A server
//! that must survive any client therefore does not give the crate the client's socket. The
//! [`Relay`] reads each message itself, bounded, checks it completely ([`check`]), counts it, and
//! forwards only well-formed commands to the crate over a private socket pair, exactly as large as
//! the crate will read; the crate's reply comes back the same way. Refused messages get an error
//! reply from the relay (and a log line), and the connection goes on.
//!
//! The relay also clears `NO_REPLY` before forwarding, so that every forwarded command produces
//! exactly one reply; the relay drops the replies the client did not ask for. Error replies for
//! backend refusals carry the errno the backend recorded (the crate sends 0).

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use vfio_bindings::bindings::vfio::{VFIO_IRQ_SET_DATA_BOOL, VFIO_IRQ_SET_DATA_EVENTFD};

use crate::backend::LastError;
use crate::counters::MessageCounters;
use crate::layout::{NUM_IRQS, NUM_REGIONS, region_size};
use crate::scm::{self, MAX_FDS};
use crate::wire::{Command, FLAG_NO_REPLY, HEADER_SIZE, Header};

/// Largest region read or write (the data-transfer limit the crate advertises).
pub const MAX_DATA_TRANSFER: usize = 1 << 20;
/// Largest capability string accepted in VERSION.
pub const MAX_VERSION_JSON: usize = 4096;
/// Largest message body read into memory: a maximal region write.
const MAX_BODY: usize = REGION_ACCESS_SIZE + MAX_DATA_TRANSFER;
/// Refusals logged as warnings per connection; later ones are logged at debug level.
const WARNINGS_PER_CONNECTION: u32 = 32;

/// Body of VERSION before the capability string: major and minor version.
const VERSION_FIXED_SIZE: usize = 4;
/// Body of DMA_MAP: argsz, flags, offset, address, size.
const DMA_MAP_SIZE: usize = 32;
/// Body of DMA_UNMAP: argsz, flags, address, size.
const DMA_UNMAP_SIZE: usize = 24;
/// Body of DEVICE_GET_INFO: argsz, flags, num_regions, num_irqs.
const DEVICE_INFO_SIZE: usize = 16;
/// Body of DEVICE_GET_REGION_INFO: a `vfio_region_info`.
const REGION_INFO_SIZE: usize = 32;
/// Body of GET_IRQ_INFO: argsz, flags, index, count.
const IRQ_INFO_SIZE: usize = 16;
/// Body of SET_IRQS without data: argsz, flags, index, start, count.
const SET_IRQS_SIZE: usize = 20;
/// Body of REGION_READ and of REGION_WRITE before its data: offset, region, count.
const REGION_ACCESS_SIZE: usize = 16;

/// Why a client message was refused. Every refusal is answered with its errno (unless the
/// client asked for no reply) and the connection goes on.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The header announces less than a header.
    #[error("message size {0} is smaller than a header")]
    Undersized(u32),
    /// The body is larger than any valid message.
    #[error("message of {0} bytes exceeds the {MAX_BODY}-byte limit")]
    TooLarge(u32),
    /// A command number the protocol does not define.
    #[error("unknown command {0}")]
    UnknownCommand(u16),
    /// A command this server does not implement.
    #[error("{} is not supported", .0.name())]
    Unsupported(Command),
    /// Anything before a successful VERSION, or a second VERSION.
    #[error("{} out of order (version negotiated: {negotiated})", .command.name())]
    OutOfOrder {
        /// The command.
        command: Command,
        /// Whether VERSION was already accepted.
        negotiated: bool,
    },
    /// The body is shorter than the command requires.
    #[error("{} needs {needed} bytes after the header, got {got}", .command.name())]
    Truncated {
        /// The command.
        command: Command,
        /// Bytes required.
        needed: usize,
        /// Bytes received.
        got: usize,
    },
    /// The VERSION capability string is missing its terminator, has an inner NUL or is too long.
    #[error("malformed VERSION capability string")]
    BadVersionString,
    /// A region access outside the region, of an absent region, or beyond the transfer limit.
    #[error("access of {count} bytes at {offset:#x} in region {region} is out of range")]
    RegionRange {
        /// Region index.
        region: u32,
        /// Offset.
        offset: u64,
        /// Byte count.
        count: u32,
    },
    /// An index the device does not have.
    #[error("{} of index {index}, which does not exist", .command.name())]
    NoSuchIndex {
        /// The command.
        command: Command,
        /// The index.
        index: u32,
    },
    /// SET_IRQS with DATA_BOOL.
    #[error("SET_IRQS with boolean data is not supported")]
    BoolData,
    /// File descriptors the command cannot carry, or too many of them.
    #[error("{} carried {got} file descriptors, at most {allowed} allowed", .command.name())]
    Descriptors {
        /// The command.
        command: Command,
        /// Descriptors received.
        got: usize,
        /// Descriptors the command may carry.
        allowed: usize,
    },
    /// The client sent more descriptors than a message can carry.
    #[error("descriptors beyond the {MAX_FDS}-descriptor limit were dropped")]
    DescriptorsTruncated,
}

impl Refusal {
    /// The errno reported to the client.
    pub fn errno(&self) -> i32 {
        match self {
            Refusal::TooLarge(_) => libc::E2BIG,
            Refusal::UnknownCommand(_) => libc::ENOSYS,
            Refusal::Unsupported(_) | Refusal::BoolData => libc::ENOTSUP,
            _ => libc::EINVAL,
        }
    }
}

/// Why a connection ended other than by the client closing it between messages.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Reading from or writing to the client failed.
    #[error("client socket")]
    Client(#[source] io::Error),
    /// The client closed the connection in the middle of a message.
    #[error("client closed the connection in the middle of a message")]
    ClientTruncated,
    /// The crate's side failed or went away.
    #[error("device server socket")]
    Server(#[source] io::Error),
    /// The crate answered something other than the reply to the forwarded command.
    #[error("device server answered out of protocol: {0}")]
    ServerProtocol(String),
}

/// A message accepted for forwarding: the bytes the crate will read, and its descriptors.
#[derive(Debug)]
pub struct Forward {
    /// Header and body, trimmed to what the crate reads, with `message_size` set accordingly.
    pub bytes: Vec<u8>,
    /// Descriptors to pass along.
    pub fds: Vec<OwnedFd>,
}

/// A message as read from the client.
#[derive(Debug)]
pub struct Frame {
    /// Its header.
    pub header: Header,
    /// Header and body, if the body was small enough to read.
    pub bytes: Option<Vec<u8>>,
    /// Descriptors that came with it.
    pub fds: Vec<OwnedFd>,
    /// Whether descriptors were dropped because there were too many.
    pub fds_truncated: bool,
}

/// Checks a client frame and prepares what is forwarded. `negotiated` is whether VERSION was
/// already accepted on this connection.
pub fn check(frame: Frame, negotiated: bool) -> Result<Forward, Refusal> {
    let header = frame.header;
    let body_size = header
        .body_size()
        .ok_or(Refusal::Undersized(header.message_size))?;
    let mut bytes = frame.bytes.ok_or(Refusal::TooLarge(header.message_size))?;
    let command =
        Command::from_raw(header.command).ok_or(Refusal::UnknownCommand(header.command))?;
    if frame.fds_truncated {
        return Err(Refusal::DescriptorsTruncated);
    }
    if (command == Command::Version) == negotiated {
        return Err(Refusal::OutOfOrder {
            command,
            negotiated,
        });
    }
    let body = bytes.get(HEADER_SIZE..).unwrap_or_default();
    debug_assert_eq!(body.len(), body_size);
    let (needed, allowed_fds) = match command {
        Command::Version => (check_version(body)?, 0),
        Command::DmaMap => (DMA_MAP_SIZE, 1),
        Command::DmaUnmap => (DMA_UNMAP_SIZE, 0),
        Command::DeviceGetInfo => (DEVICE_INFO_SIZE, 0),
        Command::DeviceGetRegionInfo => {
            let index = field_u32(command, body, 8)?;
            if index as usize >= NUM_REGIONS {
                return Err(Refusal::NoSuchIndex { command, index });
            }
            (REGION_INFO_SIZE, 0)
        }
        Command::GetIrqInfo => {
            let index = field_u32(command, body, 8)?;
            if index as usize >= NUM_IRQS {
                return Err(Refusal::NoSuchIndex { command, index });
            }
            (IRQ_INFO_SIZE, 0)
        }
        Command::SetIrqs => check_set_irqs(body)?,
        Command::RegionRead => {
            check_region_access(command, body)?;
            (REGION_ACCESS_SIZE, 0)
        }
        Command::RegionWrite => {
            let count = check_region_access(command, body)?;
            (REGION_ACCESS_SIZE + count, 0)
        }
        Command::DeviceReset => (0, 0),
        Command::GetRegionIoFds | Command::DmaRead | Command::DmaWrite | Command::DirtyPages => {
            return Err(Refusal::Unsupported(command));
        }
    };
    if body.len() < needed {
        return Err(Refusal::Truncated {
            command,
            needed,
            got: body.len(),
        });
    }
    if frame.fds.len() > allowed_fds {
        return Err(Refusal::Descriptors {
            command,
            got: frame.fds.len(),
            allowed: allowed_fds,
        });
    }
    let size = HEADER_SIZE + needed;
    bytes.truncate(size);
    let forwarded = Header {
        message_size: size as u32,
        flags: header.flags & !FLAG_NO_REPLY,
        ..header
    };
    bytes[..HEADER_SIZE].copy_from_slice(&forwarded.to_bytes());
    Ok(Forward {
        bytes,
        fds: frame.fds,
    })
}

/// VERSION: major, minor, then a NUL-terminated capability string. Returns the body size.
fn check_version(body: &[u8]) -> Result<usize, Refusal> {
    let text = body.get(VERSION_FIXED_SIZE..).ok_or(Refusal::Truncated {
        command: Command::Version,
        needed: VERSION_FIXED_SIZE + 1,
        got: body.len(),
    })?;
    let well_formed = matches!(text.split_last(), Some((0, rest)) if !rest.contains(&0))
        && text.len() <= MAX_VERSION_JSON;
    if well_formed {
        Ok(body.len())
    } else {
        Err(Refusal::BadVersionString)
    }
}

/// SET_IRQS: boolean data is refused; the descriptor count follows the data type.
fn check_set_irqs(body: &[u8]) -> Result<(usize, usize), Refusal> {
    let command = Command::SetIrqs;
    let flags = field_u32(command, body, 4)?;
    let index = field_u32(command, body, 8)?;
    let count = field_u32(command, body, 16)?;
    if index as usize >= NUM_IRQS {
        return Err(Refusal::NoSuchIndex { command, index });
    }
    if flags & VFIO_IRQ_SET_DATA_BOOL != 0 {
        return Err(Refusal::BoolData);
    }
    let allowed_fds = if flags & VFIO_IRQ_SET_DATA_EVENTFD != 0 {
        usize::try_from(count).unwrap_or(usize::MAX).min(MAX_FDS)
    } else {
        0
    };
    Ok((SET_IRQS_SIZE, allowed_fds))
}

/// REGION_READ/REGION_WRITE: the region exists and holds the whole access, within the transfer
/// limit. Returns the byte count.
fn check_region_access(command: Command, body: &[u8]) -> Result<usize, Refusal> {
    let offset = field_u64(command, body, 0)?;
    let region = field_u32(command, body, 8)?;
    let count = field_u32(command, body, 12)?;
    let size = if (region as usize) < NUM_REGIONS {
        region_size(region)
    } else {
        0
    };
    let inside = offset
        .checked_add(u64::from(count))
        .is_some_and(|end| end <= size);
    if !inside || count as usize > MAX_DATA_TRANSFER {
        return Err(Refusal::RegionRange {
            region,
            offset,
            count,
        });
    }
    Ok(count as usize)
}

fn field_u32(command: Command, body: &[u8], at: usize) -> Result<u32, Refusal> {
    body.get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or(Refusal::Truncated {
            command,
            needed: at + 4,
            got: body.len(),
        })
}

fn field_u64(command: Command, body: &[u8], at: usize) -> Result<u64, Refusal> {
    body.get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or(Refusal::Truncated {
            command,
            needed: at + 8,
            got: body.len(),
        })
}

/// Reads one message: the header (with any descriptors), then the body if it is at most
/// `max_body` bytes. `Ok(None)` means the peer closed the connection between messages.
fn read_frame(stream: &UnixStream, max_body: usize) -> io::Result<Option<Frame>> {
    let mut head = [0u8; HEADER_SIZE];
    let mut filled = 0;
    let mut fds = Vec::new();
    let mut fds_truncated = false;
    while filled < HEADER_SIZE {
        let received = scm::recv_with_fds(stream, &mut head[filled..])?;
        fds.extend(received.fds);
        fds_truncated |= received.fds_truncated;
        if received.bytes == 0 {
            return if filled == 0 {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        filled += received.bytes;
    }
    let header = Header::parse(&head);
    let bytes = match header.body_size() {
        Some(body) if body <= max_body => {
            let mut bytes = vec![0u8; HEADER_SIZE + body];
            bytes[..HEADER_SIZE].copy_from_slice(&head);
            let mut reader = stream;
            reader.read_exact(&mut bytes[HEADER_SIZE..])?;
            Some(bytes)
        }
        _ => None,
    };
    Ok(Some(Frame {
        header,
        bytes,
        fds,
        fds_truncated,
    }))
}

/// Forwards the messages of one connection until the client closes it.
#[derive(Debug)]
pub struct Relay<'a> {
    client: &'a UnixStream,
    server: &'a UnixStream,
    counters: &'a MessageCounters,
    last_error: &'a LastError,
    negotiated: bool,
    warnings: u32,
}

impl<'a> Relay<'a> {
    /// A relay between `client` and `server` (the crate's end of the private socket pair).
    pub fn new(
        client: &'a UnixStream,
        server: &'a UnixStream,
        counters: &'a MessageCounters,
        last_error: &'a LastError,
    ) -> Self {
        Relay {
            client,
            server,
            counters,
            last_error,
            negotiated: false,
            warnings: 0,
        }
    }

    /// Serves until the client closes the connection (`Ok`) or a socket fails.
    pub fn run(&mut self) -> Result<(), RelayError> {
        loop {
            let frame = match read_frame(self.client, MAX_BODY) {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(()),
                Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(RelayError::ClientTruncated);
                }
                Err(error) => return Err(RelayError::Client(error)),
            };
            self.handle(frame)?;
        }
    }

    fn handle(&mut self, frame: Frame) -> Result<(), RelayError> {
        let header = frame.header;
        if !header.is_command() {
            self.warn(format_args!(
                "message {} (command {}) is not a command; dropped",
                header.message_id, header.command
            ));
            self.counters.count_refused();
            return self.discard_body(&frame);
        }
        self.counters.count_command(header.command);
        let oversized = frame.bytes.is_none();
        match check(frame, self.negotiated) {
            Ok(forward) => self.forward(header, forward),
            Err(refusal) => {
                self.counters.count_refused();
                self.warn(format_args!(
                    "message {} (command {}) refused: {refusal}",
                    header.message_id, header.command
                ));
                if !header.no_reply() {
                    self.reply(&header.error_reply(refusal.errno()).to_bytes(), &[])?;
                }
                if oversized {
                    if let Some(body) = header.body_size() {
                        self.drain(body)?;
                    }
                }
                Ok(())
            }
        }
    }

    /// Sends `forward` to the crate and passes its reply on (if the client wants one).
    fn forward(&mut self, request: Header, forward: Forward) -> Result<(), RelayError> {
        if let Some(command) = Command::from_raw(request.command) {
            match command {
                Command::RegionRead | Command::RegionWrite => {
                    let region = forward
                        .bytes
                        .get(HEADER_SIZE + 8..HEADER_SIZE + 12)
                        .and_then(|b| b.try_into().ok())
                        .map_or(u32::MAX, u32::from_le_bytes);
                    self.counters
                        .count_region_access(region, command == Command::RegionWrite);
                }
                Command::Version => self.negotiated = true,
                _ => {}
            }
        }
        self.last_error.clear();
        let fds: Vec<BorrowedFd<'_>> = forward.fds.iter().map(AsFd::as_fd).collect();
        scm::send_with_fds(self.server, &forward.bytes, &fds).map_err(RelayError::Server)?;
        drop(fds);
        drop(forward);

        let reply = read_frame(self.server, MAX_BODY)
            .map_err(RelayError::Server)?
            .ok_or_else(|| RelayError::ServerProtocol("connection closed".into()))?;
        let mut header = reply.header;
        if !header.is_reply() || header.message_id != request.message_id {
            return Err(RelayError::ServerProtocol(format!(
                "expected the reply to message {}, got {header:?}",
                request.message_id
            )));
        }
        let mut bytes = reply
            .bytes
            .ok_or_else(|| RelayError::ServerProtocol(format!("oversized reply {header:?}")))?;
        if header.is_error() {
            self.counters.count_failed();
            if header.error == 0 {
                let errno = self.last_error.take();
                header.error = if errno != 0 { errno } else { libc::EIO }.unsigned_abs();
                bytes[..HEADER_SIZE].copy_from_slice(&header.to_bytes());
            }
            if request.command == Command::Version.raw() {
                self.negotiated = false;
            }
        }
        if request.no_reply() {
            if header.is_error() {
                log::debug!(
                    "message {} (command {}) failed with errno {}; the client asked for no reply",
                    request.message_id,
                    request.command,
                    header.error
                );
            }
            return Ok(());
        }
        let fds: Vec<BorrowedFd<'_>> = reply.fds.iter().map(AsFd::as_fd).collect();
        self.reply(&bytes, &fds)
    }

    fn reply(&self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), RelayError> {
        scm::send_with_fds(self.client, bytes, fds).map_err(RelayError::Client)
    }

    /// Skips the body of a message that is not forwarded.
    fn discard_body(&self, frame: &Frame) -> Result<(), RelayError> {
        match (&frame.bytes, frame.header.body_size()) {
            (None, Some(body)) => self.drain(body),
            _ => Ok(()),
        }
    }

    /// Reads and drops `len` bytes from the client with a small buffer.
    fn drain(&self, len: usize) -> Result<(), RelayError> {
        let mut rest = Read::take(self.client, len as u64);
        let copied = io::copy(&mut rest, &mut io::sink()).map_err(RelayError::Client)?;
        if copied < len as u64 {
            return Err(RelayError::ClientTruncated);
        }
        Ok(())
    }

    fn warn(&mut self, message: std::fmt::Arguments<'_>) {
        self.warnings = self.warnings.saturating_add(1);
        if self.warnings <= WARNINGS_PER_CONNECTION {
            log::warn!("vfio-user: {message}");
            if self.warnings == WARNINGS_PER_CONNECTION {
                log::warn!(
                    "vfio-user: further refusals on this connection are logged at debug level"
                );
            }
        } else {
            log::debug!("vfio-user: {message}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(command: u16, body: &[u8], fds: usize) -> Frame {
        let header = Header {
            message_id: 1,
            command,
            message_size: (HEADER_SIZE + body.len()) as u32,
            flags: 0,
            error: 0,
        };
        let mut bytes = header.to_bytes().to_vec();
        bytes.extend_from_slice(body);
        let fds = (0..fds)
            .map(|_| OwnedFd::from(std::fs::File::open("/dev/null").unwrap()))
            .collect();
        Frame {
            header,
            bytes: Some(bytes),
            fds,
            fds_truncated: false,
        }
    }

    fn region_access(offset: u64, region: u32, count: u32) -> Vec<u8> {
        let mut body = offset.to_le_bytes().to_vec();
        body.extend_from_slice(&region.to_le_bytes());
        body.extend_from_slice(&count.to_le_bytes());
        body
    }

    fn version_body(json: &[u8]) -> Vec<u8> {
        let mut body = vec![0, 0, 1, 0];
        body.extend_from_slice(json);
        body
    }

    #[test]
    fn first_message_must_be_version() {
        let refusal = check(frame(13, &[], 0), false).unwrap_err();
        assert!(matches!(refusal, Refusal::OutOfOrder { .. }));
    }

    #[test]
    fn second_version_is_refused() {
        let refusal = check(frame(1, &version_body(b"{}\0"), 0), true).unwrap_err();
        assert!(matches!(
            refusal,
            Refusal::OutOfOrder {
                negotiated: true,
                ..
            }
        ));
    }

    #[test]
    fn version_string_must_be_terminated_once() {
        for json in [&b"{}"[..], b"{\0}\0", b""] {
            assert_eq!(
                check(frame(1, &version_body(json), 0), false).unwrap_err(),
                Refusal::BadVersionString
            );
        }
        assert!(check(frame(1, &version_body(b"{}\0"), 0), false).is_ok());
    }

    #[test]
    fn overlong_version_string_is_refused() {
        let mut json = vec![b' '; MAX_VERSION_JSON];
        json.push(0);
        assert_eq!(
            check(frame(1, &version_body(&json), 0), false).unwrap_err(),
            Refusal::BadVersionString
        );
    }

    #[test]
    fn oversized_message_is_refused_with_e2big() {
        let mut f = frame(9, &[], 0);
        f.bytes = None;
        f.header.message_size = u32::MAX;
        let refusal = check(f, true).unwrap_err();
        assert_eq!(refusal.errno(), libc::E2BIG);
    }

    #[test]
    fn undersized_message_size_is_refused() {
        let mut f = frame(13, &[], 0);
        f.header.message_size = 8;
        assert_eq!(check(f, true).unwrap_err(), Refusal::Undersized(8));
    }

    #[test]
    fn unknown_and_unsupported_commands_are_refused() {
        assert_eq!(
            check(frame(99, &[], 0), true).unwrap_err().errno(),
            libc::ENOSYS
        );
        for command in [6, 11, 12, 14] {
            assert_eq!(
                check(frame(command, &[0; 64], 0), true)
                    .unwrap_err()
                    .errno(),
                libc::ENOTSUP
            );
        }
    }

    #[test]
    fn region_read_outside_the_region_is_refused() {
        for (offset, region, count) in [
            (0, 0, 33),
            (30, 0, 4),
            (u64::MAX, 7, 2),
            (0, 2, 1),
            (0, 9, 1),
        ] {
            let refusal = check(frame(9, &region_access(offset, region, count), 0), true);
            assert!(
                matches!(refusal, Err(Refusal::RegionRange { .. })),
                "{offset} {region} {count}"
            );
        }
    }

    #[test]
    fn huge_region_read_count_is_refused_before_any_allocation() {
        let refusal = check(frame(9, &region_access(0, 1, u32::MAX), 0), true).unwrap_err();
        assert!(matches!(refusal, Refusal::RegionRange { .. }));
    }

    #[test]
    fn region_write_must_carry_its_data() {
        let mut body = region_access(0, 0, 4);
        body.extend_from_slice(&[1, 2]);
        let refusal = check(frame(10, &body, 0), true).unwrap_err();
        assert!(matches!(
            refusal,
            Refusal::Truncated {
                needed: 20,
                got: 18,
                ..
            }
        ));
    }

    #[test]
    fn accepted_message_is_trimmed_to_what_the_crate_reads() {
        let mut body = region_access(0, 0, 4);
        body.extend_from_slice(&[1, 2, 3, 4, 0xEE, 0xEE]);
        let forward = check(frame(10, &body, 0), true).unwrap();
        assert_eq!(forward.bytes.len(), HEADER_SIZE + 20);
        let header = Header::parse(forward.bytes[..HEADER_SIZE].try_into().unwrap());
        assert_eq!(header.message_size, 36);
    }

    #[test]
    fn no_reply_flag_is_cleared_for_the_crate() {
        let mut f = frame(13, &[], 0);
        f.header.flags = FLAG_NO_REPLY;
        let forward = check(f, true).unwrap();
        let header = Header::parse(forward.bytes[..HEADER_SIZE].try_into().unwrap());
        assert!(!header.no_reply());
    }

    #[test]
    fn short_fixed_size_bodies_are_refused() {
        for (command, len) in [
            (2, 31),
            (3, 23),
            (4, 15),
            (5, 31),
            (7, 15),
            (8, 19),
            (9, 15),
        ] {
            let refusal = check(frame(command, &vec![0; len], 0), true).unwrap_err();
            assert!(
                matches!(refusal, Refusal::Truncated { .. }),
                "command {command}: {refusal}"
            );
        }
    }

    #[test]
    fn descriptors_are_refused_where_the_command_takes_none() {
        let refusal = check(frame(13, &[], 1), true).unwrap_err();
        assert!(matches!(
            refusal,
            Refusal::Descriptors {
                allowed: 0,
                got: 1,
                ..
            }
        ));
        let refusal = check(frame(2, &[0; 32], 2), true).unwrap_err();
        assert!(matches!(
            refusal,
            Refusal::Descriptors {
                allowed: 1,
                got: 2,
                ..
            }
        ));
    }

    #[test]
    fn truncated_descriptor_list_is_refused() {
        let mut f = frame(2, &[0; 32], 1);
        f.fds_truncated = true;
        assert_eq!(check(f, true).unwrap_err(), Refusal::DescriptorsTruncated);
    }

    #[test]
    fn set_irqs_with_bool_data_is_refused() {
        let mut body = vec![0u8; 20];
        body[4..8].copy_from_slice(&(VFIO_IRQ_SET_DATA_BOOL | 0x20).to_le_bytes());
        body[16..20].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(
            check(frame(8, &body, 0), true).unwrap_err(),
            Refusal::BoolData
        );
    }

    #[test]
    fn region_and_irq_info_of_absent_indices_are_refused() {
        let mut body = vec![0u8; 32];
        body[8..12].copy_from_slice(&9u32.to_le_bytes());
        assert!(matches!(
            check(frame(5, &body, 0), true),
            Err(Refusal::NoSuchIndex { index: 9, .. })
        ));
        let mut body = vec![0u8; 16];
        body[8..12].copy_from_slice(&5u32.to_le_bytes());
        assert!(matches!(
            check(frame(7, &body, 0), true),
            Err(Refusal::NoSuchIndex { index: 5, .. })
        ));
    }
}
