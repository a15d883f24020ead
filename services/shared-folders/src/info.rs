//! Host metadata in the guest's shapes: `statx` → [`FsObjInfo`], `statvfs` → [`VolInfo`].
//!
//! The mode carries the Unix type and permission bits (set-uid, set-gid and sticky are always
//! cleared, as VirtualBox does) plus the DOS attributes a POSIX VirtualBox host derives from them.
//! Times are nanoseconds since the Unix epoch; the birth time falls back to the change time when
//! the file system does not record it.

use vmmdev_protocol::services::shared_folders::{
    FsObjAttr, FsObjAttrUnix, FsObjInfo, FsProperties, ObjAttrAdditional, RTFS_DOS_DIRECTORY,
    RTFS_DOS_HIDDEN, RTFS_DOS_NT_NORMAL, RTFS_DOS_READONLY, RTFS_TYPE_DEV_BLOCK,
    RTFS_TYPE_DEV_CHAR, RTFS_TYPE_DIRECTORY, RTFS_TYPE_MASK, RTFS_TYPE_SYMLINK, VolInfo,
};
use zerocopy::little_endian::{I64, U32, U64};

/// Permission and type bits the guest sees (everything but set-uid, set-gid and sticky).
const VISIBLE_UNIX_BITS: u32 = RTFS_TYPE_MASK | 0o777;

/// Allocation unit reported when the file system reports none (Linux guests divide by it).
const FALLBACK_ALLOCATION_UNIT: u32 = 4096;
/// Sector size reported to the guest.
const SECTOR_SIZE: u32 = 512;

fn nanoseconds(time: libc::statx_timestamp) -> i64 {
    time.tv_sec
        .saturating_mul(1_000_000_000)
        .saturating_add(i64::from(time.tv_nsec))
}

/// The `RTFMODE` of a host object: Unix bits plus derived DOS attributes. `name` (when known)
/// marks dot-files hidden.
pub fn mode_of(st_mode: u32, name: Option<&str>) -> u32 {
    let unix = st_mode & VISIBLE_UNIX_BITS;
    let mut dos = 0;
    if unix & 0o222 == 0 {
        dos |= RTFS_DOS_READONLY;
    }
    if unix & RTFS_TYPE_MASK == RTFS_TYPE_DIRECTORY {
        dos |= RTFS_DOS_DIRECTORY;
    }
    if name.is_some_and(|n| n.starts_with('.') && n != "." && n != "..") {
        dos |= RTFS_DOS_HIDDEN;
    }
    if dos == 0 {
        dos = RTFS_DOS_NT_NORMAL;
    }
    unix | dos
}

/// Whether a host mode describes a directory.
pub fn is_directory(st_mode: u32) -> bool {
    st_mode & RTFS_TYPE_MASK == RTFS_TYPE_DIRECTORY
}

/// Whether a host mode describes a symlink.
pub fn is_symlink(st_mode: u32) -> bool {
    st_mode & RTFS_TYPE_MASK == RTFS_TYPE_SYMLINK
}

/// The object information of a `statx` result.
pub fn obj_info(st: &libc::statx, name: Option<&str>) -> FsObjInfo {
    let mode = u32::from(st.stx_mode);
    let kind = mode & RTFS_TYPE_MASK;
    let change_time = nanoseconds(st.stx_ctime);
    let birth_time = if st.stx_mask & libc::STATX_BTIME != 0 {
        nanoseconds(st.stx_btime)
    } else {
        change_time
    };
    let device = if kind == RTFS_TYPE_DEV_CHAR || kind == RTFS_TYPE_DEV_BLOCK {
        // The kernel's 32-bit device number encoding (major in bits 8-19, minor around it).
        (st.stx_rdev_major << 8) | (st.stx_rdev_minor & 0xFF) | ((st.stx_rdev_minor & !0xFF) << 12)
    } else {
        0
    };
    FsObjInfo {
        object_size: I64::new(i64::try_from(st.stx_size).unwrap_or(i64::MAX)),
        allocated: I64::new(i64::try_from(st.stx_blocks.saturating_mul(512)).unwrap_or(i64::MAX)),
        access_time: I64::new(nanoseconds(st.stx_atime)),
        modification_time: I64::new(nanoseconds(st.stx_mtime)),
        change_time: I64::new(change_time),
        birth_time: I64::new(birth_time),
        attr: FsObjAttr {
            mode: U32::new(mode_of(mode, name)),
            additional: U32::new(ObjAttrAdditional::UNIX.raw()),
            unix: FsObjAttrUnix {
                uid: U32::new(st.stx_uid),
                gid: U32::new(st.stx_gid),
                hardlinks: U32::new(st.stx_nlink),
                inode_id_device: U32::new((st.stx_dev_major << 20) | st.stx_dev_minor),
                inode_id: U64::new(st.stx_ino),
                flags: U32::new(0),
                generation_id: U32::new(0),
                device: U32::new(device),
            },
        },
    }
}

