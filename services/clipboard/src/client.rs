//! One guest client: its negotiated features, its queue of host messages, and its one parked wait.
//!
//! HGCM cannot push to the guest, so each client keeps a wait parked (MSG_PEEK_WAIT, or the
//! legacy MSG_OLD_GET_WAIT) that the service completes when a message is queued. Messages are
//! shaped per client: READ_DATA_CID only for clients that negotiated context IDs, READ_DATA for
//! the others, and never a message type the client did not negotiate (VirtualBox's own guest
//! client spins on those). A newer format announcement replaces a queued, unfetched one, so the
//! queue stays short however often the host clipboard changes.

use std::collections::VecDeque;

use vmmdev_hgcm_sdk::Call;
use vmmdev_protocol::services::clipboard::{
    Formats, GuestFeatures0, HostMessage, PEEK_SIZE_U32, PEEK_SIZE_U64,
    VBOX_SHCL_MAX_QUEUED_MESSAGES,
};

use crate::content::Format;

/// Parameters every message this service queues has (as MSG_GET fetches them).
pub const MESSAGE_PARAMETERS: u32 = 2;

/// A host message waiting for the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message {
    /// The host clipboard's formats.
    Formats(Formats),
    /// The host wants the guest's data in `format`; the answer carries `context`.
    ReadData {
        /// The context ID the answer must carry.
        context: u64,
        /// The wanted format.
        format: Format,
    },
}

/// The two values of a message, as MSG_GET delivers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum First {
    /// A 32-bit first parameter.
    U32(u32),
    /// A 64-bit first parameter.
    U64(u64),
}

impl Message {
    /// The message ID a client with (or without) context IDs sees.
    pub fn id(&self, context_ids: bool) -> HostMessage {
        match self {
            Message::Formats(_) => HostMessage::FORMATS_REPORT,
            Message::ReadData { .. } if context_ids => HostMessage::READ_DATA_CID,
            Message::ReadData { .. } => HostMessage::READ_DATA,
        }
    }

    /// The parameters MSG_GET delivers: the first (the message ID itself, or the context ID)
    /// and the format or format mask.
    pub fn values(&self, context_ids: bool) -> (First, u32) {
        match *self {
            Message::Formats(formats) => (
                First::U32(HostMessage::FORMATS_REPORT.raw()),
                formats.bits(),
            ),
            Message::ReadData { context, format } if context_ids => {
                (First::U64(context), format.bit().bits())
            }
            Message::ReadData { format, .. } => (
                First::U32(HostMessage::READ_DATA.raw()),
                format.bit().bits(),
            ),
        }
    }

    /// The sizes a peek reports for the parameters (`~4` for a u32, `~8` for a u64).
    pub fn peek_sizes(&self, context_ids: bool) -> [u32; MESSAGE_PARAMETERS as usize] {
        match self.values(context_ids).0 {
            First::U32(_) => [PEEK_SIZE_U32, PEEK_SIZE_U32],
            First::U64(_) => [PEEK_SIZE_U64, PEEK_SIZE_U32],
        }
    }
}

/// Which call is parked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitKind {
    /// MSG_PEEK_WAIT.
    Peek,
    /// The legacy MSG_OLD_GET_WAIT.
    OldGet,
}

/// A parked wait.
#[derive(Debug)]
pub struct Parked {
    /// Which function it is.
    pub kind: WaitKind,
    /// The call.
    pub call: Call,
}

/// A connected guest client.
#[derive(Debug, Default)]
pub struct Client {
    /// Feature word 0 the guest reported.
    pub features: GuestFeatures0,
    /// Messages not yet fetched, oldest first.
    pub queue: VecDeque<Message>,
    /// The parked wait, if any.
    pub parked: Option<Parked>,
}

/// A queue that is full.
#[derive(Clone, Copy, Debug, thiserror::Error, PartialEq, Eq)]
#[error("the client's message queue is full")]
pub struct QueueFull;

impl Client {
    /// Whether the client negotiated context IDs (the message protocol).
    pub fn context_ids(&self) -> bool {
        self.features.contains(GuestFeatures0::CONTEXT_ID)
    }

    /// Queues `message`; an announcement replaces one still queued.
    pub fn push(&mut self, message: Message) -> Result<(), QueueFull> {
        if let Message::Formats(_) = message {
            self.queue.retain(|m| !matches!(m, Message::Formats(_)));
        }
        if self.queue.len() >= VBOX_SHCL_MAX_QUEUED_MESSAGES as usize {
            return Err(QueueFull);
        }
        self.queue.push_back(message);
        Ok(())
    }

    /// Drops queued data requests with this context (the host stopped waiting for them).
    pub fn forget_request(&mut self, context: u64) {
        self.queue
            .retain(|m| !matches!(m, Message::ReadData { context: c, .. } if *c == context));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(context: u64) -> Message {
        Message::ReadData {
            context,
            format: Format::Text,
        }
    }

    #[test]
    fn read_requests_use_the_context_variant_only_for_context_clients() {
        assert_eq!(read(7).id(true), HostMessage::READ_DATA_CID);
        assert_eq!(read(7).id(false), HostMessage::READ_DATA);
        assert_eq!(read(7).values(true), (First::U64(7), 1));
        assert_eq!(read(7).values(false), (First::U32(2), 1));
        assert_eq!(read(7).peek_sizes(true), [PEEK_SIZE_U64, PEEK_SIZE_U32]);
    }

    #[test]
    fn announcement_carries_its_own_id_first() {
        let message = Message::Formats(Formats::HTML);
        assert_eq!(message.values(true), (First::U32(3), 4));
        assert_eq!(message.peek_sizes(false), [PEEK_SIZE_U32, PEEK_SIZE_U32]);
    }

    #[test]
    fn newer_announcement_replaces_a_queued_one_behind_requests() {
        let mut client = Client::default();
        client
            .push(Message::Formats(Formats::UNICODETEXT))
            .expect("room");
        client.push(read(1)).expect("room");
        client.push(Message::Formats(Formats::HTML)).expect("room");
        assert_eq!(
            Vec::from(client.queue.clone()),
            vec![read(1), Message::Formats(Formats::HTML)]
        );
    }

    #[test]
    fn queue_refuses_beyond_its_limit() {
        let mut client = Client::default();
        for context in 0..u64::from(VBOX_SHCL_MAX_QUEUED_MESSAGES) {
            client.push(read(context)).expect("room");
        }
        assert_eq!(client.push(read(0)), Err(QueueFull));
    }

    #[test]
    fn forgotten_request_leaves_the_queue() {
        let mut client = Client::default();
        client.push(read(1)).expect("room");
        client.push(read(2)).expect("room");
        client.forget_request(1);
        assert_eq!(Vec::from(client.queue.clone()), vec![read(2)]);
    }
}
