//! CREATE: stat, open, create and truncate, with VirtualBox's result conventions.
//!
//! The guest learns most outcomes from `CreateParms::result` and `handle`, not from the status:
//! for files, "not found" and "already exists" are *successful* calls with result
//! `PATH_NOT_FOUND`/`FILE_NOT_FOUND`/`FILE_EXISTS` and a NIL handle (the Linux guest treats a
//! failing status during lookup as a hard error); for directories the same outcomes are failure
//! statuses. An existing directory is always opened as a directory, with or without
//! `SHFL_CF_DIRECTORY` (Linux's setattr relies on it).
//!
//! | if exists \ if new | create | fail |
//! |---|---|---|
//! | open | open or create | open existing |
//! | fail | exclusive create | invalid |
//! | replace / overwrite | create or truncate | truncate existing |
//!
//! Access: none → read-only (or, if even that is refused, an `O_PATH` handle good for attribute
//! changes), read, write, read/write; append adds `O_APPEND`. On a read-only share anything that
//! may create or truncate fails with `VERR_WRITE_PROTECT`, read/write access is reduced to read,
//! and write-only access fails. Files are opened non-blocking and only regular files and
//! directories are ever handed out, so a FIFO or device node in a share can neither stall the
//! service nor be driven by the guest.

use std::os::fd::{AsFd, OwnedFd};

use vmmdev_hgcm_sdk::ClientId;
use vmmdev_protocol::services::shared_folders::{
    CreateFlags, CreateParms, CreateResult, RTFS_DOS_MASK, RTFS_DOS_READONLY, RTFS_TYPE_MASK,
    SHFL_HANDLE_NIL,
};
use zerocopy::little_endian::{U32, U64};

use crate::error::FsError;
use crate::handles::{DirObject, FileAccess, FileObject, Object};
use crate::info;
use crate::path::GuestPath;
use crate::server::FileServer;
use crate::session::Session;
use crate::share::ShareRoot;
use crate::sys;

/// Flags added to every data open: never block on FIFOs, never acquire a controlling terminal.
const OPEN_SAFETY: libc::c_int = libc::O_NONBLOCK | libc::O_NOCTTY;
/// Rounds of "exclusive create, else open" before a racing create/delete is given up on.
const CREATE_RACE_ROUNDS: usize = 4;

/// The if-exists action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IfExists {
    Open,
    Fail,
    Truncate,
}

/// What the open of a file produced.
enum Opened {
    /// A descriptor and the result to report.
    Fd(OwnedFd, CreateResult),
    /// The object exists but is a directory: open it as one.
    Directory,
    /// A successful call without a handle (not found, or exists with FAIL_IF_EXISTS).
    NoHandle(CreateResult, Option<Box<libc::statx>>),
}

/// Everything one CREATE works with.
struct Request<'a> {
    share: &'a ShareRoot,
    root: u32,
    root_version: u32,
    path: GuestPath,
    flags: CreateFlags,
}

fn is_missing(error: &FsError) -> bool {
    matches!(error.errno(), Some(libc::ENOENT | libc::ENOTDIR))
}

/// The mode bits for a new file from the guest's `attr.mode`.
fn creation_mode(mode: u32, handle_in: u64) -> libc::mode_t {
    if handle_in == 0 {
        // Old additions left the mode uninitialised and marked that with handle 0.
        return 0o666;
    }
    if mode & (RTFS_TYPE_MASK | 0o777) != 0 {
        return mode & 0o777;
    }
    if mode & RTFS_DOS_MASK != 0 {
        // Windows guests send only DOS attributes.
        return if mode & RTFS_DOS_READONLY != 0 {
            0o444
        } else {
            0o666
        };
    }
    0o666
}

fn name_of(path: &GuestPath) -> Option<&str> {
    path.components().last().map(String::as_str)
}