/// The volume information of a share.
pub fn vol_info(st: &libc::statvfs, read_only: bool) -> VolInfo {
    let fragment = if st.f_frsize != 0 {
        st.f_frsize
    } else {
        st.f_bsize
    };
    let bytes = |blocks: libc::fsblkcnt_t| {
        i64::try_from(u128::from(blocks) * u128::from(fragment)).unwrap_or(i64::MAX)
    };
    let unit = u32::try_from(st.f_bsize)
        .ok()
        .filter(|&unit| unit != 0)
        .unwrap_or(FALLBACK_ALLOCATION_UNIT);
    VolInfo {
        total_allocation_bytes: I64::new(bytes(st.f_blocks)),
        available_allocation_bytes: I64::new(bytes(st.f_bavail)),
        bytes_per_allocation_unit: U32::new(unit),
        bytes_per_sector: U32::new(SECTOR_SIZE),
        // The low half of the file system ID identifies the volume well enough.
        serial: U32::new(st.f_fsid as u32),
        properties: FsProperties {
            max_component: U32::new(u32::try_from(st.f_namemax).unwrap_or(255)),
            remote: 0,
            case_sensitive: 1,
            read_only: u8::from(read_only || st.f_flag & libc::ST_RDONLY != 0),
            supports_unicode: 1,
            compressed: 0,
            file_compression: 0,
            padding: [0; 2],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmmdev_protocol::services::shared_folders::{RTFS_TYPE_FILE, RTFS_UNIX_ISUID};

    #[test]
    fn setuid_setgid_and_sticky_are_never_reported() {
        let mode = mode_of(
            RTFS_TYPE_FILE | RTFS_UNIX_ISUID | 0o2000 | 0o1000 | 0o755,
            None,
        );
        assert_eq!(mode & 0o7777, 0o755);
    }

    #[test]
    fn directories_carry_the_dos_directory_bit() {
        let mode = mode_of(RTFS_TYPE_DIRECTORY | 0o755, Some("d"));
        assert_ne!(mode & RTFS_DOS_DIRECTORY, 0);
        assert_eq!(mode & RTFS_TYPE_MASK, RTFS_TYPE_DIRECTORY);
    }

    #[test]
    fn unwritable_files_are_dos_read_only() {
        assert_ne!(mode_of(RTFS_TYPE_FILE | 0o444, None) & RTFS_DOS_READONLY, 0);
        assert_eq!(mode_of(RTFS_TYPE_FILE | 0o644, None) & RTFS_DOS_READONLY, 0);
    }

    #[test]
    fn dot_files_are_hidden_but_dot_entries_are_not() {
        assert_ne!(
            mode_of(RTFS_TYPE_FILE | 0o644, Some(".rc")) & RTFS_DOS_HIDDEN,
            0
        );
        assert_eq!(
            mode_of(RTFS_TYPE_DIRECTORY | 0o755, Some("..")) & RTFS_DOS_HIDDEN,
            0
        );
    }

    #[test]
    fn plain_files_are_nt_normal() {
        assert_eq!(
            mode_of(RTFS_TYPE_FILE | 0o644, Some("a")) & !0o177777,
            RTFS_DOS_NT_NORMAL
        );
    }

    fn statvfs_of_temp_dir() -> libc::statvfs {
        let dir = std::fs::File::open(std::env::temp_dir()).expect("temp dir");
        crate::sys::fstatvfs(std::os::fd::AsFd::as_fd(&dir)).expect("statvfs")
    }

    #[test]
    fn volume_info_never_reports_a_zero_allocation_unit() {
        let mut st = statvfs_of_temp_dir();
        st.f_bsize = 0;
        assert_eq!(vol_info(&st, false).bytes_per_allocation_unit.get(), 4096);
    }

    #[test]
    fn volume_info_reports_read_only_shares() {
        let st = statvfs_of_temp_dir();
        assert_eq!(vol_info(&st, true).properties.read_only, 1);
    }
}
