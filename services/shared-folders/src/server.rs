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

use vmmdev_hgcm_sdk::ClientId;
use vmmdev_protocol::services::shared_folders::{
    MapInfoFlags, MapInfoQueryFlags, QueryMappingsFlags, SHFL_HANDLE_NIL, SHFL_HANDLE_ROOT,
    SHFL_MAX_MAPS_PER_CLIENT_AND_ROOT,
};

use crate::config::{ServiceConfig, ShareConfig, names_match};
use crate::error::FsError;
use crate::handles::OpenHandle;
use crate::mappings::{Mapping, MappingError, MappingTable, Removal};
use crate::path::Delimiter;
use crate::persist::{PersistError, SavedMap, SavedSession};
use crate::session::Session;
use crate::share::ShareRoot;
use crate::string::{self, Encoding};

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
pub(crate) fn share_of<'a>(
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
pub(crate) fn handle_of<'a>(
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

    /// What LIST works with: the share table, the client's session and the shared
    /// `getdents64` buffer.
    pub(crate) fn listing_parts(
        &mut self,
        client: ClientId,
    ) -> Result<(&MappingTable, &mut Session, &mut Vec<u8>), FsError> {
        let session = self
            .sessions
            .get_mut(&client)
            .ok_or(FsError::InvalidParameter("unknown client"))?;
        Ok((&self.mappings, session, &mut self.dirents))
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
}
