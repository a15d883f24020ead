//! The guest-property service, `VBoxGuestPropSvc`
//! (`include/VBox/HostServices/GuestPropertySvc.h`).
//!
//! One key/value store per VM. Names, values, patterns and flags travel as NUL-terminated UTF-8
//! strings in call buffers; timestamps are u64 nanoseconds since the Unix epoch. Flags have a
//! text form guests match literally, so [`PropertyFlags::parse`] and [`PropertyFlags::render`]
//! reproduce VirtualBox's parser and renderer exactly.

use bitflags::bitflags;

use super::ParameterCount;

/// The HGCM service name.
pub const SERVICE_NAME: &str = "VBoxGuestPropSvc";

protocol_codes! {
    /// A guest function number (`GUEST_PROP_FN_*`).
    pub struct Function(u32);
    /// Read one property: name, buffer, timestamp (out), bytes needed (out).
    GET_PROP = 1;
    /// Set a property: name, value and optionally a flags string.
    SET_PROP = 2;
    /// Identical to SET_PROP (also with or without flags).
    SET_PROP_VALUE = 3;
    /// Delete a property: name.
    DEL_PROP = 4;
    /// Enumerate by pattern: patterns, buffer, bytes needed (out).
    ENUM_PROPS = 5;
    /// Wait for a change: patterns, timestamp (in/out), buffer, bytes needed (out).
    GET_NOTIFICATION = 6;
}

impl Function {
    /// The parameter counts the service accepts, or `None` for unknown functions.
    pub const fn parameter_count(self) -> Option<ParameterCount> {
        match self {
            Self::GET_PROP | Self::GET_NOTIFICATION => Some(ParameterCount::Exactly(4)),
            Self::SET_PROP | Self::SET_PROP_VALUE => Some(ParameterCount::OneOf(&[2, 3])),
            Self::DEL_PROP => Some(ParameterCount::Exactly(1)),
            Self::ENUM_PROPS => Some(ParameterCount::Exactly(3)),
            _ => None,
        }
    }
}

protocol_codes! {
    /// A host (VMM-side) function number (`GUEST_PROP_FN_HOST_*`).
    pub struct HostFunction(u32);
    /// Bulk load: parallel arrays of names, values, timestamps and flags; no notifications.
    SET_PROPS = 1;
    /// As the guest GET_PROP.
    GET_PROP = 2;
    /// As the guest SET_PROP, with host-side permission rules.
    SET_PROP = 3;
    /// Same handler as SET_PROP.
    SET_PROP_VALUE = 4;
    /// As the guest DEL_PROP, with host-side permission rules.
    DEL_PROP = 5;
    /// As the guest ENUM_PROPS.
    ENUM_PROPS = 6;
    /// Replace the global flags; only RDONLYGUEST has an effect.
    SET_GLOBAL_FLAGS = 7;
    /// Removed in 7.0 (debugger info callback).
    GET_DBGF_INFO = 8;
}

impl HostFunction {
    /// The parameter counts the service accepts, or `None` for unknown functions.
    pub const fn parameter_count(self) -> Option<ParameterCount> {
        match self {
            Self::SET_PROPS | Self::GET_PROP => Some(ParameterCount::Exactly(4)),
            Self::SET_PROP | Self::SET_PROP_VALUE => Some(ParameterCount::OneOf(&[2, 3])),
            Self::DEL_PROP | Self::SET_GLOBAL_FLAGS => Some(ParameterCount::Exactly(1)),
            Self::ENUM_PROPS => Some(ParameterCount::Exactly(3)),
            Self::GET_DBGF_INFO => Some(ParameterCount::Exactly(2)),
            _ => None,
        }
    }
}

/// Largest name buffer including the NUL (`GUEST_PROP_MAX_NAME_LEN`); names are at least 2 bytes.
pub const GUEST_PROP_MAX_NAME_LEN: u32 = 64;
/// Largest value buffer including the NUL (`GUEST_PROP_MAX_VALUE_LEN`).
pub const GUEST_PROP_MAX_VALUE_LEN: u32 = 1024;
/// Largest rendered flags string including the NUL (`GUEST_PROP_MAX_FLAGS_LEN`).
pub const GUEST_PROP_MAX_FLAGS_LEN: u32 = 35;
/// Most properties the guest may create (`GUEST_PROP_MAX_PROPS`).
pub const GUEST_PROP_MAX_PROPS: u32 = 256;
/// Largest pattern list including the NUL (`GUEST_PROP_MAX_PATTERN_LEN`).
pub const GUEST_PROP_MAX_PATTERN_LEN: u32 = 1024;
/// Change events remembered for notification waiters (`GUEST_PROP_MAX_GUEST_NOTIFICATIONS`).
pub const GUEST_PROP_MAX_GUEST_NOTIFICATIONS: u32 = 256;
/// Concurrent GET_NOTIFICATION waits per client (`GUEST_PROP_MAX_GUEST_CONCURRENT_WAITS`).
pub const GUEST_PROP_MAX_GUEST_CONCURRENT_WAITS: u32 = 16;
/// Pending calls per client the service declares.
pub const GUEST_PROP_MAX_CALLS_PER_CLIENT: u32 = 16;
/// Bytes a name may never contain: the pattern metacharacters.
pub const GUEST_PROP_NAME_FORBIDDEN_BYTES: &[u8] = b"*?|";
/// Separator of the alternatives of a pattern list.
pub const GUEST_PROP_PATTERN_SEPARATOR: u8 = b'|';
/// Magic of the host change-callback structure (`GUESTPROPHOSTCALLBACKDATA`).
pub const GUEST_PROP_HOST_CALLBACK_MAGIC: u32 = 0x69C8_7A78;
/// Value of the last GET_NOTIFICATION field for a deleted property.
pub const NOTIFICATION_DELETED: &str = "1";
/// Value of the last GET_NOTIFICATION field for a changed property.
pub const NOTIFICATION_CHANGED: &str = "0";
/// Name prefixes only the host may write; host writes under them add RDONLYGUEST.
pub const HOST_RESERVED_PREFIXES: &[&str] = &[
    "/VirtualBox/GuestAdd/VBoxService/",
    "/VirtualBox/GuestAdd/PAM/",
    "/VirtualBox/GuestAdd/Greeter/",
    "/VirtualBox/GuestAdd/SharedFolders/",
    "/VirtualBox/HostInfo/",
    "/VirtualBox/VMInfo/",
];

