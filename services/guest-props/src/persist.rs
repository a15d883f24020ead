//! The file that keeps non-transient properties across monitor restarts.
//!
//! Every successful change to a non-transient property rewrites the whole file before the change
//! becomes visible (see `store`): the new contents go to a temporary file in the same directory,
//! which is flushed to disk (`fsync`), renamed over the old file, and the directory is flushed
//! too. A reader therefore always sees either the old or the new file, and a change a guest saw
//! succeed survives a `kill -9` of the monitor or a host crash. A lock file
//! (`<store>.lock`, `flock`) keeps two monitors from sharing one store.
//!
//! # Format (version 1)
//!
//! UTF-8 JSON lines: a header, one record per property (sorted by name), and a trailer that
//! counts the records, so that a file cut short is detected:
//!
//! ```text
//! {"format":"vmmdev-guest-props","version":1}
//! {"name":"/VirtualBox/GuestAdd/Version","value":"7.0.14","timestamp":1700000000000000000,"flags":""}
//! {"name":"/Custom/Key","value":"v","timestamp":1700000000000000001,"flags":"RDONLYHOST"}
//! {"end":2}
//! ```
//!
//! `timestamp` is in nanoseconds since the epoch; `flags` is VirtualBox's text form and never
//! contains TRANSIENT or TRANSRESET (transient properties are not stored).
//!
//! # Damaged files
//!
//! A file that does not follow this format exactly (bad header or version, a malformed or
//! invalid record, a duplicate name, a transient record, anything after the trailer, or no
//! trailer) is refused: the service does not start, and the error names the file and line.
//! The service never guesses which part of a damaged file is right; the operator repairs or
//! removes the file. A leftover temporary file from an interrupted write is ignored and
//! overwritten by the next write.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vmmdev_protocol::services::guest_props::PropertyFlags;
use vmmdev_protocol::status::Status;

use crate::store::Property;
use crate::wire::is_valid_name;

/// The `format` field of the header.
pub const FORMAT_NAME: &str = "vmmdev-guest-props";
/// The format version written.
pub const FORMAT_VERSION: u32 = 1;
/// Largest store file read at start.
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// Failures of the store file.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// Another process (or another service instance) holds the store's lock.
    #[error("store {0} is in use by another monitor (its lock file is held)")]
    Locked(PathBuf),
    /// The lock file could not be created or locked.
    #[error("cannot lock store {path}")]
    Lock {
        /// The store file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file could not be read.
    #[error("cannot read store {path}")]
    Read {
        /// The store file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("store {path} is {len} bytes, more than the {MAX_FILE_BYTES} accepted")]
    TooLarge {
        /// The store file.
        path: PathBuf,
        /// Its size.
        len: u64,
    },
    /// The file is damaged (see the module documentation).
    #[error("store {path} is damaged at line {line}: {reason}")]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The new contents could not be written durably.
    #[error("cannot write store {path}")]
    Write {
        /// The store file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl PersistError {
    /// The status the guest (or the loader) gets.
    pub fn status(&self) -> Status {
        match self {
            Self::Locked(_) => Status::VERR_FILE_LOCK_VIOLATION,
            Self::Lock { source, .. } | Self::Read { source, .. } | Self::Write { source, .. }
                if source.kind() == ErrorKind::PermissionDenied =>
            {
                Status::VERR_ACCESS_DENIED
            }
            Self::Write { source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => {
                Status::VERR_DISK_FULL
            }
            Self::TooLarge { .. } => Status::VERR_FILE_TOO_BIG,
            Self::Corrupt { .. } => Status::VERR_PARSE_ERROR,
            Self::Lock { .. } => Status::VERR_FILE_LOCK_FAILED,
            Self::Read { .. } | Self::Write { .. } => Status::VERR_WRITE_ERROR,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    version: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record<'a> {
    #[serde(borrow)]
    name: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    value: std::borrow::Cow<'a, str>,
    timestamp: u64,
    #[serde(borrow)]
    flags: std::borrow::Cow<'a, str>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Trailer {
    end: usize,
}

/// An open, locked store file.
#[derive(Debug)]
pub struct StoreFile {
    path: PathBuf,
    temporary: PathBuf,
    directory: PathBuf,
    /// Holds the `flock` for as long as the store is open.
    _lock: File,
}

fn sibling(path: &Path, prefix: &str, suffix: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!("{prefix}{name}{suffix}"))
}

impl StoreFile {
    /// Locks the store at `path` and reads it (a missing file is an empty store).
    pub fn open(path: &Path) -> Result<(StoreFile, Vec<Property>), PersistError> {
        let lock = lock(&sibling(path, "", ".lock"), path)?;
        let directory = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let file = StoreFile {
            path: path.to_path_buf(),
            temporary: sibling(path, ".", ".tmp"),
            directory,
            _lock: lock,
        };
        let properties = file.read()?;
        Ok((file, properties))
    }

    /// The store file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<Vec<Property>, PersistError> {
        let read_error = |source| PersistError::Read {
            path: self.path.clone(),
            source,
        };
        let file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(read_error(e)),
        };
        let len = file.metadata().map_err(read_error)?.len();
        if len > MAX_FILE_BYTES {
            return Err(PersistError::TooLarge {
                path: self.path.clone(),
                len,
            });
        }
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES)
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        parse(&bytes).map_err(|(line, reason)| PersistError::Corrupt {
            path: self.path.clone(),
            line,
            reason,
        })
    }

    /// Replaces the file's contents with `properties` (non-transient ones, by name), durably.
    pub fn write<'a>(
        &self,
        properties: impl IntoIterator<Item = &'a Property>,
    ) -> Result<(), PersistError> {
        let bytes = serialize(properties);
        self.replace(&bytes).map_err(|source| PersistError::Write {
            path: self.path.clone(),
            source,
        })
    }

    fn replace(&self, bytes: &[u8]) -> std::io::Result<()> {
        let file = File::create(&self.temporary)?;
        let mut writer = BufWriter::new(file);
        writer.write_all(bytes)?;
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&self.temporary, &self.path)?;
        File::open(&self.directory)?.sync_all()
    }
}

