//! The strings that travel in call buffers: validation of what the guest (or host) sends, and the
//! byte layouts the service writes back.
//!
//! Inputs are parsed from bytes already copied out of the call's buffer, exactly once. Sizes are
//! checked against the *buffer* size, as VirtualBox does: the name buffer must hold 2 to
//! `max_name_len` bytes, the value buffer 1 to `max_value_len` bytes, both including the NUL
//! (the guest library sends `strlen + 1`). A string ends at its first NUL, which must be inside
//! the buffer; the text before it must be UTF-8.
//!
//! Outputs (all NUL-separated):
//! * GET_PROP: `value\0flags\0`
//! * ENUM_PROPS: `name\0value\0timestamp\0flags\0` per property (timestamp in decimal), then four
//!   NUL bytes
//! * GET_NOTIFICATION: `name\0value\0flags\0D\0`, `D` being `1` for a deletion and `0` otherwise

use vmmdev_protocol::services::guest_props::{
    FlagsParseError, GUEST_PROP_NAME_FORBIDDEN_BYTES, GUEST_PROP_PATTERN_SEPARATOR,
    NOTIFICATION_CHANGED, NOTIFICATION_DELETED, PropertyFlags,
};
use vmmdev_protocol::status::Status;

use crate::pattern::PatternList;

/// Smallest name buffer: one character and the NUL.
pub const MIN_NAME_BUFFER: usize = 2;
/// Largest flags buffer accepted; the longest meaningful flags string is far shorter.
pub const MAX_FLAGS_BUFFER: usize = 1024;
/// The terminator after the last ENUM_PROPS record.
pub const ENUM_TERMINATOR: [u8; 4] = [0; 4];

