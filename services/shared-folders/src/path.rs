//! Guest paths: the client's delimiter-separated text turned into host path components.
//!
//! This module only parses; it does not decide whether a path stays inside a share. That is the
//! kernel's job ([`crate::share`] resolves every path with `openat2(RESOLVE_BENEATH)` from the
//! share's root descriptor), so `..` components are passed through and refused by the kernel when
//! they would climb above the root. What is refused here is what no host name can contain: NUL
//! bytes, and `/` inside a component of a client that uses `\` as its delimiter.

use std::ffi::CString;

use vmmdev_protocol::status::Status;

/// The path delimiter a client declared in MAP_FOLDER.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delimiter {
    /// `/` (Linux and other Unix guests).
    Slash,
    /// `\` (Windows and OS/2 guests).
    Backslash,
}

impl Delimiter {
    /// The delimiter for a code point from MAP_FOLDER; `None` for anything but `/` and `\`.
    pub fn from_code_point(code: u32) -> Option<Delimiter> {
        match code {
            0x2F => Some(Delimiter::Slash),
            0x5C => Some(Delimiter::Backslash),
            _ => None,
        }
    }

    /// The delimiter as a character.
    pub fn as_char(self) -> char {
        match self {
            Delimiter::Slash => '/',
            Delimiter::Backslash => '\\',
        }
    }
}

/// Why a guest path cannot name a host object.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A component contains a byte no host name can hold.
    #[error("path component {0:?} is not a valid host name")]
    InvalidComponent(String),
    /// The operation needs a name, but the path ends in `.` or `..`.
    #[error("{0:?} does not name a directory entry")]
    NotAnEntry(String),
    /// The operation needs a name inside the share, but the path is the share root.
    #[error("the share root has no name")]
    Root,
}

impl PathError {
    /// The status for this error: names that cannot exist are "not found" to the guest.
    pub fn status(&self) -> i32 {
        match self {
            PathError::InvalidComponent(_) | PathError::NotAnEntry(_) => {
                Status::VERR_INVALID_NAME.raw()
            }
            PathError::Root => Status::VERR_ACCESS_DENIED.raw(),
        }
    }
}

/// A path relative to a share root, as host components.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuestPath {
    components: Vec<String>,
}

impl GuestPath {
    /// The share root.
    pub fn root() -> GuestPath {
        GuestPath::default()
    }

    /// Parses guest text: leading delimiters are ignored (`/`, `//x` and `x` are all relative
    /// to the root) and empty components are dropped.
    pub fn parse(text: &str, delimiter: Delimiter) -> Result<GuestPath, PathError> {
        let mut components = Vec::new();
        for component in text.split(delimiter.as_char()).filter(|c| !c.is_empty()) {
            if component.contains(['\0', '/']) {
                return Err(PathError::InvalidComponent(component.to_owned()));
            }
            components.push(component.to_owned());
        }
        Ok(GuestPath { components })
    }

    /// Whether this is the share root.
    pub fn is_root(&self) -> bool {
        self.components.is_empty()
    }

    /// The components, in order.
    pub fn components(&self) -> &[String] {
        &self.components
    }

    /// The path as the relative C string `openat2` resolves from the root (`.` for the root).
    pub fn to_relative(&self) -> CString {
        if self.components.is_empty() {
            return c".".to_owned();
        }
        // Components never contain NUL (checked in `parse` and `child`).
        CString::new(self.components.join("/")).unwrap_or_default()
    }

    /// The parent directory and the final name, for operations on a directory entry.
    pub fn split_entry(&self) -> Result<(GuestPath, CString), PathError> {
        let (name, parent) = self.components.split_last().ok_or(PathError::Root)?;
        if name == "." || name == ".." {
            return Err(PathError::NotAnEntry(name.clone()));
        }
        // Never contains NUL (checked in `parse` and `child`).
        let name = CString::new(name.as_str()).unwrap_or_default();
        Ok((
            GuestPath {
                components: parent.to_vec(),
            },
            name,
        ))
    }

    /// The parent directory (the root is its own parent).
    pub fn parent(&self) -> GuestPath {
        let mut components = self.components.clone();
        components.pop();
        GuestPath { components }
    }

    /// This path extended by one host name (as read from a directory).
    pub fn child(&self, name: &str) -> Result<GuestPath, PathError> {
        if name.is_empty() || name.contains(['\0', '/']) {
            return Err(PathError::InvalidComponent(name.to_owned()));
        }
        let mut components = self.components.clone();
        components.push(name.to_owned());
        Ok(GuestPath { components })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_and_repeated_delimiters_are_ignored() {
        let path = GuestPath::parse("//a//b/", Delimiter::Slash).expect("valid");
        assert_eq!(path.components(), ["a", "b"]);
        assert_eq!(path.to_relative().as_bytes(), b"a/b");
    }

    #[test]
    fn slash_alone_is_the_root() {
        let path = GuestPath::parse("/", Delimiter::Slash).expect("valid");
        assert!(path.is_root());
        assert_eq!(path.to_relative().as_bytes(), b".");
    }

    #[test]
    fn backslash_clients_cannot_smuggle_slashes_into_a_component() {
        assert!(matches!(
            GuestPath::parse("\\dir\\a/b", Delimiter::Backslash),
            Err(PathError::InvalidComponent(_))
        ));
    }

    #[test]
    fn backslash_paths_become_host_components() {
        let path = GuestPath::parse("\\dir\\file", Delimiter::Backslash).expect("valid");
        assert_eq!(path.to_relative().as_bytes(), b"dir/file");
    }

    #[test]
    fn dot_dot_is_kept_for_the_kernel_to_judge() {
        let path = GuestPath::parse("/a/../b", Delimiter::Slash).expect("valid");
        assert_eq!(path.to_relative().as_bytes(), b"a/../b");
    }

    #[test]
    fn entry_operations_refuse_dot_names_and_the_root() {
        let dots = GuestPath::parse("/a/..", Delimiter::Slash).expect("valid");
        assert!(matches!(dots.split_entry(), Err(PathError::NotAnEntry(_))));
        assert_eq!(GuestPath::root().split_entry(), Err(PathError::Root));
    }

    #[test]
    fn split_entry_yields_parent_and_name() {
        let path = GuestPath::parse("/a/b/c", Delimiter::Slash).expect("valid");
        let (parent, name) = path.split_entry().expect("entry");
        assert_eq!(parent.components(), ["a", "b"]);
        assert_eq!(name.as_bytes(), b"c");
    }

    #[test]
    fn only_slash_and_backslash_are_delimiters() {
        assert_eq!(Delimiter::from_code_point(0x2F), Some(Delimiter::Slash));
        assert_eq!(Delimiter::from_code_point(0x5C), Some(Delimiter::Backslash));
        assert_eq!(Delimiter::from_code_point(0x3A), None);
    }
}
