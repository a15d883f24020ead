//! The shared-folders service, `VBoxSharedFolders` (`include/VBox/shflsvc.h`; Linux
//! `fs/vboxsf/shfl_hostintf.h`).
//!
//! A client maps a share ([`Function::MAP_FOLDER`]) to a root ID, then opens objects by path
//! with [`Function::CREATE`] (which also serves as stat) and works on the returned handles.
//! Paths and names travel as [`ShflStringHeader`]-prefixed strings (UTF-16 until the client
//! calls [`Function::SET_UTF8`], UTF-8 afterwards); object attributes as [`FsObjInfo`]; directory
//! listings as packed [`DirInfo`] records.

use bitflags::bitflags;
use zerocopy::little_endian::{I64, U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::ParameterCount;

/// The HGCM service name.
pub const SERVICE_NAME: &str = "VBoxSharedFolders";

// ---------------------------------------------------------------------------------------------
// Functions
// ---------------------------------------------------------------------------------------------

protocol_codes! {
    /// A guest function number (`SHFL_FN_*`).
    pub struct Function(u32);
    /// List the mappings.
    QUERY_MAPPINGS = 1;
    /// Name of a mapping.
    QUERY_MAP_NAME = 2;
    /// Open, create or stat an object.
    CREATE = 3;
    /// Close a handle.
    CLOSE = 4;
    /// Read from a file.
    READ = 5;
    /// Write to a file.
    WRITE = 6;
    /// Lock or unlock a byte range.
    LOCK = 7;
    /// List a directory.
    LIST = 8;
    /// Query or set object or volume information.
    INFORMATION = 9;
    /// Remove an object.
    REMOVE = 11;
    /// Map a share (legacy form without the case-sensitivity flag).
    MAP_FOLDER_OLD = 12;
    /// Unmap a share.
    UNMAP_FOLDER = 13;
    /// Rename an object.
    RENAME = 14;
    /// Flush a file.
    FLUSH = 15;
    /// Switch the client to UTF-8 strings.
    SET_UTF8 = 16;
    /// Map a share.
    MAP_FOLDER = 17;
    /// Read a symlink's target.
    READLINK = 18;
    /// Create a symlink.
    SYMLINK = 19;
    /// Report symlinks as symlinks (lstat semantics).
    SET_SYMLINKS = 20;
    /// Mapping details.
    QUERY_MAP_INFO = 21;
    /// Wait for the mapping table to change.
    WAIT_FOR_MAPPINGS_CHANGES = 22;
    /// Cancel this client's mapping-change waits.
    CANCEL_MAPPINGS_CHANGES_WAITS = 23;
    /// Truncate or extend a file.
    SET_FILE_SIZE = 24;
    /// Host feature bits.
    QUERY_FEATURES = 25;
    /// Copy a whole file.
    COPY_FILE = 26;
    /// Copy a range between two open files.
    COPY_FILE_PART = 27;
    /// Close a handle and remove its object.
    CLOSE_AND_REMOVE = 28;
    /// Select Windows or Linux error semantics.
    SET_ERROR_STYLE = 29;
}

/// The highest guest function number (`SHFL_FN_LAST`), returned by QUERY_FEATURES.
pub const SHFL_FN_LAST: u32 = 29;

impl Function {
    /// The parameter count the host requires, or `None` for unknown functions. SET_UTF8 and
    /// SET_SYMLINKS send no parameters (VirtualBox does not check their count).
    pub const fn parameter_count(self) -> Option<ParameterCount> {
        let count = match self {
            Self::QUERY_MAPPINGS => 3,
            Self::QUERY_MAP_NAME => 2,
            Self::CREATE => 3,
            Self::CLOSE => 2,
            Self::READ => 5,
            Self::WRITE => 5,
            Self::LOCK => 5,
            Self::LIST => 8,
            Self::INFORMATION => 5,
            Self::REMOVE => 3,
            Self::MAP_FOLDER_OLD => 3,
            Self::UNMAP_FOLDER => 1,
            Self::RENAME => 4,
            Self::FLUSH => 2,
            Self::SET_UTF8 => 0,
            Self::MAP_FOLDER => 4,
            Self::READLINK => 3,
            Self::SYMLINK => 4,
            Self::SET_SYMLINKS => 0,
            Self::QUERY_MAP_INFO => 5,
            Self::WAIT_FOR_MAPPINGS_CHANGES => 1,
            Self::CANCEL_MAPPINGS_CHANGES_WAITS => 0,
            Self::SET_FILE_SIZE => 3,
            Self::QUERY_FEATURES => 2,
            Self::COPY_FILE => 5,
            Self::COPY_FILE_PART => 8,
            Self::CLOSE_AND_REMOVE => 4,
            Self::SET_ERROR_STYLE => 2,
            _ => return None,
        };
        Some(ParameterCount::Exactly(count))
    }
}

protocol_codes! {
    /// A host (VMM-side) function number.
    pub struct HostFunction(u32);
    /// Add a share: host path, name, flags ([`AddMappingFlags`]), auto-mount point.
    ADD_MAPPING = 1;
    /// Remove a share by name.
    REMOVE_MAPPING = 2;
    /// Hand the service a status LED (VirtualBox-internal).
    SET_STATUS_LED = 3;
    /// Defined but not implemented by VirtualBox.
    ALLOW_SYMLINKS_CREATE = 4;
}

impl HostFunction {
    /// The parameter count the host function takes, or `None` if it has no defined form.
    pub const fn parameter_count(self) -> Option<ParameterCount> {
        match self {
            Self::ADD_MAPPING => Some(ParameterCount::Exactly(4)),
            Self::REMOVE_MAPPING | Self::SET_STATUS_LED => Some(ParameterCount::Exactly(1)),
            _ => None,
        }
    }
}

bitflags! {
    /// Flags of the host ADD_MAPPING call (`SHFL_ADD_MAPPING_F_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct AddMappingFlags: u32 {
        /// The guest may write.
        const WRITABLE = 0x1;
        /// The guest should mount the share automatically.
        const AUTOMOUNT = 0x2;
        /// The guest may create symlinks.
        const CREATE_SYMLINKS = 0x4;
        /// The host path does not exist (placeholder).
        const MISSING = 0x8;
    }
}

