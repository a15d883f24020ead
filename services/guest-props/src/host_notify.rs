//! The change notifications the service sends to the embedder (`notify_host`), so a monitor can
//! mirror the store, log changes, or implement a "wait for property" control command.
//!
//! Every change that reaches the event queue (guest or host sets and deletes, reset clean-up;
//! not bulk loads) is sent with code [`NOTIFY_PROPERTY_CHANGED`] and this payload (integers
//! little-endian):
//!
//! | Offset | Size | Field |
//! |---|---|---|
//! | 0 | 4 | magic `0x69C87A78` (VirtualBox's `GUESTPROPHOSTCALLBACKDATA` magic) |
//! | 4 | 4 | bits: 0 = deleted, 1 = value omitted (too large for one notification) |
//! | 8 | 8 | timestamp, ns since the epoch (the event's, as guests see it) |
//! | 16 | … | `name\0value\0flags\0` (value and flags empty for a deletion; value empty when omitted) |
//!
//! The framework caps one notification at 64 KiB; a change whose value does not fit is sent
//! with the value omitted (bit 1), and the embedder reads it with the host GET_PROP call.
//! Notifications never block the service: a subscriber that falls behind loses them (the
//! framework counts those), so a mirror should re-read with ENUM_PROPS when it sees a gap.

use vmmdev_protocol::services::guest_props::GUEST_PROP_HOST_CALLBACK_MAGIC;

use crate::events::Event;

/// The notification code of a property change.
pub const NOTIFY_PROPERTY_CHANGED: u32 = 1;
/// Largest payload the framework forwards (`vmmdev_hgcm::MAX_NOTIFICATION_PAYLOAD`).
pub const MAX_PAYLOAD: usize = 64 * 1024;

const HEADER_LEN: usize = 16;
const BIT_DELETED: u32 = 1 << 0;
const BIT_VALUE_OMITTED: u32 = 1 << 1;

/// A decoded change notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PropertyChange {
    /// The property's name.
    pub name: String,
    /// The new value; `None` for a deletion.
    pub value: Option<String>,
    /// Whether the value was too large to send (then `value` is `Some("")`).
    pub value_omitted: bool,
    /// The new flags in VirtualBox's text form (empty for a deletion).
    pub flags: String,
    /// The change's timestamp.
    pub timestamp: u64,
}

/// A payload that is not a change notification.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than the header or without the magic.
    #[error("not a guest property change notification")]
    NotAChange,
    /// The strings are not three NUL-terminated UTF-8 strings.
    #[error("malformed strings in a guest property change notification")]
    Strings,
}

impl PropertyChange {
    /// The notification for a queued event.
    pub fn of(event: &Event) -> Self {
        PropertyChange {
            name: event.name.clone(),
            value: event.value.clone(),
            value_omitted: false,
            flags: event.flags.clone(),
            timestamp: event.timestamp,
        }
    }

    /// Whether this is a deletion.
    pub fn is_deletion(&self) -> bool {
        self.value.is_none()
    }

    /// The payload, with the value omitted if the whole would exceed [`MAX_PAYLOAD`].
    pub fn encode(&self) -> Vec<u8> {
        let value = self.value.as_deref().unwrap_or("");
        let full = HEADER_LEN + self.name.len() + value.len() + self.flags.len() + 3;
        let omit = self.value_omitted || full > MAX_PAYLOAD;
        let value = if omit { "" } else { value };
        let mut bits = 0;
        if self.is_deletion() {
            bits |= BIT_DELETED;
        }
        if omit {
            bits |= BIT_VALUE_OMITTED;
        }
        let mut out = Vec::with_capacity(full.min(MAX_PAYLOAD));
        out.extend_from_slice(&GUEST_PROP_HOST_CALLBACK_MAGIC.to_le_bytes());
        out.extend_from_slice(&u32::to_le_bytes(bits));
        out.extend_from_slice(&self.timestamp.to_le_bytes());
        for text in [self.name.as_str(), value, self.flags.as_str()] {
            out.extend_from_slice(text.as_bytes());
            out.push(0);
        }
        out
    }

