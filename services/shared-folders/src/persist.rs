//! Saved state of a client session, for VM save/restore.
//!
//! What survives: the client's string encoding, its symlink semantics, its path delimiter and
//! which roots it has mapped (with map counts, the share name and the case-sensitivity the guest
//! asked for). Open handles do not survive, as in VirtualBox: the guest's driver reopens what it
//! needs. On restore a map is reattached only if the same root ID still names a share with the
//! same name; otherwise it is dropped (and the guest's operations on it fail).
//!
//! Layout (little-endian): `flags: u8` (bit 0 UTF-8, bit 1 symlinks as links), `delimiter: u8`
//! (0 none, 1 `/`, 2 `\`), `maps: u16`, then per map `root: u32`, `count: u32`,
//! `case_sensitive: u8`, `name_len: u16`, `name` (UTF-8).

use crate::path::Delimiter;

/// Most maps a saved session may hold (one per root ID).
const MAX_SAVED_MAPS: usize = 64;
/// Longest saved share name in bytes.
const MAX_SAVED_NAME: usize = 4 * crate::config::MAX_SHARE_NAME_CHARS;

const FLAG_UTF8: u8 = 0x1;
const FLAG_SYMLINKS: u8 = 0x2;

/// Why saved bytes could not be read back.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PersistError {
    /// The bytes end early or have bytes left over.
    #[error("saved session has the wrong length")]
    Length,
    /// A field holds a value no saved session has.
    #[error("saved session field {0} is invalid")]
    Field(&'static str),
}

/// One mapped root of a saved session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedMap {
    /// The root ID.
    pub root: u32,
    /// How many times the client mapped it.
    pub count: u32,
    /// Whether the guest asked for case-sensitive names.
    pub case_sensitive: bool,
    /// The share name at save time.
    pub name: String,
}

/// A saved client session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SavedSession {
    /// SET_UTF8 was called.
    pub utf8: bool,
    /// SET_SYMLINKS was called.
    pub symlinks_as_links: bool,
    /// The path delimiter, once the client mapped something.
    pub delimiter: Option<Delimiter>,
    /// The mapped roots.
    pub maps: Vec<SavedMap>,
}

impl SavedSession {
    /// The saved bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut flags = 0;
        if self.utf8 {
            flags |= FLAG_UTF8;
        }
        if self.symlinks_as_links {
            flags |= FLAG_SYMLINKS;
        }
        out.push(flags);
        out.push(match self.delimiter {
            None => 0,
            Some(Delimiter::Slash) => 1,
            Some(Delimiter::Backslash) => 2,
        });
        let maps = &self.maps[..self.maps.len().min(MAX_SAVED_MAPS)];
        out.extend_from_slice(&(maps.len() as u16).to_le_bytes());
        for map in maps {
            let name = &map.name.as_bytes()[..map.name.len().min(MAX_SAVED_NAME)];
            out.extend_from_slice(&map.root.to_le_bytes());
            out.extend_from_slice(&map.count.to_le_bytes());
            out.push(u8::from(map.case_sensitive));
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(name);
        }
        out
    }

    /// Reads saved bytes back.
    pub fn decode(data: &[u8]) -> Result<SavedSession, PersistError> {
        let mut reader = Reader { data };
        let flags = reader.u8()?;
        if flags & !(FLAG_UTF8 | FLAG_SYMLINKS) != 0 {
            return Err(PersistError::Field("flags"));
        }
        let delimiter = match reader.u8()? {
            0 => None,
            1 => Some(Delimiter::Slash),
            2 => Some(Delimiter::Backslash),
            _ => return Err(PersistError::Field("delimiter")),
        };
        let count = usize::from(reader.u16()?);
        if count > MAX_SAVED_MAPS {
            return Err(PersistError::Field("map count"));
        }
        let mut maps = Vec::with_capacity(count);
        for _ in 0..count {
            let root = reader.u32()?;
            let map_count = reader.u32()?;
            let case_sensitive = match reader.u8()? {
                0 => false,
                1 => true,
                _ => return Err(PersistError::Field("case sensitivity")),
            };
            let length = usize::from(reader.u16()?);
            if length > MAX_SAVED_NAME {
                return Err(PersistError::Field("name length"));
            }
            let name = String::from_utf8(reader.bytes(length)?.to_vec())
                .map_err(|_| PersistError::Field("name"))?;
            maps.push(SavedMap {
                root,
                count: map_count,
                case_sensitive,
                name,
            });
        }
        if !reader.data.is_empty() {
            return Err(PersistError::Length);
        }
        Ok(SavedSession {
            utf8: flags & FLAG_UTF8 != 0,
            symlinks_as_links: flags & FLAG_SYMLINKS != 0,
            delimiter,
            maps,
        })
    }
}

struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], PersistError> {
        if self.data.len() < n {
            return Err(PersistError::Length);
        }
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, PersistError> {
        Ok(self.bytes(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, PersistError> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, PersistError> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SavedSession {
        SavedSession {
            utf8: true,
            symlinks_as_links: true,
            delimiter: Some(Delimiter::Slash),
            maps: vec![SavedMap {
                root: 3,
                count: 2,
                case_sensitive: true,
                name: "data".into(),
            }],
        }
    }

    #[test]
    fn saved_session_round_trips() {
        let saved = sample();
        assert_eq!(SavedSession::decode(&saved.encode()), Ok(saved));
    }

    #[test]
    fn truncated_state_is_refused() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            assert!(SavedSession::decode(&bytes[..len]).is_err(), "length {len}");
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = sample().encode();
        bytes.push(0);
        assert_eq!(SavedSession::decode(&bytes), Err(PersistError::Length));
    }

    #[test]
    fn unknown_flag_and_delimiter_values_are_refused() {
        let mut bytes = sample().encode();
        bytes[0] = 0x80;
        assert!(SavedSession::decode(&bytes).is_err());
        let mut bytes = sample().encode();
        bytes[1] = 7;
        assert!(SavedSession::decode(&bytes).is_err());
    }

    #[test]
    fn random_bytes_never_panic() {
        for input in crate::testutil::random_inputs(20_000, 64) {
            let _ = SavedSession::decode(&input);
        }
    }

    #[test]
    fn absurd_map_count_is_refused_before_allocating() {
        assert_eq!(
            SavedSession::decode(&[0, 0, 0xFF, 0xFF]),
            Err(PersistError::Field("map count"))
        );
    }
}
