//! Safe wrappers over the Linux system calls the service is built on.
//!
//! Every `unsafe` block of the crate that talks to the kernel lives here. The wrappers take
//! borrowed file descriptors and C strings, retry `EINTR`, and return `io::Error`; callers never
//! see raw pointers. Path arguments are always relative to a directory descriptor that was itself
//! obtained beneath a share root (see [`crate::share`]), so none of these calls ever resolves a
//! path from the process's root or working directory.

use std::ffi::{CStr, CString};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use vm_memory::VolatileSlice;
use vm_memory::bitmap::BitmapSlice;

/// Most attempts at a call the kernel refuses with `EAGAIN` because a rename raced with a
/// confined lookup.
const RESOLVE_RETRIES: usize = 8;

/// Most iovecs handed to one `preadv`/`pwritev` (the kernel's `UIO_MAXIOV`).
const MAX_IOVECS: usize = 1024;

/// `struct open_how` of `openat2(2)` (`libc::open_how` cannot be built outside libc).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

fn retry_eintr<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            other => return other,
        }
    }
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn check_size(ret: isize) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret.unsigned_abs())
    }
}

/// `openat2(dir, path, flags | O_CLOEXEC, mode, resolve)`.
///
/// `EAGAIN` (a concurrent rename made a confined lookup ambiguous) is retried a few times before
/// it is returned.
pub(crate) fn openat2(
    dir: BorrowedFd<'_>,
    path: &CStr,
    flags: libc::c_int,
    mode: libc::mode_t,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let how = OpenHow {
        // Open flags are a bit set; reinterpret the C int's bits.
        flags: u64::from((flags | libc::O_CLOEXEC) as u32),
        mode: u64::from(mode),
        resolve,
    };
    let mut attempts = 0;
    loop {
        // SAFETY: `path` is NUL-terminated and `how` is a valid `open_how` whose size is passed;
        // the kernel reads both and returns a new descriptor or an error.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                path.as_ptr(),
                &raw const how,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if ret >= 0 {
            let fd = RawFd::try_from(ret).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
            // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) if attempts < RESOLVE_RETRIES => attempts += 1,
            _ => return Err(err),
        }
    }
}

/// `statx` of `path` relative to `dir`; an empty `path` means `dir` itself.
pub(crate) fn statx(dir: BorrowedFd<'_>, path: &CStr, follow: bool) -> io::Result<libc::statx> {
    let mut flags = libc::AT_STATX_SYNC_AS_STAT;
    if path.is_empty() {
        flags |= libc::AT_EMPTY_PATH;
    }
    if !follow {
        flags |= libc::AT_SYMLINK_NOFOLLOW;
    }
    let mask = libc::STATX_BASIC_STATS | libc::STATX_BTIME;
    retry_eintr(|| {
        let mut buf = MaybeUninit::<libc::statx>::uninit();
        // SAFETY: `path` is NUL-terminated and `buf` is writable storage for one `statx`.
        check(unsafe {
            libc::statx(
                dir.as_raw_fd(),
                path.as_ptr(),
                flags,
                mask,
                buf.as_mut_ptr(),
            )
        })?;
        // SAFETY: statx succeeded, so it filled the structure.
        Ok(unsafe { buf.assume_init() })
    })
}

/// `statx` of the object `fd` refers to (any descriptor, including `O_PATH`).
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::statx> {
    statx(fd, c"", true)
}

/// A new inotify instance that never blocks on read.
pub(crate) fn inotify_init() -> io::Result<OwnedFd> {
    // SAFETY: plain system call without pointer arguments.
    let ret = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(ret) })
}

