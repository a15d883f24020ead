//! Operations on open handles: READ, WRITE, FLUSH, LOCK, file size, INFORMATION, LIST and
//! COPY_FILE_PART.
//!
//! READ and WRITE move bytes between the file and the caller's volatile slices (the guest's
//! pages) with `preadv`/`pwritev`, without an intermediate buffer.

use std::os::fd::{AsFd, BorrowedFd};

use vm_memory::VolatileSlice;
use vm_memory::bitmap::BitmapSlice;
use vmmdev_hgcm_sdk::ClientId;
use vmmdev_protocol::services::shared_folders::{FsObjInfo, ListFlags, LockFlags, VolInfo};

use crate::dir::{self, FillRequest, Filled, Listing, Pattern};
use crate::error::FsError;
use crate::handles::{FileObject, Object, OpenHandle};
use crate::info;
use crate::server::{FileServer, Written, handle_of, share_of};
use crate::sys::{self, Transfer};

/// Largest chunk the copy fallback moves at once.
const COPY_CHUNK: usize = 64 * 1024;
/// COPY_FILE_PART byte counts must stay below this (as in VirtualBox).
const MAX_COPY_PART: u64 = 1 << 60;

fn file_of(handle: &mut OpenHandle) -> Result<&mut FileObject, FsError> {
    match &mut handle.object {
        Object::File(file) => Ok(file),
        Object::Dir(_) => Err(FsError::InvalidHandle),
    }
}

fn object_fd(handle: &OpenHandle) -> (BorrowedFd<'_>, bool) {
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
pub(crate) fn copy_range(
    src: BorrowedFd<'_>,
    mut src_offset: i64,
    dst: BorrowedFd<'_>,
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
        let too_big = || FsError::io("copy")(std::io::Error::from_raw_os_error(libc::EFBIG));
        let mut written = 0;
        while written < read {
            let at = dst_offset.checked_add(written as i64).ok_or_else(too_big)?;
            let n =
                sys::pwrite(dst, &chunk[written..read], at).map_err(FsError::io("copy write"))?;
            if n == 0 {
                return Err(FsError::io("copy write")(
                    std::io::Error::from_raw_os_error(libc::ENOSPC),
                ));
            }
            written += n;
        }
        src_offset = src_offset.checked_add(read as i64).ok_or_else(too_big)?;
        dst_offset = dst_offset.checked_add(read as i64).ok_or_else(too_big)?;
        copied += read as u64;
    }
    Ok(copied)
}

impl FileServer {
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
        let (mappings, session, dirents) = self.listing_parts(client)?;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_times_split_into_whole_seconds_and_positive_nanoseconds() {
        let t = timespec(-1);
        assert_eq!((t.tv_sec, t.tv_nsec), (-1, 999_999_999));
    }
}
