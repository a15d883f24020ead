//! Host (monitor-side) calls: adding, removing and listing shares at run time.
//!
//! | No. | Name | Parameters | Result |
//! |---|---|---|---|
//! | 1 | `ADD_MAPPING` | 0: host path, 1: share name, 3: auto-mount point (UTF-16 `SHFLSTRING`s, the mount point may be an empty buffer); 2: u32 flags (`SHFL_ADD_MAPPING_F_*`, plus [`SYMLINKS_ANY_TARGET`]) | `VINF_SUCCESS`; `VERR_ALREADY_EXISTS` (name taken, ignoring case); `VERR_TOO_MUCH_DATA` (64 shares); `VERR_INVALID_PARAMETER`; the host error if the directory cannot be opened and `MISSING` is not set |
//! | 2 | `REMOVE_MAPPING` | 0: share name (UTF-16 `SHFLSTRING`) | `VINF_SUCCESS`; `VINF_PERMISSION_DENIED` when still mapped (the share stays as a placeholder whose operations fail, until the last unmap); `VERR_FILE_NOT_FOUND` |
//! | 3 | `SET_STATUS_LED` | — | `VERR_NOT_SUPPORTED` (a VirtualBox-internal activity LED) |
//! | 4 | `ALLOW_SYMLINKS_CREATE` | — | `VERR_NOT_IMPLEMENTED`, as in VirtualBox (the policy is per share) |
//! | 0x100 | [`HOST_FN_LIST_SHARES`] | 0: buffer out, 1: u32 out bytes needed | UTF-8 text, one line per share: `root<TAB>entry<TAB>state<TAB>maps`, `entry` in configuration syntax, `state` one of `ok`, `missing`, `removed`; `VERR_BUFFER_OVERFLOW` if the buffer is too small |
//!
//! Symlink policy from the ADD_MAPPING flags: no `CREATE_SYMLINKS` → `deny`; `CREATE_SYMLINKS`
//! → `inside`; `CREATE_SYMLINKS | SYMLINKS_ANY_TARGET` → `allow`. Adding or removing a share
//! wakes every guest waiting in WAIT_FOR_MAPPINGS_CHANGES.
//!
//! The builders below produce parameter lists for `Hgcm::host_call`.

use vmmdev_hgcm_sdk::{Buffer, Direction, Parm};
use vmmdev_protocol::services::shared_folders::AddMappingFlags;

use crate::config::{ShareConfig, SymlinkPolicy};
use crate::string::{self, Encoding, StringError};

/// Host function: list the shares (this service's extension).
pub const HOST_FN_LIST_SHARES: u32 = 0x100;

/// ADD_MAPPING flag (this service's extension): with `CREATE_SYMLINKS`, links may point
/// anywhere ([`SymlinkPolicy::Allow`]).
pub const SYMLINKS_ANY_TARGET: u32 = 0x1_0000;

fn utf16(text: &str) -> Result<Parm, StringError> {
    Ok(Parm::Buffer(Buffer::host(
        string::build(text, Encoding::Utf16)?,
        Direction::ToHost,
    )))
}

/// The ADD_MAPPING flags that describe `share`.
pub fn add_mapping_flags(share: &ShareConfig, missing: bool) -> u32 {
    let mut flags = AddMappingFlags::empty();
    flags.set(AddMappingFlags::WRITABLE, share.writable);
    flags.set(AddMappingFlags::AUTOMOUNT, share.auto_mount);
    flags.set(
        AddMappingFlags::CREATE_SYMLINKS,
        share.symlinks.allows_creation(),
    );
    flags.set(AddMappingFlags::MISSING, missing);
    let extension = if share.symlinks == SymlinkPolicy::Allow {
        SYMLINKS_ANY_TARGET
    } else {
        0
    };
    flags.bits() | extension
}

/// Parameters of ADD_MAPPING for `share` (`missing`: add it even if the directory is absent).
pub fn add_mapping_params(share: &ShareConfig, missing: bool) -> Result<Vec<Parm>, StringError> {
    Ok(vec![
        utf16(&share.path.to_string_lossy())?,
        utf16(&share.name)?,
        Parm::U32(add_mapping_flags(share, missing)),
        utf16(&share.mount_point)?,
    ])
}

/// Parameters of REMOVE_MAPPING.
pub fn remove_mapping_params(name: &str) -> Result<Vec<Parm>, StringError> {
    Ok(vec![utf16(name)?])
}

/// Parameters of [`HOST_FN_LIST_SHARES`] with room for `capacity` bytes of text.
pub fn list_shares_params(capacity: usize) -> Vec<Parm> {
    vec![
        Parm::Buffer(Buffer::host(vec![0; capacity], Direction::FromHost)),
        Parm::U32(0),
    ]
}

/// The text a [`HOST_FN_LIST_SHARES`] call returned (from its parameters).
pub fn listed_shares(params: &[Parm]) -> Option<String> {
    let buffer = params.first()?.as_buffer()?;
    let mut bytes = vec![0; buffer.reported_len()];
    let read = buffer.read_at(0, &mut bytes).ok()?;
    bytes.truncate(read);
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_policies_travel_as_flags() {
        let mut share = ShareConfig::new("s", "/x");
        assert_eq!(
            add_mapping_flags(&share, false),
            AddMappingFlags::WRITABLE.bits()
        );
        share.symlinks = SymlinkPolicy::Inside;
        assert_eq!(
            add_mapping_flags(&share, false),
            (AddMappingFlags::WRITABLE | AddMappingFlags::CREATE_SYMLINKS).bits()
        );
        share.symlinks = SymlinkPolicy::Allow;
        assert_ne!(add_mapping_flags(&share, false) & SYMLINKS_ANY_TARGET, 0);
    }

    #[test]
    fn add_mapping_params_are_utf16_strings_and_flags() {
        let share = ShareConfig::new("name", "/path");
        let params = add_mapping_params(&share, true).expect("short strings");
        assert_eq!(params.len(), 4);
        let name = params[1]
            .as_buffer()
            .expect("buffer")
            .copy_in(64)
            .expect("copy");
        assert_eq!(string::parse(&name, Encoding::Utf16), Ok("name".to_owned()));
        assert_ne!(
            params[2].as_u32().expect("flags") & AddMappingFlags::MISSING.bits(),
            0
        );
    }
}
