//! The file server: shares, client sessions and every shared-folders operation, with decoded
//! arguments and typed errors.
//!
//! [`FileServer`] knows nothing about HGCM parameters: the service layer ([`crate::service`])
//! decodes a call, invokes one method here and encodes the result, so the operations can be
//! driven (and benchmarked) directly. Strings arrive as the raw `SHFLSTRING` bytes the guest
//! sent (already copied out of guest memory) and are validated here in the client's encoding.
//!
//! Per client ([`ClientId`]) the server keeps a session: string encoding (SET_UTF8), symlink
//! semantics (SET_SYMLINKS), path delimiter, map counts per root and the handle table. Path and
//! handle operations require the client to have mapped the root.

use std::collections::HashMap;
use std::os::fd::AsFd;

use vm_memory::VolatileSlice;
use vm_memory::bitmap::BitmapSlice;
use vmmdev_hgcm_sdk::ClientId;
use vmmdev_protocol::services::shared_folders::{
    FsObjInfo, ListFlags, LockFlags, MapInfoFlags, MapInfoQueryFlags, QueryMappingsFlags,
    RemoveFlags, RenameFlags, SHFL_HANDLE_NIL, SHFL_HANDLE_ROOT, SHFL_MAX_MAPS_PER_CLIENT_AND_ROOT,
    VolInfo,
};

use crate::config::{ServiceConfig, ShareConfig, SymlinkPolicy, names_match};
use crate::dir::{self, FillRequest, Filled, Listing, Pattern};
use crate::error::FsError;
use crate::handles::{FileObject, HandleTable, Object, OpenHandle};
use crate::info;
use crate::mappings::{Mapping, MappingError, MappingTable, Removal};
use crate::path::{Delimiter, GuestPath};
use crate::persist::{PersistError, SavedMap, SavedSession};
use crate::share::ShareRoot;
use crate::string::{self, Encoding};
use crate::sys::{self, Transfer};

/// Largest chunk the copy fallback moves at once.
const COPY_CHUNK: usize = 64 * 1024;
/// COPY_FILE_PART byte counts must stay below this (as in VirtualBox).
const MAX_COPY_PART: u64 = 1 << 60;
/// Most `..` steps taken to find a directory's depth below the share root.
const MAX_DEPTH_WALK: usize = 4096;

/// One client's state.
#[derive(Debug)]
pub struct Session {
    encoding: Encoding,
    symlinks_as_links: bool,
    delimiter: Option<Delimiter>,
    maps: HashMap<u32, u32>,
    handles: HandleTable,
}

impl Session {
    fn new(max_handles: u32) -> Session {
        Session {
            encoding: Encoding::Utf16,
            symlinks_as_links: false,
            delimiter: None,
            maps: HashMap::new(),
            handles: HandleTable::new(max_handles),
        }
    }

    /// The client's string encoding.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Number of open handles.
    pub fn open_handles(&self) -> usize {
        self.handles.len()
    }

    /// Hands out a handle for `object`, opened under `root` (whose slot has `root_version`).
    pub(crate) fn insert_handle(
        &mut self,
        root: u32,
        root_version: u32,
        object: Object,
    ) -> Result<u64, FsError> {
        self.handles.insert(OpenHandle {
            root,
            root_version,
            object,
        })
    }

    /// Whether another handle can be opened.
    pub(crate) fn has_handle_room(&self) -> bool {
        self.handles.has_room()
    }

    pub(crate) fn parse_path(&self, raw: &[u8]) -> Result<GuestPath, FsError> {
        let text = string::parse(raw, self.encoding)?;
        Ok(GuestPath::parse(
            &text,
            self.delimiter.unwrap_or(Delimiter::Slash),
        )?)
    }

    pub(crate) fn follows_symlinks(&self) -> bool {
        !self.symlinks_as_links
    }
}

/// What WRITE reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    /// Bytes written.
    pub count: usize,
    /// The file offset after the write (for append handles, at least the file's end).
    pub offset: u64,
}

/// What QUERY_MAP_INFO reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapInfo {
    /// The share name.
    pub name: String,
    /// The auto-mount point.
    pub mount_point: String,
    /// `SHFL_MIF_*` flags.
    pub flags: MapInfoFlags,
    /// The root ID's slot version.
    pub version: u32,
}

/// Why a host could not add a share.
#[derive(Debug, thiserror::Error)]
pub enum AddShareError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The table refused it.
    #[error(transparent)]
    Table(#[from] MappingError),
    /// The host directory cannot be opened (and the share was not marked missing).
    #[error("share directory cannot be opened")]
    Unreachable(#[source] std::io::Error),
}

/// The shared-folders file server.
#[derive(Debug)]
pub struct FileServer {
    mappings: MappingTable,
    sessions: HashMap<ClientId, Session>,
    max_handles: u32,
    /// The `getdents64` buffer all listings share.
    dirents: Vec<u8>,
}

/// The usable share a client names with `root`.
fn share_of<'a>(
    mappings: &'a MappingTable,
    session: &Session,
    root: u32,
) -> Result<(&'a Mapping, &'a ShareRoot), FsError> {
    if !session.maps.contains_key(&root) {
        return Err(FsError::UnknownRoot(root));
    }
    let mapping = mappings.get(root).ok_or(FsError::UnknownRoot(root))?;
    let share = mapping.usable_root().ok_or(FsError::ShareUnavailable)?;
    Ok((mapping, share))
}

/// The open handle `value` of `session` under `root`.
fn handle_of<'a>(
    mappings: &MappingTable,
    session: &'a mut Session,
    root: u32,
    value: u64,
) -> Result<(&'a mut OpenHandle, bool), FsError> {
    if value == SHFL_HANDLE_ROOT {
        return Err(FsError::InvalidParameter("handle 0"));
    }
    if value == SHFL_HANDLE_NIL {
        return Err(FsError::InvalidHandle);
    }
    let handle = session
        .handles
        .get_mut(value)
        .ok_or(FsError::InvalidHandle)?;
    if handle.root != root || handle.root_version != mappings.slot_version(root) {
        return Err(FsError::InvalidHandle);
    }
    let mapping = mappings.get(root).ok_or(FsError::InvalidHandle)?;
    if mapping.usable_root().is_none() {
        return Err(FsError::ShareUnavailable);
    }
    Ok((handle, mapping.config.writable))
}

