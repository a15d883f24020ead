//! The service configuration string.
//!
//! A comma-separated list of `key=value` entries (spaces around entries are ignored; values
//! cannot contain commas). Parsing is strict: an unknown key, a repeated key (other than
//! `policy`), a malformed number or a number outside its range refuses the whole configuration.
//!
//! | Key | Default | Range | Meaning |
//! |---|---|---|---|
//! | `max_name_len` | 64 | 2..=4096 | largest name buffer, NUL included |
//! | `max_value_len` | 1024 | 1..=1048576 | largest value buffer, NUL included |
//! | `max_props` | 256 | 1..=1000000 | properties calls may create, the 8 the service publishes included (loading is not limited) |
//! | `max_pattern_len` | 1024 | 1..=65536 | largest pattern buffer, NUL included |
//! | `max_events` | 256 | 1..=65536 | change events remembered for GET_NOTIFICATION |
//! | `max_waits_per_client` | 16 | 1..=4096 | parked GET_NOTIFICATION calls per client |
//! | `store` | none | path | file that keeps non-transient properties across restarts |
//! | `host_version` | `7.1.6` | `X.Y.Z` | `/VirtualBox/HostInfo/VBoxVer` |
//! | `host_version_ext` | `7.1.6_vmmdev-rs` | text | `/VirtualBox/HostInfo/VBoxVerExt` |
//! | `host_revision` | `0` | decimal | `/VirtualBox/HostInfo/VBoxRev` |
//! | `language_id` | `C` | text | `/VirtualBox/HostInfo/GUI/LanguageID` |
//! | `global_flags` | empty | flags string | initial global flags (`RDONLYGUEST` makes guest writes no-ops) |
//! | `policy` | none | rule, repeatable | caller access rules, see [`crate::policy`] |
//!
//! The defaults are VirtualBox's limits, so an unconfigured service behaves like VirtualBox's.
//! The host version defaults match the VMMDev device's default GetHostVersion answer.

use std::path::PathBuf;

use vmmdev_protocol::services::guest_props::{
    FlagsParseError, GUEST_PROP_MAX_GUEST_CONCURRENT_WAITS, GUEST_PROP_MAX_GUEST_NOTIFICATIONS,
    GUEST_PROP_MAX_NAME_LEN, GUEST_PROP_MAX_PATTERN_LEN, GUEST_PROP_MAX_PROPS,
    GUEST_PROP_MAX_VALUE_LEN, PropertyFlags,
};

use crate::policy::{Policy, PolicyError, Rule};

/// A configuration the service refuses to start with.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// An entry that is not `key=value`.
    #[error("configuration entry {0:?} is not key=value")]
    Syntax(String),
    /// A key the service does not know.
    #[error("unknown configuration key {0:?}")]
    UnknownKey(String),
    /// A key given twice.
    #[error("configuration key {0:?} is given more than once")]
    Duplicate(String),
    /// A number that does not parse or is out of range.
    #[error("{key}={value} is not a number in {min}..={max}")]
    OutOfRange {
        /// The key.
        key: String,
        /// The value given.
        value: String,
        /// Smallest accepted value.
        min: usize,
        /// Largest accepted value.
        max: usize,
    },
    /// A text value that is malformed.
    #[error("{key}={value:?} is invalid: {reason}")]
    BadValue {
        /// The key.
        key: String,
        /// The value given.
        value: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A bad `global_flags` string.
    #[error("global_flags is not a flags string")]
    GlobalFlags(#[from] FlagsParseError),
    /// A bad `policy` rule.
    #[error("bad policy rule")]
    Policy(#[from] PolicyError),
}

/// Size and count limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest name buffer, NUL included.
    pub max_name_len: usize,
    /// Largest value buffer, NUL included.
    pub max_value_len: usize,
    /// Most properties calls may create.
    pub max_props: usize,
    /// Largest pattern buffer, NUL included.
    pub max_pattern_len: usize,
    /// Change events remembered.
    pub max_events: usize,
    /// Parked GET_NOTIFICATION calls per client.
    pub max_waits_per_client: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_name_len: GUEST_PROP_MAX_NAME_LEN as usize,
            max_value_len: GUEST_PROP_MAX_VALUE_LEN as usize,
            max_props: GUEST_PROP_MAX_PROPS as usize,
            max_pattern_len: GUEST_PROP_MAX_PATTERN_LEN as usize,
            max_events: GUEST_PROP_MAX_GUEST_NOTIFICATIONS as usize,
            max_waits_per_client: GUEST_PROP_MAX_GUEST_CONCURRENT_WAITS as usize,
        }
    }
}

