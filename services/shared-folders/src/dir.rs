//! Directory enumeration for LIST: the cursor lives in the directory handle.
//!
//! A [`Listing`] reads the directory with `getdents64` and hands out entries until the guest's
//! buffer is full; an entry that does not fit is given back to the kernel (the stream seeks to
//! the position just after the last entry handed out), so the next call returns it first and
//! an open handle keeps no entries in memory between calls. `.` and `..` are listed like any
//! other entry (as VirtualBox does; Linux shows exactly what the host lists). Every entry is
//! described with `statx` relative to the directory descriptor and its single name, so listing
//! never resolves a guest path; `..` of the share root is described as the root itself, so the
//! directory above the share stays invisible.
//!
//! Records are packed back to back without padding (`126 + name.size` bytes each), the layout
//! the Linux guest walks.

use std::ffi::CStr;
use std::os::fd::{AsFd, OwnedFd};

use vmmdev_protocol::services::shared_folders::{DirInfo, ShflStringHeader};
use zerocopy::IntoBytes;
use zerocopy::little_endian::U16;

use crate::error::FsError;
use crate::info;
use crate::path::GuestPath;
use crate::share::ShareRoot;
use crate::string::{self, Encoding};
use crate::sys::{self, RawDirEntry};

/// Most bytes the kernel fills per `getdents64` call (one buffer shared by all listings).
pub const DIRENT_BUFFER_SIZE: usize = 32 * 1024;
/// Fewest bytes asked of `getdents64` (room for several of the largest records).
const MIN_DIRENT_BATCH: usize = 2048;
/// A guest record is several times larger than the kernel's record of the same entry
/// (126 bytes of header against 19), so a batch of a third of the guest's buffer yields about
/// as many entries as fit: little is read only to be given back.
const GUEST_TO_DIRENT_RATIO: usize = 3;
/// Longest search pattern, in characters (one name component).
pub const MAX_PATTERN_CHARS: usize = 255;

/// A directory stream whose only state between calls is the kernel's position in it.
///
/// Entries are read in batches into a buffer the caller lends; whatever a call does not hand
/// out is given back to the kernel by seeking to the `d_off` cookie of the last entry handed
/// out (or skipped), so an open directory handle holds no entry buffer between calls.
#[derive(Debug)]
pub(crate) struct DirStream {
    fd: OwnedFd,
    /// The offset just after the last entry handed out or skipped.
    position: i64,
    at_end: bool,
}

impl DirStream {
    /// A stream over the directory `fd` (opened for reading and not yet read).
    pub(crate) fn new(fd: OwnedFd) -> DirStream {
        DirStream {
            fd,
            position: 0,
            at_end: false,
        }
    }

    /// Starts over from the first entry.
    pub(crate) fn rewind(&mut self) -> Result<(), FsError> {
        sys::seek_directory(self.fd.as_fd(), 0).map_err(FsError::io("rewind directory"))?;
        self.position = 0;
        self.at_end = false;
        Ok(())
    }

    /// Puts the kernel's position back just after the last entry handed out.
    fn give_back(&self) -> Result<(), FsError> {
        sys::seek_directory(self.fd.as_fd(), self.position).map_err(FsError::io("seek directory"))
    }
}

/// A case-insensitive Windows-style wildcard pattern (`*` any run, `?` one character).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    chars: Vec<char>,
}

fn fold(c: char) -> char {
    c.to_lowercase().next().unwrap_or(c)
}

impl Pattern {
    /// The pattern for one name component.
    pub fn new(text: &str) -> Result<Pattern, FsError> {
        let chars: Vec<char> = text.chars().map(fold).collect();
        if chars.len() > MAX_PATTERN_CHARS {
            return Err(FsError::InvalidParameter("search pattern too long"));
        }
        Ok(Pattern { chars })
    }

    /// Whether `name` matches. Linear backtracking over the last `*`: at most
    /// `pattern × name` steps, both bounded to a name's length.
    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().map(fold).collect();
        let (mut p, mut n) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while n < name.len() {
            match self.chars.get(p) {
                Some('*') => {
                    star = Some((p, n));
                    p += 1;
                }
                Some(&c) if c == '?' || c == name[n] => {
                    p += 1;
                    n += 1;
                }
                _ => match star {
                    Some((star_p, star_n)) => {
                        p = star_p + 1;
                        n = star_n + 1;
                        star = Some((star_p, star_n + 1));
                    }
                    None => return false,
                },
            }
        }
        self.chars[p.min(self.chars.len())..]
            .iter()
            .all(|&c| c == '*')
    }
}

/// The enumeration state of a directory handle.
#[derive(Debug)]
pub struct Listing {
    stream: DirStream,
    /// The enumerated directory's path from the root (differs from the handle's own path for
    /// a filtered search).
    dir: GuestPath,
    pattern: Option<Pattern>,
}

impl Listing {
    /// An unfiltered enumeration of `dir` through its descriptor `fd` (opened for reading).
    pub fn new(fd: OwnedFd, dir: GuestPath) -> Listing {
        Listing {
            stream: DirStream::new(fd),
            dir,
            pattern: None,
        }
    }