// ---------------------------------------------------------------------------------------------
// Basic types and limits
// ---------------------------------------------------------------------------------------------

/// `SHFL_ROOT_NIL`: no root.
pub const SHFL_ROOT_NIL: u32 = 0xFFFF_FFFF;
/// `SHFL_HANDLE_NIL`: no handle.
pub const SHFL_HANDLE_NIL: u64 = 0xFFFF_FFFF_FFFF_FFFF;
/// `SHFL_HANDLE_ROOT`: never an object handle; "no handle" for volume queries.
pub const SHFL_HANDLE_ROOT: u64 = 0;
/// Most shares (root IDs 0..64).
pub const SHFL_MAX_MAPPINGS: u32 = 64;
/// Longest share name, in characters, guests reserve buffers for.
pub const SHFL_MAX_LEN: u32 = 256;
/// Largest read or write a Linux guest issues in one call (a guest-side constant).
pub const SHFL_MAX_RW_COUNT: u32 = 16 << 20;
/// Smallest LIST buffer the host accepts (`sizeof(SHFLDIRINFO)`).
pub const SHFL_LIST_MIN_BUFFER_SIZE: u32 = 128;
/// Most times one client may map the same root.
pub const SHFL_MAX_MAPS_PER_CLIENT_AND_ROOT: u32 = 32768;
/// Most mapping-change waits pending service-wide.
pub const SHFL_MAX_MAPPING_CHANGE_WAITS: u32 = 64;
/// Clients per requestor category the service admits (`SHFL_MAX_MAPPINGS + 2`).
pub const SHFL_MAX_CLIENTS_PER_CATEGORY: u32 = SHFL_MAX_MAPPINGS + 2;
/// Pending calls per client, by requestor category (kernel, root, user).
pub const SHFL_MAX_CALLS_PER_CLIENT: [u32; 3] = [65536, 16384, 1024];

/// The header of a `SHFLSTRING`, 4 bytes, followed by `size` bytes of UTF-8 or UTF-16LE text
/// including the terminator. The HGCM buffer holding the string is `4 + size` bytes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct ShflStringHeader {
    /// Bytes of storage that follow (room for the terminator included).
    pub size: U16,
    /// Length of the string in bytes, without the terminator.
    pub length: U16,
}

/// Size of [`ShflStringHeader`].
pub const SHFLSTRING_HEADER_SIZE: usize = 4;

// ---------------------------------------------------------------------------------------------
// Object attributes
// ---------------------------------------------------------------------------------------------