/// Watches the directory `dir` refers to for `mask`; returns the watch descriptor.
///
/// `inotify_add_watch` takes a path, so the directory is named by its `/proc/self/fd/N` magic
/// link, which the kernel resolves to exactly the object `dir` refers to: no guest path is
/// resolved again.
pub(crate) fn inotify_watch(
    inotify: BorrowedFd<'_>,
    dir: BorrowedFd<'_>,
    mask: u32,
) -> io::Result<libc::c_int> {
    let path = proc_fd_path(dir);
    // SAFETY: `path` is NUL-terminated; the call only reads it.
    let ret = unsafe { libc::inotify_add_watch(inotify.as_raw_fd(), path.as_ptr(), mask) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Removes the watch `watch` of `inotify` (a watch already gone is not an error).
pub(crate) fn inotify_unwatch(inotify: BorrowedFd<'_>, watch: libc::c_int) {
    // SAFETY: plain system call on a borrowed descriptor; an unknown watch only gives EINVAL.
    unsafe { libc::inotify_rm_watch(inotify.as_raw_fd(), watch) };
}

/// How many bytes of events `inotify` has queued (`FIONREAD`): a cheaper question than a read
/// that finds nothing.
pub(crate) fn inotify_pending(inotify: BorrowedFd<'_>) -> io::Result<usize> {
    let mut pending: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which is valid for that.
    check(unsafe { libc::ioctl(inotify.as_raw_fd(), libc::FIONREAD, &raw mut pending) })?;
    usize::try_from(pending).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Reads queued inotify events into `buf`; returns the bytes read, 0 when none are queued.
pub(crate) fn inotify_read(inotify: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    let result = retry_eintr(|| {
        // SAFETY: `buf` is writable for `buf.len()` bytes; the kernel fills at most that many.
        check_size(unsafe { libc::read(inotify.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })
    });
    match result {
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Ok(0),
        other => other,
    }
}

/// One record of an inotify read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WatchEvent {
    /// The watch the event belongs to (-1 for a queue overflow).
    pub(crate) watch: libc::c_int,
    /// `IN_*` bits.
    pub(crate) mask: u32,
    /// The entry's name for events about an entry of a watched directory; empty otherwise.
    pub(crate) name: Vec<u8>,
}

/// Size of `struct inotify_event` without its name.
const INOTIFY_HEADER: usize = 16;

/// Parses one `struct inotify_event` at the start of `buf`; returns the event and the record
/// length, or `None` if the bytes do not form a complete record.
pub(crate) fn parse_watch_event(buf: &[u8]) -> Option<(WatchEvent, usize)> {
    let header = buf.get(..INOTIFY_HEADER)?;
    let word = |at: usize| -> Option<[u8; 4]> { header.get(at..at + 4)?.try_into().ok() };
    let watch = libc::c_int::from_ne_bytes(word(0)?);
    let mask = u32::from_ne_bytes(word(4)?);
    let name_len = usize::try_from(u32::from_ne_bytes(word(12)?)).ok()?;
    let total = INOTIFY_HEADER.checked_add(name_len)?;
    let name_area = buf.get(INOTIFY_HEADER..total)?;
    // The name is NUL-padded to an alignment boundary.
    let end = name_area
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(name_area.len());
    let name = name_area.get(..end)?.to_vec();
    Some((WatchEvent { watch, mask, name }, total))
}

/// `mkdirat(dir, name, mode)`.
pub(crate) fn mkdirat(dir: BorrowedFd<'_>, name: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated; the call only reads it.
    retry_eintr(|| check(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) }))
}

/// `unlinkat(dir, name, AT_REMOVEDIR if directory)`.
pub(crate) fn unlinkat(dir: BorrowedFd<'_>, name: &CStr, directory: bool) -> io::Result<()> {
    let flags = if directory { libc::AT_REMOVEDIR } else { 0 };
    // SAFETY: `name` is NUL-terminated; the call only reads it.
    retry_eintr(|| check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) }))
}

/// `renameat2(old_dir, old_name, new_dir, new_name, RENAME_NOREPLACE unless replace)`.
pub(crate) fn renameat2(
    old_dir: BorrowedFd<'_>,
    old_name: &CStr,
    new_dir: BorrowedFd<'_>,
    new_name: &CStr,
    replace: bool,
) -> io::Result<()> {
    let flags: libc::c_uint = if replace { 0 } else { libc::RENAME_NOREPLACE };
    retry_eintr(|| {
        // SAFETY: both names are NUL-terminated; the call only reads them.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                old_dir.as_raw_fd(),
                old_name.as_ptr(),
                new_dir.as_raw_fd(),
                new_name.as_ptr(),
                flags,
            )
        };
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    })
}

/// `symlinkat(target, dir, name)`.
pub(crate) fn symlinkat(target: &CStr, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    retry_eintr(|| {
        // SAFETY: both strings are NUL-terminated; the call only reads them.
        check(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) })
    })
}

