//! The saved state: service-wide (mode, ownership, host content, ID counters) and per client
//! (features and message queue), in a small little-endian binary encoding.
//!
//! Parked waits are not saved: the transport resubmits them after a restore. Outstanding host
//! reads are not saved either (the host side that waited for them is gone); a guest answering
//! one after the restore gets success and its data is dropped, as for any expired request.

use vmmdev_hgcm_sdk::ClientId;
use vmmdev_protocol::services::clipboard::{Formats, GuestFeatures0, Mode};
use vmmdev_protocol::status::Status;

use crate::client::Message;
use crate::content::{Content, Format};

/// Version of the saved state.
pub const STATE_VERSION: u32 = 1;

/// A saved state that cannot be restored.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateError {
    /// Saved by an incompatible version.
    #[error("saved state version {0} is not {STATE_VERSION}")]
    Version(u32),
    /// Not a state this service wrote.
    #[error("saved state is malformed: {0}")]
    Malformed(&'static str),
}

impl StateError {
    /// The status the framework gets.
    pub fn status(&self) -> Status {
        match self {
            Self::Version(_) => Status::VERR_VERSION_MISMATCH,
            Self::Malformed(_) => Status::VERR_PARSE_ERROR,
        }
    }
}

/// Who announced the current clipboard content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Owner {
    /// Nobody: the clipboard is empty.
    #[default]
    Nobody,
    /// The host (SET_CONTENT, or the backend).
    Host,
    /// A guest client (REPORT_FORMATS).
    Guest(ClientId),
}

/// The owner code of a guest owner in notifications and QUERY_STATE.
pub const OWNER_GUEST: u32 = 2;

impl Owner {
    /// The code notifications and QUERY_STATE carry: 0 nobody, 1 host, [`OWNER_GUEST`].
    pub fn code(self) -> u32 {
        match self {
            Owner::Nobody => 0,
            Owner::Host => 1,
            Owner::Guest(_) => OWNER_GUEST,
        }
    }
}

/// The service-wide state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceState {
    /// The mode.
    pub mode: Mode,
    /// Whether the host said it is headless.
    pub headless: bool,
    /// The session ID restore checks compare with.
    pub session: u64,
    /// The next host request ID.
    pub next_request: u32,
    /// The owner.
    pub owner: Owner,
    /// The formats the owning guest announced.
    pub guest_formats: Formats,
    /// The host content.
    pub content: Content,
}

/// One client's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientState {
    /// Negotiated features.
    pub features: GuestFeatures0,
    /// Queued messages.
    pub queue: Vec<Message>,
}

#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, v: Option<&[u8]>) {
        match v {
            None => self.u8(0),
            Some(bytes) => {
                self.u8(1);
                self.u64(bytes.len() as u64);
                self.0.extend_from_slice(bytes);
            }
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StateError> {
        if n > self.0.len() {
            return Err(StateError::Malformed("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, StateError> {
        Ok(self.take(1)?.first().copied().unwrap_or_default())
    }
    fn u32(&mut self) -> Result<u32, StateError> {
        let mut raw = [0; 4];
        raw.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(raw))
    }
    fn u64(&mut self) -> Result<u64, StateError> {
        let mut raw = [0; 8];
        raw.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(raw))
    }
    fn bytes(&mut self) -> Result<Option<Vec<u8>>, StateError> {
        match self.u8()? {
            0 => Ok(None),
            1 => {
                let len =
                    usize::try_from(self.u64()?).map_err(|_| StateError::Malformed("length"))?;
                Ok(Some(self.take(len)?.to_vec()))
            }
            _ => Err(StateError::Malformed("presence marker")),
        }
    }
    fn text(&mut self) -> Result<Option<String>, StateError> {
        self.bytes()?
            .map(|b| String::from_utf8(b).map_err(|_| StateError::Malformed("text")))
            .transpose()
    }
    fn end(&self) -> Result<(), StateError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(StateError::Malformed("trailing bytes"))
        }
    }
}

fn check_version(version: u32) -> Result<(), StateError> {
    if version == STATE_VERSION {
        Ok(())
    } else {
        Err(StateError::Version(version))
    }
}