/// What the service publishes under `/VirtualBox/HostInfo/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostInfo {
    /// `VBoxVer`: `X.Y.Z`.
    pub version: String,
    /// `VBoxVerExt`: the version with a vendor suffix.
    pub version_ext: String,
    /// `VBoxRev`: decimal source revision.
    pub revision: String,
    /// `GUI/LanguageID`.
    pub language_id: String,
}

impl Default for HostInfo {
    fn default() -> Self {
        HostInfo {
            version: "7.1.6".into(),
            version_ext: "7.1.6_vmmdev-rs".into(),
            revision: "0".into(),
            language_id: "C".into(),
        }
    }
}

/// The parsed configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Limits.
    pub limits: Limits,
    /// The persistence file, if any.
    pub store: Option<PathBuf>,
    /// Published host information.
    pub host_info: HostInfo,
    /// Initial global flags.
    pub global_flags: PropertyFlags,
    /// Caller access rules.
    pub policy: Policy,
}

fn number(key: &str, value: &str, min: usize, max: usize) -> Result<usize, ConfigError> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| ConfigError::OutOfRange {
            key: key.to_owned(),
            value: value.to_owned(),
            min,
            max,
        })
}

fn text(
    key: &str,
    value: &str,
    valid: impl Fn(&str) -> bool,
    reason: &'static str,
) -> Result<String, ConfigError> {
    if valid(value) {
        Ok(value.to_owned())
    } else {
        Err(ConfigError::BadValue {
            key: key.to_owned(),
            value: value.to_owned(),
            reason,
        })
    }
}

fn is_version(value: &str) -> bool {
    let parts: Vec<&str> = value.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn is_decimal(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit())
}

fn is_short_text(value: &str) -> bool {
    !value.is_empty() && value.len() < 256 && !value.bytes().any(|b| b.is_ascii_control())
}