/// `readlinkat(dir, name)`: the link's target, byte for byte.
pub(crate) fn readlinkat(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Vec<u8>> {
    // Link bodies are at most PATH_MAX - 1 bytes on Linux; one more byte detects truncation.
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    let len = retry_eintr(|| {
        // SAFETY: `name` is NUL-terminated and `buf` is writable for `buf.len()` bytes.
        check_size(unsafe {
            libc::readlinkat(
                dir.as_raw_fd(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        })
    })?;
    if len >= buf.len() {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    buf.truncate(len);
    Ok(buf)
}

/// `ftruncate(fd, size)`.
pub(crate) fn ftruncate(fd: BorrowedFd<'_>, size: i64) -> io::Result<()> {
    // SAFETY: plain system call on a borrowed descriptor.
    retry_eintr(|| check(unsafe { libc::ftruncate(fd.as_raw_fd(), size) }))
}

/// `fsync(fd)`.
pub(crate) fn fsync(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain system call on a borrowed descriptor.
    retry_eintr(|| check(unsafe { libc::fsync(fd.as_raw_fd()) }))
}

/// `fstatvfs(fd)`.
pub(crate) fn fstatvfs(fd: BorrowedFd<'_>) -> io::Result<libc::statvfs> {
    retry_eintr(|| {
        let mut buf = MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: `buf` is writable storage for one `statvfs`.
        check(unsafe { libc::fstatvfs(fd.as_raw_fd(), buf.as_mut_ptr()) })?;
        // SAFETY: fstatvfs succeeded, so it filled the structure.
        Ok(unsafe { buf.assume_init() })
    })
}

/// The `/proc/self/fd/N` name of a descriptor: lets mode and time changes reach an object
/// opened with `O_PATH` (which `fchmod`/`futimens` refuse) without resolving any guest path.
fn proc_fd_path(fd: BorrowedFd<'_>) -> CString {
    // Digits only: never contains a NUL byte.
    CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default()
}

/// Changes the permission bits of the object `fd` refers to. `path_only` says `fd` was opened
/// with `O_PATH`.
pub(crate) fn set_mode(fd: BorrowedFd<'_>, path_only: bool, mode: libc::mode_t) -> io::Result<()> {
    if path_only {
        let path = proc_fd_path(fd);
        // SAFETY: `path` is NUL-terminated; the call only reads it.
        retry_eintr(|| check(unsafe { libc::fchmodat(libc::AT_FDCWD, path.as_ptr(), mode, 0) }))
    } else {
        // SAFETY: plain system call on a borrowed descriptor.
        retry_eintr(|| check(unsafe { libc::fchmod(fd.as_raw_fd(), mode) }))
    }
}

/// Sets access and modification times of the object `fd` refers to; `None` leaves a time alone.
pub(crate) fn set_times(
    fd: BorrowedFd<'_>,
    path_only: bool,
    access: Option<libc::timespec>,
    modification: Option<libc::timespec>,
) -> io::Result<()> {
    let omit = libc::timespec {
        tv_sec: 0,
        tv_nsec: libc::UTIME_OMIT,
    };
    let times = [access.unwrap_or(omit), modification.unwrap_or(omit)];
    if path_only {
        let path = proc_fd_path(fd);
        retry_eintr(|| {
            // SAFETY: `path` is NUL-terminated and `times` holds the two entries utimensat
            // reads.
            check(unsafe { libc::utimensat(libc::AT_FDCWD, path.as_ptr(), times.as_ptr(), 0) })
        })
    } else {
        // SAFETY: `times` holds the two entries futimens reads.
        retry_eintr(|| check(unsafe { libc::futimens(fd.as_raw_fd(), times.as_ptr()) }))
    }
}

/// `copy_file_range(src, &src_off, dst, &dst_off, len)`; returns the bytes copied (0 at EOF).
pub(crate) fn copy_file_range(
    src: BorrowedFd<'_>,
    src_offset: &mut i64,
    dst: BorrowedFd<'_>,
    dst_offset: &mut i64,
    len: usize,
) -> io::Result<usize> {
    retry_eintr(|| {
        // SAFETY: both offsets are valid, exclusively borrowed i64s the kernel updates.
        check_size(unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                src_offset,
                dst.as_raw_fd(),
                dst_offset,
                len,
                0,
            )
        })
    })
}

/// `pread(fd, buf, offset)` into host memory (the copy fallback of COPY_FILE).
pub(crate) fn pread(fd: BorrowedFd<'_>, buf: &mut [u8], offset: i64) -> io::Result<usize> {
    retry_eintr(|| {
        // SAFETY: `buf` is writable for `buf.len()` bytes.
        check_size(unsafe {
            libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), offset)
        })
    })
}

/// `pwrite(fd, buf, offset)` from host memory (the copy fallback of COPY_FILE).
pub(crate) fn pwrite(fd: BorrowedFd<'_>, buf: &[u8], offset: i64) -> io::Result<usize> {
    retry_eintr(|| {
        // SAFETY: `buf` is readable for `buf.len()` bytes.
        check_size(unsafe { libc::pwrite(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), offset) })
    })
}

/// Which way a vectored transfer moves bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transfer {
    /// File → memory (`preadv`).
    Read,
    /// Memory → file (`pwritev`).
    Write,
}

