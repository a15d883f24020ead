//! A client's session: what one HGCM connection has told the service about itself (string
//! encoding, symlink semantics, path delimiter), the roots it has mapped and its handles.

use std::collections::HashMap;

use crate::error::FsError;
use crate::handles::{HandleTable, Object, OpenHandle};
use crate::path::{Delimiter, GuestPath};
use crate::string::{self, Encoding};

/// One client's state.
#[derive(Debug)]
pub struct Session {
    pub(crate) encoding: Encoding,
    pub(crate) symlinks_as_links: bool,
    pub(crate) delimiter: Option<Delimiter>,
    /// Map count per root ID.
    pub(crate) maps: HashMap<u32, u32>,
    pub(crate) handles: HandleTable,
}

impl Session {
    /// A fresh session: UTF-16, symlinks followed, nothing mapped.
    pub(crate) fn new(max_handles: u32) -> Session {
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

    /// Parses a raw `SHFLSTRING` path in the session's encoding and delimiter.
    pub(crate) fn parse_path(&self, raw: &[u8]) -> Result<GuestPath, FsError> {
        let text = string::parse(raw, self.encoding)?;
        Ok(GuestPath::parse(
            &text,
            self.delimiter.unwrap_or(Delimiter::Slash),
        )?)
    }

    /// Whether stat and LIST follow symlinks (the client did not call SET_SYMLINKS).
    pub(crate) fn follows_symlinks(&self) -> bool {
        !self.symlinks_as_links
    }
}