bitflags! {
    /// Property flags (`GUEST_PROP_F_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct PropertyFlags: u32 {
        /// Not persisted: dropped when the VM powers off.
        const TRANSIENT = 0x02;
        /// The guest may not change or delete the property.
        const RDONLYGUEST = 0x04;
        /// The host may not change or delete the property.
        const RDONLYHOST = 0x08;
        /// Both read-only bits (0x0C; the value 0x06 in the guest-property reference table is a
        /// typo, `GuestPropertySvc.h` defines it as RDONLYGUEST | RDONLYHOST).
        const READONLY = 0x0C;
        /// Like TRANSIENT, and deleted on VM reset.
        const TRANSRESET = 0x10;
    }
}

/// The names the parser accepts, with their bits.
const FLAG_NAMES: [(&str, PropertyFlags); 5] = [
    ("TRANSIENT", PropertyFlags::TRANSIENT),
    ("RDONLYGUEST", PropertyFlags::RDONLYGUEST),
    ("RDONLYHOST", PropertyFlags::RDONLYHOST),
    ("READONLY", PropertyFlags::READONLY),
    ("TRANSRESET", PropertyFlags::TRANSRESET),
];

/// A flags string that is not a comma-separated list of flag names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlagsParseError {
    /// Byte offset in the input where parsing failed.
    pub offset: usize,
}

impl core::fmt::Display for FlagsParseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "malformed guest property flags at byte {}", self.offset)
    }
}

impl core::error::Error for FlagsParseError {}

impl PropertyFlags {
    /// No flags (`GUEST_PROP_F_NILFLAG`).
    pub const NILFLAG: Self = Self::empty();

    /// Parses a flags string the way VirtualBox does: leading spaces skipped, flag names matched
    /// case-insensitively, separated by commas with optional spaces; the empty string means no
    /// flags, repeated names are accepted. The status for a failure is `VERR_PARSE_ERROR`.
    pub fn parse(text: &str) -> Result<Self, FlagsParseError> {
        let mut flags = Self::empty();
        let mut rest = text.trim_start_matches(' ');
        while !rest.is_empty() {
            let offset = text.len() - rest.len();
            let (name, flag) = FLAG_NAMES
                .iter()
                .find(|(name, _)| {
                    rest.get(..name.len())
                        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(name))
                })
                .ok_or(FlagsParseError { offset })?;
            flags |= *flag;
            rest = rest
                .get(name.len()..)
                .unwrap_or_default()
                .trim_start_matches(' ');
            if let Some(after_comma) = rest.strip_prefix(',') {
                rest = after_comma.trim_start_matches(' ');
            } else if !rest.is_empty() {
                return Err(FlagsParseError {
                    offset: text.len() - rest.len(),
                });
            }
        }
        Ok(flags)
    }

    /// The text form VirtualBox returns for these flags, or `None` if unknown bits are set (the
    /// status for that is `VERR_INVALID_PARAMETER`).
    pub fn render(self) -> Option<RenderedFlags> {
        Self::from_bits(self.bits()).map(RenderedFlags)
    }
}

/// Flags in VirtualBox's text form: `TRANSIENT`, `READONLY` (or `RDONLYGUEST`, `RDONLYHOST`),
/// `TRANSRESET`, in that order, joined by `", "`; TRANSRESET implies TRANSIENT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RenderedFlags(PropertyFlags);