/// Opens `lock_path` and takes an exclusive, non-blocking `flock` on it.
fn lock(lock_path: &Path, store: &Path) -> Result<File, PersistError> {
    let lock_error = |source| PersistError::Lock {
        path: store.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path)
        .map_err(lock_error)?;
    // SAFETY: `flock` only operates on the descriptor, which `file` keeps open for the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(PersistError::Locked(store.to_path_buf()));
        }
        return Err(lock_error(error));
    }
    Ok(file)
}

/// The file contents for `properties`.
fn serialize<'a>(properties: impl IntoIterator<Item = &'a Property>) -> Vec<u8> {
    let mut out = Vec::new();
    let header = Header {
        format: FORMAT_NAME.to_owned(),
        version: FORMAT_VERSION,
    };
    push_line(&mut out, &header);
    let mut count = 0usize;
    for property in properties {
        let record = Record {
            name: property.name.as_str().into(),
            value: property.value.as_str().into(),
            timestamp: property.timestamp,
            flags: property.flags_text().into(),
        };
        push_line(&mut out, &record);
        count += 1;
    }
    push_line(&mut out, &Trailer { end: count });
    out
}

fn push_line(out: &mut Vec<u8>, item: &impl Serialize) {
    // Serializing these plain structs into a Vec cannot fail.
    if serde_json::to_writer(&mut *out, item).is_ok() {
        out.push(b'\n');
    }
}