/// Set-user-ID bit of `RTFMODE` (always cleared by the host on output).
pub const RTFS_UNIX_ISUID: u32 = 0o4000;
/// Set-group-ID bit.
pub const RTFS_UNIX_ISGID: u32 = 0o2000;
/// Sticky bit.
pub const RTFS_UNIX_ISTXT: u32 = 0o1000;
/// The nine rwx permission bits.
pub const RTFS_UNIX_ALL_PERMS: u32 = 0o777;
/// Mask of the object type bits (same values as Linux `S_IF*`).
pub const RTFS_TYPE_MASK: u32 = 0o170000;
/// FIFO.
pub const RTFS_TYPE_FIFO: u32 = 0o010000;
/// Character device.
pub const RTFS_TYPE_DEV_CHAR: u32 = 0o020000;
/// Directory.
pub const RTFS_TYPE_DIRECTORY: u32 = 0o040000;
/// Block device.
pub const RTFS_TYPE_DEV_BLOCK: u32 = 0o060000;
/// Regular file.
pub const RTFS_TYPE_FILE: u32 = 0o100000;
/// Symbolic link.
pub const RTFS_TYPE_SYMLINK: u32 = 0o120000;
/// Socket.
pub const RTFS_TYPE_SOCKET: u32 = 0o140000;
/// Whiteout.
pub const RTFS_TYPE_WHITEOUT: u32 = 0o160000;
/// Shift of the DOS attribute bits in `RTFMODE`.
pub const RTFS_DOS_SHIFT: u32 = 16;
/// Mask of the DOS attribute bits.
pub const RTFS_DOS_MASK: u32 = 0x7FFF << RTFS_DOS_SHIFT;
/// DOS read-only.
pub const RTFS_DOS_READONLY: u32 = 0x0001 << RTFS_DOS_SHIFT;
/// DOS hidden.
pub const RTFS_DOS_HIDDEN: u32 = 0x0002 << RTFS_DOS_SHIFT;
/// DOS system.
pub const RTFS_DOS_SYSTEM: u32 = 0x0004 << RTFS_DOS_SHIFT;
/// DOS directory; the host forces a directory open when it sees it in CREATE.
pub const RTFS_DOS_DIRECTORY: u32 = 0x0010 << RTFS_DOS_SHIFT;
/// DOS archived.
pub const RTFS_DOS_ARCHIVED: u32 = 0x0020 << RTFS_DOS_SHIFT;
/// NT device.
pub const RTFS_DOS_NT_DEVICE: u32 = 0x0040 << RTFS_DOS_SHIFT;
/// NT normal (no other DOS bit).
pub const RTFS_DOS_NT_NORMAL: u32 = 0x0080 << RTFS_DOS_SHIFT;
/// NT temporary.
pub const RTFS_DOS_NT_TEMPORARY: u32 = 0x0100 << RTFS_DOS_SHIFT;
/// NT sparse file.
pub const RTFS_DOS_NT_SPARSE_FILE: u32 = 0x0200 << RTFS_DOS_SHIFT;
/// NT reparse point.
pub const RTFS_DOS_NT_REPARSE_POINT: u32 = 0x0400 << RTFS_DOS_SHIFT;
/// NT compressed.
pub const RTFS_DOS_NT_COMPRESSED: u32 = 0x0800 << RTFS_DOS_SHIFT;
/// NT offline.
pub const RTFS_DOS_NT_OFFLINE: u32 = 0x1000 << RTFS_DOS_SHIFT;
/// NT not content-indexed.
pub const RTFS_DOS_NT_NOT_CONTENT_INDEXED: u32 = 0x2000 << RTFS_DOS_SHIFT;
/// NT encrypted.
pub const RTFS_DOS_NT_ENCRYPTED: u32 = 0x4000 << RTFS_DOS_SHIFT;

protocol_codes! {
    /// Which variant the union of an [`FsObjAttr`] holds (`SHFLFSOBJATTRADD`).
    pub struct ObjAttrAdditional(u32);
    /// Nothing beyond the mode.
    NOTHING = 1;
    /// The Unix attributes ([`FsObjAttrUnix`]).
    UNIX = 2;
    /// An extended-attribute size (an i64 at the start of the union).
    EASIZE = 3;
}

/// The Unix variant of the attribute union, 36 bytes (`SHFLFSOBJATTRUNIX`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct FsObjAttrUnix {
    /// Owner user ID (`~0` if unknown).
    pub uid: U32,
    /// Owner group ID (`~0` if unknown).
    pub gid: U32,
    /// Hard link count (1 if unknown).
    pub hardlinks: U32,
    /// Device of the inode (`st_dev`).
    pub inode_id_device: U32,
    /// Inode number (`st_ino`).
    pub inode_id: U64,
    /// BSD `st_flags`.
    pub flags: U32,
    /// `st_gen`.
    pub generation_id: U32,
    /// `st_rdev` of device nodes.
    pub device: U32,
}

/// Object attributes, 44 bytes (`SHFLFSOBJATTR`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct FsObjAttr {
    /// `RTFMODE`: Unix type and permission bits, DOS attributes in bits 16–30.
    pub mode: U32,
    /// [`ObjAttrAdditional`].
    pub additional: U32,
    /// The union, in its Unix variant; for [`ObjAttrAdditional::EASIZE`] the first 8 bytes hold
    /// a little-endian i64 instead.
    pub unix: FsObjAttrUnix,
}

