//! The vfio-user message header and command numbers, as they travel on the socket.
//!
//! Every vfio-user message starts with a 16-byte little-endian header: message ID, command,
//! total message size (header included), flags (message type, no-reply, error) and an errno
//! for error replies. This module only encodes and decodes that header; what follows it is
//! command-specific and is checked by the relay in front of the `vfio_user` crate.

/// Size of the header every message starts with.
pub const HEADER_SIZE: usize = 16;

/// Flags: the message-type field (command or reply).
const FLAG_TYPE_MASK: u32 = 0xF;
/// Message type: a command.
const TYPE_COMMAND: u32 = 0;
/// Message type: a reply.
const TYPE_REPLY: u32 = 1;
/// Flags: the sender does not want a reply.
pub const FLAG_NO_REPLY: u32 = 1 << 4;
/// Flags: the reply reports an error (the header's `error` field holds an errno).
pub const FLAG_ERROR: u32 = 1 << 5;

/// vfio-user commands. The numbers are the protocol's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    /// Version and capability negotiation.
    Version,
    /// Add a DMA (guest memory) mapping.
    DmaMap,
    /// Remove DMA mappings.
    DmaUnmap,
    /// Device flags and region/IRQ counts.
    DeviceGetInfo,
    /// One region's size, flags and mmap areas.
    DeviceGetRegionInfo,
    /// Region I/O file descriptors (ioeventfds).
    GetRegionIoFds,
    /// One interrupt index's flags and count.
    GetIrqInfo,
    /// Interrupt configuration (eventfds, mask, unmask).
    SetIrqs,
    /// Read from a region.
    RegionRead,
    /// Write to a region.
    RegionWrite,
    /// Server-to-client DMA read.
    DmaRead,
    /// Server-to-client DMA write.
    DmaWrite,
    /// Device reset.
    DeviceReset,
    /// Dirty page tracking.
    DirtyPages,
}

impl Command {
    /// Every command, in protocol order.
    pub const ALL: [Command; 14] = [
        Command::Version,
        Command::DmaMap,
        Command::DmaUnmap,
        Command::DeviceGetInfo,
        Command::DeviceGetRegionInfo,
        Command::GetRegionIoFds,
        Command::GetIrqInfo,
        Command::SetIrqs,
        Command::RegionRead,
        Command::RegionWrite,
        Command::DmaRead,
        Command::DmaWrite,
        Command::DeviceReset,
        Command::DirtyPages,
    ];

    /// The command with protocol number `raw`, if there is one.
    pub fn from_raw(raw: u16) -> Option<Command> {
        Self::ALL.into_iter().find(|command| command.raw() == raw)
    }

    /// The protocol number.
    pub fn raw(self) -> u16 {
        match self {
            Command::Version => 1,
            Command::DmaMap => 2,
            Command::DmaUnmap => 3,
            Command::DeviceGetInfo => 4,
            Command::DeviceGetRegionInfo => 5,
            Command::GetRegionIoFds => 6,
            Command::GetIrqInfo => 7,
            Command::SetIrqs => 8,
            Command::RegionRead => 9,
            Command::RegionWrite => 10,
            Command::DmaRead => 11,
            Command::DmaWrite => 12,
            Command::DeviceReset => 13,
            Command::DirtyPages => 14,
        }
    }

    /// Position in [`Command::ALL`], for per-command tables.
    pub fn index(self) -> usize {
        usize::from(self.raw() - 1)
    }

    /// The name the protocol specification uses, in lower case.
    pub fn name(self) -> &'static str {
        match self {
            Command::Version => "version",
            Command::DmaMap => "dma_map",
            Command::DmaUnmap => "dma_unmap",
            Command::DeviceGetInfo => "device_get_info",
            Command::DeviceGetRegionInfo => "device_get_region_info",
            Command::GetRegionIoFds => "get_region_io_fds",
            Command::GetIrqInfo => "get_irq_info",
            Command::SetIrqs => "set_irqs",
            Command::RegionRead => "region_read",
            Command::RegionWrite => "region_write",
            Command::DmaRead => "dma_read",
            Command::DmaWrite => "dma_write",
            Command::DeviceReset => "device_reset",
            Command::DirtyPages => "dirty_pages",
        }
    }
}

