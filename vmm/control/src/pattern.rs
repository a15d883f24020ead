//! Guest property name patterns as the guest properties service understands them: `*` matches any run
//! of characters, `?` one character, and `|` separates alternatives. The control endpoint filters change
//! notifications with them, so `wait` selects the same names `enumerate` would.

/// Whether `name` matches `pattern`; an empty pattern matches every name.
pub(crate) fn matches(pattern: &str, name: &str) -> bool {
    pattern.is_empty()
        || pattern
            .split('|')
            .any(|alternative| glob(alternative, name))
}

/// One alternative against `name`, in linear time: on a mismatch after a `*`, the star takes one more
/// character and matching resumes after it.
fn glob(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == '?' || Some(&c) == name.get(n) => {
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
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|&c| c == '*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_pattern_matches_everything() {
        assert!(matches("", "/VirtualBox/GuestInfo/OS/Product"));
    }

    #[test]
    fn star_matches_any_run_including_slashes() {
        assert!(matches("/VirtualBox/*", "/VirtualBox/GuestInfo/OS"));
        assert!(matches("*Product", "/OS/Product"));
        assert!(!matches("/VirtualBox/*", "/Other/x"));
    }

    #[test]
    fn question_mark_matches_exactly_one_character() {
        assert!(matches("/A?", "/AB"));
        assert!(!matches("/A?", "/A"));
        assert!(!matches("/A?", "/ABC"));
    }

    #[test]
    fn alternatives_match_if_any_does() {
        assert!(matches("/A|/B*", "/Bee"));
        assert!(!matches("/A|/B*", "/C"));
    }

    #[test]
    fn literal_pattern_matches_only_itself() {
        assert!(matches("/A", "/A"));
        assert!(!matches("/A", "/AB"));
    }

    #[test]
    fn backtracking_star_finds_a_later_match() {
        assert!(matches("*a*b", "xaxxab"));
        assert!(!matches("*a*b", "xaxxa"));
    }
}