/// Object information, 92 bytes (`SHFLFSOBJINFO`). Times are nanoseconds since the Unix epoch.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct FsObjInfo {
    /// Logical size; for symlinks the length of the target.
    pub object_size: I64,
    /// Allocated bytes.
    pub allocated: I64,
    /// Last access time.
    pub access_time: I64,
    /// Last modification time; drives the Linux page-cache invalidation.
    pub modification_time: I64,
    /// Last status change time.
    pub change_time: I64,
    /// Creation time.
    pub birth_time: I64,
    /// Attributes.
    pub attr: FsObjAttr,
}

// ---------------------------------------------------------------------------------------------
// CREATE
// ---------------------------------------------------------------------------------------------

bitflags! {
    /// CREATE flags (`SHFL_CF_*`).
    ///
    /// Several fields are small enumerations inside masks; their zero values ("open if exists",
    /// "create if new", no access) are the associated constants outside the flag set, so a
    /// request without `ACT_FAIL_IF_NEW` means "create if missing".
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct CreateFlags: u32 {
        /// Stat only; every other flag is ignored and no handle is returned.
        const LOOKUP = 0x0000_0001;
        /// Open the parent directory of the path.
        const OPEN_TARGET_DIRECTORY = 0x0000_0002;
        /// Create or open a directory.
        const DIRECTORY = 0x0000_0004;
        /// Existing object: fail.
        const ACT_FAIL_IF_EXISTS = 0x0000_0010;
        /// Existing object: replace.
        const ACT_REPLACE_IF_EXISTS = 0x0000_0020;
        /// Existing object: overwrite (truncate).
        const ACT_OVERWRITE_IF_EXISTS = 0x0000_0030;
        /// Missing object: fail.
        const ACT_FAIL_IF_NEW = 0x0000_0100;
        /// Read access.
        const ACCESS_READ = 0x0000_1000;
        /// Write access.
        const ACCESS_WRITE = 0x0000_2000;
        /// Read and write access.
        const ACCESS_READWRITE = 0x0000_3000;
        /// Deny others reading.
        const ACCESS_DENYREAD = 0x0000_4000;
        /// Deny others writing.
        const ACCESS_DENYWRITE = 0x0000_8000;
        /// Deny others everything.
        const ACCESS_DENYALL = 0x0000_C000;
        /// Attribute read access.
        const ACCESS_ATTR_READ = 0x0001_0000;
        /// Attribute write access (must not require data write permission).
        const ACCESS_ATTR_WRITE = 0x0002_0000;
        /// Attribute read and write access.
        const ACCESS_ATTR_READWRITE = 0x0003_0000;
        /// Append mode (with write access).
        const ACCESS_APPEND = 0x0004_0000;
    }
}

impl CreateFlags {
    /// Mask of the if-exists action.
    pub const ACT_MASK_IF_EXISTS: Self = Self::from_bits_retain(0x0000_00F0);
    /// Mask of the if-new action.
    pub const ACT_MASK_IF_NEW: Self = Self::from_bits_retain(0x0000_0F00);
    /// Mask of the read/write access.
    pub const ACCESS_MASK_RW: Self = Self::from_bits_retain(0x0000_3000);
    /// Mask of the deny mode.
    pub const ACCESS_MASK_DENY: Self = Self::from_bits_retain(0x0000_C000);
    /// Mask of the attribute access.
    pub const ACCESS_MASK_ATTR: Self = Self::from_bits_retain(0x0003_0000);
    /// Existing object: open it (zero value of the if-exists field).
    pub const ACT_OPEN_IF_EXISTS: Self = Self::empty();
    /// Missing object: create it (zero value of the if-new field).
    pub const ACT_CREATE_IF_NEW: Self = Self::empty();
    /// No data access (zero value of the access field).
    pub const ACCESS_NONE: Self = Self::empty();
    /// No deny mode (zero value of the deny field).
    pub const ACCESS_DENYNONE: Self = Self::empty();
    /// No attribute access (zero value of the attribute field).
    pub const ACCESS_ATTR_NONE: Self = Self::empty();

    /// The if-exists action field.
    pub const fn if_exists(self) -> Self {
        self.intersection(Self::ACT_MASK_IF_EXISTS)
    }

    /// The if-new action field.
    pub const fn if_new(self) -> Self {
        self.intersection(Self::ACT_MASK_IF_NEW)
    }

    /// The read/write access field.
    pub const fn access(self) -> Self {
        self.intersection(Self::ACCESS_MASK_RW)
    }

    /// The deny field.
    pub const fn deny(self) -> Self {
        self.intersection(Self::ACCESS_MASK_DENY)
    }