fn file_of(handle: &mut OpenHandle) -> Result<&mut FileObject, FsError> {
    match &mut handle.object {
        Object::File(file) => Ok(file),
        Object::Dir(_) => Err(FsError::InvalidHandle),
    }
}

fn object_fd(handle: &OpenHandle) -> (std::os::fd::BorrowedFd<'_>, bool) {
    match &handle.object {
        Object::File(file) => (file.fd.as_fd(), file.access.path_only),
        Object::Dir(dir) => (dir.fd.as_fd(), dir.path_only),
    }
}

fn file_offset(value: u64) -> Result<i64, FsError> {
    i64::try_from(value).map_err(|_| FsError::InvalidParameter("negative offset"))
}

fn timespec(nanoseconds: i64) -> libc::timespec {
    libc::timespec {
        tv_sec: nanoseconds.div_euclid(1_000_000_000),
        tv_nsec: nanoseconds.rem_euclid(1_000_000_000),
    }
}

/// Copies from `src` to `dst` until `limit` bytes (or end of file), in the kernel when it can.
fn copy_range(
    src: std::os::fd::BorrowedFd<'_>,
    mut src_offset: i64,
    dst: std::os::fd::BorrowedFd<'_>,
    mut dst_offset: i64,
    limit: u64,
) -> Result<u64, FsError> {
    let mut copied = 0u64;
    let mut in_kernel = true;
    let mut chunk = Vec::new();
    while copied < limit {
        let want = usize::try_from(limit - copied)
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        if in_kernel {
            match sys::copy_file_range(src, &mut src_offset, dst, &mut dst_offset, want) {
                Ok(0) => break,
                Ok(n) => {
                    copied += n as u64;
                    continue;
                }
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EXDEV | libc::ENOSYS | libc::EINVAL | libc::EOPNOTSUPP)
                    ) =>
                {
                    in_kernel = false;
                    chunk.resize(COPY_CHUNK, 0);
                }
                Err(e) => return Err(FsError::io("copy")(e)),
            }
        }
        let want = want.min(COPY_CHUNK);
        let read =
            sys::pread(src, &mut chunk[..want], src_offset).map_err(FsError::io("copy read"))?;
        if read == 0 {
            break;
        }
        let mut written = 0;
        while written < read {
            let n = sys::pwrite(dst, &chunk[written..read], dst_offset + written as i64)
                .map_err(FsError::io("copy write"))?;
            if n == 0 {
                return Err(FsError::io("copy write")(
                    std::io::Error::from_raw_os_error(libc::ENOSPC),
                ));
            }
            written += n;
        }
        src_offset += read as i64;
        dst_offset += read as i64;
        copied += read as u64;
    }
    Ok(copied)
}

/// Whether a link `target` created in a directory `depth` levels below the share root stays
/// inside the share when read lexically from that directory.
fn target_stays_inside(depth: usize, target: &str) -> bool {
    if target.starts_with('/') {
        return false;
    }
    let mut level = depth;
    for component in target.split('/') {
        match component {
            "" | "." => {}
            ".." => match level.checked_sub(1) {
                Some(up) => level = up,
                None => return false,
            },
            _ => level += 1,
        }
    }
    true
}

impl FileServer {
    /// A server with the shares of `config` (directories that cannot be opened are refused).
    pub fn new(config: &ServiceConfig) -> Result<FileServer, AddShareError> {
        let mut server = FileServer {
            mappings: MappingTable::default(),
            sessions: HashMap::new(),
            max_handles: config.max_handles,
            dirents: Vec::new(),
        };
        for share in &config.shares {
            server.add_share(share.clone(), false)?;
        }
        Ok(server)
    }

    /// The mapping table version (what WAIT_FOR_MAPPINGS_CHANGES compares).
    pub fn mappings_version(&self) -> u32 {
        self.mappings.version()
    }

    /// A client's session.
    pub fn session(&self, client: ClientId) -> Option<&Session> {
        self.sessions.get(&client)
    }

    fn session_mut(&mut self, client: ClientId) -> Result<&mut Session, FsError> {
        self.sessions
            .get_mut(&client)
            .ok_or(FsError::InvalidParameter("unknown client"))
    }

    // -----------------------------------------------------------------------------------------
    // Host side
    // -----------------------------------------------------------------------------------------

    /// Adds a share. With `missing_ok` a directory that cannot be opened is added as missing
    /// (mappable, but every operation on it fails).
    pub fn add_share(
        &mut self,
        share: ShareConfig,
        missing_ok: bool,
    ) -> Result<u32, AddShareError> {
        share.validate()?;
        if self.mappings.find(&share.name).is_some() {
            return Err(MappingError::DuplicateName(share.name).into());
        }
        let root = match ShareRoot::open(&share.path, share.symlinks) {
            Ok(root) => Some(root),
            Err(_) if missing_ok => None,
            Err(e) => return Err(AddShareError::Unreachable(e)),
        };
        let id = self.mappings.add(share, root)?;
        log::info!("shared folder {id} added");
        Ok(id)
    }

    /// Removes a share by name.
    pub fn remove_share(&mut self, name: &str) -> Result<Removal, MappingError> {
        let (id, removal) = self.mappings.remove(name)?;
        log::info!("shared folder {id} removed ({removal:?})");
        Ok(removal)
    }

    /// The shares, one line each: `root<TAB>config entry<TAB>state<TAB>maps`, where state is
    /// `ok`, `missing` (directory unavailable) or `removed` (placeholder until unmapped).
    pub fn share_list(&self) -> String {
        let mut out = String::new();
        for (id, mapping) in self.mappings.iter() {
            let state = if mapping.placeholder {
                "removed"
            } else if mapping.root.is_none() {
                "missing"
            } else {
                "ok"
            };
            out.push_str(&format!(
                "{id}\t{}\t{state}\t{}\n",
                mapping.config.to_config_entry(),
                mapping.map_count
            ));
        }
        out
    }