/// Moves up to `len` bytes between the file at `offset` and the memory of `slices`, directly
/// (no intermediate buffer), looping over short transfers and the kernel's iovec limit. Stops
/// early at end of file (reads) or when the kernel accepts nothing more (writes). Returns the
/// bytes moved.
pub(crate) fn transfer<B: BitmapSlice>(
    fd: BorrowedFd<'_>,
    direction: Transfer,
    slices: &[VolatileSlice<'_, B>],
    len: usize,
    offset: u64,
) -> io::Result<usize> {
    if let [slice] = slices {
        return transfer_one(fd, direction, slice, len, offset);
    }
    // Keep the pointer guards alive for the whole transfer: for memory with a dirty bitmap the
    // mutable guard marks the pages dirty when it is dropped.
    let mut guards = Vec::with_capacity(slices.len());
    let mut iovecs = Vec::with_capacity(slices.len());
    let mut remaining = len;
    for slice in slices {
        if remaining == 0 {
            break;
        }
        let piece = slice.len().min(remaining);
        remaining -= piece;
        let guard = slice.ptr_guard_mut();
        iovecs.push(libc::iovec {
            iov_base: guard.as_ptr().cast(),
            iov_len: piece,
        });
        guards.push(guard);
    }
    let total = len - remaining;
    let mut done = 0usize;
    let mut first = 0usize;
    while done < total {
        let batch = &iovecs[first..iovecs.len().min(first + MAX_IOVECS)];
        let position = i64::try_from(offset.saturating_add(done as u64))
            .map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
        let count = libc::c_int::try_from(batch.len()).unwrap_or(libc::c_int::MAX);
        let moved = retry_eintr(|| {
            // SAFETY: every iovec points into a volatile slice that stays valid while `guards`
            // (borrowing `slices`) lives; the kernel reads or writes at most `iov_len` bytes
            // of each.
            check_size(unsafe {
                match direction {
                    Transfer::Read => libc::preadv(fd.as_raw_fd(), batch.as_ptr(), count, position),
                    Transfer::Write => {
                        libc::pwritev(fd.as_raw_fd(), batch.as_ptr(), count, position)
                    }
                }
            })
        })?;
        if moved == 0 {
            break;
        }
        done += moved;
        // Drop the iovecs that are complete and trim the one the transfer stopped in.
        let mut skip = moved;
        while skip > 0 && first < iovecs.len() {
            let piece = &mut iovecs[first];
            if skip >= piece.iov_len {
                skip -= piece.iov_len;
                first += 1;
            } else {
                // SAFETY: `skip < iov_len`, so the advanced pointer stays inside the same piece.
                piece.iov_base = unsafe { piece.iov_base.cast::<u8>().add(skip) }.cast();
                piece.iov_len -= skip;
                skip = 0;
            }
        }
    }
    drop(guards);
    Ok(done)
}

/// [`transfer`] for a single piece of memory (a one-page guest buffer): plain `pread`/`pwrite`,
/// no iovec arrays.
fn transfer_one<B: BitmapSlice>(
    fd: BorrowedFd<'_>,
    direction: Transfer,
    slice: &VolatileSlice<'_, B>,
    len: usize,
    offset: u64,
) -> io::Result<usize> {
    let total = slice.len().min(len);
    let guard = slice.ptr_guard_mut();
    let base = guard.as_ptr();
    let mut done = 0usize;
    while done < total {
        let position = i64::try_from(offset.saturating_add(done as u64))
            .map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
        let moved = retry_eintr(|| {
            // SAFETY: `base + done .. base + total` lies inside the volatile slice, which stays
            // valid while `guard` (borrowing it) lives; the kernel touches at most that range.
            check_size(unsafe {
                let at = base.add(done).cast();
                match direction {
                    Transfer::Read => libc::pread(fd.as_raw_fd(), at, total - done, position),
                    Transfer::Write => libc::pwrite(fd.as_raw_fd(), at, total - done, position),
                }
            })
        })?;
        if moved == 0 {
            break;
        }
        done += moved;
    }
    // `guard` lives until here, past the last system call.
    let _ = &guard;
    Ok(done)
}

/// One entry of a directory stream, as `getdents64` returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RawDirEntry {
    /// The entry's name (never empty, never containing `/` or NUL).
    pub(crate) name: CString,
    /// The directory offset just after this entry (`d_off`, a cookie for `lseek`).
    pub(crate) next_offset: i64,
}

/// Reads the next batch of entries of the directory stream `fd` into `buf`; returns how many
/// bytes the kernel filled (0 at the end of the stream).
pub(crate) fn getdents64(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    retry_eintr(|| {
        // SAFETY: `buf` is writable for `buf.len()` bytes; the kernel fills at most that many.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                fd.as_raw_fd(),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            usize::try_from(ret).map_err(|_| io::Error::from_raw_os_error(libc::EIO))
        }
    })
}