impl Request<'_> {
    fn if_exists(&self) -> Result<IfExists, FsError> {
        match self.flags.if_exists() {
            f if f == CreateFlags::ACT_OPEN_IF_EXISTS => Ok(IfExists::Open),
            f if f == CreateFlags::ACT_FAIL_IF_EXISTS => Ok(IfExists::Fail),
            f if f == CreateFlags::ACT_REPLACE_IF_EXISTS
                || f == CreateFlags::ACT_OVERWRITE_IF_EXISTS =>
            {
                Ok(IfExists::Truncate)
            }
            _ => Err(FsError::InvalidParameter("if-exists action")),
        }
    }

    fn create_if_new(&self) -> Result<bool, FsError> {
        match self.flags.if_new() {
            f if f == CreateFlags::ACT_CREATE_IF_NEW => Ok(true),
            f if f == CreateFlags::ACT_FAIL_IF_NEW => Ok(false),
            _ => Err(FsError::InvalidParameter("if-new action")),
        }
    }

    /// "Path not found" or "file not found" for a missing object.
    fn missing_result(&self) -> Result<CreateResult, FsError> {
        Ok(if self.share.parent_exists(&self.path)? {
            CreateResult::FILE_NOT_FOUND
        } else {
            CreateResult::PATH_NOT_FOUND
        })
    }

    fn open(&self, flags: libc::c_int, mode: libc::mode_t) -> Result<OwnedFd, FsError> {
        self.share.open_path(&self.path, flags | OPEN_SAFETY, mode)
    }

    /// Opens (and maybe creates or truncates) a file.
    fn open_file(&self, access: libc::c_int, mode: libc::mode_t) -> Result<Opened, FsError> {
        let if_exists = self.if_exists()?;
        let create = self.create_if_new()?;
        let truncate = if if_exists == IfExists::Truncate {
            libc::O_TRUNC
        } else {
            0
        };
        match (create, if_exists) {
            (false, IfExists::Fail) => Err(FsError::InvalidParameter("fail if new and if exists")),
            (false, _) => match self.open(access | truncate, 0) {
                Ok(fd) => Ok(Opened::Fd(fd, existing_result(if_exists))),
                Err(e) if e.errno() == Some(libc::EISDIR) => Ok(Opened::Directory),
                Err(e) if is_missing(&e) => Ok(Opened::NoHandle(self.missing_result()?, None)),
                Err(e) => Err(e),
            },
            (true, IfExists::Fail) => {
                match self.open(access | libc::O_CREAT | libc::O_EXCL, mode) {
                    Ok(fd) => Ok(Opened::Fd(fd, CreateResult::FILE_CREATED)),
                    Err(e) if e.errno() == Some(libc::EEXIST) => {
                        let st = self.share.stat(&self.path, false)?;
                        if info::is_directory(u32::from(st.stx_mode)) {
                            // Directory semantics: "exists" is a failure status.
                            return Err(e);
                        }
                        Ok(Opened::NoHandle(
                            CreateResult::FILE_EXISTS,
                            Some(Box::new(st)),
                        ))
                    }
                    Err(e) if is_missing(&e) => {
                        Ok(Opened::NoHandle(CreateResult::PATH_NOT_FOUND, None))
                    }
                    Err(e) => Err(e),
                }
            }
            (true, _) => self.open_or_create(access, truncate, if_exists, mode),
        }
    }

    /// "Create if new, else open (or truncate)": an exclusive create first, so the result says
    /// truthfully whether the file was created.
    fn open_or_create(
        &self,
        access: libc::c_int,
        truncate: libc::c_int,
        if_exists: IfExists,
        mode: libc::mode_t,
    ) -> Result<Opened, FsError> {
        for _ in 0..CREATE_RACE_ROUNDS {
            match self.open(access | libc::O_CREAT | libc::O_EXCL, mode) {
                Ok(fd) => return Ok(Opened::Fd(fd, CreateResult::FILE_CREATED)),
                Err(e) if e.errno() == Some(libc::EEXIST) => {}
                Err(e) if is_missing(&e) => {
                    return Ok(Opened::NoHandle(CreateResult::PATH_NOT_FOUND, None));
                }
                Err(e) => return Err(e),
            }
            match self.open(access | truncate, 0) {
                Ok(fd) => return Ok(Opened::Fd(fd, existing_result(if_exists))),
                Err(e) if e.errno() == Some(libc::EISDIR) => return Ok(Opened::Directory),
                Err(e) if e.errno() == Some(libc::ENOENT) => {
                    // A dangling symlink (or a racing delete): create through it, beneath
                    // the root like every other resolution.
                    match self.open(access | libc::O_CREAT, mode) {
                        Ok(fd) => return Ok(Opened::Fd(fd, CreateResult::FILE_CREATED)),
                        Err(e) if e.errno() == Some(libc::ENOENT) => continue,
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(FsError::io("create")(std::io::Error::from_raw_os_error(
            libc::EAGAIN,
        )))
    }

    /// Creates (if asked) and opens a directory; failures are statuses, with the result set.
    fn open_directory(
        &self,
        parms: &mut CreateParms,
        path_only: bool,
    ) -> Result<(OwnedFd, CreateResult, bool), FsError> {
        let mut result = CreateResult::FILE_EXISTS;
        if self.create_if_new()? && !self.path.is_root() {
            let (parent, name) = self.share.entry(&self.path)?;
            let mode = match parms.info.attr.mode.get() {
                m if m & (RTFS_TYPE_MASK | 0o777) != 0 => m & 0o777,
                _ => 0o777,
            };
            match sys::mkdirat(parent.as_fd(), &name, mode) {
                Ok(()) => result = CreateResult::FILE_CREATED,
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    if self.if_exists()? != IfExists::Open {
                        parms.result = U32::new(CreateResult::FILE_EXISTS.raw());
                        return Err(FsError::io("mkdir")(e));
                    }
                }
                Err(e) => {
                    let missing = matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR));
                    if missing {
                        parms.result = U32::new(CreateResult::PATH_NOT_FOUND.raw());
                    }
                    return Err(FsError::io("mkdir")(e));
                }
            }
        }
        let open = |flags| {
            self.share
                .open_path(&self.path, flags | libc::O_DIRECTORY, 0)
        };
        let opened = match open(libc::O_RDONLY | OPEN_SAFETY) {
            Err(e) if path_only && e.errno() == Some(libc::EACCES) => {
                open(libc::O_PATH).map(|fd| (fd, true))
            }
            other => other.map(|fd| (fd, false)),
        };
        match opened {
            Ok((fd, is_path)) => Ok((fd, result, is_path)),
            Err(e) => {
                if is_missing(&e) && e.errno() == Some(libc::ENOENT) {
                    parms.result = U32::new(self.missing_result()?.raw());
                }
                Err(e)
            }
        }
    }
}