/// Why an input string was refused.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum InputError {
    /// The name buffer is shorter than 2 or longer than the name limit.
    #[error("name buffer of {len} bytes is outside 2..={max}")]
    NameLength {
        /// The buffer size.
        len: usize,
        /// The name limit in force.
        max: usize,
    },
    /// The name contains `*`, `?` or `|`.
    #[error("name contains a pattern character")]
    NameCharacter,
    /// The value buffer is empty.
    #[error("value buffer is empty")]
    ValueEmpty,
    /// The value buffer is longer than the value limit.
    #[error("value buffer of {len} bytes exceeds the limit of {max}")]
    ValueTooLong {
        /// The buffer size.
        len: usize,
        /// The value limit in force.
        max: usize,
    },
    /// The flags buffer is empty or longer than [`MAX_FLAGS_BUFFER`].
    #[error("flags buffer of {0} bytes is empty or too long")]
    FlagsLength(usize),
    /// The flags string is not a list of flag names.
    #[error("bad flags string")]
    Flags(#[from] FlagsParseError),
    /// The pattern buffer is longer than the pattern limit.
    #[error("pattern buffer of {len} bytes exceeds the limit of {max}")]
    PatternsTooLong {
        /// The buffer size.
        len: usize,
        /// The pattern limit in force.
        max: usize,
    },
    /// The pattern buffer is empty.
    #[error("pattern buffer is empty")]
    PatternsEmpty,
    /// A string is not NUL-terminated inside its buffer, or not UTF-8.
    #[error("{0} is not a NUL-terminated UTF-8 string")]
    Encoding(&'static str),
}

impl InputError {
    /// The status VirtualBox answers this with.
    pub fn status(&self) -> Status {
        match self {
            Self::ValueTooLong { .. } | Self::PatternsTooLong { .. } => Status::VERR_TOO_MUCH_DATA,
            Self::Flags(_) => Status::VERR_PARSE_ERROR,
            _ => Status::VERR_INVALID_PARAMETER,
        }
    }
}

/// The text before the first NUL, which must exist and be preceded by UTF-8.
fn c_string<'a>(bytes: &'a [u8], what: &'static str) -> Result<&'a str, InputError> {
    let end = bytes
        .iter()
        .position(|&b| b == 0)
        .ok_or(InputError::Encoding(what))?;
    std::str::from_utf8(&bytes[..end]).map_err(|_| InputError::Encoding(what))
}

/// Checks the size of a name buffer.
pub fn check_name_len(len: usize, max: usize) -> Result<(), InputError> {
    if (MIN_NAME_BUFFER..=max).contains(&len) {
        Ok(())
    } else {
        Err(InputError::NameLength { len, max })
    }
}

/// Checks the size of a value buffer.
pub fn check_value_len(len: usize, max: usize) -> Result<(), InputError> {
    match len {
        0 => Err(InputError::ValueEmpty),
        len if len > max => Err(InputError::ValueTooLong { len, max }),
        _ => Ok(()),
    }
}

/// Checks the size of a flags buffer.
pub fn check_flags_len(len: usize) -> Result<(), InputError> {
    if (1..=MAX_FLAGS_BUFFER).contains(&len) {
        Ok(())
    } else {
        Err(InputError::FlagsLength(len))
    }
}

/// Checks the size of a pattern buffer.
pub fn check_patterns_len(len: usize, max: usize) -> Result<(), InputError> {
    match len {
        0 => Err(InputError::PatternsEmpty),
        len if len > max => Err(InputError::PatternsTooLong { len, max }),
        _ => Ok(()),
    }
}

/// Whether `name` may be a property name (ignoring length): no pattern characters, no NUL.
pub fn is_valid_name(name: &str) -> bool {
    !name
        .bytes()
        .any(|b| b == 0 || GUEST_PROP_NAME_FORBIDDEN_BYTES.contains(&b))
}

/// A property name from its buffer.
pub fn parse_name(bytes: &[u8], max: usize) -> Result<String, InputError> {
    check_name_len(bytes.len(), max)?;
    // VirtualBox looks for the pattern characters in the whole buffer, not only before the NUL.
    if bytes
        .iter()
        .any(|b| GUEST_PROP_NAME_FORBIDDEN_BYTES.contains(b))
    {
        return Err(InputError::NameCharacter);
    }
    c_string(bytes, "name").map(str::to_owned)
}

/// A property value from its buffer.
pub fn parse_value(bytes: &[u8], max: usize) -> Result<String, InputError> {
    check_value_len(bytes.len(), max)?;
    c_string(bytes, "value").map(str::to_owned)
}

/// Property flags from a flags-string buffer.
pub fn parse_flags(bytes: &[u8]) -> Result<PropertyFlags, InputError> {
    check_flags_len(bytes.len())?;
    let text = c_string(bytes, "flags")?;
    Ok(PropertyFlags::parse(text)?)
}

/// The pattern list of ENUM_PROPS: every NUL before the last byte separates alternatives (the
/// guest library's `pat1\0pat2\0\0` form becomes `pat1|pat2|`); the last byte must be the NUL.
pub fn parse_enum_patterns(bytes: &[u8], max: usize) -> Result<PatternList, InputError> {
    check_patterns_len(bytes.len(), max)?;
    let Some((&0, body)) = bytes.split_last() else {
        return Err(InputError::Encoding("pattern list"));
    };
    let joined: Vec<u8> = body
        .iter()
        .map(|&b| {
            if b == 0 {
                GUEST_PROP_PATTERN_SEPARATOR
            } else {
                b
            }
        })
        .collect();
    String::from_utf8(joined)
        .map(PatternList::new)
        .map_err(|_| InputError::Encoding("pattern list"))
}

/// The pattern list of GET_NOTIFICATION: `|`-separated, ending at the first NUL.
pub fn parse_notification_patterns(bytes: &[u8], max: usize) -> Result<PatternList, InputError> {
    check_patterns_len(bytes.len(), max)?;
    c_string(bytes, "pattern list").map(PatternList::new)
}

/// The GET_PROP reply: `value\0flags\0`.
pub fn get_reply(value: &str, flags: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + flags.len() + 2);
    push_c_string(&mut out, value);
    push_c_string(&mut out, flags);
    out
}

/// Appends one ENUM_PROPS record.
pub fn push_enum_record(out: &mut Vec<u8>, name: &str, value: &str, timestamp: u64, flags: &str) {
    push_c_string(out, name);
    push_c_string(out, value);
    push_c_string(out, &timestamp.to_string());
    push_c_string(out, flags);
}

/// The GET_NOTIFICATION reply for a change (`value` is `None` for a deletion).
pub fn notification_reply(name: &str, value: Option<&str>, flags: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + value.map_or(0, str::len) + flags.len() + 5);
    push_c_string(&mut out, name);
    push_c_string(&mut out, value.unwrap_or(""));
    push_c_string(&mut out, flags);
    let marker = if value.is_some() {
        NOTIFICATION_CHANGED
    } else {
        NOTIFICATION_DELETED
    };
    push_c_string(&mut out, marker);
    out
}