/// A message header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// Chosen by the sender of a command, echoed in its reply.
    pub message_id: u16,
    /// Command number (see [`Command`]).
    pub command: u16,
    /// Size of the whole message, this header included.
    pub message_size: u32,
    /// Type, no-reply and error flags.
    pub flags: u32,
    /// errno of an error reply.
    pub error: u32,
}

impl Header {
    /// Decodes a header.
    pub fn parse(bytes: &[u8; HEADER_SIZE]) -> Header {
        let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
        let u32_at = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        Header {
            message_id: u16_at(0),
            command: u16_at(2),
            message_size: u32_at(4),
            flags: u32_at(8),
            error: u32_at(12),
        }
    }

    /// Encodes the header.
    pub fn to_bytes(self) -> [u8; HEADER_SIZE] {
        let mut bytes = [0u8; HEADER_SIZE];
        bytes[0..2].copy_from_slice(&self.message_id.to_le_bytes());
        bytes[2..4].copy_from_slice(&self.command.to_le_bytes());
        bytes[4..8].copy_from_slice(&self.message_size.to_le_bytes());
        bytes[8..12].copy_from_slice(&self.flags.to_le_bytes());
        bytes[12..16].copy_from_slice(&self.error.to_le_bytes());
        bytes
    }

    /// A command header of `size` bytes in total.
    pub fn command(message_id: u16, command: Command, size: u32) -> Header {
        Header {
            message_id,
            command: command.raw(),
            message_size: size,
            flags: TYPE_COMMAND,
            error: 0,
        }
    }

    /// The error reply to this message, carrying `errno`.
    pub fn error_reply(&self, errno: i32) -> Header {
        Header {
            message_id: self.message_id,
            command: self.command,
            message_size: HEADER_SIZE as u32,
            flags: TYPE_REPLY | FLAG_ERROR,
            error: errno.unsigned_abs(),
        }
    }

    /// Whether the message is a command (not a reply).
    pub fn is_command(&self) -> bool {
        self.flags & FLAG_TYPE_MASK == TYPE_COMMAND
    }

    /// Whether the message is a reply.
    pub fn is_reply(&self) -> bool {
        self.flags & FLAG_TYPE_MASK == TYPE_REPLY
    }

    /// Whether the sender asked for no reply.
    pub fn no_reply(&self) -> bool {
        self.flags & FLAG_NO_REPLY != 0
    }

    /// Whether this reply reports an error.
    pub fn is_error(&self) -> bool {
        self.flags & FLAG_ERROR != 0
    }

    /// Size of what follows the header, or `None` if `message_size` is smaller than a header.
    pub fn body_size(&self) -> Option<usize> {
        usize::try_from(self.message_size)
            .ok()?
            .checked_sub(HEADER_SIZE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_through_bytes() {
        let header = Header {
            message_id: 0x1234,
            command: 9,
            message_size: 0x0102_0304,
            flags: FLAG_NO_REPLY,
            error: 22,
        };
        assert_eq!(Header::parse(&header.to_bytes()), header);
    }

    #[test]
    fn header_fields_are_little_endian_in_protocol_order() {
        let bytes = Header::command(0x0201, Command::RegionWrite, 0x24).to_bytes();
        assert_eq!(&bytes[..8], &[0x01, 0x02, 10, 0, 0x24, 0, 0, 0]);
    }

    #[test]
    fn command_numbers_round_trip_and_unknown_numbers_are_none() {
        for command in Command::ALL {
            assert_eq!(Command::from_raw(command.raw()), Some(command));
        }
        assert_eq!(Command::from_raw(0), None);
        assert_eq!(Command::from_raw(15), None);
    }

    #[test]
    fn error_reply_echoes_id_and_command_with_positive_errno() {
        let request = Header::command(7, Command::DmaMap, 48);
        let reply = request.error_reply(-libc::EEXIST);
        assert_eq!(reply.message_id, 7);
        assert_eq!(reply.command, Command::DmaMap.raw());
        assert!(reply.is_reply() && reply.is_error());
        assert_eq!(reply.error, libc::EEXIST as u32);
        assert_eq!(reply.message_size, HEADER_SIZE as u32);
    }

    #[test]
    fn message_size_below_a_header_has_no_body_size() {
        let header = Header::command(0, Command::DeviceReset, 15);
        assert_eq!(header.body_size(), None);
        assert_eq!(
            Header::command(0, Command::DeviceReset, 16).body_size(),
            Some(0)
        );
    }
}