    /// The attribute access field.
    pub const fn attr_access(self) -> Self {
        self.intersection(Self::ACCESS_MASK_ATTR)
    }
}

protocol_codes! {
    /// Outcome of CREATE (`SHFLCREATERESULT`).
    pub struct CreateResult(u32);
    /// Set on entry; remains on hard errors.
    NO_RESULT = 0;
    /// A parent component does not exist.
    PATH_NOT_FOUND = 1;
    /// The parent exists, the last component does not.
    FILE_NOT_FOUND = 2;
    /// The object exists (opened, refused by FAIL_IF_EXISTS, or looked up).
    FILE_EXISTS = 3;
    /// A new object was created.
    FILE_CREATED = 4;
    /// An existing file was replaced or truncated.
    FILE_REPLACED = 5;
}

/// CREATE parameters, 108 bytes (`SHFLCREATEPARMS`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct CreateParms {
    /// Out: the new handle or [`SHFL_HANDLE_NIL`]. In: guests pre-set NIL (0 marks old
    /// additions that left `info.attr.mode` uninitialised).
    pub handle: U64,
    /// [`CreateResult`] (out).
    pub result: U32,
    /// [`CreateFlags`] (in).
    pub create_flags: U32,
    /// In: mode of a new object, size for overwrite/replace. Out: attributes of the object.
    pub info: FsObjInfo,
}

// ---------------------------------------------------------------------------------------------
// LIST, INFORMATION, volume information
// ---------------------------------------------------------------------------------------------

bitflags! {
    /// LIST flags (`SHFL_LIST_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct ListFlags: u32 {
        /// Return at most one entry.
        const RETURN_ONE = 0x1;
        /// Rewind the enumeration first.
        const RESTART = 0x2;
    }
}

/// One LIST record without its name bytes, 126 bytes (`SHFLDIRINFO` up to the string data).
///
/// Records are packed back to back with no padding: the name's `size` bytes follow the header and
/// the next record starts at `126 + name.size` ([`DirInfo::record_size`]).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct DirInfo {
    /// Attributes of the entry.
    pub info: FsObjInfo,
    /// Length of the 8.3 short name in UTF-16 units (0 if none).
    pub short_name_len: U16,
    /// UTF-16 short name.
    pub short_name: [U16; 14],
    /// Header of the entry's name.
    pub name: ShflStringHeader,
}

impl DirInfo {
    /// Size of a record whose name has `name_size` bytes of storage.
    pub const fn record_size(name_size: u16) -> usize {
        core::mem::size_of::<Self>() + name_size as usize
    }
}

bitflags! {
    /// INFORMATION flags (`SHFL_INFO_*`); GET is the absence of SET.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct InfoFlags: u32 {
        /// Set instead of get.
        const SET = 0x01;
        /// Object name (not implemented by VirtualBox).
        const NAME = 0x02;
        /// File size (with SET: truncate or extend).
        const SIZE = 0x04;
        /// Object information ([`FsObjInfo`]).
        const FILE = 0x08;
        /// Volume information ([`VolInfo`]); the handle is ignored.
        const VOLUME = 0x10;
    }
}

impl InfoFlags {
    /// Get (zero value of the mode bit).
    pub const GET: Self = Self::empty();
    /// Mask of the get/set mode bit.
    pub const MODE_MASK: Self = Self::SET;
}

/// File-system properties, 12 bytes (`SHFLFSPROPERTIES`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct FsProperties {
    /// Longest name component without the terminator.
    pub max_component: U32,
    /// Remote file system (bool).
    pub remote: u8,
    /// Case-sensitive names (bool).
    pub case_sensitive: u8,
    /// Read-only (bool).
    pub read_only: u8,
    /// Unicode names supported (bool).
    pub supports_unicode: u8,
    /// File system compressed (bool).
    pub compressed: u8,
    /// Files may be compressed (bool).
    pub file_compression: u8,
    /// Padding (zeroed).
    pub padding: [u8; 2],
}

/// Volume information, 40 bytes (`SHFLVOLINFO`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct VolInfo {
    /// Total size in bytes.
    pub total_allocation_bytes: I64,
    /// Free bytes.
    pub available_allocation_bytes: I64,
    /// Allocation unit; must be non-zero (Linux divides by it).
    pub bytes_per_allocation_unit: U32,
    /// Sector size.
    pub bytes_per_sector: U32,
    /// Volume serial number.
    pub serial: U32,
    /// File-system properties.
    pub properties: FsProperties,
}

// ---------------------------------------------------------------------------------------------
// REMOVE, RENAME, LOCK
// ---------------------------------------------------------------------------------------------

