//! Property-name patterns as ENUM_PROPS and GET_NOTIFICATION use them.
//!
//! A pattern list is a string of alternatives separated by `|`; the empty list matches every name.
//! Each alternative is matched against the whole name, case-sensitively and byte by byte: `*`
//! matches any run of bytes (also none), `?` exactly one byte, every other byte itself. There is
//! no escaping. As in VirtualBox, a `?` that directly follows a `*` is swallowed by it (`a*?`
//! matches `a`), and an empty alternative matches only the empty name (so the trailing `|` the
//! guest library sends is harmless).
//!
//! Matching is iterative with single-star backtracking, so its cost is bounded by
//! `pattern length × name length` whatever the guest sends.

use vmmdev_protocol::services::guest_props::GUEST_PROP_PATTERN_SEPARATOR;

/// A list of `|`-separated glob alternatives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatternList {
    text: String,
}

impl PatternList {
    /// The list `text` (already converted from any NUL-separated form).
    pub fn new(text: impl Into<String>) -> Self {
        PatternList { text: text.into() }
    }

    /// Whether `name` matches at least one alternative (always, for the empty list).
    pub fn matches(&self, name: &str) -> bool {
        if self.text.is_empty() {
            return true;
        }
        self.text
            .as_bytes()
            .split(|&b| b == GUEST_PROP_PATTERN_SEPARATOR)
            .any(|alternative| glob_matches(alternative, name.as_bytes()))
    }
}

/// Whether the single glob `pattern` matches all of `name`.
fn glob_matches(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0usize, 0usize);
    // Where to resume after the last `*`: the pattern position after it, and the name position
    // it currently stretches to.
    let mut star: Option<(usize, usize)> = None;
    loop {
        match pattern.get(p) {
            Some(b'*') => {
                // A run of `*` and `?` after a star collapses into that star.
                while matches!(pattern.get(p), Some(b'*' | b'?')) {
                    p += 1;
                }
                star = Some((p, n));
                continue;
            }
            Some(&expected)
                if expected == b'?' && n < name.len() || name.get(n) == Some(&expected) =>
            {
                p += 1;
                n += 1;
                continue;
            }
            None if n == name.len() => return true,
            _ => {}
        }
        // Mismatch: let the last star swallow one more byte, or give up.
        match star {
            Some((after_star, stretched)) if stretched < name.len() => {
                star = Some((after_star, stretched + 1));
                p = after_star;
                n = stretched + 1;
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, name: &str) -> bool {
        PatternList::new(pattern).matches(name)
    }

    #[test]
    fn empty_list_matches_every_name() {
        assert!(matches("", "/VirtualBox/GuestInfo/OS/Product"));
        assert!(matches("", ""));
    }

    #[test]
    fn literal_pattern_matches_only_the_whole_name() {
        assert!(matches("/a/b", "/a/b"));
        assert!(!matches("/a/b", "/a/bc"));
        assert!(!matches("/a/b", "/a"));
    }

    #[test]
    fn matching_is_case_sensitive() {
        assert!(!matches("/A", "/a"));
    }

    #[test]
    fn star_matches_any_run_including_none() {
        assert!(matches(
            "/VirtualBox/GuestInfo/Net/*",
            "/VirtualBox/GuestInfo/Net/0/V4/IP"
        ));
        assert!(matches("/a/*", "/a/"));
        assert!(matches("*", ""));
        assert!(matches("*/IP", "/VirtualBox/GuestInfo/Net/0/V4/IP"));
        assert!(!matches("*/IP", "/VirtualBox/GuestInfo/Net/0/V4/IPX"));
    }

    #[test]
    fn question_mark_matches_exactly_one_byte() {
        assert!(matches("/Net/?/MAC", "/Net/0/MAC"));
        assert!(!matches("/Net/?/MAC", "/Net/10/MAC"));
        assert!(!matches("/a?", "/a"));
    }

    #[test]
    fn question_mark_is_byte_based() {
        // "é" is two bytes in UTF-8.
        assert!(!matches("/?", "/é"));
        assert!(matches("/??", "/é"));
    }

    #[test]
    fn question_mark_after_star_is_swallowed() {
        assert!(matches("a*?", "a"));
        assert!(matches("a*??b", "ab"));
    }

    #[test]
    fn alternatives_are_separated_by_bar() {
        let list = "/VirtualBox/GuestAdd/*|/VirtualBox/HostInfo/VBoxVer";
        assert!(matches(list, "/VirtualBox/GuestAdd/Version"));
        assert!(matches(list, "/VirtualBox/HostInfo/VBoxVer"));
        assert!(!matches(list, "/VirtualBox/HostInfo/VBoxRev"));
    }

    #[test]
    fn trailing_empty_alternative_matches_nothing_extra() {
        assert!(matches("/a*|", "/ab"));
        assert!(!matches("/a*|", "/b"));
    }

    #[test]
    fn empty_alternative_matches_only_the_empty_name() {
        assert!(matches("|", ""));
        assert!(!matches("|", "/x"));
    }

    #[test]
    fn backtracking_finds_later_occurrences() {
        assert!(matches("*ab*ab", "xabyabab"));
        assert!(matches("a*b*c", "aXbYbZc"));
        assert!(!matches("a*b*c", "aXbYbZ"));
    }

    #[test]
    fn hostile_pattern_finishes_quickly() {
        let pattern = "*a".repeat(500);
        let name = "a".repeat(63) + "b";
        assert!(!matches(&pattern, &name));
    }
}