    // -----------------------------------------------------------------------------------------
    // Clients
    // -----------------------------------------------------------------------------------------

    /// A client connected.
    pub fn connect(&mut self, client: ClientId) {
        self.sessions.insert(client, Session::new(self.max_handles));
    }

    /// A client went away: its handles close and its maps are undone.
    pub fn disconnect(&mut self, client: ClientId) {
        let Some(session) = self.sessions.remove(&client) else {
            return;
        };
        for (root, count) in session.maps {
            if let Some(mapping) = self.mappings.get_mut(root) {
                mapping.map_count = mapping.map_count.saturating_sub(count);
                if mapping.map_count == 0 {
                    mapping.guest_case_sensitive = None;
                }
            }
            self.mappings.release_if_unused_placeholder(root);
        }
    }

    /// The client's session as saved bytes (see [`crate::persist`]).
    pub fn save_session(&self, client: ClientId) -> Vec<u8> {
        let Some(session) = self.sessions.get(&client) else {
            return SavedSession::default().encode();
        };
        let mut maps: Vec<SavedMap> = session
            .maps
            .iter()
            .filter_map(|(&root, &count)| {
                let mapping = self.mappings.get(root)?;
                Some(SavedMap {
                    root,
                    count,
                    case_sensitive: mapping.guest_case_sensitive.unwrap_or(true),
                    name: mapping.config.name.clone(),
                })
            })
            .collect();
        maps.sort_by_key(|map| map.root);
        SavedSession {
            utf8: session.encoding == Encoding::Utf8,
            symlinks_as_links: session.symlinks_as_links,
            delimiter: session.delimiter,
            maps,
        }
        .encode()
    }

    /// Restores a saved session for `client` (connected again by the restore). Maps whose root
    /// ID no longer names the same share are dropped.
    pub fn restore_session(&mut self, client: ClientId, data: &[u8]) -> Result<(), PersistError> {
        let saved = SavedSession::decode(data)?;
        self.disconnect(client);
        let mut session = Session::new(self.max_handles);
        session.encoding = if saved.utf8 {
            Encoding::Utf8
        } else {
            Encoding::Utf16
        };
        session.symlinks_as_links = saved.symlinks_as_links;
        session.delimiter = saved.delimiter;
        for map in saved.maps {
            let Some(mapping) = self.mappings.get_mut(map.root) else {
                log::warn!("restored {client}: root {} is gone", map.root);
                continue;
            };
            let compatible = mapping
                .guest_case_sensitive
                .is_none_or(|mapped| mapped == map.case_sensitive);
            if mapping.placeholder || !names_match(&mapping.config.name, &map.name) || !compatible {
                log::warn!(
                    "restored {client}: root {} no longer names that share",
                    map.root
                );
                continue;
            }
            let count = map.count.min(SHFL_MAX_MAPS_PER_CLIENT_AND_ROOT);
            if count == 0 {
                continue;
            }
            mapping.map_count = mapping.map_count.saturating_add(count);
            mapping.guest_case_sensitive = Some(map.case_sensitive);
            session.maps.insert(map.root, count);
        }
        self.sessions.insert(client, session);
        Ok(())
    }

    /// SET_UTF8: the client's strings are UTF-8 from now on.
    pub fn set_utf8(&mut self, client: ClientId) -> Result<(), FsError> {
        self.session_mut(client)?.encoding = Encoding::Utf8;
        Ok(())
    }