    /// Decodes a payload sent with [`NOTIFY_PROPERTY_CHANGED`].
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let (header, strings) = payload
            .split_at_checked(HEADER_LEN)
            .ok_or(DecodeError::NotAChange)?;
        let word = |at: usize| -> Option<[u8; 4]> { header.get(at..at + 4)?.try_into().ok() };
        let magic = word(0).map(u32::from_le_bytes);
        let bits = word(4)
            .map(u32::from_le_bytes)
            .ok_or(DecodeError::NotAChange)?;
        let timestamp = header
            .get(8..16)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
            .ok_or(DecodeError::NotAChange)?;
        if magic != Some(GUEST_PROP_HOST_CALLBACK_MAGIC) {
            return Err(DecodeError::NotAChange);
        }
        let body = strings.strip_suffix(&[0]).ok_or(DecodeError::Strings)?;
        let mut parts = body.split(|&b| b == 0);
        let mut next = || {
            parts
                .next()
                .and_then(|p| std::str::from_utf8(p).ok())
                .map(str::to_owned)
                .ok_or(DecodeError::Strings)
        };
        let (name, value, flags) = (next()?, next()?, next()?);
        if parts.next().is_some() {
            return Err(DecodeError::Strings);
        }
        Ok(PropertyChange {
            name,
            value: (bits & BIT_DELETED == 0).then_some(value),
            value_omitted: bits & BIT_VALUE_OMITTED != 0,
            flags,
            timestamp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(value: Option<&str>) -> PropertyChange {
        PropertyChange {
            name: "/VirtualBox/GuestInfo/Net/0/V4/IP".into(),
            value: value.map(str::to_owned),
            value_omitted: false,
            flags: if value.is_some() {
                "TRANSIENT".into()
            } else {
                String::new()
            },
            timestamp: 0x0102_0304_0506_0708,
        }
    }

    #[test]
    fn set_round_trips() {
        let original = change(Some("10.0.2.15"));
        assert_eq!(PropertyChange::decode(&original.encode()), Ok(original));
    }

    #[test]
    fn deletion_round_trips() {
        let original = change(None);
        let decoded = PropertyChange::decode(&original.encode()).expect("decodes");
        assert!(decoded.is_deletion());
        assert_eq!(decoded, original);
    }

    #[test]
    fn layout_is_magic_bits_timestamp_strings() {
        let payload = PropertyChange {
            name: "/a".into(),
            value: Some("v".into()),
            value_omitted: false,
            flags: String::new(),
            timestamp: 7,
        }
        .encode();
        let mut expected = vec![0x78, 0x7A, 0xC8, 0x69, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0];
        expected.extend_from_slice(b"/a\0v\0\0");
        assert_eq!(payload, expected);
    }

    #[test]
    fn oversized_value_is_omitted_and_flagged() {
        let big = "x".repeat(MAX_PAYLOAD);
        let payload = change(Some(&big)).encode();
        assert!(payload.len() <= MAX_PAYLOAD);
        let decoded = PropertyChange::decode(&payload).expect("decodes");
        assert!(decoded.value_omitted);
        assert_eq!(decoded.value.as_deref(), Some(""));
    }

    #[test]
    fn foreign_payload_is_not_a_change() {
        assert_eq!(
            PropertyChange::decode(b"hello, this is something else"),
            Err(DecodeError::NotAChange)
        );
        assert_eq!(PropertyChange::decode(&[]), Err(DecodeError::NotAChange));
    }

    #[test]
    fn payload_with_missing_strings_is_malformed() {
        let mut payload = change(Some("v")).encode();
        payload.truncate(HEADER_LEN + 3);
        payload.push(0);
        assert_eq!(PropertyChange::decode(&payload), Err(DecodeError::Strings));
    }
}