/// `lseek(fd, offset, SEEK_SET)`: moves a directory stream to a `d_off` cookie (0: the start).
pub(crate) fn seek_directory(fd: BorrowedFd<'_>, offset: i64) -> io::Result<()> {
    // SAFETY: plain system call on a borrowed descriptor.
    let ret = unsafe { libc::lseek(fd.as_raw_fd(), offset, libc::SEEK_SET) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Offsets inside a `struct linux_dirent64` record.
const DIRENT_OFF: usize = 8;
const DIRENT_RECLEN: usize = 16;
const DIRENT_NAME: usize = 19;

/// Parses one `linux_dirent64` record at the start of `buf`; returns the entry and the record
/// length, or `None` if the bytes do not form a complete record.
pub(crate) fn parse_dirent(buf: &[u8]) -> Option<(RawDirEntry, usize)> {
    let reclen_bytes = buf.get(DIRENT_RECLEN..DIRENT_RECLEN + 2)?;
    let reclen = usize::from(u16::from_ne_bytes([reclen_bytes[0], reclen_bytes[1]]));
    let record = buf.get(..reclen)?;
    let offset_bytes: [u8; 8] = record.get(DIRENT_OFF..DIRENT_OFF + 8)?.try_into().ok()?;
    let name_area = record.get(DIRENT_NAME..)?;
    let name = CStr::from_bytes_until_nul(name_area).ok()?;
    if name.is_empty() {
        return None;
    }
    Some((
        RawDirEntry {
            name: name.to_owned(),
            next_offset: i64::from_ne_bytes(offset_bytes),
        },
        reclen,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn dirent_parser_reads_name_and_offset_and_rejects_truncated_records() {
        let mut record = vec![0u8; 24];
        record[DIRENT_OFF..DIRENT_OFF + 8].copy_from_slice(&77i64.to_ne_bytes());
        record[DIRENT_RECLEN..DIRENT_RECLEN + 2].copy_from_slice(&24u16.to_ne_bytes());
        record[DIRENT_NAME..DIRENT_NAME + 2].copy_from_slice(b"ab");
        let (entry, len) = parse_dirent(&record).expect("complete record");
        assert_eq!(
            (entry.name.as_bytes(), entry.next_offset, len),
            (&b"ab"[..], 77, 24)
        );
        assert!(parse_dirent(&record[..20]).is_none());
    }

    #[test]
    fn dirent_parser_never_panics_on_random_bytes() {
        for input in crate::testutil::random_inputs(20_000, 64) {
            if let Some((entry, length)) = parse_dirent(&input) {
                assert!(length <= input.len() && !entry.name.is_empty());
            }
        }
    }

    #[test]
    fn dirent_parser_rejects_names_without_terminator() {
        let mut record = vec![b'x'; 24];
        record[DIRENT_RECLEN..DIRENT_RECLEN + 2].copy_from_slice(&24u16.to_ne_bytes());
        assert!(parse_dirent(&record).is_none());
    }

    #[test]
    fn transfer_reads_across_slices_and_stops_at_end_of_file() {
        let dir = crate::testutil::TempDir::new();
        std::fs::write(dir.path().join("f"), b"hello world").expect("write");
        let file = std::fs::File::open(dir.path().join("f")).expect("open");
        let mut a = [0u8; 4];
        let mut b = [0u8; 16];
        let slices = [
            VolatileSlice::from(&mut a[..]),
            VolatileSlice::from(&mut b[..]),
        ];
        let n = transfer(file.as_fd(), Transfer::Read, &slices, 20, 0).expect("read");
        assert_eq!(n, 11);
        assert_eq!(&a, b"hell");
        assert_eq!(&b[..7], b"o world");
    }

    #[test]
    fn single_slice_transfer_writes_then_reads_back() {
        let dir = crate::testutil::TempDir::new();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.path().join("f"))
            .expect("create");
        let mut data = *b"payload";
        let written = transfer(
            file.as_fd(),
            Transfer::Write,
            &[VolatileSlice::from(&mut data[..])],
            7,
            3,
        )
        .expect("write");
        assert_eq!(written, 7);
        let mut back = [0u8; 10];
        let read = transfer(
            file.as_fd(),
            Transfer::Read,
            &[VolatileSlice::from(&mut back[..])],
            10,
            0,
        )
        .expect("read");
        assert_eq!((read, &back), (10, b"\0\0\0payload"));
    }
}