fn push_c_string(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(text.as_bytes());
    out.push(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_of_one_character_is_accepted() {
        assert_eq!(parse_name(b"a\0", 64), Ok("a".to_owned()));
    }

    #[test]
    fn name_buffer_of_one_byte_is_refused() {
        let err = parse_name(b"\0", 64).unwrap_err();
        assert_eq!(err.status(), Status::VERR_INVALID_PARAMETER);
    }

    #[test]
    fn name_buffer_at_the_limit_is_accepted_and_one_more_is_refused() {
        let mut at_limit = vec![b'n'; 63];
        at_limit.push(0);
        assert!(parse_name(&at_limit, 64).is_ok());
        let mut over = vec![b'n'; 64];
        over.push(0);
        assert_eq!(
            parse_name(&over, 64),
            Err(InputError::NameLength { len: 65, max: 64 })
        );
    }

    #[test]
    fn name_with_pattern_characters_is_refused_even_after_the_nul() {
        for bad in [&b"/a*\0"[..], b"/a?\0", b"/a|\0", b"/a\0*"] {
            assert_eq!(
                parse_name(bad, 64),
                Err(InputError::NameCharacter),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn name_without_nul_is_refused() {
        assert_eq!(parse_name(b"/abc", 64), Err(InputError::Encoding("name")));
    }

    #[test]
    fn name_that_is_not_utf8_is_refused() {
        assert_eq!(
            parse_name(b"/\xff\0", 64),
            Err(InputError::Encoding("name"))
        );
    }

    #[test]
    fn empty_value_string_is_accepted() {
        assert_eq!(parse_value(b"\0", 1024), Ok(String::new()));
    }

    #[test]
    fn empty_value_buffer_is_invalid_parameter() {
        assert_eq!(
            parse_value(b"", 1024).unwrap_err().status(),
            Status::VERR_INVALID_PARAMETER
        );
    }

    #[test]
    fn value_over_the_limit_is_too_much_data() {
        let value = vec![b'v'; 1025];
        assert_eq!(
            parse_value(&value, 1024).unwrap_err().status(),
            Status::VERR_TOO_MUCH_DATA
        );
    }

    #[test]
    fn value_ends_at_the_first_nul() {
        assert_eq!(parse_value(b"ab\0cd\0", 1024), Ok("ab".to_owned()));
    }

    #[test]
    fn bad_flags_are_a_parse_error() {
        assert_eq!(
            parse_flags(b"VOLATILE\0").unwrap_err().status(),
            Status::VERR_PARSE_ERROR
        );
    }

    #[test]
    fn flags_parse_case_insensitively() {
        assert_eq!(parse_flags(b"transreset\0"), Ok(PropertyFlags::TRANSRESET));
    }

    #[test]
    fn oversized_flags_buffer_is_refused() {
        let flags = vec![b' '; MAX_FLAGS_BUFFER + 1];
        assert_eq!(
            parse_flags(&flags),
            Err(InputError::FlagsLength(MAX_FLAGS_BUFFER + 1))
        );
    }

    #[test]
    fn enum_patterns_turn_nul_separators_into_bars() {
        let list = parse_enum_patterns(b"/a/*\0/b\0\0", 1024).expect("valid");
        assert_eq!(list, PatternList::new("/a/*|/b|"));
    }

    #[test]
    fn enum_patterns_of_a_single_nul_match_everything() {
        let list = parse_enum_patterns(b"\0", 1024).expect("valid");
        assert!(list.matches("/anything"));
    }

    #[test]
    fn enum_patterns_must_end_with_nul() {
        assert_eq!(
            parse_enum_patterns(b"/a", 1024),
            Err(InputError::Encoding("pattern list"))
        );
    }

    #[test]
    fn enum_patterns_over_the_limit_are_too_much_data() {
        let list = vec![0u8; 1025];
        assert_eq!(
            parse_enum_patterns(&list, 1024).unwrap_err().status(),
            Status::VERR_TOO_MUCH_DATA
        );
    }

    #[test]
    fn notification_patterns_end_at_the_first_nul() {
        let list = parse_notification_patterns(b"/a*|/b\0/c\0", 1024).expect("valid");
        assert_eq!(list, PatternList::new("/a*|/b"));
    }

    #[test]
    fn get_reply_is_value_and_flags_with_terminators() {
        assert_eq!(get_reply("v", "TRANSIENT"), b"v\0TRANSIENT\0");
        assert_eq!(get_reply("", ""), b"\0\0");
    }

    #[test]
    fn enum_record_has_decimal_timestamp() {
        let mut out = Vec::new();
        push_enum_record(&mut out, "/a", "1", 1234, "");
        assert_eq!(out, b"/a\x001\x001234\0\0");
    }

    #[test]
    fn notification_reply_marks_deletions() {
        assert_eq!(
            notification_reply("/a", Some("x"), "RDONLYHOST"),
            b"/a\0x\0RDONLYHOST\x000\0"
        );
        assert_eq!(notification_reply("/a", None, ""), b"/a\0\0\x001\0");
    }

    #[test]
    fn valid_names_exclude_pattern_characters_and_nul() {
        assert!(is_valid_name("/VirtualBox/GuestInfo/OS/Product"));
        assert!(!is_valid_name("/a*"));
        assert!(!is_valid_name("/a\0b"));
    }
}
