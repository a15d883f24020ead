//! The saved state (VM snapshot): the whole store, the global flags and the event queue.
//!
//! Pending GET_NOTIFICATION calls are not part of it: they are HGCM requests that the transport
//! resubmits after a restore, and the service serves them again from the restored queue. Keeping
//! the queue (which VirtualBox does not) means a resubmitted wait with a non-zero timestamp finds
//! its place and neither misses nor repeats an event.
//!
//! Encoding: JSON, version [`STATE_VERSION`]; flags as their bit values, so TRANSRESET without
//! TRANSIENT survives unchanged.

use serde::{Deserialize, Serialize};
use vmmdev_protocol::services::guest_props::PropertyFlags;
use vmmdev_protocol::status::Status;

use crate::events::Event;
use crate::store::Property;
use crate::wire::is_valid_name;

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
    Malformed(String),
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

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedProperty {
    name: String,
    value: String,
    timestamp: u64,
    flags: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    properties: Vec<SavedProperty>,
    global_flags: u32,
    events: Vec<Event>,
}

/// Everything the service saves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceState {
    /// Every property, transient ones included.
    pub properties: Vec<Property>,
    /// The global flags.
    pub global_flags: PropertyFlags,
    /// The event queue, oldest first.
    pub events: Vec<Event>,
}

impl ServiceState {
    /// The encoded state.
    pub fn encode(&self) -> Vec<u8> {
        let saved = Saved {
            properties: self
                .properties
                .iter()
                .map(|p| SavedProperty {
                    name: p.name.clone(),
                    value: p.value.clone(),
                    timestamp: p.timestamp,
                    flags: p.flags.bits(),
                })
                .collect(),
            global_flags: self.global_flags.bits(),
            events: self.events.clone(),
        };
        // Plain structs of strings and integers always serialize.
        serde_json::to_vec(&saved).unwrap_or_default()
    }

    /// Decodes a state saved with `version`.
    pub fn decode(version: u32, data: &[u8]) -> Result<ServiceState, StateError> {
        if version != STATE_VERSION {
            return Err(StateError::Version(version));
        }
        let saved: Saved =
            serde_json::from_slice(data).map_err(|e| StateError::Malformed(e.to_string()))?;
        let flags = |bits: u32| {
            PropertyFlags::from_bits(bits)
                .ok_or_else(|| StateError::Malformed(format!("unknown flag bits {bits:#x}")))
        };
        let mut properties = Vec::with_capacity(saved.properties.len());
        for p in saved.properties {
            if !is_valid_name(&p.name) || p.value.contains('\0') {
                return Err(StateError::Malformed(format!(
                    "invalid property {:?}",
                    p.name
                )));
            }
            properties.push(Property {
                flags: flags(p.flags)?,
                name: p.name,
                value: p.value,
                timestamp: p.timestamp,
            });
        }
        Ok(ServiceState {
            properties,
            global_flags: flags(saved.global_flags)?,
            events: saved.events,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> ServiceState {
        ServiceState {
            properties: vec![Property {
                name: "/a".into(),
                value: "v".into(),
                timestamp: 9,
                flags: PropertyFlags::TRANSRESET,
            }],
            global_flags: PropertyFlags::RDONLYGUEST,
            events: vec![Event {
                name: "/a".into(),
                value: None,
                flags: String::new(),
                timestamp: 10,
            }],
        }
    }

    #[test]
    fn state_round_trips_with_exact_flag_bits() {
        let original = state();
        assert_eq!(
            ServiceState::decode(STATE_VERSION, &original.encode()),
            Ok(original)
        );
    }

    #[test]
    fn other_version_is_refused() {
        assert_eq!(
            ServiceState::decode(2, &state().encode()),
            Err(StateError::Version(2))
        );
    }

    #[test]
    fn garbage_is_malformed() {
        let err = ServiceState::decode(STATE_VERSION, b"\x01\x02").unwrap_err();
        assert_eq!(err.status(), Status::VERR_PARSE_ERROR);
    }

    #[test]
    fn unknown_flag_bits_are_malformed() {
        let text = br#"{"properties":[{"name":"/a","value":"","timestamp":1,"flags":1}],"global_flags":0,"events":[]}"#;
        assert!(matches!(
            ServiceState::decode(STATE_VERSION, text),
            Err(StateError::Malformed(_))
        ));
    }
}
