//! The host's interface to the service: host function numbers, notifications, and
//! [`ClipboardHost`], a typed client that builds the parameter arrays and runs the asynchronous
//! read of guest data, for the control endpoint and embedders.
//!
//! | No. | Name | Parameters | Result |
//! |---|---|---|---|
//! | 1 | `SET_MODE` | u32 mode | an unknown mode sets `off` and answers `VERR_NOT_SUPPORTED` (VirtualBox's rule) |
//! | 3 | `SET_HEADLESS` | u32 boolean | recorded; the memory backend is headless anyway |
//! | 2, 4, 5 | `SET_TRANSFER_MODE`, `CANCEL`, `ERROR` | — | `VERR_NOT_IMPLEMENTED` (no file transfers) |
//! | 0x100 | [`HOST_FN_GET_MODE`] | u32 out mode | |
//! | 0x101 | [`HOST_FN_SET_CONTENT`] | u32 formats; buffers text (UTF-8), HTML (UTF-8), bitmap (BMP file) | the host owns the clipboard; every client is sent FORMATS_REPORT if the mode lets data go to the guest. `VERR_INVALID_PARAMETER` for non-UTF-8 text or a non-BMP bitmap, `VERR_TOO_MUCH_DATA` beyond the limit |
//! | 0x102 | [`HOST_FN_QUERY_STATE`] | u32 out guest formats, u32 out host formats, u32 out owner (0 nobody, 1 host, 2 guest), optionally u32 out announcement count | the count goes up with every guest announcement, so a poller notices a new copy in the same formats |
//! | 0x103 | [`HOST_FN_REQUEST_GUEST_DATA`] | u32 format (one bit), u32 timeout ms (0: [`DEFAULT_TIMEOUT`]), u32 out request ID | queues READ_DATA(_CID) to the owning guest client; `VERR_ACCESS_DENIED` if the mode keeps guest data from the host, `VERR_NOT_FOUND` if the guest does not offer the format, `VERR_OUT_OF_RESOURCES` beyond 64 outstanding |
//! | 0x104 | [`HOST_FN_FETCH_GUEST_DATA`] | u32 request ID, buffer out, u32 out size | the data in host encoding and success (request gone); `VERR_TRY_AGAIN` while waiting; `VERR_TIMEOUT` after the deadline (request gone); `VERR_BUFFER_OVERFLOW` with the size (request kept); the guest's failure status; `VERR_NOT_FOUND` for unknown IDs |
//! | 0x105 | [`HOST_FN_READ_HOST_CONTENT`] | u32 format (one bit), buffer out, u32 out size | the host clipboard's data in host encoding (size 0: absent); `VERR_BUFFER_OVERFLOW` with the size |
//! | 0x106 | [`HOST_FN_SYNC_HOST`] | — | if the backend's content changed outside the service (a desktop application copied), the host owns the clipboard and the guest is sent FORMATS_REPORT; call it from a timer with the desktop backend |
//!
//! Notifications (`Hgcm::subscribe`), payloads little-endian:
//! [`NOTIFY_FORMATS_CHANGED`] `u32 formats, u32 owner` whenever the announced formats change
//! (either side), and [`NOTIFY_GUEST_DATA`] `u32 request ID, i32 status` when a request is
//! answered (or its client went away).

use std::time::{Duration, Instant};

use vmmdev_hgcm_sdk::{Buffer, Direction, Parm};
use vmmdev_protocol::services::clipboard::{Formats, HostFunction, Mode};
use vmmdev_protocol::status::Status;

use crate::content::{Content, Format};
use crate::state::OWNER_GUEST;

/// Host function: the current mode.
pub const HOST_FN_GET_MODE: u32 = 0x100;
/// Host function: replace the host clipboard's content and announce it.
pub const HOST_FN_SET_CONTENT: u32 = 0x101;
/// Host function: who owns the clipboard and which formats each side offers.
pub const HOST_FN_QUERY_STATE: u32 = 0x102;
/// Host function: ask the guest for its data in one format.
pub const HOST_FN_REQUEST_GUEST_DATA: u32 = 0x103;
/// Host function: collect the answer to a request.
pub const HOST_FN_FETCH_GUEST_DATA: u32 = 0x104;
/// Host function: read the host clipboard's content.
pub const HOST_FN_READ_HOST_CONTENT: u32 = 0x105;
/// Host function: notice a change the backend made on its own (the desktop clipboard) and tell
/// the guest.
pub const HOST_FN_SYNC_HOST: u32 = 0x106;