/// Parses file contents; on failure, the 1-based line and the reason.
fn parse(bytes: &[u8]) -> Result<Vec<Property>, (usize, String)> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| (line_of(bytes, e.valid_up_to()), "not UTF-8".to_owned()))?;
    let mut lines = text
        .split_terminator('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l));
    let (_, first) = lines.next().ok_or((1, "empty file".to_owned()))?;
    let header: Header =
        serde_json::from_str(first).map_err(|e| (1, format!("bad header: {e}")))?;
    if header.format != FORMAT_NAME || header.version != FORMAT_VERSION {
        return Err((
            1,
            format!(
                "format {:?} version {} is not {FORMAT_NAME:?} version {FORMAT_VERSION}",
                header.format, header.version
            ),
        ));
    }
    let mut properties: Vec<Property> = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (number, line) in lines.by_ref() {
        if let Ok(trailer) = serde_json::from_str::<Trailer>(line) {
            if trailer.end != properties.len() {
                return Err((
                    number,
                    format!(
                        "trailer counts {} records, found {}",
                        trailer.end,
                        properties.len()
                    ),
                ));
            }
            if let Some((extra, _)) = lines.next() {
                return Err((extra, "data after the trailer".to_owned()));
            }
            return Ok(properties);
        }
        let record: Record<'_> =
            serde_json::from_str(line).map_err(|e| (number, format!("bad record: {e}")))?;
        let property = validate(record).map_err(|reason| (number, reason))?;
        if !names.insert(property.name.clone()) {
            return Err((number, format!("duplicate property {:?}", property.name)));
        }
        properties.push(property);
    }
    Err((
        text.lines().count() + 1,
        "no trailer: the file is cut short".to_owned(),
    ))
}

fn validate(record: Record<'_>) -> Result<Property, String> {
    // An empty name is odd but valid: VirtualBox accepts a two-byte `\0\0` name buffer.
    if !is_valid_name(&record.name) {
        return Err(format!("invalid property name {:?}", record.name));
    }
    if record.value.contains('\0') {
        return Err(format!("value of {:?} contains NUL", record.name));
    }
    let flags = PropertyFlags::parse(&record.flags)
        .map_err(|e| format!("flags of {:?}: {e}", record.name))?;
    if flags.intersects(PropertyFlags::TRANSIENT | PropertyFlags::TRANSRESET) {
        return Err(format!("transient property {:?} in the store", record.name));
    }
    Ok(Property {
        name: record.name.into_owned(),
        value: record.value.into_owned(),
        timestamp: record.timestamp,
        flags,
    })
}

