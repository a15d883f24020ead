//! A writer for the "newc" cpio format, the archive format of a Linux initramfs.
//!
//! The kernel unpacks an initramfs from a (usually compressed) newc archive: a sequence of 110-byte ASCII
//! headers, each followed by the entry's name and data, both padded to 4 bytes, closed by an entry named
//! `TRAILER!!!`. Writing it ourselves keeps the image build free of host tools and makes it reproducible:
//! every entry is owned by root, has modification time 0 and a fresh inode number.

use std::io::{self, Write};

/// The magic of a newc header without checksums.
const NEWC_MAGIC: &[u8; 6] = b"070701";
/// The name of the entry that closes an archive.
const TRAILER: &str = "TRAILER!!!";

/// File type bits of `st_mode`.
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;
const PERMISSION_BITS: u32 = 0o7777;

/// Errors of [`CpioWriter`].
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    /// An entry path was empty, absolute, contained `.`/`..` components, empty components or a NUL byte.
    #[error(
        "invalid archive path {0:?}: paths are relative, without '.', '..', empty parts or NUL"
    )]
    InvalidPath(String),
    /// The data of an entry does not fit the format's 32-bit size field.
    #[error("{path}: {size} bytes exceed the 4 GiB limit of a cpio entry")]
    TooLarge {
        /// The entry's path.
        path: String,
        /// Its size in bytes.
        size: usize,
    },
    /// Writing to the underlying stream failed.
    #[error("writing the cpio archive failed")]
    Io(#[from] io::Error),
}

/// Writes a newc archive entry by entry; [`CpioWriter::finish`] appends the trailer.
///
/// Parent directories are not created implicitly: add them before their contents, as the kernel creates
/// entries in archive order.
#[derive(Debug)]
pub struct CpioWriter<W: Write> {
    out: W,
    next_inode: u32,
}

/// The fields of one header that vary between entries.
struct Header<'a> {
    path: &'a str,
    mode: u32,
    size: u32,
    rdev_major: u32,
    rdev_minor: u32,
}

impl<W: Write> CpioWriter<W> {
    /// Starts an archive on `out`.
    pub fn new(out: W) -> Self {
        Self { out, next_inode: 1 }
    }

    /// Adds a directory with the given permission bits.
    pub fn directory(&mut self, path: &str, permissions: u32) -> Result<(), CpioError> {
        self.entry(
            Header {
                path: checked_path(path)?,
                mode: S_IFDIR | (permissions & PERMISSION_BITS),
                size: 0,
                rdev_major: 0,
                rdev_minor: 0,
            },
            &[],
        )
    }

    /// Adds a regular file with the given permission bits and contents.
    pub fn file(&mut self, path: &str, permissions: u32, data: &[u8]) -> Result<(), CpioError> {
        let size = u32::try_from(data.len()).map_err(|_| CpioError::TooLarge {
            path: path.to_owned(),
            size: data.len(),
        })?;
        self.entry(
            Header {
                path: checked_path(path)?,
                mode: S_IFREG | (permissions & PERMISSION_BITS),
                size,
                rdev_major: 0,
                rdev_minor: 0,
            },
            data,
        )
    }

    /// Adds a symbolic link pointing at `target` (stored verbatim, absolute or relative).
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<(), CpioError> {
        if target.is_empty() || target.contains('\0') {
            return Err(CpioError::InvalidPath(target.to_owned()));
        }
        let size = u32::try_from(target.len()).map_err(|_| CpioError::TooLarge {
            path: path.to_owned(),
            size: target.len(),
        })?;
        self.entry(
            Header {
                path: checked_path(path)?,
                mode: S_IFLNK | 0o777,
                size,
                rdev_major: 0,
                rdev_minor: 0,
            },
            target.as_bytes(),
        )
    }

    /// Adds a character device node.
    pub fn char_device(
        &mut self,
        path: &str,
        permissions: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), CpioError> {
        self.entry(
            Header {
                path: checked_path(path)?,
                mode: S_IFCHR | (permissions & PERMISSION_BITS),
                size: 0,
                rdev_major: major,
                rdev_minor: minor,
            },
            &[],
        )
    }