impl ServiceState {
    /// The encoded state.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u32(self.mode.raw());
        w.u8(u8::from(self.headless));
        w.u64(self.session);
        w.u32(self.next_request);
        match self.owner {
            Owner::Nobody => w.u8(0),
            Owner::Host => w.u8(1),
            Owner::Guest(client) => {
                w.u8(2);
                w.u32(client.0);
            }
        }
        w.u32(self.guest_formats.bits());
        w.bytes(self.content.text.as_deref().map(str::as_bytes));
        w.bytes(self.content.html.as_deref().map(str::as_bytes));
        w.bytes(self.content.bitmap.as_deref());
        w.0
    }

    /// Decodes a state saved with `version`.
    pub fn decode(version: u32, data: &[u8]) -> Result<ServiceState, StateError> {
        check_version(version)?;
        let mut r = Reader(data);
        let mode = Mode(r.u32()?);
        let headless = r.u8()? != 0;
        let session = r.u64()?;
        let next_request = r.u32()?;
        let owner = match r.u8()? {
            0 => Owner::Nobody,
            1 => Owner::Host,
            2 => Owner::Guest(ClientId(r.u32()?)),
            _ => return Err(StateError::Malformed("owner")),
        };
        let guest_formats = Formats::from_bits_truncate(r.u32()?);
        let content = Content {
            text: r.text()?,
            html: r.text()?,
            bitmap: r.bytes()?,
        };
        r.end()?;
        Ok(ServiceState {
            mode,
            headless,
            session,
            next_request,
            owner,
            guest_formats,
            content,
        })
    }
}

fn format_code(format: Format) -> u8 {
    match format {
        Format::Text => 0,
        Format::Html => 1,
        Format::Bitmap => 2,
    }
}

fn format_of(code: u8) -> Result<Format, StateError> {
    match code {
        0 => Ok(Format::Text),
        1 => Ok(Format::Html),
        2 => Ok(Format::Bitmap),
        _ => Err(StateError::Malformed("format")),
    }
}

impl ClientState {
    /// The encoded state.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u64(self.features.bits());
        w.u32(u32::try_from(self.queue.len()).unwrap_or(u32::MAX));
        for message in &self.queue {
            match *message {
                Message::Formats(formats) => {
                    w.u8(0);
                    w.u32(formats.bits());
                }
                Message::ReadData { context, format } => {
                    w.u8(1);
                    w.u64(context);
                    w.u8(format_code(format));
                }
            }
        }
        w.0
    }

    /// Decodes a client state saved with `version`.
    pub fn decode(version: u32, data: &[u8]) -> Result<ClientState, StateError> {
        check_version(version)?;
        let mut r = Reader(data);
        let features = GuestFeatures0::from_bits_retain(r.u64()?);
        let count = r.u32()?;
        // Each message takes at least five bytes: a count beyond that is a lie.
        if count as usize > data.len() / 5 {
            return Err(StateError::Malformed("message count"));
        }
        let mut queue = Vec::with_capacity(count as usize);
        for _ in 0..count {
            queue.push(match r.u8()? {
                0 => Message::Formats(Formats::from_bits_truncate(r.u32()?)),
                1 => Message::ReadData {
                    context: r.u64()?,
                    format: format_of(r.u8()?)?,
                },
                _ => return Err(StateError::Malformed("message kind")),
            });
        }
        r.end()?;
        Ok(ClientState { features, queue })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service_state() -> ServiceState {
        ServiceState {
            mode: Mode::GUEST_TO_HOST,
            headless: true,
            session: 0x1234_5678_9abc,
            next_request: 77,
            owner: Owner::Guest(ClientId(5)),
            guest_formats: Formats::UNICODETEXT | Formats::HTML,
            content: Content {
                text: Some("grüß\n".into()),
                html: None,
                bitmap: Some(vec![1, 2, 3]),
            },
        }
    }

    #[test]
    fn service_state_round_trips() {
        let state = service_state();
        assert_eq!(
            ServiceState::decode(STATE_VERSION, &state.encode()),
            Ok(state)
        );
    }

    #[test]
    fn client_state_round_trips() {
        let state = ClientState {
            features: GuestFeatures0::CONTEXT_ID,
            queue: vec![
                Message::Formats(Formats::BITMAP),
                Message::ReadData {
                    context: 9,
                    format: Format::Html,
                },
            ],
        };
        assert_eq!(
            ClientState::decode(STATE_VERSION, &state.encode()),
            Ok(state)
        );
    }

    #[test]
    fn other_versions_are_refused() {
        let data = service_state().encode();
        assert_eq!(
            ServiceState::decode(STATE_VERSION + 1, &data),
            Err(StateError::Version(STATE_VERSION + 1))
        );
    }

    #[test]
    fn every_truncation_is_refused_without_panicking() {
        let data = service_state().encode();
        for len in 0..data.len() {
            assert!(ServiceState::decode(STATE_VERSION, &data[..len]).is_err());
        }
        let mut longer = data.clone();
        longer.push(0);
        assert!(ServiceState::decode(STATE_VERSION, &longer).is_err());
    }

    #[test]
    fn absurd_lengths_and_counts_are_refused() {
        let mut w = Writer::default();
        w.u64(0);
        w.u32(u32::MAX);
        assert!(ClientState::decode(STATE_VERSION, &w.0).is_err());
        let mut data = service_state().encode();
        // The text's length field follows the fixed part: make it enormous.
        let text_len_at = 4 + 1 + 8 + 4 + 1 + 4 + 4 + 1;
        data[text_len_at..text_len_at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(ServiceState::decode(STATE_VERSION, &data).is_err());
    }
}