bitflags! {
    /// REMOVE and CLOSE_AND_REMOVE flags (`SHFL_REMOVE_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct RemoveFlags: u32 {
        /// Unlink a file.
        const FILE = 0x1;
        /// Remove an empty directory.
        const DIR = 0x2;
        /// Remove a symlink itself.
        const SYMLINK = 0x4;
    }
}

bitflags! {
    /// RENAME flags (`SHFL_RENAME_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct RenameFlags: u32 {
        /// Rename a non-directory.
        const FILE = 0x1;
        /// Rename a directory.
        const DIR = 0x2;
        /// Atomically replace an existing destination.
        const REPLACE_IF_EXISTS = 0x4;
    }
}

bitflags! {
    /// LOCK flags (`SHFL_LOCK_*`). The mode field (mask 0x3) holds CANCEL (0), SHARED or
    /// EXCLUSIVE.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct LockFlags: u32 {
        /// Shared lock.
        const SHARED = 0x1;
        /// Exclusive lock.
        const EXCLUSIVE = 0x2;
        /// Wait for the lock (dropped by VirtualBox, which never blocks).
        const WAIT = 0x4;
        /// Lock the entire file (rejected by VirtualBox).
        const ENTIRE = 0x8;
    }
}

impl LockFlags {
    /// Unlock / cancel (zero value of the mode field).
    pub const CANCEL: Self = Self::empty();
    /// Mask of the mode field.
    pub const MODE_MASK: Self = Self::from_bits_retain(0x3);
}

// ---------------------------------------------------------------------------------------------
// Mapping management
// ---------------------------------------------------------------------------------------------

protocol_codes! {
    /// Status of a [`Mapping`] (`SHFL_MS_*`).
    pub struct MappingStatus(u32);
    /// A current mapping (the only value current hosts return).
    NEW = 1;
    /// A deleted mapping.
    DELETED = 2;
}

/// One entry of QUERY_MAPPINGS, 8 bytes (`SHFLMAPPING`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct Mapping {
    /// [`MappingStatus`].
    pub status: U32,
    /// Root ID.
    pub root: U32,
}

bitflags! {
    /// QUERY_MAPPINGS flags (`SHFL_MF_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct QueryMappingsFlags: u32 {
        /// Switch the client to UTF-8 (like SET_UTF8).
        const UTF8 = 0x01;
        /// Only auto-mount mappings.
        const AUTOMOUNT = 0x10;
    }
}

bitflags! {
    /// Query flags of QUERY_MAP_INFO (`SHFL_MIQF_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct MapInfoQueryFlags: u64 {
        /// The guest wants a drive letter as mount point.
        const DRIVE_LETTER = 0x1;
        /// The guest wants a path as mount point.
        const PATH = 0x2;
    }
}

bitflags! {
    /// Output flags of QUERY_MAP_INFO (`SHFL_MIF_*`).
    ///
    /// VirtualBox 7.0 sets `HOST_ICASE` when the host file system *is* case-sensitive and
    /// `GUEST_ICASE` when the mapping *is* case-sensitive, the opposite of the names.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct MapInfoFlags: u64 {
        /// The share is writable.
        const WRITABLE = 0x01;
        /// The share is auto-mounted.
        const AUTO_MOUNT = 0x02;
        /// Host case sensitivity (see the note above).
        const HOST_ICASE = 0x04;
        /// Guest case sensitivity (see the note above).
        const GUEST_ICASE = 0x08;
        /// Symlink creation is allowed.
        const SYMLINK_CREATION = 0x10;
    }
}

bitflags! {
    /// Host features reported by QUERY_FEATURES (`SHFL_FEATURE_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct Features: u64 {
        /// WRITE returns the new file offset in its offset parameter.
        const WRITE_UPDATES_OFFSET = 0x1;
    }
}