    /// A filtered enumeration (the separate search a LIST filter starts).
    pub fn search(fd: OwnedFd, dir: GuestPath, pattern: Pattern) -> Listing {
        Listing {
            stream: DirStream::new(fd),
            dir,
            pattern: Some(pattern),
        }
    }

    /// Starts over.
    pub fn rewind(&mut self) -> Result<(), FsError> {
        self.stream.rewind()
    }
}

/// How a LIST call went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Filled {
    /// Bytes of records written.
    pub bytes: usize,
    /// Records written.
    pub entries: u32,
    /// The enumeration ended during this call.
    pub exhausted: bool,
    /// The first entry alone did not fit (nothing written, entry kept).
    pub overflow: bool,
}

/// What a LIST call asks for.
#[derive(Clone, Copy, Debug)]
pub struct FillRequest {
    /// The client's string encoding.
    pub encoding: Encoding,
    /// Whether symlinks are followed (clients that did not call SET_SYMLINKS).
    pub follow: bool,
    /// Return at most one entry.
    pub one: bool,
    /// Bytes available in the guest's buffer.
    pub capacity: usize,
}

/// The record of one entry, or `None` if it is to be skipped (name not representable in the
/// client's encoding, or the entry vanished).
fn record(
    listing: &Listing,
    share: &ShareRoot,
    entry: &RawDirEntry,
    request: &FillRequest,
) -> Result<Option<Vec<u8>>, FsError> {
    let Ok(name) = entry.name.to_str() else {
        return Ok(None);
    };
    if let Some(pattern) = &listing.pattern {
        if !pattern.matches(name) {
            return Ok(None);
        }
    }
    let Some(st) = entry_stat(listing, share, &entry.name, name, request.follow)? else {
        return Ok(None);
    };
    let encoded = string::encode(name, request.encoding);
    let Ok(length) = u16::try_from(encoded.len()) else {
        return Ok(None);
    };
    let Ok(size) = u16::try_from(encoded.len() + request.encoding.terminator_len()) else {
        return Ok(None);
    };
    let header = DirInfo {
        info: info::obj_info(&st, Some(name)),
        short_name_len: U16::new(0),
        short_name: [U16::new(0); 14],
        name: ShflStringHeader {
            size: U16::new(size),
            length: U16::new(length),
        },
    };
    let mut out = Vec::with_capacity(DirInfo::record_size(size));
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&encoded);
    out.resize(DirInfo::record_size(size), 0);
    Ok(Some(out))
}

/// `statx` of one entry; `None` if it no longer exists.
fn entry_stat(
    listing: &Listing,
    share: &ShareRoot,
    raw_name: &CStr,
    name: &str,
    follow: bool,
) -> Result<Option<libc::statx>, FsError> {
    let dir = listing.stream.fd.as_fd();
    let st = match sys::statx(dir, raw_name, false) {
        Ok(st) => st,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(FsError::io("stat entry")(e)),
    };
    if name == ".." {
        // `..` of the share root would describe the directory above the share.
        let this = sys::fstat(dir).map_err(FsError::io("stat directory"))?;
        if share.is_root(&this) {
            return Ok(Some(this));
        }
    }
    if follow && info::is_symlink(u32::from(st.stx_mode)) {
        if let Ok(path) = listing.dir.child(name) {
            if let Ok(followed) = share.stat(&path, true) {
                return Ok(Some(followed));
            }
        }
    }
    Ok(Some(st))
}