    /// SET_SYMLINKS: stat and LIST report symlinks themselves from now on.
    pub fn set_symlinks(&mut self, client: ClientId) -> Result<(), FsError> {
        self.session_mut(client)?.symlinks_as_links = true;
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Mappings
    // -----------------------------------------------------------------------------------------

    /// MAP_FOLDER: maps the share named by the `SHFLSTRING` `name`; returns its root ID.
    pub fn map_folder(
        &mut self,
        client: ClientId,
        name: &[u8],
        delimiter: u32,
        case_sensitive: bool,
    ) -> Result<u32, FsError> {
        let mappings = &mut self.mappings;
        let session = self
            .sessions
            .get_mut(&client)
            .ok_or(FsError::InvalidParameter("unknown client"))?;
        let name = string::parse(name, session.encoding)?;
        let delimiter =
            Delimiter::from_code_point(delimiter).ok_or(FsError::Delimiter(delimiter))?;
        if session.delimiter.is_some_and(|d| d != delimiter) {
            return Err(FsError::Delimiter(delimiter.as_char().into()));
        }
        let root = mappings.find(&name).ok_or(FsError::ShareNotFound)?;
        let mapping = mappings.get_mut(root).ok_or(FsError::ShareNotFound)?;
        if mapping
            .guest_case_sensitive
            .is_some_and(|mapped| mapped != case_sensitive)
        {
            return Err(FsError::IncompatibleCaseSensitivity);
        }
        let count = session.maps.entry(root).or_insert(0);
        if *count >= SHFL_MAX_MAPS_PER_CLIENT_AND_ROOT {
            return Err(FsError::TooManyMaps);
        }
        *count += 1;
        session.delimiter = Some(delimiter);
        mapping.map_count += 1;
        mapping.guest_case_sensitive = Some(case_sensitive);
        Ok(root)
    }

    /// UNMAP_FOLDER: undoes one map; the client's handles under the root close with its last.
    pub fn unmap_folder(&mut self, client: ClientId, root: u32) -> Result<(), FsError> {
        let mappings = &mut self.mappings;
        let session = self
            .sessions
            .get_mut(&client)
            .ok_or(FsError::InvalidParameter("unknown client"))?;
        let mapping = mappings.get_mut(root).ok_or(FsError::ShareNotFound)?;
        let count = session
            .maps
            .get_mut(&root)
            .ok_or(FsError::NotMapped(root))?;
        *count -= 1;
        if *count == 0 {
            session.maps.remove(&root);
            session.handles.remove_root(root);
        }
        mapping.map_count = mapping.map_count.saturating_sub(1);
        if mapping.map_count == 0 {
            mapping.guest_case_sensitive = None;
        }
        mappings.release_if_unused_placeholder(root);
        Ok(())
    }

    /// QUERY_MAPPINGS: the root IDs to report (all, or the usable auto-mount ones).
    pub fn query_mappings(&mut self, client: ClientId, flags: u32) -> Result<Vec<u32>, FsError> {
        let flags =
            QueryMappingsFlags::from_bits(flags).ok_or(FsError::InvalidParameter("flags"))?;
        let session = self.session_mut(client)?;
        if flags.contains(QueryMappingsFlags::UTF8) {
            session.encoding = Encoding::Utf8;
        }
        let automount_only = flags.contains(QueryMappingsFlags::AUTOMOUNT);
        Ok(self
            .mappings
            .iter()
            .filter(|(_, m)| !automount_only || (m.config.auto_mount && !m.placeholder))
            .map(|(id, _)| id)
            .collect())
    }

    /// QUERY_MAP_NAME: the share name of a root ID.
    pub fn query_map_name(&self, root: u32) -> Result<String, FsError> {
        self.mappings
            .get(root)
            .map(|m| m.config.name.clone())
            .ok_or(FsError::UnknownRoot(root))
    }

    /// QUERY_MAP_INFO: details of a root ID (flags as VirtualBox 7.0 sets them, see
    /// [`MapInfoFlags`]).
    pub fn query_map_info(&self, root: u32, query: u64) -> Result<MapInfo, FsError> {
        MapInfoQueryFlags::from_bits(query).ok_or(FsError::InvalidParameter("query flags"))?;
        let mapping = self.mappings.get(root).ok_or(FsError::UnknownRoot(root))?;
        let mut flags = MapInfoFlags::empty();
        flags.set(MapInfoFlags::WRITABLE, mapping.config.writable);
        flags.set(MapInfoFlags::AUTO_MOUNT, mapping.config.auto_mount);
        // VirtualBox reports the host's case *sensitivity* under the HOST_ICASE name; the host
        // file systems served here are case-sensitive.
        flags.insert(MapInfoFlags::HOST_ICASE);
        flags.set(
            MapInfoFlags::GUEST_ICASE,
            mapping.guest_case_sensitive == Some(true),
        );
        flags.set(
            MapInfoFlags::SYMLINK_CREATION,
            mapping.config.symlinks.allows_creation(),
        );
        Ok(MapInfo {
            name: mapping.config.name.clone(),
            mount_point: mapping.config.mount_point.clone(),
            flags,
            version: self.mappings.slot_version(root),
        })
    }

    // -----------------------------------------------------------------------------------------
    // Handles
    // -----------------------------------------------------------------------------------------

    pub(crate) fn parts(
        &mut self,
        client: ClientId,
    ) -> Result<(&MappingTable, &mut Session), FsError> {
        let session = self
            .sessions
            .get_mut(&client)
            .ok_or(FsError::InvalidParameter("unknown client"))?;
        Ok((&self.mappings, session))
    }

    /// CLOSE.
    pub fn close(&mut self, client: ClientId, root: u32, handle: u64) -> Result<(), FsError> {
        let (mappings, session) = self.parts(client)?;
        if handle == SHFL_HANDLE_ROOT {
            return Err(FsError::InvalidParameter("handle 0"));
        }
        let open = session
            .handles
            .get_mut(handle)
            .ok_or(FsError::InvalidHandle)?;
        if open.root != root || open.root_version != mappings.slot_version(root) {
            return Err(FsError::InvalidHandle);
        }
        session.handles.remove(handle);
        Ok(())
    }

    /// READ: up to `count` bytes at `offset` straight into `dst` (no intermediate copy).
    pub fn read<B: BitmapSlice>(
        &mut self,
        client: ClientId,
        root: u32,
        handle: u64,
        offset: u64,
        count: usize,
        dst: &[VolatileSlice<'_, B>],
    ) -> Result<usize, FsError> {
        let position = file_offset(offset)?;
        let (mappings, session) = self.parts(client)?;
        let (open, _) = handle_of(mappings, session, root, handle)?;
        let file = file_of(open)?;
        if !file.access.read {
            return Err(FsError::InvalidHandle);
        }
        sys::transfer(file.fd.as_fd(), Transfer::Read, dst, count, position as u64)
            .map_err(FsError::io("read"))
    }

    /// WRITE: up to `count` bytes from `src` at `offset` (appended for append handles).
    pub fn write<B: BitmapSlice>(
        &mut self,
        client: ClientId,
        root: u32,
        handle: u64,
        offset: u64,
        count: usize,
        src: &[VolatileSlice<'_, B>],
    ) -> Result<Written, FsError> {
        let position = file_offset(offset)?;
        let (mappings, session) = self.parts(client)?;
        let (open, writable) = handle_of(mappings, session, root, handle)?;
        if !writable {
            return Err(FsError::ReadOnly);
        }
        let file = file_of(open)?;
        if !file.access.write {
            return Err(FsError::InvalidHandle);
        }
        if count == 0 {
            return Ok(Written { count: 0, offset });
        }
        let written = sys::transfer(
            file.fd.as_fd(),
            Transfer::Write,
            src,
            count,
            position as u64,
        )
        .map_err(FsError::io("write"))?;
        let mut end = offset.saturating_add(written as u64);
        if file.access.append {
            let st = sys::fstat(file.fd.as_fd()).map_err(FsError::io("stat"))?;
            end = end.max(st.stx_size);
        }
        Ok(Written {
            count: written,
            offset: end,
        })
    }

    /// FLUSH.
    pub fn flush(&mut self, client: ClientId, root: u32, handle: u64) -> Result<(), FsError> {
        let (mappings, session) = self.parts(client)?;
        let (open, writable) = handle_of(mappings, session, root, handle)?;
        if !writable {
            return Err(FsError::ReadOnly);
        }
        let file = file_of(open)?;
        sys::fsync(file.fd.as_fd()).map_err(FsError::io("flush"))
    }

    /// LOCK: validated, then (as VirtualBox on POSIX hosts) nothing to do: byte-range locks
    /// are not enforced between guest and host.
    pub fn lock(
        &mut self,
        client: ClientId,
        root: u32,
        handle: u64,
        flags: u32,
    ) -> Result<(), FsError> {
        let flags = LockFlags::from_bits(flags).ok_or(FsError::InvalidParameter("lock flags"))?;
        if flags.contains(LockFlags::ENTIRE)
            || flags.contains(LockFlags::SHARED | LockFlags::EXCLUSIVE)
        {
            return Err(FsError::InvalidParameter("lock flags"));
        }
        let (mappings, session) = self.parts(client)?;
        let (open, _) = handle_of(mappings, session, root, handle)?;
        file_of(open)?;
        Ok(())
    }

    /// SET_FILE_SIZE / INFORMATION SET+SIZE: truncates or extends; returns the new info.
    pub fn set_file_size(
        &mut self,
        client: ClientId,
        root: u32,
        handle: u64,
        size: i64,
    ) -> Result<FsObjInfo, FsError> {
        if size < 0 {
            return Err(FsError::InvalidParameter("negative size"));
        }
        let (mappings, session) = self.parts(client)?;
        let (open, writable) = handle_of(mappings, session, root, handle)?;
        if !writable {
            return Err(FsError::ReadOnly);
        }
        let file = file_of(open)?;
        if !file.access.write {
            return Err(FsError::InvalidHandle);
        }
        sys::ftruncate(file.fd.as_fd(), size).map_err(FsError::io("truncate"))?;
        let st = sys::fstat(file.fd.as_fd()).map_err(FsError::io("stat"))?;
        Ok(info::obj_info(&st, None))
    }

    /// INFORMATION GET+FILE.
    pub fn file_info(
        &mut self,
        client: ClientId,
        root: u32,
        handle: u64,
    ) -> Result<FsObjInfo, FsError> {
        let (mappings, session) = self.parts(client)?;
        let (open, _) = handle_of(mappings, session, root, handle)?;
        let (fd, _) = object_fd(open);
        let st = sys::fstat(fd).map_err(FsError::io("stat"))?;
        Ok(info::obj_info(&st, None))
    }

    /// INFORMATION SET+FILE: applies the non-zero times and, if any Unix bits are present, the
    /// permission bits (owner read, and execute for directories, are kept as VirtualBox does;
    /// set-uid, set-gid and sticky are never set). Returns the resulting info.
    pub fn set_file_info(
        &mut self,
        client: ClientId,
        root: u32,
        handle: u64,
        wanted: &FsObjInfo,
    ) -> Result<FsObjInfo, FsError> {
        let (mappings, session) = self.parts(client)?;
        let (open, writable) = handle_of(mappings, session, root, handle)?;
        if !writable {
            return Err(FsError::ReadOnly);
        }
        let (fd, path_only) = object_fd(open);
        let access = wanted.access_time.get();
        let modification = wanted.modification_time.get();
        if access != 0 || modification != 0 {
            sys::set_times(
                fd,
                path_only,
                (access != 0).then(|| timespec(access)),
                (modification != 0).then(|| timespec(modification)),
            )
            .map_err(FsError::io("set times"))?;
        }
        let mode = wanted.attr.mode.get();
        if mode & 0o177_777 != 0 {
            let is_dir = matches!(open.object, Object::Dir(_));
            let keep = if is_dir { 0o500 } else { 0o400 };
            sys::set_mode(fd, path_only, (mode & 0o777) | keep).map_err(FsError::io("set mode"))?;
        }
        let st = sys::fstat(fd).map_err(FsError::io("stat"))?;
        Ok(info::obj_info(&st, None))
    }

    /// INFORMATION GET+VOLUME (the handle is ignored, as Linux passes 0).
    pub fn volume_info(&mut self, client: ClientId, root: u32) -> Result<VolInfo, FsError> {
        let (mappings, session) = self.parts(client)?;
        let (mapping, share) = share_of(mappings, session, root)?;
        let st = sys::fstatvfs(share.fd()).map_err(FsError::io("statfs"))?;
        Ok(info::vol_info(&st, !mapping.config.writable))
    }

    /// LIST: packs the next entries of a directory handle into `out` (at most `capacity`
    /// bytes). A `filter` (raw `SHFLSTRING`, directory path plus wildcard pattern) on the
    /// first call starts a separate filtered search that later calls continue.
    #[allow(clippy::too_many_arguments)]
    pub fn list(
        &mut self,
        client: ClientId,
        root: u32,
        handle: u64,
        flags: ListFlags,
        filter: Option<&[u8]>,
        capacity: usize,
        out: &mut Vec<u8>,
    ) -> Result<Filled, FsError> {
        let FileServer {
            mappings,
            sessions,
            dirents,
            ..
        } = self;
        let session = sessions
            .get_mut(&client)
            .ok_or(FsError::InvalidParameter("unknown client"))?;
        let filter = match filter {
            Some(raw) => Some(session.parse_path(raw)?),
            None => None,
        };
        let request = FillRequest {
            encoding: session.encoding,
            follow: session.follows_symlinks(),
            one: flags.contains(ListFlags::RETURN_ONE),
            capacity,
        };
        let (_, share) = share_of(mappings, session, root)?;
        let (open, _) = handle_of(mappings, session, root, handle)?;
        let Object::Dir(dir) = &mut open.object else {
            return Err(FsError::InvalidHandle);
        };
        let restart = flags.contains(ListFlags::RESTART);
        let listing = match (&mut dir.listing, filter) {
            (Some(listing), _) => {
                if restart {
                    listing.rewind()?;
                }
                listing
            }
            (slot @ None, Some(filter)) => {
                let pattern = match filter.components().last() {
                    Some(last) => Pattern::new(last)?,
                    None => Pattern::new("*")?,
                };
                let search_dir = filter.parent();
                let fd = share.open_path(&search_dir, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
                slot.insert(Listing::search(fd, search_dir, pattern))
            }
            (slot @ None, None) => {
                let fd = if dir.path_only {
                    // An attribute-only handle: open the same directory for reading.
                    share.open_at(dir.fd.as_fd(), c".", libc::O_RDONLY | libc::O_DIRECTORY, 0)?
                } else {
                    dir.fd.try_clone().map_err(FsError::io("dup"))?
                };
                slot.insert(Listing::new(fd, dir.path.clone()))
            }
        };
        dir::fill(listing, share, &request, out, dirents)
    }

    // -----------------------------------------------------------------------------------------
    // Path operations
    // -----------------------------------------------------------------------------------------

    /// REMOVE.
    pub fn remove(
        &mut self,
        client: ClientId,
        root: u32,
        path: &[u8],
        flags: u32,
    ) -> Result<(), FsError> {
        let flags = RemoveFlags::from_bits(flags).ok_or(FsError::InvalidFlags(flags))?;
        let (mappings, session) = self.parts(client)?;
        let (mapping, share) = share_of(mappings, session, root)?;
        let path = session.parse_path(path)?;
        if !mapping.config.writable {
            return Err(FsError::ReadOnly);
        }
        let (parent, name) = share.entry(&path)?;
        if flags.contains(RemoveFlags::SYMLINK) {
            let st = sys::statx(parent.as_fd(), &name, false).map_err(FsError::io("stat"))?;
            if !info::is_symlink(u32::from(st.stx_mode)) {
                return Err(FsError::NotSymlink);
            }
            sys::unlinkat(parent.as_fd(), &name, false).map_err(FsError::io("unlink"))
        } else if flags.contains(RemoveFlags::FILE) {
            sys::unlinkat(parent.as_fd(), &name, false).map_err(FsError::io("unlink"))
        } else {
            sys::unlinkat(parent.as_fd(), &name, true).map_err(FsError::io("rmdir"))
        }
    }

    /// CLOSE_AND_REMOVE: closes `handle` (unless NIL), then removes `path`.
    pub fn close_and_remove(
        &mut self,
        client: ClientId,
        root: u32,
        path: &[u8],
        flags: u32,
        handle: u64,
    ) -> Result<(), FsError> {
        if handle != SHFL_HANDLE_NIL {
            self.close(client, root, handle)?;
        }
        self.remove(client, root, path, flags)
    }

    /// RENAME.
    pub fn rename(
        &mut self,
        client: ClientId,
        root: u32,
        from: &[u8],
        to: &[u8],
        flags: u32,
    ) -> Result<(), FsError> {
        let flags =
            RenameFlags::from_bits(flags).ok_or(FsError::InvalidParameter("rename flags"))?;
        let (mappings, session) = self.parts(client)?;
        let (mapping, share) = share_of(mappings, session, root)?;
        let from = session.parse_path(from)?;
        let to = session.parse_path(to)?;
        if !mapping.config.writable {
            return Err(FsError::ReadOnly);
        }
        let (from_dir, from_name) = share.entry(&from)?;
        let (to_dir, to_name) = share.entry(&to)?;
        let any_kind = RenameFlags::FILE | RenameFlags::DIR;
        if !flags.contains(any_kind) {
            let st =
                sys::statx(from_dir.as_fd(), &from_name, false).map_err(FsError::io("stat"))?;
            let is_dir = info::is_directory(u32::from(st.stx_mode));
            if flags.contains(RenameFlags::FILE) && is_dir {
                return Err(FsError::IsDirectory);
            }
            if !flags.contains(RenameFlags::FILE) && !is_dir {
                return Err(FsError::NotDirectory);
            }
        }
        let replace = flags.contains(RenameFlags::REPLACE_IF_EXISTS);
        match sys::renameat2(
            from_dir.as_fd(),
            &from_name,
            to_dir.as_fd(),
            &to_name,
            replace,
        ) {
            Err(e) if !replace && e.raw_os_error() == Some(libc::EINVAL) => {
                // File systems without RENAME_NOREPLACE: check, then rename (not atomic).
                if sys::statx(to_dir.as_fd(), &to_name, false).is_ok() {
                    return Err(FsError::io("rename")(std::io::Error::from_raw_os_error(
                        libc::EEXIST,
                    )));
                }
                sys::renameat2(from_dir.as_fd(), &from_name, to_dir.as_fd(), &to_name, true)
                    .map_err(FsError::io("rename"))
            }
            other => other.map_err(FsError::io("rename")),
        }
    }

    /// READLINK: the link's target with `/` turned into the client's delimiter (no terminator).
    pub fn readlink(
        &mut self,
        client: ClientId,
        root: u32,
        path: &[u8],
    ) -> Result<Vec<u8>, FsError> {
        let (mappings, session) = self.parts(client)?;
        let (_, share) = share_of(mappings, session, root)?;
        let path = session.parse_path(path)?;
        let (parent, name) = share.entry(&path)?;
        let mut target = sys::readlinkat(parent.as_fd(), &name).map_err(FsError::io("readlink"))?;
        if session.delimiter == Some(Delimiter::Backslash) {
            for byte in &mut target {
                if *byte == b'/' {
                    *byte = b'\\';
                }
            }
        }
        Ok(target)
    }

    /// SYMLINK: creates `path` pointing at `target` (both raw `SHFLSTRING`s), as the share's
    /// [`SymlinkPolicy`] allows; returns the new link's info.
    pub fn symlink(
        &mut self,
        client: ClientId,
        root: u32,
        path: &[u8],
        target: &[u8],
    ) -> Result<FsObjInfo, FsError> {
        let (mappings, session) = self.parts(client)?;
        if session.encoding != Encoding::Utf8 {
            return Err(FsError::SymlinkNeedsUtf8);
        }
        let (mapping, share) = share_of(mappings, session, root)?;
        let path = session.parse_path(path)?;
        let target = string::parse(target, Encoding::Utf8)?;
        if !mapping.config.writable {
            return Err(FsError::ReadOnly);
        }
        if !share.policy().allows_creation() {
            return Err(FsError::SymlinkCreationDisabled);
        }
        let (parent, name) = share.entry(&path)?;
        if share.policy() == SymlinkPolicy::Inside {
            let depth = depth_below_root(share, parent.as_fd())?;
            if !target_stays_inside(depth, &target) {
                return Err(FsError::SymlinkTargetOutside);
            }
        }
        // Parsed from a validated SHFLSTRING: no embedded NUL.
        let target =
            std::ffi::CString::new(target).map_err(|_| FsError::InvalidParameter("target"))?;
        sys::symlinkat(&target, parent.as_fd(), &name).map_err(FsError::io("symlink"))?;
        let st = sys::statx(parent.as_fd(), &name, false).map_err(FsError::io("stat"))?;
        Ok(info::obj_info(&st, name.to_str().ok()))
    }

    /// COPY_FILE: copies a whole regular file into a new file (which must not exist).
    #[allow(clippy::too_many_arguments)]
    pub fn copy_file(
        &mut self,
        client: ClientId,
        from_root: u32,
        from: &[u8],
        to_root: u32,
        to: &[u8],
        flags: u32,
    ) -> Result<(), FsError> {
        if flags != 0 {
            return Err(FsError::InvalidFlags(flags));
        }
        let (mappings, session) = self.parts(client)?;
        let (_, from_share) = share_of(mappings, session, from_root)?;
        let (to_mapping, to_share) = share_of(mappings, session, to_root)?;
        let from = session.parse_path(from)?;
        let to = session.parse_path(to)?;
        if !to_mapping.config.writable {
            return Err(FsError::ReadOnly);
        }
        let src =
            from_share.open_path(&from, libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY, 0)?;
        let st = sys::fstat(src.as_fd()).map_err(FsError::io("stat"))?;
        let mode = u32::from(st.stx_mode);
        if info::is_directory(mode) {
            return Err(FsError::IsDirectory);
        }
        if mode & libc::S_IFMT != libc::S_IFREG {
            return Err(FsError::UnsupportedObject);
        }
        let (dir, name) = to_share.entry(&to)?;
        let dst = to_share.open_at(
            dir.as_fd(),
            &name,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
            mode & 0o777,
        )?;
        if let Err(e) = copy_range(src.as_fd(), 0, dst.as_fd(), 0, u64::MAX) {
            drop(dst);
            let _ = sys::unlinkat(dir.as_fd(), &name, false);
            return Err(e);
        }
        Ok(())
    }

    /// COPY_FILE_PART: copies `count` bytes between two open files; returns the bytes copied.
    #[allow(clippy::too_many_arguments)]
    pub fn copy_file_part(
        &mut self,
        client: ClientId,
        (from_root, from_handle, from_offset): (u32, u64, u64),
        (to_root, to_handle, to_offset): (u32, u64, u64),
        count: u64,
        flags: u32,
    ) -> Result<u64, FsError> {
        if flags != 0 {
            return Err(FsError::InvalidFlags(flags));
        }
        if count >= MAX_COPY_PART {
            return Err(FsError::InvalidParameter("copy count"));
        }
        let (from_offset, to_offset) = (file_offset(from_offset)?, file_offset(to_offset)?);
        let (mappings, session) = self.parts(client)?;
        let (src, _) = handle_of(mappings, session, from_root, from_handle)?;
        let src = file_of(src)?;
        if !src.access.read {
            return Err(FsError::InvalidHandle);
        }
        let src_fd = src.fd.try_clone().map_err(FsError::io("dup"))?;
        let (dst, writable) = handle_of(mappings, session, to_root, to_handle)?;
        if !writable {
            return Err(FsError::ReadOnly);
        }
        let dst = file_of(dst)?;
        if !dst.access.write {
            return Err(FsError::InvalidHandle);
        }
        copy_range(
            src_fd.as_fd(),
            from_offset,
            dst.fd.as_fd(),
            to_offset,
            count,
        )
    }

    /// What CREATE works with: the mapping, its usable root, the root's slot version and the
    /// client's session.
    pub(crate) fn share_parts(
        &mut self,
        client: ClientId,
        root: u32,
    ) -> Result<(&Mapping, &ShareRoot, u32, &mut Session), FsError> {
        let session = self
            .sessions
            .get_mut(&client)
            .ok_or(FsError::InvalidParameter("unknown client"))?;
        let (mapping, share) = share_of(&self.mappings, session, root)?;
        Ok((mapping, share, self.mappings.slot_version(root), session))
    }
}

/// How many levels `dir` lies below the share root, found by walking `..` (so symlinked or
/// `..`-laden guest paths cannot misstate it).
fn depth_below_root(share: &ShareRoot, dir: std::os::fd::BorrowedFd<'_>) -> Result<usize, FsError> {
    let mut current = dir.try_clone_to_owned().map_err(FsError::io("dup"))?;
    for depth in 0..MAX_DEPTH_WALK {
        let st = sys::fstat(current.as_fd()).map_err(FsError::io("stat"))?;
        if share.is_root(&st) {
            return Ok(depth);
        }
        let parent = sys::openat2(
            current.as_fd(),
            c"..",
            libc::O_PATH | libc::O_DIRECTORY,
            0,
            0,
        )
        .map_err(FsError::io("open parent"))?;
        let parent_st = sys::fstat(parent.as_fd()).map_err(FsError::io("stat"))?;
        let same_device = (parent_st.stx_dev_major, parent_st.stx_dev_minor)
            == (st.stx_dev_major, st.stx_dev_minor);
        if same_device && parent_st.stx_ino == st.stx_ino {
            // Reached the file system root without meeting the share root.
            return Err(FsError::OutsideShare);
        }
        current = parent;
    }
    Err(FsError::OutsideShare)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use vmmdev_protocol::services::shared_folders::CreateParms;
    use zerocopy::FromZeros;
    use zerocopy::little_endian::{U32, U64};

    const CLIENT: ClientId = ClientId(7);

    fn shfl(text: &str) -> Vec<u8> {
        string::build(text, Encoding::Utf8).expect("short")
    }

    /// A server sharing `dir` as "data" (and a second share "two"), with `CLIENT` mapped to
    /// "data".
    fn server(dir: &TempDir) -> (FileServer, u32) {
        std::fs::create_dir_all(dir.path().join("one")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("two")).expect("mkdir");
        std::fs::write(dir.path().join("one/f"), b"x").expect("write");
        let config = ServiceConfig {
            shares: vec![
                ShareConfig::new("data", dir.path().join("one")),
                ShareConfig::new("two", dir.path().join("two")),
            ],
            ..ServiceConfig::default()
        };
        let mut server = FileServer::new(&config).expect("server");
        server.connect(CLIENT);
        server.set_utf8(CLIENT).expect("utf8");
        let root = server
            .map_folder(CLIENT, &shfl("data"), u32::from(b'/'), true)
            .expect("map");
        (server, root)
    }

    fn open(server: &mut FileServer, root: u32, path: &str) -> u64 {
        let mut parms = CreateParms::new_zeroed();
        parms.handle = U64::new(SHFL_HANDLE_NIL);
        parms.create_flags = U32::new(0x1100);
        server
            .create(CLIENT, root, &shfl(path), &mut parms)
            .expect("open");
        parms.handle.get()
    }

    #[test]
    fn last_unmap_of_a_root_closes_the_clients_handles_there() {
        let dir = TempDir::new();
        let (mut server, root) = server(&dir);
        let two = server
            .map_folder(CLIENT, &shfl("two"), u32::from(b'/'), true)
            .expect("map");
        open(&mut server, root, "/f");
        open(&mut server, two, "/");
        server.unmap_folder(CLIENT, root).expect("unmap");
        assert_eq!(server.session(CLIENT).map(Session::open_handles), Some(1));
    }

    #[test]
    fn operations_need_the_client_to_have_mapped_the_root() {
        let dir = TempDir::new();
        let (mut server, _) = server(&dir);
        let mut parms = CreateParms::new_zeroed();
        parms.create_flags = U32::new(0x101);
        assert!(matches!(
            server.create(CLIENT, 1, &shfl("/"), &mut parms),
            Err(FsError::UnknownRoot(1))
        ));
    }

    #[test]
    fn mapping_with_another_case_sensitivity_is_refused_while_mapped() {
        let dir = TempDir::new();
        let (mut server, _) = server(&dir);
        server.connect(ClientId(8));
        server.set_utf8(ClientId(8)).expect("utf8");
        assert!(matches!(
            server.map_folder(ClientId(8), &shfl("data"), u32::from(b'/'), false),
            Err(FsError::IncompatibleCaseSensitivity)
        ));
    }

    #[test]
    fn disconnect_releases_the_clients_maps() {
        let dir = TempDir::new();
        let (mut server, root) = server(&dir);
        server.disconnect(CLIENT);
        assert_eq!(server.remove_share("data"), Ok(Removal::Removed));
        assert!(server.query_map_name(root).is_err());
    }

    #[test]
    fn restored_session_keeps_encoding_maps_and_drops_handles() {
        let dir = TempDir::new();
        let (mut server, root) = server(&dir);
        server.set_symlinks(CLIENT).expect("symlinks");
        let handle = open(&mut server, root, "/f");
        let saved = server.save_session(CLIENT);
        let mut restored = server_without_client(&dir);
        restored.connect(CLIENT);
        restored.restore_session(CLIENT, &saved).expect("restores");
        let session = restored.session(CLIENT).expect("session");
        assert_eq!(session.encoding(), Encoding::Utf8);
        assert!(!session.follows_symlinks());
        assert_eq!(session.open_handles(), 0);
        assert!(restored.close(CLIENT, root, handle).is_err());
        assert_eq!(open(&mut restored, root, "/f") & 0xFFFF_FFFF, 1);
    }

    #[test]
    fn restored_maps_of_a_renamed_root_are_dropped() {
        let dir = TempDir::new();
        let (server, root) = server(&dir);
        let saved = server.save_session(CLIENT);
        let config = ServiceConfig {
            shares: vec![ShareConfig::new("other", dir.path().join("two"))],
            ..ServiceConfig::default()
        };
        let mut restored = FileServer::new(&config).expect("server");
        restored.connect(CLIENT);
        restored.restore_session(CLIENT, &saved).expect("restores");
        let mut parms = CreateParms::new_zeroed();
        parms.create_flags = U32::new(0x101);
        assert!(
            restored
                .create(CLIENT, root, &shfl("/"), &mut parms)
                .is_err()
        );
    }

    fn server_without_client(dir: &TempDir) -> FileServer {
        let config = ServiceConfig {
            shares: vec![
                ShareConfig::new("data", dir.path().join("one")),
                ShareConfig::new("two", dir.path().join("two")),
            ],
            ..ServiceConfig::default()
        };
        FileServer::new(&config).expect("server")
    }

    #[test]
    fn relative_targets_that_stay_inside_are_accepted() {
        assert!(target_stays_inside(0, "a/b"));
        assert!(target_stays_inside(1, "../x"));
        assert!(target_stays_inside(2, "../../x/./y"));
    }

    #[test]
    fn targets_climbing_above_the_root_or_absolute_are_refused() {
        assert!(!target_stays_inside(0, "../x"));
        assert!(!target_stays_inside(1, "a/../../../x"));
        assert!(!target_stays_inside(5, "/etc/passwd"));
    }

    #[test]
    fn negative_times_split_into_whole_seconds_and_positive_nanoseconds() {
        let t = timespec(-1);
        assert_eq!((t.tv_sec, t.tv_nsec), (-1, 999_999_999));
    }
}
