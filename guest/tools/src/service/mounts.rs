//! Mounting and unmounting shares with the kernel's `vboxsf` file system, and reading which
//! shares are mounted where.
//!
//! [`SystemMounter`] does it for real with `mount(2)` and `umount2(2)`; the automounter's logic
//! only sees the [`Mounter`] trait, so its tests use a recording double.
//!
//! Mount options, as VirtualBox's automounter sets them: when the guest has a `vboxsf` group,
//! files belong to it (`gid=<vboxsf>,dmode=0770,fmode=0770`), so members of the group reach the
//! shares; otherwise the driver's defaults apply. A share the host offers read-only is mounted
//! read-only (`MS_RDONLY`). A mount point that exists must be an empty directory: a share never
//! hides guest files (the host chooses auto-mount points, and could otherwise name `/etc`).

use std::ffi::{CString, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// The file system type.
pub const VBOXSF: &str = "vboxsf";

/// A share to mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountRequest {
    /// The share name (the mount source).
    pub name: String,
    /// Where to mount it.
    pub point: PathBuf,
    /// Whether the host lets the guest write.
    pub writable: bool,
}

/// Performs mounts; implemented by [`SystemMounter`] and by test doubles.
pub trait Mounter {
    /// Whether `name` is mounted with vboxsf at `point` already.
    fn is_mounted(&self, name: &str, point: &Path) -> bool;
    /// Mounts the share, creating the mount point if needed; returns whether it created the
    /// directory.
    fn mount(&mut self, request: &MountRequest) -> io::Result<bool>;
    /// Unmounts `point`; removes the directory if `remove_dir` (it was created by `mount`).
    fn unmount(&mut self, point: &Path, remove_dir: bool) -> io::Result<()>;
}

/// One line of `/proc/self/mounts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    /// The source (for vboxsf: the share name).
    pub source: String,
    /// The mount point.
    pub target: PathBuf,
    /// The file system type.
    pub fs_type: String,
}

/// Parses the text of `/proc/self/mounts` (fields separated by spaces, with `\ooo` octal escapes
/// for space, tab, newline and backslash).
pub fn parse_mounts(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let source = unescape(fields.next()?);
            let target = unescape(fields.next()?);
            let fs_type = unescape(fields.next()?);
            Some(MountEntry {
                source: String::from_utf8_lossy(&source).into_owned(),
                target: PathBuf::from(OsString::from_vec(target)),
                fs_type: String::from_utf8_lossy(&fs_type).into_owned(),
            })
        })
        .collect()
}

/// Undoes the kernel's `\ooo` escapes.
fn unescape(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|digits| bytes[i] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d)))
            .and_then(|digits| u8::from_str_radix(std::str::from_utf8(digits).ok()?, 8).ok());
        match octal {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

/// The id of group `name` in `/etc/group` text.
pub fn group_id(group_file: &str, name: &str) -> Option<u32> {
    group_file.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        fields.nth(1)?.parse().ok()
    })
}

/// The vboxsf option string for a guest whose `vboxsf` group has id `gid`.
pub fn mount_options(vboxsf_gid: Option<u32>) -> Option<String> {
    vboxsf_gid.map(|gid| format!("gid={gid},dmode=0770,fmode=0770"))
}

/// Mounts with the system calls.
#[derive(Debug, Default)]
pub struct SystemMounter;

impl SystemMounter {
    fn mounted() -> Vec<MountEntry> {
        match std::fs::read_to_string("/proc/self/mounts") {
            Ok(text) => parse_mounts(&text),
            Err(error) => {
                log::warn!("automount: reading /proc/self/mounts failed: {error}");
                Vec::new()
            }
        }
    }
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL"))
}

fn c_text(text: &str) -> io::Result<CString> {
    CString::new(text).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "text holds a NUL"))
}

impl Mounter for SystemMounter {
    fn is_mounted(&self, name: &str, point: &Path) -> bool {
        Self::mounted()
            .iter()
            .any(|entry| entry.fs_type == VBOXSF && entry.source == name && entry.target == point)
    }