impl Config {
    /// Parses a configuration string (see the module documentation).
    pub fn parse(config: &str) -> Result<Config, ConfigError> {
        let mut parsed = Config::default();
        if config.trim().is_empty() {
            return Ok(parsed);
        }
        let mut seen: Vec<&str> = Vec::new();
        let mut rules = Vec::new();
        for entry in config.split(',').map(str::trim) {
            let (key, value) = entry
                .split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .ok_or_else(|| ConfigError::Syntax(entry.to_owned()))?;
            if key != "policy" {
                if seen.contains(&key) {
                    return Err(ConfigError::Duplicate(key.to_owned()));
                }
                seen.push(key);
            }
            let limits = &mut parsed.limits;
            match key {
                "max_name_len" => limits.max_name_len = number(key, value, 2, 4096)?,
                "max_value_len" => limits.max_value_len = number(key, value, 1, 1 << 20)?,
                "max_props" => limits.max_props = number(key, value, 1, 1_000_000)?,
                "max_pattern_len" => limits.max_pattern_len = number(key, value, 1, 65536)?,
                "max_events" => limits.max_events = number(key, value, 1, 65536)?,
                "max_waits_per_client" => {
                    limits.max_waits_per_client = number(key, value, 1, 4096)?;
                }
                "store" => {
                    parsed.store = Some(PathBuf::from(text(
                        key,
                        value,
                        |v| !v.is_empty(),
                        "the path is empty",
                    )?));
                }
                "host_version" => {
                    parsed.host_info.version = text(key, value, is_version, "not X.Y.Z")?;
                }
                "host_version_ext" => {
                    parsed.host_info.version_ext = text(
                        key,
                        value,
                        is_short_text,
                        "empty, too long or with control bytes",
                    )?;
                }
                "host_revision" => {
                    parsed.host_info.revision =
                        text(key, value, is_decimal, "not a decimal number")?;
                }
                "language_id" => {
                    parsed.host_info.language_id = text(
                        key,
                        value,
                        is_short_text,
                        "empty, too long or with control bytes",
                    )?;
                }
                "global_flags" => parsed.global_flags = PropertyFlags::parse(value)?,
                "policy" => rules.push(Rule::parse(value)?),
                _ => return Err(ConfigError::UnknownKey(key.to_owned())),
            }
        }
        parsed.policy = Policy::new(rules);
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_configuration_gives_virtualbox_limits() {
        let config = Config::parse("").expect("valid");
        assert_eq!(config.limits.max_name_len, 64);
        assert_eq!(config.limits.max_value_len, 1024);
        assert_eq!(config.limits.max_props, 256);
        assert_eq!(config.limits.max_pattern_len, 1024);
        assert_eq!(config.limits.max_events, 256);
        assert_eq!(config.limits.max_waits_per_client, 16);
        assert_eq!(config.store, None);
        assert!(config.policy.is_open());
    }

    #[test]
    fn limits_and_store_are_configurable() {
        let config =
            Config::parse("max_value_len=65536, store=/var/lib/vm/props.jsonl,max_props=4096")
                .expect("valid");
        assert_eq!(config.limits.max_value_len, 65536);
        assert_eq!(config.limits.max_props, 4096);
        assert_eq!(config.store, Some(PathBuf::from("/var/lib/vm/props.jsonl")));
    }

    #[test]
    fn unknown_key_is_refused() {
        assert_eq!(
            Config::parse("max_valu_len=5"),
            Err(ConfigError::UnknownKey("max_valu_len".into()))
        );
    }

    #[test]
    fn entry_without_equals_is_refused() {
        assert_eq!(
            Config::parse("store"),
            Err(ConfigError::Syntax("store".into()))
        );
    }

    #[test]
    fn empty_entry_between_commas_is_refused() {
        assert_eq!(
            Config::parse("max_props=5,,max_events=5"),
            Err(ConfigError::Syntax(String::new()))
        );
    }

    #[test]
    fn repeated_key_is_refused() {
        assert_eq!(
            Config::parse("max_props=5,max_props=6"),
            Err(ConfigError::Duplicate("max_props".into()))
        );
    }

    #[test]
    fn numbers_out_of_range_are_refused() {
        for bad in [
            "max_name_len=1",
            "max_value_len=0",
            "max_value_len=2000000",
            "max_props=x",
        ] {
            assert!(
                matches!(Config::parse(bad), Err(ConfigError::OutOfRange { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn host_info_is_validated() {
        assert!(Config::parse("host_version=7.0").is_err());
        assert!(Config::parse("host_revision=12a").is_err());
        let config = Config::parse("host_version=7.0.14,host_revision=161095,language_id=de")
            .expect("valid");
        assert_eq!(config.host_info.version, "7.0.14");
        assert_eq!(config.host_info.revision, "161095");
        assert_eq!(config.host_info.language_id, "de");
    }

    #[test]
    fn global_flags_parse_as_flags() {
        let config = Config::parse("global_flags=RDONLYGUEST").expect("valid");
        assert_eq!(config.global_flags, PropertyFlags::RDONLYGUEST);
        assert!(matches!(
            Config::parse("global_flags=LOCKED"),
            Err(ConfigError::GlobalFlags(_))
        ));
    }

    #[test]
    fn policy_may_repeat_and_bad_rules_are_refused() {
        let config = Config::parse("policy=user:ro:/VirtualBox/,policy=vboxuser:none:/secret/")
            .expect("valid");
        assert!(!config.policy.is_open());
        assert!(matches!(
            Config::parse("policy=user:ro"),
            Err(ConfigError::Policy(_))
        ));
    }
}
