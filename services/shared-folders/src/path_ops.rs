//! Operations on paths: REMOVE, CLOSE_AND_REMOVE, RENAME, READLINK, SYMLINK and COPY_FILE.
//!
//! Each resolves the parent directory of the entry beneath the share root and then acts on the
//! single final name with an `*at` system call, which resolves nothing further.

use std::os::fd::{AsFd, BorrowedFd};

use vmmdev_hgcm_sdk::ClientId;
use vmmdev_protocol::services::shared_folders::{
    FsObjInfo, RemoveFlags, RenameFlags, SHFL_HANDLE_NIL,
};

use crate::config::SymlinkPolicy;
use crate::error::FsError;
use crate::handle_ops::copy_range;
use crate::info;
use crate::path::Delimiter;
use crate::server::{FileServer, share_of};
use crate::share::ShareRoot;
use crate::string::{self, Encoding};
use crate::sys;

/// Most `..` steps taken to find a directory's depth below the share root.
const MAX_DEPTH_WALK: usize = 4096;

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
}

/// How many levels `dir` lies below the share root, found by walking `..` (so symlinked or
/// `..`-laden guest paths cannot misstate it).
fn depth_below_root(share: &ShareRoot, dir: BorrowedFd<'_>) -> Result<usize, FsError> {
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
}