protocol_codes! {
    /// Error semantics selected with SET_ERROR_STYLE (`SHFLERRORSTYLE`).
    pub struct ErrorStyle(u32);
    /// Windows semantics.
    WINDOWS = 1;
    /// Linux semantics (the default on non-Windows hosts).
    LINUX = 2;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_header_has_reference_layout() {
        assert_layout!(ShflStringHeader, size = 4, { size: 0, length: 2 });
        assert_eq!(
            core::mem::size_of::<ShflStringHeader>(),
            SHFLSTRING_HEADER_SIZE
        );
    }

    #[test]
    fn object_info_has_reference_layout() {
        assert_layout!(FsObjAttrUnix, size = 36, {
            uid: 0, gid: 4, hardlinks: 8, inode_id_device: 12, inode_id: 16, flags: 24,
            generation_id: 28, device: 32,
        });
        assert_layout!(FsObjAttr, size = 44, { mode: 0, additional: 4, unix: 8 });
        assert_layout!(FsObjInfo, size = 92, {
            object_size: 0, allocated: 8, access_time: 16, modification_time: 24,
            change_time: 32, birth_time: 40, attr: 48,
        });
    }

    #[test]
    fn create_parms_has_reference_layout() {
        assert_layout!(CreateParms, size = 108, { handle: 0, result: 8, create_flags: 12, info: 16 });
        // The guest-visible offsets of nested fields the Linux guest uses.
        assert_eq!(
            core::mem::offset_of!(CreateParms, info.modification_time),
            40
        );
        assert_eq!(core::mem::offset_of!(CreateParms, info.attr.mode), 64);
    }

    #[test]
    fn dir_info_has_reference_layout() {
        assert_layout!(DirInfo, size = 126, {
            info: 0, short_name_len: 92, short_name: 94, name: 122,
        });
        assert_eq!(DirInfo::record_size(2) as u32, SHFL_LIST_MIN_BUFFER_SIZE);
    }

    #[test]
    fn volume_info_has_reference_layout() {
        assert_layout!(FsProperties, size = 12, {
            max_component: 0, remote: 4, case_sensitive: 5, read_only: 6, supports_unicode: 7,
            compressed: 8, file_compression: 9, padding: 10,
        });
        assert_layout!(VolInfo, size = 40, {
            total_allocation_bytes: 0, available_allocation_bytes: 8,
            bytes_per_allocation_unit: 16, bytes_per_sector: 20, serial: 24, properties: 28,
        });
    }

    #[test]
    fn mapping_has_reference_layout() {
        assert_layout!(Mapping, size = 8, { status: 0, root: 4 });
    }

    #[test]
    fn functions_have_reference_numbers_and_counts() {
        let expected = [
            (Function::QUERY_MAPPINGS, 1, 3),
            (Function::QUERY_MAP_NAME, 2, 2),
            (Function::CREATE, 3, 3),
            (Function::CLOSE, 4, 2),
            (Function::READ, 5, 5),
            (Function::WRITE, 6, 5),
            (Function::LOCK, 7, 5),
            (Function::LIST, 8, 8),
            (Function::INFORMATION, 9, 5),
            (Function::REMOVE, 11, 3),
            (Function::MAP_FOLDER_OLD, 12, 3),
            (Function::UNMAP_FOLDER, 13, 1),
            (Function::RENAME, 14, 4),
            (Function::FLUSH, 15, 2),
            (Function::SET_UTF8, 16, 0),
            (Function::MAP_FOLDER, 17, 4),
            (Function::READLINK, 18, 3),
            (Function::SYMLINK, 19, 4),
            (Function::SET_SYMLINKS, 20, 0),
            (Function::QUERY_MAP_INFO, 21, 5),
            (Function::WAIT_FOR_MAPPINGS_CHANGES, 22, 1),
            (Function::CANCEL_MAPPINGS_CHANGES_WAITS, 23, 0),
            (Function::SET_FILE_SIZE, 24, 3),
            (Function::QUERY_FEATURES, 25, 2),
            (Function::COPY_FILE, 26, 5),
            (Function::COPY_FILE_PART, 27, 8),
            (Function::CLOSE_AND_REMOVE, 28, 4),
            (Function::SET_ERROR_STYLE, 29, 2),
        ];
        assert_eq!(expected.len(), Function::KNOWN.len());
        for (function, number, count) in expected {
            assert_eq!(function.raw(), number);
            assert_eq!(
                function.parameter_count(),
                Some(ParameterCount::Exactly(count)),
                "{function:?}"
            );
        }
        assert_eq!(Function::KNOWN.last().map(|f| f.raw()), Some(SHFL_FN_LAST));
    }

    #[test]
    fn unused_function_number_10_is_unknown() {
        assert_eq!(Function(10).name(), None);
        assert_eq!(Function(10).parameter_count(), None);
        assert_eq!(Function(30).parameter_count(), None);
    }

    #[test]
    fn host_functions_have_reference_numbers() {
        assert_eq!(HostFunction::ADD_MAPPING.raw(), 1);
        assert_eq!(HostFunction::REMOVE_MAPPING.raw(), 2);
        assert_eq!(HostFunction::SET_STATUS_LED.raw(), 3);
        assert_eq!(HostFunction::ALLOW_SYMLINKS_CREATE.raw(), 4);
        assert_eq!(
            HostFunction::ADD_MAPPING.parameter_count(),
            Some(ParameterCount::Exactly(4))
        );
        assert_eq!(HostFunction::ALLOW_SYMLINKS_CREATE.parameter_count(), None);
    }

    #[test]
    fn linux_create_flag_combinations_decompose_into_fields() {
        // opendir: DIRECTORY | OPEN_IF_EXISTS | FAIL_IF_NEW | READ.
        let opendir = CreateFlags::from_bits_retain(0x1104);
        assert!(opendir.contains(CreateFlags::DIRECTORY));
        assert_eq!(opendir.if_exists(), CreateFlags::ACT_OPEN_IF_EXISTS);
        assert_eq!(opendir.if_new(), CreateFlags::ACT_FAIL_IF_NEW);
        assert_eq!(opendir.access(), CreateFlags::ACCESS_READ);
        // mkdir: DIRECTORY | FAIL_IF_EXISTS | CREATE_IF_NEW | READWRITE.
        let mkdir = CreateFlags::from_bits_retain(0x3014);
        assert_eq!(mkdir.if_exists(), CreateFlags::ACT_FAIL_IF_EXISTS);
        assert_eq!(mkdir.if_new(), CreateFlags::ACT_CREATE_IF_NEW);
        assert_eq!(mkdir.access(), CreateFlags::ACCESS_READWRITE);
        // setattr: OPEN_IF_EXISTS | FAIL_IF_NEW | ATTR_WRITE.
        let setattr = CreateFlags::from_bits_retain(0x20100);
        assert_eq!(setattr.attr_access(), CreateFlags::ACCESS_ATTR_WRITE);
        assert_eq!(setattr.access(), CreateFlags::ACCESS_NONE);
        assert_eq!(setattr.deny(), CreateFlags::ACCESS_DENYNONE);
    }

    #[test]
    fn create_flags_have_reference_values() {
        assert_eq!(CreateFlags::LOOKUP.bits(), 0x1);
        assert_eq!(CreateFlags::OPEN_TARGET_DIRECTORY.bits(), 0x2);
        assert_eq!(CreateFlags::ACT_OVERWRITE_IF_EXISTS.bits(), 0x30);
        assert_eq!(CreateFlags::ACT_REPLACE_IF_EXISTS.bits(), 0x20);
        assert_eq!(CreateFlags::ACCESS_DENYALL.bits(), 0xC000);
        assert_eq!(CreateFlags::ACCESS_APPEND.bits(), 0x40000);
        assert_eq!(CreateFlags::all().bits(), 0x7_F137);
    }

    #[test]
    fn create_results_have_reference_numbers() {
        let values: std::vec::Vec<u32> = CreateResult::KNOWN.iter().map(|r| r.raw()).collect();
        assert_eq!(values, [0, 1, 2, 3, 4, 5]);
        assert_eq!(CreateResult::FILE_EXISTS.raw(), 3);
    }

    #[test]
    fn info_flags_of_linux_calls_decompose() {
        let set_file = InfoFlags::from_bits_retain(0x9);
        assert!(set_file.contains(InfoFlags::SET | InfoFlags::FILE));
        let get_volume = InfoFlags::from_bits_retain(0x10);
        assert_eq!(get_volume & InfoFlags::MODE_MASK, InfoFlags::GET);
        assert!(get_volume.contains(InfoFlags::VOLUME));
    }

    #[test]
    fn mode_type_bits_match_linux_values() {
        assert_eq!(RTFS_TYPE_DIRECTORY, 0x4000);
        assert_eq!(RTFS_TYPE_FILE, 0x8000);
        assert_eq!(RTFS_TYPE_SYMLINK, 0xA000);
        assert_eq!(RTFS_TYPE_MASK, 0xF000);
        assert_eq!(RTFS_DOS_DIRECTORY, 0x10_0000);
        assert_eq!(RTFS_DOS_NT_ENCRYPTED, 0x4000_0000);
        assert_eq!(RTFS_TYPE_MASK & RTFS_DOS_MASK, 0);
    }

    #[test]
    fn small_flag_sets_have_reference_values() {
        assert_eq!(RemoveFlags::all().bits(), 0x7);
        assert_eq!(
            (RenameFlags::FILE | RenameFlags::REPLACE_IF_EXISTS).bits(),
            5
        );
        assert_eq!(ListFlags::RESTART.bits(), 2);
        assert_eq!(LockFlags::WAIT.bits(), 4);
        assert_eq!(QueryMappingsFlags::all().bits(), 0x11);
        assert_eq!(MapInfoFlags::SYMLINK_CREATION.bits(), 0x10);
        assert_eq!(AddMappingFlags::MISSING.bits(), 0x8);
        assert_eq!(Features::WRITE_UPDATES_OFFSET.bits(), 1);
        assert_eq!(ObjAttrAdditional::EASIZE.raw(), 3);
        assert_eq!(ErrorStyle::LINUX.raw(), 2);
        assert_eq!(MappingStatus::DELETED.raw(), 2);
    }

    #[test]
    fn client_limits_follow_the_mapping_limit() {
        assert_eq!(SHFL_MAX_CLIENTS_PER_CATEGORY, 66);
    }
}
