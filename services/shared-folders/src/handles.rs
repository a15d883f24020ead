//! Per-client handle tables: the open files and directories behind the guest's `SHFLHANDLE`s.
//!
//! Each client has its own table with a configurable limit, so one client can neither use nor
//! exhaust another's handles. A handle value is `generation << 32 | (slot + 1)`: never 0
//! (`SHFL_HANDLE_ROOT`) nor all ones (`SHFL_HANDLE_NIL`), and a slot's generation changes every
//! time it is freed, so a stale handle does not reach the object that reused its slot.

use std::os::fd::OwnedFd;

use crate::dir::Listing;
use crate::error::FsError;
use crate::path::GuestPath;

/// Largest slot generation before it wraps (keeps the top bit clear, so no handle is NIL).
const MAX_GENERATION: u32 = 0x7FFF_FFFF;

/// What an open file handle may do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileAccess {
    /// Opened for reading.
    pub read: bool,
    /// Opened for writing.
    pub write: bool,
    /// Writes append.
    pub append: bool,
    /// An `O_PATH` descriptor (attribute access only).
    pub path_only: bool,
}

/// An open regular file.
#[derive(Debug)]
pub struct FileObject {
    /// The descriptor.
    pub fd: OwnedFd,
    /// What it was opened for.
    pub access: FileAccess,
}

/// An open directory.
#[derive(Debug)]
pub struct DirObject {
    /// The descriptor (`O_PATH` for attribute-only opens).
    pub fd: OwnedFd,
    /// Whether `fd` is an `O_PATH` descriptor.
    pub path_only: bool,
    /// The directory's path from the share root (for following symlinks in listings).
    pub path: GuestPath,
    /// The enumeration, created by the first LIST.
    pub listing: Option<Listing>,
}

/// The object behind a handle.
#[derive(Debug)]
pub enum Object {
    /// A regular file.
    File(FileObject),
    /// A directory.
    Dir(DirObject),
}

/// One open handle.
#[derive(Debug)]
pub struct OpenHandle {
    /// The root it was opened under.
    pub root: u32,
    /// The version of that root's slot at open time.
    pub root_version: u32,
    /// The object.
    pub object: Object,
}

#[derive(Debug)]
struct Slot {
    generation: u32,
    handle: Option<OpenHandle>,
}

/// A client's handles.
#[derive(Debug)]
pub struct HandleTable {
    slots: Vec<Slot>,
    free: Vec<usize>,
    open: usize,
    limit: usize,
}

impl HandleTable {
    /// An empty table admitting at most `limit` open handles.
    pub fn new(limit: u32) -> HandleTable {
        HandleTable {
            slots: Vec::new(),
            free: Vec::new(),
            open: 0,
            limit: limit as usize,
        }
    }

    /// Number of open handles.
    pub fn len(&self) -> usize {
        self.open
    }

    /// Whether no handle is open.
    pub fn is_empty(&self) -> bool {
        self.open == 0
    }

    /// Whether another handle can be opened.
    pub fn has_room(&self) -> bool {
        self.open < self.limit
    }

    /// Stores `handle`; returns its value.
    pub fn insert(&mut self, handle: OpenHandle) -> Result<u64, FsError> {
        if !self.has_room() {
            return Err(FsError::TooManyHandles);
        }
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.slots.push(Slot {
                    generation: 1,
                    handle: None,
                });
                self.slots.len() - 1
            }
        };
        let Some(slot) = self.slots.get_mut(index) else {
            return Err(FsError::TooManyHandles);
        };
        slot.handle = Some(handle);
        self.open += 1;
        Ok((u64::from(slot.generation) << 32) | (index as u64 + 1))
    }

    fn index(&self, value: u64) -> Option<usize> {
        let index = usize::try_from(value & 0xFFFF_FFFF).ok()?.checked_sub(1)?;
        let generation = u32::try_from(value >> 32).ok()?;
        let slot = self.slots.get(index)?;
        (slot.generation == generation && slot.handle.is_some()).then_some(index)
    }

    /// The handle with this value.
    pub fn get_mut(&mut self, value: u64) -> Option<&mut OpenHandle> {
        let index = self.index(value)?;
        self.slots.get_mut(index)?.handle.as_mut()
    }

    /// Closes the handle with this value; returns it.
    pub fn remove(&mut self, value: u64) -> Option<OpenHandle> {
        let index = self.index(value)?;
        self.release(index)
    }

    fn release(&mut self, index: usize) -> Option<OpenHandle> {
        let slot = self.slots.get_mut(index)?;
        let handle = slot.handle.take()?;
        slot.generation = if slot.generation >= MAX_GENERATION {
            1
        } else {
            slot.generation + 1
        };
        self.free.push(index);
        self.open -= 1;
        Some(handle)
    }

    /// Closes every handle opened under `root`; returns how many.
    pub fn remove_root(&mut self, root: u32) -> usize {
        let indices: Vec<usize> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.handle.as_ref().is_some_and(|h| h.root == root))
            .map(|(index, _)| index)
            .collect();
        for &index in &indices {
            drop(self.release(index));
        }
        indices.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmmdev_protocol::services::shared_folders::{SHFL_HANDLE_NIL, SHFL_HANDLE_ROOT};

    fn file_handle(root: u32) -> OpenHandle {
        let fd = OwnedFd::from(std::fs::File::open("/dev/null").expect("open /dev/null"));
        OpenHandle {
            root,
            root_version: 1,
            object: Object::File(FileObject {
                fd,
                access: FileAccess::default(),
            }),
        }
    }

    #[test]
    fn handle_values_are_never_root_or_nil() {
        let mut table = HandleTable::new(8);
        for _ in 0..8 {
            let value = table.insert(file_handle(0)).expect("room");
            assert_ne!(value, SHFL_HANDLE_ROOT);
            assert_ne!(value, SHFL_HANDLE_NIL);
        }
    }

    #[test]
    fn limit_is_enforced_and_freed_slots_are_reusable() {
        let mut table = HandleTable::new(1);
        let first = table.insert(file_handle(0)).expect("room");
        assert!(matches!(
            table.insert(file_handle(0)),
            Err(FsError::TooManyHandles)
        ));
        assert!(table.remove(first).is_some());
        assert!(table.insert(file_handle(0)).is_ok());
    }

    #[test]
    fn stale_handle_does_not_reach_the_slot_reuser() {
        let mut table = HandleTable::new(4);
        let old = table.insert(file_handle(0)).expect("room");
        table.remove(old);
        let new = table.insert(file_handle(1)).expect("room");
        assert_ne!(old, new);
        assert!(table.get_mut(old).is_none());
        assert_eq!(table.get_mut(new).map(|h| h.root), Some(1));
    }

    #[test]
    fn unknown_values_are_not_found() {
        let mut table = HandleTable::new(4);
        table.insert(file_handle(0)).expect("room");
        assert!(table.get_mut(0).is_none());
        assert!(table.get_mut(SHFL_HANDLE_NIL).is_none());
        assert!(table.get_mut(0x1_0000_0002).is_none());
    }

    #[test]
    fn removing_a_root_closes_only_its_handles() {
        let mut table = HandleTable::new(4);
        table.insert(file_handle(0)).expect("room");
        let kept = table.insert(file_handle(1)).expect("room");
        table.insert(file_handle(0)).expect("room");
        assert_eq!(table.remove_root(0), 2);
        assert_eq!(table.len(), 1);
        assert!(table.get_mut(kept).is_some());
    }
}