fn existing_result(if_exists: IfExists) -> CreateResult {
    if if_exists == IfExists::Truncate {
        CreateResult::FILE_REPLACED
    } else {
        CreateResult::FILE_EXISTS
    }
}

impl FileServer {
    /// CREATE: looks up, opens or creates `path` (a raw `SHFLSTRING`) as `parms` says, and
    /// fills in `parms` (result, handle, info). `parms` is meaningful to the guest even when
    /// this returns an error.
    pub fn create(
        &mut self,
        client: ClientId,
        root: u32,
        path: &[u8],
        parms: &mut CreateParms,
    ) -> Result<(), FsError> {
        let (mapping, share, root_version, session) = self.share_parts(client, root)?;
        let writable = mapping.config.writable;
        let path = session.parse_path(path)?;
        parms.result = U32::new(CreateResult::NO_RESULT.raw());
        let handle_in = parms.handle.get();
        parms.handle = U64::new(SHFL_HANDLE_NIL);
        let mut flags = CreateFlags::from_bits_retain(parms.create_flags.get());
        if flags.contains(CreateFlags::LOOKUP) {
            return lookup(share, &path, session.follows_symlinks(), parms);
        }
        let mut request = Request {
            share,
            root,
            root_version,
            path,
            flags,
        };
        if flags.contains(CreateFlags::OPEN_TARGET_DIRECTORY) {
            request.path = request.path.parent();
            flags = CreateFlags::DIRECTORY
                | CreateFlags::ACT_OPEN_IF_EXISTS
                | CreateFlags::ACT_FAIL_IF_NEW
                | flags.access();
            request.flags = flags;
        }
        let if_exists = request.if_exists()?;
        let modifies = if_exists == IfExists::Truncate || request.create_if_new()?;
        if !writable && modifies {
            return Err(FsError::ReadOnly);
        }
        let mut access = flags.access();
        if !writable {
            if access == CreateFlags::ACCESS_WRITE {
                return Err(FsError::ReadOnly);
            }
            access.remove(CreateFlags::ACCESS_WRITE);
        }
        if !session.has_handle_room() {
            return Err(FsError::TooManyHandles);
        }
        if flags.contains(CreateFlags::DIRECTORY) {
            return open_directory_handle(&request, session, parms, access);
        }
        let file_access = FileAccess {
            read: access.contains(CreateFlags::ACCESS_READ) || access == CreateFlags::ACCESS_NONE,
            write: access.contains(CreateFlags::ACCESS_WRITE),
            append: access.contains(CreateFlags::ACCESS_WRITE)
                && flags.contains(CreateFlags::ACCESS_APPEND),
            path_only: false,
        };
        let mut open_flags = match (file_access.read, file_access.write) {
            (true, true) => libc::O_RDWR,
            (false, true) => libc::O_WRONLY,
            _ => libc::O_RDONLY,
        };
        if file_access.append {
            open_flags |= libc::O_APPEND;
        }
        let mode = creation_mode(parms.info.attr.mode.get(), handle_in);
        let opened = match request.open_file(open_flags, mode) {
            Err(e)
                if access == CreateFlags::ACCESS_NONE
                    && matches!(e.errno(), Some(libc::EACCES | libc::EPERM))
                    && if_exists != IfExists::Truncate
                    && !request.create_if_new()? =>
            {
                // Attribute-only access to something the host user may not read.
                match request.open(libc::O_PATH, 0) {
                    Ok(fd) => {
                        let st = sys::fstat(fd.as_fd()).map_err(FsError::io("stat"))?;
                        if info::is_directory(u32::from(st.stx_mode)) {
                            Opened::Directory
                        } else {
                            let access = FileAccess {
                                path_only: true,
                                ..FileAccess::default()
                            };
                            return finish_file(
                                &request,
                                session,
                                parms,
                                fd,
                                access,
                                CreateResult::FILE_EXISTS,
                            );
                        }
                    }
                    Err(_) => return Err(e),
                }
            }
            other => other?,
        };
        match opened {
            Opened::Fd(fd, result) => {
                finish_file(&request, session, parms, fd, file_access, result)
            }
            Opened::Directory => {
                open_directory_handle(&request, session, parms, CreateFlags::ACCESS_READ)
            }
            Opened::NoHandle(result, st) => {
                parms.result = U32::new(result.raw());
                if let Some(st) = st {
                    parms.info = info::obj_info(&st, name_of(&request.path));
                }
                Ok(())
            }
        }
    }
}

