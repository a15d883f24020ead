//! A guest client of the shared-folders service's mapping functions, the ones an automounter
//! uses: which shares the host offers for auto-mounting (QUERY_MAPPINGS), their names and mount
//! points (QUERY_MAP_INFO), and waiting for the host to change them (WAIT_FOR_MAPPINGS_CHANGES,
//! ended early by CANCEL_MAPPINGS_CHANGES_WAITS from another thread).
//!
//! The client switches its connection to UTF-8 right after connecting, so every name and mount
//! point arrives as UTF-8. Everything the host returns is bounded and checked: a root list or a
//! string is asked again with the size the host reports at most a few times, and never beyond
//! [`MAX_STRING`] bytes or [`MAX_ROOTS`] entries.

use std::time::Duration;

use vmmdev_guest_ioctl::{CallOptions, Device, Error, GuestTransport, HgcmClient, Param, Status};
use vmmdev_protocol::services::shared_folders::{
    Function, MapInfoFlags, MapInfoQueryFlags, QueryMappingsFlags, SERVICE_NAME,
    SHFLSTRING_HEADER_SIZE,
};

/// The longest name or mount point accepted, in bytes.
pub const MAX_STRING: usize = 4096;
/// The most shares accepted in one list (VirtualBox's table holds 64).
pub const MAX_ROOTS: usize = 4096;
/// The first name/mount-point buffer.
const FIRST_STRING: usize = 256;
/// The first root list capacity.
const FIRST_ROOTS: u32 = 64;
/// How often a call is repeated with a larger buffer.
const MAX_TRIES: usize = 4;
/// Size of one QUERY_MAPPINGS entry (`SHFLMAPPING`: status, root).
const MAPPING_SIZE: usize = 8;

/// A failed mapping operation.
#[derive(Debug, thiserror::Error)]
pub enum MappingsError {
    /// The host has no shared-folders service.
    #[error("the host has no shared folders service")]
    ServiceUnavailable,
    /// The service answered `function` with a failure status.
    #[error("{function:?}: host status {status}")]
    Host {
        /// The function.
        function: Function,
        /// Its status.
        status: Status,
    },
    /// The host's answer contradicts the protocol.
    #[error("{function:?}: malformed reply: {reason}")]
    Malformed {
        /// The function.
        function: Function,
        /// What was wrong.
        reason: &'static str,
    },
    /// The driver failed the call (interrupted, timed out, no permission...).
    #[error(transparent)]
    Driver(#[from] Error),
}

/// One share as QUERY_MAP_INFO describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapInfo {
    /// The root ID.
    pub root: u32,
    /// The share name.
    pub name: String,
    /// The auto-mount point the host configured (may be empty).
    pub mount_point: String,
    /// `SHFL_MIF_*` flags.
    pub flags: MapInfoFlags,
    /// The root ID's version: changes when the ID is reused for another share.
    pub version: u32,
}

/// How a wait for mapping changes ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitOutcome {
    /// The host answered (a change, or a cancel: VirtualBox 7.0 answers changes with
    /// `VERR_CANCELLED` too); re-read the mappings and wait with this version next.
    Woken {
        /// The host's current mapping-table version.
        version: u32,
    },
    /// The timeout passed without an answer.
    TimedOut,
    /// The host cannot wait (an old host, or too many waiters): poll instead.
    Unsupported,
}

/// A connection to the shared-folders service for its mapping functions.
#[derive(Debug)]
pub struct MappingsClient<'d, T: GuestTransport> {
    client: HgcmClient<'d, T>,
}

impl<'d, T: GuestTransport> MappingsClient<'d, T> {
    /// Connects to the service and switches the connection to UTF-8.
    pub fn connect(device: &'d Device<T>) -> Result<Self, MappingsError> {
        let client = match device.connect(SERVICE_NAME) {
            Ok(client) => client,
            Err(Error::Host {
                status: Status::VERR_HGCM_SERVICE_NOT_FOUND,
                ..
            }) => return Err(MappingsError::ServiceUnavailable),
            Err(other) => return Err(other.into()),
        };
        let this = Self { client };
        this.call(Function::SET_UTF8, &mut [], CallOptions::default())?;
        Ok(this)
    }