fn line_of(bytes: &[u8], offset: usize) -> usize {
    bytes.iter().take(offset).filter(|&&b| b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;

    fn property(name: &str, value: &str, flags: PropertyFlags) -> Property {
        Property {
            name: name.into(),
            value: value.into(),
            timestamp: 42,
            flags,
        }
    }

    #[test]
    fn missing_file_is_an_empty_store() {
        let dir = TempDir::new("persist-missing");
        let (_, properties) = StoreFile::open(&dir.path("props.jsonl")).expect("opens");
        assert!(properties.is_empty());
    }

    #[test]
    fn written_properties_read_back_identically() {
        let dir = TempDir::new("persist-roundtrip");
        let path = dir.path("props.jsonl");
        let written = vec![
            property("/a", "tab\there \"quoted\" é", PropertyFlags::RDONLYHOST),
            property("/b", "", PropertyFlags::NILFLAG),
            property("/c", "line\nbreak", PropertyFlags::READONLY),
            property("", "empty name", PropertyFlags::NILFLAG),
        ];
        {
            let (file, _) = StoreFile::open(&path).expect("opens");
            file.write(&written).expect("writes");
        }
        let (_, mut read) = StoreFile::open(&path).expect("reopens");
        read.sort_by(|a, b| a.name.cmp(&b.name));
        let mut written = written;
        written.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(read, written);
    }

    #[test]
    fn file_layout_is_header_records_trailer() {
        let bytes = serialize(&[property("/a", "v", PropertyFlags::RDONLYGUEST)]);
        let text = String::from_utf8(bytes).expect("utf-8");
        assert_eq!(
            text,
            "{\"format\":\"vmmdev-guest-props\",\"version\":1}\n\
             {\"name\":\"/a\",\"value\":\"v\",\"timestamp\":42,\"flags\":\"RDONLYGUEST\"}\n\
             {\"end\":1}\n"
        );
    }

    #[test]
    fn second_open_of_a_locked_store_is_refused() {
        let dir = TempDir::new("persist-lock");
        let path = dir.path("props.jsonl");
        let (_first, _) = StoreFile::open(&path).expect("opens");
        let second = StoreFile::open(&path).unwrap_err();
        assert_eq!(second.status(), Status::VERR_FILE_LOCK_VIOLATION);
    }

    #[test]
    fn lock_is_released_when_the_store_is_dropped() {
        let dir = TempDir::new("persist-unlock");
        let path = dir.path("props.jsonl");
        drop(StoreFile::open(&path).expect("opens"));
        assert!(StoreFile::open(&path).is_ok());
    }

    #[test]
    fn write_leaves_no_temporary_file() {
        let dir = TempDir::new("persist-temp");
        let path = dir.path("props.jsonl");
        let (file, _) = StoreFile::open(&path).expect("opens");
        file.write(&[property("/a", "1", PropertyFlags::NILFLAG)])
            .expect("writes");
        assert!(!dir.path(".props.jsonl.tmp").exists());
    }

    #[test]
    fn leftover_temporary_file_is_ignored() {
        let dir = TempDir::new("persist-leftover");
        let path = dir.path("props.jsonl");
        std::fs::write(dir.path(".props.jsonl.tmp"), b"half a write").expect("write");
        let (file, read) = StoreFile::open(&path).expect("opens");
        assert!(read.is_empty());
        file.write(&[]).expect("writes over it");
    }

    fn corrupt_line(contents: &str) -> usize {
        match parse(contents.as_bytes()) {
            Err((line, _)) => line,
            Ok(props) => panic!("accepted damaged file: {props:?}"),
        }
    }

    const HEADER: &str = "{\"format\":\"vmmdev-guest-props\",\"version\":1}\n";

    #[test]
    fn file_cut_short_is_refused() {
        let contents =
            format!("{HEADER}{{\"name\":\"/a\",\"value\":\"v\",\"timestamp\":1,\"flags\":\"\"}}\n");
        assert_eq!(corrupt_line(&contents), 3);
    }

    #[test]
    fn trailer_with_the_wrong_count_is_refused() {
        assert_eq!(corrupt_line(&format!("{HEADER}{{\"end\":1}}\n")), 2);
    }

    #[test]
    fn garbage_record_is_refused_with_its_line() {
        let contents = format!("{HEADER}{{\"name\":\"/a\",\"valu\n{{\"end\":1}}\n");
        assert_eq!(corrupt_line(&contents), 2);
    }

    #[test]
    fn unknown_version_is_refused() {
        assert_eq!(
            corrupt_line("{\"format\":\"vmmdev-guest-props\",\"version\":2}\n{\"end\":0}\n"),
            1
        );
    }

    #[test]
    fn invalid_name_duplicate_and_transient_records_are_refused() {
        let record = |name: &str, flags: &str| {
            format!(
                "{{\"name\":\"{name}\",\"value\":\"v\",\"timestamp\":1,\"flags\":\"{flags}\"}}\n"
            )
        };
        let bad_name = format!("{HEADER}{}{{\"end\":1}}\n", record("/a*", ""));
        assert_eq!(corrupt_line(&bad_name), 2);
        let duplicate = format!(
            "{HEADER}{}{}{{\"end\":2}}\n",
            record("/a", ""),
            record("/a", "")
        );
        assert_eq!(corrupt_line(&duplicate), 3);
        let transient = format!("{HEADER}{}{{\"end\":1}}\n", record("/a", "TRANSIENT"));
        assert_eq!(corrupt_line(&transient), 2);
        let bad_flags = format!("{HEADER}{}{{\"end\":1}}\n", record("/a", "STICKY"));
        assert_eq!(corrupt_line(&bad_flags), 2);
    }

    #[test]
    fn data_after_the_trailer_is_refused() {
        assert_eq!(corrupt_line(&format!("{HEADER}{{\"end\":0}}\nextra\n")), 3);
    }

    #[test]
    fn damaged_file_refuses_open_with_parse_error() {
        let dir = TempDir::new("persist-damaged");
        let path = dir.path("props.jsonl");
        std::fs::write(&path, b"\x00\x01 not a store").expect("write");
        let err = StoreFile::open(&path).unwrap_err();
        assert_eq!(err.status(), Status::VERR_PARSE_ERROR);
        assert!(err.to_string().contains("props.jsonl"), "{err}");
    }
}
