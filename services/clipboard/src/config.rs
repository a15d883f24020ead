//! The service's configuration string: comma-separated `key=value` pairs.
//!
//! | Key | Values | Default |
//! |---|---|---|
//! | `mode` | `off`, `host-to-guest`, `guest-to-host`, `bidirectional` | `off` (VirtualBox starts with sharing off until the host sets a mode) |
//! | `max_data` | bytes of one format in either direction, 4096 to 256 MiB | 32 MiB |
//! | `backend` | `memory`, or `desktop` (refused at load unless built with the `desktop` feature) | `memory` |

use vmmdev_protocol::services::clipboard::Mode;

/// Smallest accepted `max_data`.
pub const MIN_DATA: usize = 4096;
/// Largest accepted `max_data`.
pub const MAX_DATA: usize = 256 << 20;
/// Default `max_data`.
pub const DEFAULT_MAX_DATA: usize = 32 << 20;

/// A configuration string the service refuses.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A pair without `=` or with an unknown key.
    #[error("unknown configuration item {0:?}")]
    UnknownKey(String),
    /// A value the key does not take.
    #[error("invalid value {value:?} for {key}")]
    InvalidValue {
        /// The key.
        key: &'static str,
        /// The value given.
        value: String,
    },
}

/// Which backend holds the host's clipboard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BackendKind {
    /// In memory (headless).
    #[default]
    Memory,
    /// The desktop clipboard.
    Desktop,
}

/// The parsed configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The mode at start.
    pub mode: Mode,
    /// Largest data of one format, in bytes.
    pub max_data: usize,
    /// The backend.
    pub backend: BackendKind,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mode: Mode::OFF,
            max_data: DEFAULT_MAX_DATA,
            backend: BackendKind::Memory,
        }
    }
}

/// The mode named `name` (`off`, `host-to-guest`, `guest-to-host`, `bidirectional`).
pub fn parse_mode(name: &str) -> Option<Mode> {
    match name {
        "off" | "disabled" => Some(Mode::OFF),
        "host-to-guest" | "hosttoguest" => Some(Mode::HOST_TO_GUEST),
        "guest-to-host" | "guesttohost" => Some(Mode::GUEST_TO_HOST),
        "bidirectional" => Some(Mode::BIDIRECTIONAL),
        _ => None,
    }
}

/// The name of `mode`, as [`parse_mode`] reads it; `None` for values outside the protocol.
pub fn mode_name(mode: Mode) -> Option<&'static str> {
    match mode {
        Mode::OFF => Some("off"),
        Mode::HOST_TO_GUEST => Some("host-to-guest"),
        Mode::GUEST_TO_HOST => Some("guest-to-host"),
        Mode::BIDIRECTIONAL => Some("bidirectional"),
        _ => None,
    }
}

impl Config {
    /// Parses a configuration string; the empty string is the default.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| ConfigError::UnknownKey(item.to_owned()))?;
            match key.trim() {
                "mode" => {
                    config.mode = parse_mode(value.trim()).ok_or(ConfigError::InvalidValue {
                        key: "mode",
                        value: value.to_owned(),
                    })?;
                }
                "max_data" => {
                    config.max_data = value
                        .trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (MIN_DATA..=MAX_DATA).contains(n))
                        .ok_or(ConfigError::InvalidValue {
                            key: "max_data",
                            value: value.to_owned(),
                        })?;
                }
                "backend" => {
                    config.backend = match value.trim() {
                        "memory" => BackendKind::Memory,
                        "desktop" => BackendKind::Desktop,
                        _ => {
                            return Err(ConfigError::InvalidValue {
                                key: "backend",
                                value: value.to_owned(),
                            });
                        }
                    };
                }
                other => return Err(ConfigError::UnknownKey(other.to_owned())),
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_configuration_is_off_with_default_limits() {
        assert_eq!(Config::parse(""), Ok(Config::default()));
        assert_eq!(Config::default().mode, Mode::OFF);
    }

    #[test]
    fn mode_and_limit_are_read() {
        let config = Config::parse("mode=bidirectional, max_data=65536").expect("valid");
        assert_eq!(config.mode, Mode::BIDIRECTIONAL);
        assert_eq!(config.max_data, 65536);
    }

    #[test]
    fn bad_items_are_refused() {
        assert!(matches!(
            Config::parse("mode=sideways"),
            Err(ConfigError::InvalidValue { key: "mode", .. })
        ));
        assert!(Config::parse("max_data=1").is_err());
        assert!(Config::parse("colour=blue").is_err());
        assert!(Config::parse("mode").is_err());
    }

    #[test]
    fn mode_names_round_trip() {
        for mode in [
            Mode::OFF,
            Mode::HOST_TO_GUEST,
            Mode::GUEST_TO_HOST,
            Mode::BIDIRECTIONAL,
        ] {
            let name = mode_name(mode).expect("named");
            assert_eq!(parse_mode(name), Some(mode));
        }
        assert_eq!(mode_name(Mode(9)), None);
    }
}