    /// The root IDs of the shares the host offers for auto-mounting, in root-ID order.
    pub fn auto_mount_roots(&self) -> Result<Vec<u32>, MappingsError> {
        let function = Function::QUERY_MAPPINGS;
        let flags = (QueryMappingsFlags::UTF8 | QueryMappingsFlags::AUTOMOUNT).bits();
        let mut capacity = FIRST_ROOTS;
        for _ in 0..MAX_TRIES {
            let mut buffer = vec![0u8; capacity as usize * MAPPING_SIZE];
            let mut params = [
                Param::U32(flags),
                Param::U32(capacity),
                Param::out(&mut buffer),
            ];
            self.call(function, &mut params, CallOptions::default())?;
            let total = params[1].as_u32().unwrap_or(0);
            if total > capacity {
                if total as usize > MAX_ROOTS {
                    return Err(MappingsError::Malformed {
                        function,
                        reason: "more shares than this client accepts",
                    });
                }
                capacity = total;
                continue;
            }
            return Ok(buffer
                .chunks_exact(MAPPING_SIZE)
                .take(total as usize)
                .filter_map(|entry| entry.get(4..8)?.try_into().ok())
                .map(u32::from_le_bytes)
                .collect());
        }
        Err(MappingsError::Malformed {
            function,
            reason: "the share count kept growing",
        })
    }

    /// Name, mount point, flags and version of share `root`.
    pub fn info(&self, root: u32) -> Result<MapInfo, MappingsError> {
        let function = Function::QUERY_MAP_INFO;
        let mut size = FIRST_STRING;
        for _ in 0..MAX_TRIES {
            let mut name = empty_string(size);
            let mut point = empty_string(size);
            let mut params = [
                Param::U32(root),
                Param::in_out(&mut name),
                Param::in_out(&mut point),
                Param::U64(MapInfoQueryFlags::PATH.bits()),
                Param::U32(0),
            ];
            match self.call(function, &mut params, CallOptions::default()) {
                Ok(_) => {
                    let flags = MapInfoFlags::from_bits_retain(params[3].as_u64().unwrap_or(0));
                    let version = params[4].as_u32().unwrap_or(0);
                    return Ok(MapInfo {
                        root,
                        name: parse_string(&name, function)?,
                        mount_point: parse_string(&point, function)?,
                        flags,
                        version,
                    });
                }
                Err(MappingsError::Host {
                    status: Status::VERR_BUFFER_OVERFLOW,
                    ..
                }) => {
                    let needed = needed_length(&name).max(needed_length(&point)) + 1;
                    if needed > MAX_STRING || needed <= size {
                        return Err(MappingsError::Malformed {
                            function,
                            reason: "name or mount point too long",
                        });
                    }
                    size = needed;
                }
                Err(other) => return Err(other),
            }
        }
        Err(MappingsError::Malformed {
            function,
            reason: "the name kept growing",
        })
    }

    /// Waits until the host's mapping table differs from `version` (0: whatever the host has),
    /// at most `timeout` (`None`: until a change or a cancel).
    pub fn wait_for_changes(
        &self,
        version: u32,
        timeout: Option<Duration>,
    ) -> Result<WaitOutcome, MappingsError> {
        let mut params = [Param::U32(version)];
        let options = CallOptions {
            timeout,
            ..CallOptions::default()
        };
        let outcome = self.call(Function::WAIT_FOR_MAPPINGS_CHANGES, &mut params, options);
        let version = params[0].as_u32().unwrap_or(version);
        match outcome {
            Ok(_)
            | Err(MappingsError::Host {
                status: Status::VERR_CANCELLED,
                ..
            }) => Ok(WaitOutcome::Woken { version }),
            Err(MappingsError::Driver(Error::TimedOut { .. })) => Ok(WaitOutcome::TimedOut),
            Err(MappingsError::Host {
                status:
                    Status::VERR_NOT_SUPPORTED
                    | Status::VERR_NOT_IMPLEMENTED
                    | Status::VERR_OUT_OF_RESOURCES,
                ..
            }) => Ok(WaitOutcome::Unsupported),
            Err(other) => Err(other),
        }
    }