    /// Writes the trailer and returns the underlying stream.
    pub fn finish(mut self) -> Result<W, CpioError> {
        self.raw_entry(
            &Header {
                path: TRAILER,
                mode: 0,
                size: 0,
                rdev_major: 0,
                rdev_minor: 0,
            },
            0,
            &[],
        )?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn entry(&mut self, header: Header<'_>, data: &[u8]) -> Result<(), CpioError> {
        let inode = self.next_inode;
        self.next_inode = self.next_inode.wrapping_add(1);
        self.raw_entry(&header, inode, data)
    }

    fn raw_entry(&mut self, header: &Header<'_>, inode: u32, data: &[u8]) -> Result<(), CpioError> {
        // The name size counts the terminating NUL; paths are checked to be far below 4 GiB.
        let name_size = u32::try_from(header.path.len() + 1)
            .map_err(|_| CpioError::InvalidPath(header.path.to_owned()))?;
        let nlink = if header.mode & S_IFDIR == S_IFDIR {
            2
        } else {
            1
        };
        let fields = [
            inode,
            header.mode,
            0, // uid: root
            0, // gid: root
            nlink,
            0, // mtime: the epoch, for reproducible archives
            header.size,
            0, // devmajor of the file system holding the file
            0, // devminor
            header.rdev_major,
            header.rdev_minor,
            name_size,
            0, // check: unused by the newc variant
        ];
        let mut head = Vec::with_capacity(110 + header.path.len() + 4);
        head.extend_from_slice(NEWC_MAGIC);
        for field in fields {
            head.extend_from_slice(format!("{field:08x}").as_bytes());
        }
        head.extend_from_slice(header.path.as_bytes());
        head.push(0);
        head.resize(head.len().next_multiple_of(4), 0);
        self.out.write_all(&head)?;
        self.out.write_all(data)?;
        let padding = data.len().next_multiple_of(4) - data.len();
        self.out.write_all(&[0; 3][..padding])?;
        Ok(())
    }
}

/// Checks that `path` is a clean relative path (what the kernel expects in an initramfs).
fn checked_path(path: &str) -> Result<&str, CpioError> {
    let clean = !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\0')
        && path.split('/').all(|part| !matches!(part, "" | "." | ".."))
        && path != TRAILER;
    if clean {
        Ok(path)
    } else {
        Err(CpioError::InvalidPath(path.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One parsed entry of a newc archive, for checking what the writer produced.
    #[derive(Debug, PartialEq)]
    struct Parsed {
        name: String,
        inode: u32,
        mode: u32,
        uid: u32,
        mtime: u32,
        rdev: (u32, u32),
        data: Vec<u8>,
    }

    fn field(header: &[u8], index: usize) -> u32 {
        let start = 6 + index * 8;
        let text = std::str::from_utf8(&header[start..start + 8]).unwrap();
        u32::from_str_radix(text, 16).unwrap()
    }

    /// Parses an archive the way the kernel's initramfs unpacker does.
    fn parse(archive: &[u8]) -> Vec<Parsed> {
        let mut entries = Vec::new();
        let mut at = 0;
        loop {
            assert_eq!(at % 4, 0, "entries start 4-byte aligned");
            let header = &archive[at..at + 110];
            assert_eq!(&header[..6], NEWC_MAGIC);
            let name_size = field(header, 11) as usize;
            let size = field(header, 6) as usize;
            let name_start = at + 110;
            let name = std::str::from_utf8(&archive[name_start..name_start + name_size - 1])
                .unwrap()
                .to_owned();
            assert_eq!(
                archive[name_start + name_size - 1],
                0,
                "names are NUL-terminated"
            );
            let data_start = (name_start + name_size).next_multiple_of(4);
            let data = archive[data_start..data_start + size].to_vec();
            at = (data_start + size).next_multiple_of(4);
            if name == TRAILER {
                assert_eq!(at, archive.len(), "nothing follows the trailer");
                return entries;
            }
            entries.push(Parsed {
                name,
                inode: field(header, 0),
                mode: field(header, 1),
                uid: field(header, 2),
                mtime: field(header, 5),
                rdev: (field(header, 9), field(header, 10)),
                data,
            });
        }
    }

    fn archive(build: impl FnOnce(&mut CpioWriter<Vec<u8>>)) -> Vec<u8> {
        let mut writer = CpioWriter::new(Vec::new());
        build(&mut writer);
        writer.finish().unwrap()
    }

    #[test]
    fn empty_archive_is_only_the_trailer() {
        let bytes = archive(|_| {});
        assert!(parse(&bytes).is_empty());
        assert_eq!(bytes.len() % 4, 0);
    }

    #[test]
    fn file_keeps_name_permissions_and_unaligned_contents() {
        let bytes = archive(|w| w.file("bin/tool", 0o755, b"hello").unwrap());
        let entries = parse(&bytes);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].name, "bin/tool");
        assert_eq!(entries[0].mode, S_IFREG | 0o755);
        assert_eq!(entries[0].data, b"hello");
    }

    #[test]
    fn entries_are_owned_by_root_with_time_zero() {
        let bytes = archive(|w| {
            w.directory("etc", 0o755).unwrap();
            w.file("etc/x", 0o644, b"1").unwrap();
        });
        for entry in parse(&bytes) {
            assert_eq!((entry.uid, entry.mtime), (0, 0), "{}", entry.name);
        }
    }

    #[test]
    fn every_entry_gets_its_own_inode() {
        let bytes = archive(|w| {
            w.file("a", 0o644, b"").unwrap();
            w.file("b", 0o644, b"").unwrap();
            w.symlink("c", "a").unwrap();
        });
        let inodes: Vec<u32> = parse(&bytes).iter().map(|e| e.inode).collect();
        assert_eq!(inodes, [1, 2, 3]);
    }

    #[test]
    fn symlink_stores_its_target_as_data() {
        let bytes = archive(|w| w.symlink("bin/sh", "/bin/busybox").unwrap());
        let entries = parse(&bytes);
        assert_eq!(entries[0].mode, S_IFLNK | 0o777);
        assert_eq!(entries[0].data, b"/bin/busybox");
    }

    #[test]
    fn char_device_records_major_and_minor() {
        let bytes = archive(|w| w.char_device("dev/console", 0o600, 5, 1).unwrap());
        let entries = parse(&bytes);
        assert_eq!(entries[0].mode, S_IFCHR | 0o600);
        assert_eq!(entries[0].rdev, (5, 1));
    }

    #[test]
    fn file_type_bits_in_permissions_are_ignored() {
        let bytes = archive(|w| w.file("f", S_IFDIR | 0o640, b"").unwrap());
        assert_eq!(parse(&bytes)[0].mode, S_IFREG | 0o640);
    }

    #[test]
    fn absolute_path_is_rejected() {
        let mut writer = CpioWriter::new(Vec::new());
        assert!(matches!(
            writer.file("/init", 0o755, b""),
            Err(CpioError::InvalidPath(_))
        ));
    }

    #[test]
    fn parent_components_are_rejected() {
        let mut writer = CpioWriter::new(Vec::new());
        assert!(matches!(
            writer.directory("a/../b", 0o755),
            Err(CpioError::InvalidPath(_))
        ));
        assert!(matches!(
            writer.directory("a//b", 0o755),
            Err(CpioError::InvalidPath(_))
        ));
        assert!(matches!(
            writer.directory("", 0o755),
            Err(CpioError::InvalidPath(_))
        ));
    }

    #[test]
    fn entry_named_like_the_trailer_is_rejected() {
        let mut writer = CpioWriter::new(Vec::new());
        assert!(matches!(
            writer.file(TRAILER, 0o644, b""),
            Err(CpioError::InvalidPath(_))
        ));
    }

    #[test]
    fn empty_symlink_target_is_rejected() {
        let mut writer = CpioWriter::new(Vec::new());
        assert!(matches!(
            writer.symlink("x", ""),
            Err(CpioError::InvalidPath(_))
        ));
    }
}
