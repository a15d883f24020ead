//! Confinement: every guest path is resolved by the kernel beneath a share's root descriptor.
//!
//! A [`ShareRoot`] holds an `O_PATH` descriptor of the shared directory, opened once when the
//! share is added. Paths are never joined to the host path as strings: each one is resolved with
//! `openat2(root, path, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`, so the kernel itself refuses
//! `..` above the root, absolute symlinks, symlinks whose targets climb out, `/proc` magic links,
//! and any of those swapped in while the lookup runs. Operations on a directory entry (create,
//! remove, rename, symlink) first resolve the *parent* this way and then act on a single name
//! relative to that descriptor with the `*at` system calls, which never resolve more than that
//! one component. A share whose policy is [`SymlinkPolicy::Deny`] additionally resolves with
//! `RESOLVE_NO_SYMLINKS`. Those parent directories come from the share's
//! directory cache (`dircache`) when it can answer: resolved the same way, one component
//! at a time, and dropped as soon as inotify reports their name removed or moved.

use std::ffi::{CStr, CString};
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::config::SymlinkPolicy;
use crate::dircache::DirCache;
use crate::error::FsError;
use crate::path::GuestPath;
use crate::sys;

/// `openat2` resolve flags (`linux/openat2.h`).
pub(crate) const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
pub(crate) const RESOLVE_NO_SYMLINKS: u64 = 0x04;
pub(crate) const RESOLVE_BENEATH: u64 = 0x08;

/// The open root directory of a share.
#[derive(Debug)]
pub struct ShareRoot {
    fd: OwnedFd,
    device: (u32, u32),
    inode: u64,
    policy: SymlinkPolicy,
    /// Directories below the root, kept open (`None` if inotify is unavailable).
    cache: Option<Mutex<DirCache>>,
}

/// A directory descriptor that is either the share root itself or one resolved beneath it.
#[derive(Debug)]
pub enum DirFd<'a> {
    /// The share root.
    Root(BorrowedFd<'a>),
    /// A directory beneath the root, resolved for this operation.
    Owned(OwnedFd),
    /// A directory beneath the root, from the share's directory cache.
    Cached(Arc<OwnedFd>),
}

impl AsFd for DirFd<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            DirFd::Root(fd) => *fd,
            DirFd::Owned(fd) => fd.as_fd(),
            DirFd::Cached(fd) => fd.as_fd(),
        }
    }
}

/// Maps an `openat2` failure: `EXDEV` means the kernel stopped an escape from the share.
fn resolve_error(op: &'static str) -> impl FnOnce(io::Error) -> FsError {
    move |source| {
        if source.raw_os_error() == Some(libc::EXDEV) {
            FsError::OutsideShare
        } else {
            FsError::Io { op, source }
        }
    }
}