    /// Ends this client's pending wait (and makes its next one return at once).
    pub fn cancel_waits(&self) -> Result<(), MappingsError> {
        self.call(
            Function::CANCEL_MAPPINGS_CHANGES_WAITS,
            &mut [],
            CallOptions::default(),
        )
        .map(drop)
    }

    fn call(
        &self,
        function: Function,
        params: &mut [Param<'_>],
        options: CallOptions,
    ) -> Result<Status, MappingsError> {
        match self.client.call(function.raw(), params, options) {
            Ok(status) => Ok(status),
            Err(Error::Host { status, .. }) => Err(MappingsError::Host { function, status }),
            Err(other) => Err(MappingsError::Driver(other)),
        }
    }
}

/// An empty `SHFLSTRING` buffer with room for `size` bytes (terminator included).
fn empty_string(size: usize) -> Vec<u8> {
    let mut buffer = vec![0u8; SHFLSTRING_HEADER_SIZE + size];
    let size = u16::try_from(size).unwrap_or(u16::MAX);
    buffer[..2].copy_from_slice(&size.to_le_bytes());
    buffer
}

/// The length the host put in a `SHFLSTRING`'s header.
fn needed_length(buffer: &[u8]) -> usize {
    buffer
        .get(2..4)
        .and_then(|bytes| bytes.try_into().ok())
        .map_or(0, |bytes| usize::from(u16::from_le_bytes(bytes)))
}

/// The UTF-8 text of a `SHFLSTRING` the host filled.
fn parse_string(buffer: &[u8], function: Function) -> Result<String, MappingsError> {
    let malformed = |reason| MappingsError::Malformed { function, reason };
    let length = needed_length(buffer);
    let text = buffer
        .get(SHFLSTRING_HEADER_SIZE..SHFLSTRING_HEADER_SIZE + length)
        .ok_or(malformed("string length beyond its buffer"))?;
    let text = std::str::from_utf8(text).map_err(|_| malformed("string is not UTF-8"))?;
    if text.contains('\0') {
        return Err(malformed("string holds a NUL"));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(text: &str, size: usize) -> Vec<u8> {
        let mut buffer = empty_string(size);
        buffer[2..4].copy_from_slice(&u16::try_from(text.len()).unwrap().to_le_bytes());
        buffer[4..4 + text.len()].copy_from_slice(text.as_bytes());
        buffer
    }

    #[test]
    fn empty_string_announces_its_capacity() {
        let buffer = empty_string(256);
        assert_eq!(buffer.len(), 260);
        assert_eq!(&buffer[..4], &[0, 1, 0, 0]);
    }

    #[test]
    fn parse_string_reads_the_announced_length() {
        assert_eq!(
            parse_string(&filled("héllo", 16), Function::QUERY_MAP_INFO).unwrap(),
            "héllo"
        );
    }

    #[test]
    fn parse_string_refuses_a_length_beyond_the_buffer() {
        let mut buffer = empty_string(8);
        buffer[2..4].copy_from_slice(&100u16.to_le_bytes());
        assert!(matches!(
            parse_string(&buffer, Function::QUERY_MAP_INFO),
            Err(MappingsError::Malformed { .. })
        ));
    }

    #[test]
    fn parse_string_refuses_invalid_utf8_and_nul() {
        let mut buffer = filled("ab", 8);
        buffer[4] = 0xff;
        assert!(parse_string(&buffer, Function::QUERY_MAP_INFO).is_err());
        assert!(parse_string(&filled("a\0b", 8), Function::QUERY_MAP_INFO).is_err());
    }
}