    fn mount(&mut self, request: &MountRequest) -> io::Result<bool> {
        let created = match std::fs::symlink_metadata(&request.point) {
            Ok(metadata) if metadata.is_dir() => {
                if std::fs::read_dir(&request.point)?.next().is_some() {
                    return Err(io::Error::new(
                        io::ErrorKind::DirectoryNotEmpty,
                        "the mount point is a directory that is not empty",
                    ));
                }
                false
            }
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "the mount point exists and is not a directory",
                ));
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&request.point)?;
                true
            }
            Err(error) => return Err(error),
        };
        let gid = std::fs::read_to_string("/etc/group")
            .ok()
            .and_then(|text| group_id(&text, "vboxsf"));
        let options = mount_options(gid).map(|text| c_text(&text)).transpose()?;
        let source = c_text(&request.name)?;
        let target = c_path(&request.point)?;
        let fs_type = c_text(VBOXSF)?;
        let flags = if request.writable { 0 } else { libc::MS_RDONLY };
        let data = options
            .as_ref()
            .map_or(std::ptr::null(), |options| options.as_ptr().cast());
        // SAFETY: every pointer is a NUL-terminated string that lives across the call (or null
        // for no options), as mount(2) requires.
        let rc = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                fs_type.as_ptr(),
                flags,
                data,
            )
        };
        if rc != 0 {
            let error = io::Error::last_os_error();
            if created {
                let _ = std::fs::remove_dir(&request.point);
            }
            return Err(error);
        }
        Ok(created)
    }

    fn unmount(&mut self, point: &Path, remove_dir: bool) -> io::Result<()> {
        let target = c_path(point)?;
        // SAFETY: `target` is a NUL-terminated path that lives across the call.
        if unsafe { libc::umount2(target.as_ptr(), 0) } != 0 {
            let error = io::Error::last_os_error();
            // EINVAL: not a mount point any more (someone else unmounted it).
            if error.raw_os_error() != Some(libc::EINVAL) {
                return Err(error);
            }
        }
        if remove_dir {
            if let Err(error) = std::fs::remove_dir(point) {
                log::debug!("automount: removing {}: {error}", point.display());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_mounts_lines_give_source_target_and_type_with_escapes_undone() {
        let text = "proc /proc proc rw 0 0\n\
                    my\\040share /media/sf_my\\040share vboxsf rw,nodev 0 0\n";
        let entries = parse_mounts(text);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].source, "my share");
        assert_eq!(entries[1].target, PathBuf::from("/media/sf_my share"));
        assert_eq!(entries[1].fs_type, "vboxsf");
    }

    #[test]
    fn a_backslash_without_three_octal_digits_stays() {
        assert_eq!(unescape("a\\9b\\"), b"a\\9b\\");
    }

    #[test]
    fn a_non_empty_mount_point_is_refused_before_mounting() {
        let dir = std::env::temp_dir().join(format!("vboxservice-mounts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("guest-file"), "keep").unwrap();
        let error = SystemMounter
            .mount(&MountRequest {
                name: "share".into(),
                point: dir.clone(),
                writable: true,
            })
            .unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(error.kind(), io::ErrorKind::DirectoryNotEmpty);
    }

    #[test]
    fn a_mount_point_that_is_a_file_is_refused() {
        let file = std::env::temp_dir().join(format!("vboxservice-file-{}", std::process::id()));
        std::fs::write(&file, "").unwrap();
        let error = SystemMounter
            .mount(&MountRequest {
                name: "share".into(),
                point: file.clone(),
                writable: true,
            })
            .unwrap_err();
        std::fs::remove_file(&file).unwrap();
        assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);
    }

    #[test]
    fn group_id_finds_the_named_group_only() {
        let groups = "root:x:0:\nvboxsf:x:998:alice,bob\nusers:x:100:\n";
        assert_eq!(group_id(groups, "vboxsf"), Some(998));
        assert_eq!(group_id(groups, "vbox"), None);
    }

    #[test]
    fn options_give_the_group_and_modes_only_with_a_vboxsf_group() {
        assert_eq!(
            mount_options(Some(998)).as_deref(),
            Some("gid=998,dmode=0770,fmode=0770")
        );
        assert_eq!(mount_options(None), None);
    }
}