/// Notification: the announced formats changed.
pub const NOTIFY_FORMATS_CHANGED: u32 = 1;
/// Notification: a read of guest data was answered.
pub const NOTIFY_GUEST_DATA: u32 = 2;

/// How long a read of guest data waits when the host gives no timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest timeout a read of guest data accepts.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a host operation failed.
#[derive(Debug, thiserror::Error)]
pub enum HostError<E: std::error::Error + 'static> {
    /// The host call did not reach the service.
    #[error("the clipboard service could not be reached")]
    Call(#[source] E),
    /// The service refused.
    #[error("{operation} refused: {status}")]
    Refused {
        /// What was attempted.
        operation: &'static str,
        /// The service's status.
        status: Status,
    },
    /// The guest did not answer in time.
    #[error("the guest did not answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The service answered with something unreadable.
    #[error("malformed reply from the clipboard service")]
    MalformedReply,
}

/// The clipboard as the host sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClipboardState {
    /// Formats the owning guest announced.
    pub guest_formats: Formats,
    /// Formats of the host content.
    pub host_formats: Formats,
    /// 0 nobody, 1 host, 2 guest.
    pub owner: u32,
    /// How many announcements guests have made (wrapping): a change means a new guest copy.
    pub announcements: u32,
}

impl ClipboardState {
    /// Whether a guest owns the clipboard.
    pub fn guest_owns(&self) -> bool {
        self.owner == OWNER_GUEST
    }
}

/// Data read from the clipboard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Read {
    /// Where it came from.
    pub source: Source,
    /// The host-encoded bytes; `None` when the clipboard has nothing in that format.
    pub data: Option<Vec<u8>>,
}

/// Which side the data came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The guest's clipboard (read through the guest).
    Guest,
    /// The host's clipboard content.
    Host,
}

fn out(capacity: usize) -> Parm {
    Parm::Buffer(Buffer::host(vec![0; capacity], Direction::FromHost))
}

fn data_in(bytes: &[u8]) -> Parm {
    Parm::Buffer(Buffer::host(bytes.to_vec(), Direction::ToHost))
}

/// The reported bytes of the buffer at `index`.
fn reply(params: &[Parm], index: usize) -> Option<Vec<u8>> {
    let buffer = params.get(index)?.as_buffer()?;
    let mut bytes = vec![0; buffer.reported_len()];
    let read = buffer.read_at(0, &mut bytes).ok()?;
    bytes.truncate(read);
    Some(bytes)
}

/// Parameters of [`HOST_FN_SET_CONTENT`] for `content`.
pub fn set_content_params(content: &Content) -> Vec<Parm> {
    vec![
        Parm::U32(content.formats().bits()),
        data_in(content.text.as_deref().unwrap_or_default().as_bytes()),
        data_in(content.html.as_deref().unwrap_or_default().as_bytes()),
        data_in(content.bitmap.as_deref().unwrap_or_default()),
    ]
}

/// Decodes a [`NOTIFY_FORMATS_CHANGED`] payload: formats and owner code.
pub fn decode_formats_changed(payload: &[u8]) -> Option<(Formats, u32)> {
    let formats = u32::from_le_bytes(payload.get(0..4)?.try_into().ok()?);
    let owner = u32::from_le_bytes(payload.get(4..8)?.try_into().ok()?);
    Some((Formats::from_bits_truncate(formats), owner))
}

/// Decodes a [`NOTIFY_GUEST_DATA`] payload: request ID and status.
pub fn decode_guest_data(payload: &[u8]) -> Option<(u32, Status)> {
    let id = u32::from_le_bytes(payload.get(0..4)?.try_into().ok()?);
    let status = i32::from_le_bytes(payload.get(4..8)?.try_into().ok()?);
    Some((id, Status(status)))
}