/// Packs as many entries as fit into `out` (cleared first), reading the directory through
/// `dirents`.
pub fn fill(
    listing: &mut Listing,
    share: &ShareRoot,
    request: &FillRequest,
    out: &mut Vec<u8>,
    dirents: &mut Vec<u8>,
) -> Result<Filled, FsError> {
    out.clear();
    let batch = if request.one {
        MIN_DIRENT_BATCH
    } else {
        (request.capacity / GUEST_TO_DIRENT_RATIO).clamp(MIN_DIRENT_BATCH, DIRENT_BUFFER_SIZE)
    };
    dirents.resize(batch, 0);
    let mut filled = Filled::default();
    'batches: while !listing.stream.at_end {
        let length = sys::getdents64(listing.stream.fd.as_fd(), &mut dirents[..batch])
            .map_err(FsError::io("read directory"))?;
        if length == 0 {
            listing.stream.at_end = true;
            break;
        }
        let mut at = 0;
        while let Some((entry, record_length)) = dirents.get(at..length).and_then(sys::parse_dirent)
        {
            at += record_length;
            let bytes = match record(listing, share, &entry, request) {
                Ok(Some(bytes)) => bytes,
                Ok(None) => {
                    listing.stream.position = entry.next_offset;
                    continue;
                }
                Err(e) => {
                    // Leave the stream at the entry that failed, for a retry.
                    let _ = listing.stream.give_back();
                    return Err(e);
                }
            };
            if out.len() + bytes.len() > request.capacity {
                listing.stream.give_back()?;
                filled.overflow = filled.entries == 0;
                break 'batches;
            }
            out.extend_from_slice(&bytes);
            filled.entries += 1;
            listing.stream.position = entry.next_offset;
            if request.one {
                listing.stream.give_back()?;
                break 'batches;
            }
        }
        // The whole batch was consumed: the kernel's position is just after its last entry.
    }
    filled.bytes = out.len();
    filled.exhausted = listing.stream.at_end;
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SymlinkPolicy;
    use crate::testutil::TempDir;

    fn listing_of(dir: &TempDir) -> (ShareRoot, Listing) {
        let share = ShareRoot::open(dir.path(), SymlinkPolicy::Inside).expect("root");
        let fd = share
            .open_path(&GuestPath::root(), libc::O_RDONLY | libc::O_DIRECTORY, 0)
            .expect("open");
        (share, Listing::new(fd, GuestPath::root()))
    }

    fn request(capacity: usize) -> FillRequest {
        FillRequest {
            encoding: Encoding::Utf8,
            follow: false,
            one: false,
            capacity,
        }
    }

    fn names(records: &[u8]) -> Vec<String> {
        let mut names = Vec::new();
        let mut at = 0;
        while at + 126 <= records.len() {
            let size = usize::from(u16::from_le_bytes([records[at + 122], records[at + 123]]));
            let length = usize::from(u16::from_le_bytes([records[at + 124], records[at + 125]]));
            names.push(String::from_utf8_lossy(&records[at + 126..at + 126 + length]).into());
            at += 126 + size;
        }
        names
    }

    #[test]
    fn listing_includes_dot_entries_and_files() {
        let dir = TempDir::new();
        std::fs::write(dir.path().join("a"), b"").expect("write");
        let (share, mut listing) = listing_of(&dir);
        let mut out = Vec::new();
        let filled = fill(
            &mut listing,
            &share,
            &request(16384),
            &mut out,
            &mut Vec::new(),
        )
        .expect("fill");
        let mut listed = names(&out);
        listed.sort();
        assert_eq!(listed, [".", "..", "a"]);
        assert_eq!(filled.entries, 3);
        assert!(filled.exhausted);
    }

    #[test]
    fn entry_that_does_not_fit_is_kept_for_the_next_call() {
        let dir = TempDir::new();
        for name in ["one", "two", "three"] {
            std::fs::write(dir.path().join(name), b"").expect("write");
        }
        let (share, mut listing) = listing_of(&dir);
        let mut seen = Vec::new();
        let mut out = Vec::new();
        loop {
            let filled = fill(
                &mut listing,
                &share,
                &request(2 * 132),
                &mut out,
                &mut Vec::new(),
            )
            .expect("fill");
            seen.extend(names(&out));
            if filled.exhausted {
                break;
            }
        }
        seen.sort();
        assert_eq!(seen, [".", "..", "one", "three", "two"]);
    }

    #[test]
    fn first_entry_too_large_reports_overflow_and_keeps_it() {
        let dir = TempDir::new();
        let (share, mut listing) = listing_of(&dir);
        let mut out = Vec::new();
        let filled = fill(
            &mut listing,
            &share,
            &request(100),
            &mut out,
            &mut Vec::new(),
        )
        .expect("fill");
        assert!(filled.overflow);
        assert_eq!(filled.entries, 0);
        let filled = fill(
            &mut listing,
            &share,
            &request(16384),
            &mut out,
            &mut Vec::new(),
        )
        .expect("fill");
        assert_eq!(filled.entries, 2);
    }

    #[test]
    fn dot_dot_of_the_root_describes_the_root() {
        let dir = TempDir::new();
        let (share, mut listing) = listing_of(&dir);
        let root_ino = sys::fstat(share.fd()).expect("stat").stx_ino;
        let mut out = Vec::new();
        fill(
            &mut listing,
            &share,
            &request(16384),
            &mut out,
            &mut Vec::new(),
        )
        .expect("fill");
        let mut at = 0;
        while at + 126 <= out.len() {
            let size = usize::from(u16::from_le_bytes([out[at + 122], out[at + 123]]));
            let ino = u64::from_le_bytes(out[at + 72..at + 80].try_into().expect("8 bytes"));
            assert_eq!(ino, root_ino);
            at += 126 + size;
        }
    }

    #[test]
    fn wildcards_match_case_insensitively() {
        let pattern = Pattern::new("*.TXT").expect("pattern");
        assert!(pattern.matches("notes.txt"));
        assert!(!pattern.matches("notes.txt.bak"));
        let single = Pattern::new("a?c").expect("pattern");
        assert!(single.matches("ABC"));
        assert!(!single.matches("ac"));
        assert!(Pattern::new("*").expect("pattern").matches(""));
    }

    #[test]
    fn overlong_patterns_are_refused() {
        assert!(Pattern::new(&"*".repeat(256)).is_err());
    }
}