impl core::fmt::Display for RenderedFlags {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let flags = self.0;
        let transient = flags.intersects(PropertyFlags::TRANSIENT | PropertyFlags::TRANSRESET);
        let readonly = flags.contains(PropertyFlags::READONLY);
        let parts = [
            (transient, "TRANSIENT"),
            (readonly, "READONLY"),
            (
                !readonly && flags.contains(PropertyFlags::RDONLYGUEST),
                "RDONLYGUEST",
            ),
            (
                !readonly && flags.contains(PropertyFlags::RDONLYHOST),
                "RDONLYHOST",
            ),
            (flags.contains(PropertyFlags::TRANSRESET), "TRANSRESET"),
        ];
        let mut separator = "";
        for (present, name) in parts {
            if present {
                f.write_str(separator)?;
                f.write_str(name)?;
                separator = ", ";
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn functions_have_reference_numbers_and_counts() {
        let expected = [
            (Function::GET_PROP, 1, ParameterCount::Exactly(4)),
            (Function::SET_PROP, 2, ParameterCount::OneOf(&[2, 3])),
            (Function::SET_PROP_VALUE, 3, ParameterCount::OneOf(&[2, 3])),
            (Function::DEL_PROP, 4, ParameterCount::Exactly(1)),
            (Function::ENUM_PROPS, 5, ParameterCount::Exactly(3)),
            (Function::GET_NOTIFICATION, 6, ParameterCount::Exactly(4)),
        ];
        assert_eq!(expected.len(), Function::KNOWN.len());
        for (function, number, count) in expected {
            assert_eq!(function.raw(), number);
            assert_eq!(function.parameter_count(), Some(count));
        }
        assert_eq!(Function(7).parameter_count(), None);
    }

    #[test]
    fn host_functions_have_reference_numbers() {
        let numbers: std::vec::Vec<u32> = HostFunction::KNOWN.iter().map(|f| f.raw()).collect();
        assert_eq!(numbers, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            HostFunction::SET_GLOBAL_FLAGS.parameter_count(),
            Some(ParameterCount::Exactly(1))
        );
    }

    #[test]
    fn flags_have_reference_values() {
        assert_eq!(PropertyFlags::TRANSIENT.bits(), 0x02);
        assert_eq!(PropertyFlags::RDONLYGUEST.bits(), 0x04);
        assert_eq!(PropertyFlags::RDONLYHOST.bits(), 0x08);
        assert_eq!(
            PropertyFlags::READONLY,
            PropertyFlags::RDONLYGUEST | PropertyFlags::RDONLYHOST
        );
        assert_eq!(PropertyFlags::TRANSRESET.bits(), 0x10);
        assert_eq!(PropertyFlags::all().bits(), 0x1E);
    }

    #[test]
    fn longest_rendering_fits_the_flags_limit() {
        let text = (PropertyFlags::TRANSRESET | PropertyFlags::RDONLYGUEST)
            .render()
            .expect("known bits")
            .to_string();
        assert_eq!(text, "TRANSIENT, RDONLYGUEST, TRANSRESET");
        assert_eq!(text.len() as u32 + 1, GUEST_PROP_MAX_FLAGS_LEN);
    }

    #[test]
    fn both_read_only_bits_render_as_readonly() {
        let text = PropertyFlags::READONLY
            .render()
            .expect("known bits")
            .to_string();
        assert_eq!(text, "READONLY");
    }

    #[test]
    fn no_flags_render_as_empty_string() {
        assert_eq!(
            PropertyFlags::NILFLAG
                .render()
                .expect("known bits")
                .to_string(),
            ""
        );
    }

    #[test]
    fn unknown_bits_cannot_be_rendered() {
        assert_eq!(PropertyFlags::from_bits_retain(0x1).render(), None);
    }

    #[test]
    fn parse_accepts_spaces_case_and_repeats() {
        assert_eq!(
            PropertyFlags::parse("  transient , RdOnlyHost,TRANSIENT"),
            Ok(PropertyFlags::TRANSIENT | PropertyFlags::RDONLYHOST)
        );
        assert_eq!(PropertyFlags::parse(""), Ok(PropertyFlags::NILFLAG));
        assert_eq!(
            PropertyFlags::parse("READONLY"),
            Ok(PropertyFlags::READONLY)
        );
    }

    #[test]
    fn parse_rejects_unknown_names_and_junk() {
        assert_eq!(
            PropertyFlags::parse("VOLATILE"),
            Err(FlagsParseError { offset: 0 })
        );
        assert_eq!(
            PropertyFlags::parse("TRANSIENTX"),
            Err(FlagsParseError { offset: 9 })
        );
        assert_eq!(
            PropertyFlags::parse("TRANSIENT RDONLYGUEST"),
            Err(FlagsParseError { offset: 10 })
        );
    }

    #[test]
    fn rendering_parses_back_to_the_same_flags() {
        for bits in 0..0x20u32 {
            let Some(flags) = PropertyFlags::from_bits(bits) else {
                continue;
            };
            let text = flags.render().expect("known bits").to_string();
            let expected = if flags.contains(PropertyFlags::TRANSRESET) {
                flags | PropertyFlags::TRANSIENT
            } else {
                flags
            };
            assert_eq!(PropertyFlags::parse(&text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn reserved_prefixes_are_under_virtualbox() {
        for prefix in HOST_RESERVED_PREFIXES {
            assert!(prefix.starts_with("/VirtualBox/") && prefix.ends_with('/'));
        }
    }
}