/// First buffer for reads; grown to the size the service reports.
const FIRST_READ_CAPACITY: usize = 64 * 1024;
/// Longest pause between two polls of a pending request.
const MAX_POLL_PAUSE: Duration = Duration::from_millis(5);

/// A typed client of the service's host functions over any host-call transport (typically
/// `|function, params| hgcm.host_call(SERVICE_NAME, function, params)`).
pub struct ClipboardHost<F> {
    call: F,
}

impl<F> std::fmt::Debug for ClipboardHost<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClipboardHost")
    }
}

impl<F, E> ClipboardHost<F>
where
    F: FnMut(u32, &mut [Parm]) -> Result<i32, E>,
    E: std::error::Error + 'static,
{
    /// A client issuing host calls through `call`.
    pub fn new(call: F) -> Self {
        ClipboardHost { call }
    }

    fn status(&mut self, function: u32, params: &mut [Parm]) -> Result<Status, HostError<E>> {
        (self.call)(function, params)
            .map(Status)
            .map_err(HostError::Call)
    }

    fn checked(
        &mut self,
        operation: &'static str,
        function: u32,
        params: &mut [Parm],
    ) -> Result<(), HostError<E>> {
        let status = self.status(function, params)?;
        if status.is_failure() {
            return Err(HostError::Refused { operation, status });
        }
        Ok(())
    }

    /// The current mode.
    pub fn mode(&mut self) -> Result<Mode, HostError<E>> {
        let mut params = [Parm::U32(0)];
        self.checked("clipboard mode", HOST_FN_GET_MODE, &mut params)?;
        params[0]
            .as_u32()
            .map(Mode)
            .ok_or(HostError::MalformedReply)
    }

    /// Sets the mode.
    pub fn set_mode(&mut self, mode: Mode) -> Result<(), HostError<E>> {
        let mut params = [Parm::U32(mode.raw())];
        self.checked("clipboard mode", HostFunction::SET_MODE.raw(), &mut params)
    }

    /// Replaces the host clipboard's content and announces it to the guest.
    pub fn set_content(&mut self, content: &Content) -> Result<(), HostError<E>> {
        let mut params = set_content_params(content);
        self.checked("clipboard set", HOST_FN_SET_CONTENT, &mut params)
    }

    /// Tells the guest about a change the backend made on its own (see [`HOST_FN_SYNC_HOST`]).
    pub fn sync_host(&mut self) -> Result<(), HostError<E>> {
        self.checked("clipboard sync", HOST_FN_SYNC_HOST, &mut [])
    }

    /// Who owns the clipboard and what each side offers.
    pub fn state(&mut self) -> Result<ClipboardState, HostError<E>> {
        let mut params = [Parm::U32(0), Parm::U32(0), Parm::U32(0), Parm::U32(0)];
        self.checked("clipboard query", HOST_FN_QUERY_STATE, &mut params)?;
        let value = |i: usize| params[i].as_u32().ok_or(HostError::MalformedReply);
        Ok(ClipboardState {
            guest_formats: Formats::from_bits_truncate(value(0)?),
            host_formats: Formats::from_bits_truncate(value(1)?),
            owner: value(2)?,
            announcements: value(3)?,
        })
    }

    /// Reads the clipboard in `format`: from the guest when a guest owns it (waiting at most
    /// `timeout` for its answer), else the host content.
    pub fn read(&mut self, format: Format, timeout: Duration) -> Result<Read, HostError<E>> {
        let state = self.state()?;
        if state.guest_owns() {
            if !state.guest_formats.contains(format.bit()) {
                return Ok(Read {
                    source: Source::Guest,
                    data: None,
                });
            }
            let data = self.read_guest(format, timeout)?;
            return Ok(Read {
                source: Source::Guest,
                data: Some(data).filter(|d| !d.is_empty()),
            });
        }
        let data = self.read_host(format)?;
        Ok(Read {
            source: Source::Host,
            data,
        })
    }

    /// Reads the host content in `format`; `None` if it has none.
    pub fn read_host(&mut self, format: Format) -> Result<Option<Vec<u8>>, HostError<E>> {
        let mut capacity = FIRST_READ_CAPACITY;
        loop {
            let mut params = [Parm::U32(format.bit().bits()), out(capacity), Parm::U32(0)];
            let status = self.status(HOST_FN_READ_HOST_CONTENT, &mut params)?;
            let size = params[2].as_u32().ok_or(HostError::MalformedReply)? as usize;
            match status {
                Status::VERR_BUFFER_OVERFLOW if size > capacity => capacity = size,
                s if s.is_failure() => {
                    return Err(HostError::Refused {
                        operation: "clipboard read",
                        status: s,
                    });
                }
                _ if size == 0 => return Ok(None),
                _ => return reply(&params, 1).map(Some).ok_or(HostError::MalformedReply),
            }
        }
    }

    /// Asks the guest for its data in `format` and waits at most `timeout` for the answer
    /// (polling; the service itself never waits). Empty data means the guest had none.
    pub fn read_guest(
        &mut self,
        format: Format,
        timeout: Duration,
    ) -> Result<Vec<u8>, HostError<E>> {
        let timeout = timeout.min(MAX_TIMEOUT);
        let millis = u32::try_from(timeout.as_millis())
            .unwrap_or(u32::MAX)
            .max(1);
        let mut params = [
            Parm::U32(format.bit().bits()),
            Parm::U32(millis),
            Parm::U32(0),
        ];
        self.checked("clipboard read", HOST_FN_REQUEST_GUEST_DATA, &mut params)?;
        let id = params[2].as_u32().ok_or(HostError::MalformedReply)?;
        self.collect(id, timeout)
    }

    /// Polls request `id` until it is answered or the service reports its timeout.
    fn collect(&mut self, id: u32, timeout: Duration) -> Result<Vec<u8>, HostError<E>> {
        // The service times the request out itself; this bound only guards against a service
        // that stops answering.
        let give_up = Instant::now() + timeout + Duration::from_secs(1);
        let mut pause = Duration::from_micros(20);
        let mut capacity = FIRST_READ_CAPACITY;
        loop {
            let mut params = [Parm::U32(id), out(capacity), Parm::U32(0)];
            let status = self.status(HOST_FN_FETCH_GUEST_DATA, &mut params)?;
            let size = params[2].as_u32().ok_or(HostError::MalformedReply)? as usize;
            match status {
                Status::VERR_TRY_AGAIN if Instant::now() < give_up => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(MAX_POLL_PAUSE);
                }
                Status::VERR_TRY_AGAIN | Status::VERR_TIMEOUT => {
                    return Err(HostError::Timeout(timeout));
                }
                Status::VERR_BUFFER_OVERFLOW if size > capacity => capacity = size,
                s if s.is_failure() => {
                    return Err(HostError::Refused {
                        operation: "clipboard read",
                        status: s,
                    });
                }
                _ => return reply(&params, 1).ok_or(HostError::MalformedReply),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_content_params_carry_the_mask_and_one_buffer_per_format() {
        let content = Content {
            text: Some("hi".into()),
            html: None,
            bitmap: None,
        };
        let params = set_content_params(&content);
        assert_eq!(params.len(), 4);
        assert_eq!(params[0].as_u32(), Some(Formats::UNICODETEXT.bits()));
        assert_eq!(reply(&params, 1), Some(b"hi".to_vec()));
        assert_eq!(reply(&params, 2), Some(Vec::new()));
    }

    #[test]
    fn notification_payloads_decode() {
        let mut payload = 5u32.to_le_bytes().to_vec();
        payload.extend_from_slice(&2u32.to_le_bytes());
        assert_eq!(
            decode_formats_changed(&payload),
            Some((Formats::UNICODETEXT | Formats::HTML, 2))
        );
        let mut data = 9u32.to_le_bytes().to_vec();
        data.extend_from_slice(&(-40i32).to_le_bytes());
        assert_eq!(decode_guest_data(&data), Some((9, Status::VERR_TIMEOUT)));
        assert_eq!(decode_guest_data(&data[..7]), None);
    }
}