impl ShareRoot {
    /// Opens the shared directory `path` (from the host configuration, never from the guest).
    pub fn open(path: &Path, policy: SymlinkPolicy) -> io::Result<ShareRoot> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(path)?;
        let fd = OwnedFd::from(file);
        let st = sys::fstat(fd.as_fd())?;
        let cache = match DirCache::new(fd.as_fd()) {
            Ok(cache) => Some(Mutex::new(cache)),
            Err(e) => {
                log::warn!("{}: no directory cache ({e})", path.display());
                None
            }
        };
        Ok(ShareRoot {
            fd,
            device: (st.stx_dev_major, st.stx_dev_minor),
            inode: st.stx_ino,
            policy,
            cache,
        })
    }

    /// The root descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The share's symlink policy.
    pub fn policy(&self) -> SymlinkPolicy {
        self.policy
    }

    /// Whether a `statx` result describes the share root directory itself.
    pub fn is_root(&self, st: &libc::statx) -> bool {
        (st.stx_dev_major, st.stx_dev_minor) == self.device && st.stx_ino == self.inode
    }

    fn resolve_flags(&self) -> u64 {
        let base = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
        if self.policy.follows() {
            base
        } else {
            base | RESOLVE_NO_SYMLINKS
        }
    }

    /// Opens `path` beneath the root with `flags` (and `mode` for creations).
    pub fn open_path(
        &self,
        path: &GuestPath,
        flags: libc::c_int,
        mode: libc::mode_t,
    ) -> Result<OwnedFd, FsError> {
        self.open_relative(&path.to_relative(), flags, mode)
    }

    /// Opens the relative C path `relative` beneath the root.
    pub fn open_relative(
        &self,
        relative: &CStr,
        flags: libc::c_int,
        mode: libc::mode_t,
    ) -> Result<OwnedFd, FsError> {
        sys::openat2(self.fd(), relative, flags, mode, self.resolve_flags())
            .map_err(resolve_error("open"))
    }

    /// Opens `name` relative to `dir` (a directory resolved beneath the root) with the same
    /// confinement as paths from the root.
    pub fn open_at(
        &self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        flags: libc::c_int,
        mode: libc::mode_t,
    ) -> Result<OwnedFd, FsError> {
        sys::openat2(dir, name, flags, mode, self.resolve_flags()).map_err(resolve_error("open"))
    }

    /// The directory `path` as an `O_PATH` descriptor: the root is borrowed, directories below
    /// it come from the share's directory cache when it can answer, else are resolved now.
    pub fn directory(&self, path: &GuestPath) -> Result<DirFd<'_>, FsError> {
        if path.is_root() {
            return Ok(DirFd::Root(self.fd()));
        }
        if let Some(fd) = self.cached_directory(path.components()) {
            return Ok(DirFd::Cached(fd));
        }
        self.open_path(path, libc::O_PATH | libc::O_DIRECTORY, 0)
            .map(DirFd::Owned)
    }

    /// The directory `components` below the root from the directory cache, if it can answer.
    fn cached_directory(&self, components: &[String]) -> Option<Arc<OwnedFd>> {
        let cache = self.cache.as_ref()?;
        cache
            .lock()
            .directory(self.fd(), components, self.resolve_flags())
    }

    /// The cached parent directory of an entry below the root and the entry's name; `None` for
    /// entries of the root, `.`/`..` names and parents the cache cannot answer for.
    fn cached_entry(&self, path: &GuestPath) -> Option<(Arc<OwnedFd>, CString)> {
        let (name, parent) = path.components().split_last()?;
        if parent.is_empty() || name == "." || name == ".." {
            return None;
        }
        let name = CString::new(name.as_str()).ok()?;
        Some((self.cached_directory(parent)?, name))
    }

    /// The parent directory of an entry and the entry's name, for `*at` operations.
    pub fn entry(&self, path: &GuestPath) -> Result<(DirFd<'_>, std::ffi::CString), FsError> {
        let (parent, name) = path.split_entry()?;
        Ok((self.directory(&parent)?, name))
    }

    /// `statx` of `path`. Without `follow` a final symlink is reported itself. With `follow` it
    /// is followed where the policy lets the host follow links and the target stays beneath the
    /// root; otherwise the link itself is reported.
    pub fn stat(&self, path: &GuestPath, follow: bool) -> Result<libc::statx, FsError> {
        if path.is_root() {
            return sys::fstat(self.fd()).map_err(FsError::io("stat"));
        }
        if follow && self.policy.follows() {
            match self.open_path(path, libc::O_PATH, 0) {
                Ok(fd) => return sys::fstat(fd.as_fd()).map_err(FsError::io("stat")),
                Err(FsError::OutsideShare) => {}
                Err(e) if e.errno() == Some(libc::ELOOP) || e.errno() == Some(libc::ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
        if let Some((dir, name)) = self.cached_entry(path) {
            // The common lookup below the root: one `statx` of one name in a cached directory.
            return sys::statx(dir.as_fd(), &name, false).map_err(FsError::io("stat"));
        }
        match self.entry(path) {
            // One name relative to a confined parent: `statx` resolves nothing else. For an
            // entry of the root this is a single system call.
            Ok((parent, name)) => {
                sys::statx(parent.as_fd(), &name, false).map_err(FsError::io("stat"))
            }
            Err(FsError::Path(_)) => {
                // Paths ending in `.` or `..`: let the kernel resolve (and confine) all of it.
                let fd = self.open_path(path, libc::O_PATH | libc::O_NOFOLLOW, 0)?;
                sys::fstat(fd.as_fd()).map_err(FsError::io("stat"))
            }
            Err(e) => Err(e),
        }
    }

    /// Whether the parent directory of `path` exists (for telling "path not found" from "file
    /// not found").
    pub fn parent_exists(&self, path: &GuestPath) -> Result<bool, FsError> {
        match self.directory(&path.parent()) {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.errno(), Some(libc::ENOENT | libc::ENOTDIR)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::Delimiter;
    use crate::testutil::TempDir;

    fn path(text: &str) -> GuestPath {
        GuestPath::parse(text, Delimiter::Slash).expect("valid path")
    }

    fn share(policy: SymlinkPolicy) -> (TempDir, ShareRoot) {
        let dir = TempDir::new();
        std::fs::create_dir(dir.path().join("share")).expect("mkdir");
        std::fs::write(dir.path().join("secret"), b"outside").expect("write");
        let root = ShareRoot::open(&dir.path().join("share"), policy).expect("open root");
        (dir, root)
    }

    #[test]
    fn dot_dot_above_the_root_is_refused_by_the_kernel() {
        let (_dir, root) = share(SymlinkPolicy::Inside);
        assert!(matches!(
            root.open_path(&path("/../secret"), libc::O_RDONLY, 0),
            Err(FsError::OutsideShare)
        ));
    }

    #[test]
    fn symlink_to_outside_is_refused_even_when_links_are_allowed() {
        let (dir, root) = share(SymlinkPolicy::Allow);
        std::os::unix::fs::symlink(dir.path().join("secret"), dir.path().join("share/out"))
            .expect("symlink");
        assert!(matches!(
            root.open_path(&path("/out"), libc::O_RDONLY, 0),
            Err(FsError::OutsideShare)
        ));
    }

    #[test]
    fn symlink_inside_is_followed_unless_denied() {
        let (dir, inside) = share(SymlinkPolicy::Inside);
        std::fs::write(dir.path().join("share/target"), b"in").expect("write");
        std::os::unix::fs::symlink("target", dir.path().join("share/link")).expect("symlink");
        assert!(inside.open_path(&path("/link"), libc::O_RDONLY, 0).is_ok());
        let denied = ShareRoot::open(&dir.path().join("share"), SymlinkPolicy::Deny).expect("root");
        let error = denied
            .open_path(&path("/link"), libc::O_RDONLY, 0)
            .expect_err("denied");
        assert_eq!(error.errno(), Some(libc::ELOOP));
    }

    #[test]
    fn stat_with_follow_reports_an_escaping_link_itself() {
        let (dir, root) = share(SymlinkPolicy::Inside);
        std::os::unix::fs::symlink(dir.path().join("secret"), dir.path().join("share/out"))
            .expect("symlink");
        let st = root.stat(&path("/out"), true).expect("stat");
        assert!(crate::info::is_symlink(u32::from(st.stx_mode)));
    }

    #[test]
    fn root_identity_is_recognised() {
        let (_dir, root) = share(SymlinkPolicy::Deny);
        let st = root.stat(&GuestPath::root(), false).expect("stat");
        assert!(root.is_root(&st));
    }

    #[test]
    fn missing_parent_is_detected() {
        let (_dir, root) = share(SymlinkPolicy::Deny);
        assert_eq!(root.parent_exists(&path("/nope/file")).ok(), Some(false));
        assert_eq!(root.parent_exists(&path("/file")).ok(), Some(true));
    }
}