/// CREATE with LOOKUP: stat only, never a handle; "not found" is a successful call.
fn lookup(
    share: &ShareRoot,
    path: &GuestPath,
    follow: bool,
    parms: &mut CreateParms,
) -> Result<(), FsError> {
    match share.stat(path, follow) {
        Ok(st) => {
            parms.result = U32::new(CreateResult::FILE_EXISTS.raw());
            parms.info = info::obj_info(&st, name_of(path));
            Ok(())
        }
        Err(e) if is_missing(&e) => {
            let result = if share.parent_exists(path)? {
                CreateResult::FILE_NOT_FOUND
            } else {
                CreateResult::PATH_NOT_FOUND
            };
            parms.result = U32::new(result.raw());
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Checks what was opened and hands out a handle.
fn finish_file(
    request: &Request<'_>,
    session: &mut Session,
    parms: &mut CreateParms,
    fd: OwnedFd,
    access: FileAccess,
    result: CreateResult,
) -> Result<(), FsError> {
    let mut st = sys::fstat(fd.as_fd()).map_err(FsError::io("stat"))?;
    let mode = u32::from(st.stx_mode);
    if info::is_directory(mode) {
        // An existing directory opened without SHFL_CF_DIRECTORY: a directory handle.
        return insert_directory(request, session, parms, fd, access.path_only, result, &st);
    }
    if mode & libc::S_IFMT != libc::S_IFREG {
        return Err(FsError::UnsupportedObject);
    }
    let wanted_size = parms.info.object_size.get();
    if result == CreateResult::FILE_REPLACED && wanted_size > 0 {
        // Honour the size an overwrite asked for; a failure leaves the file empty, as in
        // VirtualBox.
        if sys::ftruncate(fd.as_fd(), wanted_size).is_ok() {
            st = sys::fstat(fd.as_fd()).map_err(FsError::io("stat"))?;
        }
    }
    let handle = session.insert_handle(
        request.root,
        request.root_version,
        Object::File(FileObject { fd, access }),
    )?;
    parms.handle = U64::new(handle);
    parms.result = U32::new(result.raw());
    parms.info = info::obj_info(&st, name_of(&request.path));
    Ok(())
}

fn open_directory_handle(
    request: &Request<'_>,
    session: &mut Session,
    parms: &mut CreateParms,
    access: CreateFlags,
) -> Result<(), FsError> {
    let path_only = access == CreateFlags::ACCESS_NONE;
    let (fd, result, is_path) = request.open_directory(parms, path_only)?;
    let st = sys::fstat(fd.as_fd()).map_err(FsError::io("stat"))?;
    insert_directory(request, session, parms, fd, is_path, result, &st)
}

fn insert_directory(
    request: &Request<'_>,
    session: &mut Session,
    parms: &mut CreateParms,
    fd: OwnedFd,
    path_only: bool,
    result: CreateResult,
    st: &libc::statx,
) -> Result<(), FsError> {
    let handle = session.insert_handle(
        request.root,
        request.root_version,
        Object::Dir(DirObject {
            fd,
            path_only,
            path: request.path.clone(),
            listing: None,
        }),
    )?;
    parms.handle = U64::new(handle);
    parms.result = U32::new(result.raw());
    parms.info = info::obj_info(st, name_of(&request.path));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmmdev_protocol::services::shared_folders::{RTFS_DOS_ARCHIVED, RTFS_TYPE_FILE};

    #[test]
    fn creation_mode_uses_the_guest_permission_bits() {
        assert_eq!(
            creation_mode(RTFS_TYPE_FILE | 0o640, SHFL_HANDLE_NIL),
            0o640
        );
        assert_eq!(creation_mode(RTFS_TYPE_FILE, SHFL_HANDLE_NIL), 0);
    }

    #[test]
    fn creation_mode_ignores_the_mode_of_old_additions() {
        assert_eq!(creation_mode(0o600, 0), 0o666);
    }

    #[test]
    fn creation_mode_derives_permissions_from_dos_attributes() {
        assert_eq!(creation_mode(RTFS_DOS_READONLY, SHFL_HANDLE_NIL), 0o444);
        assert_eq!(creation_mode(RTFS_DOS_ARCHIVED, SHFL_HANDLE_NIL), 0o666);
    }
}
